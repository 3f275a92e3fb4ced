//! `tandem lint FILE...`: findings for migration SQL, no database needed.

use anyhow::anyhow;
use planner::lint::{lint, LintOptions};
use planner::{Finding, Severity};

use crate::args::{FailOn, Format, Global, LintArgs};
use crate::exit::{Failure, FINDINGS, OK, USAGE};
use crate::output;

pub fn run(global: &Global, args: LintArgs) -> Result<u8, Failure> {
    let mut all: Vec<Finding> = Vec::new();
    let mut unused = Vec::new();
    let mut text = String::new();
    for path in &args.files {
        let sql = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                USAGE,
                anyhow!("cannot read {} ({e}); check the path", path.display()),
            )
        })?;
        let name = path.display().to_string();
        let report = lint(
            &sql,
            &LintOptions {
                pg_version: args.pg_version,
                live: None,
                file: Some(name.clone()),
            },
        );
        if global.format == Format::Text {
            let lines: Vec<&str> = sql.lines().collect();
            for f in &report.findings {
                text.push_str(&output::finding_text(f, Some(&lines)));
                text.push('\n');
            }
        }
        for l in &report.unused_ignores {
            text.push_str(&format!(
                "warning: unused ignore at {}: it suppresses nothing; remove it\n\n",
                output::location(l)
            ));
        }
        all.extend(report.findings);
        unused.extend(report.unused_ignores);
        // The per-statement analysis is for the planner; the process exits soon after, and
        // freeing it piece by piece was about 5 % of a large file's lint time.
        std::mem::forget(report.statements);
    }
    match global.format {
        Format::Text => {
            eprint!("{text}");
            eprintln!(
                "{} file{} checked: {}",
                args.files.len(),
                if args.files.len() == 1 { "" } else { "s" },
                output::summary(&all)
            );
        }
        Format::Json => {
            // Streamed straight from the findings: no intermediate JSON tree.
            #[derive(serde::Serialize)]
            struct Report<'a> {
                findings: &'a [Finding],
                unused_ignores: &'a [planner::Location],
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer_pretty(
                &mut out,
                &Report {
                    findings: &all,
                    unused_ignores: &unused,
                },
            )
            .and_then(|()| {
                use std::io::Write;
                writeln!(out)
                    .and_then(|()| out.flush())
                    .map_err(serde_json::Error::io)
            })
            .map_err(|e| Failure::from(anyhow!("cannot write the report: {e}")))?;
        }
        Format::Github => {
            for f in &all {
                println!("{}", output::finding_github(f));
            }
            for l in &unused {
                println!(
                    "::warning file={},line={},col={},title=unused ignore::this tandem: ignore comment suppresses nothing; remove it",
                    l.file.as_deref().unwrap_or(""),
                    l.line,
                    l.column
                );
            }
        }
    }
    let fails = |f: &Finding| match args.fail_on {
        FailOn::Error => f.severity == Severity::Error,
        FailOn::Warning => f.severity != Severity::Info,
        FailOn::Never => false,
    };
    let code = if all.iter().any(fails) { FINDINGS } else { OK };
    // As above: the exit frees the findings at once.
    std::mem::forget(all);
    Ok(code)
}
