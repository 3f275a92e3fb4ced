//! The steps of one swap attempt, each a function, in the order `attempt_swap` (mod.rs) runs
//! them in one transaction: lock everything, refuse what changed since the migration was
//! prepared, swap the names (tables, indexes), carry what is attached to the table, install
//! the reverse dual-write (cutover only), record.

use std::time::Duration;

use planner::ident::{Ident, QualName};
use serde_json::json;
use tokio_postgres::Transaction;

use super::{locks, mirror, Attempt, Way};
use crate::catalog::table;
use crate::error::EngineError;
use crate::shadow::partitions::{self, Side};
use crate::shadow::{self, dependents, dependents::Dependents, sql, TableSpec};
use crate::state::{self, Migration, Phase};

pub(super) async fn exec(tx: &Transaction<'_>, sql: &str, what: &str) -> Result<(), EngineError> {
    tx.batch_execute(sql).await.map_err(|e| {
        EngineError::sql(format!("{what}: `{}`", sql.lines().next().unwrap_or(sql)))(e)
    })
}

/// Many statements in one round trip (a partitioned table's hundreds of renames would
/// otherwise each wait for the server while the swap holds its locks).
pub(super) async fn exec_all(
    tx: &Transaction<'_>,
    statements: &[String],
    what: &str,
) -> Result<(), EngineError> {
    if statements.is_empty() {
        return Ok(());
    }
    exec(tx, &statements.join(";\n"), what).await
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

/// The names one table's swap works with.
pub(super) struct Names<'a> {
    /// The user's name: the live table before the renames, the other one after.
    pub(super) live: &'a QualName,
    /// tandem's table that takes the user's name.
    pub(super) standby: &'a QualName,
    /// The name the live table is parked under, bare and qualified.
    pub(super) parked_as: &'a QualName,
    pub(super) parked: QualName,
}

impl Names<'_> {
    pub(super) fn of(spec: &TableSpec, way: Way) -> Names<'_> {
        let (standby, parked_as) = match way {
            Way::Forward => (&spec.shadow, &spec.old),
            Way::Back => (&spec.old, &spec.shadow),
        };
        Names {
            live: &spec.table,
            standby,
            parked_as,
            parked: QualName {
                schema: spec.table.schema.clone(),
                name: parked_as.name.clone(),
            },
        }
    }
}

/// Step 1: every relation the swap touches, locked up front in the applications' order,
/// within one budget of `budget` (see `locks.rs`). Returns how long the locks took.
pub(super) async fn lock_everything(
    tx: &Transaction<'_>,
    specs: &[TableSpec],
    way: Way,
    budget: Duration,
    check_deadlocks: bool,
    order: locks::Order,
) -> Result<Duration, Attempt> {
    let mut pairs = Vec::new();
    for spec in specs {
        let n = Names::of(spec, way);
        let (Some(live), Some(standby)) = (oid_of(tx, n.live).await?, oid_of(tx, n.standby).await?)
        else {
            // Reported by `check_table`, with the name that is missing.
            continue;
        };
        pairs.push((live, standby));
    }
    let to_lock = locks::plan(tx, &pairs, order).await?;
    let took = match locks::acquire(tx, &to_lock, budget, check_deadlocks).await {
        Ok(took) => took,
        Err(Ok(not)) => return Err(Attempt::Locked(not)),
        Err(Err(e)) => return Err(Attempt::Failed(e)),
    };
    if let Some(new) = locks::changed_since(tx, &pairs, &to_lock).await? {
        return Err(Attempt::Locked(locks::NotGranted {
            lock: new,
            oid: 0,
            cause: "it became part of the swap while the others were being locked".into(),
            waited: took,
        }));
    }
    Ok(took)
}

/// Step 2: writes a trigger could not apply since they were last checked (forward: since
/// verification; reverse: ever). Any makes the swap unsafe.
pub(super) async fn pending_divergence(
    tx: &Transaction<'_>,
    m: &Migration,
    way: Way,
) -> Result<i64, EngineError> {
    let (direction, since) = match way {
        Way::Forward => ("forward", verify_seen(tx, m.id).await?),
        Way::Back => ("reverse", 0),
    };
    Ok(tx
        .query_one(
            "SELECT count(*) FROM tandem.divergence WHERE migration_id = $1 AND direction = $2 AND id > $3",
            &[&m.id, &direction, &since],
        )
        .await
        .map_err(EngineError::sql("read the divergence log"))?
        .get(0))
}

