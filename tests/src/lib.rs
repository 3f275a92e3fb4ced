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
            "--in-place-below",
            "0",
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
        status_json_with(url, id, &[])
    }

    /// `tandem status ID --json EXTRA...`, parsed (one migration).
    pub fn status_json_with(url: &str, id: i64, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let run = on(url, "status", id, &args).expect(0);
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

        /// Wait for it to exit (SIGKILL after `limit`): its exit code (-1 for a signal) and
        /// everything it printed on stderr.
        pub fn wait_exit(&mut self, limit: Duration) -> (i32, String) {
            let start = Instant::now();
            loop {
                let left = limit.saturating_sub(start.elapsed());
                match self.lines.recv_timeout(left) {
                    Ok(line) => {
                        self.stderr.push_str(&line);
                        self.stderr.push('\n');
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.kill();
                        panic!("still running after {limit:?}; stderr:\n{}", self.stderr);
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let status = self.child.wait().expect("wait for tandem");
            (status.code().unwrap_or(-1), self.stderr.clone())
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

/// Run the real `tandem proxy` binary and point real clients at it.
///
/// [`Proxy::start`] runs `tandem proxy --listen 127.0.0.1:<free port> --upstream URL` as a
/// child (stdout and stderr captured to files), waits until the port accepts connections and
/// SIGKILLs it by pid on drop (its output is printed when the test is panicking).
/// [`PassFile`] is a 0600 libpq password file in a private temporary directory, so clients
/// authenticate with SCRAM without a password in argv or in an environment value; pass its
/// path as `PGPASSFILE` ([`client_command`] does).
pub mod proxy {
    use std::fs::{self, File, OpenOptions};
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    use fixtures::pg::TestDb;
    use tokio_postgres::config::Host;

    use super::{binary, root};

    /// Variables that would steer libpq-based clients (and `tandem`) away from what a test
    /// asks for; removed from every command started here.
    pub const LIBPQ_VARS: &[&str] = &[
        "DATABASE_URL",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGCONNECT_TIMEOUT",
        "TANDEM_LOG",
    ];

    /// How long a started proxy may take to accept connections.
    const START_LIMIT: Duration = Duration::from_secs(20);

    /// Where a client connects: host, port, user and database (never the password).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Endpoint {
        pub host: String,
        pub port: u16,
        pub user: String,
        pub dbname: String,
    }

    impl Endpoint {
        /// The same server and user, another port (the proxy's).
        pub fn with_port(&self, port: u16) -> Endpoint {
            Endpoint {
                port,
                ..self.clone()
            }
        }

        /// `postgres://user@host:port/db`, with no password: what `--upstream` takes.
        pub fn url(&self) -> String {
            format!(
                "postgres://{}@{}:{}/{}",
                self.user, self.host, self.port, self.dbname
            )
        }
    }

    /// The TCP endpoint of `db` (SCRAM with the cluster's generated password) and that
    /// password. Panics if the test server is only reachable over a Unix socket.
    pub fn tcp_endpoint(db: &TestDb) -> (Endpoint, String) {
        let config = db.tcp_config();
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            other => {
                panic!("the test server has no TCP address ({other:?}); the proxy speaks TCP only")
            }
        };
        let endpoint = Endpoint {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_string(),
            dbname: db.name().to_string(),
        };
        let password = config
            .get_password()
            .map(|p| String::from_utf8(p.to_vec()).expect("utf-8 password"))
            .unwrap_or_default();
        (endpoint, password)
    }

    /// A port on 127.0.0.1 that nothing listens on right now.
    pub fn free_port() -> u16 {
        TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("bind a free port on 127.0.0.1")
            .port()
    }

    /// A libpq password file (mode 0600, in a private temporary directory) holding one
    /// password for every host, port, database and user. Removed on drop.
    pub struct PassFile {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl PassFile {
        pub fn new(password: &str) -> PassFile {
            let dir = tempfile::Builder::new()
                .prefix("tandem-pgpass-")
                .tempdir()
                .expect("temporary directory for the password file");
            let path = dir.path().join("pgpass");
            let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("create the password file");
            writeln!(file, "*:*:*:*:{escaped}").expect("write the password file");
            PassFile { _dir: dir, path }
        }

        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    /// `program` with no libpq variables from outside and `PGPASSFILE` set to `passfile`.
    pub fn client_command(program: impl AsRef<std::ffi::OsStr>, passfile: &PassFile) -> Command {
        let mut cmd = Command::new(program);
        for var in LIBPQ_VARS {
            cmd.env_remove(var);
        }
        cmd.env("PGPASSFILE", passfile.path()).stdin(Stdio::null());
        cmd
    }

    /// What a command run by [`run_limited`] did.
    #[derive(Debug)]
    pub struct Finished {
        pub status: ExitStatus,
        pub stdout: String,
        pub stderr: String,
        pub elapsed: Duration,
    }

    impl Finished {
        /// Both outputs, for failure messages.
        pub fn both(&self) -> String {
            format!(
                "--- stdout\n{}\n--- stderr\n{}",
                self.stdout.trim_end(),
                self.stderr.trim_end()
            )
        }
    }

    /// Run `cmd` to completion with its output captured to files (no pipe can fill up);
    /// SIGKILL it and panic with what it printed if it is still running after `limit`.
    pub fn run_limited(cmd: &mut Command, limit: Duration) -> Finished {
        let dir = tempfile::tempdir().expect("temporary directory for output");
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        cmd.stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let status = wait_limited(&mut child, limit);
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        let finished = Finished {
            status: status.unwrap_or_else(|| {
                let _ = child.kill();
                child.wait().expect("reap the killed command")
            }),
            stdout: read(&out),
            stderr: read(&err),
            elapsed: start.elapsed(),
        };
        assert!(
            status.is_some(),
            "{:?} {:?} did not finish within {limit:?}; killed\n{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            finished.both()
        );
        finished
    }

    /// Wait up to `limit` for `child` to exit.
    pub fn wait_limited(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for a child") {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A proxy's `--config` file: `password_file` naming a 0600 file (in the same private
    /// temporary directory) that holds `password`, then the TOML lines `toml`. The directory
    /// goes with the returned guard.
    pub fn config_file(password: &str, toml: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("tandem-proxy-config-")
            .tempdir()
            .expect("temporary directory for the proxy's config");
        let password_file = dir.path().join("password");
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&password_file)
            .expect("create the proxy's password file");
        writeln!(file, "{password}").expect("write the proxy's password file");
        let config = dir.path().join("proxy.toml");
        let quoted = password_file
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        fs::write(&config, format!("password_file = \"{quoted}\"\n{toml}\n"))
            .expect("write the proxy's config");
        (dir, config)
    }

    /// A running `tandem proxy`; SIGKILLed (by pid) and reaped on drop.
    pub struct Proxy {
        child: Child,
        addr: SocketAddr,
        dir: Option<tempfile::TempDir>,
        /// The `--config` file and tandem's password file, when [`Proxy::for_db`] wrote them.
        config_dir: Option<tempfile::TempDir>,
        stderr_path: PathBuf,
        stdout_path: PathBuf,
    }

    impl Proxy {
        /// The proxy in front of `db`, as an operator runs it: `--upstream
        /// postgres://postgres@127.0.0.1:<pg port>/<db>` (no password in the URL) and
        /// `--config` naming a 0600 `password_file` with the cluster's password, for tandem's
        /// own control and mirror connections. Clients authenticate end to end.
        pub fn for_db(db: &TestDb) -> Proxy {
            Proxy::for_db_with(db, "", &[])
        }

        /// [`Proxy::for_db`] with more TOML settings (lines such as `max_connections = 5`)
        /// and more arguments.
        pub fn for_db_with(db: &TestDb, toml: &str, extra_args: &[&str]) -> Proxy {
            let (endpoint, password) = tcp_endpoint(db);
            let (dir, config) = config_file(&password, toml);
            let config_arg = config.display().to_string();
            let mut args = vec!["--config", config_arg.as_str()];
            args.extend_from_slice(extra_args);
            let mut proxy = Proxy::start_with(&endpoint.url(), &args, &[]);
            proxy.config_dir = Some(dir);
            proxy
        }

        /// `tandem proxy --listen 127.0.0.1:<free port> --upstream UPSTREAM`.
        pub fn start(upstream: &str) -> Proxy {
            Proxy::start_with(upstream, &[], &[])
        }

        /// [`Proxy::start`] with more arguments (e.g. `--config FILE`) and environment.
        /// Tries another port when the chosen one was taken meanwhile.
        pub fn start_with(upstream: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Proxy {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut proxy = Proxy::spawn(free_port(), upstream, extra_args, env);
                match proxy.wait_accepting(START_LIMIT) {
                    Ok(()) => return proxy,
                    Err(stderr) if attempt < 3 && stderr.contains("in use") => continue,
                    Err(stderr) => panic!(
                        "tandem proxy --listen {} --upstream {upstream} {} did not start accepting connections:\n{stderr}",
                        proxy.addr,
                        extra_args.join(" ")
                    ),
                }
            }
        }

        fn spawn(port: u16, upstream: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Proxy {
            let dir = tempfile::Builder::new()
                .prefix("tandem-proxy-")
                .tempdir()
                .expect("temporary directory for the proxy's output");
            let stderr_path = dir.path().join("stderr");
            let stdout_path = dir.path().join("stdout");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut cmd = Command::new(binary());
            cmd.arg("proxy")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--upstream")
                .arg(upstream)
                .args(extra_args)
                .current_dir(root())
                .stdin(Stdio::null())
                .stdout(File::create(&stdout_path).expect("proxy stdout file"))
                .stderr(File::create(&stderr_path).expect("proxy stderr file"));
            for var in LIBPQ_VARS {
                cmd.env_remove(var);
            }
            cmd.envs(env.iter().copied());
            let child = cmd.spawn().expect("tandem proxy starts");
            Proxy {
                child,
                addr,
                dir: Some(dir),
                config_dir: None,
                stderr_path,
                stdout_path,
            }
        }

        /// Wait until a TCP connection to the port succeeds; `Err(output)` if the process
        /// exits or `limit` passes first.
        fn wait_accepting(&mut self, limit: Duration) -> Result<(), String> {
            let start = Instant::now();
            loop {
                if let Some(status) = self.child.try_wait().expect("poll the proxy") {
                    return Err(format!("it exited ({status})\n{}", self.output()));
                }
                if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                    return Ok(());
                }
                if start.elapsed() >= limit {
                    return Err(format!("no connection within {limit:?}\n{}", self.output()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        pub fn port(&self) -> u16 {
            self.addr.port()
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Everything it wrote to stderr so far.
        pub fn stderr(&self) -> String {
            String::from_utf8_lossy(&fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
        }

        /// The `--config` file [`Proxy::for_db_with`] wrote (its first line names the
        /// password file).
        pub fn config_path(&self) -> PathBuf {
            self.config_dir
                .as_ref()
                .expect("a proxy started by for_db or for_db_with")
                .path()
                .join("proxy.toml")
        }

        /// SIGHUP: the proxy reads its `--config` file again.
        pub fn hangup(&self) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
                .expect("signal the proxy");
        }

        /// Everything it wrote to stdout so far.
        pub fn stdout(&self) -> String {
            String::from_utf8_lossy(&fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
        }

        /// Both outputs, for failure messages.
        pub fn output(&self) -> String {
            format!(
                "--- proxy stdout\n{}\n--- proxy stderr\n{}",
                self.stdout().trim_end(),
                self.stderr().trim_end()
            )
        }

        /// Wait until this proxy has registered in `tandem.proxies` (its control connection
        /// is up: tandem's bookkeeping must be installed in the upstream database); panic
        /// with its output after `limit`.
        pub async fn wait_registered(&mut self, client: &tokio_postgres::Client, limit: Duration) {
            let start = Instant::now();
            let pid = self.pid() as i32;
            loop {
                self.assert_running();
                let found = client
                    .query_one(
                        "SELECT count(*) FROM tandem.proxies WHERE pid = $1 AND listen LIKE '%:' || $2",
                        &[&pid, &self.port().to_string()],
                    )
                    .await
                    .map(|row| row.get::<_, i64>(0) > 0);
                match found {
                    Ok(true) => return,
                    Ok(false) if start.elapsed() < limit => {}
                    Ok(false) => panic!(
                        "tandem proxy (pid {pid}) did not register in tandem.proxies within {limit:?}\n{}",
                        self.output()
                    ),
                    Err(e) => panic!("cannot read tandem.proxies: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// Panic, with its output, if it has exited.
        pub fn assert_running(&mut self) {
            if let Some(status) = self.child.try_wait().expect("poll the proxy") {
                panic!(
                    "tandem proxy exited ({status}) during the test\n{}",
                    self.output()
                );
            }
        }

        /// SIGTERM, then wait up to `limit` for it to exit; `None` if it did not.
        pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            if self.child.try_wait().expect("poll the proxy").is_none() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            wait_limited(&mut self.child, limit)
        }

        /// SIGKILL it (by pid) and reap it.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.kill();
            if std::thread::panicking() {
                if let Some(config) = self.config_dir.take() {
                    let _ = fs::remove_file(config.path().join("password"));
                    let _ = config.keep();
                }
                let dir = self.dir.take().map(|d| d.keep());
                eprintln!(
                    "\ntandem proxy (pid {}, {}) output, kept in {}:\n{}",
                    self.child.id(),
                    self.addr,
                    dir.map_or_else(|| "?".into(), |d| d.display().to_string()),
                    self.output()
                );
            }
        }
    }
}
