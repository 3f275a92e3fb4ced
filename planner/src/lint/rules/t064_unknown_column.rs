//! T064 unknown-column: the column does not exist in the live table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T064",
    name: "unknown-column",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"the column does not exist in the live table"#,
    docs: r#"With a database connection, every column an ALTER TABLE changes (ALTER COLUMN ..., DROP COLUMN without IF EXISTS) must exist in the live table or be added earlier in the file; otherwise the statement fails when it runs, possibly halfway through a migration. Check the column name."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN emial SET NOT NULL; -- with a live schema where accounts has email"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;"#,
    remedy: Remedy::None,
    hazards: &[],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let Some((t, a)) = alter_table(s.node) else {
            return;
        };
        // Unknown tables are T062's finding; a new table's columns are all known to the file.
        let Some(live) = s.live_table(&t) else { return };
        if st.is_new(&t) {
            return;
        }
        for (sub, cmd) in cmds(a) {
            let names_existing_column = matches!(
                sub,
                A::AtColumnDefault
                    | A::AtDropNotNull
                    | A::AtSetNotNull
                    | A::AtAlterColumnType
                    | A::AtSetStatistics
                    | A::AtSetStorage
                    | A::AtSetCompression
                    | A::AtAddIdentity
                    | A::AtDropIdentity
                    | A::AtSetIdentity
            ) || (sub == A::AtDropColumn && !cmd.missing_ok);
            if !names_existing_column || cmd.name.is_empty() {
                continue;
            }
            if live.column(&cmd.name).is_some() || st.column_type(&t, &cmd.name).is_some() {
                continue;
            }
            out.push(
                RuleHit::new(
                    format!(
                        "column {} does not exist in table {} (nor is it added earlier in this file): the statement fails when it runs",
                        cmd.name,
                        t.display_plain()
                    ),
                    format!(
                        "check the column name; {} has {}",
                        t.display_plain(),
                        live.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
                .table(&t),
            );
        }
    }
}
