//! Act 3: the change made by tandem's executor (in-process, as `tandem submit` and
//! `tandem apply` do it) while the bank's clients keep working: `tandem apply`'s progress,
//! the clients' figures now and then, and afterwards what the clients saw, the bank's
//! invariant, and the migration phase by phase.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use engine::executor::{Event, Executor, Observer, Options};
use engine::state::Phase;
use tokio_postgres::{Client, Config};
use workload::{bank, Bank, BankCheck, Load, Progress, Report, Workload};

use super::plain::Plain;
use super::{banner, latency, secs, thousands, ACCOUNTS, LOAD};
use crate::commands::apply::engine_failure;
use crate::commands::apply::progress::Progress as ApplyProgress;
use crate::exit::Failure;

/// Load alone before `apply` starts, and on the new table after the cutover.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(2);

/// A transaction slower than this is one a user would notice.
const SLOW: Duration = Duration::from_millis(100);

/// What the run left for the rollback-window act.
pub struct Run {
    /// The executor still holds the migration's lock: finalize goes through it.
    pub executor: Executor,
    /// Committed client transactions: one bank_history row each.
    pub transactions: u64,
    /// Failed ones: a failed COMMIT may have committed, so then the count is no check.
    pub errors: u64,
}

pub async fn show(
    config: &Config,
    client: &Client,
    id: i64,
    pin: &str,
    plain: &Plain,
    problems: &mut Vec<String>,
) -> Result<Run, Failure> {
    banner("4. With tandem: the same change, with the same clients at work");
    eprintln!(
        "$ tandem apply {id} --policy-fingerprint {}…   ({} clients work on bank_accounts all along)",
        &pin[..16],
        LOAD.clients
    );
    let load = Load::start(config.clone(), Workload::Bank(Bank::new()), LOAD)
        .await
        .map_err(|e| anyhow!(e).context("cannot start the clients"))?;
    let screen = Arc::new(Screen::new());
    tokio::time::sleep(BEFORE).await;

    let apply_start = Instant::now();
    let mut ex = Executor::open(
        config,
        id,
        Options {
            policy_pin: Some(pin.to_string()),
            ..Options::default()
        },
        Box::new(gates::Open),
        screen.observer(),
    )
    .await
    .map_err(engine_failure)?;
    let mut ticker = Ticker::new(&load);
    let applied = {
        let apply = ex.apply();
        tokio::pin!(apply);
        loop {
            tokio::select! {
                r = &mut apply => break r,
                () = ticker.wait() => screen.clients(ticker.line(&load)),
            }
        }
    };
    screen.finish();
    let phase = match applied {
        Ok(phase) => phase,
        Err(e) => {
            // Say what the clients saw before the error ends the demo.
            let report = load.stop().await;
            eprintln!("the clients: {report}");
            return Err(engine_failure(e));
        }
    };
    let apply_end = Instant::now();
    if phase != Phase::RollbackWindow {
        return Err(Failure::from(anyhow!(
            "migration {id} stopped in phase {phase}, not after its cutover; this is a bug in tandem"
        )));
    }
    eprintln!(
        "migration {id} is live: bank_accounts is the new table; the clients go on for {} s",
        AFTER.as_secs()
    );
    let end = Instant::now() + AFTER;
    while Instant::now() < end {
        tokio::select! {
            () = tokio::time::sleep_until(end.into()) => {}
            () = ticker.wait() => screen.clients(ticker.line(&load)),
        }
    }
    let report = load.stop().await;
    let check = bank::check(client, &Bank::new())
        .await
        .map_err(|e| anyhow!(e).context("cannot check the bank's invariant"))?;

    let seen = screen.seen();
    let facts = Facts::read(client, id, &seen).await?;
    let since = |t: Instant| t.saturating_duration_since(report.started_at());
    let cutover_at = seen.cutover_at.unwrap_or(apply_end);
    let figures = Figures {
        max_latency: report.max_latency(),
        p99: report.percentile(99.0),
        slow: report.slower_than(SLOW),
        errors: report.error_count,
        tps_before: report.tps_between(
            Duration::from_millis(500).min(since(apply_start)),
            since(apply_start),
        ),
        tps_during: report.tps_between(since(apply_start), since(cutover_at)),
        tps_after: report.tps_between(since(cutover_at), report.elapsed),
    };
    clients_saw(
        &report,
        &figures,
        plain,
        &check,
        &facts,
        apply_end - apply_start,
    );
    migration_went(&seen, &facts);

    if report.error_count > 0 {
        problems.push(format!(
            "{} client error(s) while tandem changed the table: {}",
            report.error_count,
            report.errors.join("; ")
        ));
    }
    if !check.holds() {
        problems.push(format!("after the cutover, {check}"));
    }
    Ok(Run {
        executor: ex,
        transactions: report.transactions(),
        errors: report.error_count,
    })
}

