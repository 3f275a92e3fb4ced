//! How the executor and the proxies talk, through the database only (`migrations/0003_proxy.sql`,
//! `0005_hardening.sql`). One place for both sides, so the two cannot drift apart:
//!
//! - the executor writes a row of `tandem.proxy_signals` ([`WRITE`]: a hold, a release, new
//!   mirror targets) and, in the same statement, notifies [`PROXY_CHANNEL`] with the row's
//!   `seq`: a *doorbell* ([`doorbell`]). Any role may notify any channel, so a proxy acts on
//!   the rows ([`READ`], [`Signal::of_row`]), which only tandem's role can write, never on a
//!   payload;
//! - a proxy answers a hold with a row of `tandem.proxy_acks` and a notification on
//!   [`ACK_CHANNEL`] carrying the hold's token, on which the executor wakes up to read the
//!   acknowledgements;
//! - both sides wait on notifications with a [`Pump`]: a task that drives the connection and
//!   hands each notification's payload over.

mod pump;
mod signal;

pub use pump::Pump;
pub use signal::{doorbell, Kind, Signal, ACKNOWLEDGE, READ, TARGETS, WRITE};

/// The proxies listen here for the executor's doorbells.
pub const PROXY_CHANNEL: &str = "tandem_proxy";
/// The executor listens here for the proxies' acknowledgements (payload: the hold's token).
pub const ACK_CHANNEL: &str = "tandem_proxy_ack";
