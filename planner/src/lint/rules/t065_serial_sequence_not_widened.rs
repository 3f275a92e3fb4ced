//! T065 serial-sequence-not-widened: a serial column widened to bigint keeps an integer sequence

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T065",
    name: "serial-sequence-not-widened",
    severity: Severity::Warning,
    class: Class::Fails,
    summary: r#"a serial column widened to bigint keeps an integer sequence"#,
    docs: r#"A `serial` column draws its default from a sequence created `AS integer`. ALTER COLUMN ... TYPE bigint widens the column but PostgreSQL leaves the sequence alone: it still stops at 2,147,483,647, so the widening that was meant to stop ids from running out does not. (Identity columns are different: PostgreSQL widens their sequence with them.) Add `ALTER SEQUENCE ... AS bigint` in the same migration; tandem's plan adds it when the file does not. Known from the live schema."#,
    bad: r#"ALTER TABLE orders ALTER COLUMN id TYPE bigint; -- id serial in the live schema"#,
    good: r#"ALTER TABLE orders ALTER COLUMN id TYPE bigint;
ALTER SEQUENCE orders_id_seq AS bigint;"#,
    remedy: Remedy::Online,
    hazards: &[],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        // Checked at the end of the file (see finish): the ALTER SEQUENCE may come later.
    }

    fn finish(&self, st: &FileState, _opts: &LintOptions<'_>, out: &mut Vec<(usize, RuleHit)>) {
        for w in st.unwidened_serials() {
            out.push((
                w.statement,
                RuleHit::new(
                    format!(
                        "{}.{} becomes bigint but its sequence {} stays {}: new ids still stop at the {} maximum",
                        w.table.display_plain(),
                        w.column,
                        w.sequence.display_plain(),
                        w.sequence_type,
                        w.sequence_type
                    ),
                    format!("add ALTER SEQUENCE {} AS bigint;", w.sequence),
                )
                .table(&w.table),
            ));
        }
    }
}
