//! `tandem check`: the CI command. Lints a migrations folder, replays it on a fresh dev
//! database, fails on drift (the replay against `--schema`, the target against the replay of
//! what it has applied) and plans the pending migrations against the target's real sizes.
//!
//! The target is only read: its catalogs, its migration tool's history table. Every SQL
//! statement of the folder and of the schema file runs on the dev database (`dev.rs`).

mod folder;
mod history;
mod report;

use anyhow::anyhow;
use planner::diff::{differences, Difference};
use planner::lint::{lint, LintOptions};
use planner::model::Schema;
use planner::plan::{self, PlanSource, Strategy, Target};
use planner::{Finding, Severity};

use crate::args::{CheckArgs, Global};
use crate::commands::desired;
use crate::connect;
use crate::dev::DevServer;
use crate::exit::{Failure, DIFFERENCES, FAILURE, FINDINGS, OK, USAGE};
use crate::scratch::Scratch;

pub use folder::Migration;
use history::Applied;

/// One migration file as the report shows it.
#[derive(serde::Serialize)]
pub struct Checked {
    pub file: String,
    pub version: String,
    /// Whether the target has applied it: false without a target; true for every file when
    /// the target has no history table.
    pub applied: bool,
    /// Linted: all files without a target, the pending ones with one.
    pub linted: bool,
    pub findings: Vec<Finding>,
    /// The plan's steps for a pending migration (with a target).
    pub steps: Vec<StepSummary>,
}

#[derive(serde::Serialize)]
pub struct StepSummary {
    pub description: String,
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// Everything `check` found; rendered by `report.rs`.
#[derive(serde::Serialize)]
pub struct Report {
    pub dev: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_table: Option<&'static str>,
    pub migrations: Vec<Checked>,
    /// The first migration that failed to replay, with the server's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_error: Option<String>,
    /// The target against the replay of the migrations it has applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_drift: Option<Vec<Difference>>,
    /// The replay of every migration against `--schema`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_drift: Option<Vec<Difference>>,
    pub exit: u8,
}

impl Report {
    fn errors(&self) -> bool {
        self.replay_error.is_some()
            || self.migrations.iter().any(|m| {
                m.findings.iter().any(|f| f.severity == Severity::Error)
                    || m.steps.iter().any(|s| s.strategy == Strategy::Refused)
            })
    }

    fn drift(&self) -> bool {
        self.target_drift.as_ref().is_some_and(|d| !d.is_empty())
            || self.schema_drift.as_ref().is_some_and(|d| !d.is_empty())
    }
}

pub async fn run(global: &Global, args: CheckArgs) -> Result<u8, Failure> {
    if args.migrations.is_none() && args.schema.is_none() {
        return Err(Failure::usage(
            "nothing to check: give --migrations DIR (a folder of sqlx, golang-migrate or Flyway migrations), --schema SCHEMA.sql, or both",
        ));
    }
    let migrations = match &args.migrations {
        Some(dir) => folder::read(dir).map_err(|e| Failure::new(USAGE, anyhow!(e)))?,
        None => Vec::new(),
    };
    let texts = migrations
        .iter()
        .map(|m| desired::read(&m.path))
        .collect::<Result<Vec<String>, Failure>>()?;

    // The target, when one is named: only read.
    let target = match target_config(global)? {
        Some(config) => Some(read_target(config).await?),
        None => None,
    };
    let pg_version = args
        .pg_version
        .or(target.as_ref().map(|t| t.major))
        .unwrap_or(15);
    let applied = target
        .as_ref()
        .map_or(Applied::Unknown, |t| t.applied.clone());
    if let Applied::UpTo {
        dirty: true,
        version,
        table,
    } = &applied
    {
        return Err(Failure::new(
            FINDINGS,
            anyhow!("the target's {table} marks version {version} dirty: that migration failed half-way; repair the database and reset the version with the migration tool (`migrate force`), then check again"),
        ));
    }

    let dev = DevServer::start(&args.dev, target.as_ref().map(|t| (&*t.config, t.major))).await?;
    let mut report = Report {
        dev: dev.label.clone(),
        target: target.as_ref().map(|t| connect::describe(&t.config)),
        history_table: applied.table(),
        migrations: Vec::new(),
        replay_error: None,
        target_drift: None,
        schema_drift: None,
        exit: OK,
    };
    for (m, sql) in migrations.iter().zip(&texts) {
        let is_applied = target.is_some() && applied.contains(m);
        let linted = !is_applied;
        let findings = if linted && target.is_none() {
            lint(
                sql,
                &LintOptions {
                    pg_version,
                    live: None,
                    file: Some(m.path.display().to_string()),
                },
            )
            .findings
        } else {
            Vec::new()
        };
        report.migrations.push(Checked {
            file: m.path.display().to_string(),
            version: m.version.to_string(),
            applied: is_applied,
            linted,
            findings,
            steps: Vec::new(),
        });
    }

    let work = replay(
        &dev,
        &args,
        &migrations,
        &texts,
        target.as_ref(),
        pg_version,
        &mut report,
    );
    let outcome = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::new(130, anyhow!("interrupted; the dev databases were dropped"))),
    };
    outcome?;
    report.exit = if report.errors() {
        FINDINGS
    } else if report.drift() {
        DIFFERENCES
    } else {
        OK
    };
    report::emit(global.format, &report)?;
    Ok(report.exit)
}

