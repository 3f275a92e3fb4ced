//! The audit log (`tandem.audit`): one hash-chained record of everything that happened,
//! appended only through `tandem.audit_append` (migrations/0004_gates.sql). The engine's
//! events are entries of kind `event`; `tandem.events` is the view of them.

use gates::chain::Entry;
use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::error::EngineError;

/// What an entry is about: the migration, its phase and what happened.
pub struct Record<'a> {
    pub migration: Option<i64>,
    pub kind: &'a str,
    pub phase: Option<&'a str>,
    pub event: &'a str,
    pub detail: Value,
    /// The key that signed what is recorded, if any.
    pub key: Option<&'a str>,
}

/// Append `r` in the caller's transaction; returns its sequence number. The entry chains in
/// when the transaction commits, and is gone with it if it rolls back.
pub async fn append(client: &impl GenericClient, r: Record<'_>) -> Result<i64, EngineError> {
    let detail = (!r.detail.is_null()).then_some(r.detail);
    Ok(client
        .query_one(
            "SELECT tandem.audit_append($1, $2, $3, $4, $5, $6)",
            &[&r.migration, &r.kind, &r.phase, &r.event, &detail, &r.key],
        )
        .await
        .map_err(EngineError::sql("append to the audit log"))?
        .get(0))
}

/// Every entry, in order (for `tandem audit export` and `verify`). Entries from `from` on.
pub async fn entries(client: &impl GenericClient, from: i64) -> Result<Vec<Entry>, EngineError> {
    Ok(client
        .query(
            "SELECT seq, body, prev_hash, hash FROM tandem.audit WHERE seq >= $1 ORDER BY seq",
            &[&from],
        )
        .await
        .map_err(EngineError::sql("read the audit log"))?
        .iter()
        .map(|r| Entry {
            seq: r.get(0),
            body: r.get(1),
            prev_hash: r.get(2),
            hash: r.get(3),
        })
        .collect())
}

/// The number of entries and the last one's hash (the head a checkpoint signs).
pub async fn head(client: &impl GenericClient) -> Result<(i64, String), EngineError> {
    let row = client
        .query_opt(
            "SELECT seq, hash FROM tandem.audit ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(EngineError::sql("read the audit log's head"))?;
    Ok(match row {
        Some(r) => (r.get(0), r.get(1)),
        None => (0, gates::chain::GENESIS.to_string()),
    })
}
