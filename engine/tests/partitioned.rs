//! A partitioned table migrates as one tree (`shadow/partitions.rs`): a range-partitioned
//! table with a sub-partitioned (hash) partition and a default one, changed while writers
//! insert through the root and straight into partitions, update rows across partitions (a key
//! change that moves the row), delete through either, and truncate a partition. Every write
//! also goes to a plain `mirror` table in the same transaction: after cutover and after
//! rollback, the table holds exactly the mirror's rows, each partition has its name, its
//! indexes' names, its comment and its privileges. A partition attached during the migration
//! stops the cutover with the reason; a partition with an index of its own is refused before
//! anything changes; the planner refuses a change addressed to one partition.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{column_type, diff, within};
use engine::executor::Options;
use engine::state::Phase;
use fixtures::pg::TestDb;
use planner::plan::Strategy;
use tokio_postgres::Client;

const ROWS: i64 = 60_000;
const WRITERS: usize = 3;

const SCHEMA: &str = "
CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL, n int, note text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE INDEX ev_n ON ev (n);
CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY HASH (id);
CREATE TABLE ev_2025_h0 PARTITION OF ev_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE ev_2025_h1 PARTITION OF ev_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE ev_other PARTITION OF ev DEFAULT;
ALTER TABLE ev_2024 SET (fillfactor = 90);
COMMENT ON TABLE ev_2024 IS 'the year 2024';
CREATE ROLE %READER%;
GRANT SELECT ON ev_2024 TO %READER%;
CREATE TABLE mirror (id bigint NOT NULL, at date NOT NULL, n int, note text, PRIMARY KEY (id, at));
";

async fn setup(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(&format!(
            "{}
             INSERT INTO ev SELECT g, date '2023-07-01' + (g % 900)::int, g % 1000, 'r' || g
               FROM generate_series(1, {ROWS}) g;
             INSERT INTO mirror SELECT * FROM ev;
             ANALYZE ev;",
            SCHEMA.replace("%READER%", &reader(name))
        ))
        .await
        .unwrap();
    db
}

/// A role of the test's own (roles are the cluster's, tests run side by side).
fn reader(test: &str) -> String {
    format!("reader_{test}_{}", std::process::id())
}

/// The partitions' names, their indexes' names and the type of `n` in each leaf.
async fn tree(c: &Client) -> Vec<String> {
    c.query(
        "SELECT t.relid::regclass::text || ' [' || coalesce((SELECT string_agg(i.indexrelid::regclass::text, ', ' ORDER BY 1)
                  FROM pg_index i WHERE i.indrelid = t.relid), '') || '] '
                || coalesce((SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = t.relid AND attname = 'n'), '')
           FROM pg_partition_tree('ev') t ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

