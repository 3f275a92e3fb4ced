//! `tandem plan (--to SCHEMA.sql | -f CHANGE.sql | --sql "...") [-o plan.json]`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::anyhow;
use planner::diff::{diff, differences, parse_rename_hints, Change, RenameHints};
use planner::model::{Schema, Scope};
use planner::plan::{self, DatabaseIdentity, Plan, PlanSource, Strategy, Target};
use planner::Severity;
use tokio_postgres::{Client, Config};

use crate::args::{Format, Global, PlanArgs};
use crate::commands::desired;
use crate::connect;
use crate::dev::DevServer;
use crate::exit::{Failure, FAILURE, FINDINGS, OK, USAGE};
use crate::output;
use crate::scratch::Scratch;

pub async fn run(global: &Global, args: PlanArgs) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    let database = engine::catalog::database_identity(&client)
        .await
        .map_err(catalog)?;
    let pg_version = args
        .pg_version
        .unwrap_or(database.server_version_num / 10000);

    let (plan, input) = if let Some(path) = &args.to {
        let plan = plan_to(&args, path, &config, &client, database, pg_version).await?;
        (plan, None)
    } else {
        let live = introspect_live(&client).await?;
        let (name, sql) = match (&args.file, &args.sql) {
            (Some(path), _) => (path.display().to_string(), desired::read(path)?),
            (None, Some(sql)) => ("-".to_string(), sql.clone()),
            (None, None) => return Err(Failure::usage("give the change with --to, -f or --sql")),
        };
        let kind = if args.file.is_some() { "file" } else { "sql" };
        let source = PlanSource::new(kind, &name, &sql);
        let target = Target {
            live: &live,
            database,
            pg_version,
            in_place_below: args.in_place.in_place_below,
        };
        (plan::from_sql(&target, source, &sql), Some(sql))
    };

    let mut plan = plan;
    plan.dual_read_min = args.dual_read_min;
    let json = plan.to_canonical_json();
    if let Some(out) = &args.output {
        std::fs::write(out, &json).map_err(|e| {
            Failure::new(
                USAGE,
                anyhow!(
                    "cannot write {} ({e}); check the directory exists and is writable",
                    out.display()
                ),
            )
        })?;
    }
    match global.format {
        Format::Json => print!("{json}"),
        Format::Github => {
            for f in &plan.findings {
                println!("{}", output::finding_github(f));
            }
        }
        Format::Text => eprint!(
            "{}",
            review(&plan, &config, input.as_deref(), args.output.as_deref())
        ),
    }
    let refused = plan.steps.iter().any(|s| s.strategy == Strategy::Refused);
    let errors = plan.findings.iter().any(|f| f.severity == Severity::Error);
    Ok(if refused || errors { FINDINGS } else { OK })
}

async fn introspect_live(client: &Client) -> Result<Schema, Failure> {
    let t = std::time::Instant::now();
    let live = engine::catalog::introspect(client).await.map_err(catalog)?;
    tracing::info!(elapsed_ms = ms(t), "introspected the live schema");
    Ok(live)
}

