//! Bad input and bad timing for the migration commands (`submit`, `apply`, `status`, `pause`,
//! `resume`, `rollback`, `finalize`), through the real binary and a real PostgreSQL: each is
//! refused with a message that says what to do, and changes nothing (the schema fingerprint,
//! tandem's bookkeeping and the data are as before).

use std::path::PathBuf;
use std::time::Duration;

use fixtures::pg::TestDb;
use tests::migrate::{
    apply, on, on_once, plan_sql, scratch_dir, spawn, status_json, strategies, submit, text_rows,
};
use tests::{fingerprint, tandem};
use tokio_postgres::Client;

const ITEMS: &str = "
    CREATE TABLE items (id integer PRIMARY KEY, n integer, label text);
    INSERT INTO items SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE g END, 'label ' || g
      FROM generate_series(1, 5000) g;
    CREATE TABLE other (id integer PRIMARY KEY);
    ANALYZE;
";

const CHANGE: &str = "ALTER TABLE items ALTER id TYPE bigint";
const ROWS: &str = "SELECT id::text, n::text, label FROM items ORDER BY items.id";
const FAILPOINT_LIMIT: Duration = Duration::from_secs(30);

async fn db(name: &str, sql: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.client().batch_execute(sql).await.expect("fixture loads");
    db
}

fn plan(url: &str, test: &str, sql: &str) -> PathBuf {
    let path = scratch_dir(test).join("plan.json");
    plan_sql(url, sql, &path);
    assert!(path.exists(), "the plan is written");
    path
}

/// Plan and submit `CHANGE`; the migration id.
fn submitted(db: &TestDb, test: &str) -> i64 {
    let url = db.url();
    let plan = plan(&url, test, CHANGE);
    assert_eq!(strategies(&plan), vec!["shadow"]);
    submit(&url, &plan, &[])
}

/// Like [`submitted`], but the migration gets an id no other test's database uses: tandem
/// reports the holder of a migration's lock (and `status` whether it runs) without looking at
/// which database the lock is in, so two tests holding "migration 1" at the same time on the
/// same server would see each other (see `another_databases_migration_is_not_reported_as_running`).
async fn submitted_with_unique_id(db: &TestDb, test: &str) -> i64 {
    let url = db.url();
    let plan = plan(&url, test, CHANGE);
    let first = submit(&url, &plan, &[]);
    let unique = 1000
        + db.name()
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
            % 1_000_000;
    db.client()
        .batch_execute(&format!(
            "ALTER TABLE tandem.migrations ALTER COLUMN id RESTART WITH {unique}"
        ))
        .await
        .unwrap();
    let id = submit(&url, &plan, &[]);
    assert!(id > first);
    id
}

