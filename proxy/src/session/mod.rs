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
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::buffer;
use crate::cancel::{self, CancelMap};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::mirror::{Mirror, Sample};
use crate::protocol::{self, ProtocolError, Startup};
use crate::shutdown::{self, Shutdown};
use crate::traffic::Traffic;
use crate::upstream::Stream;

mod client;
mod relay;
mod server;
mod startup;
mod stream;
mod timing;

use startup::{startup, Starting};
pub use stream::ClientStream;
use stream::{IntoHalves, Reader, Writer};
use timing::Timing;

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
    /// Draining (idle sessions close, busy ones when idle), then closing (every session).
    pub shutdown: Shutdown,
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

/// A request sent to the server, waiting for its ReadyForQuery.
#[derive(Debug, Default)]
struct Request {
    /// Started while the session was outside a transaction with nothing in flight.
    began_idle: bool,
    executes: u32,
    describes: bool,
    parses: bool,
    /// The statement the request's Bind named.
    statement: Option<Arc<str>>,
    /// The request's bytes, kept for a replay while it may still qualify.
    raw: Option<BytesMut>,
    /// Replayed once already: never again.
    replayed: bool,
    /// Timed: sent with nothing else in flight (its marks are `State::timing`).
    timed: bool,
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
    statements: HashMap<Arc<str>, Statement, foldhash::fast::RandomState>,
    /// A Parse too large to read went by: remembered statements may be stale, recover none.
    statements_unreliable: bool,
    /// The text bytes of `statements`, against [`STATEMENT_BYTES_MAX`].
    statement_bytes: usize,
    /// A request buffer to use again (one allocation per session, not per request).
    spare_raw: Option<BytesMut>,
    /// The marks of the one timed request open or in flight (only a request that found
    /// nothing in flight is timed, so there is at most one).
    timing: Option<Timing>,
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
                statements: HashMap::default(),
                statements_unreliable: false,
                statement_bytes: 0,
                spare_raw: None,
                timing: None,
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
}
