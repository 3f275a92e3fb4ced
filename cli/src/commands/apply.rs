//! `tandem apply ID`, `tandem rollback ID`, `tandem finalize ID`: the executor, with progress
//! on stderr (a live line on a terminal, plain log lines otherwise).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use engine::executor::{Event, Executor, Observer, Options};
use engine::hooks::ProxyHold;
use engine::state::Phase;
use engine::EngineError;

use crate::args::{ApplyArgs, ConfirmArgs, Global, RollbackArgs};
use crate::connect;
use crate::exit::{Failure, FAILURE, OK, STALE, UNAVAILABLE, USAGE};

/// Map an engine error to its exit code.
pub fn engine_failure(e: EngineError) -> Failure {
    let code = match &e {
        EngineError::Stale(_) | EngineError::Gate { .. } => STALE,
        EngineError::UnknownMigration(_) => USAGE,
        EngineError::Connection { .. } | EngineError::Unreachable { .. } => UNAVAILABLE,
        _ => FAILURE,
    };
    Failure::new(code, anyhow!(e))
}

fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{question} needs confirmation; pass --yes to run it without a prompt"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::new(
            FAILURE,
            anyhow!("not confirmed; nothing was done"),
        ))
    }
}

/// Progress on stderr: one rewritten line on a terminal, log lines otherwise.
pub fn observer() -> Observer {
    let tty = std::io::stderr().is_terminal();
    let last_line = Arc::new(Mutex::new(false));
    Arc::new(move |e: &Event| {
        let mut open = last_line.lock().expect("not poisoned");
        let line = match e {
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
                let text = format!("backfill {table}: {done}/{total} rows ({pct:.0}%), {rows_per_sec:.0} rows/s{eta}");
                if tty {
                    let width = 24usize;
                    let filled = ((pct / 100.0) * width as f64) as usize;
                    eprint!(
                        "\r\x1b[2K[{}{}] {text}",
                        "#".repeat(filled.min(width)),
                        "-".repeat(width - filled.min(width))
                    );
                    let _ = std::io::stderr().flush();
                    *open = true;
                    return;
                }
                text
            }
            Event::PhaseStarted(p) => format!("phase {p}: started"),
            Event::PhaseDone(p, d) => format!("phase {p}: done in {:.1}s", d.as_secs_f64()),
            Event::Note(n) => n.clone(),
            Event::Warning(w) => format!("warning: {w}"),
            Event::Verify {
                table,
                rows,
                mismatched_ranges,
            } => {
                format!("verify {table}: {rows} rows compared, {mismatched_ranges} range(s) differ")
            }
            Event::Cutover {
                attempt,
                ok,
                took,
                detail,
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
        };
        if *open {
            eprintln!();
            *open = false;
        }
        eprintln!("{line}");
    })
}

fn gate(max_load: Option<u32>) -> Box<dyn gates::Gate> {
    match max_load {
        Some(max_active) => Box::new(gates::Load { max_active }),
        None => Box::new(gates::Open),
    }
}

pub async fn apply(global: &Global, args: ApplyArgs) -> Result<u8, Failure> {
    let until = match &args.until {
        None => Phase::Cutover,
        Some(u) => Phase::parse(u)
            .filter(|p| Phase::APPLY.contains(p))
            .ok_or_else(|| Failure::usage(format!("--until {u:?} is not a phase apply runs; use prepare, dual-write, backfill, verify or cutover")))?,
    };
    let opts = Options {
        until,
        batch_time: Duration::from_millis(args.batch_time.max(1)),
        batch_pause: Duration::from_millis(args.batch_pause),
        lock_timeout: Duration::from_millis(args.lock_timeout.max(1)),
        cutover_attempts: args.cutover_attempts.max(1),
        max_load: args.max_load,
        max_replication_lag: args.max_replication_lag.map(Duration::from_secs_f64),
        dual_read_timeout: Duration::from_secs(args.dual_read_timeout),
        ..Options::default()
    };
    let mut ex = open(global, args.id, opts, gate(args.max_load)).await?;
    confirm(
        args.yes,
        &format!("Apply migration {} up to {until}?", args.id),
    )?;
    let phase = ex.apply().await.map_err(engine_failure)?;
    ex.close().await;
    if phase == Phase::Finalized {
        eprintln!(
            "migration {} is done: every step was online, so there is no table to swap and no rollback window",
            args.id
        );
    } else if phase == Phase::RollbackWindow {
        eprintln!(
            "migration {} is live; the old table is kept current until its rollback window ends (`tandem status {}`); `tandem rollback {}` swaps back, `tandem finalize {}` drops it",
            args.id, args.id, args.id, args.id
        );
    } else {
        eprintln!(
            "migration {} stopped after {phase} as asked; `tandem apply {}` goes on",
            args.id, args.id
        );
    }
    Ok(OK)
}

/// Connect (an unreachable database is exit 69, from the engine's error) and take the
/// migration's executor lock. Swaps ask the registered `tandem proxy` processes to hold
/// traffic ([`ProxyHold`]); with none registered and alive, they run exactly as without it.
async fn open(
    global: &Global,
    id: i64,
    opts: Options,
    gate: Box<dyn gates::Gate>,
) -> Result<Executor, Failure> {
    let config = connect::resolve(global)?;
    Executor::open(&config, id, opts, gate, observer())
        .await
        .map(|ex| ex.with_hold(Box::new(ProxyHold::new(&config))))
        .map_err(engine_failure)
}

/// Options for rollback and finalize: the defaults, with the swap's lock timeout.
fn swap_options(lock_timeout: u64) -> Options {
    Options {
        lock_timeout: Duration::from_millis(lock_timeout.max(1)),
        ..Options::default()
    }
}

pub async fn rollback(global: &Global, args: RollbackArgs) -> Result<u8, Failure> {
    let RollbackArgs {
        confirm: args,
        online_steps,
    } = args;
    let mut ex = open(
        global,
        args.id,
        Options {
            undo_online_steps: online_steps,
            ..swap_options(args.lock_timeout)
        },
        Box::new(gates::Open),
    )
    .await?;
    confirm(
        args.yes,
        &format!("Roll migration {} back to the old table?", args.id),
    )?;
    let abandoned = ex.rollback().await.map_err(engine_failure)?;
    ex.close().await;
    if abandoned {
        eprintln!("migration {} abandoned before cutover: the table was never swapped; the shadow table and tandem's triggers are gone", args.id);
        return Ok(OK);
    }
    eprintln!("migration {} rolled back: the old table is live again, with every write made since cutover", args.id);
    Ok(OK)
}

pub async fn finalize(global: &Global, args: ConfirmArgs) -> Result<u8, Failure> {
    let mut ex = open(
        global,
        args.id,
        swap_options(args.lock_timeout),
        Box::new(gates::Open),
    )
    .await?;
    confirm(
        args.yes,
        &format!(
            "Finalize migration {} (drop the old table; no rollback after)?",
            args.id
        ),
    )?;
    ex.finalize().await.map_err(engine_failure)?;
    ex.close().await;
    eprintln!(
        "migration {} finalized: the old table and tandem's triggers are gone",
        args.id
    );
    Ok(OK)
}
