//! Running `tandem proxy` in a deployment: `--check-config` checks the settings and the
//! upstream without serving, and `/healthz` on the metrics address says whether the proxy is
//! ready (its control connection to the upstream is up) or not (down, or draining).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fixtures::pg::TestDb;
use tests::proxy::{config_file, free_port, tcp_endpoint, Proxy};
use tests::{tandem, Run};

/// `tandem proxy --check-config` against `upstream` with `config`, listening (it must not)
/// on `port`.
fn check(upstream: &str, config: &std::path::Path, port: u16) -> Run {
    let listen = format!("127.0.0.1:{port}");
    let config = config.display().to_string();
    tandem(&[
        "proxy",
        "--listen",
        &listen,
        "--upstream",
        upstream,
        "--config",
        &config,
        "--check-config",
    ])
}

async fn installed(db: &TestDb) {
    let mut c = db.connect().await;
    engine::state::install(&mut c).await.expect("install");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_says_what_the_proxy_needs_and_serves_nothing() {
    let db = TestDb::new("proxy_check_config").await;
    let (endpoint, password) = tcp_endpoint(&db);
    let (_dir, config) = config_file(&password, "mirror_sample = 0.05");
    let port = free_port();

    // Before tandem's bookkeeping exists: the proxy could serve, passing traffic through.
    let run = check(&endpoint.url(), &config, port);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("answers (PostgreSQL 15")
            && run.stdout.contains("not installed")
            && run.stdout.contains("can serve"),
        "{}",
        run.stdout
    );

    installed(&db).await;
    let run = check(&endpoint.url(), &config, port);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("bookkeeping: version")
            && run
                .stdout
                .contains("may register, take holds and record dual reads"),
        "{}",
        run.stdout
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "--check-config served on {port}"
    );

    // A settings problem: exit 64, saying which setting.
    let (_bad_dir, bad) = config_file(&password, "mirror_sample = 2");
    let run = check(&endpoint.url(), &bad, port);
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(run.stderr.contains("mirror_sample"), "{}", run.stderr);

    // The upstream is not there: exit 69, saying what to look at.
    let nobody = endpoint.with_port(free_port());
    let run = check(&nobody.url(), &config, port);
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot reach the upstream") && run.stderr.contains("pg_hba.conf"),
        "{}",
        run.stderr
    );

    // A user without tandem's rights: exit 69, naming the table and the rights.
    db.client()
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE tandem_check_stranger LOGIN PASSWORD 'stranger-pw'; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;",
        )
        .await
        .unwrap();
    let stranger = tests::proxy::Endpoint {
        user: "tandem_check_stranger".into(),
        ..endpoint.clone()
    };
    let (_s_dir, s_config) = config_file("stranger-pw", "");
    let run = check(&stranger.url(), &s_config, port);
    assert_eq!(run.code, 69, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("tandem_check_stranger has not the rights of tandem's role"),
        "{}",
        run.stderr
    );
    // With the schema, but not every table the proxy writes: named, with the rights.
    db.client()
        .batch_execute(
            "GRANT USAGE ON SCHEMA tandem TO tandem_check_stranger;
             GRANT SELECT ON ALL TABLES IN SCHEMA tandem TO tandem_check_stranger;",
        )
        .await
        .unwrap();
    let run = check(&stranger.url(), &s_config, port);
    assert_eq!(run.code, 69, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("tandem_check_stranger has not INSERT, UPDATE, DELETE on tandem.proxies"),
        "{}",
        run.stderr
    );
}

