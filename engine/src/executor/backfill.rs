//! Phase 3, backfill: copy the rows that existed when dual-write began, in key order, each
//! batch committed with its checkpoint; build the shadow's indexes; ANALYZE it. Two methods
//! (`shadow::CopyMethod`, chosen at prepare and kept in the spec):
//!
//! **Log** (the default). The statement triggers log changed keys (`shadow/log.rs`); the copy
//! fills a shadow without indexes, in chunks of about `chunk_time` that lock nothing and
//! conflict with nobody (a plain `INSERT ... SELECT`, as pg_repack's copy); after each chunk
//! the log drops the keys the copy has not reached (the chunk that copies them will see their
//! change), so it keeps only what the copy has passed; the key index is built, then the
//! others, without CONCURRENTLY (only tandem writes the shadow), the log drained after the
//! key's and after the others; then the forward trigger replaces the log triggers
//! (one short DDL under lock_timeout, which waits out the writers in flight, so every later
//! write goes through it), and the log is drained to empty and dropped. Every change
//! committed after a chunk's snapshot is in the log, and a drain copies the key's current row
//! again, so after the last drain the shadow holds what the table holds.
//!
//! **Direct** (migrations prepared before the log existed). The forward trigger writes the
//! shadow from dual-write on, and the copy upserts into it in short batches. Why a copy
//! never resurrects a deleted row nor overwrites a newer value: each batch first takes the
//! migration's copy lock (an advisory lock) exclusively, then copies its key range with
//! `ON CONFLICT (key) DO NOTHING`, and commits. The forward trigger takes the same lock
//! shared before it deletes from the shadow (on DELETE and key changes). A delete that
//! committed before the batch's snapshot is not read; one that runs during the batch waits
//! in its trigger until the batch has committed, and then deletes the copy. A row the
//! triggers wrote is at least as new as what the copy read, and the copy skips it; if the
//! trigger's write is still uncommitted, the copy waits for it and then skips it. Ordinary
//! INSERTs and UPDATEs never wait for the copy lock. The batch waits at most
//! `batch_lock_timeout` for any lock and then backs off, so it can never hold an application
//! in a deadlock (the server's deadlock check would only run after `deadlock_timeout`).
//! The log's drain batches hold the copy lock the same way.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::{GenericClient, Statement, ToStatement};

use super::{is_lock_timeout, mirror, Event, Executor};
use crate::error::EngineError;
use crate::shadow::{log, sql, writer, CopyMethod, NewIndex, TableSpec};
use crate::state::{self, Migration, Phase};

/// One batch of the direct method: take the copy lock (deletes and key changes wait), then
/// upsert `(lo, hi]`. Returns (rows in the range, rows copied). Runs on the caller's
/// transaction, which must commit (with the checkpoint) for the copy to count.
pub async fn copy_batch(
    client: &impl GenericClient,
    spec: &TableSpec,
    lo: Option<&[String]>,
    hi: &[String],
) -> Result<(i64, u64), tokio_postgres::Error> {
    copy_counted(client, spec, lo, hi, true).await
}

/// Copy `(lo, hi]` and count the range's rows, with the statement sent as text.
async fn copy_counted(
    client: &impl GenericClient,
    spec: &TableSpec,
    lo: Option<&[String]>,
    hi: &[String],
    direct: bool,
) -> Result<(i64, u64), tokio_postgres::Error> {
    let statement = sql::copy_batch_counted(spec, lo.is_some(), direct);
    copy_with(client, spec, lo, hi, direct, true, statement.as_str()).await
}

/// Copy `(lo, hi]`: `direct` under the copy lock with an upsert, else a plain insert (the log
/// method's copy, into a shadow only it writes), by `statement`: `sql::copy_batch_counted`
/// when `counted` (which also counts the range's rows), else `sql::copy_batch`. Returns (rows
/// in the range, rows copied); uncounted, the rows copied twice.
async fn copy_with<S: ToStatement + Sync + Send + ?Sized>(
    client: &impl GenericClient,
    spec: &TableSpec,
    lo: Option<&[String]>,
    hi: &[String],
    direct: bool,
    counted: bool,
    statement: &S,
) -> Result<(i64, u64), tokio_postgres::Error> {
    if direct {
        client
            .query_one(&sql::lock_batch(spec, lo.is_some(), false), &[])
            .await?;
    }
    // The shadow's rows are written as the table's owner (`shadow::writer`).
    if let Some(act) = writer::act(spec) {
        client.batch_execute(&act).await?;
    }
    let (lo, hi) = (lo.map(<[String]>::to_vec), hi.to_vec());
    let copied = if counted {
        let row = client.query_one(statement, &[&lo, &hi]).await?;
        let (seen, copied): (i64, i64) = (row.get(0), row.get(1));
        (seen, copied as u64)
    } else {
        let n = client.execute(statement, &[&lo, &hi]).await?;
        (n as i64, n)
    };
    if spec.writer.is_some() {
        client.batch_execute(writer::BACK).await?;
    }
    Ok(copied)
}

