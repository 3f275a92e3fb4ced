//! The Docker dev database (`--dev docker[:VERSION]`): a PostgreSQL server in a throwaway
//! container, so that a desired schema's SQL never runs on the target.
//!
//! - `image.rs` builds the image `tandem-dev-postgres:<major>` on this machine, from Debian's
//!   packages with debootstrap, because the daemon may have no registry to pull from
//!   ([`build`], [`ensure`], [`image_present`]).
//! - `container.rs` runs one container of it with testcontainers and removes it on drop
//!   ([`start`], [`DevContainer`]).
//! - `entrypoint.sh` and `prune.sh` go into the image; their text is part of its recipe.
//!
//! Docker API versions: testcontainers 0.28 drives the daemon through bollard 0.21, whose
//! requests carry no API version in their path (bollard drops it when it builds the URL), so the
//! daemon answers in its own version; this is what lets it work against a Docker 20.10 daemon
//! (API 1.41) although bollard's models are for API 1.53. The tests in `tests/docker.rs` run
//! against whatever daemon the machine has and would show a break.

pub mod container;
mod error;
pub mod image;

pub use container::{start, DevContainer};
pub use error::DockerError;
pub use image::{build, ensure, image_present, tag, PgMajor};
