//! T058 prefer-timestamptz: timestamp without time zone

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T058",
    name: "prefer-timestamptz",
    severity: Severity::Warning,
    class: Class::Hygiene,
    summary: r#"timestamp without time zone"#,
    docs: r#"timestamp without time zone stores wall-clock time with no zone: values written from sessions in different time zones cannot be compared, and converting the column later is a rewrite. Use timestamptz."#,
    bad: r#"ALTER TABLE accounts ADD COLUMN last_login timestamp;"#,
    good: r#"ALTER TABLE accounts ADD COLUMN last_login timestamptz;"#,
    remedy: Remedy::None,
    hazards: &[53],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        for (t, col) in declared_columns(s.node) {
            if col_type(col).is_some_and(|ty| ty.base == "timestamp") {
                out.push(RuleHit::new(
                    format!("{} is timestamp without time zone: the time zone is lost and values from different sessions do not compare", tc(&t, &col.colname)),
                    "use timestamptz",
                ));
            }
        }
        if let Some((t, a)) = alter_table(s.node) {
            for (sub, cmd) in cmds(a) {
                if sub == A::AtAlterColumnType
                    && cmd_column_def(cmd)
                        .and_then(col_type)
                        .is_some_and(|ty| ty.base == "timestamp")
                {
                    out.push(RuleHit::new(
                        format!("{} becomes timestamp without time zone", tc(&t, &cmd.name)),
                        "use timestamptz",
                    ));
                }
            }
        }
    }
}
