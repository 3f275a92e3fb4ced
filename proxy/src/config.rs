//! The proxy's settings: the command line gives `listen`, `upstream` and `metrics`; an
//! optional TOML file (`--config`) gives the rest. Every field has a safe default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
use crate::upstream::Upstream;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where PostgreSQL is, and tandem's own user and database for the control and mirror
    /// connections. Clients authenticate end to end with their own credentials.
    pub upstream: Upstream,
    pub file: FileConfig,
}

impl Config {
    /// Where tandem's own connections go (the control connection, the dual reads):
    /// `control_upstream` when set, else `--upstream`. A transaction-mode pooler in between
    /// would carry neither LISTEN nor a session's settings, so with one as `--upstream` these
    /// go straight to PostgreSQL.
    pub fn tandems(&self) -> Upstream {
        self.file
            .control_upstream
            .as_deref()
            .and_then(|text| Upstream::parse(text).ok())
            .unwrap_or_else(|| self.upstream.clone())
    }

    /// A client that connected with TLS is never relayed in plain text over a network: with
    /// `tls_cert` set, a TCP upstream other than loopback (127.0.0.0/8, ::1, `localhost`)
    /// needs sslmode `require`, `verify-ca` or `verify-full` (`prefer` could fall back to
    /// plain text). A Unix socket or loopback upstream does not leave the host. Checked at
    /// start, so the proxy refuses to run rather than downgrade a session.
    pub fn check_tls(&self) -> Result<(), Error> {
        if self.file.tls_cert.is_some() && self.upstream.plain_over_network() {
            return Err(Error::Config(format!(
                "tls_cert is set, so clients reach the proxy over TLS, but the upstream {} has sslmode={}, which can carry their sessions over the network in plain text; add sslmode=verify-full&sslrootcert=/path/to/ca.pem (or sslmode=require) to --upstream, or reach the server over a Unix socket",
                self.upstream.describe(),
                self.upstream.tls.mode
            )));
        }
        Ok(())
    }
}

/// What `--config FILE` may set (TOML). Unknown keys are an error, so a typo is not ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// PEM certificate chain and private key: with both, TLS is terminated here; without,
    /// `SSLRequest` is answered `N`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A file (mode 0600) holding the password of the upstream URL's user, for tandem's own
    /// control and mirror connections. Never in the URL, the environment or arguments.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL itself, for tandem's own control and dual-read connections, when
    /// `--upstream` is a pooler (pgbouncer in transaction mode: LISTEN and session settings
    /// do not survive it). Same form as `--upstream`, tandem's user, no password.
    pub control_upstream: Option<String>,
    /// Threads running client sessions (default: one per two cores, at least one; see
    /// [`default_worker_threads`]).
    pub worker_threads: usize,
    /// Client connections at once; one more is refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Client connections still in startup (TLS, the startup packet, authentication) at
    /// once; one more is refused with SQLSTATE 53300, so clients that open connections and
    /// send nothing hold at most this many of `max_connections`, each for `startup_timeout_ms`.
    pub max_startups: usize,
    /// The largest message a client may send (bytes); larger is a protocol violation.
    pub max_message_bytes: usize,
    /// Time a client has to finish startup and authentication.
    pub startup_timeout_ms: u64,
    /// Time to reach the upstream before the client gets an error.
    pub connect_timeout_ms: u64,
    /// The longest a cutover hold may last, whatever the executor does.
    pub hold_max_ms: u64,
    /// On SIGTERM: how long running transactions may go on before connections are closed.
    pub shutdown_timeout_ms: u64,
    /// Fraction (0..=1) of reads on migrating tables to compare.
    pub mirror_sample: f64,
    /// Comparisons waiting at most; beyond it samples are dropped (and counted).
    pub mirror_queue: usize,
    /// Connections running comparisons.
    pub mirror_workers: usize,
    /// Comparisons a second at most, over all workers (0: no limit). Each costs the server
    /// about two reads; on a saturated server this is what dual reads take from clients.
    /// When limited, a worker also rests four times as long as its last comparison took,
    /// so a loaded server gets fewer.
    pub mirror_rate: u32,
    /// Per comparison: `statement_timeout` on the mirror connection.
    pub mirror_timeout_ms: u64,
    /// Log a request that took this long or longer, from its first byte read to its
    /// ReadyForQuery written, with where the time went (0: never).
    pub log_slow_requests_ms: u64,
}

/// The proxy shares its machine with what it relays for: the application, or PostgreSQL.
/// Each worker thread waits in its own `epoll_wait`, so more threads see fewer ready sockets
/// per wakeup and switch context more often. On 2 cores, under pgbench at 16 clients, one
/// worker spent a median 1.06 × pgbouncer's CPU per transaction and two workers 1.17 ×
/// (six workloads each; BENCHMARKS.md §6, 2026-12-07). So one thread per two cores; a proxy
/// with cores of its own sets `worker_threads` to them.
pub fn default_worker_threads(cores: usize) -> usize {
    (cores / 2).max(1)
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            tls_cert: None,
            tls_key: None,
            password_file: None,
            control_upstream: None,
            worker_threads: default_worker_threads(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            max_connections: 1000,
            max_startups: 100,
            max_message_bytes: 64 << 20,
            startup_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            hold_max_ms: 2_000,
            shutdown_timeout_ms: 30_000,
            mirror_sample: 0.01,
            mirror_queue: 1024,
            mirror_workers: 2,
            mirror_rate: 200,
            mirror_timeout_ms: 5_000,
            log_slow_requests_ms: 0,
        }
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        let config: FileConfig = toml::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "the config file {} is not valid: {e}",
                path.display()
            ))
        })?;
        config
            .validate()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), Error> {
        if let Some(text) = &self.control_upstream {
            Upstream::parse(text).map_err(|e| {
                Error::Config(format!(
                    "control_upstream: {}",
                    e.to_string().replace("--upstream", "it")
                ))
            })?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Config(
                "tls_cert and tls_key go together: set both, or neither".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.mirror_sample) {
            return Err(Error::Config(format!(
                "mirror_sample is {}, it must be between 0 and 1 (0.01 compares one read in a hundred)",
                self.mirror_sample
            )));
        }
        if self.max_connections == 0 || self.max_startups == 0 || self.max_message_bytes < 1024 {
            return Err(Error::Config(
                "max_connections and max_startups must be at least 1 and max_message_bytes at least 1024".into(),
            ));
        }
        if self.hold_max_ms == 0 || self.hold_max_ms > 10_000 {
            return Err(Error::Config(format!(
                "hold_max_ms is {}, it must be between 1 and 10000: clients wait that long at most",
                self.hold_max_ms
            )));
        }
        Ok(())
    }

    pub fn startup_timeout(&self) -> Duration {
        Duration::from_millis(self.startup_timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn hold_max(&self) -> Duration {
        Duration::from_millis(self.hold_max_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
    pub fn log_slow_requests(&self) -> Option<Duration> {
        (self.log_slow_requests_ms > 0).then(|| Duration::from_millis(self.log_slow_requests_ms))
    }
    pub fn mirror_timeout(&self) -> Duration {
        Duration::from_millis(self.mirror_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_worker_thread_per_two_cores_and_never_none() {
        for (cores, threads) in [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)] {
            assert_eq!(
                super::default_worker_threads(cores),
                threads,
                "{cores} cores"
            );
        }
    }
}
