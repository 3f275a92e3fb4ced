//! T036 adding-required-field: ADD COLUMN NOT NULL without a default

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T036",
    name: "adding-required-field",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"ADD COLUMN NOT NULL without a default"#,
    docs: r#"Adding a NOT NULL column without a default fails on any table that has rows ('column contains null values'), and once added, old application code that inserts without the column fails. Add it nullable or with a non-volatile default, backfill, then add the constraint with the safe SET NOT NULL pattern."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN tier text NOT NULL;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN tier text NOT NULL DEFAULT 'free';"#,
    remedy: Remedy::None,
    hazards: &[20],
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
        if st.is_new(&t) {
            return;
        }
        for (sub, cmd) in cmds(a) {
            if sub != A::AtAddColumn {
                continue;
            }
            let Some(col) = cmd_column_def(cmd) else {
                continue;
            };
            let not_null = col.is_not_null
                || column_constraints(col).any(|c| {
                    matches!(
                        c.contype(),
                        ConstrType::ConstrNotnull | ConstrType::ConstrPrimary
                    )
                });
            let filled = column_constraints(col).any(|c| {
                matches!(
                    c.contype(),
                    ConstrType::ConstrDefault
                        | ConstrType::ConstrIdentity
                        | ConstrType::ConstrGenerated
                )
            }) || col_type(col).is_some_and(|ty| ty.base.ends_with("serial"));
            if not_null && !filled {
                out.push(RuleHit::new(
                    format!("ADD COLUMN {} NOT NULL without a default fails if {} has any row, and old code inserting without the column breaks", tc(&t, &col.colname), t.display_plain()),
                    "add it with a non-volatile DEFAULT, or nullable; backfill; then add NOT NULL with the CHECK ... NOT VALID / VALIDATE / SET NOT NULL pattern",
                ).table(&t));
            }
        }
    }
}
