//! Command-line arguments (clap). The words here are a contract: scripts depend on them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use crate::dev::DevArgs;

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
    /// The approval policy's fingerprint, as `tandem policy set` printed it: the database's
    /// policy chain must contain it (a database without a policy is then refused).
    #[arg(long, global = true, value_name = "SHA256")]
    pub policy_fingerprint: Option<String>,
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
    /// For CI: lint a migrations folder, replay it on a dev database, fail on drift (exit 2)
    /// against --schema and against the target's applied migrations, and plan the pending
    /// ones against the target (exit 3 on error findings or refused steps).
    Check(CheckArgs),
    /// The dev database's Docker images, built locally from Debian's packages (no registry
    /// needed): `tandem dev-image build [--pg 15|17]`.
    #[command(subcommand)]
    DevImage(DevImageCommand),
    /// Make an Ed25519 key pair for signing: PATH (encrypted with a passphrase, mode 0600)
    /// and PATH.pub (one line, for the policy file).
    Keygen(KeygenArgs),
    /// The approval policy: who approves and how many distinct people each action needs.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Register a plan in the database; prints the new migration's id (exit 4 if stale).
    Submit(SubmitArgs),
    /// Sign an approval of migration ID's exact plan on this database (or revoke yours).
    Approve(ApproveArgs),
    /// The audit log: check its hash chain and signed checkpoints, export it, sign a
    /// checkpoint.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// tandem's own database password.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Run (or resume) a migration's phases up to cutover; it then stays in its rollback window.
    Apply(ApplyArgs),
    /// Where each migration stands: phase, progress, ETA, verification, cutover, window.
    Status(StatusArgs),
    /// Stop a running apply's copy at the next batch (applications are never paused).
    Pause(IdArgs),
    /// Let a paused apply go on.
    Resume(IdArgs),
    /// Within the rollback window, swap the old table back (no write made since is lost);
    /// before cutover, abandon the migration (drop the shadow and the triggers). The plan's
    /// online steps stay unless --online-steps is given (rollback says which).
    Rollback(RollbackArgs),
    /// End the rollback window: drop the reverse triggers and the old table. With --expired
    /// (for cron), every migration whose window has ended.
    Finalize(FinalizeArgs),
    /// Move the end of a migration's rollback window later, e.g. `tandem extend 3 30d`.
    Extend(ExtendArgs),
    /// Start a throwaway PostgreSQL with a live load, and run a full migration on it.
    Demo(DemoArgs),
    /// Run the wire proxy: applications connect here instead of to PostgreSQL. It compares a
    /// sample of their reads on migrating tables and holds traffic for the instant of a cutover.
    Proxy(ProxyArgs),
}

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Address to accept clients on, e.g. 0.0.0.0:6432.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The PostgreSQL server: postgres://USER@HOST:PORT/DATABASE, where USER and DATABASE are
    /// tandem's own (for coordination and dual reads); clients authenticate end to end. No
    /// password here: `password_file` in --config.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// TOML settings: TLS certificate and key, limits, hold maximum, dual-read sampling.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address, e.g. 127.0.0.1:9187, and
    /// `/healthz` (200 when ready: the upstream answers on the control connection; else 503).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Check the settings, the TLS files and the upstream (reachable with tandem's user, the
    /// bookkeeping's version and rights) without serving; exit 0 when the proxy could serve,
    /// 64 for a settings problem, 69 for an upstream one.
    #[arg(long)]
    pub check_config: bool,
}