/// `GET path` on `addr`: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics address");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: tandem\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// Poll `/healthz` until it answers `code`, or fail with what it said.
fn healthz_becomes(addr: &str, code: u16) -> String {
    let start = Instant::now();
    loop {
        let (got, body) = get(addr, "/healthz");
        if got == code {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/healthz stayed {got} ({body}), waiting for {code}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ready_while_the_control_connection_is_up() {
    let db = TestDb::new("proxy_healthz").await;
    installed(&db).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let proxy = Proxy::for_db_with(&db, "", &["--metrics", &metrics]);
    let body = tokio::task::spawn_blocking({
        let metrics = metrics.clone();
        move || healthz_becomes(&metrics, 200)
    })
    .await
    .unwrap();
    assert!(body.contains("registered with tandem"), "{body}");
    let (code, page) = get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert!(page.contains("tandem_proxy_control_state 1"), "{page}");
    drop(proxy);

    // An upstream that does not answer: the proxy listens, but is not ready.
    let (endpoint, _) = tcp_endpoint(&db);
    let gone = endpoint.with_port(free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let _proxy = Proxy::start_with(&gone.url(), &["--metrics", &metrics], &[]);
    let body = tokio::task::spawn_blocking({
        let metrics = metrics.clone();
        move || healthz_becomes(&metrics, 503)
    })
    .await
    .unwrap();
    assert!(
        body.contains("control connection to the upstream is down"),
        "{body}"
    );
    assert!(get(&metrics, "/metrics")
        .1
        .contains("tandem_proxy_control_state 0"));
}

/// SIGTERM with a transaction open: while the session drains, `/healthz` says not ready
/// (503, shutting down), so a load balancer sends no new client there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_not_ready_while_sessions_drain() {
    let db = TestDb::new("proxy_healthz_drain").await;
    installed(&db).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut proxy = Proxy::for_db_with(&db, "", &["--metrics", &metrics]);
    tokio::task::spawn_blocking({
        let metrics = metrics.clone();
        move || healthz_becomes(&metrics, 200)
    })
    .await
    .unwrap();
    let (endpoint, password) = tcp_endpoint(&db);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&endpoint.host)
        .port(proxy.port())
        .user(&endpoint.user)
        .dbname(&endpoint.dbname)
        .password(password);
    let (busy, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect through the proxy");
    tokio::spawn(conn);
    busy.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let stopper = std::thread::spawn(move || {
        let status = proxy.terminate(Duration::from_secs(20));
        (proxy, status)
    });
    let body = tokio::task::spawn_blocking({
        let metrics = metrics.clone();
        move || healthz_becomes(&metrics, 503)
    })
    .await
    .unwrap();
    assert!(body.contains("shutting down"), "{body}");
    busy.batch_execute("COMMIT").await.unwrap();
    let (_proxy, status) = stopper.join().unwrap();
    assert!(status.expect("exits after the drain").success());
}

/// Connect through `proxy` as the test server's user.
async fn through(
    db: &TestDb,
    proxy: &Proxy,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (endpoint, password) = tcp_endpoint(db);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&endpoint.host)
        .port(proxy.port())
        .user(&endpoint.user)
        .dbname(&endpoint.dbname)
        .password(password);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// The proxy's config file with `settings` after its password_file line.
fn rewrite(proxy: &Proxy, settings: &str) {
    let path = proxy.config_path();
    let text = fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap().to_string();
    fs::write(&path, format!("{first}\n{settings}\n")).unwrap();
}

/// Wait until the proxy's log says `text`.
async fn logged(proxy: &Proxy, text: &str) {
    let start = Instant::now();
    while !proxy.stderr().contains(text) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the proxy never logged {text:?}:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGHUP reads the settings again without dropping a session: a higher `max_connections`
/// lets the next client in while the open ones go on; a file that is not valid changes
/// nothing; a setting read only at start is reported as waiting for a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_settings_and_keeps_every_session() {
    let db = TestDb::new("proxy_sighup").await;
    let proxy = Proxy::for_db_with(&db, "max_connections = 2", &[]);
    let first = through(&db, &proxy).await.expect("first client");
    let second = through(&db, &proxy).await.expect("second client");
    let refused = through(&db, &proxy)
        .await
        .expect_err("max_connections is 2");
    assert!(
        refused.to_string().contains("53300")
            || refused
                .as_db_error()
                .is_some_and(|e| e.message().contains("max_connections (2)")),
        "{refused}"
    );

    rewrite(&proxy, "max_connections = 5");
    proxy.hangup();
    logged(&proxy, "settings reloaded").await;
    let third = through(&db, &proxy)
        .await
        .expect("a third client after the reload");
    for c in [&first, &second, &third] {
        c.simple_query("SELECT 1")
            .await
            .expect("every session goes on across the reload");
    }

    rewrite(&proxy, "max_connections = 5\nmirror_sample = 2");
    proxy.hangup();
    logged(&proxy, "reload refused").await;
    let fourth = through(&db, &proxy).await.expect("still serving, still 5");
    fourth.simple_query("SELECT 1").await.unwrap();

    rewrite(&proxy, "max_connections = 5\nworker_threads = 7");
    proxy.hangup();
    logged(
        &proxy,
        "worker_threads changed: it takes effect when the proxy restarts",
    )
    .await;
    first.simple_query("SELECT 1").await.unwrap();
}
