//! The dual-read mirror against a real PostgreSQL: a live table `accounts(id int, owner text,
//! balance int)`, its "shadow" with `balance bigint`, and a view by hand that shows the shadow
//! in the live shape (the engine makes these views; the mirror must not depend on it). The
//! mirror is started on tandem's bookkeeping with sample 1.0, fed samples as the session
//! would, and checked through what it writes: tandem.dual_reads and tandem.drift.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fixtures::pg::TestDb;
use proxy::config::FileConfig;
use proxy::metrics::Metrics;
use proxy::mirror::{Mirror, Sample};
use proxy::upstream::{Addr, Upstream};
use tokio_postgres::config::Host;
use tokio_postgres::Client;

const VIEW: &str = r#""tandem mirror"."accounts as before""#;
const PROXY_ID: &str = "test-proxy";

/// tandem's bookkeeping with the proxy's version (0003), applied by hand while the engine's
/// installer does not carry it yet.
async fn install(db: &TestDb) {
    let mut client = db.connect().await;
    engine::state::install(&mut client).await.unwrap();
    let version: i32 = client
        .query_one("SELECT max(version) FROM tandem.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    if version < 3 {
        client
            .batch_execute(include_str!("../../migrations/0003_proxy.sql"))
            .await
            .unwrap();
    }
}

/// The role the samples' clients authenticated as: the test's own (set by [`setup`] and
/// [`start_with`]).
static ROLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The tables, the view and, with `target`, the migration rows that make `accounts` a target.
async fn setup(name: &str, target: bool) -> (TestDb, Option<i64>) {
    let db = TestDb::new(name).await;
    let _ = ROLE.set(db.config().get_user().expect("a user").to_string());
    install(&db).await;
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);
             INSERT INTO accounts SELECT g, 'owner-' || (g % 7), g * 10 FROM generate_series(1, 50) g;
             CREATE TABLE accounts_shadow (id int PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL);
             INSERT INTO accounts_shadow SELECT id, owner, balance FROM accounts;
             CREATE SCHEMA \"tandem mirror\";
             CREATE VIEW {VIEW} AS
                 SELECT id, owner, balance::int AS balance FROM public.accounts_shadow;
             CREATE TABLE writes (n int);
             CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS
                 'INSERT INTO writes VALUES (1) RETURNING n';"
        ))
        .await
        .unwrap();
    let id = if target {
        Some(add_target(&db).await)
    } else {
        None
    };
    (db, id)
}

/// A migration in backfill with `accounts` mirrored through the view; its id.
async fn add_target(db: &TestDb) -> i64 {
    let c = db.client();
    let id: i64 = c
        .query_one(
            "INSERT INTO tandem.migrations (plan, plan_sha256, schema_fingerprint, phase)
             VALUES ('{}', repeat('a', 64), 'test', 'backfill') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "INSERT INTO tandem.shadow_tables
             (migration_id, step, table_oid, schema_name, table_name, shadow_name, old_name, spec, mirror_view)
         VALUES ($1, 0, 'public.accounts'::regclass::oid, 'public', 'accounts',
                 'accounts_shadow', 'accounts_old', '{\"key\": [{\"name\": \"id\"}]}', $2)",
        &[&id, &VIEW],
    )
    .await
    .unwrap();
    id
}

fn upstream(db: &TestDb) -> (Upstream, Option<String>) {
    let config = db.config();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let addr = match &config.get_hosts()[0] {
        Host::Unix(dir) => Addr::Unix {
            dir: dir.clone(),
            port,
        },
        Host::Tcp(host) => Addr::Tcp {
            host: host.clone(),
            port,
        },
    };
    let upstream = Upstream::plain(
        addr,
        config.get_user().unwrap().to_string(),
        config.get_dbname().unwrap().to_string(),
    );
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    (upstream, password)
}

fn start(db: &TestDb, queue: usize, metrics: &Arc<Metrics>) -> Mirror {
    start_with(db, queue, 1, metrics)
}

fn start_with(db: &TestDb, queue: usize, workers: usize, metrics: &Arc<Metrics>) -> Mirror {
    let _ = ROLE.set(db.config().get_user().expect("a user").to_string());
    let (upstream, password) = upstream(db);
    let config = FileConfig {
        mirror_sample: 1.0,
        mirror_queue: queue,
        mirror_workers: workers,
        ..FileConfig::default()
    };
    Mirror::start(
        upstream,
        password,
        PROXY_ID.into(),
        &config,
        metrics.clone(),
    )
}

