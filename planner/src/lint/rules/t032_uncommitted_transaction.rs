//! T032 uncommitted-transaction: BEGIN without COMMIT

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T032",
    name: "uncommitted-transaction",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"BEGIN without COMMIT"#,
    docs: r#"A transaction opened with BEGIN and never committed is rolled back when the session ends: every change after the BEGIN is silently lost. End it with COMMIT."#,
    bad: r#"BEGIN;
ALTER TABLE accounts ADD COLUMN note text;"#,
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
        // Checked at the end of the file (see finish).
    }
    fn finish(&self, st: &FileState, _opts: &LintOptions<'_>, out: &mut Vec<(usize, RuleHit)>) {
        if let Some(at) = st.open_begin {
            out.push((at, RuleHit::new(
                "this BEGIN is never committed: when the session ends everything after it is rolled back and lost",
                "add COMMIT at the end of the file",
            )));
        }
    }
}
