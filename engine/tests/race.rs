//! The backfill's race with the application, made deterministic: two (or more) sessions and
//! the row locks between them, not random load. A backfill batch (`copy_batch`: lock the
//! copy lock (an advisory lock the delete path of the triggers shares), copy it with `ON CONFLICT DO NOTHING`) and concurrent writers
//! (whose forward trigger upserts into the shadow) are put in each order that matters, and
//! the test checks who waits for whom and that the copy never resurrects a deleted row nor
//! overwrites a newer value, NULLs and TOASTed values included.

mod common;

use std::time::Duration;

use common::{diff, within};
use engine::executor::backfill::copy_batch;
use engine::executor::Options;
use engine::shadow::TableSpec;
use engine::state::Phase;
use fixtures::pg::TestDb;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

const CHANGE: &str = "ALTER TABLE t ALTER n TYPE bigint";
const ROWS: i32 = 100;

/// SQL for a ~10 KB value (320 md5s: incompressible enough to be stored out of line).
fn wide(seed: &str) -> String {
    format!("(SELECT string_agg(md5('{seed}:' || k), '') FROM generate_series(1, 320) k)")
}

struct Race {
    db: TestDb,
    id: i64,
    spec: TableSpec,
    shadow: String,
}

/// `t(id int primary key, v text, n int)` with ids 1..=100 (`v` of ids 4, 14, ... 94 wide), migrated
/// to dual-write: the triggers are in, nothing is copied yet.
async fn setup(name: &str) -> Race {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
             INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, {ROWS}) g;
             UPDATE t SET v = {} WHERE id % 10 = 4;
             ANALYZE t;",
            wide("' || id || '")
        ))
        .await
        .unwrap();
    let id = common::submit(&db, CHANGE, None).await;
    let mut ex = common::open(
        &db,
        id,
        Options {
            until: Phase::DualWrite,
            // These races are the direct method's: its copy batches against the forward
            // trigger.
            copy: engine::shadow::CopyMethod::Direct,
            ..Options::default()
        },
        name,
    )
    .await;
    let p = within(30, "apply --until dual_write", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply --until dual_write: {e}"));
    assert_eq!(p, Phase::DualWrite);
    drop(ex);
    let spec = common::spec(db.client(), id).await;
    let shadow = spec.shadow.to_string();
    assert_eq!(count(db.client(), &shadow).await, 0, "nothing copied yet");
    // The wide values really are stored out of line.
    let toasted: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM t WHERE pg_column_size(v) > 8000 AND id % 10 = 4",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(toasted, 10);
    Race {
        db,
        id,
        spec,
        shadow,
    }
}

