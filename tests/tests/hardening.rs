//! Issue 13's claims about the executor, each reproduced against a real PostgreSQL through
//! the real `tandem` binary: the migration lock's key, two migrations of one table, the
//! search_path of tandem's sessions, triggers that replica sessions skip or that were
//! disabled by hand, and an online step killed half-way.

use std::time::{Duration, Instant};

use fixtures::pg::TestDb;
use tests::migrate::{
    apply, on, on_once, plan_sql, scratch_dir, spawn, status_json, strategies, submit,
};
use tokio_postgres::Client;

/// The executor's advisory-lock class (`engine::state::EXECUTOR_LOCK_CLASS`, "tand").
const EXECUTOR_LOCK_CLASS: i32 = 0x7461_6e64;

struct Fixture {
    db: TestDb,
    url: String,
    dir: std::path::PathBuf,
}

async fn fixture(name: &str, sql: &str) -> Fixture {
    let db = TestDb::new(name).await;
    db.client().batch_execute(sql).await.expect("fixture loads");
    let url = db.url();
    Fixture {
        db,
        url,
        dir: scratch_dir(name),
    }
}

impl Fixture {
    fn client(&self) -> &Client {
        self.db.client()
    }

    /// Plan `sql`; the steps must have the `expected` strategies.
    fn plan(&self, sql: &str, expected: &[&str]) -> std::path::PathBuf {
        let path = self.dir.join(format!(
            "plan{}.json",
            std::fs::read_dir(&self.dir).unwrap().count()
        ));
        let run = plan_sql(&self.url, sql, &path);
        assert!(path.exists(), "no plan (exit {}): {}", run.code, run.stderr);
        assert_eq!(strategies(&path), expected, "{}", run.stderr);
        path
    }

    async fn count(&self, sql: &str) -> i64 {
        self.client()
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// `apply ID` until it stops inside verification's transaction, then SIGKILL: the triggers
    /// are installed and the copy is done; the phase recorded is backfill.
    async fn apply_killed_in_verify(&self, id: i64) {
        self.apply_killed_at(id, "verify").await;
    }

    /// `apply ID` until it reaches `failpoint`, then SIGKILL.
    async fn apply_killed_at(&self, id: i64, failpoint: &str) {
        let mut held = spawn(
            &[
                "--database-url",
                &self.url,
                "apply",
                &id.to_string(),
                "--yes",
            ],
            &[("TANDEM_FAILPOINT", failpoint)],
        );
        let reached = format!("failpoint {failpoint} reached");
        tokio::task::spawn_blocking(move || {
            held.wait_for(&reached, Duration::from_secs(90));
            held.kill();
        })
        .await
        .unwrap();
    }

    /// The first (by name) of tandem's triggers on `table`.
    async fn first_tandem_trigger(&self, table: &str) -> String {
        self.client()
            .query_one(
                "SELECT tgname::text FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname LIKE '\\_tandem%' AND NOT tgisinternal ORDER BY tgname LIMIT 1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Another session of the test's own.
    async fn session(&self) -> Client {
        let (client, conn) = self
            .db
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }
}

const ITEMS: &str = "
    CREATE TABLE items (id integer PRIMARY KEY, qty integer NOT NULL, note text);
    INSERT INTO items SELECT g, g % 50, 'note ' || g FROM generate_series(1, 2000) g;
    ANALYZE items;
";

/// Poll `check` until it is true, or fail saying `what`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The executor lock's key is the migration id itself: ids stop below 2^31 (the key is an
/// int4), so two migrations can never share a lock. Before: `id as i32` made migration
/// 2^32 + 1 share migration 1's lock, and its apply was refused as "run by another process"
/// while any session held migration 1's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_ids_never_share_the_executor_lock() {
    let f = fixture("hard_lock_key", ITEMS).await;
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let first = submit(&f.url, &plan, &[]);
    // An executor of migration 1 (or anything holding its key) is busy meanwhile.
    let holder = f.session().await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1, $2::int4)",
            &[&EXECUTOR_LOCK_CLASS, &(first as i32)],
        )
        .await
        .unwrap();
    // Ids past 2^31 cannot be handed out at all.
    let past = f
        .client()
        .batch_execute("ALTER TABLE tandem.migrations ALTER id RESTART WITH 4294967297")
        .await;
    if past.is_ok() {
        // The code before the fix: id 2^32 + 1 takes migration 1's key.
        let id = submit(&f.url, &plan, &[]);
        let run = apply(&f.url, id, &[]);
        panic!(
            "migration {id} was created; its apply: exit {} {}",
            run.code, run.stderr
        );
    }
    f.client()
        .batch_execute("ALTER TABLE tandem.migrations ALTER id RESTART WITH 2147483647")
        .await
        .unwrap();
    let last = submit(&f.url, &plan, &[]);
    assert_eq!(last, 2147483647);
    // The last id has a key of its own: it applies while migration 1's key is held.
    apply(&f.url, last, &[]).expect(0);
    // The next submit is refused, with what to do, and writes nothing.
    let plan = f.plan(
        "ALTER TABLE items ALTER note TYPE varchar(300)",
        &["shadow"],
    );
    let before = f.count("SELECT count(*) FROM tandem.migrations").await;
    let run = tests::tandem(&["--database-url", &f.url, "submit", plan.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("2147483647"),
        "the refusal names the limit: {}",
        run.stderr
    );
    assert_eq!(
        f.count("SELECT count(*) FROM tandem.migrations").await,
        before
    );
    drop(holder);
}

/// Two migrations of one table submitted together, both applied at once: only one prepares.
/// The other is refused, naming the first, and leaves nothing behind. A session holding the
/// audit chain's lock (which every phase's transaction takes when it records its phase) keeps
/// both prepares open after their checks, which is where the check without a lock let both
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrations_of_one_table_cannot_both_prepare() {
    let f = fixture("hard_prepare_race", ITEMS).await;
    let a = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let b = f.plan(
        "ALTER TABLE items ALTER note TYPE varchar(200)",
        &["shadow"],
    );
    let (ida, idb) = (submit(&f.url, &a, &[]), submit(&f.url, &b, &[]));
    let blocker = f.session().await;
    blocker
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(8389750239925370882)")
        .await
        .unwrap();
    let (sa, sb) = (ida.to_string(), idb.to_string());
    let args = |id: &str| {
        vec![
            "--database-url".to_string(),
            f.url.clone(),
            "apply".into(),
            id.into(),
            "--yes".into(),
            "--lock-timeout".into(),
            "30000".into(),
        ]
    };
    let (args_a, args_b) = (args(&sa), args(&sb));
    let mut pa = spawn(&args_a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let mut pb = spawn(&args_b.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    // Both executors wait for a lock: the audit chain's (both checks done), or, with the
    // fix, one of them for the table's prepare lock.
    until("both prepares to wait", || async {
        f.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'tandem apply%' AND wait_event_type = 'Lock'",
        )
        .await
            == 2
    })
    .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let (ra, rb) = tokio::task::spawn_blocking(move || {
        let wait = |p: &mut tests::migrate::Background| p.wait_exit(Duration::from_secs(120));
        (wait(&mut pa), wait(&mut pb))
    })
    .await
    .unwrap();
    let prepared = f
        .count(&format!(
            "SELECT count(DISTINCT migration_id) FROM tandem.shadow_tables WHERE migration_id IN ({ida}, {idb})"
        ))
        .await;
    assert_eq!(prepared, 1, "a: {ra:?}\nb: {rb:?}");
    let (ok, refused, refused_id) = if ra.0 == 0 {
        (ra, rb, idb)
    } else {
        (rb, ra, ida)
    };
    assert_eq!(ok.0, 0, "{}", ok.1);
    assert_ne!(refused.0, 0);
    assert!(
        refused.1.contains("is still running on items"),
        "the refusal names the migration in the way: {}",
        refused.1
    );
    // The refused one left nothing of its own behind.
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_tandem\\_m{refused_id}\\_%'"
        ))
        .await,
        0,
        "{}",
        refused.1
    );
}

