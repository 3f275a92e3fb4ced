//! What `CREATE TABLE ... (LIKE ...)` does not give the shadow as the original has it, put
//! right in prepare: NOT VALID CHECK constraints (LIKE makes them valid, so one old row that
//! violates them would stop the copy), the names and targets of extended statistics (LIKE
//! makes up names), columns' statistics targets, and index comments (deferred indexes are
//! built from their definitions).

use planner::ident::QualName;
use tokio_postgres::Transaction;

use crate::error::EngineError;
use crate::shadow::{self, ident, NotValidCheck, StatisticsPair};

const NOT_VALID_CHECKS: &str = include_str!("../catalog/sql/not_valid_checks.sql");
const STATISTICS: &str = include_str!("../catalog/sql/extended_statistics.sql");
const COLUMN_TARGETS: &str = include_str!("../catalog/sql/column_statistics_targets.sql");

/// The original's NOT VALID CHECK constraints, dropped from the (empty) shadow that LIKE gave
/// them to as valid. Run right after LIKE.
pub(crate) async fn not_valid_checks(
    tx: &Transaction<'_>,
    oid: u32,
    shadow: &QualName,
) -> Result<Vec<NotValidCheck>, EngineError> {
    let rows = tx
        .query(NOT_VALID_CHECKS, &[&oid])
        .await
        .map_err(EngineError::sql("read the NOT VALID constraints"))?;
    let mut out = Vec::new();
    for r in rows {
        let name = ident(r.get("name"))?;
        tx.batch_execute(&format!("ALTER TABLE {shadow} DROP CONSTRAINT {name}"))
            .await
            .map_err(EngineError::sql(
                "leave a NOT VALID constraint off the shadow",
            ))?;
        out.push(NotValidCheck {
            name,
            definition: r.get("definition"),
            comment: r.get("comment"),
        });
    }
    Ok(out)
}

/// After the change: each NOT VALID constraint must still fit the new table, where cutover
/// adds it. Tried on the empty shadow (added, then dropped), so a misfit is refused now.
pub(crate) async fn check_not_valid_fit(
    tx: &Transaction<'_>,
    shadow: &QualName,
    checks: &[NotValidCheck],
    name: &str,
) -> Result<(), EngineError> {
    for c in checks {
        let sql = format!(
            "ALTER TABLE {shadow} ADD CONSTRAINT {} {}; ALTER TABLE {shadow} DROP CONSTRAINT {}",
            c.name, c.definition, c.name
        );
        if let Err(e) = tx.batch_execute(&sql).await {
            return Err(EngineError::refused(
                format!(
                    "NOT VALID constraint {} of {name} does not fit the changed table ({})",
                    c.name.as_str(),
                    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
                ),
                "validate it (ALTER TABLE ... VALIDATE CONSTRAINT) or drop it first, then make a new plan",
            ));
        }
    }
    Ok(())
}

/// Give the shadow's copies of the original's extended statistics tandem's names and the
/// original's targets. LIKE copies them in the original's order. Run right after LIKE.
pub(crate) async fn statistics(
    tx: &Transaction<'_>,
    (m, oid): (i64, u32),
    shadow_oid: u32,
) -> Result<Vec<StatisticsPair>, EngineError> {
    let read = |rel: u32| async move {
        tx.query(STATISTICS, &[&rel])
            .await
            .map_err(EngineError::sql("read the extended statistics"))
    };
    let originals = read(oid).await?;
    let copies = read(shadow_oid).await?;
    if originals.len() != copies.len() {
        return Err(EngineError::refused(
            format!(
                "the shadow got {} extended statistics, the table has {}",
                copies.len(),
                originals.len()
            ),
            "this is a tandem bug; please report it with the table's definition",
        ));
    }
    let mut out = Vec::new();
    for (n, (o, c)) in originals.iter().zip(&copies).enumerate() {
        let schema = ident(c.get("schema"))?;
        let (temp, parked) = shadow::statistics_names(m, oid, n);
        let copy = ident(c.get("name"))?;
        tx.batch_execute(&format!(
            "ALTER STATISTICS {schema}.{copy} RENAME TO {temp}"
        ))
        .await
        .map_err(EngineError::sql("name the shadow's statistics"))?;
        let target: i32 = o.get("target");
        if target >= 0 {
            tx.batch_execute(&format!(
                "ALTER STATISTICS {schema}.{temp} SET STATISTICS {target}"
            ))
            .await
            .map_err(EngineError::sql("set a statistics target"))?;
        }
        let orig_schema: &str = o.get("schema");
        if orig_schema != schema.as_str() {
            // A statistics object outside the table's schema keeps LIKE's name there.
            continue;
        }
        out.push(StatisticsPair {
            schema,
            name: ident(o.get("name"))?,
            temp,
            parked,
        });
    }
    Ok(out)
}

/// The original's per-column statistics targets on the shadow's columns (by the change's
/// mapping), where the change did not set one itself. Run after the change.
pub(crate) async fn column_targets(
    tx: &Transaction<'_>,
    (oid, shadow_oid): (u32, u32),
    shadow: &QualName,
    new_name_of: impl Fn(&str) -> Option<String>,
) -> Result<(), EngineError> {
    let targets = |rel: u32| async move {
        tx.query(COLUMN_TARGETS, &[&rel])
            .await
            .map_err(EngineError::sql("read the statistics targets"))
    };
    let set_on_shadow: Vec<String> = targets(shadow_oid)
        .await?
        .iter()
        .map(|r| r.get("name"))
        .collect();
    for r in targets(oid).await? {
        let Some(new) = new_name_of(r.get("name")) else {
            continue;
        };
        if set_on_shadow.contains(&new) {
            continue;
        }
        let target: i32 = r.get("target");
        tx.batch_execute(&format!(
            "ALTER TABLE {shadow} ALTER COLUMN {} SET STATISTICS {target}",
            ident(&new)?
        ))
        .await
        .map_err(EngineError::sql("set a column's statistics target"))?;
    }
    Ok(())
}

/// The comment of index `name` of the original, if it has one.
pub(crate) async fn index_comment(
    tx: &Transaction<'_>,
    index_oid: u32,
) -> Result<Option<String>, EngineError> {
    Ok(tx
        .query_one("SELECT obj_description($1, 'pg_class')", &[&index_oid])
        .await
        .map_err(EngineError::sql("read an index's comment"))?
        .get(0))
}
