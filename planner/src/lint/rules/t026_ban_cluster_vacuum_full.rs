//! T026 ban-cluster-vacuum-full: CLUSTER and VACUUM FULL rewrite the table under ACCESS EXCLUSIVE

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T026",
    name: "ban-cluster-vacuum-full",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"CLUSTER and VACUUM FULL rewrite the table under ACCESS EXCLUSIVE"#,
    docs: r#"CLUSTER and VACUUM FULL write a new copy of the table and its indexes while holding ACCESS EXCLUSIVE: nothing can read or write the table until the copy is done. Use pg_repack (or REPACK CONCURRENTLY where available), or build a new table and swap (tandem shadow migration)."#,
    bad: r#"VACUUM FULL accounts;"#,
    good: r#"VACUUM (ANALYZE) accounts;"#,
    remedy: Remedy::Shadow,
    hazards: &[41],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let what = match s.node {
            NodeEnum::ClusterStmt(_) => "CLUSTER",
            NodeEnum::VacuumStmt(v)
                if v.is_vacuumcmd && crate::lint::analyze::vacuum_full(&v.options) =>
            {
                "VACUUM FULL"
            }
            _ => return,
        };
        if s.facts.tables.is_empty() {
            out.push(RuleHit::new(
                format!("{what} without a table rewrites every eligible table in the database under ACCESS EXCLUSIVE"),
                "use pg_repack, or name one table at a quiet time",
            ));
        }
        for t in &s.facts.tables {
            out.push(RuleHit::new(
                format!("{what} rewrites {} and its indexes under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite{}", t.display_plain(), s.size_note(t)),
                "use pg_repack (online), or build a new table and swap it in (tandem shadow migration)",
            ).lock(LockMode::AccessExclusive, t).table(t));
        }
    }
}
