//! Progress of `apply`, `rollback` and `finalize` on stderr. On a terminal: an indicatif bar
//! per table being copied (rows done of the total, rate, ETA; a line once done) and a spinner
//! naming the phase or what the executor waits for, with every other event as a line above
//! them. Elsewhere (a
//! log, a test): one plain line per event, the lines scripts and tests read.

use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use engine::executor::Event;
use indicatif::{
    HumanCount, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};

/// How often a spinner turns.
const TICK: Duration = Duration::from_millis(120);

pub struct Progress {
    /// `None` when stderr is not a terminal: plain lines then.
    screen: Option<Mutex<Screen>>,
}

struct Screen {
    multi: MultiProgress,
    /// Under the bars: the phase running, or what the executor waits for.
    spinner: Option<ProgressBar>,
    /// What the spinner says when nothing is waited for.
    phase: Option<String>,
    /// One bar per table copied, in the order their copies started.
    bars: Vec<(String, ProgressBar)>,
}

impl Progress {
    /// Bars on a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::terminal()
        } else {
            Progress { screen: None }
        }
    }

    fn terminal() -> Progress {
        Progress {
            screen: Some(Mutex::new(Screen {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                spinner: None,
                phase: None,
                bars: Vec::new(),
            })),
        }
    }

    fn screen(&self) -> Option<MutexGuard<'_, Screen>> {
        self.screen
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Show what the executor reported.
    pub fn event(&self, e: &Event) {
        let Some(mut s) = self.screen() else {
            if let Some(line) = line(e) {
                eprintln!("{line}");
            }
            return;
        };
        match e {
            Event::PhaseStarted(p) => {
                let what = format!("phase {p}");
                s.phase = Some(what.clone());
                s.spin(what);
            }
            Event::PhaseDone(..) => {
                s.phase = None;
                s.stop_spinner();
                s.println(&line(e).unwrap_or_default());
            }
            Event::Backfill { .. } => {
                s.backfill(e);
                s.unwait();
            }
            // A wait is said again at each check: the spinner says it, rather than a line
            // each second.
            Event::Waiting(w) => s.spin(format!("waiting: {w}")),
            Event::Waited { .. }
            | Event::Paced { .. }
            | Event::ReplicationLag(_)
            | Event::LogBacklog { .. } => {}
            _ => {
                if let Some(line) = line(e) {
                    s.println(&line);
                }
                s.unwait();
            }
        }
    }

    /// A line of the caller's, above the bars on a terminal.
    pub fn println(&self, line: &str) {
        match self.screen() {
            Some(s) => s.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Say on the spinner what the command does now (on a terminal only: a log gets the
    /// executor's own lines).
    pub fn status(&self, what: &str) {
        if let Some(mut s) = self.screen() {
            s.phase = Some(what.to_string());
            s.spin(what.to_string());
        }
    }

    /// The command is over: the spinner goes, the bars stay as they ended.
    pub fn finish(&self) {
        if let Some(mut s) = self.screen() {
            s.stop_spinner();
            s.phase = None;
        }
    }
}

impl Screen {
    fn println(&self, line: &str) {
        if self.multi.println(line).is_err() {
            eprintln!("{line}");
        }
    }

    fn spin(&mut self, message: String) {
        match &self.spinner {
            Some(sp) => sp.set_message(message),
            None => {
                let sp = self.multi.add(ProgressBar::new_spinner());
                sp.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .expect("the template is valid"),
                );
                sp.set_message(message);
                sp.enable_steady_tick(TICK);
                self.spinner = Some(sp);
            }
        }
    }

    /// Back to the phase on the spinner after a wait.
    fn unwait(&mut self) {
        if let (Some(sp), Some(phase)) = (&self.spinner, &self.phase) {
            if sp.message() != *phase {
                sp.set_message(phase.clone());
            }
        }
    }

    fn stop_spinner(&mut self) {
        if let Some(sp) = self.spinner.take() {
            sp.finish_and_clear();
            self.multi.remove(&sp);
        }
    }

    fn backfill(&mut self, e: &Event) {
        let Event::Backfill {
            table,
            done,
            total,
            rows_per_sec: rate,
        } = e
        else {
            return;
        };
        let (done, total, rate) = (*done, *total, *rate);
        let bar = match self.bars.iter().find(|(t, _)| t == table) {
            Some((_, bar)) => bar.clone(),
            None => {
                // Into the screen first, so nothing draws it on its own.
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                let bar = match &self.spinner {
                    Some(sp) => self.multi.insert_before(sp, bar),
                    None => self.multi.add(bar),
                };
                bar.set_style(
                    ProgressStyle::with_template(
                        "backfill {prefix}: [{bar:30.cyan/blue}] {human_pos}/{human_len} rows ({percent}%), {msg}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar.set_prefix(table.clone());
                self.bars.push((table.clone(), bar.clone()));
                bar
            }
        };
        if bar.is_finished() {
            return;
        }
        bar.set_length(total.max(done).max(0) as u64);
        bar.set_position(done.max(0) as u64);
        if done >= total {
            // Done: its last state becomes a line, in order with the lines around it.
            bar.finish_and_clear();
            self.multi.remove(&bar);
            self.println(&line(e).unwrap_or_default());
        } else if rate > 0.0 {
            let eta = Duration::from_secs_f64((total - done) as f64 / rate);
            bar.set_message(format!(
                "{} rows/s, ETA {}",
                HumanCount(rate as u64),
                HumanDuration(eta)
            ));
        } else {
            bar.set_message("starting".to_string());
        }
    }
}

/// The plain line for an event (what a log gets), if it has one.
pub fn line(e: &Event) -> Option<String> {
    Some(match e {
        Event::Backfill {
            table,
            done,
            total,
            rows_per_sec,
        } => {
            let pct = if *total > 0 {
                *done as f64 * 100.0 / *total as f64
            } else {
                100.0
            };
            let eta = if *rows_per_sec > 0.0 && total > done {
                format!(", ETA {:.0}s", (total - done) as f64 / rows_per_sec)
            } else {
                String::new()
            };
            format!(
                "backfill {table}: {done}/{total} rows ({pct:.0}%), {rows_per_sec:.0} rows/s{eta}"
            )
        }
        Event::PhaseStarted(p) => format!("phase {p}: started"),
        Event::PhaseDone(p, d) => format!("phase {p}: done in {:.1}s", d.as_secs_f64()),
        Event::Note(n) => n.clone(),
        Event::Warning(w) => format!("warning: {w}"),
        Event::Verify {
            table,
            rows,
            mismatched_ranges,
        } => format!("verify {table}: {rows} rows compared, {mismatched_ranges} range(s) differ"),
        Event::Cutover {
            attempt,
            ok,
            took,
            detail,
            ..
        } => format!(
            "cutover attempt {attempt}: {} in {} ms{}",
            if *ok { "committed" } else { "failed" },
            took.as_millis(),
            if *ok {
                String::new()
            } else {
                format!(" ({detail})")
            }
        ),
        Event::Waiting(w) => format!("waiting: {w}"),
        // Figures for metrics; the waits they count are already said by `Waiting`.
        Event::Waited { .. }
        | Event::Paced { .. }
        | Event::ReplicationLag(_)
        | Event::LogBacklog { .. } => return None,
        // Signed into a checkpoint file when asked (`--checkpoint-dir`), which says so.
        Event::AuditHead { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::state::Phase;

    #[test]
    fn log_lines_say_what_they_said_before_the_bars() {
        let backfill = Event::Backfill {
            table: "public.items".into(),
            done: 500,
            total: 1000,
            rows_per_sec: 100.0,
        };
        assert_eq!(
            line(&backfill).as_deref(),
            Some("backfill public.items: 500/1000 rows (50%), 100 rows/s, ETA 5s")
        );
        assert_eq!(
            line(&Event::PhaseDone(
                Phase::Verify,
                Duration::from_millis(1500)
            ))
            .as_deref(),
            Some("phase verify: done in 1.5s")
        );
        let failed = Event::Cutover {
            attempt: 2,
            ok: false,
            took: Duration::from_millis(51),
            lock_wait: Duration::from_millis(50),
            detail: "lock not granted".into(),
        };
        assert_eq!(
            line(&failed).as_deref(),
            Some("cutover attempt 2: failed in 51 ms (lock not granted)")
        );
        assert_eq!(line(&Event::ReplicationLag(Duration::from_secs(1))), None);
    }

    #[test]
    fn a_hidden_terminal_takes_every_event_without_panicking() {
        // The terminal code path, drawn nowhere: bars, spinner, waits and lines interleaved.
        let p = Progress::terminal();
        if let Some(s) = p.screen() {
            s.multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        p.event(&Event::PhaseStarted(Phase::Backfill));
        p.event(&Event::Waiting("paused".into()));
        for done in [0, 400, 1000] {
            p.event(&Event::Backfill {
                table: "public.items".into(),
                done,
                total: 1000,
                rows_per_sec: 200.0,
            });
        }
        p.println("a line of the caller's");
        p.event(&Event::PhaseDone(Phase::Backfill, Duration::from_secs(5)));
        p.status("finalizing");
        p.finish();
        let s = p.screen().expect("a terminal screen");
        assert_eq!(s.bars.len(), 1);
        assert!(s.bars[0].1.is_finished());
        assert_eq!(s.bars[0].1.position(), 1000);
        assert!(s.spinner.is_none());
        drop(s);
        // A late report of a finished copy (a resumed executor's) draws nothing again.
        p.event(&Event::Backfill {
            table: "public.items".into(),
            done: 1000,
            total: 1000,
            rows_per_sec: 200.0,
        });
        assert_eq!(p.screen().expect("a terminal screen").bars.len(), 1);
    }
}
