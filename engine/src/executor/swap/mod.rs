//! Phase 5, cutover, and its mirror image, rollback: one short transaction that swaps which
//! physical table carries the user's name, under `lock_timeout`, retried with capped,
//! jittered backoff, and abandoned (with the table untouched) after a limit. Then the
//! rollback window, and finalize (phase 7, cleanup).

pub(crate) mod in_force;
pub(crate) mod locks;
mod steps;

use std::time::{Duration, Instant};

use planner::ident::{Ident, QualName};
use serde_json::json;

use super::{backoff, is_lock_timeout, mirror, online, Event, Executor};
use crate::error::EngineError;
use crate::hooks::HOLD_WAIT;
use crate::shadow::{self, matviews, TableSpec};
use crate::state::{self, Migration, Phase};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Shadow in, original parked as `old` (cutover).
    Forward,
    /// Original back in, new table parked as `shadow` (rollback).
    Back,
}

pub(crate) async fn cutover(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let specs = ex.specs().await?;
    in_force::forward(ex, &specs, true).await?;
    swap(ex, m, &specs, Way::Forward).await?;
    let m = Migration::load(&ex.client, m.id).await?;
    after_cutover(ex, &m).await
}

/// The swap, attempted until it gets its locks in time.
async fn swap(
    ex: &mut Executor,
    m: &Migration,
    specs: &[TableSpec],
    way: Way,
) -> Result<(), EngineError> {
    let tables: Vec<String> = specs
        .iter()
        .map(|s| String::from(s.table.clone()))
        .collect();
    let what = if way == Way::Forward {
        "cutover"
    } else {
        "rollback"
    };
    let check_deadlocks = locks::can_check_deadlocks(&ex.client).await;
    // The relations of the last failed attempt, for the wait for a gap before the next.
    let mut contended: Vec<u32> = Vec::new();
    // Deadlocks met in each order (`locks::Order`): an application whose transactions write
    // the parent, then a child, deadlocks with the children-first order on every attempt
    // that meets one of them in between; each attempt takes the order that deadlocked less.
    let mut deadlocks = [0u32; 2];
    let mut order = locks::Order::ChildrenFirst;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if attempt > 1 {
            // An approval revoked or expired while attempts failed stops the next one: each
            // attempt is approved as the first was (the phase's gate checked the first).
            let action = if way == Way::Forward {
                gates::policy::Action::Phase(gates::policy::Phase::Cutover)
            } else {
                gates::policy::Action::Rollback
            };
            ex.approve(m, action).await?;
        }
        let next = if deadlocks[1] < deadlocks[0] {
            locks::Order::ChildrenLast
        } else {
            locks::Order::ChildrenFirst
        };
        if next != order {
            ex.emit(Event::Note(format!(
                "{what} attempt {attempt}: locking {next} ({} deadlock(s) with application transactions that lock them the other way)",
                deadlocks[0].max(deadlocks[1])
            )));
            order = next;
        }
        if !contended.is_empty() {
            // A session that has held one of the locks longer than an attempt may wait would
            // make the next attempt fail the same way: wait for it to end (bounded).
            match locks::wait_for_gap(
                &ex.client,
                &contended,
                ex.opts.lock_timeout,
                ex.opts.cutover_max_backoff,
            )
            .await
            {
                Ok(Some(waited)) => {
                    ex.emit(Event::Note(format!("{what} attempt {attempt}: {waited}")))
                }
                Ok(None) => {}
                Err(e) => ex.emit(Event::Warning(format!(
                    "{what} attempt {attempt}: could not look at the lock queue ({e})"
                ))),
            }
        }
        ex.client
            .execute(
                "UPDATE tandem.migrations SET cutover_attempts = cutover_attempts + 1, waiting_for = $2, updated_at = now() WHERE id = $1",
                &[&m.id, &format!("{what} attempt {attempt}")],
            )
            .await
            .map_err(EngineError::sql("record the attempt"))?;
        let held = match ex.hold.hold(m.id, &tables, HOLD_WAIT).await {
            Ok(held) => held,
            Err(e) => {
                ex.emit(Event::Warning(format!(
                    "{what} attempt {attempt}: proxies not asked to hold ({e}); a plain attempt"
                )));
                false
            }
        };
        if let Some(r) = ex.hold.last_report() {
            // Only when proxies exist: without them the attempt is the plain one, as before.
            ex.emit(Event::Note(format!(
                "{what} attempt {attempt}: {}",
                r.detail
            )));
            state::record(
                &ex.client,
                m.id,
                what,
                if held { "held" } else { "hold fell back" },
                json!({ "attempt": attempt, "proxies": r.proxies, "held": r.held, "waited_ms": r.waited.as_millis() as u64, "detail": r.detail }),
            )
            .await?;
        }
        let t0 = Instant::now();
        let result = attempt_swap(ex, m, specs, way, (attempt, order), held, check_deadlocks).await;
        ex.hold.release(m.id).await;
        let took = t0.elapsed();
        match result {
            Ok((notes, lock_wait)) => {
                ex.emit(Event::Cutover {
                    attempt,
                    ok: true,
                    took,
                    lock_wait,
                    detail: format!("{what} committed"),
                });
                for n in notes {
                    ex.emit(Event::Note(n));
                }
                return Ok(());
            }
            Err(Attempt::Locked(not)) => {
                let mut oids = vec![not.oid];
                oids.extend(specs.iter().map(|s| s.table_oid));
                let cancelled = cancel_autovacuum(ex, &oids).await.unwrap_or_default();
                if !cancelled.is_empty() {
                    ex.emit(Event::Note(format!(
                        "cancelled autovacuum on the tables (pid {}), as PostgreSQL does for a lock waiter; it runs again later",
                        cancelled.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    )));
                }
                let holders = locks::holders(&ex.client, not.oid)
                    .await
                    .unwrap_or_default();
                let detail = format!(
                    "{what} attempt {attempt}: {not}{}",
                    if holders.is_empty() {
                        String::new()
                    } else {
                        format!("; held by {holders}")
                    }
                );
                state::record(
                    &ex.client,
                    m.id,
                    what,
                    "attempt failed",
                    json!({ "attempt": attempt, "detail": detail, "relation": not.lock, "cause": not.cause, "waited_ms": not.waited.as_millis() as u64 }),
                )
                .await?;
                ex.emit(Event::Cutover {
                    attempt,
                    ok: false,
                    took,
                    lock_wait: not.waited,
                    detail: detail.clone(),
                });
                if attempt >= ex.opts.cutover_attempts {
                    state::set_waiting(&ex.client, m.id, None).await;
                    return Err(EngineError::CutoverGaveUp {
                        what,
                        attempts: attempt,
                        lock_timeout_ms: ex.opts.lock_timeout.as_millis() as u64,
                        last: detail,
                        state: if way == Way::Forward {
                            "the table is untouched and the migration still dual-writes"
                        } else {
                            "the new table keeps the name and the rollback window goes on (the old table is still kept current)"
                        },
                        again: if way == Way::Forward {
                            format!("tandem apply {}", m.id)
                        } else {
                            format!("tandem rollback {}", m.id)
                        },
                    });
                }
                contended = oids.into_iter().filter(|&o| o != 0).collect();
                if not.cause.starts_with("deadlock") {
                    deadlocks[order as usize] += 1;
                }
                // A deadlock ends at once and the other transaction goes on: try again soon.
                // A timeout means a long holder: back off wider each time.
                let pause = if not.cause.starts_with("deadlock") {
                    backoff(1, ex.opts.cutover_max_backoff)
                } else {
                    backoff(attempt, ex.opts.cutover_max_backoff)
                };
                tokio::time::sleep(pause).await;
            }
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
}

enum Attempt {
    Locked(locks::NotGranted),
    Failed(EngineError),
}

impl From<EngineError> for Attempt {
    fn from(e: EngineError) -> Attempt {
        match e {
            // A statement after the locks waited for one they did not foresee.
            EngineError::Sql {
                error: source,
                context,
            } if is_lock_timeout(&source) => Attempt::Locked(locks::NotGranted {
                lock: format!("a lock taken by `{context}`"),
                oid: 0,
                cause: source
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| "lock timeout".into()),
                waited: Duration::ZERO,
            }),
            other => Attempt::Failed(other),
        }
    }
}

