//! The log method after the copy (`shadow/log.rs`): drain the key log into the shadow, build
//! the shadow's other indexes, and hand the shadow to the forward trigger.
//!
//! The forward trigger normally takes over from a drained log: its switch waits out the
//! writers in flight, and in the same transaction the log's last entries are copied and the
//! log dropped, so the trigger never meets a stale shadow row (one that still holds a unique
//! value its row has given up, which would fail a client's write).
//!
//! A drain can fall behind: the writes log more keys a second than it copies (a busy table
//! on a small or saturated machine). Then waiting for the log to empty means waiting
//! forever, and the log grows without bound. The drain watches its backlog ([`Backlog`]);
//! when, over `drain_patience` (30 s by default), it has not shrunk fast enough to be gone
//! within ten more (the writes outpace the drain, or nearly):
//! - the forward trigger takes over at once, without the last drain: from then on every write
//!   copies its own row to the shadow, so the backlog stops growing, and the rest of the log
//!   drains behind the trigger (the batches hold the copy lock, as the direct method's copy
//!   does, so a re-copied row is never one a delete has missed). A stale shadow row may hold
//!   a unique value its row has since given up, and a write that takes the value over would
//!   fail on it: for each unique index besides the key's, this trigger first deletes a shadow
//!   row that holds the written row's values under another key while the table's row of that
//!   key no longer does (`log::evict_new`; the row's key is still in the log, which copies it
//!   again). Once the log is drained, the trigger's function is replaced by the plain one;
//! - when the shadow has an index on which a stale row cannot be found that way (an
//!   expression or exclusion index, or one whose NULLs are not distinct), the drain says so,
//!   naming the index, and goes on: the cutover waits until the writes slow down.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;

use super::backfill::{build_index, is_unique_violation};
use super::{is_lock_timeout, Event, Executor};
use crate::error::EngineError;
use crate::shadow::{self, log, sql, writer, NewIndex, TableSpec};

/// The log method after the copy: the key index (the drain finds rows by it), a drain, the
/// other indexes, then [`switch`]. Each step is skipped when a resumed run finds it done.
pub(super) async fn settle(
    ex: &mut Executor,
    spec: &TableSpec,
) -> Result<Option<super::backfill::VacuumAside>, EngineError> {
    let log = shadow::log_table(spec.migration, spec.table_oid);
    let switched: bool = ex
        .client
        .query_one(
            log::SWITCHED,
            &[
                &spec.table_oid,
                &shadow::forward_trigger(spec.migration).as_str(),
            ],
        )
        .await
        .map_err(EngineError::sql("look for the forward trigger"))?
        .get(0);
    let mut aside = None;
    if !switched {
        // The key's index first: the drain finds rows by it.
        let (keys, others): (Vec<&NewIndex>, Vec<&NewIndex>) =
            spec.new_indexes.iter().partition(|i| i.key);
        for idx in keys {
            build_index(ex, spec, idx, false).await?;
        }
        // Once the last index is built, the shadow's ANALYZE runs beside the drains.
        if others.is_empty() {
            aside = super::backfill::vacuum_aside(ex, spec).await;
        }
        // Behind or not, the other indexes come next: the switch drains again.
        drain(ex, spec, Drain::BeforeSwitch).await?;
        for &idx in &others {
            // A unique index can meet two rows that were never in the table at once (a
            // value moved from one row to another, both copied before the move reached
            // the log's drain): drain and build again before calling it a duplicate.
            let mut tries = 0;
            loop {
                tries += 1;
                match build_index(ex, spec, idx, false).await {
                    Err(EngineError::Refused { .. }) if tries < 3 => {
                        drain(ex, spec, Drain::BeforeSwitch).await?;
                    }
                    other => break other?,
                }
            }
        }
        if aside.is_none() && !others.is_empty() {
            aside = super::backfill::vacuum_aside(ex, spec).await;
        }
        super::failpoint("indexed").await;
        switch(ex, spec).await?;
        super::failpoint("switched").await;
    }
    // The forward trigger took over from a log that was not drained (a drain behind the
    // writes, or a run of an earlier version): drain the rest behind it.
    let exists: bool = ex
        .client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&log.to_string()])
        .await
        .map_err(EngineError::sql("look for the log"))?
        .get(0);
    if exists {
        drain(ex, spec, Drain::AfterSwitch).await?;
        // The shadow holds no stale row now: the forward trigger stops evicting (its
        // function is replaced in place; no lock on the table).
        let f = shadow::forward_function(spec.migration, spec.table_oid);
        ex.ddl_retry(
            "drop the log",
            &[
                format!("DROP TABLE IF EXISTS {log}"),
                sql::trigger_function(spec, sql::Direction::Forward, &f, &[]),
            ],
            None,
        )
        .await?;
    }
    Ok(aside)
}