/// A migration in its rollback window still owns its table: a second migration of the same
/// table is refused until the first is finalized or rolled back (the live table is the
/// first migration's shadow, under another oid than the one the first recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_in_its_rollback_window_takes_no_second_migration() {
    let f = fixture("hard_window_owner", ITEMS).await;
    let a = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let ida = submit(&f.url, &a, &[]);
    apply(&f.url, ida, &[]).expect(0);
    assert_eq!(status_json(&f.url, ida)["phase"], "rollback_window");
    let b = f.plan(
        "ALTER TABLE items ALTER note TYPE varchar(200)",
        &["shadow"],
    );
    let idb = submit(&f.url, &b, &[]);
    let run = on_once(&f.url, "apply", idb, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("migration {ida} is still running on items")),
        "{}",
        run.stderr
    );
    // Rolling the first back still works, and then the second runs.
    on(&f.url, "rollback", ida, &["--yes"]).expect(0);
    apply(&f.url, idb, &[]).expect(0);
    assert_eq!(
        f.count("SELECT count(*) FROM items WHERE note IS NOT NULL")
            .await,
        2000
    );
}

/// Every session tandem opens runs with `search_path = pg_catalog, pg_temp`: a function in
/// `public` that would be a better match than the built-in one for a call tandem makes
/// (`hashtextextended(text, integer)`, verification's row hash for a table with a column type
/// that has no hash function, here json) is never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookalike_function_in_public_is_never_called() {
    let f = fixture(
        "hard_search_path",
        &format!(
            "{ITEMS}
            ALTER TABLE items ADD COLUMN doc json DEFAULT '{{\"a\": 1}}';
            CREATE TABLE calls (at timestamptz DEFAULT now());
            CREATE FUNCTION public.hashtextextended(text, integer) RETURNS bigint
              LANGUAGE plpgsql AS $$
              BEGIN
                INSERT INTO public.calls DEFAULT VALUES;
                RETURN pg_catalog.hashtextextended($1, $2::bigint);
              END $$;
            CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS $$
              BEGIN INSERT INTO public.calls DEFAULT VALUES; RETURN pg_catalog.lower($1); END $$;"
        ),
    )
    .await;
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &plan, &[]);
    apply(&f.url, id, &[]).expect(0);
    on(&f.url, "finalize", id, &["--yes"]).expect(0);
    assert_eq!(f.count("SELECT count(*) FROM calls").await, 0);
}

/// A writer in `session_replication_role = replica` (a logical-replication subscriber,
/// pg_restore) writes while tandem's triggers are installed: the write reaches the new
/// table, because tandem's triggers fire in every session_replication_role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_a_replica_session_reach_the_new_table() {
    let f = fixture("hard_replica_role", ITEMS).await;
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &plan, &[]);
    f.apply_killed_in_verify(id).await;
    let replica = f.session().await;
    replica
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO items VALUES (5001, 7, 'from a subscriber');
             UPDATE items SET qty = 49 WHERE id = 10;
             DELETE FROM items WHERE id = 11;",
        )
        .await
        .unwrap();
    apply(&f.url, id, &[]).expect(0);
    assert_eq!(
        f.count("SELECT count(*) FROM items WHERE id = 5001 AND qty = 7")
            .await,
        1
    );
    assert_eq!(f.count("SELECT qty FROM items WHERE id = 10").await, 49);
    assert_eq!(f.count("SELECT count(*) FROM items WHERE id = 11").await, 0);
    // And back: the reverse triggers fire for a replica session too.
    replica
        .batch_execute("INSERT INTO items VALUES (5002, 8, 'after the switch')")
        .await
        .unwrap();
    on(&f.url, "rollback", id, &["--yes"]).expect(0);
    assert_eq!(
        f.count("SELECT count(*) FROM items WHERE id = 5002").await,
        1
    );
}

