//! What the proxy's integration tests share: an in-process proxy on a 127.0.0.1:0 listener in
//! front of a real PostgreSQL (so a test reads its metrics and decides when it shuts down),
//! tokio-postgres clients through it with SCRAM, and a raw-protocol client for what no driver
//! sends (odd startup packets, protocol 3.2, hand-made Bind/Describe/Execute, hostile bytes).

#![allow(dead_code)] // each test binary uses part of it

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use proxy::config::FileConfig;
use proxy::metrics::Metrics;
use proxy::upstream::Upstream;
use proxy::{Config, Proxy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket};

/// Every test's own limit: a hang fails the test instead of stalling the run.
pub const TEST_LIMIT: Duration = Duration::from_secs(45);

/// Run `f` and fail the test if it takes longer than [`TEST_LIMIT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(TEST_LIMIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("the test did not finish within {TEST_LIMIT:?}"),
    }
}

/// The PostgreSQL a test points the proxy at: where it listens over TCP, and the SCRAM
/// credentials clients use end to end.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Vec<u8>,
}

impl Target {
    /// From a TCP config (`TestDb::tcp_config`, `Cluster::tcp_config`).
    pub fn from_config(config: &tokio_postgres::Config) -> Target {
        match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) if h == "127.0.0.1" || h == "localhost" => {}
            other => panic!("the proxy tests need PostgreSQL on 127.0.0.1 over TCP, got {other:?}"),
        }
        Target {
            port: *config.get_ports().first().unwrap_or(&5432),
            user: config.get_user().expect("a user").to_string(),
            dbname: config.get_dbname().expect("a database").to_string(),
            password: config.get_password().unwrap_or_default().to_vec(),
        }
    }

    /// The same database on another port (the proxy's).
    pub fn with_port(&self, port: u16) -> Target {
        Target {
            port,
            ..self.clone()
        }
    }

    /// `--upstream` for a proxy in front of this server (no password: clients bring theirs).
    pub fn upstream(&self) -> Upstream {
        Upstream::parse(&format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.user, self.port, self.dbname
        ))
        .expect("a valid upstream URL")
    }

    /// tokio-postgres settings for a client of this database through the proxy at `proxy`.
    pub fn via(&self, proxy: SocketAddr) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(proxy.port())
            .user(&self.user)
            .dbname(&self.dbname)
            .password(&self.password)
            .application_name("proxy-passthrough-test")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// tokio-postgres settings straight to the server (for checks behind the proxy's back).
    pub fn direct(&self) -> tokio_postgres::Config {
        let mut c = self.via(SocketAddr::from(([127, 0, 0, 1], self.port)));
        c.application_name("proxy-test-direct");
        c
    }
}

/// Config with the settings every test wants: no dual reads (no tandem bookkeeping here).
pub fn file_config() -> FileConfig {
    FileConfig {
        mirror_sample: 0.0,
        ..FileConfig::default()
    }
}

/// A proxy running in this process on 127.0.0.1:<free port>.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), proxy::error::Error>>>,
}

