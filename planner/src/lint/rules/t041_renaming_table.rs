//! T041 renaming-table: RENAME TABLE breaks code that uses the old name

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T041",
    name: "renaming-table",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"RENAME TABLE breaks code that uses the old name"#,
    docs: r#"Running code keeps using the old name and fails as soon as the rename commits. Create the new table and dual-write, or rename and create a view with the old name in the same transaction (then this rule is silent: a simple view over one table is updatable, so readers and writers keep working). An error by default, as squawk and strong_migrations treat it; `-- tandem: ignore T041` with a reason suppresses it where the breakage is intended."#,
    bad: r#"ALTER TABLE accounts RENAME TO customers;"#,
    good: r#"BEGIN;
ALTER TABLE accounts RENAME TO customers;
CREATE VIEW accounts AS SELECT * FROM customers;
COMMIT;"#,
    remedy: Remedy::None,
    hazards: &[33],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        // Checked at the end of the file (see finish): a compatibility view may follow.
    }

    fn finish(&self, st: &FileState, _opts: &LintOptions<'_>, out: &mut Vec<(usize, RuleHit)>) {
        for (statement, old, new, tx) in &st.table_renames {
            // Created earlier in the file: nobody uses it yet. A view under the old name in
            // the same transaction: readers never see the name missing.
            if st.is_new(old) || st.view_created_in(old, *tx) {
                continue;
            }
            out.push((
                *statement,
                RuleHit::new(
                    format!("renaming {} to {new} breaks every running query that uses the old name", old.display_plain()),
                    "keep the old name working: create a view with the old name in the same transaction, or migrate to a new table with dual writes",
                )
                .table(old),
            ));
        }
    }
}
