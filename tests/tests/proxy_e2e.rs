//! The proxy's end-to-end claims, with every part real: `tandem proxy` processes (started by
//! `tests::proxy`) in front of a test database of their own, clients authenticating through
//! them end to end with SCRAM over TCP, and the real `tandem plan`, `submit`, `apply`,
//! `status` and `rollback` against the database directly (so swaps ask the registered
//! proxies to hold, through `ProxyHold`).
//!
//! - Two proxies, the bank load split across them, a full migration (`bank_accounts.abalance`
//!   int to bigint, with a dual-read threshold) through cutover, a moment in the rollback
//!   window, then rollback: no client error, the bank invariant holds, every attempt of both
//!   swaps was held by both proxies, and both proxies compared reads against the shadow
//!   before cutover and against the old table after, with no mismatch and no drift.
//! - Drift planted behind tandem's back (its forward trigger disabled, then balances changed
//!   through the proxy) is caught by the mirror, recorded with a key, shown by `status`, and
//!   fails verification's dual-read gate; the same migration done right, with the same gate,
//!   passes under the bank load through the proxy.
//! - pgbench with prepared statements through the proxy while `pgbench_accounts.abalance`,
//!   which it selects, changes type under them: select-only across the cutover and the
//!   rollback, and TPC-B (the SELECT inside a transaction block) across the cutover. No
//!   client may be aborted and no transaction may fail.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fixtures::load::{bank, Bank, Load, LoadOptions, Report, Workload};
use fixtures::pg::TestDb;
use serde_json::Value;
use tests::migrate::{apply, on, read_plan, scratch_dir, status_json, submit};
use tests::proxy::{client_command, tcp_endpoint, wait_limited, Endpoint, PassFile, Proxy};
use tests::Run;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

/// The change every migration here makes: a widening the mirror can compare (no USING).
const BANK_CHANGE: &str = "ALTER TABLE bank_accounts ALTER abalance TYPE bigint";
const PGBENCH_CHANGE: &str = "ALTER TABLE pgbench_accounts ALTER abalance TYPE bigint";
/// Accounts in the bank: enough for a real backfill, small enough for a 2-core machine.
const ACCOUNTS: i64 = 20_000;
/// Every read on a migrating table is compared.
const MIRROR_ALL: &str = "mirror_sample = 1.0";
/// The plans' dual-read threshold: verification waits for this many clean comparisons.
const DUAL_READ_MIN: u64 = 50;
/// How long one test may take; a hang fails it rather than blocking CI.
const TEST_LIMIT: Duration = Duration::from_secs(80);
/// How long the proxies may take to report what they compared.
const REPORT_LIMIT: Duration = Duration::from_secs(20);

/// Fail the test (instead of hanging) when `fut` takes longer than `limit`.
async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("the test did not finish within {limit:?}"),
    }
}

/// Run a blocking `tandem` helper off the runtime's threads (the load runs on them).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the blocking task ran")
}

/// Poll `check` every `every` until it returns `Some`, or fail saying `what`.
async fn poll<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

