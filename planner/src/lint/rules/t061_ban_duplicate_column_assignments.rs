//! T061 ban-duplicate-column-assignments: the same column assigned twice

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T061",
    name: "ban-duplicate-column-assignments",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"the same column assigned twice"#,
    docs: r#"UPDATE ... SET a = 1, a = 2 and INSERT INTO t (a, a) fail with 'multiple assignments to same column'; in CREATE TABLE a repeated column name fails with 'column specified more than once'. Remove the duplicate."#,
    bad: r#"UPDATE accounts SET status = 'active', status = 'closed' WHERE id = 1;"#,
    good: r#"UPDATE accounts SET status = 'active' WHERE id = 1;"#,
    remedy: Remedy::None,
    hazards: &[54],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let cols: Vec<&str> = match s.node {
            NodeEnum::UpdateStmt(u) => u
                .target_list
                .iter()
                .filter_map(|n| match &n.node {
                    Some(NodeEnum::ResTarget(r)) if r.indirection.is_empty() => {
                        Some(r.name.as_str())
                    }
                    _ => None,
                })
                .collect(),
            NodeEnum::InsertStmt(i) => i
                .cols
                .iter()
                .filter_map(|n| match &n.node {
                    Some(NodeEnum::ResTarget(r)) => Some(r.name.as_str()),
                    _ => None,
                })
                .collect(),
            NodeEnum::CreateStmt(c) => c
                .table_elts
                .iter()
                .filter_map(|n| match &n.node {
                    Some(NodeEnum::ColumnDef(d)) => Some(d.colname.as_str()),
                    _ => None,
                })
                .collect(),
            _ => return,
        };
        let mut seen = std::collections::HashSet::new();
        for c in cols {
            if !seen.insert(c) {
                out.push(RuleHit::new(
                    format!("column {c} is assigned more than once: the statement fails"),
                    "remove the duplicate assignment",
                ));
            }
        }
    }
}
