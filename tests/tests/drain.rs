//! The log method's drain under writes it cannot keep up with (issue 10): the drain is
//! slowed with `--batch-pause` and a tiny `--chunk-time` (about 100 entries a batch, one
//! batch each 20 ms) while four clients write flat out. Before, a drain slower than the
//! writes waited for a log that only grew, and said nothing (seen in CI: 5.2 M entries,
//! growing 15,000 a second, the migration stuck before its cutover).
//! - On a table whose only unique index is its key, the forward trigger takes over from the
//!   undrained log after `--drain-patience`, the rest drains behind it, the migration goes
//!   live, and no write is lost, doubled or failed.
//! - With a second unique index on a column whose values the writers move from row to row
//!   (a value one transaction gives up, a later one takes), the forward trigger takes over
//!   too, evicting the stale shadow rows that still hold a value; no client write fails.
//! - With a unique index on an expression, the drain says it cannot hand over and why, and
//!   goes on; when the writes stop, it catches up and the migration goes live.
//! - With transactions that write several rows, highest key first, and a `deadlock_timeout`
//!   lowered below the drain's lock wait, a drain batch and a client that wait for each
//!   other never end with the client failed: the batch gives up first.
//!
//! Through the real `tandem` binary against a real PostgreSQL 15.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fixtures::pg::TestDb;
use tests::migrate::{on, plan_sql, scratch_dir, spawn, strategies, submit};
use tokio_postgres::Client;

/// What the writers did: the invariants the table must show after the migration.
#[derive(Debug, Default)]
struct Written {
    committed: u64,
    /// `bal` added in total (one per row a committed transaction updated).
    increments: i64,
    inserted: i64,
    deleted: i64,
    errors: Vec<String>,
}

async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// What the writers do besides their plain work (see [`writers`]).
#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    /// Every tenth transaction gives a row of the fixture (each at most once) a new `tag`,
    /// and a row inserted a second later takes the tag it gave up: a unique value given up in
    /// one transaction and taken in a later one, which the log's drain, far behind, has not
    /// copied yet (the shadow's row still holds it).
    move_tags: bool,
    /// Each transaction adds 1 to four of the client's rows, not one, in four statements,
    /// highest key first: against a drain batch, which deletes and copies its keys in an
    /// order of its own, a transaction holding one shadow row and waiting for another.
    crossing: bool,
    /// The role the writers log in as (the harness's superuser when `None`).
    as_role: Option<&'static str>,
}

/// Four clients, flat out: add 1 to an existing row (each client its own), insert a row, and
/// every third transaction delete its own oldest inserted row; and what `traffic` adds.
async fn writers(
    config: tokio_postgres::Config,
    stop: Arc<AtomicBool>,
    traffic: Traffic,
) -> Written {
    let mut tasks = Vec::new();
    for i in 0..4i64 {
        let client = connect(&config).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = Written::default();
            let mut mine = std::collections::VecDeque::new();
            // Tags given up, and when.
            let mut freed = std::collections::VecDeque::<(std::time::Instant, i64)>::new();
            let mut retagged = 0i64;
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let own = |x: i64| 4 * (x % 1_000) + i + 1;
                let mut keys = vec![own(n * 37)];
                if traffic.crossing {
                    keys.extend([own(n * 53), own(n * 53 + 333), own(n * 53 + 666)]);
                    keys.sort_unstable_by(|a, b| b.cmp(a));
                    keys.dedup();
                }
                let updates: String = keys
                    .iter()
                    .map(|k| format!("UPDATE accts SET bal = bal + 1 WHERE id = {k};\n"))
                    .collect();
                let gone = (n % 3 == 0).then(|| mine.front().copied()).flatten();
                let delete = gone
                    .map(|g| format!("DELETE FROM accts WHERE id = {g};"))
                    .unwrap_or_default();
                let retag = (traffic.move_tags && n % 10 == 0 && retagged < 1_000).then(|| {
                    retagged += 1;
                    let row = 4 * (retagged - 1) + i + 1;
                    format!(
                        "WITH old AS (SELECT tag FROM accts WHERE id = {row} FOR UPDATE)
                         UPDATE accts a SET tag = nextval('tags') FROM old
                          WHERE a.id = {row} RETURNING old.tag::text;"
                    )
                });
                let taken = freed
                    .front()
                    .filter(|(at, _)| at.elapsed() > Duration::from_secs(1))
                    .map(|&(_, tag)| tag);
                let tag = taken.map_or("DEFAULT".to_string(), |t| t.to_string());
                let (tag_column, tag_value) = if traffic.move_tags {
                    (", tag", format!(", {tag}"))
                } else {
                    ("", String::new())
                };
                // New keys from a sequence: above the copy's bound, as an application's are.
                let sql = format!(
                    "BEGIN; {retag} {updates}
                     INSERT INTO accts (id, bal{tag_column}) VALUES (nextval('ids'), 0{tag_value}); {delete}
                     SELECT currval('ids')::text; COMMIT;",
                    retag = retag.as_deref().unwrap_or_default(),
                );
                match client.simple_query(&sql).await {
                    Ok(out) => {
                        let values: Vec<i64> = out
                            .iter()
                            .filter_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                                _ => None,
                            })
                            .map(|v| v.parse().expect("a number"))
                            .collect();
                        let new = *values.last().expect("currval");
                        if retag.is_some() {
                            freed.push_back((std::time::Instant::now(), values[0]));
                        }
                        if taken.is_some() {
                            freed.pop_front();
                        }
                        w.committed += 1;
                        w.increments += keys.len() as i64;
                        w.inserted += 1;
                        if gone.is_some() {
                            w.deleted += 1;
                            mine.pop_front();
                        }
                        mine.push_back(new);
                    }
                    Err(e) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        w.errors.push(
                            e.as_db_error()
                                .map_or_else(|| e.to_string(), |d| d.message().to_string()),
                        );
                    }
                }
            }
            w
        }));
    }
    let mut all = Written::default();
    for t in tasks {
        let w = t.await.expect("writer");
        all.committed += w.committed;
        all.increments += w.increments;
        all.inserted += w.inserted;
        all.deleted += w.deleted;
        all.errors.extend(w.errors);
    }
    all
}