struct Progress {
    last_key: Option<Vec<String>>,
    bound: Option<Vec<String>>,
    done: i64,
    total: i64,
    indexes_built: bool,
}

async fn progress(ex: &Executor, spec: &TableSpec) -> Result<Progress, EngineError> {
    let r = ex
        .client
        .query_one(
            "SELECT last_key::text, bound::text, rows_copied, rows_total, indexes_built
               FROM tandem.shadow_tables WHERE migration_id = $1 AND table_oid = $2",
            &[&ex.id, &spec.table_oid],
        )
        .await
        .map_err(EngineError::sql("read the backfill checkpoint"))?;
    let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok());
    Ok(Progress {
        last_key: parse(r.get(0)),
        bound: parse(r.get(1)),
        done: r.get(2),
        total: r.get(3),
        indexes_built: r.get(4),
    })
}

pub(crate) async fn run(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    let specs = ex.specs().await?;
    for spec in &specs {
        if progress(ex, spec).await?.indexes_built {
            continue;
        }
        copy_table(ex, spec).await?;
        let aside = match spec.copy {
            CopyMethod::Direct => {
                for idx in spec.new_indexes.iter().filter(|i| i.deferred) {
                    build_index(ex, spec, idx, true).await?;
                }
                None
            }
            CopyMethod::Log => super::drain::settle(ex, spec).await?,
        };
        finish_shadow(ex, spec, aside).await?;
    }
    // The copy is complete: from now on a read of the shadow means something, so the mirror
    // views are created in the transaction that records it (a crash leaves both or neither).
    let tx = ex
        .client
        .transaction()
        .await
        .map_err(EngineError::sql("begin recording the backfill"))?;
    tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
        .await
        .map_err(EngineError::sql("set up recording the backfill"))?;
    let mut notes = Vec::new();
    for spec in &specs {
        let outcome = mirror::create_before(&tx, spec).await?;
        mirror::record(&tx, spec, Phase::Backfill.as_str(), &outcome).await?;
        notes.extend(mirror::note(spec, &outcome));
    }
    mirror::notify(&tx).await?;
    state::set_phase(&tx, m.id, Phase::Backfill, serde_json::Value::Null).await?;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit the backfill"))?;
    for n in notes {
        ex.emit(Event::Note(n));
    }
    Ok(())
}

