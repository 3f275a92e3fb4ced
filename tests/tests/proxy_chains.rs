//! `tandem proxy` with the application's pgbouncer, both ways round, through a cutover and a
//! rollback under `pgbench`:
//!
//! - pgbouncer → tandem proxy → PostgreSQL: pgbouncer's server connections are the proxy's
//!   clients. Transaction mode with `pgbench -M extended` (pgbouncer 1.18, Debian bookworm's,
//!   keeps no prepared statements in transaction mode: `max_prepared_statements` came in
//!   1.21), then session mode with `-M prepared`, whose statements change result type at the
//!   swap and are re-prepared by the proxy.
//! - tandem proxy → pgbouncer (transaction mode) → PostgreSQL: clients' sessions go through
//!   pgbouncer, tandem's own control and dual-read connections straight to PostgreSQL
//!   (`control_upstream`), since a transaction-mode pooler carries neither LISTEN nor a
//!   session's settings.
//!
//! - Both again with pgbouncer 1.24 (Debian trixie's, run from a root filesystem built with
//!   debootstrap, since bookworm has 1.18), transaction mode with `max_prepared_statements`
//!   and `pgbench -M prepared`: the pooler keeps its clients' prepared statements on its
//!   server connections and prepares them under its own names. Behind the proxy, a cutover
//!   finalized, then new sessions after pgbouncer's `RECONNECT` (README: the limit).
//!
//! Each run: no failed client transaction, and the proxy acknowledged the holds.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fixtures::pg::TestDb;
use tests::migrate::{apply, on, plan_sql, scratch_dir, submit};
use tests::proxy::{config_file, free_port, tcp_endpoint, Endpoint, PassFile, Proxy};

fn pg_bin(program: &str) -> PathBuf {
    let dir = std::env::var_os("TANDEM_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    dir.join(program)
}

fn pgbouncer_bin() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("pgbouncer is missing: apt-get install -y pgbouncer (./run test installs it)")
}

/// Which pgbouncer runs.
#[derive(Clone, Copy)]
enum Bouncer {
    /// The host's (Debian bookworm: 1.18).
    Host,
    /// 1.24, from Debian trixie, in a root filesystem of its own ([`trixie_root`]).
    Trixie,
}

/// A root filesystem of Debian trixie with pgbouncer 1.24, built once with debootstrap (about
/// 35 s, 290 MB) into the temporary directory and kept for later runs. Builds by concurrent
/// tests are serialized by a lock file; a build is moved into place only once complete.
fn trixie_root() -> PathBuf {
    use nix::fcntl::{Flock, FlockArg};
    let root = std::env::temp_dir().join("tandem-tests-pgbouncer-trixie");
    let lock = fs::File::create(std::env::temp_dir().join("tandem-tests-pgbouncer-trixie.lock"))
        .expect("the build lock");
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("lock the build");
    if root.join("usr/sbin/pgbouncer").is_file() {
        return root;
    }
    let building = root.with_extension("building");
    let _ = fs::remove_dir_all(&building);
    let mirror = std::env::var("TANDEM_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=pgbouncer", "trixie"])
        .arg(&building)
        .arg(&mirror)
        .output()
        .expect("debootstrap is missing: apt-get install -y debootstrap (./run test installs it)");
    assert!(
        out.status.success(),
        "debootstrap of trixie with pgbouncer from {mirror} failed (it needs root and the mirror):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    fs::rename(&building, &root).expect("the built root filesystem moves into place");
    root
}

