//! T040 ban-drop-table: DROP TABLE loses data

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T040",
    name: "ban-drop-table",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"DROP TABLE loses data"#,
    docs: r#"DROP TABLE deletes the table and its data, and code that still uses it fails. Remove every use first; consider renaming it away and dropping later, after checking it is unused."#,
    bad: r#"DROP TABLE legacy_events;"#,
    good: r#"CREATE TABLE scratch (id int);
DROP TABLE scratch;"#,
    remedy: Remedy::None,
    hazards: &[32],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::DropStmt(d) = s.node else {
            return;
        };
        if d.remove_type() != ObjectType::ObjectTable {
            return;
        }
        for t in drop_objects(&d.objects) {
            if st.is_new(&t) {
                continue;
            }
            out.push(RuleHit::new(
                format!("DROP TABLE {} deletes the table and all its rows{}; code that still uses it fails", t.display_plain(), s.size_note(&t)),
                "remove every use first, and check it is unused (or rename it away and drop it later)",
            ).table(&t));
        }
    }
}
