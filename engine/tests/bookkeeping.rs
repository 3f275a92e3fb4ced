//! Upgrading tandem's bookkeeping to version 4 (the gates): the events recorded before it
//! move into the audit log's hash chain, in order and with their times, and `tandem.events`
//! shows them as before.

use fixtures::pg::TestDb;

const BEFORE_GATES: [&str; 3] = [
    include_str!("../../migrations/0001_bookkeeping.sql"),
    include_str!("../../migrations/0002_executor.sql"),
    include_str!("../../migrations/0003_proxy.sql"),
];

#[tokio::test]
async fn events_recorded_before_version_4_move_into_the_chain_unchanged() {
    let db = TestDb::new("bookkeeping_upgrade").await;
    let c = db.client();
    for sql in BEFORE_GATES {
        c.batch_execute(sql)
            .await
            .expect("an older bookkeeping version installs");
    }
    c.batch_execute(&format!(
        "INSERT INTO tandem.migrations (plan, plan_sha256, schema_fingerprint)
         VALUES ('{{}}', '{}', 'f');
         INSERT INTO tandem.events (migration_id, phase, event, detail, at) VALUES
           (1, 'submitted', 'submitted', NULL, '2026-01-01 10:00:00+00'),
           (1, 'prepare', 'started', NULL, '2026-01-01 10:00:01.5+00'),
           (1, 'prepare', 'done', '{{\"tables\": 1, \"note\": \"it''s done\"}}', '2026-01-01 10:00:02+00');",
        "a".repeat(64)
    ))
    .await
    .unwrap();
    let read = "SELECT id::text, migration_id::text, phase, event, coalesce(detail::text, 'null'), at::text FROM tandem.events ORDER BY id";
    let rows = |rows: Vec<tokio_postgres::Row>| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| (0..6).map(|i| r.get::<_, String>(i)).collect())
            .collect()
    };
    let before = rows(c.query(read, &[]).await.unwrap());

    let mut client = db.connect().await;
    assert_eq!(engine::state::install(&mut client).await.unwrap(), 6);

    let after = rows(c.query(read, &[]).await.unwrap());
    assert_eq!(after.len(), 3);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            b[1..],
            a[1..],
            "migration, phase, event, detail and time are kept"
        );
    }
    let entries = engine::state::audit::entries(c, 1).await.unwrap();
    let summary = gates::chain::verify(&entries, &[], &[]).expect("the chain verifies");
    assert_eq!(
        summary.entries, 4,
        "three events, then the instance id made"
    );
    assert!(
        entries[3].body.contains("instance id created"),
        "{}",
        entries[3].body
    );

    // Installing again changes nothing.
    assert_eq!(engine::state::install(&mut client).await.unwrap(), 6);
    assert_eq!(engine::state::audit::entries(c, 1).await.unwrap().len(), 4);
}
