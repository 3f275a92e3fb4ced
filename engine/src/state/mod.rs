//! tandem's bookkeeping in the target database (schema `tandem`): installed and upgraded by
//! the versioned files in `migrations/`, read and written only through this module.
//!
//! Every record of progress is written in the same transaction as the work it records, so
//! the state after a crash is always one the executor can resume from.

pub mod approvals;
pub mod audit;
pub mod identity;
mod phase;

use planner::plan::Plan;
use serde_json::Value;
use tokio_postgres::{Client, GenericClient};

use crate::error::EngineError;
pub use phase::Phase;

/// The bookkeeping versions, in order: (version, SQL). Each runs in one transaction with its
/// version row.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../../migrations/0001_bookkeeping.sql")),
    (2, include_str!("../../../migrations/0002_executor.sql")),
    (3, include_str!("../../../migrations/0003_proxy.sql")),
    (4, include_str!("../../../migrations/0004_gates.sql")),
    (5, include_str!("../../../migrations/0005_hardening.sql")),
    (
        6,
        include_str!("../../../migrations/0006_drift_privacy.sql"),
    ),
];

/// The largest migration id: the executor's lock key is the id as an int4
/// (migrations/0005 keeps ids at or below it).
pub const MAX_MIGRATION_ID: i64 = i32::MAX as i64;

/// The key of migration `id`'s advisory locks (the executor's, the copy's).
pub(crate) fn lock_key(id: i64) -> i32 {
    i32::try_from(id).expect("migration ids stay at or below 2^31 - 1 (migrations/0005)")
}

/// The advisory lock key (class) under which tandem serialises its bookkeeping upgrades; the
/// per-migration executor lock uses [`EXECUTOR_LOCK_CLASS`].
const INSTALL_LOCK: i64 = 0x7461_6e64_656d_0001;
pub(crate) const EXECUTOR_LOCK_CLASS: i32 = 0x7461_6e64; // "tand"
/// The class of the per-table lock (key: the table's oid) a prepare holds from its check that
/// no other migration runs on the table until it commits the shadow it records.
/// ([`EXECUTOR_LOCK_CLASS`] + 1 is the copy lock, `shadow::sql::COPY_LOCK_CLASS`.)
pub(crate) const PREPARE_LOCK_CLASS: i32 = EXECUTOR_LOCK_CLASS + 2;

