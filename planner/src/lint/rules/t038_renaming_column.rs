//! T038 renaming-column: RENAME COLUMN breaks code that uses the old name

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T038",
    name: "renaming-column",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"RENAME COLUMN breaks code that uses the old name"#,
    docs: r#"Running application code keeps using the old name and fails as soon as the rename commits. Use expand/contract: add the new column, dual-write, backfill, switch readers, drop the old one; or put a view with the old name in front."#,
    bad: r#"ALTER TABLE accounts RENAME COLUMN email TO email_address;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN email_address text;"#,
    remedy: Remedy::None,
    hazards: &[28],
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
        if r.rename_type() != ObjectType::ObjectColumn {
            return;
        }
        let Some(rv) = &r.relation else { return };
        let t = qual(rv);
        if st.is_new(&t) {
            return;
        }
        out.push(RuleHit::new(
            format!("renaming {} to {} breaks every running query that uses the old name", tc(&t, &r.subname), r.newname),
            "expand/contract: add the new column, dual-write and backfill, move readers, then drop the old one",
        ).table(&t));
    }
}
