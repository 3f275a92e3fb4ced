//! The column mapping between the original and its shadow: each new column from an original
//! row (forward), each old column back from a new row (reverse), the key in both, explicit
//! casts, and the identity columns.

use std::collections::BTreeMap;

use planner::ident::QualName;
use planner::plan::shadow::ShadowChange;
use tokio_postgres::Transaction;

use super::table::Original;
use crate::catalog::table::TableColumn as Col;
use crate::error::EngineError;
use crate::shadow::{self, guard, ident, Column, IdentityColumn, Mapped};

/// Old column -> new column, for the columns that map by name or through a rename.
pub(super) type MappedFrom = BTreeMap<String, String>;

/// Each new (non-generated) column from an original row: a `USING` expression, or the
/// original column it maps from by name or rename; a new NOT NULL column without a default is
/// refused (the existing rows have no value for it).
pub(super) fn forward(
    orig: &Original<'_>,
    new_cols: &[Col],
    change: &ShadowChange,
) -> Result<(Vec<Mapped>, MappedFrom), EngineError> {
    let name = &orig.name;
    let source_of = |new: &str| -> Option<String> {
        if let Some(old) = change.renames.get(new) {
            return Some(old.clone());
        }
        orig.columns
            .iter()
            .any(|c| c.name == new && !change.renames.values().any(|o| o == new))
            .then(|| new.to_string())
    };
    let mut forward = Vec::new();
    let mut mapped_from = MappedFrom::new();
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
            Some(src)
                if orig
                    .columns
                    .iter()
                    .any(|o| o.name == src && !o.is_generated()) =>
            {
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
    Ok((forward, mapped_from))
}

/// The key columns in the original and in the new table; refused when the change drops or
/// recomputes one.
pub(super) fn key(
    orig: &Original<'_>,
    new_cols: &[Col],
    mapped_from: &MappedFrom,
) -> Result<(Vec<Column>, Vec<Column>), EngineError> {
    let mut key = Vec::new();
    let mut new_key = Vec::new();
    for k in &orig.key_names {
        let oc = orig
            .columns
            .iter()
            .find(|c| &c.name == k)
            .expect("key columns exist");
        let Some(nk) = mapped_from.get(k) else {
            return Err(EngineError::refused(
                format!("the change drops or recomputes key column {k} of {}; the shadow migration addresses rows by that key", orig.name),
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
    Ok((key, new_key))
}

/// Each old column back from a new row, for the rollback window; and why a rollback could not
/// rebuild the old rows (a `USING` expression, a dropped NOT NULL column without a default).
pub(super) fn reverse(
    orig: &Original<'_>,
    change: &ShadowChange,
    mapped_from: &MappedFrom,
) -> Result<(Vec<Mapped>, Vec<String>), EngineError> {
    let mut reverse = Vec::new();
    let mut blockers = Vec::new();
    for o in orig.columns.iter().filter(|c| !c.is_generated()) {
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
    Ok((reverse, blockers))
}

/// A plain column whose type changes is written with PostgreSQL's assignment cast, as `ALTER
/// ... TYPE` without `USING` does. Where none exists (text to integer, say), the change must
/// have said `USING col::type` (PostgreSQL refused it on the shadow otherwise), which the
/// planner reads as a plain cast: spell that cast out.
pub(super) async fn explicit_casts(
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

/// The forward mapping runs where the copy and the triggers will run it: under `search_path =
/// pg_catalog` (names in the expressions themselves were qualified by `table::resolved`). A
/// function the expression calls whose own body finds its objects through the search_path
/// (`$1::mood` in a SQL function without `SET search_path`) fails there on every row: refused
/// now, before any trigger exists, rather than failing the application's writes and the copy.
/// Tried on one row (an empty table tries nothing); data errors are the guards' business.
pub(super) async fn runs_pinned(
    tx: &Transaction<'_>,
    table: &QualName,
    forward: &[Mapped],
    name: &str,
) -> Result<(), EngineError> {
    if forward.is_empty() {
        return Ok(());
    }
    let exprs: Vec<&str> = forward.iter().map(|m| m.expr.as_str()).collect();
    tx.batch_execute("SAVEPOINT tandem_pinned")
        .await
        .map_err(EngineError::sql("savepoint"))?;
    let tried = tx
        .batch_execute(&format!(
            "SELECT {} FROM (SELECT * FROM {table} LIMIT 1) AS o",
            exprs.join(", ")
        ))
        .await;
    tx.batch_execute("ROLLBACK TO SAVEPOINT tandem_pinned; RELEASE SAVEPOINT tandem_pinned")
        .await
        .map_err(EngineError::sql("savepoint"))?;
    let Err(e) = tried else { return Ok(()) };
    let Some(db) = e.as_db_error() else {
        return Err(EngineError::sql("try the column mapping")(e));
    };
    // Class 22 (data) and 23 (integrity): a row the mapping rejects, for the guards.
    if db.code().code().starts_with("22") || db.code().code().starts_with("23") {
        return Ok(());
    }
    Err(EngineError::refused(
        format!(
            "the new columns of {name} cannot be computed where tandem's copy and triggers run (search_path = pg_catalog): {}{}",
            db.message(),
            db.where_().map(|w| format!(" ({w})")).unwrap_or_default()
        ),
        "a function the change calls finds its types or functions through the search_path: give it its own (ALTER FUNCTION ... SET search_path = your_schema) or qualify the names in its body, then run `tandem apply` again (no shadow table or trigger was made)",
    ))
}

pub(super) struct IdentityScope<'a> {
    pub(super) m: i64,
    pub(super) oid: u32,
    pub(super) shadow_oid: u32,
    pub(super) shadow: &'a QualName,
    pub(super) name: &'a str,
}

/// The identity columns both tables have, each with its sequences named and the shadow's
/// column made `GENERATED BY DEFAULT` (tandem writes the original's values into it). A change
/// that adds an identity to a column, or drops one from a column it keeps, is refused: the
/// sequence would start over, or the original's would fall behind the rows written back.
pub(super) async fn identity_columns(
    tx: &Transaction<'_>,
    at: IdentityScope<'_>,
    orig_cols: &[Col],
    new_cols: &[Col],
    mapped_from: &MappedFrom,
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
