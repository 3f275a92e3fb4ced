//! Real clients through the real `tandem proxy` binary: psycopg 3, asyncpg, pgjdbc, psql and
//! pgbench, each doing real work and checking its results (the programs are in
//! `tests/clients/`).
//!
//! Every test gets a database of its own, starts `tandem proxy --listen 127.0.0.1:<port>
//! --upstream postgres://postgres@127.0.0.1:<pg port>/<db> --config FILE` (no password in the
//! URL: clients authenticate end to end with SCRAM; the config's 0600 `password_file` is for
//! tandem's own connections), and runs one client against the proxy's port. The clients' password
//! is in a 0600 pgpass file named by `PGPASSFILE`, never in argv or an environment value.
//! tandem's bookkeeping is installed in the database first and the proxy must have registered
//! in `tandem.proxies` before the client starts, so the proxy runs as it does on a database
//! tandem manages. After the client, the proxy must still be running.
//!
//! `TANDEM_CLIENTS_DIRECT=1` runs the same clients against PostgreSQL directly (no proxy), to
//! tell a client's own failure from the proxy's.
//!
//! A missing client fails its test with what to install (`./run test` installs them all).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::pg::TestDb;
use tests::proxy::{
    client_command, run_limited, tcp_endpoint, Endpoint, Finished, PassFile, Proxy,
};

/// How long one client program may run.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// The PostgreSQL 15 programs (psql, pgbench): `TANDEM_PG_BIN`, else Debian's directory.
fn pg_bin(program: &str) -> PathBuf {
    let dir = std::env::var_os("TANDEM_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let path = dir.join(program);
    if path.is_file() {
        return path;
    }
    let package = if program == "psql" {
        "postgresql-client-15"
    } else {
        "postgresql-15"
    };
    panic!(
        "{} is missing: install it with `apt-get install -y {package}` (./run test installs it)",
        path.display()
    );
}

/// `program` found on PATH, or a failure naming what to install.
fn on_path(program: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not on PATH: install it with `{install}` (./run test installs it)")
        })
}

/// python3, with `modules` importable.
fn python_with(modules: &[&str], pip: &str) -> PathBuf {
    let python = on_path("python3", "apt-get install -y python3 python3-pip");
    let out = Command::new(&python)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{} cannot import {}: install with `python3 -m pip install {pip}` (./run test installs it)\n{}",
        python.display(),
        modules.join(", "),
        String::from_utf8_lossy(&out.stderr)
    );
    python
}

/// `tests/clients/<name>`.
fn client_file(name: &str) -> PathBuf {
    tests::root().join("tests/clients").join(name)
}

/// One test's database, password file, and proxy (unless `TANDEM_CLIENTS_DIRECT` is set).
struct Setup {
    db: TestDb,
    passfile: PassFile,
    /// PostgreSQL itself.
    upstream: Endpoint,
    /// Where clients connect: the proxy, or PostgreSQL directly.
    target: Endpoint,
    proxy: Option<Proxy>,
}

impl Setup {
    async fn new(test: &str) -> Setup {
        let db = TestDb::new(test).await;
        // tandem's bookkeeping, as on a database tandem manages: the proxy then runs its
        // control connection (registration, heartbeat, LISTEN) beside the clients.
        engine::state::install(&mut db.connect().await)
            .await
            .expect("install tandem's bookkeeping");
        let (upstream, password) = tcp_endpoint(&db);
        let passfile = PassFile::new(&password);
        let direct =
            std::env::var("TANDEM_CLIENTS_DIRECT").is_ok_and(|v| !v.is_empty() && v != "0");
        let (target, proxy) = if direct {
            (upstream.clone(), None)
        } else {
            let mut proxy = Proxy::for_db(&db);
            proxy
                .wait_registered(db.client(), Duration::from_secs(10))
                .await;
            (upstream.with_port(proxy.port()), Some(proxy))
        };
        Setup {
            db,
            passfile,
            upstream,
            target,
            proxy,
        }
    }

