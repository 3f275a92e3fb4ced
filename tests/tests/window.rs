//! The end of the rollback window, through the real binary and a real PostgreSQL:
//! `finalize --expired` finalizes the migrations whose window ended and only those (and says
//! which failed), `extend` moves the end and is refused outside the window with nothing
//! changed, and `status` warns a day before the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fixtures::pg::TestDb;
use tests::migrate::{
    apply, on, on_once, plan_sql, scratch_dir, spawn, status_json, strategies, submit,
};
use tests::{tandem, Run};
use tokio_postgres::Client;

const TABLES: &str = "
    CREATE TABLE items (id integer PRIMARY KEY, n integer);
    INSERT INTO items SELECT g, g FROM generate_series(1, 2000) g;
    CREATE TABLE notes (id integer PRIMARY KEY, body text);
    INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 2000) g;
    CREATE TABLE tags (id integer PRIMARY KEY, name text);
    INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 2000) g;
    ANALYZE;
";

const FAILPOINT_LIMIT: Duration = Duration::from_secs(30);

async fn db(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(TABLES)
        .await
        .expect("fixture loads");
    db
}

/// Plan `ALTER TABLE <table> ALTER id TYPE bigint` (a shadow migration) and submit it with
/// `extra` (e.g. `--rollback-window 1s`); the migration id.
fn submitted(url: &str, test: &str, table: &str, extra: &[&str]) -> i64 {
    let path: PathBuf = scratch_dir(&format!("{test}_{table}")).join("plan.json");
    plan_sql(
        url,
        &format!("ALTER TABLE {table} ALTER id TYPE bigint"),
        &path,
    );
    assert_eq!(strategies(&path), vec!["shadow"]);
    submit(url, &path, extra)
}

