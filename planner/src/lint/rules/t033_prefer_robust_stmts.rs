//! T033 prefer-robust-stmts: non-idempotent statement outside a transaction

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T033",
    name: "prefer-robust-stmts",
    severity: Severity::Info,
    class: Class::Fails,
    summary: r#"non-idempotent statement outside a transaction"#,
    docs: r#"When statements run outside a transaction, a failure halfway leaves the earlier ones applied, and re-running the file fails on the first CREATE that already exists. Use IF NOT EXISTS / IF EXISTS so the file can be re-run, or wrap it in a transaction. A failed CREATE INDEX CONCURRENTLY also leaves an INVALID index behind that must be dropped before a retry."#,
    bad: r#"CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);
ALTER TABLE accounts ADD COLUMN note text;"#,
    good: r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_idx ON accounts (email);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS note text;"#,
    remedy: Remedy::None,
    hazards: &[47],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        if s.in_transaction || st.total_statements < 2 {
            return;
        }
        let what = match s.node {
            NodeEnum::IndexStmt(i) if !i.if_not_exists => {
                Some("CREATE INDEX without IF NOT EXISTS")
            }
            NodeEnum::CreateStmt(c) if !c.if_not_exists => {
                Some("CREATE TABLE without IF NOT EXISTS")
            }
            NodeEnum::DropStmt(d)
                if !d.missing_ok
                    && matches!(
                        d.remove_type(),
                        ObjectType::ObjectTable | ObjectType::ObjectIndex
                    ) =>
            {
                Some("DROP without IF EXISTS")
            }
            _ => alter_table(s.node).and_then(|(_, a)| {
                cmds(a).find_map(|(sub, cmd)| match sub {
                    A::AtAddColumn if !cmd.missing_ok => Some("ADD COLUMN without IF NOT EXISTS"),
                    A::AtDropColumn if !cmd.missing_ok => Some("DROP COLUMN without IF EXISTS"),
                    _ => None,
                })
            }),
        };
        let Some(what) = what else { return };
        out.push(RuleHit::new(
            format!("{what} outside a transaction: if a later statement fails, re-running the file fails here"),
            "add IF [NOT] EXISTS so the file can be re-run, or run the non-concurrent statements in a transaction",
        ));
    }
}
