//! `tandem check` through the binary: migrations folders of sqlx, golang-migrate and Flyway
//! replayed on the dev database, drift against a schema file and against the target, the
//! pending migrations planned, the report formats; and the dev database's promise: nothing
//! of the user's SQL reaches the target, which is only read.

use std::path::{Path, PathBuf};
use std::process::Command;

use fixtures::pg::TestDb;
use tests::{binary, fingerprint, root, tandem, Run};

fn folder(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-check-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("migrations")).expect("dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("check --format json prints JSON ({e}): {run:?}"))
}

const M1: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n";
const M2: &str = "ALTER TABLE accounts ADD COLUMN balance integer NOT NULL DEFAULT 0;\nCREATE TABLE notes (id bigint PRIMARY KEY, body text);\n";
const SCHEMA: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, balance integer NOT NULL DEFAULT 0);\nCREATE TABLE notes (id bigint PRIMARY KEY, body text);\n";

#[test]
fn a_sqlx_folder_replays_and_matches_its_schema_file_or_exits_2_naming_the_drift() {
    let dir = folder(
        "sqlx",
        &[
            ("migrations/20240101000000_accounts.sql", M1),
            ("migrations/20240102000000_balance.sql", M2),
            ("migrations/README.md", "not sql"),
            ("schema.sql", SCHEMA),
            (
                "stale.sql",
                &SCHEMA.replace("body text", "body text, archived boolean"),
            ),
        ],
    );
    let run = tandem(&[
        "check",
        "--migrations",
        s(&dir.join("migrations")),
        "--schema",
        s(&dir.join("schema.sql")),
    ])
    .expect(0);
    assert!(run.stderr.contains("no drift"), "{}", run.stderr);
    assert!(
        run.stderr.contains("2 migrations (no target"),
        "{}",
        run.stderr
    );

    let run = tandem(&[
        "check",
        "--format",
        "json",
        "--migrations",
        s(&dir.join("migrations")),
        "--schema",
        s(&dir.join("stale.sql")),
    ])
    .expect(2);
    let report = json(&run);
    assert_eq!(report["exit"], 2);
    let drift = report["schema_drift"].as_array().expect("schema drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(
        drift[0]["object"]
            .as_str()
            .expect("object")
            .contains("archived"),
        "{drift:?}"
    );
    assert_eq!(
        report["migrations"].as_array().expect("migrations").len(),
        2
    );
}

#[test]
fn golang_migrate_and_flyway_layouts_replay_in_their_order() {
    // 10 after 9 (numeric, not text order); the view in the repeatable runs after them all.
    let dir = folder(
        "layouts",
        &[
            ("migrations/9_accounts.up.sql", M1),
            ("migrations/9_accounts.down.sql", "DROP TABLE accounts;"),
            ("migrations/10_balance.up.sql", M2),
            ("schema.sql", SCHEMA),
        ],
    );
    tandem(&[
        "check",
        "--migrations",
        s(&dir.join("migrations")),
        "--schema",
        s(&dir.join("schema.sql")),
    ])
    .expect(0);

    let view = "CREATE OR REPLACE VIEW rich AS SELECT id FROM accounts WHERE balance > 100;\n";
    let dir = folder(
        "flyway",
        &[
            ("migrations/R__views.sql", view),
            (
                "migrations/V1.10__notes.sql",
                "CREATE TABLE notes (id bigint PRIMARY KEY, body text);\n",
            ),
            ("migrations/V1__accounts.sql", M1),
            (
                "migrations/V1.2__balance.sql",
                "ALTER TABLE accounts ADD COLUMN balance integer NOT NULL DEFAULT 0;\n",
            ),
            ("schema.sql", &format!("{SCHEMA}{view}")),
        ],
    );
    tandem(&[
        "check",
        "--migrations",
        s(&dir.join("migrations")),
        "--schema",
        s(&dir.join("schema.sql")),
    ])
    .expect(0);
}

