//! `tandem dev-image build [--pg 15|17] [--force]`: the dev database's image, built from
//! Debian's packages on this machine (`devdb::docker::image`), for `--dev docker`.

use std::str::FromStr;

use anyhow::anyhow;

use crate::args::DevImageCommand;
use crate::exit::{Failure, OK, UNAVAILABLE, USAGE};

pub async fn run(command: DevImageCommand) -> Result<u8, Failure> {
    match command {
        DevImageCommand::Build(args) => {
            let major = devdb::docker::PgMajor::from_str(&args.pg)
                .map_err(|e| Failure::new(USAGE, anyhow!("--pg {}: {e}", args.pg)))?;
            let t = std::time::Instant::now();
            let progress = |line: &str| eprintln!("dev image: {line}");
            devdb::docker::build(major, args.force, &progress)
                .await
                .map_err(|e| Failure::new(UNAVAILABLE, anyhow!(e)))?;
            eprintln!(
                "{} ready ({:.1} s)",
                devdb::docker::tag(major),
                t.elapsed().as_secs_f64()
            );
            Ok(OK)
        }
    }
}