/// Hand the shadow to the forward trigger: drain the log until it is nearly empty, then, in
/// one transaction, create the forward trigger (its lock waits out the writers in flight and
/// holds new ones back until the commit), stop the log triggers, drain what is left and drop
/// the log. Writers wait only for that last, short drain. A row the new definition rejects
/// among the last entries fails the transaction: the batched drain (which records it as a
/// divergence) runs again, then the switch. A drain that falls behind the writes hands over
/// early, or says why it cannot (the module's comment).
async fn switch(ex: &mut Executor, spec: &TableSpec) -> Result<(), EngineError> {
    let mut statements = super::prepare::forward_trigger(spec, &[]);
    statements.extend(log::disable_triggers(spec));
    statements.extend(log::drain_and_drop(spec));
    let table = spec.table.display_plain();
    let what = format!("hand the shadow of {table} to the forward trigger");
    let mut tries = 0;
    loop {
        if let Drained::Behind(behind) = drain(ex, spec, Drain::BeforeSwitch).await? {
            let others = crate::catalog::table::cross_row_indexes(&ex.client, spec).await?;
            // For each other unique index, the statement that evicts a stale row holding the
            // written row's values (none needed on the key's columns), or `Err` when a
            // stale row cannot be found that way.
            let evictions: Vec<(String, Result<Option<String>, ()>)> = others
                .into_iter()
                .map(|i| {
                    let evict = match &i.unique_columns {
                        Some(cols) if log::is_key(spec, cols) => Ok(None),
                        Some(cols) => log::evict_new(spec, cols).map(Some).ok_or(()),
                        None => Err(()),
                    };
                    (i.name, evict)
                })
                .collect();
            if evictions.iter().all(|(_, e)| e.is_ok()) {
                let evict: Vec<String> = evictions
                    .into_iter()
                    .filter_map(|(_, e)| e.ok().flatten())
                    .collect();
                let also = if evict.is_empty() {
                    String::new()
                } else {
                    " (evicting the shadow's stale rows that hold its unique values first)"
                        .to_string()
                };
                ex.emit(Event::Warning(format!(
                    "{table}: {behind}; the forward trigger takes over now, so that each write \
                     copies its own row to the shadow{also}, and the log's {} entries left \
                     drain behind it",
                    behind.backlog
                )));
                let mut early = super::prepare::forward_trigger(spec, &evict);
                early.extend(log::disable_triggers(spec));
                ex.ddl_retry(&what, &early, None).await?;
                return Ok(());
            }
            // Named as they will be after the cutover (the shadow's are tandem's).
            let blocking: Vec<String> = evictions
                .into_iter()
                .filter(|(_, e)| e.is_err())
                .map(|(name, _)| {
                    spec.new_indexes
                        .iter()
                        .find(|n| n.temp_name.as_str() == name)
                        .map_or(name, |n| n.final_name.to_string())
                })
                .collect();
            ex.emit(Event::Warning(format!(
                "{table}: {behind}. The shadow's {} compares rows in a way a write cannot \
                 check for a stale row (an expression, an exclusion, NULLS NOT DISTINCT, or a \
                 column the copy does not write), so the forward trigger can only take over \
                 from a drained log (a value moved between rows would fail a client's write): \
                 the drain goes on, and the cutover waits until the table's writes slow down",
                blocking.join(", ")
            )));
            continue;
        }
        tries += 1;
        let left: i64 = ex
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}",
                    shadow::log_table(spec.migration, spec.table_oid)
                ),
                &[],
            )
            .await
            .map_err(EngineError::sql("count the log's last entries"))?
            .get(0);
        let t0 = Instant::now();
        match ex.ddl_retry(&what, &statements, None).await {
            Err(EngineError::Sql { error, .. }) if tries < 3 && is_data_error(&error) => {}
            Ok(()) => {
                ex.emit(Event::Note(format!(
                    "{table}: the forward trigger took over, with the log's last {left} entries, in {} ms",
                    t0.elapsed().as_millis()
                )));
                return Ok(());
            }
            other => return other,
        }
    }
}

