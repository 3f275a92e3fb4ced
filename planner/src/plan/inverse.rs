//! The inverse of an online step, for `tandem rollback --online-steps`: what undoes the
//! objects it created without losing anything written since. An index the step built is
//! dropped (`DROP INDEX CONCURRENTLY`), a constraint it added is dropped, a `SET NOT NULL`
//! becomes `DROP NOT NULL`; validating a constraint needs no undoing. A column it added is
//! not dropped (the rows written since would lose that column), nor is anything tandem cannot
//! name (an index created without a name). A serial's sequence widened `AS bigint` goes back
//! `AS integer` (the type `serial` makes, the only one the plan widens; it fails, and says so,
//! if the sequence has already passed the integer maximum).

use pg_query::protobuf::{self, AlterTableType, ObjectType};
use pg_query::NodeEnum;

use crate::ident::Ident;

/// How one statement is undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inverse {
    /// These statements, in order (each in its own transaction, or none for CONCURRENTLY).
    Statements(Vec<String>),
    /// It changed nothing a rollback must restore.
    NotNeeded,
    /// It cannot be undone safely: why.
    Impossible(String),
}

/// The relation as the statement spelled it (unqualified stays unqualified, resolved by the
/// same search_path the step ran under).
fn spelled(rv: &protobuf::RangeVar) -> Option<String> {
    let rel = Ident::new(rv.relname.clone()).ok()?;
    if rv.schemaname.is_empty() {
        return Some(rel.to_string());
    }
    let schema = Ident::new(rv.schemaname.clone()).ok()?;
    Some(format!("{schema}.{rel}"))
}

/// The inverse of one statement of an online step.
pub fn inverse(sql: &str) -> Inverse {
    let impossible = |why: &str| Inverse::Impossible(why.to_string());
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return impossible("tandem cannot parse it");
    };
    let stmts = &parsed.protobuf.stmts;
    if stmts.len() != 1 {
        return impossible("it holds several statements");
    }
    let Some(node) = stmts[0].stmt.as_ref().and_then(|s| s.node.as_ref()) else {
        return impossible("it is empty");
    };
    match node {
        NodeEnum::IndexStmt(stmt) => {
            let Some(rv) = stmt.relation.as_ref() else {
                return impossible("it names no table");
            };
            if stmt.idxname.is_empty() {
                return impossible("the index has no name in the step (PostgreSQL chose one)");
            }
            let Ok(index) = Ident::new(stmt.idxname.clone()) else {
                return impossible("a name tandem cannot quote");
            };
            let qualified = if rv.schemaname.is_empty() {
                index.to_string()
            } else {
                match Ident::new(rv.schemaname.clone()) {
                    Ok(s) => format!("{s}.{index}"),
                    Err(_) => return impossible("a name tandem cannot quote"),
                }
            };
            Inverse::Statements(vec![format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {qualified}"
            )])
        }
        NodeEnum::AlterTableStmt(stmt) if stmt.objtype == ObjectType::ObjectTable as i32 => {
            let Some(table) = stmt.relation.as_ref().and_then(spelled) else {
                return impossible("a name tandem cannot quote");
            };
            let mut out = Vec::new();
            for cmd in stmt.cmds.iter().rev() {
                let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
                    return impossible("an ALTER TABLE tandem cannot read");
                };
                let t = cmd.subtype;
                if t == AlterTableType::AtAddConstraint as i32 {
                    let Some(NodeEnum::Constraint(c)) =
                        cmd.def.as_ref().and_then(|d| d.node.as_ref())
                    else {
                        return impossible("a constraint tandem cannot read");
                    };
                    let Ok(n) = Ident::new(c.conname.clone()) else {
                        return impossible(
                            "the constraint has no name in the step (PostgreSQL chose one)",
                        );
                    };
                    out.push(format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {n}"));
                } else if t == AlterTableType::AtValidateConstraint as i32 {
                    // Nothing to restore.
                } else if t == AlterTableType::AtSetNotNull as i32 {
                    let Ok(col) = Ident::new(cmd.name.clone()) else {
                        return impossible("a name tandem cannot quote");
                    };
                    out.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {col} DROP NOT NULL"
                    ));
                } else if t == AlterTableType::AtAddColumn as i32 {
                    return impossible(
                        "dropping the column it added would lose what was written to it since",
                    );
                } else {
                    return impossible("tandem knows no inverse for it");
                }
            }
            if out.is_empty() {
                Inverse::NotNeeded
            } else {
                Inverse::Statements(out)
            }
        }
        NodeEnum::AlterSeqStmt(stmt) => {
            let to_bigint = stmt.options.len() == 1
                && stmt.options.iter().all(|o| match o.node.as_ref() {
                    Some(NodeEnum::DefElem(d)) if d.defname == "as" => {
                        matches!(d.arg.as_ref().and_then(|a| a.node.as_ref()),
                            Some(NodeEnum::TypeName(t)) if t.names.last().and_then(|n| match n.node.as_ref() {
                                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                                _ => None,
                            }).is_some_and(|n| n == "int8" || n == "bigint"))
                    }
                    _ => false,
                });
            match (to_bigint, stmt.sequence.as_ref().and_then(spelled)) {
                (true, Some(seq)) => {
                    Inverse::Statements(vec![format!("ALTER SEQUENCE {seq} AS integer")])
                }
                _ => impossible("tandem knows no inverse for it"),
            }
        }
        _ => impossible("tandem knows no inverse for it"),
    }
}