async fn one(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Load `accts` (4,000 rows, plus `extra` DDL), plan `bal` to bigint, and apply with the
/// slowed drain while the writers run (with `traffic`: see [`writers`]); `stop_writers_at` is
/// the stderr line after which the writers stop, and how long after it (`None`: when apply
/// has finished). Returns
/// apply's stderr and what the writers did, after checking the table holds exactly what they
/// wrote.
async fn migrate_under_writes(
    name: &str,
    extra: &str,
    traffic: Traffic,
    stop_writers_at: Option<(&str, Duration)>,
) -> (String, Written) {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(&format!(
            "CREATE SEQUENCE ids START 1000000;
             CREATE TABLE accts (id bigint PRIMARY KEY, bal integer NOT NULL);
             INSERT INTO accts SELECT g, 0 FROM generate_series(1, 4000) g;
             {extra}
             ANALYZE accts;"
        ))
        .await
        .expect("fixture loads");
    let url = db.url();
    let dir = scratch_dir(name);
    let plan = dir.join("plan.json");
    let run = plan_sql(&url, "ALTER TABLE accts ALTER bal TYPE bigint", &plan);
    assert_eq!(strategies(&plan), ["shadow"], "{}", run.stderr);
    let id = submit(&url, &plan, &[]);
    let (sum0, rows0) = (
        one(db.client(), "SELECT coalesce(sum(bal), 0)::int8 FROM accts").await,
        one(db.client(), "SELECT count(*) FROM accts").await,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let stop = stop.clone();
        let mut config = db.config();
        if let Some(role) = traffic.as_role {
            config.user(role);
        }
        async move { writers(config, stop, traffic).await }
    });
    let id_text = id.to_string();
    let args = [
        "--database-url",
        &url,
        "apply",
        &id_text,
        "--yes",
        "--batch-pause",
        "20",
        "--chunk-time",
        "1",
        "--drain-patience",
        "2",
    ];
    let mut apply = spawn(&args, &[]);
    let stop_at = stop_writers_at.map(|(line, after)| (line.to_string(), after));
    let stopper = stop.clone();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        if let Some((line, after)) = stop_at {
            apply.wait_for(&line, Duration::from_secs(120));
            std::thread::sleep(after);
            stopper.store(true, Ordering::Relaxed);
        }
        apply.wait_exit(Duration::from_secs(180))
    })
    .await
    .expect("apply");
    stop.store(true, Ordering::Relaxed);
    let written = load.await.expect("writers");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("is live"), "{stderr}");
    assert!(
        written.errors.is_empty(),
        "client errors: {:?}",
        written.errors
    );
    assert!(written.committed > 0, "{written:?}");
    assert_eq!(
        one(db.client(), "SELECT coalesce(sum(bal), 0)::int8 FROM accts").await,
        sum0 + written.increments,
        "{written:?}"
    );
    assert_eq!(
        one(db.client(), "SELECT count(*) FROM accts").await,
        rows0 + written.inserted - written.deleted,
        "{written:?}"
    );
    let bal_type: String = db
        .client()
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'accts'::regclass AND attname = 'bal'",
            &[],
        )
        .await
        .expect("bal's type")
        .get(0);
    assert_eq!(bal_type, "bigint");
    // The log and its triggers are gone.
    assert_eq!(
        one(db.client(), "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tandem' AND c.relname LIKE '%\\_log'").await,
        0
    );
    let _ = on(&url, "finalize", id, &["--yes"]);
    (stderr, written)
}

