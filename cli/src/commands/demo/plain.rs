//! Act 2: the change as written, a plain `ALTER TABLE`, on an identical copy of the bank
//! while the same clients work on it: how long it holds its lock, and what the clients wait.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio_postgres::Config;
use workload::{Bank, Load, Workload};

use super::{banner, intro, latency, secs, thousands, LOAD};
use crate::connect;
use crate::exit::Failure;

/// Load alone before the ALTER, and after it.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(1);

/// What the plain ALTER did, for the comparison at the end.
pub struct Plain {
    pub took: Duration,
    pub max_latency: Duration,
    pub p99: Duration,
    pub slow: u64,
    pub tps_before: f64,
    pub tps_during: f64,
    pub errors: u64,
}

pub async fn show(config: &Config, problems: &mut Vec<String>) -> Result<Plain, Failure> {
    banner("2. Without tandem: the plain ALTER TABLE, with clients at work");
    let opts = LOAD;
    eprintln!(
        "On a copy of the database, {} clients run pgbench's bank transaction (each waits {} ms",
        opts.clients,
        opts.pause.unwrap_or_default().as_millis()
    );
    eprintln!(
        "between two). After {} s the ALTER TABLE runs, as written:",
        BEFORE.as_secs()
    );
    let client = connect::connect(config).await?;
    let load = Load::start(config.clone(), Workload::Bank(Bank::new()), opts)
        .await
        .map_err(|e| anyhow!(e).context("cannot start the clients"))?;
    tokio::time::sleep(BEFORE).await;
    let t0 = Instant::now();
    let altered = client.batch_execute(intro::CHANGE).await;
    let took = t0.elapsed();
    tokio::time::sleep(AFTER).await;
    let report = load.stop().await;
    altered.map_err(|e| anyhow!("the plain ALTER TABLE failed: {e}"))?;

    let at = t0.saturating_duration_since(report.started_at());
    // The first half second is the clients connecting and warming up.
    let warm = Duration::from_millis(500).min(at);
    let plain = Plain {
        took,
        max_latency: report.max_latency(),
        p99: report.percentile(99.0),
        slow: report.slower_than(Duration::from_millis(100)),
        tps_before: report.tps_between(warm, at),
        tps_during: report.tps_between(at, at + took),
        errors: report.error_count,
    };
    eprintln!(
        "  the ALTER TABLE took {}, holding ACCESS EXCLUSIVE on bank_accounts all along:",
        secs(took)
    );
    eprintln!(
        "  no client could read or write it. Throughput fell from {}/s to {}/s;",
        thousands(plain.tps_before as u64),
        thousands(plain.tps_during as u64)
    );
    eprintln!(
        "  the longest transaction waited {}, and {} took over 100 ms ({} errors).",
        latency(plain.max_latency),
        thousands(plain.slow),
        report.error_count
    );
    eprintln!("  A table ten times bigger would stop them ten times longer.");
    if report.error_count > 0 {
        problems.push(format!(
            "{} client error(s) during the plain ALTER TABLE: {}",
            report.error_count,
            report.errors.join("; ")
        ));
    }
    Ok(plain)
}
