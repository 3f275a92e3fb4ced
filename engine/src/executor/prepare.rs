//! Phase 1, prepare: preflight checks, then the shadow table with the new definition.
//! Phase 2, dual-write: the triggers that follow every write (into the log, or the shadow).
//!
//! The shadow starts as `CREATE TABLE ... (LIKE original INCLUDING ...)` and the step's own
//! statements are run on it while it is empty, so PostgreSQL works out the new definition
//! (types, defaults, constraints, which indexes survive). Every index but the key's is then
//! dropped from the shadow, to be built after the backfill with CONCURRENTLY.

use std::collections::BTreeMap;

use planner::ident::{Ident, QualName};
use planner::plan::shadow::shadow_change;
use planner::plan::Strategy;
use serde_json::json;
use tokio_postgres::{GenericClient, Transaction};

use super::{carry, online, Event, Executor};
use crate::catalog::table::{self, TableColumn as Col};
use crate::error::EngineError;
use crate::shadow::guard::{self, Check, Guard};
use crate::shadow::{
    self, dependents, ident, log, partitions, sql, Column, CopyMethod, IdentityColumn,
    IndexConstraint, IndexPair, Mapped, NewIndex, NotValidCheck, TableSpec,
};
use crate::state::{self, Migration, Phase};

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
        // A partitioned table's storage is its leaves'.
        let size: i64 = tx
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::int8 FROM pg_partition_tree($1::oid::regclass)",
                &[&spec.table_oid],
            )
            .await
            .map_err(EngineError::sql("read the table's size"))?
            .get(0);
        notes.push(format!(
            "{}: shadow {} created; it will need about {} MB of disk (the table's size with its indexes)",
            table.display_plain(),
            spec.shadow.display_plain(),
            size >> 20
        ));
        let reltuples: f64 = tx
            .query_one(
                "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8
                   FROM pg_partition_tree($1::oid::regclass) t JOIN pg_class c ON c.oid = t.relid
                  WHERE t.isleaf",
                &[&spec.table_oid],
            )
            .await
            .map_err(EngineError::sql("read the table's row estimate"))?
            .get(0);
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
            "SELECT pid, date_trunc('second', now() - xact_start)::text, left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
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
            r.get::<_, String>(2)
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

struct Idx {
    oid: u32,
    name: String,
    constraint: Option<(String, String, bool, bool)>,
}

async fn indexes(c: &impl GenericClient, oid: u32) -> Result<Vec<Idx>, EngineError> {
    let rows = c
        .query(table::INDEXES.sql, &[&oid])
        .await
        .map_err(EngineError::sql("read the indexes"))?;
    Ok(rows
        .iter()
        .map(|r| Idx {
            oid: r.get(0),
            name: r.get(1),
            constraint: r
                .get::<_, Option<String>>(3)
                .map(|n| (n, r.get(4), r.get(5), r.get(6))),
        })
        .collect())
}

