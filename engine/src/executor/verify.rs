//! Phase 4, verify: the shadow equals the mapped original.
//!
//! Both tables are read inside one REPEATABLE READ snapshot (the triggers write both in the
//! writer's transaction, so one snapshot sees them consistent): a count and an
//! order-independent checksum of each side's rows, the original's rows mapped and cast to the
//! new types. First each whole side, one after the other (one core: the clients keep the
//! other); if they differ, chunk by chunk in key order: a chunk that differs is narrowed to its keys (a
//! full join on the key within the chunk), reported with examples, copied again, and checked
//! again in the next round; the phase does not pass with any difference left.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{backfill, is_lock_timeout, Event, Executor};
use crate::error::EngineError;
use crate::shadow::{sql, TableSpec};
use crate::state::{self, Migration, Phase};

type Key = Vec<String>;

/// A range `(lo, hi]` of the original's key that differed.
struct Mismatch {
    lo: Option<Key>,
    hi: Key,
    examples: Vec<String>,
}

pub(crate) async fn run(ex: &mut Executor, m: &Migration) -> Result<(), EngineError> {
    // Writes the triggers could not apply before this point are covered by this verification;
    // later ones are checked again inside the cutover transaction.
    let seen: i64 = ex
        .client
        .query_one(
            "SELECT coalesce(max(id), 0) FROM tandem.divergence WHERE migration_id = $1 AND direction = 'forward'",
            &[&m.id],
        )
        .await
        .map_err(EngineError::sql("read the divergence log"))?
        .get(0);
    let specs = ex.specs().await?;
    super::swap::in_force::forward(ex, &specs, false).await?;
    let mut summary = Vec::new();
    for spec in specs {
        let mut ranges: Option<Vec<(Option<Key>, Key)>> = None; // None: the whole table
        let mut rows = 0i64;
        let mut reported = Vec::new();
        let mut round = 0;
        if let Some(n) = whole(ex, &spec).await? {
            ex.emit(Event::Verify {
                table: spec.table.display_plain(),
                rows: n,
                mismatched_ranges: 0,
            });
            summary.push(json!({ "table": spec.table.display_plain(), "rows": n, "rounds": 1, "recopied_examples": reported }));
            continue;
        }
        loop {
            round += 1;
            let (total, mismatches) = check(ex, &spec, ranges.as_deref()).await?;
            if ranges.is_none() {
                rows = total;
            }
            ex.emit(Event::Verify {
                table: spec.table.display_plain(),
                rows,
                mismatched_ranges: mismatches.len(),
            });
            if mismatches.is_empty() {
                break;
            }
            for mm in &mismatches {
                reported.extend(mm.examples.iter().take(3).cloned());
            }
            ex.emit(Event::Warning(format!(
                "{}: {} key range(s) differ (e.g. keys {}); copying them again",
                spec.table.display_plain(),
                mismatches.len(),
                mismatches
                    .iter()
                    .flat_map(|m| m.examples.iter().take(2))
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
            if round > ex.opts.verify_rounds {
                let result = json!({ "passed": false, "rows": rows, "mismatched_ranges": mismatches.len(), "examples": reported });
                ex.client
                    .execute(
                        "UPDATE tandem.migrations SET verify_result = $2 WHERE id = $1",
                        &[&m.id, &result],
                    )
                    .await
                    .map_err(EngineError::sql("record the verification"))?;
                let errors = divergence_messages(ex, m.id).await?;
                return Err(EngineError::Verify(format!(
                    "{} still differs from the mapped original after {} rounds in {} key range(s), e.g. keys {}{}; the migration stays in dual-write: find the cause (a trigger disabled? a row the new definition rejects?), then run `tandem apply` again",
                    spec.table.display_plain(),
                    ex.opts.verify_rounds,
                    mismatches.len(),
                    reported.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                    errors
                )));
            }
            for mm in &mismatches {
                recopy(ex, &spec, mm.lo.as_deref(), &mm.hi).await?;
            }
            ranges = Some(mismatches.into_iter().map(|m| (m.lo, m.hi)).collect());
        }
        summary.push(json!({ "table": spec.table.display_plain(), "rows": rows, "rounds": round, "recopied_examples": reported }));
    }
    let dual_reads = if m.dual_read_min > 0 {
        dual_reads(ex, m).await?
    } else {
        serde_json::Value::Null
    };
    let mut result = json!({ "passed": true, "tables": summary, "divergence_seen": seen });
    if !dual_reads.is_null() {
        result["dual_reads"] = dual_reads;
    }
    let tx = ex
        .client
        .transaction()
        .await
        .map_err(EngineError::sql("begin"))?;
    tx.execute(
        "UPDATE tandem.migrations SET verify_result = $2 WHERE id = $1",
        &[&m.id, &result],
    )
    .await
    .map_err(EngineError::sql("record the verification"))?;
    state::set_phase(&tx, m.id, Phase::Verify, result).await?;
    tx.commit()
        .await
        .map_err(EngineError::sql("commit the verification"))
}

async fn divergence_messages(ex: &Executor, id: i64) -> Result<String, EngineError> {
    let rows = ex
        .client
        .query(
            "SELECT key, sqlstate, message FROM tandem.divergence WHERE migration_id = $1 AND direction = 'forward' ORDER BY id DESC LIMIT 3",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the divergence log"))?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    let parts: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "key {}: {} ({})",
                r.get::<_, String>(0),
                r.get::<_, String>(2),
                r.get::<_, String>(1)
            )
        })
        .collect();
    Ok(format!(
        "; the triggers could not apply some writes: {}",
        parts.join("; ")
    ))
}

/// Both whole sides, one after the other, in one snapshot. Returns the rows when the sides
/// are equal; a difference is left to [`check`], chunk by chunk, which narrows it to keys and
/// copies them again. (Hashing the two sides at once on two sessions sharing an exported
/// snapshot took 2 s less at pgbench scale 100, but kept both cores of a 2-core server busy:
/// 13 and 32 client transactions over 100 ms, against none one after the other;
/// BENCHMARKS.md §5.)
async fn whole(ex: &mut Executor, spec: &TableSpec) -> Result<Option<i64>, EngineError> {
    match whole_hashed(ex, spec, true).await {
        // A column type without a hash function (json, point, ...): through text.
        Err(EngineError::Sql { error, .. })
            if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION) =>
        {
            whole_hashed(ex, spec, false).await
        }
        other => other,
    }
}

