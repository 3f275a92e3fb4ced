//! T052 changing-view-columns: CREATE OR REPLACE VIEW or DROP VIEW on an existing view

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T052",
    name: "changing-view-columns",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"CREATE OR REPLACE VIEW or DROP VIEW on an existing view"#,
    docs: r#"Replacing a view can only add columns at the end (renaming, removing or retyping fails), and any change of its output is visible to every query on it; DROP VIEW breaks every reader (and fails while other views depend on it). Version the view (new name), move readers, then drop the old one."#,
    bad: r#"CREATE OR REPLACE VIEW active_accounts AS SELECT id, email FROM accounts WHERE active;"#,
    good: r#"CREATE VIEW active_accounts_v2 AS SELECT id, email FROM accounts WHERE active;"#,
    remedy: Remedy::None,
    hazards: &[],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::ViewStmt(v) if v.replace => {
                let Some(rv) = &v.view else { return };
                let q = qual(rv);
                if st.is_new(&q) {
                    return;
                }
                let known = s.opts.live.map(|l| l.views.contains_key(&q));
                if known == Some(false) {
                    return;
                }
                out.push(RuleHit::new(
                    format!("CREATE OR REPLACE VIEW {} changes what every reader of the view gets; only new columns at the end are allowed, anything else fails", q.display_plain()),
                    "create a new view version and move readers over, or make sure the output columns are unchanged",
                ));
            }
            NodeEnum::DropStmt(d)
                if matches!(
                    d.remove_type(),
                    ObjectType::ObjectView | ObjectType::ObjectMatview
                ) =>
            {
                for q in drop_objects(&d.objects) {
                    if st.is_new(&q) {
                        continue;
                    }
                    out.push(RuleHit::new(
                        format!(
                            "DROP VIEW {} breaks every query that reads it",
                            q.display_plain()
                        ),
                        "move readers off the view first",
                    ));
                }
            }
            _ => {}
        }
    }
}