/// A tandem trigger disabled by hand is found before the cutover and before a rollback:
/// the command refuses, names the trigger and says what to do, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_disabled_by_hand_stops_cutover_and_rollback() {
    let f = fixture("hard_disabled_trigger", ITEMS).await;
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &plan, &[]);
    f.apply_killed_in_verify(id).await;
    let forward: String = f.first_tandem_trigger("items").await;
    f.client()
        .batch_execute(&format!("ALTER TABLE items DISABLE TRIGGER {forward}"))
        .await
        .unwrap();
    let run = on(&f.url, "apply", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&forward) && run.stderr.contains("disabled"),
        "{}",
        run.stderr
    );
    assert_ne!(status_json(&f.url, id)["phase"], "rollback_window");
    // Enabled again, the writes it missed are why apply does not go on: abandon and start
    // over is the way; here nothing was written meanwhile, so enabling it is enough.
    f.client()
        .batch_execute(&format!(
            "ALTER TABLE items ENABLE ALWAYS TRIGGER {forward}"
        ))
        .await
        .unwrap();
    apply(&f.url, id, &[]).expect(0);
    assert_eq!(status_json(&f.url, id)["phase"], "rollback_window");
    let reverse: String = f.first_tandem_trigger("items").await;
    f.client()
        .batch_execute(&format!("ALTER TABLE items DISABLE TRIGGER {reverse}"))
        .await
        .unwrap();
    let run = on(&f.url, "rollback", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&reverse) && run.stderr.contains("disabled"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&f.url, id)["phase"], "rollback_window");
}

/// An online step of two statements (`ADD CONSTRAINT … NOT VALID`, then `VALIDATE`) killed
/// between them runs again to the end. Before: the second run failed with 42710 (the
/// constraint already exists). The table is large enough that VALIDATE is still running when
/// the process is killed, right after ADD CONSTRAINT committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_step_killed_between_its_statements_runs_again() {
    let f = fixture(
        "hard_online_resume",
        "CREATE TABLE big (id integer PRIMARY KEY, qty integer NOT NULL);
         INSERT INTO big SELECT g, g % 50 FROM generate_series(1, 1500000) g;
         ANALYZE big;",
    )
    .await;
    let plan = f.plan(
        "ALTER TABLE big ADD CONSTRAINT qty_small CHECK (qty < 1000)",
        &["online"],
    );
    let step = &tests::migrate::read_plan(&plan)["steps"][0]["sql"];
    assert_eq!(step.as_array().map(Vec::len), Some(2), "{step}");
    let id = submit(&f.url, &plan, &[]);
    let mut running = spawn(
        &["--database-url", &f.url, "apply", &id.to_string(), "--yes"],
        &[],
    );
    until("the NOT VALID constraint", || async {
        f.count("SELECT count(*) FROM pg_constraint WHERE conname = 'qty_small'")
            .await
            == 1
    })
    .await;
    running.kill();
    let done = status_json(&f.url, id);
    assert_ne!(done["phase"], "finalized", "killed after the step: {done}");
    let run = apply(&f.url, id, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        f.count("SELECT count(*) FROM pg_constraint WHERE conname = 'qty_small' AND convalidated")
            .await,
        1
    );
    assert_eq!(status_json(&f.url, id)["phase"], "finalized");
}

/// A `CREATE INDEX CONCURRENTLY`, and a `DROP INDEX CONCURRENTLY` (no IF EXISTS, as the user
/// wrote them), each finished just before the process was killed, its progress not yet
/// recorded (they run outside a transaction): the next `apply` finds the index built (or
/// gone) and goes on. Before, nothing looked for a dropped index (a second DROP fails with
/// 42704), and the build's check looked its index up under tandem's pinned search_path, which
/// finds none in `public` (seen on this fix's first version: the first run said the index
/// was already dropped). The failpoint is new, so the old binary could not be run here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_concurrent_index_statement_killed_before_its_record_runs_again() {
    let f = fixture(
        "hard_online_concurrent",
        &format!("{ITEMS} CREATE INDEX items_note ON items (note);"),
    )
    .await;
    for (sql, gone_after, note) in [
        (
            "CREATE INDEX CONCURRENTLY items_qty ON items (qty)",
            ("items_qty", 1),
            "",
        ),
        (
            "DROP INDEX CONCURRENTLY items_note",
            ("items_note", 0),
            "already dropped",
        ),
    ] {
        let plan = f.plan(sql, &["online"]);
        let step = &tests::migrate::read_plan(&plan)["steps"][0]["sql"][0];
        assert!(
            step.as_str().is_some_and(|s| !s.contains("IF ")),
            "the statement as written: {step}"
        );
        let id = submit(&f.url, &plan, &[]);
        f.apply_killed_at(id, "online_unmarked").await;
        let (index, count) = gone_after;
        let query = format!("SELECT count(*) FROM pg_class WHERE relname = '{index}'");
        assert_eq!(f.count(&query).await, count, "{sql} ran before the kill");
        assert_ne!(status_json(&f.url, id)["phase"], "finalized");
        let run = apply(&f.url, id, &[]);
        assert_eq!(run.code, 0, "{sql}: {}", run.stderr);
        assert!(run.stderr.contains(note), "{}", run.stderr);
        assert_eq!(f.count(&query).await, count, "{sql}");
        assert_eq!(status_json(&f.url, id)["phase"], "finalized");
    }
}

