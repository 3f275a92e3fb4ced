//! T006 concurrent-index-on-pg14: concurrent index builds on PostgreSQL 14.0-14.3 can corrupt indexes

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T006",
    name: "concurrent-index-on-pg14",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"concurrent index builds on PostgreSQL 14.0-14.3 can corrupt indexes"#,
    docs: r#"PostgreSQL 14.0 to 14.3 have a bug where CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY can miss rows written during the build, leaving a silently corrupt index. Fixed in 14.4. Upgrade the server to 14.4 or later before building indexes concurrently (and reindex indexes built on the affected releases)."#,
    bad: r#"CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email); -- with pg_version 14"#,
    good: r#"CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email); -- with pg_version 15"#,
    remedy: Remedy::None,
    hazards: &[7],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        if s.pg() != 14 {
            return;
        }
        let concurrent_build = match s.node {
            NodeEnum::IndexStmt(i) => i.concurrent,
            NodeEnum::ReindexStmt(r) => crate::lint::analyze::reindex_concurrent(&r.params),
            _ => false,
        };
        if concurrent_build {
            out.push(RuleHit::new(
                "concurrent index builds on PostgreSQL 14.0-14.3 can miss rows and leave a corrupt index",
                "make sure the server runs 14.4 or later (SELECT version()); if not, upgrade first",
            ));
        }
    }
}
