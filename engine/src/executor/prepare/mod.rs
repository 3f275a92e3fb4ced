//! Phase 1, prepare: preflight checks, then the shadow table with the new definition.
//! Phase 2, dual-write: the triggers that follow every write (into the log, or the shadow).
//!
//! The shadow starts as `CREATE TABLE ... (LIKE original INCLUDING ...)` and the step's own
//! statements are run on it while it is empty, so PostgreSQL works out the new definition
//! (types, defaults, constraints, which indexes survive). Its indexes are then dropped, to be
//! built after the copy (with the direct method, all but the key's, built CONCURRENTLY). One
//! table's shadow is made in named steps (`table.rs`), from the column mapping (`mapping.rs`),
//! the indexes (`indexes.rs`) and the triggers' guards (`guards.rs`).

mod guards;
mod indexes;
mod mapping;
mod table;

use planner::plan::Strategy;
use serde_json::json;

use super::{online, Event, Executor};
use crate::error::EngineError;
use crate::shadow::{self, log, partitions, sql, writer, CopyMethod, TableSpec};
use crate::state::{self, Migration, Phase};
use table::prepare_table;

pub(crate) async fn run(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let steps = &m.plan.steps;
    if let Some(refused) = steps.iter().find(|s| s.strategy == Strategy::Refused) {
        return Err(EngineError::refused(
            format!(
                "the plan has a step tandem will not run: {} ({})",
                refused.description,
                refused.refusal.as_deref().unwrap_or("refused")
            ),
            "fix the change, make a new plan and submit it",
        ));
    }
    report_preflight(ex).await?;
    let first = online::first_shadow(steps);
    online::run(ex, steps, 0..first, m.online_done).await?;

    let tx = ex
        .client
        .transaction()
        .await
        .map_err(EngineError::sql("begin prepare"))?;
    tx.batch_execute(&format!(
        "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL lock_timeout = '{}ms'",
        ex.opts.lock_timeout.as_millis().max(1)
    ))
    .await
    .map_err(EngineError::sql("set up prepare"))?;
    let mut notes = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.strategy != Strategy::Shadow {
            continue;
        }
        let table = step.table.clone().ok_or_else(|| {
            EngineError::refused(
                format!("shadow step {} names no table", i + 1),
                "make a new plan",
            )
        })?;
        let spec = prepare_table(&tx, m, &table, &step.sql, ex.opts.copy).await?;
        if let Some(p) = &spec.partitioning {
            notes.push(format!(
                "{}: partitioned ({}), {} partitions: the shadow is a tree of the same partitions, copied through its root by the log method, swapped at once",
                table.display_plain(),
                p.key,
                p.partitions.len()
            ));
        }
        // A partitioned table's storage and rows are its partitions'.
        let figures = tx
            .query_one(crate::catalog::table::SIZE.sql, &[&spec.table_oid])
            .await
            .map_err(EngineError::sql("read the table's size"))?;
        let (size, reltuples): (i64, f64) = (figures.get(0), figures.get(1));
        notes.push(format!(
            "{}: shadow {} created; it will need about {} MB of disk (the table's size with its indexes)",
            table.display_plain(),
            spec.shadow.display_plain(),
            size >> 20
        ));
        let spec_json = serde_json::to_value(&spec).expect("spec serialises");
        tx.execute(
            "INSERT INTO tandem.shadow_tables
                 (migration_id, step, table_oid, schema_name, table_name, shadow_name, old_name, spec, rows_total)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &m.id,
                &(i as i32),
                &spec.table_oid,
                &spec.table.schema.as_str(),
                &spec.table.name.as_str(),
                &spec.shadow.name.as_str(),
                &spec.old.name.as_str(),
                &spec_json,
                &(reltuples as i64),
            ],
        )
        .await
        .map_err(EngineError::sql("record the shadow table"))?;
        if let Some(b) = &spec.rollback_blocker {
            tx.execute(
                "UPDATE tandem.migrations SET rollback_blocker = $2 WHERE id = $1",
                &[&m.id, b],
            )
            .await
            .map_err(EngineError::sql("record the rollback blocker"))?;
            notes.push(format!("rollback will not be available: {b}"));
        }
    }
    state::set_phase(&tx, m.id, Phase::Prepare, json!({ "notes": notes })).await?;
    super::failpoint("prepare").await;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit prepare"))?;
    for n in notes {
        ex.emit(Event::Note(n));
    }
    Ok(())
}

