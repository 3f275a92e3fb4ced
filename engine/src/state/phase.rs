//! The phases a migration goes through, as stored in `tandem.migrations.phase`.
//!
//! The stored phase is the last one *completed*: `backfill` means the copy is done and
//! verification is next. `submitted` is the start; `rollback_window` follows a completed
//! cutover; `finalized`, `rolled_back` and `abandoned` are terminal.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Submitted,
    Prepare,
    DualWrite,
    Backfill,
    Verify,
    Cutover,
    RollbackWindow,
    Finalized,
    RolledBack,
    Abandoned,
}

impl Phase {
    /// The phases `apply` runs, in order.
    pub const APPLY: [Phase; 5] = [
        Phase::Prepare,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::Verify,
        Phase::Cutover,
    ];

    /// Every phase, in the order a migration can reach them.
    pub const ALL: [Phase; 10] = [
        Phase::Submitted,
        Phase::Prepare,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::Verify,
        Phase::Cutover,
        Phase::RollbackWindow,
        Phase::Finalized,
        Phase::RolledBack,
        Phase::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Submitted => "submitted",
            Phase::Prepare => "prepare",
            Phase::DualWrite => "dual_write",
            Phase::Backfill => "backfill",
            Phase::Verify => "verify",
            Phase::Cutover => "cutover",
            Phase::RollbackWindow => "rollback_window",
            Phase::Finalized => "finalized",
            Phase::RolledBack => "rolled_back",
            Phase::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        let s = s.replace('-', "_");
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The phase `apply` runs next, if any.
    pub fn next(self) -> Option<Phase> {
        match self {
            Phase::Submitted => Some(Phase::Prepare),
            Phase::Prepare => Some(Phase::DualWrite),
            Phase::DualWrite => Some(Phase::Backfill),
            Phase::Backfill => Some(Phase::Verify),
            Phase::Verify => Some(Phase::Cutover),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Finalized | Phase::RolledBack | Phase::Abandoned
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