impl Running {
    pub async fn start(upstream: Upstream, file: FileConfig) -> Running {
        file.validate().expect("a valid test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = Metrics::new();
        let proxy = Proxy {
            config: Arc::new(Config { upstream, file }),
            metrics: metrics.clone(),
            password: None,
            id: format!("test-{}", addr.port()),
            reloads: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::serve(listener, proxy, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Begin the graceful shutdown (the serve future's shutdown signal).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Wait for `serve` to return.
    pub async fn join(&mut self) -> Result<(), proxy::error::Error> {
        let task = self.task.take().expect("joined once");
        task.await.expect("serve does not panic")
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A tokio-postgres client whose connection task forwards notices and notifications.
pub struct Conn {
    pub client: Client,
    pub messages: mpsc::UnboundedReceiver<AsyncMessage>,
    pub task: JoinHandle<Result<(), tokio_postgres::Error>>,
}

pub async fn connect(config: &tokio_postgres::Config) -> Conn {
    try_connect_tls(config, NoTls)
        .await
        .expect("connect through the proxy")
}

pub async fn try_connect(config: &tokio_postgres::Config) -> Result<Conn, tokio_postgres::Error> {
    try_connect_tls(config, NoTls).await
}

pub async fn try_connect_tls<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<Conn, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    // The tests' clients choose their TLS connector themselves (NoTls, or rustls to the
    // proxy's own certificate): they are the proxy's clients, not tandem's connections.
    #[allow(clippy::disallowed_methods)]
    let (client, mut connection) = config.connect(tls).await?;
    let (tx, messages) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            let _ = tx.send(m?);
        }
        Ok(())
    });
    Ok(Conn {
        client,
        messages,
        task,
    })
}

/// The SQLSTATE of a tokio-postgres error, if the server (or the proxy) sent one.
pub fn code(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

/// A raw protocol client over any stream (plain TCP or TLS).
pub struct Raw<S> {
    pub stream: S,
    buf: BytesMut,
}

/// One backend message: its tag and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn sqlstate(&self) -> Option<&str> {
        proxy::protocol::sqlstate(&self.body)
    }

    /// The message field (`M`) of an ErrorResponse, for assertion messages.
    pub fn error_message(&self) -> String {
        proxy::protocol::error_fields(&self.body)
            .into_iter()
            .find(|(f, _)| *f == b'M')
            .map(|(_, m)| m)
            .unwrap_or_default()
    }
}

/// How long a raw read waits before the test calls it a hang.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

impl Raw<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Raw<TcpStream> {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        stream.set_nodelay(true).expect("nodelay");
        Raw::new(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    pub fn new(stream: S) -> Raw<S> {
        Raw {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the proxy");
        self.stream.flush().await.expect("flush");
    }

    /// Like [`Raw::send`], but a write error (the proxy closed first) is returned.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next message; `None` when the connection is closed (or reset) with nothing pending.
    pub async fn next(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                assert!(len >= 4, "the proxy sent a message length of {len}");
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let tag = self.buf[0];
                    let mut m = self.buf.split_to(total);
                    m.advance(5);
                    return Some(Msg {
                        tag,
                        body: m.freeze(),
                    });
                }
                self.buf.reserve(total - self.buf.len());
            }
            match tokio::time::timeout(READ_LIMIT, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!("no message from the proxy within {READ_LIMIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    assert!(self.buf.is_empty(), "connection closed inside a message");
                    return None;
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next message, which must be there.
    pub async fn expect(&mut self) -> Msg {
        self.next()
            .await
            .expect("a message, not a closed connection")
    }

    /// One byte (the answer to SSLRequest and GSSENCRequest).
    pub async fn byte(&mut self) -> u8 {
        if !self.buf.is_empty() {
            let b = self.buf[0];
            self.buf.advance(1);
            return b;
        }
        let mut b = [0u8; 1];
        tokio::time::timeout(READ_LIMIT, self.stream.read_exact(&mut b))
            .await
            .expect("an answer in time")
            .expect("one byte");
        b[0]
    }

    /// Whether the proxy closed the connection: reads (and returns) whatever it sent first.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next().await {
            out.push(m);
        }
        out
    }

    /// Every message up to and including ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.expect().await;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Send a startup packet with `params` (user and database first) asking for protocol
    /// 3.`minor`, authenticate with SCRAM-SHA-256, and return every message the proxy sent
    /// up to ReadyForQuery (authentication requests included).
    pub async fn login(&mut self, target: &Target, minor: u16, extra: &[(&str, &str)]) -> Vec<Msg> {
        self.send(&startup_packet(target, minor, extra)).await;
        let mut seen = Vec::new();
        let mut scram: Option<ScramSha256> = None;
        loop {
            let m = self.expect().await;
            seen.push(m.clone());
            match m.tag {
                b'R' => {
                    let code = i32::from_be_bytes(m.body[..4].try_into().expect("4 bytes"));
                    let data = &m.body[4..];
                    let mut out = BytesMut::new();
                    match code {
                        0 => continue,
                        10 => {
                            let s =
                                ScramSha256::new(&target.password, ChannelBinding::unsupported());
                            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                                .expect("encode");
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().expect("SASL continue after SASL");
                            s.update(data).expect("server-first-message");
                            frontend::sasl_response(s.message(), &mut out).expect("encode");
                        }
                        12 => {
                            let s = scram.as_mut().expect("SASL final after SASL");
                            s.finish(data).expect("the server's signature verifies");
                            continue;
                        }
                        other => panic!("unexpected authentication request {other}"),
                    }
                    self.send(&out).await;
                }
                b'E' => panic!("login failed: {}", m.error_message()),
                b'Z' => return seen,
                _ => {}
            }
        }
    }

    /// A simple Query; returns every message up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).expect("encode");
        self.send(&out).await;
        self.until_ready().await
    }
}

/// A startup packet for protocol 3.`minor` with user and database from `target`, then `extra`.
pub fn startup_packet(target: &Target, minor: u16, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&((3u32 << 16) | u32::from(minor)).to_be_bytes());
    let params = [
        ("user", target.user.as_str()),
        ("database", target.dbname.as_str()),
    ];
    for (k, v) in params.iter().chain(extra) {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

/// The text values of every DataRow in `msgs` (NULL as `None`).
pub fn data_rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let mut b = &m.body[..];
            let n = b.get_i16();
            (0..n)
                .map(|_| {
                    let len = b.get_i32();
                    (len >= 0).then(|| {
                        let v = String::from_utf8(b[..len as usize].to_vec()).expect("text");
                        b.advance(len as usize);
                        v
                    })
                })
                .collect()
        })
        .collect()
}

/// The tags of `msgs`, as a string (`"1T D C Z"` becomes `"1TDCZ"`), for assertions.
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// A metric, read until `ok` holds or a second passes (sessions count after they end).
pub async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "never true: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