/// Long transactions and replication slots: reported, not refused (the backfill and cutover
/// will wait for them, and a slot holds WAL while the shadow is written).
async fn report_preflight(ex: &Executor) -> Result<(), EngineError> {
    let rows = ex
        .client
        .query(
            "SELECT pid, date_trunc('second', now() - xact_start)::text, coalesce(query, '')
               FROM pg_stat_activity
              WHERE xact_start < now() - interval '1 minute' AND pid <> pg_backend_pid()
              ORDER BY xact_start LIMIT 5",
            &[],
        )
        .await
        .map_err(EngineError::sql("look for long transactions"))?;
    for r in rows {
        ex.emit(Event::Warning(format!(
            "long transaction: pid {} open for {} ({}); the cutover will wait for it",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            // Another session's statement: its literals may be anybody's data.
            crate::redact::query(&r.get::<_, String>(2), 80)
        )));
    }
    let slots = ex
        .client
        .query(
            "SELECT slot_name::text, active, coalesce(pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), '?')
               FROM pg_replication_slots",
            &[],
        )
        .await
        .map_err(EngineError::sql("read the replication slots"))?;
    for r in slots {
        ex.emit(Event::Warning(format!(
            "replication slot {} ({}) retains {} of WAL; the copy adds about the table's size",
            r.get::<_, String>(0),
            if r.get::<_, bool>(1) {
                "active"
            } else {
                "inactive"
            },
            r.get::<_, String>(2)
        )));
    }
    Ok(())
}

/// Phase 2: create the triggers that follow every write (the log triggers, or the forward
/// trigger for the direct method) and the TRUNCATE trigger, in the transaction that records
/// the phase (so no write can slip between the two). CREATE TRIGGER waits for the writers in
/// flight; it runs under the lock timeout and retries.
pub(crate) async fn dual_write(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let specs = ex.specs().await?;
    let mut statements = Vec::new();
    for spec in &specs {
        let f = shadow::forward_function(m.id, spec.table_oid);
        statements.push(sql::truncate_function(spec, sql::Direction::Forward, &f));
        statements.extend(writer::recorder_function(spec));
        match spec.copy {
            CopyMethod::Direct => statements.extend(forward_trigger(spec, &[])),
            CopyMethod::Log => {
                statements.push(log::create_table(spec));
                statements.extend(writer::log_grants(
                    spec,
                    &shadow::log_table(m.id, spec.table_oid),
                ));
                statements.push(log::function(spec));
                statements.extend(writer::hand_over(
                    spec,
                    &shadow::log_function(m.id, spec.table_oid),
                ));
                statements.extend(log::create_triggers(spec));
            }
        }
        statements.push(format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()",
            shadow::truncate_trigger(m.id),
            spec.table,
            shadow::truncate_function(&f)
        ));
        statements.push(shadow::fire_always(
            &spec.table,
            &shadow::truncate_trigger(m.id),
        ));
        if spec.partitioning.is_some() {
            statements.push(partitions::truncate_function_sql(&f));
            statements.extend(partitions::truncate_triggers(
                spec,
                &shadow::truncate_trigger(m.id),
                &f,
                partitions::Side::Named,
                partitions::Side::Shadow,
            ));
        }
    }
    ex.ddl_retry(
        "install the dual-write triggers",
        &statements,
        Some(Phase::DualWrite),
    )
    .await
}

/// The forward trigger and its function: every write to the table applied to the shadow.
/// Only `CREATE TRIGGER`'s SHARE ROW EXCLUSIVE lock (readers go on; a `DROP TRIGGER IF
/// EXISTS` would take ACCESS EXCLUSIVE): the statements run in one transaction with what
/// they record, so no earlier attempt left a trigger behind. `evict`: see
/// [`sql::trigger_function`].
pub(crate) fn forward_trigger(spec: &TableSpec, evict: &[String]) -> Vec<String> {
    let f = shadow::forward_function(spec.migration, spec.table_oid);
    let t = shadow::forward_trigger(spec.migration);
    let mut out = vec![sql::trigger_function(
        spec,
        sql::Direction::Forward,
        &f,
        evict,
    )];
    out.extend(writer::hand_over(spec, &f));
    out.extend([
        format!(
            "CREATE TRIGGER {t} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {f}()",
            spec.table
        ),
        shadow::fire_always(&spec.table, &t),
    ]);
    out
}
