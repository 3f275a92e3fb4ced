//! The executor's side of `tandem proxy`, on a real PostgreSQL: the mirror views the proxies
//! compare reads against (equal to the live table, row for row, before and after cutover;
//! gone once the migration ends), the cutover hold through the proxy's real control loop
//! (`proxy::control::run`, in-process, against the test database), the fallback when a
//! registered proxy never answers, and verification's dual-read gate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::executor::{Event, Executor, Observer, Options};
use engine::hooks::ProxyHold;
use engine::state::Phase;
use engine::EngineError;
use fixtures::pg::TestDb;
use planner::plan::{self, Plan, PlanSource, Strategy, Target};
use proxy::control::{self, ControlArgs};
use proxy::metrics::Metrics;
use proxy::mirror::Mirror;
use proxy::traffic::Traffic;
use proxy::upstream::{Addr, Upstream};
use tokio_postgres::Client;

const TABLE: &str = "CREATE TABLE items (
    id int PRIMARY KEY,
    \"Qty\" int NOT NULL,
    note text,
    price numeric(10, 2),
    note_len int GENERATED ALWAYS AS (length(note)) STORED
);
INSERT INTO items (id, \"Qty\", note, price)
SELECT g, g % 97, CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END, g / 7.0
  FROM generate_series(1, 2000) g;";

const CHANGE: &str =
    "ALTER TABLE items ALTER id TYPE bigint, ALTER \"Qty\" TYPE bigint, ALTER price TYPE numeric(14, 3)";

/// Await `fut`, failing the test (instead of hanging it) after `secs` seconds.
async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs} s"),
    }
}

/// Plan `sql` against the live schema (as `tandem plan --sql` does) with the dual-read
/// threshold `dual_read_min`, install the bookkeeping and submit it.
async fn submit(db: &TestDb, sql: &str, dual_read_min: u64) -> i64 {
    let c = db.client();
    let live = engine::introspect(c).await.expect("introspect");
    let database = engine::database_identity(c).await.expect("identity");
    let target = Target {
        live: &live,
        database,
        pg_version: 15,
        in_place_below: 0,
    };
    let mut plan: Plan = plan::from_sql(&target, PlanSource::new("sql", "-", sql), sql);
    assert!(
        plan.steps.iter().any(|s| s.strategy == Strategy::Shadow),
        "`{sql}` should be a shadow step: {:#?}",
        plan.steps
    );
    plan.dual_read_min = dual_read_min;
    let mut c = db.connect().await;
    engine::state::install(&mut c).await.expect("install");
    engine::state::submit(&c, &plan, None)
        .await
        .expect("submit")
}

/// An observer printing every event (shown when a test fails) and keeping them.
fn observer(tag: &str) -> (Observer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let tag = tag.to_string();
    let t0 = Instant::now();
    let o: Observer = Arc::new(move |e: &Event| {
        let line = format!("{e:?}");
        eprintln!("[{tag} {:>7.3}s] {line}", t0.elapsed().as_secs_f64());
        keep.lock().unwrap().push(line);
    });
    (o, seen)
}

async fn executor(db: &TestDb, id: i64, opts: Options, hold: bool) -> Executor {
    let (o, _) = observer(&format!("m{id}"));
    let ex = Executor::open(&db.config(), id, opts, Box::new(gates::Open), o)
        .await
        .unwrap_or_else(|e| panic!("open the executor: {e}"));
    if hold {
        ex.with_hold(Box::new(ProxyHold::new(db.config())))
    } else {
        ex
    }
}

fn until(phase: Phase) -> Options {
    Options {
        until: phase,
        ..Options::default()
    }
}

