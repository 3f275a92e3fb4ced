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
    /// Seconds until the rollback window ends (negative once it has ended); only in the
    /// window.
    pub window_ends_in_secs: Option<f64>,
    /// Set when the rollback window ends within [`WINDOW_WARNING`] or has ended: what to do.
    pub window_warning: Option<String>,
    pub rollback_blocker: Option<String>,
    pub divergence_forward: i64,
    pub divergence_reverse: i64,
    pub last_event: Option<String>,
    /// Dual-read comparisons verification waits for (the plan's `dual_read_min`).
    pub dual_read_min: i64,
    /// `tandem proxy` comparisons, summed over the proxies, per side compared against.
    pub dual_reads: Vec<DualReads>,
    /// Proxies with a fresh heartbeat (they are not tied to one migration).
    pub live_proxies: i64,
    /// The latest mismatches the proxies recorded, newest first.
    pub drift: Vec<Drift>,
    /// The approvals of the next action (`None` when nothing is next, or before version 4
    /// of the bookkeeping).
    pub approvals: Option<ApprovalStatus>,
}

/// How long before the end of a rollback window `status` warns about it.
pub const WINDOW_WARNING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The warning for a rollback window that ends `secs` from now (negative: ended), if it is
/// due: within [`WINDOW_WARNING`], or after the end.
pub fn window_warning(id: i64, secs: f64) -> Option<String> {
    if secs > WINDOW_WARNING.as_secs_f64() {
        return None;
    }
    let extend = format!("extend it (`tandem extend {id} 30d`)");
    if secs <= 0.0 {
        return Some(format!(
            "rollback window of migration {id} ended {} ago: a rollback is no longer offered; finalize it (`tandem finalize {id}`, or `tandem finalize --expired` for every such migration) or {extend}",
            span(-secs)
        ));
    }
    Some(format!(
        "rollback window of migration {id} ends in {}: finalize it or {extend}",
        span(secs)
    ))
}

/// A span for people, rounded down: `5 h`, `42 min`, `30 s`.
fn span(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// What the approval gate would decide now for the migration's next action.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalStatus {
    /// e.g. `apply:prepare`, `finalize`.
    pub action: String,
    /// No policy is set on this database: nothing is required.
    pub ungated: bool,
    /// The people whose approvals count.
    pub approved_by: Vec<String>,
    /// Distinct people the policy requires.
    pub required: u32,
    /// What is still missing and what to do; `None` when granted.
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DualReads {
    /// `shadow` (before cutover) or `old` (in the rollback window).
    pub against: String,
    pub comparisons: i64,
    pub mismatches: i64,
    pub skipped: i64,
    pub dropped: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub against: String,
    pub proxy: String,
    /// Normalized: constants as `$n`, never the literal values.
    pub statement: String,
    pub rows_live: i64,
    pub rows_other: i64,
    /// The key of a row found on one side only (`col=value`): the table's data, shown only
    /// when asked for (`tandem status --keys`).
    pub example_key: Option<String>,
    /// A key was recorded and left out of this answer.
    pub key_hidden: bool,
    pub at: String,
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
                    (SELECT format('%s %s at %s', e.phase, e.event, date_trunc('second', e.at)) FROM tandem.events e WHERE e.migration_id = m.id ORDER BY e.id DESC LIMIT 1),
                    CASE WHEN m.phase = 'rollback_window' THEN extract(epoch FROM m.window_ends_at - now())::float8 END
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
    // Bookkeeping older than version 3 (not upgraded yet: status only reads) has no proxies.
    let proxies: bool = client
        .query_one("SELECT to_regclass('tandem.dual_reads') IS NOT NULL", &[])
        .await
        .map_err(EngineError::sql("look for tandem's bookkeeping"))?
        .get(0);
    let live_proxies: i64 = if proxies {
        client
            .query_one(
                "SELECT count(*) FROM tandem.proxies WHERE heartbeat_at > now() - interval '5 seconds'",
                &[],
            )
            .await
            .map_err(EngineError::sql("read the proxies"))?
            .get(0)
    } else {
        0
    };
    let mut out = Vec::new();
    for r in rows {
        let mid: i64 = r.get(0);
        let window_ends_in_secs: Option<f64> = r.get(13);
        let (dual_read_min, dual_reads, drift) = if proxies {
            dual_reads(client, mid).await?
        } else {
            (0, vec![], vec![])
        };
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
            window_ends_in_secs,
            window_warning: window_ends_in_secs.and_then(|secs| window_warning(mid, secs)),
            rollback_blocker: r.get(9),
            divergence_forward: r.get(10),
            divergence_reverse: r.get(11),
            last_event: r.get(12),
            tables,
            dual_read_min,
            dual_reads,
            live_proxies,
            drift,
            approvals: approvals(client, mid).await,
        });
    }
    Ok(out)
}