/// The forward trigger disabled after verification, while the cutover waits for a lock: the
/// cutover refuses, and the migration goes back to verify (the writes made while the trigger
/// was off are not in the new table): the next `apply` compares the tables again, copies the
/// row written meanwhile, and switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_disabled_after_verification_sends_the_migration_back_to_verify() {
    let f = fixture("hard_disabled_at_cutover", ITEMS).await;
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &plan, &[]);
    let blocker = f.session().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let mut running = spawn(
        &[
            "--database-url",
            &f.url,
            "apply",
            &id.to_string(),
            "--yes",
            "--cutover-attempts",
            "1000",
        ],
        &[],
    );
    tokio::task::spawn_blocking(move || {
        running.wait_for("cutover attempt 2", Duration::from_secs(90));
        running.kill();
    })
    .await
    .unwrap();
    assert_eq!(status_json(&f.url, id)["phase"], "verify");
    let forward = format!("_tandem_m{id}_forward");
    f.client()
        .batch_execute(&format!(
            "ALTER TABLE items DISABLE TRIGGER {forward};
             INSERT INTO items VALUES (7001, 1, 'while the trigger was off')"
        ))
        .await
        .unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();
    let run = on(&f.url, "apply", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&forward) && run.stderr.contains("disabled"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&f.url, id)["phase"], "backfill");
    f.client()
        .batch_execute(&format!(
            "ALTER TABLE items ENABLE ALWAYS TRIGGER {forward}"
        ))
        .await
        .unwrap();
    let run = apply(&f.url, id, &[]).expect(0);
    assert!(
        run.stderr.contains("phase verify: started"),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&f.url, id)["phase"], "rollback_window");
    assert_eq!(
        f.count("SELECT count(*) FROM items WHERE id = 7001").await,
        1
    );
}

/// Names PostgreSQL allows and SQL text must survive, through plan, apply (writes on both
/// sides of the cutover, through the trigger functions that name every column) and rollback:
/// quotes, dots, `$`, a column named with tandem's own dollar-quote tag, a tab, unicode, and
/// a 63-byte name. Before: the tab made `plan` panic ("schema model holds an invalid name"),
/// and a column holding `$tandem$` ended the trigger function's quoting early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_names_go_through_plan_apply_and_rollback() {
    let long = format!("{}x", "é".repeat(31));
    assert_eq!(long.len(), 63);
    let setup = format!(
        "CREATE SCHEMA \"S.ch\"\"é$ma\";
         CREATE TABLE \"S.ch\"\"é$ma\".\"T\"\"ab$le.ü\tx\" (
             id integer PRIMARY KEY,
             \"a\tb\" integer NOT NULL,
             \"x$tandem$y\" text,
             \"q\"\"uote\" integer CHECK (\"q\"\"uote\" >= 0),
             \"{long}\" text DEFAULT 'd$tandem$d'
         );
         CREATE INDEX \"i.$tandem$\" ON \"S.ch\"\"é$ma\".\"T\"\"ab$le.ü\tx\" (\"a\tb\", \"x$tandem$y\");
         INSERT INTO \"S.ch\"\"é$ma\".\"T\"\"ab$le.ü\tx\"
         SELECT g, g, 'v$tandem$' || g, g % 7, 'w' || g FROM generate_series(1, 500) g;"
    );
    let f = fixture("hard_awkward_names", &setup).await;
    let table = "\"S.ch\"\"é$ma\".\"T\"\"ab$le.ü\tx\"";
    let plan = f.plan(
        &format!("ALTER TABLE {table} ALTER \"a\tb\" TYPE bigint"),
        &["shadow"],
    );
    let id = submit(&f.url, &plan, &[]);
    apply(&f.url, id, &[]).expect(0);
    let typ_sql = format!(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{}'::regclass AND attname = E'a\\tb'",
        table.replace('\'', "''")
    );
    let typ = async |f: &Fixture| -> String {
        f.client()
            .query_one(&typ_sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{typ_sql}: {e}"))
            .get(0)
    };
    assert_eq!(typ(&f).await, "bigint");
    // Writes in the rollback window go back through the reverse trigger.
    f.client()
        .batch_execute(&format!(
            "INSERT INTO {table} (id, \"a\tb\", \"x$tandem$y\", \"q\"\"uote\") VALUES (501, 501, '$tandem$', 1);
             UPDATE {table} SET \"x$tandem$y\" = 'changed $tandem$' WHERE id = 7;
             DELETE FROM {table} WHERE id = 8;"
        ))
        .await
        .unwrap();
    on(&f.url, "rollback", id, &["--yes"]).expect(0);
    assert_eq!(typ(&f).await, "integer");
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM {table} WHERE \"{long}\" IS NOT NULL AND \"a\tb\" = id"
        ))
        .await,
        500
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM {table} WHERE (id = 7 AND \"x$tandem$y\" = 'changed $tandem$') OR (id = 501 AND \"{long}\" = 'd$tandem$d')"
        ))
        .await,
        2
    );
    assert_eq!(
        f.count(&format!("SELECT count(*) FROM {table} WHERE id = 8"))
            .await,
        0
    );
}