/// `tandem finalize --expired --yes`, run again (for up to 2 s) while a migration is refused
/// because the session of a command that just ended still holds its lock (see `on`).
fn finalize_expired(url: &str) -> Run {
    let start = Instant::now();
    loop {
        let run = tandem(&["--database-url", url, "finalize", "--expired", "--yes"]);
        if run.code == 0
            || !run.stderr.contains("is being run by another process")
            || start.elapsed() > Duration::from_secs(2)
        {
            return run;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error line of a run (its last `error:` line).
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

/// `window_ends_at` as seconds since the epoch (None while unset).
async fn window_end(c: &Client, id: i64) -> Option<f64> {
    c.query_one(
        "SELECT extract(epoch FROM window_ends_at)::float8 FROM tandem.migrations WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

/// The details of migration `id`'s events named `event`, oldest first.
async fn events(c: &Client, id: i64, event: &str) -> Vec<serde_json::Value> {
    c.query(
        "SELECT coalesce(detail, 'null'::jsonb) FROM tandem.events WHERE migration_id = $1 AND event = $2 ORDER BY id",
        &[&id, &event],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Whether relation `name` exists.
async fn exists(c: &Client, name: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// The parked old table of migration `id` (in its rollback window).
async fn old_table(c: &Client, id: i64) -> String {
    c.query_one(
        "SELECT spec ->> 'old' FROM tandem.shadow_tables WHERE migration_id = $1",
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

/// Wait until every migration in `ids` has a rollback window that has ended.
async fn until_ended(c: &Client, ids: &[i64]) {
    let start = Instant::now();
    loop {
        let ended: bool = c
            .query_one(
                "SELECT bool_and(window_ends_at < now()) FROM tandem.migrations WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        if ended {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the windows of {ids:?} did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn finalize_expired_finalizes_the_ended_windows_only_and_names_those_that_failed() {
    let db = db("win_expired").await;
    let c = db.client();
    let url = db.url();

    // Nothing in the window yet: nothing to do, exit 0.
    let run = finalize_expired(&url).expect(0);
    assert!(run.stderr.contains("nothing to finalize"), "{}", run.stderr);

    let ended = submitted(&url, "win_expired", "items", &["--rollback-window", "1s"]);
    apply(&url, ended, &[]).expect(0);
    let busy = submitted(&url, "win_expired", "notes", &["--rollback-window", "1s"]);
    apply(&url, busy, &[]).expect(0);
    let open = submitted(&url, "win_expired", "tags", &[]);
    apply(&url, open, &[]).expect(0);
    let (ended_old, busy_old, open_old) = (
        old_table(c, ended).await,
        old_table(c, busy).await,
        old_table(c, open).await,
    );
    until_ended(c, &[ended, busy]).await;

    // An id and --expired, or neither: usage errors that change nothing.
    let ids = ended.to_string();
    let run = tandem(&[
        "--database-url",
        &url,
        "finalize",
        &ids,
        "--expired",
        "--yes",
    ])
    .expect(64);
    assert!(
        error_line(&run.stderr).contains("not both"),
        "{}",
        run.stderr
    );
    let run = tandem(&["--database-url", &url, "finalize", "--yes"]).expect(64);
    assert!(
        error_line(&run.stderr).contains("--expired"),
        "{}",
        run.stderr
    );
    // No terminal and no --yes: refused, nothing finalized.
    let run = tandem(&["--database-url", &url, "finalize", "--expired"]).expect(64);
    assert!(
        error_line(&run.stderr).contains("pass --yes"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, ended)["phase"], "rollback_window");

    // Another process holds `busy` (an apply stopped inside its after-cutover work).
    let busy_id = busy.to_string();
    let mut holder = spawn(
        &["--database-url", &url, "apply", &busy_id, "--yes"],
        &[("TANDEM_FAILPOINT", "after_cutover")],
    );
    holder.wait_for("failpoint after_cutover reached", FAILPOINT_LIMIT);
    let run = tandem(&["--database-url", &url, "finalize", "--expired", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("migration {ended} finalized")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("migration {busy}: finalize failed"))
            && run.stderr.contains("being run by another process"),
        "{}",
        run.stderr
    );
    let err = error_line(&run.stderr);
    assert!(
        err.contains("1 of 2 migrations") && err.contains(&format!("finalized: {busy} ")),
        "{err}"
    );
    assert!(
        !run.stderr.contains(&format!("migration {open}")),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, ended)["phase"], "finalized");
    assert!(!exists(c, &ended_old).await);
    assert_eq!(status_json(&url, busy)["phase"], "rollback_window");
    assert!(exists(c, &busy_old).await);
    holder.kill();

    // Once the holder is gone, the next run finalizes it; the open window is left alone.
    let run = finalize_expired(&url).expect(0);
    assert!(
        run.stderr.contains(&format!("migration {busy} finalized")),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, busy)["phase"], "finalized");
    assert!(!exists(c, &busy_old).await);
    assert_eq!(status_json(&url, open)["phase"], "rollback_window");
    assert!(exists(c, &open_old).await);
    let run = finalize_expired(&url).expect(0);
    assert!(run.stderr.contains("nothing to finalize"), "{}", run.stderr);
    assert_eq!(status_json(&url, open)["phase"], "rollback_window");
}

#[tokio::test]
async fn extend_moves_the_end_from_where_it_was_and_is_refused_outside_the_window() {
    let db = db("win_extend").await;
    let c = db.client();
    let url = db.url();
    let id = submitted(&url, "win_extend", "items", &[]);
    apply(&url, id, &["--until", "verify"]).expect(0);

    // Before cutover there is no window: refused, nothing recorded or moved.
    let run = on(&url, "extend", id, &["30d", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let err = error_line(&run.stderr);
    assert!(
        err.contains("phase verify")
            && err.contains("none to extend yet")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(window_end(c, id).await, None);
    assert!(events(c, id, "extended").await.is_empty());
    assert_eq!(status_json(&url, id)["phase"], "verify");

    apply(&url, id, &[]).expect(0);
    let before = window_end(c, id).await.expect("cutover set the end");

    // Bad durations and a missing --yes are usage errors that change nothing.
    for (duration, says) in [("soon", "30d"), ("0", "extends nothing"), ("3w", "unit")] {
        let run = on(&url, "extend", id, &[duration, "--yes"]).expect(64);
        assert!(error_line(&run.stderr).contains(says), "{}", run.stderr);
    }
    let run = on(&url, "extend", id, &["12h"]).expect(64);
    assert!(
        error_line(&run.stderr).contains("pass --yes"),
        "{}",
        run.stderr
    );
    assert_eq!(window_end(c, id).await, Some(before));
    assert!(events(c, id, "extended").await.is_empty());

    // From its current end, not from now: twice adds up.
    let run = on(&url, "extend", id, &["12h", "--yes"]).expect(0);
    assert!(
        run.stderr.contains("rollback window now ends at"),
        "{}",
        run.stderr
    );
    on(&url, "extend", id, &["30d", "--yes"]).expect(0);
    let after = window_end(c, id).await.expect("still set");
    assert!(
        (after - before - (12.0 * 3600.0 + 30.0 * 86400.0)).abs() < 0.001,
        "moved by {} s",
        after - before
    );
    let recorded = events(c, id, "extended").await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(recorded[0]["by_secs"], 12 * 3600);
    assert_eq!(recorded[1]["by_secs"], 30 * 86400);
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");

    // After finalize there is no window left: refused, nothing changed.
    on(&url, "finalize", id, &["--yes"]).expect(0);
    let run = on_once(&url, "extend", id, &["30d", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        error_line(&run.stderr).contains("its rollback window is over"),
        "{}",
        run.stderr
    );
    assert_eq!(window_end(c, id).await, Some(after));
    assert_eq!(events(c, id, "extended").await.len(), 2);
}

#[tokio::test]
async fn extending_an_ended_window_offers_the_rollback_again() {
    let db = db("win_reopen").await;
    let c = db.client();
    let url = db.url();
    let id = submitted(&url, "win_reopen", "items", &["--rollback-window", "1s"]);
    apply(&url, id, &[]).expect(0);
    until_ended(c, &[id]).await;
    let run = on(&url, "rollback", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        error_line(&run.stderr).contains("rollback window ended"),
        "{}",
        run.stderr
    );
    let s = status_json(&url, id);
    assert!(s["window_ends_in_secs"].as_f64().unwrap() < 0.0, "{s}");
    assert!(
        s["window_warning"]
            .as_str()
            .unwrap()
            .contains(&format!("tandem finalize {id}")),
        "{s}"
    );

    on(&url, "extend", id, &["1h", "--yes"]).expect(0);
    let left = status_json(&url, id)["window_ends_in_secs"]
        .as_f64()
        .unwrap();
    assert!(left > 3000.0 && left < 3600.0, "{left}");
    // Nothing to finalize now; the rollback is offered again and works.
    let run = finalize_expired(&url).expect(0);
    assert!(run.stderr.contains("nothing to finalize"), "{}", run.stderr);
    let run = on(&url, "rollback", id, &["--yes"]).expect(0);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_eq!(status_json(&url, id)["phase"], "rolled_back");
}

#[tokio::test]
async fn status_warns_when_the_window_ends_within_a_day() {
    let db = db("win_status").await;
    let url = db.url();
    let far = submitted(&url, "win_status", "items", &[]);
    apply(&url, far, &[]).expect(0);
    // 5 h 30 min.
    let near = submitted(&url, "win_status", "notes", &["--rollback-window", "19800"]);
    apply(&url, near, &[]).expect(0);

    let s = status_json(&url, far);
    assert_eq!(s["window_warning"], serde_json::Value::Null, "{s}");
    assert!(
        s["window_ends_in_secs"].as_f64().unwrap() > 29.0 * 86400.0,
        "{s}"
    );

    let s = status_json(&url, near);
    let warning = format!(
        "rollback window of migration {near} ends in 5 h: finalize it or extend it (`tandem extend {near} 30d`)"
    );
    assert_eq!(s["window_warning"], warning.as_str(), "{s}");
    let run = tandem(&["--database-url", &url, "status"]).expect(0);
    assert!(
        run.stdout.contains(&format!("warning: {warning}")),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("warning: rollback window").count(),
        1,
        "{}",
        run.stdout
    );
    // Not before cutover: a migration with no window has no warning.
    let later = submitted(&url, "win_status", "tags", &["--rollback-window", "60"]);
    assert_eq!(
        status_json(&url, later)["window_warning"],
        serde_json::Value::Null
    );
    assert_eq!(
        status_json(&url, later)["window_ends_in_secs"],
        serde_json::Value::Null
    );

    // Extended by a day, it ends in more than a day: no warning.
    on(&url, "extend", near, &["1d", "--yes"]).expect(0);
    let s = status_json(&url, near);
    assert_eq!(s["window_warning"], serde_json::Value::Null, "{s}");
}

/// After a cutover an autovacuum of the new table (before the backfill vacuumed the shadow,
/// its first, of every row the copy inserted) can run for minutes on a large table, and it
/// holds a lock that `finalize`'s DROP TRIGGER waits for. PostgreSQL cancels an autovacuum that blocks a waiter only when the waiter's deadlock
/// check runs, after `deadlock_timeout` (1 s), longer than each attempt's 50 ms `lock_timeout`:
/// so every attempt timed out behind it, and finalize gave up after 30 (seen in
/// `bench/engine/run.sh` at scale 100: "finalize: canceling statement due to lock timeout").
/// Its attempts now run the deadlock check after 5 ms when tandem may set it, which cancels
/// the autovacuum as any waiter would a second later. On a cluster of the test's own with
/// `autovacuum_naptime = 1s`, a slowed autovacuum (cost limit 1) is caught running on the new
/// table, then finalize must succeed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_cancels_the_new_tables_autovacuum_rather_than_time_out_behind_it() {
    end_the_window_during_an_autovacuum("finalize", "finalized").await;
}

/// The same for a rollback: its swap takes the new table's lock, then it drops the new table
/// (a DDL attempt like finalize's). This one passed before the change too: the swap already
/// ran the deadlock check after 5 ms, which cancels the autovacuum before the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_cancels_the_new_tables_autovacuum_rather_than_time_out_behind_it() {
    end_the_window_during_an_autovacuum("rollback", "rolled_back").await;
}

/// tandem run by a role that is not a superuser and may not set `deadlock_timeout`: its
/// finalize attempts cannot cancel the autovacuum, so finalize gives up, says which right
/// would let it cancel one, and changes nothing. (Such a role does not see the server's
/// workers in pg_stat_activity either, so the message cannot name the autovacuum; a role
/// with pg_read_all_stats gets it named.) Granted that right (`GRANT SET ON PARAMETER`,
/// PostgreSQL 15), the same finalize succeeds at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_by_a_role_that_may_not_cancel_an_autovacuum_says_which_right_it_lacks() {
    let (cluster, client, id) =
        migrated_with_autovacuum_running("finalize_autovacuum_role", Some("tandem_window_role"))
            .await;
    let url = role_url(&cluster, "tandem_window_role");
    let run = on(&url, "finalize", id, &["--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("finalize gave up after 30 attempts")
            && run.stderr.contains("changed nothing")
            && run.stderr.contains("If one is an autovacuum")
            && run
                .stderr
                .contains("GRANT SET ON PARAMETER deadlock_timeout"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");
    eprintln!("{}", run.stderr.lines().last().unwrap_or_default());

    client
        .batch_execute("GRANT SET ON PARAMETER deadlock_timeout TO tandem_window_role")
        .await
        .expect("grant");
    assert_eq!(
        vacuums_of_items(&client).await,
        1,
        "the autovacuum still runs"
    );
    let t0 = Instant::now();
    let run = on(&url, "finalize", id, &["--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(t0.elapsed() < Duration::from_secs(10), "{}", run.stderr);
    assert_eq!(status_json(&url, id)["phase"], "finalized");
}

/// The cluster's connection string for `role` (which logs in over the socket with no
/// password, as the harness's superuser does).
fn role_url(cluster: &fixtures::pg::Cluster, role: &str) -> String {
    let url = cluster.url("vac");
    let swapped = url.replace("user=postgres", &format!("user={role}"));
    assert_ne!(swapped, url, "the harness's url names its user: {url}");
    swapped
}

/// Apply on a cluster of its own, catch an autovacuum of the new table running, then run
/// `command` (finalize or rollback): it must end in `phase` within 10 s.
async fn end_the_window_during_an_autovacuum(command: &str, phase: &str) {
    let (cluster, _client, id) =
        migrated_with_autovacuum_running(&format!("{command}_autovacuum"), None).await;
    let url = cluster.url("vac");
    let t0 = Instant::now();
    let run = on(&url, command, id, &["--yes"]);
    let took = t0.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        took < Duration::from_secs(10),
        "{command} took {took:?}: {}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], phase, "{}", run.stderr);
    eprintln!(
        "{command} took {took:?} with an autovacuum on the new table:\n{}",
        run.stderr
    );
}

/// A finalize that cannot get its locks (a session keeps the table locked) gives up after its
/// attempts, says it changed nothing, why, and what to do, and the window stays open; once the
/// session is gone, the same command finalizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_that_never_gets_its_locks_says_why_and_changes_nothing() {
    let db = db("win_locked_out").await;
    let url = db.url();
    let id = submitted(&url, "win_locked_out", "items", &[]);
    let run = apply(&url, id, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM items")
        .await
        .expect("a reader keeps its transaction open");
    let run = on(&url, "finalize", id, &["--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("finalize gave up after 30 attempts")
            && run.stderr.contains("changed nothing")
            && run.stderr.contains("sessions held locks")
            && run.stderr.contains("run the same command again"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");
    eprintln!("{}", run.stderr.lines().last().unwrap_or_default());

    holder.batch_execute("COMMIT").await.expect("commit");
    let run = on(&url, "finalize", id, &["--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(status_json(&url, id)["phase"], "finalized");
}

/// A cluster of the test's own with `autovacuum_naptime = 1s`, database `vac` with a
/// 200,000-row `items` migrated (`ALTER id TYPE bigint`) through cutover, by `role` when given
/// (created here: a login role that owns the table and may create schemas, nothing more), all
/// its rows updated once, and the new table's autovacuum running, slowed (cost limit 1) so
/// that it lasts. Returns
/// the cluster, a superuser session on `vac`, and the migration's id.
async fn migrated_with_autovacuum_running(
    test: &str,
    role: Option<&str>,
) -> (fixtures::pg::Cluster, tokio_postgres::Client, i64) {
    let cluster = tokio::task::spawn_blocking(fixtures::pg::Cluster::start_throwaway)
        .await
        .expect("join")
        .expect("a throwaway cluster starts");
    let connect = |config: tokio_postgres::Config| async move {
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    };
    let admin = connect(cluster.config("postgres")).await;
    admin
        .batch_execute("ALTER SYSTEM SET autovacuum_naptime = '1s'")
        .await
        .expect("naptime");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    admin
        .batch_execute("CREATE DATABASE vac")
        .await
        .expect("create database");
    let client = connect(cluster.config("vac")).await;
    if let Some(r) = role {
        client
            .batch_execute(&format!(
                "CREATE ROLE {r} LOGIN; GRANT CREATE ON DATABASE vac TO {r};
                 GRANT CREATE ON SCHEMA public TO {r}"
            ))
            .await
            .expect("the role");
    }
    let owner = connect({
        let mut c = cluster.config("vac");
        if let Some(r) = role {
            c.user(r);
        }
        c
    })
    .await;
    owner
        .batch_execute(
            "CREATE TABLE items (id integer PRIMARY KEY, n integer)
               WITH (autovacuum_enabled = false, autovacuum_vacuum_cost_delay = 100,
                     autovacuum_vacuum_cost_limit = 1);
             INSERT INTO items SELECT g, g FROM generate_series(1, 200000) g;
             ANALYZE items;",
        )
        .await
        .expect("fixture loads");
    let url = match role {
        Some(r) => role_url(&cluster, r),
        None => cluster.url("vac"),
    };
    let id = submitted(&url, test, "items", &[]);
    let run = apply(&url, id, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // The new table goes live vacuumed (the backfill's `VACUUM` beside the drain), so its
    // autovacuum comes from what the application writes after: every row updated once, a dead
    // tuple on every page for the slowed autovacuum to clean. The new table inherited
    // `autovacuum_enabled = false`; give it back, as a DBA's settings would, and wait for
    // that autovacuum to be running.
    client
        .batch_execute("UPDATE items SET n = n + 1")
        .await
        .expect("the application's writes");
    client
        .batch_execute("ALTER TABLE items SET (autovacuum_enabled = true)")
        .await
        .expect("autovacuum on");
    let start = Instant::now();
    loop {
        if vacuums_of_items(&client).await > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no autovacuum started on the new table"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    (cluster, client, id)
}

/// The vacuums running on `items` (an autovacuum, in these tests).
async fn vacuums_of_items(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = 'items'::regclass",
            &[],
        )
        .await
        .expect("progress")
        .get(0)
}