async fn prepare_table(
    tx: &tokio_postgres::Transaction<'_>,
    m: &Migration,
    table: &QualName,
    statements: &[String],
    copy: CopyMethod,
) -> Result<TableSpec, EngineError> {
    let name = table.display_plain();
    let oid: Option<u32> = tx
        .query_one("SELECT to_regclass($1)::oid", &[&table.to_string()])
        .await
        .map_err(EngineError::sql("find the table"))?
        .get(0);
    let oid = oid.ok_or_else(|| {
        EngineError::refused(
            format!("table {name} does not exist any more"),
            "make a new plan against the current schema",
        )
    })?;

    let deps = dependents::inspect(tx, oid).await?;
    if !deps.refusals.is_empty() {
        return Err(EngineError::refused(
            format!(
                "{name} cannot be migrated through a shadow table: {}",
                deps.refusals.join("; ")
            ),
            "nothing was changed",
        ));
    }
    let other: Option<i64> = tx
        .query_opt(
            "SELECT s.migration_id FROM tandem.shadow_tables s JOIN tandem.migrations g ON g.id = s.migration_id
              WHERE s.table_oid = $1 AND s.migration_id <> $2
                AND g.phase NOT IN ('finalized', 'rolled_back', 'abandoned') LIMIT 1",
            &[&oid, &m.id],
        )
        .await
        .map_err(EngineError::sql("look for other migrations of the table"))?
        .map(|r| r.get(0));
    if let Some(other) = other {
        return Err(EngineError::refused(
            format!("migration {other} is still running on {name}"),
            format!("finish it first (`tandem finalize {other}` or `tandem rollback {other}`)"),
        ));
    }

    let (shadow_name, old_name) = shadow::names(m.id, oid);
    let shadow = QualName::new(table.schema.as_str(), &shadow_name).expect("short");
    let old = QualName::new(table.schema.as_str(), &old_name).expect("short");
    for n in [&shadow, &old] {
        let taken: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&n.to_string()])
            .await
            .map_err(EngineError::sql("check tandem's names are free"))?
            .get(0);
        if taken {
            return Err(EngineError::refused(
                format!("a relation named {} already exists", n.display_plain()),
                "it is not tandem's (tandem records the objects it creates): rename it",
            ));
        }
    }

    // The key: the primary key, else a unique index on NOT NULL plain columns.
    let key_row = tx
        .query_opt(table::KEY.sql, &[&oid])
        .await
        .map_err(EngineError::sql("find the table's key"))?;
    let Some(key_row) = key_row else {
        return Err(EngineError::refused(
            format!("{name} has no primary key or unique index on NOT NULL columns, which the shadow migration needs to address rows"),
            "add one first (CREATE UNIQUE INDEX CONCURRENTLY ..., then ALTER TABLE ... ADD PRIMARY KEY USING INDEX ...); nothing was changed",
        ));
    };
    let key_index: u32 = key_row.get(0);
    let key_names: Vec<String> = key_row.get(1);

    let orig_indexes = indexes(tx, oid).await?;
    let orig_cols = table::columns(tx, oid).await?;

    // A partitioned table: the shadow is partitioned by the same key, its partitions made
    // once the root has the new definition. Indexes on a partitioned table cannot be built
    // CONCURRENTLY, so the tree is always copied by the log method (built plainly, before
    // anything but tandem writes the shadow).
    let partition_key: Option<String> = tx
        .query_one(
            "SELECT CASE WHEN relkind = 'p' THEN pg_get_partkeydef(oid) END FROM pg_class WHERE oid = $1",
            &[&oid],
        )
        .await
        .map_err(EngineError::sql("read the table's partition key"))?
        .get(0);
    let partitioning = match partition_key {
        Some(key) => Some(partitions::read(tx, m.id, oid, key).await?),
        None => None,
    };
    let copy = if partitioning.is_some() {
        CopyMethod::Log
    } else {
        copy
    };
    let partition_by = match &partitioning {
        Some(p) => format!(" PARTITION BY {}", p.key),
        None => String::new(),
    };

    // The shadow, shaped like the original (identity columns with their own sequences), then
    // changed.
    tx.batch_execute(&format!(
        "CREATE TABLE {shadow} (LIKE {table} INCLUDING COMMENTS INCLUDING COMPRESSION INCLUDING CONSTRAINTS \
         INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING INDEXES INCLUDING STATISTICS INCLUDING STORAGE){partition_by}"
    ))
    .await
    .map_err(EngineError::sql(format!("create the shadow of {name}")))?;
    if !deps.reloptions.is_empty() {
        tx.batch_execute(&format!(
            "ALTER TABLE {shadow} SET ({})",
            dependents::option_list(&deps.reloptions)
        ))
        .await
        .map_err(EngineError::sql("copy the table's storage options"))?;
    }
    // No autovacuum on the shadow while it is filled: a worker started by the bulk copy would
    // hold a lock the cutover waits for (autovacuum yields to waiters only after
    // deadlock_timeout, far longer than the cutover's lock_timeout). The backfill ends with
    // its own VACUUM (ANALYZE) and gives autovacuum back. (A partitioned root has no
    // storage: its leaves get the same when they are made.)
    if partitioning.is_none() {
        tx.batch_execute(&format!(
            "ALTER TABLE {shadow} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
        ))
        .await
        .map_err(EngineError::sql("pause autovacuum on the shadow"))?;
    }
    // LIKE copies the indexes in the original's oid order: give each copy tandem's name now,
    // so no name the step's statements choose can collide with it.
    let shadow_oid: u32 = tx
        .query_one("SELECT to_regclass($1)::oid", &[&shadow.to_string()])
        .await
        .map_err(EngineError::sql("find the shadow"))?
        .get(0);
    let not_valid_checks = carry::not_valid_checks(tx, oid, &shadow).await?;
    let statistics = carry::statistics(tx, (m.id, oid), shadow_oid).await?;
    let copies = indexes(tx, shadow_oid).await?;
    if copies.len() != orig_indexes.len() {
        return Err(EngineError::refused(
            format!(
                "the shadow of {name} got {} indexes, the table has {}",
                copies.len(),
                orig_indexes.len()
            ),
            "this is a tandem bug; please report it with the table's definition",
        ));
    }
    let mut temp_of: BTreeMap<u32, Ident> = BTreeMap::new(); // original index oid -> temp name
    for (n, (orig, copy)) in orig_indexes.iter().zip(&copies).enumerate() {
        let temp = shadow::shadow_index(m.id, oid, n);
        tx.batch_execute(&format!(
            "ALTER INDEX {}.{} RENAME TO {temp}",
            shadow.schema,
            ident(&copy.name)?
        ))
        .await
        .map_err(EngineError::sql("name the shadow's indexes"))?;
        temp_of.insert(orig.oid, temp);
    }

    let change = shadow_change(statements, table, &shadow).map_err(|e| {
        EngineError::refused(
            format!("the change cannot be applied to a shadow of {name}: {e}"),
            "make a new plan",
        )
    })?;
    // The change's own names resolve as they did when it was planned: under the session's
    // search_path, not the pg_catalog-only one the rest of prepare uses.
    tx.batch_execute("SET LOCAL search_path TO DEFAULT")
        .await
        .map_err(EngineError::sql("set the search path"))?;
    for s in &change.statements {
        tx.batch_execute(s).await.map_err(|e| {
            EngineError::refused(
                format!(
                    "the change fails on the (empty) shadow of {name}: {}",
                    e.as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string())
                ),
                "fix the change, make a new plan and submit it; nothing was changed",
            )
        })?;
    }

    tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
        .await
        .map_err(EngineError::sql("set the search path"))?;
    // The column mapping.
    let new_cols = table::columns(tx, shadow_oid).await?;
    let source_of = |new: &str| -> Option<String> {
        if let Some(old) = change.renames.get(new) {
            return Some(old.clone());
        }
        orig_cols
            .iter()
            .any(|c| c.name == new && !change.renames.values().any(|o| o == new))
            .then(|| new.to_string())
    };
    let mut forward = Vec::new();
    let mut mapped_from = BTreeMap::new(); // old column -> new column (plain mappings only)
    for c in new_cols.iter().filter(|c| !c.is_generated()) {
        let column = Column {
            name: ident(&c.name)?,
            sql_type: c.sql_type.clone(),
        };
        if let Some(expr) = change.using.get(&c.name) {
            forward.push(Mapped {
                column,
                expr: expr.clone(),
            });
            continue;
        }
        match source_of(&c.name) {
            Some(src) if orig_cols.iter().any(|o| o.name == src && !o.is_generated()) => {
                mapped_from.insert(src.clone(), c.name.clone());
                forward.push(Mapped {
                    column,
                    expr: format!("o.{}", ident(&src)?),
                });
            }
            _ => {
                if c.not_null && !c.has_default {
                    return Err(EngineError::refused(
                        format!("new column {} of {name} is NOT NULL without a default, so existing rows have no value for it", c.name),
                        "give it a DEFAULT (it can be dropped afterwards), make a new plan and submit it",
                    ));
                }
            }
        }
    }
    explicit_casts(tx, table, &shadow, &orig_cols, &mut forward).await?;
    carry::check_not_valid_fit(tx, &shadow, &not_valid_checks, &name).await?;
    carry::column_targets(tx, (oid, shadow_oid), &shadow, |old| {
        mapped_from.get(old).cloned()
    })
    .await?;
    let identity = identity_columns(
        tx,
        IdentityScope {
            m: m.id,
            oid,
            shadow_oid,
            shadow: &shadow,
            name: &name,
        },
        &orig_cols,
        &new_cols,
        &mapped_from,
    )
    .await?;
    let mut key = Vec::new();
    let mut new_key = Vec::new();
    for k in &key_names {
        let oc = orig_cols
            .iter()
            .find(|c| &c.name == k)
            .expect("key columns exist");
        let Some(nk) = mapped_from.get(k) else {
            return Err(EngineError::refused(
                format!("the change drops or recomputes key column {k} of {name}; the shadow migration addresses rows by that key"),
                "keep the key column (a type change without USING is fine), or add another primary key first",
            ));
        };
        let nc = new_cols
            .iter()
            .find(|c| &c.name == nk)
            .expect("mapped columns exist");
        key.push(Column {
            name: ident(k)?,
            sql_type: oc.sql_type.clone(),
        });
        new_key.push(Column {
            name: ident(nk)?,
            sql_type: nc.sql_type.clone(),
        });
    }
    let mut reverse = Vec::new();
    let mut blockers = Vec::new();
    for o in orig_cols.iter().filter(|c| !c.is_generated()) {
        let column = Column {
            name: ident(&o.name)?,
            sql_type: o.sql_type.clone(),
        };
        if let Some(n) = mapped_from.get(&o.name) {
            reverse.push(Mapped {
                column,
                expr: format!("o.{}", ident(n)?),
            });
        } else if change.using.contains_key(&o.name) {
            blockers.push(format!(
                "column {} is computed with a USING expression, which tandem cannot invert",
                o.name
            ));
        } else if o.not_null && !o.has_default {
            blockers.push(format!("dropped column {} is NOT NULL without a default, so rows inserted after cutover cannot be written back", o.name));
        }
    }

    // Indexes of the new table: keep the key's, defer the rest.
    let key_temp = temp_of
        .get(&key_index)
        .cloned()
        .expect("the key index was copied");
    let mut new_indexes = Vec::new();
    let mut kept_key = false;
    for idx in indexes(tx, shadow_oid).await? {
        let temp = ident(&idx.name)?;
        let copied_from = temp_of.iter().find(|(_, t)| **t == temp).map(|(o, _)| *o);
        let final_name = match copied_from {
            Some(o) => ident(
                &orig_indexes
                    .iter()
                    .find(|i| i.oid == o)
                    .expect("known")
                    .name,
            )?,
            // Added by the change: the name PostgreSQL chose on the shadow, said of the table.
            None => match idx.name.strip_prefix(shadow.name.as_str()) {
                Some(rest) => ident(&format!("{}{rest}", table.name.as_str()))?,
                None => temp.clone(),
            },
        };
        let is_key = temp == key_temp;
        kept_key |= is_key;
        let constraint = match &idx.constraint {
            Some((_, t, ..)) if t == "x" => {
                return Err(EngineError::refused(
                    format!("{name} has an exclusion constraint, which tandem cannot build without blocking writes"),
                    "drop it for the migration, or use a maintenance window",
                ))
            }
            // An index-backed constraint shares its index's name (renaming one renames both).
            Some((_, t, deferrable, deferred)) => Some(IndexConstraint {
                name: final_name.clone(),
                primary: t == "p",
                deferrable: *deferrable,
                deferred: *deferred,
                // A partitioned table cannot take a constraint `USING INDEX`: the shadow's
                // is added whole when its index is built.
                definition: if partitioning.is_some() {
                    Some(constraint_definition(tx, &shadow, &temp).await?)
                } else {
                    None
                },
            }),
            None => None,
        };
        // Give an added index a temporary name too, so it cannot collide at cutover.
        let temp = if copied_from.is_none() {
            let t = shadow::shadow_index(m.id, oid, 1000 + new_indexes.len());
            tx.batch_execute(&format!(
                "ALTER INDEX {}.{} RENAME TO {t}",
                shadow.schema,
                ident(&idx.name)?
            ))
            .await
            .map_err(EngineError::sql("name the shadow's indexes"))?;
            t
        } else {
            temp
        };
        let definition: String = tx
            .query_one(
                "SELECT pg_get_indexdef(to_regclass($1))",
                &[&format!("{}.{temp}", shadow.schema)],
            )
            .await
            .map_err(EngineError::sql("read the shadow's index"))?
            .get(0);
        // A partitioned table's index reads `ON ONLY` (the root's alone, left invalid until
        // each partition's is attached): built from the definition, it must reach every
        // partition. The names before it are tandem's.
        let definition = match &partitioning {
            Some(_) => definition.replacen(" ON ONLY ", " ON ", 1),
            None => definition,
        };
        // The log method copies into a shadow without any index (built after, sorted).
        let deferred = !is_key || copy == CopyMethod::Log;
        if deferred {
            // The constraint was renamed with its index.
            let drop = match &idx.constraint {
                Some(_) => format!("ALTER TABLE {shadow} DROP CONSTRAINT {temp}"),
                None => format!("DROP INDEX {}.{temp}", shadow.schema),
            };
            tx.batch_execute(&drop)
                .await
                .map_err(EngineError::sql("defer the shadow's index"))?;
        }
        let comment = match copied_from {
            Some(o) => carry::index_comment(tx, o).await?,
            None => None,
        };
        new_indexes.push(NewIndex {
            definition,
            temp_name: temp,
            final_name,
            deferred,
            key: is_key,
            constraint,
            comment,
        });
    }
    if !kept_key {
        return Err(EngineError::refused(
            format!("the change removes the key index of {name}"),
            "keep the key, or add another primary key first",
        ));
    }
    let old_indexes = orig_indexes
        .iter()
        .enumerate()
        .map(|(n, i)| {
            Ok(IndexPair {
                name: ident(&i.name)?,
                parked: shadow::parked_index(m.id, oid, n),
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;

    let (forward_guard, reverse_guard) = guards(
        tx,
        oid,
        shadow_oid,
        (&orig_cols, &new_cols),
        (&forward, &reverse),
        &new_indexes,
        &not_valid_checks,
    )
    .await?;

    let spec = TableSpec {
        migration: m.id,
        table_oid: oid,
        table: table.clone(),
        shadow,
        old,
        key,
        new_key,
        forward,
        reverse,
        new_indexes,
        old_indexes,
        rollback_blocker: (!blockers.is_empty()).then(|| blockers.join("; ")),
        identity,
        forward_guard,
        reverse_guard,
        not_valid_checks,
        statistics,
        copy,
        partitioning,
    };
    for st in partitions::create_shadows(&spec) {
        tx.batch_execute(&st)
            .await
            .map_err(EngineError::sql(format!(
                "create the shadow partitions of {name}"
            )))?;
    }
    Ok(spec)
}

/// `pg_get_constraintdef` of the shadow's constraint `name` (e.g. `PRIMARY KEY (id, at)`).
async fn constraint_definition(
    tx: &Transaction<'_>,
    shadow: &QualName,
    name: &Ident,
) -> Result<String, EngineError> {
    Ok(tx
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2",
            &[&shadow.to_string(), &name.as_str()],
        )
        .await
        .map_err(EngineError::sql("read the shadow's constraint"))?
        .get(0))
}

const WRITE_RULES: &str = include_str!("../catalog/sql/write_rules.sql");

/// What a row written into a table must satisfy beyond its columns' types (see
/// `catalog/sql/write_rules.sql`).
struct WriteRules {
    checks: Vec<String>,
    /// Unique index definitions from `USING` on (the name and table left out).
    uniques: Vec<String>,
    deferrable: bool,
    generated: Vec<String>,
    computed_defaults: Vec<String>,
    foreign_keys: bool,
    forced_rls: bool,
}

fn index_body(def: &str) -> String {
    def.split_once(" USING ")
        .map_or(def, |(_, rest)| rest)
        .to_string()
}

async fn write_rules(tx: &Transaction<'_>, oid: u32) -> Result<WriteRules, EngineError> {
    let r = tx
        .query_one(WRITE_RULES, &[&oid])
        .await
        .map_err(EngineError::sql("read the table's constraints"))?;
    Ok(WriteRules {
        // A NOT VALID constraint checks every new write all the same.
        checks: r
            .get::<_, Vec<String>>("checks")
            .iter()
            .map(|c| c.trim_end_matches(" NOT VALID").to_string())
            .collect(),
        uniques: r
            .get::<_, Vec<String>>("uniques")
            .iter()
            .map(|d| index_body(d))
            .collect(),
        deferrable: r.get("deferrable"),
        generated: r.get("generated"),
        computed_defaults: r.get("computed_defaults"),
        foreign_keys: r.get("foreign_keys"),
        forced_rls: r.get("forced_rls"),
    })
}

/// How each direction's trigger guards its writes (see `shadow/guard.rs`): checks when every
/// way a write can fail is one tandem can test first, else the `EXCEPTION` block.
async fn guards(
    tx: &Transaction<'_>,
    oid: u32,
    shadow_oid: u32,
    (orig_cols, new_cols): (&[Col], &[Col]),
    (forward, reverse): (&[Mapped], &[Mapped]),
    new_indexes: &[NewIndex],
    not_valid: &[NotValidCheck],
) -> Result<(Guard, Guard), EngineError> {
    let orig = write_rules(tx, oid).await?;
    let mut new = write_rules(tx, shadow_oid).await?;
    // The shadow's deferred indexes are built after the copy: they count already.
    new.uniques = new_indexes
        .iter()
        .filter(|i| i.definition.starts_with("CREATE UNIQUE INDEX"))
        .map(|i| index_body(&i.definition))
        .collect();
    let forward = guard(orig_cols, (new_cols, &new), forward, &orig)?;
    // From cutover on, when the reverse trigger runs, the new table has the NOT VALID checks
    // too.
    new.checks.extend(
        not_valid
            .iter()
            .map(|c| c.definition.trim_end_matches(" NOT VALID").to_string()),
    );
    let reverse = guard(new_cols, (orig_cols, &orig), reverse, &new)?;
    Ok((forward, reverse))
}

/// The guard for writes from a table with columns `source` (and rules `source_rules`) into
/// one with columns `target` and rules `rules`, through `mapping`.
fn guard(
    source: &[Col],
    (target, rules): (&[Col], &WriteRules),
    mapping: &[Mapped],
    source_rules: &WriteRules,
) -> Result<Guard, EngineError> {
    let subset = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
    if rules.deferrable
        || rules.foreign_keys
        || rules.forced_rls
        || source_rules.deferrable
        || !subset(&rules.checks, &source_rules.checks)
        || !subset(&rules.uniques, &source_rules.uniques)
        || !subset(&rules.generated, &source_rules.generated)
    {
        return Ok(Guard::Catch);
    }
    let mut checks = Vec::new();
    for t in target.iter().filter(|c| !c.is_generated()) {
        let Some(m) = mapping.iter().find(|m| m.column.name.as_str() == t.name) else {
            // Filled by its default: a computed one may fail, none on a NOT NULL column will.
            if rules.computed_defaults.contains(&t.name) || (t.not_null && !t.has_default) {
                return Ok(Guard::Catch);
            }
            continue;
        };
        let Some(src) = guard::plain_column(&m.expr) else {
            return Ok(Guard::Catch);
        };
        let Some(s) = source.iter().find(|c| c.name == src) else {
            return Ok(Guard::Catch);
        };
        let column = ident(&s.name)?;
        match guard::cast(&column, &s.sql_type, &t.sql_type) {
            guard::Cast::Safe => {}
            guard::Cast::Checked(c) => checks.push(c),
            guard::Cast::Unknown => return Ok(Guard::Catch),
        }
        if t.not_null && !s.not_null {
            checks.push(Check::NotNull { column });
        }
    }
    Ok(Guard::Checks(checks))
}

/// A plain column whose type changes is written with PostgreSQL's assignment cast, as `ALTER
/// ... TYPE` without `USING` does. Where none exists (text to integer, say), the change must
/// have said `USING col::type` (PostgreSQL refused it on the shadow otherwise), which the
/// planner reads as a plain cast: spell that cast out.
async fn explicit_casts(
    tx: &Transaction<'_>,
    table: &QualName,
    shadow: &QualName,
    orig_cols: &[Col],
    forward: &mut [Mapped],
) -> Result<(), EngineError> {
    for m in forward.iter_mut() {
        let Some(src) = guard::plain_column(&m.expr) else {
            continue;
        };
        if orig_cols
            .iter()
            .any(|c| c.name == src && c.sql_type == m.column.sql_type)
        {
            continue;
        }
        tx.batch_execute("SAVEPOINT tandem_cast")
            .await
            .map_err(EngineError::sql("savepoint"))?;
        let probe = format!(
            "INSERT INTO {shadow} ({}) SELECT {} FROM {table} AS o WHERE false",
            m.column.name, m.expr
        );
        let assignable = tx.batch_execute(&probe).await.is_ok();
        tx.batch_execute(if assignable {
            "RELEASE SAVEPOINT tandem_cast"
        } else {
            "ROLLBACK TO SAVEPOINT tandem_cast"
        })
        .await
        .map_err(EngineError::sql("savepoint"))?;
        if !assignable {
            m.expr = format!("CAST({} AS {})", m.expr, m.column.sql_type);
        }
    }
    Ok(())
}

struct IdentityScope<'a> {
    m: i64,
    oid: u32,
    shadow_oid: u32,
    shadow: &'a QualName,
    name: &'a str,
}

/// The identity columns both tables have, each with its sequences named and the shadow's
/// column made `GENERATED BY DEFAULT` (tandem writes the original's values into it). A change
/// that adds an identity to a column, or drops one from a column it keeps, is refused: the
/// sequence would start over, or the original's would fall behind the rows written back.
async fn identity_columns(
    tx: &Transaction<'_>,
    at: IdentityScope<'_>,
    orig_cols: &[Col],
    new_cols: &[Col],
    mapped_from: &BTreeMap<String, String>,
) -> Result<Vec<IdentityColumn>, EngineError> {
    let name = at.name;
    let mut out = Vec::new();
    for o in orig_cols {
        let n = mapped_from
            .get(&o.name)
            .and_then(|n| new_cols.iter().find(|c| &c.name == n));
        let (Some(n), false) = (n, o.identity.is_empty()) else {
            continue;
        };
        if n.identity.is_empty() {
            return Err(EngineError::refused(
                format!("the change drops the identity of column {} of {name} while rewriting the table, so rows written back during the rollback window would get values its sequence never gave", o.name),
                "drop the identity in its own step after this migration (ALTER TABLE ... ALTER ... DROP IDENTITY is instant); nothing was changed",
            ));
        }
        let sequence = identity_sequence(tx, at.oid, o.attnum).await?;
        let current = identity_sequence(tx, at.shadow_oid, n.attnum).await?;
        let (shadow_sequence, old_sequence) = shadow::identity_sequences(at.m, at.oid, o.attnum);
        tx.batch_execute(&format!(
            "ALTER SEQUENCE {current} RENAME TO {shadow_sequence}"
        ))
        .await
        .map_err(EngineError::sql("name the shadow's identity sequence"))?;
        if n.identity == "a" {
            tx.batch_execute(&format!(
                "ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT",
                at.shadow,
                ident(&n.name)?
            ))
            .await
            .map_err(EngineError::sql(
                "let tandem write the shadow's identity column",
            ))?;
        }
        out.push(IdentityColumn {
            old_column: ident(&o.name)?,
            new_column: ident(&n.name)?,
            old_always: o.identity == "a",
            new_always: n.identity == "a",
            sequence,
            shadow_sequence,
            old_sequence,
        });
    }
    for n in new_cols.iter().filter(|c| !c.identity.is_empty()) {
        if !out.iter().any(|i| i.new_column.as_str() == n.name) {
            return Err(EngineError::refused(
                format!("the change makes column {} of {name} an identity column while rewriting the table; its new sequence would start over", n.name),
                "add the identity in its own step after this migration (ALTER TABLE ... ALTER ... ADD GENERATED ... AS IDENTITY, then setval its sequence past the column's maximum); nothing was changed",
            ));
        }
    }
    Ok(out)
}

/// The sequence behind identity column `attnum` of table `oid`.
async fn identity_sequence(
    tx: &Transaction<'_>,
    oid: u32,
    attnum: i16,
) -> Result<QualName, EngineError> {
    let row = tx
        .query_one(
            "SELECT n.nspname::text, s.relname::text
               FROM pg_depend d
               JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
               JOIN pg_namespace n ON n.oid = s.relnamespace
              WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                AND d.refobjid = $1 AND d.refobjsubid = $2 AND d.deptype = 'i'",
            &[&oid, &i32::from(attnum)],
        )
        .await
        .map_err(EngineError::sql("find an identity column's sequence"))?;
    QualName::new(row.get::<_, &str>(0), row.get::<_, &str>(1)).map_err(|e| {
        EngineError::refused(
            format!("an identity sequence has a name tandem cannot use ({e})"),
            "rename it (ALTER SEQUENCE ... RENAME TO ...)",
        )
    })
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
        match spec.copy {
            CopyMethod::Direct => statements.extend(forward_trigger(spec)),
            CopyMethod::Log => {
                statements.push(log::create_table(spec));
                statements.push(log::function(spec));
                statements.extend(log::create_triggers(spec));
            }
        }
        statements.push(format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()",
            shadow::truncate_trigger(m.id),
            spec.table,
            shadow::truncate_function(&f)
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
/// they record, so no earlier attempt left a trigger behind.
pub(crate) fn forward_trigger(spec: &TableSpec) -> Vec<String> {
    let f = shadow::forward_function(spec.migration, spec.table_oid);
    let t = shadow::forward_trigger(spec.migration);
    vec![
        sql::trigger_function(spec, sql::Direction::Forward, &f),
        format!(
            "CREATE TRIGGER {t} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {f}()",
            spec.table
        ),
    ]
}
