//! Malformed and hostile clients on raw sockets: each is disconnected (told why with an
//! ErrorResponse where the protocol allows one), counted in `protocol_errors`, and none of
//! them disturbs a well-behaved client running queries on the same proxy meanwhile. And the
//! connection limit: one client over `max_connections` is refused with SQLSTATE 53300.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use fixtures::pg::TestDb;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MAX_MESSAGE: usize = 64 * 1024;
const STARTUP_TIMEOUT: Duration = Duration::from_millis(1000);

/// A client that runs checked queries until told to stop; returns how many ran.
struct Steady {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

impl Steady {
    async fn start(config: tokio_postgres::Config) -> Steady {
        let c = connect(&config).await;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let st = c
                    .client
                    .prepare("SELECT $1::int8 + 1, repeat('q', 1000)")
                    .await
                    .map_err(|e| e.to_string())?;
                let mut i = 0i64;
                while !stop.load(Relaxed) {
                    let row = c
                        .client
                        .query_one(&st, &[&i])
                        .await
                        .map_err(|e| format!("query {i}: {e}"))?;
                    if row.get::<_, i64>(0) != i + 1 || row.get::<_, &str>(1).len() != 1000 {
                        return Err(format!("query {i}: wrong answer"));
                    }
                    i += 1;
                    done.store(i as u64, Relaxed);
                }
                Ok(i as u64)
            })
        };
        Steady { stop, done, task }
    }

    /// Wait until it has run `n` more queries (it is making progress right now).
    async fn progresses(&self, n: u64) {
        let from = self.done.load(Relaxed);
        let t0 = Instant::now();
        while self.done.load(Relaxed) < from + n {
            assert!(!self.task.is_finished(), "the well-behaved client stopped");
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the well-behaved client is stuck"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Relaxed);
        self.task
            .await
            .unwrap()
            .expect("the well-behaved client saw no error")
    }
}

/// Expect the proxy to end the connection, first sending one FATAL ErrorResponse `code`
/// (or nothing, when `code` is `None`).
async fn expect_refused<S>(raw: &mut Raw<S>, code: Option<&str>, case: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let got = raw.until_closed().await;
    match code {
        Some(code) => {
            assert_eq!(
                tags(&got),
                "E",
                "{case}: one ErrorResponse, then the end: {got:?}"
            );
            assert_eq!(
                got[0].sqlstate(),
                Some(code),
                "{case}: {}",
                got[0].error_message()
            );
            let fields = proxy::protocol::error_fields(&got[0].body);
            assert!(
                fields.contains(&(b'S', "FATAL".to_string())),
                "{case}: {fields:?}"
            );
        }
        None => assert!(
            got.is_empty(),
            "{case}: nothing to say, just closed: {got:?}"
        ),
    }
}

/// One more protocol error counted (the session counts it before it closes).
async fn counted(proxy: &Running, before: u64, case: &str) -> u64 {
    eventually(&format!("{case}: counted in protocol_errors"), || {
        proxy.metrics.protocol_errors.load(Relaxed) == before + 1
    })
    .await;
    before + 1
}

async fn logged_in(proxy: &Running, target: &Target) -> Raw<TcpStream> {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.login(target, 0, &[]).await;
    raw
}

async fn setup(name: &str, file: proxy::config::FileConfig) -> (TestDb, Target, Running) {
    let db = TestDb::new(name).await;
    let target = Target::from_config(&db.tcp_config());
    let proxy = Running::start(target.upstream(), file).await;
    (db, target, proxy)
}

