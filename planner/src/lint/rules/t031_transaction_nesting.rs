//! T031 transaction-nesting: BEGIN inside a transaction, COMMIT/ROLLBACK outside one

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T031",
    name: "transaction-nesting",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"BEGIN inside a transaction, COMMIT/ROLLBACK outside one"#,
    docs: r#"A second BEGIN only warns and does not nest; a COMMIT or ROLLBACK inside a file that the migration tool runs in a transaction ends the tool's transaction, so later statements run outside it and a failure no longer rolls everything back; a COMMIT without BEGIN does nothing. Use one transaction model per file."#,
    bad: r#"BEGIN;
BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
COMMIT;"#,
    good: r#"BEGIN;
ALTER TABLE accounts ADD COLUMN note text;
COMMIT;"#,
    remedy: Remedy::None,
    hazards: &[48],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::TransactionStmt(t) = s.node else {
            return;
        };
        use pg_query::protobuf::TransactionStmtKind as K;
        match t.kind() {
            K::TransStmtBegin | K::TransStmtStart if st.in_explicit_transaction() => out.push(RuleHit::new(
                "BEGIN inside a transaction that is already open: PostgreSQL does not nest transactions (use SAVEPOINT), so the first COMMIT ends both",
                "remove the inner BEGIN/COMMIT, or use SAVEPOINT",
            )),
            K::TransStmtBegin | K::TransStmtStart if st.assume_tx => out.push(RuleHit::new(
                "BEGIN in a file that is run inside a transaction: it does not nest, and its COMMIT ends the runner's transaction",
                "remove BEGIN/COMMIT from the file, or run the file without a wrapping transaction",
            )),
            K::TransStmtCommit | K::TransStmtRollback if !st.in_transaction() => out.push(RuleHit::new(
                "COMMIT/ROLLBACK without an open transaction: it does nothing (PostgreSQL only warns), so the statements before it were already committed one by one",
                "add the matching BEGIN, or remove this statement",
            )),
            K::TransStmtCommit | K::TransStmtRollback if !st.in_explicit_transaction() && st.assume_tx => out.push(RuleHit::new(
                "COMMIT/ROLLBACK ends the transaction the runner wraps the file in: the statements after it run outside any transaction",
                "remove it, or run the file without a wrapping transaction",
            )),
            _ => {}
        }
    }
}
