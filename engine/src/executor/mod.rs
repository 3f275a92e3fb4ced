//! The seven-phase executor: runs (or resumes) one migration against a live database.
//!
//! Each phase reads what it needs from tandem's bookkeeping, does its work in transactions
//! that also record the progress they make, and ends by recording the phase as done. The
//! executor can therefore stop anywhere (kill -9, a lost connection) and a new one picks up
//! from the last record. One executor per migration at a time: it holds a session advisory
//! lock on the migration's id for as long as it runs.

pub mod backfill;
mod carry;
mod deadlock;
mod drain;
mod mirror;
mod online;
mod pace;
mod prepare;
mod swap;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gates::policy::Action;
use gates::{Context, Gate};
use pgtls::Endpoint;
use serde_json::json;
use tokio_postgres::Client;

use crate::error::EngineError;
use crate::hooks::{CutoverHold, NoHold};
use crate::shadow::TableSpec;
use crate::state::{self, Migration, Phase, EXECUTOR_LOCK_CLASS};

/// How the executor paces itself. The defaults suit an OLTP database; every one of them is a
/// `tandem apply` option.
#[derive(Debug, Clone)]
pub struct Options {
    /// The last phase to run (`apply --until`); cutover by default.
    pub until: Phase,
    /// How the backfill copies (`shadow::CopyMethod`); recorded in each table's spec at
    /// prepare, so a resumed migration keeps the method it began with.
    pub copy: crate::shadow::CopyMethod,
    /// Target duration of one batch that holds the copy lock (deletes wait for it): the direct
    /// method's copy batches and the log method's drain batches.
    pub batch_time: Duration,
    /// Target duration of one chunk of the log method's copy, which locks nothing (each chunk
    /// commits with its checkpoint; a resumed copy starts from the last).
    pub chunk_time: Duration,
    pub min_batch: i64,
    pub max_batch: i64,
    /// Pause between backfill batches (the copy's, and the log's drain batches before the
    /// forward trigger takes over).
    pub batch_pause: Duration,
    /// How long the log's drain may fall behind the writes before the forward trigger takes
    /// over from an undrained log (`executor/drain.rs`).
    pub drain_patience: Duration,
    /// How long a backfill batch waits for a row lock before it backs off and retries smaller.
    pub batch_lock_timeout: Duration,
    /// `lock_timeout` of the cutover transaction, and of every DDL the executor runs.
    pub lock_timeout: Duration,
    pub cutover_attempts: u32,
    pub cutover_max_backoff: Duration,
    /// Don't start a phase (and pause the backfill) while more sessions than this are active.
    pub max_load: Option<u32>,
    /// Pause the backfill while a replica lags more than this.
    pub max_replication_lag: Option<Duration>,
    /// Rest between the chunks of the copy and verify so that the server's
    /// transaction rate stays at or above this share (0.7 for 70 %) of its rate with tandem
    /// idle (`executor/pace.rs`).
    pub keep_throughput: Option<f64>,
    /// Whether the log method's copy vacuums its pages between chunks (`backfill::Settle`);
    /// `None`: when the table is larger than the server's shared buffers.
    pub settle: Option<bool>,
    pub verify_chunk: i64,
    /// Verification passes (each re-copies the ranges that differ) before it gives up.
    pub verify_rounds: u32,
    /// Reconnection attempts after a lost connection before `apply` gives up.
    pub reconnect_attempts: u32,
    /// How long verification waits for the plan's dual-read comparisons (`dual_read_min`)
    /// before it refuses; time paused by `tandem pause` does not count.
    pub dual_read_timeout: Duration,
    /// `rollback --online-steps`: also undo the plan's online steps that have an inverse.
    pub undo_online_steps: bool,
    /// The approval policy fingerprint the operator pinned (`--policy-fingerprint`): it must
    /// be in the database's policy chain, and a database without a policy is refused.
    pub policy_pin: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            until: Phase::Cutover,
            copy: crate::shadow::CopyMethod::Log,
            batch_time: Duration::from_millis(40),
            chunk_time: Duration::from_millis(500),
            min_batch: 100,
            max_batch: 20_000,
            batch_pause: Duration::ZERO,
            drain_patience: Duration::from_secs(30),
            batch_lock_timeout: Duration::from_millis(200),
            lock_timeout: Duration::from_millis(50),
            cutover_attempts: 30,
            cutover_max_backoff: Duration::from_secs(2),
            max_load: None,
            max_replication_lag: None,
            keep_throughput: None,
            settle: None,
            verify_chunk: 20_000,
            verify_rounds: 3,
            reconnect_attempts: 6,
            dual_read_timeout: Duration::from_secs(600),
            undo_online_steps: false,
            policy_pin: None,
        }
    }
}