/// A pgbouncer in front of `server` (host, port), for database `db`, logging in as `user`
/// with `password`, in pool mode `mode`, with `extra` lines for its `[pgbouncer]` section.
/// It refuses to run as root: the host's runs as the `postgres` user, trixie's as `nobody`
/// in its root filesystem (whose network is the host's).
struct Pgbouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Pgbouncer {
    fn start(
        bouncer: Bouncer,
        server: (&str, u16),
        (db, user, password): (&str, &str, &str),
        mode: &str,
        extra: &str,
    ) -> Pgbouncer {
        let root = match bouncer {
            Bouncer::Host => None,
            Bouncer::Trixie => Some(trixie_root()),
        };
        let parent = root
            .as_ref()
            .map_or_else(std::env::temp_dir, |r| r.join("tmp"));
        let dir = tempfile::Builder::new()
            .prefix("tandem-pgbouncer-")
            .tempdir_in(parent)
            .unwrap();
        // The directory as pgbouncer sees it.
        let seen = match &root {
            None => dir.path().to_path_buf(),
            Some(r) => Path::new("/").join(dir.path().strip_prefix(r).unwrap()),
        };
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]
{db} = host={host} port={server_port} dbname={db} user={user} password={password}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {mode}
max_client_conn = 200
default_pool_size = 6
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
admin_users = {user}
logfile = {log}
{extra}
",
                host = server.0,
                server_port = server.1,
                log = seen.join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let (uid, gid) = match &root {
            None => {
                let postgres = nix::unistd::User::from_name("postgres")
                    .unwrap()
                    .expect("a postgres system user");
                (postgres.uid, postgres.gid)
            }
            Some(_) => (
                nix::unistd::Uid::from_raw(65534),
                nix::unistd::Gid::from_raw(65534),
            ),
        };
        nix::unistd::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        nix::unistd::chown(&ini, Some(uid), Some(gid)).unwrap();
        let mut cmd = match &root {
            None => {
                let mut cmd = Command::new("setpriv");
                cmd.args([
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                ])
                .arg(pgbouncer_bin());
                cmd
            }
            Some(r) => {
                let mut cmd = Command::new("chroot");
                cmd.arg(format!("--userspec={uid}:{gid}"))
                    .arg(r)
                    .arg("/usr/sbin/pgbouncer");
                cmd
            }
        };
        let child = cmd
            .arg(seen.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen on {port}: {}",
                fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Pgbouncer { child, port, dir }
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "pgbouncer's log:\n{}",
                fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
            );
        }
    }
}

/// `pgbench` against `at` (host, port) as `endpoint`'s user, with the password file and no
/// other libpq setting from outside; the options and the database follow.
fn pgbench_at(at: (&str, u16), endpoint: &Endpoint, passfile: &PassFile) -> Command {
    let mut cmd = Command::new(pg_bin("pgbench"));
    cmd.env_clear().env("PGPASSFILE", passfile.path()).args([
        "-h",
        at.0,
        "-p",
        &at.1.to_string(),
        "-U",
        &endpoint.user,
    ]);
    cmd
}

/// `pgbench` TPC-B against `at` for `secs`, `mode` (-M), 4 clients; [`finished`] checks it.
fn pgbench(
    at: (&str, u16),
    endpoint: &Endpoint,
    passfile: &PassFile,
    mode: &str,
    secs: u32,
) -> std::process::Child {
    pgbench_at(at, endpoint, passfile)
        .args([
            "-n",
            "-M",
            mode,
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            &secs.to_string(),
        ])
        .arg(&endpoint.dbname)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgbench starts")
}

fn finished(child: std::process::Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: pgbench failed:\n{text}");
    let processed = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(processed > 0, "{what}: no transaction ran:\n{text}");
    if let Some(failed) = text
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
    {
        assert!(
            failed.starts_with("0 "),
            "{what}: failed transactions:\n{text}"
        );
    }
    text
}