/// A signing key and where its passphrase comes from.
#[derive(clap::Args, Clone)]
pub struct KeyArgs {
    /// The private key `tandem keygen` wrote.
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Read the key's passphrase from this file (mode 0600; its first line). Without it,
    /// tandem asks on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Signed checkpoints of the audit log, written after each phase (and after rollback and
/// finalize) to a directory outside the database.
#[derive(clap::Args, Clone, Default)]
pub struct CheckpointArgs {
    /// Write a signed checkpoint of the audit log (its size and head hash) here after each
    /// phase; `tandem audit verify --checkpoint` checks the log against them later.
    #[arg(long, value_name = "DIR", requires = "checkpoint_key")]
    pub checkpoint_dir: Option<PathBuf>,
    /// The private key that signs the checkpoints.
    #[arg(long, value_name = "PATH", requires = "checkpoint_dir")]
    pub checkpoint_key: Option<PathBuf>,
    /// The checkpoint key's passphrase file (mode 0600); without it, tandem asks.
    #[arg(long, value_name = "FILE")]
    pub checkpoint_passphrase_file: Option<PathBuf>,
}

/// A login made for the command (`--per-migration-login`).
#[derive(clap::Args, Clone, Default)]
pub struct LoginArgs {
    /// Run the command's work as a login made for it: a random password (its SCRAM verifier
    /// computed by tandem), valid for --login-ttl, member of tandem's role only, dropped when
    /// the command ends. Needs CREATEROLE.
    #[arg(long)]
    pub per_migration_login: bool,
    /// How long that login is valid at most, e.g. 24h (default), 90m.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub login_ttl: String,
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PATH) and the public key (PATH.pub). Never
    /// overwritten.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Read the passphrase from this file (mode 0600; its first line) instead of asking.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// A comment at the end of the public key's line, e.g. alice@laptop.
    #[arg(long)]
    pub comment: Option<String>,
    /// scrypt work factor (log2 N) of the key's encryption. Default: about a second of
    /// work on this machine. Lower only for tests.
    #[arg(long, hide = true, value_name = "LOG_N")]
    pub kdf_work_factor: Option<u8>,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Set the policy from a TOML file. The first policy of a database is trusted on first
    /// use (pin the fingerprint it prints); later ones need the signatures of the current
    /// policy's `policy` threshold of approvers: give each one's --key (and
    /// --passphrase-file, in the same order).
    Set(PolicySetArgs),
    /// Print the current policy, its version and fingerprint.
    Show,
}

#[derive(clap::Args)]
pub struct PolicySetArgs {
    /// The policy (TOML): [[approver]] name and keys, [require] thresholds.
    #[arg(value_name = "POLICY.toml")]
    pub file: PathBuf,
    /// A current approver's private key, to sign the change (repeat for each signer).
    #[arg(long, value_name = "PATH")]
    pub key: Vec<PathBuf>,
    /// The passphrase file of the --key at the same position (repeatable).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The migration id `tandem submit` printed.
    pub id: i64,
    #[command(flatten)]
    pub key: KeyArgs,
    /// What the approval covers, comma-separated: apply (every phase), prepare, dual_write,
    /// backfill, verify, cutover, rollback, finalize, extend. Default: all of them.
    #[arg(long, value_name = "LIST")]
    pub phases: Option<String>,
    /// How long the approval is valid, e.g. 24h, 7d (default 72h).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Revoke your approvals of this migration instead (signed with any of your keys).
    #[arg(long)]
    pub revoke: bool,
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Give tandem's role a new random password: its SCRAM verifier is computed here, so the
    /// password never reaches the server or its logs; the server is checked to accept it,
    /// then it is written back where it came from (the password file's line, or
    /// `password_store_command`). Sessions already open stay open.
    Rotate(RotateArgs),
    /// Seal tandem's password with age to an X25519 identity (made when the file is
    /// missing), for `password_file` and `identity_file` in tandem's config.
    Seal(SealArgs),
}

#[derive(clap::Args)]
pub struct SealArgs {
    /// The sealed password file to write (mode 0600; replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The age identity that opens it (made, mode 0600, when missing).
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    /// Read the password from this file (mode 0600; its first line) instead of asking.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RotateArgs {
    /// Refuse while more than this many other sessions are running a statement.
    #[arg(long, default_value_t = 16, value_name = "SESSIONS")]
    pub max_load: u32,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain, and each checkpoint against it; names the first bad
    /// entry (exit 1). Reads the database, or a `tandem audit export` file with --file.
    Verify(AuditVerifyArgs),
    /// Write the audit log as JSON lines (one entry a line) to stdout.
    Export,
    /// Sign the log's current size and head hash with your key, to keep outside the
    /// database: a later rewrite of the history is caught against it.
    Checkpoint(AuditCheckpointArgs),
}

