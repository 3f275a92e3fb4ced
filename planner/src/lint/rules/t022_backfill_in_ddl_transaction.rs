//! T022 backfill-in-ddl-transaction: UPDATE/DELETE of a whole table inside a transaction that changes the schema

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T022",
    name: "backfill-in-ddl-transaction",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"UPDATE/DELETE of a whole table inside a transaction that changes the schema"#,
    docs: r#"An UPDATE or DELETE without WHERE in the same transaction as DDL holds the DDL's locks (often ACCESS EXCLUSIVE) for the whole data change, and locks every row it touches until COMMIT. Backfill in batches (UPDATE ... WHERE id BETWEEN ...) in separate transactions, after the schema change is committed."#,
    bad: r#"BEGIN;
ALTER TABLE accounts ADD COLUMN status text;
UPDATE accounts SET status = 'active';
COMMIT;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN status text;
UPDATE accounts SET status = 'active' WHERE id BETWEEN 1 AND 10000;"#,
    remedy: Remedy::None,
    hazards: &[31],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let (rv, whole, verb) = match s.node {
            NodeEnum::UpdateStmt(u) => (u.relation.as_ref(), u.where_clause.is_none(), "UPDATE"),
            NodeEnum::DeleteStmt(d) => (d.relation.as_ref(), d.where_clause.is_none(), "DELETE"),
            _ => return,
        };
        let Some(rv) = rv else { return };
        let t = qual(rv);
        let in_ddl_tx = st.tx.as_ref().is_some_and(|tx| tx.has_ddl);
        if !whole || !in_ddl_tx || st.is_new(&t) {
            return;
        }
        out.push(RuleHit::new(
            format!("{verb} of every row of {} inside a transaction that also changes the schema: the DDL locks are held for the whole data change and every row stays locked until COMMIT{}", t.display_plain(), s.size_note(&t)),
            "commit the schema change first, then backfill in batches (WHERE key BETWEEN ...) in separate transactions",
        ).table(&t));
    }
}
