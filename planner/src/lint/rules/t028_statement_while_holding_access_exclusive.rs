//! T028 statement-while-holding-access-exclusive: further statements while ACCESS EXCLUSIVE is held

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T028",
    name: "statement-while-holding-access-exclusive",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"further statements while ACCESS EXCLUSIVE is held"#,
    docs: r#"ACCESS EXCLUSIVE taken earlier in a transaction is held until COMMIT. Every further statement in that transaction prolongs the time all reads and writes of the locked table wait. Commit right after the statement that takes the lock, and do other work in separate transactions."#,
    bad: r#"BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
CREATE TABLE audit_log (id bigint);
COMMIT;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN note text;
CREATE TABLE audit_log (id bigint);"#,
    remedy: Remedy::None,
    hazards: &[43],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        if matches!(
            s.node,
            NodeEnum::TransactionStmt(_)
                | NodeEnum::VariableSetStmt(_)
                | NodeEnum::VariableShowStmt(_)
        ) {
            return;
        }
        let Some(tx) = &st.tx else { return };
        let Some((t, at)) = tx.access_exclusive.first() else {
            return;
        };
        if s.facts.tables.iter().all(|x| x == t)
            && s.facts.tables.len() == 1
            && tx.access_exclusive.len() == 1
            && s.in_do_block
        {
            return;
        }
        out.push(RuleHit::new(
            format!("this statement runs while ACCESS EXCLUSIVE on {} (taken by statement {}) is still held: reads and writes of {} keep waiting until COMMIT", t.display_plain(), at + 1, t.display_plain()),
            "commit right after the statement that takes the lock and run this one in a separate transaction",
        ).lock(LockMode::AccessExclusive, t).table(t));
    }
}
