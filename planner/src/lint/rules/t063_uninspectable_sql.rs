//! T063 uninspectable-sql: SQL built at run time that tandem cannot check

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T063",
    name: "uninspectable-sql",
    severity: Severity::Info,
    class: Class::Breaking,
    summary: r#"SQL built at run time that tandem cannot check"#,
    docs: r#"EXECUTE of a computed string inside a DO block (format(...), concatenation, variables) and DO blocks in languages other than PL/pgSQL cannot be analysed: the locks and changes they make are unknown. Write the statements out as plain SQL, or review the generated SQL by hand."#,
    bad: r#"DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN note text', 'accounts'); END $$;"#,
    good: r#"DO $$ BEGIN EXECUTE 'ALTER TABLE accounts ADD COLUMN note text'; END $$;"#,
    remedy: Remedy::None,
    hazards: &[49],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        // Emitted by the driver for DO blocks with dynamic SQL.
    }
}
