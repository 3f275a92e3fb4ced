//! T017 adding-stored-generated-column: ADD COLUMN ... GENERATED ALWAYS AS ... STORED rewrites the table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T017",
    name: "adding-stored-generated-column",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD COLUMN ... GENERATED ALWAYS AS ... STORED rewrites the table"#,
    docs: r#"A stored generated column is computed and written for every existing row: PostgreSQL rewrites the table under ACCESS EXCLUSIVE. Add a plain column, fill it with a trigger for new rows and a batched backfill for old ones, or run a tandem shadow migration."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN email_lower text GENERATED ALWAYS AS (lower(email)) STORED;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN email_lower text;"#,
    remedy: Remedy::Shadow,
    hazards: &[22],
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
            if sub != A::AtAddColumn {
                continue;
            }
            let Some(col) = cmd_column_def(cmd) else {
                continue;
            };
            if column_constraints(col).any(|c| c.contype() == ConstrType::ConstrGenerated) {
                out.push(RuleHit::new(
                    format!("ADD COLUMN {} as a stored generated column rewrites {} under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite{}", tc(&t, &col.colname), t.display_plain(), s.size_note(&t)),
                    "add a plain column, fill new rows with a trigger and old rows with a batched backfill, or run it as a tandem shadow migration",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            }
        }
    }
}
