//! One client connection, in session mode: one server connection for its whole life.
//!
//! Startup: SSL negotiation (TLS terminated here when a certificate is configured), the
//! startup packet forwarded unchanged (so the server negotiates the protocol version), the
//! server's authentication exchange relayed message by message (trust, cleartext, md5,
//! SCRAM-SHA-256; `-PLUS` mechanisms removed), and the server's BackendKeyData replaced by
//! the proxy's own (see `cancel`).
//!
//! Relay: two loops in one task, client→server and server→client, each with its own write
//! half, so neither can block the other. Both read whole messages from a bounded buffer
//! (messages larger than [`STREAM_ABOVE`] are streamed through in pieces), look at the few
//! they need, and forward the rest in one write per read. The client→server side sees where
//! requests start and end (a Query, or messages up to a Sync) and, at the first request of a
//! session that is outside a transaction, asks [`Traffic`] to begin (this is where a cutover
//! hold makes a client wait). The server→client side counts ReadyForQuery answers and marks
//! the session idle again.
//!
//! A prepared statement whose result type changed under it (SQLSTATE 0A000, `cached plan
//! must not change result type`) is re-prepared and the request replayed, invisibly, only
//! when that is safe: the request began outside a transaction, holds exactly one Execute and
//! no Parse, carries its own Describe (so the client learns the new row shape from this very
//! answer instead of trusting one it cached), and nothing else is in flight behind it. The
//! server stopped at Bind (no BindComplete came), so nothing ran twice; a request is replayed
//! once at most. Otherwise the error goes to the client as is.
//!
//! Inside a transaction that error cannot be replayed (the transaction is already aborted),
//! so after a swap (a hold released, or the executor's `targets` notice) each session
//! prepares its statements again before its next transaction starts: those it executes with
//! their own Describe, never those it executes on a row description it cached.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::buffer;
use crate::cancel::{self, CancelMap};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::mirror::{Mirror, Sample};
use crate::protocol::{self, ProtocolError, Startup};
use crate::traffic::Traffic;
use crate::upstream::Stream;

/// Messages larger than this are not buffered whole: they are forwarded as they arrive.
pub const STREAM_ABOVE: usize = 256 * 1024;
/// Requests up to this size are kept for a replay; larger ones are never replayed.
const REPLAY_MAX: usize = 64 * 1024;
/// Named statements remembered per session, at most (the rest cannot be recovered).
const STATEMENTS_MAX: usize = 10_000;
/// The most statement text a session's kept statements hold together (a Parse can carry up
/// to 1 GiB): past it, new statements are not kept, as past [`STATEMENTS_MAX`].
const STATEMENT_BYTES_MAX: usize = 8 << 20;
/// The server may send messages up to PostgreSQL's own limit.
const SERVER_MAX: usize = (1 << 30) + 5;

/// What every session shares.
pub struct Shared {
    /// The settings now: a reload (SIGHUP) swaps them; a session reads them when it needs
    /// one, so limits and timeouts apply to sessions already open from their next use.
    pub config: ArcSwap<Config>,
    pub metrics: Arc<Metrics>,
    pub traffic: Arc<Traffic>,
    pub cancels: CancelMap,
    pub mirror: Mirror,
    /// The TLS acceptor now (a reload may bring a new certificate: new sessions get it).
    pub tls: ArcSwapOption<TlsAcceptor>,
    /// `true` once shutdown began: idle sessions close, busy ones close when idle.
    pub draining: watch::Receiver<bool>,
    /// `true` when the shutdown deadline passed: every session closes now.
    pub closing: watch::Receiver<bool>,
}

/// The client's connection, plain or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One direction of a connection. Plain TCP and Unix sockets split into owned halves with
/// no lock between them; only TLS needs `tokio::io::split`'s.
type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

impl ClientStream {
    fn into_halves(self) -> (Reader, Writer) {
        match self {
            ClientStream::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            ClientStream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

trait IntoHalves {
    fn into_halves(self) -> (Reader, Writer);
}

impl IntoHalves for Stream {
    fn into_halves(self) -> (Reader, Writer) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

/// A connection in startup, counted in `connections_starting` until dropped.
struct Starting<'a>(&'a std::sync::atomic::AtomicI64);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client closed its connection without Terminate.
    ClientGone,
    /// The client sent Terminate.
    Terminated,
    ServerGone(String),
    /// The client broke the protocol; it was told why.
    Protocol(String),
    Shutdown,
}

/// Run one client connection to its end. Never panics on input; every failure is logged
/// and, where the client can still hear it, answered with an ErrorResponse.
pub async fn run(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let started = Instant::now();
    // Counted by the accept loop; off when startup is over, whatever its outcome (or when
    // the session is dropped during it).
    let starting = Starting(&shared.metrics.connections_starting);
    let timeout = shared.config.load_full().file.startup_timeout();
    // Boxed, as the relay below: an idle session's task then holds the relay's state only,
    // not room for startup's too (7.3 KiB per task unboxed, 2 KiB for the relay, measured).
    let startup = tokio::time::timeout(timeout, Box::pin(startup(&shared, socket))).await;
    drop(starting);
    let (client, server, startup) = match startup {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "startup failed");
            return;
        }
        Err(_) => {
            shared.metrics.protocol_errors.fetch_add(1, Relaxed);
            tracing::info!(%peer, timeout_ms = timeout.as_millis() as u64, "client did not finish startup in time: disconnected");
            return;
        }
    };
    tracing::debug!(%peer, user = startup.user, database = startup.database, took_ms = started.elapsed().as_millis() as u64, "session started");
    let pid = startup.proxy_pid;
    let session = Session::new(&shared, startup);
    let end = Box::pin(session.relay(client, server)).await;
    shared.cancels.unregister(pid);
    match &end {
        End::ClientGone | End::Terminated | End::Shutdown => {
            tracing::debug!(%peer, ?end, "session ended")
        }
        End::ServerGone(e) => tracing::info!(%peer, error = %e, "the server closed the session"),
        End::Protocol(e) => {
            tracing::info!(%peer, error = %e, "client disconnected for a protocol violation")
        }
    }
}