async fn scalar(c: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
    c.query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// A test database with tandem's bookkeeping installed, as on a database tandem manages.
async fn database(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    engine::state::install(&mut db.connect().await)
        .await
        .expect("install tandem's bookkeeping");
    db
}

/// A proxy in front of `db` with `toml` settings, registered in `tandem.proxies`; its id there.
async fn registered_proxy(db: &TestDb, toml: &str) -> (Proxy, String) {
    let mut proxy = Proxy::for_db_with(db, toml, &[]);
    proxy
        .wait_registered(db.client(), Duration::from_secs(10))
        .await;
    let id = db
        .client()
        .query_one(
            "SELECT id FROM tandem.proxies WHERE pid = $1",
            &[&(proxy.pid() as i32)],
        )
        .await
        .expect("the proxy's row")
        .get(0);
    (proxy, id)
}

/// Client settings for `db` through `proxy`: TCP, SCRAM with the cluster's password (the
/// proxy relays the authentication to PostgreSQL).
fn via(db: &TestDb, proxy: &Proxy) -> Config {
    let (endpoint, password) = tcp_endpoint(db);
    let mut config = Config::new();
    config
        .host(&endpoint.host)
        .port(proxy.port())
        .user(&endpoint.user)
        .dbname(&endpoint.dbname)
        .password(password)
        .application_name("tandem e2e client");
    config
}

async fn connect(config: &Config) -> Client {
    let (client, conn) = config
        .connect(NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(conn);
    client
}

/// `tandem plan --sql CHANGE` (with `--dual-read-min N` unless 0), then `tandem submit`:
/// the migration id.
async fn plan_and_submit(url: &str, dir: &Path, name: &str, change: &str, min: u64) -> i64 {
    let plan = dir.join(format!("{name}.json"));
    let (url, change) = (url.to_string(), change.to_string());
    blocking(move || {
        let out = plan.to_str().expect("utf-8 path");
        let min_arg = min.to_string();
        let mut args = vec![
            "--database-url",
            &url,
            "plan",
            "--in-place-below",
            "0",
            "--sql",
            &change,
            "-o",
            out,
        ];
        if min > 0 {
            args.extend(["--dual-read-min", &min_arg]);
        }
        tests::tandem(&args).expect(0);
        let stored = read_plan(&plan)["dual_read_min"].as_u64().unwrap_or(0);
        assert_eq!(stored, min, "the plan's dual-read threshold");
        submit(&url, &plan, &[])
    })
    .await
}

/// `tandem apply ID --yes EXTRA`, off the runtime.
async fn apply_bg(url: &str, id: i64, extra: &[&str]) -> Run {
    let url = url.to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        apply(&url, id, &extra)
    })
    .await
}

/// `tandem rollback ID --yes`, off the runtime.
async fn rollback_bg(url: &str, id: i64) -> Run {
    let url = url.to_string();
    blocking(move || on(&url, "rollback", id, &["--yes"])).await
}

/// `tandem status ID --json`, off the runtime.
async fn status_bg(url: &str, id: i64) -> Value {
    let url = url.to_string();
    blocking(move || status_json(&url, id)).await
}

async fn phase(c: &Client, id: i64) -> String {
    c.query_one("SELECT phase FROM tandem.migrations WHERE id = $1", &[&id])
        .await
        .expect("read the phase")
        .get(0)
}

/// One row of `tandem.dual_reads`.
#[derive(Debug)]
struct DualReads {
    proxy: String,
    against: String,
    comparisons: i64,
    mismatches: i64,
    skipped: i64,
    dropped: i64,
}

impl std::fmt::Display for DualReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "proxy {} against {}: {} comparisons, {} mismatches, {} skipped, {} dropped",
            self.proxy, self.against, self.comparisons, self.mismatches, self.skipped, self.dropped
        )
    }
}

/// The rows, one a line.
fn lines(rows: &[DualReads]) -> String {
    rows.iter().map(|r| format!("\n  {r}")).collect()
}

async fn dual_reads(c: &Client, id: i64) -> Vec<DualReads> {
    c.query(
        "SELECT proxy_id, against, comparisons, mismatches, skipped, dropped
           FROM tandem.dual_reads WHERE migration_id = $1 ORDER BY proxy_id, against",
        &[&id],
    )
    .await
    .expect("read tandem.dual_reads")
    .iter()
    .map(|r| DualReads {
        proxy: r.get(0),
        against: r.get(1),
        comparisons: r.get(2),
        mismatches: r.get(3),
        skipped: r.get(4),
        dropped: r.get(5),
    })
    .collect()
}

/// Comparisons `proxy` made against `against` (`None`: every proxy).
fn compared(rows: &[DualReads], proxy: Option<&str>, against: &str) -> i64 {
    rows.iter()
        .filter(|r| r.against == against && proxy.is_none_or(|p| r.proxy == p))
        .map(|r| r.comparisons)
        .sum()
}

/// One row of `tandem.drift`.
#[derive(Debug)]
struct Drift {
    against: String,
    statement: String,
    rows_live: i64,
    rows_other: i64,
    example_key: Option<String>,
}

async fn drift(c: &Client, id: i64) -> Vec<Drift> {
    c.query(
        "SELECT against, statement, rows_live, rows_other, example_key
           FROM tandem.drift WHERE migration_id = $1 ORDER BY id",
        &[&id],
    )
    .await
    .expect("read tandem.drift")
    .iter()
    .map(|r| Drift {
        against: r.get(0),
        statement: r.get(1),
        rows_live: r.get(2),
        rows_other: r.get(3),
        example_key: r.get(4),
    })
    .collect()
}

