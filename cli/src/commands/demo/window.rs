//! Act 4: the rollback window (the old table, kept current by reverse triggers, could be
//! swapped back without losing a write), then `tandem finalize`, and the invariant again.

use anyhow::anyhow;
use fixtures::load::{bank, Bank};
use tokio_postgres::{Client, Config};

use super::live::Run;
use super::{banner, secs, thousands};
use crate::commands::apply::engine_failure;
use crate::connect;
use crate::exit::Failure;

pub async fn show(
    config: &Config,
    client: &Client,
    id: i64,
    mut run: Run,
    problems: &mut Vec<String>,
) -> Result<(), Failure> {
    banner("5. The rollback window, then finalize");
    let old: String = client
        .query_one(
            "SELECT format('%I.%I', schema_name, old_name) FROM tandem.shadow_tables WHERE migration_id = $1",
            &[&id],
        )
        .await
        .map_err(|e| anyhow!("cannot find the old table: {e}"))?
        .get(0);
    // The same rows: equal counts, and equal sums of a hash of each row (key and values).
    let t = std::time::Instant::now();
    let digest = |table: &str| {
        format!(
            "SELECT count(*), coalesce(sum(hashtextextended(aid::text || ',' || bid::text || ',' || abalance::text || ',' || filler, 0)::numeric), 0)::text FROM {table}"
        )
    };
    let (old_sum, new_sum) = (digest(&old), digest("bank_accounts"));
    // One connection per table: the two scans run side by side.
    let other = connect::connect(config).await?;
    let (a, b) = tokio::try_join!(
        other.query_one(&old_sum, &[]),
        client.query_one(&new_sum, &[])
    )
    .map_err(|e| anyhow!("cannot compare the old table with the new one: {e}"))?;
    drop(other);
    let (old_rows, new_rows): (i64, i64) = (a.get(0), b.get(0));
    let same = old_rows == new_rows && a.get::<_, String>(1) == b.get::<_, String>(1);
    eprintln!(
        "The old table is still there ({old}), and the new table's triggers kept it current:"
    );
    eprintln!(
        "  every row compared with bank_accounts' ({}) in {}: {}",
        thousands(new_rows as u64),
        secs(t.elapsed()),
        if same {
            "the same rows, writes since the cutover included".to_string()
        } else {
            format!(
                "DIFFERENT ({} rows in the old table, {} in the new one)",
                thousands(old_rows as u64),
                thousands(new_rows as u64)
            )
        }
    );
    if !same {
        problems.push(format!(
            "the old table kept for a rollback differs from the new one ({old_rows} rows vs {new_rows}, or other values)"
        ));
    }
    eprintln!(
        "  so `tandem rollback {id}` would swap it back now, in one short lock, losing no write."
    );
    eprintln!("  The window lasts 30 days by default (`tandem submit --rollback-window`); the demo ends it:");

    eprintln!("\n$ tandem finalize {id}");
    run.executor.finalize().await.map_err(engine_failure)?;
    drop(run.executor);
    eprintln!("migration {id} finalized: the old table and tandem's triggers are gone");

    let types: String = client
        .query_one(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = 'bank_accounts'::regclass AND attnum > 0 AND NOT attisdropped",
            &[],
        )
        .await
        .map_err(|e| anyhow!("cannot read the table's columns: {e}"))?
        .get(0);
    eprintln!("  bank_accounts is now ({types})");
    let check = bank::check(client, &Bank::new())
        .await
        .map_err(|e| anyhow!(e).context("cannot check the bank's invariant"))?;
    let history_ok = run.errors > 0 || check.history_rows as u64 == run.transactions;
    eprintln!(
        "  the bank's invariant: {}; {} history rows for {} transactions committed",
        if check.holds() { "holds" } else { "BROKEN" },
        thousands(check.history_rows as u64),
        thousands(run.transactions)
    );
    if !check.holds() {
        eprintln!("  {check}");
        problems.push(format!("after finalize, {check}"));
    }
    if !history_ok {
        problems.push(format!(
            "bank_history has {} rows, but the clients committed {} transactions: a write was lost or doubled",
            check.history_rows, run.transactions
        ));
    }
    Ok(())
}
