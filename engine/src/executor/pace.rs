//! How the copy, the log's drain and verify rest between their chunks.
//!
//! Two rules, which add up: `--batch-pause`, a fixed rest after every chunk of the copy and the
//! drain; and `--keep-throughput PCT`, a rest after every chunk of the copy and verify that
//! keeps the whole server's throughput at or above PCT % of its throughput with tandem idle
//! ("the load alone"). Not after the drain's: its work is the writes made while it runs, so
//! a drain that rests has more to do. gh-ost and
//! pt-online-schema-change throttle on thresholds the operator has to guess (threads running,
//! replica lag); this one is relative to the load that is there, so one setting serves a quiet
//! hour and a busy one, a 2-core server and a 64-core one.
//!
//! **What is counted** (`catalog/sql/throughput.sql`): the transaction ids the server has
//! completed, read live from its snapshot, when the load writes (then a window of [`WINDOW`]
//! says enough); else every database's commits and rollbacks from `pg_stat_database`, which
//! sessions report at most once a second (windows of [`STATS_WINDOW`]). The load alone is
//! counted over [`BASELINE`] with tandem idle: before prepare when the run starts there (no
//! trigger of tandem's on the table yet), else at the first chunk; again every [`REBASE`], and
//! when resting the most still leaves the rate short for three windows (then the load itself
//! changed, not what tandem takes of it).
//!
//! **How much to rest.** While a chunk runs, the others keep a share `cost` of their rate; while
//! tandem rests they have all of it. Resting a share `r` of the time gives them
//! `r + cost × (1 − r)`, so the rest that keeps the floor is `(floor − cost) / (1 − cost)`
//! ([`rest_for`]). Each window tells what `cost` was (from the rate seen and the rest taken:
//! [`learn`]), weighted by how much of the window was work; the first guess is one half (a
//! 2-core server, where the copy takes one core, measured 0.46–0.56). After a chunk that took
//! `t` the work sleeps `t × r / (1 − r)`; never more than [`MAX_REST`] of the time, so the work
//! goes on (the key log grows while the copy rests).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{Event, Observer, WaitReason};
use crate::error::EngineError;

/// How long tandem stays idle to measure the load alone.
const BASELINE: Duration = Duration::from_secs(3);
/// The shortest window a rate is read over, counting transaction ids.
const WINDOW: Duration = Duration::from_secs(1);
/// The same, counting the statistics' transactions (reported once a second).
const STATS_WINDOW: Duration = Duration::from_millis(2500);
/// How often the load alone is measured again.
const REBASE: Duration = Duration::from_secs(120);
/// A pause between two chunks longer than this (an index build, a phase's start) was not the
/// pace's: the window starts again after it.
const GAP: Duration = Duration::from_secs(1);
/// How often the pace says how it rests, when the rest has not moved much.
const SAY_EVERY: Duration = Duration::from_secs(30);
/// The most of the time the work rests.
pub(crate) const MAX_REST: f64 = 0.9;
/// Aim this far above the floor.
const MARGIN: f64 = 0.03;
/// The first guess of the share of their rate the others keep while a chunk runs.
const FIRST_COST: f64 = 0.5;
/// Below this rate (a second) the server is idle: there is nothing to keep.
const IDLE_RATE: f64 = 20.0;

const THROUGHPUT: &str = include_str!("../catalog/sql/throughput.sql");

/// What counts the load.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    /// Completed transaction ids: live, but only write transactions take one.
    Xids,
    /// `pg_stat_database`'s commits and rollbacks: every transaction, a second late.
    Stats,
    /// Neither moves: an idle server.
    Idle,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    xids: i64,
    stats: i64,
}

impl Reading {
    fn count(&self, s: Signal) -> i64 {
        match s {
            Signal::Xids => self.xids,
            Signal::Stats | Signal::Idle => self.stats,
        }
    }
}

/// The load alone: what counts it, and its rate.
#[derive(Debug, Clone, Copy)]
struct Alone {
    signal: Signal,
    rate: f64,
    at: Instant,
}

