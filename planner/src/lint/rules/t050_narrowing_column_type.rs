//! T050 narrowing-column-type: narrowing a column type fails on, or alters, existing data

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T050",
    name: "narrowing-column-type",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"narrowing a column type fails on, or alters, existing data"#,
    docs: r#"Changing a column to a narrower type (shorter varchar, smaller integer, lower numeric precision, timestamptz to timestamp, text to a non-text type) fails when a row does not fit, or silently rounds or drops information, and clients that write wider values start failing. Check the data first and coordinate with the writers."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN code TYPE varchar(5); -- code was varchar(20)"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN code TYPE varchar(50); -- code was varchar(20)"#,
    remedy: Remedy::Shadow,
    hazards: &[24],
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
            if sub != A::AtAlterColumnType {
                continue;
            }
            let Some(ch) = type_change(&t, cmd, st, s.opts) else {
                continue;
            };
            let Some(old) = &ch.old else { continue };
            if let Some(why) = crate::lint::types::narrows(old, &ch.new) {
                out.push(RuleHit::new(
                    format!("{} narrows from {} to {}: {why}, and writers of wider values start failing", tc(&t, &ch.column), old.display(), ch.new.display()),
                    "check the data fits (SELECT ... WHERE the value would not fit) and coordinate with every writer first",
                ).table(&t));
            }
        }
    }
}