/// What startup established.
struct Started {
    user: String,
    database: String,
    proxy_pid: u32,
    server_pid: u32,
    server_key: Bytes,
}

type Client = ClientStream;

/// Negotiate SSL, read the startup packet, connect upstream, relay authentication. `None`
/// when the connection was a cancel request or was refused (the client was told).
async fn startup(
    shared: &Shared,
    socket: TcpStream,
) -> io::Result<Option<(Client, Stream, Started)>> {
    let mut client = ClientStream::Plain(socket);
    let mut ssl_done = false;
    let packet = loop {
        let packet = match read_startup(&mut client).await {
            Ok(p) => p,
            // A connection closed before its first byte (a load balancer's health check) is
            // not a protocol error.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => return Err(e),
            Err(e) => {
                shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                let msg = format!("invalid startup packet: {e}");
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = client
                        .write_all(&protocol::error_response("FATAL", "08P01", &msg, None))
                        .await;
                }
                return Err(e);
            }
        };
        match protocol::parse_startup(&packet) {
            Ok(Startup::Ssl) if !ssl_done => {
                ssl_done = true;
                match (shared.tls.load_full(), client) {
                    (Some(tls), ClientStream::Plain(mut s)) => {
                        s.write_all(b"S").await?;
                        let tls = tls.accept(s).await?;
                        client = ClientStream::Tls(Box::new(tls));
                    }
                    (_, mut c) => {
                        c.write_all(b"N").await?;
                        client = c;
                    }
                }
            }
            Ok(Startup::GssEnc) if !ssl_done => {
                client.write_all(b"N").await?;
            }
            Ok(Startup::Cancel { pid, key }) => {
                match shared.cancels.lookup(pid, &key) {
                    Some((server_pid, server_key)) => {
                        shared.metrics.cancels.fetch_add(1, Relaxed);
                        if let Err(e) = cancel::send(
                            &shared.config.load_full().upstream,
                            server_pid,
                            &server_key,
                            shared.config.load_full().file.connect_timeout(),
                        )
                        .await
                        {
                            tracing::warn!(error = %e, "could not send a cancel request to the server");
                        }
                    }
                    None => tracing::debug!("cancel request for an unknown session ignored"),
                }
                return Ok(None);
            }
            Ok(s @ Startup::Startup { .. }) => break s,
            Ok(_) => {
                shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                return refuse(&mut client, "08P01", "unexpected negotiation request", None).await;
            }
            Err(e) => {
                shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                let hint = matches!(e, ProtocolError::Version { .. })
                    .then_some("tandem proxy speaks protocol 3.x, as PostgreSQL does");
                return refuse(
                    &mut client,
                    "08P01",
                    &format!("invalid startup packet: {e}"),
                    hint,
                )
                .await;
            }
        }
    };
    let user = packet.param("user").unwrap_or_default().to_string();
    let database = packet.param("database").unwrap_or(&user).to_string();
    if *shared.draining.borrow() {
        shared.metrics.connections_refused.fetch_add(1, Relaxed);
        return refuse(
            &mut client,
            "57P01",
            "tandem proxy is shutting down",
            Some("connect again: another proxy or this one after its restart will answer"),
        )
        .await;
    }
    let config = shared.config.load_full();
    let upstream = &config.upstream;
    let mut server = match upstream.connect(config.file.connect_timeout()).await {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.upstream_errors.fetch_add(1, Relaxed);
            tracing::warn!(upstream = upstream.describe(), error = %e, "cannot reach the upstream");
            let msg = format!(
                "tandem proxy cannot reach PostgreSQL at {}: {e}",
                upstream.describe()
            );
            return refuse(&mut client, "08006", &msg, Some("check that the server is running and accepting connections, then connect again")).await;
        }
    };
    let Startup::Startup { raw, .. } = &packet else {
        unreachable!("the loop breaks with a startup packet only")
    };
    server.write_all(raw).await?;
    // Relay authentication until ReadyForQuery.
    let mut buf = BytesMut::with_capacity(4096);
    let mut server_key = None;
    let mut proxy_pid = 0;
    let mut first = true;
    loop {
        // The server's first answer must come within connect_timeout: an upstream that
        // accepts and says nothing is as down as one that refuses.
        let wait = if first {
            shared.config.load_full().file.connect_timeout()
        } else {
            shared.config.load_full().file.startup_timeout()
        };
        first = false;
        let read = match tokio::time::timeout(wait, read_message(&mut server, &mut buf, SERVER_MAX))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} ms", wait.as_millis()),
            )),
        };
        let (tag, body) = match read {
            Ok(m) => m,
            Err(e) => {
                shared.metrics.upstream_errors.fetch_add(1, Relaxed);
                tracing::warn!(upstream = shared.config.load_full().upstream.describe(), error = %e, "the upstream failed during startup");
                let msg = format!(
                    "PostgreSQL at {} failed during startup: {e}",
                    shared.config.load_full().upstream.describe()
                );
                return refuse(
                    &mut client,
                    "08006",
                    &msg,
                    Some("connect again; if it persists, look at the server's log"),
                )
                .await;
            }
        };
        let mut out = BytesMut::new();
        match tag {
            b'R' => {
                let code = protocol::auth_code(&body).unwrap_or(-1);
                if code == 10 {
                    let filtered =
                        protocol::sasl_without_plus(&body).unwrap_or_else(|_| body.to_vec());
                    protocol::put_message(&mut out, b'R', &filtered);
                } else {
                    protocol::put_message(&mut out, b'R', &body);
                }
                client.write_all(&out).await?;
                // Requests that need an answer: cleartext, md5, GSS, SSPI, SASL, SASL continue.
                if matches!(code, 3 | 5 | 7 | 8 | 9 | 10 | 11) {
                    let mut cbuf = BytesMut::with_capacity(1024);
                    let (ctag, cbody) = match read_message(&mut client, &mut cbuf, 64 * 1024).await
                    {
                        Ok(m) => m,
                        Err(e) => return Err(e),
                    };
                    if ctag != b'p' {
                        shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                        return refuse(
                            &mut client,
                            "08P01",
                            "expected an authentication response",
                            None,
                        )
                        .await;
                    }
                    // TLS on both sides: the server offers SCRAM-SHA-256-PLUS, which the
                    // client was not shown (its binding would be to the proxy's TLS session);
                    // a client able to bind says `y` ("the server cannot"), which the server
                    // takes for a downgrade. Say why and what to do, instead of its error.
                    if code == 10
                        && matches!(client, ClientStream::Tls(_))
                        && matches!(server, Stream::Tls(_))
                        && protocol::sasl_claims_no_server_binding(&cbody)
                    {
                        return refuse(
                            &mut client,
                            "28000",
                            "SCRAM channel binding cannot pass through tandem proxy: the client's TLS session ends at the proxy and the server's TLS session starts there, so the server would take this login for a downgrade",
                            Some("set channel_binding=disable in the client's connection settings (SCRAM still keeps the password off the wire and TLS to the proxy still encrypts the session), or connect to the proxy without TLS over loopback"),
                        )
                        .await;
                    }
                    let mut m = BytesMut::new();
                    protocol::put_message(&mut m, b'p', &cbody);
                    server.write_all(&m).await?;
                }
            }
            b'K' => {
                let (pid, key) = match protocol::parse_backend_key(&body) {
                    Ok(k) => k,
                    Err(_) => {
                        return refuse(
                            &mut client,
                            "08P01",
                            "the server sent an invalid BackendKeyData",
                            None,
                        )
                        .await
                    }
                };
                let (ppid, pkey) = shared.cancels.register(pid, key.clone());
                proxy_pid = ppid;
                server_key = Some((pid, key));
                client
                    .write_all(&protocol::backend_key_data(ppid, &pkey))
                    .await?;
            }
            b'E' => {
                protocol::put_message(&mut out, b'E', &body);
                client.write_all(&out).await?;
                if proxy_pid != 0 {
                    shared.cancels.unregister(proxy_pid);
                }
                return Ok(None);
            }
            b'Z' => {
                protocol::put_message(&mut out, b'Z', &body);
                client.write_all(&out).await?;
                break;
            }
            // ParameterStatus, NegotiateProtocolVersion, NoticeResponse: as they are.
            _ => {
                protocol::put_message(&mut out, tag, &body);
                client.write_all(&out).await?;
            }
        }
    }
    let Some((server_pid, server_key)) = server_key else {
        return refuse(
            &mut client,
            "08P01",
            "the server sent no BackendKeyData",
            None,
        )
        .await;
    };
    Ok(Some((
        client,
        server,
        Started {
            user,
            database,
            proxy_pid,
            server_pid,
            server_key,
        },
    )))
}