#[test]
fn a_folder_that_does_not_replay_fails_with_the_file_and_line_and_bad_names_are_usage_errors() {
    let dir = folder(
        "broken",
        &[
            ("migrations/1_accounts.sql", M1),
            (
                "migrations/2_oops.sql",
                "ALTER TABLE accounts\n  ADD COLUMN balance integr;\n",
            ),
        ],
    );
    let run = tandem(&["check", "--migrations", s(&dir.join("migrations"))]).expect(3);
    assert!(
        run.stderr.contains("2_oops.sql:2:") && run.stderr.contains("integr"),
        "{}",
        run.stderr
    );

    std::fs::write(dir.join("migrations/schema.sql"), "SELECT 1;").expect("write");
    let run = tandem(&["check", "--migrations", s(&dir.join("migrations"))]).expect(64);
    assert!(run.stderr.contains("V1__name.sql"), "{}", run.stderr);
    let run = tandem(&["check"]).expect(64);
    assert!(run.stderr.contains("--migrations"), "{}", run.stderr);
}

/// A target that has applied the first two migrations (sqlx's history table says so), with
/// rows: the third is pending and planned against the target's sizes.
async fn applied_target(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.client()
        .batch_execute(&format!(
            "{M1}{M2}
             INSERT INTO accounts SELECT g, 'u' || g, g FROM generate_series(1, 5000) g;
             ANALYZE accounts;
             CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
                 installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL,
                 checksum bytea NOT NULL, execution_time bigint NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (20240101000000, 'accounts', now(), true, '\\x00', 1),
                                                 (20240102000000, 'balance', now(), true, '\\x00', 1);"
        ))
        .await
        .expect("target set up");
    db
}

fn three_migrations(test: &str, third: &str) -> PathBuf {
    folder(
        test,
        &[
            ("migrations/20240101000000_accounts.sql", M1),
            ("migrations/20240102000000_balance.sql", M2),
            ("migrations/20240103000000_widen.sql", third),
        ],
    )
}

