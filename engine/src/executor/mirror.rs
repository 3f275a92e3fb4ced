//! The mirror views `tandem proxy` compares reads against: the other table of a migration,
//! seen in the live table's shape, so a client's read can run unchanged on both sides.
//!
//! - Before cutover (from the transaction that records the copy complete, through verify):
//!   the shadow in the original's shape, computed with the reverse mapping (the one the
//!   reverse triggers use) and cast to the original's types.
//! - In the rollback window (created in the swap transaction): the old table in the new
//!   table's shape, computed with the forward mapping.
//!
//! Every change to a view is made in the transaction of the phase record it belongs to, sets
//! `tandem.shadow_tables.mirror_view` (the quoted qualified name, or NULL) and notifies
//! `tandem_proxy` with `targets`, so a crash leaves the view, the column and the phase
//! consistent, and proxies reload when (and only when) the transaction commits.
//!
//! Dual reads are optional: a table whose columns cannot all be mapped back (a USING
//! expression, a dropped or added column) gets no view, and an event says why; a view the
//! server refuses to create is treated the same way and never fails the phase.

use planner::ident::{Ident, QualName};
use serde_json::json;
use tokio_postgres::Transaction;

use crate::catalog::table::{columns, TableColumn as Col};
use crate::error::{is_connection_error, EngineError};
use crate::shadow::{self, Mapped, TableSpec};
use crate::state;

/// What a table gets for dual reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mirror {
    View(QualName),
    /// No comparison is possible; the reason, for people.
    Off(String),
}

/// The select list that shows a row of the other table (aliased `o`, columns `source`) as
/// a row of the live table (columns `target`, in their order): each mapped expression cast
/// to the live column's type; a generated column taken from the same generated column of
/// the other table. `Err` says which column has no counterpart.
fn select_list(
    target: &[Col],
    mapping: &[Mapped],
    source: &[Col],
    other: &str,
) -> Result<Vec<String>, String> {
    target
        .iter()
        .map(|col| {
            let name = Ident::new(col.name.clone())
                .map_err(|e| format!("column {:?}: {e}", col.name))?;
            if let Some(m) = mapping.iter().find(|m| m.column.name == name) {
                return Ok(format!("({})::{} AS {name}", m.expr, col.sql_type));
            }
            let same = source.iter().find(|s| {
                s.name == col.name && s.sql_type == col.sql_type && s.generated == col.generated
            });
            match (&col.generated, same) {
                (Some(_), Some(_)) => Ok(format!("o.{name} AS {name}")),
                _ => Err(format!(
                    "column {} has no counterpart in the {other} table (dropped, added, or computed with a USING expression tandem cannot invert)",
                    col.name
                )),
            }
        })
        .collect()
}

/// Create the view `view` as `SELECT list FROM from AS o`, inside a savepoint: a view the
/// server refuses turns dual reads off for the table instead of failing the phase.
async fn create(
    tx: &Transaction<'_>,
    view: &QualName,
    list: &[String],
    from: &QualName,
) -> Result<Mirror, EngineError> {
    tx.batch_execute("SAVEPOINT tandem_mirror_view")
        .await
        .map_err(EngineError::sql("savepoint"))?;
    let sql = format!(
        "DROP VIEW IF EXISTS {view}; CREATE VIEW {view} AS SELECT {} FROM {from} AS o",
        list.join(", ")
    );
    match tx.batch_execute(&sql).await {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT tandem_mirror_view")
                .await
                .map_err(EngineError::sql("savepoint"))?;
            Ok(Mirror::View(view.clone()))
        }
        Err(e) if is_connection_error(&e) || super::is_lock_timeout(&e) => {
            Err(EngineError::sql("create the mirror view")(e))
        }
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT tandem_mirror_view")
                .await
                .map_err(EngineError::sql("savepoint"))?;
            Ok(Mirror::Off(format!(
                "the server refused the mirror view ({})",
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            )))
        }
    }
}

/// Before cutover: the shadow seen in the original's shape. The caller's transaction must
/// have `search_path = pg_catalog, pg_temp` (as the trigger functions have).
pub(crate) async fn create_before(
    tx: &Transaction<'_>,
    spec: &TableSpec,
) -> Result<Mirror, EngineError> {
    let shadow_oid: Option<u32> = tx
        .query_one("SELECT to_regclass($1)::oid", &[&spec.shadow.to_string()])
        .await
        .map_err(EngineError::sql("find the shadow"))?
        .get(0);
    let Some(shadow_oid) = shadow_oid else {
        return Ok(Mirror::Off("the shadow table is gone".into()));
    };
    let live = columns(tx, spec.table_oid).await?;
    let other = columns(tx, shadow_oid).await?;
    match select_list(&live, &spec.reverse, &other, "new") {
        Ok(list) => {
            create(
                tx,
                &shadow::mirror_view(spec.migration, spec.table_oid),
                &list,
                &spec.shadow,
            )
            .await
        }
        Err(why) => Ok(Mirror::Off(why)),
    }
}

/// In the cutover transaction, after the renames: the old table (now `spec.old`) seen in
/// the new table's shape (`new_oid`, now under the user's name).
pub(crate) async fn create_after(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    new_oid: u32,
) -> Result<Mirror, EngineError> {
    let live = columns(tx, new_oid).await?;
    let other = columns(tx, spec.table_oid).await?;
    match select_list(&live, &spec.forward, &other, "old") {
        Ok(list) => {
            create(
                tx,
                &shadow::mirror_view(spec.migration, spec.table_oid),
                &list,
                &spec.old,
            )
            .await
        }
        Err(why) => Ok(Mirror::Off(why)),
    }
}

