//! The command-line contract that needs no database: help, version, usage errors.
//! (Being an integration test of this package also makes `cargo test` build the `tandem`
//! binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

fn tandem(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_commands() {
    let (code, stdout, _) = tandem(&["--help"]);
    assert_eq!(code, 0);
    for word in ["lint", "plan", "diff", "demo"] {
        assert!(stdout.contains(word), "--help mentions {word}: {stdout}");
    }
}

#[test]
fn plan_needs_exactly_one_source() {
    let (code, _, stderr) = tandem(&["plan", "--sql", "select 1", "--to", "x.sql"]);
    assert_eq!(code, 64, "{stderr}");
    let (code, _, _) = tandem(&["lint"]);
    assert_eq!(code, 64);
}

#[test]
fn unknown_format_is_a_usage_error() {
    let (code, _, stderr) = tandem(&["lint", "--format", "xml", "a.sql"]);
    assert_eq!(code, 64);
    assert!(stderr.contains("xml"), "{stderr}");
}

#[test]
fn finalize_takes_an_id_or_expired_and_extend_a_duration() {
    let (code, stdout, _) = tandem(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("extend"), "{stdout}");
    let (code, stdout, _) = tandem(&["finalize", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--expired"), "{stdout}");
    // Checked before any connection is tried.
    let (code, _, stderr) = tandem(&["finalize", "3", "--expired", "--yes"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("not both"), "{stderr}");
    let (code, _, stderr) = tandem(&["finalize", "--yes"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--expired"), "{stderr}");
    let (code, _, stderr) = tandem(&["extend", "3", "soon", "--yes"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("30d"), "{stderr}");
}
