//! Phase 5, cutover, and its mirror image, rollback: one short transaction that swaps which
//! physical table carries the user's name, under `lock_timeout`, retried with capped,
//! jittered backoff, and abandoned (with the table untouched) after a limit. Then the
//! rollback window, and finalize (phase 7, cleanup).

mod locks;

use std::time::{Duration, Instant};

use planner::ident::{Ident, QualName};
use serde_json::json;
use tokio_postgres::Transaction;

use super::{backoff, is_lock_timeout, mirror, online, Event, Executor};
use crate::error::EngineError;
use crate::hooks::HOLD_WAIT;
use crate::shadow::{self, dependents, sql, TableSpec};
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
    let mut attempt = 0u32;
    loop {
        attempt += 1;
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
        let result = attempt_swap(ex, m, specs, way, attempt, held, check_deadlocks).await;
        ex.hold.release(m.id).await;
        let took = t0.elapsed();
        match result {
            Ok(notes) => {
                ex.emit(Event::Cutover {
                    attempt,
                    ok: true,
                    took,
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
            EngineError::Sql { error: source, context } if is_lock_timeout(&source) => {
                Attempt::Locked(locks::NotGranted {
                    lock: format!("a lock taken by `{context}`"),
                    oid: 0,
                    cause: source
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| "lock timeout".into()),
                    waited: Duration::ZERO,
                })
            }
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

async fn exec(tx: &Transaction<'_>, sql: &str, what: &str) -> Result<(), EngineError> {
    tx.batch_execute(sql).await.map_err(|e| {
        EngineError::sql(format!("{what}: `{}`", sql.lines().next().unwrap_or(sql)))(e)
    })
}

async fn oid_of(tx: &Transaction<'_>, name: &QualName) -> Result<Option<u32>, EngineError> {
    Ok(tx
        .query_one("SELECT to_regclass($1)::oid", &[&name.to_string()])
        .await
        .map_err(EngineError::sql("find a table"))?
        .get(0))
}

async fn names_on(tx: &Transaction<'_>, sql: &str, oid: u32) -> Result<Vec<String>, EngineError> {
    Ok(tx
        .query(sql, &[&oid])
        .await
        .map_err(EngineError::sql("read the table's objects"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn attempt_swap(
    ex: &mut Executor,
    m: &Migration,
    specs: &[TableSpec],
    way: Way,
    attempt: u32,
    held: bool,
    check_deadlocks: bool,
) -> Result<Vec<String>, Attempt> {
    let lock_timeout = ex.opts.lock_timeout;
    let tx = ex
        .client
        .transaction()
        .await
        .map_err(EngineError::sql("begin the swap"))?;
    exec(
        &tx,
        "SET LOCAL search_path = pg_catalog, pg_temp",
        "set up the swap",
    )
    .await?;
    // Every relation the swap touches, locked up front in the applications' order, within
    // one budget of lock_timeout.
    let mut pairs = Vec::new();
    for spec in specs {
        let standby = if way == Way::Forward {
            &spec.shadow
        } else {
            &spec.old
        };
        let (Some(live), Some(standby)) =
            (oid_of(&tx, &spec.table).await?, oid_of(&tx, standby).await?)
        else {
            // Reported below, with the name that is missing.
            continue;
        };
        pairs.push((live, standby));
    }
    let to_lock = locks::plan(&tx, &pairs).await?;
    let lock_wait = match locks::acquire(&tx, &to_lock, lock_timeout, check_deadlocks).await {
        Ok(took) => took,
        Err(Ok(not)) => return Err(Attempt::Locked(not)),
        Err(Err(e)) => return Err(Attempt::Failed(e)),
    };
    if let Some(new) = locks::changed_since(&tx, &pairs, &to_lock).await? {
        return Err(Attempt::Locked(locks::NotGranted {
            lock: new,
            oid: 0,
            cause: "it became part of the swap while the others were being locked".into(),
            waited: lock_wait,
        }));
    }

    // Writes a trigger could not apply since they were last checked make the swap unsafe.
    let (direction, since) = match way {
        Way::Forward => ("forward", m_verify_seen(&tx, m.id).await?),
        Way::Back => ("reverse", 0),
    };
    let pending: i64 = tx
        .query_one(
            "SELECT count(*) FROM tandem.divergence WHERE migration_id = $1 AND direction = $2 AND id > $3",
            &[&m.id, &direction, &since],
        )
        .await
        .map_err(EngineError::sql("read the divergence log"))?
        .get(0);
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
        let (live_name, standby, parked_as) = match way {
            Way::Forward => (&spec.table, &spec.shadow, &spec.old),
            Way::Back => (&spec.table, &spec.old, &spec.shadow),
        };
        let live_oid = oid_of(&tx, live_name).await?.ok_or_else(|| {
            EngineError::refused(
                format!("table {} is gone", live_name.display_plain()),
                "nothing was changed",
            )
        })?;
        let standby_oid = oid_of(&tx, standby).await?.ok_or_else(|| {
            EngineError::refused(
                format!("tandem's table {} is gone", standby.display_plain()),
                "the migration cannot go on; nothing was changed",
            )
        })?;
        let deps = dependents::inspect(&tx, live_oid).await?;
        if !deps.refusals.is_empty() {
            return Err(Attempt::Failed(EngineError::refused(
                deps.refusals.join("; "),
                "nothing was changed",
            )));
        }
        if way == Way::Forward {
            // An index created on the table after prepare has no copy on the shadow.
            let current = names_on(&tx, "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1", live_oid).await?;
            if let Some(extra) = current.iter().find(|n| {
                !spec
                    .old_indexes
                    .iter()
                    .any(|p| p.name.as_str() == n.as_str())
            }) {
                return Err(Attempt::Failed(EngineError::refused(
                    format!("index {extra} was created on {} after the migration was prepared, and the new table has no copy of it", spec.table.display_plain()),
                    "drop it (DROP INDEX CONCURRENTLY) and create it again after cutover; nothing was changed",
                )));
            }
        }
        let target_triggers = names_on(
            &tx,
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal",
            standby_oid,
        )
        .await?;
        let target_policies = names_on(
            &tx,
            "SELECT polname::text FROM pg_policy WHERE polrelid = $1",
            standby_oid,
        )
        .await?;
        let target_fks = names_on(
            &tx,
            "SELECT conname::text FROM pg_constraint WHERE conrelid = $1 AND contype = 'f'",
            standby_oid,
        )
        .await?;

        // The mirror view reads one of the two tables by oid: drop it before the renames
        // (a rollback window's view is made again below, over the parked table).
        mirror::drop_view(&tx, spec).await?;

        // Stop the trigger that writes into the standby; swap the names.
        let (trigger, trunc) = match way {
            Way::Forward => (
                shadow::forward_trigger(m.id),
                shadow::truncate_trigger(m.id),
            ),
            Way::Back => (
                shadow::reverse_trigger(m.id),
                shadow::reverse_truncate_trigger(m.id),
            ),
        };
        exec(
            &tx,
            &format!("DROP TRIGGER IF EXISTS {trigger} ON {live_name}"),
            "drop the dual-write trigger",
        )
        .await?;
        exec(
            &tx,
            &format!("DROP TRIGGER IF EXISTS {trunc} ON {live_name}"),
            "drop the dual-write trigger",
        )
        .await?;
        exec(
            &tx,
            &format!("ALTER TABLE {live_name} RENAME TO {}", parked_as.name),
            "park the table",
        )
        .await?;
        exec(
            &tx,
            &format!("ALTER TABLE {standby} RENAME TO {}", live_name.name),
            "rename the table into place",
        )
        .await?;
        let schema = &spec.table.schema;
        match way {
            Way::Forward => {
                for p in &spec.old_indexes {
                    exec(
                        &tx,
                        &format!("ALTER INDEX {schema}.{} RENAME TO {}", p.name, p.parked),
                        "park an index",
                    )
                    .await?;
                }
                for idx in &spec.new_indexes {
                    match (&idx.constraint, idx.deferred) {
                        (Some(c), true) => {
                            let kind = if c.primary { "PRIMARY KEY" } else { "UNIQUE" };
                            let timing = match (c.deferrable, c.deferred) {
                                (true, true) => " DEFERRABLE INITIALLY DEFERRED",
                                (true, false) => " DEFERRABLE",
                                _ => "",
                            };
                            exec(&tx, &format!("ALTER TABLE {live_name} ADD CONSTRAINT {} {kind} USING INDEX {}{timing}", c.name, idx.temp_name), "attach a constraint").await?;
                            if c.name != idx.final_name {
                                exec(
                                    &tx,
                                    &format!(
                                        "ALTER INDEX {schema}.{} RENAME TO {}",
                                        c.name, idx.final_name
                                    ),
                                    "name an index",
                                )
                                .await?;
                            }
                        }
                        _ => {
                            exec(
                                &tx,
                                &format!(
                                    "ALTER INDEX {schema}.{} RENAME TO {}",
                                    idx.temp_name, idx.final_name
                                ),
                                "name an index",
                            )
                            .await?
                        }
                    }
                }
            }
            Way::Back => {
                for idx in &spec.new_indexes {
                    exec(
                        &tx,
                        &format!(
                            "ALTER INDEX IF EXISTS {schema}.{} RENAME TO {}",
                            idx.final_name, idx.temp_name
                        ),
                        "park an index",
                    )
                    .await?;
                }
                for p in &spec.old_indexes {
                    exec(
                        &tx,
                        &format!(
                            "ALTER INDEX IF EXISTS {schema}.{} RENAME TO {}",
                            p.parked, p.name
                        ),
                        "restore an index",
                    )
                    .await?;
                }
            }
        }
        let parked = QualName {
            schema: spec.table.schema.clone(),
            name: parked_as.name.clone(),
        };
        for st in sql::identity_swap(spec, way == Way::Forward, live_name, &parked) {
            exec(&tx, &st, "move an identity sequence").await?;
        }
        for st in sql::extras_swap(spec, way == Way::Forward, live_name) {
            exec(&tx, &st, "carry statistics, constraints and comments").await?;
        }
        // The old table keeps its own outbound FKs: they are carried forward only (a rollback
        // must not give the original an FK the change added).
        let keep_fks: Vec<String> = match way {
            Way::Forward => target_fks.clone(),
            Way::Back => deps.outbound_fks.iter().map(|f| f.name.clone()).collect(),
        };
        for s in dependents::carry(
            &deps,
            &parked,
            live_name,
            &target_triggers,
            &target_policies,
            &keep_fks,
        )? {
            exec(&tx, &s, "carry a dependent object over").await?;
        }
        let ri = match (deps.replica_identity, &deps.replica_index) {
            ('f', _) => "FULL".to_string(),
            ('n', _) => "NOTHING".to_string(),
            ('i', Some(ix)) => {
                let bare = ix
                    .rsplit('.')
                    .next()
                    .unwrap_or(ix)
                    .trim_matches('"')
                    .to_string();
                format!(
                    "USING INDEX {}",
                    Ident::new(bare).map_err(|e| EngineError::refused(
                        format!("replica identity index: {e}"),
                        "rename it"
                    ))?
                )
            }
            _ => "DEFAULT".to_string(),
        };
        exec(
            &tx,
            &format!("ALTER TABLE {live_name} REPLICA IDENTITY {ri}"),
            "carry the replica identity",
        )
        .await?;
        for (n, v) in deps.views.iter().enumerate() {
            let (replace, recreate) = dependents::view_statements(v)?;
            exec(&tx, &format!("SAVEPOINT tandem_view_{n}"), "savepoint").await?;
            if tx.batch_execute(&replace).await.is_err() {
                exec(
                    &tx,
                    &format!("ROLLBACK TO SAVEPOINT tandem_view_{n}"),
                    "savepoint",
                )
                .await?;
                for s in recreate {
                    exec(&tx, &s, "re-create a view").await?;
                }
            }
        }
        // FKs added NOT VALID, to validate once the swap has committed.
        for fk in deps
            .outbound_fks
            .iter()
            .filter(|f| f.validated && !target_fks.contains(&f.name))
        {
            validate.push(json!([String::from(live_name.clone()), fk.name]));
        }
        for fk in deps
            .inbound_fks
            .iter()
            .filter(|f| f.validated && f.table != parked && &f.table != live_name)
        {
            validate.push(json!([String::from(fk.table.clone()), fk.name]));
        }
        if way == Way::Forward {
            // Reverse dual-write: the new table now writes back into the old one.
            let f = shadow::reverse_function(m.id, spec.table_oid);
            exec(
                &tx,
                &sql::trigger_function(spec, sql::Direction::Reverse, &f),
                "create the reverse trigger function",
            )
            .await?;
            exec(
                &tx,
                &sql::truncate_function(spec, sql::Direction::Reverse, &f),
                "create the reverse trigger function",
            )
            .await?;
            exec(&tx, &format!("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {live_name} FOR EACH ROW EXECUTE FUNCTION {f}()", shadow::reverse_trigger(m.id)), "create the reverse trigger").await?;
            exec(&tx, &format!("CREATE TRIGGER {} AFTER TRUNCATE ON {live_name} FOR EACH STATEMENT EXECUTE FUNCTION {}()", shadow::reverse_truncate_trigger(m.id), shadow::truncate_function(&f)), "create the reverse trigger").await?;
            // Dual reads in the rollback window: the old table in the new table's shape.
            let outcome = mirror::create_after(&tx, spec, standby_oid).await?;
            mirror::record(&tx, spec, "cutover", &outcome).await?;
            notes.extend(mirror::note(spec, &outcome));
        }
    }
    mirror::notify(&tx).await?;
    let detail = json!({ "attempt": attempt, "lock_wait_ms": lock_wait.as_millis() as u64, "proxy_held": held, "validate": validate });
    match way {
        Way::Forward => {
            tx.execute(
                "UPDATE tandem.migrations SET window_ends_at = now() + rollback_window WHERE id = $1",
                &[&m.id],
            )
            .await
            .map_err(EngineError::sql("record the rollback window"))?;
            state::record(&tx, m.id, "cutover", "done", detail).await?;
            state::set_phase(&tx, m.id, Phase::RollbackWindow, serde_json::Value::Null).await?;
        }
        Way::Back => {
            state::set_phase(&tx, m.id, Phase::RolledBack, detail).await?;
        }
    }
    super::failpoint(if way == Way::Forward {
        "cutover"
    } else {
        "rollback"
    })
    .await;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit the swap"))?;
    Ok(notes)
}

async fn m_verify_seen(tx: &Transaction<'_>, id: i64) -> Result<i64, EngineError> {
    Ok(tx
        .query_one(
            "SELECT coalesce((verify_result ->> 'divergence_seen')::int8, 0) FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the verification"))?
        .get(0))
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
    match m.phase {
        Phase::RolledBack => {
            drop_new(ex, &m).await?;
            validate_recorded(ex, m.id, "rolled_back").await?;
            return Ok(false);
        }
        Phase::RollbackWindow => {}
        Phase::Submitted | Phase::Prepare | Phase::DualWrite | Phase::Backfill | Phase::Verify => {
            abandon(ex, &m).await?;
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
    ex.emit(Event::PhaseStarted(Phase::RolledBack));
    swap(ex, &m, &specs, Way::Back).await?;
    drop_new(ex, &m).await?;
    validate_recorded(ex, m.id, "rolled_back").await?;
    Ok(false)
}

/// Before cutover: drop the dual-write triggers, the shadow and tandem's functions; the
/// table was never swapped. The plan's online steps that already ran are not undone.
async fn abandon(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let mut statements = Vec::new();
    for spec in ex.specs().await? {
        statements.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            shadow::forward_trigger(m.id),
            spec.table
        ));
        statements.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            shadow::truncate_trigger(m.id),
            spec.table
        ));
        // The mirror view reads the shadow: it goes first.
        statements.push(mirror::drop_statement(&spec));
        statements.push(format!("DROP TABLE IF EXISTS {}", spec.shadow));
        statements.extend(drop_functions(m.id, spec.table_oid));
    }
    statements.extend(mirror::clear_statements(m.id));
    ex.ddl_retry("abandon the migration", &statements, Some(Phase::Abandoned))
        .await
}

/// After a rollback: drop the new table and tandem's functions.
async fn drop_new(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let mut statements = Vec::new();
    for spec in ex.specs().await? {
        // The rollback's swap dropped the view already; a migration left by an older tandem
        // may still have one.
        statements.push(mirror::drop_statement(&spec));
        statements.push(format!("DROP TABLE IF EXISTS {}", spec.shadow));
        statements.extend(drop_functions(m.id, spec.table_oid));
    }
    statements.extend(mirror::clear_statements(m.id));
    ex.ddl_retry("drop the new table", &statements, None)
        .await?;
    state::record(
        &ex.client,
        m.id,
        "rolled_back",
        "cleaned up",
        serde_json::Value::Null,
    )
    .await
}

fn drop_functions(m: i64, oid: u32) -> Vec<String> {
    let f = shadow::forward_function(m, oid);
    let r = shadow::reverse_function(m, oid);
    vec![
        format!("DROP FUNCTION IF EXISTS {f}()"),
        format!(
            "DROP FUNCTION IF EXISTS {}()",
            shadow::truncate_function(&f)
        ),
        format!("DROP FUNCTION IF EXISTS {r}()"),
        format!(
            "DROP FUNCTION IF EXISTS {}()",
            shadow::truncate_function(&r)
        ),
    ]
}

/// Phase 7, cleanup: drop the reverse triggers, the old table and tandem's functions.
pub(crate) async fn finalize(ex: &mut Executor) -> Result<(), EngineError> {
    let m = Migration::load(&ex.client, ex.id).await?;
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
    let mut statements = Vec::new();
    for spec in ex.specs().await? {
        statements.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            shadow::reverse_trigger(m.id),
            spec.table
        ));
        statements.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            shadow::reverse_truncate_trigger(m.id),
            spec.table
        ));
        // The rollback window's mirror view reads the old table: it goes first.
        statements.push(mirror::drop_statement(&spec));
        statements.push(format!("DROP TABLE IF EXISTS {}", spec.old));
        statements.extend(drop_functions(m.id, spec.table_oid));
    }
    statements.extend(mirror::clear_statements(m.id));
    ex.ddl_retry("finalize", &statements, Some(Phase::Finalized))
        .await
}
