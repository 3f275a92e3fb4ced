//! The workflow users copy, `examples/ci/github-actions.yml`, run here step by step: every
//! `run:` of a step not named "Install ..." (those fetch tandem and PostgreSQL, which this
//! machine has) runs in bash with the step's `env:`, the GitHub expressions replaced by what
//! a repository would hold: the target is a test database, reached by a role with a password
//! from the secret's pgpass line. Then the same with a migration that drifts: exit 2 and an
//! annotation.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use fixtures::pg::TestDb;
use tests::{binary, root};

/// One step of the workflow: its name, its shell script, its env.
#[derive(Debug)]
struct Step {
    name: String,
    run: String,
    env: BTreeMap<String, String>,
}

/// The steps of the (one) job, read from the YAML the way this file writes it: `- name:` or
/// `- uses:` starts a step, `run:` is one line or a `|` block, `env:` a map.
fn steps(yaml: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if let Some(rest) = t.strip_prefix("- ") {
            out.push(Step {
                name: rest.strip_prefix("name: ").unwrap_or(rest).to_string(),
                run: String::new(),
                env: BTreeMap::new(),
            });
            continue;
        }
        let Some(step) = out.last_mut() else { continue };
        if let Some(cmd) = t.strip_prefix("run: ") {
            if cmd == "|" {
                while let Some(next) = lines.peek() {
                    let n = next.trim_start();
                    if next.len() - n.len() <= indent || n.is_empty() && next.is_empty() {
                        break;
                    }
                    step.run.push_str(n);
                    step.run.push('\n');
                    lines.next();
                }
            } else {
                step.run = cmd.to_string();
            }
        } else if t == "env:" {
            while let Some(next) = lines.peek() {
                let n = next.trim_start();
                if next.len() - n.len() <= indent || !n.contains(": ") {
                    break;
                }
                let (k, v) = n.split_once(": ").expect("key: value");
                step.env.insert(k.to_string(), v.to_string());
                lines.next();
            }
        }
    }
    out
}

/// Run the workflow's steps; the last step's exit code and stdout.
fn run_workflow(
    yaml: &str,
    expressions: &BTreeMap<&str, String>,
    runner_temp: &Path,
) -> (i32, String) {
    let bin_dir = binary().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut last = (0, String::new());
    for step in steps(yaml) {
        if step.run.is_empty() || step.name.starts_with("Install") {
            continue;
        }
        let mut cmd = Command::new("bash");
        cmd.arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(&step.run)
            .current_dir(root())
            .env("PATH", &path)
            .env("RUNNER_TEMP", runner_temp)
            .env_remove("DATABASE_URL")
            .env_remove("PGPASSFILE");
        for (k, v) in &step.env {
            let mut v = v.clone();
            for (expr, value) in expressions {
                v = v.replace(&format!("${{{{ {expr} }}}}"), value);
            }
            assert!(!v.contains("${{"), "{k}: unreplaced expression in {v}");
            cmd.env(k, v);
        }
        let out = cmd.output().expect("bash runs");
        last = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        );
        eprintln!(
            "step {:?}: exit {}\n{}{}",
            step.name,
            last.0,
            last.1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    last
}

#[tokio::test]
async fn the_example_workflow_passes_on_a_matching_target_and_annotates_drift() {
    let yaml = std::fs::read_to_string(root().join("examples/ci/github-actions.yml"))
        .expect("the example workflow");
    let parsed = steps(&yaml);
    assert!(
        parsed.iter().any(|s| s.run.starts_with("tandem check")),
        "{parsed:?}"
    );

    // The target: production has applied the first migration (sqlx's history says so).
    let db = TestDb::new("ci_example").await;
    let first =
        std::fs::read_to_string(root().join("examples/ci/migrations/20240101000000_accounts.sql"))
            .expect("migration");
    let role = format!("ci_{}", std::process::id());
    db.client()
        .batch_execute(&format!(
            "{first}
             CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
                 installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL,
                 checksum bytea NOT NULL, execution_time bigint NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (20240101000000, 'accounts', now(), true, '\\x00', 1);
             DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD 'ci-secret-{role}' NOCREATEDB;
             GRANT SELECT ON _sqlx_migrations TO {role};"
        ))
        .await
        .expect("target");
    // Over TCP with the password, as a CI runner would reach it.
    let tcp = db.tcp_config();
    let host = "127.0.0.1";
    let port = tcp.get_ports()[0];
    let dbname = tcp.get_dbname().expect("dbname").to_string();
    let temp = tempfile::tempdir().expect("temp");
    let mut expressions = BTreeMap::new();
    expressions.insert(
        "secrets.TANDEM_CHECK_PGPASS_LINE",
        format!("{host}:{port}:{dbname}:{role}:ci-secret-{role}"),
    );
    expressions.insert(
        "vars.TANDEM_CHECK_DATABASE_URL",
        format!("postgresql://{role}@{host}:{port}/{dbname}"),
    );
    expressions.insert("runner.temp", temp.path().display().to_string());

    let (code, stdout) = run_workflow(&yaml, &expressions, temp.path());
    assert_eq!(code, 0, "the example passes as shipped: {stdout}");

    // A schema.sql that the migrations do not produce: exit 2, one annotation per object.
    let drift = temp.path().join("drift.sql");
    std::fs::write(
        &drift,
        "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n",
    )
    .expect("drift file");
    let drifted = yaml.replace("examples/ci/schema.sql", &drift.display().to_string());
    let (code, stdout) = run_workflow(&drifted, &expressions, temp.path());
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("::error title=schema drift::"), "{stdout}");
    db.client()
        .batch_execute(&format!(
            "REVOKE ALL ON _sqlx_migrations FROM {role}; DROP ROLE {role};"
        ))
        .await
        .expect("drop role");
}
