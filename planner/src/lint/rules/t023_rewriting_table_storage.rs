//! T023 rewriting-table-storage: SET LOGGED/UNLOGGED, SET ACCESS METHOD, SET TABLESPACE rewrite the table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T023",
    name: "rewriting-table-storage",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"SET LOGGED/UNLOGGED, SET ACCESS METHOD, SET TABLESPACE rewrite the table"#,
    docs: r#"These forms of ALTER TABLE copy the whole table (and, for SET TABLESPACE, move its files) while holding ACCESS EXCLUSIVE: reads and writes wait for the copy. Avoid them on live tables; build a new table and swap it in (a tandem shadow migration)."#,
    bad: r#"ALTER TABLE events SET LOGGED;"#,
    good: r#"CREATE TABLE events_new (LIKE events INCLUDING ALL);"#,
    remedy: Remedy::Shadow,
    hazards: &[38],
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
        for (sub, _) in cmds(a) {
            let what = match sub {
                A::AtSetLogged => "SET LOGGED",
                A::AtSetUnLogged => "SET UNLOGGED",
                A::AtSetAccessMethod => "SET ACCESS METHOD",
                A::AtSetTableSpace => "SET TABLESPACE",
                _ => continue,
            };
            out.push(RuleHit::new(
                format!("ALTER TABLE {} {what} rewrites the whole table under ACCESS EXCLUSIVE, blocking reads and writes for the copy{}", t.display_plain(), s.size_note(&t)),
                "avoid this on a live table: build a new table and swap it in (tandem shadow migration)",
            ).lock(LockMode::AccessExclusive, &t).table(&t));
        }
    }
}