async fn verify_seen(tx: &Transaction<'_>, id: i64) -> Result<i64, EngineError> {
    Ok(tx
        .query_one(
            "SELECT coalesce((verify_result ->> 'divergence_seen')::int8, 0) FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the verification"))?
        .get(0))
}

/// What the standby already has: a swap carries only what it lacks.
pub(super) struct Standby {
    pub(super) oid: u32,
    triggers: Vec<String>,
    policies: Vec<String>,
    fks: Vec<String>,
}

/// Step 3: the table can still be swapped: both tables exist, nothing tandem cannot carry is
/// attached to it, and (at cutover) no index was created on it since prepare. Returns what is
/// attached to the live table, and what the standby has.
pub(super) async fn check_table(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    way: Way,
    n: &Names<'_>,
) -> Result<(Dependents, Standby), Attempt> {
    let live_oid = oid_of(tx, n.live).await?.ok_or_else(|| {
        EngineError::refused(
            format!("table {} is gone", n.live.display_plain()),
            "nothing was changed",
        )
    })?;
    let standby_oid = oid_of(tx, n.standby).await?.ok_or_else(|| {
        EngineError::refused(
            format!("tandem's table {} is gone", n.standby.display_plain()),
            "the migration cannot go on; nothing was changed",
        )
    })?;
    let deps = dependents::inspect(tx, live_oid).await?;
    if !deps.refusals.is_empty() {
        return Err(Attempt::Failed(EngineError::refused(
            deps.refusals.join("; "),
            "nothing was changed",
        )));
    }
    if spec.partitioning.is_some() {
        let standby_side = match way {
            Way::Forward => Side::Shadow,
            Way::Back => Side::Old,
        };
        partitions::check_unchanged(tx, spec, [(n.live, Side::Named), (n.standby, standby_side)])
            .await?;
        let oids: Vec<u32> = tx
            .query(
                "SELECT relid::oid FROM pg_partition_tree($1::oid::regclass) WHERE relid <> $1::oid",
                &[&live_oid],
            )
            .await
            .map_err(EngineError::sql("read the table's partitions"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let refusals = partitions::refusals(tx, &oids).await?;
        if !refusals.is_empty() {
            return Err(Attempt::Failed(EngineError::refused(
                refusals.join("; "),
                "move it to the partitioned table or drop it; nothing was changed",
            )));
        }
    }
    if way == Way::Forward {
        // An index created on the table after prepare has no copy on the shadow.
        let current = names_on(tx, table::INDEX_NAMES.sql, live_oid).await?;
        if let Some(extra) = current.iter().find(|name| {
            !spec
                .old_indexes
                .iter()
                .any(|p| p.name.as_str() == name.as_str())
        }) {
            return Err(Attempt::Failed(EngineError::refused(
                format!("index {extra} was created on {} after the migration was prepared, and the new table has no copy of it", spec.table.display_plain()),
                "drop it (DROP INDEX CONCURRENTLY) and create it again after cutover; nothing was changed",
            )));
        }
    }
    let standby = Standby {
        oid: standby_oid,
        triggers: names_on(tx, table::TRIGGER_NAMES.sql, standby_oid).await?,
        policies: names_on(tx, table::POLICY_NAMES.sql, standby_oid).await?,
        fks: names_on(tx, table::FOREIGN_KEY_NAMES.sql, standby_oid).await?,
    };
    Ok((deps, standby))
}

/// Step 4: stop the trigger that writes into the standby, drop the mirror view (it reads one
/// of the two by oid; the rollback window's is made again in step 7), swap the names.
pub(super) async fn rename_pair(
    tx: &Transaction<'_>,
    m: &Migration,
    spec: &TableSpec,
    way: Way,
    n: &Names<'_>,
) -> Result<(), EngineError> {
    mirror::drop_view(tx, spec).await?;
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
    let live = n.live;
    exec(
        tx,
        &format!("DROP TRIGGER IF EXISTS {trigger} ON {live}"),
        "drop the dual-write trigger",
    )
    .await?;
    exec(
        tx,
        &format!("DROP TRIGGER IF EXISTS {trunc} ON {live}"),
        "drop the dual-write trigger",
    )
    .await?;
    exec_all(
        tx,
        &partitions::drop_triggers(spec, &trunc, Side::Named, true),
        "drop the partitions' dual-write triggers",
    )
    .await?;
    if way == Way::Forward {
        // The log method's triggers, disabled since the forward trigger took over (dropping
        // a trigger takes the ACCESS EXCLUSIVE lock this transaction holds anyway).
        exec_all(tx, &shadow::log::drop_all(spec), "drop the log triggers").await?;
    }
    exec(
        tx,
        &format!("ALTER TABLE {live} RENAME TO {}", n.parked_as.name),
        "park the table",
    )
    .await?;
    exec(
        tx,
        &format!("ALTER TABLE {} RENAME TO {}", n.standby, live.name),
        "rename the table into place",
    )
    .await?;
    exec_all(
        tx,
        &partitions::renames(spec, way == Way::Forward),
        "swap the partitions' names",
    )
    .await?;
    Ok(())
}

/// Step 5: the indexes' names follow the table: the original's parked and the new table's
/// given theirs (their index-backed constraints attached) at cutover, and back at rollback.
pub(super) async fn rename_indexes(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    way: Way,
) -> Result<(), EngineError> {
    let schema = &spec.table.schema;
    let live = &spec.table;
    match way {
        Way::Forward => {
            for p in &spec.old_indexes {
                exec(
                    tx,
                    &format!("ALTER INDEX {schema}.{} RENAME TO {}", p.name, p.parked),
                    "park an index",
                )
                .await?;
            }
            for idx in &spec.new_indexes {
                match (&idx.constraint, idx.deferred) {
                    // Added with its index (a partitioned table): renamed with it.
                    (Some(c), true) if c.definition.is_none() => {
                        let kind = if c.primary { "PRIMARY KEY" } else { "UNIQUE" };
                        let timing = match (c.deferrable, c.deferred) {
                            (true, true) => " DEFERRABLE INITIALLY DEFERRED",
                            (true, false) => " DEFERRABLE",
                            _ => "",
                        };
                        exec(tx, &format!("ALTER TABLE {live} ADD CONSTRAINT {} {kind} USING INDEX {}{timing}", c.name, idx.temp_name), "attach a constraint").await?;
                        if c.name != idx.final_name {
                            exec(
                                tx,
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
                            tx,
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
                    tx,
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
                    tx,
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
    let renames = partitions::rename_indexes(tx, spec, way == Way::Forward).await?;
    exec_all(tx, &renames, "rename the partitions' indexes").await?;
    Ok(())
}

/// Step 6: what is attached to the table follows its name: identity sequences, statistics,
/// NOT VALID constraints and comments, then the dependents (`dependents::carry`), the replica
/// identity and the views. Returns the foreign keys added NOT VALID, to validate once the
/// swap has committed.
pub(super) async fn carry(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    way: Way,
    n: &Names<'_>,
    deps: &Dependents,
    standby: &Standby,
) -> Result<Vec<serde_json::Value>, EngineError> {
    let live = n.live;
    let parked = &n.parked;
    for st in sql::identity_swap(spec, way == Way::Forward, live, parked) {
        exec(tx, &st, "move an identity sequence").await?;
    }
    for st in sql::extras_swap(spec, way == Way::Forward, live) {
        exec(tx, &st, "carry statistics, constraints and comments").await?;
    }
    // The old table keeps its own outbound FKs: they are carried forward only (a rollback
    // must not give the original an FK the change added).
    let keep_fks: Vec<String> = match way {
        Way::Forward => standby.fks.clone(),
        Way::Back => deps.outbound_fks.iter().map(|f| f.name.clone()).collect(),
    };
    for s in dependents::carry(
        deps,
        parked,
        live,
        &standby.triggers,
        &standby.policies,
        &keep_fks,
    )? {
        exec(tx, &s, "carry a dependent object over").await?;
    }
    let parked_side = match way {
        Way::Forward => Side::Old,
        Way::Back => Side::Shadow,
    };
    exec_all(
        tx,
        &partitions::carry(tx, spec, parked_side).await?,
        "carry the partitions' owners and privileges over",
    )
    .await?;
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
        tx,
        &format!("ALTER TABLE {live} REPLICA IDENTITY {ri}"),
        "carry the replica identity",
    )
    .await?;
    if !deps.views.is_empty() {
        let (replace, recreate) = dependents::view_statements(&deps.views)?;
        exec(tx, "SAVEPOINT tandem_views", "savepoint").await?;
        if tx.batch_execute(&replace.join(";\n")).await.is_err() {
            exec(tx, "ROLLBACK TO SAVEPOINT tandem_views", "savepoint").await?;
            exec_all(tx, &recreate, "re-create the views that read the table").await?;
        }
    }
    // What to validate after commit: [table, name]; a partitioned referencing table's leaves
    // one by one, then [table, name, a leaf]: the key added to the partitioned table as the
    // leaf's reads (from the catalog, not from the record), taking over its validated
    // leaves' without a scan.
    let mut validate = Vec::new();
    let mut follow = |table: &QualName, fk: &dependents::ForeignKey| {
        if fk.leaves.is_empty() {
            validate.push(json!([String::from(table.clone()), fk.name]));
            return;
        }
        for leaf in &fk.leaves {
            validate.push(json!([String::from(leaf.clone()), fk.name]));
        }
        validate.push(json!([
            String::from(table.clone()),
            fk.name,
            String::from(fk.leaves[0].clone())
        ]));
    };
    for fk in deps
        .outbound_fks
        .iter()
        .filter(|f| f.validated && !standby.fks.contains(&f.name))
    {
        follow(live, fk);
    }
    for fk in deps
        .inbound_fks
        .iter()
        .filter(|f| f.validated && &f.table != parked && &f.table != live)
    {
        follow(&fk.table, fk);
    }
    Ok(validate)
}

/// Step 7 (cutover only): the new table writes back into the old one, and the rollback
/// window's mirror view reads the old table in the new table's shape. Returns notes.
pub(super) async fn reverse_dual_write(
    tx: &Transaction<'_>,
    m: &Migration,
    spec: &TableSpec,
    standby_oid: u32,
) -> Result<Vec<String>, EngineError> {
    let live = &spec.table;
    let f = shadow::reverse_function(m.id, spec.table_oid);
    exec(
        tx,
        &sql::trigger_function(spec, sql::Direction::Reverse, &f, &[]),
        "create the reverse trigger function",
    )
    .await?;
    for st in shadow::writer::hand_over(spec, &f) {
        exec(
            tx,
            &st,
            "give the reverse trigger function to the table's owner",
        )
        .await?;
    }
    exec(
        tx,
        &sql::truncate_function(spec, sql::Direction::Reverse, &f),
        "create the reverse trigger function",
    )
    .await?;
    exec(tx, &format!("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {live} FOR EACH ROW EXECUTE FUNCTION {f}()", shadow::reverse_trigger(m.id)), "create the reverse trigger").await?;
    exec(
        tx,
        &shadow::fire_always(live, &shadow::reverse_trigger(m.id)),
        "make the reverse trigger fire in every session_replication_role",
    )
    .await?;
    exec(
        tx,
        &format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {live} FOR EACH STATEMENT EXECUTE FUNCTION {}()",
            shadow::reverse_truncate_trigger(m.id),
            shadow::truncate_function(&f)
        ),
        "create the reverse trigger",
    )
    .await?;
    exec(
        tx,
        &shadow::fire_always(live, &shadow::reverse_truncate_trigger(m.id)),
        "make the reverse trigger fire in every session_replication_role",
    )
    .await?;
    if spec.partitioning.is_some() {
        exec(
            tx,
            &partitions::truncate_function_sql(&f),
            "create the reverse trigger function",
        )
        .await?;
        exec_all(
            tx,
            &partitions::truncate_triggers(
                spec,
                &shadow::reverse_truncate_trigger(m.id),
                &f,
                Side::Named,
                Side::Old,
            ),
            "create the partitions' reverse triggers",
        )
        .await?;
    }
    let outcome = mirror::create_after(tx, spec, standby_oid).await?;
    mirror::record(tx, spec, "cutover", &outcome).await?;
    Ok(mirror::note(spec, &outcome).into_iter().collect())
}

/// Step 8: the swap's record, in its own transaction: the phase, the rollback window (at
/// cutover), and the details (`validate`: the foreign keys to validate after commit).
pub(super) async fn record(
    tx: &Transaction<'_>,
    m: &Migration,
    way: Way,
    detail: serde_json::Value,
) -> Result<(), EngineError> {
    mirror::notify(tx).await?;
    match way {
        Way::Forward => {
            tx.execute(
                "UPDATE tandem.migrations SET window_ends_at = now() + rollback_window WHERE id = $1",
                &[&m.id],
            )
            .await
            .map_err(EngineError::sql("record the rollback window"))?;
            state::record(tx, m.id, "cutover", "done", detail).await?;
            state::set_phase(tx, m.id, Phase::RollbackWindow, serde_json::Value::Null).await
        }
        Way::Back => state::set_phase(tx, m.id, Phase::RolledBack, detail).await,
    }
}
