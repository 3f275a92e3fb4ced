//! T003 concurrently-in-transaction: CONCURRENTLY inside a transaction block

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T003",
    name: "concurrently-in-transaction",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"CONCURRENTLY inside a transaction block"#,
    docs: r#"CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH PARTITION CONCURRENTLY cannot run inside a transaction block (BEGIN ... COMMIT, a DO block, or a migration tool that wraps the file in a transaction): the statement fails with 'cannot run inside a transaction block'. Run it on its own, outside any transaction."#,
    bad: r#"BEGIN;
CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);
COMMIT;"#,
    good: r#"CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);"#,
    remedy: Remedy::Online,
    hazards: &[3],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        if !s.facts.concurrently || !s.in_transaction {
            return;
        }
        let where_ = if s.in_do_block {
            "inside a DO block"
        } else if st.in_explicit_transaction() {
            "inside the transaction opened by BEGIN"
        } else {
            "inside the transaction the file runs in"
        };
        out.push(RuleHit::new(
            format!("this CONCURRENTLY statement runs {where_}: PostgreSQL refuses it with 'cannot run inside a transaction block'"),
            "run it as its own statement outside any transaction (end the transaction first, or mark the file non-transactional)",
        ));
    }
}