/// What the executor reports as it goes (for progress bars and logs).
#[derive(Debug, Clone)]
pub enum Event {
    PhaseStarted(Phase),
    PhaseDone(Phase, Duration),
    Note(String),
    Warning(String),
    Backfill {
        table: String,
        done: i64,
        total: i64,
        rows_per_sec: f64,
    },
    Verify {
        table: String,
        rows: i64,
        mismatched_ranges: usize,
    },
    Cutover {
        attempt: u32,
        ok: bool,
        took: Duration,
        /// Of `took`, the time spent waiting for the locks (all of it when `ok` is false and
        /// the locks were not granted).
        lock_wait: Duration,
        detail: String,
    },
    Waiting(String),
    /// The executor waited `slept` before going on, for `reason`: emitted after each wait of
    /// one check (the gate's every second, the copy's throttle every half second), with
    /// `first` set on the first wait of a run of them, so a run counts once.
    Waited {
        reason: WaitReason,
        slept: Duration,
        first: bool,
    },
    /// `--keep-throughput`, once a window: the server's transaction rate over its rate with
    /// tandem idle (`ratio`), and the share of the time the work now rests.
    Paced {
        ratio: f64,
        rest: f64,
    },
    /// The largest replay lag of the replicas, as read for `--max-replication-lag` (only
    /// then: without the option the executor does not look).
    ReplicationLag(Duration),
    /// The log method's drain, before the forward trigger takes over: entries the writes
    /// logged that it has not taken yet (read about once a second).
    LogBacklog {
        table: String,
        entries: i64,
    },
    /// The audit log's size and head after `after` (a phase, `rollback`, `finalize`): what an
    /// operator signs and keeps outside the database (`apply --checkpoint-dir`).
    AuditHead {
        after: String,
        database: gates::envelope::DatabaseId,
        size: i64,
        head: String,
    },
}

/// Why the executor waited ([`Event::Waited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The gate asked to wait before this phase started.
    Gate(Phase),
    /// The copy is paused by `tandem pause`.
    Paused,
    /// The copy waits while more sessions than `--max-load` are active.
    Load,
    /// The copy waits while a replica lags more than `--max-replication-lag`.
    ReplicationLag,
    /// The copy, the drain or verify rests to keep the server's throughput
    /// (`--keep-throughput`).
    Throughput,
}

impl WaitReason {
    /// A label value for metrics: `gate`, `paused`, `load`, `replication_lag` or
    /// `throughput`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Gate(_) => "gate",
            WaitReason::Paused => "paused",
            WaitReason::Load => "load",
            WaitReason::ReplicationLag => "replication_lag",
            WaitReason::Throughput => "throughput",
        }
    }
}

pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// One executor, holding migration `id`'s lock.
pub struct Executor {
    /// Where the database is, and how to reach it (TLS settings included).
    pub(crate) config: Endpoint,
    pub(crate) client: Client,
    pub(crate) opts: Options,
    gate: Box<dyn Gate>,
    pub(crate) hold: Box<dyn CutoverHold>,
    pub(crate) observe: Observer,
    pub(crate) id: i64,
    /// How the copy, the drain and verify rest between chunks.
    pub(crate) pace: pace::Pace,
}

/// The `search_path` of every session tandem opens.
pub const PINNED_SEARCH_PATH: &str = "SET search_path = pg_catalog, pg_temp";

pub(crate) async fn connect(config: &Endpoint) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = pgtls::connect(config).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // If this process dies while the server waits (for a lock, for CREATE INDEX
    // CONCURRENTLY), the server notices within a second and ends the session, releasing the
    // migration's lock for the next executor (PostgreSQL 14+; ignored where unsupported).
    let _ = client
        .batch_execute("SET client_connection_check_interval = '1s'")
        .await;
    // Every name tandem writes resolves in pg_catalog first and nowhere an application role
    // can create objects: a `public.hashtextextended(text, integer)` would otherwise be a
    // better match than the built-in for a call with an int4 argument. The plan's own
    // statements run under the database's default (`online.rs`, `prepare/table.rs`).
    client.batch_execute(PINNED_SEARCH_PATH).await?;
    tune_session(&client).await;
    Ok(client)
}

