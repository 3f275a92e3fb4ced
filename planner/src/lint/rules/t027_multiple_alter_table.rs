//! T027 multiple-alter-table: several ALTER TABLEs on one table in one transaction

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T027",
    name: "multiple-alter-table",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"several ALTER TABLEs on one table in one transaction"#,
    docs: r#"Each ALTER TABLE acquires ACCESS EXCLUSIVE again and may scan or rewrite the table again. In one transaction the lock is held across all of them. Combine the actions into one ALTER TABLE with comma-separated actions (one lock, at most one rewrite), or split them into separate transactions when they are meant to be separate steps."#,
    bad: r#"BEGIN;
ALTER TABLE accounts ADD COLUMN a text;
ALTER TABLE accounts ADD COLUMN b text;
COMMIT;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN a text, ADD COLUMN b text;"#,
    remedy: Remedy::None,
    hazards: &[42],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let Some((t, _)) = alter_table(s.node) else {
            return;
        };
        if !s.in_transaction
            || st.is_new(&t)
            || s.facts.lock_on(&t) != Some(LockMode::AccessExclusive)
        {
            return;
        }
        let n = st.alters_in_tx(&t);
        if n >= 1 {
            out.push(RuleHit::new(
                format!("this is ALTER TABLE number {} on {} in the same transaction: each one takes ACCESS EXCLUSIVE again and may scan or rewrite the table again", n + 1, t.display_plain()),
                "combine the actions into one ALTER TABLE (comma-separated), or commit between them",
            ).table(&t));
        }
    }
}
