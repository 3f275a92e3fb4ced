//! T060 identifier-too-long: identifier longer than 63 bytes

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T060",
    name: "identifier-too-long",
    severity: Severity::Warning,
    class: Class::Hygiene,
    summary: r#"identifier longer than 63 bytes"#,
    docs: r#"PostgreSQL silently truncates identifiers to 63 bytes (NAMEDATALEN - 1). Two long names that share their first 63 bytes collide, and tools that compare the name you wrote with the catalog see a difference. Choose a shorter name."#,
    bad: r#"CREATE TABLE this_is_a_very_long_table_name_that_goes_on_and_on_past_the_limit_of_postgres (id bigint);"#,
    good: r#"CREATE TABLE short_name (id bigint);"#,
    remedy: Remedy::None,
    hazards: &[54],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let mut found: Vec<String> = Vec::new();
        let mut check = |n: &str| if n.len() > crate::ident::MAX_IDENT_BYTES { found.push(n.to_string()) };
        match s.node {
            NodeEnum::CreateStmt(c) => {
                if let Some(rv) = &c.relation { check(&rv.relname); }
                for e in &c.table_elts {
                    match &e.node {
                        Some(NodeEnum::ColumnDef(col)) => { check(&col.colname); column_constraints(col).for_each(|k| check(&k.conname)); }
                        Some(NodeEnum::Constraint(k)) => check(&k.conname),
                        _ => {}
                    }
                }
            }
            NodeEnum::IndexStmt(i) => check(&i.idxname),
            NodeEnum::RenameStmt(r) => check(&r.newname),
            NodeEnum::ViewStmt(v) => { if let Some(rv) = &v.view { check(&rv.relname); } }
            NodeEnum::CreateSeqStmt(q) => { if let Some(rv) = &q.sequence { check(&rv.relname); } }
            NodeEnum::CreateTrigStmt(c) => check(&c.trigname),
            _ => {
                if let Some((_, a)) = alter_table(s.node) {
                    for (sub, cmd) in cmds(a) {
                        match sub {
                            A::AtAddColumn => { if let Some(col) = cmd_column_def(cmd) { check(&col.colname); } }
                            A::AtAddConstraint => { if let Some(k) = cmd_constraint(cmd) { check(&k.conname); } }
                            _ => {}
                        }
                    }
                }
            }
        }
        for n in found {
            let mut end = crate::ident::MAX_IDENT_BYTES;
            while !n.is_char_boundary(end) { end -= 1; }
            out.push(RuleHit::new(
                format!("identifier {n:?} is {} bytes; PostgreSQL truncates it to {:?}", n.len(), &n[..end]),
                "choose a name of at most 63 bytes",
            ));
        }
    }

}