async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The row `id` of `table` as `(v, n)` (n as bigint; a wide v as `wide:<md5>`), if there.
async fn row(c: &Client, table: &str, id: i32) -> Option<(Option<String>, Option<i64>)> {
    c.query_opt(
        &format!(
            "SELECT {}, n::bigint FROM {table} WHERE id = $1",
            summary("v")
        ),
        &[&id],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
}

/// A text value as `row` shows it: itself, or `wide:<md5>` when longer than 100 bytes.
fn summary(expr: &str) -> String {
    format!("CASE WHEN length({expr}) > 100 THEN 'wide:' || md5({expr}) ELSE {expr} END")
}

/// The value the SQL expression `expr` has, as `row` shows it.
async fn value(c: &Client, expr: &str) -> String {
    c.query_one(&format!("SELECT {}", summary(expr)), &[])
        .await
        .unwrap()
        .get(0)
}

/// Wait until session `pid` waits for a lock; returns what it waits for. Fails after 5 s.
async fn blocked(c: &Client, pid: i32, who: &str) -> String {
    let mut last = String::new();
    for _ in 0..250 {
        let r = c
            .query_one(
                "SELECT coalesce(wait_event_type, '') = 'Lock', format('%s/%s %s: %s', wait_event_type, wait_event, state, query)
                   FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        last = r.get(1);
        if r.get::<_, bool>(0) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{who} (pid {pid}) should be waiting for a lock, but is: {last}");
}

/// Whether session `pid` holds (or waits for) a lock on `relation`: a writer blocked in
/// the forward trigger has the shadow open, one blocked on the original's row has not.
async fn has_open(c: &Client, pid: i32, relation: &str) -> bool {
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND relation = to_regclass($2))",
        &[&pid, &relation],
    )
    .await
    .unwrap()
    .get(0)
}

/// A backfill batch over `(lo, hi]` on a session of its own, in a transaction it commits.
/// Returns the session's pid and the batch's (rows locked, rows copied).
async fn spawn_batch(
    r: &Race,
    lo: Option<i32>,
    hi: i32,
) -> (i32, JoinHandle<Result<(i64, u64), tokio_postgres::Error>>) {
    let mut c = r.db.connect().await;
    let pid = pid(&c).await;
    let spec = r.spec.clone();
    let handle = tokio::spawn(async move {
        let tx = c.transaction().await?;
        let lo = lo.map(|l| vec![l.to_string()]);
        let done = copy_batch(&tx, &spec, lo.as_deref(), &[hi.to_string()]).await?;
        tx.commit().await?;
        Ok(done)
    });
    (pid, handle)
}

/// One autocommit statement on a session of its own. Returns the session's pid and the
/// rows the statement touched.
async fn spawn_write(
    r: &Race,
    sql: String,
) -> (i32, JoinHandle<Result<u64, tokio_postgres::Error>>) {
    let c = r.db.connect().await;
    let pid = pid(&c).await;
    let handle = tokio::spawn(async move { c.execute(sql.as_str(), &[]).await });
    (pid, handle)
}

/// At the end of each scenario: the shadow equals the original, mapped, row for row, and
/// no trigger write failed.
async fn assert_shadow_current(r: &Race) {
    let d = diff(r.db.client(), "t", &r.shadow).await;
    assert!(d.equal(), "the shadow differs from the table: {d:#?}");
    let div = common::divergence(r.db.client(), r.id).await;
    assert!(div.is_empty(), "{div:#?}");
}

/// Run the rest of the migration: the backfill finds everything copied, verification
/// passes at the first round, and the cutover leaves the new table equal to the old one.
async fn finish(r: &Race) {
    let mut ex = common::open(&r.db, r.id, Options::default(), "finish").await;
    let p = within(30, "apply to cutover", ex.apply())
        .await
        .unwrap_or_else(|e| panic!("apply to cutover: {e}"));
    assert_eq!(p, Phase::RollbackWindow);
    let c = r.db.client();
    let verify: serde_json::Value = c
        .query_one(
            "SELECT verify_result FROM tandem.migrations WHERE id = $1",
            &[&r.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(verify["passed"], true, "{verify}");
    assert_eq!(verify["tables"][0]["rounds"], 1, "{verify}");
    assert_eq!(common::column_type(c, "t", "n").await, "bigint");
    let d = diff(c, "t", &r.spec.old.to_string()).await;
    assert!(d.equal(), "{d:#?}");
}

/// The writer first: its DELETE, key change, NULL update and wide update are uncommitted
/// when the batch starts. The batch waits (the deleted and moved rows are locked FOR
/// UPDATE), then reads the committed state: the deleted row is not copied, the moved row is
/// out of the range (the trigger wrote its new key), and the updated rows, which the
/// trigger wrote, are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_first_then_batch() {
    let r = setup("race_writer_first").await;
    let c = r.db.client();
    let w = r.db.connect().await;
    let new_wide = wide("writer-first");
    w.batch_execute(&format!(
        "BEGIN;
         DELETE FROM t WHERE id = 10;
         UPDATE t SET v = 'new', n = NULL WHERE id = 20;
         UPDATE t SET id = 1000 WHERE id = 30;
         UPDATE t SET v = {new_wide} WHERE id = 44;"
    ))
    .await
    .unwrap();

    let (b_pid, batch) = spawn_batch(&r, None, ROWS).await;
    let waits = blocked(c, b_pid, "the batch").await;
    eprintln!("batch waits: {waits}");
    assert!(
        waits.contains("pg_advisory_xact_lock"),
        "the batch should wait for the writer's hold on the copy lock: {waits}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !batch.is_finished(),
        "the batch did not wait for the writer"
    );

    w.batch_execute("COMMIT").await.unwrap();
    let (locked, copied) = within(10, "the batch", batch).await.unwrap().unwrap();
    // 100 rows but 10 (deleted) and 30 (moved out of range); 20 and 44 already in the
    // shadow, written by the trigger.
    assert_eq!((locked, copied), (98, 96));

    assert_eq!(row(c, &r.shadow, 10).await, None, "deleted row resurrected");
    assert_eq!(
        row(c, &r.shadow, 20).await,
        Some((Some("new".into()), None))
    );
    assert_eq!(row(c, &r.shadow, 30).await, None, "old key resurrected");
    assert_eq!(
        row(c, &r.shadow, 1000).await,
        Some((Some("v30".into()), Some(30)))
    );
    let expected = value(c, &new_wide).await;
    assert!(expected.starts_with("wide:"));
    assert_eq!(
        row(c, &r.shadow, 44).await,
        Some((Some(expected), Some(44)))
    );
    assert_eq!(count(c, &r.shadow).await, 99);
    assert_shadow_current(&r).await;
    finish(&r).await;
}

/// The batch first: it has locked and copied its range and not committed. A DELETE and a
/// key change wait in their trigger for its copy lock; a plain UPDATE (NULL, or a wide value) gets its
/// row lock but its trigger's upsert waits for the batch's uncommitted copy of the row, then
/// overwrites it. Nothing deleted comes back, no newer value is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_first_then_writers() {
    let r = setup("race_batch_first").await;
    let c = r.db.client();
    let mut b = r.db.connect().await;
    let tx = b.transaction().await.unwrap();
    let done = copy_batch(&tx, &r.spec, None, &[ROWS.to_string()])
        .await
        .unwrap();
    assert_eq!(done, (100, 100));

    let new_wide = wide("batch-first");
    // (what, statement, waits inside the trigger rather than for the original's row)
    let writers = [
        ("DELETE", "DELETE FROM t WHERE id = 10".to_string(), false),
        (
            "UPDATE to NULL",
            "UPDATE t SET v = 'newer', n = NULL WHERE id = 20".to_string(),
            true,
        ),
        (
            "key change",
            "UPDATE t SET id = 2000 WHERE id = 30".to_string(),
            false,
        ),
        (
            "wide UPDATE",
            format!("UPDATE t SET v = {new_wide} WHERE id = 44"),
            true,
        ),
    ];
    let mut running = Vec::new();
    for (what, sql, in_trigger) in writers {
        let (pid, h) = spawn_write(&r, sql).await;
        let waits = blocked(c, pid, what).await;
        eprintln!("{what} waits: {waits}");
        assert_eq!(
            has_open(c, pid, &r.shadow).await,
            in_trigger,
            "{what} should wait {}",
            if in_trigger {
                "in the trigger, for the batch's uncommitted copy of the row"
            } else {
                "in the trigger, for the batch's copy lock, before touching the shadow"
            }
        );
        running.push((what, h));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (what, h) in &running {
        assert!(!h.is_finished(), "{what} did not wait for the batch");
    }
    // The shadow as the batch left it, seen from outside: nothing yet (uncommitted).
    assert_eq!(count(c, &r.shadow).await, 0);

    tx.commit().await.unwrap();
    for (what, h) in running {
        let n = within(10, what, h).await.unwrap().unwrap();
        assert_eq!(n, 1, "{what} touched {n} rows");
    }

    assert_eq!(row(c, &r.shadow, 10).await, None, "deleted row resurrected");
    assert_eq!(
        row(c, &r.shadow, 20).await,
        Some((Some("newer".into()), None)),
        "the copy's older value overwrote the update"
    );
    assert_eq!(row(c, &r.shadow, 30).await, None, "old key resurrected");
    assert_eq!(
        row(c, &r.shadow, 2000).await,
        Some((Some("v30".into()), Some(30)))
    );
    let expected = value(c, &new_wide).await;
    assert_eq!(
        row(c, &r.shadow, 44).await,
        Some((Some(expected), Some(44)))
    );
    assert_eq!(count(c, &r.shadow).await, 99);
    assert_shadow_current(&r).await;
    finish(&r).await;
}

/// A plain UPDATE (to NULL, and of a wide value) is uncommitted when the batch starts: the
/// batch's copy lock does not wait for it, but its copy of those rows runs into the
/// trigger's uncommitted upserts and waits. The writer commits: the copy skips the rows,
/// and the shadow keeps the newer values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_waits_for_an_uncommitted_update_that_commits() {
    let r = setup("race_update_commits").await;
    let c = r.db.client();
    let w = r.db.connect().await;
    let new_wide = wide("commits");
    w.batch_execute(&format!(
        "BEGIN;
         UPDATE t SET v = 'c-new', n = NULL WHERE id = 20;
         UPDATE t SET v = {new_wide}, n = NULL WHERE id = 44;"
    ))
    .await
    .unwrap();
    let (b_pid, batch) = spawn_batch(&r, None, ROWS).await;
    let waits = blocked(c, b_pid, "the batch's copy").await;
    eprintln!("batch waits: {waits}");
    assert!(
        waits.contains("INSERT"),
        "the lock query should not wait, the copy should: {waits}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!batch.is_finished());

    w.batch_execute("COMMIT").await.unwrap();
    let done = within(10, "the batch", batch).await.unwrap().unwrap();
    assert_eq!(done, (100, 98), "rows 20 and 44 skipped");
    assert_eq!(
        row(c, &r.shadow, 20).await,
        Some((Some("c-new".into()), None))
    );
    let expected = value(c, &new_wide).await;
    assert_eq!(row(c, &r.shadow, 44).await, Some((Some(expected), None)));
    assert_shadow_current(&r).await;
}

/// The same, but the writer rolls back: its trigger's upserts vanish with it, and the copy
/// writes the rows as they are (the original values, NULLs and wide value included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_waits_for_an_uncommitted_update_that_rolls_back() {
    let r = setup("race_update_rolls_back").await;
    let c = r.db.client();
    let before_wide = value(c, "(SELECT v FROM t WHERE id = 44)").await;
    c.batch_execute("UPDATE t SET n = NULL WHERE id = 50")
        .await
        .unwrap();
    // The trigger already put row 50 in the shadow, with n NULL.
    assert_eq!(
        row(c, &r.shadow, 50).await,
        Some((
            Some(value(c, "(SELECT v FROM t WHERE id = 50)").await),
            None
        ))
    );
    let w = r.db.connect().await;
    w.batch_execute(&format!(
        "BEGIN;
         UPDATE t SET v = 'aborted', n = NULL WHERE id = 20;
         UPDATE t SET v = {}, n = -1 WHERE id = 44;
         UPDATE t SET n = 5 WHERE id = 50;",
        wide("aborted")
    ))
    .await
    .unwrap();
    let (b_pid, batch) = spawn_batch(&r, None, ROWS).await;
    let waits = blocked(c, b_pid, "the batch's copy").await;
    eprintln!("batch waits: {waits}");
    assert!(waits.contains("INSERT"), "the copy should wait: {waits}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!batch.is_finished());

    w.batch_execute("ROLLBACK").await.unwrap();
    let done = within(10, "the batch", batch).await.unwrap().unwrap();
    assert_eq!(done, (100, 99), "every row copied but 50, already there");
    assert_eq!(
        row(c, &r.shadow, 20).await,
        Some((Some("v20".into()), Some(20)))
    );
    assert_eq!(
        row(c, &r.shadow, 44).await,
        Some((Some(before_wide), Some(44)))
    );
    let (_, n50) = row(c, &r.shadow, 50).await.unwrap();
    assert_eq!(n50, None, "the NULL written before the batch survives");
    assert_shadow_current(&r).await;
}
