//! `tandem apply ID`, `tandem rollback ID`, `tandem finalize ID`: the executor, with its
//! progress on stderr (bars on a terminal, plain log lines otherwise: `progress`) and, with
//! `--metrics ADDR`, its figures served as Prometheus text while it runs (`metrics`).

pub mod checkpoints;
pub mod login;
pub mod metrics;
pub mod progress;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use engine::executor::{Event, Executor, Observer, Options};
use engine::hooks::ProxyHold;
use engine::state::Phase;
use engine::EngineError;
use pgtls::Endpoint as Config;

use self::checkpoints::Checkpoints;
use self::login::Login;
use self::metrics::RunMetrics;
use self::progress::Progress;
use crate::args::{ApplyArgs, CopyArg, FinalizeArgs, Global, LoginArgs, RollbackArgs};
use crate::connect;
use crate::exit::{Failure, FAILURE, OK, STALE, UNAVAILABLE, USAGE};

/// Map an engine error to its exit code.
pub fn engine_failure(e: EngineError) -> Failure {
    let code = match &e {
        EngineError::Stale(_) | EngineError::Gate { .. } | EngineError::Approval(_) => STALE,
        EngineError::UnknownMigration(_) => USAGE,
        EngineError::Connection { .. } | EngineError::Unreachable { .. } => UNAVAILABLE,
        _ => FAILURE,
    };
    Failure::new(code, anyhow!(e))
}

pub(crate) fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
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

/// The executor's events to the progress display and the metrics.
pub fn observer(
    progress: &Arc<Progress>,
    metrics: &Arc<RunMetrics>,
    checkpoints: Option<Checkpoints>,
) -> Observer {
    let (progress, metrics) = (progress.clone(), metrics.clone());
    Arc::new(move |e: &Event| {
        metrics.event(e);
        progress.event(e);
        if let (
            Some(c),
            Event::AuditHead {
                after,
                database,
                size,
                head,
            },
        ) = (&checkpoints, e)
        {
            progress.event(&Event::Note(c.write(after, database, *size, head)));
        }
    })
}

fn gate(max_load: Option<u32>) -> Box<dyn gates::Gate> {
    match max_load {
        Some(max_active) => Box::new(gates::Load { max_active }),
        None => Box::new(gates::Open),
    }
}

/// The gate of the commands that end or move a rollback window: `rollback`, `finalize` and
/// `extend` pass the same one.
pub(crate) fn window_gate() -> Box<dyn gates::Gate> {
    Box::new(gates::Open)
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
        copy: match args.copy {
            CopyArg::Log => engine::shadow::CopyMethod::Log,
            CopyArg::Direct => engine::shadow::CopyMethod::Direct,
        },
        batch_time: Duration::from_millis(args.batch_time.max(1)),
        chunk_time: Duration::from_millis(args.chunk_time.max(1)),
        batch_pause: Duration::from_millis(args.batch_pause),
        drain_patience: Duration::from_secs(args.drain_patience.max(1)),
        lock_timeout: Duration::from_millis(args.lock_timeout.max(1)),
        cutover_attempts: args.cutover_attempts.max(1),
        max_load: args.max_load,
        max_replication_lag: args.max_replication_lag.map(Duration::from_secs_f64),
        keep_throughput: args.keep_throughput.map(|p| f64::from(p) / 100.0),
        dual_read_timeout: Duration::from_secs(args.dual_read_timeout),
        ..Options::default()
    };
    let checkpoints = Checkpoints::open(&args.checkpoints, args.id)?;
    let progress = Arc::new(Progress::new());
    let metrics = RunMetrics::new("apply", args.id);
    let (config, login) = connection(global, &args.login, args.id).await?;
    let phase = metrics::serving(args.metrics.as_deref(), &metrics, async {
        let mut ex = open(
            global,
            &config,
            args.id,
            opts,
            gate(args.max_load),
            observer(&progress, &metrics, checkpoints),
        )
        .await?;
        confirm(
            args.yes,
            &format!("Apply migration {} up to {until}?", args.id),
        )?;
        let phase = ex.apply().await;
        progress.finish();
        let phase = phase.map_err(engine_failure)?;
        ex.close().await;
        Ok(phase)
    })
    .await;
    if let Some(login) = login {
        login.drop().await;
    }
    let phase = phase?;
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
pub(crate) async fn open(
    global: &Global,
    config: &Config,
    id: i64,
    opts: Options,
    gate: Box<dyn gates::Gate>,
    observe: Observer,
) -> Result<Executor, Failure> {
    let opts = Options {
        policy_pin: global.policy_fingerprint.clone(),
        ..opts
    };
    Executor::open(config, id, opts, gate, observe)
        .await
        .map(|ex| ex.with_hold(Box::new(ProxyHold::new(config))))
        .map_err(engine_failure)
}

