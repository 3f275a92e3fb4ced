//! Rules (`CREATE RULE`) on tables.
//!
//! A rule whose definition changes is replaced in one statement (`CREATE OR REPLACE RULE`):
//! it is never missing. One that goes is dropped; one that is new is created. A rule that
//! reads a column the plan retypes or drops stops PostgreSQL's ALTER ("cannot alter type of
//! a column used by a view or rule"), whichever table the rule is on: it is dropped before
//! the ALTER and created again after, and `plan/carry.rs` folds the three into one
//! transaction when the ALTER is a brief online step (otherwise the plan says the rule is
//! missing in between).

use super::order::{Draft, Rank};
use super::sql::{ident, mentions, plain};
use super::types::comment;
use super::{ChangeKind, Cx};
use crate::ident::QualName;
use crate::model::{trigger_state_clause, Rule, Table};

/// Whether the rule (on `table`) may read a column the plan retypes or drops: its text names
/// the column's table (or the rule is on it) and the column.
fn reads_disturbed_column(cx: &Cx, table: &QualName, rule: &Rule) -> bool {
    cx.dropped_columns
        .iter()
        .chain(&cx.retyped_columns)
        .any(|(t, c)| {
            (t == table || mentions(&rule.definition, t.name.as_str()))
                && mentions(&rule.definition, c)
        })
}

/// `ALTER TABLE .. DISABLE RULE ..` (or ENABLE REPLICA / ALWAYS) for a rule that does not
/// simply fire.
fn state_sql(table: &QualName, rule: &Rule) -> String {
    format!(
        "ALTER TABLE {table} {} RULE {}",
        trigger_state_clause(rule.enabled),
        ident(&rule.name)
    )
}

fn create_sql(rule: &Rule) -> String {
    rule.definition.trim_end().trim_end_matches(';').to_string()
}

pub(crate) fn diff_rules(cx: &mut Cx, live: Option<&Table>, desired: &Table) {
    let name = &desired.name;
    let mut kept = Vec::new();
    if let Some(live) = live {
        for r in live.rules.values() {
            let wanted = desired.rules.get(&r.name);
            let in_the_way = reads_disturbed_column(cx, name, r);
            if !in_the_way && wanted.is_some() {
                kept.push(r.name.clone());
                continue;
            }
            let object = format!("rule {}.{}", plain(name), r.name);
            cx.out.push(
                Rank::DropRule,
                Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                    .table(name)
                    .sql(format!("DROP RULE {} ON {name}", ident(&r.name))),
            );
        }
    }
    for r in desired.rules.values() {
        let object = format!("rule {}.{}", plain(name), r.name);
        let old = live
            .and_then(|l| l.rules.get(&r.name))
            .filter(|_| kept.contains(&r.name));
        match old {
            Some(old) => {
                if old.definition != r.definition {
                    let sql = create_sql(r).replacen("CREATE RULE ", "CREATE OR REPLACE RULE ", 1);
                    cx.out.push(
                        Rank::Rule,
                        Draft::new(
                            ChangeKind::Alter,
                            object.clone(),
                            format!("replace {object} (one statement: never missing)"),
                        )
                        .table(name)
                        .sql(sql),
                    );
                }
                if old.enabled != r.enabled {
                    cx.out.push(
                        Rank::Rule,
                        Draft::new(
                            ChangeKind::Alter,
                            object.clone(),
                            format!("change whether {object} fires"),
                        )
                        .table(name)
                        .sql(state_sql(name, r)),
                    );
                }
            }
            None => {
                let mut draft = Draft::new(
                    ChangeKind::Create,
                    object.clone(),
                    format!("create {object}"),
                )
                .table(name)
                .sql(create_sql(r));
                if r.enabled != 'O' {
                    draft = draft.sql(state_sql(name, r));
                }
                let id = cx.out.push(Rank::Rule, draft);
                // A rule may write into or read other tables: after they exist.
                for t in cx.to.tables.keys() {
                    if t != name && mentions(&r.definition, t.name.as_str()) {
                        cx.out.need(id, format!("table {}", plain(t)));
                    }
                }
            }
        }
        let target = format!("RULE {} ON {name}", ident(&r.name));
        comment(
            cx,
            &object,
            &target,
            Some(name),
            old.and_then(|o| o.comment.as_deref()),
            r.comment.as_deref(),
        );
    }
}