/// When a drain runs, which decides its batches' size.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// After the copy, before the forward trigger: nothing waits for the copy lock yet, so
    /// batches are sized like the copy's chunks.
    BeforeSwitch,
    /// With the forward trigger in: its deletes wait for the copy lock, so batches are sized
    /// to `batch_time`.
    AfterSwitch,
}

/// How a drain batch copies its keys again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Care {
    /// All keys in two statements.
    Fast,
    /// The last batch met a duplicate: first evict the stale shadow rows holding the taken
    /// rows' unique values ([`log::evict`]), then all keys at once.
    Evict,
    /// Still failing: key by key in savepoints (evicting first), a row the new definition
    /// rejects recorded in `tandem.divergence` (as the forward trigger does), which fails
    /// verification with its key.
    KeyByKey,
}

/// What a drain came to.
enum Drained {
    /// A batch found fewer entries than it asked for, from the log's start.
    CaughtUp,
    /// Before the switch: the writes outpace the drain (the module's comment).
    Behind(Behind),
}

/// A drain that is not gaining on the writes fast enough, over the last `drain_patience`.
#[derive(Debug, Clone, PartialEq)]
struct Behind {
    /// Entries logged and not taken yet.
    backlog: i64,
    /// Entries logged a second.
    logged: f64,
    /// Entries taken a second.
    taken: f64,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rates = format!(
            "{:.0} logged and {:.0} drained a second",
            self.logged, self.taken
        );
        if self.logged >= self.taken {
            write!(
                f,
                "the writes outpace the log's drain ({} entries behind; {rates})",
                self.backlog
            )
        } else {
            write!(
                f,
                "the log's drain gains on the writes too slowly ({} entries behind, about {:.0} s to go; {rates})",
                self.backlog,
                self.backlog as f64 / (self.taken - self.logged)
            )
        }
    }
}

/// The drain's watch on its backlog: samples of the log's head (the last sequence number it
/// handed out) and the drain's watermark, one a second.
struct Backlog {
    patience: Duration,
    samples: VecDeque<(Instant, i64, i64)>,
}

impl Backlog {
    fn new(patience: Duration) -> Backlog {
        Backlog {
            patience,
            samples: VecDeque::new(),
        }
    }

    /// Record a sample; [`Behind`] when the samples span `patience` and the backlog did not
    /// shrink over it fast enough to be gone within [`HORIZON`] times `patience` (a backlog
    /// that does not shrink at all included).
    fn observe(&mut self, at: Instant, head: i64, watermark: i64) -> Option<Behind> {
        self.samples.push_back((at, head, watermark));
        // Keep one sample at least `patience` old, and none older than needed.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _, _)| at.duration_since(*t) >= self.patience)
        {
            self.samples.pop_front();
        }
        let (t0, head0, mark0) = *self.samples.front()?;
        let span = at.duration_since(t0).as_secs_f64();
        if span < self.patience.as_secs_f64() || span <= 0.0 {
            return None;
        }
        let backlog = (head - watermark).max(0);
        let shrunk = ((head0 - mark0).max(0) - backlog) as f64 / span;
        let left = if shrunk > 0.0 {
            backlog as f64 / shrunk
        } else {
            f64::INFINITY
        };
        if backlog < MIN_BEHIND || left <= HORIZON * self.patience.as_secs_f64() {
            return None;
        }
        Some(Behind {
            backlog,
            logged: (head - head0) as f64 / span,
            taken: (watermark - mark0) as f64 / span,
        })
    }
}

/// A drain is behind when its backlog would take longer than this many `drain_patience`s to
/// go at the rate it shrank over the last one (5 minutes by default).
const HORIZON: f64 = 10.0;