/// `(phase, event, detail)` of migration `id`'s events named in `events`, in order.
async fn events(c: &Client, id: i64, events: &[&str]) -> Vec<(String, String, Value)> {
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    c.query(
        "SELECT phase, event, coalesce(detail, 'null') FROM tandem.events
          WHERE migration_id = $1 AND event = ANY($2) ORDER BY id",
        &[&id, &events],
    )
    .await
    .expect("read tandem.events")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The bank load on `clients` connections through `proxy`, flat out.
async fn bank_load(db: &TestDb, proxy: &Proxy, clients: usize) -> Load {
    Load::start(
        via(db, proxy),
        Workload::Bank(Bank::new()),
        LoadOptions {
            clients,
            pause: None,
        },
    )
    .await
    .expect("the bank load starts through the proxy")
}

/// Stop `load`: it ran, and no client transaction failed.
async fn stop_clean(load: Load, what: &str) -> Report {
    let report = load.stop().await;
    assert!(report.transactions() > 0, "{what}: the load ran\n{report}");
    assert_eq!(
        report.error_count, 0,
        "{what}: no client transaction failed: {:?}\n{report}",
        report.errors
    );
    report
}

async fn bank_holds(db: &TestDb) {
    let check = bank::check(db.client(), &Bank::new())
        .await
        .expect("check the bank");
    assert!(check.holds(), "{check}");
}

/// Every hold of the swap recorded under `swap` ('cutover' or 'rollback') was held by all
/// `proxies`, and the attempt that committed (recorded as 'done' under `done_phase`) was one.
async fn assert_held(c: &Client, id: i64, swap: &str, done_phase: &str, proxies: usize) {
    let all = events(c, id, &["held", "hold fell back", "done", "attempt failed"]).await;
    let holds: Vec<&(String, String, Value)> = all
        .iter()
        .filter(|(p, e, _)| p == swap && (e == "held" || e == "hold fell back"))
        .collect();
    assert!(!holds.is_empty(), "{swap}: no hold was recorded: {all:#?}");
    for (_, event, detail) in &holds {
        assert!(
            event == "held" && detail["proxies"] == proxies && detail["held"] == proxies,
            "{swap}: every attempt is held by the {proxies} proxies; this one: {event} {detail}\nall events: {all:#?}"
        );
    }
    let done = all
        .iter()
        .find(|(p, e, _)| p == done_phase && e == "done")
        .map(|(_, _, d)| d)
        .unwrap_or_else(|| panic!("{swap}: no 'done' event under {done_phase}: {all:#?}"));
    assert_eq!(
        done["proxy_held"], true,
        "{swap}: the committed attempt was held: {done}\nall events: {all:#?}"
    );
    let attempt = &done["attempt"];
    assert!(
        holds.iter().any(|(_, _, d)| d["attempt"] == *attempt),
        "{swap}: the committed attempt {attempt} has its hold recorded: {all:#?}"
    );
    eprintln!(
        "{swap}: {} attempt(s), committed at attempt {attempt}, every one held by {proxies} proxies",
        holds.len()
    );
}

/// The command said that its `swap` attempts were held by both proxies (the hold report).
fn assert_reported_held(run: &Run, swap: &str) {
    let prefix = format!("{swap} attempt ");
    let reports: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with(&prefix) && (l.contains("held by") || l.contains("fell back")))
        .collect();
    assert!(
        !reports.is_empty()
            && reports
                .iter()
                .all(|l| l.contains(": held by 2 proxies in ")),
        "every {swap} attempt reports a hold by the 2 proxies:\n{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_hold_both_swaps_and_compare_both_sides_under_the_bank_load() {
    within(TEST_LIMIT, async {
        let t0 = Instant::now();
        let db = database("proxy_e2e_two_proxies").await;
        let c = db.client();
        bank::setup(c, &Bank::new(), ACCOUNTS)
            .await
            .expect("bank setup");
        let (mut a, a_id) = registered_proxy(&db, MIRROR_ALL).await;
        let (mut b, b_id) = registered_proxy(&db, MIRROR_ALL).await;
        assert_ne!(a_id, b_id);
        let url = db.url();
        let dir = scratch_dir("proxy_e2e_two_proxies");
        let id = plan_and_submit(&url, &dir, "plan", BANK_CHANGE, DUAL_READ_MIN).await;

        let loads = [bank_load(&db, &a, 2).await, bank_load(&db, &b, 2).await];
        let run = apply_bg(&url, id, &[]).await.expect(0);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        assert_reported_held(&run, "cutover");
        assert_eq!(phase(c, id).await, "rollback_window");
        eprintln!("applied through cutover at {:.1?}", t0.elapsed());

        // In the rollback window, under load: both proxies compare with the old table.
        let window = poll(
            "both proxies' comparisons against the old table",
            REPORT_LIMIT,
            Duration::from_millis(100),
            || async {
                let rows = dual_reads(c, id).await;
                [&a_id, &b_id]
                    .iter()
                    .all(|p| compared(&rows, Some(p), "old") > 0)
                    .then_some(rows)
            },
        )
        .await;
        eprintln!("in the window:{}", lines(&window));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let run = rollback_bg(&url, id).await.expect(0);
        assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
        assert_reported_held(&run, "rollback");
        eprintln!("rolled back at {:.1?}", t0.elapsed());
        // A little traffic on the table put back, then stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let [la, lb] = loads;
        let ra = stop_clean(la, "the clients of proxy a").await;
        let rb = stop_clean(lb, "the clients of proxy b").await;
        eprintln!("proxy a clients: {ra}\nproxy b clients: {rb}");
        a.assert_running();
        b.assert_running();

        bank_holds(&db).await;
        assert_eq!(phase(c, id).await, "rolled_back");
        let types: String = c
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = 'bank_accounts'::regclass AND attname = 'abalance'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(types, "integer", "the old table is back");

        assert_held(c, id, "cutover", "cutover", 2).await;
        assert_held(c, id, "rollback", "rolled_back", 2).await;

        // Both proxies compared each side, and nothing differed.
        let rows = dual_reads(c, id).await;
        eprintln!("dual reads:{}", lines(&rows));
        for p in [&a_id, &b_id] {
            for against in ["shadow", "old"] {
                assert!(
                    compared(&rows, Some(p), against) > 0,
                    "proxy {p} compared reads against the {against} table: {rows:#?}"
                );
            }
        }
        assert!(
            compared(&rows, None, "shadow") >= DUAL_READ_MIN as i64,
            "verification waited for {DUAL_READ_MIN} comparisons: {rows:#?}"
        );
        assert!(
            rows.iter().all(|r| r.mismatches == 0),
            "no comparison found a difference: {rows:#?}"
        );
        let drift = drift(c, id).await;
        assert!(drift.is_empty(), "tandem.drift is empty: {drift:#?}");
        let verify = status_bg(&url, id).await;
        assert_eq!(verify["verify"]["passed"], true, "{verify}");
        assert_eq!(verify["verify"]["dual_reads"]["mismatches"], 0, "{verify}");
        let _ = std::fs::remove_dir_all(dir);
        eprintln!("done in {:.1?}", t0.elapsed());
    })
    .await;
}

/// The name of tandem's forward dual-write trigger on `bank_accounts` (row level), from
/// `pg_trigger`.
async fn forward_trigger(c: &Client, id: i64) -> String {
    let names: Vec<String> = c
        .query(
            "SELECT tgname::text FROM pg_trigger
              WHERE tgrelid = 'bank_accounts'::regclass AND NOT tgisinternal
                AND tgname LIKE '\\_tandem\\_m' || $1::int8 || '\\_%' AND tgname LIKE '%forward%'
                AND (tgtype & 1) = 1",
            &[&id],
        )
        .await
        .expect("read pg_trigger")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        names.len(),
        1,
        "one forward row trigger of migration {id} on bank_accounts: {names:?}"
    );
    names.into_iter().next().unwrap()
}