#[tokio::test]
async fn with_a_target_only_pending_migrations_are_linted_and_planned_and_the_target_is_only_read()
{
    let db = applied_target("check_target").await;
    let dir = three_migrations(
        "target",
        "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n",
    );
    let before = fingerprint(db.client()).await;
    let run = tandem(&[
        "--database-url",
        &db.url(),
        "check",
        "--format",
        "json",
        // The target's table (5,000 rows) is over 100 kB, its replay on the dev database
        // empty: a shadow step shows the plan used the target's size.
        "--in-place-below",
        "100kB",
        "--migrations",
        s(&dir.join("migrations")),
    ]);
    let report = json(&run);
    assert_eq!(report["history_table"], "_sqlx_migrations", "{report}");
    let migrations = report["migrations"].as_array().expect("migrations");
    assert_eq!(migrations[0]["applied"], true);
    assert_eq!(migrations[1]["applied"], true);
    assert_eq!(migrations[1]["linted"], false);
    assert_eq!(migrations[2]["applied"], false);
    let steps = migrations[2]["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["strategy"], "shadow", "{steps:?}");
    assert_eq!(
        report["target_drift"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(run.code, report["exit"].as_i64().expect("exit") as i32);
    assert_eq!(
        fingerprint(db.client()).await,
        before,
        "check changed the target"
    );
}

#[tokio::test]
async fn a_target_changed_by_hand_is_drift_and_exits_2() {
    let db = applied_target("check_target_drift").await;
    db.client()
        .batch_execute("ALTER TABLE notes ADD COLUMN hotfix text")
        .await
        .expect("hand change");
    let dir = three_migrations(
        "target_drift",
        "CREATE TABLE tags (id bigint PRIMARY KEY);\n",
    );
    let run = tandem(&[
        "--database-url",
        &db.url(),
        "check",
        "--migrations",
        s(&dir.join("migrations")),
    ])
    .expect(2);
    assert!(
        run.stderr.contains("drift: the target against the replay")
            && run.stderr.contains("hotfix"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_dirty_golang_migrate_version_is_refused_with_the_fix() {
    let db = TestDb::new("check_dirty").await;
    db.client()
        .batch_execute(&format!(
            "{M1}CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
             INSERT INTO schema_migrations VALUES (2, true);"
        ))
        .await
        .expect("set up");
    let dir = folder(
        "dirty",
        &[("migrations/1_a.up.sql", M1), ("migrations/2_b.up.sql", M2)],
    );
    let run = tandem(&[
        "--database-url",
        &db.url(),
        "check",
        "--migrations",
        s(&dir.join("migrations")),
    ])
    .expect(3);
    assert!(
        run.stderr.contains("dirty") && run.stderr.contains("migrate force"),
        "{}",
        run.stderr
    );
}

#[test]
fn github_annotations_and_the_step_summary() {
    let dir = folder(
        "github",
        &[
            ("migrations/1_accounts.sql", M1),
            (
                "migrations/2_index.sql",
                "CREATE INDEX accounts_email ON accounts (email);\n",
            ),
            ("schema.sql", M1),
        ],
    );
    let summary = dir.join("summary.md");
    let out = Command::new(binary())
        .args([
            "check",
            "--format",
            "github",
            "--migrations",
            s(&dir.join("migrations")),
            "--schema",
            s(&dir.join("schema.sql")),
        ])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("DATABASE_URL")
        .current_dir(root())
        .output()
        .expect("tandem runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The index is a lint finding (no CONCURRENTLY) and drift (not in the schema file).
    assert!(
        stdout.contains("::") && stdout.contains("file=") && stdout.contains("2_index.sql"),
        "{stdout}"
    );
    assert!(stdout.contains("title=schema drift"), "{stdout}");
    let md = std::fs::read_to_string(&summary).expect("summary written");
    assert!(md.starts_with("## tandem check failed"), "{md}");
    assert!(md.contains("accounts_email"), "{md}");
    assert_ne!(out.status.code(), Some(0));
}

/// The desired schema of `plan --to` and `diff --to` runs on the dev database: a target role
/// that may not create databases and whose sessions are read-only still gets its plan, and
/// the target server holds no scratch database afterwards.
#[tokio::test]
async fn the_desired_schema_never_reaches_the_target() {
    let db = TestDb::new("check_never_target").await;
    db.client()
        .batch_execute(
            "CREATE TABLE accounts (id integer PRIMARY KEY, email text);
             INSERT INTO accounts SELECT g, 'u' || g FROM generate_series(1, 100) g;",
        )
        .await
        .expect("set up");
    let role = format!("reader_{}", std::process::id());
    db.client()
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN NOCREATEDB NOCREATEROLE;
             ALTER ROLE {role} SET default_transaction_read_only = on;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await
        .expect("role");
    let url = db.url().replace("user=postgres", &format!("user={role}"));
    assert_ne!(url, db.url(), "the test URL names its user: {}", db.url());
    let dir = folder(
        "never",
        &[(
            "desired.sql",
            "CREATE TABLE accounts (id integer PRIMARY KEY, email text, note text);\n",
        )],
    );
    let before = fingerprint(db.client()).await;
    let run = tandem(&[
        "--database-url",
        &url,
        "plan",
        "--in-place-below",
        "0",
        "--to",
        s(&dir.join("desired.sql")),
        "--format",
        "json",
    ])
    .expect(0);
    assert!(
        run.stdout.contains("ADD COLUMN \\\"note\\\" text"),
        "{}",
        run.stdout
    );
    tandem(&[
        "--database-url",
        &url,
        "diff",
        "--to",
        s(&dir.join("desired.sql")),
        "--exit-code",
    ])
    .expect(2);
    assert_eq!(fingerprint(db.client()).await, before);
    db.client()
        .batch_execute(&format!(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; DROP ROLE {role};"
        ))
        .await
        .expect("drop role");
}