async fn whole_hashed(
    ex: &mut Executor,
    spec: &TableSpec,
    typed: bool,
) -> Result<Option<i64>, EngineError> {
    let e = |what: &'static str| {
        EngineError::sql(format!("verify {}: {what}", spec.table.display_plain()))
    };
    let tx = ex
        .client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(e("begin the verification snapshot"))?;
    // One core: parallel workers would take the clients' CPU.
    tx.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
        .await
        .map_err(e("set up the verification"))?;
    super::failpoint("verify").await;
    let t0 = Instant::now();
    let a = tx
        .query_one(&sql::table_sums(spec, false, typed), &[])
        .await
        .map_err(e("checksum the table"))?;
    ex.pace.rest(&ex.observe, t0.elapsed()).await;
    let t0 = Instant::now();
    let b = tx
        .query_one(&sql::table_sums(spec, true, typed), &[])
        .await
        .map_err(e("checksum the shadow"))?;
    tx.commit().await.map_err(e("end the snapshot"))?;
    ex.pace
        .after(&ex.client, &ex.observe, t0.elapsed(), false)
        .await?;
    let (n, sum): (i64, String) = (a.get(0), a.get(1));
    let (n2, sum2): (i64, String) = (b.get(0), b.get(1));
    Ok((n == n2 && sum == sum2).then_some(n))
}