/// What the planted drift changes: the balances of these accounts.
const PLANTED: std::ops::RangeInclusive<i32> = 1..=10;
/// A read of exactly those accounts, key included.
const PLANTED_READ: &str =
    "SELECT aid, abalance FROM bank_accounts WHERE aid BETWEEN 1 AND 10 ORDER BY aid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_drift_is_caught_and_fails_the_dual_read_gate_then_a_clean_migration_passes() {
    within(TEST_LIMIT, async {
        let t0 = Instant::now();
        let db = database("proxy_e2e_drift").await;
        let c = db.client();
        bank::setup(c, &Bank::new(), ACCOUNTS)
            .await
            .expect("bank setup");
        let (mut proxy, proxy_id) = registered_proxy(&db, MIRROR_ALL).await;
        let url = db.url();
        let dir = scratch_dir("proxy_e2e_drift");
        let id = plan_and_submit(&url, &dir, "drift", BANK_CHANGE, DUAL_READ_MIN).await;
        apply_bg(&url, id, &["--until", "backfill"]).await.expect(0);
        let app = connect(&via(&db, &proxy)).await;

        // Healthy first: the proxy compares the reads, and they agree.
        let before = poll(
            "the proxy's first comparisons against the shadow",
            REPORT_LIMIT,
            Duration::from_millis(100),
            || async {
                app.simple_query(PLANTED_READ).await.expect("read");
                let rows = dual_reads(c, id).await;
                (compared(&rows, Some(&proxy_id), "shadow") > 0).then_some(rows)
            },
        )
        .await;
        assert!(before.iter().all(|r| r.mismatches == 0), "{before:#?}");
        assert!(drift(c, id).await.is_empty());

        // Behind tandem's back: the shadow stops receiving writes.
        let trigger = forward_trigger(c, id).await;
        c.batch_execute(&format!(
            "ALTER TABLE bank_accounts DISABLE TRIGGER \"{trigger}\""
        ))
        .await
        .expect("disable the forward trigger");
        // Bank transactions through the proxy (balances and history agree), on the planted
        // accounts only.
        for aid in PLANTED {
            app.batch_execute(&format!(
                "BEGIN;
                 UPDATE bank_accounts SET abalance = abalance + 7 WHERE aid = {aid};
                 UPDATE bank_tellers SET tbalance = tbalance + 7 WHERE tid = 1;
                 UPDATE bank_branches SET bbalance = bbalance + 7 WHERE bid = 1;
                 INSERT INTO bank_history (tid, bid, aid, delta) VALUES (1, 1, {aid}, 7);
                 COMMIT"
            ))
            .await
            .expect("a bank transaction through the proxy");
        }
        let found = poll(
            "the mirror to record the drift",
            REPORT_LIMIT,
            Duration::from_millis(100),
            || async {
                app.simple_query(PLANTED_READ).await.expect("read");
                let drift = drift(c, id).await;
                let counted = dual_reads(c, id).await.iter().any(|r| r.mismatches > 0);
                (counted && !drift.is_empty()).then_some(drift)
            },
        )
        .await;
        eprintln!("drift found at {:.1?}: {found:#?}", t0.elapsed());
        let d = &found[0];
        assert_eq!(d.against, "shadow", "{d:?}");
        assert!(d.statement.contains("bank_accounts"), "{d:?}");
        assert_eq!((d.rows_live, d.rows_other), (10, 10), "{d:?}");
        let key = d.example_key.clone().unwrap_or_default();
        let aid: i32 = key
            .strip_prefix("aid=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the example key names an account: {d:?}"));
        assert!(PLANTED.contains(&aid), "a planted account: {d:?}");

        // `tandem status --json` shows them, without the key's values (the table's data)
        // unless asked for with --keys.
        let status = status_bg(&url, id).await;
        let shown = status["drift"].as_array().cloned().unwrap_or_default();
        assert!(
            shown.iter().any(|d| d["example_key"].is_null()
                && d["key_hidden"] == true
                && d["against"] == "shadow"),
            "status shows the drift, not its key: {status:#}"
        );
        let keyed = {
            let url = url.clone();
            blocking(move || tests::migrate::status_json_with(&url, id, &["--keys"])).await
        };
        let shown = keyed["drift"].as_array().cloned().unwrap_or_default();
        assert!(
            shown
                .iter()
                .any(|d| d["example_key"] == key.as_str() && d["against"] == "shadow"),
            "status --keys shows the key: {keyed:#}"
        );
        let counts = status["dual_reads"].as_array().cloned().unwrap_or_default();
        assert!(
            counts
                .iter()
                .any(|d| d["against"] == "shadow" && d["mismatches"].as_i64() > Some(0)),
            "status shows the mismatches: {status:#}"
        );

        // The forward trigger back on: the checksums repair the shadow, and the dual-read gate
        // alone fails verification.
        c.batch_execute(&format!(
            "ALTER TABLE bank_accounts ENABLE ALWAYS TRIGGER \"{trigger}\""
        ))
        .await
        .expect("enable the forward trigger");
        let run = apply_bg(&url, id, &["--until", "verify"]).await;
        assert_eq!(run.code, 1, "verification fails: {run:?}");
        assert!(
            run.stderr
                .contains("dual-read comparisons found the shadow answering differently")
                && run.stderr.contains("key in tandem.drift")
                && !run.stderr.contains(&key),
            "the dual-read gate fails it, naming the drift (not its key's values): {}",
            run.stderr
        );
        assert_eq!(phase(c, id).await, "backfill", "it stays in dual-write");
        let status = status_bg(&url, id).await;
        assert_eq!(status["verify"]["passed"], false, "{status:#}");
        assert!(
            status["verify"]["drift"]
                .as_array()
                .is_some_and(|d| d.iter().any(|e| e
                    .as_str()
                    .is_some_and(|e| e.contains("key in tandem.drift") && !e.contains(&key)))),
            "the failed verification records the drift, not its key's values: {status:#}"
        );
        rollback_bg(&url, id).await.expect(0);
        assert_eq!(phase(c, id).await, "abandoned");

        // The same change done right, with the same gate, under the load through the proxy.
        let clean = plan_and_submit(&url, &dir, "clean", BANK_CHANGE, DUAL_READ_MIN).await;
        let load = bank_load(&db, &proxy, 2).await;
        apply_bg(&url, clean, &["--until", "verify"])
            .await
            .expect(0);
        let report = stop_clean(load, "the clients of the proxy").await;
        eprintln!("verified at {:.1?}; clients: {report}", t0.elapsed());
        proxy.assert_running();
        assert_eq!(phase(c, clean).await, "verify");
        bank_holds(&db).await;
        let status = status_bg(&url, clean).await;
        let verify = &status["verify"];
        assert_eq!(verify["passed"], true, "{status:#}");
        assert!(
            verify["dual_reads"]["comparisons"].as_u64() >= Some(DUAL_READ_MIN),
            "{status:#}"
        );
        assert_eq!(verify["dual_reads"]["mismatches"], 0, "{status:#}");
        let drift = drift(c, clean).await;
        assert!(drift.is_empty(), "no drift: {drift:#?}");
        let _ = std::fs::remove_dir_all(dir);
        eprintln!("done in {:.1?}", t0.elapsed());
    })
    .await;
}

