//! Helpers shared by the executor's integration tests (`migrate.rs`, `race.rs`): plan and
//! submit a change in-process, open an executor, read tandem's bookkeeping, and compare
//! tables row for row on a real PostgreSQL.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::executor::{Event, Executor, Observer, Options};
use engine::shadow::TableSpec;
use engine::state::Phase;
use fixtures::pg::TestDb;
use planner::plan::{self, Plan, PlanSource, Strategy, Target};
use tokio_postgres::Client;

/// Await `fut`, failing the test (instead of hanging it) after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {secs} s"),
    }
}

/// Commits of `db`'s new sessions wait for their WAL flush, as on a production server (the
/// harness's cluster commits without waiting): a row whose commit is not flushed yet gets
/// no hint bit and cannot be marked all-visible.
pub async fn flush_commits(db: &TestDb) {
    db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = on",
            planner::ident::Ident::new(db.name()).unwrap()
        ))
        .await
        .unwrap();
}

/// Plan `sql` against the live schema, as `tandem plan --sql` does.
pub async fn plan(client: &Client, sql: &str) -> Plan {
    let live = engine::introspect(client).await.expect("introspect");
    let database = engine::database_identity(client)
        .await
        .expect("database identity");
    let target = Target {
        live: &live,
        database,
        pg_version: 15,
        in_place_below: 0,
    };
    plan::from_sql(&target, PlanSource::new("sql", "-", sql), sql)
}

/// Plan `sql` (which must give a shadow step and no refused one), install the bookkeeping
/// and submit the plan. Returns the migration's id.
pub async fn submit(db: &TestDb, sql: &str, rollback_window_secs: Option<u64>) -> i64 {
    let plan = plan(db.client(), sql).await;
    assert!(
        plan.steps.iter().any(|s| s.strategy == Strategy::Shadow),
        "`{sql}` should be planned as a shadow-table rewrite: {:#?}",
        plan.steps
    );
    assert!(
        plan.steps.iter().all(|s| s.strategy != Strategy::Refused),
        "`{sql}` has a refused step: {:#?}",
        plan.steps
    );
    let mut c = db.connect().await;
    engine::state::install(&mut c).await.expect("install");
    engine::state::submit(&c, &plan, rollback_window_secs)
        .await
        .expect("submit")
}

/// An observer that prints every event (shown when a test fails), stamped with the time
/// since it was made, and keeps them.
pub fn observer(tag: &str) -> (Observer, Arc<Mutex<Vec<String>>>) {
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

/// Open an executor on migration `id` with `opts`.
pub async fn open(db: &TestDb, id: i64, opts: Options, tag: &str) -> Executor {
    let (o, _) = observer(tag);
    Executor::open(&db.config(), id, opts, Box::new(gates::Open), o)
        .await
        .unwrap_or_else(|e| panic!("open the executor on migration {id}: {e}"))
}

/// The stored phase of migration `id`.
pub async fn phase(client: &Client, id: i64) -> Phase {
    let p: String = client
        .query_one("SELECT phase FROM tandem.migrations WHERE id = $1", &[&id])
        .await
        .expect("read the phase")
        .get(0);
    Phase::parse(&p).expect("a known phase")
}

/// The (single) table spec migration `id` stored in prepare.
pub async fn spec(client: &Client, id: i64) -> TableSpec {
    let rows = client
        .query(
            "SELECT spec::text FROM tandem.shadow_tables WHERE migration_id = $1 ORDER BY step",
            &[&id],
        )
        .await
        .expect("read the shadow tables");
    assert_eq!(rows.len(), 1, "migration {id} should rebuild one table");
    serde_json::from_str(rows[0].get::<_, &str>(0)).expect("the spec parses")
}

/// `(column, format_type)` of `table`'s columns, in order.
pub async fn columns(client: &Client, table: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
              ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap_or_else(|e| panic!("read the columns of {table}: {e}"))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The type of one column.
pub async fn column_type(client: &Client, table: &str, column: &str) -> String {
    columns(client, table)
        .await
        .into_iter()
        .find(|(c, _)| c == column)
        .unwrap_or_else(|| panic!("{table} has no column {column}"))
        .1
}

/// Whether a relation of that (qualified or search-path) name exists.
pub async fn exists(client: &Client, relation: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
        .await
        .expect("to_regclass")
        .get(0)
}

/// Names of the indexes on `table`, sorted.
pub async fn indexes(client: &Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .await
        .expect("read the indexes")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// tandem's bookkeeping tables: the only objects schema `tandem` may keep once a migration
/// is over.
const BOOKKEEPING: &[&str] = &[
    "schema_version",
    "migrations",
    "events",
    "shadow_tables",
    "divergence",
    "proxies",
    "proxy_acks",
    "proxy_signals",
    "dual_reads",
    "drift",
    "drift_salt",
    "instance",
    "policies",
    "signatures",
    "audit",
];

/// tandem's own functions (the audit log's appender and the append-only guard), which stay.
const BOOKKEEPING_FUNCTIONS: &[&str] = &["audit_append", "refuse_rewrite"];

/// Everything tandem created for a migration that is still there: relations in schema
/// `tandem` other than the bookkeeping (and their indexes and sequences), any function in
/// schema `tandem`, and any relation, index or trigger named `_tandem_*` elsewhere.
pub async fn leftovers(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT format('relation %s.%s (relkind %s)', n.nspname, c.relname, c.relkind)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE (n.nspname = 'tandem'
                     AND NOT (c.relkind IN ('r', 'p') AND c.relname = ANY($1))
                     AND NOT (c.relkind = 'v' AND c.relname IN ('mirror_targets', 'events'))
                     AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class b ON b.oid = i.indrelid
                                      WHERE i.indexrelid = c.oid AND b.relname = ANY($1))
                     AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class b ON b.oid = d.refobjid
                                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                        AND d.refclassid = 'pg_class'::regclass
                                        AND c.relkind = 'S' AND b.relname = ANY($1)))
                 OR (n.nspname NOT IN ('tandem', 'pg_catalog', 'information_schema')
                     AND c.relname LIKE '\\_tandem\\_%')
             UNION ALL
             SELECT format('function %s', p.oid::regprocedure)
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'tandem' AND NOT p.proname = ANY($2)
             UNION ALL
             SELECT format('trigger %s on %s', t.tgname, t.tgrelid::regclass)
               FROM pg_trigger t WHERE t.tgname LIKE '\\_tandem\\_%'
             ORDER BY 1",
            &[&BOOKKEEPING, &BOOKKEEPING_FUNCTIONS],
        )
        .await
        .expect("look for tandem's leftovers")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Rows of two tables compared as multisets (EXCEPT ALL both ways, in one snapshot) on the
/// columns of `b`, each column of `a` cast to `b`'s type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub a_rows: i64,
    pub b_rows: i64,
    pub only_in_a: i64,
    pub only_in_b: i64,
    /// A few differing rows, as text, marked with their side.
    pub examples: Vec<String>,
}

