//! T054 type-change-of-column-used-by-view: type change of a column that views read

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T054",
    name: "type-change-of-column-used-by-view",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"type change of a column that views read"#,
    docs: r#"PostgreSQL refuses ALTER COLUMN ... TYPE on a column a view or rule uses ('cannot alter type of a column used by a view or rule'). The views must be dropped and recreated around the change, which breaks their readers for that moment. tandem's shadow migration recreates dependent views at cutover. Known from the live schema and views created earlier in the file."#,
    bad: r#"CREATE VIEW v AS SELECT id FROM accounts;
ALTER TABLE accounts ALTER COLUMN id TYPE bigint;"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN id TYPE bigint;"#,
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
        if !cmds(a).any(|(sub, _)| sub == A::AtAlterColumnType) {
            return;
        }
        let mut views: Vec<String> = s
            .opts
            .live
            .map(|l| {
                l.dependent_views(&t)
                    .iter()
                    .map(|v| v.display_plain())
                    .collect()
            })
            .unwrap_or_default();
        for v in st.views_reading(&t) {
            if !views.contains(&v.display_plain()) {
                views.push(v.display_plain());
            }
        }
        if views.is_empty() {
            return;
        }
        out.push(RuleHit::new(
            format!("view(s) {} read {}: if they use the retyped column, PostgreSQL refuses the change ('cannot alter type of a column used by a view or rule'), so they must be dropped and recreated, breaking their readers meanwhile", views.join(", "), t.display_plain()),
            "run it as a tandem shadow migration (views are recreated at cutover), or drop and recreate the views in the same transaction",
        ).table(&t));
    }
}