async fn copy_table(ex: &mut Executor, spec: &TableSpec) -> Result<(), EngineError> {
    let name = spec.table.display_plain();
    let mut p = progress(ex, spec).await?;
    let direct = spec.copy == CopyMethod::Direct;
    // The direct method's batches hold the copy lock (deletes wait): short. The log method's
    // chunks lock nothing: long enough that a chunk's overhead does not count.
    let (target, max_rows) = if direct {
        (ex.opts.batch_time, ex.opts.max_batch)
    } else {
        (ex.opts.chunk_time, ex.opts.max_batch.saturating_mul(50))
    };
    let bound = match p.bound.clone() {
        Some(b) => b,
        None => {
            // The bound: rows above it were inserted after dual-write began, through the
            // triggers. Taken once and stored, so a resumed copy stops at the same place.
            let row = ex
                .client
                .query_opt(&sql::bound(spec), &[])
                .await
                .map_err(EngineError::sql("read the backfill bound"))?;
            let Some(row) = row else {
                // Empty table: nothing to copy.
                ex.client
                    .execute(
                        "UPDATE tandem.shadow_tables SET bound = '[]', last_key = '[]', backfill_started_at = now()
                          WHERE migration_id = $1 AND table_oid = $2",
                        &[&ex.id, &spec.table_oid],
                    )
                    .await
                    .map_err(EngineError::sql("record the backfill bound"))?;
                return Ok(());
            };
            let b: Vec<String> = row.get(0);
            // The total only sizes the progress (shown as at least the rows copied): the
            // planner's estimate will do, and spares a scan of the whole table (2 s of a
            // 10,000,000-row table under load). A count only where there is no estimate.
            let q = crate::catalog::table::ROW_ESTIMATE;
            let estimate: Option<i64> = ex
                .client
                .query_one(q.sql, &[&spec.table_oid])
                .await
                .map_err(EngineError::sql(q.what))?
                .get(0);
            let count: i64 = match estimate {
                Some(n) => n,
                None => ex
                    .client
                    .query_one(&format!("SELECT count(*) FROM {}", spec.table), &[])
                    .await
                    .map_err(EngineError::sql("count the rows to copy"))?
                    .get(0),
            };
            ex.client
                .execute(
                    "UPDATE tandem.shadow_tables SET bound = $3, rows_total = $4, backfill_started_at = now()
                      WHERE migration_id = $1 AND table_oid = $2",
                    &[&ex.id, &spec.table_oid, &json!(b), &count],
                )
                .await
                .map_err(EngineError::sql("record the backfill bound"))?;
            p.total = count;
            b
        }
    };
    if bound.is_empty() || p.last_key.as_ref() == Some(&bound) {
        return Ok(());
    }

    let st = ChunkStatements::prepare(ex, spec, direct).await?;
    let mut stride = Stride::new(spec, direct);
    let mut batch: i64 = 1000.clamp(ex.opts.min_batch, max_rows);
    let started = Instant::now();
    let done_at_start = p.done;
    let mut last_report = Instant::now() - Duration::from_secs(10);
    let mut last_throttle_check = Instant::now() - Duration::from_secs(10);
    let mut paused = false;
    let mut batches = 0u64;
    let mut upkeep = super::drain::Upkeep::new();
    let mut settle = Settle::new(ex, spec, direct).await?;
    loop {
        batches += 1;
        if paused || last_throttle_check.elapsed() > Duration::from_secs(1) {
            ex.throttle(paused).await?;
            last_throttle_check = Instant::now();
        }
        let t0 = Instant::now();
        let lo = p.last_key.clone();
        let tx = ex
            .client
            .transaction()
            .await
            .map_err(EngineError::sql("begin a backfill batch"))?;
        let result: Result<(Vec<String>, i64, bool), tokio_postgres::Error> = async {
            // A chunk need not wait for the WAL flush: one lost in a crash loses its
            // checkpoint with it, and is copied again. Unless `Settle` vacuums after it: a
            // row whose commit is not flushed yet gets no hint bit, so such a chunk waits
            // for the local flush (once per `chunk_time`, whatever the session's default).
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{}ms'; SET LOCAL synchronous_commit = {}",
                ex.opts.batch_lock_timeout.as_millis().max(1),
                if settle.on { "local" } else { "off" }
            ))
            .await?;
            let lower = usize::from(lo.is_some());
            // The chunk's end: by arithmetic on a dense integer key, else the batch-th key
            // (a scan of the chunk's keys, a fifth of the copy's time under load).
            let (hi, full) = match stride.end(lo.as_deref(), &bound, batch) {
                Some(hi) => {
                    let full = hi != bound;
                    (hi, full)
                }
                None => {
                    let end = tx
                        .query_opt(&st.batch_end[lower], &[&lo, &bound, &batch])
                        .await?;
                    let hi: Vec<String> = end
                        .as_ref()
                        .map(|r| r.get(0))
                        .unwrap_or_else(|| bound.clone());
                    (hi, end.is_some())
                }
            };
            // The rows the chunk holds: those the log method's plain insert copied. The
            // direct method's upsert skips the rows the triggers wrote: its full batches hold
            // `batch` rows (by their end), and its last one is counted.
            let (statement, counted) = match &st.copy_counted {
                Some(c) if !full => (&c[lower], true),
                _ => (&st.copy[lower], false),
            };
            let (seen, _) =
                copy_with(&tx, spec, lo.as_deref(), &hi, direct, counted, statement).await?;
            let locked = if direct && full { batch } else { seen };
            let row = tx
                .query_one(
                    &st.checkpoint,
                    &[&ex.id, &spec.table_oid, &json!(hi), &locked],
                )
                .await?;
            if batches == 2 {
                super::failpoint("backfill").await;
            }
            Ok((hi, locked, row.get(0)))
        }
        .await;
        let result = match result {
            Ok(v) => tx.commit().await.map(|()| v),
            Err(e) => {
                drop(tx);
                Err(e)
            }
        };
        match result {
            Ok((hi, locked, now_paused)) => {
                stride.observe(p.last_key.as_deref(), &hi, locked);
                paused = now_paused;
                p.done += locked;
                let finished = hi == bound;
                p.last_key = Some(hi);
                // Size the next batch to the target time (smoothed, within limits).
                let took = t0.elapsed().as_secs_f64().max(0.001);
                let ideal = (batch as f64) * target.as_secs_f64() / took;
                batch =
                    ((batch as f64 * 0.5 + ideal * 0.5) as i64).clamp(ex.opts.min_batch, max_rows);
                if finished || last_report.elapsed() > Duration::from_millis(500) {
                    let rate = (p.done - done_at_start) as f64
                        / started.elapsed().as_secs_f64().max(0.001);
                    ex.emit(Event::Backfill {
                        table: name.clone(),
                        done: p.done,
                        total: p.total.max(p.done),
                        rows_per_sec: rate,
                    });
                    last_report = Instant::now();
                }
                if let (Some(prune), false) = (&st.prune, finished) {
                    // Keep the log to what the copy has passed.
                    ex.client
                        .execute(prune, &[&p.last_key, &bound])
                        .await
                        .map_err(EngineError::sql("prune the log"))?;
                    upkeep.tend(ex, spec).await;
                }
                // Before a pause too: its wait may outlast the pages' stay in memory.
                settle
                    .chunk(ex, spec, t0.elapsed(), finished || paused)
                    .await;
                if finished {
                    settle.report(ex, spec);
                    return Ok(());
                }
                ex.pace
                    .after(&ex.client, &ex.observe, t0.elapsed(), true)
                    .await?;
            }
            Err(e) if is_lock_timeout(&e) => {
                // A writer holds rows of the range: let it finish, retry smaller.
                batch = (batch / 2).max(ex.opts.min_batch);
                tokio::time::sleep(super::backoff(2, Duration::from_millis(100))).await;
            }
            Err(e) => {
                let detail = e
                    .as_db_error()
                    .map(|d| format!("{} ({})", d.message(), d.detail().unwrap_or("")))
                    .unwrap_or_else(|| e.to_string());
                if e.code()
                    .is_some_and(|c| c.code().starts_with("23") || c.code().starts_with("22"))
                {
                    if let Ok(Some((key, why))) =
                        rejected_row(ex, spec, p.last_key.as_deref(), batch).await
                    {
                        return Err(EngineError::refused(
                            format!("the row of {name} with key ({key}) does not fit the new definition: {why}"),
                            "fix that row (or the change), then run `tandem apply` again; the copy resumes where it stopped, or `tandem rollback` abandons the migration",
                        ));
                    }
                    return Err(EngineError::refused(
                        format!(
                            "a row of {name} {} (within the next {batch} rows in key order) does not fit the new definition: {detail}",
                            match &p.last_key {
                                Some(k) => format!("after key ({})", k.join(", ")),
                                None => "near the start of the table".to_string(),
                            }
                        ),
                        "fix the data (or the change), then run `tandem apply` again; the copy resumes where it stopped",
                    ));
                }
                return Err(EngineError::sql(format!("copy a batch of {name}"))(e));
            }
        }
    }
}

