//! `tandem apply --metrics ADDR`, through the real binary and a real PostgreSQL: the
//! endpoint is scraped while the copy is paused (`tandem pause`) and while the executor is
//! stopped inside a phase (`TANDEM_FAILPOINT`), and its figures are the run's (phase, rows
//! copied, ETA, waits, cutover attempts); it goes away with the command; an address it cannot
//! bind is a usage error before anything runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use fixtures::pg::TestDb;
use tests::migrate::{apply, on, plan_sql, scratch_dir, spawn, status_json, strategies, submit};

const ITEMS: &str = "
    CREATE TABLE items (id integer PRIMARY KEY, n integer);
    INSERT INTO items SELECT g, g FROM generate_series(1, 5000) g;
    ANALYZE;
";
const FAILPOINT_LIMIT: Duration = Duration::from_secs(30);

/// The address `tandem` printed: `metrics on http://ADDR/metrics`.
fn metrics_addr(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("metrics on http://")?
                .strip_suffix("/metrics")
        })
        .unwrap_or_else(|| panic!("no metrics address in:\n{stderr}"))
        .to_string()
}

/// GET /metrics: the body of the answer.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: tandem\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain"), "{head}");
    body.to_string()
}

/// The value of one series (`name{labels}`), as a number.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

#[tokio::test]
async fn apply_serves_its_phase_rows_and_cutover_attempts_while_it_runs() {
    let db = TestDb::new("metrics_apply").await;
    db.client().batch_execute(ITEMS).await.unwrap();
    let url = db.url();
    let path: PathBuf = scratch_dir("metrics_apply").join("plan.json");
    plan_sql(&url, "ALTER TABLE items ALTER n TYPE bigint", &path);
    assert_eq!(strategies(&path), vec!["shadow"]);
    let id = submit(&url, &path, &[]);
    let ids = id.to_string();

    // An address that cannot be bound: a usage error, and nothing ran.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let run = apply(&url, id, &["--metrics", &taken_addr]).expect(64);
    assert!(
        run.stderr
            .contains(&format!("cannot serve metrics on {taken_addr}")),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], "submitted");
    drop(taken);

    // Paused (by `tandem pause`) after the copy's first batch: the copy's figures so far,
    // and the wait, counted once however many checks it takes.
    on(&url, "pause", id, &[]).expect(0);
    let args = [
        "--database-url",
        &url,
        "apply",
        &ids,
        "--yes",
        "--metrics",
        "127.0.0.1:0",
    ];
    let mut run = spawn(&args, &[("TANDEM_FAILPOINT", "verify")]);
    run.wait_for("metrics on http://", FAILPOINT_LIMIT);
    let addr = metrics_addr(&run.stderr);
    run.wait_for("waiting: paused", FAILPOINT_LIMIT);
    std::thread::sleep(Duration::from_millis(1200));
    let text = scrape(&addr);
    let table = "{table=\"items\"}";
    assert_eq!(
        value(&text, "tandem_migration_phase{phase=\"backfill\"}"),
        1.0
    );
    let copied = value(&text, &format!("tandem_migration_rows_copied{table}"));
    assert!(copied > 0.0 && copied < 5000.0, "{text}");
    assert!(value(&text, &format!("tandem_migration_copy_eta_seconds{table}")) > 0.0);
    assert_eq!(
        value(&text, "tandem_migration_waits_total{reason=\"paused\"}"),
        1.0
    );
    assert!(
        value(
            &text,
            "tandem_migration_wait_seconds_total{reason=\"paused\"}"
        ) >= 0.5
    );
    on(&url, "resume", id, &[]).expect(0);

    // Stopped inside verification: the copy is done and its figures are served.
    run.wait_for("failpoint verify reached", FAILPOINT_LIMIT);
    let text = scrape(&addr);
    assert_eq!(
        value(
            &text,
            &format!("tandem_migration_info{{migration=\"{id}\",command=\"apply\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(&text, "tandem_migration_phase{phase=\"verify\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "tandem_migration_phase{phase=\"backfill\"}"),
        0.0
    );
    assert_eq!(
        value(&text, &format!("tandem_migration_rows_copied{table}")),
        5000.0
    );
    assert_eq!(
        value(&text, &format!("tandem_migration_rows_total{table}")),
        5000.0
    );
    assert!(
        value(
            &text,
            &format!("tandem_migration_copy_rows_per_second{table}")
        ) > 0.0
    );
    assert_eq!(
        value(&text, &format!("tandem_migration_copy_eta_seconds{table}")),
        0.0
    );
    assert!(
        value(
            &text,
            "tandem_migration_phase_duration_seconds{phase=\"backfill\"}"
        ) > 0.0
    );
    assert_eq!(value(&text, "tandem_migration_cutover_attempts_total"), 0.0);
    assert_eq!(
        value(&text, "tandem_migration_waits_total{reason=\"gate\"}"),
        0.0
    );
    assert_eq!(
        value(&text, "tandem_migration_waits_total{reason=\"paused\"}"),
        1.0
    );
    run.kill();

    // Stopped after the swap committed: one attempt, none failed, and how long it took.
    let mut run = spawn(&args, &[("TANDEM_FAILPOINT", "after_cutover")]);
    run.wait_for("metrics on http://", FAILPOINT_LIMIT);
    let addr = metrics_addr(&run.stderr);
    run.wait_for("failpoint after_cutover reached", FAILPOINT_LIMIT);
    let text = scrape(&addr);
    assert_eq!(
        value(&text, "tandem_migration_phase{phase=\"cutover\"}"),
        1.0
    );
    assert!(value(&text, "tandem_migration_cutover_attempts_total") >= 1.0);
    assert_eq!(
        value(&text, "tandem_migration_cutover_failed_attempts_total"),
        0.0
    );
    assert!(value(&text, "tandem_migration_cutover_last_attempt_seconds") > 0.0);
    assert!(
        value(
            &text,
            "tandem_migration_phase_duration_seconds{phase=\"verify\"}"
        ) > 0.0
    );
    run.kill();

    // Run to the end: the endpoint goes away with the command.
    let done = apply(&url, id, &["--metrics", "127.0.0.1:0"]).expect(0);
    let addr = metrics_addr(&done.stderr);
    assert!(
        TcpStream::connect(&addr).is_err(),
        "{addr} still answers after apply exited"
    );
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");
}
