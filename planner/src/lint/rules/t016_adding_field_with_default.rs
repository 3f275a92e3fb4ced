//! T016 adding-field-with-default: ADD COLUMN with a volatile default rewrites the table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T016",
    name: "adding-field-with-default",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD COLUMN with a volatile default rewrites the table"#,
    docs: r#"Since PostgreSQL 11, ADD COLUMN with a constant or stable default (now(), CURRENT_TIMESTAMP, '{}'::int[], casts of constants) is instant. A volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval(), ...) and, before PostgreSQL 11, any default, make PostgreSQL rewrite the whole table under ACCESS EXCLUSIVE. Add the column without the default, SET DEFAULT for new rows, and backfill existing rows in batches. A function tandem does not know is reported as a warning: it rewrites if it is volatile."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();"#,
    good: r#"ALTER TABLE accounts ADD COLUMN created_at timestamptz DEFAULT now();"#,
    remedy: Remedy::Shadow,
    hazards: &[21],
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
            let has_default =
                column_constraints(col).any(|c| c.contype() == ConstrType::ConstrDefault);
            if !has_default {
                continue;
            }
            match add_column_rewrite(col, s.pg()) {
                AddColumnRewrite::Yes(why) if !why.contains("sequence") && !why.contains("generated") => out.push(RuleHit::new(
                    format!("ADD COLUMN {} rewrites {} and its indexes under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite{}: {why}", tc(&t, &col.colname), t.display_plain(), s.size_note(&t)),
                    "add the column without a default, then SET DEFAULT for new rows, and backfill existing rows in batches (or run it as a tandem shadow migration)",
                ).lock(LockMode::AccessExclusive, &t).table(&t)),
                AddColumnRewrite::Maybe(f) => out.push(RuleHit::new(
                    format!("ADD COLUMN {} has a default calling {f}, which tandem does not know: if it is volatile, {} is rewritten under ACCESS EXCLUSIVE{}", tc(&t, &col.colname), t.display_plain(), s.size_note(&t)),
                    "check the function's volatility (SELECT provolatile FROM pg_proc); if it is volatile, add the column without a default and backfill in batches",
                ).lock(LockMode::AccessExclusive, &t).table(&t).severity(Severity::Warning)),
                _ => {}
            }
        }
    }
}
