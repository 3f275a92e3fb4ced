//! The dual-write triggers open no subtransaction when they need none.
//!
//! A PL/pgSQL `EXCEPTION` block is a subtransaction each time it runs, and a subtransaction
//! that writes takes a transaction id of its own: a 10,000-row UPDATE through a trigger with
//! such a block consumes 10,000 extra ids and overflows the backend's 64-entry subtransaction
//! cache (every snapshot taken meanwhile, on the primary and on replicas, must then look
//! subtransactions up in pg_subtrans). These tests count the ids an application's bulk UPDATE
//! consumes, through the forward trigger (before cutover) and the reverse one (in the
//! rollback window); and they check that a value the other table cannot take is still
//! recorded as a divergence, without failing the application, when the trigger tests it
//! first instead of catching the error. The last test is about what the copy sees:
//! row-level security forced on the role tandem runs as.

mod common;

use std::time::Duration;

use common::{divergence, within};
use engine::executor::Options;
use engine::shadow::guard::Guard;
use engine::state::Phase;
use fixtures::pg::TestDb;
use tokio_postgres::Client;

const ROWS: i64 = 10_000;

/// One test at a time: the transaction id counter is the cluster's, so another test's writes
/// would count. (Under nextest this binary also runs alone: `.config/nextest.toml`.)
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn table(name: &str, n_type: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE t (id integer PRIMARY KEY, n {n_type}, v text NOT NULL);
             INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, {ROWS}) g;
             ANALYZE t;"
        ))
        .await
        .unwrap();
    db
}

