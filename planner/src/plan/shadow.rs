//! What a shadow step does to its table, read from the step's SQL: the statements re-aimed at
//! the shadow table, and the column mapping they imply (`USING` expressions and renames).
//!
//! The engine creates the shadow as a copy of the original's shape and runs these statements
//! on it while it is empty, so PostgreSQL itself works out the new definition; what this module
//! adds is how each new column is computed from an old row.

use std::collections::BTreeMap;

use pg_query::protobuf::{self, AlterTableType, ObjectType};
use pg_query::NodeEnum;

use crate::ident::QualName;

/// The step's change, aimed at the shadow table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShadowChange {
    /// The step's statements, each changed to alter the shadow table instead of the original.
    pub statements: Vec<String>,
    /// New column name -> SQL expression over the original's columns (`ALTER ... TYPE ... USING`).
    /// An expression that is only a cast of the column itself is not listed: the column maps by name.
    pub using: BTreeMap<String, String>,
    /// New column name -> old column name (`RENAME COLUMN old TO new`).
    pub renames: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShadowError {
    #[error("statement cannot be read: {0}")]
    Parse(String),
    #[error("`{0}` is not an ALTER TABLE of {1}; a shadow step may only alter its own table: plan this statement on its own")]
    NotOwnTable(String, String),
    #[error("statement `{0}` cannot be rewritten for the shadow table: {1}")]
    Deparse(String, String),
}

/// Aim `sql` (the statements of one shadow step on `table`) at `shadow`.
pub fn shadow_change(
    sql: &[String],
    table: &QualName,
    shadow: &QualName,
) -> Result<ShadowChange, ShadowError> {
    let mut out = ShadowChange::default();
    for text in sql {
        let parsed = pg_query::parse(text, 0).map_err(|e| ShadowError::Parse(e.to_string()))?;
        let mut tree = parsed.protobuf.clone();
        for raw in &mut tree.stmts {
            let Some(node) = raw.stmt.as_mut().and_then(|s| s.node.as_mut()) else {
                continue;
            };
            match node {
                NodeEnum::AlterTableStmt(stmt)
                    if stmt.objtype == ObjectType::ObjectTable as i32
                        && stmt.relation.as_ref().is_some_and(|r| names(r, table)) =>
                {
                    for cmd in &stmt.cmds {
                        let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
                            continue;
                        };
                        if cmd.subtype == AlterTableType::AtAlterColumnType as i32 {
                            if let Some(NodeEnum::ColumnDef(def)) =
                                cmd.def.as_ref().and_then(|d| d.node.as_ref())
                            {
                                if let Some(expr) = def.raw_default.as_ref() {
                                    if !is_cast_of(expr, &cmd.name) {
                                        out.using.insert(
                                            cmd.name.clone(),
                                            deparse_expr(expr).map_err(|e| {
                                                ShadowError::Deparse(text.clone(), e)
                                            })?,
                                        );
                                    }
                                }
                            }
                        }
                    }
                    retarget(stmt.relation.as_mut(), shadow);
                }
                NodeEnum::RenameStmt(stmt)
                    if stmt.rename_type == ObjectType::ObjectColumn as i32
                        && stmt.relation.as_ref().is_some_and(|r| names(r, table)) =>
                {
                    // A chain of renames (a -> b, b -> c) maps c to a.
                    let old = out
                        .renames
                        .remove(&stmt.subname)
                        .unwrap_or_else(|| stmt.subname.clone());
                    out.renames.insert(stmt.newname.clone(), old);
                    retarget(stmt.relation.as_mut(), shadow);
                }
                _ => {
                    return Err(ShadowError::NotOwnTable(
                        text.trim().to_string(),
                        table.display_plain(),
                    ))
                }
            }
        }
        let sql = pg_query::deparse(&tree, Default::default())
            .map_err(|e| ShadowError::Deparse(text.clone(), e.to_string()))?;
        out.statements.push(sql);
    }
    Ok(out)
}

/// `def` (the text of `pg_get_indexdef`) built with CONCURRENTLY.
pub fn concurrent_index(def: &str) -> Option<String> {
    let parsed = pg_query::parse(def, 0).ok()?;
    let mut tree = parsed.protobuf.clone();
    let node = tree.stmts.first_mut()?.stmt.as_mut()?.node.as_mut()?;
    let NodeEnum::IndexStmt(stmt) = node else {
        return None;
    };
    stmt.concurrent = true;
    pg_query::deparse(&tree, Default::default()).ok()
}

