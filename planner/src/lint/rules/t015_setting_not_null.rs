//! T015 setting-not-null: SET NOT NULL scans the table under ACCESS EXCLUSIVE

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T015",
    name: "setting-not-null",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"SET NOT NULL scans the table under ACCESS EXCLUSIVE"#,
    docs: r#"ALTER COLUMN ... SET NOT NULL scans the whole table while holding ACCESS EXCLUSIVE, blocking reads and writes, and fails if a NULL exists. On PostgreSQL 12+ the scan is skipped when a validated CHECK (col IS NOT NULL) exists: add it NOT VALID, VALIDATE it (SHARE UPDATE EXCLUSIVE), then SET NOT NULL, then drop the check. tandem recognises that pattern across statements and the live schema."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;"#,
    good: r#"ALTER TABLE accounts ADD CONSTRAINT email_not_null CHECK (email IS NOT NULL) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT email_not_null;
ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;
ALTER TABLE accounts DROP CONSTRAINT email_not_null;"#,
    remedy: Remedy::Online,
    hazards: &[19],
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
            if sub != A::AtSetNotNull
                || crate::lint::analyze::not_null_proven(&t, &cmd.name, st, s.opts)
            {
                continue;
            }
            let help = if s.pg() >= 12 {
                format!("first ADD CONSTRAINT ... CHECK ({} IS NOT NULL) NOT VALID and VALIDATE it in a separate transaction; SET NOT NULL then skips the scan", cmd.name)
            } else {
                format!("PostgreSQL {} always scans: use a validated CHECK ({} IS NOT NULL) NOT VALID constraint instead of SET NOT NULL", s.pg(), cmd.name)
            };
            out.push(RuleHit::new(
                format!("SET NOT NULL on {} scans all of {} under ACCESS EXCLUSIVE, blocking reads and writes for the scan{}; it fails if any row is NULL", tc(&t, &cmd.name), t.display_plain(), s.size_note(&t)),
                help,
            ).lock(LockMode::AccessExclusive, &t).table(&t));
        }
    }
}
