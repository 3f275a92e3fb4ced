//! `tandem proxy`: parse the settings, bind, and serve until SIGTERM or Ctrl-C.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use tokio::net::TcpListener;

use crate::args::ProxyArgs;
use crate::exit::{self, Failure};

pub async fn run(a: ProxyArgs) -> Result<u8, Failure> {
    let upstream = proxy::upstream::Upstream::parse(&a.upstream).map_err(Failure::usage)?;
    let file = match &a.config {
        Some(path) => proxy::config::FileConfig::load(path).map_err(Failure::usage)?,
        None => proxy::config::FileConfig::default(),
    };
    let password = match &file.password_file {
        Some(path) => Some(read_password(path).map_err(Failure::usage)?),
        None => None,
    };
    if a.check_config {
        return check_config(&a, proxy::Config { upstream, file }, password.as_deref()).await;
    }
    let listener = TcpListener::bind(&a.listen).await.map_err(|e| {
        Failure::usage(format!(
            "cannot listen on {}: {e} (is another process using the port? is the address this host's?)",
            a.listen
        ))
    })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| a.listen.clone());
    let metrics = proxy::metrics::Metrics::new();
    let stop_metrics = tokio::sync::watch::channel(false);
    if let Some(addr) = &a.metrics {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::usage(format!("cannot serve metrics on {addr}: {e}")))?;
        let m = metrics.clone();
        let mut rx = stop_metrics.0.subscribe();
        tokio::spawn(proxy::metrics::serve(l, m, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        tracing::info!(metrics = addr, "serving Prometheus metrics");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let id = format!(
        "{host}:{}:{local}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    tracing::info!(listen = %local, upstream = upstream.describe(), id, "tandem proxy started");
    let config = Arc::new(proxy::Config { upstream, file });
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        }
    };
    proxy::serve(
        listener,
        proxy::Proxy {
            config,
            metrics,
            password,
            id,
            reloads: Some(reloads(a.config.clone())),
        },
        shutdown,
    )
    .await
    .map_err(failure)?;
    let _ = stop_metrics.0.send(true);
    tracing::info!("tandem proxy stopped");
    Ok(exit::OK)
}

/// SIGHUP: the `--config` file read again and handed to the proxy (`proxy::reload`); a
/// file that does not read or is not valid is reported, and the running settings stay.
fn reloads(
    path: Option<std::path::PathBuf>,
) -> tokio::sync::mpsc::UnboundedReceiver<proxy::config::FileConfig> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let Some(path) = &path else {
                tracing::warn!("SIGHUP: there is no --config file to read again");
                continue;
            };
            match proxy::config::FileConfig::load(path) {
                Ok(file) => {
                    tracing::info!(config = %path.display(), "SIGHUP: reloading the settings");
                    if tx.send(file).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP: reload refused: the running settings stay")
                }
            }
        }
    });
    rx
}

/// `--check-config`: the addresses parse, then `proxy::check`; nothing is served.
async fn check_config(
    a: &ProxyArgs,
    config: proxy::Config,
    password: Option<&str>,
) -> Result<u8, Failure> {
    for (what, addr) in [
        ("--listen", Some(&a.listen)),
        ("--metrics", a.metrics.as_ref()),
    ] {
        if let Some(addr) = addr {
            let _resolved = tokio::net::lookup_host(addr.as_str()).await.map_err(|e| {
                Failure::usage(format!(
                    "{what} {addr} is not an address to listen on ({e}); write HOST:PORT, e.g. 0.0.0.0:6432"
                ))
            })?;
        }
    }
    match proxy::check::check(&config, password).await {
        Ok(lines) => {
            println!("listen: {}", a.listen);
            for line in lines {
                println!("{line}");
            }
            println!("the proxy can serve with these settings");
            Ok(exit::OK)
        }
        Err(problem) => Err(failure(problem)),
    }
}

/// The exit code of the side the fix is on: the settings (64), the upstream (69), or this
/// machine (1).
fn failure(e: proxy::error::Error) -> Failure {
    let code = match e {
        proxy::error::Error::Config(_) => exit::USAGE,
        proxy::error::Error::Upstream(_) => exit::UNAVAILABLE,
        proxy::error::Error::System(_) => exit::FAILURE,
    };
    Failure::new(code, anyhow!(e))
}

/// The password file: one line, readable by its owner only.
fn read_password(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password_file {} is readable by others: run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        return Err(format!("password_file {} is empty", path.display()));
    }
    Ok(password)
}
