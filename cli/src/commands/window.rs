//! The end of the rollback window: `tandem finalize --expired` (for cron: every migration
//! whose window has ended, one after the other) and `tandem extend ID DURATION`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use engine::executor::Options;
use engine::state::Phase;

use super::apply::metrics::{self, RunMetrics};
use super::apply::progress::Progress;
use super::apply::{confirm, engine_failure, observer, open, swap_options, window_gate};
use super::submit::parse_duration;
use crate::args::{ExtendArgs, FinalizeArgs, Global};
use crate::connect;
use crate::exit::{Failure, FAILURE, OK};

/// `tandem finalize --expired`: finalize each migration in its rollback window whose window
/// has ended, earliest end first, and report each. One that fails does not stop the others;
/// exit 1 when any failed (each says why as it happens; the error names them all).
pub async fn finalize_expired(global: &Global, args: FinalizeArgs) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    let expired = engine::state::expired(&client)
        .await
        .map_err(engine_failure)?;
    drop(client);
    if expired.is_empty() {
        eprintln!("no migration's rollback window has ended: nothing to finalize");
        return Ok(OK);
    }
    let ids: Vec<String> = expired.iter().map(|(id, _)| id.to_string()).collect();
    confirm(
        args.yes,
        &format!(
            "Finalize migration{} {} (their rollback windows have ended; drop the old tables; no rollback after)?",
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        ),
    )?;
    let progress = Arc::new(Progress::new());
    let metrics = RunMetrics::new("finalize", expired[0].0);
    let failed = metrics::serving(args.metrics.as_deref(), &metrics, async {
        let mut failed: Vec<i64> = Vec::new();
        for (id, ended) in &expired {
            let id = *id;
            metrics.migration(id);
            progress.println(&format!(
                "migration {id}: rollback window ended at {ended}; finalizing"
            ));
            match finalize_one(global, id, &args, &progress, &metrics).await {
                Ok(true) => progress.println(&format!(
                    "migration {id} finalized: the old table and tandem's triggers are gone"
                )),
                Ok(false) => progress.println(&format!(
                    "migration {id} left alone: its rollback window no longer ends in the past (extended, finalized or rolled back meanwhile); `tandem status {id}` says where it stands"
                )),
                Err(f) => {
                    progress.println(&format!(
                        "migration {id}: finalize failed: {}",
                        f.render()
                    ));
                    failed.push(id);
                }
            }
        }
        Ok(failed)
    })
    .await?;
    if failed.is_empty() {
        return Ok(OK);
    }
    let which: Vec<String> = failed.iter().map(i64::to_string).collect();
    Err(Failure::new(
        FAILURE,
        anyhow!(
            "{} of {} migration{} whose rollback window ended could not be finalized: {} (each said why above); fix that, then run `tandem finalize --expired` again",
            failed.len(),
            expired.len(),
            if expired.len() == 1 { "" } else { "s" },
            which.join(", ")
        ),
    ))
}

/// Finalize migration `id` if its window has still ended under its lock.
async fn finalize_one(
    global: &Global,
    id: i64,
    args: &FinalizeArgs,
    progress: &Arc<Progress>,
    metrics: &Arc<RunMetrics>,
) -> Result<bool, Failure> {
    let config = crate::connect::resolve(global)?;
    let mut ex = open(
        global,
        &config,
        id,
        swap_options(args.lock_timeout),
        window_gate(),
        observer(progress, metrics, None),
    )
    .await?;
    metrics.phase(Phase::Finalized);
    progress.status(&format!(
        "finalizing migration {id}: dropping the old table"
    ));
    let done = ex.finalize_if_expired().await;
    progress.finish();
    let done = done.map_err(engine_failure)?;
    ex.close().await;
    Ok(done)
}

/// `tandem extend ID DURATION`: the window ends DURATION later than it is now set to; only in
/// the rollback window. Takes the migration's lock and passes the gate `finalize` passes.
pub async fn extend(global: &Global, args: ExtendArgs) -> Result<u8, Failure> {
    let secs = parse_duration("DURATION", &args.duration).map_err(Failure::usage)?;
    if secs == 0 {
        return Err(Failure::usage(format!(
            "DURATION {:?} extends nothing; give how much longer the window lasts, like 30d or 12h",
            args.duration
        )));
    }
    let id = args.id;
    let progress = Arc::new(Progress::new());
    let metrics = RunMetrics::new("extend", id);
    let config = crate::connect::resolve(global)?;
    let mut ex = open(
        global,
        &config,
        id,
        Options::default(),
        window_gate(),
        observer(&progress, &metrics, None),
    )
    .await?;
    confirm(
        args.yes,
        &format!(
            "Extend migration {id}'s rollback window by {} (the old table is kept current that much longer)?",
            args.duration.trim()
        ),
    )?;
    let extended = ex
        .extend(Duration::from_secs(secs))
        .await
        .map_err(engine_failure)?;
    ex.close().await;
    if extended.still_ended {
        eprintln!(
            "migration {id}'s rollback window now ends at {} (was {}): still in the past, so a rollback is still refused and `tandem finalize --expired` finalizes it; extend it further to keep it",
            extended.to, extended.from
        );
    } else {
        eprintln!(
            "migration {id}'s rollback window now ends at {} (was {}); `tandem rollback {id}` swaps back until then, `tandem finalize {id}` ends it sooner",
            extended.to, extended.from
        );
    }
    Ok(OK)
}
