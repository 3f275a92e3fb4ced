//! Gates: approval (signed, M-of-N, bound to the exact plan), secrets and audit.
//!
//! Every phase transition of the engine passes through a [`Gate`] before it starts. The
//! approval, secrets and audit parts land with their own issues; the trait is the seam.

/// Why a gate refused a transition, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{reason}; {remedy}")]
pub struct Refusal {
    pub reason: String,
    pub remedy: String,
}

/// A check a phase transition must pass. `phase` is the phase about to start.
pub trait Gate {
    fn check(&self, migration: &str, phase: &str) -> Result<(), Refusal>;
}

/// The gate that lets everything through: used until approvals are configured.
pub struct Open;

impl Gate for Open {
    fn check(&self, _migration: &str, _phase: &str) -> Result<(), Refusal> {
        Ok(())
    }
}