/// Compare `ranges` (or the whole table, chunk by chunk) inside one snapshot. Returns the
/// rows seen and the ranges that differ.
async fn check(
    ex: &mut Executor,
    spec: &TableSpec,
    ranges: Option<&[(Option<Key>, Key)]>,
) -> Result<(i64, Vec<Mismatch>), EngineError> {
    let tx = ex
        .client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(EngineError::sql("begin the verification snapshot"))?;
    let e = |what: &'static str| {
        EngineError::sql(format!("verify {}: {what}", spec.table.display_plain()))
    };
    let mut work: Vec<(Option<Key>, Key)> = Vec::new();
    match ranges {
        Some(r) => work.extend(r.iter().cloned()),
        None => {
            let bound: Option<Key> = tx
                .query_opt(&sql::bound(spec), &[])
                .await
                .map_err(e("read the last key"))?
                .map(|r| r.get(0));
            let Some(bound) = bound else {
                // Empty original: the shadow must be empty too.
                let n: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {}", spec.shadow), &[])
                    .await
                    .map_err(e("count the shadow"))?
                    .get(0);
                return Ok((
                    0,
                    if n == 0 {
                        vec![]
                    } else {
                        vec![Mismatch {
                            lo: None,
                            hi: vec![],
                            examples: vec![format!("{n} rows in the shadow, none in the table")],
                        }]
                    },
                ));
            };
            let mut lo: Option<Key> = None;
            loop {
                let end: Option<Key> = tx
                    .query_opt(
                        &sql::batch_end(spec, lo.is_some()),
                        &[&lo, &bound, &ex.opts.verify_chunk],
                    )
                    .await
                    .map_err(e("find the chunk's end"))?
                    .map(|r| r.get(0));
                let hi = end.unwrap_or_else(|| bound.clone());
                work.push((lo.clone(), hi.clone()));
                if hi == bound {
                    break;
                }
                lo = Some(hi);
            }
            // Rows of the shadow beyond the original's last key are extra.
            let extra: i64 = tx
                .query_one(&sql::shadow_rows_past(spec), &[&bound])
                .await
                .map_err(e("look for extra rows"))?
                .get(0);
            if extra > 0 {
                tx.commit().await.map_err(e("end the snapshot"))?;
                return Err(EngineError::Verify(format!(
                    "the shadow of {} holds {extra} rows past the table's last key; the triggers or the copy are wrong: run `tandem apply` again, and report it if it persists",
                    spec.table.display_plain()
                )));
            }
        }
    }
    let mut rows = 0i64;
    let mut out = Vec::new();
    super::failpoint("verify").await;
    for (lo, hi) in work {
        let t0 = Instant::now();
        let r = tx
            .query_one(&sql::chunk_sums(spec, lo.is_some()), &[&lo, &hi])
            .await
            .map_err(e("checksum a chunk"))?;
        let (oc, os, sc, ss): (i64, String, i64, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        rows += oc;
        if oc != sc || os != ss {
            let diffs = tx
                .query(
                    &sql::chunk_differences(spec, lo.is_some()),
                    &[&lo, &hi, &10i64],
                )
                .await
                .map_err(e("narrow a differing chunk"))?;
            let examples = diffs
                .iter()
                .map(|d| {
                    let k: String = d.get(0);
                    let missing_old: bool = d.get(1);
                    let missing_new: bool = d.get(2);
                    if missing_new {
                        format!("{k} (missing in the shadow)")
                    } else if missing_old {
                        format!("{k} (not in the table)")
                    } else {
                        format!("{k} (different)")
                    }
                })
                .collect();
            out.push(Mismatch { lo, hi, examples });
        }
        ex.pace.rest(&ex.observe, t0.elapsed()).await;
    }
    tx.commit().await.map_err(e("end the snapshot"))?;
    Ok((rows, out))
}

