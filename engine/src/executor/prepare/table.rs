//! One table's shadow, made in named steps inside prepare's transaction: read the original
//! (refusing what tandem cannot migrate), claim tandem's names, create the shadow shaped like
//! the original, run the change on it, then work out the spec: the column mapping
//! (`mapping.rs`), the indexes (`indexes.rs`), the triggers' guards (`guards.rs`); a
//! partitioned table's shadow partitions last, once the root has the new definition.

use planner::ident::QualName;
use planner::plan::shadow::{shadow_change, ShadowChange};
use tokio_postgres::Transaction;

use super::{guards, indexes, mapping};
use crate::catalog::table::{self, TableColumn as Col};
use crate::error::EngineError;
use crate::executor::carry;
use crate::shadow::{
    self, dependents, partitions, CopyMethod, NotValidCheck, Partitioning, StatisticsPair,
    TableSpec,
};
use crate::state::{Migration, PREPARE_LOCK_CLASS};

/// What prepare reads of the original before it changes anything.
pub(super) struct Original<'a> {
    pub(super) oid: u32,
    pub(super) table: &'a QualName,
    /// For messages.
    pub(super) name: String,
    pub(super) reloptions: Vec<String>,
    /// The key index and its columns.
    pub(super) key_index: u32,
    pub(super) key_names: Vec<String>,
    pub(super) indexes: Vec<indexes::Idx>,
    pub(super) columns: Vec<Col>,
    pub(super) partitioning: Option<Partitioning>,
    /// The owner, when tandem's role is not it (`shadow::writer`).
    pub(super) writer: Option<planner::ident::Ident>,
}

/// The shadow as `LIKE` made it, before the change.
pub(super) struct Made {
    pub(super) shadow: QualName,
    pub(super) old: QualName,
    pub(super) oid: u32,
    pub(super) not_valid_checks: Vec<NotValidCheck>,
    pub(super) statistics: Vec<StatisticsPair>,
}

pub(super) async fn prepare_table(
    tx: &Transaction<'_>,
    m: &Migration,
    table: &QualName,
    statements: &[String],
    copy: CopyMethod,
) -> Result<TableSpec, EngineError> {
    let orig = read_original(tx, m, table).await?;
    // Indexes on a partitioned table cannot be built CONCURRENTLY: a tree is always copied
    // by the log method (its indexes built plainly, before anything but tandem writes it).
    let copy = match orig.partitioning {
        Some(_) => CopyMethod::Log,
        None => copy,
    };
    let (shadow, old) = claim_names(tx, m, &orig).await?;
    let (made, temp_of) = create_shadow(tx, m, &orig, shadow, old).await?;
    let change = apply_change(tx, &orig, &made.shadow, statements).await?;

    let new_cols = table::columns(tx, made.oid).await?;
    let (forward, mapped_from) = mapping::forward(&orig, &new_cols, &change)?;
    let mut forward = forward;
    mapping::explicit_casts(tx, table, &made.shadow, &orig.columns, &mut forward).await?;
    mapping::runs_pinned(tx, table, &forward, &orig.name).await?;
    carry::check_not_valid_fit(tx, &made.shadow, &made.not_valid_checks, &orig.name).await?;
    carry::column_targets(tx, (orig.oid, made.oid), &made.shadow, |old| {
        mapped_from.get(old).cloned()
    })
    .await?;
    let identity = mapping::identity_columns(
        tx,
        mapping::IdentityScope {
            m: m.id,
            oid: orig.oid,
            shadow_oid: made.oid,
            shadow: &made.shadow,
            name: &orig.name,
        },
        &orig.columns,
        &new_cols,
        &mapped_from,
    )
    .await?;
    let (key, new_key) = mapping::key(&orig, &new_cols, &mapped_from)?;
    let (reverse, blockers) = mapping::reverse(&orig, &change, &mapped_from)?;
    let new_indexes = indexes::new_indexes(tx, m, &orig, &made, &temp_of, copy).await?;
    let old_indexes = indexes::old_indexes(m, &orig)?;
    let (forward_guard, reverse_guard) = guards::guards(
        tx,
        orig.oid,
        made.oid,
        (&orig.columns, &new_cols),
        (&forward, &reverse),
        &new_indexes,
        &made.not_valid_checks,
    )
    .await?;

    let name = orig.name;
    let spec = TableSpec {
        migration: m.id,
        table_oid: orig.oid,
        table: table.clone(),
        shadow: made.shadow,
        old: made.old,
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
        not_valid_checks: made.not_valid_checks,
        statistics: made.statistics,
        copy,
        partitioning: orig.partitioning,
        writer: orig.writer,
    };
    for st in partitions::create_shadows(&spec)
        .into_iter()
        .chain(shadow::writer::own_shadow(&spec))
    {
        tx.batch_execute(&st)
            .await
            .map_err(EngineError::sql(format!(
                "make the shadow partitions of {name} and give the shadow to the table's owner"
            )))?;
    }
    Ok(spec)
}

