//! The approval policy (`tandem.policies`, a chain of versions) and the signed statements
//! about each migration (`tandem.signatures`). Rows are only data: every signature is
//! checked here, by `gates`, each time they are read, so a row written by hand counts for
//! nothing and an edited one breaks what it was part of.

use gates::envelope::{Kind, Signed};
use gates::policy::Policy;
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::audit::{self, Record};
use super::identity;
use crate::error::EngineError;

/// A policy version whose chain back to version 1 (or to the pinned version) checked out.
#[derive(Debug, Clone)]
pub struct CurrentPolicy {
    pub version: i32,
    pub policy: Policy,
    pub fingerprint: String,
    /// Fingerprints of every version, oldest first (what a pin may name).
    pub history: Vec<String>,
}

/// The database's clock, in Unix seconds (expiry is judged by the server, not by the
/// machine tandem runs on).
pub async fn now(client: &impl GenericClient) -> Result<i64, EngineError> {
    Ok(client
        .query_one("SELECT extract(epoch FROM now())::int8", &[])
        .await
        .map_err(EngineError::sql("read the server's clock"))?
        .get(0))
}

/// The current policy, `None` when none was ever set. Every version is checked: its
/// fingerprint matches its text, versions follow one another, and each one after the first
/// carries the signatures of the previous one's threshold of approvers. With `pin`, the
/// chain must contain that fingerprint. A break refuses everything (exit 4), saying where.
pub async fn policy(
    client: &impl GenericClient,
    pin: Option<&str>,
) -> Result<Option<CurrentPolicy>, EngineError> {
    let rows = client
        .query(
            "SELECT version, policy, fingerprint, signatures::text FROM tandem.policies ORDER BY version",
            &[],
        )
        .await
        .map_err(EngineError::sql("read the approval policy"))?;
    let now = now(client).await?;
    let mut current: Option<CurrentPolicy> = None;
    for r in &rows {
        let (version, text, fingerprint, sigs): (i32, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let broken = |why: String| {
            EngineError::Approval(format!(
                "the approval policy in tandem.policies is not one tandem can trust: version {version} {why}; nothing runs until it is repaired: restore tandem.policies from a backup, and check `tandem audit verify` for who changed it"
            ))
        };
        let policy = Policy::from_canonical_json(&text)
            .map_err(|e| broken(format!("cannot be read ({e})")))?;
        if policy.fingerprint() != fingerprint {
            return Err(broken(format!(
                "was edited: its text has fingerprint {}, the row says {fingerprint}",
                policy.fingerprint()
            )));
        }
        let expected = current.as_ref().map_or(1, |c| c.version + 1);
        if version != expected {
            return Err(broken(format!("follows version {}", expected - 1)));
        }
        let mut history = current
            .as_ref()
            .map(|c| c.history.clone())
            .unwrap_or_default();
        if let Some(previous) = &current {
            let signatures: Vec<Signed> = serde_json::from_str(&sigs)
                .map_err(|e| broken(format!("has unreadable signatures ({e})")))?;
            // Checked against the database when it was set; a database renamed, upgraded or
            // restored since keeps its policy.
            gates::approval::policy_change(&previous.policy, &fingerprint, None, now, &signatures)
                .map_err(|missing| {
                    broken(format!(
                        "is not signed by enough approvers of version {}: {}",
                        previous.version,
                        missing.message()
                    ))
                })?;
        }
        history.push(fingerprint.clone());
        current = Some(CurrentPolicy {
            version,
            policy,
            fingerprint,
            history,
        });
    }
    if let Some(pin) = pin {
        match &current {
            None => {
                return Err(EngineError::Approval(format!(
                    "--policy-fingerprint {pin} is pinned but this database has no approval policy; nothing runs: check that this is the database you meant, or set the policy with `tandem policy set`"
                )))
            }
            Some(c) if !c.history.iter().any(|f| f == pin) => {
                return Err(EngineError::Approval(format!(
                    "--policy-fingerprint {pin} is pinned but this database's policy chain ({}) does not contain it: the policy was replaced outside tandem, or this is another database; nothing runs",
                    c.history.join(" → ")
                )))
            }
            Some(_) => {}
        }
    }
    Ok(current)
}

/// What `tandem policy set` did.
pub struct PolicySet {
    pub version: i32,
    pub fingerprint: String,
    /// True for a database's first policy (trusted on first use: pin its fingerprint).
    pub first: bool,
}

/// Store `new` as the next policy version. The first is trusted on first use; every later
/// one needs `signatures` (statements of kind policy over its fingerprint) from the current
/// policy's threshold of distinct approvers. Audited in the same transaction.
pub async fn set_policy(
    client: &mut Client,
    new: &Policy,
    signatures: &[Signed],
    pin: Option<&str>,
) -> Result<PolicySet, EngineError> {
    let tx = client
        .transaction()
        .await
        .map_err(EngineError::sql("begin setting the policy"))?;
    tx.batch_execute("LOCK TABLE tandem.policies IN EXCLUSIVE MODE")
        .await
        .map_err(EngineError::sql("lock the policy"))?;
    let database = identity::ensure(&tx).await?;
    let current = policy(&tx, pin).await?;
    let fingerprint = new.fingerprint();
    if let Some(c) = &current {
        if c.fingerprint == fingerprint {
            return Err(EngineError::refused(
                format!(
                    "this policy is already the current one (version {}, fingerprint {fingerprint})",
                    c.version
                ),
                "nothing was changed",
            ));
        }
        let now = now(&tx).await?;
        gates::approval::policy_change(&c.policy, &fingerprint, Some(&database), now, signatures)
            .map_err(|missing| {
                EngineError::Approval(format!(
                    "changing the approval policy needs the current policy's (version {}) approvers: {}",
                    c.version,
                    missing.message()
                ))
            })?;
    }
    let version = current.as_ref().map_or(1, |c| c.version + 1);
    let sigs = serde_json::to_value(signatures).expect("signatures serialise");
    tx.execute(
        "INSERT INTO tandem.policies (version, policy, fingerprint, signatures) VALUES ($1, $2, $3, $4)",
        &[&version, &new.to_canonical_json(), &fingerprint, &sigs],
    )
    .await
    .map_err(EngineError::sql("store the policy"))?;
    let signers: Vec<&str> = signatures
        .iter()
        .map(|s| s.statement.key_id.as_str())
        .collect();
    audit::append(
        &tx,
        Record {
            migration: None,
            kind: "policy",
            phase: None,
            event: if current.is_none() {
                "policy set (trusted on first use)"
            } else {
                "policy changed"
            },
            detail: json!({
                "version": version, "fingerprint": fingerprint,
                "previous": current.as_ref().map(|c| &c.fingerprint), "signed_by": signers,
            }),
            key: signers.first().copied(),
        },
    )
    .await?;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit the policy"))?;
    Ok(PolicySet {
        version,
        fingerprint,
        first: current.is_none(),
    })
}

/// Store a signed statement about migration `id` (submission, approval, revocation) and its
/// audit entry, in the caller's transaction.
pub async fn add(client: &impl GenericClient, id: i64, signed: &Signed) -> Result<(), EngineError> {
    let kind = match signed.statement.kind {
        Kind::Submit => "submit",
        Kind::Approve => "approve",
        Kind::Revoke => "revoke",
        Kind::Policy | Kind::Checkpoint => {
            return Err(EngineError::refused(
                "a policy or checkpoint statement is not about a migration",
                "use `tandem policy set` or `tandem audit checkpoint`",
            ))
        }
    };
    let json = serde_json::to_value(signed).expect("a statement serialises");
    client
        .execute(
            "INSERT INTO tandem.signatures (migration_id, kind, key_id, nonce, signed) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &kind, &signed.statement.key_id, &signed.statement.nonce, &json],
        )
        .await
        .map_err(|e| {
            if e.code().map(|c| c.code()) == Some("23505") {
                EngineError::Approval("this signed statement's nonce was used before: a statement is never stored twice; sign a new one".into())
            } else {
                EngineError::sql("store the signed statement")(e)
            }
        })?;
    audit::append(
        client,
        Record {
            migration: Some(id),
            kind,
            phase: None,
            event: kind,
            detail: json!({
                "key": signed.statement.key_id, "nonce": signed.statement.nonce,
                "actions": signed.statement.actions, "expires_at": signed.statement.expires_at,
                "subject": signed.statement.subject, "revokes": signed.statement.revokes,
            }),
            key: Some(&signed.statement.key_id),
        },
    )
    .await?;
    Ok(())
}

/// Every signed statement stored for migration `id`, oldest first. A row that is not a
/// statement at all (written by hand) is returned as an error text, to be reported.
pub async fn statements(
    client: &impl GenericClient,
    id: i64,
) -> Result<(Vec<Signed>, Vec<String>), EngineError> {
    let rows = client
        .query(
            "SELECT id, signed::text FROM tandem.signatures WHERE migration_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the migration's approvals"))?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for r in rows {
        let row: i64 = r.get(0);
        match serde_json::from_str::<Signed>(r.get(1)) {
            Ok(s) => good.push(s),
            Err(e) => bad.push(format!(
                "row {row} of tandem.signatures is not a signed statement ({e})"
            )),
        }
    }
    Ok((good, bad))
}