/// A PostgreSQL 15 program (pgbench): `TANDEM_PG_BIN`, else Debian's directory.
fn pg_bin(program: &str) -> PathBuf {
    let dir = std::env::var_os("TANDEM_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let path = dir.join(program);
    assert!(
        path.is_file(),
        "{} is missing: install it with `apt-get install -y postgresql-15` (./run test installs it)",
        path.display()
    );
    path
}

/// pgbench's `-h -p -U` and the database name (its `-d` is `--debug`).
fn pgbench_args(endpoint: &Endpoint) -> Vec<String> {
    vec![
        "-h".into(),
        endpoint.host.clone(),
        "-p".into(),
        endpoint.port.to_string(),
        "-U".into(),
        endpoint.user.clone(),
        endpoint.dbname.clone(),
    ]
}

/// `N` from pgbench's `label: N...` line.
fn pgbench_number(out: &str, label: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| {
            rest.trim()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("pgbench printed no {label:?} line:\n{out}"))
}

/// A pgbench database behind a registered proxy: `pgbench -i -s 1` (100,000 accounts, run
/// against PostgreSQL directly), the password file, and the change planned and submitted.
struct Bench {
    db: TestDb,
    passfile: PassFile,
    proxy: Proxy,
    pgbench: PathBuf,
    url: String,
    dir: PathBuf,
    id: i64,
}

impl Bench {
    async fn new(name: &str) -> Bench {
        let pgbench = pg_bin("pgbench");
        let db = database(name).await;
        let (upstream, password) = tcp_endpoint(&db);
        let passfile = PassFile::new(&password);
        let (proxy, _) = registered_proxy(&db, "").await;
        let init = blocking({
            let mut cmd = client_command(&pgbench, &passfile);
            cmd.args(["-i", "-s", "1", "-q"])
                .args(pgbench_args(&upstream));
            move || tests::proxy::run_limited(&mut cmd, Duration::from_secs(60))
        })
        .await;
        assert!(init.status.success(), "pgbench -i\n{}", init.both());
        let url = db.url();
        let dir = scratch_dir(name);
        let id = plan_and_submit(&url, &dir, "plan", PGBENCH_CHANGE, 0).await;
        Bench {
            db,
            passfile,
            proxy,
            pgbench,
            url,
            dir,
            id,
        }
    }

    /// `pgbench -n -M prepared -c 4 -j 2 -R 1000 -T SECONDS ARGS` through the proxy, in the
    /// background, once its four sessions are connected. The rate limit (1,000 transactions
    /// a second, every one through both swaps) leaves the CPU to the migration on a small
    /// machine.
    async fn start(&self, what: &str, args: &[&str], seconds: u64) -> Pgbench {
        let (upstream, _) = tcp_endpoint(&self.db);
        let what = format!("pgbench -M prepared {what}");
        let background = Background::spawn(
            client_command(&self.pgbench, &self.passfile)
                .args(["-n", "-M", "prepared", "-c", "4", "-j", "2", "-R", "1000"])
                .args(["-T", &seconds.to_string()])
                .args(args)
                .args(pgbench_args(&upstream.with_port(self.proxy.port()))),
        );
        let c = self.db.client();
        poll(
            "pgbench's four sessions",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                          WHERE datname = current_database() AND application_name = 'pgbench'",
                        &[],
                    )
                    .await
                    .expect("read pg_stat_activity")
                    .get(0);
                (n == 4).then_some(())
            },
        )
        .await;
        Pgbench {
            background,
            seconds,
            what,
        }
    }

    /// The type of `pgbench_accounts.abalance`.
    async fn abalance(&self) -> String {
        self.db
            .client()
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = 'pgbench_accounts'::regclass AND attname = 'abalance'",
                &[],
            )
            .await
            .expect("read the column's type")
            .get(0)
    }

    /// How many times the proxy prepared a session's statements again: before its next
    /// transaction after a swap, or (had that been missed) on the error, replaying the request.
    fn replays(&self) -> usize {
        let log = self.proxy.stderr();
        log.matches("prepared statement's result type changed")
            .count()
            + log
                .matches("preparing this session's statements again")
                .count()
    }
}