#[derive(clap::Args)]
pub struct AuditVerifyArgs {
    /// A checkpoint file `tandem audit checkpoint` (or `apply --checkpoint-dir`) wrote
    /// (repeatable).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
    /// Verify this export instead of the database's log.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only trust checkpoints signed by these public keys (PATH.pub; repeatable). Default:
    /// the keys of the database's current policy.
    #[arg(long, value_name = "PUB")]
    pub trust: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct AuditCheckpointArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Write the checkpoint here (else to stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The plan made by `tandem plan -o plan.json`.
    #[arg(value_name = "plan.json")]
    pub plan: PathBuf,
    /// Sign the submission with this private key (the plan's author). Required when the
    /// database's policy asks for signed submissions.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// The key's passphrase file (mode 0600); without it, tandem asks on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// How long the old table is kept current after cutover, e.g. 30d, 12h, 90m (default 30d).
    #[arg(long, value_name = "DURATION")]
    pub rollback_window: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CopyArg {
    Log,
    Direct,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The migration id `tandem submit` printed.
    pub id: i64,
    /// Stop after this phase: prepare, dual-write, backfill, verify or cutover (default).
    #[arg(long, value_name = "PHASE")]
    pub until: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How the backfill copies: `log` copies into a shadow without indexes in chunks that lock
    /// nothing, logs the keys the application writes meanwhile and copies those rows again
    /// (as pg_repack does); `direct` keeps the shadow current with a row trigger from the
    /// start and copies in short batches into its key index (slower, no log table). Chosen by
    /// a migration's first `apply`; a resumed one keeps its method.
    #[arg(long, value_enum, default_value_t = CopyArg::Log)]
    pub copy: CopyArg,
    /// Target time of one backfill batch that holds the copy lock (deletes wait for it), in
    /// milliseconds: the direct copy's batches, the log's re-copy batches.
    #[arg(long, default_value_t = 40, value_name = "MS")]
    pub batch_time: u64,
    /// Target time of one chunk of the log method's copy (it locks nothing), in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub chunk_time: u64,
    /// Pause between backfill batches (and chunks), in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub batch_pause: u64,
    /// How long the log's drain may fall behind the table's writes, in seconds, before the
    /// forward trigger takes over from the undrained log (each write then copies its own row;
    /// not when the shadow has a unique index besides the key's: the drain says so and goes on).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub drain_patience: u64,
    /// lock_timeout of the cutover and of every DDL statement, in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub lock_timeout: u64,
    /// Cutover attempts before giving up (with the table untouched).
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub cutover_attempts: u32,
    /// Don't start a phase, and pause the copy, while more sessions than this are active.
    #[arg(long, value_name = "SESSIONS")]
    pub max_load: Option<u32>,
    /// Keep the server's transaction rate at or above this share of its rate with tandem
    /// idle, in percent (1 to 99): the copy and verify rest between their chunks as much as
    /// it takes (measured for 3 s with tandem idle before prepare, again every 2 minutes). 70
    /// keeps 70 % of the throughput; the copy takes longer.
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub keep_throughput: Option<u8>,
    /// Pause the copy while a replica lags more than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub max_replication_lag: Option<f64>,
    /// How long verification waits for the plan's dual-read comparisons (--dual-read-min)
    /// before it refuses, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub dual_read_timeout: u64,
    /// Serve Prometheus metrics over HTTP on this address while the command runs (phase,
    /// rows copied, rate, ETA, waits, cutover attempts), e.g. 127.0.0.1:9188; port 0 picks
    /// a free one. The address is printed on stderr.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// One migration (default: all, newest first).
    pub id: Option<i64>,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show the key values of the rows drift was found on (the table's data: left out
    /// unless asked for, so that status output pasted elsewhere carries none).
    #[arg(long)]
    pub keys: bool,
}

#[derive(clap::Args)]
pub struct IdArgs {
    pub id: i64,
}

#[derive(clap::Args)]
pub struct ConfirmArgs {
    pub id: i64,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// lock_timeout of the swap, in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub lock_timeout: u64,
    /// Serve Prometheus metrics over HTTP on this address while the command runs.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(clap::Args)]
pub struct FinalizeArgs {
    /// The migration to finalize; or --expired.
    pub id: Option<i64>,
    /// Finalize, one after the other, every migration whose rollback window has ended (for
    /// cron): exit 0 when there is none or all succeeded, 1 naming those that failed.
    #[arg(long)]
    pub expired: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// lock_timeout of the swap, in milliseconds.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub lock_timeout: u64,
    /// Serve Prometheus metrics over HTTP on this address while the command runs.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub checkpoints: CheckpointArgs,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(clap::Args)]
pub struct ExtendArgs {
    pub id: i64,
    /// How much later than its current end the window ends, e.g. 30d, 12h, 90m.
    #[arg(value_name = "DURATION")]
    pub duration: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    /// Also undo the plan's online steps that have an inverse (drop the indexes and
    /// constraints they created, DROP NOT NULL what they SET NOT NULL); the rest stay. Can be
    /// given again after a rollback or an abandon.
    #[arg(long)]
    pub online_steps: bool,
}

#[derive(clap::Args)]
pub struct LintArgs {
    /// SQL files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Target PostgreSQL major version.
    #[arg(long, default_value_t = 15, value_name = "MAJOR")]
    pub pg_version: u32,
    /// Which findings fail the run (exit 3): errors (the default), warnings too, or none
    /// (report only).
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Never,
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
    /// Before cutover, wait for this many dual-read comparisons made by `tandem proxy`
    /// between the table and its shadow, with no mismatch (default 0: do not wait).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub dual_read_min: u64,
    #[command(flatten)]
    pub in_place: InPlaceArgs,
    #[command(flatten)]
    pub dev: DevArgs,
}

#[derive(clap::Args)]
pub struct InPlaceArgs {
    /// Rewrite tables smaller than this (with their indexes) in place, under lock_timeout,
    /// instead of through a shadow migration: e.g. 4MB (the default), 512kB, 0 (never).
    #[arg(long, value_name = "SIZE", default_value = "4MB", value_parser = parse_size)]
    pub in_place_below: u64,
}

/// `4MB`, `512kB`, `1GB`, `0`, or a number of bytes (units are powers of 1024, as
/// PostgreSQL's).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 4MB, 512kB or 0"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be B, kB, MB or GB (e.g. 4MB)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The desired-schema file to compare the live database with.
    #[arg(long, value_name = "SCHEMA.sql")]
    pub to: PathBuf,
    /// Exit 2 when the database differs from the desired schema.
    #[arg(long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub dev: DevArgs,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the throwaway server running until Ctrl-C, to look around with psql.
    #[arg(long)]
    pub keep: bool,
}

/// `--migrations`, `--schema` and the rest of `check`'s arguments.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The migrations folder: sqlx (`NNNN_name.sql`, `.up.sql`), golang-migrate
    /// (`N_name.up.sql`) or Flyway (`V1__name.sql`, `R__name.sql`).
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// The schema the migrations must produce (a file of CREATE statements): a difference
    /// is drift (exit 2).
    #[arg(long, value_name = "SCHEMA.sql")]
    pub schema: Option<PathBuf>,
    /// PostgreSQL major version for the lint without a target (default: the target's, else 15).
    #[arg(long, value_name = "MAJOR")]
    pub pg_version: Option<u32>,
    #[command(flatten)]
    pub in_place: InPlaceArgs,
    #[command(flatten)]
    pub dev: DevArgs,
}

#[derive(Subcommand)]
pub enum DevImageCommand {
    /// Build (or, with --force, rebuild) `tandem-dev-postgres:MAJOR` with debootstrap and
    /// `docker import`; later `--dev docker` runs reuse it.
    Build(DevImageBuildArgs),
}

#[derive(clap::Args)]
pub struct DevImageBuildArgs {
    /// PostgreSQL major version: 15 (Debian bookworm) or 17 (Debian trixie).
    #[arg(long = "pg", default_value = "15", value_name = "15|17")]
    pub pg: String,
    /// Build even when the image exists.
    #[arg(long)]
    pub force: bool,
}
