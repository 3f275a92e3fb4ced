//! Command-line arguments (clap). The words here are a contract: scripts depend on them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Zero-downtime schema migrations for PostgreSQL"
)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct Global {
    /// PostgreSQL connection string (URL or key=value). Without it: DATABASE_URL, then the
    /// libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, with passwords from ~/.pgpass.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Output format: text for people (stderr), json for machines (stdout), github for
    /// workflow annotations (stdout).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Github,
}

#[derive(Subcommand)]
pub enum Command {
    /// Findings for migration SQL files, without a database (exit 3 if any is an error).
    Lint(LintArgs),
    /// Introspect the live database and build the reviewed plan for a change.
    Plan(PlanArgs),
    /// Compare the live database with a desired schema (exit 2 with --exit-code if they differ).
    Diff(DiffArgs),
    /// Start a throwaway PostgreSQL, and show lint, plan and diff on a sample schema.
    Demo(DemoArgs),
}

#[derive(clap::Args)]
pub struct LintArgs {
    /// SQL files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Target PostgreSQL major version.
    #[arg(long, default_value_t = 15, value_name = "MAJOR")]
    pub pg_version: u32,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["to", "file", "sql"])))]
pub struct PlanArgs {
    /// A desired-schema file: plan the steps from the live schema to it.
    #[arg(long, value_name = "SCHEMA.sql")]
    pub to: Option<PathBuf>,
    /// A change file of DDL statements (ALTER TABLE ..., CREATE INDEX ...).
    #[arg(short = 'f', long = "file", value_name = "CHANGE.sql")]
    pub file: Option<PathBuf>,
    /// The change as inline SQL.
    #[arg(long, value_name = "SQL")]
    pub sql: Option<String>,
    /// Write the plan as canonical JSON to this file.
    #[arg(short = 'o', long = "output", value_name = "plan.json")]
    pub output: Option<PathBuf>,
    /// Target PostgreSQL major version (default: the connected server's).
    #[arg(long, value_name = "MAJOR")]
    pub pg_version: Option<u32>,
    /// Skip the check that replays a --to plan on a scratch copy of the live schema.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The desired-schema file to compare the live database with.
    #[arg(long, value_name = "SCHEMA.sql")]
    pub to: PathBuf,
    /// Exit 2 when the database differs from the desired schema.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the throwaway server running until Ctrl-C, to look around with psql.
    #[arg(long)]
    pub keep: bool,
}