/// The rest rules of one `apply`, with what `--keep-throughput` has learned so far.
pub(crate) struct Pace {
    /// `--batch-pause`.
    fixed: Duration,
    /// `--keep-throughput`, as a share (0.7 for 70 %).
    floor: Option<f64>,
    alone: Option<Alone>,
    /// Where the current window started, and the rest taken in it.
    window: Option<(Reading, Duration)>,
    /// When the last rest ended.
    last_end: Option<Instant>,
    /// The share of their rate the others keep while a chunk runs.
    cost: f64,
    /// The share of the time the work rests.
    rest: f64,
    /// Windows in a row at [`MAX_REST`] and still below the floor.
    short: u32,
    /// Whether a rest has been reported yet (the metrics count runs of rests once).
    rested: bool,
    /// When the pace last said how it rests, and the rest it said.
    said: Option<(Instant, f64)>,
}

impl Pace {
    pub(crate) fn new(fixed: Duration, floor: Option<f64>) -> Pace {
        Pace {
            fixed,
            floor,
            alone: None,
            window: None,
            last_end: None,
            cost: FIRST_COST,
            rest: floor.map_or(0.0, |f| rest_for(FIRST_COST, f)),
            short: 0,
            rested: false,
            said: None,
        }
    }

    /// Whether `--keep-throughput` is on and still needs the load alone.
    pub(crate) fn needs_baseline(&self) -> bool {
        self.floor.is_some() && self.alone.is_none()
    }

    /// Measure the load alone now: tandem stays idle for [`BASELINE`] (after a moment to
    /// settle when `settle`: its last chunk's effect on the others must be counted first).
    pub(crate) async fn measure(
        &mut self,
        c: &Client,
        observe: &Observer,
        settle: bool,
    ) -> Result<(), EngineError> {
        let Some(floor) = self.floor else {
            return Ok(());
        };
        if settle {
            // The statistics lag a second; completed ids do not.
            let lag = match self.alone.map(|a| a.signal) {
                Some(Signal::Xids) => Duration::from_millis(200),
                _ => Duration::from_millis(1200),
            };
            tokio::time::sleep(lag).await;
        }
        let a = reading(c).await?;
        tokio::time::sleep(BASELINE).await;
        let b = reading(c).await?;
        let secs = (b.at - a.at).as_secs_f64();
        let rate = |s: Signal| (b.count(s) - a.count(s)).max(0) as f64 / secs;
        let signal = if rate(Signal::Xids) >= IDLE_RATE {
            Signal::Xids
        } else if rate(Signal::Stats) >= IDLE_RATE {
            Signal::Stats
        } else {
            Signal::Idle
        };
        let alone = Alone {
            signal,
            rate: rate(signal),
            at: b.at,
        };
        self.alone = Some(alone);
        self.window = Some((b, Duration::ZERO));
        self.short = 0;
        if signal == Signal::Idle {
            self.rest = 0.0;
        }
        // Measured again in the middle of the work, the load alone carries the cost of
        // tandem's triggers, which stay on.
        let idle = if settle {
            "with tandem resting (its triggers on)"
        } else {
            "with tandem idle"
        };
        observe(&Event::Note(match signal {
            Signal::Idle => format!(
                "--keep-throughput: the server ran {:.0} transactions a second {idle}: nothing to keep, the work goes at full speed (measured again in {} s)",
                rate(Signal::Stats),
                REBASE.as_secs()
            ),
            Signal::Xids | Signal::Stats => format!(
                "--keep-throughput: the server ran {:.0} {} a second {idle}; the copy and verify rest to keep it at or above {:.0} a second ({:.0} %)",
                alone.rate,
                if signal == Signal::Xids { "write transactions" } else { "transactions" },
                alone.rate * floor,
                floor * 100.0
            ),
        }));
        Ok(())
    }

