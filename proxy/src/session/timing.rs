//! Where a request's time goes, measured inside the proxy (BENCHMARKS §6 reads it): from the
//! read that brought its first byte, through its last byte written to the server, to the
//! first bytes of the answer read back and the ReadyForQuery written to the client. A hold
//! is counted apart. Only a request sent while nothing else was in flight is timed (the
//! common case; a pipelined request's stages overlap its neighbours').

use std::num::NonZeroU64;
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};

use crate::metrics::{Metrics, Stage};

/// Now, in microseconds of the monotonic clock. The marks are plain integers: taking them
/// and subtracting them costs a few instructions, where `Instant`'s arithmetic cost a
/// tenth of the proxy's own instructions per transaction (`bench/proxy/instructions.sh`).
pub(super) fn now() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000)
        .wrapping_add(t.tv_nsec as u64 / 1_000)
}

/// One request's marks so far, in 16 bytes: every session keeps one in its state, and a
/// few bytes more per session would put its task into a larger allocation (4.0 KiB per idle
/// connection, BENCHMARKS §6). Microseconds of [`now`]'s clock, and from the read
/// (saturating at 71 minutes).
#[derive(Debug)]
pub(super) struct Timing {
    /// The read that brought its first byte returned, plus one.
    read: NonZeroU64,
    /// Waited in a cutover hold before it was forwarded, µs.
    held: u32,
    /// Its last byte was written to the server, µs after `read`; 0: not yet.
    sent: u32,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Timing {
    pub(super) fn new(read: u64, held: Duration) -> Timing {
        Timing {
            read: NonZeroU64::MIN.saturating_add(read),
            held: micros(held),
            sent: 0,
        }
    }

    fn read(&self) -> u64 {
        self.read.get() - 1
    }

    pub(super) fn sent(&mut self, at: u64) {
        if self.sent == 0 {
            let d = at.saturating_sub(self.read());
            self.sent = u32::try_from(d).unwrap_or(u32::MAX).max(1);
        }
    }

    /// The answer's first bytes were read at `answered` and its ReadyForQuery written at
    /// `written` ([`now`]'s microseconds): count the stages, and log the request when it took
    /// `slow()` or longer (asked only of a request that took a millisecond or more, the
    /// setting's unit).
    pub(super) fn finish(
        self,
        answered: u64,
        written: u64,
        metrics: &Metrics,
        slow: impl FnOnce() -> Option<Duration>,
        server_pid: u32,
    ) {
        if self.sent == 0 {
            return;
        }
        let read = self.read();
        let sent = read + u64::from(self.sent);
        let held = u64::from(self.held);
        let stages = [
            (Stage::In, sent.saturating_sub(read).saturating_sub(held)),
            (Stage::Server, answered.saturating_sub(sent)),
            (Stage::Out, written.saturating_sub(answered)),
            (Stage::Total, written.saturating_sub(read)),
        ];
        metrics.observe_stages(&stages);
        let total = stages[3].1;
        if total < 1_000 {
            return;
        }
        if let Some(slow) = slow().filter(|s| total >= s.as_micros() as u64) {
            let ms = |us: u64| us as f64 / 1e3;
            tracing::info!(
                total_ms = ms(total),
                in_ms = ms(stages[0].1),
                held_ms = ms(held),
                server_ms = ms(stages[1].1),
                out_ms = ms(stages[2].1),
                slow_ms = slow.as_millis() as u64,
                server_pid,
                "slow request: the stages say where its time went"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_and_a_hold_is_not_the_proxys() {
        let metrics = Metrics::default();
        let t0 = now();
        let ms = |n: u64| n * 1_000;
        let mut t = Timing::new(t0, Duration::from_millis(30));
        t.sent(t0 + ms(32));
        t.sent(t0 + ms(90)); // the first mark stays
        t.finish(t0 + ms(40), t0 + ms(41), &metrics, || None, 1);
        let render = metrics.render();
        let value = |key: String| {
            let key = format!("{key} ");
            let line = render.lines().find(|l| l.starts_with(&key)).expect(&key);
            line[key.len()..].parse::<f64>().unwrap()
        };
        let sum = |stage: &str| {
            value(format!(
                "tandem_proxy_request_stage_seconds_sum{{stage=\"{stage}\"}}"
            ))
        };
        // The marks are whole microseconds: each stage is right to within a few.
        let close = |got: f64, want: f64| (got - want).abs() < 5e-6;
        assert!(close(sum("in"), 0.002), "{render}");
        assert!(close(sum("server"), 0.008), "{render}");
        assert!(close(sum("out"), 0.001), "{render}");
        assert!(close(sum("total"), 0.041), "{render}");
        assert!(render.contains("tandem_proxy_request_stage_seconds_count{stage=\"total\"} 1"));
        let max = value(r#"tandem_proxy_request_stage_max_seconds{stage="total"}"#.into());
        assert!(close(max, 0.041), "{render}");
        // The 41 ms total lands in the 50 ms bucket, not the 25 ms one.
        assert!(render
            .contains("tandem_proxy_request_stage_seconds_bucket{stage=\"total\",le=\"0.025\"} 0"));
        assert!(render
            .contains("tandem_proxy_request_stage_seconds_bucket{stage=\"total\",le=\"0.05\"} 1"));
    }

    #[test]
    fn a_timing_is_small_and_so_is_its_option() {
        assert_eq!(std::mem::size_of::<Timing>(), 16);
        assert_eq!(std::mem::size_of::<Option<Timing>>(), 16);
    }

    #[test]
    fn the_clock_moves_on_in_microseconds() {
        let a = now();
        std::thread::sleep(Duration::from_millis(5));
        let b = now();
        assert!((5_000..5_000_000).contains(&(b - a)), "{a} then {b}");
    }

    #[test]
    fn a_request_never_sent_is_not_counted() {
        let metrics = Metrics::default();
        let t0 = now();
        Timing::new(t0, Duration::ZERO).finish(t0, t0, &metrics, || None, 1);
        assert_eq!(metrics.stages[Stage::Total as usize].count(), 0);
    }
}