fn hostile_config() -> proxy::config::FileConfig {
    proxy::config::FileConfig {
        max_message_bytes: MAX_MESSAGE,
        startup_timeout_ms: STARTUP_TIMEOUT.as_millis() as u64,
        ..file_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_disconnected_and_counted_while_others_work() {
    within(async {
        let (_db, target, proxy) = setup("proxy_hostile", hostile_config()).await;
        let steady = Steady::start(target.via(proxy.addr)).await;
        steady.progresses(20).await;
        let mut errors = 0;

        // Startup phase.
        let startups: [(&str, Vec<u8>); 4] = [
            (
                "garbage (an HTTP request)",
                b"GET / HTTP/1.1\r\nHost: db\r\n\r\n".to_vec(),
            ),
            ("a startup length of 2^31", vec![0x80, 0, 0, 0, 0, 3, 0, 0]),
            ("a startup length of -1", vec![0xff, 0xff, 0xff, 0xff]),
            ("a startup length of 4", vec![0, 0, 0, 4, 0, 0, 0, 0]),
        ];
        for (case, bytes) in startups {
            let mut raw = Raw::connect(proxy.addr).await;
            raw.send(&bytes).await;
            expect_refused(&mut raw, Some("08P01"), case).await;
            errors = counted(&proxy, errors, case).await;
            steady.progresses(5).await;
        }
        {
            let case = "protocol 2.0";
            let mut raw = Raw::connect(proxy.addr).await;
            let mut p = startup_packet(&target, 0, &[]);
            p[4..8].copy_from_slice(&(2u32 << 16).to_be_bytes());
            raw.send(&p).await;
            let got = raw.until_closed().await;
            assert_eq!(tags(&got), "E", "{case}");
            assert_eq!(got[0].sqlstate(), Some("08P01"));
            assert!(
                got[0].error_message().contains("2.0"),
                "{}",
                got[0].error_message()
            );
            errors = counted(&proxy, errors, case).await;
        }
        {
            let case = "a truncated startup packet, then close";
            let mut raw = Raw::connect(proxy.addr).await;
            raw.send(&[0, 0, 0, 100, 0, 3, 0, 0, b'u', b's']).await;
            raw.stream.shutdown().await.unwrap();
            expect_refused(&mut raw, None, case).await;
            errors = counted(&proxy, errors, case).await;
        }
        {
            let case = "a client that sends nothing";
            let t0 = Instant::now();
            let mut raw = Raw::connect(proxy.addr).await;
            expect_refused(&mut raw, None, case).await;
            let took = t0.elapsed();
            assert!(
                took >= STARTUP_TIMEOUT - Duration::from_millis(50) && took < STARTUP_TIMEOUT * 3,
                "{case}: closed after {took:?}"
            );
            errors = counted(&proxy, errors, case).await;
        }
        {
            let case = "a Query instead of the SASL response";
            let mut raw = Raw::connect(proxy.addr).await;
            raw.send(&startup_packet(&target, 0, &[])).await;
            let sasl = raw.expect().await;
            assert_eq!(
                (sasl.tag, &sasl.body[..4]),
                (b'R', &10i32.to_be_bytes()[..])
            );
            let mut q = BytesMut::new();
            frontend::query("SELECT 1", &mut q).unwrap();
            raw.send(&q).await;
            expect_refused(&mut raw, Some("08P01"), case).await;
            errors = counted(&proxy, errors, case).await;
        }
        steady.progresses(5).await;

        // After authentication.
        let mut huge = vec![b'Q'];
        huge.extend_from_slice(&(1_000_000i32).to_be_bytes());
        huge.extend_from_slice(b"SELECT 1");
        let framed: [(&str, Vec<u8>); 4] = [
            ("a message length of 3", vec![b'Q', 0, 0, 0, 3]),
            ("a message length of -1", vec![b'Q', 0xff, 0xff, 0xff, 0xff]),
            ("a message length of 2^31", vec![b'P', 0x80, 0, 0, 0]),
            ("a message over max_message_bytes", huge),
        ];
        for (case, bytes) in framed {
            let mut raw = logged_in(&proxy, &target).await;
            let _ = raw.try_send(&bytes).await;
            expect_refused(&mut raw, Some("08P01"), case).await;
            errors = counted(&proxy, errors, case).await;
            steady.progresses(5).await;
        }
        // A message just under the limit is fine.
        {
            let mut raw = logged_in(&proxy, &target).await;
            let sql = format!("SELECT length('{}')", "w".repeat(MAX_MESSAGE - 64));
            let rows = data_rows(&raw.query(&sql).await);
            assert_eq!(rows, vec![vec![Some((MAX_MESSAGE - 64).to_string())]]);
        }

        let ran = steady.finish().await;
        assert!(
            ran > 50,
            "the well-behaved client ran {ran} queries meanwhile"
        );
        assert_eq!(proxy.metrics.protocol_errors.load(Relaxed), errors);
        eventually("only sessions that were let in count as active", || {
            proxy.metrics.connections_active.load(Relaxed) == 0
        })
        .await;
    })
    .await;
}

/// A message cut short by the client closing its connection is a protocol violation, as in
/// PostgreSQL ("unexpected EOF within message"): counted like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_truncated_by_a_close_is_counted_as_a_protocol_error() {
    within(async {
        let (_db, target, proxy) = setup("proxy_truncated_close", hostile_config()).await;
        let mut raw = logged_in(&proxy, &target).await;
        raw.send(&[b'Q', 0, 0, 0, 100, b'S', b'E', b'L']).await;
        raw.stream.shutdown().await.unwrap();
        expect_refused(&mut raw, None, "truncated then closed").await;
        eventually("the session ends", || {
            proxy.metrics.connections_active.load(Relaxed) == 0
        })
        .await;
        assert_eq!(
            proxy.metrics.protocol_errors.load(Relaxed),
            1,
            "a truncated message is a protocol error"
        );
    })
    .await;
}

/// A well-framed message whose body is malformed (a Bind whose parameter count runs past its
/// end): the proxy ends the session for it, so it must count it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_body_is_counted_as_a_protocol_error() {
    within(async {
        let (_db, target, proxy) = setup("proxy_malformed_body", hostile_config()).await;
        let mut raw = logged_in(&proxy, &target).await;
        // Bind: portal "", statement "", 0 formats, 32767 parameters, and nothing after.
        let body = [0u8, 0, 0, 0, 0x7f, 0xff];
        let mut msg = vec![b'B'];
        msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(&body);
        let mut sync = BytesMut::new();
        frontend::sync(&mut sync);
        msg.extend_from_slice(&sync);
        raw.send(&msg).await;
        expect_refused(&mut raw, Some("08P01"), "malformed Bind").await;
        eventually("the session ends", || {
            proxy.metrics.connections_active.load(Relaxed) == 0
        })
        .await;
        assert_eq!(proxy.metrics.protocol_errors.load(Relaxed), 1);
    })
    .await;
}