/// Tell the client why it is refused, and end.
async fn refuse(
    client: &mut Client,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> io::Result<Option<(Client, Stream, Started)>> {
    let _ = client
        .write_all(&protocol::error_response("FATAL", code, message, hint))
        .await;
    let _ = client.flush().await;
    Ok(None)
}

/// Read a whole startup packet (length first, at most [`protocol::MAX_STARTUP`] bytes).
async fn read_startup(client: &mut Client) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    if client.read(&mut len[..1]).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed before sending anything",
        ));
    }
    client.read_exact(&mut len[1..]).await?;
    let n = protocol::startup_length(&len)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        .unwrap_or(0);
    let mut packet = vec![0u8; n];
    packet[..4].copy_from_slice(&len);
    client.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

/// Read one whole tagged message (used during startup only).
async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<(u8, Bytes)> {
    loop {
        if let Some(h) =
            protocol::header(buf, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            if buf.len() >= h.total() {
                let mut m = buf.split_to(h.total());
                m.advance(5);
                return Ok((h.tag, m.freeze()));
            }
            buf.reserve(h.total() - buf.len());
        }
        if s.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
    }
}

/// A request sent to the server, waiting for its ReadyForQuery.
#[derive(Debug, Default)]
struct Request {
    /// Started while the session was outside a transaction with nothing in flight.
    began_idle: bool,
    executes: u32,
    describes: bool,
    parses: bool,
    /// The statement the request's Bind named.
    statement: Option<String>,
    /// The request's bytes, kept for a replay while it may still qualify.
    raw: Option<BytesMut>,
    /// Replayed once already: never again.
    replayed: bool,
}