/// The inverse of a whole step (its statements undone last to first).
pub fn inverse_of_step(sql: &[String]) -> Inverse {
    let mut out = Vec::new();
    for s in sql.iter().rev() {
        match inverse(s) {
            Inverse::Statements(v) => out.extend(v),
            Inverse::NotNeeded => {}
            impossible @ Inverse::Impossible(_) => return impossible,
        }
    }
    if out.is_empty() {
        Inverse::NotNeeded
    } else {
        Inverse::Statements(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_widened_serial_sequence_goes_back_to_integer() {
        assert_eq!(
            stmts(inverse(
                r#"ALTER SEQUENCE "public"."orders_id_seq" AS bigint"#
            )),
            vec![r#"ALTER SEQUENCE "public"."orders_id_seq" AS integer"#.to_string()]
        );
        assert!(matches!(
            inverse("ALTER SEQUENCE s RESTART"),
            Inverse::Impossible(_)
        ));
    }

    fn stmts(i: Inverse) -> Vec<String> {
        match i {
            Inverse::Statements(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn indexes_and_constraints_are_dropped() {
        assert_eq!(
            stmts(inverse(
                "CREATE INDEX CONCURRENTLY items_label_idx ON items (label)"
            )),
            vec!["DROP INDEX CONCURRENTLY IF EXISTS \"items_label_idx\""]
        );
        assert_eq!(
            stmts(inverse(
                "CREATE UNIQUE INDEX CONCURRENTLY k ON app.items (a)"
            )),
            vec!["DROP INDEX CONCURRENTLY IF EXISTS \"app\".\"k\""]
        );
        assert_eq!(
            stmts(inverse(
                "ALTER TABLE items ADD CONSTRAINT items_n_pos CHECK (n > 0) NOT VALID"
            )),
            vec!["ALTER TABLE \"items\" DROP CONSTRAINT IF EXISTS \"items_n_pos\""]
        );
        assert_eq!(
            stmts(inverse("ALTER TABLE items ALTER n SET NOT NULL")),
            vec!["ALTER TABLE \"items\" ALTER COLUMN \"n\" DROP NOT NULL"]
        );
        assert_eq!(
            inverse("ALTER TABLE items VALIDATE CONSTRAINT items_n_pos"),
            Inverse::NotNeeded
        );
    }

    #[test]
    fn what_cannot_be_undone_says_why() {
        for sql in [
            "CREATE INDEX CONCURRENTLY ON items (label)",
            "ALTER TABLE items ADD COLUMN note text",
            "ALTER TABLE items ADD CHECK (n > 0) NOT VALID",
            "COMMENT ON TABLE items IS 'x'",
        ] {
            assert!(
                matches!(inverse(sql), Inverse::Impossible(_)),
                "{sql}: {:?}",
                inverse(sql)
            );
        }
    }

    #[test]
    fn a_step_is_undone_last_statement_first() {
        let step = vec![
            "ALTER TABLE items ADD CONSTRAINT c CHECK (n > 0) NOT VALID".to_string(),
            "ALTER TABLE items VALIDATE CONSTRAINT c".to_string(),
            "ALTER TABLE items ALTER n SET NOT NULL".to_string(),
        ];
        assert_eq!(
            stmts(inverse_of_step(&step)),
            vec![
                "ALTER TABLE \"items\" ALTER COLUMN \"n\" DROP NOT NULL",
                "ALTER TABLE \"items\" DROP CONSTRAINT IF EXISTS \"c\""
            ]
        );
    }
}
