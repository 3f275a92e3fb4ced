//! The proxy's shutdown as its sessions see it: first **draining** (no new session; an idle
//! session closes, a busy one when its transaction ends), then, past the deadline, **closing**
//! (every session closes now).
//!
//! A session waits for it beside every read of its client, so the wait must cost next to
//! nothing: each session registers one waker slot of its own for its life, and a wait is a
//! check of one atomic and the slot's registration (two uncontended compare-and-swaps). The
//! two `watch` channels this replaced put a waiter into a list every channel shares and took
//! it out again around every read (0.7 µs a transaction, BENCHMARKS §6).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// How far shutdown has gone; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Serving = 0,
    /// No new sessions; idle ones close, busy ones when their transaction ends.
    Draining = 1,
    /// The deadline passed: every session closes now.
    Closing = 2,
}

impl Stage {
    fn from_u8(v: u8) -> Stage {
        match v {
            0 => Stage::Serving,
            1 => Stage::Draining,
            _ => Stage::Closing,
        }
    }
}

#[derive(Default)]
pub struct Shutdown {
    stage: AtomicU8,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    next: u64,
    wakers: HashMap<u64, Arc<AtomicWaker>>,
}

impl Shutdown {
    pub fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(SeqCst))
    }

    pub fn draining(&self) -> bool {
        self.stage() >= Stage::Draining
    }

    /// Move on to `stage` (never back) and wake every session waiting for it.
    pub fn enter(&self, stage: Stage) {
        self.stage.fetch_max(stage as u8, SeqCst);
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for waker in sessions.wakers.values() {
            waker.wake();
        }
    }

    /// A session's slot, for its life.
    pub fn register(&self) -> Registration<'_> {
        let waker = Arc::new(AtomicWaker::new());
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let id = sessions.next;
        sessions.next += 1;
        sessions.wakers.insert(id, waker.clone());
        Registration {
            shutdown: self,
            id,
            waker,
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.sessions.lock().unwrap().wakers.len()
    }
}

/// One session's slot; dropping it takes the slot out.
pub struct Registration<'a> {
    shutdown: &'a Shutdown,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl Registration<'_> {
    /// Ready, with the stage, once shutdown has reached `at` (at once if it has). Waits for
    /// one task at a time: the session's.
    pub fn reached(&self, at: Stage) -> Reached<'_> {
        Reached {
            shutdown: self.shutdown,
            waker: &self.waker,
            at,
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shutdown
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wakers
            .remove(&self.id);
    }
}

pub struct Reached<'a> {
    shutdown: &'a Shutdown,
    waker: &'a AtomicWaker,
    at: Stage,
}

impl Future for Reached<'_> {
    type Output = Stage;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Stage> {
        let stage = self.shutdown.stage();
        if stage >= self.at {
            return Poll::Ready(stage);
        }
        self.waker.register(cx.waker());
        // Entered between the check and the registration: its wake may have missed us.
        let stage = self.shutdown.stage();
        if stage >= self.at {
            return Poll::Ready(stage);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_session_wakes_at_each_stage_and_its_slot_goes_with_it() {
        let shutdown = Arc::new(Shutdown::default());
        assert_eq!(shutdown.stage(), Stage::Serving);
        let waiting = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let reg = shutdown.register();
                let first = reg.reached(Stage::Draining).await;
                let second = reg.reached(Stage::Closing).await;
                (first, second)
            })
        };
        // Let it register and wait.
        while shutdown.registered() == 0 {
            tokio::task::yield_now().await;
        }
        shutdown.enter(Stage::Draining);
        assert!(shutdown.draining());
        shutdown.enter(Stage::Closing);
        // Never back.
        shutdown.enter(Stage::Draining);
        assert_eq!(shutdown.stage(), Stage::Closing);
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the session was woken")
            .unwrap();
        assert!(first >= Stage::Draining, "{first:?}");
        assert_eq!(second, Stage::Closing);
        assert_eq!(shutdown.registered(), 0);
    }

    #[tokio::test]
    async fn a_stage_already_reached_is_ready_at_once() {
        let shutdown = Shutdown::default();
        shutdown.enter(Stage::Draining);
        let reg = shutdown.register();
        assert_eq!(reg.reached(Stage::Draining).await, Stage::Draining);
        assert_eq!(shutdown.registered(), 1);
    }
}