/// `plan --to`: the desired schema loaded and introspected on the dev database, diffed with
/// the live one, planned and (unless `--no-verify`) checked on a scratch copy. Every scratch
/// database is dropped on every path out of here.
async fn plan_to(
    args: &PlanArgs,
    path: &Path,
    config: &Config,
    client: &Client,
    database: DatabaseIdentity,
    pg_version: u32,
) -> Result<Plan, Failure> {
    let major = database.server_version_num / 10000;
    // The target is read while the dev database starts and the desired schema loads (and
    // the check's scratch database is created): none of these needs another.
    let prepare = async {
        let dev = DevServer::start(&args.dev, Some((config, major))).await?;
        let t = std::time::Instant::now();
        let copy = async {
            if args.no_verify {
                return Ok(None);
            }
            Scratch::create(&dev, "verify")
                .await
                .map(Some)
                .map_err(Failure::from)
        };
        let (desired, copy) = tokio::join!(desired::load_kept(&dev, path), copy);
        tracing::info!(elapsed_ms = ms(t), "loaded the desired schema");
        Ok::<_, Failure>((dev, desired, copy))
    };
    let (live, prepared) = tokio::join!(introspect_live(client), prepare);
    let (_dev, desired, copy) = prepared?;
    let (live, (desired, loaded), copy) = match (live, desired, copy) {
        (Ok(live), Ok(desired), Ok(copy)) => (live, desired, copy),
        (live, desired, copy) => {
            let mut errors = Vec::new();
            if let Err(e) = live {
                errors.push(e);
            }
            match desired {
                Ok((_, scratch)) => scratch.drop().await,
                Err(e) => errors.push(e),
            }
            match copy {
                Ok(Some(scratch)) => scratch.drop().await,
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
            return Err(errors.into_iter().next().expect("one of them failed"));
        }
    };
    let work = async {
        let target = Target {
            live: &live,
            database,
            pg_version,
            in_place_below: args.in_place.in_place_below,
        };
        let t = std::time::Instant::now();
        let planned = (|| {
            let hints = parse_rename_hints(&desired.sql).map_err(|e| Failure::new(USAGE, e))?;
            let changes =
                diff(&live, &desired.schema, &hints).map_err(|e| Failure::new(FINDINGS, e))?;
            tracing::info!(elapsed_ms = ms(t), changes = changes.len(), "diffed");
            let t = std::time::Instant::now();
            let source = PlanSource::new("to", &path.display().to_string(), &desired.sql);
            let plan = plan::from_changes(&target, source, &changes);
            tracing::info!(elapsed_ms = ms(t), steps = plan.steps.len(), "planned");
            Ok::<_, Failure>((changes, plan))
        })();
        match (planned, copy) {
            (Ok((changes, plan)), Some(scratch)) => {
                let t = std::time::Instant::now();
                let checked = tokio::select! {
                    r = check(&scratch, &live, &desired.schema, &changes, &plan) => r,
                    _ = tokio::signal::ctrl_c() => Err(Failure::new(130, anyhow!("interrupted; the scratch databases were dropped"))),
                };
                scratch.drop().await;
                checked?;
                tracing::info!(elapsed_ms = ms(t), "checked the plan on a scratch copy");
                Ok(plan)
            }
            (Ok((_, plan)), None) => Ok(plan),
            (Err(e), copy) => {
                if let Some(scratch) = copy {
                    scratch.drop().await;
                }
                Err(e)
            }
        }
    };
    // The desired schema's scratch database is dropped while the plan is made and checked.
    let (plan, ()) = tokio::join!(work, loaded.drop());
    plan
}

fn ms(since: std::time::Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn catalog(e: engine::catalog::CatalogError) -> Failure {
    Failure::new(FAILURE, anyhow::Error::new(e))
}

/// Check the plan: rebuild the live schema on `scratch`, replay the plan there and compare
/// the result with the desired schema. Only the plan's [`Scope`] is rebuilt and compared on
/// the copy; outside it the plan changes nothing, so there the live schema must already be
/// the desired one. Changes beyond tables and views have no scope: the whole schema then.
async fn check(
    scratch: &Scratch,
    live: &Schema,
    desired: &Schema,
    changes: &[Change],
    plan: &Plan,
) -> Result<(), Failure> {
    let statements: Vec<&str> = plan
        .steps
        .iter()
        .flat_map(|s| s.sql.iter())
        .chain(changes.iter().flat_map(|c| c.sql.iter()))
        .map(String::as_str)
        .collect();
    let scope = Scope::of(live, desired, changes, &statements);
    let split;
    let (live, desired) = match &scope {
        Some(scope) => {
            let (live_in, live_out) = live.split(scope);
            let (desired_in, desired_out) = desired.split(scope);
            let off = differences(&live_out, &desired_out);
            if !off.is_empty() {
                let list: Vec<String> = off.iter().map(|d| d.object.clone()).collect();
                return Err(bug(anyhow!(
                    "the plan leaves {} as they are in the live schema, but the desired schema differs there",
                    list.join(", ")
                )));
            }
            split = (live_in, desired_in);
            (&split.0, &split.1)
        }
        None => (live, desired),
    };
    tracing::info!(
        tables = live.tables.len(),
        views = live.views.len(),
        whole = scope.is_none(),
        "the check's scope"
    );
    let t = std::time::Instant::now();
    rebuild(scratch, live).await?;
    tracing::info!(elapsed_ms = ms(t), "rebuilt the live schema's copy");
    let t = std::time::Instant::now();
    replay(scratch, desired, plan).await?;
    tracing::info!(elapsed_ms = ms(t), "replayed the plan on the copy");
    Ok(())
}

/// Recreate `live` (the live schema, or its part in the check's scope) in `scratch` from a
/// diff against nothing, and check the copy is it: the ground the plan's check replays on.
async fn rebuild(scratch: &Scratch, live: &Schema) -> Result<(), Failure> {
    let empty = engine::catalog::introspect(&scratch.client)
        .await
        .map_err(catalog)?;
    let rebuild = diff(&empty, live, &RenameHints::default())
        .map_err(|e| bug(anyhow!("cannot recreate the live schema: {e}")))?;
    // One script, loaded in groups of statements like any file (scratch.rs).
    let script: String = rebuild
        .iter()
        .flat_map(|c| c.sql.iter())
        .map(|sql| format!("{sql};\n"))
        .collect();
    scratch
        .load(&script, "the live schema's copy")
        .await
        .map_err(|e| bug(anyhow!("recreating the live schema failed: {e:#}")))?;
    let copy = engine::catalog::introspect(&scratch.client)
        .await
        .map_err(catalog)?;
    let off = differences(live, &copy);
    if !off.is_empty() {
        let list: Vec<String> = off.iter().map(|d| d.object.clone()).collect();
        return Err(bug(anyhow!(
            "the scratch copy of the live schema differs from it in {}",
            list.join(", ")
        )));
    }
    Ok(())
}

/// Replay the plan on the copy of the live schema and check it yields the desired one. A plan
/// that fails this is tandem's bug, and is reported as such instead of handed out.
async fn replay(scratch: &Scratch, desired: &Schema, plan: &Plan) -> Result<(), Failure> {
    for step in &plan.steps {
        if let (Strategy::Shadow, Some(table)) = (step.strategy, &step.table) {
            // As the shadow migration's result: the table's policies carried across.
            engine::shadow::replay::shadow_step(&scratch.client, table, &step.sql)
                .await
                .map_err(|e| {
                    bug(anyhow!(
                        "the plan's shadow step on {} failed on a copy of the live schema: {}",
                        table.display_plain(),
                        db_message(&e)
                    ))
                })?;
            continue;
        }
        for sql in &step.sql {
            scratch.client.batch_execute(sql).await.map_err(|e| {
                bug(anyhow!(
                    "the plan failed on a copy of the live schema at `{sql}`: {}",
                    db_message(&e)
                ))
            })?;
        }
    }
    let after = engine::catalog::introspect(&scratch.client)
        .await
        .map_err(catalog)?;
    let left = differences(&after, desired);
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|d| d.object.clone()).collect();
        return Err(bug(anyhow!(
            "after the plan, the copy still differs from the desired schema in {}",
            list.join(", ")
        )));
    }
    Ok(())
}

