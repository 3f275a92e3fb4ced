//! T057 prefer-identity: serial columns

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T057",
    name: "prefer-identity",
    severity: Severity::Info,
    class: Class::Hygiene,
    summary: r#"serial columns"#,
    docs: r#"serial/bigserial create a sequence with loose ownership and permissions, and allow writing ids by hand that later collide with the sequence. Use GENERATED ALWAYS AS IDENTITY (or BY DEFAULT)."#,
    bad: r#"CREATE TABLE events (id bigserial PRIMARY KEY);"#,
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
        for (t, col) in declared_columns(s.node) {
            if let Some(ty) = col_type(col) {
                if ty.base.ends_with("serial") {
                    out.push(RuleHit::new(
                        format!("{} is {}", tc(&t, &col.colname), ty.base),
                        "use bigint GENERATED ALWAYS AS IDENTITY",
                    ));
                }
            }
        }
    }
}
