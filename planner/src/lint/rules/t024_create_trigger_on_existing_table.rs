//! T024 create-trigger-on-existing-table: CREATE TRIGGER on an existing table

#[allow(unused_imports)]
use super::prelude::*;

pub(crate) struct R;

pub(crate) static META: RuleMeta = RuleMeta {
    id: "T024",
    name: "create-trigger-on-existing-table",
    severity: Severity::Warning,
    class: Class::Blocking,
    summary: r#"CREATE TRIGGER on an existing table"#,
    docs: r#"CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the table: writes wait, and while it waits behind a long transaction every later query queues behind it. It is brief once granted; run it with a short lock_timeout and retry, at a quiet time."#,
    bad: r#"CREATE TRIGGER accounts_audit AFTER UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION audit();"#,
    good: r#"SET lock_timeout = '2s';
CREATE TABLE accounts2 (id bigint);
CREATE TRIGGER accounts2_audit AFTER UPDATE ON accounts2 FOR EACH ROW EXECUTE FUNCTION audit();"#,
    remedy: Remedy::None,
    hazards: &[39],
};

impl Rule for R {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    #[allow(unused_variables)]
    fn check(&self, s: &Stmt<'_>, st: &FileState, out: &mut Vec<RuleHit>) {
        let NodeEnum::CreateTrigStmt(c) = s.node else {
            return;
        };
        let Some(rv) = &c.relation else { return };
        let t = qual(rv);
        if st.is_new(&t) {
            return;
        }
        let sev = if st.lock_timeout_set() {
            Severity::Info
        } else {
            Severity::Warning
        };
        out.push(RuleHit::new(
            format!("CREATE TRIGGER {} takes SHARE ROW EXCLUSIVE on {}, blocking writes while it waits for and holds the lock", c.trigname, t.display_plain()),
            "run it with SET lock_timeout (about 1-2 s) and retry on timeout",
        ).lock(LockMode::ShareRowExclusive, &t).table(&t).severity(sev));
    }
}