/// Copy a key range again: lock it against every change (FOR SHARE, briefly), empty the
/// shadow's part of it, copy it. Retries while a writer holds a row.
async fn recopy(
    ex: &mut Executor,
    spec: &TableSpec,
    lo: Option<&[String]>,
    hi: &[String],
) -> Result<(), EngineError> {
    let lo_v: Option<Vec<String>> = lo.map(<[String]>::to_vec);
    let hi_v: Vec<String> = hi.to_vec();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = ex
            .client
            .transaction()
            .await
            .map_err(EngineError::sql("begin a re-copy"))?;
        let r: Result<(), tokio_postgres::Error> = async {
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = '{}ms'",
                ex.opts.batch_lock_timeout.as_millis().max(1)
            ))
            .await?;
            tx.query_one(&sql::lock_batch(spec, lo.is_some(), true), &[&lo_v, &hi_v])
                .await?;
            // As the table's owner (`shadow::writer`); the copy below goes back to tandem's role.
            if let Some(act) = crate::shadow::writer::act(spec) {
                tx.batch_execute(&act).await?;
            }
            tx.execute(
                &sql::delete_shadow_range(spec, lo.is_some()),
                &[&lo_v, &hi_v],
            )
            .await?;
            backfill::copy_batch(&tx, spec, lo, hi).await?;
            Ok(())
        }
        .await;
        let r = match r {
            Ok(()) => tx.commit().await,
            Err(e) => {
                drop(tx);
                Err(e)
            }
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if is_lock_timeout(&e) && attempt < 50 => {
                tokio::time::sleep(super::backoff(
                    attempt,
                    std::time::Duration::from_millis(500),
                ))
                .await;
            }
            Err(e) => {
                return Err(EngineError::sql(format!(
                    "copy a range of {} again",
                    spec.table.display_plain()
                ))(e))
            }
        }
    }
}

