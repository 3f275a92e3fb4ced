//! T005 foreign-key-without-index: foreign key without an index on the referencing columns

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T005",
    name: "foreign-key-without-index",
    severity: Severity::Warning,
    class: Class::Performance,
    summary: r#"foreign key without an index on the referencing columns"#,
    docs: r#"PostgreSQL does not index the referencing side of a foreign key. Without an index, every DELETE or key UPDATE on the parent scans the child table to check for references, and ON DELETE CASCADE does the same. Create an index (CONCURRENTLY) whose leading columns are the foreign key's columns. Checked against indexes created in the same file and, when a database is given, the live schema."#,
    bad: r#"CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts (id));"#,
    good: r#"CREATE TABLE orders (id bigint PRIMARY KEY, account_id bigint REFERENCES accounts (id));
CREATE INDEX orders_account_id_idx ON orders (account_id);"#,
    remedy: Remedy::None,
    hazards: &[6],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        // Checked at the end of the file (see finish).
    }
    fn finish(&self, st: &FileState, opts: &LintOptions<'_>, out: &mut Vec<(usize, RuleHit)>) {
        for fk in &st.pending_fks {
            let covered = |keys: &[String]| {
                keys.len() >= fk.columns.len() && keys[..fk.columns.len()] == fk.columns[..]
            };
            let in_file = st
                .indexes
                .get(&fk.table)
                .is_some_and(|l| l.iter().any(|k| covered(k)));
            let live = opts
                .live
                .and_then(|s| s.tables.get(&fk.table))
                .is_some_and(|t| {
                    t.indexes.values().any(|i| covered(&i.keys))
                        || t.constraints.values().any(|c| match &c.kind {
                            crate::model::ConstraintKind::PrimaryKey { columns }
                            | crate::model::ConstraintKind::Unique { columns } => covered(columns),
                            _ => false,
                        })
                });
            if !in_file && !live {
                let cols = fk.columns.join(", ");
                out.push((fk.statement, RuleHit::new(
                    format!("the foreign key on {} ({cols}) has no index starting with those columns: every DELETE or key UPDATE on the referenced table scans {}", fk.table.display_plain(), fk.table.display_plain()),
                    format!("add CREATE INDEX CONCURRENTLY ON {} ({cols})", fk.table.display_plain()),
                )));
            }
        }
    }
}
