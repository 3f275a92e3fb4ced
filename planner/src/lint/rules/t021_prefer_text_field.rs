//! T021 prefer-text-field: varchar(n) columns

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T021",
    name: "prefer-text-field",
    severity: Severity::Info,
    class: Class::Hygiene,
    summary: r#"varchar(n) columns"#,
    docs: r#"A length limit in the type means every later change of the limit is an ALTER COLUMN TYPE under ACCESS EXCLUSIVE (narrowing even rewrites). text with a CHECK (length(col) <= n) constraint gives the same guarantee and can be changed online (NOT VALID + VALIDATE)."#,
    bad: r#"CREATE TABLE accounts (id bigint PRIMARY KEY, email varchar(255));"#,
    good: r#"CREATE TABLE accounts (id bigint PRIMARY KEY, email text CHECK (length(email) <= 255));"#,
    remedy: Remedy::None,
    hazards: &[26],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        for (t, col) in declared_columns(s.node) {
            if let Some(ty) = col_type(col) {
                if ty.base == "varchar" && !ty.mods.is_empty() {
                    out.push(RuleHit::new(
                        format!("{} is {}: changing the limit later needs ALTER COLUMN TYPE under ACCESS EXCLUSIVE", tc(&t, &col.colname), ty.display()),
                        "use text with CHECK (length(col) <= n), which can be changed online",
                    ));
                }
            }
        }
    }
}
