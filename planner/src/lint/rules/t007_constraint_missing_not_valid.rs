//! T007 constraint-missing-not-valid: ADD CHECK constraint without NOT VALID

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T007",
    name: "constraint-missing-not-valid",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD CHECK constraint without NOT VALID"#,
    docs: r#"ALTER TABLE ... ADD CONSTRAINT ... CHECK scans the whole table to validate existing rows while holding ACCESS EXCLUSIVE: reads and writes wait for the scan. Add it NOT VALID (instant; new rows are checked), then VALIDATE CONSTRAINT in a separate transaction, which takes only SHARE UPDATE EXCLUSIVE."#,
    bad: r#"ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0);"#,
    good: r#"ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT balance_positive;"#,
    remedy: Remedy::Online,
    hazards: &[8],
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
            if sub != A::AtAddConstraint {
                continue;
            }
            let Some(c) = cmd_constraint(cmd) else {
                continue;
            };
            if c.contype() != ConstrType::ConstrCheck || c.skip_validation {
                continue;
            }
            let name = if c.conname.is_empty() {
                "a CHECK constraint".to_string()
            } else {
                format!("CHECK constraint {}", c.conname)
            };
            out.push(RuleHit::new(
                format!("adding {name} scans all of {} under ACCESS EXCLUSIVE, blocking reads and writes for the scan{}", t.display_plain(), s.size_note(&t)),
                "add it with NOT VALID, then run ALTER TABLE ... VALIDATE CONSTRAINT in a separate transaction (SHARE UPDATE EXCLUSIVE only)",
            ).lock(LockMode::AccessExclusive, &t).table(&t));
        }
    }
}