/// Transaction ids one `UPDATE` of every row consumes (the statement's own transaction
/// included), and how long it took.
async fn xids_of_update(c: &Client, sql: &str) -> (i64, Duration) {
    let xid = || async {
        c.query_one("SELECT pg_current_xact_id()::text::int8", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // Transaction ids are the cluster's: another test's writes between the two probes add
    // to the count (only ever add), so the fewest of three tries is the statement's own. A
    // subtransaction per row would add ROWS to every try.
    let mut fewest: Option<(i64, Duration)> = None;
    for _ in 0..3 {
        let before = xid().await;
        let t0 = std::time::Instant::now();
        let n = c.execute(sql, &[]).await.unwrap();
        let took = t0.elapsed();
        assert_eq!(n as i64, ROWS, "{sql}");
        let after = xid().await;
        // Minus the two the probes took.
        let used = after - before - 1;
        if fewest.is_none_or(|(f, _)| used < f) {
            fewest = Some((used, took));
        }
        if used == 1 {
            break;
        }
    }
    fewest.expect("three tries")
}

async fn apply(db: &TestDb, id: i64, until: Phase) {
    let mut ex = common::open(
        db,
        id,
        Options {
            until,
            ..Options::default()
        },
        "triggers",
    )
    .await;
    within(60, "apply", ex.apply()).await.unwrap_or_else(|e| {
        panic!(
            "apply until {until}: {e}: {:?}",
            std::error::Error::source(&e)
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widening_writes_open_no_subtransaction_either_way() {
    let _alone = ALONE.lock().await;
    let db = table("trig_widen", "integer").await;
    let c = db.client();
    let (alone, t_alone) = xids_of_update(c, "UPDATE t SET n = n + 1").await;
    assert_eq!(alone, 1, "without tandem, one transaction id");

    let id = common::submit(&db, "ALTER TABLE t ALTER n TYPE bigint", None).await;
    apply(&db, id, Phase::Backfill).await;
    let spec = common::spec(c, id).await;
    assert_eq!(
        spec.forward_guard,
        Guard::Checks(vec![]),
        "int -> bigint cannot fail"
    );
    let (forward, t_forward) = xids_of_update(c, "UPDATE t SET n = n + 1").await;
    assert_eq!(
        forward,
        1,
        "the forward trigger opened {} subtransactions",
        forward - 1
    );

    apply(&db, id, Phase::Cutover).await;
    // Reverse: bigint -> integer can fail, on values it tests first.
    assert!(
        matches!(&spec.reverse_guard, Guard::Checks(c) if c.len() == 1),
        "{:?}",
        spec.reverse_guard
    );
    let (reverse, t_reverse) = xids_of_update(c, "UPDATE t SET n = n + 1").await;
    assert_eq!(
        reverse,
        1,
        "the reverse trigger opened {} subtransactions",
        reverse - 1
    );
    eprintln!(
        "UPDATE of {ROWS} rows: alone {t_alone:?}, with the forward trigger {t_forward:?}, with the reverse trigger {t_reverse:?}"
    );

    // A value the old table cannot hold: the application's write succeeds, the reverse
    // trigger records it (SQLSTATE 22003), and a rollback is refused.
    c.execute("UPDATE t SET n = 5000000000 WHERE id = 7", &[])
        .await
        .expect("the application's write succeeds");
    let div = divergence(c, id).await;
    assert_eq!(div.len(), 1, "{div:#?}");
    assert!(
        div[0].starts_with("reverse") && div[0].contains("22003"),
        "{div:#?}"
    );
    let mut ex = common::open(&db, id, Options::default(), "rollback").await;
    let err = ex
        .rollback()
        .await
        .expect_err("the rollback would lose a write");
    assert!(err.to_string().contains("finalize"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_is_tested_not_caught() {
    let _alone = ALONE.lock().await;
    let db = table("trig_narrow", "bigint").await;
    let c = db.client();
    let id = common::submit(
        &db,
        "ALTER TABLE t ALTER n TYPE integer, ALTER v TYPE varchar(8)",
        None,
    )
    .await;
    apply(&db, id, Phase::Backfill).await;
    let spec = common::spec(c, id).await;
    assert!(
        matches!(&spec.forward_guard, Guard::Checks(c) if c.len() == 2),
        "{:?}",
        spec.forward_guard
    );
    let (forward, _) = xids_of_update(c, "UPDATE t SET n = n + 1").await;
    assert_eq!(forward, 1, "{} subtransactions", forward - 1);
    c.batch_execute(
        "UPDATE t SET n = 3000000000 WHERE id = 1;
         UPDATE t SET v = 'much longer than eight' WHERE id = 2;
         INSERT INTO t VALUES (ROWS_PLUS_ONE, 1, 'fits');"
            .replace("ROWS_PLUS_ONE", &(ROWS + 1).to_string())
            .as_str(),
    )
    .await
    .expect("the application's writes succeed");
    let div = divergence(c, id).await;
    assert_eq!(div.len(), 2, "{div:#?}");
    assert!(div[0].contains("22003"), "{div:#?}");
    assert!(div[1].contains("22001"), "{div:#?}");
    // The row that fits arrived; the two that do not kept their old copy in the shadow, and
    // verification will refuse the cutover with their keys.
    let arrived: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE id = $1", spec.shadow),
            &[&((ROWS + 1) as i32)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(arrived, 1);
}

/// A `USING` expression can fail in ways tandem cannot test first: the trigger still
/// catches them (a subtransaction per row), and records the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn using_expressions_are_still_caught() {
    let _alone = ALONE.lock().await;
    let db = table("trig_using", "integer").await;
    let c = db.client();
    c.batch_execute("ALTER TABLE t ADD COLUMN s text; UPDATE t SET s = id::text")
        .await
        .unwrap();
    let id = common::submit(
        &db,
        "ALTER TABLE t ALTER s TYPE integer USING s::integer",
        None,
    )
    .await;
    apply(&db, id, Phase::Backfill).await;
    let spec = common::spec(c, id).await;
    assert_eq!(spec.forward_guard, Guard::Catch);
    c.execute("UPDATE t SET s = 'not a number' WHERE id = 3", &[])
        .await
        .expect("the application's write succeeds");
    let div = divergence(c, id).await;
    assert_eq!(div.len(), 1, "{div:#?}");
    assert!(div[0].contains("22P02"), "{div:#?}");
}

/// The old table's own foreign keys (here, a self-reference) are checked inside the reverse
/// trigger's statements, in an order tandem cannot test beforehand: one statement deleting a
/// parent and its child reaches the old table parent first. So the reverse trigger keeps its
/// EXCEPTION block there, and the application's statement still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_foreign_keys_keeps_catching_in_reverse() {
    let _alone = ALONE.lock().await;
    let db = TestDb::new("trig_self_ref").await;
    let c = db.client();
    c.batch_execute(
        "CREATE TABLE p (id integer PRIMARY KEY, parent integer REFERENCES p (id), n integer);
         INSERT INTO p SELECT g, NULLIF(g - 1, 0), g FROM generate_series(1, 1000) g;
         ANALYZE p;",
    )
    .await
    .unwrap();
    let id = common::submit(&db, "ALTER TABLE p ALTER n TYPE bigint", None).await;
    apply(&db, id, Phase::Cutover).await;
    let spec = common::spec(c, id).await;
    assert_eq!(
        spec.forward_guard,
        Guard::Checks(vec![]),
        "the shadow has no foreign key while it is filled"
    );
    assert_eq!(spec.reverse_guard, Guard::Catch);
    // The chain 1000 <- ... : delete the last two rows, parent and child, in one statement.
    c.execute("DELETE FROM p WHERE id IN (999, 1000)", &[])
        .await
        .expect("the application's delete succeeds");
    let left: i64 = c
        .query_one("SELECT count(*) FROM p", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 998);
}

/// Row-level security forced on the table applies to its owner too, so the reverse trigger's
/// write into the old table may meet a policy's WITH CHECK: it keeps catching. (The shadow
/// has no policy while it is filled, so the forward trigger needs no check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_row_level_security_keeps_catching_in_reverse() {
    let _alone = ALONE.lock().await;
    let db = table("trig_forced_rls", "integer").await;
    let c = db.client();
    c.batch_execute(
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY;
         ALTER TABLE t FORCE ROW LEVEL SECURITY;
         CREATE POLICY t_all ON t USING (true) WITH CHECK (n < 1000000);",
    )
    .await
    .unwrap();
    let id = common::submit(&db, "ALTER TABLE t ALTER n TYPE bigint", None).await;
    apply(&db, id, Phase::Backfill).await;
    let spec = common::spec(c, id).await;
    assert_eq!(spec.forward_guard, Guard::Checks(vec![]));
    assert_eq!(spec.reverse_guard, Guard::Catch);
}

/// Forced row-level security on a table whose owner tandem runs as, without BYPASSRLS: the
/// copy would see only the rows the policy shows the owner, verification would agree, and
/// the hidden rows would never reach the new table (seen before the refusal existed: 100 of
/// 10,000 rows copied, and verification passed). Prepare refuses, saying what to do, and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_row_level_security_without_bypass_is_refused() {
    let _alone = ALONE.lock().await;
    let db = table("trig_rls_owner", "integer").await;
    let c = db.client();
    c.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE tandem_rls_owner NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         ALTER ROLE tandem_rls_owner NOBYPASSRLS;
         GRANT CREATE ON DATABASE {} TO tandem_rls_owner;
         GRANT CREATE ON SCHEMA public TO tandem_rls_owner;
         ALTER TABLE t OWNER TO tandem_rls_owner;
         ALTER TABLE t ENABLE ROW LEVEL SECURITY;
         ALTER TABLE t FORCE ROW LEVEL SECURITY;
         CREATE POLICY t_few ON t USING (id <= 100);",
        common::quote(db.name())
    ))
    .await
    .unwrap();
    let id = common::submit(&db, "ALTER TABLE t ALTER n TYPE bigint", None).await;
    // The bookkeeping is tandem's role's: here, the owner's.
    bookkeeping_to(c, "tandem_rls_owner").await;
    let text = prepare_refused_as(&db, "tandem_rls_owner", id).await;
    assert!(
        text.contains("row-level security") && text.contains("BYPASSRLS"),
        "{text}"
    );
    let oid: u32 = c
        .query_one("SELECT 't'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let (shadow, _) = engine::shadow::names(id, oid);
    assert!(!common::exists(c, &shadow).await, "no shadow was created");
    assert_eq!(common::column_type(c, "t", "n").await, "integer");
}

/// tandem's role is not the table's owner and cannot act as it (not a member of its role):
/// tandem writes the rows as the owner (`shadow::writer`), so prepare refuses, saying what
/// to grant, and changes nothing. The same refusal for an owner that may create objects in
/// schema tandem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_tandem_cannot_act_as_is_refused() {
    let _alone = ALONE.lock().await;
    let db = table("trig_not_owner", "integer").await;
    let c = db.client();
    c.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE tandem_not_owner_runner NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         DO $$ BEGIN CREATE ROLE tandem_not_owner_owner NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         -- roles outlive the test's database: as a run before this one may have left them
         REVOKE tandem_not_owner_owner FROM tandem_not_owner_runner;
         GRANT CREATE ON DATABASE {} TO tandem_not_owner_runner;
         GRANT CREATE ON SCHEMA public TO tandem_not_owner_runner, tandem_not_owner_owner;
         ALTER TABLE t OWNER TO tandem_not_owner_owner;
         GRANT SELECT ON t TO tandem_not_owner_runner;",
        common::quote(db.name())
    ))
    .await
    .unwrap();
    let id = common::submit(&db, "ALTER TABLE t ALTER n TYPE bigint", None).await;
    // The bookkeeping is tandem's role's: here, the runner's.
    bookkeeping_to(c, "tandem_not_owner_runner").await;
    let text = prepare_refused_as(&db, "tandem_not_owner_runner", id).await;
    assert!(
        text.contains("cannot act as the table's owner tandem_not_owner_owner")
            && text.contains("GRANT tandem_not_owner_owner TO"),
        "{text}"
    );
    // A member of the owner's role, but the owner may create in schema tandem.
    c.batch_execute(
        "GRANT tandem_not_owner_owner TO tandem_not_owner_runner;
         GRANT CREATE ON SCHEMA tandem TO tandem_not_owner_owner;",
    )
    .await
    .unwrap();
    let text = prepare_refused_as(&db, "tandem_not_owner_runner", id).await;
    assert!(
        text.contains("may create objects in schema tandem")
            && text.contains("REVOKE CREATE ON SCHEMA tandem FROM tandem_not_owner_owner"),
        "{text}"
    );
    let oid: u32 = c
        .query_one("SELECT 't'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let (shadow, _) = engine::shadow::names(id, oid);
    assert!(!common::exists(c, &shadow).await, "no shadow was created");
    assert_eq!(common::column_type(c, "t", "n").await, "integer");
}

/// Make `role` tandem's role as far as the bookkeeping goes: schema tandem and everything in it.
async fn bookkeeping_to(c: &Client, role: &str) {
    c.batch_execute(&format!(
        "ALTER SCHEMA tandem OWNER TO {role}; GRANT ALL ON ALL TABLES IN SCHEMA tandem TO {role}; GRANT ALL ON ALL SEQUENCES IN SCHEMA tandem TO {role}; GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tandem TO {role}"
    ))
    .await
    .unwrap();
}

/// Apply migration `id` up to the backfill as `role` (`SET ROLE` at login): prepare must
/// refuse; its error's text.
async fn prepare_refused_as(db: &TestDb, role: &str, id: i64) -> String {
    let mut config = db.config();
    config.options(format!("-c role={role}"));
    let (o, _) = common::observer(role);
    let mut ex = engine::executor::Executor::open(
        &config,
        id,
        Options {
            until: Phase::Backfill,
            ..Options::default()
        },
        Box::new(gates::Open),
        o,
    )
    .await
    .unwrap_or_else(|e| panic!("open as {role}: {e}"));
    ex.apply().await.expect_err("prepare refuses").to_string()
}