/// A row-level security policy whose text holds `{table}` (in a string literal) is carried to
/// the new table as it was. Before: the policy was re-made by replacing every `{table}` in its
/// text with the shadow's name, which changed what the policy compares with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_mentioning_table_in_braces_is_carried_word_for_word() {
    let f = fixture(
        "hard_policy_text",
        &format!(
            "{ITEMS}
            ALTER TABLE items ENABLE ROW LEVEL SECURITY;
            CREATE POLICY \"{{table}} rule\" ON items USING (note <> '{{table}}' AND qty >= 0);"
        ),
    )
    .await;
    let read = "SELECT polname::text || ': ' || pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'items'::regclass";
    let before: String = f.client().query_one(read, &[]).await.unwrap().get(0);
    assert!(before.contains("'{table}'"), "{before}");
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &plan, &[]);
    apply(&f.url, id, &[]).expect(0);
    let after: String = f.client().query_one(read, &[]).await.unwrap().get(0);
    assert_eq!(after, before);
}

/// A USING expression that names a type and a function of the application's schema, as the
/// application wrote it (unqualified): the copy, the triggers and the rollback window resolve
/// them as the statement did, and a write made while the triggers run fails no client. Before:
/// the triggers run under `search_path = pg_catalog`, so every write during the migration
/// failed with "function to_mood(text) does not exist". And a function whose own body finds
/// its type through the search_path (which no trigger can give it safely) is refused before
/// any trigger exists, saying what to do: no application write ever meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_using_expression_with_the_applications_own_type_fails_no_write() {
    let f = fixture(
        "hard_using_app_type",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE FUNCTION to_mood(text) RETURNS mood LANGUAGE sql IMMUTABLE SET search_path = public AS
           $$ SELECT CASE WHEN $1 IN ('sad', 'ok', 'happy') THEN $1::mood ELSE 'ok'::mood END $$;
         CREATE FUNCTION to_mood_unsafe(text) RETURNS mood LANGUAGE sql IMMUTABLE AS
           $$ SELECT CASE WHEN $1 IN ('sad', 'ok', 'happy') THEN $1::mood ELSE 'ok'::mood END $$;
         CREATE TABLE feelings (id integer PRIMARY KEY, m text NOT NULL);
         INSERT INTO feelings SELECT g, (ARRAY['sad', 'ok', 'happy', 'meh'])[1 + g % 4] FROM generate_series(1, 3000) g;",
    )
    .await;
    // The function that needs the search_path: refused at prepare, nothing made.
    let unsafe_plan = f.plan(
        "ALTER TABLE feelings ALTER m TYPE mood USING to_mood_unsafe(m)",
        &["shadow"],
    );
    let refused = submit(&f.url, &unsafe_plan, &[]);
    let run = on_once(&f.url, "apply", refused, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("SET search_path") && run.stderr.contains("mood"),
        "{}",
        run.stderr
    );
    assert_eq!(
        f.count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '\\_tandem%'")
            .await,
        0
    );
    on(&f.url, "rollback", refused, &["--yes"]).expect(0);

    let plan = f.plan(
        "ALTER TABLE feelings ALTER m TYPE mood USING to_mood(m)",
        &["shadow"],
    );
    let id = submit(&f.url, &plan, &[]);
    f.apply_killed_in_verify(id).await;
    // Writes while the forward trigger runs: none may fail.
    f.client()
        .batch_execute(
            "INSERT INTO feelings VALUES (5001, 'happy'), (5002, 'meh');
             UPDATE feelings SET m = 'sad' WHERE id = 10;",
        )
        .await
        .expect("a write during the migration failed");
    apply(&f.url, id, &[]).expect(0);
    assert_eq!(
        f.count("SELECT count(*) FROM feelings WHERE (id = 5001 AND m = 'happy') OR (id = 5002 AND m = 'ok') OR (id = 10 AND m = 'sad')")
            .await,
        3
    );
    assert_eq!(
        f.count("SELECT count(*) FROM feelings WHERE m = 'ok'")
            .await,
        1501
    );
}

/// What the clients of one isolation level saw: transactions committed, and every error by
/// SQLSTATE.
#[derive(Debug, Default)]
struct Seen {
    committed: u64,
    increments: i64,
    inserted: i64,
    deleted: i64,
    errors: std::collections::BTreeMap<String, u64>,
}

