//! Gates: approval (signed, M-of-N, bound to the exact plan), secrets and audit.
//!
//! Every phase transition of the engine passes through a [`Gate`] before it starts. The
//! approval, secrets and audit parts land with their own issues; the trait is the seam. Gates
//! are pure decisions over a [`Context`] the engine gathers: they do no I/O of their own.
//!
//! The approval core is as pure: [`keys`] (Ed25519 keys and the passphrase-encrypted key
//! file), [`canonical`] (the JSON signatures cover), [`policy`] (who approves what),
//! [`envelope`] (signed statements), [`approval`] (the M-of-N decision) and [`chain`] (the
//! audit log's hash chain and its signed checkpoints).

pub mod approval;
pub mod canonical;
pub mod chain;
pub mod envelope;
pub mod keys;
pub mod policy;

pub use approval::{decide, policy_change, Granted, Missing, Request};
pub use envelope::{DatabaseId, Kind, Signed, Statement};
pub use keys::{KeyError, PublicKey, SecretKey, Signature};
pub use policy::{Action, Approver, Phase, Policy, PolicyError, Require};

/// Why a gate refused a transition, with what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}; {remedy}")]
pub struct Refusal {
    pub reason: String,
    pub remedy: String,
    /// True when the condition passes by itself (load falls): the engine waits and asks again,
    /// and says what it waits for. False when a person must act (approve, fix): it stops.
    pub retry: bool,
}

/// What the engine knows when a phase is about to start.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub migration: i64,
    /// SHA-256 of the plan being run.
    pub plan_sha256: &'a str,
    /// The phase about to start.
    pub phase: &'a str,
    /// Sessions of other clients running a statement right now (`pg_stat_activity`).
    pub active_sessions: u32,
}

/// A check a phase transition must pass.
pub trait Gate: Send + Sync {
    fn check(&self, ctx: &Context<'_>) -> Result<(), Refusal>;
}

/// The gate that lets everything through.
pub struct Open;

impl Gate for Open {
    fn check(&self, _ctx: &Context<'_>) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Refuses to start a phase while more than `max_active` other sessions are running a
/// statement: a busy database first.
pub struct Load {
    pub max_active: u32,
}

impl Gate for Load {
    fn check(&self, ctx: &Context<'_>) -> Result<(), Refusal> {
        if ctx.active_sessions > self.max_active {
            return Err(Refusal {
                reason: format!(
                    "database load: {} active sessions, above the limit of {}",
                    ctx.active_sessions, self.max_active
                ),
                remedy: "waiting for the load to fall (raise --max-load to start anyway)".into(),
                retry: true,
            });
        }
        Ok(())
    }
}

/// All of the gates, in order; the first refusal wins.
pub struct All(pub Vec<Box<dyn Gate>>);

impl Gate for All {
    fn check(&self, ctx: &Context<'_>) -> Result<(), Refusal> {
        self.0.iter().try_for_each(|g| g.check(ctx))
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, for messages.
pub(crate) fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(active: u32) -> Context<'static> {
        Context {
            migration: 1,
            plan_sha256: "0",
            phase: "backfill",
            active_sessions: active,
        }
    }

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn load_gate_refuses_above_the_limit_and_asks_to_wait() {
        let g = All(vec![Box::new(Open), Box::new(Load { max_active: 4 })]);
        assert!(g.check(&ctx(4)).is_ok());
        let r = g.check(&ctx(5)).unwrap_err();
        assert!(r.retry);
        assert!(r.reason.contains("5 active sessions"), "{r}");
    }
}