/// A backlog smaller than this is never called behind: the switch's last drain copies it
/// in a few milliseconds.
const MIN_BEHIND: i64 = 1_000;

/// Keeps the log small: reads its dead entries every few seconds, and vacuums it when the
/// entries the copy and the drain deleted outnumber the live ones ([`log::vacuum`]).
pub(super) struct Upkeep {
    last: Instant,
}

impl Upkeep {
    pub(super) fn new() -> Upkeep {
        Upkeep {
            last: Instant::now(),
        }
    }

    pub(super) async fn tend(&mut self, ex: &Executor, spec: &TableSpec) {
        if self.last.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last = Instant::now();
        let name = shadow::log_table(spec.migration, spec.table_oid).to_string();
        let vacuumed = async {
            let Some(row) = ex.client.query_opt(log::DEAD, &[&name]).await? else {
                return Ok(false);
            };
            let (live, dead): (i64, i64) = (row.get(0), row.get(1));
            if dead < live.max(100_000) {
                return Ok(false);
            }
            ex.client.batch_execute(&log::vacuum(spec)).await?;
            Ok::<_, tokio_postgres::Error>(true)
        };
        // Only speed is lost when it fails: say so and go on.
        if let Err(e) = vacuumed.await {
            ex.emit(Event::Warning(format!(
                "{}: could not vacuum the key log ({e}); the copy and the drain go on, slower",
                spec.table.display_plain()
            )));
        }
    }
}

/// Drain the log until a batch finds fewer entries than it asked for (caught up), or, before
/// the switch, until the drain is [`Behind`].
async fn drain(ex: &mut Executor, spec: &TableSpec, when: Drain) -> Result<Drained, EngineError> {
    let (target, max_rows) = match when {
        Drain::AfterSwitch => (ex.opts.batch_time, ex.opts.max_batch),
        Drain::BeforeSwitch => (ex.opts.chunk_time, ex.opts.max_batch.saturating_mul(5)),
    };
    let mut batch: i64 = 1000.clamp(ex.opts.min_batch, max_rows);
    let mut copied_total = 0u64;
    let mut care = Care::Fast;
    // The shadow's unique column sets, read when a batch first meets a duplicate.
    let mut evictions: Option<Vec<String>> = None;
    // The highest sequence number taken (log::take): 0 takes from the log's start.
    let mut watermark: i64 = 0;
    let mut backlog = Backlog::new(ex.opts.drain_patience);
    let mut upkeep = Upkeep::new();
    let log_name = shadow::log_table(spec.migration, spec.table_oid).to_string();
    let started = Instant::now();
    let mut last_check = Instant::now();
    loop {
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            ex.throttle(false).await?;
            upkeep.tend(ex, spec).await;
            if when == Drain::BeforeSwitch && watermark > 0 {
                let head: i64 = ex
                    .client
                    .query_one(log::HEAD, &[&log_name])
                    .await
                    .map_err(EngineError::sql("read the key log's head"))?
                    .get(0);
                ex.emit(Event::LogBacklog {
                    table: spec.table.display_plain(),
                    entries: (head - watermark).max(0),
                });
                if let Some(behind) = backlog.observe(Instant::now(), head, watermark) {
                    return Ok(Drained::Behind(behind));
                }
            }
        }
        if care != Care::Fast && evictions.is_none() {
            let sets = crate::catalog::table::unique_columns(&ex.client, &spec.shadow).await?;
            evictions = Some(sets.iter().filter_map(|u| log::evict(spec, u)).collect());
        }
        let t0 = Instant::now();
        let evict = evictions.as_deref().unwrap_or_default();
        match drain_batch(ex, spec, when, batch, watermark, care, evict).await {
            Ok(taken) => {
                care = Care::Fast;
                copied_total += taken.keys;
                let from_start = watermark == 0;
                watermark = watermark.max(taken.top);
                if (taken.entries as i64) < batch {
                    // Caught up from the watermark: once more from the start, for the
                    // entries whose transactions committed after the watermark passed them.
                    if !from_start {
                        watermark = 0;
                        continue;
                    }
                    if copied_total > 0 {
                        ex.emit(Event::Note(format!(
                            "{}: {copied_total} logged rows copied again in {:.1} s",
                            spec.table.display_plain(),
                            started.elapsed().as_secs_f64()
                        )));
                    }
                    return Ok(Drained::CaughtUp);
                }
                let took = t0.elapsed().as_secs_f64().max(0.001);
                let ideal = (batch as f64) * target.as_secs_f64() / took;
                batch =
                    ((batch as f64 * 0.5 + ideal * 0.5) as i64).clamp(ex.opts.min_batch, max_rows);
                // `--batch-pause` paces the drain as it paces the copy (before the switch:
                // after it, the log no longer grows, and the copy lock should go soon).
                // `--keep-throughput` does not: the drain's work is the writes made while it
                // runs, and a drain that rests has more to do (at pgbench scale 100 under
                // `--keep-throughput 70` it took 78 s against 10 s).
                if when == Drain::BeforeSwitch {
                    ex.pace.pause().await;
                }
            }
            Err(e) if is_lock_timeout(&e) => {
                batch = (batch / 2).max(ex.opts.min_batch);
                tokio::time::sleep(super::backoff(2, Duration::from_millis(100))).await;
            }
            // A duplicate: a stale row to evict first. Any other row the new definition
            // rejects: key by key, recording the rejected ones.
            Err(e) if care == Care::Fast && is_unique_violation(&e) => care = Care::Evict,
            Err(e) if care != Care::KeyByKey && is_data_error(&e) => care = Care::KeyByKey,
            Err(e) => {
                return Err(EngineError::sql(format!(
                    "copy the logged changes of {} again",
                    spec.table.display_plain()
                ))(e))
            }
        }
    }
}

fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// What a drain batch took.
struct Taken {
    /// Log entries.
    entries: u64,
    /// Distinct keys among them (the rows copied again).
    keys: u64,
    /// The highest sequence number taken (0 when none).
    top: i64,
}

/// One drain batch, in its own transaction under the copy lock: take up to `batch` entries
/// above `watermark`, delete the shadow's rows of their keys, copy the table's rows of them,
/// as `care` says (`evict`: the eviction statements of [`Care::Evict`]).
async fn drain_batch(
    ex: &mut Executor,
    spec: &TableSpec,
    when: Drain,
    batch: i64,
    watermark: i64,
    care: Care,
    evict: &[String],
) -> Result<Taken, tokio_postgres::Error> {
    let lock_timeout = ex.opts.batch_lock_timeout.as_millis().max(1);
    let tx = ex.client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{lock_timeout}ms'; SET LOCAL synchronous_commit = off"
    ))
    .await?;
    tx.query_one(&sql::lock_batch(spec, false, false), &[])
        .await?;
    let taken = tx.query(&log::take(spec), &[&batch, &watermark]).await?;
    let top = taken.iter().map(|r| r.get::<_, i64>(0)).max().unwrap_or(0);
    let keys: BTreeSet<Vec<String>> = taken.iter().map(|r| r.get(1)).collect();
    let groups: Vec<Vec<&Vec<String>>> = if care == Care::KeyByKey {
        keys.iter().map(|k| vec![k]).collect()
    } else {
        vec![keys.iter().collect()]
    };
    let (unlink, relink) = (
        log::unlink(spec),
        log::relink(spec, when == Drain::AfterSwitch),
    );
    for group in groups {
        if group.is_empty() {
            continue;
        }
        // One text array per key column.
        let columns: Vec<Vec<&str>> = (0..spec.key.len())
            .map(|i| group.iter().map(|k| k[i].as_str()).collect())
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let copy = async {
            if let Some(act) = writer::act(spec) {
                tx.batch_execute(&act).await?;
            }
            if care != Care::Fast {
                for e in evict {
                    tx.execute(e, &params).await?;
                }
            }
            tx.execute(&unlink, &params).await?;
            let n = tx.execute(&relink, &params).await?;
            if spec.writer.is_some() {
                tx.batch_execute(writer::BACK).await?;
            }
            Ok::<u64, tokio_postgres::Error>(n)
        };
        if care != Care::KeyByKey {
            copy.await?;
            continue;
        }
        tx.batch_execute("SAVEPOINT tandem_drain").await?;
        match copy.await {
            Ok(_) => tx.batch_execute("RELEASE SAVEPOINT tandem_drain").await?,
            Err(e) if is_data_error(&e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT tandem_drain")
                    .await?;
                if let Some(act) = writer::act(spec) {
                    tx.batch_execute(&act).await?;
                }
                tx.execute(&unlink, &params).await?;
                if spec.writer.is_some() {
                    tx.batch_execute(writer::BACK).await?;
                }
                let (state, message) = e
                    .as_db_error()
                    .map(|d| (d.code().code().to_string(), d.message().to_string()))
                    .unwrap_or_else(|| (String::new(), e.to_string()));
                tx.execute(
                    "INSERT INTO tandem.divergence (migration_id, direction, table_name, key, sqlstate, message)
                     VALUES ($1, 'forward', $2, $3, $4, $5)",
                    &[
                        &spec.migration,
                        &String::from(spec.table.clone()),
                        &format!("({})", group[0].join(",")),
                        &state,
                        &message,
                    ],
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(Taken {
        entries: taken.len() as u64,
        keys: keys.len() as u64,
        top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples a second apart: (head, watermark) at each second.
    fn watch(patience: u64, samples: &[(i64, i64)]) -> Vec<Option<Behind>> {
        let start = Instant::now();
        let mut b = Backlog::new(Duration::from_secs(patience));
        samples
            .iter()
            .enumerate()
            .map(|(i, (head, mark))| b.observe(start + Duration::from_secs(i as u64), *head, *mark))
            .collect()
    }

    #[test]
    fn a_backlog_that_grows_is_behind_once_patience_has_passed() {
        // 10,000 entries logged a second, 8,000 taken: the backlog grows by 2,000 a second.
        let samples: Vec<(i64, i64)> = (0..8).map(|s| (50_000 + 10_000 * s, 8_000 * s)).collect();
        let seen = watch(5, &samples);
        assert!(seen[..5].iter().all(Option::is_none), "{seen:?}");
        let behind = seen[5].clone().expect("behind after 5 s");
        assert_eq!(behind.backlog, 50_000 + 10_000 * 5 - 8_000 * 5);
        assert!((behind.logged - 10_000.0).abs() < 1e-6, "{behind:?}");
        assert!((behind.taken - 8_000.0).abs() < 1e-6, "{behind:?}");
        assert!(seen[6].is_some() && seen[7].is_some());
    }

    #[test]
    fn a_backlog_that_shrinks_fast_enough_is_not_behind() {
        // 100,000 behind, shrinking by 10,000 a second: gone within 10 s, patience 5 s.
        let samples: Vec<(i64, i64)> = (0..10).map(|s| (100_000 + 5_000 * s, 15_000 * s)).collect();
        assert!(watch(5, &samples).iter().all(Option::is_none));
    }

    #[test]
    fn a_backlog_that_shrinks_too_slowly_is_behind() {
        // 1,000,000 behind, shrinking by 1,000 a second: 1,000 s to go, patience 5 s.
        let samples: Vec<(i64, i64)> = (0..7)
            .map(|s| (1_000_000 + 9_000 * s, 10_000 * s))
            .collect();
        let seen = watch(5, &samples);
        let behind = seen[5].clone().expect("behind");
        assert!(
            behind
                .to_string()
                .contains("gains on the writes too slowly")
                && behind.to_string().contains("about 995 s to go"),
            "{behind}"
        );
    }

    #[test]
    fn a_small_backlog_is_never_behind() {
        // Steady at 500 entries: the switch's last drain takes them in milliseconds.
        let samples: Vec<(i64, i64)> = (0..10).map(|s| (500 + 1_000 * s, 1_000 * s)).collect();
        assert!(watch(3, &samples).iter().all(Option::is_none));
    }

    #[test]
    fn the_window_slides() {
        // Behind for the first 6 s, then a burst of draining: no longer behind once the
        // window holds only the draining seconds.
        let mut samples: Vec<(i64, i64)> = (0..6).map(|s| (100_000 + 10_000 * s, 0)).collect();
        samples.extend((6..12).map(|s| (160_000, 20_000 * (s - 5))));
        let seen = watch(3, &samples);
        assert!(seen[4].is_some(), "{seen:?}");
        assert!(seen[11].is_none(), "{seen:?}");
    }
}
