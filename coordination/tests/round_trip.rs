//! Both sides of the contract against a real PostgreSQL with tandem's bookkeeping (the SQL of
//! `migrations/`, in order): what the executor writes ([`WRITE`]) rings the proxies'
//! channel with a doorbell that names the row, and the row reads back ([`READ`]) as the
//! signal the proxy acts on; a proxy's [`ACKNOWLEDGE`] wakes a listener on the ack channel
//! with the hold's token.

use std::time::Duration;

use coordination::{
    doorbell, Pump, Signal, ACKNOWLEDGE, ACK_CHANNEL, PROXY_CHANNEL, READ, TARGETS, WRITE,
};
use fixtures::pg::TestDb;

/// tandem's bookkeeping, from the files the engine installs.
async fn bookkeeping(db: &TestDb) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    for f in files {
        db.client()
            .batch_execute(&std::fs::read_to_string(&f).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

/// A row the executor writes (kind, migration, token, max_ms), and the signal it must be.
type Case = (
    &'static str,
    Option<i64>,
    Option<&'static str>,
    Option<i32>,
    Signal,
);

async fn next(pump: &mut Pump) -> String {
    tokio::time::timeout(Duration::from_secs(5), pump.notes.recv())
        .await
        .expect("a notification within 5 s")
        .expect("the connection is open")
}

#[tokio::test]
async fn signals_and_acknowledgements_round_trip() {
    let db = TestDb::new("coordination_round_trip").await;
    bookkeeping(&db).await;
    let (proxy, mut doorbells) = Pump::connect(&db.config().into()).await.unwrap();
    proxy
        .batch_execute(&format!("LISTEN {PROXY_CHANNEL}"))
        .await
        .unwrap();
    let executor = db.client();

    let cases: [Case; 3] = [
        (
            "hold",
            Some(7),
            Some("ab12"),
            Some(60_000),
            Signal::Hold {
                migration: 7,
                token: "ab12".into(),
                max: Duration::ZERO, // compared below: what is left of 60 s
            },
        ),
        (
            "release",
            Some(7),
            Some("ab12"),
            None,
            Signal::Release {
                token: "ab12".into(),
            },
        ),
        ("targets", None, None, None, Signal::Targets),
    ];
    for (kind, migration, token, max_ms, expected) in cases {
        executor
            .execute(WRITE, &[&kind, &migration, &token, &max_ms])
            .await
            .unwrap();
        let seq = doorbell(&next(&mut doorbells).await).expect("the payload names the row");
        let rows = proxy.query(READ, &[&(seq - 1)]).await.unwrap();
        assert_eq!(rows.len(), 1, "{kind}");
        assert_eq!(rows[0].get::<_, i64>(0), seq);
        let kind_read: String = rows[0].get(1);
        let signal = Signal::of_row(
            &kind_read,
            rows[0].get(2),
            rows[0].get(3),
            rows[0].get(4),
            rows[0].get(5),
        )
        .unwrap_or_else(|| panic!("{kind}: no signal"));
        match (&signal, &expected) {
            (
                Signal::Hold {
                    migration,
                    token,
                    max,
                },
                Signal::Hold {
                    migration: m,
                    token: t,
                    ..
                },
            ) => {
                assert_eq!((migration, token), (m, t));
                assert!(
                    *max > Duration::from_secs(50) && *max <= Duration::from_secs(60),
                    "{max:?}"
                );
            }
            _ => assert_eq!(signal, expected),
        }
    }

    // The parameterless `targets` signal the executor puts in a batch.
    executor.batch_execute(TARGETS).await.unwrap();
    let seq = doorbell(&next(&mut doorbells).await).unwrap();
    let row = proxy.query_one(READ, &[&(seq - 1)]).await.unwrap();
    assert_eq!(row.get::<_, String>(1), "targets");

    // The proxy's answer wakes the executor with the token, and is in proxy_acks.
    let (listener, mut acks) = Pump::connect(&db.config().into()).await.unwrap();
    listener
        .batch_execute(&format!("LISTEN {ACK_CHANNEL}"))
        .await
        .unwrap();
    proxy
        .execute(ACKNOWLEDGE, &[&"ab12", &"proxy-1", &true])
        .await
        .unwrap();
    assert_eq!(next(&mut acks).await, "ab12");
    let held: bool = listener
        .query_one(
            "SELECT held FROM tandem.proxy_acks WHERE token = 'ab12' AND proxy_id = 'proxy-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(held);
}
