//! The data-driven cases of `fixtures/cases/`, through the real binary and a real PostgreSQL.
//!
//! - a case with `after.sql` is a **round trip**: load `before.sql`, `tandem plan --to
//!   after.sql`, run the plan's SQL, and `tandem diff --to after.sql --exit-code` must find no
//!   difference; the plan is snapshotted, and the schema fingerprint must not move while
//!   `plan` and `diff` run (they only read).
//! - a case with `change.sql` gets the findings of `tandem lint` and the plan of
//!   `tandem plan -f` snapshotted.

use std::path::Path;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};
use tests::{cases, fingerprint, tandem, Case};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for case in cases() {
        let case = std::sync::Arc::new(case);
        if case.file("after.sql").is_some() {
            let c = case.clone();
            trials.push(Trial::test(
                format!("roundtrip::{}", case.name),
                move || block_on(roundtrip(&c)),
            ));
        }
        if case.file("change.sql").is_some() {
            let c = case.clone();
            trials.push(Trial::test(format!("lint::{}", case.name), move || {
                lint(&c)
            }));
            let c = case.clone();
            trials.push(Trial::test(format!("plan::{}", case.name), move || {
                block_on(plan_change(&c))
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn block_on<F: std::future::Future<Output = Result<(), Failed>>>(f: F) -> Result<(), Failed> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(tests::root().join("tests/tests/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

/// A database loaded with the case's `before.sql`, analysed so size figures are exact.
async fn before(case: &Case) -> Result<fixtures::pg::TestDb, Failed> {
    let db = fixtures::pg::TestDb::new(&case.name).await;
    if let Some(sql) = case.read("before.sql") {
        db.client()
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("before.sql of {} does not load: {e:?}", case.name))?;
    }
    db.client()
        .batch_execute("ANALYZE")
        .await
        .map_err(|e| e.to_string())?;
    Ok(db)
}

async fn roundtrip(case: &Case) -> Result<(), Failed> {
    let db = before(case).await?;
    let url = db.url();
    let after = case.file("after.sql").expect("after.sql");
    let after = after.to_str().expect("utf-8 path");
    let fp = fingerprint(db.client()).await;

    let run = tandem(&[
        "plan",
        "--to",
        after,
        "--database-url",
        &url,
        "--format",
        "json",
    ]);
    if run.code != 0 && run.code != 3 {
        return Err(format!("tandem plan --to failed with {}:\n{}", run.code, run.stderr).into());
    }
    let plan: Value = serde_json::from_str(&run.stdout)
        .map_err(|e| format!("plan is not JSON ({e}): {}", run.stdout))?;
    assert_eq!(
        fingerprint(db.client()).await,
        fp,
        "tandem plan changed the database"
    );
    settings()
        .bind(|| insta::assert_json_snapshot!(format!("roundtrip-{}", case.name), redact(&plan)));

    for step in plan["steps"].as_array().expect("steps") {
        if step["strategy"] == "refused" {
            return Err(format!("step refused in a round-trip case: {}", step["refusal"]).into());
        }
        for sql in step["sql"].as_array().expect("sql") {
            let sql = sql.as_str().expect("sql text");
            db.client()
                .batch_execute(sql)
                .await
                .map_err(|e| format!("plan step failed: {sql}\n{e:?}"))?;
        }
    }
    let fp_after = fingerprint(db.client()).await;
    let diff = tandem(&["diff", "--to", after, "--exit-code", "--database-url", &url]);
    if diff.code != 0 {
        return Err(format!(
            "after the plan, diff --to after.sql still reports (exit {}):\n{}",
            diff.code, diff.stderr
        )
        .into());
    }
    assert_eq!(
        fingerprint(db.client()).await,
        fp_after,
        "tandem diff changed the database"
    );
    Ok(())
}

fn lint(case: &Case) -> Result<(), Failed> {
    let change = case.file("change.sql").expect("change.sql");
    let run = tandem(&["lint", "--format", "json", rel(&change).as_str()]);
    if run.code != 0 && run.code != 3 {
        return Err(format!("tandem lint failed with {}:\n{}", run.code, run.stderr).into());
    }
    let report: Value = serde_json::from_str(&run.stdout).map_err(|e| e.to_string())?;
    let errors = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["severity"] == "error");
    assert_eq!(
        run.code == 3,
        errors,
        "exit 3 exactly when a finding is an error"
    );
    settings().bind(|| insta::assert_json_snapshot!(format!("lint-{}", case.name), report));
    Ok(())
}

async fn plan_change(case: &Case) -> Result<(), Failed> {
    let db = before(case).await?;
    let url = db.url();
    let fp = fingerprint(db.client()).await;
    let change = case.file("change.sql").expect("change.sql");
    let run = tandem(&[
        "plan",
        "-f",
        rel(&change).as_str(),
        "--database-url",
        &url,
        "--format",
        "json",
    ]);
    if run.code != 0 && run.code != 3 {
        return Err(format!("tandem plan -f failed with {}:\n{}", run.code, run.stderr).into());
    }
    let plan: Value = serde_json::from_str(&run.stdout)
        .map_err(|e| format!("plan is not JSON ({e}): {}", run.stdout))?;
    assert_eq!(
        fingerprint(db.client()).await,
        fp,
        "tandem plan changed the database"
    );
    settings().bind(|| insta::assert_json_snapshot!(format!("plan-{}", case.name), redact(&plan)));
    Ok(())
}

/// The case file's path relative to the workspace root, so snapshots do not hold machine paths.
fn rel(path: &Path) -> String {
    path.strip_prefix(tests::root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The parts of a plan that describe the change, without what varies by machine or run.
fn redact(plan: &Value) -> Value {
    let steps: Vec<Value> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            json!({
                "description": s["description"],
                "strategy": s["strategy"],
                "table": s["table"],
                "transactional": s["transactional"],
                "locks": s["locks"],
                "sql": s["sql"],
                "refusal": s["refusal"],
            })
        })
        .collect();
    let findings: Vec<Value> = plan["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            json!({
                "id": f["id"],
                "name": f["name"],
                "severity": f["severity"],
                "message": f["message"],
                "help": f["help"],
                "lock": f["lock"],
                "at": format!("{}:{}:{}", f["location"]["file"].as_str().unwrap_or(""), f["location"]["line"], f["location"]["column"]),
            })
        })
        .collect();
    json!({ "format": plan["format"], "source_kind": plan["source"]["kind"], "steps": steps, "findings": findings })
}
