//! PostgreSQL servers that tandem starts and owns, never the target.
//!
//! - [`Cluster::start_throwaway`] starts a cluster owned by the calling process alone, in a
//!   temporary directory, stopped and removed on drop (`tandem demo`, the dev database of
//!   `--dev local`). See `cluster.rs`.
//! - [`shared::shared`] finds or starts one local cluster shared by every process that asks,
//!   kept under a directory and stopped by a reaper once the last of them has exited (the
//!   test suite's server). See `shared.rs` and `reaper.rs`.
//! - [`docker::start`] runs a throwaway server in a Docker container, from an image it builds
//!   from Debian's packages when missing (the dev database of `--dev docker`). See `docker/`.
//!
//! Environment:
//!
//! | variable | effect |
//! |---|---|
//! | `TANDEM_PG_BIN` | directory of `initdb`, `pg_ctl`, `postgres` (default `/usr/lib/postgresql/15/bin`) |
//! | `TANDEM_PG_DIR` | where the shared cluster lives (default `<target>/tandem-pg`) |
//! | `CARGO_TARGET_DIR` | honoured for the default above |
//! | `TANDEM_PG_TMPFS=0` | keep the shared cluster's data on disk rather than in /dev/shm (see `shared.rs`) |
//! | `TANDEM_DEBIAN_MIRROR` | where the Docker dev image's packages come from (default `http://deb.debian.org/debian`) |
//! | `DOCKER_HOST` | the Docker daemon of `docker` (default `unix:///var/run/docker.sock`) |

pub mod cluster;
pub mod conninfo;
pub mod docker;
mod error;
pub mod ident;
pub mod owner;
pub mod reaper;
pub mod shared;

pub use cluster::Cluster;
pub use error::{chain, HarnessError};

use std::future::Future;

/// Run `fut` to completion on a fresh current-thread runtime in a helper thread.
///
/// Works whether or not the caller is itself inside a tokio runtime (where `block_on` would
/// panic), which is what `Drop` impls and the synchronous [`Cluster`] API need.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build a tokio runtime for the PostgreSQL harness")
                .block_on(fut)
        });
        match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
