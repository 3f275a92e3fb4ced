//! `tandem status`: where each migration stands, read from tandem's bookkeeping only.

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::EngineError;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub id: i64,
    pub phase: String,
    pub paused: bool,
    /// Whether an executor holds the migration's lock right now.
    pub running: bool,
    pub waiting_for: Option<String>,
    pub submitted_at: String,
    pub tables: Vec<TableStatus>,
    pub verify: Option<serde_json::Value>,
    pub cutover_attempts: i32,
    pub window_ends_at: Option<String>,
    pub rollback_blocker: Option<String>,
    pub divergence_forward: i64,
    pub divergence_reverse: i64,
    pub last_event: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub shadow: String,
    pub rows_copied: i64,
    pub rows_total: i64,
    pub rows_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
}

/// Status of migration `id`, or of every migration when `None` (newest first).
pub async fn status(client: &Client, id: Option<i64>) -> Result<Vec<Status>, EngineError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('tandem.shadow_tables') IS NOT NULL",
            &[],
        )
        .await
        .map_err(EngineError::sql("look for tandem's bookkeeping"))?
        .get(0);
    if !exists {
        return match id {
            Some(id) => Err(EngineError::UnknownMigration(id)),
            None => Ok(vec![]),
        };
    }
    let rows = client
        .query(
            "SELECT m.id, m.phase, m.paused,
                    EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = $2::int4::oid AND l.objid = m.id::int4::oid AND l.objsubid = 2 AND l.granted
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())),
                    m.waiting_for, date_trunc('second', m.submitted_at)::text, m.verify_result, m.cutover_attempts,
                    date_trunc('second', m.window_ends_at)::text, m.rollback_blocker,
                    (SELECT count(*) FROM tandem.divergence d WHERE d.migration_id = m.id AND d.direction = 'forward'),
                    (SELECT count(*) FROM tandem.divergence d WHERE d.migration_id = m.id AND d.direction = 'reverse'),
                    (SELECT format('%s %s at %s', e.phase, e.event, date_trunc('second', e.at)) FROM tandem.events e WHERE e.migration_id = m.id ORDER BY e.id DESC LIMIT 1)
               FROM tandem.migrations m WHERE $1::int8 IS NULL OR m.id = $1 ORDER BY m.id DESC",
            &[&id, &crate::state::EXECUTOR_LOCK_CLASS],
        )
        .await
        .map_err(EngineError::sql("read the migrations"))?;
    if rows.is_empty() {
        if let Some(id) = id {
            return Err(EngineError::UnknownMigration(id));
        }
    }
    let mut out = Vec::new();
    for r in rows {
        let mid: i64 = r.get(0);
        let tables = client
            .query(
                "SELECT schema_name || '.' || table_name, shadow_name, rows_copied, rows_total,
                        CASE WHEN backfill_started_at IS NOT NULL AND rows_copied > 0 AND NOT indexes_built
                             THEN rows_copied / greatest(extract(epoch FROM now() - backfill_started_at), 0.001) END::float8
                   FROM tandem.shadow_tables WHERE migration_id = $1 ORDER BY step",
                &[&mid],
            )
            .await
            .map_err(EngineError::sql("read the shadow tables"))?
            .iter()
            .map(|t| {
                let copied: i64 = t.get(2);
                let total: i64 = t.get(3);
                let rate: Option<f64> = t.get(4);
                TableStatus {
                    table: t.get(0),
                    shadow: t.get(1),
                    rows_copied: copied,
                    // Rows inserted below the bound after it was taken are copied too.
                    rows_total: total.max(copied),
                    rows_per_sec: rate,
                    eta_secs: rate.filter(|r| *r > 0.0 && total > copied).map(|r| (total - copied) as f64 / r),
                }
            })
            .collect();
        out.push(Status {
            id: mid,
            phase: r.get(1),
            paused: r.get(2),
            running: r.get(3),
            waiting_for: r.get(4),
            submitted_at: r.get(5),
            verify: r.get(6),
            cutover_attempts: r.get(7),
            window_ends_at: r.get(8),
            rollback_blocker: r.get(9),
            divergence_forward: r.get(10),
            divergence_reverse: r.get(11),
            last_event: r.get(12),
            tables,
        });
    }
    Ok(out)
}