/// The log method's copy vacuums the shadow after its chunks, on the copy's connection
/// between two chunks. Rows a chunk inserts carry no hint bits: the first scan to read them after the
/// chunk commits sets them, and that dirties every page again. Unsettled, that scan is the key
/// index's build, and at pgbench scale 100 it wrote the whole 1.3 GB shadow a second time
/// while clients' commits queued behind the flushes (BENCHMARKS §5); the vacuum beside the
/// drain then dirtied every page a third time to mark it all-visible. Right after its chunk,
/// the pages are still in shared buffers, dirty from the insert: the vacuum sets the hint
/// bits and the all-visible flag on pages that are written once, and later passes (the key
/// index, the vacuum beside the drain, verify) read pages they need not write. Its cost is
/// a pass over the chunk's pages (the visibility map skips the earlier ones; the unindexed
/// shadow has no index to clean), held to a tenth of the copy's time: where a vacuum costs
/// more (a shadow of many partitions, each opened by every vacuum of the tree), it runs after
/// several chunks instead of each. Only for a table larger than the server's shared buffers
/// (`catalog/sql/table/settle.sql`): a smaller shadow stays in the buffers until the later
/// passes, which then set its hint bits at no cost of writes (at scale 10, 130 MB against
/// 256 MB of buffers, the vacuums cost the copy 0.1–0.3 s and saved no write). `SKIP_LOCKED`:
/// nothing else vacuums the shadow while it fills (autovacuum is off on it), and a vacuum
/// that would wait is not worth waiting for.
struct Settle {
    /// Off: the direct method (its shadow has indexes from the start), or a table the
    /// buffers hold.
    on: bool,
    /// The copy's time since the last vacuum.
    owed: Duration,
    /// What the last vacuum took.
    cost: Duration,
    /// Vacuums run, and their time.
    runs: u32,
    total: Duration,
    /// A vacuum failed: said once, then no more tries (only speed is lost).
    failed: bool,
}

/// The copy's time per unit of the vacuum's.
const SETTLE_SHARE: u32 = 10;

impl Settle {
    async fn new(ex: &Executor, spec: &TableSpec, direct: bool) -> Result<Settle, EngineError> {
        let on = match ex.opts.settle {
            _ if direct => false,
            Some(on) => on,
            None => {
                let q = crate::catalog::table::SETTLE;
                ex.client
                    .query_one(q.sql, &[&spec.table_oid])
                    .await
                    .map_err(EngineError::sql(q.what))?
                    .get(0)
            }
        };
        Ok(Settle {
            on,
            owed: Duration::ZERO,
            cost: Duration::ZERO,
            runs: 0,
            total: Duration::ZERO,
            failed: false,
        })
    }

