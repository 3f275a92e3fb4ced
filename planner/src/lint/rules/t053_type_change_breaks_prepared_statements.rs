//! T053 type-change-breaks-prepared-statements: a column type change breaks prepared statements

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T053",
    name: "type-change-breaks-prepared-statements",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"a column type change breaks prepared statements"#,
    docs: r#"After ALTER COLUMN ... TYPE, prepared statements (and pooled server-side statements, ORMs that prepare SELECT *) that return the column fail with 'cached plan must not change result type' (SQLSTATE 0A000) until they are re-prepared. Even binary-coercible changes do this. Through `tandem proxy`, a request that asks for its own row description (libpq's PQexecPrepared, pgbench -M prepared) outside a transaction is re-prepared and replayed without the client seeing the error; drivers that decode with a row description they cached (pgjdbc, asyncpg) still get it. Make clients retry on 0A000 or reconnect, or migrate through a new column."#,
    bad: r#"ALTER TABLE accounts ALTER COLUMN name TYPE text;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN name_text text;"#,
    remedy: Remedy::None,
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
        if st.is_new(&t) {
            return;
        }
        for (sub, cmd) in cmds(a) {
            if sub != A::AtAlterColumnType {
                continue;
            }
            if let Some(ch) = type_change(&t, cmd, st, s.opts) {
                if ch.old.as_ref() == Some(&ch.new) && !ch.using {
                    continue;
                }
            }
            out.push(RuleHit::new(
                format!("changing the type of {}: prepared statements that return it fail with 'cached plan must not change result type' (SQLSTATE 0A000) until re-prepared", tc(&t, &cmd.name)),
                "route clients through `tandem proxy` (it re-prepares and replays libpq-style prepared requests), make clients re-prepare or retry on SQLSTATE 0A000 (or reconnect pools after the change), or migrate through a new column",
            ).table(&t));
        }
    }
}