/// Autovacuum workers (not the anti-wraparound kind) holding locks on the tables: PostgreSQL
/// cancels them itself for a waiter after `deadlock_timeout`, but the swap never waits that
/// long. Client sessions are never touched.
async fn cancel_autovacuum(ex: &Executor, oids: &[u32]) -> Result<Vec<i32>, tokio_postgres::Error> {
    let rows = ex
        .client
        .query(
            // The candidates are chosen first (MATERIALIZED), so the cancel can never be
            // evaluated for a session the other conditions exclude.
            "WITH workers AS MATERIALIZED (
                 SELECT a.pid FROM pg_stat_activity a
                  WHERE a.backend_type = 'autovacuum worker' AND a.query NOT LIKE '%to prevent wraparound%'
                    AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid
                                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                                   AND l.relation = ANY($1)))
             SELECT pid FROM workers WHERE pg_cancel_backend(pid)",
            &[&oids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One attempt: the steps of `steps.rs`, in one transaction that commits only if every one
/// succeeded. Returns notes for the user, and how long the locks took.
async fn attempt_swap(
    ex: &mut Executor,
    m: &Migration,
    specs: &[TableSpec],
    way: Way,
    (attempt, order): (u32, locks::Order),
    held: bool,
    check_deadlocks: bool,
) -> Result<(Vec<String>, Duration), Attempt> {
    let lock_timeout = ex.opts.lock_timeout;
    let tx = ex
        .client
        .transaction()
        .await
        .map_err(EngineError::sql("begin the swap"))?;
    steps::exec(
        &tx,
        "SET LOCAL search_path = pg_catalog, pg_temp",
        "set up the swap",
    )
    .await?;
    let lock_wait =
        steps::lock_everything(&tx, specs, way, lock_timeout, check_deadlocks, order).await?;

    let pending = steps::pending_divergence(&tx, m, way).await?;
    if pending > 0 {
        drop(tx);
        if way == Way::Forward {
            // Back to verify: it copies the rows again and reports what fails.
            let back = ex
                .client
                .transaction()
                .await
                .map_err(EngineError::sql("begin"))?;
            state::set_phase(
                &back,
                m.id,
                Phase::Backfill,
                json!({ "reason": "writes the triggers could not apply since verification" }),
            )
            .await?;
            back.commit().await.map_err(EngineError::sql("commit"))?;
        }
        return Err(Attempt::Failed(EngineError::refused(
            format!("{pending} write(s) could not be applied to the {} table since the last check (see `tandem status`)", if way == Way::Forward { "new" } else { "old" }),
            if way == Way::Forward { "run `tandem apply` again: it verifies again before the next cutover" } else { "the old table cannot take every write made since cutover, so a rollback would lose them; fix the cause or finalize" },
        )));
    }

    let mut validate = Vec::new();
    let mut notes = Vec::new();
    for spec in specs {
        let names = steps::Names::of(spec, way);
        let (deps, standby) = steps::check_table(&tx, spec, way, &names).await?;
        steps::rename_pair(&tx, m, spec, way, &names).await?;
        steps::rename_indexes(&tx, spec, way).await?;
        validate.extend(steps::carry(&tx, spec, way, &names, &deps, &standby).await?);
        if way == Way::Forward {
            notes.extend(steps::reverse_dual_write(&tx, m, spec, standby.oid).await?);
        }
    }
    let detail = json!({ "attempt": attempt, "lock_wait_ms": lock_wait.as_millis() as u64, "proxy_held": held, "validate": validate });
    steps::record(&tx, m, way, detail).await?;
    super::failpoint(if way == Way::Forward {
        "cutover"
    } else {
        "rollback"
    })
    .await;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit the swap"))?;
    Ok((notes, lock_wait))
}

/// After the swap: validate the foreign keys it added NOT VALID (SHARE UPDATE EXCLUSIVE: no
/// writer waits), then the plan's online steps that follow its shadow steps. Resumable.
pub(crate) async fn after_cutover(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let pending: bool = ex
        .client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tandem.shadow_tables WHERE migration_id = $1 AND NOT fks_validated)",
            &[&m.id],
        )
        .await
        .map_err(EngineError::sql("read the cutover record"))?
        .get(0);
    super::failpoint("after_cutover").await;
    carry_matviews(ex, Way::Forward).await?;
    if pending {
        validate_recorded(ex, m.id, "cutover").await?;
        ex.client
            .execute(
                "UPDATE tandem.shadow_tables SET fks_validated = true WHERE migration_id = $1",
                &[&m.id],
            )
            .await
            .map_err(EngineError::sql("record the validation"))?;
    }
    let first = online::first_shadow(&m.plan.steps);
    online::run(ex, &m.plan.steps, first..m.plan.steps.len(), m.online_done).await
}

