//! T034 dropping-constraint: dropping a constraint removes an integrity guarantee

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T034",
    name: "dropping-constraint",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"dropping a constraint removes an integrity guarantee"#,
    docs: r#"DROP CONSTRAINT removes a primary key, unique, foreign key or CHECK guarantee at once: applications may start writing rows that break it, and code relying on the guarantee (ON CONFLICT, joins assumed unique) changes behaviour. Confirm that it is intended; replace it before dropping when it is being redefined."#,
    bad: r#"ALTER TABLE orders DROP CONSTRAINT orders_account_fk;"#,
    good: r#"ALTER TABLE orders ADD CONSTRAINT orders_account_fk2 FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;"#,
    remedy: Remedy::None,
    hazards: &[17],
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
            if sub != A::AtDropConstraint
                || st.is_new(&t)
                || st.is_redundant_not_null_check(&t, &cmd.name)
            {
                continue;
            }
            let kind = s
                .live_table(&t)
                .and_then(|lt| lt.constraints.get(&cmd.name))
                .map(|c| match c.kind {
                    crate::model::ConstraintKind::PrimaryKey { .. } => "primary key ",
                    crate::model::ConstraintKind::Unique { .. } => "unique constraint ",
                    crate::model::ConstraintKind::ForeignKey(_) => "foreign key ",
                    crate::model::ConstraintKind::Check => "check constraint ",
                    crate::model::ConstraintKind::Exclusion => "exclusion constraint ",
                })
                .unwrap_or("constraint ");
            out.push(RuleHit::new(
                format!("dropping {kind}{} on {} removes its guarantee: rows that break it can be written from now on", cmd.name, t.display_plain()),
                "confirm the guarantee is no longer needed; if it is being redefined, add the new constraint (NOT VALID + VALIDATE) before dropping the old one",
            ).table(&t));
        }
    }
}
