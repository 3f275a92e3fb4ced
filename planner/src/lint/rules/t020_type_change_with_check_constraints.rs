//! T020 type-change-with-check-constraints: type change of a column that CHECK constraints use

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T020",
    name: "type-change-with-check-constraints",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"type change of a column that CHECK constraints use"#,
    docs: r#"When a column's type changes, every CHECK constraint that uses the column is re-checked against every row while ACCESS EXCLUSIVE is held, even when the type change itself needs no rewrite. Drop the checks, change the type, and re-add them NOT VALID + VALIDATE. Known from the live schema."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(20,2); -- balance has CHECK (balance >= 0)"#,
    good: r#"ALTER TABLE accounts DROP CONSTRAINT balance_positive;
ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(20,2);
ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0) NOT VALID;"#,
    remedy: Remedy::None,
    hazards: &[25],
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
        let Some(live) = s.live_table(&t) else { return };
        for (sub, cmd) in cmds(a) {
            if sub != A::AtAlterColumnType {
                continue;
            }
            let col = cmd.name.to_ascii_lowercase();
            let checks: Vec<&str> = live
                .constraints
                .values()
                .filter(|c| {
                    matches!(c.kind, crate::model::ConstraintKind::Check)
                        && !st
                            .dropped_constraints
                            .contains(&(t.clone(), c.name.clone()))
                        && c.definition
                            .to_ascii_lowercase()
                            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                            .any(|w| w == col)
                })
                .map(|c| c.name.as_str())
                .collect();
            if !checks.is_empty() {
                out.push(RuleHit::new(
                    format!("changing the type of {} re-checks CHECK constraint(s) {} on every row under ACCESS EXCLUSIVE", tc(&t, &cmd.name), checks.join(", ")),
                    "drop the checks, change the type, then re-add them NOT VALID and VALIDATE in a separate transaction",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            }
        }
    }
}