/// A program running in the background with its output in files; killed on drop.
struct Background {
    child: Child,
    dir: tempfile::TempDir,
}

impl Background {
    fn spawn(cmd: &mut Command) -> Background {
        let dir = tempfile::tempdir().expect("temporary directory for output");
        cmd.stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        Background { child, dir }
    }

    fn read(&self, name: &str) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.path().join(name)).unwrap_or_default())
            .into_owned()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running pgbench.
struct Pgbench {
    background: Background,
    seconds: u64,
    what: String,
}

impl Pgbench {
    /// Its output: all of stdout, the end of stderr.
    fn output(&self) -> String {
        let stderr = self.background.read("stderr");
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        format!(
            "--- {} stdout\n{}\n--- stderr (last lines)\n{}",
            self.what,
            self.background.read("stdout").trim_end(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// It is still running: the swap just made happened under its load. If it ended, its
    /// own failure comes first.
    fn assert_running(&mut self, after: &str) {
        if let Some(status) = self.background.child.try_wait().expect("poll pgbench") {
            self.assert_clean(status);
            panic!(
                "{} (-T {}) ended before {after}: the swap was not under its load\n{}",
                self.what,
                self.seconds,
                self.output()
            );
        }
    }

    /// Exit 0, no client aborted, no failed transaction; the transactions processed.
    fn assert_clean(&self, status: std::process::ExitStatus) -> i64 {
        let stdout = self.background.read("stdout");
        let stderr = self.background.read("stderr");
        assert!(
            status.success() && !stderr.contains("aborted"),
            "{} failed ({status}): a client was aborted\n{}",
            self.what,
            self.output()
        );
        let failed = pgbench_number(&stdout, "number of failed transactions:");
        assert_eq!(failed, 0, "no failed transaction\n{}", self.output());
        pgbench_number(&stdout, "number of transactions actually processed:")
    }

    /// Wait for it to end (it runs `-T` seconds), then [`Pgbench::assert_clean`].
    async fn finish(self) -> (i64, String) {
        let limit = Duration::from_secs(self.seconds + 30);
        let (mut this, status) = blocking(move || {
            let mut this = self;
            let status = wait_limited(&mut this.background.child, limit);
            (this, status)
        })
        .await;
        let status = status.unwrap_or_else(|| {
            panic!(
                "{} did not end within {limit:?}\n{}",
                this.what,
                this.output()
            )
        });
        let processed = this.assert_clean(status);
        let output = this.output();
        this.background.child.kill().ok();
        (processed, output)
    }
}

/// pgbench -S: each transaction is one prepared SELECT of `abalance`, outside any
/// transaction block. Both swaps change the type it returns under the four sessions'
/// prepared statements; the proxy prepares each again before the session's next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_prepared_survives_the_cutover_and_the_rollback() {
    within(TEST_LIMIT, async {
        let t0 = Instant::now();
        let b = Bench::new("proxy_e2e_pgbench_select").await;
        let mut bench = b.start("-S", &["-S"], 10).await;
        let run = apply_bg(&b.url, b.id, &[]).await.expect(0);
        eprintln!("--- tandem apply\n{}", run.stderr);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        assert_eq!(b.abalance().await, "bigint");
        eprintln!("applied through cutover at {:.1?}", t0.elapsed());
        poll(
            "a replay on each of pgbench's sessions after the cutover",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { (b.replays() >= 4).then_some(()) },
        )
        .await;
        bench.assert_running("the cutover");
        let run = rollback_bg(&b.url, b.id).await.expect(0);
        assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
        assert_eq!(b.abalance().await, "integer");
        eprintln!("rolled back at {:.1?}", t0.elapsed());
        poll(
            "a replay on each of pgbench's sessions after the rollback",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { (b.replays() >= 8).then_some(()) },
        )
        .await;
        bench.assert_running("the rollback");
        let (processed, output) = bench.finish().await;
        assert!(processed > 0, "{output}");
        let mut proxy = b.proxy;
        proxy.assert_running();
        let c = b.db.client();
        assert_held(c, b.id, "cutover", "cutover", 1).await;
        assert_held(c, b.id, "rollback", "rolled_back", 1).await;
        let _ = std::fs::remove_dir_all(&b.dir);
        eprintln!(
            "pgbench -S -M prepared: {processed} transactions, 0 failed, across both swaps; done in {:.1?}",
            t0.elapsed()
        );
    })
    .await;
}

/// pgbench's TPC-B: its prepared SELECT of `abalance` runs inside a transaction block,
/// after the transaction's first UPDATE, and the cutover changes the type it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_tpcb_prepared_survives_the_cutover_of_a_column_it_selects() {
    within(TEST_LIMIT, async {
        let t0 = Instant::now();
        let b = Bench::new("proxy_e2e_pgbench_tpcb").await;
        let mut bench = b.start("(TPC-B)", &[], 10).await;
        let run = apply_bg(&b.url, b.id, &[]).await.expect(0);
        eprintln!("--- tandem apply\n{}", run.stderr);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        assert_eq!(b.abalance().await, "bigint");
        eprintln!("applied through cutover at {:.1?}", t0.elapsed());
        let c = b.db.client();
        let after_cutover = "SELECT count(*) FROM pgbench_history
                              WHERE mtime > (SELECT at FROM tandem.events
                                              WHERE migration_id = $1 AND phase = 'cutover' AND event = 'done')";
        let start = Instant::now();
        while scalar(c, after_cutover, &[&b.id]).await == 0 {
            bench.assert_running("transactions after the cutover");
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no pgbench transaction after the cutover within 10 s\n{}",
                bench.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (processed, output) = bench.finish().await;
        let mut proxy = b.proxy;
        proxy.assert_running();
        assert_held(c, b.id, "cutover", "cutover", 1).await;
        let sums = c
            .query_one(
                "SELECT (SELECT sum(abalance)::bigint FROM pgbench_accounts),
                        (SELECT sum(tbalance)::bigint FROM pgbench_tellers),
                        (SELECT sum(bbalance)::bigint FROM pgbench_branches),
                        (SELECT sum(delta)::bigint FROM pgbench_history),
                        (SELECT count(*) FROM pgbench_history)",
                &[],
            )
            .await
            .expect("balances");
        let sums: Vec<i64> = (0..5).map(|i| sums.get(i)).collect();
        assert!(
            sums[..3].iter().all(|&v| v == sums[3]),
            "accounts, tellers, branches and history agree: {sums:?}"
        );
        assert_eq!(
            sums[4], processed,
            "one history row per transaction\n{output}"
        );
        let _ = std::fs::remove_dir_all(&b.dir);
        eprintln!(
            "pgbench -M prepared (TPC-B): {processed} transactions, 0 failed; done in {:.1?}",
            t0.elapsed()
        );
    })
    .await;
}
