//! Dual-read drift detection: a sample of the reads clients make on migrating tables is run
//! again, inside one snapshot, against the other table (the shadow before cutover, the old
//! table in the rollback window), and any difference is recorded for `verify` to see.
//!
//! The client's path pays an atomic load and a random draw ([`Mirror::wants`]) and, for the
//! sampled few, a byte search and a `try_send` ([`Mirror::offer`]); parsing, rewriting and
//! running happen on the mirror's own tasks and connections, with tandem's credentials:
//!
//! - the *keeper* (one connection) loads tandem.mirror_targets (`registry`) and adds the
//!   counters to tandem.dual_reads every second (`record`);
//! - `mirror_workers` *workers* (one connection each) take samples from a bounded queue,
//!   classify and rewrite them (`classify`), compare (`compare`) and write drift rows.
//!
//! Nothing a worker does reaches a client: a failed comparison is counted as skipped. Every
//! task ends when the last clone of the [`Mirror`] is dropped (the queue and the stop channel
//! close); the keeper flushes its counters one last time.

mod classify;
mod compare;
mod record;
mod registry;
mod volatile;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::config::FileConfig;
use crate::metrics::Metrics;
use crate::upstream::Upstream;
use classify::{classify, mentions};
use record::{Counters, DriftLimit};
use registry::{GroupKey, Target};

/// How often the keeper adds the counters to tandem.dual_reads.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the keeper reloads the targets without being told.
const RELOAD_EVERY: Duration = Duration::from_secs(5);
/// The longest a mirror read waits for a lock: never queue behind a cutover's.
const LOCK_TIMEOUT_MS: u64 = 200;
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const APPLICATION_NAME: &str = "tandem proxy mirror";

/// One client read, as the client sent it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sql: Arc<str>,
    /// The role the client's session authenticated as: the client's statement runs as it
    /// (`SET ROLE`), so the mirror never runs what the client could not.
    pub role: Arc<str>,
    /// Parameter type OIDs from the client's Parse (0 = let the server infer).
    pub param_types: Vec<u32>,
    /// Parameter values as the client sent them in Bind (None = NULL).
    pub params: Vec<Option<Bytes>>,
    /// Bind's parameter format codes as sent: empty = all text, one = for all, else per parameter.
    pub param_formats: Vec<i16>,
}

#[derive(Clone)]
pub struct Mirror {
    inner: Option<Arc<Handle>>,
}

/// What the clones of a running mirror share; dropping the last one stops the tasks.
struct Handle {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Sample>,
    /// Never sent on: its drop is the stop signal.
    _stop: watch::Sender<()>,
    /// The tasks end on the stop signal; kept so that they are owned, not leaked.
    _tasks: Vec<JoinHandle<()>>,
}

/// State the tasks and the client's path share.
struct Shared {
    upstream: Upstream,
    password: Option<String>,
    proxy_id: String,
    /// `mirror_sample` as f64 bits (a reload may change it).
    sample: std::sync::atomic::AtomicU64,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// True iff there is at least one target.
    active: AtomicBool,
    targets: RwLock<Arc<Vec<Target>>>,
    counters: Counters,
    drift_limit: DriftLimit,
    reload: Notify,
    /// Pause between two comparisons of one worker (from `mirror_rate`), if limited.
    pace: Option<Duration>,
    /// The proxy's traffic: a comparison counts as a transaction on the upstream, so a
    /// cutover hold waits for running ones and new ones wait for the release.
    traffic: std::sync::OnceLock<Arc<crate::traffic::Traffic>>,
}

impl Shared {
    fn targets(&self) -> Arc<Vec<Target>> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_targets(&self, targets: Vec<Target>) {
        let changed = {
            let old = self.targets();
            old.len() != targets.len()
                || old.iter().zip(&targets).any(|(a, b)| {
                    (a.migration_id, &a.schema, &a.table, &a.view, a.against)
                        != (b.migration_id, &b.schema, &b.table, &b.view, b.against)
                })
        };
        if changed {
            let tables: Vec<String> = targets
                .iter()
                .map(|t| {
                    format!(
                        "{}.{} (migration {}, against {})",
                        t.schema, t.table, t.migration_id, t.against
                    )
                })
                .collect();
            tracing::info!(tables = ?tables, "dual reads: the tables to compare changed");
        }
        self.active.store(!targets.is_empty(), Relaxed);
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(targets);
    }

    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        let config = self
            .upstream
            .pg_config(self.password.as_deref(), APPLICATION_NAME);
        let (client, connection) = pgtls::connect(&config).await?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a mirror connection ended");
            }
        });
        Ok(Conn { client, task })
    }
}

