//! T011 adding-primary-key: ADD PRIMARY KEY builds its index under ACCESS EXCLUSIVE

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T011",
    name: "adding-primary-key",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD PRIMARY KEY builds its index under ACCESS EXCLUSIVE"#,
    docs: r#"ALTER TABLE ... ADD PRIMARY KEY builds a unique index while holding ACCESS EXCLUSIVE, blocking reads and writes for the build. Build a unique index CONCURRENTLY first and attach it with ADD CONSTRAINT ... PRIMARY KEY USING INDEX."#,
    bad: r#"ALTER TABLE accounts ADD PRIMARY KEY (id);"#,
    good: r#"CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey ON accounts (id);
ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX accounts_pkey;"#,
    remedy: Remedy::Online,
    hazards: &[12],
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
                    c.contype() == ConstrType::ConstrPrimary && c.indexname.is_empty()
                }),
                A::AtAddColumn => cmd_column_def(cmd).is_some_and(|c| {
                    column_constraints(c).any(|c| c.contype() == ConstrType::ConstrPrimary)
                }),
                _ => false,
            };
            if found {
                out.push(RuleHit::new(
                    format!("adding a PRIMARY KEY builds its index on {} under ACCESS EXCLUSIVE, blocking reads and writes for the build{}", t.display_plain(), s.size_note(&t)),
                    "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE ... ADD CONSTRAINT ... PRIMARY KEY USING INDEX",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            }
        }
    }
}