    /// After a chunk of work that took `worked`, with no transaction open on `c`: read the
    /// load when a window has passed, learn from it, and rest as the rules say (`fixed`: the
    /// fixed `--batch-pause` too).
    pub(crate) async fn after(
        &mut self,
        c: &Client,
        observe: &Observer,
        worked: Duration,
        fixed: bool,
    ) -> Result<(), EngineError> {
        if fixed {
            self.pause().await;
            self.count_rest(self.fixed);
        }
        let Some(floor) = self.floor else {
            return Ok(());
        };
        let Some(alone) = self.alone else {
            return self.measure(c, observe, true).await;
        };
        if alone.at.elapsed() >= REBASE || self.short >= 3 {
            return self.measure(c, observe, true).await;
        }
        let now = Instant::now();
        let gap = self.gap(worked);
        let span = match alone.signal {
            Signal::Xids => WINDOW,
            _ => STATS_WINDOW,
        };
        match self.window {
            // Work that the pace did not space (an index build, a phase's start) is no
            // measure of it: the window starts here.
            _ if gap => self.window = Some((reading(c).await?, Duration::ZERO)),
            Some((start, rested)) if now - start.at >= span && alone.signal != Signal::Idle => {
                let end = reading(c).await?;
                let secs = (end.at - start.at).as_secs_f64();
                let rate =
                    (end.count(alone.signal) - start.count(alone.signal)).max(0) as f64 / secs;
                let ratio = rate / alone.rate;
                let r = (rested.as_secs_f64() / secs).clamp(0.0, 1.0);
                self.cost = learn(self.cost, ratio, r);
                self.rest = rest_for(self.cost, floor);
                if self.rest >= MAX_REST && ratio < floor {
                    self.short += 1;
                } else {
                    self.short = 0;
                }
                self.window = Some((end, Duration::ZERO));
                observe(&Event::Paced {
                    ratio,
                    rest: self.rest,
                });
                // Said as a line when the rest moved by 10 points, or every 30 s.
                let say = self.said.is_none_or(|(at, rest)| {
                    at.elapsed() >= SAY_EVERY || (rest - self.rest).abs() >= 0.1
                });
                if say {
                    self.said = Some((Instant::now(), self.rest));
                    observe(&Event::Note(format!(
                        "--keep-throughput: the server ran at {:.0} % of its rate alone over the last {:.1} s, resting {:.0} % of it; the work now rests {:.0} % of the time",
                        ratio * 100.0,
                        secs,
                        r * 100.0,
                        self.rest * 100.0
                    )));
                }
            }
            Some(_) => {}
            None => self.window = Some((reading(c).await?, Duration::ZERO)),
        }
        self.sleep(observe, worked).await;
        Ok(())
    }

    /// After a batch of the log's drain: the fixed rest only (see `drain.rs`).
    pub(crate) async fn pause(&self) {
        if !self.fixed.is_zero() {
            tokio::time::sleep(self.fixed).await;
        }
    }

    /// After a chunk of work inside a transaction (whose snapshot would hide the load): rest
    /// by what the pace knows, without reading.
    pub(crate) async fn rest(&mut self, observe: &Observer, worked: Duration) {
        if self.floor.is_some() && self.alone.is_some() {
            if self.gap(worked) {
                // The window began before work the pace did not space: the next reading
                // starts a new one.
                self.window = None;
            }
            self.sleep(observe, worked).await;
        }
    }

    /// Whether the chunk that just took `worked` began well after the last rest ended (or
    /// is the first).
    fn gap(&self, worked: Duration) -> bool {
        let now = Instant::now();
        let began = now.checked_sub(worked).unwrap_or(now);
        self.last_end.is_none_or(|end| began > end + GAP)
    }

    async fn sleep(&mut self, observe: &Observer, worked: Duration) {
        let pause = rest_after(worked, self.rest);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
            self.count_rest(pause);
            observe(&Event::Waited {
                reason: WaitReason::Throughput,
                slept: pause,
                first: !self.rested,
            });
            self.rested = true;
        }
        self.last_end = Some(Instant::now());
    }

    fn count_rest(&mut self, d: Duration) {
        if let Some((_, rested)) = &mut self.window {
            *rested += d;
        }
    }
}

