//! The approval gate: before every phase, rollback, finalize and extension, the engine
//! gathers what the decision needs (the stored plan's digest, recomputed; this database's
//! identity; the policy, its chain checked; every signed statement about the migration) and
//! asks `gates::approval::decide`. Each decision is an audit entry; a refusal stops the
//! command with exit 4, naming who and what is missing.
//!
//! A database without a policy runs ungated (each decision says so in the audit log), unless
//! the operator pinned a policy fingerprint, which then must be in the database's chain.

use gates::approval::{decide, Granted, Missing, Request};
use gates::envelope::Kind;
use gates::policy::Action;
use serde_json::json;
use tokio_postgres::GenericClient;

use crate::error::EngineError;
use crate::state::audit::{self, Record};
use crate::state::{approvals, identity, Migration, Phase};

/// What the gate decided.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// No policy is set on this database: nothing is required.
    Ungated,
    Granted {
        granted: Granted,
        policy_version: i32,
    },
}

/// Decide without recording (for `status`): `Ok(Err(missing))` when approvals are missing.
pub async fn evaluate(
    client: &impl GenericClient,
    m: &Migration,
    action: Action,
    pin: Option<&str>,
) -> Result<Result<Verdict, Missing>, EngineError> {
    let database = identity::ensure(client).await?;
    let Some(policy) = approvals::policy(client, pin).await? else {
        return Ok(Ok(Verdict::Ungated));
    };
    let (statements, unreadable) = approvals::statements(client, m.id).await?;
    let now = approvals::now(client).await?;
    let submission = statements
        .iter()
        .filter(|s| s.statement.kind == Kind::Submit)
        .find(|s| s.verify().is_ok());
    // The submission is the author's, not an approval: only approvals and revocations count.
    let votes: Vec<_> = statements
        .iter()
        .filter(|s| matches!(s.statement.kind, Kind::Approve | Kind::Revoke))
        .cloned()
        .collect();
    let plan_sha256 = m.plan.digest();
    let request = Request {
        policy: &policy.policy,
        action,
        migration: m.id,
        plan_sha256: &plan_sha256,
        database: &database,
        now,
        submission,
        approvals: &votes,
    };
    Ok(match decide(&request) {
        Ok(granted) => Ok(Verdict::Granted {
            granted,
            policy_version: policy.version,
        }),
        Err(mut missing) => {
            for u in unreadable {
                missing.rejected.push(("tandem.signatures".into(), u));
            }
            Err(missing)
        }
    })
}

/// Decide, record the decision in the audit log (autocommit), and refuse with
/// [`EngineError::Approval`] when approvals are missing.
pub async fn check(
    client: &impl GenericClient,
    m: &Migration,
    action: Action,
    pin: Option<&str>,
) -> Result<Verdict, EngineError> {
    let started = std::time::Instant::now();
    let decided = match evaluate(client, m, action, pin).await {
        Err(EngineError::Approval(why)) => {
            record(client, m.id, action, "refused", json!({ "reason": why })).await?;
            return Err(EngineError::Approval(why));
        }
        other => other?,
    };
    match decided {
        Ok(Verdict::Ungated) => {
            record(
                client,
                m.id,
                action,
                "ungated",
                json!({ "reason": "no approval policy is set on this database" }),
            )
            .await?;
            Ok(Verdict::Ungated)
        }
        Ok(Verdict::Granted {
            granted,
            policy_version,
        }) => {
            record(
                client,
                m.id,
                action,
                "approved",
                json!({
                    "by": granted.by, "required": granted.required, "policy_version": policy_version,
                    "took_us": started.elapsed().as_micros() as u64,
                }),
            )
            .await?;
            Ok(Verdict::Granted {
                granted,
                policy_version,
            })
        }
        Err(missing) => {
            let message = missing.message();

            record(
                client,
                m.id,
                action,
                "refused",
                json!({ "reason": message }),
            )
            .await?;
            Err(EngineError::Approval(message))
        }
    }
}

/// What a migration in `phase` asks approval for next.
pub fn next_action(phase: Phase) -> Option<Action> {
    use gates::policy::Phase as P;
    Some(match phase {
        Phase::Submitted => Action::Phase(P::Prepare),
        Phase::Prepare => Action::Phase(P::DualWrite),
        Phase::DualWrite => Action::Phase(P::Backfill),
        Phase::Backfill => Action::Phase(P::Verify),
        Phase::Verify => Action::Phase(P::Cutover),
        Phase::RollbackWindow => Action::Finalize,
        _ => return None,
    })
}

async fn record(
    client: &impl GenericClient,
    id: i64,
    action: Action,
    event: &str,
    detail: serde_json::Value,
) -> Result<(), EngineError> {
    let mut detail = detail;
    detail["action"] = json!(action.name());
    audit::append(
        client,
        Record {
            migration: Some(id),
            kind: "gate",
            phase: None,
            event,
            detail,
            key: None,
        },
    )
    .await
    .map(|_| ())
}
