//! What the mirror found, in the database: counters per (migration, side) kept in memory and
//! added to tandem.dual_reads every second, and one tandem.drift row per mismatch (at most
//! [`DRIFT_ROWS_PER_MINUTE`]; the rest are counted, and still in `mismatches`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::compare::{param_digest, Drift};
use super::registry::GroupKey;
use super::Sample;

pub(crate) const DRIFT_ROWS_PER_MINUTE: u32 = 100;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub comparisons: i64,
    pub mismatches: i64,
    pub skipped: i64,
    pub dropped: i64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.comparisons += other.comparisons;
        self.mismatches += other.mismatches;
        self.skipped += other.skipped;
        self.dropped += other.dropped;
    }
}

/// Counts since the last flush.
#[derive(Default)]
pub(crate) struct Counters {
    deltas: Mutex<HashMap<GroupKey, Counts>>,
}

impl Counters {
    pub(crate) fn add(&self, group: GroupKey, f: impl FnOnce(&mut Counts)) {
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        f(deltas.entry(group).or_default());
    }

    fn take(&self) -> HashMap<GroupKey, Counts> {
        std::mem::take(&mut *self.deltas.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn put_back(&self, group: GroupKey, counts: Counts) {
        self.add(group, |c| c.add(counts));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.deltas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// Add the deltas to tandem.dual_reads. On a failure the unwritten deltas are kept for the
/// next flush; the deltas of a migration that no longer exists are dropped.
pub(crate) async fn flush(
    client: &Client,
    proxy_id: &str,
    counters: &Counters,
) -> Result<(), tokio_postgres::Error> {
    let mut pending = counters.take().into_iter().collect::<Vec<_>>();
    pending.sort_by_key(|(g, _)| *g);
    let mut rest = pending.into_iter();
    while let Some((group, c)) = rest.next() {
        let written = client
            .execute(
                include_str!("sql/flush.sql"),
                &[
                    &group.0,
                    &proxy_id,
                    &group.1.as_str(),
                    &c.comparisons,
                    &c.mismatches,
                    &c.skipped,
                    &c.dropped,
                ],
            )
            .await;
        match written {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                tracing::debug!(
                    migration_id = group.0,
                    "dual-read counters of a migration that no longer exists are dropped"
                );
            }
            Err(e) => {
                counters.put_back(group, c);
                for (group, c) in rest {
                    counters.put_back(group, c);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// At most [`DRIFT_ROWS_PER_MINUTE`] drift rows a minute, across the proxy's workers.
pub(crate) struct DriftLimit {
    state: Mutex<Window>,
}

struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Default for DriftLimit {
    fn default() -> Self {
        DriftLimit {
            state: Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }
}

impl DriftLimit {
    /// May one more row be written now? Reports the rows held back in the minute that ended.
    pub(crate) fn allow(&self) -> bool {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.started.elapsed() >= Duration::from_secs(60) {
            if w.suppressed > 0 {
                tracing::warn!(
                    suppressed = w.suppressed,
                    limit = DRIFT_ROWS_PER_MINUTE,
                    "more dual-read mismatches than tandem.drift takes in a minute; the rest are counted in tandem.dual_reads.mismatches only: look at the rows already in tandem.drift"
                );
            }
            *w = Window {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            };
        }
        if w.written < DRIFT_ROWS_PER_MINUTE {
            w.written += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }
}

/// pg_query's fingerprint (hex): the same for every statement that differs only in constants.
pub(crate) fn fingerprint(sql: &str) -> String {
    pg_query::fingerprint(sql, 0, 0)
        .map(|f| f.hex)
        .unwrap_or_default()
}

/// One tandem.drift row: the statement normalized (constants as `$n`), the parameters hashed
/// with the database's secret.
pub(crate) async fn write_drift(
    client: &Client,
    proxy_id: &str,
    group: GroupKey,
    sample: &Sample,
    drift: &Drift,
) -> Result<(), tokio_postgres::Error> {
    let fingerprint = fingerprint(&sample.sql);
    // normalize cannot fail on what parsed, but never fall back to the literal text.
    let statement = pg_query::normalize(&sample.sql)
        .unwrap_or_else(|_| "(the statement could not be normalized)".to_string());
    client
        .execute(
            include_str!("sql/drift.sql"),
            &[
                &group.0,
                &proxy_id,
                &group.1.as_str(),
                &fingerprint,
                &statement,
                &param_digest(sample),
                &drift.rows_live,
                &drift.rows_other,
                &drift.example_key,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_rows_are_limited_per_minute() {
        let limit = DriftLimit::default();
        let allowed = (0..DRIFT_ROWS_PER_MINUTE + 5)
            .filter(|_| limit.allow())
            .count();
        assert_eq!(allowed, DRIFT_ROWS_PER_MINUTE as usize);
    }
}