/// Two settings of tandem's own sessions, for the clients' commits, each set in a `DO` block
/// that swallows a refusal (so it does not land in the server's log at every connection):
///
/// - **`wal_compression = lz4`**, where the server leaves it off and this role may set it (a
///   superuser, or `GRANT SET ON PARAMETER wal_compression`). An index build WAL-logs every
///   page it writes, as whole pages: a 3,000,000-row key index wrote 58 MB of WAL
///   uncompressed and 33 MB with lz4, in the same time (BENCHMARKS.md, 2026-12-07). Every
///   client commit waits for the WAL before it to be flushed, tandem's included. A server
///   built without lz4 gets nothing.
/// - **`backend_flush_after = 256kB`**, where the server leaves it at 0 (the default on
///   Linux; any role may set it; platforms without `sync_file_range` refuse it). The copy
///   writes the shadow's pages as fast as one core goes; left to the kernel, they pile up as
///   dirty page cache (gigabytes, under the default `dirty_background_ratio`) and go to disk
///   in bursts that the clients' WAL flushes queue behind: every client's `COMMIT` stalled
///   together for 0.4–1.4 s. Asking for the writeback of every 256 kB written keeps the disk's
///   queue short: at pgbench scale 100, the slowest client transaction 369–503 ms instead of
///   1,229–1,658 ms, in alternating runs (BENCHMARKS.md, 2026-12-07, later).
async fn tune_session(client: &Client) {
    let _ = client
        .batch_execute(
            "DO $$ BEGIN
               BEGIN
                 IF current_setting('wal_compression') = 'off' THEN SET wal_compression = lz4; END IF;
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
               BEGIN
                 IF current_setting('backend_flush_after') = '0' THEN SET backend_flush_after = '256kB'; END IF;
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
             END $$",
        )
        .await;
}