/// The plan's dual-read gate: wait until the proxies have made `dual_read_min` comparisons
/// of the table with its shadow (`tandem.dual_reads`, against = 'shadow'), with no mismatch.
/// A mismatch fails verification with the drift examples; no view to compare against, or
/// too long a wait, refuses. Returns the counts for the verification record.
async fn dual_reads(ex: &Executor, m: &Migration) -> Result<serde_json::Value, EngineError> {
    let need = m.dual_read_min;
    let off = ex
        .client
        .query(
            "SELECT s.schema_name || '.' || s.table_name,
                    (SELECT e.detail ->> 'reason' FROM tandem.events e
                      WHERE e.migration_id = s.migration_id AND e.event = 'dual reads off'
                        AND e.detail ->> 'table' IN (s.table_name, s.schema_name || '.' || s.table_name)
                      ORDER BY e.id DESC LIMIT 1)
               FROM tandem.shadow_tables s WHERE s.migration_id = $1 AND s.mirror_view IS NULL ORDER BY s.step",
            &[&m.id],
        )
        .await
        .map_err(EngineError::sql("read the mirror views"))?;
    if let Some(r) = off.first() {
        let reason: Option<String> = r.get(1);
        return Err(EngineError::refused(
            format!(
                "the plan asks for {need} dual-read comparisons, but table {} has no view to compare against ({})",
                r.get::<_, String>(0),
                reason.unwrap_or_else(|| "it was not made".into())
            ),
            format!(
                "make a new plan without --dual-read-min and submit it (`tandem rollback {}` abandons this one)",
                m.id
            ),
        ));
    }
    let started = Instant::now();
    let mut paused_for = Duration::ZERO;
    let mut last_said: Option<(String, Instant)> = None;
    loop {
        let r = ex
            .client
            .query_one(
                "SELECT coalesce(sum(comparisons), 0)::int8, coalesce(sum(mismatches), 0)::int8,
                        coalesce(sum(skipped), 0)::int8, coalesce(sum(dropped), 0)::int8,
                        (SELECT count(*) FROM tandem.proxies WHERE heartbeat_at > now() - interval '5 seconds')
                   FROM tandem.dual_reads WHERE migration_id = $1 AND against = 'shadow'",
                &[&m.id],
            )
            .await
            .map_err(EngineError::sql("read the dual-read counters"))?;
        let (done, mismatches, skipped, dropped, proxies): (i64, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let counts = json!({ "min": need, "comparisons": done, "mismatches": mismatches, "skipped": skipped, "dropped": dropped });
        if mismatches > 0 {
            let examples = drift_examples(ex, m.id).await?;
            let result = json!({ "passed": false, "dual_reads": counts, "drift": examples });
            ex.client
                .execute(
                    "UPDATE tandem.migrations SET verify_result = $2 WHERE id = $1",
                    &[&m.id, &result],
                )
                .await
                .map_err(EngineError::sql("record the verification"))?;
            state::set_waiting(&ex.client, m.id, None).await;
            return Err(EngineError::Verify(format!(
                "{mismatches} of {done} dual-read comparisons found the shadow answering differently from the table, e.g. {}; the migration stays in dual-write: look at the statements in tandem.drift (`tandem status {id}`), then abandon it with `tandem rollback {id}`, or, if the difference is expected, reset the count (UPDATE tandem.dual_reads SET mismatches = 0 WHERE migration_id = {id}) and run `tandem apply {id}` again",
                examples
                    .iter()
                    .take(3)
                    .map(|e| e.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                id = m.id
            )));
        }
        if done >= need {
            state::set_waiting(&ex.client, m.id, None).await;
            ex.emit(Event::Note(format!(
                "dual reads: {done} comparisons with the shadow, no mismatch"
            )));
            return Ok(counts);
        }
        let paused = Migration::load(&ex.client, m.id).await?.paused;
        let what = if paused {
            "paused by `tandem pause`; `tandem resume` continues".to_string()
        } else {
            if started.elapsed().saturating_sub(paused_for) >= ex.opts.dual_read_timeout {
                state::set_waiting(&ex.client, m.id, None).await;
                return Err(EngineError::refused(
                    format!(
                        "verification waited {}s for {need} dual-read comparisons and saw {done} ({proxies} live prox{}); the checksums passed and the migration stays in dual-write",
                        ex.opts.dual_read_timeout.as_secs(),
                        if proxies == 1 { "y" } else { "ies" }
                    ),
                    format!(
                        "route the application's reads through `tandem proxy` (with mirror_sample above 0), or give it longer (`tandem apply {} --dual-read-timeout SECONDS`), or lower the threshold (a new plan with a smaller --dual-read-min)",
                        m.id
                    ),
                ));
            }
            format!(
                "dual reads: {done} of {need} comparisons, 0 mismatches ({proxies} live prox{})",
                if proxies == 1 { "y" } else { "ies" }
            )
        };
        state::set_waiting(&ex.client, m.id, Some(&what)).await;
        // Said when it changes, and at most every 5 s: the count moves every second.
        let say = last_said
            .as_ref()
            .is_none_or(|(w, at)| *w != what && at.elapsed() >= Duration::from_secs(5));
        if say {
            ex.emit(Event::Waiting(what.clone()));
            last_said = Some((what, Instant::now()));
        }
        let tick = Duration::from_millis(250);
        tokio::time::sleep(tick).await;
        if paused {
            paused_for += tick;
        }
    }
}

/// The latest drift rows against the shadow, for people: statement, row counts, where a
/// differing row's key is (not its values: this goes to the error and the verification result).
async fn drift_examples(ex: &Executor, id: i64) -> Result<Vec<serde_json::Value>, EngineError> {
    let rows = ex
        .client
        .query(
            "SELECT format('%s (%s rows in the table, %s in the shadow%s; proxy %s)',
                           left(statement, 200), rows_live, rows_other,
                           -- never the key's values: they are the table's data
                           CASE WHEN example_key IS NOT NULL
                                THEN ', a differing row''s key in tandem.drift ' || id ELSE '' END,
                           proxy_id)
               FROM tandem.drift WHERE migration_id = $1 AND against = 'shadow'
              ORDER BY id DESC LIMIT 5",
            &[&id],
        )
        .await
        .map_err(EngineError::sql("read the drift log"))?;
    Ok(rows
        .iter()
        .map(|r| serde_json::Value::String(r.get(0)))
        .collect())
}
