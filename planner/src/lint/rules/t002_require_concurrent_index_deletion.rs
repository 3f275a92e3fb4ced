//! T002 require-concurrent-index-deletion: DROP INDEX without CONCURRENTLY

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T002",
    name: "require-concurrent-index-deletion",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"DROP INDEX without CONCURRENTLY"#,
    docs: r#"DROP INDEX takes ACCESS EXCLUSIVE on the index's table: reads and writes wait, and while it waits for running queries everything queues behind it. DROP INDEX CONCURRENTLY waits for running transactions without blocking them. It cannot run in a transaction block."#,
    bad: r#"DROP INDEX accounts_email_idx;"#,
    good: r#"DROP INDEX CONCURRENTLY IF EXISTS accounts_email_idx;"#,
    remedy: Remedy::Online,
    hazards: &[2],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::DropStmt(d) = s.node else {
            return;
        };
        if d.remove_type() != ObjectType::ObjectIndex || d.concurrent {
            return;
        }
        for idx in drop_objects(&d.objects) {
            let table = crate::lint::analyze::index_table(&idx, st, s.opts);
            if table.as_ref().is_some_and(|t| st.is_new(t)) {
                continue;
            }
            let on = table
                .as_ref()
                .map(|t| t.display_plain())
                .unwrap_or_else(|| "its table".to_string());
            let mut hit = RuleHit::new(
                format!("DROP INDEX {} takes ACCESS EXCLUSIVE on {on}, blocking reads and writes until running queries finish", idx.display_plain()),
                "use DROP INDEX CONCURRENTLY (outside a transaction block)",
            );
            if let Some(t) = &table {
                hit = hit.lock(LockMode::AccessExclusive, t).table(t);
            }
            out.push(hit);
        }
    }
}