/// Step 1: the original exists, tandem can carry what is attached to it, no other migration
/// runs on it, it has a key; its indexes, columns and partitions.
async fn read_original<'a>(
    tx: &Transaction<'_>,
    m: &Migration,
    table: &'a QualName,
) -> Result<Original<'a>, EngineError> {
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
    // One prepare of a table at a time: the check below and the shadow this transaction
    // records are one step for every other executor, which waits here until this one
    // commits (and then finds its migration) or rolls back.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2::oid::int4)",
        &[&PREPARE_LOCK_CLASS, &oid],
    )
    .await
    .map_err(|e| {
        if crate::executor::is_lock_timeout(&e) {
            EngineError::refused(
                format!("another tandem process is preparing a migration of {name} right now"),
                "wait for it to finish (`tandem status` shows it), then run `tandem apply` again: it refuses this migration if the other one is still running on the table",
            )
        } else {
            EngineError::sql("take the table's prepare lock")(e)
        }
    })?;
    // An unfinished migration of the table: by the oid it had, or (from its cutover on,
    // when the live table is that migration's shadow) by its name.
    let other: Option<i64> = tx
        .query_opt(
            "SELECT s.migration_id FROM tandem.shadow_tables s JOIN tandem.migrations g ON g.id = s.migration_id
               JOIN pg_class c ON c.oid = $1 JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE (s.table_oid = $1 OR (s.schema_name = n.nspname AND s.table_name = c.relname))
                AND s.migration_id <> $2
                AND g.phase NOT IN ('finalized', 'rolled_back', 'abandoned')
              ORDER BY s.migration_id LIMIT 1",
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

    // A partitioned table: the shadow is partitioned by the same key, its partitions made
    // once the root has the new definition.
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
    Ok(Original {
        oid,
        table,
        name,
        reloptions: deps.reloptions,
        key_index: key_row.get(0),
        key_names: key_row.get(1),
        indexes: indexes::indexes(tx, oid).await?,
        columns: table::columns(tx, oid).await?,
        partitioning,
        writer: match deps.tandem_owns {
            true => None,
            false => Some(shadow::ident(&deps.owner)?),
        },
    })
}

/// Step 2: tandem's names for the shadow and for the parked original, refused if a relation
/// has one already.
async fn claim_names(
    tx: &Transaction<'_>,
    m: &Migration,
    orig: &Original<'_>,
) -> Result<(QualName, QualName), EngineError> {
    let (shadow_name, old_name) = shadow::names(m.id, orig.oid);
    let schema = orig.table.schema.as_str();
    let shadow = QualName::new(schema, &shadow_name).expect("short");
    let old = QualName::new(schema, &old_name).expect("short");
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
    Ok((shadow, old))
}

/// Step 3: the shadow, shaped like the original (identity columns with their own sequences,
/// partitioned by the same key), its storage options, no autovacuum while it fills, the
/// copies of the original's indexes under tandem's names, its NOT VALID checks set aside and
/// its statistics objects renamed. Returns the original index oid -> the copy's name too.
async fn create_shadow(
    tx: &Transaction<'_>,
    m: &Migration,
    orig: &Original<'_>,
    shadow: QualName,
    old: QualName,
) -> Result<(Made, std::collections::BTreeMap<u32, planner::ident::Ident>), EngineError> {
    let (table, name) = (orig.table, &orig.name);
    let partition_by = match &orig.partitioning {
        Some(p) => format!(" PARTITION BY {}", p.key),
        None => String::new(),
    };
    tx.batch_execute(&format!(
        "CREATE TABLE {shadow} (LIKE {table} INCLUDING COMMENTS INCLUDING COMPRESSION INCLUDING CONSTRAINTS \
         INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING INDEXES INCLUDING STATISTICS INCLUDING STORAGE){partition_by}"
    ))
    .await
    .map_err(EngineError::sql(format!("create the shadow of {name}")))?;
    if !orig.reloptions.is_empty() {
        tx.batch_execute(&format!(
            "ALTER TABLE {shadow} SET ({})",
            dependents::option_list(&orig.reloptions)
        ))
        .await
        .map_err(EngineError::sql("copy the table's storage options"))?;
    }
    // No autovacuum on the shadow while it is filled: a worker started by the bulk copy would
    // hold a lock the cutover waits for (autovacuum yields to waiters only after
    // deadlock_timeout, far longer than the cutover's lock_timeout). The backfill ends with
    // its own ANALYZE, the cutover gives autovacuum back. (A partitioned root has no storage:
    // its leaves get the same when they are made.)
    if orig.partitioning.is_none() {
        tx.batch_execute(&format!(
            "ALTER TABLE {shadow} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
        ))
        .await
        .map_err(EngineError::sql("pause autovacuum on the shadow"))?;
    }
    let oid: u32 = tx
        .query_one("SELECT to_regclass($1)::oid", &[&shadow.to_string()])
        .await
        .map_err(EngineError::sql("find the shadow"))?
        .get(0);
    let not_valid_checks = carry::not_valid_checks(tx, orig.oid, &shadow).await?;
    let statistics = carry::statistics(tx, (m.id, orig.oid), oid).await?;
    let temp_of = indexes::name_copies(tx, m, orig, &shadow, oid).await?;
    Ok((
        Made {
            shadow,
            old,
            oid,
            not_valid_checks,
            statistics,
        },
        temp_of,
    ))
}

