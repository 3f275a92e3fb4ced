//! T001 require-concurrent-index-creation: CREATE INDEX without CONCURRENTLY on an existing table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T001",
    name: "require-concurrent-index-creation",
    severity: Severity::Error,
    class: Class::Blocking,
    summary: r#"CREATE INDEX without CONCURRENTLY on an existing table"#,
    docs: r#"CREATE INDEX takes a SHARE lock on the table for the whole build: every INSERT, UPDATE and DELETE waits until the index is built, which on a large table is minutes. CREATE INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead and lets writes continue; it must run outside a transaction block. tandem plan/apply does this itself."#,
    bad: r#"CREATE INDEX accounts_email_idx ON accounts (email);"#,
    good: r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_idx ON accounts (email);"#,
    remedy: Remedy::Online,
    hazards: &[1],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::IndexStmt(i) = s.node else {
            return;
        };
        if i.concurrent {
            return;
        }
        let Some(rv) = &i.relation else { return };
        let t = qual(rv);
        if st.is_new(&t) {
            return;
        }
        let name = if i.idxname.is_empty() {
            "the index".to_string()
        } else {
            i.idxname.clone()
        };
        out.push(RuleHit::new(
            format!("CREATE INDEX {name} locks {} with SHARE, blocking writes for the whole index build{}", t.display_plain(), s.size_note(&t)),
            "use CREATE INDEX CONCURRENTLY (outside a transaction block); tandem plan/apply does this",
        ).lock(LockMode::Share, &t).table(&t));
    }
}
