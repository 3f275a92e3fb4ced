//! Rewriting a blocking statement into the online form PostgreSQL offers for it.
//!
//! Works on pg_query's parse tree and deparses it again, so the user's expressions, options
//! and spelling survive untouched; only the parts that decide the lock change.

use pg_query::protobuf::{self, AlterTableType, ConstrType, ObjectType};
use pg_query::NodeEnum;

use crate::ident::{Ident, QualName};
use crate::model::Schema;

/// The online replacement of one statement: statements that each run in their own
/// transaction (or outside one, for CONCURRENTLY), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub(crate) sql: Vec<String>,
    pub(crate) how: &'static str,
}

/// `None` when the statement has no online form or is already online.
/// `existing(table)` says whether a table existed before this change (not created in it).
pub(crate) fn rewrite(
    sql: &str,
    pg_version: u32,
    live: &Schema,
    existing: &dyn Fn(&QualName) -> bool,
) -> Option<Rewrite> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let mut tree = parsed.protobuf.clone();
    if tree.stmts.len() != 1 {
        return None;
    }
    let node = tree.stmts[0].stmt.as_mut()?.node.as_mut()?;
    match node {
        NodeEnum::IndexStmt(stmt) if !stmt.concurrent => {
            let rv = stmt.relation.as_ref()?;
            let table = range_var_name(rv)?;
            if !existing(&table) || !rv.inh {
                // New table: nothing to block. ON ONLY: the caller builds the partitions'.
                return None;
            }
            if live
                .tables
                .get(&table)
                .is_some_and(|t| t.partition_key.is_some())
            {
                return partitioned_index(&mut tree, &table, live);
            }
            let NodeEnum::IndexStmt(stmt) = tree.stmts[0].stmt.as_mut()?.node.as_mut()? else {
                return None;
            };
            stmt.concurrent = true;
            Some(Rewrite {
                sql: vec![deparse(&tree)?],
                how: "built with CREATE INDEX CONCURRENTLY, which does not block writes",
            })
        }
        NodeEnum::DropStmt(stmt)
            if stmt.remove_type == ObjectType::ObjectIndex as i32
                && !stmt.concurrent
                && stmt.objects.len() == 1 =>
        {
            stmt.concurrent = true;
            Some(Rewrite {
                sql: vec![deparse(&tree)?],
                how: "dropped with DROP INDEX CONCURRENTLY, which waits for queries instead of blocking them",
            })
        }
        NodeEnum::ReindexStmt(stmt) if pg_version >= 12 => {
            let already = stmt.params.iter().any(
                |p| matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == "concurrently"),
            );
            if already {
                return None;
            }
            stmt.params.push(protobuf::Node {
                node: Some(NodeEnum::DefElem(Box::new(protobuf::DefElem {
                    defname: "concurrently".into(),
                    defaction: protobuf::DefElemAction::DefelemUnspec as i32,
                    ..Default::default()
                }))),
            });
            Some(Rewrite {
                sql: vec![deparse(&tree)?],
                how: "rebuilt with REINDEX CONCURRENTLY, which does not block writes",
            })
        }
        NodeEnum::AlterTableStmt(stmt) if stmt.cmds.len() == 1 => {
            let table = range_var_name(stmt.relation.as_ref()?)?;
            if !existing(&table) {
                return None;
            }
            let Some(NodeEnum::AlterTableCmd(cmd)) = stmt.cmds[0].node.as_mut() else {
                return None;
            };
            let subtype = cmd.subtype;
            if subtype == AlterTableType::AtAddConstraint as i32 {
                let Some(NodeEnum::Constraint(con)) =
                    cmd.def.as_mut().and_then(|d| d.node.as_mut())
                else {
                    return None;
                };
                match add_constraint(&table, con, live)? {
                    Action::NotValid(name) => {
                        let add = deparse(&tree)?;
                        let validate = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}");
                        Some(Rewrite {
                            sql: vec![add, validate],
                            how: "added NOT VALID (a brief lock) and validated in a separate transaction under SHARE UPDATE EXCLUSIVE, which does not block reads or writes",
                        })
                    }
                    Action::Replace(rewrite) => Some(rewrite),
                }
            } else if subtype == AlterTableType::AtSetNotNull as i32 && pg_version >= 12 {
                let column = cmd.name.clone();
                set_not_null(&table, &column)
            } else {
                None
            }
        }
        _ => None,
    }
}

