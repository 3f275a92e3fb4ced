//! T049 dropping-default: DROP DEFAULT changes what inserts without the column write

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T049",
    name: "dropping-default",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"DROP DEFAULT changes what inserts without the column write"#,
    docs: r#"After DROP DEFAULT, inserts that omit the column write NULL, or fail if the column is NOT NULL. Old application code that relied on the default breaks. Make sure every writer sets the column first."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN status DROP DEFAULT;"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN status SET DEFAULT 'active';"#,
    remedy: Remedy::None,
    hazards: &[],
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
            if sub == A::AtColumnDefault && cmd.def.is_none() {
                out.push(RuleHit::new(
                    format!("DROP DEFAULT on {}: inserts that omit the column now write NULL, or fail if it is NOT NULL", tc(&t, &cmd.name)),
                    "make every writer set the column explicitly before dropping the default",
                ).table(&t));
            }
        }
    }
}