impl Request {
    fn replayable(&self) -> bool {
        self.began_idle
            && !self.replayed
            && self.executes == 1
            && self.describes
            && !self.parses
            && self.raw.is_some()
            && self.statement.as_deref().is_some_and(|s| !s.is_empty())
    }
}

/// A statement the client prepared: its text and parameter types, to prepare it again.
#[derive(Debug, Clone)]
struct Statement {
    query: Arc<str>,
    types: Vec<u32>,
    /// Executed with a Describe in the same request (libpq's PQexecPrepared): the client
    /// reads each answer's row description, so preparing it again is invisible to it.
    own_describe: bool,
    /// Executed without a Describe: the client decodes with a description it cached, and
    /// must hear of a change (never re-prepared behind its back).
    cached: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Recovery {
    None,
    /// The error was swallowed; skip the rest of the failed request up to its ReadyForQuery.
    SkipToReady,
    /// The replay was sent; swallow the CloseComplete and ParseComplete it causes.
    Swallow(u8),
    /// Statements are being prepared again before a transaction (after a swap): swallow
    /// their answers up to and including their ReadyForQuery.
    Proactive,
}

struct State {
    inflight: VecDeque<Request>,
    /// The request being sent (after its first message, before its Sync).
    open: Option<Request>,
    /// The last ReadyForQuery status: I, T or E.
    txn: u8,
    /// Counted busy in [`Traffic`].
    busy: bool,
    /// A replay is under way: the client side waits before sending anything new.
    replaying: bool,
    recovery: Recovery,
    statements: HashMap<String, Statement>,
    /// A Parse too large to read went by: remembered statements may be stale, recover none.
    statements_unreliable: bool,
    /// The text bytes of `statements`, against [`STATEMENT_BYTES_MAX`].
    statement_bytes: usize,
    /// A request buffer to use again (one allocation per session, not per request).
    spare_raw: Option<BytesMut>,
}

struct Session<'a> {
    shared: &'a Shared,
    started: Started,
    state: Mutex<State>,
    replay_done: Notify,
    /// Mirrors `state.recovery != None`, so rows need no lock on the common path.
    recovering: AtomicBool,
    /// A BindComplete came for the request in flight: its Bind succeeded, so an error now
    /// comes from running it, and it must not be replayed.
    bound: AtomicBool,
    /// Sample this session's reads for the mirror (it is on the mirror's database).
    mirror: bool,
    /// The [`Traffic`] epoch this session's statements were prepared in.
    epoch: std::sync::atomic::AtomicU64,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let bytes = self
            .state
            .get_mut()
            .map_or_else(|p| p.into_inner().statement_bytes, |s| s.statement_bytes);
        self.shared
            .metrics
            .statement_bytes
            .fetch_sub(bytes as i64, Relaxed);
    }
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, started: Started) -> Session<'a> {
        let mirror = shared.mirror.database() == Some(started.database.as_str());
        Session {
            shared,
            started,
            state: Mutex::new(State {
                inflight: VecDeque::new(),
                open: None,
                txn: b'I',
                busy: false,
                replaying: false,
                recovery: Recovery::None,
                statements: HashMap::new(),
                statements_unreliable: false,
                statement_bytes: 0,
                spare_raw: None,
            }),
            replay_done: Notify::new(),
            recovering: AtomicBool::new(false),
            bound: AtomicBool::new(false),
            mirror,
            epoch: std::sync::atomic::AtomicU64::new(shared.traffic.epoch()),
        }
    }

    /// The session's kept statements now hold `bytes` of text (the gauge follows).
    fn kept_statement_bytes(&self, state: &mut State, bytes: usize) {
        let delta = bytes as i64 - state.statement_bytes as i64;
        state.statement_bytes = bytes;
        self.shared
            .metrics
            .statement_bytes
            .fetch_add(delta, Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn relay(&self, client: Client, server: Stream) -> End {
        let (client_r, client_w) = client.into_halves();
        let (server_r, server_w) = server.into_halves();
        let server_w = tokio::sync::Mutex::new(server_w);
        let client_w = tokio::sync::Mutex::new(client_w);
        let end = tokio::select! {
            end = self.client_to_server(client_r, &server_w) => end,
            end = self.server_to_client(server_r, &client_w, &server_w) => end,
        };
        // Boxed: the closing's state is not part of every session's relay for its whole life.
        Box::pin(self.close(end, &client_w, &server_w)).await
    }

    /// After the relay: cancel a query a client left behind, tell the client why the session
    /// ends, terminate the server session.
    async fn close(
        &self,
        end: End,
        client_w: &tokio::sync::Mutex<Writer>,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> End {
        let busy = {
            let st = self.lock();
            st.busy
        };
        match &end {
            End::ClientGone => {
                // A client that left mid-query: stop its query on the server.
                if busy {
                    let s = &self.started;
                    let _ = cancel::send(
                        &self.shared.config.load_full().upstream,
                        s.server_pid,
                        &s.server_key,
                        self.shared.config.load_full().file.connect_timeout(),
                    )
                    .await;
                }
            }
            End::Terminated => {}
            End::ServerGone(e) => {
                self.shared.metrics.upstream_errors.fetch_add(1, Relaxed);
                let msg = format!("the connection to PostgreSQL was lost: {e}");
                let mut w = client_w.lock().await;
                let _ = w
                    .write_all(&protocol::error_response(
                        "FATAL",
                        "08006",
                        &msg,
                        Some("connect again; the server may be restarting"),
                    ))
                    .await;
                let _ = w.flush().await;
            }
            End::Protocol(msg) => {
                self.shared.metrics.protocol_errors.fetch_add(1, Relaxed);
                let mut w = client_w.lock().await;
                let _ = w
                    .write_all(&protocol::error_response("FATAL", "08P01", msg, None))
                    .await;
                let _ = w.flush().await;
            }
            End::Shutdown => {
                let mut w = client_w.lock().await;
                let _ = w
                    .write_all(&protocol::error_response(
                        "FATAL",
                        "57P01",
                        "tandem proxy is shutting down",
                        Some("connect again"),
                    ))
                    .await;
                let _ = w.flush().await;
            }
        }
        // Terminate the server session politely.
        let mut w = server_w.lock().await;
        let _ = w.write_all(&[b'X', 0, 0, 0, 4]).await;
        let _ = w.shutdown().await;
        if busy {
            self.shared.traffic.end();
        }
        end
    }

    /// Client → server: frame, track requests, hold at transaction boundaries, sample reads.
    async fn client_to_server(&self, mut rd: Reader, server_w: &tokio::sync::Mutex<Writer>) -> End {
        let metrics = &self.shared.metrics;
        let max = self.shared.config.load().file.max_message_bytes;
        let mut buf = buffer::quiet_buffer();
        // The last read filled its room: more is waiting.
        let mut filled = false;
        // Bytes of a large message still to stream through.
        let mut streaming = 0usize;
        let mut draining = self.shared.draining.clone();
        let mut closing = self.shared.closing.clone();
        loop {
            // Forward what is complete.
            let mut pos = 0;
            let mut fwd = 0;
            loop {
                if streaming > 0 {
                    let n = streaming.min(buf.len() - pos);
                    pos += n;
                    streaming -= n;
                    if streaming > 0 {
                        break;
                    }
                    continue;
                }
                let h = match protocol::header(&buf[pos..], max) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        return End::Protocol(format!("invalid message from the client: {e}"));
                    }
                };
                let complete = buf.len() - pos >= h.total();
                if !complete && h.total() <= STREAM_ABOVE {
                    buf.reserve(h.total() - (buf.len() - pos));
                    break;
                }
                // The message starts a request: wait here if a hold is on (after sending
                // what came before it).
                if self.needs_begin(h.tag) {
                    if fwd < pos {
                        if let Err(e) = server_w.lock().await.write_all(&buf[fwd..pos]).await {
                            return End::ServerGone(e.to_string());
                        }
                        fwd = pos;
                    }
                    if let Err(e) = self.begin(server_w).await {
                        return e;
                    }
                }
                if h.tag == b'X' {
                    // Terminate: what came before it still runs, as it would on the server.
                    if let Err(e) = server_w.lock().await.write_all(&buf[fwd..pos]).await {
                        return End::ServerGone(e.to_string());
                    }
                    return End::Terminated;
                }
                let body = complete.then(|| &buf[pos + 5..pos + h.total()]);
                let whole = complete.then(|| &buf[pos..pos + h.total()]);
                match self.on_client_message(h.tag, body, whole) {
                    Ok(()) => {}
                    Err(e) => return e,
                }
                if complete {
                    pos += h.total();
                } else {
                    streaming = h.total() - (buf.len() - pos);
                    pos = buf.len();
                    break;
                }
            }
            if fwd < pos {
                let n = (pos - fwd) as u64;
                if let Err(e) = server_w.lock().await.write_all(&buf[fwd..pos]).await {
                    return End::ServerGone(e.to_string());
                }
                metrics.client_bytes.fetch_add(n, Relaxed);
            }
            buf.advance(pos);
            if *draining.borrow() && buf.is_empty() {
                let st = self.lock();
                if !st.busy && st.open.is_none() {
                    return End::Shutdown;
                }
            }
            // A client waits for the answer to what it sent: the buffer is quiet.
            buffer::quiet(&mut buf, filled);
            buffer::make_room(&mut buf, filled, 16 * 1024);
            let room = buf.capacity() - buf.len();
            let read = tokio::select! {
                r = rd.read_buf(&mut buf) => r,
                _ = draining.wait_for(|d| *d) , if !*draining.borrow() => continue,
                _ = closing.wait_for(|c| *c) => return End::Shutdown,
            };
            match read {
                Ok(0) | Err(_) => {
                    if !buf.is_empty() || streaming > 0 {
                        // Closed in the middle of a message.
                        metrics.protocol_errors.fetch_add(1, Relaxed);
                    }
                    return End::ClientGone;
                }
                Ok(n) => filled = n >= room,
            }
        }
    }

    /// Does a message with `tag` start a request while the session is idle?
    fn needs_begin(&self, tag: u8) -> bool {
        if matches!(tag, b'd' | b'c' | b'f' | b'X') {
            return false;
        }
        let st = self.lock();
        st.open.is_none() && (!st.busy || st.replaying)
    }

    /// Wait for a replay to finish and for any hold; then count the session busy.
    async fn begin(&self, server_w: &tokio::sync::Mutex<Writer>) -> Result<(), End> {
        loop {
            let notified = self.replay_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (replaying, busy) = {
                let st = self.lock();
                (st.replaying, st.busy)
            };
            if replaying {
                notified.await;
                continue;
            }
            if !busy {
                self.shared.traffic.begin().await;
                self.lock().busy = true;
                self.reprepare_after_swap(server_w).await?;
            }
            return Ok(());
        }
    }

    /// After a swap (a newer [`Traffic`] epoch), prepare again the statements this client
    /// executes with its own Describe, before its next transaction starts: inside a
    /// transaction a `cached plan must not change result type` cannot be replayed, since the
    /// transaction is already aborted. Statements the client executes on a cached row
    /// description are left alone: it must see the error and prepare them itself.
    async fn reprepare_after_swap(&self, server_w: &tokio::sync::Mutex<Writer>) -> Result<(), End> {
        let now = self.shared.traffic.epoch();
        if self.epoch.swap(now, Relaxed) == now {
            return Ok(());
        }
        let mut out = BytesMut::new();
        let mut n = 0u64;
        {
            let mut st = self.lock();
            if st.statements_unreliable || st.recovery != Recovery::None {
                return Ok(());
            }
            for (name, stmt) in &st.statements {
                if !name.is_empty() && stmt.own_describe && !stmt.cached {
                    protocol::reprepare(&mut out, name, &stmt.query, &stmt.types);
                    n += 1;
                }
            }
            if n == 0 {
                return Ok(());
            }
            protocol::put_message(&mut out, b'S', &[]);
            st.recovery = Recovery::Proactive;
            self.recovering.store(true, Relaxed);
        }
        tracing::info!(
            statements = n,
            "a table may have changed shape: preparing this session's statements again"
        );
        self.shared.metrics.prepared_recovered.fetch_add(n, Relaxed);
        server_w
            .lock()
            .await
            .write_all(&out)
            .await
            .map_err(|e| End::ServerGone(e.to_string()))
    }

    /// Track one client message. `body` and `whole` are `None` for a message streamed
    /// through in pieces (too large to read whole).
    fn on_client_message(
        &self,
        tag: u8,
        body: Option<&[u8]>,
        whole: Option<&[u8]>,
    ) -> Result<(), End> {
        if matches!(tag, b'd' | b'c' | b'f') {
            return Ok(());
        }
        let mut st = self.lock();
        if tag == b'X' {
            return Err(End::ClientGone);
        }
        if st.open.is_none() {
            let idle = st.inflight.is_empty() && st.txn == b'I';
            let raw = if idle {
                Some(st.spare_raw.take().unwrap_or_default())
            } else {
                None
            };
            st.open = Some(Request {
                began_idle: idle,
                raw,
                ..Request::default()
            });
        }
        let state = &mut *st;
        let req = state.open.as_mut().expect("opened above");
        if let (Some(raw), Some(whole)) = (req.raw.as_mut(), whole) {
            if raw.len() + whole.len() <= REPLAY_MAX {
                raw.extend_from_slice(whole);
            } else {
                req.raw = None;
            }
        } else {
            req.raw = None;
        }
        let bad = |e: ProtocolError| End::Protocol(format!("invalid message from the client: {e}"));
        match tag {
            b'P' => {
                req.parses = true;
                match body {
                    Some(body) => {
                        let p = protocol::parse_parse(body).map_err(bad)?;
                        // Named statements for a replay (up to a limit); the unnamed one only
                        // when its Binds may be sampled for the mirror.
                        let old = state.statements.get(p.name).map_or(0, |s| s.query.len());
                        let bytes = state.statement_bytes - old + p.query.len();
                        let keep = bytes <= STATEMENT_BYTES_MAX
                            && if p.name.is_empty() {
                                self.mirror
                            } else {
                                state.statements.len() < STATEMENTS_MAX
                                    || state.statements.contains_key(p.name)
                            };
                        if keep {
                            self.kept_statement_bytes(state, bytes);
                            state.statements.insert(
                                p.name.to_string(),
                                Statement {
                                    query: Arc::from(p.query),
                                    types: p.types,
                                    own_describe: false,
                                    cached: false,
                                },
                            );
                        } else if let Some(gone) = state.statements.remove(p.name) {
                            // Never the text the name had before.
                            let bytes = state.statement_bytes - gone.query.len();
                            self.kept_statement_bytes(state, bytes);
                        }
                    }
                    None => state.statements_unreliable = true,
                }
            }
            b'B' => match body {
                Some(body) => {
                    let b = protocol::parse_bind(body).map_err(bad)?;
                    req.statement = Some(b.statement.to_string());
                    if self.mirror && self.shared.mirror.wants() {
                        if let Some(s) = state.statements.get(b.statement) {
                            self.shared.mirror.offer_with(&s.query, || Sample {
                                sql: s.query.clone(),
                                role: Arc::from(self.started.user.as_str()),
                                param_types: s.types.clone(),
                                params: b
                                    .params
                                    .iter()
                                    .map(|p| p.map(Bytes::copy_from_slice))
                                    .collect(),
                                param_formats: b.formats.clone(),
                            });
                        }
                    }
                }
                None => req.raw = None,
            },
            b'D' => req.describes = true,
            b'E' => req.executes += 1,
            b'C' => {
                if let Some(body) = body {
                    if let Some(name) = protocol::statement_target(body).map_err(bad)? {
                        if let Some(gone) = state.statements.remove(name) {
                            let bytes = state.statement_bytes - gone.query.len();
                            self.kept_statement_bytes(state, bytes);
                        }
                    }
                }
            }
            b'Q' => {
                if let Some(body) = body {
                    if self.mirror && self.shared.mirror.wants() {
                        let mut r = protocol::Reader::new(body);
                        if let Ok(sql) = r.cstr() {
                            self.shared.mirror.offer_with(sql, || Sample {
                                sql: Arc::from(sql),
                                role: Arc::from(self.started.user.as_str()),
                                param_types: Vec::new(),
                                params: Vec::new(),
                                param_formats: Vec::new(),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        if matches!(tag, b'S' | b'Q' | b'F') {
            let req = state.open.take().expect("opened above");
            if req.executes > 0 {
                if let Some(stmt) = req
                    .statement
                    .as_deref()
                    .and_then(|n| state.statements.get_mut(n))
                {
                    if req.describes {
                        stmt.own_describe = true;
                    } else {
                        stmt.cached = true;
                    }
                }
            }
            state.inflight.push_back(req);
            self.shared.metrics.queries.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Server → client: forward, watch ReadyForQuery and errors, recover a prepared statement.
    async fn server_to_client(
        &self,
        mut rd: Reader,
        client_w: &tokio::sync::Mutex<Writer>,
        server_w: &tokio::sync::Mutex<Writer>,
    ) -> End {
        let metrics = &self.shared.metrics;
        let mut buf = buffer::quiet_buffer();
        let mut filled = false;
        let mut streaming = 0usize;
        loop {
            let mut pos = 0;
            let mut fwd = 0;
            let mut idle_now = false;
            loop {
                if streaming > 0 {
                    let n = streaming.min(buf.len() - pos);
                    pos += n;
                    streaming -= n;
                    if streaming > 0 {
                        break;
                    }
                    continue;
                }
                let h = match protocol::header(&buf[pos..], SERVER_MAX) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        return End::ServerGone(format!("invalid message from the server: {e}"))
                    }
                };
                if buf.len() - pos < h.total() {
                    if h.total() <= STREAM_ABOVE {
                        buf.reserve(h.total() - (buf.len() - pos));
                        break;
                    }
                    // A large row or notice: stream it (never an error we need to read).
                    if h.tag == b'E' {
                        metrics.server_errors.fetch_add(1, Relaxed);
                    }
                    streaming = h.total() - (buf.len() - pos);
                    pos = buf.len();
                    break;
                }
                let body = &buf[pos + 5..pos + h.total()];
                let action = self.on_server_message(h.tag, body);
                match action {
                    Server::Forward => {}
                    Server::ForwardIdle => idle_now = true,
                    Server::Swallow | Server::Replay(_) => {
                        if fwd < pos {
                            if let Err(_e) = client_w.lock().await.write_all(&buf[fwd..pos]).await {
                                return End::ClientGone;
                            }
                            metrics.server_bytes.fetch_add((pos - fwd) as u64, Relaxed);
                        }
                        fwd = pos + h.total();
                        if let Server::Replay(bytes) = action {
                            if let Err(e) = server_w.lock().await.write_all(&bytes).await {
                                return End::ServerGone(e.to_string());
                            }
                        }
                    }
                }
                pos += h.total();
            }
            if fwd < pos {
                if client_w
                    .lock()
                    .await
                    .write_all(&buf[fwd..pos])
                    .await
                    .is_err()
                {
                    return End::ClientGone;
                }
                metrics.server_bytes.fetch_add((pos - fwd) as u64, Relaxed);
            }
            buf.advance(pos);
            if idle_now && *self.shared.draining.borrow() {
                return End::Shutdown;
            }
            // The session is idle (its ReadyForQuery went out): the buffer is quiet.
            if idle_now {
                buffer::quiet(&mut buf, filled);
            }
            buffer::make_room(&mut buf, filled, 32 * 1024);
            let room = buf.capacity() - buf.len();
            match rd.read_buf(&mut buf).await {
                Ok(0) => return End::ServerGone("the server closed the connection".into()),
                Err(e) => return End::ServerGone(e.to_string()),
                Ok(n) => filled = n >= room,
            }
        }
    }

    fn on_server_message(&self, tag: u8, body: &[u8]) -> Server {
        match tag {
            b'E' => {
                self.shared.metrics.server_errors.fetch_add(1, Relaxed);
                let mut st = self.lock();
                if st.recovery == Recovery::Proactive {
                    // A statement that no longer prepares: the client will hear it when it
                    // uses the statement.
                    tracing::debug!(error = ?protocol::error_fields(body), "preparing a statement again failed");
                    return Server::Swallow;
                }
                if st.recovery == Recovery::None
                    && !self.bound.load(Relaxed)
                    && protocol::sqlstate(body) == Some("0A000")
                    && !st.statements_unreliable
                    && st.open.is_none()
                    && st.inflight.len() == 1
                    && st.inflight[0].replayable()
                    && st.inflight[0]
                        .statement
                        .as_ref()
                        .is_some_and(|s| st.statements.contains_key(s))
                {
                    st.recovery = Recovery::SkipToReady;
                    st.inflight[0].replayed = true;
                    self.recovering.store(true, Relaxed);
                    st.replaying = true;
                    tracing::info!(
                        statement = st.inflight[0].statement.as_deref().unwrap_or_default(),
                        "prepared statement's result type changed: preparing it again and replaying the request"
                    );
                    return Server::Swallow;
                }
                if let Recovery::Swallow(_) = st.recovery {
                    // The re-Parse failed: the client sees that error, and nothing is hidden.
                    st.recovery = Recovery::None;
                    self.recovering.store(false, Relaxed);
                }
                Server::Forward
            }
            b'2' => {
                self.bound.store(true, Relaxed);
                if self.recovering.load(Relaxed) && self.lock().recovery == Recovery::SkipToReady {
                    return Server::Swallow;
                }
                Server::Forward
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                self.bound.store(false, Relaxed);
                let mut st = self.lock();
                if st.recovery == Recovery::Proactive {
                    // Our own Sync's answer: the client's request follows.
                    st.recovery = Recovery::None;
                    self.recovering.store(false, Relaxed);
                    return Server::Swallow;
                }
                if st.recovery == Recovery::SkipToReady {
                    let req = &st.inflight[0];
                    let name = req.statement.clone().unwrap_or_default();
                    let Some(stmt) = st.statements.get(&name).cloned() else {
                        // Checked when the error came and nothing changes the map until the
                        // replay ends; should it happen, the client gets this ReadyForQuery
                        // (the error is gone: better a missing error than a hung session).
                        st.recovery = Recovery::None;
                        self.recovering.store(false, Relaxed);
                        st.replaying = false;
                        st.inflight.pop_front();
                        st.txn = status;
                        drop(st);
                        self.replay_done.notify_waiters();
                        return Server::Forward;
                    };
                    let mut out = BytesMut::new();
                    protocol::reprepare(&mut out, &name, &stmt.query, &stmt.types);
                    out.extend_from_slice(req.raw.as_deref().unwrap_or_default());
                    st.recovery = Recovery::Swallow(2);
                    self.shared.metrics.prepared_recovered.fetch_add(1, Relaxed);
                    return Server::Replay(out);
                }
                st.recovery = Recovery::None;
                self.recovering.store(false, Relaxed);
                if let Some(mut raw) = st.inflight.pop_front().and_then(|r| r.raw) {
                    if raw.capacity() <= REPLAY_MAX {
                        raw.clear();
                        st.spare_raw = Some(raw);
                    }
                }
                st.txn = status;
                let was_replaying = std::mem::replace(&mut st.replaying, false);
                let idle = status == b'I' && st.inflight.is_empty() && st.open.is_none();
                let end = idle && std::mem::replace(&mut st.busy, false);
                drop(st);
                if end {
                    self.shared.traffic.end();
                }
                if was_replaying {
                    self.replay_done.notify_waiters();
                }
                if idle {
                    Server::ForwardIdle
                } else {
                    Server::Forward
                }
            }
            b'3' | b'1' => {
                let mut st = self.lock();
                if st.recovery == Recovery::Proactive {
                    return Server::Swallow;
                }
                if let Recovery::Swallow(n) = st.recovery {
                    st.recovery = if n > 1 {
                        Recovery::Swallow(n - 1)
                    } else {
                        Recovery::None
                    };
                    self.recovering.store(n > 1, Relaxed);
                    return Server::Swallow;
                }
                Server::Forward
            }
            // Rows and the like: a lock only while a replay is under way.
            _ if !self.recovering.load(Relaxed) => Server::Forward,
            _ => {
                let st = self.lock();
                match st.recovery {
                    Recovery::SkipToReady => Server::Swallow,
                    // Notifications, notices and parameter changes are the client's.
                    Recovery::Proactive if !matches!(tag, b'A' | b'N' | b'S') => Server::Swallow,
                    _ => Server::Forward,
                }
            }
        }
    }
}

enum Server {
    Forward,
    /// Forwarded; the session is idle now.
    ForwardIdle,
    Swallow,
    /// Swallow this ReadyForQuery and send these bytes to the server.
    Replay(BytesMut),
}