/// Until the mirror has loaded its targets.
async fn active(mirror: &Mirror, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !mirror.wants() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mirror did not load its targets within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn simple(sql: &str) -> Sample {
    Sample {
        sql: sql.into(),
        role: ROLE
            .get()
            .expect("setup() or start_with() ran")
            .as_str()
            .into(),
        param_types: vec![],
        params: vec![],
        param_formats: vec![],
    }
}

fn extended(sql: &str, types: &[u32], params: &[&[u8]], formats: &[i16]) -> Sample {
    Sample {
        sql: sql.into(),
        role: ROLE
            .get()
            .expect("setup() or start_with() ran")
            .as_str()
            .into(),
        param_types: types.to_vec(),
        params: params
            .iter()
            .map(|p| Some(Bytes::copy_from_slice(p)))
            .collect(),
        param_formats: formats.to_vec(),
    }
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Counts {
    comparisons: i64,
    mismatches: i64,
    skipped: i64,
    dropped: i64,
}

async fn counts(c: &Client, id: i64) -> Counts {
    let row = c
        .query_one(
            "SELECT coalesce(sum(comparisons), 0)::bigint, coalesce(sum(mismatches), 0)::bigint,
                    coalesce(sum(skipped), 0)::bigint, coalesce(sum(dropped), 0)::bigint
               FROM tandem.dual_reads
              WHERE migration_id = $1 AND proxy_id = $2 AND against = 'shadow'",
            &[&id, &PROXY_ID],
        )
        .await
        .unwrap();
    Counts {
        comparisons: row.get(0),
        mismatches: row.get(1),
        skipped: row.get(2),
        dropped: row.get(3),
    }
}

/// Until tandem.dual_reads shows `want` (the mirror flushes every second).
async fn counted(c: &Client, id: i64, want: Counts) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have = counts(c, id).await;
        if have == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tandem.dual_reads shows {have:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until the mirror's connections (the keeper's and the worker's) are up, and a little more
/// for the keeper's first load to finish.
async fn connected(db: &TestDb) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = db
            .client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name = 'tandem proxy mirror'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mirror connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn drift_rows(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM tandem.drift", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn equal_tables_compare_equal_then_a_shadow_only_update_is_drift() {
    let (db, id) = setup("mirror_drift", true).await;
    let id = id.unwrap();
    let metrics = Metrics::new();
    let mirror = start(&db, 64, &metrics);
    assert_eq!(mirror.database(), Some(db.name()));
    active(&mirror, Duration::from_secs(10)).await;

    let by_id = "SELECT id, owner, balance FROM accounts WHERE id = $1";
    let reads = [
        simple("SELECT id, owner, balance FROM accounts WHERE balance > 100 ORDER BY id"),
        simple("SELECT owner, sum(balance) AS total FROM accounts GROUP BY owner"),
        simple("select a.id, a.balance from public.accounts a where a.owner = 'owner-3'"),
        simple("SELECT accounts.id FROM accounts WHERE accounts.balance BETWEEN 40 AND 90"),
        simple("SELECT id FROM ONLY accounts WHERE id < 3"),
        simple(
            "WITH rich AS (SELECT * FROM accounts WHERE balance > 400) SELECT count(*) FROM rich",
        ),
        simple(
            "SELECT public.accounts.id FROM public.accounts \
              WHERE id IN (SELECT id FROM accounts WHERE balance < 50)",
        ),
        // Text parameter, type inferred.
        extended(by_id, &[0], &[b"7"], &[]),
        // Binary int4 parameter, type given.
        extended(by_id, &[23], &[&7i32.to_be_bytes()], &[1]),
        // Binary, type inferred by the server (int4 from the column).
        extended(by_id, &[], &[&8i32.to_be_bytes()], &[1]),
        // Mixed formats, one per parameter.
        extended(
            "SELECT id FROM accounts WHERE id > $1 AND owner = $2 ORDER BY id",
            &[20, 25],
            &[&10i64.to_be_bytes(), b"owner-1"],
            &[1, 0],
        ),
    ];
    let n = reads.len() as i64;
    for r in reads {
        assert!(mirror.wants());
        mirror.offer(r);
    }
    counted(
        db.client(),
        id,
        Counts {
            comparisons: n,
            ..Counts::default()
        },
    )
    .await;
    assert_eq!(drift_rows(db.client()).await, 0);
    assert_eq!(metrics.mirror_sampled.load(Relaxed), n as u64);
    assert_eq!(metrics.mirror_comparisons.load(Relaxed), n as u64);
    assert_eq!(metrics.mirror_mismatches.load(Relaxed), 0);
    assert_eq!(metrics.mirror_errors.load(Relaxed), 0);

    // The shadow drifts: one row changed there only.
    db.client()
        .execute(
            "UPDATE accounts_shadow SET balance = balance + 1 WHERE id = 7",
            &[],
        )
        .await
        .unwrap();
    mirror.offer(simple(
        "SELECT id, balance FROM accounts WHERE owner = 'owner-0' OR id = 7",
    ));
    mirror.offer(extended(by_id, &[23], &[&7i32.to_be_bytes()], &[1]));
    // A read that does not see row 7 still compares equal.
    mirror.offer(simple("SELECT id, balance FROM accounts WHERE id < 5"));
    counted(
        db.client(),
        id,
        Counts {
            comparisons: n + 3,
            mismatches: 2,
            ..Counts::default()
        },
    )
    .await;
    assert_eq!(metrics.mirror_mismatches.load(Relaxed), 2);

    let rows = db
        .client()
        .query(
            "SELECT migration_id, proxy_id, against, fingerprint, statement, param_hash,
                    rows_live, rows_other, example_key
               FROM tandem.drift ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let simple_row = &rows[0];
    let sql = "SELECT id, balance FROM accounts WHERE owner = 'owner-0' OR id = 7";
    assert_eq!(simple_row.get::<_, i64>("migration_id"), id);
    assert_eq!(simple_row.get::<_, &str>("proxy_id"), PROXY_ID);
    assert_eq!(simple_row.get::<_, &str>("against"), "shadow");
    assert_eq!(
        simple_row.get::<_, &str>("fingerprint"),
        pg_query::fingerprint(sql, 0, 0).unwrap().hex
    );
    let statement: &str = simple_row.get("statement");
    assert_eq!(statement, pg_query::normalize(sql).unwrap());
    assert!(
        !statement.contains("owner-0") && !statement.contains('7'),
        "a literal reached tandem.drift: {statement}"
    );
    assert_eq!(simple_row.get::<_, Option<&str>>("param_hash"), None);
    // ids 7, 14, ... 49 (owner-0), 7 among them.
    assert_eq!(simple_row.get::<_, i64>("rows_live"), 7);
    assert_eq!(simple_row.get::<_, i64>("rows_other"), 7);
    assert_eq!(
        simple_row.get::<_, Option<&str>>("example_key"),
        Some("id=7")
    );

    // Extended: the key decoded from binary, the parameters hashed.
    let ext = &rows[1];
    assert_eq!(ext.get::<_, Option<&str>>("example_key"), Some("id=7"));
    let hash: &str = ext.get::<_, Option<&str>>("param_hash").unwrap();
    // Salted with the database's secret: not the parameters' plain SHA-256 (one binary
    // int4, 7), which would confirm a guessed value, but SHA-256 of the secret and it.
    let plain: Vec<u8> = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([1u8]);
        h.update(4u32.to_be_bytes());
        h.update(7i32.to_be_bytes());
        h.finalize().to_vec()
    };
    assert_ne!(hash, hex::encode(&plain));
    let salted: String = db
        .client()
        .query_one(
            "SELECT encode(sha256(salt || $1::bytea), 'hex') FROM tandem.drift_salt",
            &[&plain],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hash, salted);
    assert_eq!(ext.get::<_, &str>("statement"), by_id);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let (db, id) = setup("mirror_queue_full", true).await;
    let id = id.unwrap();
    let metrics = Metrics::new();
    let mirror = start(&db, 1, &metrics);
    active(&mirror, Duration::from_secs(10)).await;
    // No await between offers: on this single-threaded runtime the worker cannot take one
    // off the queue meanwhile, so exactly one fits.
    for _ in 0..20 {
        mirror.offer(simple("SELECT count(*) FROM accounts"));
    }
    assert_eq!(metrics.mirror_sampled.load(Relaxed), 1);
    assert_eq!(metrics.mirror_dropped.load(Relaxed), 19);
    counted(
        db.client(),
        id,
        Counts {
            comparisons: 1,
            dropped: 19,
            ..Counts::default()
        },
    )
    .await;
}

#[tokio::test]
async fn writes_are_never_run_and_the_mirror_transaction_is_read_only() {
    let (db, id) = setup("mirror_read_only", true).await;
    let id = id.unwrap();
    let metrics = Metrics::new();
    let mirror = start(&db, 64, &metrics);
    active(&mirror, Duration::from_secs(10)).await;

    // Not a read: skipped without running.
    mirror.offer(simple("UPDATE accounts SET balance = 0 WHERE id = 3"));
    mirror.offer(simple("SELECT * FROM accounts WHERE id = 3 FOR UPDATE"));
    mirror.offer(simple(
        "WITH d AS (DELETE FROM accounts WHERE id = 4 RETURNING *) SELECT * FROM d",
    ));
    // sneaky() is the application's function, VOLATILE (the default): the catalog says so,
    // and it is skipped without running (before issue 13 it ran, and only the READ ONLY
    // transaction stopped its write).
    mirror.offer(simple("SELECT id, sneaky() FROM accounts WHERE id = 3"));
    // Not about a migrating table at all: nothing is queued.
    mirror.offer(simple("SELECT 1"));
    counted(
        db.client(),
        id,
        Counts {
            skipped: 4,
            ..Counts::default()
        },
    )
    .await;
    assert_eq!(metrics.mirror_sampled.load(Relaxed), 4);
    assert_eq!(
        metrics.mirror_errors.load(Relaxed),
        0,
        "something ran and failed"
    );
    let c = db.client();
    let balance: i32 = c
        .query_one("SELECT balance FROM accounts WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(balance, 30, "the UPDATE reached the table");
    let present: i64 = c
        .query_one("SELECT count(*) FROM accounts WHERE id = 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(present, 1, "the DELETE reached the table");
    let writes: i64 = c
        .query_one("SELECT count(*) FROM writes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(writes, 0, "the mirror's transaction wrote");
    assert_eq!(drift_rows(c).await, 0);
}

#[tokio::test]
async fn no_targets_until_reload() {
    let (db, _) = setup("mirror_reload", false).await;
    let metrics = Metrics::new();
    let mirror = start(&db, 64, &metrics);
    // The keeper connects and loads an empty list: nothing is sampled.
    connected(&db).await;
    assert!(!mirror.wants());
    mirror.offer(simple("SELECT * FROM accounts"));
    assert_eq!(metrics.mirror_sampled.load(Relaxed), 0);

    // The executor sets a target and notifies; the control task calls reload(). Sooner than
    // the 5 s poll.
    let id = add_target(&db).await;
    mirror.reload();
    active(&mirror, Duration::from_secs(3)).await;
    mirror.offer(simple("SELECT * FROM accounts"));
    counted(
        db.client(),
        id,
        Counts {
            comparisons: 1,
            ..Counts::default()
        },
    )
    .await;
}

#[tokio::test]
async fn without_tandem_the_mirror_is_a_no_op() {
    let db = TestDb::new("mirror_no_tandem").await;
    let metrics = Metrics::new();
    let mirror = start(&db, 64, &metrics);
    connected(&db).await;
    assert!(!mirror.wants());
    mirror.offer(simple("SELECT 1"));
    assert_eq!(metrics.mirror_sampled.load(Relaxed), 0);
    assert!(!Mirror::disabled().wants());
    assert_eq!(Mirror::disabled().database(), None);
}

/// Sessions offering at once, two workers taking, the keeper flushing meanwhile: every
/// offered read is counted exactly once, compared or dropped (a lost or doubled count, in
/// memory or in the flush, breaks the sum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_offers_are_each_counted_once() {
    let (db, id) = setup("mirror_concurrent", true).await;
    let id = id.unwrap();
    let metrics = Metrics::new();
    let mirror = start_with(&db, 8, 2, &metrics);
    active(&mirror, Duration::from_secs(10)).await;
    const SESSIONS: i64 = 4;
    const EACH: i64 = 60;
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let mirror = mirror.clone();
        sessions.push(tokio::spawn(async move {
            for i in 0..EACH {
                let id = ((s * EACH + i) % 50 + 1) as i32;
                mirror.offer(extended(
                    "SELECT id, owner, balance FROM accounts WHERE id = $1",
                    &[23],
                    &[&id.to_be_bytes()],
                    &[1],
                ));
                if i % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    for s in sessions {
        s.await.unwrap();
    }
    let sampled = metrics.mirror_sampled.load(Relaxed) as i64;
    let dropped = metrics.mirror_dropped.load(Relaxed) as i64;
    assert_eq!(sampled + dropped, SESSIONS * EACH);
    counted(
        db.client(),
        id,
        Counts {
            comparisons: sampled,
            dropped,
            ..Counts::default()
        },
    )
    .await;
    assert_eq!(metrics.mirror_errors.load(Relaxed), 0);
    assert_eq!(drift_rows(db.client()).await, 0);
}

/// Issue 13: whether a statement is free of effects comes from the catalog, for every
/// function and operator it calls, in any schema. A VOLATILE function of the application's
/// (here one that takes an advisory lock each time it is called, so each call leaves a mark
/// in pg_locks) is never run by the mirror, called directly, qualified, behind an operator, or
/// inside a view the statement reads (under another view);
/// a STABLE one is compared as before.
#[tokio::test]
async fn a_volatile_function_of_the_applications_is_never_run() {
    let (db, id) = setup("mirror_volatile", true).await;
    let id = id.unwrap();
    db.client()
        .batch_execute(
            "CREATE SCHEMA app;
             CREATE FUNCTION app.counted(int) RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_lock(8675309); RETURN $1; END $$;
             CREATE FUNCTION public.counted_too(int) RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_lock(8675309); RETURN $1; END $$;
             CREATE FUNCTION app.plus(int, int) RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_lock(8675309); RETURN $1 + $2; END $$;
             CREATE OPERATOR app.#@# (LEFTARG = int, RIGHTARG = int, FUNCTION = app.plus);
             CREATE FUNCTION app.tax(int) RETURNS int LANGUAGE sql STABLE AS 'SELECT $1 / 10';
             CREATE VIEW app.counting AS SELECT id, app.counted(balance) AS b FROM accounts;
             CREATE VIEW app.over_counting AS SELECT id FROM app.counting;",
        )
        .await
        .unwrap();
    let metrics = Metrics::new();
    let mirror = start(&db, 64, &metrics);
    active(&mirror, Duration::from_secs(10)).await;
    connected(&db).await;
    mirror.offer(simple(
        "SELECT id, app.counted(balance) FROM accounts WHERE id = 3",
    ));
    mirror.offer(simple(
        "SELECT id, counted_too(balance) FROM accounts WHERE id = 4",
    ));
    mirror.offer(simple(
        "SELECT id FROM accounts WHERE balance OPERATOR(app.#@#) 1 > 5 ORDER BY id",
    ));
    mirror.offer(simple(
        "SELECT id, app.tax(balance) FROM accounts WHERE id = 5",
    ));
    // A view, under a view, whose definition calls one.
    mirror.offer(simple(
        "SELECT a.id FROM accounts a JOIN app.over_counting v ON v.id = a.id WHERE a.id = 6",
    ));
    counted(
        db.client(),
        id,
        Counts {
            comparisons: 1,
            skipped: 4,
            ..Counts::default()
        },
    )
    .await;
    let calls: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 8675309",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(calls, 0, "a volatile function of the application's ran");
    assert_eq!(metrics.mirror_errors.load(Relaxed), 0);
}

/// Issue 13: the client's statement runs as the client's own role. A sample from a role that
/// may not read `accounts` is skipped (tandem's role could read it); one from a role that may
/// is compared.
#[tokio::test]
async fn the_clients_read_runs_as_the_clients_role() {
    let (db, id) = setup("mirror_role", true).await;
    let id = id.unwrap();
    let (nosy, reader) = (
        format!("nosy_{}", std::process::id()),
        format!("reader_{}", std::process::id()),
    );
    db.client()
        .batch_execute(&format!(
            "CREATE ROLE {nosy}; CREATE ROLE {reader}; GRANT SELECT ON accounts TO {reader};"
        ))
        .await
        .unwrap();
    let metrics = Metrics::new();
    let mirror = start(&db, 64, &metrics);
    active(&mirror, Duration::from_secs(10)).await;
    let as_role = |role: &str| Sample {
        role: role.into(),
        ..simple("SELECT id, balance FROM accounts WHERE id = 6")
    };
    mirror.offer(as_role(&nosy));
    mirror.offer(as_role(&reader));
    counted(
        db.client(),
        id,
        Counts {
            comparisons: 1,
            skipped: 1,
            ..Counts::default()
        },
    )
    .await;
    drop(mirror);
    db.client()
        .batch_execute(&format!(
            "DROP OWNED BY {reader}; DROP ROLE {nosy}; DROP ROLE {reader};"
        ))
        .await
        .unwrap();
}