/// Whether tandem's bookkeeping schema exists.
async fn installed(c: &Client) -> bool {
    c.query_one("SELECT to_regnamespace('tandem') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}

/// Rows of `tandem.shadow_tables` and `tandem.migrations` (0 when not installed).
async fn bookkeeping(c: &Client) -> (i64, i64) {
    if !installed(c).await {
        return (0, 0);
    }
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM tandem.shadow_tables), (SELECT count(*) FROM tandem.migrations)",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

async fn column_type(c: &Client, table: &str, column: &str) -> String {
    c.query_one(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
        &[&table, &column],
    )
    .await
    .unwrap()
    .get(0)
}

/// The error line of a run (its last `error:` line), for messages.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

#[tokio::test]
async fn table_without_a_usable_key_is_refused_at_plan_and_submit() {
    let db = db(
        "bi_no_key",
        "CREATE TABLE events (at timestamptz, payload text);
         CREATE TABLE tags (name text, note text);
         CREATE UNIQUE INDEX tags_name_key ON tags (name);
         INSERT INTO events SELECT now(), 'p' || g FROM generate_series(1, 1000) g;
         INSERT INTO tags SELECT 't' || g, NULL FROM generate_series(1, 1000) g;
         ANALYZE;",
    )
    .await;
    let c = db.client();
    let url = db.url();
    let fp = fingerprint(c).await;
    // No key at all; and a unique index on a nullable column, which cannot address rows.
    for (table, sql) in [
        (
            "events",
            "ALTER TABLE events ALTER payload TYPE varchar(100)",
        ),
        ("tags", "ALTER TABLE tags ALTER note TYPE varchar(100)"),
    ] {
        let path = scratch_dir(&format!("bi_no_key_{table}")).join("plan.json");
        let run = plan_sql(&url, sql, &path).expect(3);
        assert!(run.stderr.contains("REFUSED"), "{}", run.stderr);
        let plan = tests::migrate::read_plan(&path);
        let step = &plan["steps"][0];
        assert_eq!(step["strategy"], "refused", "{plan}");
        let why = step["refusal"].as_str().unwrap();
        assert!(
            why.contains(table) && why.contains("primary key") && why.contains("add one first"),
            "{why}"
        );
        let run = tandem(&["--database-url", &url, "submit", path.to_str().unwrap()]).expect(3);
        let err = error_line(&run.stderr);
        assert!(
            err.contains("will not run") && err.contains(table) && err.contains("make a new plan"),
            "{err}"
        );
        assert!(run.stdout.is_empty(), "no id printed: {}", run.stdout);
    }
    assert_eq!(fingerprint(c).await, fp);
    assert!(!installed(c).await, "submit wrote nothing");
}

#[tokio::test]
async fn unknown_migration_id_is_a_usage_error_naming_status() {
    let db = db("bi_unknown_id", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let id = submitted(&db, "bi_unknown_id");
    let fp = fingerprint(c).await;
    let rows = text_rows(c, ROWS).await;
    let unknown = id + 41;
    for (command, extra) in [
        ("apply", &["--yes"][..]),
        ("status", &[]),
        ("status", &["--json"]),
        ("rollback", &["--yes"]),
        ("finalize", &["--yes"]),
        ("pause", &[]),
        ("resume", &[]),
    ] {
        let run = on(&url, command, unknown, extra);
        assert_eq!(run.code, 64, "{command}: {}", run.stderr);
        let err = error_line(&run.stderr);
        assert!(
            err.contains(&format!("no migration {unknown}")) && err.contains("`tandem status`"),
            "{command}: {err}"
        );
    }
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(text_rows(c, ROWS).await, rows);
    assert_eq!(bookkeeping(c).await, (0, 1));
    let s = status_json(&url, id);
    assert_eq!(
        (s["phase"].as_str(), s["paused"].as_bool()),
        (Some("submitted"), Some(false))
    );
}

#[tokio::test]
async fn unknown_migration_id_on_an_untouched_database_changes_nothing() {
    let db = db("bi_unknown_fresh", ITEMS).await;
    let c = db.client();
    let url = db.url();
    for (command, extra) in [
        ("apply", &["--yes"][..]),
        ("status", &[]),
        ("rollback", &["--yes"]),
        ("finalize", &["--yes"]),
        ("pause", &[]),
        ("resume", &[]),
    ] {
        let run = on(&url, command, 7, extra);
        assert_eq!(run.code, 64, "{command}: {}", run.stderr);
        assert!(
            run.stderr.contains("`tandem status`"),
            "{command}: {}",
            run.stderr
        );
        assert!(!installed(c).await, "{command} created schema tandem");
    }
}

#[tokio::test]
async fn unreadable_input_and_unreachable_server() {
    let db = db("bi_unreadable", ITEMS).await;
    let url = db.url();
    let dir = scratch_dir("bi_unreadable");
    let run = tandem(&["--database-url", &url, "submit", "no/such/plan.json"]).expect(64);
    assert!(
        error_line(&run.stderr).contains("cannot read no/such/plan.json"),
        "{}",
        run.stderr
    );
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{\"not\": \"a plan\"").unwrap();
    tandem(&["--database-url", &url, "submit", garbage.to_str().unwrap()]).expect(64);
    let good = plan(&url, "bi_unreadable", CHANGE);
    let run = tandem(&[
        "--database-url",
        &url,
        "submit",
        good.to_str().unwrap(),
        "--rollback-window",
        "soon",
    ])
    .expect(64);
    assert!(error_line(&run.stderr).contains("30d"), "{}", run.stderr);
    let run = tandem(&[
        "--database-url",
        &url,
        "apply",
        "1",
        "--yes",
        "--until",
        "finalize",
    ])
    .expect(64);
    assert!(
        error_line(&run.stderr).contains("cutover"),
        "{}",
        run.stderr
    );
    assert!(!installed(db.client()).await);
    let nowhere = "postgresql://nobody@127.0.0.1:1/nowhere";
    for args in [
        &["apply", "1", "--yes"][..],
        &["status"],
        &["rollback", "1", "--yes"],
        &["submit", good.to_str().unwrap()],
    ] {
        let mut all = vec!["--database-url", nowhere];
        all.extend_from_slice(args);
        let run = tandem(&all).expect(69);
        assert!(
            run.stderr.contains("127.0.0.1:1"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn stale_plan_is_refused_with_exit_4() {
    let db = db("bi_stale", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let path = plan(&url, "bi_stale", CHANGE);
    c.batch_execute("ALTER TABLE other ADD COLUMN note text")
        .await
        .unwrap();
    let fp = fingerprint(c).await;
    let run = tandem(&["--database-url", &url, "submit", path.to_str().unwrap()]).expect(4);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("schema changed since the plan was made") && err.contains("make a new plan"),
        "{err}"
    );
    assert!(run.stdout.is_empty());
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(bookkeeping(c).await, (0, 0));
    // A fresh plan goes through.
    let fresh = plan(&url, "bi_stale_fresh", CHANGE);
    submit(&url, &fresh, &[]);
}

#[tokio::test]
async fn plan_for_another_database_is_refused_with_exit_4() {
    let a = db("bi_other_db_a", ITEMS).await;
    let b = db("bi_other_db_b", ITEMS).await;
    let path = plan(&a.url(), "bi_other_db", CHANGE);
    let fp = fingerprint(b.client()).await;
    let run = tandem(&["--database-url", &b.url(), "submit", path.to_str().unwrap()]).expect(4);
    let err = error_line(&run.stderr);
    assert!(
        err.contains(a.name())
            && err.contains(b.name())
            && err.contains("make the plan against the database you submit it to"),
        "{err}"
    );
    assert_eq!(fingerprint(b.client()).await, fp);
    assert_eq!(bookkeeping(b.client()).await, (0, 0));
    assert_eq!(bookkeeping(a.client()).await, (0, 0));
}

#[tokio::test]
async fn second_apply_while_one_runs_is_refused_naming_the_holder() {
    let db = db("bi_concurrent", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let id = submitted_with_unique_id(&db, "bi_concurrent").await;
    let rows = text_rows(c, ROWS).await;
    let ids = id.to_string();
    let mut first = spawn(
        &["--database-url", &url, "apply", &ids, "--yes"],
        &[("TANDEM_FAILPOINT", "backfill")],
    );
    first.wait_for("failpoint backfill reached", FAILPOINT_LIMIT);
    assert_eq!(status_json(&url, id)["running"], true);

    for (command, extra) in [
        ("apply", &["--yes"][..]),
        ("rollback", &["--yes"]),
        ("finalize", &["--yes"]),
    ] {
        let run = on_once(&url, command, id, extra);
        assert_ne!(run.code, 0, "{command}: {}", run.stderr);
        let err = error_line(&run.stderr);
        assert!(
            err.contains(&format!("migration {id} is being run by another process"))
                && err.contains(&format!("tandem apply {id} (pid {})", first.pid()))
                && err.contains("wait for it, or stop that process"),
            "{command}: {err}"
        );
    }
    // pause and resume do not need the lock: they flag the running apply.
    on(&url, "pause", id, &[]).expect(0);
    assert_eq!(status_json(&url, id)["paused"], true);
    on(&url, "resume", id, &[]).expect(0);

    first.kill();
    // The killed batch left the copy where its last checkpoint was; a normal apply finishes.
    apply(&url, id, &[]).expect(0);
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");
    assert_eq!(column_type(c, "items", "id").await, "bigint");
    assert_eq!(text_rows(c, ROWS).await, rows);
}

/// A change addressed to one partition is refused by the plan (the partitioned table is the
/// unit tandem migrates); a partitioned table whose partition has an index of its own is
/// refused by apply, naming the partition and the index, before anything changes.
#[tokio::test]
async fn partition_changes_are_refused_with_a_reason() {
    let db = db(
        "bi_unsupported",
        "CREATE TABLE measures (id integer, at date, v integer, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE measures_2024 PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE INDEX measures_2024_v ON measures_2024 (v);
         INSERT INTO measures SELECT g, date '2024-01-01' + g % 300, g FROM generate_series(1, 2000) g;
         ANALYZE;",
    )
    .await;
    let c = db.client();
    let url = db.url();
    let fp = fingerprint(c).await;

    // One partition: the plan refuses the step, submit exits 3.
    let path = plan(
        &url,
        "bi_partition",
        "ALTER TABLE measures_2024 ALTER v TYPE bigint",
    );
    let p = tests::migrate::read_plan(&path);
    assert_eq!(p["steps"][0]["strategy"], "refused", "{p}");
    let why = p["steps"][0]["refusal"].as_str().unwrap();
    assert!(
        why.contains("measures_2024 is a partition of measures")
            && why.contains("change the partitioned table"),
        "{why}"
    );
    let run = tandem(&["--database-url", &url, "submit", path.to_str().unwrap()]).expect(3);
    assert!(
        error_line(&run.stderr).contains("is a partition of"),
        "{}",
        run.stderr
    );
    assert_eq!(fingerprint(c).await, fp);

    // The partitioned table: a shadow step over the tree, refused by apply for the
    // partition's own index.
    let path = plan(
        &url,
        "bi_partitioned",
        "ALTER TABLE measures ALTER v TYPE bigint",
    );
    let p = tests::migrate::read_plan(&path);
    assert_eq!(p["steps"][0]["strategy"], "shadow", "{p}");
    assert!(
        p["steps"][0]["description"]
            .as_str()
            .unwrap()
            .contains("a shadow tree of 1 partition,"),
        "{p}"
    );
    let id = submit(&url, &path, &[]);
    let fp = fingerprint(c).await;
    let run = apply(&url, id, &[]).expect(1);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("partition measures_2024: it has index measures_2024_v of its own"),
        "{err}"
    );
    assert_eq!(fingerprint(c).await, fp, "apply changed nothing");
    assert_eq!(column_type(c, "measures", "v").await, "integer");
}

/// A table with an identity column is planned as a shadow migration (its sequence moves at
/// cutover); but a change that turns a column into an identity while rewriting the table is
/// refused by prepare, saying to add the identity in its own step, and changes nothing.
#[tokio::test]
async fn identity_added_while_rewriting_is_refused_and_changes_nothing() {
    let db = db(
        "bi_identity",
        "CREATE TABLE tickets (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v integer, n integer NOT NULL);
         INSERT INTO tickets (v, n) SELECT g, g FROM generate_series(1, 2000) g;
         ANALYZE;",
    )
    .await;
    let c = db.client();
    let url = db.url();
    let path = plan(
        &url,
        "bi_identity_ok",
        "ALTER TABLE tickets ALTER v TYPE bigint",
    );
    assert_eq!(strategies(&path), vec!["shadow"]);

    let path = plan(
        &url,
        "bi_identity_added",
        "ALTER TABLE tickets ALTER v TYPE bigint, ALTER n ADD GENERATED BY DEFAULT AS IDENTITY",
    );
    assert!(
        strategies(&path).contains(&"shadow".to_string()),
        "{:?}",
        strategies(&path)
    );
    let id = submit(&url, &path, &[]);
    let fp = fingerprint(c).await;
    let rows = text_rows(
        c,
        "SELECT id::text, v::text, n::text FROM tickets ORDER BY id",
    )
    .await;
    let run = apply(&url, id, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("identity") && err.contains("its own step"),
        "{err}"
    );
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(
        text_rows(
            c,
            "SELECT id::text, v::text, n::text FROM tickets ORDER BY id"
        )
        .await,
        rows
    );
    assert_eq!(
        text_rows(
            c,
            "SELECT relname::text FROM pg_class WHERE relname LIKE '\\_tandem\\_%'"
        )
        .await,
        Vec::<Vec<Option<String>>>::new()
    );
}

#[tokio::test]
async fn rollback_after_the_window_ended_is_refused_saying_to_finalize() {
    let db = db("bi_window_ended", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let path = plan(&url, "bi_window_ended", CHANGE);
    let id = submit(&url, &path, &["--rollback-window", "1s"]);
    apply(&url, id, &[]).expect(0);
    std::thread::sleep(Duration::from_millis(2000));
    let fp = fingerprint(c).await;
    let rows = text_rows(c, ROWS).await;
    let run = on(&url, "rollback", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("rollback window ended") && err.contains(&format!("tandem finalize {id}")),
        "{err}"
    );
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(column_type(c, "items", "id").await, "bigint");
    assert_eq!(text_rows(c, ROWS).await, rows);
    on(&url, "finalize", id, &["--yes"]).expect(0);
    assert_eq!(status_json(&url, id)["phase"], "finalized");
}

#[tokio::test]
async fn finalize_while_a_rollback_runs_is_refused_and_the_killed_rollback_changed_nothing() {
    let db = db("bi_finalize_during_rollback", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let id = submitted_with_unique_id(&db, "bi_finalize_during_rollback").await;
    apply(&url, id, &[]).expect(0);
    let fp = fingerprint(c).await;
    let live_oid: u32 = c
        .query_one("SELECT 'items'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let rows = text_rows(c, ROWS).await;
    let ids = id.to_string();
    let mut rollback = spawn(
        &["--database-url", &url, "rollback", &ids, "--yes"],
        &[("TANDEM_FAILPOINT", "rollback")],
    );
    rollback.wait_for("failpoint rollback reached", FAILPOINT_LIMIT);

    let run = on_once(&url, "finalize", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("being run by another process")
            && err.contains(&format!("(pid {})", rollback.pid()))
            && err.contains("wait for it, or stop that process"),
        "{err}"
    );

    rollback.kill();
    // The killed rollback committed nothing: still in the window, the new table still live.
    let s = status_json(&url, id);
    assert_eq!(s["phase"], "rollback_window");
    let live_now: u32 = c
        .query_one("SELECT 'items'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live_now, live_oid);
    assert_eq!(column_type(c, "items", "id").await, "bigint");
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(text_rows(c, ROWS).await, rows);

    on(&url, "finalize", id, &["--yes"]).expect(0);
    assert_eq!(status_json(&url, id)["phase"], "finalized");
    assert_eq!(text_rows(c, ROWS).await, rows);
}

#[tokio::test]
async fn commands_without_yes_and_no_terminal_are_refused() {
    let db = db("bi_no_yes", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let id = submitted(&db, "bi_no_yes");
    let fp = fingerprint(c).await;
    // The harness gives tandem no terminal on stdin.
    let run = on(&url, "apply", id, &[]).expect(64);
    assert!(
        error_line(&run.stderr).contains("pass --yes"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], "submitted");
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(bookkeeping(c).await, (0, 1));

    apply(&url, id, &[]).expect(0);
    let fp = fingerprint(c).await;
    for command in ["rollback", "finalize"] {
        let run = on(&url, command, id, &[]).expect(64);
        assert!(
            error_line(&run.stderr).contains("pass --yes"),
            "{command}: {}",
            run.stderr
        );
        assert_eq!(status_json(&url, id)["phase"], "rollback_window");
        assert_eq!(fingerprint(c).await, fp);
    }
}

#[tokio::test]
async fn rollback_before_cutover_abandons_the_migration_and_leaves_the_table_as_it_was() {
    let db = db("bi_rollback_early", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let fp = fingerprint(c).await;
    let rows = text_rows(c, ROWS).await;
    let id = submitted(&db, "bi_rollback_early");
    let run = apply(&url, id, &["--until", "verify"]).expect(0);
    assert!(
        run.stderr.contains("stopped after verify"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], "verify");
    let run = on(&url, "rollback", id, &["--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("abandoned before cutover"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], "abandoned");
    // The table was never swapped: same schema (no shadow, no triggers), same rows.
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(column_type(c, "items", "id").await, "integer");
    assert_eq!(text_rows(c, ROWS).await, rows);
    let leftovers: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE '\\_tandem\\_%')
                  + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE '\\_tandem\\_%')
                  + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'tandem'::regnamespace
                                                     AND proname NOT IN ('audit_append', 'refuse_rewrite'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "tandem objects left behind");
    // An abandoned migration cannot be applied again.
    let run = on(&url, "apply", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
}

#[tokio::test]
async fn a_command_right_after_another_is_never_refused_as_busy() {
    let db = db("bi_lock_release", ITEMS).await;
    let url = db.url();
    let id = submitted(&db, "bi_lock_release");
    apply(&url, id, &[]).expect(0);
    let ids = id.to_string();
    for attempt in 0..100 {
        // In the window, apply has nothing left to do: it takes the lock, and exits.
        let run = tandem(&["--database-url", &url, "apply", &ids, "--yes"]);
        assert_eq!(run.code, 0, "attempt {attempt}: {}", run.stderr);
    }
}

#[tokio::test]
async fn another_databases_migration_is_not_reported_as_running() {
    let a = db("bi_cross_db_a", ITEMS).await;
    let b = db("bi_cross_db_b", ITEMS).await;
    let id_a = submitted(&a, "bi_cross_db_a");
    let id_b = submitted(&b, "bi_cross_db_b");
    assert_eq!(
        id_a, id_b,
        "both databases number their first migration alike"
    );
    let ids = id_a.to_string();
    let a_url = a.url();
    let mut held = spawn(
        &["--database-url", &a_url, "apply", &ids, "--yes"],
        &[("TANDEM_FAILPOINT", "dual_write")],
    );
    held.wait_for("failpoint dual_write reached", FAILPOINT_LIMIT);
    assert_eq!(status_json(&a.url(), id_a)["running"], true);
    let s = status_json(&b.url(), id_b);
    assert_eq!(
        s["running"],
        false,
        "nothing runs migration {id_b} of {}: {s}",
        b.name()
    );
    let text = on(&b.url(), "status", id_b, &[]).expect(0);
    assert!(
        !text.stdout.contains("an executor is running it"),
        "{}",
        text.stdout
    );
}

/// A rollback leaves the plan's online steps in place and says so, with the command that
/// undoes them; `rollback --online-steps`, even after the rollback, drops what they created.
#[tokio::test]
async fn rollback_names_the_online_steps_it_leaves_and_undoes_them_on_request() {
    let db = db("bi_online_undo", ITEMS).await;
    let c = db.client();
    let url = db.url();
    let path = plan(
        &url,
        "bi_online_undo",
        "CREATE INDEX items_label_idx ON items (label);
         ALTER TABLE items ADD CONSTRAINT items_n_pos CHECK (n > 0);
         ALTER TABLE items ALTER id TYPE bigint;",
    );
    let kinds = strategies(&path);
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("shadow"),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| *k == "online").count() >= 2,
        "{kinds:?}"
    );
    let id = submit(&url, &path, &[]);
    apply(&url, id, &[]).expect(0);
    let objects = "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'items_label_idx')::text,
                          (SELECT count(*) FROM pg_constraint WHERE conname = 'items_n_pos' AND conrelid = 'items'::regclass)::text";
    let both = vec![vec![Some("1".to_string()), Some("1".to_string())]];
    assert_eq!(text_rows(c, objects).await, both);

    let run = on(&url, "rollback", id, &["--yes"]).expect(0);
    assert!(
        run.stderr.contains("is not undone")
            && run
                .stderr
                .contains(&format!("tandem rollback {id} --online-steps"))
            && run.stderr.contains("items_label_idx")
            && run.stderr.contains("items_n_pos"),
        "{}",
        run.stderr
    );
    assert_eq!(column_type(c, "items", "id").await, "integer");
    assert_eq!(
        text_rows(c, objects).await,
        both,
        "a plain rollback leaves them"
    );

    let run = on(&url, "rollback", id, &["--yes", "--online-steps"]).expect(0);
    assert!(run.stderr.contains("undoing online step"), "{}", run.stderr);
    assert_eq!(
        text_rows(c, objects).await,
        vec![vec![Some("0".to_string()), Some("0".to_string())]]
    );
    assert_eq!(status_json(&url, id)["phase"], "rolled_back");
}

/// A security label is not carried to the new table yet: prepare refuses, saying how to go on,
/// and changes nothing. (No label provider is loaded here, so the label is written into
/// pg_seclabel directly, as a provider would store it.)
#[tokio::test]
async fn security_labels_are_refused_and_change_nothing() {
    let db = db("bi_seclabel", ITEMS).await;
    let c = db.client();
    let url = db.url();
    c.batch_execute(
        "INSERT INTO pg_seclabel (objoid, classoid, objsubid, provider, label)
         VALUES ('items'::regclass, 'pg_class'::regclass, 0, 'tandem_test', 'secret')",
    )
    .await
    .expect("a superuser may write the catalog");
    let id = submitted(&db, "bi_seclabel");
    let fp = fingerprint(c).await;
    let rows = text_rows(c, ROWS).await;
    let run = apply(&url, id, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("security label") && err.contains("SECURITY LABEL"),
        "{err}"
    );
    assert_eq!(fingerprint(c).await, fp);
    assert_eq!(text_rows(c, ROWS).await, rows);
    assert_eq!(column_type(c, "items", "id").await, "integer");
}
