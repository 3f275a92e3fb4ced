//! T041 renaming-table: RENAME TABLE breaks code that uses the old name

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T041",
    name: "renaming-table",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"RENAME TABLE breaks code that uses the old name"#,
    docs: r#"Running code keeps using the old name and fails as soon as the rename commits. Create the new table and dual-write, or rename and create a view with the old name in the same transaction."#,
    bad: r#"ALTER TABLE accounts RENAME TO customers;"#,
    good: r#"CREATE TABLE customers (id bigint PRIMARY KEY);"#,
    remedy: Remedy::None,
    hazards: &[33],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::RenameStmt(r) = s.node else {
            return;
        };
        if r.rename_type() != ObjectType::ObjectTable {
            return;
        }
        let Some(rv) = &r.relation else { return };
        let t = qual(rv);
        if st.is_new(&t) {
            return;
        }
        out.push(RuleHit::new(
            format!("renaming {} to {} breaks every running query that uses the old name", t.display_plain(), r.newname),
            "keep the old name working: create a view with the old name in the same transaction, or migrate to a new table with dual writes",
        ).table(&t));
    }
}
