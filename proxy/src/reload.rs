//! SIGHUP: the settings file read again and applied without dropping a session. Limits and
//! timeouts (`max_connections`, `max_startups`, `max_message_bytes`, `startup_timeout_ms`,
//! `connect_timeout_ms`, `shutdown_timeout_ms`), `hold_max_ms`, `mirror_sample` and the TLS
//! certificate and key (rotation: new sessions get the new certificate) apply at once.
//! What sets up threads and connections (`worker_threads`, `mirror_workers`,
//! `mirror_queue`, `mirror_rate`, `mirror_timeout_ms`, `password_file`, `control_upstream`,
//! turning dual reads on or off) is read at start only: a change to it is reported as
//! waiting for a restart. A file that is not valid changes nothing.

use std::sync::Arc;

use crate::config::{Config, FileConfig};
use crate::session::Shared;

/// Apply `file` to the running proxy. Returns the changes that wait for a restart, or why
/// nothing was applied.
pub(crate) fn apply(shared: &Shared, file: FileConfig) -> Result<Vec<String>, crate::error::Error> {
    file.validate()?;
    let old = shared.config.load_full();
    let new = Config {
        upstream: old.upstream.clone(),
        file,
    };
    new.check_tls()?;
    let tls = match (&new.file.tls_cert, &new.file.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(crate::tls::acceptor(cert, key)?)),
        _ => None,
    };
    let (o, n) = (&old.file, &new.file);
    let mut later = Vec::new();
    for (name, same) in [
        ("worker_threads", o.worker_threads == n.worker_threads),
        ("mirror_workers", o.mirror_workers == n.mirror_workers),
        ("mirror_queue", o.mirror_queue == n.mirror_queue),
        ("mirror_rate", o.mirror_rate == n.mirror_rate),
        (
            "mirror_timeout_ms",
            o.mirror_timeout_ms == n.mirror_timeout_ms,
        ),
        ("password_file", o.password_file == n.password_file),
        ("control_upstream", o.control_upstream == n.control_upstream),
    ] {
        if !same {
            later.push(format!(
                "{name} changed: it takes effect when the proxy restarts"
            ));
        }
    }
    if (o.mirror_sample > 0.0) != (n.mirror_sample > 0.0) {
        later.push(
            "mirror_sample turns dual reads on or off: that takes effect when the proxy restarts"
                .into(),
        );
    } else {
        shared.mirror.set_sample(n.mirror_sample);
    }
    shared.traffic.set_hold_max(n.hold_max());
    shared.tls.store(tls);
    shared.config.store(Arc::new(new));
    Ok(later)
}
