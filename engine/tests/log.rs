//! The log method's backfill (`shadow/log.rs`): what the application writes while the copy
//! is under way reaches the shadow through the key log, whether the copy had already passed
//! the row or not: deletes, key changes, a unique value moved from a copied row to one not yet
//! copied, inserts past the copy's bound, and a value the new definition rejects (recorded as
//! a divergence with its key, the application unaffected). The copy is held still with
//! `tandem pause` between its chunks, so the writes land on both sides of it for certain.

mod common;

use std::time::Duration;

use common::{diff, divergence, within};
use engine::executor::Options;
use engine::state::{self, Phase};
use fixtures::pg::TestDb;
use tokio_postgres::Client;

const ROWS: i64 = 20_000;

/// `t(id int primary key, email text unique, n bigint, v text)`, changed to `n integer` (a
/// narrowing: a value over 2^31 does not fit).
async fn setup(name: &str) -> (TestDb, i64) {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, email text NOT NULL UNIQUE, n bigint, v text);
             INSERT INTO t SELECT g, 'e' || g, g, 'v' || g FROM generate_series(1, {ROWS}) g;
             ANALYZE t;"
        ))
        .await
        .unwrap();
    let id = common::submit(&db, "ALTER TABLE t ALTER n TYPE integer", None).await;
    (db, id)
}

/// A backfill copied in many small chunks with a rest between them, so that a test can
/// pause it between two ([`pause_mid_copy`]).
fn slow_copy() -> Options {
    Options {
        until: Phase::Backfill,
        chunk_time: Duration::from_millis(1),
        batch_pause: Duration::from_millis(20),
        ..Options::default()
    }
}

