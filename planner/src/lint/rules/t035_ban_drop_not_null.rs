//! T035 ban-drop-not-null: DROP NOT NULL lets NULLs reach clients that do not expect them

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T035",
    name: "ban-drop-not-null",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"DROP NOT NULL lets NULLs reach clients that do not expect them"#,
    docs: r#"After DROP NOT NULL, rows with NULL in the column can be written, and applications that assume a value (non-optional fields, NOT NULL in generated types) crash or misbehave. Coordinate with every consumer first."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN email DROP NOT NULL;"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN email SET DEFAULT '';"#,
    remedy: Remedy::None,
    hazards: &[18],
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
            if sub == A::AtDropNotNull && !st.is_new(&t) {
                out.push(RuleHit::new(
                    format!("DROP NOT NULL on {}: clients that assume a value will start receiving NULLs", tc(&t, &cmd.name)),
                    "make sure every reader handles NULL before deploying this",
                ).table(&t));
            }
        }
    }
}