    /// After a chunk that took `took` (committed); `now` settles whatever the cost.
    async fn chunk(&mut self, ex: &Executor, spec: &TableSpec, took: Duration, now: bool) {
        self.owed += took;
        if !self.on || self.failed || (!now && self.owed < self.cost * SETTLE_SHARE) {
            return;
        }
        let t0 = Instant::now();
        let vacuum = format!("VACUUM (TRUNCATE false, SKIP_LOCKED) {}", spec.shadow);
        if let Err(e) = ex.client.batch_execute(&vacuum).await {
            self.failed = true;
            ex.emit(Event::Warning(format!(
                "{}: could not vacuum the shadow's copied pages ({e}); the copy goes on, and \
                 the index builds set their hint bits instead (more writes, same result)",
                spec.table.display_plain()
            )));
        }
        self.cost = t0.elapsed();
        self.owed = Duration::ZERO;
        self.runs += 1;
        self.total += self.cost;
    }

    /// At the copy's end: how many vacuums, and their time.
    fn report(&self, ex: &Executor, spec: &TableSpec) {
        if self.runs > 0 {
            ex.emit(Event::Note(format!(
                "{}: the copied pages settled by {} vacuum(s) between the chunks, {:.1} s in all",
                spec.table.display_plain(),
                self.runs,
                self.total.as_secs_f64()
            )));
        }
    }
}

/// The shadow's `VACUUM (ANALYZE)` on a connection of its own, started once its last index is
/// built (`drain::settle`) and awaited at the end of the backfill: its lock (SHARE UPDATE
/// EXCLUSIVE) conflicts neither with the drain's writes to the shadow nor with the switch's
/// trigger on the table, so it runs while the drain does (at pgbench scale 100: 2.8–4.1 s
/// beside a drain of 4.5 s, waited for 0.0 s). The new table goes live with its statistics,
/// its visibility map and its hint bits set, and no insert-triggered autovacuum of every row
/// the copy wrote starts at the cutover to hold the lock `finalize` needs for minutes (the
/// inserts of the copy's last second, which its session had not reported yet, still count:
/// below autovacuum's threshold, a fifth of the table, once the table is large enough for it
/// to matter). Pages it could not mark all-visible (rows newer than an open snapshot) get
/// up to two more passes, unless the shadow's rows were updated or deleted meanwhile (the
/// drain's and the forward trigger's writes): then the writes unmark pages as fast as a pass
/// marks them, and each pass, which must also clean the key index of their dead rows, costs
/// more than it gains (at scale 100 under load, two passes took 16.3 s after a first one of
/// 4.6 s, and the backfill waited 10 s for them; BENCHMARKS §5). Not when the run stops
/// before cutover (the shadow gets its `VACUUM (ANALYZE)` in `finish_shadow` then).
pub(super) struct VacuumAside(tokio::task::JoinHandle<Result<Duration, tokio_postgres::Error>>);

pub(super) async fn vacuum_aside(ex: &Executor, spec: &TableSpec) -> Option<VacuumAside> {
    if ex.opts.until < Phase::Cutover {
        return None;
    }
    let client = super::connect(&ex.config).await.ok()?;
    let table = spec.shadow.to_string();
    Some(VacuumAside(tokio::spawn(async move {
        let t0 = Instant::now();
        let rewrites = async || -> Result<i64, tokio_postgres::Error> {
            Ok(client.query_one(REWRITES, &[&table]).await?.get(0))
        };
        let before = rewrites().await?;
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
            .await?;
        if rewrites().await? != before {
            return Ok(t0.elapsed());
        }
        // A page is marked all-visible only when its rows are older than every snapshot
        // open when the VACUUM started: under load, transactions that began before the
        // copy's last chunks committed hold those pages back (and, on a busy server, so does
        // a session that is still logging in, whatever its database). A second pass reads
        // only the pages the map does not mark yet, with a horizon that has moved on.
        for _ in 0..VACUUM_AGAIN {
            let row = client.query_one(VISIBILITY, &[&table]).await?;
            let (pages, visible): (i32, i32) = (row.get(0), row.get(1));
            if visible >= pages {
                break;
            }
            tokio::time::sleep(VACUUM_AGAIN_AFTER).await;
            client.batch_execute(&format!("VACUUM {table}")).await?;
        }
        Ok(t0.elapsed())
    })))
}

/// The table's pages and those its visibility map marks all-visible.
const VISIBILITY: &str = include_str!("../catalog/sql/visibility.sql");
/// The table's rows updated or deleted so far.
const REWRITES: &str = include_str!("../catalog/sql/rewrites.sql");
/// Passes after the first `VACUUM (ANALYZE)` while pages are left unmarked, and the pause
/// before each (for the transactions that held them back to end).
const VACUUM_AGAIN: usize = 2;
const VACUUM_AGAIN_AFTER: Duration = Duration::from_millis(100);