/// Four clients at `isolation`, each on its own keys (client `i` updates the rows whose id is
/// `i` modulo 4, inserts rows of its own and deletes some of them), until `stop`.
async fn disjoint_writers(
    f: &Fixture,
    isolation: &'static str,
    base: i32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Seen {
    let mut tasks = Vec::new();
    for i in 0..4i32 {
        let client = f.session().await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut n = 0i32;
            // This client's own inserted rows, oldest first: a delete takes one that exists.
            let mut mine = std::collections::VecDeque::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // An application's pace, not a benchmark's: flat out, four clients wrote
                // faster than the log's drain could go while the rest of the suite shared
                // the 2 cores, and the migration never reached its cutover (issue 10).
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                n += 1;
                let key = 4 * (1 + (n * 37) % 5000) + i;
                let new = base + 1_000_000 * i + n;
                let gone = if n % 3 == 0 {
                    mine.front().copied()
                } else {
                    None
                };
                let delete = gone.is_some();
                let sql = format!(
                    "BEGIN ISOLATION LEVEL {isolation};
                     UPDATE accts SET bal = bal + 1 WHERE id = {key};
                     INSERT INTO accts VALUES ({new}, 0, 'client {i}');
                     {}
                     COMMIT;",
                    match gone {
                        Some(gone) => format!("DELETE FROM accts WHERE id = {gone};"),
                        None => String::new(),
                    }
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        seen.committed += 1;
                        seen.increments += 1;
                        seen.inserted += 1;
                        seen.deleted += i64::from(delete);
                        if delete {
                            mine.pop_front();
                        }
                        mine.push_back(new);
                    }
                    Err(e) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        let state = e
                            .code()
                            .map_or("connection".into(), |c| c.code().to_string());
                        *seen.errors.entry(state).or_default() += 1;
                    }
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.committed += s.committed;
        all.increments += s.increments;
        all.inserted += s.inserted;
        all.deleted += s.deleted;
        for (k, v) in s.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    all
}

/// Applications at REPEATABLE READ and SERIALIZABLE write through the whole migration (the
/// copy, the switch to the forward trigger, verification, the cutover) on keys of their own:
/// they get no error, exactly as the same workload gets none without tandem (measured first,
/// in the same test), and no write is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_and_serializable_writers_see_no_error_tandem_causes() {
    for isolation in ["REPEATABLE READ", "SERIALIZABLE"] {
        let name = format!(
            "hard_iso_{}",
            isolation.split(' ').next().unwrap().to_lowercase()
        );
        let f = fixture(
            &name,
            "CREATE TABLE accts (id integer PRIMARY KEY, bal integer NOT NULL, note text);
             INSERT INTO accts SELECT g, 0, 'row ' || g FROM generate_series(1, 60000) g;
             ANALYZE accts;",
        )
        .await;
        let sum = "SELECT coalesce(sum(bal), 0)::int8 FROM accts";
        let rows = "SELECT count(*) FROM accts";
        // The same workload, without tandem, for a second.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = {
            let stop = stop.clone();
            let f = &f;
            async move { disjoint_writers(f, isolation, 1_000_000, stop).await }
        };
        let alone = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let (baseline, ()) = tokio::join!(writers, alone);
        assert!(baseline.committed > 0, "{baseline:?}");
        let (sum0, rows0) = (f.count(sum).await, f.count(rows).await);

        let plan = f.plan("ALTER TABLE accts ALTER bal TYPE bigint", &["shadow"]);
        let id = submit(&f.url, &plan, &[]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = {
            let stop = stop.clone();
            let f = &f;
            async move { disjoint_writers(f, isolation, 50_000_000, stop).await }
        };
        let url = f.url.clone();
        let migrate = async {
            let run = tokio::task::spawn_blocking(move || {
                apply(&url, id, &["--batch-pause", "5", "--chunk-time", "50"])
            })
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            run
        };
        let (during, run) = tokio::join!(writers, migrate);
        let run = run.expect(0);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        assert!(during.committed > 0, "{during:?}");
        // Only errors the workload gets without tandem: at SERIALIZABLE, serialization
        // failures (40001) from PostgreSQL's page-level predicate locks, at about the same
        // rate; nothing else at either level.
        let rate = |s: &Seen| {
            s.errors.get("40001").copied().unwrap_or(0) as f64
                / (s.committed + s.errors.values().sum::<u64>()).max(1) as f64
        };
        for state in during.errors.keys() {
            assert!(
                state == "40001" && isolation == "SERIALIZABLE",
                "{isolation}: {state} during the migration, which the workload alone does not get: during {during:?}, alone {baseline:?}"
            );
        }
        assert!(
            rate(&during) <= (5.0 * rate(&baseline)).max(0.005),
            "{isolation}: serialization failures at {:.3}% of transactions during the migration, {:.3}% alone: during {during:?}, alone {baseline:?}",
            100.0 * rate(&during),
            100.0 * rate(&baseline)
        );
        eprintln!(
            "{isolation}: alone {} committed, 40001 at {:.3}%; during the migration {} committed, 40001 at {:.3}%",
            baseline.committed,
            100.0 * rate(&baseline),
            during.committed,
            100.0 * rate(&during)
        );
        assert_eq!(f.count(sum).await, sum0 + during.increments, "{isolation}");
        assert_eq!(
            f.count(rows).await,
            rows0 + during.inserted - during.deleted,
            "{isolation}"
        );
    }
}

