//! `tandem demo`: a throwaway PostgreSQL with a busy sample bank, and a type change of its
//! biggest table made while clients keep working on it. Everything it starts, it stops and
//! removes, on every exit path (Ctrl-C included).
//!
//! The acts, each a module of `demo/`:
//! 1. [`intro`]: the change, what `tandem lint` and `tandem plan` say about it;
//! 2. [`plain`]: what the plain `ALTER TABLE` does to the clients (on a copy of the database);
//! 3. [`live`]: the same change made by tandem's executor under the same load, with the
//!    progress `tandem apply` shows, then what the clients saw and the bank's invariant;
//! 4. [`window`]: the rollback window, then finalize.
//!
//! It doubles as a smoke test: it exits non-zero when a client saw an error or the bank's
//! invariant does not hold.

mod intro;
mod live;
mod plain;
mod window;

use std::time::{Duration, Instant};

use anyhow::anyhow;
use fixtures::load::{bank, Bank, LoadOptions};
use tokio_postgres::{Client, Config};

use crate::args::{DemoArgs, Global};
use crate::connect;
use crate::exit::{Failure, FAILURE, OK};

/// The bank's size: `bank_accounts` gets this many rows (about 150 MB with its index).
const ACCOUNTS: i64 = 1_000_000;

/// The clients that keep working while the table changes: pgbench's transaction, one
/// connection each, with a short pause between two transactions. Flat out, eight clients
/// saturate a two-core machine, which no one runs a production database at (and the
/// migration then crawls); with the pause they make about a thousand transactions a second
/// and leave some headroom.
const LOAD: LoadOptions = LoadOptions {
    clients: 8,
    pause: Some(Duration::from_millis(5)),
};

/// The demo's database, and the copy the plain ALTER runs on.
const DB: &str = "demo";
const COPY_DB: &str = "demo_plain_alter";

/// Exit code after Ctrl-C (128 + SIGINT), as a shell reports it.
const INTERRUPTED: u8 = 130;

pub async fn run(_global: &Global, args: DemoArgs) -> Result<u8, Failure> {
    let started = Instant::now();
    eprintln!(
        "tandem demo: starting a throwaway PostgreSQL 15 (initdb into a temporary directory)..."
    );
    let cluster = tokio::task::spawn_blocking(fixtures::pg::Cluster::start_throwaway)
        .await
        .map_err(|e| Failure::from(anyhow!(e)))?
        .map_err(|e| anyhow!(e).context("cannot start a throwaway PostgreSQL; install the server with `apt-get install -y postgresql-15`"))
        .map_err(Failure::from)?;
    // From here on, Ctrl-C ends the demo's work (its clients, the executor, their
    // connections) and falls through to the cleanup below.
    let result = tokio::select! {
        r = demo(&cluster) => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::new(INTERRUPTED, anyhow!("interrupted"))),
    };
    if let (Ok(_), true) = (&result, args.keep) {
        eprintln!(
            "\nthe server keeps running for you (the migrated bank is in database {DB}):\n    psql \"{}\"",
            cluster.url(DB)
        );
        eprintln!("press Ctrl-C to stop it");
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("\ntandem demo: stopping the throwaway PostgreSQL and removing its files");
    let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
    if result.is_ok() && !args.keep {
        eprintln!(
            "tandem demo: done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    result
}

async fn demo(cluster: &fixtures::pg::Cluster) -> Result<u8, Failure> {
    let admin = connect::connect(&cluster.config("postgres")).await?;
    sql(&admin, &format!("CREATE DATABASE {DB}")).await?;
    let config = db_config(cluster, DB);
    let mut client = connect::connect(&config).await?;

    let t = Instant::now();
    eprintln!(
        "tandem demo: creating a sample bank, pgbench's tables: bank_accounts ({} rows), bank_tellers, bank_branches, bank_history...",
        thousands(ACCOUNTS as u64)
    );
    bank::setup(&client, &Bank::new(), ACCOUNTS)
        .await
        .map_err(|e| anyhow!(e).context("cannot create the sample bank"))?;
    // The plain ALTER runs on an identical copy, so that tandem's run starts from the same
    // table. The copy needs the bank's database to itself for a moment.
    drop(client);
    sql(
        &admin,
        &format!("CREATE DATABASE {COPY_DB} TEMPLATE {DB} STRATEGY file_copy"),
    )
    .await?;
    client = connect::connect(&config).await?;
    eprintln!(
        "tandem demo: the bank and a copy of it (for section 2) are ready in {}",
        secs(t.elapsed())
    );

    let mut problems = Vec::new();
    let plan = intro::show(&client).await?;

    let copy = db_config(cluster, COPY_DB);
    let before = plain::show(&copy, &mut problems).await;
    // The copy has served; its pages need not compete with the real run's.
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {COPY_DB} WITH (FORCE)"))
        .await;
    let before = before?;

    let id = live::submit(&mut client, &plan).await?;
    let run = live::show(&config, &client, id, &before, &mut problems).await?;
    window::show(&config, &client, id, run, &mut problems).await?;

    if problems.is_empty() {
        return Ok(OK);
    }
    let mut text = String::from("the demo saw what a zero-downtime migration must never do:");
    for p in &problems {
        text.push_str("\n  - ");
        text.push_str(&p.replace('\n', "\n    "));
    }
    Err(Failure::new(FAILURE, anyhow!(text)))
}

fn db_config(cluster: &fixtures::pg::Cluster, db: &str) -> Config {
    let mut config = cluster.config(db);
    config.application_name("tandem demo");
    config
}

async fn sql(client: &Client, sql: &str) -> Result<(), Failure> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| Failure::from(anyhow!("{sql}: {e}")))
}

/// A section heading.
fn banner(title: &str) {
    let rule = "─".repeat(70usize.saturating_sub(title.chars().count() + 4));
    eprintln!("\n── {title} {rule}");
}

/// 1234567 as "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "850 ms", "3.2 s".
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A latency, finer below 10 ms: "4.2 ms", "48 ms", "2.1 s".
fn latency(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        secs(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(secs(Duration::from_millis(850)), "850 ms");
        assert_eq!(secs(Duration::from_millis(3260)), "3.3 s");
        assert_eq!(latency(Duration::from_micros(4210)), "4.2 ms");
        assert_eq!(latency(Duration::from_millis(48)), "48 ms");
    }
}