impl Diff {
    pub fn equal(&self) -> bool {
        self.only_in_a == 0 && self.only_in_b == 0 && self.a_rows == self.b_rows
    }
}

pub async fn diff(client: &Client, a: &str, b: &str) -> Diff {
    let cols = columns(client, b).await;
    assert!(!cols.is_empty(), "{b} has no columns");
    let a_side: Vec<String> = cols
        .iter()
        .map(|(c, t)| format!("{}::{t}", quote(c)))
        .collect();
    let b_side: Vec<String> = cols.iter().map(|(c, _)| quote(c)).collect();
    let sql = format!(
        "WITH a AS MATERIALIZED (SELECT {a_side} FROM {a}),
              b AS MATERIALIZED (SELECT {b_side} FROM {b}),
              oa AS MATERIALIZED (SELECT * FROM a EXCEPT ALL SELECT * FROM b),
              ob AS MATERIALIZED (SELECT * FROM b EXCEPT ALL SELECT * FROM a)
         SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b),
                (SELECT count(*) FROM oa), (SELECT count(*) FROM ob),
                array(SELECT * FROM (SELECT 'only in {a_lit}: ' || left(oa::text, 120) FROM oa LIMIT 3) x
                      UNION ALL
                      SELECT * FROM (SELECT 'only in {b_lit}: ' || left(ob::text, 120) FROM ob LIMIT 3) y)",
        a_side = a_side.join(", "),
        b_side = b_side.join(", "),
        a_lit = a.replace('\'', "''"),
        b_lit = b.replace('\'', "''"),
    );
    let r = client
        .query_one(&sql, &[])
        .await
        .unwrap_or_else(|e| panic!("compare {a} with {b}: {e:?}"));
    Diff {
        a_rows: r.get(0),
        b_rows: r.get(1),
        only_in_a: r.get(2),
        only_in_b: r.get(3),
        examples: r.get(4),
    }
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `(rows_copied, rows_total, waiting_for)` of migration `id`'s (single) table; zeros
/// before prepare has recorded it.
pub async fn progress(client: &Client, id: i64) -> (i64, i64, Option<String>) {
    let r = client
        .query_opt(
            "SELECT s.rows_copied, s.rows_total, m.waiting_for
               FROM tandem.migrations m LEFT JOIN tandem.shadow_tables s ON s.migration_id = m.id
              WHERE m.id = $1",
            &[&id],
        )
        .await
        .expect("read the progress")
        .expect("the migration exists");
    let copied: Option<i64> = r.get(0);
    let total: Option<i64> = r.get(1);
    (copied.unwrap_or(0), total.unwrap_or(0), r.get(2))
}

/// Rows tandem recorded as writes a trigger could not apply.
pub async fn divergence(client: &Client, id: i64) -> Vec<String> {
    client
        .query(
            "SELECT format('%s %s: %s (%s)', direction, key, message, sqlstate)
               FROM tandem.divergence WHERE migration_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("read the divergence log")
        .iter()
        .map(|r| r.get(0))
        .collect()
}
