//! The seam through which a running `tandem proxy` holds client traffic at the instant of a
//! swap. The engine calls [`CutoverHold::hold`] before each cutover (or rollback) attempt and
//! [`CutoverHold::release`] after it, whatever its outcome. Without a proxy, [`NoHold`] does
//! nothing and the swap relies on its short `lock_timeout` alone.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait CutoverHold: Send + Sync {
    /// Ask every proxy to stop starting transactions on `tables` and to acknowledge. `Ok(true)`
    /// when all acknowledged in time; `Ok(false)` when some did not (the engine then makes a
    /// plain `lock_timeout` attempt, never an unsafe one).
    fn hold<'a>(
        &'a self,
        migration: i64,
        tables: &'a [String],
        deadline: Duration,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// Let held traffic go. Called after every `hold`, whether the swap committed or not.
    fn release(&self, migration: i64) -> BoxFuture<'_, ()>;
}

/// No proxy: nothing to hold.
pub struct NoHold;

impl CutoverHold for NoHold {
    fn hold<'a>(
        &'a self,
        _m: i64,
        _t: &'a [String],
        _d: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        // No proxy acknowledged a hold: the swap relies on its lock_timeout alone.
        Box::pin(async { Ok(false) })
    }
    fn release(&self, _m: i64) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
