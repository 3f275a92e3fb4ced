//! Accepting client connections, the connection limit, and graceful shutdown: on the
//! shutdown signal stop accepting, let sessions finish their transactions (each closes at
//! its next idle moment), and close whatever is left at the deadline.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

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
use crate::traffic::Traffic;

/// Everything a running proxy needs besides its listener.
pub struct Proxy {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// tandem's own password for the control and mirror connections (from `password_file`).
    pub password: Option<String>,
    /// This proxy's id in tandem.proxies.
    pub id: String,
}

/// Serve clients on `listener` until `shutdown` completes, then drain.
pub async fn serve(listener: TcpListener, proxy: Proxy, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let Proxy {
        config,
        metrics,
        password,
        id,
    } = proxy;
    let tls = match (&config.file.tls_cert, &config.file.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::acceptor(c, k)?),
        _ => None,
    };
    let traffic = Traffic::new(config.file.hold_max(), metrics.clone());
    let mirror = if config.file.mirror_sample > 0.0 {
        Mirror::start(config.upstream.clone(), password.clone(), id.clone(), &config.file, metrics.clone())
    } else {
        Mirror::disabled()
    };
    let (drain_tx, draining) = watch::channel(false);
    let (close_tx, closing) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: config.clone(),
        metrics: metrics.clone(),
        traffic: traffic.clone(),
        cancels: CancelMap::default(),
        mirror: mirror.clone(),
        tls,
        draining,
        closing,
    });
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (control_stop_tx, control_stop) = watch::channel(false);
    let control = tokio::spawn(control::run(
        ControlArgs {
            upstream: config.upstream.clone(),
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
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (mut socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
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
        if sessions.len() >= config.file.max_connections {
            metrics.connections_refused.fetch_add(1, Relaxed);
            let max = config.file.max_connections;
            tracing::warn!(%peer, max, "connection refused: the proxy is at max_connections");
            tokio::spawn(async move {
                let msg = format!("tandem proxy has reached max_connections ({max})");
                let _ = socket
                    .write_all(&protocol::error_response("FATAL", "53300", &msg, Some("close idle connections or raise max_connections in the proxy's config")))
                    .await;
            });
            continue;
        }
        let shared = shared.clone();
        let metrics = metrics.clone();
        sessions.spawn(async move {
            metrics.connections_active.fetch_add(1, Relaxed);
            session::run(shared, socket, peer).await;
            metrics.connections_active.fetch_sub(1, Relaxed);
        });
    }
    drop(listener);
    let open = sessions.len();
    tracing::info!(open, deadline_ms = config.file.shutdown_timeout_ms, "shutting down: no new connections; sessions close when their transactions end");
    let _ = drain_tx.send(true);
    let deadline = tokio::time::sleep(config.file.shutdown_timeout());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = sessions.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(open = sessions.len(), "shutdown deadline reached: closing the remaining sessions");
                let _ = close_tx.send(true);
                while sessions.join_next().await.is_some() {}
                break;
            }
        }
    }
    let _ = control_stop_tx.send(true);
    let _ = control.await;
    Ok(())
}
