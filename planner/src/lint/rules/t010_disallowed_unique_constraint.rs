//! T010 disallowed-unique-constraint: ADD UNIQUE constraint builds its index under ACCESS EXCLUSIVE

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T010",
    name: "disallowed-unique-constraint",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD UNIQUE constraint builds its index under ACCESS EXCLUSIVE"#,
    docs: r#"ALTER TABLE ... ADD CONSTRAINT ... UNIQUE builds the unique index while holding ACCESS EXCLUSIVE: reads and writes wait for the build, and it fails if existing rows have duplicates. Build the index first with CREATE UNIQUE INDEX CONCURRENTLY, then attach it with ADD CONSTRAINT ... UNIQUE USING INDEX (instant)."#,
    bad: r#"ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE (email);"#,
    good: r#"CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email);
ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE USING INDEX accounts_email_key;"#,
    remedy: Remedy::Online,
    hazards: &[11, 15],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let Some((t, a)) = alter_table(s.node) else {
            return;
        };
        for (sub, cmd) in cmds(a) {
            let found = match sub {
                A::AtAddConstraint => cmd_constraint(cmd).is_some_and(|c| {
                    c.contype() == ConstrType::ConstrUnique && c.indexname.is_empty()
                }),
                A::AtAddColumn => cmd_column_def(cmd).is_some_and(|c| {
                    column_constraints(c).any(|c| c.contype() == ConstrType::ConstrUnique)
                }),
                _ => false,
            };
            if found {
                out.push(RuleHit::new(
                    format!("adding a UNIQUE constraint builds its index on {} under ACCESS EXCLUSIVE, blocking reads and writes for the build{}; it also fails if duplicates exist", t.display_plain(), s.size_note(&t)),
                    "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            }
        }
    }
}