/// The target as `check` needs it.
struct TargetInfo {
    config: pgtls::Endpoint,
    major: u32,
    database: planner::plan::DatabaseIdentity,
    live: Schema,
    applied: Applied,
}

/// A target only when one is named (`--database-url` or `DATABASE_URL`): without one, check
/// works from the folder alone.
fn target_config(global: &Global) -> Result<Option<pgtls::Endpoint>, Failure> {
    if global.database_url.is_none() && std::env::var_os("DATABASE_URL").is_none() {
        return Ok(None);
    }
    connect::resolve(global).map(Some)
}

async fn read_target(config: pgtls::Endpoint) -> Result<TargetInfo, Failure> {
    // The database's own search_path (not `connect::target`'s pinned one): check reads the
    // migration tool's version table by the name the application gives it.
    let client = connect::connect(&config).await?;
    // Nothing check does writes; the session says so to the server too.
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .map_err(|e| Failure::new(FAILURE, anyhow!(e)))?;
    let database = engine::catalog::database_identity(&client)
        .await
        .map_err(|e| Failure::new(FAILURE, anyhow!(e)))?;
    let live = engine::catalog::introspect(&client)
        .await
        .map_err(|e| Failure::new(FAILURE, anyhow!(e)))?;
    let applied = history::read(&client).await.map_err(|e| {
        Failure::new(
            FAILURE,
            e.context("cannot read the target's migration history"),
        )
    })?;
    Ok(TargetInfo {
        major: database.server_version_num / 10000,
        config,
        database,
        live,
        applied,
    })
}

/// Replay the folder on a scratch database of the dev server (the applied migrations, then
/// the pending ones), load `--schema` beside it, compare, and plan the pending migrations.
async fn replay(
    dev: &DevServer,
    args: &CheckArgs,
    migrations: &[Migration],
    texts: &[String],
    target: Option<&TargetInfo>,
    pg_version: u32,
    report: &mut Report,
) -> Result<(), Failure> {
    let scratch = Scratch::create(dev, "check").await.map_err(Failure::from)?;
    // The schema file loads on its own scratch database while the folder replays.
    let desired = async {
        match &args.schema {
            Some(path) => desired::load(dev, path).await.map(Some),
            None => Ok(None),
        }
    };
    let replayed = replay_into(
        &scratch,
        migrations,
        texts,
        target,
        (pg_version, args.in_place.in_place_below),
        report,
    );
    let (desired, replayed) = tokio::join!(desired, replayed);
    scratch.drop().await;
    let replayed = replayed?;
    let desired = desired?;
    if let (Some(schema), Some(final_schema)) = (desired, replayed) {
        report.schema_drift = Some(differences(
            &without_history(&final_schema),
            &without_history(&schema.schema),
        ));
    }
    Ok(())
}

/// Replay into `scratch`; `Some(schema after every migration)`, or `None` when one failed
/// (recorded in the report).
async fn replay_into(
    scratch: &Scratch,
    migrations: &[Migration],
    texts: &[String],
    target: Option<&TargetInfo>,
    (pg_version, in_place_below): (u32, u64),
    report: &mut Report,
) -> Result<Option<Schema>, Failure> {
    let introspect = || async {
        engine::catalog::introspect(&scratch.client)
            .await
            .map_err(|e| Failure::new(FAILURE, anyhow!(e)))
    };
    let mut compared_target = false;
    for (i, (m, sql)) in migrations.iter().zip(texts).enumerate() {
        let pending = target.is_some() && !report.migrations[i].applied;
        if let Some(t) = target.filter(|_| pending) {
            let mut before = introspect().await?;
            if !compared_target {
                // Everything before the first pending migration is what the target has
                // applied.
                compared_target = true;
                report.target_drift = Some(differences(
                    &without_history(&t.live),
                    &without_history(&before),
                ));
            }
            // Planned against the schema as the earlier migrations leave it, with the
            // target's real sizes for the tables it has.
            for (name, table) in before.tables.iter_mut() {
                table.stats = t.live.tables.get(name).and_then(|l| l.stats);
            }
            let plan = plan::from_sql(
                &Target {
                    live: &before,
                    database: t.database.clone(),
                    pg_version,
                    in_place_below,
                },
                PlanSource::new("file", &m.path.display().to_string(), sql),
                sql,
            );
            let checked = &mut report.migrations[i];
            checked.findings = plan.findings;
            checked.steps = plan
                .steps
                .into_iter()
                .map(|s| StepSummary {
                    description: s.description,
                    strategy: s.strategy,
                    refusal: s.refusal,
                })
                .collect();
        }
        if let Err(e) = scratch.load(sql, &m.path.display().to_string()).await {
            report.replay_error = Some(format!("{e:#}"));
            return Ok(None);
        }
    }
    let after = introspect().await?;
    if let Some(t) = target.filter(|_| !compared_target) {
        report.target_drift = Some(differences(
            &without_history(&t.live),
            &without_history(&after),
        ));
    }
    Ok(Some(after))
}

/// The schema without the migration tools' own history tables.
fn without_history(schema: &Schema) -> Schema {
    let mut schema = schema.clone();
    schema
        .tables
        .retain(|name, _| !history::HISTORY_TABLES.contains(&name.name.as_str()));
    schema
}