/// The connection settings of a command on migration `id`, and the login made for it when
/// `--per-migration-login` asks (drop it when the command ends, whatever the outcome).
pub(crate) async fn connection(
    global: &Global,
    login: &LoginArgs,
    id: i64,
) -> Result<(Config, Option<Login>), Failure> {
    let config = connect::resolve(global)?;
    if !login.per_migration_login {
        return Ok((config, None));
    }
    let ttl = crate::commands::submit::parse_duration("--login-ttl", &login.login_ttl)
        .map_err(Failure::usage)?;
    let (made, config) = Login::create(&config, id, ttl.max(60)).await?;
    Ok((config, Some(made)))
}

/// Options for rollback and finalize: the defaults, with the swap's lock timeout.
pub(crate) fn swap_options(lock_timeout: u64) -> Options {
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
    let checkpoints = Checkpoints::open(&args.checkpoints, args.id)?;
    let progress = Arc::new(Progress::new());
    let metrics = RunMetrics::new("rollback", args.id);
    let (config, login) = connection(global, &args.login, args.id).await?;
    let abandoned = metrics::serving(args.metrics.as_deref(), &metrics, async {
        let mut ex = open(
            global,
            &config,
            args.id,
            Options {
                undo_online_steps: online_steps,
                ..swap_options(args.lock_timeout)
            },
            window_gate(),
            observer(&progress, &metrics, checkpoints),
        )
        .await?;
        confirm(
            args.yes,
            &format!("Roll migration {} back to the old table?", args.id),
        )?;
        progress.status(&format!("rolling migration {} back", args.id));
        let abandoned = ex.rollback().await;
        progress.finish();
        let abandoned = abandoned.map_err(engine_failure)?;
        ex.close().await;
        Ok(abandoned)
    })
    .await;
    if let Some(login) = login {
        login.drop().await;
    }
    let abandoned = abandoned?;
    if abandoned {
        eprintln!("migration {} abandoned before cutover: the table was never swapped; the shadow table and tandem's triggers are gone", args.id);
        return Ok(OK);
    }
    eprintln!("migration {} rolled back: the old table is live again, with every write made since cutover", args.id);
    Ok(OK)
}

pub async fn finalize(global: &Global, args: FinalizeArgs) -> Result<u8, Failure> {
    let id = match (args.id, args.expired) {
        (Some(id), false) => id,
        (None, true) => return super::window::finalize_expired(global, args).await,
        (Some(id), true) => {
            return Err(Failure::usage(format!(
                "give a migration id or --expired, not both: `tandem finalize {id}` finalizes migration {id}, `tandem finalize --expired` every migration whose rollback window has ended"
            )))
        }
        (None, false) => {
            return Err(Failure::usage(
                "finalize needs a migration id (`tandem finalize ID`), or --expired to finalize every migration whose rollback window has ended",
            ))
        }
    };
    let checkpoints = Checkpoints::open(&args.checkpoints, id)?;
    let progress = Arc::new(Progress::new());
    let metrics = RunMetrics::new("finalize", id);
    let (config, login) = connection(global, &args.login, id).await?;
    let done = metrics::serving(args.metrics.as_deref(), &metrics, async {
        let mut ex = open(
            global,
            &config,
            id,
            swap_options(args.lock_timeout),
            window_gate(),
            observer(&progress, &metrics, checkpoints),
        )
        .await?;
        confirm(
            args.yes,
            &format!("Finalize migration {id} (drop the old table; no rollback after)?"),
        )?;
        metrics.phase(Phase::Finalized);
        progress.status(&format!(
            "finalizing migration {id}: dropping the old table"
        ));
        let done = ex.finalize().await;
        progress.finish();
        done.map_err(engine_failure)?;
        ex.close().await;
        Ok(())
    })
    .await;
    if let Some(login) = login {
        login.drop().await;
    }
    done?;
    eprintln!("migration {id} finalized: the old table and tandem's triggers are gone");
    Ok(OK)
}
