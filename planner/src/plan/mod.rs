//! The plan: ordered steps with a strategy each, the locks they take, estimates and findings.
//!
//! Serialised as canonical JSON (fixed field order, no maps with unordered keys), so the
//! SHA-256 of its bytes is a stable identity that approvals sign.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::finding::{Finding, Lock};
use crate::ident::QualName;

/// Bumped whenever the JSON shape changes incompatibly.
pub const PLAN_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: u32,
    pub database: DatabaseIdentity,
    /// [`crate::model::Schema::fingerprint`] of the live schema the plan was made against.
    pub schema_fingerprint: String,
    pub source: PlanSource,
    pub steps: Vec<Step>,
    pub findings: Vec<Finding>,
    /// How many dual-read comparisons (`tandem proxy`), with no mismatch, verification waits
    /// for before cutover. 0 (the default) waits for none. Left out of the JSON when 0, so
    /// plans without it keep their bytes and their digest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dual_read_min: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseIdentity {
    /// `pg_control_system().system_identifier`, as text.
    pub system_identifier: String,
    pub database: String,
    /// `server_version_num`, e.g. 150018.
    pub server_version_num: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSource {
    /// `to` (desired schema), `file` (change file) or `sql` (inline change).
    pub kind: String,
    /// File name, or `-` for inline SQL.
    pub name: String,
    /// SHA-256 of the input text.
    pub sha256: String,
}

impl PlanSource {
    /// The source of a plan: its kind (`to`, `file`, `sql`), its name, and the SHA-256 of `text`.
    pub fn new(kind: &str, name: &str, text: &str) -> PlanSource {
        PlanSource {
            kind: kind.to_string(),
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// PostgreSQL does it without a long lock; runs under lock_timeout with retries.
    Online,
    /// The seven-phase shadow-table migration.
    Shadow,
    /// tandem will not run it; `refusal` says why and what to do.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub description: String,
    pub strategy: Strategy,
    /// The table the step changes, if any.
    pub table: Option<QualName>,
    /// Statements in order.
    pub sql: Vec<String>,
    /// False when a statement cannot run in a transaction block (CONCURRENTLY).
    pub transactional: bool,
    pub locks: Vec<Lock>,
    pub estimate: Estimate,
    pub refusal: Option<String>,
    /// What clients can observe missing or unprotected from the moment this step runs until
    /// a later step restores it ("view public.v is missing until step 5"). Empty for a
    /// step that leaves every object clients use in place. Left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposes: Vec<String>,
    /// A rewrite run in place because the table was small when planned
    /// ([`Target::in_place_below`]): the size in bytes (table and indexes) it may have when
    /// the step runs. Larger, the executor refuses the step and asks for a new plan, which
    /// makes it a shadow migration. Left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place_max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    /// Longest time any traffic-blocking lock is held, in milliseconds.
    pub lock_ms: u64,
    /// Total run time of the step, in milliseconds.
    pub total_ms: u64,
}

impl Plan {
    /// The canonical encoding: pretty JSON in declaration order, with a final newline.
    pub fn to_canonical_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plan serialises");
        s.push('\n');
        s
    }

    /// SHA-256 (hex) of the canonical encoding: the plan's identity.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.to_canonical_json().as_bytes()))
    }

    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_str(text).map_err(PlanError::Malformed)?;
        if plan.format != PLAN_FORMAT {
            return Err(PlanError::Format(plan.format));
        }
        Ok(plan)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "plan file is not a tandem plan ({0}); make a new one with `tandem plan -o plan.json`"
    )]
    Malformed(serde_json::Error),
    #[error("plan format {0} is not supported by this tandem (it reads format 1); re-plan with this version")]
    Format(u32),
}

mod build;
mod carry;
pub mod inverse;
mod online;
pub mod shadow;

pub use build::{from_changes, from_sql, Target, IN_PLACE_BELOW};
