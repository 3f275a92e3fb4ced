//! `tandem demo`: a throwaway PostgreSQL with a sample database, and what tandem says about
//! a risky change to it (lint, plan, diff). Everything it starts, it stops and removes.

use std::path::PathBuf;

use anyhow::{anyhow, Context};

use crate::args::{DemoArgs, DiffArgs, Format, Global, LintArgs, PlanArgs};
use crate::commands;
use crate::connect;
use crate::exit::{Failure, OK};

const SAMPLE: &str = include_str!("demo/sample.sql");
const CHANGE: &str = include_str!("demo/change.sql");
const DESIRED: &str = include_str!("demo/desired.sql");

pub async fn run(_global: &Global, args: DemoArgs) -> Result<u8, Failure> {
    eprintln!(
        "tandem demo: starting a throwaway PostgreSQL 15 (initdb into a temporary directory)..."
    );
    let cluster = tokio::task::spawn_blocking(fixtures::pg::Cluster::start_throwaway)
        .await
        .map_err(|e| Failure::from(anyhow!(e)))?
        .context("cannot start a throwaway PostgreSQL; install the server with `apt-get install -y postgresql-15`")
        .map_err(Failure::from)?;
    let result = demo(&cluster, &args).await;
    eprintln!("\ntandem demo: stopping the throwaway PostgreSQL and removing its files");
    drop(cluster);
    result
}

async fn demo(cluster: &fixtures::pg::Cluster, args: &DemoArgs) -> Result<u8, Failure> {
    let admin = connect::connect(&cluster.config("postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE demo")
        .await
        .map_err(|e| Failure::from(anyhow!(e)))?;
    let global = Global {
        database_url: Some(cluster.url("demo")),
        format: Format::Text,
    };
    let config = connect::resolve(&global)?;
    let client = connect::connect(&config).await?;
    eprintln!(
        "tandem demo: loading a sample shop (accounts: 200,000 rows; orders: 400,000 rows)..."
    );
    client
        .batch_execute(SAMPLE)
        .await
        .map_err(|e| Failure::from(anyhow!(e)))?;

    let dir = tempdir()?;
    let change = dir.join("change.sql");
    let desired = dir.join("desired.sql");
    std::fs::write(&change, CHANGE).map_err(|e| Failure::from(anyhow!(e)))?;
    std::fs::write(&desired, DESIRED).map_err(|e| Failure::from(anyhow!(e)))?;

    banner("1. tandem lint change.sql — what this migration would do to a live database, no database needed");
    eprintln!("{}", CHANGE.trim());
    eprintln!();
    commands::lint::run(
        &global,
        LintArgs {
            files: vec![change.clone()],
            pg_version: 15,
        },
    )?;

    banner("2. tandem plan -f change.sql — the same change, planned against the live tables");
    commands::plan::run(
        &global,
        PlanArgs {
            to: None,
            file: Some(change.clone()),
            sql: None,
            output: Some(dir.join("plan.json")),
            pg_version: None,
            no_verify: false,
        },
    )
    .await?;

    banner("3. tandem diff --to desired.sql — does the database match the declared schema?");
    commands::diff::run(
        &global,
        DiffArgs {
            to: desired.clone(),
            exit_code: true,
        },
    )
    .await?;

    banner(
        "4. tandem plan --to desired.sql — the steps from here to there, checked on a scratch copy",
    );
    commands::plan::run(
        &global,
        PlanArgs {
            to: Some(desired.clone()),
            file: None,
            sql: None,
            output: None,
            pg_version: None,
            no_verify: false,
        },
    )
    .await?;

    if args.keep {
        eprintln!(
            "\nthe server keeps running for you: psql \"{}\"",
            cluster.url("demo")
        );
        eprintln!("press Ctrl-C to stop it");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(OK)
}

fn banner(title: &str) {
    eprintln!("\n──────────────────────────────────────────────────────────────────────");
    eprintln!("{title}");
    eprintln!("──────────────────────────────────────────────────────────────────────");
}

fn tempdir() -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure::from(anyhow!(e)))?;
    Ok(dir)
}
