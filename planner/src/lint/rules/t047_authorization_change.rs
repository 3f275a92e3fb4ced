//! T047 authorization-change: RLS, policies, GRANT and REVOKE change who sees what

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T047",
    name: "authorization-change",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"RLS, policies, GRANT and REVOKE change who sees what"#,
    docs: r#"Enabling, disabling or forcing row level security, adding, altering or dropping a policy, and GRANT/REVOKE change which rows and tables each role can reach: queries start failing with permission errors, or return fewer rows, or data becomes visible to roles that should not see it. Review with the owners of every role affected."#,
    bad: r#"ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;"#,
    good: r#"COMMENT ON TABLE accounts IS 'customer accounts';"#,
    remedy: Remedy::None,
    hazards: &[50],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let what = match s.node {
            NodeEnum::GrantStmt(g) => Some(if g.is_grant { "GRANT widens access".to_string() } else { "REVOKE removes access; queries of the affected roles fail".to_string() }),
            NodeEnum::CreatePolicyStmt(p) => Some(format!("policy {} changes which rows roles see on {}", p.policy_name, p.table.as_ref().map(|t| qual(t).display_plain()).unwrap_or_default())),
            NodeEnum::AlterPolicyStmt(p) => Some(format!("altering policy {} changes which rows roles see", p.policy_name)),
            NodeEnum::DropStmt(d) if d.remove_type() == ObjectType::ObjectPolicy => Some("dropping a policy changes which rows roles see".to_string()),
            _ => alter_table(s.node).and_then(|(t, a)| cmds(a).find_map(|(sub, _)| match sub {
                A::AtEnableRowSecurity => Some(format!("enabling row level security on {}: roles without a matching policy see no rows", t.display_plain())),
                A::AtDisableRowSecurity => Some(format!("disabling row level security on {}: every role with table access sees every row", t.display_plain())),
                A::AtForceRowSecurity | A::AtNoForceRowSecurity => Some(format!("changing FORCE ROW LEVEL SECURITY on {} changes what the table owner sees", t.display_plain())),
                _ => None,
            })),
        };
        if let Some(w) = what {
            out.push(RuleHit::new(w, "review the access change with the owners of the affected roles and test it with those roles"));
        }
    }
}