enum Action {
    /// The constraint node was marked NOT VALID in place; validate this constraint after.
    NotValid(Ident),
    Replace(Rewrite),
}

fn add_constraint(
    table: &QualName,
    con: &mut protobuf::Constraint,
    live: &Schema,
) -> Option<Action> {
    let kind = con.contype;
    if kind == ConstrType::ConstrCheck as i32 || kind == ConstrType::ConstrForeign as i32 {
        if con.skip_validation {
            return None;
        }
        if con.conname.is_empty() {
            let suffix = if kind == ConstrType::ConstrCheck as i32 {
                "check"
            } else {
                "fkey"
            };
            con.conname = constraint_name(table, &key_names(con), suffix);
        }
        let name = Ident::new(con.conname.clone()).ok()?;
        con.skip_validation = true;
        con.initially_valid = false;
        return Some(Action::NotValid(name));
    }
    let unique = kind == ConstrType::ConstrUnique as i32;
    let primary = kind == ConstrType::ConstrPrimary as i32;
    if (unique || primary) && con.indexname.is_empty() {
        let columns: Vec<String> = key_names(con);
        if columns.is_empty() || !con.including.is_empty() || con.where_clause.is_some() {
            return None;
        }
        // ADD PRIMARY KEY would SET NOT NULL (a full scan under ACCESS EXCLUSIVE) on nullable columns.
        let live_table = live.tables.get(table)?;
        if primary
            && !columns
                .iter()
                .all(|c| live_table.column(c).is_some_and(|col| col.not_null))
        {
            return None;
        }
        let suffix = if primary { "pkey" } else { "key" };
        if con.conname.is_empty() {
            con.conname = constraint_name(table, &columns, suffix);
        }
        let name = Ident::new(con.conname.clone()).ok()?;
        let cols = columns
            .iter()
            .map(|c| Ident::new(c.clone()).map(|i| i.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .ok()?
            .join(", ");
        let nulls = if con.nulls_not_distinct {
            " NULLS NOT DISTINCT"
        } else {
            ""
        };
        let index = format!("CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({cols}){nulls}");
        let kind_sql = if primary { "PRIMARY KEY" } else { "UNIQUE" };
        let attach =
            format!("ALTER TABLE {table} ADD CONSTRAINT {name} {kind_sql} USING INDEX {name}");
        return Some(Action::Replace(Rewrite {
            sql: vec![index, attach],
            how: "its index built with CREATE UNIQUE INDEX CONCURRENTLY, then attached with ADD CONSTRAINT ... USING INDEX (a brief lock)",
        }));
    }
    None
}

fn set_not_null(table: &QualName, column: &str) -> Option<Rewrite> {
    let col = Ident::new(column.to_string()).ok()?;
    let check = Ident::new(constraint_name(
        table,
        &[column.to_string()],
        "not_null_tandem",
    ))
    .ok()?;
    Some(Rewrite {
        sql: vec![
            format!("ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({col} IS NOT NULL) NOT VALID"),
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check}"),
            format!("ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL"),
            format!("ALTER TABLE {table} DROP CONSTRAINT {check}"),
        ],
        how: "proved by a CHECK (... IS NOT NULL) NOT VALID constraint validated without blocking writes, so SET NOT NULL skips its full-table scan",
    })
}

fn key_names(con: &protobuf::Constraint) -> Vec<String> {
    let keys = if con.fk_attrs.is_empty() {
        &con.keys
    } else {
        &con.fk_attrs
    };
    keys.iter()
        .filter_map(|k| match &k.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// PostgreSQL's own naming scheme (`table_col_suffix`), cut to fit 63 bytes.
fn constraint_name(table: &QualName, columns: &[String], suffix: &str) -> String {
    let mut base = String::from(table.name.as_str());
    for c in columns {
        base.push('_');
        base.push_str(c);
    }
    let room = crate::ident::MAX_IDENT_BYTES - suffix.len() - 1;
    while base.len() > room {
        base.pop();
    }
    base.push('_');
    base.push_str(suffix);
    base
}

/// `CREATE INDEX` on a partitioned table, which takes no CONCURRENTLY: `ON ONLY` the parent
/// (an invalid index, at once), `CREATE INDEX CONCURRENTLY` on each partition, and `ATTACH
/// PARTITION` of each to the parent's (valid with the last). Only for a named index on a
/// table whose partitions are all leaves; `None` (the plain form) otherwise.
fn partitioned_index(
    tree: &mut protobuf::ParseResult,
    table: &QualName,
    live: &Schema,
) -> Option<Rewrite> {
    let parts: Vec<&QualName> = live
        .tables
        .values()
        .filter(|t| t.partition_of.as_ref().map(|(p, _)| p) == Some(table))
        .map(|t| (t.partition_key.is_none()).then_some(&t.name))
        .collect::<Option<Vec<_>>>()?;
    if parts.is_empty() {
        return None;
    }
    let NodeEnum::IndexStmt(stmt) = tree.stmts[0].stmt.as_mut()?.node.as_mut()? else {
        return None;
    };
    if stmt.idxname.is_empty() {
        return None;
    }
    let parent_index = QualName::new(table.schema.as_str(), &stmt.idxname).ok()?;
    stmt.relation.as_mut()?.inh = false;
    let mut sql = vec![deparse(tree)?];
    for part in parts {
        let name = partition_index_name(part.name.as_str(), parent_index.name.as_str());
        let NodeEnum::IndexStmt(stmt) = tree.stmts[0].stmt.as_mut()?.node.as_mut()? else {
            return None;
        };
        stmt.concurrent = true;
        stmt.idxname = name.clone();
        let rv = stmt.relation.as_mut()?;
        rv.inh = true;
        rv.schemaname = part.schema.as_str().to_string();
        rv.relname = part.name.as_str().to_string();
        sql.push(deparse(tree)?);
        let index = QualName::new(part.schema.as_str(), &name).ok()?;
        sql.push(format!(
            "ALTER INDEX {parent_index} ATTACH PARTITION {index}"
        ));
    }
    Some(Rewrite {
        sql,
        how: "built ON ONLY the partitioned table, CONCURRENTLY on each partition, then attached: no partition is blocked for a build",
    })
}

/// `<partition>_<index>`, shortened to PostgreSQL's 63 bytes on a character boundary.
fn partition_index_name(partition: &str, index: &str) -> String {
    let mut name = format!("{partition}_{index}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

fn range_var_name(rv: &protobuf::RangeVar) -> Option<QualName> {
    let schema = if rv.schemaname.is_empty() {
        "public"
    } else {
        rv.schemaname.as_str()
    };
    QualName::new(schema, &rv.relname).ok()
}

fn deparse(tree: &protobuf::ParseResult) -> Option<String> {
    pg_query::deparse(tree, Default::default()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Schema {
        Schema::default()
    }

    fn rw(sql: &str) -> Option<Vec<String>> {
        rewrite(sql, 15, &live(), &|_| true).map(|r| r.sql)
    }

    #[test]
    fn index_becomes_concurrent() {
        assert_eq!(
            rw("create index i on t (a) where a > 0").unwrap(),
            vec!["CREATE INDEX CONCURRENTLY i ON t USING btree (a) WHERE a > 0"]
        );
        assert_eq!(rw("create index concurrently i on t (a)"), None);
    }

    #[test]
    fn drop_index_becomes_concurrent() {
        assert_eq!(
            rw("drop index i").unwrap(),
            vec!["DROP INDEX CONCURRENTLY i"]
        );
    }

    #[test]
    fn check_becomes_not_valid_then_validate() {
        let sql = rw("alter table accounts add constraint pos check (balance >= 0)").unwrap();
        assert_eq!(
            sql,
            vec![
                "ALTER TABLE accounts ADD CONSTRAINT pos CHECK (balance >= 0) NOT VALID",
                "ALTER TABLE \"public\".\"accounts\" VALIDATE CONSTRAINT \"pos\"",
            ]
        );
    }

    #[test]
    fn unnamed_foreign_key_gets_postgres_style_name() {
        let sql =
            rw("alter table orders add foreign key (account_id) references accounts (id)").unwrap();
        assert!(sql[0].contains("orders_account_id_fkey"), "{sql:?}");
        assert!(sql[0].ends_with("NOT VALID"), "{sql:?}");
    }

    #[test]
    fn set_not_null_goes_through_a_check() {
        let sql = rw("alter table accounts alter column email set not null").unwrap();
        assert_eq!(sql.len(), 4);
        assert!(sql[0].contains("CHECK (\"email\" IS NOT NULL) NOT VALID"));
        assert!(rewrite(
            "alter table a alter column e set not null",
            11,
            &live(),
            &|_| true
        )
        .is_none());
    }

    #[test]
    fn new_tables_are_left_alone() {
        assert!(rewrite("create index i on t (a)", 15, &live(), &|_| false).is_none());
    }
}
