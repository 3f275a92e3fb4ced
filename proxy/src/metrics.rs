//! Prometheus metrics: counters and gauges as atomics (no lock on the client's path), served
//! as the text exposition format on `--metrics ADDR` by a minimal HTTP responder (which
//! `tandem apply --metrics` reuses for the executor's figures).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the hold-duration histogram's buckets.
const HOLD_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0];
/// Upper bounds (seconds) of the request stages' and the workers' lag buckets: from a
/// tenth of a millisecond (a request's own time in the proxy) to seconds (a stall).
const TIME_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram of durations: per bucket a counter (cumulated when rendered, so an
/// observation touches one bucket), the sum, and the largest observation (which the
/// exposition format has no place for: rendered as a gauge, `NAME_max_seconds`). Each worker
/// thread counts into a shard of its own ([`set_shard`]): the client path's observations
/// never contend for a cache line across cores.
pub struct Histogram {
    bounds: &'static [f64],
    /// The bounds in microseconds, for the client path (no float arithmetic there).
    bounds_micros: [u64; BUCKETS_MAX],
    shards: Box<[Shard]>,
}

/// Buckets per histogram at most (the bounds and one above them all).
const BUCKETS_MAX: usize = 16;
/// Shards per histogram: worker threads beyond it share one.
const SHARDS: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct Shard {
    /// `buckets[i]`: observations in (bounds[i-1], bounds[i]]; `buckets[bounds.len()]`,
    /// above them all.
    buckets: [AtomicU64; BUCKETS_MAX],
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

thread_local! {
    /// This thread's shard, and whether it is the only thread writing it.
    static SHARD: std::cell::Cell<(usize, bool)> = const { std::cell::Cell::new((0, false)) };
}

/// Observations made on this thread go to a shard of its own: worker `i` of `workers` calls
/// it once. Shard 0 is for every other thread (they add atomically); with more workers than
/// shards, workers share theirs and add atomically too.
pub fn set_shard(i: usize, workers: usize) {
    let shard = 1 + i % (SHARDS - 1);
    SHARD.with(|s| s.set((shard, workers < SHARDS)));
}

/// Add `n` to `v`: a plain load and store when this thread is the only one writing it (no
/// locked instruction on the client's path), an atomic add otherwise.
fn add(v: &AtomicU64, n: u64, owned: bool) {
    if owned {
        v.store(v.load(Relaxed).wrapping_add(n), Relaxed);
    } else {
        v.fetch_add(n, Relaxed);
    }
}

/// Durations from a tenth of a millisecond to seconds ([`TIME_BUCKETS`]).
impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(TIME_BUCKETS)
    }
}

/// A [`Histogram`] over [`HOLD_BUCKETS`]: how long requests waited in a hold.
pub struct HoldHistogram(Histogram);

impl Default for HoldHistogram {
    fn default() -> Self {
        HoldHistogram(Histogram::new(HOLD_BUCKETS))
    }
}

