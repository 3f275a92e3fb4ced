//! Findings: what a change will break or block, as data (never an `Err`).

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// What kind of harm a finding describes (the classes of `HAZARDS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Takes a lock or rewrites/scans a table while holding one.
    Blocking,
    /// Visible to applications after the change, or loses data.
    Breaking,
    /// Fails on existing data or is mis-structured.
    Fails,
    /// Load or performance.
    Performance,
    /// Design hygiene.
    Hygiene,
}

/// PostgreSQL's table-level lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub fn sql_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What the lock stops other sessions from doing.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare | LockMode::RowExclusive => {
                "nothing ordinary"
            }
            LockMode::ShareUpdateExclusive => "other schema changes and VACUUM",
            LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive => "writes",
            LockMode::AccessExclusive => "reads and writes",
        }
    }

    /// True when the lock blocks ordinary reads or writes of the table.
    pub fn blocks_traffic(self) -> bool {
        self >= LockMode::Share
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// A lock a statement takes, and on what.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lock {
    pub mode: LockMode,
    /// The object locked, as a person would write it (`public.accounts`).
    pub object: String,
}

/// Whether tandem can make the change without the hazard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// tandem rewrites the statement into an online form (e.g. CONCURRENTLY, NOT VALID + VALIDATE).
    Online,
    /// tandem runs it as a seven-phase shadow-table migration.
    Shadow,
    /// Nothing tandem can do: the change itself is the hazard (e.g. dropping a column).
    None,
}

/// Where in the input a finding points (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub file: Option<String>,
    pub line: u32,
    pub column: u32,
    /// 0-based index of the statement in the file.
    pub statement: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id, e.g. `T001`.
    pub id: String,
    /// Kebab-case name, e.g. `require-concurrent-index-creation`.
    pub name: String,
    pub severity: Severity,
    pub class: Class,
    /// What goes wrong, naming the table, column, lock and consequence.
    pub message: String,
    /// What to do instead.
    pub help: String,
    pub lock: Option<Lock>,
    pub remedy: Remedy,
    pub location: Location,
}