/// Create or upgrade schema `tandem` to the newest version. Safe to run concurrently: one
/// process upgrades, the others wait for it and find nothing left to do.
pub async fn install(client: &mut Client) -> Result<i32, EngineError> {
    let tx = client
        .transaction()
        .await
        .map_err(EngineError::sql("begin the bookkeeping upgrade"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await
        .map_err(EngineError::sql("wait for the bookkeeping lock"))?;
    let row = tx
        .query_one(
            "SELECT to_regclass('tandem.schema_version') IS NOT NULL,
                    EXISTS (SELECT FROM pg_namespace WHERE nspname = 'tandem')",
            &[],
        )
        .await
        .map_err(EngineError::sql("look for tandem's bookkeeping"))?;
    let (installed, schema_exists): (bool, bool) = (row.get(0), row.get(1));
    if schema_exists && !installed {
        // Adopting it would trust whatever its owner put there (tables, functions,
        // triggers): refuse.
        return Err(EngineError::refused(
            "this database has a schema named tandem that tandem did not create (it has no tandem.schema_version)",
            "tandem keeps its bookkeeping there and will not adopt a schema it did not make: rename that schema (ALTER SCHEMA tandem RENAME TO ...) or drop it, then run the command again",
        ));
    }
    let have: i32 = if installed {
        tx.query_one(
            "SELECT coalesce(max(version), 0) FROM tandem.schema_version",
            &[],
        )
        .await
        .map_err(EngineError::sql("read the bookkeeping version"))?
        .get(0)
    } else {
        0
    };
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if have > newest {
        return Err(EngineError::refused(
            format!("the database's tandem bookkeeping is version {have}, newer than this tandem understands ({newest})"),
            "use the tandem release that upgraded it",
        ));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql).await.map_err(|e| {
            let msg = match e.code().map(|c| c.code()) {
                Some("42501") => "the role cannot create tandem's bookkeeping (schema tandem); run once as a role with CREATE on the database",
                _ => "upgrade tandem's bookkeeping",
            };
            EngineError::sql(format!("{msg} (version {version})"))(e)
        })?;
    }
    identity::ensure(&tx).await?;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit the bookkeeping upgrade"))?;
    Ok(newest)
}

/// Whether tandem's bookkeeping exists in this database (read-only check).
pub async fn installed(client: &impl GenericClient) -> Result<bool, EngineError> {
    Ok(client
        .query_one("SELECT to_regclass('tandem.migrations') IS NOT NULL", &[])
        .await
        .map_err(EngineError::sql("look for tandem's bookkeeping"))?
        .get(0))
}

/// One submitted migration, as stored.
#[derive(Debug, Clone)]
pub struct Migration {
    pub id: i64,
    pub plan: Plan,
    pub plan_sha256: String,
    pub phase: Phase,
    pub paused: bool,
    pub online_done: i32,
    pub rollback_window_secs: f64,
    pub rollback_blocker: Option<String>,
    /// Dual-read comparisons (with no mismatch) verification waits for; 0: none.
    pub dual_read_min: i64,
}

const MIGRATION_COLUMNS: &str = "id, plan::text, plan_sha256, phase, paused, online_done, \
     extract(epoch FROM rollback_window)::float8, rollback_blocker, dual_read_min";

impl Migration {
    pub async fn load(client: &impl GenericClient, id: i64) -> Result<Migration, EngineError> {
        let row = client
            .query_opt(
                &format!("SELECT {MIGRATION_COLUMNS} FROM tandem.migrations WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(EngineError::sql("read the migration"))?
            .ok_or(EngineError::UnknownMigration(id))?;
        let plan_text: String = row.get(1);
        let plan = Plan::from_json(&plan_text).map_err(|e| {
            EngineError::refused(
                format!("migration {id}'s stored plan cannot be read ({e})"),
                "submit the plan again with this tandem version",
            )
        })?;
        let stored: String = row.get(2);
        if plan.digest() != stored {
            return Err(EngineError::Stale(format!(
                "migration {id}'s plan in tandem.migrations was changed after it was submitted (SHA-256 {} at submission, {} now); nothing runs from an edited plan: submit the plan file again (`tandem submit`), and have it approved",
                short(&stored),
                short(&plan.digest())
            )));
        }
        let phase: String = row.get(3);
        Ok(Migration {
            id: row.get(0),
            plan,
            plan_sha256: row.get(2),
            phase: Phase::parse(&phase).ok_or_else(|| {
                EngineError::refused(
                    format!("migration {id} is in an unknown phase {phase:?}"),
                    "upgrade tandem",
                )
            })?,
            paused: row.get(4),
            online_done: row.get(5),
            rollback_window_secs: row.get(6),
            rollback_blocker: row.get(7),
            dual_read_min: row.get(8),
        })
    }

    /// Reload the phase and flags (after another transaction changed them).
    pub async fn refresh(&mut self, client: &impl GenericClient) -> Result<(), EngineError> {
        *self = Migration::load(client, self.id).await?;
        Ok(())
    }
}

/// Register `plan` (whose canonical text is `text`). The caller has checked it is current.
pub async fn submit(
    client: &impl GenericClient,
    plan: &Plan,
    rollback_window_secs: Option<u64>,
) -> Result<i64, EngineError> {
    let text = plan.to_canonical_json();
    let json: Value = serde_json::from_str(&text).expect("a plan is JSON");
    let window = rollback_window_secs.map(|s| s.to_string());
    // The plan's threshold is copied into its own column so the executor and `status` read
    // it without parsing the plan; the plan (and its digest) stays the source of truth.
    let dual_read_min = i64::try_from(plan.dual_read_min).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "INSERT INTO tandem.migrations (plan, plan_sha256, schema_fingerprint, rollback_window, dual_read_min)
             VALUES ($1, $2, $3, coalesce(($4::text || ' seconds')::interval, '30 days'), $5)
             RETURNING id",
            &[&json, &plan.digest(), &plan.schema_fingerprint, &window, &dual_read_min],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED) {
                return EngineError::refused(
                    format!("this database has used every migration id tandem can lock (up to {MAX_MIGRATION_ID}); nothing was submitted"),
                    "ids are never reused: finalize or roll back the migrations still open, then move the bookkeeping aside (ALTER SCHEMA tandem RENAME TO tandem_old, keeping its audit chain) so tandem starts a new one",
                );
            }
            EngineError::sql("register the migration")(e)
        })?;
    let id: i64 = row.get(0);
    record(client, id, "submitted", "submitted", Value::Null).await?;
    Ok(id)
}

/// Append an event to the audit log (in the caller's transaction; `tandem.events` shows it).
pub async fn record(
    client: &impl GenericClient,
    id: i64,
    phase: &str,
    event: &str,
    detail: Value,
) -> Result<(), EngineError> {
    audit::append(
        client,
        audit::Record {
            migration: Some(id),
            kind: "event",
            phase: Some(phase),
            event,
            detail,
            key: None,
        },
    )
    .await
    .map(|_| ())
}

/// Set the migration's phase and record it (in the caller's transaction).
pub async fn set_phase(
    client: &impl GenericClient,
    id: i64,
    phase: Phase,
    detail: Value,
) -> Result<(), EngineError> {
    write_phase(client, id, phase).await?;
    record(client, id, phase.as_str(), "done", detail).await
}