/// The server's counts now (see `sql/throughput.sql`).
async fn reading(c: &Client) -> Result<Reading, EngineError> {
    let row = c
        .query_one(THROUGHPUT, &[])
        .await
        .map_err(EngineError::sql("read the server's transaction counts"))?;
    Ok(Reading {
        at: Instant::now(),
        xids: row.get(0),
        stats: row.get(1),
    })
}

/// The share of their rate the others keep while a chunk runs, learned from one window: they
/// kept `ratio` of the load alone while tandem rested `rest` of the window. A window of mostly
/// rest says little of the work: it moves the guess by as much as the window worked.
pub(crate) fn learn(cost: f64, ratio: f64, rest: f64) -> f64 {
    let worked = (1.0 - rest).clamp(0.0, 1.0);
    if worked < 0.05 {
        return cost;
    }
    let seen = ((ratio - rest) / worked).clamp(0.0, 1.0);
    (cost + 0.6 * worked * (seen - cost)).clamp(0.0, 1.0)
}

/// The share of the time to rest so that the others keep `floor` (and [`MARGIN`]) of their
/// rate, when they keep `cost` of it while a chunk runs.
pub(crate) fn rest_for(cost: f64, floor: f64) -> f64 {
    let want = (floor + MARGIN).min(1.0);
    if cost >= want {
        return 0.0;
    }
    ((want - cost) / (1.0 - cost).max(1e-6)).clamp(0.0, MAX_REST)
}

/// How long to rest after a chunk that took `worked`, so that rests are `rest` of the time.
pub(crate) fn rest_after(worked: Duration, rest: f64) -> Duration {
    let rest = rest.clamp(0.0, MAX_REST);
    worked.mul_f64(rest / (1.0 - rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose others keep `cost` of their rate while a chunk runs, as the pace sees
    /// it: windows of the rest it asks for.
    fn windows(cost: f64, floor: f64, n: usize) -> Vec<(f64, f64)> {
        let mut guess = FIRST_COST;
        let mut rest = rest_for(guess, floor);
        (0..n)
            .map(|_| {
                let ratio = rest + cost * (1.0 - rest);
                guess = learn(guess, ratio, rest);
                rest = rest_for(guess, floor);
                (ratio, rest)
            })
            .collect()
    }

    #[test]
    fn a_two_core_server_is_kept_at_the_floor_from_the_first_window() {
        // The copy takes one of two cores: the clients keep 46 % while it runs.
        let w = windows(0.46, 0.7, 6);
        for (ratio, _) in &w {
            assert!((0.7..0.78).contains(ratio), "{w:?}");
        }
    }

    #[test]
    fn a_server_the_work_barely_touches_is_not_held_back() {
        // The first window rests by the first guess; the second hardly at all.
        let w = windows(0.97, 0.7, 4);
        assert!(w[0].1 < 0.3, "{w:?}");
        assert!(w[1..].iter().all(|(_, rest)| *rest == 0.0), "{w:?}");
    }

    #[test]
    fn the_guess_moves_by_as_much_as_the_window_worked() {
        // All rest: nothing learned.
        assert_eq!(learn(0.5, 1.0, 0.99), 0.5);
        // All work: most of the way to what was seen.
        assert!((learn(0.5, 0.3, 0.0) - 0.38).abs() < 1e-9);
        // What was seen is bounded: a rate above the load alone is a cost of nothing.
        assert_eq!(learn(1.0, 1.4, 0.0), 1.0);
    }

    #[test]
    fn the_rest_keeps_the_floor_and_never_stops_the_work() {
        assert_eq!(rest_for(0.8, 0.7), 0.0);
        assert!((rest_for(0.5, 0.7) - 0.46).abs() < 1e-9);
        assert_eq!(rest_for(0.0, 0.99), MAX_REST);
    }

    #[test]
    fn the_rest_after_a_chunk_makes_the_share() {
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1000.0 - ms).abs() < 0.001;
        assert!(near(rest_after(Duration::from_millis(500), 0.0), 0.0));
        assert!(near(rest_after(Duration::from_millis(500), 0.5), 500.0));
        // 90 % at most: nine times the chunk.
        assert!(near(rest_after(Duration::from_millis(100), 2.0), 900.0));
    }
}
