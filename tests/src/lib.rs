//! Helpers for end-to-end tests: run the real `tandem` binary against a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What one run of `tandem` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panic with the whole output unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The `tandem` binary next to this test executable (`TANDEM_BIN` overrides).
///
/// `cargo test --workspace` and `cargo nextest run --workspace` build it, because the `cli`
/// package has integration tests; running this package alone needs `cargo build -p cli` first.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("TANDEM_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>/tandem
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("tandem"))
            .expect("target directory");
        assert!(
            bin.exists(),
            "{} is missing: test the whole workspace (cargo test --workspace), or cargo build -p cli first",
            bin.display()
        );
        bin
    })
}

/// Run `tandem` with `args`, with no DATABASE_URL or PG* variables leaking in from outside.
pub fn tandem(args: &[&str]) -> Run {
    tandem_in(args, &root())
}

pub fn tandem_in(args: &[&str], dir: &Path) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(args).current_dir(dir);
    for var in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "TANDEM_LOG",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("tandem runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The fingerprint of a database's schema, to show that a command changed nothing.
pub async fn fingerprint(client: &tokio_postgres::Client) -> String {
    engine::catalog::introspect(client)
        .await
        .expect("introspection")
        .fingerprint()
}

/// A case folder under `fixtures/cases/`.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
}

impl Case {
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.join(name);
        p.exists().then_some(p)
    }

    pub fn read(&self, name: &str) -> Option<String> {
        self.file(name)
            .map(|p| std::fs::read_to_string(p).expect("case file reads"))
    }
}

/// Every case, sorted by name.
pub fn cases() -> Vec<Case> {
    let dir = root().join("fixtures/cases");
    let mut out: Vec<Case> = std::fs::read_dir(&dir)
        .expect("fixtures/cases exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| Case {
            name: e.file_name().to_string_lossy().into_owned(),
            dir: e.path(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
