//! Accepting client connections, the connection limit, and graceful shutdown: on the
//! shutdown signal stop accepting, let sessions finish their transactions (each closes at
//! its next idle moment), and close whatever is left at the deadline.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cancel::CancelMap;
use crate::config::Config;
use crate::control::{self, ControlArgs};
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::protocol;
use crate::session::{self, Shared};
use crate::shutdown::{Shutdown, Stage};
use crate::traffic::Traffic;

/// Everything a running proxy needs besides its listener.
pub struct Proxy {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// tandem's own password for the control and mirror connections (from `password_file`).
    pub password: Option<String>,
    /// This proxy's id in tandem.proxies.
    pub id: String,
    /// Settings read again (on SIGHUP), applied as they come (`reload.rs`).
    pub reloads: Option<tokio::sync::mpsc::UnboundedReceiver<crate::config::FileConfig>>,
}

/// Serve clients on `listener` until `shutdown` completes, then drain.
pub async fn serve(
    listener: TcpListener,
    proxy: Proxy,
    shutdown: impl Future<Output = ()>,
) -> Result<(), crate::error::Error> {
    let Proxy {
        config,
        metrics,
        password,
        id,
        mut reloads,
    } = proxy;
    config.check_tls()?;
    let tls = match (&config.file.tls_cert, &config.file.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::acceptor(c, k)?),
        _ => None,
    };
    let traffic = Traffic::new(config.file.hold_max(), metrics.clone());
    let mirror = if config.file.mirror_sample > 0.0 {
        Mirror::start(
            config.tandems(),
            password.clone(),
            id.clone(),
            &config.file,
            metrics.clone(),
        )
    } else {
        Mirror::disabled()
    };
    mirror.join_holds(traffic.clone());
    let shared = Arc::new(Shared {
        config: arc_swap::ArcSwap::new(config.clone()),
        metrics: metrics.clone(),
        traffic: traffic.clone(),
        cancels: CancelMap::default(),
        mirror: mirror.clone(),
        tls: arc_swap::ArcSwapOption::new(tls.map(Arc::new)),
        shutdown: Shutdown::default(),
    });
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (control_stop_tx, control_stop) = watch::channel(false);
    let control = tokio::spawn(control::run(
        ControlArgs {
            upstream: config.tandems(),
            password,
            proxy_id: id,
            listen,
            traffic,
            mirror,
        },
        async move {
            let mut rx = control_stop;
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    // Sessions run on one single-threaded runtime per core: a session's two directions and
    // its wakeups stay on one thread, which costs far less than a work-stealing scheduler
    // waking threads across cores on every message (measured: see BENCHMARKS.md).
    let threads = config.file.worker_threads.max(1);
    let mut workers = Vec::with_capacity(threads);
    let mut senders = Vec::with_capacity(threads);
    for i in 0..threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Work>();
        senders.push(tx);
        let shared = shared.clone();
        let metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tandem-proxy-{i}"))
            .spawn(move || worker((i, threads), rx, shared, metrics))
            .map_err(|e| {
                crate::error::Error::System(format!("cannot start a proxy worker thread: {e}"))
            })?;
        workers.push(thread);
    }
    // The workers' lag probe, on this runtime: a worker keeps no timer of its own, which it
    // would otherwise look at every time it waits for its sockets. Ends with the senders.
    let probed: Vec<_> = senders.iter().map(|s| s.downgrade()).collect();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(LAG_PROBE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let at = std::time::Instant::now();
            let mut sent = false;
            for s in probed.iter().filter_map(|s| s.upgrade()) {
                sent |= s.send(Work::Probe(at)).is_ok();
            }
            if !sent {
                return;
            }
        }
    });
    let mut next = 0usize;
    tokio::pin!(shutdown);
    loop {
        let (mut socket, peer) = tokio::select! {
            reload = next_reload(&mut reloads) => {
                match reload {
                    None => reloads = None,
                    Some(file) => match crate::reload::apply(&shared, file) {
                        Ok(later) => {
                            tracing::info!("settings reloaded: open sessions go on; new limits, timeouts, hold_max, mirror_sample and TLS certificate apply now");
                            for l in later {
                                tracing::warn!("{l}");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "reload refused: the running settings stay"),
                    },
                }
                continue;
            }
            _ = &mut shutdown => {
                // `/healthz` says not ready from now on, while sessions drain.
                metrics.draining.store(true, Relaxed);
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        metrics.connections_total.fetch_add(1, Relaxed);
        let config = shared.config.load_full();
        if metrics.connections_active.load(Relaxed) >= config.file.max_connections as i64 {
            metrics.connections_refused.fetch_add(1, Relaxed);
            let max = config.file.max_connections;
            tracing::warn!(%peer, max, "connection refused: the proxy is at max_connections");
            tokio::spawn(async move {
                let msg = format!("tandem proxy has reached max_connections ({max})");
                let _ = socket
                    .write_all(&protocol::error_response(
                        "FATAL",
                        "53300",
                        &msg,
                        Some(
                            "close idle connections or raise max_connections in the proxy's config",
                        ),
                    ))
                    .await;
            });
            continue;
        }
        if metrics.connections_starting.load(Relaxed) >= config.file.max_startups as i64 {
            metrics.connections_refused.fetch_add(1, Relaxed);
            let max = config.file.max_startups;
            tracing::warn!(%peer, max, "connection refused: max_startups connections are still in startup");
            tokio::spawn(async move {
                let msg =
                    format!("tandem proxy has {max} connections still in startup (max_startups)");
                let _ = socket
                    .write_all(&protocol::error_response(
                        "FATAL",
                        "53300",
                        &msg,
                        Some("try again in a moment; clients that connect and send nothing are dropped after startup_timeout_ms"),
                    ))
                    .await;
            });
            continue;
        }
        // Counted here, so the limits hold before the worker picks the connection up; the
        // session takes it off `connections_starting` when its startup ends.
        metrics.connections_active.fetch_add(1, Relaxed);
        metrics.connections_starting.fetch_add(1, Relaxed);
        let std_socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                metrics.connections_active.fetch_sub(1, Relaxed);
                metrics.connections_starting.fetch_sub(1, Relaxed);
                tracing::warn!(%peer, error = %e, "could not hand a connection to a worker");
                continue;
            }
        };
        if senders[next % threads]
            .send(Work::Session(std_socket, peer))
            .is_err()
        {
            metrics.connections_active.fetch_sub(1, Relaxed);
            metrics.connections_starting.fetch_sub(1, Relaxed);
        }
        next = next.wrapping_add(1);
    }
    drop(listener);
    drop(senders);
    let config = shared.config.load_full();
    let open = metrics.connections_active.load(Relaxed);
    tracing::info!(
        open,
        deadline_ms = config.file.shutdown_timeout_ms,
        "shutting down: no new connections; sessions close when their transactions end"
    );
    shared.shutdown.enter(Stage::Draining);
    let deadline = tokio::time::Instant::now() + config.file.shutdown_timeout();
    let mut closed = false;
    while metrics.connections_active.load(Relaxed) > 0 {
        if !closed && tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                open = metrics.connections_active.load(Relaxed),
                "shutdown deadline reached: closing the remaining sessions"
            );
            shared.shutdown.enter(Stage::Closing);
            closed = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    shared.shutdown.enter(Stage::Closing);
    // The workers end once their sessions have.
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
    let _ = control_stop_tx.send(true);
    let _ = control.await;
    Ok(())
}

