//! T056 prefer-bigint-over-int: integer keys overflow

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T056",
    name: "prefer-bigint-over-int",
    severity: Severity::Info,
    class: Class::Hygiene,
    summary: r#"integer keys overflow"#,
    docs: r#"integer (and smallint) key columns run out at 2,147,483,647 (32,767); changing them to bigint later is a full table rewrite under ACCESS EXCLUSIVE. Use bigint for primary keys, identity and serial columns from the start."#,
    bad: r#"CREATE TABLE events (id serial PRIMARY KEY);"#,
    good: r#"CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);"#,
    remedy: Remedy::None,
    hazards: &[53],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let mut pk_cols: Vec<String> = Vec::new();
        if let NodeEnum::CreateStmt(c) = s.node {
            for e in &c.table_elts {
                if let Some(NodeEnum::Constraint(con)) = &e.node {
                    if con.contype() == ConstrType::ConstrPrimary {
                        pk_cols.extend(names(&con.keys));
                    }
                }
            }
        }
        for (t, col) in declared_columns(s.node) {
            let Some(ty) = col_type(col) else { continue };
            let small = matches!(
                ty.base.as_str(),
                "integer" | "smallint" | "serial" | "smallserial"
            ) && !ty.array;
            let key = matches!(ty.base.as_str(), "serial" | "smallserial")
                || pk_cols.contains(&col.colname)
                || column_constraints(col).any(|c| {
                    matches!(
                        c.contype(),
                        ConstrType::ConstrPrimary | ConstrType::ConstrIdentity
                    )
                });
            if small && key {
                out.push(RuleHit::new(
                    format!("key column {} is {}: it overflows at {}, and moving to bigint later rewrites the table", tc(&t, &col.colname), ty.base, if ty.base.starts_with("small") { "32,767" } else { "2,147,483,647" }),
                    "use bigint (bigint GENERATED ... AS IDENTITY)",
                ));
            }
        }
    }
}