/// Move the materialized views that still read the table the last swap parked (the old one
/// after cutover, the new one after a rollback) to the table under the user's name: each
/// built again beside, then swapped in (`shadow::matviews`). Resumable: what is done reads
/// the parked table no more.
async fn carry_matviews(ex: &mut Executor, way: Way) -> Result<(), EngineError> {
    for spec in ex.specs().await? {
        let parked = match way {
            Way::Forward => &spec.old,
            Way::Back => &spec.shadow,
        };
        let tx = ex
            .client
            .transaction()
            .await
            .map_err(EngineError::sql("read the materialized views"))?;
        tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
            .await
            .map_err(EngineError::sql("read the materialized views"))?;
        let rebuilds = matviews::rebuilds(&tx, ex.id, parked, &spec.table).await?;
        tx.commit()
            .await
            .map_err(EngineError::sql("read the materialized views"))?;
        for r in rebuilds {
            ex.emit(Event::Note(format!(
                "building materialized view {} again over {}, beside the one clients read",
                r.name.display_plain(),
                spec.table.display_plain()
            )));
            ex.ddl_retry("build a materialized view again", &r.build, None)
                .await?;
            super::failpoint("matview_built").await;
            ex.ddl_retry("swap a materialized view in", &r.swap, None)
                .await?;
        }
    }
    Ok(())
}