impl std::ops::Deref for HoldHistogram {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() < BUCKETS_MAX, "too many buckets");
        let mut bounds_micros = [u64::MAX; BUCKETS_MAX];
        for (m, le) in bounds_micros.iter_mut().zip(bounds) {
            *m = (le * 1e6).round() as u64;
        }
        Histogram {
            bounds,
            bounds_micros,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        self.observe_micros(d.as_micros() as u64, SHARD.with(|s| s.get()));
    }

    /// One observation of `micros`, into this thread's shard (`SHARD`'s value).
    fn observe_micros(&self, micros: u64, (shard, owned): (usize, bool)) {
        let shard = &self.shards[shard];
        let i = self.bounds_micros[..self.bounds.len()].partition_point(|le| *le < micros);
        add(&shard.buckets[i], 1, owned);
        add(&shard.sum_micros, micros, owned);
        if micros > shard.max_micros.load(Relaxed) {
            shard.max_micros.fetch_max(micros, Relaxed);
        }
    }

    fn bucket(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s.buckets[i].load(Relaxed)).sum()
    }

    pub fn count(&self) -> u64 {
        (0..=self.bounds.len()).map(|i| self.bucket(i)).sum()
    }

    fn max_secs(&self) -> f64 {
        let max = self.shards.iter().map(|s| s.max_micros.load(Relaxed));
        max.max().unwrap_or(0) as f64 / 1e6
    }

    /// Render the series `name` with `labels` (`stage="server"`, or empty). The HELP and
    /// TYPE lines are the caller's, once per name.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, le) in self.bounds.iter().enumerate() {
            cumulative += self.bucket(i);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let count = cumulative + self.bucket(self.bounds.len());
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum: u64 = self.shards.iter().map(|s| s.sum_micros.load(Relaxed)).sum();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{braces} {}", sum as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_active: AtomicI64,
    /// Client connections accepted and not yet past startup.
    pub connections_starting: AtomicI64,
    /// Statement text the sessions keep (for replays and dual reads), in bytes.
    pub statement_bytes: AtomicI64,
    pub connections_refused: AtomicU64,
    pub client_bytes: AtomicU64,
    pub server_bytes: AtomicU64,
    pub queries: AtomicU64,
    pub server_errors: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub cancels: AtomicU64,
    pub prepared_recovered: AtomicU64,
    pub mirror_sampled: AtomicU64,
    pub mirror_comparisons: AtomicU64,
    pub mirror_mismatches: AtomicU64,
    pub mirror_skipped: AtomicU64,
    pub mirror_dropped: AtomicU64,
    pub mirror_errors: AtomicU64,
    pub holds: AtomicU64,
    pub holds_acked: AtomicU64,
    pub clients_held: AtomicI64,
    pub clients_held_total: AtomicU64,
    /// Notifications on `tandem_proxy` that named no signal row of tandem's.
    pub control_ignored: AtomicU64,
    /// The control connection: [`CONTROL_DOWN`], [`CONTROL_REGISTERED`] or
    /// [`CONTROL_NOT_INSTALLED`].
    pub control_state: AtomicI64,
    /// Set when the proxy stops accepting (SIGTERM): `/healthz` says not ready at once, so a
    /// load balancer sends no new client while sessions drain.
    pub draining: std::sync::atomic::AtomicBool,
    /// How long client requests waited in a hold.
    pub hold_wait: HoldHistogram,
    /// Where a request's time goes, by [`Stage`] (see `session::timing`).
    pub stages: [Histogram; Stage::ALL.len()],
    /// How late a worker thread's runtime woke a task that asked to sleep: the time every
    /// session on that worker waited for the thread (CPU starvation, a long poll).
    pub worker_lag: Histogram,
}

/// Where a request's time goes, from the read that brought its first byte to the write that
/// gave its ReadyForQuery to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the proxy on the way in: read, framed, written to the server (a hold excluded).
    In,
    /// From its last byte written to the server to the first bytes of its answer read back.
    Server,
    /// The answer in the proxy, from its first bytes read to its ReadyForQuery written.
    Out,
    /// All of it, a hold included.
    Total,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::In, Stage::Server, Stage::Out, Stage::Total];

    fn label(self) -> &'static str {
        match self {
            Stage::In => "in",
            Stage::Server => "server",
            Stage::Out => "out",
            Stage::Total => "total",
        }
    }
}

