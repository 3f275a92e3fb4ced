//! Helpers for end-to-end tests: run the real `tandem` binary against a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What one run of `tandem` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panic with the whole output unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The `tandem` binary next to this test executable (`TANDEM_BIN` overrides).
///
/// `cargo test --workspace` and `cargo nextest run --workspace` build it, because the `cli`
/// package has integration tests; running this package alone needs `cargo build -p cli` first.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("TANDEM_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>/tandem
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("tandem"))
            .expect("target directory");
        assert!(
            bin.exists(),
            "{} is missing: test the whole workspace (cargo test --workspace), or cargo build -p cli first",
            bin.display()
        );
        bin
    })
}

/// Run `tandem` with `args`, with no DATABASE_URL or PG* variables leaking in from outside.
pub fn tandem(args: &[&str]) -> Run {
    tandem_in(args, &root())
}

pub fn tandem_in(args: &[&str], dir: &Path) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(args).current_dir(dir);
    for var in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "TANDEM_LOG",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("tandem runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The fingerprint of a database's schema, to show that a command changed nothing.
pub async fn fingerprint(client: &tokio_postgres::Client) -> String {
    engine::catalog::introspect(client)
        .await
        .expect("introspection")
        .fingerprint()
}

/// A case folder under `fixtures/cases/`.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
}

impl Case {
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.exists().then_some(p)
    }

    pub fn read(&self, name: &str) -> Option<String> {
        self.file(name)
            .map(|p| std::fs::read_to_string(p).expect("case file reads"))
    }
}

/// Every case, sorted by name.
pub fn cases() -> Vec<Case> {
    let dir = root().join("fixtures/cases");
    let mut out: Vec<Case> = std::fs::read_dir(&dir)
        .expect("fixtures/cases exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| Case {
            name: e.file_name().to_string_lossy().into_owned(),
            dir: e.path(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Helpers for tests that run migrations end to end: plan, submit, apply, and `tandem`
/// processes held at a failpoint.
pub mod migrate {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
    use std::time::{Duration, Instant};

    use super::{binary, root, tandem, Run};

    /// A fresh directory for one test's files (plans, change files).
    pub fn scratch_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tandem-e2e-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// `tandem plan --sql SQL -o OUT` (exit code not checked: a plan with an error-level
    /// finding exits 3 and is still written).
    pub fn plan_sql(url: &str, sql: &str, out: &Path) -> Run {
        tandem(&[
            "--database-url",
            url,
            "plan",
            "--sql",
            sql,
            "-o",
            out.to_str().expect("utf-8 path"),
        ])
    }

    /// The plan file as JSON.
    pub fn read_plan(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("plan file reads"))
            .expect("plan file is JSON")
    }

    /// The strategy of each step of the plan file.
    pub fn strategies(path: &Path) -> Vec<String> {
        read_plan(path)["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["strategy"].as_str().expect("strategy").to_string())
            .collect()
    }

    /// `tandem submit PLAN [extra]`, which must succeed; the migration id it printed.
    pub fn submit(url: &str, plan: &Path, extra: &[&str]) -> i64 {
        let mut args = vec![
            "--database-url",
            url,
            "submit",
            plan.to_str().expect("utf-8 path"),
        ];
        args.extend_from_slice(extra);
        let run = tandem(&args).expect(0);
        run.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("submit prints the id alone: {:?}", run.stdout))
    }

    /// `tandem --database-url URL COMMAND ID [extra]`, once.
    pub fn on_once(url: &str, command: &str, id: i64, extra: &[&str]) -> Run {
        let id = id.to_string();
        let mut args = vec!["--database-url", url, command, &id];
        args.extend_from_slice(extra);
        tandem(&args)
    }

    /// [`on_once`], run again (for up to 2 s) while it is refused because "another process"
    /// holds the migration. A `tandem` command's server session can outlive the process by a
    /// few milliseconds and keep the migration's lock meanwhile, so a command run right after
    /// another is refused now and then; and while that happens, tandem may name a process of
    /// another database as the holder (it does not filter the lock by database). Tests that
    /// expect the refusal use [`on_once`].
    pub fn on(url: &str, command: &str, id: i64, extra: &[&str]) -> Run {
        let start = Instant::now();
        loop {
            let run = on_once(url, command, id, extra);
            if run.code == 0
                || !run.stderr.contains("is being run by another process")
                || start.elapsed() > Duration::from_secs(2)
            {
                return run;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `tandem apply ID --yes [extra]`.
    pub fn apply(url: &str, id: i64, extra: &[&str]) -> Run {
        let mut args = vec!["--yes"];
        args.extend_from_slice(extra);
        on(url, "apply", id, &args)
    }

    /// `tandem status ID --json`, parsed (one migration).
    pub fn status_json(url: &str, id: i64) -> serde_json::Value {
        let run = on(url, "status", id, &["--json"]).expect(0);
        let all: serde_json::Value = serde_json::from_str(&run.stdout).expect("status is JSON");
        all[0].clone()
    }

    /// Every row of `sql` with every column read as text (the query must cast them).
    pub async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
        client
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect()
            })
            .collect()
    }

    /// A `tandem` process running in the background, its stderr read line by line; killed
    /// when dropped.
    pub struct Background {
        child: Child,
        lines: Receiver<String>,
        /// Everything it printed on stderr so far.
        pub stderr: String,
    }

    /// Start `tandem ARGS` with `env` added (e.g. `TANDEM_FAILPOINT`).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Background {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("tandem starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines: rx,
            stderr: String::new(),
        }
    }

    impl Background {
        /// The process id (`tandem` names it in the application name it connects with).
        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Wait until it prints a line containing `needle`; panic with what it printed if it
        /// exits first or `limit` passes.
        pub fn wait_for(&mut self, needle: &str, limit: Duration) {
            let start = Instant::now();
            loop {
                let left = limit.saturating_sub(start.elapsed());
                match self.lines.recv_timeout(left) {
                    Ok(line) => {
                        self.stderr.push_str(&line);
                        self.stderr.push('\n');
                        if line.contains(needle) {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => panic!(
                        "no line with {needle:?} within {limit:?}; stderr so far:\n{}",
                        self.stderr
                    ),
                    Err(RecvTimeoutError::Disconnected) => panic!(
                        "tandem exited ({:?}) before printing {needle:?}; stderr:\n{}",
                        self.child.wait(),
                        self.stderr
                    ),
                }
            }
        }

        /// SIGKILL it and reap it.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Background {
        fn drop(&mut self) {
            self.kill();
        }
    }
}