/// Validate the foreign keys the last swap of `phase` (cutover, or the rollback's) added NOT
/// VALID, as its event recorded them. Skips those already valid, so it can run again.
async fn validate_recorded(ex: &mut Executor, id: i64, phase: &str) -> Result<(), EngineError> {
    let detail: Option<String> = ex
        .client
        .query_opt(
            "SELECT detail::text FROM tandem.events WHERE migration_id = $1 AND phase = $2 AND event = 'done' ORDER BY id DESC LIMIT 1",
            &[&id, &phase],
        )
        .await
        .map_err(EngineError::sql("read the swap's record"))?
        .and_then(|r| r.get(0));
    let detail: serde_json::Value = detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    for pair in detail["validate"].as_array().cloned().unwrap_or_default() {
        let (Some(table), Some(name)) = (pair[0].as_str(), pair[1].as_str()) else {
            continue;
        };
        let (Ok(table), Ok(name)) = (
            QualName::try_from(table.to_string()),
            Ident::new(name.to_string()),
        ) else {
            continue;
        };
        // A partitioned table's key, once its leaves' are valid (see `steps::carry`).
        if let Some(leaf) = pair[2].as_str() {
            let Ok(leaf) = QualName::try_from(leaf.to_string()) else {
                continue;
            };
            // The definition as the server prints the leaf's (never text from the record).
            // Under a pg_catalog-only search_path, as the statement will run: names
            // come out qualified.
            let tx = ex
                .client
                .transaction()
                .await
                .map_err(EngineError::sql("look at a foreign key"))?;
            tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
                .await
                .map_err(EngineError::sql("look at a foreign key"))?;
            let row = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2 AND conparentid = 0),
                            (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($3) AND conname = $2 AND contype = 'f')",
                    &[&table.to_string(), &name.as_str(), &leaf.to_string()],
                )
                .await
                .map_err(EngineError::sql("look at a foreign key"))?;
            tx.commit()
                .await
                .map_err(EngineError::sql("look at a foreign key"))?;
            let (present, definition): (bool, Option<String>) = (row.get(0), row.get(1));
            if let (false, Some(definition)) = (present, definition) {
                ex.emit(Event::Note(format!(
                    "adding foreign key {} to partitioned {} (its partitions' are valid: no scan)",
                    name.as_str(),
                    table.display_plain()
                )));
                ex.ddl_retry(
                    "add a partitioned table's foreign key",
                    &[format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
                    )],
                    None,
                )
                .await?;
            }
            continue;
        }
        let still: bool = ex
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2 AND NOT convalidated)",
                &[&table.to_string(), &name.as_str()],
            )
            .await
            .map_err(EngineError::sql("look at a foreign key"))?
            .get(0);
        if still {
            ex.emit(Event::Note(format!(
                "validating foreign key {} on {}",
                name.as_str(),
                table.display_plain()
            )));
            ex.ddl_retry(
                "validate a foreign key",
                &[format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}")],
                None,
            )
            .await?;
        }
    }
    Ok(())
}

