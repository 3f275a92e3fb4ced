//! T060 identifier-too-long: identifier longer than 63 bytes

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T060",
    name: "identifier-too-long",
    severity: Severity::Warning,
    class: Class::Hygiene,
    summary: r#"identifier longer than 63 bytes"#,
    docs: r#"PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1). Two long names that share their first 63 bytes collide, and tools that compare the name you wrote with the catalog see a difference. Choose a shorter name."#,
    bad: r#"CREATE TABLE this_is_a_very_long_table_name_that_goes_on_and_on_past_the_limit_of_postgres (id bigint);"#,
    good: r#"CREATE TABLE short_name (id bigint);"#,
    remedy: Remedy::None,
    hazards: &[54],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let found = crate::lint::analyze::long_identifiers(s.sql);
        for n in found {
            let mut end = crate::ident::MAX_IDENT_BYTES;
            while !n.is_char_boundary(end) {
                end -= 1;
            }
            out.push(RuleHit::new(
                format!(
                    "identifier {n:?} is {} bytes; PostgreSQL truncates it to {:?}",
                    n.len(),
                    &n[..end]
                ),
                "choose a name of at most 63 bytes",
            ));
        }
    }
}