/// One client over `max_connections` gets 53300 (every time, not only when the race with its
/// startup packet goes one way); once a session ends there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_over_max_connections_is_refused_with_53300() {
    within(async {
        let file = proxy::config::FileConfig {
            max_connections: 2,
            ..file_config()
        };
        let (_db, target, proxy) = setup("proxy_max_connections", file).await;
        let a = connect(&target.via(proxy.addr)).await;
        let b = connect(&target.via(proxy.addr)).await;
        for attempt in 0..20 {
            let e = try_connect(&target.via(proxy.addr))
                .await
                .err()
                .expect("over the limit");
            assert_eq!(code(&e), Some("53300"), "attempt {attempt}: {e}");
        }
        assert_eq!(proxy.metrics.connections_refused.load(Relaxed), 20);
        assert_eq!(
            a.client
                .query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
        drop(b);
        let t0 = Instant::now();
        let c = loop {
            match try_connect(&target.via(proxy.addr)).await {
                Ok(c) => break c,
                Err(e) => {
                    assert_eq!(code(&e), Some("53300"), "{e}");
                    assert!(
                        t0.elapsed() < Duration::from_secs(3),
                        "no room after a session ended"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(
            c.client
                .query_one("SELECT 2", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            2
        );
    })
    .await;
}

/// Connections that open and send nothing hold at most `max_startups` slots: one more gets
/// 53300 at once, while a session already past startup keeps working; once the silent ones
/// are dropped at `startup_timeout_ms`, clients get in again. The gauge says how many are in
/// startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_hold_at_most_max_startups() {
    within(async {
        let file = proxy::config::FileConfig {
            max_startups: 3,
            startup_timeout_ms: 1500,
            ..file_config()
        };
        let (db, target, proxy) = setup("proxy_max_startups", file).await;
        let working = connect(&target.via(proxy.addr)).await;
        let backends = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()";
        let before: i64 = db.client().query_one(backends, &[]).await.unwrap().get(0);
        let mut silent = Vec::new();
        for i in 0..3 {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            if i == 0 {
                // Half a startup packet: its length, the protocol, and no more.
                s.write_all(&[0, 0, 0, 40, 0, 3, 0, 0]).await.unwrap();
            }
            silent.push(s);
        }
        eventually("three connections in startup", || {
            proxy.metrics.connections_starting.load(Relaxed) == 3
        })
        .await;
        let refused = try_connect(&target.via(proxy.addr))
            .await
            .err()
            .expect("over max_startups");
        assert_eq!(code(&refused), Some("53300"), "{refused}");
        let message = refused.as_db_error().map(|d| d.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("max_startups")),
            "{message:?}"
        );
        // No upstream connection for a client that has not sent its startup packet in full.
        let during: i64 = db.client().query_one(backends, &[]).await.unwrap().get(0);
        assert_eq!(
            during, before,
            "the proxy connected upstream for a silent client"
        );
        assert_eq!(
            working
                .client
                .query_one("SELECT 7", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            7
        );
        // Dropped at the startup timeout: room again.
        eventually("the silent connections dropped", || {
            proxy.metrics.connections_starting.load(Relaxed) == 0
        })
        .await;
        let again = connect(&target.via(proxy.addr)).await;
        assert_eq!(
            again
                .client
                .query_one("SELECT 8", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            8
        );
        drop(silent);
    })
    .await;
}

/// A client that prepares many large statements makes the proxy keep at most 8 MiB of their
/// text (for replays and dual reads); the statements all work as the server prepared them,
/// and the text is given back when the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_statement_text_is_bounded_per_session() {
    within(async {
        let (_db, target, proxy) = setup("proxy_statement_bytes", file_config()).await;
        let c = connect(&target.via(proxy.addr)).await;
        // 200 KiB each (a larger Parse is streamed through and never kept), 12 MiB in all.
        let pad = "x".repeat(200 << 10);
        let mut kept = Vec::new();
        for i in 0..60 {
            let sql = format!("SELECT {i}::int AS n, length('{pad}') AS l");
            kept.push(c.client.prepare(&sql).await.expect("prepared"));
        }
        let bytes = proxy.metrics.statement_bytes.load(Relaxed);
        assert!(
            bytes > 0 && bytes <= 8 << 20,
            "the session keeps {bytes} bytes of statement text"
        );
        let row = c.client.query_one(&kept[59], &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 59);
        drop(kept);
        drop(c);
        eventually("the session's statement text given back", || {
            proxy.metrics.statement_bytes.load(Relaxed) == 0
        })
        .await;
    })
    .await;
}
