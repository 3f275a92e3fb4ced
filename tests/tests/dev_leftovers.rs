//! Issue 12: a tandem process killed while it holds a dev database (SIGKILL, a cancelled CI
//! job) cannot clean up after itself; the next tandem process on the machine removes what it
//! left: its scratch databases on the local dev cluster, its container with `--dev docker`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fixtures::pg::TestDb;

/// Run `tandem diff --to SCHEMA --dev DEV` against `url`, stop it with SIGKILL once it has
/// created its first scratch database (`TANDEM_FAILPOINT=scratch`), and return its pid.
fn killed_holding_a_scratch_database(url: &str, schema: &str, dev: &str) -> u32 {
    let mut child = Command::new(tests::binary())
        .args(["--database-url", url, "diff", "--to", schema, "--dev", dev])
        .env("TANDEM_FAILPOINT", "scratch")
        .env_remove("TANDEM_LOG")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tandem starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.contains("failpoint scratch reached") => break,
            Ok(line) => seen.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("tandem never reached its scratch database ({e}): {seen:?}");
            }
        }
    }
    let pid = child.id();
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    pid
}

/// `tandem diff --to SCHEMA --dev DEV` with `TANDEM_LOG=info`: its stderr.
fn next_run(url: &str, schema: &str, dev: &str) -> String {
    let out = Command::new(tests::binary())
        .args(["--database-url", url, "diff", "--to", schema, "--dev", dev])
        .env("TANDEM_LOG", "info")
        .env_remove("TANDEM_FAILPOINT")
        .env_remove("DATABASE_URL")
        .output()
        .expect("tandem runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn schema_file(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("tandem-leftovers-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("schema.sql");
    std::fs::write(&path, "CREATE TABLE t (id bigint PRIMARY KEY);\n").expect("write");
    path.to_str().expect("utf-8").to_string()
}

#[tokio::test]
async fn a_killed_process_s_scratch_database_is_dropped_by_the_next_run() {
    let db = TestDb::new("leftover_scratch").await;
    let schema = schema_file("local");
    let pid = killed_holding_a_scratch_database(&db.url(), &schema, "local");
    let stderr = next_run(&db.url(), &schema, "local");
    let line = stderr
        .lines()
        .find(|l| {
            l.contains(&format!(
                "dropped scratch database tandem_scratch_desired_{pid}_"
            ))
        })
        .unwrap_or_else(|| panic!("the leftover of process {pid} was not dropped:\n{stderr}"));
    assert!(line.contains("left by a process that is gone"), "{line}");
}

/// The containers labelled as started by process `pid`.
fn containers_of(pid: u32) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=tandem.dev-database",
            "--format",
            "{{.ID}} {{.Label \"tandem.owner\"}}",
        ])
        .output()
        .expect("the docker CLI runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!(":{pid}:")))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_killed_process_s_container_is_removed_by_the_next_run() {
    let db = TestDb::new("leftover_container").await;
    let schema = schema_file("docker");
    let pid = killed_holding_a_scratch_database(&db.url(), &schema, "docker:15");
    let left = containers_of(pid);
    assert_eq!(
        left.len(),
        1,
        "the killed process left its container: {left:?}"
    );
    let stderr = next_run(&db.url(), &schema, "docker:15");
    assert!(
        stderr.contains("removed dev container")
            && stderr.contains("left by a process that is gone"),
        "{stderr}"
    );
    assert_eq!(containers_of(pid), Vec::<String>::new(), "{stderr}");
}