/// What apply said, without its progress lines, and the writers' count.
fn report(stderr: &str, written: &Written) {
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("backfill "))
        .collect();
    eprintln!(
        "{} transactions committed during the migration; apply said:\n{}",
        written.committed,
        said.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_behind_the_writes_hands_over_to_the_forward_trigger() {
    let (stderr, written) =
        migrate_under_writes("drain_behind_key_only", "", Traffic::default(), None).await;
    assert!(
        stderr.contains("the writes outpace the log's drain")
            && stderr.contains("the forward trigger takes over now"),
        "{stderr}"
    );
    report(&stderr, &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_behind_the_writes_hands_over_with_a_unique_column_whose_values_move() {
    let (stderr, written) = migrate_under_writes(
        "drain_behind_unique",
        "CREATE SEQUENCE tags;
         ALTER TABLE accts ADD COLUMN tag bigint NOT NULL DEFAULT nextval('tags') UNIQUE;",
        Traffic {
            move_tags: true,
            ..Traffic::default()
        },
        None,
    )
    .await;
    assert!(
        stderr.contains("the writes outpace the log's drain")
            && stderr.contains("the forward trigger takes over now")
            && stderr.contains("evicting the shadow's stale rows"),
        "{stderr}"
    );
    report(&stderr, &written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_behind_the_writes_with_a_unique_expression_index_says_why_and_waits() {
    let (stderr, written) = migrate_under_writes(
        "drain_behind_unique_expr",
        "CREATE SEQUENCE tags;
         ALTER TABLE accts ADD COLUMN tag bigint NOT NULL DEFAULT nextval('tags');
         CREATE UNIQUE INDEX accts_tag_key ON accts ((tag * 2));",
        Traffic::default(),
        Some(("compares rows in a way", Duration::ZERO)),
    )
    .await;
    assert!(
        stderr.contains("accts_tag_key") && !stderr.contains("the forward trigger takes over now"),
        "{stderr}"
    );
    report(&stderr, &written);
}

/// Clients whose transactions write several rows, highest key first, against the drain
/// batches that run behind the forward trigger: a batch deletes and copies its keys in an
/// order of its own, so a batch and a client can each hold a shadow row the other waits for.
/// PostgreSQL's deadlock check ends such a cycle by failing whichever waiter runs it first:
/// here, `deadlock_timeout` is lowered to 100 ms for the database (DBAs do lower it), below
/// the 200 ms a drain batch waits for a lock by default. The batch must be the one that gives
/// up, always: no client sees a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_behind_the_writes_never_fails_a_client_in_a_deadlock() {
    let (stderr, written) = migrate_under_writes(
        "drain_behind_crossing",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = %L', current_database(), '100ms'); END $$;",
        Traffic {
            crossing: true,
            ..Traffic::default()
        },
        // Ten seconds of drain batches among the writes meet the cycle often enough: with the
        // batches waiting 200 ms, as they did before, 59 client transactions failed with
        // "deadlock detected" in them. The rest drains faster alone.
        Some(("the forward trigger takes over now", Duration::from_secs(10))),
    )
    .await;
    assert!(
        stderr.contains("the forward trigger takes over now"),
        "{stderr}"
    );
    report(&stderr, &written);
}

/// The same, with the lowered `deadlock_timeout` set where tandem's own session does not see
/// it: for the application's role, in this database (`ALTER ROLE ... IN DATABASE ... SET`).
/// tandem reads the role settings too and bounds its batches by the lowest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_behind_the_writes_never_fails_a_client_whose_role_lowers_deadlock_timeout() {
    let (stderr, written) = migrate_under_writes(
        "drain_behind_crossing_role",
        "DO $$ BEGIN CREATE ROLE tandem_drain_app LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         GRANT SELECT, INSERT, UPDATE, DELETE ON accts TO tandem_drain_app;
         GRANT USAGE ON SEQUENCE ids TO tandem_drain_app;
         DO $$ BEGIN EXECUTE format('ALTER ROLE tandem_drain_app IN DATABASE %I SET deadlock_timeout = %L', current_database(), '100ms'); END $$;",
        Traffic {
            crossing: true,
            as_role: Some("tandem_drain_app"),
            ..Traffic::default()
        },
        Some(("the forward trigger takes over now", Duration::from_secs(10))),
    )
    .await;
    assert!(
        stderr.contains("deadlock_timeout is 100 ms: a batch waits at most 25 ms")
            && stderr.contains("the forward trigger takes over now"),
        "{stderr}"
    );
    report(&stderr, &written);
}