/// Pause the migration once its copy has committed a chunk; wait until the executor waits.
/// Returns the rows copied.
async fn pause_mid_copy(c: &Client, id: i64) -> i64 {
    within(30, "the copy's first chunk", async {
        while common::progress(c, id).await.0 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    state::set_paused(c, id, true).await.unwrap();
    within(10, "the executor noticing the pause", async {
        loop {
            if let (_, _, Some(w)) = common::progress(c, id).await {
                if w.contains("pause") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    common::progress(c, id).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_both_sides_of_the_copy_reach_the_shadow() {
    let (db, id) = setup("log_both_sides").await;
    let c = db.client();
    let mut ex = common::open(&db, id, slow_copy(), "log").await;
    let task = tokio::spawn(async move { ex.apply().await });
    let copied = pause_mid_copy(c, id).await;
    assert!(
        (100..ROWS / 2).contains(&copied),
        "paused after {copied} of {ROWS} rows"
    );
    let spec = common::spec(c, id).await;
    let shadow = spec.shadow.to_string();
    // The copy runs in key order: ids up to `copied` are in the shadow, the last ones not.
    let far = ROWS - 10;
    c.batch_execute(&format!(
        "DELETE FROM t WHERE id BETWEEN 1 AND 10;
         UPDATE t SET id = id + {ROWS} * 2 WHERE id = 20;
         UPDATE t SET v = 'changed' WHERE id BETWEEN 40 AND 49;
         UPDATE t SET email = 'moved away' WHERE id = 30;
         UPDATE t SET email = 'e30' WHERE id = {far};
         DELETE FROM t WHERE id = {far} + 1;
         UPDATE t SET id = 5 WHERE id = {far} + 2;
         INSERT INTO t VALUES ({ROWS} + 1, 'new', 1, 'inserted');
         INSERT INTO t VALUES (26, 'e26', 26, 'v26') ON CONFLICT (id) DO UPDATE SET v = 'upserted';
         UPDATE t SET n = 3000000000 WHERE id = 60;"
    ))
    .await
    .expect("the application's writes succeed");
    // Nothing of that is in the shadow yet: only the log has it.
    let in_shadow: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {shadow} WHERE id BETWEEN 1 AND 10"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_shadow, 10, "the shadow is written by the copy only");
    let logged: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {}",
                engine::shadow::log_table(id, spec.table_oid)
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(logged >= 20, "{logged} keys logged");

    state::set_paused(c, id, false).await.unwrap();
    let phase = within(60, "the backfill", task)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("apply: {e}: {:?}", std::error::Error::source(&e)));
    assert_eq!(phase, Phase::Backfill);

    // The rejected value is recorded with its key; its row is absent from the shadow (so
    // verification refuses the cutover and names it), every other row is the table's.
    let div = divergence(c, id).await;
    assert_eq!(div.len(), 1, "{div:#?}");
    assert!(
        div[0].starts_with("forward (60)") && div[0].contains("22003"),
        "{div:#?}"
    );
    let d = diff(c, "(SELECT * FROM t WHERE id <> 60) AS t", &shadow).await;
    assert!(d.equal(), "the shadow differs from the table: {d:#?}");
    // 10 deleted, one more deleted, one inserted, and row 60 left out.
    assert_eq!(d.a_rows, ROWS - 10 - 1 + 1 - 1);

    // The forward trigger has taken over (firing always, replica sessions too); the log is
    // gone, its triggers disabled until the cutover drops them.
    let triggers: Vec<String> = c
        .query(
            "SELECT tgname::text || ':' || tgenabled::text FROM pg_trigger
              WHERE tgrelid = 't'::regclass AND NOT tgisinternal ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        triggers,
        [
            format!("_tandem_m{id}_forward:A"),
            format!("_tandem_m{id}_log_delete:D"),
            format!("_tandem_m{id}_log_insert:D"),
            format!("_tandem_m{id}_log_update:D"),
            format!("_tandem_m{id}_truncate:A"),
        ]
    );
    assert!(
        !common::exists(
            c,
            &engine::shadow::log_table(id, spec.table_oid).to_string()
        )
        .await
    );
    // From now on writes go straight to the shadow.
    c.execute("UPDATE t SET v = 'direct' WHERE id = 100", &[])
        .await
        .unwrap();
    let v: String = c
        .query_one(&format!("SELECT v FROM {shadow} WHERE id = 100"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "direct");
}

/// An abandoned migration leaves no log behind, whichever step it stopped at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_during_the_copy_drops_the_log() {
    let (db, id) = setup("log_abandon").await;
    let c = db.client();
    let mut ex = common::open(
        &db,
        id,
        Options {
            until: Phase::DualWrite,
            ..Options::default()
        },
        "log abandon",
    )
    .await;
    assert_eq!(ex.apply().await.unwrap(), Phase::DualWrite);
    c.execute("UPDATE t SET v = 'logged' WHERE id = 1", &[])
        .await
        .unwrap();
    ex.rollback().await.unwrap();
    let left = common::leftovers(c).await;
    assert!(left.is_empty(), "tandem left objects behind: {left:#?}");
    let logs: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'tandem'::regnamespace AND relname LIKE '%\\_log'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logs, 0);
}

/// The copy leaves its pages settled (`backfill::Settle`): the chunks' pages are vacuumed
/// right after they commit, so a later full read of the shadow (the key index's build, the
/// vacuum beside the drain, verify) writes none of them again to set hint bits. Checked with
/// the copy paused between chunks (a pause settles what the copy wrote before it waits): a
/// scan of everything copied so far dirties no page, and the visibility map marks pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_leaves_its_pages_with_hint_bits_set() {
    let (db, id) = setup("log_settled").await;
    let c = db.client();
    common::flush_commits(&db).await;
    let mut ex = common::open(
        &db,
        id,
        Options {
            // By default only a table larger than the server's shared buffers.
            settle: Some(true),
            ..slow_copy()
        },
        "log settled",
    )
    .await;
    let task = tokio::spawn(async move { ex.apply().await });
    let copied = pause_mid_copy(c, id).await;
    assert!(copied >= 100, "paused after {copied} rows");
    let shadow = common::spec(c, id).await.shadow.to_string();
    let plan: serde_json::Value = c
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT count(*) FROM {shadow}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let top = &plan[0]["Plan"];
    assert_eq!(top["Actual Rows"], 1, "{plan}");
    let dirtied = top["Shared Dirtied Blocks"].as_i64();
    assert_eq!(
        dirtied,
        Some(0),
        "a read of the copied rows dirtied pages: {plan}"
    );
    let r = c
        .query_one(
            "SELECT relpages, relallvisible FROM pg_class WHERE oid = $1::text::regclass",
            &[&shadow],
        )
        .await
        .unwrap();
    let (pages, visible): (i32, i32) = (r.get(0), r.get(1));
    assert!(
        pages > 0 && visible > 0,
        "pages {pages}, all-visible {visible}"
    );
    state::set_paused(c, id, false).await.unwrap();
    let phase = within(60, "the backfill", task)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("apply: {e}: {:?}", std::error::Error::source(&e)));
    assert_eq!(phase, Phase::Backfill);
    let d = diff(c, "t", &shadow).await;
    assert!(d.equal(), "the shadow differs from the table: {d:#?}");
}
