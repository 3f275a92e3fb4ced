//! T044 ban-cascade: TRUNCATE/DROP ... CASCADE destroy more than they name

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T044",
    name: "ban-cascade",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"TRUNCATE/DROP ... CASCADE destroy more than they name"#,
    docs: r#"TRUNCATE ... CASCADE also empties every table with a foreign key to the named tables, and DROP ... CASCADE also drops dependent views, foreign keys and other objects. Name every object explicitly."#,
    bad: r#"TRUNCATE accounts CASCADE;"#,
    good: r#"TRUNCATE orders, accounts;"#,
    remedy: Remedy::None,
    hazards: &[36],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::TruncateStmt(t) if t.behavior == 2 => {
                let names: Vec<String> = s.facts.tables.iter().map(|t| t.display_plain()).collect();
                out.push(RuleHit::new(
                    format!("TRUNCATE {} CASCADE also empties every table that references them by foreign key", names.join(", ")),
                    "list every table to truncate explicitly, without CASCADE",
                ));
            }
            NodeEnum::DropStmt(d) if d.behavior == 2 => {
                let names: Vec<String> = drop_objects(&d.objects)
                    .iter()
                    .map(|t| t.display_plain())
                    .collect();
                out.push(RuleHit::new(
                    format!("DROP ... {} CASCADE also drops every object that depends on it (views, foreign keys, defaults)", names.join(", ")),
                    "drop the dependent objects explicitly first, then drop without CASCADE",
                ));
            }
            _ => {}
        }
    }
}
