//! TLS to the PostgreSQL server, against a real PostgreSQL 15 that takes TLS connections only
//! (`pg_hba.conf` holds `hostssl` lines alone; one with `cert` authentication), with a test
//! CA, a server certificate for `localhost`/127.0.0.1 and a client certificate made by rcgen:
//! each sslmode's promise through `pgtls::connect` (what the CLI, the engine and the proxy's
//! own connections use), then `plan`, `submit`, `apply` and `tandem proxy` through the real
//! binary with `sslmode=verify-full`. And against the plain test server: `prefer`'s fallback
//! is logged, `require` refuses it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fixtures::pg::Cluster;
use pgtls::Endpoint;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tests::Run;

/// The hostssl-only server and the client side's files.
struct Server {
    cluster: Cluster,
    /// The superuser's password (scram-sha-256 over TCP).
    password: String,
    /// Client-side files: `ca.pem`, `other-ca.pem`, `client.crt`, `client.key` (0600),
    /// `server.crt`/`server.key` (for the proxy's own TLS), `pgpass`.
    /// Beside the cluster's data directory, so that it goes with the cluster (the server
    /// lives in a static: the reaper removes both when the test process ends).
    dir: PathBuf,
}

/// The role the client certificate (CN) logs in as, with `cert` authentication.
const CERT_ROLE: &str = "tls_cert_user";

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (p.self_signed(&key).expect("CA certificate"), key)
}

fn leaf(
    names: &[&str],
    cn: &str,
    issuer: &(rcgen::Certificate, KeyPair),
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    (
        p.signed_by(&key, &issuer.0, &issuer.1)
            .expect("signed certificate"),
        key,
    )
}

