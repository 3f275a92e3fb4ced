//! T013 ban-exclusion-constraint: exclusion constraint on an existing table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T013",
    name: "ban-exclusion-constraint",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"exclusion constraint on an existing table"#,
    docs: r#"ADD CONSTRAINT ... EXCLUDE builds its index and checks every row while holding ACCESS EXCLUSIVE. There is no NOT VALID or USING INDEX path for exclusion constraints, so there is no online way: plan a maintenance window, or enforce the rule differently."#,
    bad: r#"ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);"#,
    good: r#"CREATE TABLE bookings (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&));"#,
    remedy: Remedy::None,
    hazards: &[14],
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
            if sub == A::AtAddConstraint
                && cmd_constraint(cmd).is_some_and(|c| c.contype() == ConstrType::ConstrExclusion)
            {
                out.push(RuleHit::new(
                    format!("adding an exclusion constraint to {} builds its index and checks every row under ACCESS EXCLUSIVE, blocking reads and writes{}; there is no online form", t.display_plain(), s.size_note(&t)),
                    "run it in a maintenance window, or enforce the rule in a new table that is swapped in",
                ).lock(LockMode::AccessExclusive, &t).table(&t));
            }
        }
    }
}
