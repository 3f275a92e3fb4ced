//! T059 ban-char-field: char(n) columns

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T059",
    name: "ban-char-field",
    severity: Severity::Warning,
    class: Class::Hygiene,
    summary: r#"char(n) columns"#,
    docs: r#"char(n) pads values with spaces, compares with surprising trailing-space rules and wastes space; it is never faster than text. Use text (with a CHECK on length if needed)."#,
    bad: r#"CREATE TABLE countries (code char(2) PRIMARY KEY);"#,
    good: r#"CREATE TABLE countries (code text PRIMARY KEY CHECK (length(code) = 2));"#,
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
                if ty.base == "char" {
                    out.push(RuleHit::new(
                        format!("{} is {}: values are blank-padded and compare with trailing-space rules", tc(&t, &col.colname), ty.display()),
                        "use text, with CHECK (length(col) = n) if the length matters",
                    ));
                }
            }
        }
    }
}
