//! T004 require-concurrent-reindex: REINDEX without CONCURRENTLY

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T004",
    name: "require-concurrent-reindex",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"REINDEX without CONCURRENTLY"#,
    docs: r#"REINDEX locks the table against writes (SHARE) and takes ACCESS EXCLUSIVE on each index being rebuilt, so queries that would use it block too. REINDEX CONCURRENTLY (PostgreSQL 12+) rebuilds without blocking; before 12, build a new index concurrently and swap."#,
    bad: r#"REINDEX TABLE accounts;"#,
    good: r#"REINDEX TABLE CONCURRENTLY accounts;"#,
    remedy: Remedy::Online,
    hazards: &[4],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::ReindexStmt(r) = s.node else {
            return;
        };
        if crate::lint::analyze::reindex_concurrent(&r.params) {
            return;
        }
        let target = r
            .relation
            .as_ref()
            .map(|rv| qual(rv).display_plain())
            .unwrap_or_else(|| r.name.clone());
        let help = if s.pg() >= 12 {
            "use REINDEX ... CONCURRENTLY (outside a transaction block)".to_string()
        } else {
            format!("PostgreSQL {} has no REINDEX CONCURRENTLY: create a new index CONCURRENTLY, drop the old one CONCURRENTLY, rename", s.pg())
        };
        let mut hit = RuleHit::new(format!("REINDEX of {target} blocks writes to the table and reads through the rebuilt indexes until it finishes"), help);
        if let Some((t, m)) = s
            .facts
            .locks
            .iter()
            .find(|(t, _)| s.facts.tables.contains(t))
        {
            hit = hit.lock(*m, t).table(t);
        }
        out.push(hit);
    }
}
