//! T062 unknown-table: the table does not exist in the live database

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T062",
    name: "unknown-table",
    severity: Severity::Error,
    class: Class::Fails,
    summary: r#"the table does not exist in the live database"#,
    docs: r#"With a database connection, every table a statement changes must exist in the live schema or be created earlier in the file. Otherwise the statement fails (or, with an unqualified name, targets a table in another schema of the search_path). Check the name and the schema."#,
    bad: r#"ALTER TABLE acounts ADD COLUMN note text; -- with a live schema that has public.accounts"#,
    good: r#"ALTER TABLE accounts ADD COLUMN note text;"#,
    remedy: Remedy::None,
    hazards: &[],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let Some(live) = s.opts.live else { return };
        let if_exists = match s.node {
            NodeEnum::DropStmt(d) => d.missing_ok,
            NodeEnum::AlterTableStmt(a) => a.missing_ok,
            NodeEnum::RenameStmt(r) => r.missing_ok,
            NodeEnum::CreateStmt(_) | NodeEnum::CreateTableAsStmt(_) => true,
            NodeEnum::SelectStmt(_) => true,
            _ => false,
        };
        let created_here: Vec<QualName> = match s.node {
            NodeEnum::CreateStmt(c) => c.relation.as_ref().map(qual).into_iter().collect(),
            _ => Vec::new(),
        };
        for t in &s.facts.tables {
            if created_here.contains(t) || (if_exists && !matches!(s.node, NodeEnum::CreateStmt(_)))
            {
                continue;
            }
            if st.is_new(t) || live.tables.contains_key(t) || live.views.contains_key(t) {
                continue;
            }
            out.push(RuleHit::new(
                format!("table {} does not exist in the database (and is not created earlier in this file)", t.display_plain()),
                "check the table name and schema (unqualified names resolve through search_path; tandem assumes public)",
            ));
        }
    }
}
