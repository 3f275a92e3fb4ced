//! Reading a desired-schema file: parse it, load it into a scratch database, introspect it.

use std::path::Path;

use anyhow::anyhow;
use planner::lint::{lint, LintOptions};
use planner::model::Schema;
use planner::Severity;

use crate::dev::DevServer;
use crate::exit::{Failure, FINDINGS, USAGE};
use crate::output;
use crate::scratch::Scratch;

pub struct Desired {
    pub sql: String,
    pub schema: Schema,
}

/// Read `path` and introspect what it creates, in a scratch database on the dev server. The
/// scratch database is dropped on every path out of here, Ctrl-C included.
pub async fn load(dev: &DevServer, path: &Path) -> Result<Desired, Failure> {
    let (desired, scratch) = load_kept(dev, path).await?;
    drop_scratch(scratch).await;
    Ok(desired)
}

/// [`load`], but the scratch database is handed back on success, for the caller to drop
/// while it does other work ([`Scratch::drop`]); on error it is dropped here.
pub async fn load_kept(dev: &DevServer, path: &Path) -> Result<(Desired, Scratch), Failure> {
    let sql = read(path)?;
    let name = path.display().to_string();
    // Syntax errors are reported with line and column before any database work. A file the
    // parser reads whole needs no more than its statements' places; only one it does not is
    // linted, for the place and message of the first statement at fault.
    let spans = match planner::lint::parsed_statement_spans(&sql) {
        Some(spans) => spans,
        None => {
            let parse_errors: Vec<_> = lint(
                &sql,
                &LintOptions {
                    pg_version: 15,
                    live: None,
                    file: Some(name.clone()),
                },
            )
            .findings
            .into_iter()
            .filter(|f| f.id == "T000" && f.severity == Severity::Error)
            .collect();
            if let Some(first) = parse_errors.first() {
                let lines: Vec<&str> = sql.lines().collect();
                eprint!("{}", output::finding_text(first, Some(&lines)));
                return Err(Failure::new(
                    FINDINGS,
                    anyhow!("{name} is not valid SQL; fix the statement above"),
                ));
            }
            planner::lint::statement_spans(&sql)
        }
    };
    let t = std::time::Instant::now();
    let scratch = Scratch::create(dev, "desired")
        .await
        .map_err(Failure::from)?;
    tracing::info!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        "created the scratch database"
    );
    let work = async {
        let t = std::time::Instant::now();
        scratch.load_spans(&sql, spans, &name).await.map_err(|e| {
            Failure::new(
                USAGE,
                e.context(format!(
                    "cannot load the desired schema {name}; fix the statement and retry"
                )),
            )
        })?;
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "loaded the desired schema"
        );
        let t = std::time::Instant::now();
        let schema = engine::catalog::introspect(&scratch.client)
            .await
            .map_err(|e| Failure::from(anyhow::Error::new(e)));
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "introspected the desired schema"
        );
        schema
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::new(130, anyhow!("interrupted; the scratch database was dropped"))),
    };
    match result {
        Ok(schema) => Ok((Desired { schema, sql }, scratch)),
        Err(e) => {
            drop_scratch(scratch).await;
            Err(e)
        }
    }
}

async fn drop_scratch(scratch: Scratch) {
    let t = std::time::Instant::now();
    scratch.drop().await;
    tracing::info!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        "dropped the desired schema's scratch database"
    );
}

pub fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            USAGE,
            anyhow!("cannot read {} ({e}); check the path", path.display()),
        )
    })
}