/// Step 4: the step's statements, aimed at the shadow, run on it while it is empty, so
/// PostgreSQL works out the new definition.
async fn apply_change(
    tx: &Transaction<'_>,
    orig: &Original<'_>,
    shadow: &QualName,
    statements: &[String],
) -> Result<ShadowChange, EngineError> {
    let name = &orig.name;
    let mut change = shadow_change(statements, orig.table, shadow).map_err(|e| {
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
    for expr in change.using.values_mut() {
        *expr = resolved(tx, orig.table, expr).await?;
    }
    tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
        .await
        .map_err(EngineError::sql("set the search path"))?;
    Ok(change)
}

/// A `USING` expression as the copy and the triggers can run it: they run under `search_path =
/// pg_catalog` (a trigger function must not resolve names where an application role can
/// create objects), so an expression that names the application's own types or functions
/// unqualified (`to_mood(m)`, as the statement was written) is written out by the server with
/// every such name qualified (`public.to_mood(o.m)`), read from a temporary view made under the
/// database's search_path. One that resolves in pg_catalog alone is kept as written. Runs
/// under the database's search_path, and leaves it so.
async fn resolved(
    tx: &Transaction<'_>,
    table: &QualName,
    expr: &str,
) -> Result<String, EngineError> {
    const ALIAS: &str = "tandem_using_expression";
    let view = |path: &str| {
        format!(
            "SET LOCAL search_path {path}; CREATE TEMP VIEW _tandem_using AS SELECT {expr} AS {ALIAS} FROM {table} AS o"
        )
    };
    tx.batch_execute("SAVEPOINT tandem_using")
        .await
        .map_err(EngineError::sql("savepoint"))?;
    let plain = tx
        .batch_execute(&view("= pg_catalog, pg_temp"))
        .await
        .is_ok();
    tx.batch_execute(
        "ROLLBACK TO SAVEPOINT tandem_using; RELEASE SAVEPOINT tandem_using; SET LOCAL search_path TO DEFAULT",
    )
    .await
    .map_err(EngineError::sql("savepoint"))?;
    if plain {
        return Ok(expr.to_string());
    }
    let fail = |e: tokio_postgres::Error| {
        EngineError::refused(
            format!(
                "the USING expression {expr} cannot be read back qualified: {}",
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            ),
            "qualify the names in the USING expression (schema.function, schema.type), make a new plan and submit it; nothing was changed",
        )
    };
    tx.batch_execute(&view("TO DEFAULT")).await.map_err(fail)?;
    tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
        .await
        .map_err(fail)?;
    let def: String = tx
        .query_one(
            "SELECT pg_get_viewdef('pg_temp._tandem_using'::regclass)",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    tx.batch_execute("DROP VIEW pg_temp._tandem_using; SET LOCAL search_path TO DEFAULT")
        .await
        .map_err(fail)?;
    let body = def.trim_start();
    let body = body.strip_prefix("SELECT").unwrap_or(body);
    match body.rfind(&format!(" AS {ALIAS}")) {
        Some(end) => Ok(body[..end].trim().to_string()),
        None => Err(EngineError::refused(
            format!("the USING expression {expr} came back from the server in a form tandem cannot read ({def})"),
            "qualify the names in the USING expression (schema.function, schema.type), make a new plan and submit it; nothing was changed",
        )),
    }
}