    /// `program` with `PGPASSFILE` and nothing else from the libpq environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        client_command(program, &self.passfile)
    }

    /// libpq's `-h -p -U -d` for the target.
    fn libpq_args(&self) -> Vec<String> {
        let t = &self.target;
        vec![
            "-h".into(),
            t.host.clone(),
            "-p".into(),
            t.port.to_string(),
            "-U".into(),
            t.user.clone(),
            "-d".into(),
            t.dbname.clone(),
        ]
    }

    /// `-h -p -U DBNAME` for pgbench (whose `-d` means `--debug`).
    fn pgbench_args(&self) -> Vec<String> {
        let mut args = self.libpq_args();
        args.retain(|a| a != "-d");
        args
    }

    /// `--host --port --dbname --user` for the Python checks.
    fn python_args(&self) -> Vec<String> {
        let t = &self.target;
        vec![
            "--host".into(),
            t.host.clone(),
            "--port".into(),
            t.port.to_string(),
            "--dbname".into(),
            t.dbname.clone(),
            "--user".into(),
            t.user.clone(),
        ]
    }

    /// What the client connected through, for messages.
    fn via(&self) -> String {
        match &self.proxy {
            Some(p) => format!("through tandem proxy {} (pid {})", p.addr(), p.pid()),
            None => format!("directly to PostgreSQL port {}", self.upstream.port),
        }
    }

    /// Panic with everything useful unless `run` exited 0.
    fn expect_success(&mut self, what: &str, run: &Finished) {
        if run.status.success() {
            return;
        }
        let proxy = self.proxy.as_ref().map(Proxy::output).unwrap_or_default();
        panic!(
            "{what} failed ({}) {}\n{}\n{proxy}",
            run.status,
            self.via(),
            run.both()
        );
    }

    /// The proxy must have survived the client.
    fn finish(mut self) {
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.assert_running();
        }
    }

    /// A number from the database, asked directly (not through the proxy).
    async fn scalar(&self, sql: &str) -> i64 {
        self.db
            .client()
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Wait until no backend runs a query containing `marker` (checked directly).
    async fn no_backend_running(&self, marker: &str, limit: Duration) {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND pid <> pg_backend_pid() AND query LIKE '%{marker}%'"
        );
        let start = Instant::now();
        loop {
            let n = self.scalar(&sql).await;
            if n == 0 {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{n} backend(s) still run the query marked {marker} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn psycopg() {
    let python = python_with(&["psycopg"], "'psycopg[binary]'");
    let mut s = Setup::new("proxy_psycopg").await;
    let mut cmd = s.command(python);
    cmd.arg(client_file("psycopg_check.py"))
        .args(s.python_args());
    let run = run_limited(&mut cmd, CLIENT_LIMIT);
    s.expect_success("psycopg_check.py", &run);
    assert!(
        run.stdout.contains("psycopg_check: all steps passed"),
        "{}",
        run.both()
    );
    assert_eq!(s.scalar("SELECT count(*) FROM copied").await, 50_000);
    assert_eq!(s.scalar("SELECT count(*) FROM items").await, 1002);
    s.finish();
}

#[tokio::test]
async fn asyncpg() {
    let python = python_with(&["asyncpg"], "asyncpg");
    let mut s = Setup::new("proxy_asyncpg").await;
    let mut cmd = s.command(python);
    cmd.arg(client_file("asyncpg_check.py"))
        .args(s.python_args());
    let run = run_limited(&mut cmd, CLIENT_LIMIT);
    s.expect_success("asyncpg_check.py", &run);
    assert!(
        run.stdout.contains("asyncpg_check: all steps passed"),
        "{}",
        run.both()
    );
    assert_eq!(s.scalar("SELECT count(*) FROM copied").await, 30_400);
    s.no_backend_running("asyncpg_cancel", Duration::from_secs(3))
        .await;
    s.finish();
}

#[tokio::test]
async fn jdbc() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    assert!(
        jar.is_file(),
        "{} is missing: install it with `apt-get install -y libpostgresql-jdbc-java` (./run test installs it)",
        jar.display()
    );
    let javac = on_path("javac", "apt-get install -y default-jdk-headless");
    let java = on_path("java", "apt-get install -y default-jdk-headless");
    let classes = tempfile::tempdir().expect("temporary directory for classes");
    let compiled = run_limited(
        Command::new(javac)
            .arg("-d")
            .arg(classes.path())
            .arg("-cp")
            .arg(jar)
            .arg(client_file("JdbcCheck.java")),
        CLIENT_LIMIT,
    );
    assert!(
        compiled.status.success(),
        "javac JdbcCheck.java failed\n{}",
        compiled.both()
    );

    let mut s = Setup::new("proxy_jdbc").await;
    let t = s.target.clone();
    let mut cmd = s.command(java);
    cmd.arg("-cp")
        .arg(format!("{}:{}", jar.display(), classes.path().display()))
        .arg("JdbcCheck")
        .args([&t.host, &t.port.to_string(), &t.dbname, &t.user]);
    let run = run_limited(&mut cmd, CLIENT_LIMIT);
    s.expect_success("JdbcCheck", &run);
    assert!(
        run.stdout.contains("JdbcCheck: all steps passed"),
        "{}",
        run.both()
    );
    assert_eq!(s.scalar("SELECT count(*) FROM copied").await, 20_000);
    s.no_backend_running("jdbc_cancel_me", Duration::from_secs(3))
        .await;
    s.finish();
}

/// A CSV field as PostgreSQL writes it: quoted when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[tokio::test]
async fn psql_copy() {
    let psql = pg_bin("psql");
    let mut s = Setup::new("proxy_psql_copy").await;
    let dir = tempfile::tempdir().expect("scratch directory");

    let mut people = String::from("id,name,note,born\n");
    for i in 1..=1000 {
        let name = format!("name {i}, \"q\" ü");
        let note = if i % 10 == 0 {
            String::new() // NULL
        } else {
            csv_field(&format!("line1\nline2 {i}"))
        };
        let born = format!("2000-01-{:02}", i % 28 + 1);
        people.push_str(&format!("{i},{},{note},{born}\n", csv_field(&name)));
    }
    std::fs::write(dir.path().join("people.csv"), &people).expect("write people.csv");
    std::fs::write(
        dir.path().join("bad.csv"),
        "2001,a,b,2000-01-01\n2002,a,b,2000-01-01\nxx,a,b,2000-01-01\n",
    )
    .expect("write bad.csv");

    let mut cmd = s.command(psql);
    cmd.current_dir(dir.path())
        .args(["-X", "-w", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(client_file("psql_copy.sql"))
        .args(s.libpq_args());
    let run = run_limited(&mut cmd, CLIENT_LIMIT);
    s.expect_success("psql -f psql_copy.sql", &run);
    for line in [
        "COPY 1000",
        "COPY 3",
        "after_bad 1003",
        "total 1003 id_sum 503506",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "psql printed no line {line:?}\n{}",
            run.both()
        );
    }
    assert!(
        run.stderr
            .contains("invalid input syntax for type integer: \"xx\""),
        "the bad \\copy did not fail as expected\n{}",
        run.both()
    );

    let out = std::fs::read_to_string(dir.path().join("people_out.csv")).expect("people_out.csv");
    let inline = "1001,inline one,tab\there,2001-02-03\n\
                  1002,inline two,,1999-12-31\n\
                  1003,\"inline \"\"three\"\", ü\",back\\slash,2020-02-29\n";
    assert!(
        out == format!("{people}{inline}"),
        "people_out.csv is not people.csv plus the three inline rows; its tail:\n{}",
        &out[out.len().saturating_sub(400)..]
    );
    let names = std::fs::read_to_string(dir.path().join("names.txt")).expect("names.txt");
    assert_eq!(names.lines().count(), 1003, "names.txt lines");
    assert_eq!(names.lines().nth(9), Some("10\tname 10, \"q\" ü"));
    assert_eq!(names.lines().last(), Some("1003\tinline \"three\", ü"));

    assert_eq!(s.scalar("SELECT count(*) FROM people").await, 1003);
    s.finish();
}

#[tokio::test]
async fn psql_cancel() {
    let psql = pg_bin("psql");
    let mut s = Setup::new("proxy_psql_cancel").await;
    let marker = "psql_cancel_me";
    let dir = tempfile::tempdir().expect("scratch directory");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = s
        .command(psql)
        .args(["-X", "-w", "-c"])
        .arg(format!("select pg_sleep(60) /* {marker} */"))
        .args(s.libpq_args())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("psql starts");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // Wait until the server runs the sleep (seen directly), then ~1 s more.
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' \
         AND pid <> pg_backend_pid()"
    );
    let start = Instant::now();
    while s.scalar(&running).await == 0 {
        if let Some(status) = child.try_wait().expect("poll psql") {
            s.expect_success(
                "psql -c 'select pg_sleep(60)'",
                &Finished {
                    status,
                    stdout: read(&out),
                    stderr: read(&err),
                    elapsed: start.elapsed(),
                },
            );
            panic!("psql exited 0 before its pg_sleep(60) ran");
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "pg_sleep never showed up on the server\n{}",
            read(&err)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT psql");
    let status = tests::proxy::wait_limited(&mut child, Duration::from_secs(5));
    let (stdout, stderr) = (read(&out), read(&err));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let proxy = s.proxy.as_ref().map(Proxy::output).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!(
            "psql did not exit within 5 s of SIGINT: the cancel did not reach the server ({})\n\
             --- psql stdout\n{stdout}\n--- psql stderr\n{stderr}\n{proxy}",
            s.via()
        )
    });
    assert!(
        stderr.contains("canceling statement due to user request"),
        "psql exited ({status}) {:.1?} after SIGINT without the cancel error ({})\n\
         --- psql stdout\n{stdout}\n--- psql stderr\n{stderr}\n{proxy}",
        sent.elapsed(),
        s.via()
    );
    assert_eq!(status.code(), Some(1), "psql's exit after the cancel");
    s.no_backend_running(marker, Duration::from_secs(3)).await;
    s.finish();
}

/// `N` from pgbench's `label: N...` line.
fn pgbench_number(out: &str, label: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| {
            rest.trim()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("pgbench printed no {label:?} line:\n{out}"))
}

#[tokio::test]
async fn pgbench() {
    let pgbench = pg_bin("pgbench");
    let mut s = Setup::new("proxy_pgbench").await;

    let mut init = s.command(&pgbench);
    init.args(["-i", "-s", "1", "-q"]).args(s.pgbench_args());
    let run = run_limited(&mut init, CLIENT_LIMIT);
    s.expect_success("pgbench -i -s 1", &run);
    assert_eq!(
        s.scalar("SELECT count(*) FROM pgbench_accounts").await,
        100_000
    );
    assert_eq!(s.scalar("SELECT count(*) FROM pgbench_branches").await, 1);
    assert_eq!(s.scalar("SELECT count(*) FROM pgbench_tellers").await, 10);

    let (clients, per_client) = (4, 300);
    for mode in ["simple", "extended", "prepared"] {
        let before = s.scalar("SELECT count(*) FROM pgbench_history").await;
        let mut cmd = s.command(&pgbench);
        cmd.args(["-n", "-M", mode, "-c", &clients.to_string(), "-j", "2"])
            .args(["-t", &per_client.to_string()])
            .args(s.pgbench_args());
        let run = run_limited(&mut cmd, CLIENT_LIMIT);
        s.expect_success(&format!("pgbench -M {mode}"), &run);
        let processed = pgbench_number(&run.stdout, "number of transactions actually processed:");
        let failed = pgbench_number(&run.stdout, "number of failed transactions:");
        assert_eq!(
            failed,
            0,
            "pgbench -M {mode}: failed transactions\n{}",
            run.both()
        );
        assert_eq!(
            processed,
            clients * per_client,
            "pgbench -M {mode}: transactions processed\n{}",
            run.both()
        );
        let after = s.scalar("SELECT count(*) FROM pgbench_history").await;
        assert_eq!(
            after - before,
            processed,
            "pgbench -M {mode}: pgbench_history grew by {} for {processed} transactions",
            after - before
        );
        // Every transaction added its delta to one account, teller and branch, and logged it.
        let sums =
            s.db.client()
                .query_one(
                    "SELECT (SELECT sum(abalance)::bigint FROM pgbench_accounts), \
                        (SELECT sum(tbalance)::bigint FROM pgbench_tellers), \
                        (SELECT sum(bbalance)::bigint FROM pgbench_branches), \
                        (SELECT sum(delta)::bigint FROM pgbench_history)",
                    &[],
                )
                .await
                .expect("balances");
        let sums: Vec<i64> = (0..4).map(|i| sums.get(i)).collect();
        assert!(
            sums.iter().all(|&v| v == sums[3]),
            "pgbench -M {mode}: accounts, tellers, branches and history disagree: {sums:?}"
        );
        eprintln!(
            "pgbench -M {mode}: {processed} transactions in {:.1?} {}",
            run.elapsed,
            s.via()
        );
    }
    s.finish();
}

/// SIGTERM to the real binary: new connections are refused at once, a transaction already
/// open commits, the idle session is told 57P01, and the process exits 0 by itself.
#[tokio::test]
async fn sigterm_drains_then_exits() {
    let mut s = Setup::new("proxy_sigterm").await;
    s.db.client()
        .batch_execute("CREATE TABLE drained (v int)")
        .await
        .expect("create the table");
    let Some(proxy) = s.proxy.as_ref() else {
        return; // TANDEM_CLIENTS_DIRECT: no proxy to stop.
    };
    let tcp = s.db.tcp_config();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&s.target.host)
        .port(proxy.port())
        .user(&s.target.user)
        .dbname(&s.target.dbname)
        .password(tcp.get_password().expect("the test server's password"));
    let connect = |config: tokio_postgres::Config| async move {
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect through the proxy");
        tokio::spawn(conn);
        client
    };
    let busy = connect(config.clone()).await;
    let idle = connect(config.clone()).await;
    busy.batch_execute("BEGIN; INSERT INTO drained VALUES (1)")
        .await
        .expect("open a transaction");

    let mut proxy = s.proxy.take().expect("the proxy");
    let stopper = std::thread::spawn(move || {
        let status = proxy.terminate(Duration::from_secs(20));
        (proxy, status)
    });
    // Draining: a new connection is refused.
    let start = Instant::now();
    loop {
        match config.connect(tokio_postgres::NoTls).await {
            Err(_) => break,
            Ok((c, conn)) => {
                drop(c);
                drop(conn);
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the proxy still accepts connections 10 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // The open transaction goes on and commits.
    busy.batch_execute("INSERT INTO drained VALUES (2); COMMIT")
        .await
        .expect("the transaction open at SIGTERM commits");
    let (_proxy, status) = stopper.join().expect("the stopper thread");
    let status = status.expect("the proxy exits within 20 s of SIGTERM");
    assert!(status.success(), "the proxy exited with {status}");
    let n: i64 =
        s.db.client()
            .query_one("SELECT count(*) FROM drained", &[])
            .await
            .expect("count")
            .get(0);
    assert_eq!(n, 2, "both rows of the drained transaction are there");
    // The idle session was closed by the proxy, with a reason.
    let e = idle
        .simple_query("SELECT 1")
        .await
        .expect_err("the idle session was closed");
    assert!(idle.is_closed(), "{e}");
}
