//! A benchmark, not run by the suite: how long a swap holds its locks on a partitioned table
//! with many partitions (every partition and index is renamed under the swap's locks).
//! `PARTS=300 cargo test -p engine --test many_partitions -- --ignored --nocapture` prints the
//! cutover and rollback events (`took`: the swap's transaction); BENCHMARKS.md §5 has figures.

mod common;
use common::within;
use engine::executor::Options;
use fixtures::pg::TestDb;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn swap_of_a_table_with_many_partitions() {
    let n: usize = std::env::var("PARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let db = TestDb::new("many_partitions").await;
    let c = db.client();
    let mut sql = String::from("CREATE TABLE ev (id bigint NOT NULL, v int, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id); CREATE INDEX ev_v ON ev (v);");
    for i in 0..n {
        sql.push_str(&format!(
            "CREATE TABLE ev_{i} PARTITION OF ev FOR VALUES FROM ({}) TO ({});",
            i * 100,
            (i + 1) * 100
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO ev SELECT g, g, 'x' FROM generate_series(0, {}) g; ANALYZE ev;",
        n * 100 - 1
    ));
    c.batch_execute(&sql).await.unwrap();
    let id = common::submit(&db, "ALTER TABLE ev ALTER v TYPE bigint", None).await;
    let mut ex = common::open(
        &db,
        id,
        Options {
            lock_timeout: Duration::from_millis(5000),
            ..Options::default()
        },
        "many",
    )
    .await;
    within(600, "apply", ex.apply()).await.expect("apply");
    drop(ex);
    let mut ex = common::open(
        &db,
        id,
        Options {
            lock_timeout: Duration::from_millis(5000),
            ..Options::default()
        },
        "many-back",
    )
    .await;
    within(600, "rollback", ex.rollback())
        .await
        .expect("rollback");
    drop(ex);
    let (parts, leftovers): (i64, Vec<String>) = (
        c.query_one("SELECT count(*) FROM pg_partition_tree('ev') WHERE relid <> 'ev'::regclass AND relid::regclass::text LIKE 'ev\\_%'", &[])
            .await
            .unwrap()
            .get(0),
        common::leftovers(c).await,
    );
    assert_eq!(parts as usize, n, "every partition is back under its name");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
