//! The product's core promise, on a real PostgreSQL: a table rewritten through a shadow
//! table while clients keep writing to it loses, doubles and resurrects nothing, through
//! cutover, the rollback window, a rollback and a finalize; and the client sees no error.
//!
//! The bank workload (pgbench's TPC-B-like transaction) proves concurrent updates of hot rows
//! survive; the churn workload (inserts, deletes, NULL and wide updates, second-key and
//! primary-key changes, mirrored into an untouched table) proves every kind of row change is
//! carried through, both ways.

mod common;

use std::time::{Duration, Instant};

use common::{column_type, diff, exists, indexes, leftovers, phase, within};
use engine::executor::Options;
use engine::state::Phase;
use fixtures::load::{bank, churn, Bank, Churn, Load, LoadOptions, Report, Workload};
use fixtures::pg::TestDb;

const BANK_CHANGE: &str =
    "ALTER TABLE bank_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint";
const CHURN_CHANGE: &str = "ALTER TABLE churn_items ALTER val TYPE bigint";
const ACCOUNTS: i64 = 60_000;
const CHURN_ROWS: i64 = 20_000;
const BANK_CLIENTS: usize = 6;
const CHURN_CLIENTS: usize = 4;

fn clients(n: usize) -> LoadOptions {
    LoadOptions {
        clients: n,
        pause: None,
    }
}

/// Small batches: more of them, so more interleavings with the clients.
fn options() -> Options {
    Options {
        batch_time: Duration::from_millis(20),
        chunk_time: Duration::from_millis(5),
        ..Options::default()
    }
}

