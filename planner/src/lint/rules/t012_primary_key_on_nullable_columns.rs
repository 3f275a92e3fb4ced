//! T012 primary-key-on-nullable-columns: PRIMARY KEY on nullable columns implies SET NOT NULL

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T012",
    name: "primary-key-on-nullable-columns",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"PRIMARY KEY on nullable columns implies SET NOT NULL"#,
    docs: r#"A primary key makes its columns NOT NULL. If a column is nullable, PostgreSQL scans the whole table under ACCESS EXCLUSIVE to check it, even with USING INDEX. Make the columns NOT NULL first with the safe pattern: CHECK (col IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL (PostgreSQL 12+). Known from columns added in this file or the live schema."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN code text;
ALTER TABLE accounts ADD PRIMARY KEY (code);"#,
    good: r#"ALTER TABLE accounts ADD COLUMN code text NOT NULL DEFAULT '';
ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY (code);"#,
    remedy: Remedy::Online,
    hazards: &[13],
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
            if sub != A::AtAddConstraint {
                continue;
            }
            let Some(c) = cmd_constraint(cmd) else {
                continue;
            };
            if c.contype() != ConstrType::ConstrPrimary {
                continue;
            }
            let mut cols = names(&c.keys);
            if cols.is_empty() && !c.indexname.is_empty() {
                // USING INDEX: the columns come from the index, known only for indexes of this file
                if let Some(live) = s.live_table(&t) {
                    if let Some(i) = live.indexes.get(&c.indexname) {
                        cols = i.keys.clone();
                    }
                }
            }
            let nullable: Vec<String> = cols
                .iter()
                .filter(|col| {
                    if crate::lint::analyze::not_null_proven(&t, col, st, s.opts) {
                        return false;
                    }
                    let live_nullable = s
                        .live_table(&t)
                        .and_then(|lt| lt.column(col))
                        .map(|c| !c.not_null);
                    live_nullable.unwrap_or_else(|| st.column_type(&t, col).is_some())
                })
                .cloned()
                .collect();
            let unknown_using = cols.is_empty()
                && !c.indexname.is_empty()
                && s.live_table(&t).is_none()
                && !st.is_new(&t);
            if !nullable.is_empty() {
                out.push(RuleHit::new(
                    format!("the primary key on {} makes nullable column(s) {} NOT NULL, which scans the whole table under ACCESS EXCLUSIVE", t.display_plain(), nullable.join(", ")),
                    "first add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, and SET NOT NULL; then add the primary key",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            } else if unknown_using {
                out.push(RuleHit::new(
                    format!("the primary key on {} (USING INDEX {}) scans the table under ACCESS EXCLUSIVE if any of the index's columns is nullable (their nullability is not known here)", t.display_plain(), c.indexname),
                    "make sure the columns are already NOT NULL (validated CHECK then SET NOT NULL) before adding the primary key",
                ).lock(LockMode::AccessExclusive, &t).table(&t).severity(Severity::Warning));
            }
        }
    }
}