impl VacuumAside {
    /// How long the `VACUUM (ANALYZE)` took; `None` if it failed (the caller analyzes then).
    async fn finish(self) -> Option<Duration> {
        match self.0.await {
            Ok(Ok(took)) => Some(took),
            _ => None,
        }
    }
}

/// Chunk ends by arithmetic on the key, for the log method's copy of a table keyed by one
/// integer column where the keys are dense (a serial or an identity): `lo + batch / density`,
/// the density being the rows per key value of the last chunk. Its unique key holds at most
/// one row per value, so a chunk never holds more than `batch / MIN_DENSITY` rows. Sparse
/// keys (a gap, random ids), other keys and the direct method (whose full batches must hold
/// exactly `batch` rows, the copy lock's hold time) ask the server for the batch-th key.
struct Stride {
    on: bool,
    density: Option<f64>,
}

impl Stride {
    const MIN_DENSITY: f64 = 0.5;

    fn new(spec: &TableSpec, direct: bool) -> Stride {
        let integer = |t: &str| matches!(t, "smallint" | "integer" | "bigint");
        let on = !direct && matches!(&spec.key[..], [k] if integer(&k.sql_type));
        Stride { on, density: None }
    }

    /// The end of the chunk after `lo` (`bound` when it reaches it); `None`: ask the server.
    fn end(&self, lo: Option<&[String]>, bound: &[String], batch: i64) -> Option<Vec<String>> {
        let density = self.density.filter(|d| *d >= Self::MIN_DENSITY)?;
        let (lo, bound) = (Self::value(lo?)?, Self::value(bound)?);
        let step = ((batch as f64 / density).ceil() as i128).max(1);
        Some(vec![(lo + step).min(bound).to_string()])
    }

    /// A chunk `(lo, hi]` copied `rows` rows.
    fn observe(&mut self, lo: Option<&[String]>, hi: &[String], rows: i64) {
        if !self.on {
            return;
        }
        let span = match (lo.and_then(Self::value), Self::value(hi)) {
            (Some(lo), Some(hi)) if hi > lo => hi - lo,
            _ => return,
        };
        self.density = Some(rows as f64 / span as f64);
    }

    fn value(key: &[String]) -> Option<i128> {
        match key {
            [k] => k.parse().ok(),
            _ => None,
        }
    }
}

/// The statements of the copy's loop, prepared once: sent as text, each would be parsed and
/// described in a round trip of its own at every chunk, and on a loaded server a round trip
/// of tandem's waits for a core like every client's. `[0]` from the start, `[1]` after a key.
struct ChunkStatements {
    batch_end: [Statement; 2],
    copy: [Statement; 2],
    /// The direct method's last batch; the log method's plain insert counts its rows.
    copy_counted: Option<[Statement; 2]>,
    checkpoint: Statement,
    /// `log::prune`; the direct method has no log.
    prune: Option<Statement>,
}

impl ChunkStatements {
    async fn prepare(ex: &Executor, spec: &TableSpec, direct: bool) -> Result<Self, EngineError> {
        let c = &ex.client;
        let prepare = |text: String| async move {
            c.prepare(&text)
                .await
                .map_err(EngineError::sql("prepare the copy's statements"))
        };
        Ok(ChunkStatements {
            batch_end: [
                prepare(sql::batch_end(spec, false)).await?,
                prepare(sql::batch_end(spec, true)).await?,
            ],
            copy: [
                prepare(sql::copy_batch(spec, false, direct)).await?,
                prepare(sql::copy_batch(spec, true, direct)).await?,
            ],
            copy_counted: match direct {
                true => Some([
                    prepare(sql::copy_batch_counted(spec, false, true)).await?,
                    prepare(sql::copy_batch_counted(spec, true, true)).await?,
                ]),
                false => None,
            },
            checkpoint: prepare(
                "UPDATE tandem.shadow_tables SET last_key = $3, rows_copied = rows_copied + $4
                  WHERE migration_id = $1 AND table_oid = $2
                 RETURNING (SELECT paused FROM tandem.migrations WHERE id = $1)"
                    .to_string(),
            )
            .await?,
            prune: match direct {
                true => None,
                false => Some(prepare(log::prune(spec)).await?),
            },
        })
    }
}

