//! T009 validate-in-same-transaction: VALIDATE CONSTRAINT in the same transaction that added it NOT VALID

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T009",
    name: "validate-in-same-transaction",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"VALIDATE CONSTRAINT in the same transaction that added it NOT VALID"#,
    docs: r#"NOT VALID exists so that the strong lock of ADD CONSTRAINT is held only for an instant. Validating in the same transaction keeps that ACCESS EXCLUSIVE (or SHARE ROW EXCLUSIVE) lock through the validation scan, which is exactly what NOT VALID was meant to avoid. COMMIT between the two."#,
    bad: r#"BEGIN;
ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT balance_positive;
COMMIT;"#,
    good: r#"ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0) NOT VALID;
ALTER TABLE accounts VALIDATE CONSTRAINT balance_positive;"#,
    remedy: Remedy::Online,
    hazards: &[10],
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
        if !s.in_transaction {
            return;
        }
        for (sub, cmd) in cmds(a) {
            if sub != A::AtValidateConstraint {
                continue;
            }
            if st.not_valid_tx(&t, &cmd.name) == Some(st.tx_id()) {
                out.push(RuleHit::new(
                    format!("constraint {} is validated in the same transaction that added it NOT VALID, so the lock taken on {} by ADD CONSTRAINT is held through the whole validation scan", cmd.name, t.display_plain()),
                    "COMMIT after adding the constraint NOT VALID and validate it in a separate transaction",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            }
        }
    }
}
