//! `check`'s report: text for people (stderr), JSON (stdout), GitHub annotations (stdout),
//! and a Markdown summary appended to `$GITHUB_STEP_SUMMARY` whenever it is set, whatever
//! the format.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::anyhow;
use planner::diff::{Difference, DifferenceKind};
use planner::plan::Strategy;
use planner::Severity;

use super::Report;
use crate::args::Format;
use crate::exit::Failure;
use crate::output;

pub fn emit(format: Format, report: &Report) -> Result<(), Failure> {
    match format {
        Format::Text => eprint!("{}", text(report)),
        Format::Json => {
            let json = serde_json::to_string_pretty(report)
                .map_err(|e| Failure::from(anyhow!("cannot write the report: {e}")))?;
            println!("{json}");
        }
        Format::Github => print!("{}", github(report)),
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                Failure::from(anyhow!(
                    "cannot append to GITHUB_STEP_SUMMARY ({}): {e}",
                    std::path::Path::new(&path).display()
                ))
            })?;
        file.write_all(markdown(report).as_bytes())
            .map_err(|e| Failure::from(anyhow!("cannot write GITHUB_STEP_SUMMARY: {e}")))?;
    }
    Ok(())
}

fn strategy(s: Strategy) -> &'static str {
    match s {
        Strategy::Online => "online",
        Strategy::Shadow => "shadow migration",
        Strategy::Refused => "refused",
    }
}

fn kind(d: &Difference, left: &str, right: &str) -> String {
    match d.kind {
        DifferenceKind::Missing => format!("in {right}, not in {left}"),
        DifferenceKind::Extra => format!("in {left}, not in {right}"),
        DifferenceKind::Changed => "differs".to_string(),
    }
}

/// The two comparisons: (title, left, right, differences).
fn drifts(report: &Report) -> Vec<(&'static str, &'static str, &'static str, &[Difference])> {
    let mut out = Vec::new();
    if let Some(d) = &report.target_drift {
        out.push((
            "the target against the replay of its applied migrations",
            "the target",
            "the migrations",
            d.as_slice(),
        ));
    }
    if let Some(d) = &report.schema_drift {
        out.push((
            "the replay of every migration against --schema",
            "the migrations",
            "the schema file",
            d.as_slice(),
        ));
    }
    out
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "dev database: {}", report.dev);
    if let Some(target) = &report.target {
        let _ = writeln!(
            out,
            "target: {target} (read only; history: {})",
            report
                .history_table
                .unwrap_or("none, every migration counts as applied")
        );
    }
    let n = report.migrations.len();
    let plural = if n == 1 { "" } else { "s" };
    if report.target.is_some() {
        let pending = report.migrations.iter().filter(|m| !m.applied).count();
        let _ = writeln!(out, "{n} migration{plural}, {pending} pending");
    } else {
        let _ = writeln!(out, "{n} migration{plural} (no target: every one linted)");
    }
    for m in report.migrations.iter().filter(|m| m.linted) {
        let sql = std::fs::read_to_string(&m.file).unwrap_or_default();
        let lines: Vec<&str> = sql.lines().collect();
        for f in &m.findings {
            out.push_str(&output::finding_text(f, Some(&lines)));
            out.push('\n');
        }
        for s in &m.steps {
            let _ = writeln!(
                out,
                "  {}: {} — {}",
                m.file,
                strategy(s.strategy),
                s.description
            );
            if let Some(why) = &s.refusal {
                let _ = writeln!(out, "      refused: {why}");
            }
        }
    }
    if let Some(e) = &report.replay_error {
        let _ = writeln!(out, "error: the migrations do not replay: {e}");
    }
    for (title, left, right, diffs) in drifts(report) {
        if diffs.is_empty() {
            let _ = writeln!(out, "no drift: {title}");
            continue;
        }
        let _ = writeln!(out, "drift: {title}, in {} object(s):", diffs.len());
        for d in diffs {
            let _ = writeln!(out, "  {}: {}", d.object, kind(d, left, right));
            if let Some(detail) = &d.detail {
                for line in detail.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let findings: Vec<_> = report
        .migrations
        .iter()
        .flat_map(|m| m.findings.iter().cloned())
        .collect();
    let _ = writeln!(
        out,
        "check: {}; exit {}",
        output::summary(&findings),
        report.exit
    );
    out
}

fn github(report: &Report) -> String {
    let mut out = String::new();
    for m in &report.migrations {
        for f in &m.findings {
            let _ = writeln!(out, "{}", output::finding_github(f));
        }
        for s in m.steps.iter().filter(|s| s.strategy == Strategy::Refused) {
            let _ = writeln!(
                out,
                "::error file={},title=tandem refuses a step::{}",
                output::escape_property(&m.file),
                output::escape_data(&format!(
                    "{}: {}",
                    s.description,
                    s.refusal.as_deref().unwrap_or("refused")
                ))
            );
        }
    }
    if let Some(e) = &report.replay_error {
        let _ = writeln!(
            out,
            "::error title=migrations do not replay::{}",
            output::escape_data(e)
        );
    }
    for (title, left, right, diffs) in drifts(report) {
        for d in diffs {
            let _ = writeln!(
                out,
                "::error title=schema drift::{}",
                output::escape_data(&format!(
                    "{title}: {} is {}",
                    d.object,
                    kind(d, left, right)
                ))
            );
        }
    }
    out
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let verdict = match report.exit {
        0 => "passed",
        2 => "failed: drift",
        _ => "failed: errors",
    };
    let _ = writeln!(out, "## tandem check {verdict}\n");
    let _ = writeln!(out, "Dev database: {}", report.dev);
    if let Some(target) = &report.target {
        let _ = writeln!(out, "\nTarget: `{target}` (read only)");
    }
    let planned: Vec<_> = report
        .migrations
        .iter()
        .filter(|m| !m.steps.is_empty())
        .collect();
    if !planned.is_empty() {
        let _ = writeln!(out, "\n| migration | step | runs as |\n|---|---|---|");
        for m in planned {
            for s in &m.steps {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} |",
                    m.file,
                    cell(&s.description),
                    match &s.refusal {
                        Some(why) => format!("**refused**: {}", cell(why)),
                        None => strategy(s.strategy).to_string(),
                    }
                );
            }
        }
    }
    let findings: Vec<_> = report
        .migrations
        .iter()
        .flat_map(|m| m.findings.iter())
        .filter(|f| f.severity != Severity::Info)
        .collect();
    if !findings.is_empty() {
        let _ = writeln!(out, "\n| file | line | finding |\n|---|---|---|");
        for f in findings {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} {}: {} |",
                f.location.file.as_deref().unwrap_or(""),
                f.location.line,
                f.id,
                f.name,
                cell(&f.message)
            );
        }
    }
    if let Some(e) = &report.replay_error {
        let _ = writeln!(out, "\n**The migrations do not replay:** {}", cell(e));
    }
    for (title, left, right, diffs) in drifts(report) {
        if diffs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n**Drift: {title}**\n");
        for d in diffs {
            let _ = writeln!(out, "- `{}`: {}", d.object, kind(d, left, right));
        }
    }
    out.push('\n');
    out
}

/// Text safe inside one Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
