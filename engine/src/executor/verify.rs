//! Phase 4, verify: the shadow equals the mapped original.
//!
//! Both tables are read inside one REPEATABLE READ snapshot (the triggers write both in the
//! writer's transaction, so one snapshot sees them consistent), chunk by chunk in key order:
//! a count and an order-independent checksum of each side's rows, the original's rows mapped
//! and cast to the new types. A chunk that differs is narrowed to its keys (a full join on
//! the key within the chunk), reported with examples, copied again, and checked again in the
//! next round; the phase does not pass with any difference left.

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
    let mut summary = Vec::new();
    for spec in ex.specs().await? {
        let mut ranges: Option<Vec<(Option<Key>, Key)>> = None; // None: the whole table
        let mut rows = 0i64;
        let mut reported = Vec::new();
        let mut round = 0;
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
    let result = json!({ "passed": true, "tables": summary, "divergence_seen": seen });
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