/// The table's owner (a role without tandem's rights) defined a CHECK constraint and an
/// index expression; PostgreSQL runs them as whoever writes a row. Through a whole migration
/// with an application writing (the copy and the log's drain, the forward trigger, the
/// verification, the rollback window's reverse trigger, the rollback), they run as the owner
/// or as the application, never as tandem's role (a superuser here). Before: `seen` named
/// tandem's role, and the index expression, which refuses to run as a superuser, failed the
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_owners_functions_never_run_with_tandems_rights() {
    let f = fixture(
        "hard_owner_rights",
        &format!(
            "{}
         DO $$ BEGIN CREATE ROLE tandem_hard_app NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         CREATE TABLE items (id integer PRIMARY KEY, qty integer NOT NULL CHECK (spy('check', qty)), note text);
         INSERT INTO items SELECT g, g % 50, 'note ' || g FROM generate_series(1, 3000) g;
         ALTER TABLE items OWNER TO tandem_hard_owner;
         -- built as the owner (PostgreSQL builds an index as its table's owner)
         CREATE INDEX items_qty ON items (not_as_superuser(qty));
         GRANT SELECT, INSERT, UPDATE, DELETE ON items TO tandem_hard_app;
         TRUNCATE seen;",
            owner_spies("tandem_hard_owner")
        ),
    )
    .await;
    let tandem: String = f
        .client()
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let plan = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &plan, &[]);

    // The application writes as its own role throughout the first apply (the copy, the
    // log's drain, the switch to the forward trigger).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = f.session().await;
    app.batch_execute("SET ROLE tandem_hard_app").await.unwrap();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                app.batch_execute(&format!(
                    "INSERT INTO items VALUES ({}, 1, 'app'); UPDATE items SET qty = qty + 1 WHERE id = {}; DELETE FROM items WHERE id = {}",
                    10_000 + n,
                    1 + n % 3000,
                    3001 - n % 1500,
                ))
                .await
                .unwrap_or_else(|e| panic!("the application's write {n} failed: {e}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (app, n)
        })
    };
    f.apply_killed_in_verify(id).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (app, writes) = writer.await.unwrap();
    assert!(writes > 10, "the application wrote {writes} times");
    // The trigger function that writes the shadow is the owner's.
    let owners: Vec<String> = f
        .client()
        .query(
            "SELECT DISTINCT pg_get_userbyid(p.proowner)::text
               FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
              WHERE t.tgrelid = 'items'::regclass AND t.tgname LIKE '\\_tandem\\_%forward'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, ["tandem_hard_owner"]);
    app.batch_execute("INSERT INTO items VALUES (20001, 5, 'before the cutover'); UPDATE items SET qty = 7 WHERE id = 100")
        .await
        .unwrap();
    apply(&f.url, id, &[]).expect(0);
    assert_eq!(status_json(&f.url, id)["phase"], "rollback_window");
    // Through the reverse trigger into the old table.
    app.batch_execute("INSERT INTO items VALUES (20002, 6, 'in the window'); UPDATE items SET qty = 8 WHERE id = 101; DELETE FROM items WHERE id = 102")
        .await
        .unwrap();
    on(&f.url, "rollback", id, &["--yes"]).expect(0);
    assert_eq!(
        f.count("SELECT count(*) FROM items WHERE id IN (20001, 20002)")
            .await,
        2
    );
    assert_eq!(
        f.count("SELECT qty::int8 FROM items WHERE id = 101").await,
        8
    );
    assert_eq!(
        f.count("SELECT count(*) FROM items WHERE id = 102").await,
        0
    );

    let who = seen_by(&f).await;
    assert!(
        who.iter().all(|(w, _, _)| w != &tandem),
        "the owner's CHECK ran as tandem's role {tandem}: {who:?}"
    );
    assert!(
        who.iter()
            .any(|(w, _, n)| w == "tandem_hard_owner" && *n >= 3000),
        "the copy ran the owner's CHECK as the owner: {who:?}"
    );
    assert!(
        who.iter().any(|(w, _, _)| w == "tandem_hard_app"),
        "{who:?}"
    );
    // Nothing of schema tandem is left to the owner but USAGE.
    let create: bool = f
        .client()
        .query_one(
            "SELECT has_schema_privilege('tandem_hard_owner', 'tandem', 'CREATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!create, "the owner kept CREATE on schema tandem");
}