fn window_check(ends: Option<String>, id: i64) -> Result<(), EngineError> {
    if let Some(ends) = ends {
        return Err(EngineError::refused(
            format!("migration {id}'s rollback window ended at {ends}"),
            format!(
                "a rollback is no longer offered; run `tandem finalize {id}` to drop the old table"
            ),
        ));
    }
    Ok(())
}

/// `tandem rollback`: in the rollback window, swap the old table back in (returns false);
/// before cutover, abandon the migration: the table was never swapped, so drop the shadow and
/// the triggers (returns true).
pub(crate) async fn rollback(ex: &mut Executor) -> Result<bool, EngineError> {
    let m = Migration::load(&ex.client, ex.id).await?;
    if !m.phase.is_terminal() {
        ex.approve(&m, gates::policy::Action::Rollback).await?;
    }
    let undo = ex.opts.undo_online_steps;
    match m.phase {
        Phase::RolledBack => {
            carry_matviews(ex, Way::Back).await?;
            drop_new(ex, &m).await?;
            validate_recorded(ex, m.id, "rolled_back").await?;
            online::after_rollback(ex, &m.plan.steps, m.online_done, undo).await?;
            return Ok(false);
        }
        Phase::RollbackWindow => {}
        Phase::Submitted | Phase::Prepare | Phase::DualWrite | Phase::Backfill | Phase::Verify => {
            abandon(ex, &m).await?;
            online::after_rollback(ex, &m.plan.steps, m.online_done, undo).await?;
            return Ok(true);
        }
        Phase::Abandoned if undo => {
            online::after_rollback(ex, &m.plan.steps, m.online_done, undo).await?;
            return Ok(true);
        }
        p => {
            return Err(EngineError::refused(
                format!("migration {} is {p}", m.id),
                "there is nothing to roll back; make a new migration to change the table back",
            ))
        }
    }
    let ended: Option<String> = ex
        .client
        .query_one("SELECT CASE WHEN window_ends_at < now() THEN window_ends_at::text END FROM tandem.migrations WHERE id = $1", &[&m.id])
        .await
        .map_err(EngineError::sql("read the window"))?
        .get(0);
    window_check(ended, m.id)?;
    if let Some(b) = &m.rollback_blocker {
        return Err(EngineError::refused(
            format!("rollback of migration {} would not restore the old rows exactly: {b}", m.id),
            format!("finalize it (`tandem finalize {}`), and make a new migration to change the table back", m.id),
        ));
    }
    let lost = ex
        .client
        .query(
            "SELECT key, message FROM tandem.divergence WHERE migration_id = $1 AND direction = 'reverse' ORDER BY id LIMIT 3",
            &[&m.id],
        )
        .await
        .map_err(EngineError::sql("read the divergence log"))?;
    if !lost.is_empty() {
        let e: Vec<String> = lost
            .iter()
            .map(|r| format!("key {}: {}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        return Err(EngineError::refused(
            format!("the old table could not take some writes made since cutover ({}), so a rollback would lose them", e.join("; ")),
            format!("finalize instead (`tandem finalize {}`)", m.id),
        ));
    }
    let specs = ex.specs().await?;
    in_force::reverse(ex, &specs).await?;
    ex.emit(Event::PhaseStarted(Phase::RolledBack));
    swap(ex, &m, &specs, Way::Back).await?;
    carry_matviews(ex, Way::Back).await?;
    drop_new(ex, &m).await?;
    validate_recorded(ex, m.id, "rolled_back").await?;
    online::after_rollback(ex, &m.plan.steps, m.online_done, undo).await?;
    Ok(false)
}

/// Before cutover: drop the dual-write triggers, the shadow and tandem's functions; the
/// table was never swapped. The plan's online steps that already ran are not undone.
async fn abandon(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    teardown(ex, m, Teardown::Abandon).await
}