fn bug(e: anyhow::Error) -> Failure {
    Failure::new(
        FAILURE,
        e.context("the plan did not pass its check, which is a bug in tandem: please report it with the schema files; no plan was written"),
    )
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// The review a DBA reads on a terminal.
fn review(
    plan: &Plan,
    config: &Config,
    input: Option<&str>,
    written: Option<&std::path::Path>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan for {} (PostgreSQL {}.{}, system {})",
        connect::describe(config),
        plan.database.server_version_num / 10000,
        plan.database.server_version_num % 10000,
        plan.database.system_identifier
    );
    let _ = writeln!(
        out,
        "source: {} {} (sha256 {})",
        plan.source.kind,
        plan.source.name,
        &plan.source.sha256[..12]
    );
    let _ = writeln!(
        out,
        "schema fingerprint: {}\n",
        &plan.schema_fingerprint[..16]
    );
    if plan.steps.is_empty() {
        let _ = writeln!(out, "nothing to do: the database already matches\n");
    }
    if plan.dual_read_min > 0 {
        let _ = writeln!(
            out,
            "before cutover, verification waits for {} dual-read comparisons by `tandem proxy`, with no mismatch\n",
            plan.dual_read_min
        );
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let strategy = match step.strategy {
            Strategy::Online => "online",
            Strategy::Shadow => "SHADOW",
            Strategy::Refused => "REFUSED",
        };
        let _ = writeln!(out, "step {}  {strategy}  {}", i + 1, step.description);
        for lock in &step.locks {
            let _ = writeln!(
                out,
                "    lock: {} on {} (blocks {})",
                lock.mode,
                lock.object,
                lock.mode.blocks()
            );
        }
        let _ = writeln!(
            out,
            "    estimate: traffic-blocking lock held ~{} ms, step takes ~{}",
            step.estimate.lock_ms,
            human_ms(step.estimate.total_ms)
        );
        if step.strategy == Strategy::Shadow {
            let _ = writeln!(out, "    runs as a seven-phase shadow-table migration (tandem apply): copy, verify, then a cutover under lock_timeout");
        }
        if let Some(why) = &step.refusal {
            let _ = writeln!(out, "    refused: {why}");
        }
        for what in &step.exposes {
            let _ = writeln!(out, "    clients see: {what}");
        }
        let _ = writeln!(
            out,
            "    {}",
            if step.transactional {
                "in one transaction:"
            } else {
                "each statement on its own:"
            }
        );
        for sql in &step.sql {
            for line in sql.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        out.push('\n');
    }
    let lines: Option<Vec<&str>> = input
        .filter(|_| plan.source.kind != "to")
        .map(|s| s.lines().collect());
    for f in &plan.findings {
        out.push_str(&output::finding_text(f, lines.as_deref()));
        out.push('\n');
    }
    let count = |s: Strategy| plan.steps.iter().filter(|x| x.strategy == s).count();
    let _ = writeln!(
        out,
        "{} steps ({} online, {} shadow, {} refused); findings: {}",
        plan.steps.len(),
        count(Strategy::Online),
        count(Strategy::Shadow),
        count(Strategy::Refused),
        output::summary(&plan.findings)
    );
    if let Some(path) = written {
        let _ = writeln!(
            out,
            "plan written to {} (sha256 {})",
            path.display(),
            plan.digest()
        );
    }
    out
}

fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{:.1} min", ms as f64 / 60_000.0)
    }
}
