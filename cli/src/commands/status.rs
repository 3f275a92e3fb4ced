//! `tandem status [ID] [--json] [--keys]`, `tandem pause ID`, `tandem resume ID`.

use crate::args::{Global, IdArgs, StatusArgs};
use crate::commands::apply::engine_failure;
use crate::connect;
use crate::exit::{Failure, OK};

pub async fn status(global: &Global, args: StatusArgs) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    let mut all = engine::status::status(&client, args.id)
        .await
        .map_err(engine_failure)?;
    if !args.keys {
        for d in all.iter_mut().flat_map(|s| s.drift.iter_mut()) {
            d.key_hidden = d.example_key.take().is_some();
        }
    }
    if args.json || global.format == crate::args::Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("serialises")
        );
        return Ok(OK);
    }
    if all.is_empty() {
        eprintln!("no migrations in this database; `tandem submit plan.json` registers one");
    }
    for s in &all {
        let mut out = format!(
            "migration {}: {}{}{}\n",
            s.id,
            s.phase,
            if s.running {
                " (an executor is running it)"
            } else {
                ""
            },
            if s.paused { ", paused" } else { "" }
        );
        for t in &s.tables {
            let pct = if t.rows_total > 0 {
                t.rows_copied as f64 * 100.0 / t.rows_total as f64
            } else {
                0.0
            };
            out.push_str(&format!(
                "  {}: {} of {} rows copied ({pct:.0}%)",
                t.table, t.rows_copied, t.rows_total
            ));
            if let Some(r) = t.rows_per_sec {
                out.push_str(&format!(", {r:.0} rows/s"));
            }
            if let Some(eta) = t.eta_secs {
                out.push_str(&format!(", ETA {eta:.0}s"));
            }
            out.push('\n');
        }
        if let Some(v) = &s.verify {
            out.push_str(&format!(
                "  verification: {}\n",
                if v["passed"].as_bool() == Some(true) {
                    "passed".to_string()
                } else {
                    format!("failed ({})", v)
                }
            ));
        }
        if s.cutover_attempts > 0 {
            out.push_str(&format!("  cutover attempts: {}\n", s.cutover_attempts));
        }
        if let Some(w) = &s.window_ends_at {
            out.push_str(&format!("  rollback window ends: {w}\n"));
        }
        if let Some(w) = &s.window_warning {
            out.push_str(&format!("  warning: {w}\n"));
        }
        if let Some(b) = &s.rollback_blocker {
            out.push_str(&format!("  rollback unavailable: {b}\n"));
        }
        if s.divergence_forward + s.divergence_reverse > 0 {
            out.push_str(&format!(
                "  writes the triggers could not apply: {} to the new table, {} to the old\n",
                s.divergence_forward, s.divergence_reverse
            ));
        }
        if s.dual_read_min > 0 || !s.dual_reads.is_empty() {
            let mut line = String::from("  dual reads:");
            if s.dual_reads.is_empty() {
                line.push_str(" none yet");
            }
            for (i, d) in s.dual_reads.iter().enumerate() {
                line.push_str(&format!(
                    "{} {} comparisons with the {} table, {} mismatches, {} skipped, {} dropped",
                    if i > 0 { ";" } else { "" },
                    d.comparisons,
                    if d.against == "shadow" { "new" } else { "old" },
                    d.mismatches,
                    d.skipped,
                    d.dropped
                ));
            }
            if s.dual_read_min > 0 {
                line.push_str(&format!(" (verification waits for {})", s.dual_read_min));
            }
            out.push_str(&format!("{line}; {} live proxies\n", s.live_proxies));
        } else if s.live_proxies > 0 {
            out.push_str(&format!("  live proxies: {}\n", s.live_proxies));
        }
        for d in &s.drift {
            out.push_str(&format!(
                "  drift ({} table, proxy {}, {}): {} rows in the table, {} in the other{}: {}\n",
                if d.against == "shadow" { "new" } else { "old" },
                d.proxy,
                d.at,
                d.rows_live,
                d.rows_other,
                match (&d.example_key, d.key_hidden) {
                    (Some(k), _) => format!(", e.g. key {k}"),
                    (None, true) => ", a row's key recorded (--keys shows it)".to_string(),
                    (None, false) => String::new(),
                },
                d.statement
            ));
        }
        if let Some(a) = &s.approvals {
            if a.ungated {
                out.push_str("  approvals: none needed (no approval policy on this database)\n");
            } else if let Some(missing) = &a.missing {
                out.push_str(&format!(
                    "  approvals for {}: {}\n",
                    a.action,
                    missing.replace('\n', "\n    ")
                ));
            } else {
                out.push_str(&format!(
                    "  approvals for {}: granted by {} ({} required)\n",
                    a.action,
                    a.approved_by.join(", "),
                    a.required
                ));
            }
        }
        if let Some(w) = &s.waiting_for {
            out.push_str(&format!("  waiting for: {w}\n"));
        }
        if let Some(e) = &s.last_event {
            out.push_str(&format!("  last event: {e}\n"));
        }
        print!("{out}");
    }
    Ok(OK)
}

pub async fn pause(global: &Global, args: IdArgs, paused: bool) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    let phase = engine::state::set_paused(&client, args.id, paused)
        .await
        .map_err(engine_failure)?;
    eprintln!(
        "migration {} ({phase}) {}",
        args.id,
        if paused {
            "paused: a running apply stops copying after its current batch; applications are not affected"
        } else {
            "resumed"
        }
    );
    Ok(OK)
}
