//! T046 enum-value-ordering: enums: ADD VALUE without a position, and creating enums

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T046",
    name: "enum-value-ordering",
    severity: Severity::Info,
    class: Class::Breaking,
    summary: r#"enums: ADD VALUE without a position, and creating enums"#,
    docs: r#"ALTER TYPE ... ADD VALUE without BEFORE/AFTER appends at the end, which changes ORDER BY results when the labels were meant to be ordered. Enum values can never be removed without re-creating the type and rewriting every column that uses it; a lookup table with a foreign key is easier to evolve."#,
    bad: r#"ALTER TYPE mood ADD VALUE 'ecstatic';"#,
    good: r#"ALTER TYPE mood ADD VALUE 'ecstatic' AFTER 'happy';"#,
    remedy: Remedy::None,
    hazards: &[46],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        match s.node {
            NodeEnum::AlterEnumStmt(e) if e.old_val.is_empty() && e.new_val_neighbor.is_empty() => out.push(RuleHit::new(
                format!("ADD VALUE '{}' to enum {} without BEFORE/AFTER appends it last, which decides its sort order", e.new_val, qual_list(&e.type_name).display_plain()),
                "give it a position with BEFORE or AFTER",
            )),
            NodeEnum::CreateEnumStmt(e) => out.push(RuleHit::new(
                format!("enum {} is hard to change later: values cannot be removed without re-creating the type and rewriting every column using it", qual_list(&e.type_name).display_plain()),
                "consider a lookup table with a foreign key, which can be evolved online",
            )),
            _ => {}
        }
    }
}