/// The control connection is not up (not yet, or lost): holds and dual reads wait for it.
pub const CONTROL_DOWN: i64 = 0;
/// Up and registered with tandem: cutover holds and dual reads work.
pub const CONTROL_REGISTERED: i64 = 1;
/// Up, but tandem's bookkeeping is not installed: the proxy passes traffic through.
pub const CONTROL_NOT_INSTALLED: i64 = 2;

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// `/healthz`: ready (and why not), from what the proxy knows now. Ready when the control
    /// connection is up (so the upstream is reachable with tandem's credentials): registered
    /// with tandem, or passing traffic through a database without tandem's bookkeeping. Not
    /// ready while it is down (a cutover hold could not reach this proxy) or draining.
    pub fn health(&self) -> (bool, &'static str) {
        if self.draining.load(Relaxed) {
            return (false, "shutting down: sessions are draining");
        }
        match self.control_state.load(Relaxed) {
            CONTROL_REGISTERED => (true, "ready: the upstream answers and the proxy is registered with tandem"),
            CONTROL_NOT_INSTALLED => (true, "ready: the upstream answers; tandem's bookkeeping is not installed there, so traffic passes through without cutover holds or dual reads"),
            _ => (false, "not ready: the control connection to the upstream is down (see the proxy's log); cutover holds could not reach this proxy"),
        }
    }

    /// One request's time in each stage, in microseconds.
    pub fn observe_stages(&self, stages: &[(Stage, u64)]) {
        let shard = SHARD.with(|s| s.get());
        for &(stage, micros) in stages {
            self.stages[stage as usize].observe_micros(micros, shard);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &AtomicU64); 20] = [
            (
                "connections_total",
                "client connections accepted",
                &self.connections_total,
            ),
            (
                "connections_refused_total",
                "client connections refused (limit, shutdown)",
                &self.connections_refused,
            ),
            (
                "client_bytes_total",
                "bytes from clients to the server",
                &self.client_bytes,
            ),
            (
                "server_bytes_total",
                "bytes from the server to clients",
                &self.server_bytes,
            ),
            (
                "queries_total",
                "requests relayed (Query, FunctionCall, or up to a Sync)",
                &self.queries,
            ),
            (
                "server_errors_total",
                "ErrorResponse messages from the server",
                &self.server_errors,
            ),
            (
                "protocol_errors_total",
                "clients disconnected for a malformed or oversized message",
                &self.protocol_errors,
            ),
            (
                "upstream_errors_total",
                "client sessions that could not reach or lost the upstream",
                &self.upstream_errors,
            ),
            (
                "cancels_total",
                "cancel requests routed to the server",
                &self.cancels,
            ),
            (
                "prepared_recovered_total",
                "prepared statements re-prepared after a result type change",
                &self.prepared_recovered,
            ),
            (
                "dual_read_sampled_total",
                "reads on migrating tables queued for comparison",
                &self.mirror_sampled,
            ),
            (
                "dual_read_comparisons_total",
                "reads compared against the other table",
                &self.mirror_comparisons,
            ),
            (
                "dual_read_mismatches_total",
                "comparisons whose rows differed in one snapshot",
                &self.mirror_mismatches,
            ),
            (
                "dual_read_skipped_total",
                "sampled reads not compared (not a plain read, not deterministic)",
                &self.mirror_skipped,
            ),
            (
                "dual_read_dropped_total",
                "samples dropped because the queue was full",
                &self.mirror_dropped,
            ),
            (
                "dual_read_errors_total",
                "comparisons that failed to run",
                &self.mirror_errors,
            ),
            ("holds_total", "cutover holds asked for", &self.holds),
            (
                "holds_acknowledged_total",
                "cutover holds acknowledged with every session idle",
                &self.holds_acked,
            ),
            (
                "clients_held_total",
                "requests (clients' and dual-read comparisons') that waited in a hold",
                &self.clients_held_total,
            ),
            (
                "control_notifications_ignored_total",
                "notifications on tandem_proxy that named no signal tandem wrote (another role's, or garbage): nothing was done",
                &self.control_ignored,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP tandem_proxy_{name} {help}\n# TYPE tandem_proxy_{name} counter\ntandem_proxy_{name} {}",
                v.load(Relaxed)
            );
        }
        let gauges: [(&str, &str, &AtomicI64); 5] = [
            (
                "control_state",
                "the control connection: 0 down (holds and dual reads wait for it), 1 registered with tandem, 2 up but tandem's bookkeeping is not installed (traffic passes through)",
                &self.control_state,
            ),
            (
                "connections_active",
                "client connections open",
                &self.connections_active,
            ),
            (
                "connections_starting",
                "client connections still in startup (TLS, startup packet, authentication)",
                &self.connections_starting,
            ),
            (
                "statement_bytes",
                "statement text the sessions keep, for replays and dual reads (at most 8 MiB a session)",
                &self.statement_bytes,
            ),
            (
                "clients_held",
                "requests (clients' and dual-read comparisons') waiting in a hold now",
                &self.clients_held,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP tandem_proxy_{name} {help}\n# TYPE tandem_proxy_{name} gauge\ntandem_proxy_{name} {}",
                v.load(Relaxed)
            );
        }
        let name = "tandem_proxy_hold_wait_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} how long client requests waited in a hold\n# TYPE {name} histogram"
        );
        self.hold_wait.render(&mut out, name, "");
        let name = "tandem_proxy_request_stage_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} where requests' time goes: in (read to written to the server, a hold excluded), server (written to the answer's first bytes read), out (those bytes to the ReadyForQuery written to the client), total; requests sent while another was in flight are not timed\n# TYPE {name} histogram"
        );
        for stage in Stage::ALL {
            let label = format!("stage=\"{}\"", stage.label());
            self.stages[stage as usize].render(&mut out, name, &label);
        }
        let name = "tandem_proxy_request_stage_max_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} the longest request seen in each stage since the proxy started\n# TYPE {name} gauge"
        );
        for stage in Stage::ALL {
            let _ = writeln!(
                out,
                "{name}{{stage=\"{}\"}} {}",
                stage.label(),
                self.stages[stage as usize].max_secs()
            );
        }
        let name = "tandem_proxy_worker_lag_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} how late a worker thread picked up a probe handed to it every 10 ms: what every session on it waited for the thread\n# TYPE {name} histogram"
        );
        self.worker_lag.render(&mut out, name, "");
        let name = "tandem_proxy_worker_lag_max_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} the longest worker lag seen since the proxy started\n# TYPE {name} gauge\n{name} {}",
            self.worker_lag.max_secs()
        );
        out
    }
}