/// Run migration `id` up to `phase` (from wherever it is).
async fn apply_until(db: &TestDb, id: i64, phase: Phase) -> Phase {
    let mut ex = executor(db, id, until(phase), true).await;
    let got = within(60, "apply", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply up to {phase}: {e}"));
    ex.close().await;
    got
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// `(name, format_type)` of a relation's columns, in order.
async fn columns(c: &Client, relation: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
          WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[&relation],
    )
    .await
    .unwrap_or_else(|e| panic!("columns of {relation}: {e}"))
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The mirror view of migration `id` and `mirror_targets`' row for it, if any:
/// `(mirror_view, against, key_columns)`.
async fn target(c: &Client, id: i64) -> (Option<String>, Option<(String, Vec<String>)>) {
    let view: Option<String> = c
        .query_one(
            "SELECT mirror_view FROM tandem.shadow_tables WHERE migration_id = $1",
            &[&id],
        )
        .await
        .expect("read shadow_tables")
        .get(0);
    let t = c
        .query_opt(
            "SELECT against, key_columns FROM tandem.mirror_targets WHERE migration_id = $1",
            &[&id],
        )
        .await
        .expect("read mirror_targets")
        .map(|r| (r.get(0), r.get(1)));
    (view, t)
}

/// The view holds exactly the live table's rows, with its column names and types.
async fn assert_mirrors(c: &Client, view: &str, what: &str) {
    assert_eq!(
        columns(c, view).await,
        columns(c, "items").await,
        "{what}: the view has the live table's shape"
    );
    for (a, b) in [("items", view), (view, "items")] {
        let extra: i64 = one(
            c,
            &format!("SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) x"),
        )
        .await;
        assert_eq!(extra, 0, "{what}: rows of {a} not in {b}");
    }
    let n: i64 = one(c, &format!("SELECT count(*) FROM {view}")).await;
    assert!(n > 1000, "{what}: the view has the rows ({n})");
}

/// Writes after the copy reach the view through the triggers (`n`: a fresh number).
async fn write_some(c: &Client, n: i64) {
    c.execute(
        "INSERT INTO items (id, \"Qty\", note) VALUES (5000 + $1::int8 * 2, 1, 'late'), (5001 + $1::int8 * 2, 2, NULL)",
        &[&n],
    )
    .await
    .expect("insert");
    c.execute(
        "UPDATE items SET note = 'changed ' || $1::int8, price = price + 1 WHERE id % 50 = $1::int8",
        &[&n],
    )
    .await
    .expect("update");
    c.execute("DELETE FROM items WHERE id % 77 = $1::int8", &[&n])
        .await
        .expect("delete");
}

async fn gone(c: &Client, relation: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NULL", &[&relation])
        .await
        .expect("to_regclass")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_views_equal_the_live_table_then_go_at_rollback() {
    let db = TestDb::new("proxy_hold_views_rollback").await;
    let c = db.client();
    c.batch_execute(TABLE).await.unwrap();
    let id = submit(&db, CHANGE, 0).await;

    // Before the copy is complete there is nothing to compare.
    assert_eq!(
        apply_until(&db, id, Phase::DualWrite).await,
        Phase::DualWrite
    );
    assert_eq!(target(c, id).await, (None, None));

    assert_eq!(apply_until(&db, id, Phase::Backfill).await, Phase::Backfill);
    let (view, t) = target(c, id).await;
    let view = view.expect("a mirror view after backfill");
    let oid: u32 = one(c, "SELECT 'items'::regclass::oid").await;
    assert_eq!(view, format!("\"tandem\".\"mirror_m{id}_t{oid}\""));
    assert_eq!(t, Some(("shadow".to_string(), vec!["id".to_string()])));
    assert_mirrors(c, &view, "after backfill").await;
    write_some(c, 1).await;
    assert_mirrors(c, &view, "after backfill and more writes").await;

    // The view is not part of the user's schema.
    let schema = engine::introspect(c).await.expect("introspect");
    assert!(
        !format!("{schema:?}").contains("mirror_m"),
        "introspection must not see tandem's views"
    );

    assert_eq!(apply_until(&db, id, Phase::Verify).await, Phase::Verify);
    assert_eq!(target(c, id).await.0.as_deref(), Some(view.as_str()));

    assert_eq!(
        apply_until(&db, id, Phase::Cutover).await,
        Phase::RollbackWindow
    );
    let (post, t) = target(c, id).await;
    let post = post.expect("a mirror view in the rollback window");
    assert_eq!(t, Some(("old".to_string(), vec!["id".to_string()])));
    assert_eq!(
        columns(c, "items").await[0],
        ("id".to_string(), "bigint".to_string())
    );
    assert_mirrors(c, &post, "after cutover").await;
    write_some(c, 2).await;
    assert_mirrors(c, &post, "after cutover and more writes").await;

    let mut ex = executor(&db, id, Options::default(), true).await;
    assert!(!within(60, "rollback", ex.rollback())
        .await
        .expect("rollback"));
    ex.close().await;
    assert_eq!(target(c, id).await, (None, None));
    assert!(gone(c, &post).await, "the view is dropped at rollback");
    assert_eq!(
        columns(c, "items").await[0],
        ("id".to_string(), "integer".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_views_go_at_finalize_and_abandon_and_using_turns_dual_reads_off() {
    let db = TestDb::new("proxy_hold_views_finalize").await;
    let c = db.client();
    c.batch_execute(TABLE).await.unwrap();

    // A USING expression cannot be inverted: no view before cutover, and an event says why;
    // the forward mapping still gives one in the rollback window.
    let id = submit(
        &db,
        "ALTER TABLE items ALTER \"Qty\" TYPE bigint USING \"Qty\" * 10",
        0,
    )
    .await;
    assert_eq!(apply_until(&db, id, Phase::Backfill).await, Phase::Backfill);
    assert_eq!(target(c, id).await, (None, None));
    let why: String = c
        .query_one(
            "SELECT detail ->> 'reason' FROM tandem.events WHERE migration_id = $1 AND event = 'dual reads off'",
            &[&id],
        )
        .await
        .expect("a 'dual reads off' event")
        .get(0);
    assert!(why.contains("column Qty has no counterpart"), "{why}");
    assert_eq!(
        apply_until(&db, id, Phase::Cutover).await,
        Phase::RollbackWindow
    );
    let post = target(c, id).await.0.expect("a view after cutover");
    assert_mirrors(c, &post, "USING, after cutover").await;
    let tens: i64 = one(
        c,
        &format!("SELECT count(*) FROM {post} WHERE \"Qty\" % 10 <> 0"),
    )
    .await;
    assert_eq!(tens, 0, "the view applies the USING expression");

    let mut ex = executor(&db, id, Options::default(), false).await;
    within(60, "finalize", ex.finalize())
        .await
        .expect("finalize");
    ex.close().await;
    assert_eq!(target(c, id).await, (None, None));
    assert!(gone(c, &post).await, "the view is dropped at finalize");

    // Abandoned before cutover: the view goes with the shadow.
    let id = submit(&db, "ALTER TABLE items ALTER price TYPE numeric(16, 4)", 0).await;
    assert_eq!(apply_until(&db, id, Phase::Verify).await, Phase::Verify);
    let view = target(c, id).await.0.expect("a view after backfill");
    assert_mirrors(c, &view, "second migration").await;
    let mut ex = executor(&db, id, Options::default(), false).await;
    assert!(within(60, "abandon", ex.rollback()).await.expect("abandon"));
    ex.close().await;
    assert_eq!(target(c, id).await, (None, None));
    assert!(gone(c, &view).await, "the view is dropped when abandoned");
    let left: i64 = one(c, "SELECT count(*) FROM tandem.mirror_targets").await;
    assert_eq!(left, 0);
}

/// The test database as the proxy's upstream.
fn upstream(db: &TestDb) -> Upstream {
    let config = db.config();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let addr = match config.get_hosts().first().expect("a host") {
        tokio_postgres::config::Host::Tcp(h) => Addr::Tcp {
            host: h.clone(),
            port,
        },
        tokio_postgres::config::Host::Unix(p) => Addr::Unix {
            dir: p.clone(),
            port,
        },
    };
    Upstream::plain(
        addr,
        config.get_user().expect("a user").to_string(),
        db.name().to_string(),
    )
}

/// The events of migration `id` named `event`, with their detail.
async fn events(c: &Client, id: i64, event: &str) -> Vec<serde_json::Value> {
    c.query(
        "SELECT coalesce(detail, 'null') FROM tandem.events WHERE migration_id = $1 AND event = $2 ORDER BY id",
        &[&id, &event],
    )
    .await
    .expect("read events")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !check().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_waits_for_a_busy_session_and_holds_new_ones_through_the_proxy() {
    let db = TestDb::new("proxy_hold_cutover").await;
    let c = db.client();
    c.batch_execute(TABLE).await.unwrap();
    let id = submit(&db, CHANGE, 0).await;
    assert_eq!(apply_until(&db, id, Phase::Verify).await, Phase::Verify);

    // The proxy's control loop, for real, against this database.
    let traffic = Traffic::new(Duration::from_secs(2), Metrics::new());
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let control = tokio::spawn(control::run(
        ControlArgs {
            upstream: upstream(&db),
            password: None,
            proxy_id: "test-proxy".into(),
            listen: "127.0.0.1:0".into(),
            traffic: traffic.clone(),
            mirror: Mirror::disabled(),
        },
        async move {
            let _ = stop.await;
        },
    ));
    wait_until("the proxy registers", Duration::from_secs(10), async || {
        one::<i64>(c, "SELECT count(*) FROM tandem.proxies WHERE id = 'test-proxy' AND heartbeat_at > now() - interval '5 seconds'").await == 1
    })
    .await;

    // A client session inside a transaction.
    assert_eq!(traffic.begin().await, Duration::ZERO);
    let mut ex = executor(&db, id, until(Phase::Cutover), true).await;
    let cutover = tokio::spawn(async move {
        let r = ex.apply().await;
        ex.close().await;
        r
    });
    wait_until(
        "the proxy is asked to hold",
        Duration::from_secs(10),
        async || traffic.is_held(),
    )
    .await;
    let held_at = Instant::now();
    // A new transaction waits while the hold is on.
    let t2 = traffic.clone();
    let newcomer = tokio::spawn(async move {
        let waited = t2.begin().await;
        t2.end();
        waited
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let acks: i64 = one(c, "SELECT count(*) FROM tandem.proxy_acks").await;
    assert_eq!(acks, 0, "no acknowledgement while a session is busy");
    assert!(
        !newcomer.is_finished(),
        "a new transaction waits during the hold"
    );
    traffic.end();

    let phase = within(30, "cutover", cutover)
        .await
        .expect("the cutover task")
        .unwrap_or_else(|e| panic!("cutover: {e}"));
    assert_eq!(phase, Phase::RollbackWindow);
    // The executor released the hold (well before the proxy's own 2 s limit).
    wait_until(
        "the hold is released",
        Duration::from_millis(500),
        async || !traffic.is_held(),
    )
    .await;
    assert!(
        held_at.elapsed() < Duration::from_millis(1500),
        "released by the executor, not by hold_max: {:?}",
        held_at.elapsed()
    );
    let waited = within(5, "the held transaction", newcomer).await.unwrap();
    assert!(
        waited >= Duration::from_millis(100),
        "it waited: {waited:?}"
    );

    let held = events(c, id, "held").await;
    assert_eq!(held.len(), 1, "one attempt, held: {held:?}");
    assert_eq!(held[0]["proxies"], 1);
    assert_eq!(held[0]["held"], 1);
    let done = events(c, id, "done").await;
    assert!(
        done.iter().any(|d| d["proxy_held"] == true),
        "the cutover records it was held: {done:?}"
    );
    let acks: i64 = one(c, "SELECT count(*) FROM tandem.proxy_acks").await;
    assert_eq!(acks, 0, "the release deletes the acknowledgements");

    let _ = stop_tx.send(());
    within(10, "the control loop stops", control).await.unwrap();
    let left: i64 = one(c, "SELECT count(*) FROM tandem.proxies").await;
    assert_eq!(left, 0, "the proxy deregisters at shutdown");
}

/// Issue 13: any role can `NOTIFY tandem_proxy` (no privilege is needed to notify a channel).
/// A notification is only a doorbell: the proxy acts on rows of `tandem.proxy_signals`,
/// which only tandem's role can write. Forged holds, releases and target changes, in the old
/// payload grammar and as a made-up signal number, hold nobody, acknowledge nothing, reload
/// nothing, and are counted. Before: `hold 1 <token> 5000` held every new transaction of every
/// proxy for up to its hold_max, from any role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_notifications_change_nothing_and_are_counted() {
    let db = TestDb::new("proxy_hold_forged").await;
    let c = db.client();
    c.batch_execute(TABLE).await.unwrap();
    submit(&db, CHANGE, 0).await;
    let metrics = Metrics::new();
    let traffic = Traffic::new(Duration::from_secs(5), metrics.clone());
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let control = tokio::spawn(control::run(
        ControlArgs {
            upstream: upstream(&db),
            password: None,
            proxy_id: "forged-proxy".into(),
            listen: "127.0.0.1:0".into(),
            traffic: traffic.clone(),
            mirror: Mirror::disabled(),
        },
        async move {
            let _ = stop.await;
        },
    ));
    wait_until("the proxy registers", Duration::from_secs(10), async || {
        one::<i64>(
            c,
            "SELECT count(*) FROM tandem.proxies WHERE id = 'forged-proxy'",
        )
        .await
            == 1
    })
    .await;
    // A role with no right on tandem's schema sends them (roles are the cluster's: one
    // name per test process).
    let forger = format!("forger_{}", std::process::id());
    c.batch_execute(&format!("CREATE ROLE {forger}"))
        .await
        .unwrap();
    let epoch = traffic.epoch();
    c.batch_execute(&format!(
        "SET ROLE {forger};
         NOTIFY tandem_proxy, 'hold 1 f0f0f0f0 5000';
         NOTIFY tandem_proxy, 'targets';
         NOTIFY tandem_proxy, 'release 1 f0f0f0f0';
         NOTIFY tandem_proxy, '999999';
         RESET ROLE;"
    ))
    .await
    .unwrap();
    wait_until(
        "the four notifications are counted",
        Duration::from_secs(5),
        async || {
            metrics
                .control_ignored
                .load(std::sync::atomic::Ordering::Relaxed)
                == 4
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!traffic.is_held(), "a forged hold held the proxy's traffic");
    assert_eq!(
        traffic.epoch(),
        epoch,
        "a forged target change was acted on"
    );
    assert_eq!(
        traffic.begin().await,
        Duration::ZERO,
        "a new transaction waited"
    );
    traffic.end();
    assert_eq!(
        one::<i64>(c, "SELECT count(*) FROM tandem.proxy_acks").await,
        0,
        "a forged hold was acknowledged"
    );
    assert!(metrics
        .render()
        .contains("tandem_proxy_control_notifications_ignored_total 4"));
    // And the forger cannot write a signal row either.
    let forged = c
        .batch_execute(
            &format!("SET ROLE {forger}; INSERT INTO tandem.proxy_signals (kind, migration_id, token, max_ms) VALUES ('hold', 1, 'f1', 5000)"),
        )
        .await;
    assert!(forged.is_err(), "a role outside tandem wrote a signal");
    c.batch_execute(&format!("RESET ROLE; DROP ROLE {forger}"))
        .await
        .unwrap();
    let _ = stop_tx.send(());
    within(10, "the control loop stops", control).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_never_answers_costs_one_second_then_a_plain_cutover() {
    let db = TestDb::new("proxy_hold_fallback").await;
    let c = db.client();
    c.batch_execute(TABLE).await.unwrap();
    let id = submit(&db, CHANGE, 0).await;
    assert_eq!(apply_until(&db, id, Phase::Verify).await, Phase::Verify);

    // Registered and heartbeating, but never acknowledging.
    let beat = db.connect().await;
    beat.batch_execute(
        "INSERT INTO tandem.proxies (id, host, pid, listen) VALUES ('mute', 'nowhere', 1, '-')",
    )
    .await
    .unwrap();
    let heartbeat = tokio::spawn(async move {
        loop {
            let _ = beat
                .batch_execute("UPDATE tandem.proxies SET heartbeat_at = now() WHERE id = 'mute'")
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    let t0 = Instant::now();
    assert_eq!(
        apply_until(&db, id, Phase::Cutover).await,
        Phase::RollbackWindow
    );
    let took = t0.elapsed();
    heartbeat.abort();

    let fell = events(c, id, "hold fell back").await;
    assert_eq!(fell.len(), 1, "one attempt, fell back: {fell:?}");
    assert_eq!(fell[0]["proxies"], 1);
    assert_eq!(fell[0]["held"], 0);
    let waited = fell[0]["waited_ms"].as_u64().unwrap();
    assert!((1000..1500).contains(&waited), "waited {waited} ms");
    assert!(
        fell[0]["detail"].as_str().unwrap().contains("mute"),
        "{:?}",
        fell[0]
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let done = events(c, id, "done").await;
    assert!(done.iter().any(|d| d["proxy_held"] == false), "{done:?}");
}

async fn waiting_for(c: &Client, id: i64) -> String {
    c.query_one(
        "SELECT coalesce(waiting_for, '') FROM tandem.migrations WHERE id = $1",
        &[&id],
    )
    .await
    .expect("read waiting_for")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_waits_for_dual_reads_and_fails_on_a_mismatch() {
    let db = TestDb::new("proxy_hold_verify_gate").await;
    let c = db.client();
    c.batch_execute(TABLE).await.unwrap();

    // Passes once the proxies' comparisons reach the threshold.
    let id = submit(&db, CHANGE, 5).await;
    let stored: i64 = c
        .query_one(
            "SELECT dual_read_min FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 5);
    assert_eq!(apply_until(&db, id, Phase::Backfill).await, Phase::Backfill);
    let mut ex = executor(&db, id, until(Phase::Verify), false).await;
    let verify = tokio::spawn(async move {
        let r = ex.apply().await;
        ex.close().await;
        r
    });
    wait_until(
        "verify waits for dual reads",
        Duration::from_secs(30),
        async || {
            waiting_for(c, id)
                .await
                .contains("dual reads: 0 of 5 comparisons, 0 mismatches")
        },
    )
    .await;
    c.execute(
        "INSERT INTO tandem.dual_reads (migration_id, proxy_id, against, comparisons, skipped) VALUES ($1, 'p1', 'shadow', 3, 4)",
        &[&id],
    )
    .await
    .unwrap();
    wait_until("it counts them", Duration::from_secs(10), async || {
        waiting_for(c, id).await.contains("3 of 5")
    })
    .await;
    assert!(!verify.is_finished());
    // Comparisons against the other side do not count.
    c.execute(
        "INSERT INTO tandem.dual_reads (migration_id, proxy_id, against, comparisons) VALUES ($1, 'p2', 'old', 50)",
        &[&id],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !verify.is_finished(),
        "'old' comparisons are not the shadow's"
    );
    c.execute(
        "INSERT INTO tandem.dual_reads (migration_id, proxy_id, against, comparisons) VALUES ($1, 'p2', 'shadow', 2)",
        &[&id],
    )
    .await
    .unwrap();
    let phase = within(30, "verify", verify)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("verify: {e}"));
    assert_eq!(phase, Phase::Verify);
    let result: serde_json::Value = c
        .query_one(
            "SELECT verify_result FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(result["passed"], true);
    assert_eq!(result["dual_reads"]["comparisons"], 5);
    let status = engine::status::status(c, Some(id)).await.unwrap();
    assert_eq!(status[0].dual_read_min, 5);
    let shadow = status[0]
        .dual_reads
        .iter()
        .find(|d| d.against == "shadow")
        .expect("shadow counts");
    assert_eq!((shadow.comparisons, shadow.skipped), (5, 4));
    let mut ex = executor(&db, id, Options::default(), false).await;
    assert!(within(60, "abandon", ex.rollback()).await.unwrap());
    ex.close().await;

    // A mismatch fails verification, with the drift as the example.
    let id = submit(&db, "ALTER TABLE items ALTER price TYPE numeric(16, 4)", 5).await;
    assert_eq!(apply_until(&db, id, Phase::Backfill).await, Phase::Backfill);
    c.execute(
        "INSERT INTO tandem.dual_reads (migration_id, proxy_id, against, comparisons, mismatches) VALUES ($1, 'p1', 'shadow', 9, 1)",
        &[&id],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO tandem.drift (migration_id, proxy_id, against, fingerprint, statement, rows_live, rows_other, example_key)
         VALUES ($1, 'p1', 'shadow', 'f1', 'SELECT * FROM items WHERE id = $1', 1, 0, '(42)')",
        &[&id],
    )
    .await
    .unwrap();
    let mut ex = executor(&db, id, until(Phase::Verify), false).await;
    let err = within(60, "verify", ex.apply()).await.unwrap_err();
    ex.close().await;
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Verify(_)), "{msg}");
    // The statement and where the key is, never the key's values (the table's data).
    assert!(
        msg.contains("SELECT * FROM items WHERE id = $1")
            && msg.contains("key in tandem.drift")
            && !msg.contains("(42)"),
        "{msg}"
    );
    assert!(
        msg.contains("tandem rollback"),
        "says how to recover: {msg}"
    );
    let status = engine::status::status(c, Some(id)).await.unwrap();
    assert_eq!(
        status[0].phase, "backfill",
        "the migration stays in dual-write"
    );
    assert_eq!(status[0].drift.len(), 1);

    // Nothing comes: a timeout refuses, saying to route reads through the proxy.
    c.execute(
        "UPDATE tandem.dual_reads SET mismatches = 0, comparisons = 0 WHERE migration_id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let opts = Options {
        until: Phase::Verify,
        dual_read_timeout: Duration::from_secs(1),
        ..Options::default()
    };
    let mut ex = executor(&db, id, opts, false).await;
    let err = within(60, "verify", ex.apply()).await.unwrap_err();
    ex.close().await;
    let msg = err.to_string();
    assert!(
        msg.contains("tandem proxy") && msg.contains("--dual-read-min"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_carries_the_dual_read_threshold_to_submit_and_status() {
    use tests::migrate::{read_plan, scratch_dir, status_json, submit as submit_file};
    let db = TestDb::new("proxy_hold_cli_threshold").await;
    db.client().batch_execute(TABLE).await.unwrap();
    let url = db.url();
    let dir = scratch_dir("proxy_hold_threshold");
    let plain = dir.join("plain.json");
    let gated = dir.join("gated.json");
    for (out, extra) in [(&plain, None), (&gated, Some("7"))] {
        let out = out.to_str().unwrap();
        let mut args = vec![
            "--database-url",
            &url,
            "plan",
            "--in-place-below",
            "0",
            "--sql",
            CHANGE,
            "-o",
            out,
        ];
        if let Some(n) = extra {
            args.extend(["--dual-read-min", n]);
        }
        let run = tests::tandem(&args);
        assert!(run.code == 0 || run.code == 3, "{run:?}");
    }
    // Absent when 0: plans made without the flag keep their bytes (and digest).
    assert!(read_plan(&plain).get("dual_read_min").is_none());
    assert_eq!(read_plan(&gated)["dual_read_min"], 7);

    let id = submit_file(&url, &gated, &[]);
    let status = status_json(&url, id);
    assert_eq!(status["dual_read_min"], 7);
    assert_eq!(status["live_proxies"], 0);
    assert_eq!(status["dual_reads"], serde_json::json!([]));
    let text = tests::migrate::on(&url, "status", id, &[]).expect(0);
    assert!(
        text.stdout
            .contains("dual reads: none yet (verification waits for 7); 0 live proxies"),
        "{}",
        text.stdout
    );
    let _ = std::fs::remove_dir_all(dir);
}
