//! T045 ban-drop-sequence: DROP SEQUENCE loses its counter

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T045",
    name: "ban-drop-sequence",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"DROP SEQUENCE loses its counter"#,
    docs: r#"Dropping a sequence loses its current value; a column default that uses it fails, and re-creating it restarts numbering (duplicate keys). Check nothing uses it."#,
    bad: r#"DROP SEQUENCE invoice_number_seq;"#,
    good: r#"ALTER SEQUENCE invoice_number_seq OWNED BY invoices.number;"#,
    remedy: Remedy::None,
    hazards: &[37],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::DropStmt(d) = s.node else {
            return;
        };
        if d.remove_type() != ObjectType::ObjectSequence {
            return;
        }
        for q in drop_objects(&d.objects) {
            out.push(RuleHit::new(
                format!("DROP SEQUENCE {} loses its counter; defaults using it fail and a re-created sequence restarts numbering", q.display_plain()),
                "check no default or code uses it (pg_depend) before dropping",
            ));
        }
    }
}
