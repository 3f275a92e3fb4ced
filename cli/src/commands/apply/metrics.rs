//! `--metrics ADDR` of `apply`, `rollback` and `finalize`: the executor's events gathered
//! into figures and served as Prometheus text while the command runs, with the proxy's HTTP
//! responder (`proxy::metrics::serve_text`).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use engine::executor::Event;
use engine::state::Phase;
use tokio::net::TcpListener;

use crate::exit::Failure;

/// Every reason the executor waits for, so each series exists from the start.
const WAITS: [&str; 5] = ["gate", "paused", "load", "replication_lag", "throughput"];

/// What one `tandem` command's executor reported so far.
pub struct RunMetrics {
    command: &'static str,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    migration: i64,
    /// The phase running now.
    phase: Option<Phase>,
    /// How long each phase this process ran took.
    phase_seconds: Vec<(Phase, f64)>,
    /// Per table copied, in the order their copies started.
    tables: Vec<Copy>,
    replication_lag: Option<f64>,
    /// `--keep-throughput`'s last window: the server's rate over the load alone, and the
    /// share of the time the work rests.
    paced: Option<(f64, f64)>,
    /// Per table whose log drains: the entries not taken yet, as last read.
    log_backlog: Vec<(String, i64)>,
    /// Per reason: waits (a run of checks counts once) and seconds waited.
    waits: Vec<(&'static str, u64, f64)>,
    cutover_attempts: u64,
    cutover_failed: u64,
    cutover_last_seconds: Option<f64>,
    cutover_last_lock_wait: Option<f64>,
    warnings: u64,
}

/// One figure of a table's copy.
type PerTable = fn(&Copy) -> f64;

struct Copy {
    table: String,
    done: i64,
    total: i64,
    rows_per_sec: f64,
}

impl RunMetrics {
    /// Figures for `command` (`apply`, `rollback` or `finalize`) on migration `migration`.
    pub fn new(command: &'static str, migration: i64) -> Arc<RunMetrics> {
        Arc::new(RunMetrics {
            command,
            state: Mutex::new(State {
                migration,
                waits: WAITS.iter().map(|w| (*w, 0, 0.0)).collect(),
                ..State::default()
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The command went on to another migration (`finalize --expired`): its figures start
    /// afresh.
    pub fn migration(&self, migration: i64) {
        let mut s = self.state();
        *s = State {
            migration,
            waits: WAITS.iter().map(|w| (*w, 0, 0.0)).collect(),
            ..State::default()
        };
    }

    /// Say which phase runs now, for work that reports none itself (finalize).
    pub fn phase(&self, phase: Phase) {
        self.state().phase = Some(phase);
    }

    pub fn event(&self, e: &Event) {
        let mut s = self.state();
        match e {
            Event::PhaseStarted(p) => s.phase = Some(*p),
            Event::PhaseDone(p, took) => {
                s.phase_seconds.push((*p, took.as_secs_f64()));
                if *p == Phase::Cutover {
                    s.phase = Some(Phase::RollbackWindow);
                }
            }
            Event::Backfill {
                table,
                done,
                total,
                rows_per_sec,
            } => {
                let copy = Copy {
                    table: table.clone(),
                    done: *done,
                    total: *total,
                    rows_per_sec: *rows_per_sec,
                };
                match s.tables.iter_mut().find(|c| c.table == *table) {
                    Some(c) => *c = copy,
                    None => s.tables.push(copy),
                }
            }
            Event::Cutover {
                ok,
                took,
                lock_wait,
                ..
            } => {
                s.cutover_attempts += 1;
                if !ok {
                    s.cutover_failed += 1;
                }
                s.cutover_last_seconds = Some(took.as_secs_f64());
                s.cutover_last_lock_wait = Some(lock_wait.as_secs_f64());
            }
            Event::Waited {
                reason,
                slept,
                first,
            } => {
                let name = reason.as_str();
                if let Some(w) = s.waits.iter_mut().find(|w| w.0 == name) {
                    w.1 += u64::from(*first);
                    w.2 += slept.as_secs_f64();
                }
            }
            Event::ReplicationLag(lag) => s.replication_lag = Some(lag.as_secs_f64()),
            Event::Paced { ratio, rest } => s.paced = Some((*ratio, *rest)),
            Event::LogBacklog { table, entries } => {
                match s.log_backlog.iter_mut().find(|(t, _)| t == table) {
                    Some(b) => b.1 = *entries,
                    None => s.log_backlog.push((table.clone(), *entries)),
                }
            }
            Event::Warning(_) => s.warnings += 1,
            Event::Note(_) | Event::Verify { .. } | Event::Waiting(_) | Event::AuditHead { .. } => {
            }
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let s = self.state();
        let mut out = String::with_capacity(4096);
        head(
            &mut out,
            "info",
            "gauge",
            "the migration this process runs, and the command",
        );
        let _ = writeln!(
            out,
            "tandem_migration_info{{migration=\"{}\",command=\"{}\"}} 1",
            s.migration, self.command
        );
        head(
            &mut out,
            "phase",
            "gauge",
            "1 for the phase running now (the rollback window once cutover is done), 0 for the others",
        );
        for p in Phase::ALL {
            let _ = writeln!(
                out,
                "tandem_migration_phase{{phase=\"{}\"}} {}",
                p.as_str(),
                u8::from(s.phase == Some(p))
            );
        }
        head(
            &mut out,
            "phase_duration_seconds",
            "gauge",
            "how long each phase this process ran took",
        );
        for (p, secs) in &s.phase_seconds {
            let _ = writeln!(
                out,
                "tandem_migration_phase_duration_seconds{{phase=\"{}\"}} {secs}",
                p.as_str()
            );
        }
        let per_table: [(&str, &str, PerTable); 4] = [
            ("rows_copied", "rows the backfill copied so far", |c| {
                c.done as f64
            }),
            (
                "rows_total",
                "rows to copy: the table's rows up to the key bound the copy took",
                |c| c.total as f64,
            ),
            (
                "copy_rows_per_second",
                "the copy's rate since it started in this process",
                |c| c.rows_per_sec,
            ),
            (
                "copy_eta_seconds",
                "time left for the copy at its rate (0 when done)",
                |c| {
                    if c.done >= c.total {
                        0.0
                    } else if c.rows_per_sec > 0.0 {
                        (c.total - c.done) as f64 / c.rows_per_sec
                    } else {
                        f64::NAN
                    }
                },
            ),
        ];
        for (name, help, value) in per_table {
            head(&mut out, name, "gauge", help);
            for c in &s.tables {
                let _ = writeln!(
                    out,
                    "tandem_migration_{name}{{table=\"{}\"}} {}",
                    label(&c.table),
                    number(value(c))
                );
            }
        }
        if !s.log_backlog.is_empty() {
            head(
                &mut out,
                "log_backlog_entries",
                "gauge",
                "entries of the key log the drain has not taken yet (before the forward trigger takes over)",
            );
            for (table, entries) in &s.log_backlog {
                let _ = writeln!(
                    out,
                    "tandem_migration_log_backlog_entries{{table=\"{}\"}} {entries}",
                    label(table)
                );
            }
        }
        if let Some(lag) = s.replication_lag {
            head(
                &mut out,
                "replication_lag_seconds",
                "gauge",
                "the largest replay lag of the replicas, as last read for --max-replication-lag",
            );
            let _ = writeln!(out, "tandem_migration_replication_lag_seconds {lag}");
        }
        if let Some((ratio, rest)) = s.paced {
            head(
                &mut out,
                "throughput_ratio",
                "gauge",
                "the server's transaction rate over its rate with tandem idle, as last read for --keep-throughput",
            );
            let _ = writeln!(out, "tandem_migration_throughput_ratio {}", number(ratio));
            head(
                &mut out,
                "rest_ratio",
                "gauge",
                "the share of the time the copy, the drain and verify rest for --keep-throughput",
            );
            let _ = writeln!(out, "tandem_migration_rest_ratio {}", number(rest));
        }
        head(
            &mut out,
            "waits_total",
            "counter",
            "times the executor waited: at the gate before a phase (gate), or with the copy held back (paused, load, replication_lag, throughput)",
        );
        for (reason, count, _) in &s.waits {
            let _ = writeln!(
                out,
                "tandem_migration_waits_total{{reason=\"{reason}\"}} {count}"
            );
        }
        head(
            &mut out,
            "wait_seconds_total",
            "counter",
            "seconds the executor waited, per reason",
        );
        for (reason, _, secs) in &s.waits {
            let _ = writeln!(
                out,
                "tandem_migration_wait_seconds_total{{reason=\"{reason}\"}} {secs}"
            );
        }
        let counters = [
            (
                "cutover_attempts_total",
                "swap attempts (cutover or rollback) made by this process",
                s.cutover_attempts,
            ),
            (
                "cutover_failed_attempts_total",
                "swap attempts whose locks were not granted in time",
                s.cutover_failed,
            ),
            (
                "warnings_total",
                "warnings the executor reported",
                s.warnings,
            ),
        ];
        for (name, help, v) in counters {
            head(&mut out, name, "counter", help);
            let _ = writeln!(out, "tandem_migration_{name} {v}");
        }
        if let Some(secs) = s.cutover_last_seconds {
            head(
                &mut out,
                "cutover_last_attempt_seconds",
                "gauge",
                "how long the last swap attempt took: a failed one waited that long for its locks; the one that committed waited for them and swapped",
            );
            let _ = writeln!(out, "tandem_migration_cutover_last_attempt_seconds {secs}");
        }
        if let Some(secs) = s.cutover_last_lock_wait {
            head(
                &mut out,
                "cutover_last_lock_wait_seconds",
                "gauge",
                "how long the last swap attempt waited for its locks (clients queued behind it at most that long)",
            );
            let _ = writeln!(
                out,
                "tandem_migration_cutover_last_lock_wait_seconds {secs}"
            );
        }
        out
    }
}

/// The HELP and TYPE lines of metric `tandem_migration_{name}`.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP tandem_migration_{name} {help}\n# TYPE tandem_migration_{name} {kind}"
    );
}

/// A sample value: Prometheus spells the special ones `NaN`, `+Inf`, `-Inf`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// A label value, escaped as the exposition format wants (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Run `body` while serving `metrics` on `addr` (when given): the bound address is printed on
/// stderr first, and the server stops, and is waited for, when `body` ends whichever way.
pub async fn serving<T>(
    addr: Option<&str>,
    metrics: &Arc<RunMetrics>,
    body: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let Some(addr) = addr else {
        return body.await;
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Failure::usage(format!(
            "cannot serve metrics on {addr}: {e} (is another process using the port? is the address this host's?)"
        ))
    })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    eprintln!("metrics on http://{local}/metrics");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let m = metrics.clone();
    let server = tokio::spawn(proxy::metrics::serve_text(
        listener,
        move || m.render(),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    let out = body.await;
    let _ = stop.send(true);
    let _ = server.await;
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use engine::executor::WaitReason;

    use super::*;

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn events_become_figures() {
        let m = RunMetrics::new("apply", 7);
        m.event(&Event::PhaseStarted(Phase::Backfill));
        m.event(&Event::Backfill {
            table: "public.\"odd\"".into(),
            done: 250,
            total: 1000,
            rows_per_sec: 50.0,
        });
        for first in [true, false] {
            m.event(&Event::Waited {
                reason: WaitReason::Load,
                slept: Duration::from_millis(500),
                first,
            });
        }
        m.event(&Event::Paced {
            ratio: 0.75,
            rest: 0.25,
        });
        m.event(&Event::Cutover {
            attempt: 1,
            ok: false,
            took: Duration::from_millis(60),
            lock_wait: Duration::from_millis(50),
            detail: String::new(),
        });
        m.event(&Event::Cutover {
            attempt: 2,
            ok: true,
            took: Duration::from_millis(20),
            lock_wait: Duration::from_millis(4),
            detail: String::new(),
        });
        let text = m.render();
        let v = |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
        assert_eq!(
            v("tandem_migration_info{migration=\"7\",command=\"apply\"}"),
            "1"
        );
        assert_eq!(v("tandem_migration_phase{phase=\"backfill\"}"), "1");
        assert_eq!(v("tandem_migration_phase{phase=\"verify\"}"), "0");
        assert_eq!(
            v("tandem_migration_rows_copied{table=\"public.\\\"odd\\\"\"}"),
            "250"
        );
        assert_eq!(
            v("tandem_migration_copy_eta_seconds{table=\"public.\\\"odd\\\"\"}"),
            "15"
        );
        assert_eq!(v("tandem_migration_waits_total{reason=\"load\"}"), "1");
        assert_eq!(
            v("tandem_migration_wait_seconds_total{reason=\"load\"}"),
            "1"
        );
        assert_eq!(v("tandem_migration_waits_total{reason=\"gate\"}"), "0");
        assert_eq!(
            v("tandem_migration_waits_total{reason=\"throughput\"}"),
            "0"
        );
        assert_eq!(v("tandem_migration_throughput_ratio"), "0.75");
        assert_eq!(v("tandem_migration_rest_ratio"), "0.25");
        assert_eq!(v("tandem_migration_cutover_attempts_total"), "2");
        assert_eq!(v("tandem_migration_cutover_failed_attempts_total"), "1");
        assert_eq!(v("tandem_migration_cutover_last_attempt_seconds"), "0.02");
        assert_eq!(
            v("tandem_migration_cutover_last_lock_wait_seconds"),
            "0.004"
        );
        assert_eq!(
            value(&text, "tandem_migration_replication_lag_seconds"),
            None
        );
        // Every sample line is `name{labels} value`, after its HELP and TYPE lines.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, val) = l.rsplit_once(' ').expect("a value");
            assert!(series.starts_with("tandem_migration_"), "{l}");
            assert!(val.parse::<f64>().is_ok() || val == "NaN", "{l}");
        }
    }
}