/// Take the migration back to `phase` done, because what the phase after it established no
/// longer holds (recorded, with `detail`, as that later phase "voided"). The next `apply`
/// runs the later phase again.
pub async fn void_phase(
    client: &impl GenericClient,
    id: i64,
    phase: Phase,
    detail: Value,
) -> Result<(), EngineError> {
    let voided = phase.next().unwrap_or(phase);
    write_phase(client, id, phase).await?;
    record(client, id, voided.as_str(), "voided", detail).await
}

/// `phase` as the migration's last completed phase (and nothing waited for).
async fn write_phase(
    client: &impl GenericClient,
    id: i64,
    phase: Phase,
) -> Result<(), EngineError> {
    client
        .execute(
            "UPDATE tandem.migrations SET phase = $2, waiting_for = NULL, updated_at = now() WHERE id = $1",
            &[&id, &phase.as_str()],
        )
        .await
        .map_err(EngineError::sql("record the phase"))?;
    Ok(())
}

/// Say what the executor waits for (or `None`), for `status`. Best effort, autocommit.
pub async fn set_waiting(client: &Client, id: i64, what: Option<&str>) {
    let _ = client
        .execute(
            "UPDATE tandem.migrations SET waiting_for = $2, updated_at = now() WHERE id = $1 AND waiting_for IS DISTINCT FROM $2",
            &[&id, &what],
        )
        .await;
}

/// `tandem pause` / `tandem resume`.
pub async fn set_paused(client: &Client, id: i64, paused: bool) -> Result<Phase, EngineError> {
    if !installed(client).await? {
        return Err(EngineError::UnknownMigration(id));
    }
    let m = Migration::load(client, id).await?;
    if m.phase.is_terminal() {
        return Err(EngineError::refused(
            format!("migration {id} is {}, there is nothing to pause", m.phase),
            "`tandem status` shows where it stands",
        ));
    }
    client
        .execute(
            "UPDATE tandem.migrations SET paused = $2, updated_at = now() WHERE id = $1",
            &[&id, &paused],
        )
        .await
        .map_err(EngineError::sql("record the pause"))?;
    record(
        client,
        id,
        m.phase.as_str(),
        if paused { "paused" } else { "resumed" },
        Value::Null,
    )
    .await?;
    Ok(m.phase)
}

/// Migrations in their rollback window whose window has ended, the earliest end first: the
/// id and the end, to the second. None when tandem was never installed here (read-only).
pub async fn expired(client: &impl GenericClient) -> Result<Vec<(i64, String)>, EngineError> {
    if !installed(client).await? {
        return Ok(vec![]);
    }
    Ok(client
        .query(
            "SELECT id, date_trunc('second', window_ends_at)::text FROM tandem.migrations
              WHERE phase = 'rollback_window' AND window_ends_at < now()
              ORDER BY window_ends_at, id",
            &[],
        )
        .await
        .map_err(EngineError::sql("read the rollback windows"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Whether migration `id` is in its rollback window and the window has ended.
pub async fn window_ended(client: &impl GenericClient, id: i64) -> Result<bool, EngineError> {
    Ok(client
        .query_opt(
            "SELECT phase = 'rollback_window' AND window_ends_at < now() FROM tandem.migrations WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the rollback window"))?
        .and_then(|r| r.get::<_, Option<bool>>(0))
        .unwrap_or(false))
}

/// What `tandem extend` did to a rollback window.
#[derive(Debug, Clone)]
pub struct Extended {
    /// The end before and after, to the second.
    pub from: String,
    pub to: String,
    /// The new end is still in the past: the window stays ended.
    pub still_ended: bool,
}

/// Move the end of migration `id`'s rollback window `by` later (in the caller's
/// transaction; the caller has checked the phase and holds the migration's lock).
pub(crate) async fn extend_window(
    client: &impl GenericClient,
    id: i64,
    by: std::time::Duration,
) -> Result<Extended, EngineError> {
    let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            "WITH before AS (SELECT coalesce(window_ends_at, now()) AS ends FROM tandem.migrations WHERE id = $1 FOR UPDATE)
             UPDATE tandem.migrations m
                SET window_ends_at = before.ends + make_interval(secs => $2::float8), updated_at = now()
               FROM before WHERE m.id = $1
             RETURNING date_trunc('second', before.ends)::text,
                       date_trunc('second', m.window_ends_at)::text,
                       m.window_ends_at < now()",
            &[&id, &(secs as f64)],
        )
        .await
        .map_err(EngineError::sql("move the end of the rollback window"))?;
    Ok(Extended {
        from: row.get(0),
        to: row.get(1),
        still_ended: row.get(2),
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A boxed future borrowing the executor (for the reconnect loop).
pub type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
