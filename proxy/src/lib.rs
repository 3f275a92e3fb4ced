//! `tandem proxy`: a PostgreSQL wire proxy in session mode (one server connection per client
//! connection). It passes traffic through, mirrors a sample of reads on migrating tables to
//! the other table and compares them in one snapshot (dual-read drift detection), and holds
//! new transactions for the instant of a cutover. It coordinates with the executor through
//! the database only (tandem's tables and LISTEN/NOTIFY), never by calling it.
//!
//! Layout: `protocol` frames and decodes wire messages (never panics); `session` runs one
//! client connection (startup, authentication relayed end to end, the relay, prepared
//! statements recovered across a type change); `cancel` routes cancel requests; `traffic`
//! knows which sessions are inside a transaction and holds the others; `control` registers
//! the proxy, heartbeats and listens for holds; `mirror` samples, compares and records;
//! `metrics` serves Prometheus text and `/healthz`; `server` accepts connections and shuts
//! down gracefully (`shutdown` is how sessions hear of it); `check` is `--check-config`.

pub mod buffer;
pub mod cancel;
pub mod check;
pub mod config;
pub mod control;
pub mod error;
pub mod metrics;
pub mod mirror;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod tls;
pub mod traffic;
pub mod upstream;

pub use config::Config;
pub use server::{serve, Proxy};
