//! T008 adding-foreign-key-constraint: ADD FOREIGN KEY without NOT VALID

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T008",
    name: "adding-foreign-key-constraint",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD FOREIGN KEY without NOT VALID"#,
    docs: r#"Adding a foreign key takes SHARE ROW EXCLUSIVE on both the table and the referenced table and scans the table to validate every row: writes to both tables wait. Add it NOT VALID, then VALIDATE CONSTRAINT in a later transaction (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one)."#,
    bad: r#"ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id);"#,
    good: r#"ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
COMMIT;
ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk;"#,
    remedy: Remedy::Online,
    hazards: &[9],
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
            let fks: Vec<&pg_query::protobuf::Constraint> = match sub {
                A::AtAddConstraint => cmd_constraint(cmd).into_iter().collect(),
                A::AtAddColumn => cmd_column_def(cmd)
                    .map(|c| column_constraints(c).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            for c in fks {
                if c.contype() != ConstrType::ConstrForeign || c.skip_validation {
                    continue;
                }
                let parent = c
                    .pktable
                    .as_ref()
                    .map(qual)
                    .map(|p| p.display_plain())
                    .unwrap_or_default();
                out.push(RuleHit::new(
                    format!("adding a foreign key on {} validates every row while holding SHARE ROW EXCLUSIVE on {} and {parent}, blocking writes to both{}", t.display_plain(), t.display_plain(), s.size_note(&t)),
                    "add it with NOT VALID, then VALIDATE CONSTRAINT in a separate transaction",
                ).lock(LockMode::ShareRowExclusive, &t).table(&t));
            }
        }
    }
}
