//! Kill -9 anywhere, run the command again, and it finishes correctly.
//!
//! Every test runs the real `tandem` binary against a real PostgreSQL while the churn load
//! (inserts, deletes, updates of every column, key changes, on `churn_items` and identically
//! on the untouched `churn_mirror`) runs on four connections. The migration retypes
//! `churn_items.val` from integer to bigint through a shadow table. The process is killed
//! with SIGKILL at each failpoint (`TANDEM_FAILPOINT`, which stops the executor inside the
//! open transaction of that phase), in the middle of a real backfill, and in the middle of
//! real cutover attempts that a session holding a lock keeps failing; then the same command
//! runs again. Afterwards: the killed transaction left nothing behind (the recorded phase is
//! the one before, the tables are as they were), the second run exits 0, the load saw no
//! error, `churn_items` equals `churn_mirror` row for row, the live table has the new type and
//! equals the parked old table row for row.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fixtures::load::{churn, Churn, Load, LoadOptions, Workload};
use fixtures::pg::{Cluster, TestDb};
use tests::Run;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, NoTls};

const CHANGE: &str = "ALTER TABLE churn_items ALTER val TYPE bigint";
/// How long one command may take to reach a failpoint or to finish.
const COMMAND_LIMIT: Duration = Duration::from_secs(90);
/// How long a whole test may take; a hang fails the test rather than blocking CI.
const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Fail the test (instead of hanging) when `fut` takes longer than `limit`. Dropping the
/// future kills every `tandem` it started (`kill_on_drop`).
async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("the test did not finish within {limit:?}"),
    }
}

/// Poll `check` every few milliseconds until it returns `Some`, or fail saying `what`.
async fn poll<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// A running `tandem` process: stderr is read line by line as it comes; SIGKILL on drop.
struct Tandem {
    child: Child,
    pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Vec<String>,
    stdout: tokio::task::JoinHandle<String>,
    what: String,
}

impl Tandem {
    fn spawn(url: &str, args: &[&str], failpoint: Option<&str>) -> Tandem {
        let mut cmd = Command::new(tests::binary());
        cmd.arg("--database-url")
            .arg(url)
            .args(args)
            .current_dir(tests::root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in [
            "DATABASE_URL",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "TANDEM_LOG",
            "TANDEM_FAILPOINT",
        ] {
            cmd.env_remove(var);
        }
        if let Some(f) = failpoint {
            cmd.env("TANDEM_FAILPOINT", f);
        }
        let mut child = cmd.spawn().expect("tandem starts");
        let pid = child.id().expect("a running child has a pid");
        let err = child.stderr.take().expect("stderr is piped");
        let mut out = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(err).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = tokio::spawn(async move {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s).await;
            s
        });
        let what = format!(
            "tandem {}{}",
            args.join(" "),
            failpoint
                .map(|f| format!(" (TANDEM_FAILPOINT={f})"))
                .unwrap_or_default()
        );
        Tandem {
            child,
            pid,
            lines,
            stderr: Vec::new(),
            stdout,
            what,
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.stderr.push(line);
        }
    }

    fn stderr(&mut self) -> String {
        self.drain();
        self.stderr.join("\n")
    }

    /// Wait for a stderr line that satisfies `pred`; fail if the process ends first or the
    /// line does not come within `limit`.
    async fn line(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.stderr.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Ok(None) => {
                    let status = self.child.wait().await;
                    let stderr = self.stderr();
                    panic!(
                        "`{}` ended ({status:?}) before {what}; stderr:\n{stderr}",
                        self.what
                    );
                }
                Err(_) => {
                    let stderr = self.stderr();
                    panic!(
                        "`{}` did not reach {what} within {limit:?}; stderr:\n{stderr}",
                        self.what
                    )
                }
            }
        }
    }

    /// SIGKILL, and check that the signal is what ended it. Returns its stderr.
    async fn kill9(mut self) -> String {
        self.child.start_kill().expect("SIGKILL is sent");
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a killed process ends at once")
            .expect("wait for the killed process");
        assert_eq!(
            status.signal(),
            Some(9),
            "`{}` was ended by SIGKILL, not {status:?}",
            self.what
        );
        // The pipe closes with the process; collect what it wrote.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            self.stderr.push(line);
        }
        self.stderr()
    }

    /// Wait for the process to exit (killing it and failing after `limit`).
    async fn finish(mut self, limit: Duration) -> Run {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for tandem"),
            Err(_) => {
                let _ = self.child.start_kill();
                let stderr = self.stderr();
                panic!(
                    "`{}` did not finish within {limit:?}; stderr:\n{stderr}",
                    self.what
                );
            }
        };
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.stderr.push(line);
        }
        let stdout = tokio::time::timeout(Duration::from_secs(5), &mut self.stdout)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: self.stderr(),
        }
    }
}