/// While a CREATE INDEX CONCURRENTLY waits for old transactions, say which (from a second
/// connection, every two seconds) in `status` and the progress output.
async fn watch_waits(ex: &Executor) -> Option<tokio::task::JoinHandle<()>> {
    let pid: i32 = ex
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?
        .get(0);
    let watcher = super::connect(&ex.config).await.ok()?;
    let observe = ex.observe.clone();
    let id = ex.id;
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let Ok(rows) = watcher
                .query(
                    "SELECT format('pid %s (%s, transaction open %s)', a.pid, a.state,
                            date_trunc('second', now() - a.xact_start))
                       FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1))",
                    &[&pid],
                )
                .await
            else {
                return;
            };
            if rows.is_empty() {
                continue;
            }
            let who: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let what = format!(
                "the index build waits for older transactions to end: {}",
                who.join("; ")
            );
            state::set_waiting(&watcher, id, Some(&what)).await;
            observe(&Event::Waiting(what));
        }
    }))
}

/// The first row of the next `batch` rows after `lo` that the shadow rejects, found by
/// copying them one at a time inside savepoints of a transaction that is rolled back.
async fn rejected_row(
    ex: &mut Executor,
    spec: &TableSpec,
    lo: Option<&[String]>,
    batch: i64,
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    let lo_v: Option<Vec<String>> = lo.map(<[String]>::to_vec);
    let tx = ex.client.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = '1s'").await?;
    let keys: Vec<Vec<String>> = tx
        .query(&sql::keys_after(spec), &[&lo_v, &batch])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut prev = lo_v;
    for key in keys {
        tx.batch_execute("SAVEPOINT tandem_probe").await?;
        let direct = spec.copy == CopyMethod::Direct;
        let r = copy_counted(&tx, spec, prev.as_deref(), &key, direct).await;
        tx.batch_execute("ROLLBACK TO SAVEPOINT tandem_probe")
            .await?;
        if let Err(e) = r {
            if e.code()
                .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
            {
                let why = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                return Ok(Some((key.join(", "), why)));
            }
            return Err(e);
        }
        prev = Some(key);
    }
    Ok(None)
}

/// Build one of the shadow's deferred indexes, dropping an invalid one an interrupted build
/// left: `concurrently` when the triggers write the shadow (the direct method), plainly when
/// only tandem does (the log method, before the forward trigger takes over: a sorted build,
/// with no second scan and no wait for older transactions).
pub(super) async fn build_index(
    ex: &mut Executor,
    spec: &TableSpec,
    idx: &NewIndex,
    concurrently: bool,
) -> Result<(), EngineError> {
    let qualified = format!("{}.{}", spec.shadow.schema, idx.temp_name);
    let state: Option<bool> = ex
        .client
        .query_one(
            "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))",
            &[&qualified],
        )
        .await
        .map_err(EngineError::sql("look for the shadow's index"))?
        .get(0);
    match state {
        Some(true) => return Ok(()),
        Some(false) => {
            ex.client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"))
                .await
                .map_err(EngineError::sql(
                    "drop an invalid index an interrupted build left",
                ))?;
        }
        None => {}
    }
    let build = if concurrently {
        planner::plan::shadow::concurrent_index(&idx.definition).ok_or_else(|| {
            EngineError::refused(
                format!(
                    "cannot build index {} concurrently: {}",
                    idx.final_name, idx.definition
                ),
                "this is a tandem bug; please report it",
            )
        })?
    } else if let Some(def) = idx.constraint.as_ref().and_then(|c| c.definition.as_ref()) {
        // A partitioned shadow: the constraint with its index (see `IndexConstraint`).
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {def}",
            spec.shadow, idx.temp_name
        )
    } else {
        idx.definition.clone()
    };
    ex.emit(Event::Note(format!(
        "building index {} on the shadow of {}",
        idx.final_name,
        spec.table.display_plain()
    )));
    let watcher = if concurrently {
        watch_waits(ex).await
    } else {
        None
    };
    let t0 = Instant::now();
    let built = ex.client.batch_execute(&build).await;
    if let Some(w) = watcher {
        w.abort();
        state::set_waiting(&ex.client, ex.id, None).await;
    }
    if built.is_ok() {
        ex.emit(Event::Note(format!(
            "index {} built in {:.1} s",
            idx.final_name,
            t0.elapsed().as_secs_f64()
        )));
    }
    built.map_err(|e| {
        if is_unique_violation(&e) {
            EngineError::refused(
                format!(
                    "unique index {} cannot be built: {}",
                    idx.final_name,
                    e.as_db_error()
                        .and_then(|d| d.detail())
                        .unwrap_or("duplicate values")
                ),
                "remove the duplicates, then run `tandem apply` again",
            )
        } else {
            EngineError::sql(format!("build index {}", idx.final_name))(e)
        }
    })
}

pub(super) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "23505")
}