/// The spy of the owner-rights tests: a CHECK function that records who ran it, an index
/// function that refuses to run as a superuser, owned by `owner`.
fn owner_spies(owner: &str) -> String {
    format!(
        "DO $$ BEGIN CREATE ROLE {owner} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         GRANT CREATE, USAGE ON SCHEMA public TO {owner};
         CREATE TABLE seen (who text, what text);
         GRANT INSERT ON seen TO PUBLIC;
         CREATE FUNCTION public.spy(what text, n bigint) RETURNS boolean LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.seen VALUES (current_user, what); RETURN n >= 0; END $$;
         CREATE FUNCTION public.not_as_superuser(n bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
           BEGIN
             IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
               RAISE EXCEPTION 'the index expression ran as %, a superuser', current_user;
             END IF;
             RETURN n;
           END $$;
         ALTER FUNCTION public.spy(text, bigint) OWNER TO {owner};
         ALTER FUNCTION public.not_as_superuser(bigint) OWNER TO {owner};"
    )
}

/// Who ran the spy, and how often: (role, what, count).
async fn seen_by(f: &Fixture) -> Vec<(String, String, i64)> {
    f.client()
        .query(
            "SELECT who, what, count(*) FROM seen GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The same with the direct copy (the copy's upserts, the forward trigger from the start) and
/// a materialized view of the owner's whose query calls the spy (rebuilt beside the old one
/// after each swap: filled by REFRESH as its owner); and with a partitioned table, its
/// partitions the owner's too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_owners_functions_never_run_with_tandems_rights_direct_matview_partitioned() {
    let owner = "tandem_hard_owner2";
    let f = fixture(
        "hard_owner_rights_more",
        &format!(
            "{}
             CREATE TABLE items (id integer PRIMARY KEY, qty integer NOT NULL CHECK (spy('check', qty)), note text);
             INSERT INTO items SELECT g, g % 50, 'note ' || g FROM generate_series(1, 2000) g;
             ALTER TABLE items OWNER TO {owner};
             CREATE INDEX items_qty ON items (not_as_superuser(qty));
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, bool_and(spy('matview', qty)) AS ok FROM items;
             ALTER MATERIALIZED VIEW totals OWNER TO {owner};
             CREATE TABLE events (id integer PRIMARY KEY, qty integer NOT NULL CHECK (spy('partition check', qty))) PARTITION BY RANGE (id);
             CREATE TABLE events_a PARTITION OF events FOR VALUES FROM (0) TO (1000);
             CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (1000) TO (100000);
             INSERT INTO events SELECT g, g % 7 FROM generate_series(1, 2000) g;
             ALTER TABLE events OWNER TO {owner};
             ALTER TABLE events_a OWNER TO {owner};
             ALTER TABLE events_b OWNER TO {owner};
             CREATE INDEX events_qty ON events (not_as_superuser(qty));
             TRUNCATE seen;",
            owner_spies(owner)
        ),
    )
    .await;
    let tandem: String = f
        .client()
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    // The application's writes in the windows: as the owner here.
    let app = f.session().await;
    app.batch_execute(&format!("SET ROLE {owner}"))
        .await
        .unwrap();
    let items = f.plan("ALTER TABLE items ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &items, &[]);
    apply(&f.url, id, &["--copy", "direct"]).expect(0);
    app.batch_execute("INSERT INTO items VALUES (5001, 3, 'in the window')")
        .await
        .unwrap();
    on(&f.url, "finalize", id, &["--yes"]).expect(0);
    assert!(f.count("SELECT n FROM totals").await >= 2000);
    let events = f.plan("ALTER TABLE events ALTER qty TYPE bigint", &["shadow"]);
    let id = submit(&f.url, &events, &[]);
    apply(&f.url, id, &[]).expect(0);
    app.batch_execute("INSERT INTO events VALUES (5001, 3)")
        .await
        .unwrap();
    on(&f.url, "rollback", id, &["--yes"]).expect(0);
    assert_eq!(f.count("SELECT count(*) FROM events").await, 2001);

    let who = seen_by(&f).await;
    assert!(
        who.iter().all(|(w, _, _)| w != &tandem),
        "the owner's functions ran as tandem's role {tandem}: {who:?}"
    );
    for what in ["check", "matview", "partition check"] {
        assert!(
            who.iter().any(|(w, x, _)| w == owner && x == what),
            "{what} ran as the owner: {who:?}"
        );
    }
}

/// Pieces of generated names: what SQL text must survive (quotes, dots, `$`, whitespace and
/// control characters, backslashes, braces, tandem's own dollar-quote tag, unicode of 2, 3
/// and 4 bytes).
const NAME_PIECES: &[&str] = &[
    "\"", "'", ".", "$", " ", "\t", "\n", "\\", "{", "}", "%", ";", "(", ")", "-", "é", "名", "🦀",
    "$tandem$", "tandem", "a", "B", "z", "0", "9", "_",
];

/// A name of 1 to 63 bytes from [`NAME_PIECES`] (no NUL: PostgreSQL refuses it).
fn generated_name(rng: &mut impl rand::Rng) -> String {
    let target = rng.gen_range(1..=63);
    let mut name = String::new();
    loop {
        let piece = NAME_PIECES[rng.gen_range(0..NAME_PIECES.len())];
        if name.len() + piece.len() > target {
            break;
        }
        name.push_str(piece);
    }
    if name.is_empty() {
        name.push('x');
    }
    name
}

/// `"name"`, quotes doubled.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Names generated at random (the seed is printed; `TANDEM_NAME_SEED` runs one again) for a
/// schema, a table, its key, three columns and an index, through plan, apply (writes in the
/// rollback window, through the trigger functions that name every column) and rollback, three
/// times per run. The chosen names of the test above are the cases known to have broken;
/// these look for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_names_go_through_plan_apply_and_rollback() {
    use rand::SeedableRng;
    let seed: u64 = std::env::var("TANDEM_NAME_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("names generated from TANDEM_NAME_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let f = fixture("hard_generated_names", "").await;
    for round in 0..3 {
        let mut names: Vec<String> = Vec::new();
        while names.len() < 7 {
            let n = generated_name(&mut rng);
            // Distinct, and none of PostgreSQL's own or tandem's (`pg_`, `_tandem_`).
            if !names.contains(&n) && !n.starts_with("pg_") && !n.starts_with("_tandem_") {
                names.push(n);
            }
        }
        let [schema, table, key, c1, c2, c3, index] =
            <[String; 7]>::try_from(names.clone()).unwrap();
        let t = format!("{}.{}", quoted(&schema), quoted(&table));
        let (k, a, b, c) = (quoted(&key), quoted(&c1), quoted(&c2), quoted(&c3));
        let what = format!("round {round}, seed {seed}, names {names:?}");
        f.client()
            .batch_execute(&format!(
                "CREATE SCHEMA {s};
                 CREATE TABLE {t} ({k} integer PRIMARY KEY, {a} integer NOT NULL, {b} text, {c} integer CHECK ({c} >= 0));
                 CREATE INDEX {i} ON {t} ({a}, {b});
                 INSERT INTO {t} SELECT g, g, 'v' || g, g % 7 FROM generate_series(1, 300) g;",
                s = quoted(&schema),
                i = quoted(&index),
            ))
            .await
            .unwrap_or_else(|e| panic!("{what}: setup: {e}"));
        let plan = f.plan(
            &format!("ALTER TABLE {t} ALTER {a} TYPE bigint"),
            &["shadow"],
        );
        let id = submit(&f.url, &plan, &[]);
        let run = apply(&f.url, id, &[]);
        assert_eq!(run.code, 0, "{what}: apply: {}", run.stderr);
        f.client()
            .batch_execute(&format!(
                "INSERT INTO {t} ({k}, {a}, {b}, {c}) VALUES (301, 301, '$tandem$', 1);
                 UPDATE {t} SET {b} = 'changed' WHERE {k} = 7;
                 DELETE FROM {t} WHERE {k} = 8;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{what}: writes in the window: {e}"));
        let run = on(&f.url, "rollback", id, &["--yes"]);
        assert_eq!(run.code, 0, "{what}: rollback: {}", run.stderr);
        let row = f
            .client()
            .query_one(
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE {k} = 7 AND {b} = 'changed'),
                            count(*) FILTER (WHERE {k} = 301), count(*) FILTER (WHERE {k} = 8),
                            pg_typeof(min({a}))::text
                       FROM {t}"
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: read back: {e}"));
        let counts: (i64, i64, i64, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!(counts, (300, 1, 1, 0, "integer".into()), "{what}");
    }
}