struct Figures {
    max_latency: Duration,
    p99: Duration,
    slow: u64,
    errors: u64,
    tps_before: f64,
    tps_during: f64,
    tps_after: f64,
}

fn clients_saw(
    report: &Report,
    f: &Figures,
    plain: &Plain,
    check: &BankCheck,
    facts: &Facts,
    took: Duration,
) {
    banner("5. What the clients saw");
    eprintln!(
        "tandem changed bank_accounts ({} rows) in {} while {} clients kept working on it:",
        thousands(ACCOUNTS as u64),
        secs(took),
        LOAD.clients
    );
    eprintln!(
        "  {} transactions committed, {} errors; throughput {}/s before, {}/s during, {}/s after",
        thousands(report.transactions()),
        f.errors,
        thousands(f.tps_before as u64),
        thousands(f.tps_during as u64),
        thousands(f.tps_after as u64)
    );
    eprintln!();
    eprintln!("                                plain ALTER TABLE   tandem");
    let row = |what: &str, a: String, b: String| eprintln!("  {what:<30}{a:<20}{b}");
    row(
        "longest lock on the table",
        secs(plain.took),
        match facts.held {
            Some(held) => format!("{} (the swap)", latency(held)),
            None => "the swap only".to_string(),
        },
    );
    row(
        "longest client wait",
        latency(plain.max_latency),
        latency(f.max_latency),
    );
    row("p99 latency", latency(plain.p99), latency(f.p99));
    row(
        "transactions over 100 ms",
        thousands(plain.slow),
        thousands(f.slow),
    );
    row(
        "throughput during the change",
        format!("{}/s", thousands(plain.tps_during as u64)),
        format!("{}/s", thousands(f.tps_during as u64)),
    );
    row(
        "client errors",
        plain.errors.to_string(),
        f.errors.to_string(),
    );
    eprintln!();
    eprintln!(
        "  the bank's invariant (every balance = the sum of its history deltas; accounts, tellers,"
    );
    eprintln!(
        "  branches and history all sum to {} over {} history rows): {}",
        check.history_deltas,
        thousands(check.history_rows as u64),
        if check.holds() { "holds" } else { "BROKEN" }
    );
    if !check.holds() {
        eprintln!("  {check}");
    }
}

/// What tandem's bookkeeping says about the run.
struct Facts {
    /// Rows the backfill copied.
    copied: i64,
    /// How long the successful swap held its locks: the attempt's time less its wait.
    held: Option<Duration>,
}

impl Facts {
    async fn read(client: &Client, id: i64, seen: &Seen) -> Result<Facts, Failure> {
        let copied = client
            .query_one(
                "SELECT coalesce(sum(rows_copied), 0)::int8 FROM tandem.shadow_tables WHERE migration_id = $1",
                &[&id],
            )
            .await
            .map_err(|e| anyhow!("cannot read the backfill's figures: {e}"))?
            .get::<_, i64>(0);
        let lock_wait = client
            .query_opt(
                "SELECT (detail ->> 'lock_wait_ms')::int8 FROM tandem.events
                  WHERE migration_id = $1 AND phase = 'cutover' AND event = 'done' ORDER BY id DESC LIMIT 1",
                &[&id],
            )
            .await
            .map_err(|e| anyhow!("cannot read the cutover's record: {e}"))?
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|ms| Duration::from_millis(ms.max(0) as u64));
        let held = seen
            .cutover_took
            .zip(lock_wait)
            .map(|(took, wait)| took.saturating_sub(wait));
        Ok(Facts { copied, held })
    }
}

