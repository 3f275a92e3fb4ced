//! T048 replication-or-extension-change: replica identity, extension upgrade or drop

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T048",
    name: "replication-or-extension-change",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"replica identity, extension upgrade or drop"#,
    docs: r#"REPLICA IDENTITY decides what logical replication and CDC consumers receive for UPDATE/DELETE; changing it changes their input. ALTER EXTENSION ... UPDATE and DROP EXTENSION change or remove functions, types and operators that columns, indexes and code may depend on in ways the catalog does not show. Review with the consumers."#,
    bad: r#"ALTER TABLE accounts REPLICA IDENTITY FULL;"#,
    good: r#"CREATE EXTENSION IF NOT EXISTS pgcrypto;"#,
    remedy: Remedy::None,
    hazards: &[51],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let what = match s.node {
            NodeEnum::AlterExtensionStmt(e) => Some(format!("updating extension {} changes the functions and types it provides", e.extname)),
            NodeEnum::DropStmt(d) if d.remove_type() == ObjectType::ObjectExtension => Some("dropping an extension removes its functions, types and operators (and with CASCADE, everything using them)".to_string()),
            _ => alter_table(s.node).and_then(|(t, a)| cmds(a).find_map(|(sub, _)| (sub == A::AtReplicaIdentity).then(|| format!("changing REPLICA IDENTITY of {} changes what logical replication and CDC consumers receive", t.display_plain())))),
        };
        if let Some(w) = what {
            out.push(RuleHit::new(w, "review with the consumers (replication, CDC, code using the extension) before applying"));
        }
    }
}
