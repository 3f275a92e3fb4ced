//! T039 prefer-jsonb: json columns

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T039",
    name: "prefer-jsonb",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"json columns"#,
    docs: r#"The json type has no equality operator: SELECT DISTINCT, UNION, GROUP BY and comparisons on the column fail ('could not identify an equality operator for type json'). Use jsonb."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN settings json;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN settings jsonb;"#,
    remedy: Remedy::None,
    hazards: &[29],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        for (t, col) in declared_columns(s.node) {
            if col_type(col).is_some_and(|ty| ty.base == "json") {
                out.push(RuleHit::new(
                    format!("{} is json, which has no equality operator: DISTINCT, UNION and GROUP BY on it fail", tc(&t, &col.colname)),
                    "use jsonb",
                ));
            }
        }
    }
}