/// The migration phase by phase, from the executor's events and tandem's bookkeeping.
fn migration_went(seen: &Seen, facts: &Facts) {
    eprintln!("\n  the migration, phase by phase:");
    for (phase, took) in &seen.phases {
        let what = match phase {
            Phase::Prepare => "the new table, with aid and abalance bigint, empty".to_string(),
            Phase::DualWrite => {
                "triggers: the key of every row written from now on is logged".to_string()
            }
            Phase::Backfill => format!(
                "{} rows copied (no index, no lock), indexes built, logged writes applied",
                thousands(facts.copied as u64)
            ),
            Phase::Verify => match seen.verified_rows {
                Some(rows) => format!(
                    "{} rows compared with the original: identical",
                    thousands(rows as u64)
                ),
                None => "the copy compared with the original".to_string(),
            },
            Phase::Cutover => format!(
                "{} attempt{}; the swap held its lock {}",
                seen.cutover_attempts,
                if seen.cutover_attempts == 1 { "" } else { "s" },
                facts.held.map_or("briefly".to_string(), latency)
            ),
            _ => String::new(),
        };
        eprintln!(
            "    {:<12}{:>8}   {what}",
            phase.as_str().replace('_', "-"),
            secs(*took)
        );
    }
    for w in &seen.warnings {
        eprintln!("    warning: {w}");
    }
}

/// What the executor reported, kept for the summary.
#[derive(Default, Clone)]
struct Seen {
    phases: Vec<(Phase, Duration)>,
    cutover_attempts: u32,
    cutover_took: Option<Duration>,
    cutover_at: Option<Instant>,
    verified_rows: Option<i64>,
    warnings: Vec<String>,
}

/// stderr, shared by `tandem apply`'s progress and the clients' lines: on a terminal a
/// clients' line goes above the progress bars; elsewhere (a log), the backfill's lines are
/// thinned to one per [`LOG_EVERY`].
struct Screen {
    progress: ApplyProgress,
    tty: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: Seen,
    last_logged: Option<Instant>,
}

const LOG_EVERY: Duration = Duration::from_secs(3);

impl Screen {
    fn new() -> Screen {
        Screen {
            progress: ApplyProgress::new(),
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn observer(self: &Arc<Screen>) -> Observer {
        let screen = self.clone();
        Arc::new(move |e: &Event| screen.event(e))
    }

    fn event(&self, e: &Event) {
        let mut s = self.lock();
        match e {
            Event::PhaseDone(p, d) => s.seen.phases.push((*p, *d)),
            Event::Cutover {
                attempt, ok, took, ..
            } => {
                s.seen.cutover_attempts = *attempt;
                if *ok {
                    s.seen.cutover_took = Some(*took);
                    s.seen.cutover_at = Some(Instant::now());
                }
            }
            Event::Verify { rows, .. } => {
                s.seen.verified_rows.get_or_insert(*rows);
            }
            Event::Warning(w) => s.seen.warnings.push(w.clone()),
            Event::Backfill { done, total, .. } if !self.tty => {
                let recent = s.last_logged.is_some_and(|t| t.elapsed() < LOG_EVERY);
                if recent && done < total {
                    return;
                }
                s.last_logged = Some(Instant::now());
            }
            _ => {}
        }
        drop(s);
        self.progress.event(e);
    }

    /// A line about the clients.
    fn clients(&self, line: String) {
        self.progress.println(&line);
    }

    /// `apply` is over: the spinner goes, the bars stay.
    fn finish(&self) {
        self.progress.finish();
    }

    fn seen(&self) -> Seen {
        self.lock().seen.clone()
    }
}

/// When to print the clients' figures, and their rate since the last time.
struct Ticker {
    every: Duration,
    next: tokio::time::Instant,
    last: Progress,
}

impl Ticker {
    fn new(load: &Load) -> Ticker {
        let every = if std::io::stderr().is_terminal() {
            Duration::from_secs(2)
        } else {
            LOG_EVERY
        };
        Ticker {
            every,
            next: tokio::time::Instant::now() + every,
            last: load.progress(),
        }
    }

    async fn wait(&self) {
        tokio::time::sleep_until(self.next).await;
    }

    fn line(&mut self, load: &Load) -> String {
        self.next += self.every;
        let now = load.progress();
        let span = (now.elapsed - self.last.elapsed).as_secs_f64().max(0.001);
        let rate = (now.transactions - self.last.transactions) as f64 / span;
        self.last = now;
        format!(
            "  clients: {} transactions, {}/s now, {} errors, longest wait so far {}",
            thousands(now.transactions),
            thousands(rate as u64),
            now.errors,
            latency(now.max_latency)
        )
    }
}
