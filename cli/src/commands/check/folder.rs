//! A migrations folder, read the way the migration tools that wrote it read it.
//!
//! | tool | file names | version |
//! |---|---|---|
//! | sqlx | `20240101120000_name.sql`, `0001_name.up.sql` (`.down.sql` skipped) | the leading integer |
//! | golang-migrate | `1_name.up.sql` (`.down.sql` skipped) | the leading integer |
//! | Flyway | `V1__name.sql`, `V1.2__name.sql`; `R__name.sql` repeatable (after all versions, by name); `U1__` undo skipped | the dotted number |
//!
//! Files that are not `.sql` are ignored (READMEs, `atlas.sum`); a `.sql` file that fits no
//! layout is an error, as is a version used twice: the tools would refuse them too, and a
//! check that skipped them would check less than what runs.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

/// One migration to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: Version,
    /// The description part of the name (`add_users` of `0002_add_users.sql`).
    pub name: String,
    pub path: PathBuf,
}

/// A migration's version: dotted numbers (sqlx and golang-migrate have one part), or a
/// Flyway repeatable migration, which runs after every versioned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    Numbered(Vec<u64>),
    Repeatable,
}

impl Version {
    /// Parse a version as the history tables store it (`20240101120000`, `1.2`).
    pub fn parse(text: &str) -> Option<Version> {
        let parts: Option<Vec<u64>> = text
            .trim()
            .split(['.', '_'])
            .map(|p| p.parse::<u64>().ok())
            .collect();
        parts.filter(|p| !p.is_empty()).map(Version::Numbered)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Version::Numbered(a), Version::Numbered(b)) => {
                // Flyway compares 1.2 and 1.2.0 as equal: trailing zeros do not count.
                let len = a.len().max(b.len());
                (0..len)
                    .map(|i| {
                        a.get(i)
                            .copied()
                            .unwrap_or(0)
                            .cmp(&b.get(i).copied().unwrap_or(0))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }
            (Version::Numbered(_), Version::Repeatable) => Ordering::Less,
            (Version::Repeatable, Version::Numbered(_)) => Ordering::Greater,
            (Version::Repeatable, Version::Repeatable) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Numbered(parts) => {
                let text: Vec<String> = parts.iter().map(u64::to_string).collect();
                f.write_str(&text.join("."))
            }
            Version::Repeatable => f.write_str("R"),
        }
    }
}

/// Why a folder cannot be read; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "cannot read the migrations folder {path} ({source}); check the path given to --migrations"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot tell the version of {0}: name it NNNN_name.sql or NNNN_name.up.sql (sqlx), N_name.up.sql (golang-migrate) or V1__name.sql (Flyway)")]
    Unversioned(PathBuf),
    #[error("{first} and {second} both have version {version}: the migration tool would refuse the folder; renumber one")]
    Duplicate {
        version: Version,
        first: PathBuf,
        second: PathBuf,
    },
}

/// The migrations of `dir` in the order they run.
pub fn read(dir: &Path) -> Result<Vec<Migration>, FolderError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FolderError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| FolderError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            paths.push(entry.path());
        }
    }
    let mut found = Vec::new();
    for path in paths {
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        match classify(file) {
            Some(Kind::Up(version, name)) => found.push(Migration {
                version,
                name,
                path,
            }),
            Some(Kind::Skipped) => {}
            None => return Err(FolderError::Unversioned(path)),
        }
    }
    found.sort_by(|a, b| {
        a.version
            .cmp(&b.version)
            .then_with(|| a.path.file_name().cmp(&b.path.file_name()))
    });
    for pair in found.windows(2) {
        if pair[0].version.cmp(&pair[1].version).is_eq() && pair[0].version != Version::Repeatable {
            return Err(FolderError::Duplicate {
                version: pair[0].version.clone(),
                first: pair[0].path.clone(),
                second: pair[1].path.clone(),
            });
        }
    }
    Ok(found)
}

enum Kind {
    Up(Version, String),
    /// A down or undo migration, or a file that is not SQL.
    Skipped,
}

fn classify(file: &str) -> Option<Kind> {
    let Some(stem) = file.strip_suffix(".sql") else {
        return Some(Kind::Skipped);
    };
    if stem.ends_with(".down") {
        return Some(Kind::Skipped);
    }
    let stem = stem.strip_suffix(".up").unwrap_or(stem);
    // Flyway: V<version>__<description>, R__<description>, U<version>__ (undo).
    if let Some((head, name)) = stem.split_once("__") {
        let name = name.to_string();
        if head == "R" {
            return Some(Kind::Up(Version::Repeatable, name));
        }
        if head.starts_with('U') && head[1..].chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Some(Kind::Skipped);
        }
        if let Some(v) = head.strip_prefix('V') {
            return Version::parse(v).map(|v| Kind::Up(v, name));
        }
    }
    // sqlx and golang-migrate: <integer>_<description>.
    let digits: String = stem.chars().take_while(char::is_ascii_digit).collect();
    let rest = &stem[digits.len()..];
    if digits.is_empty() || !(rest.is_empty() || rest.starts_with('_')) {
        return None;
    }
    let version = digits.parse::<u64>().ok()?;
    Some(Kind::Up(
        Version::Numbered(vec![version]),
        rest.trim_start_matches('_').to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            std::fs::write(dir.path().join(f), "SELECT 1;").expect("write");
        }
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        read(dir)
            .expect("readable")
            .iter()
            .map(|m| m.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sqlx_folders_run_in_numeric_order_without_downs() {
        let dir = folder(&[
            "20240102000000_b.sql",
            "20240101000000_a.sql",
            "README.md",
            "0003_c.down.sql",
        ]);
        assert_eq!(
            names(dir.path()),
            ["20240101000000_a.sql", "20240102000000_b.sql"]
        );
    }

    #[test]
    fn golang_migrate_orders_by_number_not_by_text() {
        let dir = folder(&["10_j.up.sql", "9_i.up.sql", "9_i.down.sql", "1_a.up.sql"]);
        assert_eq!(
            names(dir.path()),
            ["1_a.up.sql", "9_i.up.sql", "10_j.up.sql"]
        );
    }

    #[test]
    fn flyway_dotted_versions_then_repeatables_and_no_undo() {
        let dir = folder(&[
            "R__views.sql",
            "V1.10__k.sql",
            "V1.2__b.sql",
            "V1__a.sql",
            "U1.2__b.sql",
        ]);
        assert_eq!(
            names(dir.path()),
            ["V1__a.sql", "V1.2__b.sql", "V1.10__k.sql", "R__views.sql"]
        );
    }

    #[test]
    fn an_unversioned_sql_file_and_a_duplicate_version_are_errors_that_say_what_to_do() {
        let dir = folder(&["1_a.sql", "schema.sql"]);
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("schema.sql") && e.contains("V1__name.sql"),
            "{e}"
        );
        let dir = folder(&["1_a.sql", "01_b.sql"]);
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("both have version 1"), "{e}");
    }

    #[test]
    fn history_versions_parse_like_file_versions() {
        assert_eq!(Version::parse("1.2"), Some(Version::Numbered(vec![1, 2])));
        assert_eq!(
            Version::parse("1.2")
                .unwrap()
                .cmp(&Version::parse("1.2.0").unwrap()),
            Ordering::Equal
        );
        assert_eq!(Version::parse("abc"), None);
    }
}