/// Answer every HTTP request on `listener` with the metrics, until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let health = metrics.clone();
    serve_pages(
        listener,
        move || metrics.render(),
        Some(Arc::new(move || health.health())),
        shutdown,
    )
    .await
}

/// `/healthz`'s answer: ready, and the sentence that says why (or why not).
pub type Health = Arc<dyn Fn() -> (bool, &'static str) + Send + Sync>;

/// Answer every HTTP request on `listener` with the text `render` makes at that moment (the
/// Prometheus exposition format), until `shutdown` completes. `tandem apply --metrics` serves
/// its own figures with it.
pub async fn serve_text<F>(listener: TcpListener, render: F, shutdown: impl Future<Output = ()>)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    serve_pages(listener, render, None, shutdown).await
}

/// [`serve_text`], and with `health`, `GET /healthz`: 200 when ready, else 503, with a
/// sentence saying which (for load balancers and orchestrators' readiness probes).
pub async fn serve_pages<F>(
    listener: TcpListener,
    render: F,
    health: Option<Health>,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    tokio::pin!(shutdown);
    loop {
        let (mut socket, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    continue;
                }
            },
        };
        let render = render.clone();
        let health = health.clone();
        tokio::spawn(async move {
            // Read the request head (bounded), whatever it asks: there is one page.
            let mut buf = [0u8; 2048];
            let mut seen = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while seen < buf.len() {
                    match socket.read(&mut buf[seen..]).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => seen += n,
                    }
                    if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                        return true;
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let wants_health = buf[..seen].starts_with(b"GET /healthz ")
                || buf[..seen].starts_with(b"HEAD /healthz ");
            let (status, kind, body) = match (&health, wants_health) {
                (Some(health), true) => {
                    let (ready, why) = health();
                    let status = if ready {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    (status, "text/plain", format!("{why}\n"))
                }
                _ => ("200 OK", "text/plain; version=0.0.4", render()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            if !buf[..seen].starts_with(b"HEAD ") {
                let _ = socket.write_all(body.as_bytes()).await;
            }
            let _ = socket.shutdown().await;
        });
    }
}