/// After a rollback: drop the new table and tandem's functions.
async fn drop_new(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    teardown(ex, m, Teardown::AfterRollback).await?;
    state::record(
        &ex.client,
        m.id,
        "rolled_back",
        "cleaned up",
        serde_json::Value::Null,
    )
    .await
}

/// Which of the two tables a teardown drops, with what writes into it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// Before cutover: the shadow, and the forward triggers on the user's table.
    Abandon,
    /// After a rollback: the new table (the rollback's swap dropped the reverse triggers).
    AfterRollback,
    /// The end of the window: the old table, and the reverse triggers.
    Finalize,
}

/// One teardown for abandon, rollback and finalize: the triggers that write into the table
/// that goes, the mirror view that reads it (a migration left by an older tandem may still
/// have one), the table, tandem's functions; each statement under lock_timeout, retried.
async fn teardown(ex: &mut Executor, m: &Migration, which: Teardown) -> Result<(), EngineError> {
    let mut statements = Vec::new();
    for spec in ex.specs().await? {
        let (triggers, table) = match which {
            Teardown::Abandon => (
                vec![
                    shadow::forward_trigger(m.id),
                    shadow::truncate_trigger(m.id),
                ],
                &spec.shadow,
            ),
            Teardown::AfterRollback => (vec![], &spec.shadow),
            Teardown::Finalize => (
                vec![
                    shadow::reverse_trigger(m.id),
                    shadow::reverse_truncate_trigger(m.id),
                ],
                &spec.old,
            ),
        };
        for t in triggers {
            statements.push(format!("DROP TRIGGER IF EXISTS {t} ON {}", spec.table));
            // The partitions' TRUNCATE triggers (the row trigger's clones go with the root's).
            statements.extend(shadow::partitions::drop_triggers(
                &spec,
                &t,
                shadow::partitions::Side::Named,
                true,
            ));
        }
        if which == Teardown::Abandon {
            // The log method's log, if the backfill had not finished with it.
            statements.extend(shadow::log::drop_all(&spec));
        }
        statements.push(mirror::drop_statement(&spec));
        statements.push(format!("DROP TABLE IF EXISTS {table}"));
        statements.extend(drop_functions(m.id, spec.table_oid));
    }
    statements.extend(mirror::clear_statements(m.id));
    let (what, phase) = match which {
        Teardown::Abandon => ("abandon the migration", Some(Phase::Abandoned)),
        Teardown::AfterRollback => ("drop the new table", None),
        Teardown::Finalize => ("finalize", Some(Phase::Finalized)),
    };
    ex.ddl_retry(what, &statements, phase).await
}

fn drop_functions(m: i64, oid: u32) -> Vec<String> {
    let f = shadow::forward_function(m, oid);
    let r = shadow::reverse_function(m, oid);
    let part = shadow::partitions::truncate_function;
    vec![
        format!("DROP FUNCTION IF EXISTS {f}()"),
        format!(
            "DROP FUNCTION IF EXISTS {}()",
            shadow::truncate_function(&f)
        ),
        format!("DROP FUNCTION IF EXISTS {}()", part(&f)),
        format!("DROP FUNCTION IF EXISTS {r}()"),
        format!(
            "DROP FUNCTION IF EXISTS {}()",
            shadow::truncate_function(&r)
        ),
        format!("DROP FUNCTION IF EXISTS {}()", part(&r)),
        shadow::writer::drop_recorder(m, oid),
    ]
}

/// Phase 7, cleanup: drop the reverse triggers, the old table and tandem's functions.
pub(crate) async fn finalize(ex: &mut Executor) -> Result<(), EngineError> {
    let m = Migration::load(&ex.client, ex.id).await?;
    if m.phase == Phase::RollbackWindow {
        ex.approve(&m, gates::policy::Action::Finalize).await?;
    }
    match m.phase {
        Phase::RollbackWindow => {}
        Phase::Finalized => return Ok(()),
        p => {
            return Err(EngineError::refused(
                format!(
                    "migration {} is in phase {p}; finalize ends a rollback window",
                    m.id
                ),
                if p < Phase::RollbackWindow {
                    "run `tandem apply` first"
                } else {
                    "there is nothing to finalize"
                },
            ))
        }
    }
    after_cutover(ex, &m).await?;
    teardown(ex, &m, Teardown::Finalize).await
}
