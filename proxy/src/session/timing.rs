//! Where a request's time goes, measured inside the proxy (BENCHMARKS §6 reads it): from the
//! read that brought its first byte, through its last byte written to the server, to the
//! first bytes of the answer read back and the ReadyForQuery written to the client. A hold
//! is counted apart. Only a request sent while nothing else was in flight is timed (the
//! common case; a pipelined request's stages overlap its neighbours').

use std::time::{Duration, Instant};

use crate::metrics::{Metrics, Stage};

/// One request's marks so far.
#[derive(Debug)]
pub(super) struct Timing {
    /// The read that brought its first byte returned.
    read: Instant,
    /// Waited in a cutover hold before it was forwarded.
    held: Duration,
    /// Its last byte was written to the server.
    sent: Option<Instant>,
}

impl Timing {
    pub(super) fn new(read: Instant, held: Duration) -> Timing {
        Timing {
            read,
            held,
            sent: None,
        }
    }

    pub(super) fn sent(&mut self, at: Instant) {
        self.sent.get_or_insert(at);
    }

    /// The answer's first bytes were read at `answered` and its ReadyForQuery written at
    /// `written`: count the stages, and log the request when it took `slow()` or longer
    /// (asked only of a request that took a millisecond or more, the setting's unit).
    pub(super) fn finish(
        self,
        answered: Instant,
        written: Instant,
        metrics: &Metrics,
        slow: impl FnOnce() -> Option<Duration>,
        server_pid: u32,
    ) {
        let Some(sent) = self.sent else { return };
        let stages = [
            (
                Stage::In,
                sent.saturating_duration_since(self.read)
                    .saturating_sub(self.held),
            ),
            (Stage::Server, answered.saturating_duration_since(sent)),
            (Stage::Out, written.saturating_duration_since(answered)),
            (Stage::Total, written.saturating_duration_since(self.read)),
        ];
        for (stage, d) in stages {
            metrics.observe_stage(stage, d);
        }
        let total = stages[3].1;
        if total < Duration::from_millis(1) {
            return;
        }
        if let Some(slow) = slow().filter(|s| total >= *s) {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            tracing::info!(
                total_ms = ms(total),
                in_ms = ms(stages[0].1),
                held_ms = ms(self.held),
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
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timing::new(t0, ms(30));
        t.sent(t0 + ms(32));
        t.sent(t0 + ms(90)); // the first mark stays
        t.finish(t0 + ms(40), t0 + ms(41), &metrics, || None, 1);
        let render = metrics.render();
        let sum = |stage: &str| {
            let key = format!("tandem_proxy_request_stage_seconds_sum{{stage=\"{stage}\"}} ");
            let line = render.lines().find(|l| l.starts_with(&key)).expect(&key);
            line[key.len()..].parse::<f64>().unwrap()
        };
        assert!((sum("in") - 0.002).abs() < 1e-9, "{render}");
        assert!((sum("server") - 0.008).abs() < 1e-9);
        assert!((sum("out") - 0.001).abs() < 1e-9);
        assert!((sum("total") - 0.041).abs() < 1e-9);
        assert!(render.contains("tandem_proxy_request_stage_seconds_count{stage=\"total\"} 1"));
        assert!(render.contains("tandem_proxy_request_stage_max_seconds{stage=\"total\"} 0.041"));
        // The 41 ms total lands in the 50 ms bucket, not the 25 ms one.
        assert!(render
            .contains("tandem_proxy_request_stage_seconds_bucket{stage=\"total\",le=\"0.025\"} 0"));
        assert!(render
            .contains("tandem_proxy_request_stage_seconds_bucket{stage=\"total\",le=\"0.05\"} 1"));
    }

    #[test]
    fn a_request_never_sent_is_not_counted() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        Timing::new(t0, Duration::ZERO).finish(t0, t0, &metrics, || None, 1);
        assert_eq!(metrics.stages[Stage::Total as usize].count(), 0);
    }
}
