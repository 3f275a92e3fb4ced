//! T000 parse-error: a statement PostgreSQL's parser cannot read

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T000",
    name: "parse-error",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"a statement PostgreSQL's parser cannot read"#,
    docs: r#"The statement does not parse with PostgreSQL's own grammar (pg_query), so it would fail when run and nothing about it can be checked. The finding points at the token the parser rejected. The other statements of the file are still split, parsed and checked."#,
    bad: r#"ALTER TABLE accounts ADDD COLUMN note text;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN note text;"#,
    remedy: Remedy::None,
    hazards: &[],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        // Emitted by the driver for statements that do not parse.
    }
}
