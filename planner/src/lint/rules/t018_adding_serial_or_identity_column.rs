//! T018 adding-serial-or-identity-column: ADD COLUMN serial / identity rewrites the table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T018",
    name: "adding-serial-or-identity-column",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"ADD COLUMN serial / identity rewrites the table"#,
    docs: r#"A serial, bigserial or identity column added to an existing table gets a sequence value in every row: PostgreSQL rewrites the table under ACCESS EXCLUSIVE. There is no cheap path: run a tandem shadow migration, or add a nullable bigint column, backfill it in batches from a sequence, then attach the default."#,
    bad: r#"ALTER TABLE events ADD COLUMN id bigserial;"#,
    good: r#"CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);"#,
    remedy: Remedy::Shadow,
    hazards: &[23],
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
            if let AddColumnRewrite::Yes(why) = add_column_rewrite(col, s.pg()) {
                if why.contains("sequence") {
                    out.push(RuleHit::new(
                        format!("ADD COLUMN {} rewrites {} under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite{}: {why}", tc(&t, &col.colname), t.display_plain(), s.size_note(&t)),
                        "run it as a tandem shadow migration, or add a nullable bigint column, backfill it in batches from a sequence, then set the default",
                    ).lock(LockMode::AccessExclusive, &t).table(&t));
                }
            }
        }
    }
}
