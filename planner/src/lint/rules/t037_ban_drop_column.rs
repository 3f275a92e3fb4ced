//! T037 ban-drop-column: DROP COLUMN loses data and breaks old code

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T037",
    name: "ban-drop-column",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"DROP COLUMN loses data and breaks old code"#,
    docs: r#"Dropping a column deletes its data, and any running code that selects, inserts or updates it (including ORMs that cache the column list) fails. Stop using the column in the application, deploy, and only then drop it."#,
    bad: r#"ALTER TABLE accounts DROP COLUMN legacy_code;"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN legacy_code DROP NOT NULL;"#,
    remedy: Remedy::None,
    hazards: &[27],
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
            if sub == A::AtDropColumn {
                out.push(RuleHit::new(
                    format!("DROP COLUMN {} deletes its data, and code that still reads or writes it fails", tc(&t, &cmd.name)),
                    "remove every use of the column from the application, deploy, then drop it",
                ).table(&t));
            }
        }
    }
}
