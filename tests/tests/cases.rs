//! The data-driven cases of `fixtures/cases/`, through the real binary and a real PostgreSQL.
//!
//! - a case with `after.sql` is a **round trip**: load `before.sql`, `tandem plan --to
//!   after.sql`, run the plan's SQL, and `tandem diff --to after.sql --exit-code` must find no
//!   difference; the plan is snapshotted, and the schema fingerprint must not move while
//!   `plan` and `diff` run (they only read).
//! - a case with `change.sql` gets the findings of `tandem lint` and the plan of
//!   `tandem plan -f` snapshotted.
//! - `roundtrip_pg17` runs every round trip again against PostgreSQL 17 (the host has 15
//!   only): the target is one Docker container, the dev database another (`--dev-url`), both
//!   from the image `tandem dev-image build --pg 17` makes (built here when missing).

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
    trials.push(Trial::test("roundtrip_pg17", || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(roundtrip_pg17())
    }));
    libtest_mimic::run(&args, trials).exit();
}

/// Every round-trip case on PostgreSQL 17: a target container and a dev container, four
/// cases at a time, each in its own database; the plan's SQL is run and `diff` must then
/// find nothing. Snapshots are the 15 run's: here the plan must only be sound.
async fn roundtrip_pg17() -> Result<(), Failed> {
    use devdb::docker::{self, PgMajor};
    let progress = |line: &str| eprintln!("dev image: {line}");
    docker::ensure(PgMajor::V17, &progress)
        .await
        .map_err(|e| format!("cannot build the PostgreSQL 17 image: {e}"))?;
    let (target, dev) = tokio::join!(docker::start(PgMajor::V17), docker::start(PgMajor::V17));
    let target = target.map_err(|e| format!("target container: {e}"))?;
    let dev = dev.map_err(|e| format!("dev container: {e}"))?;
    // tandem takes passwords from a password file only.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pgpass = dir.path().join("pgpass");
    let line = |c: &tokio_postgres::Config| {
        format!(
            "127.0.0.1:{}:*:postgres:{}\n",
            c.get_ports()[0],
            String::from_utf8_lossy(c.get_password().expect("a password"))
        )
    };
    std::fs::write(&pgpass, line(target.config()) + &line(dev.config()))
        .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let url = |db: &str, c: &tokio_postgres::Config| {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", c.get_ports()[0])
    };
    let dev_url = url("postgres", dev.config());
    let (admin, conn) = target
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let version: String = admin
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    assert!(version.starts_with("17"), "{version}");

    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.file("after.sql").is_some())
        .collect();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for case in cases {
        admin
            .batch_execute(&format!("CREATE DATABASE \"rt_{}\"", case.name))
            .await
            .map_err(|e| format!("{}: {e}", case.name))?;
        let mut config = target.config().clone();
        config.dbname(format!("rt_{}", case.name));
        let target_url = url(&format!("rt_{}", case.name), target.config());
        let (dev_url, pgpass, gate) = (dev_url.clone(), pgpass.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore");
            let name = case.name.clone();
            roundtrip_on(&case, config, &target_url, &dev_url, &pgpass)
                .await
                .map_err(|e| format!("{name}: {e}"))
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} case(s) failed on PostgreSQL 17:\n{}",
            failures.len(),
            failures.join("\n\n")
        )
        .into())
    }
}

