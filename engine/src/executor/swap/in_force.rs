//! tandem's triggers are still in force: before verification, before the cutover and before a
//! rollback, every trigger that carries writes to the other table exists and fires in every
//! `session_replication_role` (`ENABLE ALWAYS`). One disabled by hand (or set back to
//! `ENABLE`, which a replica session skips) means writes that never reached the other table:
//! the command refuses, names it, and records what the writes it missed have cost.

use crate::error::EngineError;
use crate::shadow::{self, TableSpec};
use crate::state::{self, Phase};

use super::super::Executor;

/// Which triggers: the forward ones (until the cutover) or the reverse ones (the window).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Forward,
    Reverse,
}

/// Each trigger of `side` on the tables of `specs` (and their partitions) that is missing or
/// does not fire always: `table: trigger (state)`.
async fn not_in_force(
    ex: &Executor,
    specs: &[TableSpec],
    side: Side,
) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for spec in specs {
        let names = match side {
            Side::Forward => [
                shadow::forward_trigger(spec.migration),
                shadow::truncate_trigger(spec.migration),
            ],
            Side::Reverse => [
                shadow::reverse_trigger(spec.migration),
                shadow::reverse_truncate_trigger(spec.migration),
            ],
        };
        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let rows = ex
            .client
            .query(
                crate::catalog::table::TRIGGERS_IN_FORCE.sql,
                &[&spec.table.to_string(), &names],
            )
            .await
            .map_err(EngineError::sql("read the state of tandem's triggers"))?;
        for r in rows {
            let (relation, trigger, state): (String, String, String) =
                (r.get(0), r.get(1), r.get(2));
            out.push(format!("{relation}: {trigger} ({state})"));
        }
    }
    Ok(out)
}

/// Before verification and the cutover: refuse while a forward trigger is not in force.
/// `voids_verify`: the verification already done no longer holds (writes it never saw may be
/// missing from the new table): the migration goes back to verify, so that the next `apply`
/// compares the tables again and copies what differs.
pub(crate) async fn forward(
    ex: &Executor,
    specs: &[TableSpec],
    voids_verify: bool,
) -> Result<(), EngineError> {
    let off = not_in_force(ex, specs, Side::Forward).await?;
    if off.is_empty() {
        return Ok(());
    }
    let list = off.join("; ");
    if voids_verify {
        state::void_phase(
            &ex.client,
            ex.id,
            Phase::Backfill,
            serde_json::json!({ "reason": "a forward trigger was found disabled or missing before the cutover", "triggers": off }),
        )
        .await?;
    }
    Err(EngineError::refused(
        format!(
            "tandem's trigger that copies every write to the new table is not in force ({list}): writes made while it was off did not reach the new table, so the tables cannot be swapped"
        ),
        format!(
            "enable it again, firing always (ALTER TABLE ... ENABLE ALWAYS TRIGGER ...; `tandem status {id}` names the table), then run `tandem apply {id}` again: it verifies the tables again and copies the rows that differ; or give the migration up with `tandem rollback {id}`",
            id = ex.id
        ),
    ))
}

/// Before a rollback: refuse while a reverse trigger is not in force. The writes it missed are
/// not in the old table, so a rollback would lose them: from now on the migration can only be
/// finalized (recorded as its rollback blocker).
pub(crate) async fn reverse(ex: &Executor, specs: &[TableSpec]) -> Result<(), EngineError> {
    let off = not_in_force(ex, specs, Side::Reverse).await?;
    if off.is_empty() {
        return Ok(());
    }
    let blocker = format!(
        "tandem's reverse trigger was found not in force ({}): writes made while it was off never reached the old table",
        off.join("; ")
    );
    ex.client
        .execute(
            "UPDATE tandem.migrations SET rollback_blocker = coalesce(rollback_blocker, $2), updated_at = now() WHERE id = $1",
            &[&ex.id, &blocker],
        )
        .await
        .map_err(EngineError::sql("record the rollback blocker"))?;
    state::record(
        &ex.client,
        ex.id,
        "rollback_window",
        "rollback blocked",
        serde_json::json!({ "reason": blocker }),
    )
    .await?;
    Err(EngineError::refused(
        format!("rollback of migration {} would lose writes: {blocker}", ex.id),
        format!(
            "finalize it (`tandem finalize {id}`) to keep the new table, with every write; and make a new migration to change the table back",
            id = ex.id
        ),
    ))
}