/// The next settings to apply; never, without a reload channel.
async fn next_reload(
    reloads: &mut Option<tokio::sync::mpsc::UnboundedReceiver<crate::config::FileConfig>>,
) -> Option<crate::config::FileConfig> {
    match reloads {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// How often each worker is handed a probe, to measure how late it picks work up.
const LAG_PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// What the accept loop hands a worker.
enum Work {
    Session(std::net::TcpStream, SocketAddr),
    /// Sent at this instant: how late the worker reads it is how late it runs what wakes
    /// it (`tandem_proxy_worker_lag_seconds`).
    Probe(std::time::Instant),
}

/// One worker thread: a single-threaded runtime running the sessions handed to it, until
/// the accept loop stops and its sessions have ended.
fn worker(
    (index, workers): (usize, usize),
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Work>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
) {
    // Sockets and timers only: the signal and process drivers would be checked at every
    // turn of the loop for nothing.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a proxy worker runtime");
            return;
        }
    };
    crate::metrics::set_shard(index, workers);
    runtime.block_on(async move {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    // How late this thread picked up what it was handed: what its sessions
                    // wait for it.
                    Some(Work::Probe(at)) => metrics.worker_lag.observe(at.elapsed()),
                    Some(Work::Session(socket, peer)) => {
                        let shared = shared.clone();
                        let metrics = metrics.clone();
                        sessions.spawn(async move {
                            match tokio::net::TcpStream::from_std(socket) {
                                Ok(socket) => session::run(shared, socket, peer).await,
                                Err(e) => {
                                    metrics.connections_starting.fetch_sub(1, Relaxed);
                                    tracing::warn!(%peer, error = %e, "could not register a connection");
                                }
                            }
                            metrics.connections_active.fetch_sub(1, Relaxed);
                        });
                    }
                    None => break,
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        while sessions.join_next().await.is_some() {}
    });
}
