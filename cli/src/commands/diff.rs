//! `tandem diff --to SCHEMA.sql [--exit-code]`: does the live database match the desired schema?

use planner::diff::{differences, DifferenceKind};

use crate::args::{DiffArgs, Format, Global};
use crate::commands::desired;
use crate::connect;
use crate::dev::DevServer;
use crate::exit::{Failure, DIFFERENCES, OK};

pub async fn run(global: &Global, args: DiffArgs) -> Result<u8, Failure> {
    let config = connect::resolve(global)?;
    let client = connect::target(&config).await?;
    let major = engine::catalog::database_identity(&client)
        .await
        .map_err(|e| Failure::from(anyhow::Error::new(e)))?
        .server_version_num
        / 10000;
    // The target is read while the dev database starts and the desired schema loads.
    let live = async {
        engine::catalog::introspect(&client)
            .await
            .map_err(|e| Failure::from(anyhow::Error::new(e)))
    };
    let desired = async {
        let dev = DevServer::start(&args.dev, Some((&config, major))).await?;
        desired::load(&dev, &args.to).await
    };
    let (live, desired) = tokio::join!(live, desired);
    let (live, desired) = (live?, desired?);
    let found = differences(&live, &desired.schema);
    match global.format {
        Format::Json | Format::Github => {
            println!("{}", serde_json::to_string_pretty(&found).expect("json"));
        }
        Format::Text => {
            if found.is_empty() {
                eprintln!(
                    "{} matches {}",
                    connect::describe(&config),
                    args.to.display()
                );
            } else {
                eprintln!(
                    "{} differs from {} in {} object{}:",
                    connect::describe(&config),
                    args.to.display(),
                    found.len(),
                    if found.len() == 1 { "" } else { "s" }
                );
                for d in &found {
                    let what = match d.kind {
                        DifferenceKind::Missing => "missing from the database",
                        DifferenceKind::Extra => "in the database but not in the desired schema",
                        DifferenceKind::Changed => "differs",
                    };
                    eprintln!("  {}: {what}", d.object);
                    if let Some(detail) = &d.detail {
                        for line in detail.lines() {
                            eprintln!("      {line}");
                        }
                    }
                }
                eprintln!(
                    "make a plan to reconcile them with: tandem plan --to {}",
                    args.to.display()
                );
            }
        }
    }
    Ok(if args.exit_code && !found.is_empty() {
        DIFFERENCES
    } else {
        OK
    })
}