/// Verification found the shadow equal on its first pass: the copy and the triggers (or the
/// log) got every row right, with no re-copy to hide a miss.
async fn assert_verified_first_time(c: &tokio_postgres::Client, id: i64) {
    let result: serde_json::Value = c
        .query_one(
            "SELECT verify_result FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let tables = result["tables"].as_array().or_else(|| result.as_array());
    let tables = tables.unwrap_or_else(|| panic!("verify_result: {result}"));
    assert!(!tables.is_empty(), "verify_result: {result}");
    for t in tables {
        assert_eq!(t["rounds"], 1, "verification had to copy again: {result}");
    }
}

/// The clients saw no error and committed something.
fn assert_clean(report: &Report, what: &str) {
    eprintln!("load {what}: {report}");
    assert_eq!(
        report.error_count, 0,
        "{what}: the clients saw errors: {report}"
    );
    assert!(
        report.transactions() > 0,
        "{what}: no transaction committed: {report}"
    );
}

async fn bank_holds(db: &TestDb, what: &str) {
    let check = bank::check(db.client(), &Bank::new())
        .await
        .expect("check the bank");
    assert!(check.holds(), "{what}: {check}");
    eprintln!("{what}: {check}");
}

async fn churn_holds(db: &TestDb, what: &str) {
    let check = churn::check(db.client(), &Churn::new())
        .await
        .expect("check the churn");
    assert!(check.holds(), "{what}: {check}");
    eprintln!("{what}: {check}");
}

async fn assert_types(db: &TestDb, table: &str, cols: &[&str], ty: &str, what: &str) {
    for col in cols {
        assert_eq!(
            column_type(db.client(), table, col).await,
            ty,
            "{what}: {table}.{col}"
        );
    }
}

async fn assert_no_leftovers(db: &TestDb, what: &str) {
    let left = leftovers(db.client()).await;
    assert!(
        left.is_empty(),
        "{what}: tandem left objects behind: {left:#?}"
    );
}

/// Wait `d` while the load runs, and check it committed transactions meanwhile.
async fn keep_running(load: &Load, d: Duration, what: &str) {
    let before = load.progress();
    tokio::time::sleep(d).await;
    let after = load.progress();
    assert!(
        after.transactions > before.transactions,
        "{what}: the clients committed nothing in {d:?} ({after})"
    );
}

/// Run `apply` to the rollback window while the load runs; check the clients kept
/// committing throughout.
async fn apply_under_load(ex: &mut engine::executor::Executor, load: &Load, what: &str) {
    let before = load.progress();
    let t0 = Instant::now();
    let phase = within(60, what, ex.apply())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(phase, Phase::RollbackWindow, "{what}");
    let after = load.progress();
    eprintln!(
        "{what}: apply took {:.1?}; {} transactions committed meanwhile",
        t0.elapsed(),
        after.transactions - before.transactions
    );
    assert!(
        after.transactions > before.transactions,
        "{what}: no client transaction committed while apply ran ({after})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_full_migration_then_rollback() {
    let db = TestDb::new("migrate_bank_rollback").await;
    let c = db.client();
    bank::setup(c, &Bank::new(), ACCOUNTS).await.unwrap();
    let id = common::submit(&db, BANK_CHANGE, None).await;
    let load = Load::start(
        db.config(),
        Workload::Bank(Bank::new()),
        clients(BANK_CLIENTS),
    )
    .await
    .unwrap();
    let mut ex = common::open(&db, id, options(), "bank rollback").await;
    apply_under_load(&mut ex, &load, "apply").await;

    // The rollback window: the new table carries the name, the old one is parked (and kept
    // current by the reverse trigger).
    let spec = common::spec(c, id).await;
    assert_types(
        &db,
        "bank_accounts",
        &["aid", "abalance"],
        "bigint",
        "after cutover",
    )
    .await;
    assert!(exists(c, &spec.old.to_string()).await, "old table parked");
    assert!(!exists(c, &spec.shadow.to_string()).await, "shadow renamed");
    assert_eq!(indexes(c, "bank_accounts").await, ["bank_accounts_pkey"]);
    // What tandem keeps for the window (and must remove afterwards) is seen as such.
    let kept = leftovers(c).await.join("\n");
    for what in [
        format!("function tandem.m{id}_t{}_reverse()", spec.table_oid),
        format!("relation public.{}", spec.old.name.as_str()),
        format!("trigger _tandem_m{id}_reverse on bank_accounts"),
    ] {
        assert!(kept.contains(&what), "{what} not among {kept}");
    }
    keep_running(&load, Duration::from_secs(1), "rollback window").await;

    within(30, "rollback", ex.rollback())
        .await
        .unwrap_or_else(|e| panic!("rollback: {e}"));
    assert_eq!(phase(c, id).await, Phase::RolledBack);
    keep_running(&load, Duration::from_secs(1), "after rollback").await;
    let report = load.stop().await;
    assert_clean(&report, "bank through apply and rollback");

    bank_holds(&db, "after rollback").await;
    assert_types(
        &db,
        "bank_accounts",
        &["aid", "abalance"],
        "integer",
        "after rollback",
    )
    .await;
    assert!(
        !exists(c, &spec.shadow.to_string()).await,
        "new table dropped"
    );
    assert!(
        !exists(c, &spec.old.to_string()).await,
        "old table is live again"
    );
    assert_eq!(indexes(c, "bank_accounts").await, ["bank_accounts_pkey"]);
    assert_no_leftovers(&db, "after rollback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_full_migration_then_finalize() {
    let db = TestDb::new("migrate_bank_finalize").await;
    let c = db.client();
    bank::setup(c, &Bank::new(), ACCOUNTS).await.unwrap();
    let id = common::submit(&db, BANK_CHANGE, None).await;
    let load = Load::start(
        db.config(),
        Workload::Bank(Bank::new()),
        clients(BANK_CLIENTS),
    )
    .await
    .unwrap();
    let mut ex = common::open(&db, id, options(), "bank finalize").await;
    apply_under_load(&mut ex, &load, "apply").await;
    keep_running(&load, Duration::from_millis(500), "rollback window").await;

    within(30, "finalize", ex.finalize())
        .await
        .unwrap_or_else(|e| panic!("finalize: {e}"));
    assert_eq!(phase(c, id).await, Phase::Finalized);
    keep_running(&load, Duration::from_millis(500), "after finalize").await;
    let report = load.stop().await;
    assert_clean(&report, "bank through apply and finalize");

    bank_holds(&db, "after finalize").await;
    let spec = common::spec(c, id).await;
    assert_types(
        &db,
        "bank_accounts",
        &["aid", "abalance"],
        "bigint",
        "after finalize",
    )
    .await;
    assert!(!exists(c, &spec.old.to_string()).await, "old table dropped");
    assert!(!exists(c, &spec.shadow.to_string()).await);
    assert_eq!(indexes(c, "bank_accounts").await, ["bank_accounts_pkey"]);
    let n: i64 = c
        .query_one("SELECT count(*) FROM bank_accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, ACCOUNTS);
    assert_no_leftovers(&db, "after finalize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_equal_at_rest_after_cutover_and_after_rollback() {
    let db = TestDb::new("migrate_churn_rollback").await;
    let c = db.client();
    churn::setup(c, &Churn::new(), CHURN_ROWS).await.unwrap();
    let id = common::submit(&db, CHURN_CHANGE, None).await;
    let load = Load::start(
        db.config(),
        Workload::Churn(Churn::new()),
        clients(CHURN_CLIENTS),
    )
    .await
    .unwrap();
    let mut ex = common::open(&db, id, options(), "churn rollback").await;
    apply_under_load(&mut ex, &load, "apply").await;
    keep_running(&load, Duration::from_millis(500), "rollback window").await;
    let report = load.stop().await;
    assert_clean(&report, "churn through apply");

    // At rest in the window: the live (new) table equals the mirror, and the old table,
    // kept current by the reverse trigger, equals the new one row for row.
    churn_holds(&db, "after cutover").await;
    assert_verified_first_time(c, id).await;
    assert_types(&db, "churn_items", &["val"], "bigint", "after cutover").await;
    let spec = common::spec(c, id).await;
    let old = spec.old.to_string();
    assert_types(&db, &old, &["val"], "integer", "the old table").await;
    let d = diff(c, "churn_items", &old).await;
    assert!(d.equal(), "the old table differs from the new one: {d:#?}");
    assert!(d.a_rows > 0);

    // Roll back while the clients write: the restored table must hold every write.
    let load = Load::start(
        db.config(),
        Workload::Churn(Churn::new()),
        clients(CHURN_CLIENTS),
    )
    .await
    .unwrap();
    keep_running(&load, Duration::from_secs(1), "rollback window").await;
    within(30, "rollback", ex.rollback())
        .await
        .unwrap_or_else(|e| panic!("rollback: {e}"));
    keep_running(&load, Duration::from_millis(500), "after rollback").await;
    let report = load.stop().await;
    assert_clean(&report, "churn through rollback");

    assert_eq!(phase(c, id).await, Phase::RolledBack);
    churn_holds(&db, "after rollback").await;
    assert_types(&db, "churn_items", &["val"], "integer", "after rollback").await;
    assert_eq!(
        indexes(c, "churn_items").await,
        ["churn_items_email_key", "churn_items_pkey"]
    );
    assert!(common::divergence(c, id).await.is_empty());
    assert_no_leftovers(&db, "after rollback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_finalize() {
    let db = TestDb::new("migrate_churn_finalize").await;
    let c = db.client();
    churn::setup(c, &Churn::new(), CHURN_ROWS).await.unwrap();
    let id = common::submit(&db, CHURN_CHANGE, None).await;
    let load = Load::start(
        db.config(),
        Workload::Churn(Churn::new()),
        clients(CHURN_CLIENTS),
    )
    .await
    .unwrap();
    let mut ex = common::open(&db, id, options(), "churn finalize").await;
    apply_under_load(&mut ex, &load, "apply").await;
    keep_running(&load, Duration::from_millis(500), "rollback window").await;
    within(30, "finalize", ex.finalize())
        .await
        .unwrap_or_else(|e| panic!("finalize: {e}"));
    keep_running(&load, Duration::from_millis(500), "after finalize").await;
    let report = load.stop().await;
    assert_clean(&report, "churn through apply and finalize");

    assert_eq!(phase(c, id).await, Phase::Finalized);
    churn_holds(&db, "after finalize").await;
    assert_verified_first_time(c, id).await;
    assert_types(&db, "churn_items", &["val"], "bigint", "after finalize").await;
    // The unique e-mail key was built on the new table and carried over under its name.
    assert_eq!(
        indexes(c, "churn_items").await,
        ["churn_items_email_key", "churn_items_pkey"]
    );
    let unique: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'churn_items'::regclass AND contype IN ('p', 'u')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        unique, 2,
        "primary key and unique constraint on the new table"
    );
    assert!(common::divergence(c, id).await.is_empty());
    assert_no_leftovers(&db, "after finalize").await;
}

/// `apply --until verify`: the table is untouched, the shadow is complete and kept current
/// by the triggers; a later apply cuts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_cutover() {
    let db = TestDb::new("migrate_deferred_cutover").await;
    let c = db.client();
    churn::setup(c, &Churn::new(), 5_000).await.unwrap();
    let id = common::submit(&db, CHURN_CHANGE, None).await;
    let load = Load::start(db.config(), Workload::Churn(Churn::new()), clients(2))
        .await
        .unwrap();
    let mut ex = common::open(
        &db,
        id,
        Options {
            until: Phase::Verify,
            ..options()
        },
        "deferred",
    )
    .await;
    let p = within(60, "apply --until verify", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply --until verify: {e}"));
    assert_eq!(p, Phase::Verify);
    drop(ex);
    // Writes after verification still reach the shadow.
    keep_running(&load, Duration::from_secs(1), "after verify").await;
    let report = load.stop().await;
    assert_clean(&report, "churn through apply --until verify");

    assert_eq!(phase(c, id).await, Phase::Verify);
    assert_types(&db, "churn_items", &["val"], "integer", "before cutover").await;
    churn_holds(&db, "before cutover").await;
    let spec = common::spec(c, id).await;
    let shadow = spec.shadow.to_string();
    assert!(exists(c, &shadow).await, "the shadow exists");
    assert_types(&db, &shadow, &["val"], "bigint", "the shadow").await;
    let d = diff(c, "churn_items", &shadow).await;
    assert!(d.equal(), "the shadow is not current: {d:#?}");
    let verify: serde_json::Value = c
        .query_one(
            "SELECT verify_result FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(verify["passed"], true, "{verify}");

    // A second executor picks it up and cuts over.
    let load = Load::start(db.config(), Workload::Churn(Churn::new()), clients(2))
        .await
        .unwrap();
    let mut ex = common::open(&db, id, options(), "deferred, cutover").await;
    apply_under_load(&mut ex, &load, "second apply").await;
    within(30, "finalize", ex.finalize())
        .await
        .unwrap_or_else(|e| panic!("finalize: {e}"));
    let report = load.stop().await;
    assert_clean(&report, "churn through the cutover");
    assert_types(&db, "churn_items", &["val"], "bigint", "after cutover").await;
    churn_holds(&db, "after cutover").await;
    assert_no_leftovers(&db, "after finalize").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume() {
    const ROWS: i64 = 200_000;
    let db = TestDb::new("migrate_pause_resume").await;
    let c = db.client();
    c.batch_execute(&format!(
        "CREATE TABLE big (id int PRIMARY KEY, v int, pad text);
         INSERT INTO big SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g;
         ANALYZE big;"
    ))
    .await
    .unwrap();
    let id = common::submit(&db, "ALTER TABLE big ALTER v TYPE bigint", None).await;
    let mut ex = common::open(
        &db,
        id,
        // Chunks of a few thousand rows with a pause between them: the copy lasts seconds,
        // long enough to be paused however fast the machine copies (the log method's chunks
        // may hold 50 × `max_batch` rows, and 200,000 rows go in a few of them in 0.3 s).
        Options {
            batch_pause: Duration::from_millis(50),
            max_batch: 4_000,
            chunk_time: Duration::from_millis(5),
            ..Options::default()
        },
        "pause",
    )
    .await;
    let task = tokio::spawn(async move {
        let r = ex.apply().await;
        (r, ex)
    });

    // Pause once the copy is under way.
    within(20, "the backfill starting", async {
        while common::progress(c, id).await.0 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    engine::state::set_paused(c, id, true).await.unwrap();
    let waiting = within(10, "the executor noticing the pause", async {
        loop {
            if let (_, _, Some(w)) = common::progress(c, id).await {
                if w.contains("pause") {
                    return w;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    eprintln!("waiting_for: {waiting}");
    let (first, total, _) = common::progress(c, id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (second, _, w) = common::progress(c, id).await;
    assert_eq!(first, second, "rows were copied while paused");
    assert!(
        second < total,
        "the copy finished before the pause ({second} of {total})"
    );
    assert!(w.is_some_and(|w| w.contains("pause")));
    assert!(!task.is_finished());
    assert_eq!(phase(c, id).await, Phase::DualWrite);

    engine::state::set_paused(c, id, false).await.unwrap();
    let (r, ex) = within(60, "apply after resume", task).await.unwrap();
    assert_eq!(
        r.unwrap_or_else(|e| panic!("apply: {e}")),
        Phase::RollbackWindow
    );
    drop(ex);
    let (copied, total, waiting) = common::progress(c, id).await;
    assert_eq!((copied, total), (ROWS, ROWS));
    assert_eq!(waiting, None);
    assert_types(&db, "big", &["v"], "bigint", "after cutover").await;
    let events: Vec<String> = c
        .query(
            "SELECT event FROM tandem.events WHERE migration_id = $1 AND event IN ('paused', 'resumed') ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["paused", "resumed"]);
    let spec = common::spec(c, id).await;
    let d = diff(c, "big", &spec.old.to_string()).await;
    assert!(d.equal() && d.a_rows == ROWS, "{d:#?}");
}

/// Verification compares the shadow with the mapped original and copies again the ranges
/// that differ: a shadow damaged behind tandem's back (a missing row, a changed value, a
/// NULL, a row the table lacks) is repaired before the cutover, never swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_repairs_a_damaged_shadow() {
    let db = TestDb::new("migrate_verify_repairs").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 50000) g;
         ANALYZE t;",
    )
    .await
    .unwrap();
    let id = backfilled(&db, "ALTER TABLE t ALTER n TYPE bigint", "verify repairs").await;
    let spec = common::spec(c, id).await;
    let shadow = spec.shadow.to_string();
    assert!(diff(c, "t", &shadow).await.equal());
    c.batch_execute(&format!(
        "DELETE FROM {shadow} WHERE id = 100;
         UPDATE {shadow} SET v = 'damaged' WHERE id = 25000;
         UPDATE {shadow} SET n = NULL WHERE id = 49000;
         INSERT INTO {shadow} (id, v, n) VALUES (-5, 'extra', 1);"
    ))
    .await
    .unwrap();
    let d = diff(c, "t", &shadow).await;
    assert_eq!((d.only_in_a, d.only_in_b), (3, 3), "{d:#?}");

    let (o, events) = common::observer("verify repairs");
    let mut ex = engine::executor::Executor::open(
        &db.config(),
        id,
        Options {
            until: Phase::Verify,
            verify_chunk: 10_000,
            ..options()
        },
        Box::new(gates::Open),
        o,
    )
    .await
    .unwrap();
    let p = within(30, "apply --until verify", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply --until verify: {e}"));
    assert_eq!(p, Phase::Verify);
    drop(ex);
    let d = diff(c, "t", &shadow).await;
    assert!(d.equal(), "verification left the shadow damaged: {d:#?}");
    let verify: serde_json::Value = c
        .query_one(
            "SELECT verify_result FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(verify["passed"], true, "{verify}");
    assert_eq!(verify["tables"][0]["rounds"], 2, "{verify}");
    let examples = verify["tables"][0]["recopied_examples"].to_string();
    for key in ["(100)", "(25000)", "(49000)", "(-5)"] {
        assert!(examples.contains(key), "{key} not reported: {examples}");
    }
    let events = events.lock().unwrap().join("\n");
    assert!(
        events.contains("mismatched_ranges: 3"),
        "three chunks differ: {events}"
    );
}

/// Submit `sql` and apply it through the backfill (the shadow copied, not yet verified).
async fn backfilled(db: &TestDb, sql: &str, tag: &str) -> i64 {
    let id = common::submit(db, sql, None).await;
    let mut ex = common::open(
        db,
        id,
        Options {
            until: Phase::Backfill,
            ..options()
        },
        tag,
    )
    .await;
    let p = within(30, "apply --until backfill", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply --until backfill: {e}"));
    assert_eq!(p, Phase::Backfill);
    id
}

/// Verification hashes each row by its columns' own hash functions; a column type that has
/// none (json, point) makes it hash the rows' text instead (a typed hash would fail with
/// `could not identify a hash function`), and the migration passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_hashes_columns_without_a_hash_function() {
    let db = TestDb::new("migrate_verify_unhashable").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, n int, body json, at point);
         INSERT INTO docs SELECT g, g, json_build_object('g', g), point(g, g) FROM generate_series(1, 2000) g;",
    )
    .await
    .unwrap();
    let id = common::submit(&db, "ALTER TABLE docs ALTER n TYPE bigint", None).await;
    let mut ex = common::open(&db, id, options(), "verify unhashable").await;
    within(60, "apply", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
    assert_verified_first_time(c, id).await;
    let rows: i64 = c
        .query_one(
            "SELECT (verify_result -> 'tables' -> 0 ->> 'rows')::int8 FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2000);
    assert_types(&db, "docs", &["n"], "bigint", "after cutover").await;
}

/// Prepare tells the disk the shadow will need and records the rows the copy will count
/// toward: the table's own figures, or a partitioned table's partitions' (a partitioned root
/// has no storage; an earlier version read 0 MB for every plain table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_reports_the_size_of_a_plain_and_of_a_partitioned_table() {
    let db = TestDb::new("prepare_size").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE plain (id int PRIMARY KEY, v int, pad text);
         INSERT INTO plain SELECT g, g, repeat('x', 200) FROM generate_series(1, 20000) g;
         CREATE TABLE tree (id int, v int, pad text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
         CREATE TABLE tree_a PARTITION OF tree FOR VALUES FROM (0) TO (10000);
         CREATE TABLE tree_b PARTITION OF tree FOR VALUES FROM (10000) TO (30000);
         INSERT INTO tree SELECT g, g, repeat('x', 200) FROM generate_series(1, 20000) g;
         ANALYZE plain; ANALYZE tree;",
    )
    .await
    .unwrap();
    for table in ["plain", "tree"] {
        let id = common::submit(
            &db,
            &format!("ALTER TABLE {table} ALTER v TYPE bigint"),
            None,
        )
        .await;
        let (o, seen) = common::observer(table);
        let mut ex = engine::executor::Executor::open(
            &db.config(),
            id,
            Options {
                until: Phase::Prepare,
                ..Options::default()
            },
            Box::new(gates::Open),
            o,
        )
        .await
        .unwrap();
        within(60, "prepare", ex.apply()).await.expect("prepare");
        drop(ex);
        let note = seen
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.contains("it will need about"))
            .cloned()
            .unwrap_or_default();
        let mb: i64 = note
            .split("it will need about ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1);
        assert!((4..100).contains(&mb), "{table}: {note}");
        let rows: i64 = c
            .query_one(
                "SELECT rows_total FROM tandem.shadow_tables WHERE migration_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 20_000, "{table}");
        let mut ex = common::open(&db, id, Options::default(), "abandon").await;
        within(60, "abandon", ex.rollback()).await.expect("abandon");
    }
}

/// The backfill sizes its progress by the planner's estimate, not by counting the table (a
/// scan of the whole table before the copy starts): half the rows deleted since the last
/// ANALYZE, with autovacuum off, leave the estimate at the rows before the delete, which a
/// count would not. A table never analyzed has no estimate and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_progress_takes_the_planners_estimate_and_counts_only_without_one() {
    let db = TestDb::new("backfill_estimate").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE plain (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
         INSERT INTO plain SELECT g, g FROM generate_series(1, 20000) g;
         CREATE TABLE tree (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
         CREATE TABLE tree_a PARTITION OF tree FOR VALUES FROM (0) TO (10000) WITH (autovacuum_enabled = false);
         CREATE TABLE tree_b PARTITION OF tree FOR VALUES FROM (10000) TO (30000) WITH (autovacuum_enabled = false);
         INSERT INTO tree SELECT g, g FROM generate_series(1, 20000) g;
         ANALYZE plain; ANALYZE tree;
         DELETE FROM plain WHERE id % 2 = 0; DELETE FROM tree WHERE id % 2 = 0;
         CREATE TABLE fresh (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false);
         INSERT INTO fresh SELECT g, g FROM generate_series(1, 7000) g;",
    )
    .await
    .unwrap();
    for (table, total, copied) in [
        ("plain", 20_000, 10_000),
        ("tree", 20_000, 10_000),
        ("fresh", 7_000, 7_000),
    ] {
        let id = backfilled(
            &db,
            &format!("ALTER TABLE {table} ALTER v TYPE bigint"),
            table,
        )
        .await;
        let (rows_copied, rows_total, _) = common::progress(c, id).await;
        assert_eq!(
            (rows_total, rows_copied),
            (total, copied),
            "{table}: (rows_total, rows_copied)"
        );
        let mut ex = common::open(&db, id, Options::default(), "abandon").await;
        within(60, "abandon", ex.rollback()).await.expect("abandon");
    }
}

/// The log method's copy ends its chunks by arithmetic where an integer key is dense and
/// asks for the batch-th key where it is not (`backfill::Stride`): across negative keys, a
/// dense run, a gap of a million, sparse keys and a run with every other value used, every
/// row is copied once: verified on the first pass, counted once in the progress, and the
/// new table holds the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_ended_by_key_arithmetic_copy_every_row_once_across_gaps() {
    let db = TestDb::new("backfill_stride").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE gappy (id bigint PRIMARY KEY, v int);
         INSERT INTO gappy SELECT g, g % 1000 FROM generate_series(-5000, 20000) g;
         INSERT INTO gappy SELECT g, g % 1000 FROM generate_series(1000000, 1010000) g;
         INSERT INTO gappy SELECT 2000000 + g * 997, g FROM generate_series(1, 300) g;
         INSERT INTO gappy SELECT g, g % 1000 FROM generate_series(5000000, 5040000, 2) g;",
    )
    .await
    .unwrap();
    // (rows, sum of the keys, sum of the values)
    let sums = || async {
        let r = c
            .query_one(
                "SELECT count(*), sum(id)::int8, sum(v)::int8 FROM gappy",
                &[],
            )
            .await
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))
    };
    let before = sums().await;
    let id = common::submit(&db, "ALTER TABLE gappy ALTER v TYPE bigint", None).await;
    let mut ex = common::open(&db, id, options(), "stride").await;
    within(120, "apply", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));
    assert_verified_first_time(c, id).await;
    let (rows_copied, rows_total, _) = common::progress(c, id).await;
    assert_eq!(
        rows_copied, before.0,
        "rows copied (of an estimate of {rows_total})"
    );
    assert_eq!(sums().await, before, "(count, sum(id), sum(v))");
    assert_eq!(column_type(c, "gappy", "v").await, "bigint");
}

/// The shadow is vacuumed and analyzed before cutover, on a connection of its own beside the
/// drain once its last index is built (`backfill::vacuum_aside`): after the cutover the table
/// has its planner statistics and its visibility map, for a table whose only index is its
/// key's and for one with another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_is_vacuumed_and_analyzed_beside_the_drain_before_cutover() {
    let db = TestDb::new("vacuum_aside").await;
    let c = db.client();
    common::flush_commits(&db).await;
    c.batch_execute(
        "CREATE TABLE keyed (id int PRIMARY KEY, v int, w text);
         INSERT INTO keyed SELECT g, g % 100, md5(g::text) FROM generate_series(1, 20000) g;
         CREATE TABLE indexed (id int PRIMARY KEY, v int, w text);
         CREATE INDEX indexed_w ON indexed (w);
         INSERT INTO indexed SELECT g, g % 100, md5(g::text) FROM generate_series(1, 20000) g;",
    )
    .await
    .unwrap();
    for table in ["keyed", "indexed"] {
        let id = common::submit(
            &db,
            &format!("ALTER TABLE {table} ALTER v TYPE bigint"),
            None,
        )
        .await;
        let (o, seen) = common::observer(table);
        let mut ex =
            engine::executor::Executor::open(&db.config(), id, options(), Box::new(gates::Open), o)
                .await
                .unwrap();
        within(60, "apply", ex.apply()).await.expect("apply");
        drop(ex);
        let events = seen.lock().unwrap().join("\n");
        assert!(
            events.contains("vacuumed and analyzed in") && events.contains("beside the drain"),
            "{table}: {events}"
        );
        // A table the server's shared buffers hold: its copy does not vacuum between chunks
        // (`backfill::Settle`).
        assert!(!events.contains("settled by"), "{table}: {events}");
        // (Not `n_ins_since_vacuum`: the copy's session reports its inserts at most once a
        // second, and all 20,000 of this small copy may be reported after the vacuum.)
        let r = c
            .query_one(
                "SELECT s.last_vacuum IS NOT NULL, c.relallvisible, c.relpages
                   FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                  WHERE s.relid = $1::text::regclass",
                &[&table],
            )
            .await
            .unwrap();
        let (vacuumed, visible, pages): (bool, i32, i32) = (r.get(0), r.get(1), r.get(2));
        assert!(vacuumed, "{table}: the new table was vacuumed");
        if !(pages > 0 && visible == pages) {
            // Which of the two a vacuum needs was missing: the copy's commits flushed, or
            // no snapshot in the database older than them (an autovacuum's ANALYZE of the
            // test's tables is one). The holder may be gone by now; listed if not.
            let holders: Vec<String> = c
                .query(
                    "SELECT format('pid %s %s xmin %s %s: %s', pid, backend_type, backend_xmin, state, left(query, 60))
                       FROM pg_stat_activity
                      WHERE datname = current_database() AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!("{table}: all-visible pages {visible} of {pages}; sessions holding a snapshot now: {holders:?}");
        }
        let columns: Vec<String> = c
            .query(
                "SELECT attname::text FROM pg_stats WHERE schemaname = 'public' AND tablename = $1 ORDER BY 1",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            columns,
            ["id", "v", "w"],
            "{table}: the new table's statistics"
        );
        assert_eq!(
            column_type(c, table, "v").await,
            "bigint",
            "{table}: switched"
        );
    }
}

/// tandem's own sessions compress their full-page images and ask for the writeback of what
/// they write every 256 kB (`executor::tune_session`), where the server leaves both off: read
/// back from inside the executor's session by a statement of the plan (run on that session)
/// that records them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executors_session_compresses_its_wal_and_flushes_its_writes_early() {
    let db = TestDb::new("session_tuned").await;
    let c = db.client();
    let server: (String, String) = {
        let r = c
            .query_one(
                "SELECT current_setting('wal_compression'), current_setting('backend_flush_after')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(server, ("off".into(), "0".into()), "the server's defaults");
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)")
        .await
        .unwrap();
    let id = common::submit(
        &db,
        "ALTER TABLE t ALTER v TYPE bigint;
         CREATE TABLE tuned AS SELECT current_setting('wal_compression') AS wal, current_setting('backend_flush_after') AS flush",
        None,
    )
    .await;
    let mut ex = common::open(&db, id, options(), "tuned").await;
    within(60, "apply", ex.apply()).await.expect("apply");
    let r = c
        .query_one("SELECT wal, flush FROM tuned", &[])
        .await
        .unwrap();
    let session: (String, String) = (r.get(0), r.get(1));
    assert_eq!(session, ("lz4".into(), "256kB".into()));
}

/// Verification's whole-table checksum hashes each column by its type's own hash function
/// (the text form's for types without one in its list) and XORs them, seeded by position:
/// every kind of damage to one shadow row changes it. Data-driven: each case damages row 7 of
/// the shadow inside a transaction (rolled back after), and the shadow's checksum must then
/// differ from the table's, and equal it again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checksum_sees_a_change_in_any_column() {
    let db = TestDb::new("migrate_verify_checksum").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE kinds (id int PRIMARY KEY, a smallint, b int, n int, c int, r real,
                             d double precision, m numeric(10,2), t text, v varchar(20),
                             ch char(5), u uuid, j jsonb, ts timestamp, tz timestamptz,
                             dt date, ok boolean, arr int[], js json, ts3 timestamp(3));
         INSERT INTO kinds SELECT g, g % 100, g, g, g + 1, g / 3.0, g / 7.0, g / 9.0, 't' || g,
                'v' || g, 'c' || (g % 999), md5(g::text)::uuid, jsonb_build_object('g', g),
                timestamp '2026-01-01' + g * interval '1 minute', timestamptz '2026-01-01 00:00+00' + g * interval '1 s',
                date '2026-01-01' + g % 300, g % 2 = 0, ARRAY[g, g + 1], json_build_object('g', g),
                timestamp '2026-01-01' + g * interval '1 ms'
           FROM generate_series(1, 100) g;
         ANALYZE kinds;",
    )
    .await
    .unwrap();
    let id = backfilled(
        &db,
        "ALTER TABLE kinds ALTER n TYPE bigint",
        "verify checksum",
    )
    .await;
    let spec = common::spec(c, id).await;
    let shadow = spec.shadow.to_string();
    let table_sql = engine::shadow::sql::table_sums(&spec, false, true);
    let shadow_sql = engine::shadow::sql::table_sums(&spec, true, true);
    let sums = |sql: String| async move {
        let r = c.query_one(&sql, &[]).await.expect(&sql);
        (r.get::<_, i64>(0), r.get::<_, String>(1))
    };
    assert_eq!(
        sums(table_sql.clone()).await,
        sums(shadow_sql.clone()).await,
        "an untouched shadow"
    );
    let damages: &[(&str, &str)] = &[
        ("a smallint", "a = a + 1"),
        ("b int", "b = b + 1"),
        ("n, the changed column", "n = n + 1"),
        ("two int columns swapped", "b = c, c = b"),
        ("real", "r = r + 1"),
        ("double precision", "d = d + 1"),
        ("numeric", "m = m + 0.01"),
        ("text", "t = t || 'x'"),
        ("varchar", "v = v || 'x'"),
        ("char", "ch = 'zz'"),
        ("uuid", "u = md5('other')::uuid"),
        ("jsonb", "j = '{\"g\": -1}'"),
        ("timestamp", "ts = ts + interval '1 microsecond'"),
        ("timestamptz (through text)", "tz = tz + interval '1 s'"),
        ("date (through text)", "dt = dt + 1"),
        ("boolean (through text)", "ok = NOT ok"),
        ("array (through text)", "arr = ARRAY[0]"),
        ("json (through text)", "js = '{\"g\": -1}'"),
        ("timestamp(3) (through text)", "ts3 = ts3 + interval '1 ms'"),
        ("a NULL", "t = NULL"),
        ("a NULL in the changed column", "n = NULL"),
        ("the key", "id = -7"),
    ];
    let want = sums(table_sql.clone()).await;
    for (what, set) in damages {
        c.batch_execute(&format!("BEGIN; UPDATE {shadow} SET {set} WHERE id = 7"))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = sums(shadow_sql.clone()).await;
        c.batch_execute("ROLLBACK").await.unwrap();
        assert_ne!(got, want, "the checksum missed a damaged {what}");
    }
    assert_eq!(sums(shadow_sql).await, want, "all damage rolled back");
}

/// `--keep-throughput`: before prepare the executor measures the server's transaction rate
/// with itself idle, then reads the rate once a window while it copies, drains and verifies,
/// and rests between chunks whenever the rate falls below the floor. A floor of 80 % under a
/// churn load: the clients' rate is measured, windows are read, every rest the pace asks for
/// is taken and counted, and the migration is as correct as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_throughput_measures_the_load_alone_and_rests_below_the_floor() {
    let db = TestDb::new("migrate_keep_throughput").await;
    let c = db.client();
    churn::setup(c, &Churn::new(), 50_000).await.unwrap();
    let id = common::submit(&db, CHURN_CHANGE, None).await;
    let load = Load::start(
        db.config(),
        Workload::Churn(Churn::new()),
        clients(CHURN_CLIENTS),
    )
    .await
    .unwrap();
    let (observe, seen) = common::observer("keep throughput");
    let mut ex = engine::executor::Executor::open(
        &db.config(),
        id,
        Options {
            // A floor the churn load's own triggers make hard to hold: the pace rests.
            keep_throughput: Some(0.8),
            // Chunks of 20 ms: the copy lasts a few windows of 1 s once it rests.
            chunk_time: Duration::from_millis(20),
            ..options()
        },
        Box::new(gates::Open),
        observe,
    )
    .await
    .unwrap_or_else(|e| panic!("open the executor: {e}"));
    apply_under_load(&mut ex, &load, "apply --keep-throughput 80").await;
    drop(ex);
    let report = load.stop().await;
    assert_clean(&report, "churn through apply --keep-throughput");
    churn_holds(&db, "after cutover").await;
    assert_verified_first_time(c, id).await;
    assert_types(&db, "churn_items", &["val"], "bigint", "after cutover").await;

    let seen = seen.lock().unwrap().clone();
    // The load alone, measured before prepare did anything to the table.
    let measured = seen
        .iter()
        .position(|e| e.contains("transactions a second with tandem idle"))
        .unwrap_or_else(|| panic!("no measurement of the load alone: {seen:#?}"));
    let rate: f64 = seen[measured]
        .split("the server ran ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {}", seen[measured]));
    assert!(
        rate >= 20.0,
        "4 churn clients ran {rate} transactions a second"
    );
    let first_copy = seen
        .iter()
        .position(|e| e.starts_with("Backfill"))
        .expect("the copy reported progress");
    assert!(measured < first_copy, "measured after the copy began");
    // Windows were read, and each rest the pace asked for was taken.
    let rests: Vec<f64> = seen
        .iter()
        .filter(|e| e.starts_with("Paced"))
        .map(|e| {
            e.split("rest: ")
                .nth(1)
                .and_then(|s| s.trim_end_matches(" }").parse().ok())
                .unwrap_or_else(|| panic!("no rest in {e}"))
        })
        .collect();
    assert!(!rests.is_empty(), "no window was read: {seen:#?}");
    let waited = seen
        .iter()
        .filter(|e| e.starts_with("Waited") && e.contains("Throughput"))
        .count();
    eprintln!(
        "load alone {rate:.0}/s; rests {rests:?}; {waited} rests taken; {}",
        report
    );
    if rests.iter().any(|r| *r > 0.0) {
        assert!(waited > 0, "the pace asked for rests and none was taken");
    }
    assert!(rests.iter().all(|r| (0.0..=0.9).contains(r)), "{rests:?}");
}
