//! T029 require-lock-timeout: a traffic-blocking lock without lock_timeout

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T029",
    name: "require-lock-timeout",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"a traffic-blocking lock without lock_timeout"#,
    docs: r#"A statement that needs a strong lock waits behind any running transaction on the table, and every later query queues behind the waiting statement: a one-millisecond ALTER becomes an outage while it waits. Set lock_timeout (about 1-2 s) before it and retry on timeout. tandem apply does this itself for every step. Only statements that lock existing tables are reported."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN note text;"#,
    good: r#"SET lock_timeout = '2s';
ALTER TABLE accounts ADD COLUMN note text;"#,
    remedy: Remedy::Online,
    hazards: &[44],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        if st.lock_timeout_set() {
            return;
        }
        let Some((t, m)) = s
            .facts
            .locks
            .iter()
            .filter(|(t, m)| m.blocks_traffic() && s.facts.tables.contains(t) && !st.is_new(t))
            .max_by_key(|(_, m)| *m)
        else {
            return;
        };
        out.push(RuleHit::new(
            format!("{} on {} is requested without lock_timeout: while it waits behind running transactions, every query on {} queues behind it", m.sql_name(), t.display_plain(), t.display_plain()),
            "SET lock_timeout = '2s' (or SET LOCAL inside the transaction) before it, and retry on timeout",
        ).lock(*m, t).table(t));
    }
}