/// The approval gate's answer for migration `id`'s next action; `None` when there is no
/// next action or it cannot be read (status never fails for it).
async fn approvals(client: &Client, id: i64) -> Option<ApprovalStatus> {
    use crate::approval::{evaluate, next_action, Verdict};
    let installed: bool = client
        .query_one("SELECT to_regclass('tandem.policies') IS NOT NULL", &[])
        .await
        .ok()?
        .get(0);
    if !installed {
        return None;
    }
    let m = crate::state::Migration::load(client, id).await.ok()?;
    let action = next_action(m.phase)?;
    let name = action.name();
    Some(match evaluate(client, &m, action, None).await {
        Ok(Ok(Verdict::Ungated)) => ApprovalStatus {
            action: name,
            ungated: true,
            approved_by: vec![],
            required: 0,
            missing: None,
        },
        Ok(Ok(Verdict::Granted { granted, .. })) => ApprovalStatus {
            action: name,
            ungated: false,
            approved_by: granted.by,
            required: granted.required,
            missing: None,
        },
        Ok(Err(missing)) => ApprovalStatus {
            action: name,
            ungated: false,
            approved_by: missing.counted.clone(),
            required: missing.required,
            missing: Some(missing.message()),
        },
        Err(e) => ApprovalStatus {
            action: name,
            ungated: false,
            approved_by: vec![],
            required: 0,
            missing: Some(e.to_string()),
        },
    })
}

async fn dual_reads(
    client: &Client,
    id: i64,
) -> Result<(i64, Vec<DualReads>, Vec<Drift>), EngineError> {
    let min: i64 = client
        .query_one(
            "SELECT dual_read_min FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the migration"))?
        .get(0);
    let sides = client
        .query(
            "SELECT against, sum(comparisons)::int8, sum(mismatches)::int8, sum(skipped)::int8, sum(dropped)::int8
               FROM tandem.dual_reads WHERE migration_id = $1 GROUP BY against ORDER BY against DESC",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the dual-read counters"))?
        .iter()
        .map(|r| DualReads {
            against: r.get(0),
            comparisons: r.get(1),
            mismatches: r.get(2),
            skipped: r.get(3),
            dropped: r.get(4),
        })
        .collect();
    let drift = client
        .query(
            "SELECT against, proxy_id, statement, rows_live, rows_other, example_key,
                    date_trunc('second', at)::text
               FROM tandem.drift WHERE migration_id = $1 ORDER BY id DESC LIMIT 3",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the drift log"))?
        .iter()
        .map(|r| Drift {
            against: r.get(0),
            proxy: r.get(1),
            statement: r.get(2),
            rows_live: r.get(3),
            rows_other: r.get(4),
            example_key: r.get(5),
            key_hidden: false,
            at: r.get(6),
        })
        .collect();
    Ok((min, sides, drift))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_warns_within_a_day_and_after_its_end() {
        assert_eq!(window_warning(7, 24.0 * 3600.0 + 1.0), None);
        assert_eq!(
            window_warning(7, 5.5 * 3600.0).as_deref(),
            Some("rollback window of migration 7 ends in 5 h: finalize it or extend it (`tandem extend 7 30d`)")
        );
        assert!(window_warning(7, 90.0).unwrap().contains("ends in 1 min"));
        assert!(window_warning(7, 30.0).unwrap().contains("ends in 30 s"));
        let ended = window_warning(7, -7200.0).unwrap();
        assert!(
            ended.contains("ended 2 h ago")
                && ended.contains("tandem finalize 7")
                && ended.contains("tandem extend 7 30d"),
            "{ended}"
        );
    }
}
