//! Which client sessions are inside a transaction, and the cutover hold.
//!
//! A session is *busy* from the first message of a request sent while it was idle (outside a
//! transaction, nothing in flight) until the server says `ReadyForQuery` idle again. A hold
//! stops sessions from becoming busy (the request waits, the client sees latency), lets busy
//! ones finish, and reports when none is busy. It ends on `release` or, whatever happens, at
//! its deadline: a proxy never holds longer than `hold_max`.
//!
//! Race-free without a lock: a session announces itself busy (SeqCst) and then checks the
//! hold; the hold is set (SeqCst) and then the busy count is read. Either the session sees the
//! hold and steps back, or the hold sees the session and waits for it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;

pub struct Traffic {
    busy: AtomicI64,
    held: AtomicBool,
    /// Which hold (token) is on, to ignore a stale release.
    generation: AtomicU64,
    /// Signalled when the busy count drops.
    idle: Notify,
    /// `true` while held; sessions wait for `false`.
    gate: watch::Sender<bool>,
    /// `hold_max_ms`, in milliseconds (a reload may change it).
    hold_max_ms: AtomicU64,
    metrics: Arc<Metrics>,
    /// Bumped when a table may have changed shape (a hold released, the executor's
    /// `targets` notice): sessions re-prepare their statements before their next transaction.
    epoch: AtomicU64,
}

impl Traffic {
    pub fn new(hold_max: Duration, metrics: Arc<Metrics>) -> Arc<Traffic> {
        Arc::new(Traffic {
            busy: AtomicI64::new(0),
            held: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            idle: Notify::new(),
            gate: watch::channel(false).0,
            hold_max_ms: AtomicU64::new(hold_max.as_millis() as u64),
            metrics,
            epoch: AtomicU64::new(0),
        })
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn hold_max(&self) -> Duration {
        Duration::from_millis(self.hold_max_ms.load(SeqCst))
    }

    /// A reload's `hold_max_ms`: holds that start from now on.
    pub fn set_hold_max(&self, hold_max: Duration) {
        self.hold_max_ms.store(hold_max.as_millis() as u64, SeqCst);
    }

    /// Sessions inside a transaction or with a request in flight.
    pub fn busy(&self) -> i64 {
        self.busy.load(SeqCst)
    }

    pub fn is_held(&self) -> bool {
        self.held.load(SeqCst)
    }

    /// A session starts a request while idle: waits while a hold is on, then counts as busy.
    /// Returns how long it waited (zero when no hold was on).
    pub async fn begin(&self) -> Duration {
        self.busy.fetch_add(1, SeqCst);
        if !self.held.load(SeqCst) {
            return Duration::ZERO;
        }
        // Step back, wait for the release, try again.
        let started = Instant::now();
        self.metrics.clients_held.fetch_add(1, SeqCst);
        self.metrics.clients_held_total.fetch_add(1, SeqCst);
        loop {
            self.end();
            let mut rx = self.gate.subscribe();
            // The watch holds the latest value: a release between our check and this wait is seen.
            let _ = tokio::time::timeout(self.hold_max(), rx.wait_for(|held| !*held)).await;
            self.busy.fetch_add(1, SeqCst);
            if !self.held.load(SeqCst) || started.elapsed() >= self.hold_max() {
                break;
            }
        }
        self.metrics.clients_held.fetch_sub(1, SeqCst);
        let waited = started.elapsed();
        self.metrics.hold_wait.observe(waited);
        waited
    }

    /// The session is idle again (ReadyForQuery 'I' with nothing in flight), or gone.
    pub fn end(&self) {
        if self.busy.fetch_sub(1, SeqCst) <= 1 {
            self.idle.notify_waiters();
        }
    }

    /// Start a hold: new transactions wait from now on. Returns the hold's generation, for
    /// [`Traffic::release`]. The hold ends by itself after `hold_max`.
    pub fn hold(self: &Arc<Self>) -> u64 {
        let generation = self.generation.fetch_add(1, SeqCst) + 1;
        self.held.store(true, SeqCst);
        self.gate.send_replace(true);
        self.metrics.holds.fetch_add(1, SeqCst);
        let me = self.clone();
        let max = self.hold_max();
        tokio::spawn(async move {
            tokio::time::sleep(max).await;
            if me.release(generation) {
                tracing::warn!(
                    max_ms = max.as_millis() as u64,
                    "cutover hold reached its maximum and was released without the executor"
                );
            }
        });
        generation
    }

    /// Wait until no session is busy, up to `deadline`. `true` when all are idle (counted
    /// as an acknowledged hold).
    pub async fn wait_idle(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        let idle = loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy.load(SeqCst) <= 0 {
                break true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                break self.busy.load(SeqCst) <= 0;
            }
        };
        if idle {
            self.metrics.holds_acked.fetch_add(1, SeqCst);
        }
        idle
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    /// A swap may have changed a table's shape.
    pub fn schema_changed(&self) {
        self.epoch.fetch_add(1, SeqCst);
    }

    /// End hold `generation` (a newer hold is not ended by an older release). `true` if it
    /// was on.
    pub fn release(&self, generation: u64) -> bool {
        if self.generation.load(SeqCst) != generation {
            return false;
        }
        if !self.held.load(SeqCst) {
            // Released already (by the executor, before this timer): nothing changed since.
            return false;
        }
        // Before the gate opens: every held session sees the new epoch when it goes on.
        self.epoch.fetch_add(1, SeqCst);
        let was = self.held.swap(false, SeqCst);
        self.gate.send_replace(false);
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_waits_for_busy_sessions_and_holds_new_ones() {
        let t = Traffic::new(Duration::from_millis(500), Metrics::new());
        assert_eq!(t.begin().await, Duration::ZERO);
        let g = t.hold();
        assert!(
            !t.wait_idle(Duration::from_millis(20)).await,
            "one session is busy"
        );
        t.end();
        assert!(t.wait_idle(Duration::from_millis(20)).await);
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.begin().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a new request waits while held");
        assert!(t.release(g));
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(40), "{waited:?}");
        assert_eq!(t.busy(), 1);
    }

    #[tokio::test]
    async fn a_hold_ends_by_itself_at_its_maximum() {
        let t = Traffic::new(Duration::from_millis(100), Metrics::new());
        t.hold();
        let t0 = Instant::now();
        t.begin().await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(90) && took < Duration::from_millis(1000),
            "{took:?}"
        );
        // The hold's own timer ends it at the same moment (never later).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!t.is_held());
    }
}