struct Writers {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicI64>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

/// Writers that change `ev` and `mirror` alike, one transaction per change, until stopped.
async fn start_writers(db: &TestDb, round: i64) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS as i64 {
        let c = db.connect().await;
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed: u64 = 0x9e37_79b9 + w as u64;
            let base = ROWS + 1 + w * 1_000_000 + round * 10_000_000;
            let mut next = base;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let r = (seed >> 33) as i64;
                let id = 1 + r % ROWS;
                let op = n % 7;
                n += 1;
                let change = match op {
                    // Through the root, routed.
                    0 => {
                        next += 1;
                        format!("INSERT INTO %T VALUES ({next}, date '2023-07-01' + {}, 1, 'new')", r % 900)
                    }
                    // Straight into a partition.
                    1 => {
                        next += 1;
                        format!("INSERT INTO %P VALUES ({next}, date '2024-03-01' + {}, 2, 'direct')", r % 200)
                    }
                    2 => format!("UPDATE %T SET n = n + 1, note = 'u' WHERE id = {id}"),
                    // A key change that moves the row to another partition.
                    3 => format!("UPDATE %T SET at = at + 200 WHERE id = {id} AND at < date '2025-06-01'"),
                    4 => format!("DELETE FROM %T WHERE id = {id}"),
                    5 => format!("DELETE FROM %Q WHERE id = {id}"),
                    _ => format!("UPDATE %T SET note = NULL WHERE id = {}", base + r % 50),
                };
                let on_ev = change
                    .replace("%T", "ev")
                    .replace("%P", "ev_2024")
                    .replace("%Q", "ev_2025_h1");
                let on_mirror = match op {
                    // The mirror has no partitions: the partition's constraint as a filter.
                    5 => change.replace("%Q", "mirror").replace(
                        "WHERE id",
                        "WHERE at >= '2025-01-01' AND at < '2026-01-01' AND satisfies_hash_partition('ev_2025'::regclass, 2, 1, id) AND id",
                    ),
                    _ => change.replace("%T", "mirror").replace("%P", "mirror"),
                };
                let sql = format!("BEGIN; {on_ev}; {on_mirror}; COMMIT;");
                if let Err(e) = c.batch_execute(&sql).await {
                    // Two writers moving or deleting the same row: PostgreSQL fails the later
                    // one (a row moved to another partition by a concurrent update), with or
                    // without tandem. Nothing of it committed, on either table.
                    let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                    if code == "40001" || code == "40P01" {
                        c.batch_execute("ROLLBACK").await.map_err(|e| e.to_string())?;
                        continue;
                    }
                    return Err(format!("{sql}: {:?}", e.as_db_error().map(|d| d.message())));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    Writers { stop, done, tasks }
}

impl Writers {
    async fn finish(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            if let Err(e) = t.await.unwrap() {
                panic!("a writer failed: {e}");
            }
        }
        self.done.load(Ordering::Relaxed)
    }
}

async fn assert_same(c: &Client, when: &str) {
    let d = diff(c, "ev", "mirror").await;
    assert!(d.equal(), "{when}: ev and mirror differ: {d:?}");
    let leaf: i64 = c
        .query_one("SELECT count(*) FROM ONLY ev_2025_h1", &[])
        .await
        .unwrap()
        .get(0);
    assert!(leaf > 0, "{when}: the partitions hold the rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_migrates_as_one_tree_under_writes() {
    let db = setup("partitioned_tree").await;
    let c = db.client();
    let before = tree(c).await;
    // The mirror's move of a row across partitions has no partition constraint to fail, so
    // the ev side's `at + 200` can only land where the mirror's does.
    let id = common::submit(&db, "ALTER TABLE ev ALTER n TYPE bigint", Some(3600)).await;
    let writers = start_writers(&db, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ex = common::open(
        &db,
        id,
        Options {
            chunk_time: Duration::from_millis(20),
            batch_pause: Duration::from_millis(20),
            ..Options::default()
        },
        "partitioned",
    )
    .await;
    let phase = within(120, "apply", ex.apply()).await.expect("apply");
    assert_eq!(phase, Phase::RollbackWindow);
    drop(ex);
    let spec = common::spec(c, id).await;
    let parts = spec.partitions();
    assert_eq!(parts.len(), 5, "every level of the tree: {parts:#?}");
    assert_eq!(parts.iter().filter(|p| p.leaf()).count(), 4);
    // Writes in the rollback window reach the old tree through the reverse triggers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = writers.finish().await;
    assert!(writes > 200, "the writers kept working ({writes} changes)");
    assert_same(c, "after cutover").await;
    assert_eq!(column_type(c, "ev_2024", "n").await, "bigint");
    assert_eq!(column_type(c, "ev_2025_h0", "n").await, "bigint");
    let after = tree(c).await;
    assert_eq!(
        after,
        before
            .iter()
            .map(|l| l.replace("] integer", "] bigint"))
            .collect::<Vec<_>>(),
        "the new tree has the original's partition and index names"
    );
    let (comment, reader, fillfactor): (Option<String>, bool, Option<Vec<String>>) = {
        let r = c
            .query_one(
                "SELECT obj_description('ev_2024'::regclass, 'pg_class'),
                        has_table_privilege($1, 'ev_2024', 'SELECT'),
                        (SELECT reloptions FROM pg_class WHERE oid = 'ev_2024'::regclass)",
                &[&reader("partitioned_tree")],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(comment.as_deref(), Some("the year 2024"));
    assert!(reader, "the partition's grant was carried");
    assert_eq!(fillfactor, Some(vec!["fillfactor=90".to_string()]));
    // The old tree, under tandem's names, was kept current in the window.
    let d = diff(c, &spec.old.to_string(), "mirror").await;
    assert!(d.equal(), "the old tree follows the new one: {d:?}");

    // A TRUNCATE of one partition reaches the other tree's partition only.
    c.batch_execute("BEGIN; TRUNCATE ev_other; DELETE FROM mirror WHERE at < '2024-01-01' OR at >= '2026-01-01'; COMMIT;")
        .await
        .unwrap();
    let d = diff(c, &spec.old.to_string(), "mirror").await;
    assert!(d.equal(), "a partition's TRUNCATE follows: {d:?}");

    // Back, under writes again.
    let writers = start_writers(&db, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ex = common::open(&db, id, Options::default(), "partitioned-back").await;
    within(60, "rollback", ex.rollback())
        .await
        .expect("rollback");
    writers.finish().await;
    assert_same(c, "after rollback").await;
    assert_eq!(
        tree(c).await,
        before,
        "the original tree is back, names and all"
    );
    assert!(
        common::leftovers(c).await.is_empty(),
        "{:?}",
        common::leftovers(c).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_attached_during_the_migration_stops_the_cutover() {
    let db = setup("partitioned_attach").await;
    let c = db.client();
    let id = common::submit(&db, "ALTER TABLE ev ALTER n TYPE bigint", None).await;
    let mut ex = common::open(
        &db,
        id,
        Options {
            until: Phase::Verify,
            ..Options::default()
        },
        "attach",
    )
    .await;
    within(60, "apply until verify", ex.apply())
        .await
        .expect("apply");
    drop(ex);
    c.batch_execute(
        "ALTER TABLE ev DETACH PARTITION ev_other;
         CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO ev VALUES (-1, '2026-02-02', 1, 'late');",
    )
    .await
    .unwrap();
    let mut ex = common::open(&db, id, Options::default(), "attach-cutover").await;
    let err = within(60, "apply", ex.apply())
        .await
        .expect_err("the cutover must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("public.ev_2026 attached to") && msg.contains("public.ev_other detached from"),
        "{msg}"
    );
    assert_eq!(
        column_type(c, "ev", "n").await,
        "integer",
        "nothing swapped"
    );
    assert_eq!(column_type(c, "ev_2026", "n").await, "integer");
    // Rolled back before its cutover, the migration is abandoned: the shadow tree, the
    // triggers on every partition (and on the one attached since) and the functions go.
    drop(ex);
    let mut ex = common::open(&db, id, Options::default(), "attach-abandon").await;
    within(60, "rollback", ex.rollback())
        .await
        .expect("abandon");
    assert!(
        common::leftovers(c).await.is_empty(),
        "{:?}",
        common::leftovers(c).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_with_an_index_of_its_own_is_refused_before_anything_changes() {
    let db = setup("partitioned_own_index").await;
    let c = db.client();
    c.batch_execute("CREATE INDEX ev_2024_note ON ev_2024 (note)")
        .await
        .unwrap();
    let id = common::submit(&db, "ALTER TABLE ev ALTER n TYPE bigint", None).await;
    let mut ex = common::open(&db, id, Options::default(), "own-index").await;
    let msg = within(60, "apply", ex.apply())
        .await
        .expect_err("prepare must refuse")
        .to_string();
    assert!(
        msg.contains("partition ev_2024: it has index ev_2024_note of its own"),
        "{msg}"
    );
    assert!(common::leftovers(c).await.is_empty());
    assert_eq!(column_type(c, "ev", "n").await, "integer");

    // A change addressed to one partition: refused by the planner, with the table to change.
    let plan = common::plan(c, "ALTER TABLE ev_2024 ALTER note TYPE varchar(100)").await;
    let step = plan
        .steps
        .iter()
        .find(|s| s.strategy == Strategy::Refused)
        .unwrap_or_else(|| panic!("{:#?}", plan.steps));
    assert!(
        step.refusal
            .as_deref()
            .is_some_and(|r| r.contains("ev_2024 is a partition of ev:")),
        "{step:#?}"
    );
}

/// `orders` partitioned by month with an identity key (ALWAYS), `items` referencing it, a view
/// over both; clients insert orders (their ids drawn from the identity), insert items and
/// read the view, through cutover and rollback. The ids come out contiguous (no value skipped or
/// given twice when the sequence moves at each swap), no item is orphaned, the foreign key
/// points at the live tree, and each swap took at most 3 attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_foreign_keys_and_views_over_a_partitioned_table() {
    let db = TestDb::new("partitioned_identity").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY, at date NOT NULL DEFAULT date '2025-01-15',
                              amount int NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE orders_jan PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2025-02-01');
         CREATE TABLE orders_feb PARTITION OF orders FOR VALUES FROM ('2025-02-01') TO ('2025-03-01');
         CREATE TABLE items (id bigserial PRIMARY KEY, order_id int NOT NULL, order_at date NOT NULL,
                             FOREIGN KEY (order_id, order_at) REFERENCES orders ON DELETE CASCADE);
         CREATE VIEW order_totals AS
           SELECT o.id, o.amount, count(i.id) AS items FROM orders o LEFT JOIN items i ON i.order_id = o.id AND i.order_at = o.at
            GROUP BY o.id, o.amount;
         INSERT INTO orders (at, amount) SELECT date '2025-01-01' + (g % 59), g FROM generate_series(1, 20000) g;
         INSERT INTO items (order_id, order_at) SELECT id, at FROM orders WHERE id % 3 = 0;
         ANALYZE orders; ANALYZE items;",
    )
    .await
    .unwrap();
    let id = common::submit(
        &db,
        "ALTER TABLE orders ALTER amount TYPE bigint",
        Some(3600),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let client = db.connect().await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // As the application statements of the issue: child inserts (the child
                // locked, then the parent for the key's check), parent inserts, view reads.
                let order = 1 + (n * 7919 + w * 104_729) % 20_000;
                let sql = match (n + w) % 4 {
                    0 => "SELECT count(*) FROM order_totals WHERE id < 50".to_string(),
                    1 => format!(
                        "INSERT INTO items (order_id, order_at) VALUES ({order}, date '2025-01-01' + {})",
                        order % 59
                    ),
                    _ => format!(
                        "INSERT INTO orders (at, amount) VALUES (date '2025-01-01' + {}, {n})",
                        (n * 7 + w) % 59
                    ),
                };
                let t0 = std::time::Instant::now();
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| format!("{sql}: {:?}", e.as_db_error().map(|d| d.message())))?;
                slowest = slowest.max(t0.elapsed());
            }
            Ok::<_, String>((n, slowest))
        }));
    }
    let stop_clients = |tasks: Vec<tokio::task::JoinHandle<Result<(i64, Duration), String>>>| async {
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        let mut slowest = Duration::ZERO;
        for t in tasks {
            let (n, slow) = t
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("a client failed: {e}"));
            total += n;
            slowest = slowest.max(slow);
        }
        (total, slowest)
    };

    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ex = common::open(
        &db,
        id,
        Options {
            chunk_time: Duration::from_millis(20),
            batch_pause: Duration::from_millis(10),
            ..Options::default()
        },
        "identity",
    )
    .await;
    assert_eq!(
        within(120, "apply", ex.apply()).await.expect("apply"),
        Phase::RollbackWindow
    );
    drop(ex);
    assert_eq!(column_type(c, "orders_feb", "amount").await, "bigint");
    let fk: String = c
        .query_one(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'f' AND conparentid = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fk, "orders", "the items reference the new tree");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ex = common::open(&db, id, Options::default(), "identity-back").await;
    within(60, "rollback", ex.rollback())
        .await
        .expect("rollback");
    drop(ex);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (work, slowest) = stop_clients(tasks).await;
    assert!(work > 100, "the clients kept working ({work} statements)");
    // A loose bound (a debug build on a busy 2-core machine): a swap holds its locks for
    // tens of milliseconds, within lock_timeout.
    assert!(
        slowest < Duration::from_millis(500),
        "the slowest client statement took {slowest:?}"
    );

    let attempts: i32 = c
        .query_one(
            "SELECT cutover_attempts FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(attempts <= 3, "{attempts} swap attempts");
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT id), min(id), max(id),
                    (SELECT count(*) FROM items i WHERE NOT EXISTS
                        (SELECT 1 FROM orders o WHERE o.id = i.order_id AND o.at = i.order_at)),
                    (SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'f' AND conparentid = 0),
                    (SELECT convalidated FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'f' AND conparentid = 0)
               FROM orders",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct, min, max): (i64, i64, i32, i32) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(rows, distinct, "no id given twice");
    assert_eq!((min, i64::from(max)), (1, rows), "no id skipped");
    assert_eq!(r.get::<_, i64>(4), 0, "no orphaned item");
    assert_eq!(r.get::<_, String>(5), "orders");
    assert!(r.get::<_, bool>(6), "the foreign key is validated");
    // The next id follows on.
    let next: i32 = c
        .query_one("INSERT INTO orders (amount) VALUES (1) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(i64::from(next), rows + 1);
    assert_eq!(column_type(c, "orders_feb", "amount").await, "integer");
    assert!(common::leftovers(c).await.is_empty());
}

/// Finalize drops the old tree (every partition with its root), the triggers on every new
/// partition and the functions; the new tree keeps the user's names and takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_drops_the_old_tree_and_every_trigger() {
    let db = setup("partitioned_finalize").await;
    let c = db.client();
    let before = tree(c).await;
    let id = common::submit(&db, "ALTER TABLE ev ALTER n TYPE bigint", None).await;
    let mut ex = common::open(&db, id, Options::default(), "finalize").await;
    within(60, "apply", ex.apply()).await.expect("apply");
    within(60, "finalize", ex.finalize())
        .await
        .expect("finalize");
    drop(ex);
    assert!(
        common::leftovers(c).await.is_empty(),
        "{:?}",
        common::leftovers(c).await
    );
    assert_eq!(
        tree(c).await,
        before
            .iter()
            .map(|l| l.replace("] integer", "] bigint"))
            .collect::<Vec<_>>()
    );
    c.batch_execute(
        "BEGIN; INSERT INTO ev VALUES (-5, '2024-02-02', 1, 'after'); INSERT INTO mirror VALUES (-5, '2024-02-02', 1, 'after');
         TRUNCATE ev_other; DELETE FROM mirror WHERE at < '2024-01-01' OR at >= '2026-01-01'; COMMIT;",
    )
    .await
    .unwrap();
    assert_same(c, "after finalize").await;
}

/// The foreign key of a partitioned table, to or from the migrating table. PostgreSQL 15
/// cannot add one NOT VALID to a partitioned table, so the swap adds it NOT VALID to each leaf
/// (every new row is checked from the swap on), validates the leaves after commit, and then
/// adds it to the partitioned table, which takes the leaves' over without a scan. Both ways:
/// a plain parent referenced by a partitioned child (which could never be switched before:
/// every attempt failed), and a partitioned table referencing a plain one; cutover, then
/// rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_of_partitioned_tables_follow_the_swap() {
    let db = TestDb::new("partitioned_fks").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, v int);
         INSERT INTO accounts SELECT g, g FROM generate_series(1, 1000) g;
         CREATE TABLE ev (id int, at date, account int NOT NULL REFERENCES accounts, n int,
                          PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE ev_a PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE ev_b PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO ev SELECT g, date '2024-06-01' + (g % 300), g, g FROM generate_series(1, 1000) g;
         ANALYZE;",
    )
    .await
    .unwrap();
    // (referencing table, constraint, referenced table, attached to a parent, validated)
    let fks = || async {
        c.query(
            "SELECT conrelid::regclass::text || ' ' || conname || ' -> ' || confrelid::regclass::text
                    || CASE WHEN conparentid <> 0 THEN ' (partition)' ELSE '' END
                    || CASE WHEN convalidated THEN '' ELSE ' NOT VALID' END
               FROM pg_constraint
              WHERE contype = 'f' AND connamespace = 'public'::regnamespace
                -- the parked old tree keeps its own keys in the rollback window
                AND conrelid::regclass::text NOT LIKE '\\_tandem%'
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    };
    let before = fks().await;
    assert_eq!(
        before,
        [
            "ev ev_account_fkey -> accounts",
            "ev_a ev_account_fkey -> accounts (partition)",
            "ev_b ev_account_fkey -> accounts (partition)"
        ]
    );
    let orphan = "INSERT INTO ev VALUES (5000, '2024-07-01', 99999, 1)";
    for change in [
        "ALTER TABLE accounts ALTER v TYPE bigint",
        "ALTER TABLE ev ALTER n TYPE bigint",
    ] {
        let id = common::submit(&db, change, Some(3600)).await;
        let mut ex = common::open(&db, id, Options::default(), "fks").await;
        within(60, "apply", ex.apply()).await.expect(change);
        drop(ex);
        assert_eq!(fks().await, before, "{change}: after cutover");
        assert!(
            c.batch_execute(orphan).await.is_err(),
            "{change}: the key holds"
        );
        let mut ex = common::open(&db, id, Options::default(), "fks-back").await;
        within(60, "rollback", ex.rollback()).await.expect(change);
        drop(ex);
        assert_eq!(fks().await, before, "{change}: after rollback");
        assert!(
            c.batch_execute(orphan).await.is_err(),
            "{change}: the key holds"
        );
        assert!(common::leftovers(c).await.is_empty());
    }
}