fn names(rv: &protobuf::RangeVar, table: &QualName) -> bool {
    let schema = if rv.schemaname.is_empty() {
        "public"
    } else {
        rv.schemaname.as_str()
    };
    schema == table.schema.as_str() && rv.relname == table.name.as_str()
}

fn retarget(rv: Option<&mut protobuf::RangeVar>, shadow: &QualName) {
    if let Some(rv) = rv {
        rv.schemaname = shadow.schema.as_str().to_string();
        rv.relname = shadow.name.as_str().to_string();
    }
}

/// `col::type` or `CAST(col AS type)`: the column itself, converted as PostgreSQL would anyway.
fn is_cast_of(expr: &protobuf::Node, column: &str) -> bool {
    let Some(NodeEnum::TypeCast(cast)) = expr.node.as_ref() else {
        return false;
    };
    let Some(NodeEnum::ColumnRef(col)) = cast.arg.as_ref().and_then(|a| a.node.as_ref()) else {
        return false;
    };
    matches!(col.fields.as_slice(), [f] if matches!(&f.node, Some(NodeEnum::String(s)) if s.sval == column))
}

/// The SQL text of an expression node (deparsed as the one target of a SELECT).
fn deparse_expr(expr: &protobuf::Node) -> Result<String, String> {
    let mut tree = pg_query::parse("SELECT 1", 0)
        .map_err(|e| e.to_string())?
        .protobuf;
    let target = tree
        .stmts
        .first_mut()
        .and_then(|s| s.stmt.as_mut())
        .and_then(|s| s.node.as_mut())
        .and_then(|n| match n {
            NodeEnum::SelectStmt(sel) => sel.target_list.first_mut(),
            _ => None,
        })
        .and_then(|t| t.node.as_mut());
    let Some(NodeEnum::ResTarget(res)) = target else {
        return Err("cannot build a SELECT to deparse into".into());
    };
    res.val = Some(Box::new(expr.clone()));
    let text = pg_query::deparse(&tree, Default::default()).map_err(|e| e.to_string())?;
    text.strip_prefix("SELECT ")
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected deparse output {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> QualName {
        QualName::new("public", s).unwrap()
    }

    #[test]
    fn retargets_and_maps() {
        let c = shadow_change(
            &[
                "ALTER TABLE accounts ALTER id TYPE bigint, ALTER cents TYPE bigint USING (cents * 100)".into(),
                "ALTER TABLE public.accounts RENAME COLUMN note TO remark".into(),
                "ALTER TABLE accounts ALTER balance TYPE numeric(12,2) USING balance::numeric(12,2)".into(),
            ],
            &q("accounts"),
            &q("_tandem_1_new"),
        )
        .unwrap();
        assert_eq!(
            c.statements,
            vec![
                "ALTER TABLE public._tandem_1_new ALTER COLUMN id TYPE bigint, ALTER COLUMN cents TYPE bigint USING cents * 100",
                "ALTER TABLE public._tandem_1_new RENAME COLUMN note TO remark",
                "ALTER TABLE public._tandem_1_new ALTER COLUMN balance TYPE numeric(12, 2) USING balance::numeric(12, 2)",
            ]
        );
        assert_eq!(
            c.using.get("cents").map(String::as_str),
            Some("cents * 100")
        );
        assert!(!c.using.contains_key("balance"));
        assert_eq!(c.renames.get("remark").map(String::as_str), Some("note"));
    }

    #[test]
    fn refuses_other_tables() {
        let e = shadow_change(
            &["ALTER TABLE other ADD COLUMN x int".into()],
            &q("accounts"),
            &q("_tandem_1_new"),
        )
        .unwrap_err();
        assert!(matches!(e, ShadowError::NotOwnTable(..)), "{e}");
    }

    #[test]
    fn concurrently() {
        assert_eq!(
            concurrent_index("CREATE UNIQUE INDEX x ON public.t USING btree (a) WHERE (b > 0)")
                .unwrap(),
            "CREATE UNIQUE INDEX CONCURRENTLY x ON public.t USING btree (a) WHERE b > 0"
        );
    }
}
