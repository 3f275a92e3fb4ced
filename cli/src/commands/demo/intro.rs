//! Act 1: the change, and what `tandem lint` (the SQL alone) and `tandem plan` (the live
//! tables) say about it, in short: one line per finding, the plan's step and its summary.

use anyhow::anyhow;
use planner::lint::{lint, LintOptions};
use planner::plan::{self, Plan, PlanSource, Strategy, Target};
use planner::{Finding, Severity};
use tokio_postgres::Client;

use super::{banner, secs};
use crate::exit::Failure;
use crate::output;

/// The change, as a developer wrote it.
pub const CHANGE: &str = include_str!("change.sql");
const FILE: &str = "change.sql";

/// Show the change, its lint and its plan; return the plan.
pub async fn show(client: &Client) -> Result<Plan, Failure> {
    banner("1. The change: two columns to widen, on the busiest table");
    for line in CHANGE.trim().lines() {
        eprintln!("  {line}");
    }

    eprintln!("\n$ tandem lint {FILE}            (the SQL alone, no database)");
    let report = lint(
        CHANGE,
        &LintOptions {
            pg_version: 15,
            live: None,
            file: Some(FILE.to_string()),
        },
    );
    for f in &report.findings {
        eprintln!("  {}", headline(f));
    }
    eprintln!("  {}", output::summary(&report.findings));

    eprintln!("\n$ tandem plan -f {FILE}         (against the live tables)");
    let database = engine::database_identity(client)
        .await
        .map_err(|e| anyhow!(e).context("cannot read the database's identity"))?;
    let pg_version = database.server_version_num / 10000;
    let live = engine::introspect(client)
        .await
        .map_err(|e| anyhow!(e).context("cannot read the live schema"))?;
    let target = Target {
        live: &live,
        database,
        pg_version,
        in_place_below: planner::plan::IN_PLACE_BELOW,
    };
    let plan = plan::from_sql(&target, PlanSource::new("file", FILE, CHANGE), CHANGE);
    for (i, step) in plan.steps.iter().enumerate() {
        let strategy = match step.strategy {
            Strategy::Online => "online",
            Strategy::Shadow => "SHADOW",
            Strategy::Refused => "REFUSED",
        };
        eprintln!("  step {}  {strategy}  {}", i + 1, step.description);
        if step.strategy == Strategy::Shadow {
            eprintln!("      copies the rows into a new table with the new types while the old one stays live,");
            eprintln!(
                "      verifies the copy, then swaps the two tables' names under lock_timeout"
            );
        }
        if let Some(why) = &step.refusal {
            eprintln!("      refused: {why}");
        }
        eprintln!(
            "      estimate: traffic-blocking lock held ~{} ms, step takes ~{}",
            step.estimate.lock_ms,
            secs(std::time::Duration::from_millis(step.estimate.total_ms))
        );
    }
    let count = |s: Strategy| plan.steps.iter().filter(|x| x.strategy == s).count();
    eprintln!(
        "  {} step ({} online, {} shadow, {} refused); findings: {}",
        plan.steps.len(),
        count(Strategy::Online),
        count(Strategy::Shadow),
        count(Strategy::Refused),
        output::summary(&plan.findings)
    );
    let left: Vec<&Finding> = plan
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    if left
        .iter()
        .all(|f| f.name == "type-change-breaks-prepared-statements")
    {
        eprintln!(
            "  (lint's errors are notes now: the shadow strategy handles them. The warnings stay:"
        );
        eprintln!("  prepared statements must be prepared again after the swap; the demo's clients send plain SQL.)");
    } else {
        for f in left {
            eprintln!("  {}", headline(f));
        }
    }
    if plan
        .steps
        .iter()
        .any(|s| s.strategy != Strategy::Shadow && s.strategy != Strategy::Online)
    {
        return Err(Failure::from(anyhow!(
            "the plan refuses a step of the demo's change; this is a bug in tandem"
        )));
    }
    Ok(plan)
}

/// A finding on one line: `error[T019 changing-column-type]: <the message's first clause>`.
fn headline(f: &Finding) -> String {
    let message = f.message.split("; ").next().unwrap_or(&f.message);
    format!("{}[{} {}]: {message}", f.severity, f.id, f.name)
}