/// The bank, made straight on PostgreSQL.
fn init(endpoint: &Endpoint, passfile: &PassFile) {
    let out = pgbench_at((&endpoint.host, endpoint.port), endpoint, passfile)
        .args(["-i", "-s", "2", "-q", &endpoint.dbname])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gauge or counter of the proxy's metrics page.
fn metric(metrics: &str, name: &str) -> u64 {
    use std::io::Read;
    let mut s = TcpStream::connect(metrics).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("tandem_proxy_{name} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn holds_acked(metrics: &str) -> u64 {
    metric(metrics, "holds_acknowledged_total")
}

/// tandem's bookkeeping installed, then the proxy registered with it (else it looks again
/// only every 10 s, and the cutover would find no proxy to hold).
async fn registered(db: &TestDb, metrics: &str) {
    let mut c = db.connect().await;
    engine::state::install(&mut c).await.expect("install");
    let start = Instant::now();
    while metric(metrics, "control_state") != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the proxy did not register with tandem"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ALTER TABLE pgbench_accounts ALTER abalance TYPE {to}` through cutover, then rollback
/// (`rollback`) or finalize, while `load` runs; returns the load's output.
async fn migrate_under(
    url: &str,
    dir: &Path,
    load: std::process::Child,
    (to, rollback): (&str, bool),
    what: &str,
) -> String {
    let plan = dir.join(format!("{what}.json"));
    let run = plan_sql(
        url,
        &format!("ALTER TABLE pgbench_accounts ALTER abalance TYPE {to}"),
        &plan,
    );
    assert!(plan.exists(), "{}", run.stderr);
    let id = submit(url, &plan, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (url2, what2) = (url.to_string(), what.to_string());
    tokio::task::spawn_blocking(move || {
        apply(&url2, id, &[]).expect(0);
        if rollback {
            on(&url2, "rollback", id, &["--yes"]).expect(0);
        } else {
            on(&url2, "finalize", id, &["--yes"]).expect(0);
        }
        finished(load, &what2)
    })
    .await
    .unwrap()
}

/// The bank on a database of its own, and what a chain around it needs.
struct Bank {
    db: TestDb,
    endpoint: Endpoint,
    password: String,
    passfile: PassFile,
    url: String,
    dir: PathBuf,
}

impl Bank {
    async fn new(name: &str) -> Bank {
        let db = TestDb::new(name).await;
        let (endpoint, password) = tcp_endpoint(&db);
        let passfile = PassFile::new(&password);
        init(&endpoint, &passfile);
        let url = db.url();
        Bank {
            db,
            endpoint,
            password,
            passfile,
            url,
            dir: scratch_dir(name),
        }
    }

    /// A pgbouncer in front of `server`, for the bank's database and user.
    fn bouncer(&self, bouncer: Bouncer, server: (&str, u16), mode: &str, extra: &str) -> Pgbouncer {
        let e = &self.endpoint;
        Pgbouncer::start(
            bouncer,
            server,
            (&e.dbname, &e.user, &self.password),
            mode,
            extra,
        )
    }

    /// A tandem proxy straight on PostgreSQL, registered with tandem; and its metrics address.
    async fn proxy(&self) -> (Proxy, String) {
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut c = self.db.connect().await;
        engine::state::install(&mut c).await.expect("install");
        let proxy = Proxy::for_db_with(&self.db, "", &["--metrics", &metrics]);
        registered(&self.db, &metrics).await;
        (proxy, metrics)
    }

    /// A tandem proxy whose upstream is `bouncer`, its own connections straight to
    /// PostgreSQL (`control_upstream`), registered with tandem; its metrics address, and the
    /// directory of its configuration (kept while it runs).
    async fn proxy_through(&self, bouncer: &Pgbouncer) -> (Proxy, String, tempfile::TempDir) {
        let metrics = format!("127.0.0.1:{}", free_port());
        let (cfg_dir, config) = config_file(
            &self.password,
            &format!("control_upstream = \"{}\"", self.endpoint.url()),
        );
        let through_bouncer = self.endpoint.with_port(bouncer.port);
        let config_arg = config.display().to_string();
        let proxy = Proxy::start_with(
            &through_bouncer.url(),
            &["--config", &config_arg, "--metrics", &metrics],
            &[],
        );
        registered(&self.db, &metrics).await;
        (proxy, metrics, cfg_dir)
    }

    /// `pgbench` through `port` on 127.0.0.1 ([`pgbench`]).
    fn load(&self, port: u16, mode: &str, secs: u32) -> std::process::Child {
        pgbench(
            ("127.0.0.1", port),
            &self.endpoint,
            &self.passfile,
            mode,
            secs,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_in_front_of_the_proxy_through_cutover_and_rollback() {
    let bank = Bank::new("proxy_chain_front").await;
    let (proxy, metrics) = bank.proxy().await;

    // abalance: integer -> bigint, finalized; then bigint -> numeric and back (a prepared
    // `SELECT abalance` changes result type at each swap).
    for (mode, bench_mode, change) in [
        ("transaction", "extended", ("bigint", false)),
        ("session", "prepared", ("numeric", true)),
    ] {
        let bouncer = bank.bouncer(Bouncer::Host, ("127.0.0.1", proxy.port()), mode, "");
        let before = holds_acked(&metrics);
        let load = bank.load(bouncer.port, bench_mode, 10);
        let what = format!("pgbouncer ({mode}) -> tandem proxy, pgbench -M {bench_mode}");
        let out = migrate_under(&bank.url, &bank.dir, load, change, &format!("front_{mode}")).await;
        eprintln!("{what}:\n{out}");
        assert!(
            holds_acked(&metrics) > before,
            "{what}: the proxy acknowledged no hold"
        );
    }
    // (The prepared `SELECT abalance` changes result type at each swap of the session-mode
    // run: the proxy re-prepares its sessions' statements after each hold, or on the 0A000 a
    // statement meets first; which one happens is a race, and pgbench sees neither.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_in_front_of_pgbouncer_with_its_own_connections_straight_to_postgres() {
    let bank = Bank::new("proxy_chain_behind").await;
    let e = &bank.endpoint;
    let bouncer = bank.bouncer(Bouncer::Host, (&e.host, e.port), "transaction", "");
    let (proxy, metrics, _cfg_dir) = bank.proxy_through(&bouncer).await;
    let load = bank.load(proxy.port(), "extended", 10);
    let out = migrate_under(&bank.url, &bank.dir, load, ("bigint", true), "behind").await;
    eprintln!("tandem proxy -> pgbouncer (transaction):\n{out}");
    assert!(
        holds_acked(&metrics) > 0,
        "the proxy acknowledged no hold through control_upstream"
    );
}

/// What a pooler that keeps prepared statements in transaction mode needs.
const PREPARED: &str = "max_prepared_statements = 100";

/// pgbouncer prepares its clients' statements on the proxy's sessions under its own names;
/// the proxy re-prepares them after the swap and after the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_1_24_with_prepared_statements_in_front_of_the_proxy() {
    let bank = Bank::new("proxy_chain_front_124").await;
    let (proxy, metrics) = bank.proxy().await;
    let server = ("127.0.0.1", proxy.port());
    let bouncer = bank.bouncer(Bouncer::Trixie, server, "transaction", PREPARED);
    let load = bank.load(bouncer.port, "prepared", 10);
    let out = migrate_under(&bank.url, &bank.dir, load, ("bigint", true), "front_124").await;
    eprintln!(
        "pgbouncer 1.24 (transaction, {PREPARED}) -> tandem proxy, pgbench -M prepared:\n{out}"
    );
    assert!(holds_acked(&metrics) > 0, "the proxy acknowledged no hold");
}

/// The sessions open across the swap go on (the proxy prepares their statements again under a
/// new text, which pgbouncer prepares anew); sessions that prepare after it run clean once
/// pgbouncer's `RECONNECT` has cleared its server connections' statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_in_front_of_pgbouncer_1_24_with_prepared_statements() {
    let bank = Bank::new("proxy_chain_behind_124").await;
    let e = &bank.endpoint;
    let bouncer = bank.bouncer(Bouncer::Trixie, (&e.host, e.port), "transaction", PREPARED);
    let (proxy, metrics, _cfg_dir) = bank.proxy_through(&bouncer).await;
    let load = bank.load(proxy.port(), "prepared", 10);
    let out = migrate_under(&bank.url, &bank.dir, load, ("bigint", false), "behind_124").await;
    eprintln!(
        "tandem proxy -> pgbouncer 1.24 (transaction, {PREPARED}), pgbench -M prepared:\n{out}"
    );
    // A session that first prepares a statement after the swap sends its text as it is, and
    // the pooler may hold that text prepared, for the old shape, on a server connection: a
    // limit (README, "With pgbouncer"). pgbouncer's RECONNECT (its server connections are
    // closed once released) clears them; new sessions then run clean.
    let reconnect = Command::new(pg_bin("psql"))
        .env_clear()
        .env("PGPASSFILE", bank.passfile.path())
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &bouncer.port.to_string(),
            "-U",
            &e.user,
        ])
        .args(["-d", "pgbouncer", "-c", "RECONNECT"])
        .output()
        .unwrap();
    assert!(
        reconnect.status.success(),
        "RECONNECT on pgbouncer's console: {}",
        String::from_utf8_lossy(&reconnect.stderr)
    );
    let after = bank.load(proxy.port(), "prepared", 3);
    let out = finished(after, "new sessions after the swap and RECONNECT");
    eprintln!("new sessions after RECONNECT:\n{out}");
    assert!(
        holds_acked(&metrics) > 0,
        "the proxy acknowledged no hold through control_upstream"
    );
}
