//! How long the batches that write the shadow may wait for a lock.
//!
//! The direct method's copy, the log's drain and verify's re-copy can hold a row an
//! application's transaction waits for while they wait for one it holds. PostgreSQL ends
//! such a cycle by failing the waiter whose `deadlock_timeout` runs out first, and that must
//! never be the application: a batch waits for a lock at most a quarter of the lowest
//! `deadlock_timeout` an application may run with, then backs off and retries smaller.
//! (`tests/tests/drain.rs`: with `deadlock_timeout = 100ms` and batches waiting 200 ms,
//! 59 client transactions failed with "deadlock detected" in 10 s.)

use std::time::Duration;

use tokio_postgres::Client;

use super::Options;
use crate::error::EngineError;

/// The lowest `deadlock_timeout` in force for a session of this database: this session's
/// (the server's or the database's), and any set for a role, here or in every database.
const SETTINGS: &str = "
    SELECT setting FROM pg_catalog.pg_settings WHERE name = 'deadlock_timeout'
    UNION ALL
    SELECT substr(c.cfg, length('deadlock_timeout=') + 1)
      FROM pg_catalog.pg_db_role_setting d, unnest(d.setconfig) AS c(cfg)
     WHERE d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
       AND c.cfg LIKE 'deadlock_timeout=%'";

/// `opts` with `batch_lock_timeout` bounded by a quarter of the lowest `deadlock_timeout`,
/// and that `deadlock_timeout` when the bound lowered it.
pub(super) async fn bound_batches(
    client: &Client,
    mut opts: Options,
) -> Result<(Options, Option<Duration>), EngineError> {
    let lowest = client
        .query(SETTINGS, &[])
        .await
        .map_err(EngineError::sql("read deadlock_timeout"))?
        .iter()
        .filter_map(|r| parse(r.get(0)))
        .min();
    let Some(deadlock_timeout) = lowest else {
        return Ok((opts, None));
    };
    let bound = (deadlock_timeout / 4).max(Duration::from_millis(1));
    if opts.batch_lock_timeout <= bound {
        return Ok((opts, None));
    }
    opts.batch_lock_timeout = bound;
    Ok((opts, Some(deadlock_timeout)))
}

/// A `deadlock_timeout` as PostgreSQL accepts it: a number of milliseconds, or a number with a
/// unit (`us`, `ms`, `s`, `min`, `h`, `d`). `None` for anything else (0 or less too: the
/// server refuses it).
fn parse(value: &str) -> Option<Duration> {
    let v = value.trim().trim_matches('\'').trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number.parse().ok()?;
    let ms_per = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = n * ms_per;
    (ms >= 1.0).then(|| Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_as_postgresql_writes_and_accepts_them() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1000", Some(1000)),
            ("100ms", Some(100)),
            ("1s", Some(1000)),
            ("1.5s", Some(1500)),
            ("2min", Some(120_000)),
            ("1h", Some(3_600_000)),
            ("1d", Some(86_400_000)),
            ("'250ms'", Some(250)),
            (" 50 ms ", Some(50)),
            ("5000us", Some(5)),
            ("500us", None),
            ("0", None),
            ("-1", None),
            ("soon", None),
            ("10 fortnights", None),
            ("", None),
        ];
        for &(value, want) in cases {
            assert_eq!(
                parse(value).map(|d| d.as_millis() as u64),
                want,
                "{value:?}"
            );
        }
    }
}