/// A connection and the task that drives it.
struct Conn {
    client: Client,
    task: JoinHandle<()>,
}

impl Conn {
    async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

impl Mirror {
    /// No mirroring (sample fraction 0, or tests).
    pub fn disabled() -> Mirror {
        Mirror { inner: None }
    }

    /// Start the registry of live migrations, the workers and the counter flusher. Call it
    /// inside the Tokio runtime.
    pub fn start(
        upstream: Upstream,
        password: Option<String>,
        proxy_id: String,
        config: &FileConfig,
        metrics: Arc<Metrics>,
    ) -> Mirror {
        if config.mirror_sample <= 0.0 || config.mirror_workers == 0 {
            tracing::info!("dual reads are off (mirror_sample is 0 or mirror_workers is 0)");
            return Mirror::disabled();
        }
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("dual reads are off: the mirror was started outside the Tokio runtime (a bug in tandem)");
            return Mirror::disabled();
        }
        let shared = Arc::new(Shared {
            upstream,
            password,
            proxy_id,
            sample: std::sync::atomic::AtomicU64::new(config.mirror_sample.to_bits()),
            timeout: config.mirror_timeout(),
            metrics,
            active: AtomicBool::new(false),
            targets: RwLock::new(Arc::new(Vec::new())),
            counters: Counters::default(),
            drift_limit: DriftLimit::default(),
            reload: Notify::new(),
            pace: (config.mirror_rate > 0).then(|| {
                Duration::from_secs_f64(config.mirror_workers as f64 / config.mirror_rate as f64)
            }),
            traffic: std::sync::OnceLock::new(),
        });
        let (queue, receiver) = mpsc::channel(config.mirror_queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let (stop, stopped) = watch::channel(());
        let mut tasks = vec![tokio::spawn(keeper(shared.clone(), stopped.clone()))];
        for n in 0..config.mirror_workers {
            tasks.push(tokio::spawn(worker(
                n,
                shared.clone(),
                receiver.clone(),
                stopped.clone(),
            )));
        }
        Mirror {
            inner: Some(Arc::new(Handle {
                shared,
                queue,
                _stop: stop,
                _tasks: tasks,
            })),
        }
    }

    /// Take part in cutover holds: no comparison runs while the proxy holds its clients.
    pub fn join_holds(&self, traffic: Arc<crate::traffic::Traffic>) {
        if let Some(h) = &self.inner {
            let _ = h.shared.traffic.set(traffic);
        }
    }

    /// The database tandem's mirror connections use: only sessions on it are sampled.
    pub fn database(&self) -> Option<&str> {
        self.inner
            .as_ref()
            .map(|h| h.shared.upstream.database.as_str())
    }

    /// Cheap (an atomic load and a random draw): should the session build a sample now?
    pub fn wants(&self) -> bool {
        let Some(h) = &self.inner else { return false };
        let s = &h.shared;
        let sample = f64::from_bits(s.sample.load(Relaxed));
        s.active.load(Relaxed) && (sample >= 1.0 || rand::random::<f64>() < sample)
    }

    /// A reload's `mirror_sample` (no effect on a disabled mirror: that takes a restart).
    pub fn set_sample(&self, sample: f64) {
        if let Some(h) = &self.inner {
            h.shared.sample.store(sample.to_bits(), Relaxed);
        }
    }

    /// Queue a sample; never blocks, never parses on the caller's path. Full queue: dropped, counted.
    pub fn offer(&self, sample: Sample) {
        let sql = sample.sql.clone();
        self.offer_with(&sql, move || sample);
    }