async fn roundtrip_on(
    case: &Case,
    config: tokio_postgres::Config,
    url: &str,
    dev_url: &str,
    pgpass: &Path,
) -> Result<(), String> {
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    if let Some(sql) = case.read("before.sql") {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("before.sql does not load: {e:?}"))?;
    }
    client
        .batch_execute("ANALYZE")
        .await
        .map_err(|e| e.to_string())?;
    let after = case.file("after.sql").expect("after.sql");
    let after = after.to_str().expect("utf-8 path").to_string();
    let run = |args: Vec<String>| {
        let pgpass = pgpass.to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(tests::binary())
                    .args(&args)
                    .env("PGPASSFILE", pgpass)
                    .env_remove("DATABASE_URL")
                    .env_remove("PGPASSWORD")
                    .output()
                    .expect("tandem runs")
            })
            .await
            .expect("join")
        }
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--database-url", url, "--dev-url", dev_url].map(String::from));
        v
    };
    let out = run(args(&[
        "plan",
        "--in-place-below",
        "0",
        "--to",
        &after,
        "--format",
        "json",
    ]))
    .await;
    let code = out.status.code().unwrap_or(-1);
    if code != 0 && code != 3 {
        return Err(format!(
            "plan --to failed with {code}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let plan: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("plan is not JSON: {e}"))?;
    for step in plan["steps"].as_array().expect("steps") {
        run_step(&client, step).await?;
    }
    let out = run(args(&["diff", "--to", &after, "--exit-code"])).await;
    if out.status.code() != Some(0) {
        return Err(format!(
            "after the plan, diff --to after.sql still reports (exit {:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
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
        "--in-place-below",
        "0",
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

    let before_objects = objects(
        &engine::catalog::introspect(db.client())
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut seen = Vec::new();
    let steps = plan["steps"].as_array().expect("steps");
    for step in steps {
        run_step(db.client(), step).await?;
        seen.push(objects(
            &engine::catalog::introspect(db.client())
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    // No window: what clients use before and after the plan is there, and as protected,
    // between any two steps, except what a step says it exposes, until the step it names.
    if let Some(after_objects) = seen.last() {
        let mut allowed: Vec<(String, usize, usize)> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            for e in step["exposes"].as_array().into_iter().flatten() {
                let e = e.as_str().expect("text");
                let (object, until) = e
                    .split_once(" is missing until step ")
                    .ok_or_else(|| format!("unreadable exposure {e:?}"))?;
                allowed.push((
                    object.to_string(),
                    i,
                    until.parse::<usize>().map_err(|_| e.to_string())? - 1,
                ));
            }
        }
        for (key, protected) in &before_objects {
            let Some(protected_after) = after_objects.get(key) else {
                continue;
            };
            for (i, now) in seen.iter().enumerate() {
                // An index replaced beside serves under its temporary name between the
                // old one's drop and the rename: queries do not go by names.
                let beside = key.starts_with("index ")
                    && now.get(&format!("{key}_tandem_new")).is_some_and(|p| *p);
                let ok = beside
                    || match now.get(key) {
                        None => false,
                        Some(p) => *p || !(*protected && *protected_after),
                    };
                let exposed = allowed
                    .iter()
                    .any(|(o, from, until)| key == o && (*from..*until).contains(&i));
                if !ok && !exposed {
                    return Err(format!(
                        "a window: after step {} ({}), {key} is {} though it exists before and after the plan, and no step says so",
                        i + 1,
                        steps[i]["description"],
                        if now.contains_key(key) { "not valid" } else { "missing" }
                    )
                    .into());
                }
            }
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
        "--in-place-below",
        "0",
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
            let mut step = json!({
                "description": s["description"],
                "strategy": s["strategy"],
                "table": s["table"],
                "transactional": s["transactional"],
                "locks": s["locks"],
                "sql": s["sql"],
                "refusal": s["refusal"],
            });
            if let Some(exposes) = s.get("exposes") {
                step["exposes"] = exposes.clone();
            }
            step
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

/// What clients use, by the names plans give them, each with whether it protects (an
/// enforced constraint, a valid index) or simply exists.
fn objects(schema: &planner::model::Schema) -> std::collections::BTreeMap<String, bool> {
    let plain = |q: &planner::QualName| format!("{}.{}", q.schema.as_str(), q.name.as_str());
    let mut out = std::collections::BTreeMap::new();
    for (name, t) in &schema.tables {
        out.insert(format!("table {}", plain(name)), true);
        for c in &t.columns {
            out.insert(format!("column {}.{}", plain(name), c.name), true);
        }
        // A constraint protects from the moment it exists: NOT VALID only skips the check of
        // the rows already there, every write is checked. A constraint dropped and re-added
        // NOT VALID in one transaction (a key's foreign keys following it) therefore leaves
        // no window; dropped in one step and re-added in a later one, it shows as missing.
        for c in t.constraints.values() {
            out.insert(format!("constraint {}.{}", plain(name), c.name), true);
        }
        for i in t.indexes.values() {
            out.insert(
                format!("index {}.{}", name.schema.as_str(), i.name),
                i.valid,
            );
        }
        for r in t.rules.values() {
            out.insert(format!("rule {}.{}", plain(name), r.name), true);
        }
    }
    for (name, v) in &schema.views {
        let kind = if v.materialized {
            "materialized view"
        } else {
            "view"
        };
        out.insert(format!("{kind} {}", plain(name)), true);
        for i in v.indexes.values() {
            out.insert(
                format!("index {}.{}", name.schema.as_str(), i.name),
                i.valid,
            );
        }
    }
    out
}

/// Run one plan step's SQL directly: a shadow step as the engine's result would be
/// (`engine::shadow::replay`), any other statement by statement. A refused step fails.
async fn run_step(client: &tokio_postgres::Client, step: &Value) -> Result<(), String> {
    if step["strategy"] == "refused" {
        return Err(format!(
            "step refused in a round-trip case: {}",
            step["refusal"]
        ));
    }
    if let Some(table) = shadow_table(step) {
        return engine::shadow::replay::shadow_step(client, &table, &statements(step))
            .await
            .map_err(|e| format!("shadow step failed: {e:?}"));
    }
    for sql in statements(step) {
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("plan step failed: {sql}\n{e:?}"))?;
    }
    Ok(())
}

/// The table of a shadow step, which the round trip replays as the engine's result would be.
fn shadow_table(step: &Value) -> Option<planner::QualName> {
    if step["strategy"] != "shadow" {
        return None;
    }
    serde_json::from_value(step["table"].clone()).ok()
}

fn statements(step: &Value) -> Vec<String> {
    step["sql"]
        .as_array()
        .expect("sql")
        .iter()
        .map(|s| s.as_str().expect("sql text").to_string())
        .collect()
}