/// A migration of `churn_items` under the churn load.
struct Scenario {
    client: Client,
    config: Config,
    url: String,
    churn: Churn,
    load: Option<Load>,
    /// The original `churn_items`' oid (tandem's names carry it).
    oid: u32,
    id: i64,
    dir: PathBuf,
    /// The test database (dropped after the connections above).
    _db: Option<TestDb>,
    /// A cluster of this test's own, to restart; stopped last.
    cluster: Option<Cluster>,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect(config: &Config) -> Client {
    let (client, conn) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

impl Scenario {
    /// `rows` churn rows in a test database, the load running on four connections, the
    /// change planned and submitted.
    async fn new(name: &str, rows: i64) -> Scenario {
        let db = TestDb::new(name).await;
        let client = db.connect().await;
        Scenario::start(
            name,
            client,
            db.config(),
            db.url(),
            Some(db),
            None,
            (rows, ""),
        )
        .await
    }

    /// [`Scenario::new`], with `setup` run after the table is made and before the plan.
    async fn with_setup(name: &str, rows: i64, setup: &str) -> Scenario {
        let db = TestDb::new(name).await;
        let client = db.connect().await;
        Scenario::start(
            name,
            client,
            db.config(),
            db.url(),
            Some(db),
            None,
            (rows, setup),
        )
        .await
    }

    /// The same on a throwaway cluster of the test's own (which it may restart).
    async fn on_own_cluster(name: &str, rows: i64) -> Scenario {
        let cluster = tokio::task::spawn_blocking(Cluster::start_throwaway)
            .await
            .unwrap()
            .expect("a throwaway cluster starts");
        let admin = connect(&cluster.config("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(admin);
        let config = cluster.config(name);
        let client = connect(&config).await;
        let url = cluster.url(name);
        Scenario::start(name, client, config, url, None, Some(cluster), (rows, "")).await
    }

    async fn start(
        name: &str,
        client: Client,
        config: Config,
        url: String,
        db: Option<TestDb>,
        cluster: Option<Cluster>,
        (rows, setup): (i64, &str),
    ) -> Scenario {
        let churn = Churn::new();
        churn::setup(&client, &churn, rows)
            .await
            .expect("churn setup");
        client
            .batch_execute(setup)
            .await
            .expect("the scenario's setup");
        let oid: u32 = client
            .query_one("SELECT 'churn_items'::regclass::oid", &[])
            .await
            .unwrap()
            .get(0);
        let dir = std::env::temp_dir().join(format!("tandem-kill-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let mut s = Scenario {
            client,
            config,
            url,
            churn,
            load: None,
            oid,
            id: 0,
            dir,
            _db: db,
            cluster,
        };
        s.start_load().await;
        let plan = s.dir.join("plan.json").display().to_string();
        s.run(
            &[
                "plan",
                "--in-place-below",
                "0",
                "--sql",
                CHANGE,
                "-o",
                &plan,
            ],
            None,
        )
        .await
        .expect(0);
        let submitted = s.run(&["submit", &plan], None).await.expect(0);
        s.id = submitted
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("submit prints the id: {submitted:?}"));
        s
    }

    /// The churn load on four connections, flat out.
    async fn start_load(&mut self) {
        assert!(self.load.is_none());
        let load = Load::start(
            self.config.clone(),
            Workload::Churn(self.churn.clone()),
            LoadOptions {
                clients: 4,
                pause: None,
            },
        )
        .await
        .expect("load starts");
        self.load = Some(load);
    }

    fn c(&self) -> &Client {
        &self.client
    }

    /// Another session of the test's own.
    async fn session(&self) -> Client {
        connect(&self.config).await
    }

    fn id(&self) -> String {
        self.id.to_string()
    }

    fn spawn(&self, args: &[&str], failpoint: Option<&str>) -> Tandem {
        Tandem::spawn(&self.url, args, failpoint)
    }

    async fn run(&self, args: &[&str], failpoint: Option<&str>) -> Run {
        self.spawn(args, failpoint).finish(COMMAND_LIMIT).await
    }

    /// `apply ID --yes` plus `extra`.
    fn apply(&self, extra: &[&str], failpoint: Option<&str>) -> Tandem {
        let id = self.id();
        let mut args = vec!["apply", id.as_str(), "--yes"];
        args.extend_from_slice(extra);
        self.spawn(&args, failpoint)
    }

    fn shadow(&self) -> String {
        format!("_tandem_m{}_t{}_new", self.id, self.oid)
    }

    fn old(&self) -> String {
        format!("_tandem_m{}_t{}_old", self.id, self.oid)
    }

    async fn phase(&self) -> String {
        self.c()
            .query_one(
                "SELECT phase FROM tandem.migrations WHERE id = $1",
                &[&self.id],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn exists(&self, relation: &str) -> bool {
        self.c()
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
            .await
            .unwrap()
            .get(0)
    }

    /// The type of column `val` of `table`.
    async fn val_type(&self, table: &str) -> String {
        self.c()
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = $1::text::regclass AND attname = 'val'",
                &[&table],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The user triggers on `churn_items`, by name (a disabled one says so).
    async fn triggers(&self) -> Vec<String> {
        self.c()
            .query(
                "SELECT tgname::text || CASE WHEN tgenabled = 'D' THEN ' (disabled)' ELSE '' END FROM pg_trigger
                  WHERE tgrelid = 'churn_items'::regclass AND NOT tgisinternal ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// During the copy: the log triggers.
    fn log_triggers(&self) -> Vec<String> {
        vec![
            format!("_tandem_m{}_log_delete", self.id),
            format!("_tandem_m{}_log_insert", self.id),
            format!("_tandem_m{}_log_update", self.id),
            format!("_tandem_m{}_truncate", self.id),
        ]
    }

    /// From the end of the backfill to cutover: the forward trigger, and the log triggers
    /// disabled (they are dropped at cutover, under the swap's lock).
    fn forward_triggers(&self) -> Vec<String> {
        vec![
            format!("_tandem_m{}_forward", self.id),
            format!("_tandem_m{}_log_delete (disabled)", self.id),
            format!("_tandem_m{}_log_insert (disabled)", self.id),
            format!("_tandem_m{}_log_update (disabled)", self.id),
            format!("_tandem_m{}_truncate", self.id),
        ]
    }

    fn reverse_triggers(&self) -> Vec<String> {
        vec![
            format!("_tandem_m{}_reverse", self.id),
            format!("_tandem_m{}_reverse_truncate", self.id),
        ]
    }

    /// The backfill checkpoint: (rows_copied, rows_total, last_key, bound, indexes_built).
    async fn checkpoint(&self) -> Option<(i64, i64, Option<String>, Option<String>, bool)> {
        self.c()
            .query_opt(
                "SELECT rows_copied, rows_total, last_key::text, bound::text, indexes_built
                   FROM tandem.shadow_tables WHERE migration_id = $1",
                &[&self.id],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    }

    /// `tandem status ID --json`, the migration's object.
    async fn status(&self) -> serde_json::Value {
        let id = self.id();
        let run = self.run(&["status", &id, "--json"], None).await.expect(0);
        let all: serde_json::Value = serde_json::from_str(&run.stdout).expect("status is JSON");
        all[0].clone()
    }

    /// Wait until no session of the process `pid` is left on the server (a killed client's
    /// backend ends when it notices the closed socket; until then it may hold locks).
    async fn gone(&self, pid: u32) {
        let tag = format!("% (pid {pid})");
        poll(
            &format!("the sessions of tandem pid {pid} to end"),
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                let n: i64 = self
                    .c()
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                          WHERE datname = current_database() AND application_name LIKE $1",
                        &[&tag],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (n == 0).then_some(())
            },
        )
        .await;
    }

    /// Locks held or awaited by any tandem session.
    async fn tandem_locks(&self) -> i64 {
        self.c()
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE a.datname = current_database() AND (a.application_name = 'tandem' OR a.application_name LIKE 'tandem apply %')
                    AND l.locktype <> 'virtualxid'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Run until the failpoint is reached, SIGKILL there, wait for its sessions to end;
    /// check nothing of tandem's is left running. Returns its stderr.
    async fn kill_at(&self, mut proc: Tandem, failpoint: &str) -> String {
        let pid = proc.pid;
        let needle = format!("failpoint {failpoint} reached");
        proc.line(&needle, COMMAND_LIMIT, |l| l.contains(&needle))
            .await;
        let stderr = proc.kill9().await;
        self.gone(pid).await;
        assert_eq!(self.tandem_locks().await, 0, "no tandem lock is left");
        assert!(!self.executor_running().await, "no executor holds it");
        stderr
    }

    /// Whether a session of this database holds the migration's executor lock (advisory
    /// lock class "tand", the migration id). `status`'s `running` is not used: it looks at
    /// the lock in every database of the server (see the report).
    async fn executor_running(&self) -> bool {
        self.c()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                                 WHERE locktype = 'advisory' AND granted
                                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                                   AND classid = x'74616e64'::int4::oid AND objid = $1::int8::int4::oid
                                   AND objsubid = 2)",
                &[&self.id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Stop the load: no client saw an error; the churn invariant holds.
    async fn stop_load(&mut self) {
        let load = self.load.take().expect("the load is running");
        let report = load.stop().await;
        assert!(report.transactions() > 0, "the load ran: {report}");
        assert_eq!(
            report.error_count, 0,
            "no client transaction failed: {:?}\n{report}",
            report.errors
        );
        self.check_churn().await;
    }

    /// `churn_items` equals `churn_mirror`, row for row.
    async fn check_churn(&self) {
        let check = churn::check(self.c(), &self.churn).await.expect("check");
        assert!(check.holds(), "{check}");
    }

    /// The migration went live (in its rollback window) and everything is as it must be.
    /// Stops the load first if it runs.
    async fn assert_live(&mut self) {
        if self.load.is_some() {
            self.stop_load().await;
        } else {
            self.check_churn().await;
        }
        let id = self.id;
        assert_eq!(self.phase().await, "rollback_window");
        assert_eq!(self.val_type("churn_items").await, "bigint");
        let old = self.old();
        assert!(self.exists(&old).await, "the old table {old} is parked");
        assert_eq!(self.val_type(&old).await, "integer");
        assert!(
            !self.exists(&self.shadow()).await,
            "the shadow's name is free"
        );
        assert_eq!(
            self.triggers().await,
            self.reverse_triggers(),
            "only the reverse triggers are on the live table"
        );
        // The live table has the original's index names, all valid, and no index anywhere
        // is left invalid by an interrupted build.
        let idx: Vec<String> = self
            .c()
            .query(
                "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                  WHERE i.indrelid = 'churn_items'::regclass AND i.indisvalid ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(idx, ["churn_items_email_key", "churn_items_pkey"]);
        let invalid: i64 = self
            .c()
            .query_one("SELECT count(*) FROM pg_index WHERE NOT indisvalid", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(invalid, 0, "no invalid index is left");
        // The new table equals the old, row for row.
        let row = self
            .c()
            .query_one(
                &format!(
                    "WITH n AS MATERIALIZED (SELECT id, email, val, note, payload FROM churn_items),
                          o AS MATERIALIZED (SELECT id, email, val::bigint AS val, note, payload FROM {old})
                     SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM o),
                            (SELECT count(*) FROM (SELECT * FROM n EXCEPT ALL SELECT * FROM o) x),
                            (SELECT count(*) FROM (SELECT * FROM o EXCEPT ALL SELECT * FROM n) x)"
                ),
                &[],
            )
            .await
            .unwrap();
        let (n, o, only_n, only_o): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert!(n > 0);
        assert_eq!(
            (n, only_n, only_o),
            (o, 0, 0),
            "new table ({n} rows) equals the old ({o} rows)"
        );
        // Each phase recorded done exactly once: the killed transactions left no record.
        let done: Vec<(String, i64)> = self
            .c()
            .query(
                "SELECT phase, count(*) FROM tandem.events WHERE migration_id = $1 AND event = 'done'
                  GROUP BY phase ORDER BY min(id)",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected: Vec<(String, i64)> = [
            "prepare",
            "dual_write",
            "backfill",
            "verify",
            "cutover",
            "rollback_window",
        ]
        .iter()
        .map(|p| (p.to_string(), 1))
        .collect();
        assert_eq!(done, expected);
        let status = self.status().await;
        assert_eq!(status["phase"], "rollback_window", "{status}");
        assert_eq!(status["divergence_forward"], 0, "{status}");
        assert_eq!(status["divergence_reverse"], 0, "{status}");
        assert_eq!(status["verify"]["passed"], true, "{status}");
    }

    /// `apply ID --yes` to the end: exit 0, live.
    async fn apply_to_the_end(&self) -> Run {
        let run = self.apply(&[], None).finish(COMMAND_LIMIT).await.expect(0);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        run
    }
}

/// Kill at `failpoint`, check what the killed transaction left, apply again, check all.
async fn kill_at_failpoint(failpoint: &str) {
    let mut s = Scenario::new(&format!("kill_{failpoint}"), 20_000).await;
    let apply = s.apply(&[], Some(failpoint));
    s.kill_at(apply, failpoint).await;

    let phase = s.phase().await;
    let shadow = s.shadow();
    let before_cutover = failpoint != "after_cutover";
    let expected_phase = match failpoint {
        "prepare" => "submitted",
        "dual_write" => "prepare",
        "backfill" => "dual_write",
        "verify" => "backfill",
        "cutover" => "verify",
        "after_cutover" => "rollback_window",
        other => unreachable!("{other}"),
    };
    assert_eq!(
        phase, expected_phase,
        "killed in {failpoint}: the phase recorded is the last one completed"
    );
    if before_cutover {
        assert_eq!(
            s.val_type("churn_items").await,
            "integer",
            "the table is untouched"
        );
        assert!(!s.exists(&s.old()).await, "nothing is parked");
        assert_eq!(
            s.exists(&shadow).await,
            failpoint != "prepare",
            "the shadow exists from prepare on"
        );
        let triggers = s.triggers().await;
        if matches!(failpoint, "prepare" | "dual_write") {
            assert!(triggers.is_empty(), "no trigger yet: {triggers:?}");
        } else if failpoint == "backfill" {
            assert_eq!(triggers, s.log_triggers(), "the log goes on");
        } else {
            assert_eq!(triggers, s.forward_triggers(), "dual-write goes on");
        }
    } else {
        assert_eq!(s.val_type("churn_items").await, "bigint");
        assert!(s.exists(&s.old()).await);
        assert_eq!(s.triggers().await, s.reverse_triggers());
    }
    let cp = s.checkpoint().await;
    match failpoint {
        "prepare" => assert!(cp.is_none(), "no shadow table recorded: {cp:?}"),
        "dual_write" => {
            let (copied, _, last, bound, _) = cp.expect("recorded");
            assert_eq!((copied, last, bound), (0, None, None), "no copy yet");
        }
        "backfill" => {
            // Killed inside a batch: the batches before it are committed, with their
            // checkpoint; the copy is not finished.
            let (copied, total, last, bound, built) = cp.expect("recorded");
            assert!(copied > 0 && copied < total, "{copied} of {total}");
            assert!(last.is_some() && last != bound, "{last:?} {bound:?}");
            assert!(!built);
        }
        "verify" | "cutover" => {
            let (_, _, last, bound, built) = cp.expect("recorded");
            assert!(built && last.is_some() && last == bound, "copy done");
        }
        _ => {}
    }

    s.apply_to_the_end().await;
    s.assert_live().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_prepare_then_apply_again() {
    within(TEST_LIMIT, kill_at_failpoint("prepare")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_dual_write_then_apply_again() {
    within(TEST_LIMIT, kill_at_failpoint("dual_write")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_backfill_batch_then_apply_again() {
    within(TEST_LIMIT, kill_at_failpoint("backfill")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_verify_then_apply_again() {
    within(TEST_LIMIT, kill_at_failpoint("verify")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_inside_cutover_swap_then_apply_again() {
    within(TEST_LIMIT, kill_at_failpoint("cutover")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_cutover_then_apply_again() {
    within(TEST_LIMIT, kill_at_failpoint("after_cutover")).await;
}

/// A session holds ACCESS SHARE on the table in an open transaction, so every cutover
/// attempt times out on its lock and is retried with backoff. The apply names the blocker;
/// it is killed while an attempt waits for its lock; nothing changed; once the blocker is
/// gone, apply finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_cutover_attempts_blocked_by_a_lock() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::new("kill_cutover_blocked", 20_000).await;
        let blocker = s.session().await;
        let blocker_pid: i32 = blocker
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        // Simple protocol: no portal (and so no snapshot) stays open in the transaction; a
        // snapshot would make the backfill's CREATE INDEX CONCURRENTLY wait for it.
        blocker
            .batch_execute("BEGIN; LOCK TABLE churn_items IN ACCESS SHARE MODE")
            .await
            .unwrap();

        let mut apply = s.apply(&["--cutover-attempts", "1000"], None);
        let pid = apply.pid;
        apply
            .line("the second failed cutover attempt", COMMAND_LIMIT, |l| {
                l.starts_with("cutover attempt 2: failed")
            })
            .await;
        let stderr = apply.stderr();
        let named = format!("pid {blocker_pid} (");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("cutover attempt") && l.contains(&named)),
            "the failed attempts name the blocking session (pid {blocker_pid}):\n{stderr}"
        );
        assert!(s.executor_running().await);
        let status = s.status().await;
        assert_eq!(status["phase"], "verify", "{status}");
        assert!(
            status["waiting_for"]
                .as_str()
                .is_some_and(|w| w.starts_with("cutover attempt")),
            "{status}"
        );
        // Attempts go on meanwhile; on a loaded machine one may run out of its time budget
        // before it reaches the blocked lock, and name no blocker: wait for two that do.
        poll(
            "two failed attempts recorded with the blocker",
            Duration::from_secs(60),
            Duration::from_millis(20),
            || async {
                let events: i64 = s
                    .c()
                    .query_one(
                        "SELECT count(*) FROM tandem.events WHERE migration_id = $1 AND phase = 'cutover'
                           AND event = 'attempt failed' AND detail ->> 'detail' LIKE '%' || $2 || '%'",
                        &[&s.id, &named],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (events >= 2).then_some(())
            },
        )
        .await;

        // Kill it while an attempt waits in the lock queue (not while it sleeps).
        let tag = format!("% (pid {pid})");
        poll(
            "a cutover attempt waiting for its lock",
            Duration::from_secs(60),
            Duration::from_millis(2),
            || async {
                let waiting: i64 = s
                    .c()
                    .query_one(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                          WHERE a.datname = current_database() AND a.application_name LIKE $1
                            AND NOT l.granted",
                        &[&tag],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (waiting > 0).then_some(())
            },
        )
        .await;
        let stderr = apply.kill9().await;
        s.gone(pid).await;

        // Nothing changed.
        assert_eq!(s.phase().await, "verify", "{stderr}");
        assert_eq!(s.val_type("churn_items").await, "integer");
        assert!(s.exists(&s.shadow()).await);
        assert!(!s.exists(&s.old()).await);
        assert_eq!(s.triggers().await, s.forward_triggers());
        assert_eq!(s.tandem_locks().await, 0);
        assert!(!s.executor_running().await);
        let status = s.status().await;
        assert!(
            status["cutover_attempts"].as_i64().unwrap_or(0) >= 2,
            "{status}"
        );
        // No lock on the tables is awaited or held but the blocker's, and the load goes on.
        let shadow = s.shadow();
        poll(
            "the lock queue on churn_items to empty",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let stuck: i64 = s
                    .c()
                    .query_one(
                        "SELECT count(*) FROM pg_locks
                          WHERE locktype = 'relation'
                            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                            AND relation IN ('churn_items'::regclass, $1::text::regclass)
                            AND (NOT granted OR mode = 'AccessExclusiveLock')",
                        &[&shadow],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (stuck == 0).then_some(())
            },
        )
        .await;
        let held: i64 = blocker
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'churn_items'::regclass AND granted",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(held, 1, "the blocker still holds its lock");
        let before = s.load.as_ref().unwrap().progress().transactions;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = s.load.as_ref().unwrap().progress().transactions;
        assert!(after > before, "the load is not blocked: {before} -> {after}");

        blocker.batch_execute("COMMIT").await.unwrap();
        let run = s.apply_to_the_end().await;
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("cutover attempt") && l.contains(": committed")),
            "{}",
            run.stderr
        );
        s.assert_live().await;
    })
    .await;
}

/// A real backfill (no failpoint), slowed by a pause between batches, killed once some
/// batches are committed: the next apply goes on from the checkpoint and copies exactly the
/// rows after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_backfill_resumes_from_the_checkpoint() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::new("kill_mid_backfill", 100_000).await;
        let apply = s.apply(&["--batch-pause", "20", "--chunk-time", "10"], None);
        let pid = apply.pid;
        poll(
            "the first committed backfill batch",
            COMMAND_LIMIT,
            Duration::from_millis(5),
            || async {
                s.checkpoint()
                    .await
                    .filter(|(copied, ..)| *copied > 0)
                    .map(|_| ())
            },
        )
        .await;
        let stderr = apply.kill9().await;
        s.gone(pid).await;
        assert_eq!(s.tandem_locks().await, 0);

        assert_eq!(s.phase().await, "dual_write", "{stderr}");
        assert_eq!(s.triggers().await, s.log_triggers());
        let (copied, total, last, bound, built) = s.checkpoint().await.unwrap();
        assert!(
            copied > 0 && copied < total,
            "killed mid-copy: {copied} of {total}"
        );
        assert!(
            last.is_some() && last != bound && !built,
            "{last:?} {bound:?}"
        );

        // The load stops here, so that the rows left to copy can be counted exactly.
        s.stop_load().await;
        let left: i64 = s
            .c()
            .query_one(
                "SELECT count(*) FROM churn_items, tandem.shadow_tables t
                  WHERE t.migration_id = $1
                    AND id > (t.last_key ->> 0)::bigint AND id <= (t.bound ->> 0)::bigint",
                &[&s.id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(left > 0);

        let run = s.apply_to_the_end().await;
        let (after, ..) = s.checkpoint().await.unwrap();
        assert_eq!(
            after,
            copied + left,
            "the resumed copy took exactly the rows after the checkpoint (checkpoint {copied}, \
             {left} left), not the ones before it again\n{}",
            run.stderr
        );
        s.assert_live().await;
    })
    .await;
}

/// Kill `rollback` inside its swap: the migration stays in its rollback window, untouched;
/// `rollback` again puts the old table back with every write made since cutover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_rollback_then_rollback_again() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::new("kill_rollback", 20_000).await;
        s.apply_to_the_end().await;
        let id = s.id();
        let rollback = s.spawn(&["rollback", &id, "--yes"], Some("rollback"));
        s.kill_at(rollback, "rollback").await;

        assert_eq!(s.phase().await, "rollback_window");
        assert_eq!(s.val_type("churn_items").await, "bigint");
        assert!(s.exists(&s.old()).await);
        assert!(!s.exists(&s.shadow()).await);
        assert_eq!(s.triggers().await, s.reverse_triggers());

        let run = s
            .run(&["rollback", &id, "--yes"], None)
            .await
            .expect(0);
        assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
        s.stop_load().await;
        assert_eq!(s.phase().await, "rolled_back");
        assert_eq!(s.val_type("churn_items").await, "integer", "the old table is back");
        assert!(!s.exists(&s.old()).await);
        assert!(!s.exists(&s.shadow()).await, "the new table is dropped");
        assert!(s.triggers().await.is_empty(), "no tandem trigger is left");
        let rolled: i64 = s
            .c()
            .query_one(
                "SELECT count(*) FROM tandem.events WHERE migration_id = $1 AND phase = 'rolled_back' AND event = 'done'",
                &[&s.id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rolled, 1);
    })
    .await;
}

/// Kill `finalize` inside its transaction: the migration stays in its rollback window with
/// the old table; `finalize` again drops it and tandem's triggers and functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_finalize_then_finalize_again() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::new("kill_finalize", 20_000).await;
        s.apply_to_the_end().await;
        let id = s.id();
        let finalize = s.spawn(&["finalize", &id, "--yes"], Some("finalized"));
        s.kill_at(finalize, "finalized").await;

        assert_eq!(s.phase().await, "rollback_window");
        assert!(s.exists(&s.old()).await, "the old table is still there");
        assert_eq!(s.triggers().await, s.reverse_triggers());

        // Still a complete rollback window: the old table kept every write.
        s.assert_live().await;
        s.start_load().await;
        let run = s.run(&["finalize", &id, "--yes"], None).await.expect(0);
        assert!(run.stderr.contains("finalized"), "{}", run.stderr);
        s.stop_load().await;
        assert_eq!(s.phase().await, "finalized");
        assert_eq!(s.val_type("churn_items").await, "bigint");
        assert!(!s.exists(&s.old()).await, "the old table is dropped");
        assert!(s.triggers().await.is_empty(), "no tandem trigger is left");
        let functions: i64 = s
            .c()
            .query_one(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'tandem' AND p.proname LIKE $1",
                &[&format!("m{}\\_%", s.id)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(functions, 0, "tandem's functions are dropped");
    })
    .await;
}

/// The apply's server connection is terminated during a slow backfill: it reconnects with
/// backoff, takes its lock again, resumes and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_during_backfill_is_retried() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::new("kill_lost_connection", 50_000).await;
        let mut apply = s.apply(&["--batch-pause", "50"], None);
        poll(
            "the first committed backfill batch",
            COMMAND_LIMIT,
            Duration::from_millis(5),
            || async {
                s.checkpoint()
                    .await
                    .filter(|(copied, ..)| *copied > 0)
                    .map(|_| ())
            },
        )
        .await;
        let terminated: Vec<i32> = s
            .c()
            .query(
                "SELECT pid FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name LIKE 'tandem apply %'
                    AND pg_terminate_backend(pid)",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(terminated.len(), 1, "the apply's session: {terminated:?}");
        let line = apply
            .line("a reconnection", COMMAND_LIMIT, |l| {
                l.contains("reconnecting")
            })
            .await;
        assert!(line.contains("lost the connection"), "{line}");
        let run = apply.finish(COMMAND_LIMIT).await.expect(0);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        let (copied, total, ..) = s.checkpoint().await.unwrap();
        assert!(copied > 0 && total > 0);
        s.assert_live().await;
    })
    .await;
}

/// Kill the apply while its CREATE INDEX CONCURRENTLY on the shadow waits for an old
/// snapshot. The server session goes on without its client and keeps the migration's lock:
/// a new apply is refused and names the killed process. Once that session is ended (leaving
/// an invalid index), apply drops the invalid index, builds it again and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_index_build_then_apply_again() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::new("kill_index_build", 20_000).await;
        // A transaction holding a snapshot: CREATE INDEX CONCURRENTLY waits for it.
        let reader = s.session().await;
        reader
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM churn_mirror")
            .await
            .unwrap();
        // The direct method builds with CONCURRENTLY (the log method's builds, on a shadow
        // only tandem writes, do not wait for snapshots).
        let mut apply = s.apply(&["--copy", "direct"], None);
        let pid = apply.pid;
        apply
            .line("the index build", COMMAND_LIMIT, |l| l.starts_with("building index"))
            .await;
        let tag = format!("% (pid {pid})");
        let builder: i32 = poll(
            "the index build waiting for the old snapshot",
            COMMAND_LIMIT,
            Duration::from_millis(10),
            || async {
                s.c()
                    .query_opt(
                        "SELECT pid FROM pg_stat_activity
                          WHERE datname = current_database() AND application_name LIKE $1
                            AND wait_event_type = 'Lock' AND query LIKE 'CREATE %INDEX CONCURRENTLY%'",
                        &[&tag],
                    )
                    .await
                    .unwrap()
                    .map(|r| r.get(0))
            },
        )
        .await;
        let shadow = s.shadow();
        let invalid = || async {
            let n: i64 = s
                .c()
                .query_one(
                    "SELECT count(*) FROM pg_index WHERE indrelid = $1::text::regclass AND NOT indisvalid",
                    &[&shadow],
                )
                .await
                .unwrap()
                .get(0);
            n
        };
        assert_eq!(invalid().await, 1, "the index being built is not valid yet");
        apply.kill9().await;

        // The executor's session checks its client every second
        // (client_connection_check_interval), so the server ends the orphaned session, its
        // wait and the migration's lock soon after the kill, leaving an invalid index.
        let _ = builder;
        s.gone(pid).await;
        assert!(!s.executor_running().await, "the lock went with the session");
        assert_eq!(invalid().await, 1, "an interrupted build leaves an invalid index");
        assert_eq!(s.phase().await, "dual_write", "the backfill is not recorded done");
        reader.batch_execute("COMMIT").await.unwrap();

        let run = s.apply_to_the_end().await;
        assert!(run.stderr.contains("building index"), "{}", run.stderr);
        s.assert_live().await;
    })
    .await;
}

/// Restart the test's own cluster (`pg_ctl restart -m fast`: every session ends, open
/// transactions roll back) as the user owning its files.
fn restart(cluster: &Cluster) {
    use std::os::unix::fs::MetadataExt;
    let bin =
        std::env::var("TANDEM_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let pg_ctl = std::path::Path::new(&bin).join("pg_ctl");
    let data = cluster.data_dir();
    let owner = std::fs::metadata(data).expect("data dir").uid();
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    let mut cmd = if owner == me {
        std::process::Command::new(&pg_ctl)
    } else {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    };
    cmd.arg("-D")
        .arg(data)
        .args(["-m", "fast", "-w", "-t", "60", "-s", "restart"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = cmd.status().expect("pg_ctl runs");
    assert!(status.success(), "pg_ctl restart: {status}");
}

/// The server restarts during a slow backfill: the apply loses its connection, reconnects
/// with backoff once the server is back, resumes and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_during_backfill_is_retried() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::on_own_cluster("kill_restart", 50_000).await;
        let mut apply = s.apply(&["--batch-pause", "50"], None);
        poll(
            "the first committed backfill batch",
            COMMAND_LIMIT,
            Duration::from_millis(5),
            || async {
                s.checkpoint()
                    .await
                    .filter(|(copied, ..)| *copied > 0)
                    .map(|_| ())
            },
        )
        .await;
        let cluster = s.cluster.as_ref().expect("own cluster");
        tokio::task::block_in_place(|| restart(cluster));
        s.client = connect(&s.config).await;
        let line = apply
            .line("a reconnection", COMMAND_LIMIT, |l| {
                l.contains("reconnecting")
            })
            .await;
        assert!(line.contains("lost the connection"), "{line}");
        let run = apply.finish(COMMAND_LIMIT).await.expect(0);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);

        // The load's clients lost their connections too, and reopened them: those are the
        // only failures.
        let report = s.load.take().unwrap().stop().await;
        assert!(report.transactions() > 0, "{report}");
        for e in &report.errors {
            assert!(
                ["57P01", "57P03", "SQLSTATE", "reconnect", "08"]
                    .iter()
                    .any(|k| e.contains(k)),
                "a failure other than the restart: {e}"
            );
        }
        s.assert_live().await;
    })
    .await;
}

/// A UNIQUE value (not the key) moves between rows while the log method's drains and switch
/// run, under the two ways it used to fail:
///
/// - a drain batch copied again a row that took a value over while the row that gave it up
///   still held it in the shadow, its log entry in a later batch: the duplicate was recorded
///   as a divergence and verification failed. Now the drain evicts the stale row first (its
///   key is still in the log).
/// - the forward trigger was installed before the last drain, so a shadow row could hold a
///   value its row had given up while the trigger wrote the row that took it: the
///   application's write failed with 23505. Now the last drain runs in the switch's
///   transaction, and the shadow equals the table when the trigger takes over.
///
/// The writes are made at failpoint `indexed` (the shadow's unique index built, the log
/// triggers still on): the row taking the value over is logged once before a thousand other
/// entries (the first drain batch holds a thousand), the moves after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_value_moved_between_rows_fails_no_write_and_no_verification() {
    within(TEST_LIMIT, async {
        let db = TestDb::new("kill_unique_move").await;
        let c = db.client();
        c.batch_execute(
            "CREATE TABLE u (id integer PRIMARY KEY, email text UNIQUE NOT NULL, n integer);
             INSERT INTO u SELECT g, 'u' || g || '@x', g FROM generate_series(1, 3000) g;
             ANALYZE u;",
        )
        .await
        .unwrap();
        let url = db.url();
        let plan = tests::migrate::scratch_dir("kill-unique-move").join("plan.json");
        tests::migrate::plan_sql(&url, "ALTER TABLE u ALTER n TYPE bigint", &plan);
        let id = tests::migrate::submit(&url, &plan, &[]);
        let apply = ["apply", &id.to_string(), "--yes"];

        let mut proc = Tandem::spawn(&url, &apply, Some("indexed"));
        proc.line("the shadow's indexes built", COMMAND_LIMIT, |l| {
            l.contains("failpoint indexed reached")
        })
        .await;
        c.batch_execute(
            "UPDATE u SET n = n + 1 WHERE id = 1;
             UPDATE u SET n = n + 1 WHERE id BETWEEN 3 AND 1200;
             UPDATE u SET email = 'moved@x' WHERE id = 2;
             UPDATE u SET email = 'u2@x' WHERE id = 1;",
        )
        .await
        .unwrap();
        proc.kill9().await;

        let mut proc = Tandem::spawn(&url, &apply, Some("switched"));
        proc.line("the forward trigger installed", COMMAND_LIMIT, |l| {
            l.contains("failpoint switched reached")
        })
        .await;
        let row = c
            .query_one(
                "SELECT format('%I.%I', schema_name, shadow_name), table_oid FROM tandem.shadow_tables WHERE migration_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        let (shadow, oid): (String, u32) = (row.get(0), row.get(1));
        let log = engine::shadow::log_table(id, oid).to_string();
        let divergent: i64 = c
            .query_one("SELECT count(*) FROM tandem.divergence WHERE migration_id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(divergent, 0, "a moved unique value was recorded as a divergence");
        let gone: bool = c
            .query_one("SELECT to_regclass($1) IS NULL", &[&log])
            .await
            .unwrap()
            .get(0);
        assert!(gone, "the log outlived the switch");
        let differ: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM ((SELECT id, email, n::bigint FROM u EXCEPT ALL SELECT id, email, n FROM {shadow})
                      UNION ALL (SELECT id, email, n FROM {shadow} EXCEPT ALL SELECT id, email, n::bigint FROM u)) d"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(differ, 0, "the shadow differs from the table when the trigger takes over");
        // The forward trigger now: the value moves back, the application's writes succeed.
        c.batch_execute(
            "UPDATE u SET email = 'one@x' WHERE id = 1; UPDATE u SET email = 'u2@x' WHERE id = 2;",
        )
        .await
        .expect("the application's write through the forward trigger");
        proc.kill9().await;

        let run = Tandem::spawn(&url, &apply, None)
            .finish(COMMAND_LIMIT)
            .await
            .expect(0);
        assert!(run.stderr.contains("is live"), "{}", run.stderr);
        let rows: Vec<(i32, String, i64)> = c
            .query("SELECT id, email, n FROM u WHERE id <= 3 ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, "one@x".to_string(), 2),
                (2, "u2@x".to_string(), 2),
                (3, "u3@x".to_string(), 4)
            ]
        );
    })
    .await;
}

/// Kill after a materialized view over the table was built again beside the one clients
/// read, before the swap that puts it in place: clients still read the old one (over the
/// parked table). `apply` again drops the leftover, builds it anew and swaps it in; nothing
/// of tandem's is left and the view reads the table under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_a_materialized_view_rebuild_and_its_swap_then_apply_again() {
    within(TEST_LIMIT, async {
        let mut s = Scenario::with_setup(
            "kill_matview",
            20_000,
            "CREATE MATERIALIZED VIEW churn_sums AS SELECT count(*) AS n, sum(val) AS total FROM churn_items;
             CREATE UNIQUE INDEX churn_sums_n ON churn_sums (n);",
        )
        .await;
        let reads = "SELECT (SELECT string_agg(DISTINCT d.refobjid::regclass::text, ',') FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class = 'churn_sums'::regclass AND d.refobjid <> 'churn_sums'::regclass)
                       || ' ' || (SELECT count(*) FROM pg_class WHERE relname LIKE '\\_tandem\\_m%\\_mv%')::text
                       || ' ' || (SELECT n > 0 FROM churn_sums)::text";
        let apply = s.apply(&[], Some("matview_built"));
        s.kill_at(apply, "matview_built").await;
        let at_kill: String = s.c().query_one(reads, &[]).await.unwrap().get(0);
        assert_eq!(
            at_kill,
            format!("{} 2 true", s.old()),
            "the old view still reads the parked table; the new one and its index wait beside"
        );
        let run = s.apply(&[], None).finish(COMMAND_LIMIT).await.expect(0);
        assert!(run.stderr.contains("building materialized view churn_sums again"), "{}", run.stderr);
        s.stop_load().await;
        let after: String = s.c().query_one(reads, &[]).await.unwrap().get(0);
        assert_eq!(after, "churn_items 0 true");
        let total_type: String = s
            .c()
            .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'churn_sums'::regclass AND attname = 'total'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(total_type, "numeric", "sum(bigint), over the new column");
    })
    .await;
}