    /// [`Mirror::offer`], building the sample only when it is queued: a read on a table no
    /// migration touches, or one the full queue would drop, costs a byte search and a count.
    pub fn offer_with(&self, sql: &str, build: impl FnOnce() -> Sample) {
        let Some(h) = &self.inner else { return };
        let targets = h.shared.targets();
        let sql = sql.as_bytes();
        if !targets.iter().any(|t| mentions(sql, t.table.as_bytes())) {
            return;
        }
        match h.queue.try_reserve() {
            Ok(permit) => {
                permit.send(build());
                h.shared.metrics.mirror_sampled.fetch_add(1, Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                h.shared.metrics.mirror_dropped.fetch_add(1, Relaxed);
                let mut groups: Vec<GroupKey> = Vec::new();
                for t in targets.iter().filter(|t| mentions(sql, t.table.as_bytes())) {
                    if !groups.contains(&t.group()) {
                        groups.push(t.group());
                    }
                }
                for g in groups {
                    h.shared.counters.add(g, |c| c.dropped += 1);
                }
            }
            Err(mpsc::error::TrySendError::Closed(())) => {}
        }
    }

    /// The executor said tandem.mirror_targets changed.
    pub fn reload(&self) {
        if let Some(h) = &self.inner {
            h.shared.reload.notify_one();
        }
    }
}

/// Loads the targets and flushes the counters, on its own connection.
async fn keeper(shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::default();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = flush.tick() => {
                if !shared.counters.is_empty() {
                    if let Some(client) = keeper_conn(&shared, &mut conn, &mut backoff).await {
                        if let Err(e) = record::flush(client, &shared.proxy_id, &shared.counters).await {
                            tracing::warn!(error = %chain(&e), "cannot add the dual-read counters to tandem.dual_reads; they are kept and added at the next try");
                        }
                    }
                }
            }
            _ = reload.tick() => load_targets(&shared, &mut conn, &mut backoff).await,
            _ = shared.reload.notified() => {
                load_targets(&shared, &mut conn, &mut backoff).await;
                reload.reset();
            }
        }
    }
    // Stopping: the last counters, if the connection works.
    if !shared.counters.is_empty() {
        if let Some(client) = keeper_conn(&shared, &mut conn, &mut backoff).await {
            if let Err(e) = record::flush(client, &shared.proxy_id, &shared.counters).await {
                tracing::warn!(error = %chain(&e), "the last dual-read counters could not be added to tandem.dual_reads and are lost");
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

async fn load_targets(shared: &Shared, conn: &mut Option<Conn>, backoff: &mut Backoff) {
    let Some(client) = keeper_conn(shared, conn, backoff).await else {
        return;
    };
    match registry::load(client).await {
        Ok(targets) => shared.set_targets(targets),
        Err(e) => tracing::warn!(
            error = %chain(&e),
            "cannot read tandem.mirror_targets; the tables compared stay as they were until the next try (grant tandem's user SELECT on schema tandem)"
        ),
    }
}

/// The keeper's connection, made again when it broke (not before the backoff allows).
async fn keeper_conn<'c>(
    shared: &Shared,
    conn: &'c mut Option<Conn>,
    backoff: &mut Backoff,
) -> Option<&'c Client> {
    if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
        if let Some(c) = conn.take() {
            c.close().await;
        }
    }
    if conn.is_none() {
        if !backoff.ready() {
            return None;
        }
        match shared.connect().await {
            Ok(c) => {
                backoff.succeeded();
                *conn = Some(c);
            }
            Err(e) => {
                let wait = backoff.failed();
                tracing::warn!(
                    upstream = %shared.upstream.describe(),
                    user = %shared.upstream.user,
                    error = %chain(&e),
                    retry_in_ms = wait.as_millis() as u64,
                    "the mirror cannot connect; targets are not refreshed and counters wait in memory until it can (check the upstream and tandem's password_file)"
                );
                return None;
            }
        }
    }
    conn.as_ref().map(|c| &c.client)
}

/// Takes samples off the queue and compares them, on its own connection.
async fn worker(
    n: usize,
    shared: Arc<Shared>,
    queue: Arc<Mutex<mpsc::Receiver<Sample>>>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = Backoff::default();
    loop {
        let connected = tokio::select! {
            _ = stop.changed() => return,
            c = connect_worker(&shared) => c,
        };
        let mut conn = match connected {
            Ok(c) => {
                backoff.succeeded();
                c
            }
            Err(e) => {
                let wait = backoff.failed();
                tracing::warn!(
                    worker = n,
                    upstream = %shared.upstream.describe(),
                    error = %chain(&e),
                    retry_in_ms = wait.as_millis() as u64,
                    "a dual-read worker cannot connect; samples beyond the queue are dropped (and counted) until it can"
                );
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let pace = shared.pace;
        let mut last = Duration::ZERO;
        loop {
            if let Some(pace) = pace {
                // At most `mirror_rate` comparisons a second over all workers: what they cost
                // the server is bounded whatever the sample fraction (the queue then fills and
                // further samples are dropped, cheaply, on the client's path). And a worker
                // rests longer after a slow comparison (see `rest`).
                tokio::time::sleep(rest(pace, last)).await;
            }
            let sample = queue.lock().await.recv().await;
            let Some(sample) = sample else {
                conn.close().await;
                return;
            };
            let traffic = shared.traffic.get().cloned();
            if let Some(t) = &traffic {
                t.begin().await;
            }
            let began = std::time::Instant::now();
            let healthy = process(&shared, &mut conn.client, &sample).await;
            last = began.elapsed();
            if let Some(t) = &traffic {
                t.end();
            }
            if !healthy || conn.client.is_closed() {
                tracing::warn!(
                    worker = n,
                    "a dual-read connection broke or timed out; reconnecting"
                );
                conn.close().await;
                break;
            }
        }
    }
}

/// A rate-limited worker rests `REST_PER_BUSY` times as long as its last comparison took
/// (at least `pace`, at most `REST_MAX`): busy at most a fifth of the time. A comparison is
/// eight round trips to the server; on a saturated machine each waits for a core, so its
/// time grows with the load and the worker backs off on its own. Measured on a 2-core
/// machine under pgbench `-S` with every read sampled: 12 ms a comparison, 91 a second,
/// 15–28 % of the clients' TPS at `mirror_rate = 200` (BENCHMARKS.md §6, 2026-12-07).
const REST_PER_BUSY: u32 = 4;
const REST_MAX: Duration = Duration::from_secs(10);

fn rest(pace: Duration, last: Duration) -> Duration {
    pace.max(last.saturating_mul(REST_PER_BUSY).min(REST_MAX))
}

async fn connect_worker(shared: &Shared) -> Result<Conn, tokio_postgres::Error> {
    let conn = shared.connect().await?;
    let ms = shared.timeout.as_millis().max(1) as u64;
    let lock_ms = LOCK_TIMEOUT_MS.min(ms);
    // Off the client's path, and a worker never holds a transaction open when idle.
    let setup = conn
        .client
        .query(
            include_str!("sql/session.sql"),
            &[&ms.to_string(), &lock_ms.to_string(), &(ms * 2).to_string()],
        )
        .await;
    match setup {
        Ok(_) => Ok(conn),
        Err(e) => {
            conn.close().await;
            Err(e)
        }
    }
}

/// Classify, compare and record one sample. False when the connection is no longer usable.
async fn process(shared: &Shared, client: &mut Client, sample: &Sample) -> bool {
    let metrics = &shared.metrics;
    let targets = shared.targets();
    let classified = classify(&sample.sql, &targets);
    let skip = |reason: &dyn std::fmt::Display, groups: &[GroupKey]| {
        tracing::debug!(reason = %reason, "dual read not compared");
        metrics.mirror_skipped.fetch_add(1, Relaxed);
        for g in groups {
            shared.counters.add(*g, |c| c.skipped += 1);
        }
    };
    let compare = match classified.outcome {
        Ok(c) => c,
        Err(reason) => {
            skip(&reason, &classified.groups);
            return true;
        }
    };
    // Nothing runs before the catalog says no function it calls is volatile.
    match volatile::first_volatile(client, &compare.calls).await {
        Ok(None) => {}
        Ok(Some(name)) => {
            skip(&classify::Skip::Volatile(name), &classified.groups);
            return true;
        }
        Err(e) => {
            metrics.mirror_errors.fetch_add(1, Relaxed);
            skip(
                &format!("the catalog could not be read ({e})"),
                &classified.groups,
            );
            return !client.is_closed();
        }
    }
    // The server's timeout ends a slow read; this one ends a connection that stopped answering.
    let limit = shared.timeout * 2 + Duration::from_secs(1);
    for rewrite in &compare.rewrites {
        let ran = tokio::time::timeout(
            limit,
            compare::compare(
                client,
                sample,
                &rewrite.sql,
                compare.ordered,
                &rewrite.key_columns,
            ),
        )
        .await;
        let group = rewrite.group;
        match ran {
            Ok(Ok(None)) => {
                metrics.mirror_comparisons.fetch_add(1, Relaxed);
                shared.counters.add(group, |c| c.comparisons += 1);
            }
            Ok(Ok(Some(drift))) => {
                metrics.mirror_comparisons.fetch_add(1, Relaxed);
                metrics.mirror_mismatches.fetch_add(1, Relaxed);
                shared.counters.add(group, |c| {
                    c.comparisons += 1;
                    c.mismatches += 1;
                });
                let fingerprint = record::fingerprint(&sample.sql);
                tracing::warn!(
                    migration_id = group.0,
                    against = %group.1,
                    fingerprint = %fingerprint,
                    rows_live = drift.rows_live,
                    rows_other = drift.rows_other,
                    "dual read mismatch: the same read returned different rows from the live and the other table in one snapshot; see tandem.drift, and do not cut over until it is explained"
                );
                if shared.drift_limit.allow() {
                    if let Err(e) =
                        record::write_drift(client, &shared.proxy_id, group, sample, &drift).await
                    {
                        tracing::warn!(
                            migration_id = group.0,
                            error = %chain(&e),
                            "cannot write a row to tandem.drift; the mismatch is still counted in tandem.dual_reads"
                        );
                    }
                }
            }
            Ok(Err(e)) => {
                // Server messages can quote values: debug only.
                tracing::debug!(migration_id = group.0, error = %chain(&e), "dual read not compared");
                metrics.mirror_skipped.fetch_add(1, Relaxed);
                if !matches!(e, compare::CompareError::TooLarge) {
                    metrics.mirror_errors.fetch_add(1, Relaxed);
                }
                shared.counters.add(group, |c| c.skipped += 1);
            }
            Err(_) => {
                metrics.mirror_skipped.fetch_add(1, Relaxed);
                metrics.mirror_errors.fetch_add(1, Relaxed);
                shared.counters.add(group, |c| c.skipped += 1);
                return false;
            }
        }
    }
    true
}

/// Capped, jittered exponential backoff.
struct Backoff {
    next: Duration,
    not_before: Option<tokio::time::Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_MIN,
            not_before: None,
        }
    }
}

impl Backoff {
    /// Record a failure; how long to wait before the next try.
    fn failed(&mut self) -> Duration {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let wait = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        self.not_before = Some(tokio::time::Instant::now() + wait);
        wait
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    fn ready(&self) -> bool {
        self.not_before
            .is_none_or(|t| tokio::time::Instant::now() >= t)
    }
}

/// An error and its sources, for one log line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_rests_four_times_its_last_comparison_within_the_pace_and_the_cap() {
        let ms = Duration::from_millis;
        // A quick comparison: the pace from mirror_rate rules.
        assert_eq!(rest(ms(10), Duration::ZERO), ms(10));
        assert_eq!(rest(ms(10), ms(2)), ms(10));
        // A slow one (a loaded server): four times as long.
        assert_eq!(rest(ms(10), ms(12)), ms(48));
        // A comparison that ran into its timeout does not stop sampling for long.
        assert_eq!(rest(ms(10), Duration::from_secs(11)), REST_MAX);
        assert_eq!(
            rest(Duration::from_secs(20), ms(1)),
            Duration::from_secs(20)
        );
    }
}