/// The approval action that covers starting `phase`.
fn phase_action(phase: Phase) -> Option<Action> {
    use gates::policy::Phase as P;
    Some(Action::Phase(match phase {
        Phase::Prepare => P::Prepare,
        Phase::DualWrite => P::DualWrite,
        Phase::Backfill => P::Backfill,
        Phase::Verify => P::Verify,
        Phase::Cutover => P::Cutover,
        _ => return None,
    }))
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl Executor {
    /// Connect, install or upgrade the bookkeeping, and take migration `id`'s lock.
    /// `config`: a `pgtls::Endpoint` (TLS settings with it), or a bare tokio-postgres
    /// config, whose own `ssl_mode` then holds.
    pub async fn open(
        config: impl Into<Endpoint>,
        id: i64,
        opts: Options,
        gate: Box<dyn Gate>,
        observe: Observer,
    ) -> Result<Executor, EngineError> {
        let mut config: Endpoint = config.into();
        config.application_name(format!("tandem apply {id} (pid {})", std::process::id()));
        let mut client = connect(&config)
            .await
            .map_err(|error| EngineError::Unreachable {
                server: crate::error::server_of(&config),
                error,
            })?;
        // A database tandem never touched has no migrations: say so, and write nothing.
        if !state::installed(&client).await? {
            return Err(EngineError::UnknownMigration(id));
        }
        state::install(&mut client).await?;
        Migration::load(&client, id).await?;
        let (opts, lowered) = deadlock::bound_batches(&client, opts).await?;
        let pace = pace::Pace::new(opts.batch_pause, opts.keep_throughput);
        let ex = Executor {
            config,
            client,
            opts,
            gate,
            hold: Box::new(NoHold),
            observe,
            id,
            pace,
        };
        ex.lock().await?;
        if let Some(deadlock_timeout) = lowered {
            ex.emit(Event::Note(format!(
                "deadlock_timeout is {} ms: a batch waits at most {} ms for a lock, so that it, not an application, gives up when the two wait for each other",
                deadlock_timeout.as_millis(),
                ex.opts.batch_lock_timeout.as_millis()
            )));
        }
        if ex.opts.max_load.is_some() {
            ex.warn_if_load_unseen().await;
        }
        Ok(ex)
    }

    /// `--max-load` counts the sessions running a statement; a role without
    /// pg_read_all_stats sees no other role's sessions' state, so the count would be short.
    async fn warn_if_load_unseen(&self) {
        let sees = self
            .client
            .query_one(
                "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
                   FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(true);
        if !sees {
            self.emit(Event::Warning(
                "--max-load counts only the sessions tandem's role can see: other roles' sessions show no state to it; grant it pg_read_all_stats to count them all".into(),
            ));
        }
    }

    /// Give the migration's lock back (it also goes with the connection).
    pub async fn close(self) {
        let _ = self
            .client
            .execute(
                "SELECT pg_advisory_unlock($1, $2::int4)",
                &[&EXECUTOR_LOCK_CLASS, &self.key()],
            )
            .await;
    }

    /// Replace the cutover hook (a proxy coordinator).
    pub fn with_hold(mut self, hold: Box<dyn CutoverHold>) -> Executor {
        self.hold = hold;
        self
    }

    /// The key of the migration's advisory lock: its id, which the bookkeeping keeps below
    /// 2^31 (migrations/0005) so that no two migrations share one.
    pub(crate) fn key(&self) -> i32 {
        state::lock_key(self.id)
    }

    async fn lock(&self) -> Result<(), EngineError> {
        // A session whose client just exited keeps its locks for a few milliseconds more:
        // try for a moment before saying another process holds the migration.
        for attempt in 0..8 {
            let got: bool = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2::int4)",
                    &[&EXECUTOR_LOCK_CLASS, &self.key()],
                )
                .await
                .map_err(EngineError::sql("take the migration's lock"))?
                .get(0);
            if got {
                state::set_waiting(&self.client, self.id, None).await;
                return Ok(());
            }
            if attempt < 7 {
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(3))).await;
            }
        }
        let holder = self
            .client
            .query_opt(
                "SELECT format('server pid %s, %s, connected %s ago from %s', a.pid,
                               coalesce(nullif(a.application_name, ''), 'no application name'),
                               date_trunc('second', now() - a.backend_start),
                               coalesce(host(a.client_addr), 'a local socket'))
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.classid = $1::int4::oid
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.objid = $2::int4::oid AND l.objsubid = 2 AND l.granted
                  LIMIT 1",
                &[&EXECUTOR_LOCK_CLASS, &self.key()],
            )
            .await
            .map_err(EngineError::sql("find who holds the migration's lock"))?
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_else(|| "a process that just finished".into());
        Err(EngineError::Busy {
            id: self.id,
            holder,
        })
    }

    pub(crate) fn emit(&self, e: Event) {
        (self.observe)(&e);
    }

    /// Run a connection-sensitive operation; when the connection (or the server) goes away,
    /// reconnect with backoff, take the lock again and run it again from the saved state.
    async fn resilient<T, F>(&mut self, what: &str, mut op: F) -> Result<T, EngineError>
    where
        F: for<'a> FnMut(&'a mut Executor) -> state::BoxFut<'a, Result<T, EngineError>>,
    {
        let mut failures = 0u32;
        loop {
            match op(self).await {
                Err(e) if e.is_connection() => {
                    failures += 1;
                    if failures > self.opts.reconnect_attempts {
                        return Err(EngineError::Connection {
                            context: what.to_string(),
                            attempts: failures,
                        });
                    }
                    let wait = Duration::from_millis(250u64 << failures.min(6));
                    self.emit(Event::Warning(format!(
                        "lost the connection while {what} ({e}); reconnecting in {}",
                        ms(wait)
                    )));
                    tokio::time::sleep(wait).await;
                    match connect(&self.config).await {
                        Ok(c) => {
                            self.client = c;
                            self.lock().await?;
                        }
                        Err(err) => {
                            self.emit(Event::Warning(format!("reconnect failed: {err}")));
                        }
                    }
                }
                other => return other,
            }
        }
    }

    /// Run or resume the phases up to `opts.until` (cutover by default). Returns the phase
    /// the migration is in afterwards.
    pub async fn apply(&mut self) -> Result<Phase, EngineError> {
        self.resilient("applying the migration", |ex| Box::pin(ex.apply_once()))
            .await
    }

    async fn apply_once(&mut self) -> Result<Phase, EngineError> {
        loop {
            let m = Migration::load(&self.client, self.id).await?;
            match m.phase {
                Phase::RollbackWindow => {
                    swap::after_cutover(self, &m).await?;
                    return Ok(m.phase);
                }
                p if p.is_terminal() => {
                    return Err(EngineError::refused(
                        format!("migration {} is {p}", self.id),
                        "there is nothing left to apply; `tandem status` shows its history",
                    ))
                }
                _ => {}
            }
            if m.phase >= self.opts.until {
                return Ok(m.phase);
            }
            let Some(next) = m.phase.next() else {
                return Ok(m.phase);
            };
            self.gate(&m, next).await?;
            self.emit(Event::PhaseStarted(next));
            state::record(
                &self.client,
                m.id,
                next.as_str(),
                "started",
                serde_json::Value::Null,
            )
            .await?;
            if matches!(next, Phase::Prepare | Phase::DualWrite)
                && self.opts.until >= Phase::Backfill
                && self.pace.needs_baseline()
                && m.plan
                    .steps
                    .iter()
                    .any(|s| s.strategy == planner::plan::Strategy::Shadow)
            {
                // The load alone, before any trigger of tandem's is on the table.
                self.pace
                    .measure(&self.client, &self.observe, false)
                    .await?;
            }
            let started = Instant::now();
            match next {
                Phase::Prepare => {
                    prepare::run(self, &m).await?;
                    if !m
                        .plan
                        .steps
                        .iter()
                        .any(|s| s.strategy == planner::plan::Strategy::Shadow)
                    {
                        // Only online steps, all run: nothing to swap, no window.
                        state::set_phase(
                            &self.client,
                            m.id,
                            Phase::Finalized,
                            json!({ "reason": "every step was online" }),
                        )
                        .await?;
                        self.emit(Event::PhaseDone(next, started.elapsed()));
                        self.emit_audit_head(next.as_str()).await;
                        return Ok(Phase::Finalized);
                    }
                }
                Phase::DualWrite => prepare::dual_write(self, &m).await?,
                Phase::Backfill => backfill::run(self, &m).await?,
                Phase::Verify => verify::run(self, &m).await?,
                Phase::Cutover => swap::cutover(self, &m).await?,
                _ => unreachable!("apply runs prepare..cutover"),
            }
            self.emit(Event::PhaseDone(next, started.elapsed()));
            self.emit_audit_head(next.as_str()).await;
        }
    }

    /// Tell the observer the audit log's head (best effort: a failed read only skips it).
    pub(crate) async fn emit_audit_head(&self, after: &str) {
        let read = async {
            let database = crate::state::identity::ensure(&self.client).await?;
            let (size, head) = crate::state::audit::head(&self.client).await?;
            Ok::<_, EngineError>((database, size, head))
        };
        match read.await {
            Ok((database, size, head)) => self.emit(Event::AuditHead {
                after: after.to_string(),
                database,
                size,
                head,
            }),
            Err(e) => self.emit(Event::Warning(format!(
                "could not read the audit log's head after {after} ({e})"
            ))),
        }
    }

    /// `tandem rollback`: swap the old table back in, within the window.
    ///
    /// Before cutover it abandons the migration instead (the table was never swapped): the
    /// shadow and the triggers are dropped. Returns true then.
    pub async fn rollback(&mut self) -> Result<bool, EngineError> {
        let abandoned = self
            .resilient("rolling back", |ex| Box::pin(swap::rollback(ex)))
            .await?;
        self.emit_audit_head("rollback").await;
        Ok(abandoned)
    }

    /// `tandem finalize`: drop the reverse triggers and the old table.
    pub async fn finalize(&mut self) -> Result<(), EngineError> {
        self.resilient("finalizing", |ex| Box::pin(swap::finalize(ex)))
            .await?;
        self.emit_audit_head("finalize").await;
        Ok(())
    }

    /// `tandem finalize --expired`, for one migration: finalize it if it is in its rollback
    /// window and the window has ended. Checked under the migration's lock, which `extend`
    /// takes too, so a window extended meanwhile is left alone. Returns whether it finalized.
    pub async fn finalize_if_expired(&mut self) -> Result<bool, EngineError> {
        if !state::window_ended(&self.client, self.id).await? {
            return Ok(false);
        }
        self.finalize().await?;
        Ok(true)
    }

    /// `tandem extend`: move the end of the rollback window `by` later than it is now set,
    /// recorded as an event in the same transaction. Only within the window: before cutover
    /// there is none yet, after finalize or rollback none is left; refused then, with
    /// nothing changed.
    pub async fn extend(&mut self, by: Duration) -> Result<state::Extended, EngineError> {
        self.resilient("extending the rollback window", |ex| {
            Box::pin(ex.extend_once(by))
        })
        .await
    }

    async fn extend_once(&mut self, by: Duration) -> Result<state::Extended, EngineError> {
        let id = self.id;
        let m = Migration::load(&self.client, id).await?;
        if m.phase == Phase::RollbackWindow {
            self.approve(&m, Action::Extend).await?;
        }
        match m.phase {
            Phase::RollbackWindow => {}
            p if p < Phase::RollbackWindow => {
                return Err(EngineError::refused(
                    format!("migration {id} is in phase {p}: its rollback window starts at cutover, so there is none to extend yet"),
                    format!("nothing was changed; `tandem submit --rollback-window` sets its length, `tandem apply {id}` runs it to cutover"),
                ))
            }
            p => {
                return Err(EngineError::refused(
                    format!("migration {id} is {p}: its rollback window is over"),
                    format!("nothing was changed; `tandem status {id}` shows its history"),
                ))
            }
        }
        let tx = self
            .client
            .transaction()
            .await
            .map_err(EngineError::sql("begin the extension"))?;
        let extended = state::extend_window(&tx, id, by).await?;
        state::record(
            &tx,
            id,
            Phase::RollbackWindow.as_str(),
            "extended",
            json!({ "by_secs": by.as_secs(), "from": extended.from, "to": extended.to }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(EngineError::sql("commit the extension"))?;
        Ok(extended)
    }

    /// Sessions of other clients running a statement now.
    pub(crate) async fn active_sessions(&self) -> Result<u32, EngineError> {
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE state = 'active' AND backend_type = 'client backend'
                    AND pid <> pg_backend_pid() AND application_name NOT LIKE 'tandem %'",
                &[],
            )
            .await
            .map_err(EngineError::sql("read the database load"))?
            .get(0);
        Ok(n as u32)
    }

    /// Pass the approval gate for `action` (recorded in the audit log; exit 4 when refused).
    pub(crate) async fn approve(&self, m: &Migration, action: Action) -> Result<(), EngineError> {
        crate::approval::check(&self.client, m, action, self.opts.policy_pin.as_deref())
            .await
            .map(|_| ())
    }

    /// Pass the gates before `phase` starts: the approvals first (a refusal stops), then the
    /// others: wait while one asks to wait, stop when one refuses.
    async fn gate(&self, m: &Migration, phase: Phase) -> Result<(), EngineError> {
        if let Some(action) = phase_action(phase) {
            self.approve(m, action).await?;
        }
        let mut first = true;
        loop {
            let active = self.active_sessions().await?;
            let ctx = Context {
                migration: m.id,
                plan_sha256: &m.plan_sha256,
                phase: phase.as_str(),
                active_sessions: active,
            };
            match self.gate.check(&ctx) {
                Ok(()) => {
                    state::set_waiting(&self.client, m.id, None).await;
                    return Ok(());
                }
                Err(refusal) if refusal.retry => {
                    let what = format!("gate before {phase}: {}", refusal.reason);
                    if first {
                        // Each run of waits is one audit entry.
                        crate::state::audit::append(
                            &self.client,
                            crate::state::audit::Record {
                                migration: Some(m.id),
                                kind: "gate",
                                phase: Some(phase.as_str()),
                                event: "waiting",
                                detail: json!({ "reason": refusal.reason }),
                                key: None,
                            },
                        )
                        .await?;
                    }
                    state::set_waiting(&self.client, m.id, Some(&what)).await;
                    self.emit(Event::Waiting(what));
                    let slept = Duration::from_secs(1);
                    tokio::time::sleep(slept).await;
                    self.emit(Event::Waited {
                        reason: WaitReason::Gate(phase),
                        slept,
                        first,
                    });
                    first = false;
                }
                Err(refusal) => {
                    state::record(
                        &self.client,
                        m.id,
                        phase.as_str(),
                        "refused",
                        json!({ "reason": refusal.reason }),
                    )
                    .await?;
                    return Err(EngineError::Gate {
                        phase: phase.to_string(),
                        refusal,
                    });
                }
            }
        }
    }

    /// Wait while the migration is paused, the load is above the limit or a replica lags.
    /// Says what it waits for in `status`. Returns quickly when none applies.
    pub(crate) async fn throttle(&self, paused: bool) -> Result<(), EngineError> {
        let mut paused = paused;
        // The reason of the previous wait, so a run of waits for one reason counts once.
        let mut previous = None;
        loop {
            let mut why = None;
            if paused {
                why = Some((
                    WaitReason::Paused,
                    "paused by `tandem pause`; `tandem resume` continues".to_string(),
                ));
            } else if let Some(max) = self.opts.max_load {
                let active = self.active_sessions().await?;
                if active > max {
                    why = Some((
                        WaitReason::Load,
                        format!(
                            "database load: {active} active sessions, above the limit of {max}"
                        ),
                    ));
                }
            }
            if why.is_none() {
                if let Some(max) = self.opts.max_replication_lag {
                    let lag: Option<f64> = self
                        .client
                        .query_one(
                            "SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_stat_replication",
                            &[],
                        )
                        .await
                        .map_err(EngineError::sql("read the replication lag"))?
                        .get(0);
                    if let Some(lag) = lag.filter(|l| l.is_finite() && *l >= 0.0) {
                        self.emit(Event::ReplicationLag(Duration::from_secs_f64(lag)));
                    }
                    if let Some(lag) = lag.filter(|l| *l > max.as_secs_f64()) {
                        why = Some((
                            WaitReason::ReplicationLag,
                            format!(
                                "replication lag {lag:.1}s, above the limit of {:.1}s",
                                max.as_secs_f64()
                            ),
                        ));
                    }
                }
            }
            match why {
                None => {
                    state::set_waiting(&self.client, self.id, None).await;
                    return Ok(());
                }
                Some((reason, w)) => {
                    state::set_waiting(&self.client, self.id, Some(&w)).await;
                    self.emit(Event::Waiting(w));
                    let slept = Duration::from_millis(500);
                    tokio::time::sleep(slept).await;
                    self.emit(Event::Waited {
                        reason,
                        slept,
                        first: previous != Some(reason),
                    });
                    previous = Some(reason);
                    paused = Migration::load(&self.client, self.id).await?.paused;
                }
            }
        }
    }

    /// The stored specs of the migration's shadow tables, in step order.
    pub(crate) async fn specs(&self) -> Result<Vec<TableSpec>, EngineError> {
        let rows = self
            .client
            .query(
                "SELECT spec::text FROM tandem.shadow_tables WHERE migration_id = $1 ORDER BY step",
                &[&self.id],
            )
            .await
            .map_err(EngineError::sql("read the shadow tables"))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| {
                    EngineError::refused(
                        format!(
                            "migration {}'s stored table spec cannot be read ({e})",
                            self.id
                        ),
                        "use the tandem version that started it",
                    )
                })
            })
            .collect()
    }

    /// Run `statements` in one transaction under the DDL lock timeout, retrying with capped,
    /// jittered backoff while a lock is not granted in time. `phase`, when given, is recorded
    /// in the same transaction after the statements.
    pub(crate) async fn ddl_retry(
        &mut self,
        what: &str,
        statements: &[String],
        phase: Option<Phase>,
    ) -> Result<(), EngineError> {
        let check_deadlocks = swap::locks::can_check_deadlocks(&self.client).await;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self
                .ddl_once(what, statements, phase, check_deadlocks)
                .await;
            match result {
                Err(EngineError::Sql { error: source, .. })
                    if is_lock_timeout(&source) && attempt < self.opts.cutover_attempts =>
                {
                    let wait = backoff(attempt, self.opts.cutover_max_backoff);
                    let w = format!(
                        "a lock for {what} (attempt {attempt}); retrying in {}",
                        ms(wait)
                    );
                    state::set_waiting(&self.client, self.id, Some(&w)).await;
                    self.emit(Event::Waiting(w));
                    tokio::time::sleep(wait).await;
                }
                Err(EngineError::Sql { error, .. }) if is_lock_timeout(&error) => {
                    let vacuums = autovacuums(&self.client).await;
                    let why = if vacuums.is_empty() && check_deadlocks {
                        "each time, sessions held locks on what it changes longer than that \
                         (pg_locks and pg_stat_activity show who)"
                            .to_string()
                    } else if vacuums.is_empty() {
                        // A role without pg_read_all_stats does not see the server's workers.
                        "each time, sessions held locks on what it changes longer than that \
                         (pg_locks and pg_stat_activity show who). If one is an autovacuum, \
                         tandem's role may not set deadlock_timeout, so its attempts cannot \
                         cancel it as a waiter does: grant that (`GRANT SET ON PARAMETER \
                         deadlock_timeout TO <role>`, PostgreSQL 15+), or wait for the autovacuum"
                            .to_string()
                    } else if check_deadlocks {
                        format!(
                            "an autovacuum that is not cancelled ({}) holds what it changes",
                            vacuums.join("; ")
                        )
                    } else {
                        format!(
                            "an autovacuum ({}) holds what it changes, and tandem's role may not \
                             set deadlock_timeout, so its attempts cannot cancel it as a waiter \
                             does: grant that (`GRANT SET ON PARAMETER deadlock_timeout TO <role>`, \
                             PostgreSQL 15+), or wait for the autovacuum",
                            vacuums.join("; ")
                        )
                    };
                    return Err(EngineError::Refused {
                        reason: format!(
                            "{what} gave up after {attempt} attempts, each waiting at most {} \
                             for a lock, and changed nothing: {why}",
                            ms(self.opts.lock_timeout)
                        ),
                        remedy: "run the same command again".into(),
                    });
                }
                other => return other,
            }
        }
    }

    /// One attempt of [`Executor::ddl_retry`]. With `check_deadlocks` (tandem may set
    /// `deadlock_timeout`), a statement that has waited [`swap::locks::DEADLOCK_CHECK`] for a
    /// lock runs PostgreSQL's deadlock check, which also cancels an autovacuum worker that holds
    /// the lock (what any waiter gets after `deadlock_timeout`, 1 s by default, always longer
    /// than the attempt's `lock_timeout`): after a cutover the new table's first autovacuum
    /// can run for minutes, and without this every attempt of a finalize or an abandon timed
    /// out behind it. An anti-wraparound autovacuum is not cancelled: the attempts wait it out.
    async fn ddl_once(
        &mut self,
        what: &str,
        statements: &[String],
        phase: Option<Phase>,
        check_deadlocks: bool,
    ) -> Result<(), EngineError> {
        let id = self.id;
        let lock_timeout = ms(self.opts.lock_timeout);
        let tx = self
            .client
            .transaction()
            .await
            .map_err(EngineError::sql(format!("begin {what}")))?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{lock_timeout}'; SET LOCAL search_path = pg_catalog, pg_temp"
        ))
        .await
        .map_err(EngineError::sql(format!("set up {what}")))?;
        if check_deadlocks {
            tx.batch_execute(&format!(
                "SET LOCAL deadlock_timeout = '{}'",
                ms(swap::locks::DEADLOCK_CHECK)
            ))
            .await
            .map_err(EngineError::sql(format!("set up {what}")))?;
        }
        // One round trip: the locks these statements take are held from the first to the
        // commit (a partitioned table's triggers are hundreds of statements).
        if !statements.is_empty() {
            tx.batch_execute(&statements.join(";\n"))
                .await
                .map_err(EngineError::sql(what.to_string()))?;
        }
        if let Some(p) = phase {
            state::set_phase(&tx, id, p, serde_json::Value::Null).await?;
            failpoint(p.as_str()).await;
        }
        tx.commit()
            .await
            .map_err(EngineError::sql(what.to_string()))
    }
}

