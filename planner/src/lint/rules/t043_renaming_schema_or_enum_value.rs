//! T043 renaming-schema-or-enum-value: renaming a schema or an enum value

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T043",
    name: "renaming-schema-or-enum-value",
    severity: Severity::Warning,
    class: Class::Breaking,
    summary: r#"renaming a schema or an enum value"#,
    docs: r#"Code that names the old schema, or writes/compares the old enum label, fails or silently stops matching as soon as the rename commits. Add the new name, move the application over, then remove the old one."#,
    bad: r#"ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy';"#,
    good: r#"ALTER TYPE mood ADD VALUE IF NOT EXISTS 'unhappy' AFTER 'sad';"#,
    remedy: Remedy::None,
    hazards: &[35],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::RenameStmt(r) if r.rename_type() == ObjectType::ObjectSchema => out.push(RuleHit::new(
                format!("renaming schema {} to {} breaks every query that names the old schema", r.subname, r.newname),
                "create the new schema and move objects with compatibility views, or update every client first",
            )),
            NodeEnum::AlterEnumStmt(e) if !e.old_val.is_empty() => out.push(RuleHit::new(
                format!("renaming value '{}' of enum {} to '{}' breaks code that writes or compares the old label", e.old_val, qual_list(&e.type_name).display_plain(), e.new_val),
                "add the new value, move the application and the data over, then stop using the old one",
            )),
            _ => {}
        }
    }
}