fn write(path: &Path, contents: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("write a test file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Server {
    fn start() -> Server {
        let cluster = Cluster::start_throwaway().expect("a throwaway PostgreSQL 15");
        let password = cluster
            .tcp_config("postgres")
            .get_password()
            .map(|p| String::from_utf8(p.to_vec()).expect("utf-8 password"))
            .expect("the cluster's password");
        let dir = cluster
            .data_dir()
            .parent()
            .expect("the cluster's directory")
            .join("client");
        std::fs::create_dir(&dir).expect("a directory for the client's files");
        let ca = ca("tandem test CA");
        let other = ca_other();
        let (server_cert, server_key) = leaf(&["localhost", "127.0.0.1"], "localhost", &ca);
        let (client_cert, client_key) = leaf(&[], CERT_ROLE, &ca);
        write(&dir.join("ca.pem"), &ca.0.pem(), 0o644);
        write(&dir.join("other-ca.pem"), &other, 0o644);
        write(&dir.join("client.crt"), &client_cert.pem(), 0o644);
        write(&dir.join("client.key"), &client_key.serialize_pem(), 0o600);
        write(&dir.join("server.crt"), &server_cert.pem(), 0o644);
        write(&dir.join("server.key"), &server_key.serialize_pem(), 0o600);
        write(
            &dir.join("pgpass"),
            &format!(
                "localhost:{port}:*:postgres:{password}\n127.0.0.1:{port}:*:postgres:{password}\n",
                port = cluster.port()
            ),
            0o600,
        );

        // The server's files, owned by postgres, mode 0600.
        let data = cluster.data_dir().to_path_buf();
        let install = cluster.install();
        for (name, pem) in [
            ("tls_server.crt", server_cert.pem()),
            ("tls_server.key", server_key.serialize_pem()),
            ("tls_root.crt", ca.0.pem()),
        ] {
            devdb::cluster::write_private_file(install, &data.join(name), &pem)
                .expect("server TLS file");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Over the Unix socket (trust) while pg_hba.conf still allows it.
            let (client, conn) = cluster
                .config("postgres")
                .connect(tokio_postgres::NoTls)
                .await
                .expect("the harness connects over the Unix socket");
            tokio::spawn(conn);
            for sql in [
                format!("CREATE ROLE {CERT_ROLE} LOGIN"),
                "CREATE DATABASE app".to_string(),
                "CREATE DATABASE proxydb".to_string(),
                "ALTER SYSTEM SET ssl = on".to_string(),
                format!(
                    "ALTER SYSTEM SET ssl_cert_file = '{}'",
                    data.join("tls_server.crt").display()
                ),
                format!(
                    "ALTER SYSTEM SET ssl_key_file = '{}'",
                    data.join("tls_server.key").display()
                ),
                format!(
                    "ALTER SYSTEM SET ssl_ca_file = '{}'",
                    data.join("tls_root.crt").display()
                ),
            ] {
                client
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            // TLS connections only: no `local`, no `host` line.
            devdb::cluster::write_private_file(
                install,
                &data.join("pg_hba.conf"),
                &format!(
                    "hostssl all {CERT_ROLE} 127.0.0.1/32 cert\n\
                     hostssl all all 127.0.0.1/32 scram-sha-256\n"
                ),
            )
            .expect("pg_hba.conf");
            client
                .batch_execute("SELECT pg_reload_conf()")
                .await
                .expect("reload");
        });
        let server = Server {
            cluster,
            password,
            dir,
        };
        // The reload is asynchronous: wait until a verified TLS session works.
        let start = Instant::now();
        loop {
            let ep = server.endpoint(
                "postgres",
                "sslmode=verify-full",
                &["sslrootcert", "ca.pem"],
            );
            match rt.block_on(pgtls::connect(&ep)) {
                Ok(_) => break,
                Err(e) if start.elapsed() > Duration::from_secs(15) => panic!(
                    "the server never took TLS connections ({e}); see {}",
                    server.cluster.layout().log.display()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        server
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `host=localhost port=... user=postgres dbname=DB password=... EXTRA`, with `file` keys
    /// (key, file name) pointing into the client's directory. Parsed by pgtls, with no PG*
    /// environment.
    fn endpoint(&self, db: &str, extra: &str, files: &[&str]) -> Endpoint {
        let mut text = format!(
            "host=localhost port={} user=postgres dbname={db} password='{}' connect_timeout=10 {extra}",
            self.cluster.port(),
            self.password
        );
        for pair in files.chunks(2) {
            text.push_str(&format!(" {}='{}'", pair[0], self.file(pair[1]).display()));
        }
        Endpoint::parse_with_env(&text, |_| None).expect("a valid connection string")
    }

    fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
            self.cluster.port(),
            self.file("ca.pem").display()
        )
    }
}

/// A CA that signed nothing the server holds.
fn ca_other() -> String {
    ca("another CA").0.pem()
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

async fn tls_server() -> &'static Server {
    tokio::task::spawn_blocking(server)
        .await
        .expect("the TLS server starts")
}

/// Connect, and say whether the server sees the session as TLS, and as whom.
async fn session(ep: &Endpoint) -> Result<(bool, String), String> {
    let (client, conn) = pgtls::connect(ep).await.map_err(|e| {
        use std::error::Error;
        match (e.as_db_error(), e.source()) {
            (Some(db), _) => format!(
                "{}: {} (hint: {})",
                db.code().code(),
                db.message(),
                db.hint().unwrap_or("")
            ),
            (None, Some(s)) => format!("{e} / {s}"),
            (None, None) => e.to_string(),
        }
    })?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn verify_full_accepts_the_servers_certificate() {
    let s = tls_server().await;
    let ep = s.endpoint(
        "postgres",
        "sslmode=verify-full",
        &["sslrootcert", "ca.pem"],
    );
    assert_eq!(session(&ep).await, Ok((true, "postgres".to_string())));
    // The same through a URL, percent-encoded path and all.
    let ep = Endpoint::parse_with_env(&s.url("postgres"), |_| None).expect("URL");
    assert_eq!(ep.tls.mode, pgtls::SslMode::VerifyFull);
    let mut ep = ep;
    ep.password(s.password.as_str());
    assert_eq!(session(&ep).await.map(|(ssl, _)| ssl), Ok(true));
}

#[tokio::test]
async fn verify_full_refuses_a_name_not_in_the_certificate_and_verify_ca_accepts_it() {
    let s = tls_server().await;
    // Reach 127.0.0.1 under a name the certificate does not hold.
    let wrong = |mode: &str| {
        let mut ep = s.endpoint("postgres", mode, &["sslrootcert", "ca.pem"]);
        ep.pg = {
            let mut pg = tokio_postgres::Config::new();
            pg.host("db.wrong.example")
                .hostaddr("127.0.0.1".parse().expect("ip"))
                .port(s.cluster.port())
                .user("postgres")
                .dbname("postgres")
                .password(s.password.as_str());
            pg
        };
        ep
    };
    let e = session(&wrong("sslmode=verify-full"))
        .await
        .expect_err("verify-full checks the name");
    assert!(
        e.contains("not valid for the host name \"db.wrong.example\"") && e.contains("verify-ca"),
        "{e}"
    );
    assert_eq!(
        session(&wrong("sslmode=verify-ca")).await,
        Ok((true, "postgres".to_string()))
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let s = tls_server().await;
    for mode in [
        "sslmode=verify-ca",
        "sslmode=verify-full",
        "sslmode=require",
    ] {
        let ep = s.endpoint("postgres", mode, &["sslrootcert", "other-ca.pem"]);
        let e = session(&ep).await.expect_err("the wrong CA");
        assert!(
            e.contains("not signed by sslrootcert") && e.contains("other-ca.pem"),
            "{mode}: {e}"
        );
    }
    // require without a root encrypts without checking, as libpq does.
    let ep = s.endpoint("postgres", "sslmode=require", &[]);
    assert_eq!(session(&ep).await.map(|(ssl, _)| ssl), Ok(true));
}

#[tokio::test]
async fn disable_is_refused_by_a_hostssl_only_server_and_prefer_and_allow_use_tls() {
    let s = tls_server().await;
    let e = session(&s.endpoint("postgres", "sslmode=disable", &[]))
        .await
        .expect_err("hostssl only");
    assert!(e.starts_with("28000") && e.contains("no encryption"), "{e}");
    // prefer: the server offers TLS, so TLS.
    assert_eq!(
        session(&s.endpoint("postgres", "", &[]))
            .await
            .map(|(ssl, _)| ssl),
        Ok(true)
    );
    // allow: plain first, refused, then TLS.
    assert_eq!(
        session(&s.endpoint("postgres", "sslmode=allow", &[]))
            .await
            .map(|(ssl, _)| ssl),
        Ok(true)
    );
}

#[tokio::test]
async fn a_client_certificate_authenticates() {
    let s = tls_server().await;
    let as_role = |extra: &[&str]| {
        let mut files = vec!["sslrootcert", "ca.pem"];
        files.extend_from_slice(extra);
        let mut ep = s.endpoint("postgres", "sslmode=verify-full", &files);
        ep.user(CERT_ROLE);
        ep
    };
    assert_eq!(
        session(&as_role(&["sslcert", "client.crt", "sslkey", "client.key"])).await,
        Ok((true, CERT_ROLE.to_string()))
    );
    // Without the certificate the `cert` line turns the role away.
    let e = session(&as_role(&[])).await.expect_err("no certificate");
    assert!(e.starts_with("28000"), "{e}");
    // A key others can read is refused before any connection, as libpq refuses it.
    let open = s.file("client-open.key");
    std::fs::copy(s.file("client.key"), &open).expect("copy the key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let ep = as_role(&["sslcert", "client.crt", "sslkey", "client-open.key"]);
    let e = ep.check_files().expect_err("0644 key").to_string();
    assert!(
        e.contains("chmod 600") && e.contains("client-open.key"),
        "{e}"
    );
}

/// `tandem ARGS` with the password file and no PG* variable from outside.
fn tandem(s: &Server, args: &[&str]) -> Run {
    let out = command(s, args).output().expect("tandem runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn command(s: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(tests::binary());
    cmd.args(args).current_dir(tests::root());
    for var in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSSLCERT",
        "PGSSLKEY",
        "TANDEM_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGPASSFILE", s.file("pgpass"));
    cmd
}

#[tokio::test]
async fn plan_submit_apply_over_verify_full() {
    let s = tls_server().await;
    let direct = s.endpoint("app", "sslmode=verify-full", &["sslrootcert", "ca.pem"]);
    let (client, conn) = pgtls::connect(&direct).await.expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE tls_items (id integer PRIMARY KEY, n integer);
             INSERT INTO tls_items SELECT g, g FROM generate_series(1, 1000) g;",
        )
        .await
        .expect("fixture");
    let url = s.url("app");
    let plan = s.file("plan.json");
    let run = tandem(
        s,
        &[
            "--database-url",
            &url,
            "plan",
            "--in-place-below",
            "0",
            "--sql",
            "ALTER TABLE tls_items ALTER id TYPE bigint",
            "-o",
            plan.to_str().expect("utf-8"),
        ],
    );
    assert!(plan.exists(), "no plan: {run:?}");
    let run = tandem(
        s,
        &[
            "--database-url",
            &url,
            "submit",
            plan.to_str().expect("utf-8"),
        ],
    )
    .expect(0);
    let id = run.stdout.trim().to_string();
    tandem(s, &["--database-url", &url, "apply", &id, "--yes"]).expect(0);
    let row = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod), (SELECT count(*) FROM tls_items)
             FROM pg_attribute WHERE attrelid = 'tls_items'::regclass AND attname = 'id'",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("bigint".to_string(), 1000)
    );
    // status reads the migration back over the same settings (the server takes nothing but
    // TLS, so every session above was TLS).
    let run = tandem(s, &["--database-url", &url, "status", &id]).expect(0);
    assert!(run.stdout.contains("tls_items"), "{}", run.stdout);

    // The wrong CA: exit 69 and what to do.
    let wrong = format!(
        "postgresql://postgres@localhost:{}/app?sslmode=verify-full&sslrootcert={}",
        s.cluster.port(),
        s.file("other-ca.pem").display()
    );
    let run = tandem(s, &["--database-url", &wrong, "status"]).expect(69);
    assert!(
        run.stderr.contains("not signed by sslrootcert") && run.stderr.contains("sslmode=require"),
        "{}",
        run.stderr
    );
    // A plain session to the hostssl-only server: exit 69, and the advice to use TLS.
    let plain = format!(
        "postgresql://postgres@localhost:{}/app?sslmode=disable",
        s.cluster.port()
    );
    let run = tandem(s, &["--database-url", &plain, "status"]).expect(69);
    assert!(run.stderr.contains("sslmode=verify-full"), "{}", run.stderr);
    // The PG* environment: PGSSLMODE and PGSSLROOTCERT with a URL that has neither.
    let bare = format!("postgresql://postgres@localhost:{}/app", s.cluster.port());
    let out = command(s, &["--database-url", &bare, "status", &id])
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", s.file("ca.pem"))
        .output()
        .expect("tandem runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `tandem proxy` child, killed on drop.
struct ProxyProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_proxy(s: &Server, upstream: &str, config: &str, name: &str) -> ProxyProcess {
    let port = free_port();
    let config_path = s.file(&format!("{name}.toml"));
    write(&config_path, config, 0o600);
    let log = s.file(&format!("{name}.log"));
    let child = command(
        s,
        &[
            "proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            upstream,
            "--config",
            config_path.to_str().expect("utf-8"),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).expect("log file"))
    .spawn()
    .expect("tandem proxy starts");
    ProxyProcess { child, port, log }
}

#[tokio::test]
async fn proxy_relays_to_a_hostssl_only_server_over_tls() {
    let s = tls_server().await;
    // tandem's bookkeeping, so that the proxy's control connection registers.
    let setup = s.endpoint("proxydb", "sslmode=verify-full", &["sslrootcert", "ca.pem"]);
    let (mut admin, conn) = pgtls::connect(&setup).await.expect("connect to proxydb");
    tokio::spawn(conn);
    engine::state::install(&mut admin)
        .await
        .expect("install tandem's bookkeeping");
    write(&s.file("proxy-password"), &s.password, 0o600);
    let config = format!(
        "password_file = '{}'\ntls_cert = '{}'\ntls_key = '{}'\nmirror_sample = 0.0\n",
        s.file("proxy-password").display(),
        s.file("server.crt").display(),
        s.file("server.key").display()
    );
    let mut proxy = start_proxy(s, &s.url("proxydb"), &config, "proxy");
    let via = |tls: &str| {
        let mut ep = Endpoint::parse_with_env(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=proxydb connect_timeout=10 {tls}",
                proxy.port
            ),
            |_| None,
        )
        .expect("client settings");
        ep.password(s.password.as_str());
        ep
    };
    // Plain to the proxy (loopback) and TLS to it: the server sees a TLS session each time.
    let start = Instant::now();
    loop {
        match session(&via("sslmode=disable")).await {
            Ok(r) => {
                assert_eq!(r, (true, "postgres".to_string()));
                break;
            }
            Err(e) => {
                if let Some(status) = proxy.child.try_wait().expect("poll the proxy") {
                    panic!(
                        "tandem proxy exited ({status}): {}",
                        std::fs::read_to_string(&proxy.log).unwrap_or_default()
                    );
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no session through the proxy: {e}\n{}",
                    std::fs::read_to_string(&proxy.log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // TLS to the proxy too. SCRAM's channel binding cannot cross the proxy (two TLS
    // sessions), so a client that can bind is told to turn it off; without it, it logs in.
    let client_tls = |binding: &str| {
        via(&format!(
            "sslmode=verify-full sslrootcert='{}' channel_binding={binding}",
            s.file("ca.pem").display()
        ))
    };
    let e = session(&client_tls("prefer"))
        .await
        .expect_err("a client that binds sends `y`");
    assert!(e.contains("channel_binding=disable"), "{e}");
    assert_eq!(
        session(&client_tls("disable")).await,
        Ok((true, "postgres".to_string()))
    );
    // The proxy's own control connection: registered in tandem.proxies, over TLS.
    let start = Instant::now();
    loop {
        let row = admin
            .query_opt(
                "SELECT s.ssl FROM tandem.proxies p
                 JOIN pg_stat_activity a ON a.application_name = 'tandem proxy control ' || p.id
                 JOIN pg_stat_ssl s ON s.pid = a.pid
                 WHERE p.heartbeat_at > now() - interval '5 seconds'",
                &[],
            )
            .await
            .expect("read tandem.proxies");
        if let Some(row) = row {
            assert!(row.get::<_, bool>(0), "the control connection is not TLS");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the proxy never registered\n{}",
            std::fs::read_to_string(&proxy.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(proxy);

    // An upstream that would carry TLS clients over the network in plain text: refused at
    // start, with the reason.
    let mut bad = start_proxy(
        s,
        "postgres://postgres@db.example.com:5432/app?sslmode=prefer",
        &config,
        "proxy-bad",
    );
    let status = bad.child.wait().expect("the proxy exits");
    let log = std::fs::read_to_string(&bad.log).unwrap_or_default();
    assert_eq!(status.code(), Some(64), "{log}");
    assert!(
        log.contains("sslmode=prefer") && log.contains("sslmode=verify-full"),
        "{log}"
    );
}

#[tokio::test]
async fn prefer_says_when_it_falls_back_to_plain_text_and_require_refuses_it() {
    // The shared test server has no TLS.
    let db = fixtures::pg::TestDb::new("tls_prefer_fallback").await;
    let tcp = db.tcp_config();
    let port = tcp.get_ports()[0];
    let dir = tempfile::tempdir().expect("a directory");
    let pgpass = dir.path().join("pgpass");
    write(
        &pgpass,
        &format!(
            "127.0.0.1:{port}:*:{}:{}\n",
            tcp.get_user().expect("a user"),
            String::from_utf8_lossy(tcp.get_password().expect("a password"))
        ),
        0o600,
    );
    let url = |mode: &str| {
        format!(
            "postgresql://{}@127.0.0.1:{port}/{}?sslmode={mode}",
            tcp.get_user().expect("a user"),
            db.name()
        )
    };
    let run = |mode: &str| {
        let out = Command::new(tests::binary())
            .args(["--database-url", &url(mode), "status"])
            .current_dir(tests::root())
            .env_remove("TANDEM_LOG")
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT")
            .env("PGPASSFILE", &pgpass)
            .output()
            .expect("tandem runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run("prefer");
    assert_ne!(code, Some(69), "prefer connects: {stderr}");
    assert!(
        stderr.contains("connected without TLS") && stderr.contains("sslmode=require"),
        "{stderr}"
    );
    let (code, stderr) = run("disable");
    assert!(!stderr.contains("connected without TLS"), "{stderr}");
    assert_ne!(code, Some(69), "{stderr}");
    let (code, stderr) = run("require");
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.contains("does not support TLS") && stderr.contains("PGSSLMODE"),
        "{stderr}"
    );
}
