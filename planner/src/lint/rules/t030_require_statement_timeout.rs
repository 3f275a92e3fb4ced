//! T030 require-statement-timeout: no statement_timeout before long-running DDL

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T030",
    name: "require-statement-timeout",
    severity: Severity::Info,
    class: Class::Blocking,
    summary: r#"no statement_timeout before long-running DDL"#,
    docs: r#"Without statement_timeout a rewrite, scan or index build runs as long as it takes while holding its lock. Set statement_timeout so that a migration that turns out longer than planned stops instead of blocking traffic indefinitely. Reported once per file."#,
    bad: r#"CREATE INDEX accounts_email_idx ON accounts (email);"#,
    good: r#"SET statement_timeout = '5min';
CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);"#,
    remedy: Remedy::Online,
    hazards: &[45],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        if st.statement_timeout_set() || st.statement_timeout_reported {
            return;
        }
        let long = s
            .facts
            .rewrites
            .first()
            .or(s.facts.scans_under_lock.first());
        let Some(t) = long else { return };
        out.push(RuleHit::new(
            format!("this statement scans or rewrites {} while holding a lock, and no statement_timeout is set: if it runs longer than expected it keeps blocking", t.display_plain()),
            "SET statement_timeout before it (e.g. '5min'), sized to the table",
        ).table(t));
    }
}