/// The autovacuum workers running in this database: `pid N on TABLE`, and whether one runs
/// to prevent wraparound (those are never cancelled). Empty when none, or when this role
/// cannot see them.
async fn autovacuums(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT format('pid %s on %s%s', p.pid, p.relid::regclass,
                    CASE WHEN a.query LIKE '%to prevent wraparound%' THEN ', to prevent wraparound' ELSE '' END)
               FROM pg_catalog.pg_stat_progress_vacuum p
               JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid
              WHERE a.backend_type = 'autovacuum worker' AND p.datname = current_database()
              ORDER BY p.pid",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

pub(crate) fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    matches!(e.code().map(|c| c.code()), Some("55P03") | Some("40P01"))
}

/// Capped exponential backoff with full jitter: `[base/2, base)` with base = 20 ms * 2^n.
pub(crate) fn backoff(attempt: u32, cap: Duration) -> Duration {
    use rand::Rng;
    let base = Duration::from_millis(20u64 << attempt.min(10)).min(cap);
    let half = base / 2;
    half + Duration::from_micros(rand::thread_rng().gen_range(0..=half.as_micros() as u64))
}

/// A point where a test can stop the executor to kill it (`TANDEM_FAILPOINT=name`): the
/// executor prints `failpoint NAME reached` on stderr and waits forever, inside whatever
/// transaction is open there. Names: prepare, dual_write, backfill (inside the second batch),
/// switched (the log method's forward trigger just installed, before the last drain), verify,
/// cutover (inside the swap, after the renames), after_cutover, rollback, finalized.
/// Unset in production, where this is one environment lookup per call.
pub async fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var("TANDEM_FAILPOINT").ok());
    if point.as_deref() == Some(name) {
        eprintln!("failpoint {name} reached");
        std::future::pending::<()>().await;
    }
}
