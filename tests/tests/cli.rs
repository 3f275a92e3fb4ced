//! Bad input, exit codes and the read-only promise of `plan` and `diff`, through the binary.

use fixtures::pg::TestDb;
use tests::{fingerprint, tandem, Run};

const SHOP: &str = "
    CREATE TABLE accounts (id integer PRIMARY KEY, email text, balance integer NOT NULL DEFAULT 0);
    CREATE TABLE events (at timestamptz, payload text);
    INSERT INTO accounts SELECT g, 'u' || g, g FROM generate_series(1, 1000) g;
    ANALYZE;
";

async fn shop(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.client().batch_execute(SHOP).await.expect("shop loads");
    db
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

#[test]
fn usage_error_exits_64() {
    let run = tandem(&["plan"]).expect(64);
    assert!(run.stderr.contains("--to"), "{}", run.stderr);
    tandem(&["no-such-command"]).expect(64);
}

#[test]
fn lint_of_missing_file_says_so() {
    let run = tandem(&["lint", "does/not/exist.sql"]).expect(64);
    assert!(
        run.stderr.contains("cannot read does/not/exist.sql"),
        "{}",
        run.stderr
    );
}

#[test]
fn lint_parse_error_points_at_line_and_column_and_keeps_going() {
    let dir = tmp("parse");
    let file = write(
        &dir,
        "m.sql",
        "CREATE INDEX a_idx ON accounts (email);\nALTER TABLE accounts ADD COLUM x int;\nALTER TABLE accounts DROP COLUMN email;\n",
    );
    let run = tandem(&["lint", "--format", "json", &file]).expect(3);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let parse = findings
        .iter()
        .find(|f| f["id"] == "T000")
        .expect("a parse-error finding");
    assert_eq!(parse["location"]["line"], 2, "{parse}");
    assert!(
        findings
            .iter()
            .any(|f| f["location"]["line"] == 1 && f["id"] != "T000"),
        "the first statement is still analysed: {findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f["location"]["line"] == 3 && f["id"] != "T000"),
        "the third statement is still analysed: {findings:?}"
    );
    let text = tandem(&["lint", &file]).expect(3);
    assert!(
        text.stderr.contains(":2:"),
        "text output names the line: {}",
        text.stderr
    );
}

#[test]
fn lint_github_format_annotates() {
    let dir = tmp("gh");
    let file = write(&dir, "m.sql", "CREATE INDEX a_idx ON accounts (email);\n");
    let run = tandem(&["lint", "--format", "github", &file]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("::") && l.contains("line=1")),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn unreachable_database_exits_69_naming_the_host() {
    let run = tandem(&[
        "plan",
        "--in-place-below",
        "0",
        "--sql",
        "select 1",
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/nowhere",
    ]);
    let run = run.expect(69);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
}

#[tokio::test]
async fn unknown_table_or_column_is_refused_and_changes_nothing() {
    let db = shop("unknown_table").await;
    let fp = fingerprint(db.client()).await;
    let run = tandem(&[
        "plan",
        "--in-place-below",
        "0",
        "--sql",
        "ALTER TABLE acounts ADD COLUMN note text",
        "--database-url",
        &db.url(),
    ])
    .expect(3);
    assert!(run.stderr.contains("acounts"), "{}", run.stderr);
    let run = tandem(&[
        "plan",
        "--in-place-below",
        "0",
        "--sql",
        "ALTER TABLE accounts ALTER COLUMN emial SET NOT NULL",
        "--database-url",
        &db.url(),
    ])
    .expect(3);
    assert!(
        run.stderr
            .contains("column emial does not exist in table accounts"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("REFUSED"), "{}", run.stderr);
    assert_eq!(fingerprint(db.client()).await, fp);
}

#[tokio::test]
async fn rewrite_of_a_table_without_key_is_refused_with_the_fix() {
    let db = shop("no_key").await;
    let fp = fingerprint(db.client()).await;
    let run = tandem(&[
        "plan",
        "--in-place-below",
        "0",
        "--sql",
        "ALTER TABLE events ALTER COLUMN payload TYPE integer USING length(payload)",
        "--database-url",
        &db.url(),
        "--format",
        "json",
    ])
    .expect(3);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let step = &plan["steps"][0];
    assert_eq!(step["strategy"], "refused", "{plan}");
    assert!(
        step["refusal"].as_str().unwrap().contains("primary key"),
        "{step}"
    );
    assert_eq!(fingerprint(db.client()).await, fp);
}

#[tokio::test]
async fn plan_file_is_canonical_and_stable() {
    let db = shop("canonical").await;
    let dir = tmp("canonical");
    let change = write(&dir, "c.sql", "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;\nCREATE INDEX accounts_email_idx ON accounts (email);\n");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    tandem(&[
        "plan",
        "--in-place-below",
        "0",
        "-f",
        &change,
        "-o",
        a.to_str().unwrap(),
        "--database-url",
        &db.url(),
    ])
    .expect(0);
    tandem(&[
        "plan",
        "--in-place-below",
        "0",
        "-f",
        &change,
        "-o",
        b.to_str().unwrap(),
        "--database-url",
        &db.url(),
    ])
    .expect(0);
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(
        a, b,
        "two plans of the same change against the same schema are byte-identical"
    );
    let plan =
        planner::plan::Plan::from_json(std::str::from_utf8(&a).unwrap()).expect("plan parses back");
    assert_eq!(
        plan.to_canonical_json().as_bytes(),
        a.as_slice(),
        "the file is the canonical encoding"
    );
    assert_eq!(plan.database.database, db.name());
    assert_eq!(plan.schema_fingerprint, fingerprint(db.client()).await);
    let strategies: Vec<_> = plan.steps.iter().map(|s| s.strategy).collect();
    assert_eq!(
        strategies,
        vec![
            planner::plan::Strategy::Shadow,
            planner::plan::Strategy::Online
        ]
    );
    assert!(
        plan.steps[1].sql[0].contains("CONCURRENTLY"),
        "{:?}",
        plan.steps[1]
    );
}

#[tokio::test]
async fn diff_exit_code_and_scratch_cleanup() {
    let db = shop("diff_exit").await;
    let dir = tmp("diff");
    let same = write(&dir, "same.sql", SHOP);
    let other = write(
        &dir,
        "other.sql",
        &format!("{SHOP}\nCREATE INDEX accounts_email_idx ON accounts (email);"),
    );
    let fp = fingerprint(db.client()).await;
    tandem(&[
        "diff",
        "--to",
        &same,
        "--exit-code",
        "--database-url",
        &db.url(),
    ])
    .expect(0);
    let run: Run = tandem(&[
        "diff",
        "--to",
        &other,
        "--exit-code",
        "--database-url",
        &db.url(),
    ])
    .expect(2);
    assert!(run.stderr.contains("accounts_email_idx"), "{}", run.stderr);
    tandem(&["diff", "--to", &other, "--database-url", &db.url()]).expect(0);
    assert_eq!(fingerprint(db.client()).await, fp);
    let left = db
        .client()
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'tandem_scratch_%'",
            &[],
        )
        .await
        .unwrap();
    // Other tests run tandem beside this one on the shared server: only a scratch database
    // whose process (named in it: tandem_scratch_<purpose>_<pid>_<rand>) is gone was left behind.
    let left: Vec<String> = left
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| {
            let pid = name.rsplit('_').nth(1).unwrap_or("");
            !std::path::Path::new("/proc").join(pid).exists()
        })
        .collect();
    assert!(left.is_empty(), "scratch databases left behind: {left:?}");
}

#[tokio::test]
async fn malformed_desired_schema_points_at_the_line() {
    let db = shop("bad_desired").await;
    let dir = tmp("bad_desired");
    let bad = write(
        &dir,
        "bad.sql",
        "CREATE TABLE a (id int);\nCREATE TABLEE b (id int);\n",
    );
    let run = tandem(&["diff", "--to", &bad, "--database-url", &db.url()]).expect(3);
    assert!(run.stderr.contains(":2:"), "{}", run.stderr);
    let unknown = write(&dir, "unknown.sql", "CREATE TABLE a (id int, m mood);\n");
    let run = tandem(&["plan", "--to", &unknown, "--database-url", &db.url()]).expect(64);
    assert!(run.stderr.contains("mood"), "{}", run.stderr);
    assert!(run.stderr.contains(":1:"), "{}", run.stderr);
}

/// Issue 12: renames break running code and are errors by default; a compatibility view in
/// the same transaction keeps the old name working and silences the table rename; `--fail-on`
/// chooses which findings fail the run.
#[test]
fn renames_are_errors_unless_a_compatibility_view_keeps_the_name_and_fail_on_chooses_the_exit() {
    let dir = tmp("renames");
    let bare = write(
        &dir,
        "bare.sql",
        "ALTER TABLE accounts RENAME TO customers;\n",
    );
    let run = tandem(&["lint", "--format", "json", &bare]).expect(3);
    assert!(run.stdout.contains("\"T041\""), "{}", run.stdout);
    let compat = write(
        &dir,
        "compat.sql",
        "BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE accounts RENAME TO customers;\nCREATE VIEW accounts AS SELECT * FROM customers;\nCOMMIT;\n",
    );
    let run = tandem(&["lint", "--format", "json", &compat]);
    assert!(!run.stdout.contains("\"T041\""), "{}", run.stdout);
    // A view in another transaction leaves a moment without the name: still flagged.
    let split = write(
        &dir,
        "split.sql",
        "ALTER TABLE accounts RENAME TO customers;\nCREATE VIEW accounts AS SELECT * FROM customers;\n",
    );
    let run = tandem(&["lint", "--format", "json", &split]).expect(3);
    assert!(run.stdout.contains("\"T041\""), "{}", run.stdout);

    tandem(&["lint", "--fail-on", "never", &bare]).expect(0);
    let warn_only = write(
        &dir,
        "warn.sql",
        "ALTER TABLE accounts ALTER COLUMN email DROP DEFAULT;\n",
    );
    let run = tandem(&["lint", "--format", "json", &warn_only]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("\"warning\""), "{}", run.stdout);
    tandem(&["lint", "--fail-on", "warning", &warn_only]).expect(3);
}
