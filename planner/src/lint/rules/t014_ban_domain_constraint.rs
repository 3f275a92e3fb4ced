//! T014 ban-domain-constraint: constraints on domains

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T014",
    name: "ban-domain-constraint",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"constraints on domains"#,
    docs: r#"ALTER DOMAIN ... ADD CONSTRAINT checks every column of every table that uses the domain, holding locks on all of them, and domain constraints cannot be changed online later (a CREATE DOMAIN ... CHECK locks you into that). Prefer table or column CHECK constraints, which support NOT VALID + VALIDATE."#,
    bad: r#"ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0);"#,
    good: r#"ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance > 0) NOT VALID;"#,
    remedy: Remedy::None,
    hazards: &[16],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::CreateDomainStmt(d) if !d.constraints.is_empty() => {
                let name = qual_list(&d.domainname);
                out.push(RuleHit::new(
                    format!("domain {} is created with a constraint: changing it later re-checks every column that uses the domain, with no online path", name.display_plain()),
                    "put the CHECK on the table columns instead (they support NOT VALID + VALIDATE)",
                ));
            }
            NodeEnum::AlterDomainStmt(d) if d.subtype == "C" => {
                let not_valid = matches!(d.def.as_ref().and_then(|n| n.node.as_ref()), Some(NodeEnum::Constraint(c)) if c.skip_validation);
                let name = qual_list(&d.type_name);
                out.push(RuleHit::new(
                    format!("ALTER DOMAIN {} ADD CONSTRAINT checks every column of every table that uses the domain{}", name.display_plain(), if not_valid { " when it is validated" } else { ", while holding locks on those tables" }),
                    "use table CHECK constraints added NOT VALID and validated separately",
                ).severity(if not_valid { Severity::Info } else { Severity::Warning }));
            }
            _ => {}
        }
    }
}
