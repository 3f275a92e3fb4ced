//! The proxy's shutdown as its sessions see it: first **draining** (no new session; an idle
//! session closes, a busy one when its transaction ends), then, past the deadline, **closing**
//! (every session closes now).
//!
//! A session waits for it beside every read of its client, so the wait must cost next to
//! nothing: each session puts its task's waker in a slot of its own once, and a wait is then
//! one atomic load. The two `watch` channels this replaced put a waiter into a list all
//! sessions share and took it out again around every read (0.7 µs a transaction, BENCHMARKS §6).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

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
    slots: Mutex<Slots>,
}

/// The sessions' wakers, one slot each (16 bytes a session: an idle connection's memory is
/// counted, BENCHMARKS §6), and the slots given back.
#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Shutdown {
    pub fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(SeqCst))
    }

    pub fn draining(&self) -> bool {
        self.stage() >= Stage::Draining
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move on to `stage` (never back) and wake every session waiting for it.
    pub fn enter(&self, stage: Stage) {
        self.stage.fetch_max(stage as u8, SeqCst);
        for waker in self.slots().wakers.iter().flatten() {
            waker.wake_by_ref();
        }
    }

    /// A session's slot, for its life.
    pub fn register(&self) -> Registration<'_> {
        let mut slots = self.slots();
        let slot = match slots.free.pop() {
            Some(slot) => slot,
            None => {
                slots.wakers.push(None);
                slots.wakers.len() - 1
            }
        };
        Registration {
            shutdown: self,
            slot,
            waker: None,
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.slots().wakers.iter().flatten().count()
    }
}

/// One session's slot; dropping it gives the slot back.
pub struct Registration<'a> {
    shutdown: &'a Shutdown,
    slot: usize,
    /// The waker in the slot: a session registers again only when its waker changes (never,
    /// in a tokio task), so a wait takes no lock.
    waker: Option<Waker>,
}

impl<'a> Registration<'a> {
    /// Ready, with the stage, once shutdown has reached `at` (at once if it has).
    pub fn reached(&mut self, at: Stage) -> Reached<'_, 'a> {
        Reached { reg: self, at }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut slots = self.shutdown.slots();
        slots.wakers[self.slot] = None;
        slots.free.push(self.slot);
    }
}

pub struct Reached<'r, 'a> {
    reg: &'r mut Registration<'a>,
    at: Stage,
}

impl Future for Reached<'_, '_> {
    type Output = Stage;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Stage> {
        let this = self.get_mut();
        let shutdown = this.reg.shutdown;
        let stage = shutdown.stage();
        if stage >= this.at {
            return Poll::Ready(stage);
        }
        if !this
            .reg
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            shutdown.slots().wakers[this.reg.slot] = Some(waker.clone());
            this.reg.waker = Some(waker);
            // Entered before the slot held this waker: its wake may have missed it.
            let stage = shutdown.stage();
            if stage >= this.at {
                return Poll::Ready(stage);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiting_session_wakes_at_each_stage_and_its_slot_goes_with_it() {
        let shutdown = Arc::new(Shutdown::default());
        assert_eq!(shutdown.stage(), Stage::Serving);
        let waiting = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut reg = shutdown.register();
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
        // The slot is used again.
        let again = shutdown.register();
        assert_eq!(again.slot, 0);
    }

    #[tokio::test]
    async fn a_stage_already_reached_is_ready_at_once() {
        let shutdown = Shutdown::default();
        shutdown.enter(Stage::Draining);
        let mut reg = shutdown.register();
        assert_eq!(reg.reached(Stage::Draining).await, Stage::Draining);
        // Ready at once, so nothing was put in its slot.
        assert_eq!(shutdown.registered(), 0);
    }
}