/// Drop the table's view (it reads the other table by oid, so it must go before a swap
/// renames the tables, and before the other table is dropped) and clear `mirror_view`.
pub(crate) async fn drop_view(tx: &Transaction<'_>, spec: &TableSpec) -> Result<(), EngineError> {
    tx.batch_execute(&drop_statement(spec))
        .await
        .map_err(EngineError::sql("drop the mirror view"))?;
    tx.execute(
        "UPDATE tandem.shadow_tables SET mirror_view = NULL WHERE migration_id = $1 AND table_oid = $2",
        &[&spec.migration, &spec.table_oid],
    )
    .await
    .map_err(EngineError::sql("record the mirror view"))?;
    Ok(())
}

/// `DROP VIEW IF EXISTS` for the table's view, for statement lists (abandon, finalize).
pub(crate) fn drop_statement(spec: &TableSpec) -> String {
    format!(
        "DROP VIEW IF EXISTS {}",
        shadow::mirror_view(spec.migration, spec.table_oid)
    )
}

/// Statements that clear every `mirror_view` of migration `m` and tell the proxies.
pub(crate) fn clear_statements(m: i64) -> Vec<String> {
    vec![
        format!("UPDATE tandem.shadow_tables SET mirror_view = NULL WHERE migration_id = {m}"),
        NOTIFY.to_string(),
    ]
}

/// Tell the proxies `tandem.mirror_targets` changed: a `targets` signal, and the doorbell
/// (delivered when the transaction commits).
pub(crate) const NOTIFY: &str = coordination::TARGETS;

/// Record the outcome in `shadow_tables.mirror_view`, and in an event when dual reads are off.
pub(crate) async fn record(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    phase: &str,
    outcome: &Mirror,
) -> Result<(), EngineError> {
    let view = match outcome {
        Mirror::View(v) => Some(v.to_string()),
        Mirror::Off(_) => None,
    };
    tx.execute(
        "UPDATE tandem.shadow_tables SET mirror_view = $3 WHERE migration_id = $1 AND table_oid = $2",
        &[&spec.migration, &spec.table_oid, &view],
    )
    .await
    .map_err(EngineError::sql("record the mirror view"))?;
    if let Mirror::Off(why) = outcome {
        state::record(
            tx,
            spec.migration,
            phase,
            "dual reads off",
            json!({ "table": spec.table.display_plain(), "reason": why }),
        )
        .await?;
    }
    Ok(())
}

/// A note for the observer when dual reads are off for a table.
pub(crate) fn note(spec: &TableSpec, outcome: &Mirror) -> Option<String> {
    match outcome {
        Mirror::View(_) => None,
        Mirror::Off(why) => Some(format!(
            "dual reads are off for {}: {why}; `tandem proxy` passes its reads through without comparing them",
            spec.table.display_plain()
        )),
    }
}

pub(crate) async fn notify(tx: &Transaction<'_>) -> Result<(), EngineError> {
    tx.batch_execute(NOTIFY)
        .await
        .map_err(EngineError::sql("notify the proxies"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::Column;

    fn col(name: &str, ty: &str, generated: Option<&str>) -> Col {
        Col {
            name: name.into(),
            sql_type: ty.into(),
            generated: generated.map(String::from),
            not_null: false,
            has_default: false,
            identity: String::new(),
            attnum: 0,
        }
    }

    fn mapped(name: &str, ty: &str, expr: &str) -> Mapped {
        Mapped {
            column: Column {
                name: Ident::new(name).unwrap(),
                sql_type: ty.into(),
            },
            expr: expr.into(),
        }
    }

    #[test]
    fn maps_back_in_the_live_order_and_types() {
        let live = [
            col("id", "integer", None),
            col("Note", "text", None),
            col("g", "integer", Some("(id * 2)")),
        ];
        let other = [
            col("Note", "text", None),
            col("id", "bigint", None),
            col("g", "integer", Some("(id * 2)")),
        ];
        let mapping = [
            mapped("Note", "text", "o.\"Note\""),
            mapped("id", "integer", "o.\"id\""),
        ];
        assert_eq!(
            select_list(&live, &mapping, &other, "new").unwrap(),
            vec![
                "(o.\"id\")::integer AS \"id\"",
                "(o.\"Note\")::text AS \"Note\"",
                "o.\"g\" AS \"g\""
            ]
        );
    }

    #[test]
    fn a_column_without_counterpart_turns_dual_reads_off() {
        let live = [col("id", "integer", None), col("cents", "integer", None)];
        let other = [col("id", "integer", None), col("cents", "bigint", None)];
        let mapping = [mapped("id", "integer", "o.\"id\"")];
        let e = select_list(&live, &mapping, &other, "new").unwrap_err();
        assert!(e.contains("column cents has no counterpart"), "{e}");
        // A generated column whose expression changed is not the same column.
        let live = [col("g", "integer", Some("(id * 2)"))];
        let other = [col("g", "integer", Some("(id * 3)"))];
        assert!(select_list(&live, &[], &other, "old").is_err());
    }
}
