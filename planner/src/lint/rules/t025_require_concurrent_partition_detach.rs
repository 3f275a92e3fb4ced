//! T025 require-concurrent-partition-detach: DETACH PARTITION without CONCURRENTLY

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T025",
    name: "require-concurrent-partition-detach",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"DETACH PARTITION without CONCURRENTLY"#,
    docs: r#"ALTER TABLE ... DETACH PARTITION takes ACCESS EXCLUSIVE on the partitioned table: every query on any partition waits. On PostgreSQL 14+ use DETACH PARTITION ... CONCURRENTLY (SHARE UPDATE EXCLUSIVE, outside a transaction block)."#,
    bad: r#"ALTER TABLE measurements DETACH PARTITION measurements_2020;"#,
    good: r#"ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;"#,
    remedy: Remedy::Online,
    hazards: &[40],
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
            if sub != A::AtDetachPartition {
                continue;
            }
            let Some(NodeEnum::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
            else {
                continue;
            };
            if p.concurrent {
                continue;
            }
            let part = p
                .name
                .as_ref()
                .map(|rv| qual(rv).display_plain())
                .unwrap_or_default();
            let help = if s.pg() >= 14 {
                "use DETACH PARTITION ... CONCURRENTLY (outside a transaction block)".to_string()
            } else {
                format!("PostgreSQL {} has no DETACH CONCURRENTLY (14+): run it with a short lock_timeout at a quiet time, or upgrade", s.pg())
            };
            out.push(RuleHit::new(
                format!("DETACH PARTITION {part} takes ACCESS EXCLUSIVE on {}, blocking reads and writes on every partition", t.display_plain()),
                help,
            ).lock(LockMode::AccessExclusive, &t).table(&t));
        }
    }
}
