//! T042 ban-drop-schema-or-database: DROP SCHEMA / DROP DATABASE

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T042",
    name: "ban-drop-schema-or-database",
    severity: Severity::Error,
    class: Class::Breaking,
    summary: r#"DROP SCHEMA / DROP DATABASE"#,
    docs: r#"Dropping a schema or a database deletes everything in it. This almost never belongs in a migration."#,
    bad: r#"DROP SCHEMA reporting CASCADE;"#,
    good: r#"CREATE SCHEMA IF NOT EXISTS reporting;"#,
    remedy: Remedy::None,
    hazards: &[34],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::DropStmt(d) if d.remove_type() == ObjectType::ObjectSchema => {
                let names: Vec<String> = d
                    .objects
                    .iter()
                    .filter_map(crate::lint::types::node_str)
                    .map(str::to_string)
                    .collect();
                out.push(RuleHit::new(
                    format!(
                        "DROP SCHEMA {} deletes every object and row in it",
                        names.join(", ")
                    ),
                    "drop the objects you mean to drop explicitly, after checking they are unused",
                ));
            }
            NodeEnum::DropdbStmt(d) => out.push(RuleHit::new(
                format!("DROP DATABASE {} deletes the whole database", d.dbname),
                "do not drop databases from a migration",
            )),
            _ => {}
        }
    }
}