/// After the copy and the index builds: statistics for the planner the moment the shadow goes
/// live, then record it.
///
/// When this apply goes on to the cutover, the `VACUUM (ANALYZE)` that ran beside the drain
/// ([`vacuum_aside`]) is awaited; if it could not run, an `ANALYZE` here (a `VACUUM` after
/// the drain would read and write the whole new table once more while the clients wait on
/// the same disk: 6.5 s of the 41 s at pgbench scale 100). Autovacuum stays off on the
/// shadow until the cutover turns it back on (`dependents::carry`): one started now would
/// hold a lock the cutover waits for. When the cutover is deferred (`--until`), the shadow
/// may stay in dual-write for days: `VACUUM (ANALYZE)` now, and autovacuum back at once.
async fn finish_shadow(
    ex: &mut Executor,
    spec: &TableSpec,
    aside: Option<VacuumAside>,
) -> Result<(), EngineError> {
    let deferred = ex.opts.until < Phase::Cutover;
    let t0 = Instant::now();
    let (statement, done) = if deferred {
        ("VACUUM (ANALYZE)", "vacuumed and analyzed")
    } else {
        ("ANALYZE", "analyzed")
    };
    let beside = match aside {
        Some(a) => a.finish().await,
        None => None,
    };
    match beside {
        Some(took) => ex.emit(Event::Note(format!(
            "shadow of {} vacuumed and analyzed in {:.1} s, beside the drain (waited {:.1} s for it)",
            spec.table.display_plain(),
            took.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        ))),
        None => {
            ex.client
                .batch_execute(&format!("{statement} {}", spec.shadow))
                .await
                .map_err(EngineError::sql("analyze the shadow"))?;
            ex.emit(Event::Note(format!(
                "shadow of {} {done} in {:.1} s",
                spec.table.display_plain(),
                t0.elapsed().as_secs_f64()
            )));
        }
    }
    if deferred {
        let options: Vec<String> = ex
            .client
            .query_one(
                "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1",
                &[&spec.table_oid],
            )
            .await
            .map_err(EngineError::sql("read the table's options"))?
            .get(0);
        let mut reset = format!(
            "ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled)",
            spec.shadow
        );
        if !options.is_empty() {
            reset.push_str(&format!(
                "; ALTER TABLE {} SET ({})",
                spec.shadow,
                crate::shadow::dependents::option_list(&options)
            ));
        }
        let mut statements = vec![reset];
        for p in spec.partitions().iter().filter(|p| p.leaf()) {
            let mut reset = format!(
                "ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled)",
                p.shadow
            );
            if !p.reloptions.is_empty() {
                reset.push_str(&format!(
                    "; ALTER TABLE {} SET ({})",
                    p.shadow,
                    crate::shadow::dependents::option_list(&p.reloptions)
                ));
            }
            statements.push(reset);
        }
        ex.ddl_retry("give autovacuum back to the shadow", &statements, None)
            .await?;
    }
    ex.client
        .execute(
            "UPDATE tandem.shadow_tables SET indexes_built = true WHERE migration_id = $1 AND table_oid = $2",
            &[&ex.id, &spec.table_oid],
        )
        .await
        .map_err(EngineError::sql("record the index builds"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Stride;

    fn keys(k: &str) -> Vec<String> {
        vec![k.to_string()]
    }

    /// A case: what, the chunk `(lo, hi]` and its rows, and the next chunk's end.
    type Case = (
        &'static str,
        Option<&'static str>,
        &'static str,
        i64,
        Option<&'static str>,
    );

    /// After a chunk `(lo, hi]` of `rows` rows: the next chunk's end from `hi` with `batch`
    /// 1,000 below the bound 1,000,000 (`None`: asked of the server).
    #[test]
    fn chunk_ends_by_arithmetic_only_where_the_keys_are_dense() {
        let cases: &[Case] = &[
            ("dense", Some("0"), "1000", 1000, Some("2000")),
            ("half the values used", Some("0"), "1000", 500, Some("3000")),
            ("a gap", Some("0"), "1000", 499, None),
            ("empty", Some("0"), "1000", 0, None),
            (
                "the bound reached",
                Some("998000"),
                "999500",
                1500,
                Some("1000000"),
            ),
            ("negative keys", Some("-5000"), "-4000", 1000, Some("-3000")),
            ("the first chunk (no lower end)", None, "1000", 1000, None),
            ("not an integer", Some("a"), "b", 1000, None),
        ];
        for (what, lo, hi, rows, want) in cases {
            let mut s = Stride {
                on: true,
                density: None,
            };
            s.observe(lo.map(keys).as_deref(), &keys(hi), *rows);
            let got = s.end(Some(&keys(hi)), &keys("1000000"), 1000);
            assert_eq!(got, want.map(keys), "{what}");
        }
        let mut off = Stride {
            on: false,
            density: None,
        };
        off.observe(Some(&keys("0")), &keys("1000"), 1000);
        assert_eq!(off.end(Some(&keys("1000")), &keys("1000000"), 1000), None);
    }
}
