//! T019 changing-column-type: column type change that rewrites the table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T019",
    name: "changing-column-type",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"column type change that rewrites the table"#,
    docs: r#"ALTER COLUMN ... TYPE rewrites the table and rebuilds its indexes under ACCESS EXCLUSIVE unless the change is binary-coercible: varchar(n) to varchar(m >= n), varchar to text, text to unconstrained varchar, numeric(p,s) to numeric(p2 >= p,s). Everything else (int to bigint, text to int, narrowing, timestamp to timestamptz, a USING expression other than the column itself or its cast, a new collation) rewrites. With a database, tandem knows the current type; without one it says when it is guessing."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN id TYPE bigint;"#,
    good: r#"ALTER TABLE accounts ALTER COLUMN name TYPE text;"#,
    remedy: Remedy::Shadow,
    hazards: &[24],
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
            if sub != A::AtAlterColumnType {
                continue;
            }
            let Some(ch) = type_change(&t, cmd, st, s.opts) else {
                continue;
            };
            let from = ch
                .old
                .as_ref()
                .map(|o| format!(" from {}", o.display()))
                .unwrap_or_default();
            let why = if ch.using {
                " (the USING expression computes new values)"
            } else if ch.collate {
                " (a collation change rewrites)"
            } else {
                ""
            };
            let help = format!("run it as a tandem shadow migration (tandem plan/apply does this), or add a new {} column, backfill it in batches, and swap", ch.new.display());
            match ch.rewrites {
                Some(true) => {
                    let guess = if ch.old.is_none() && !ch.using && !ch.collate { "; the current type is not known here (no database), and only binary-coercible changes such as varchar widening avoid the rewrite" } else { "" };
                    out.push(RuleHit::new(
                        format!("ALTER TABLE {} ALTER COLUMN {} TYPE {}{from} rewrites {} and its indexes under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite{}{why}{guess}", t.display_plain(), ch.column, ch.new.display(), t.display_plain(), s.size_note(&t)),
                        help,
                    ).lock(LockMode::AccessExclusive, &t).table(&t));
                }
                None => out.push(RuleHit::new(
                    format!("ALTER TABLE {} ALTER COLUMN {} TYPE {}: the current type is not known here (no database); if it is not a binary-coercible change (e.g. varchar widening, varchar to text), {} is rewritten under ACCESS EXCLUSIVE", t.display_plain(), ch.column, ch.new.display(), t.display_plain()),
                    format!("lint with a database connection to know; if it rewrites, {help}"),
                ).lock(LockMode::AccessExclusive, &t).table(&t).severity(Severity::Warning)),
                Some(false) => {}
            }
        }
    }
}
