//! The dev database: the server where tandem runs SQL to understand a schema (a
//! desired-schema file, a replay of a migrations folder, the check of a plan). Never the
//! target: the target is only ever read.
//!
//! Three kinds, chosen with `--dev` / `--dev-url`:
//!
//! - `local`: a cluster from this machine's PostgreSQL server binaries, kept under
//!   `~/.cache/tandem/dev-pg` (or `$XDG_CACHE_HOME/tandem/dev-pg`) and shared by concurrent
//!   tandem processes; stopped a second after the last of them exits (`devdb::shared`). It
//!   runs with fsync off: it holds nothing worth keeping.
//! - `docker[:MAJOR]`: a container from a locally built image (`tandem dev-image build`),
//!   removed afterwards (`devdb::docker`).
//! - `--dev-url URL`: a server the user names. Its role must be allowed to CREATE DATABASE.
//!
//! The default is `local` when the server binaries are installed and their major version is
//! the target's, else `docker` with the target's major, else `local` anyway with a warning.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::anyhow;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::connect;
use crate::exit::{Failure, UNAVAILABLE, USAGE};

/// Where the dev database runs, as the command line gave it.
#[derive(clap::Args, Clone, Default, Debug)]
pub struct DevArgs {
    /// Where tandem runs SQL to understand a schema (the desired-schema file, a migrations
    /// replay, the plan's check): `local` (a cluster from this machine's PostgreSQL server
    /// binaries), `docker` or `docker:15|17` (a container from a locally built image).
    /// Default: local when the server binaries match the target's major version, else
    /// docker. The target is never written.
    #[arg(long, value_name = "local|docker[:MAJOR]", conflicts_with = "dev_url")]
    pub dev: Option<String>,
    /// A server of yours for the dev database instead (its role needs CREATEDB; its password
    /// from ~/.pgpass). Naming the target here runs the schema's SQL on it, in a scratch
    /// database tandem creates and drops: tandem warns.
    #[arg(long, value_name = "URL")]
    pub dev_url: Option<String>,
}

/// The kinds of dev server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Local,
    Docker(Option<u32>),
    Url(String),
}

impl DevArgs {
    /// What the user asked for, or `None` for the default.
    pub fn kind(&self) -> Result<Option<Kind>, Failure> {
        if let Some(url) = &self.dev_url {
            return Ok(Some(Kind::Url(url.clone())));
        }
        let Some(text) = self.dev.as_deref() else {
            return Ok(None);
        };
        parse_kind(text).map(Some)
    }
}

fn parse_kind(text: &str) -> Result<Kind, Failure> {
    let bad = || {
        Failure::usage(format!(
            "--dev {text:?} is not a dev database; use `--dev local`, `--dev docker`, `--dev docker:15`, `--dev docker:17`, or `--dev-url URL` for a server of yours"
        ))
    };
    match text.split_once(':') {
        None if text == "local" => Ok(Kind::Local),
        None if text == "docker" => Ok(Kind::Docker(None)),
        Some(("docker", major)) => {
            let major: u32 = major.parse().map_err(|_| bad())?;
            if !SUPPORTED_DOCKER.contains(&major) {
                return Err(Failure::usage(format!(
                    "--dev docker:{major}: tandem builds dev images for PostgreSQL 15 and 17; use one of those, or `--dev-url` for a server of that version"
                )));
            }
            Ok(Kind::Docker(Some(major)))
        }
        _ => Err(bad()),
    }
}

/// The majors `tandem dev-image build` can build.
const SUPPORTED_DOCKER: [u32; 2] = [15, 17];

/// A running dev server, kept up for as long as this value lives.
pub struct DevServer {
    /// Connection settings for its maintenance database (`postgres`), as a superuser or a
    /// role with CREATEDB. TLS as `--dev-url` says; none for the servers tandem starts (over
    /// their Unix socket or loopback).
    admin: pgtls::Endpoint,
    /// For messages: `local PostgreSQL 15`, `docker PostgreSQL 17`, `host:port`.
    pub label: String,
    _hold: Hold,
}

enum Hold {
    /// The shared local cluster: this process holds a lease until it exits.
    Shared,
    /// Held for its drop, which removes the container.
    #[allow(dead_code)]
    Container(Box<devdb::docker::DevContainer>),
    None,
}

impl DevServer {
    /// Start (or find) the dev server. `target_major` is the target server's major version
    /// when there is a target: the default picks a dev server of the same major.
    pub async fn start(
        args: &DevArgs,
        target: Option<(&Config, u32)>,
    ) -> Result<DevServer, Failure> {
        let kind = match args.kind()? {
            Some(kind) => kind,
            None => default_kind(target.map(|(_, major)| major)).await,
        };
        let t = std::time::Instant::now();
        let server = match kind {
            Kind::Local => start_local().await?,
            Kind::Docker(major) => {
                let major = major
                    .or(target.map(|(_, m)| m))
                    .filter(|m| SUPPORTED_DOCKER.contains(m))
                    .unwrap_or(15);
                start_docker(major).await?
            }
            Kind::Url(url) => {
                let config = connect::resolve_other(&url, "--dev-url")?;
                if let Some((target, _)) = target {
                    if same_server(&config, target) {
                        eprintln!(
                            "warning: --dev-url names the target server ({}): the schema's SQL will run there, in a scratch database tandem creates and drops; use --dev local or --dev docker to keep it off the target",
                            connect::describe(target)
                        );
                    }
                }
                DevServer {
                    label: connect::describe(&config),
                    admin: config,
                    _hold: Hold::None,
                }
            }
        };
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            dev = %server.label,
            "dev database ready"
        );
        // Scratch databases of killed processes (a container's go with it, and
        // `devdb::docker` removes leftover containers itself): one query when there are none.
        if !matches!(server._hold, Hold::Container(_)) {
            crate::scratch::sweep(&server.admin).await;
        }
        Ok(server)
    }

    /// Connection settings for database `db` on the dev server.
    pub fn config(&self, db: &str) -> pgtls::Endpoint {
        let mut config = self.admin.clone();
        config.dbname(db);
        config
    }

    /// Connection settings for the maintenance database.
    pub fn admin(&self) -> &pgtls::Endpoint {
        &self.admin
    }
}

/// `local` when the server binaries are installed and match the target's major, else
/// `docker` with the target's major when the Docker daemon answers, else `local` (which
/// then fails, or works across versions, with its own message).
async fn default_kind(target_major: Option<u32>) -> Kind {
    let local = devdb::cluster::Install::find()
        .ok()
        .and_then(|i| i.major_version().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    if local.is_some() && (target_major.is_none() || local == target_major) {
        return Kind::Local;
    }
    // Asked once: `docker version` starts a process and may wait on the daemon.
    let docker = docker_answers().await;
    match (local, target_major) {
        (local, Some(t)) if SUPPORTED_DOCKER.contains(&t) && docker => {
            if let Some(l) = local {
                tracing::info!(
                    "the local server binaries are PostgreSQL {l}, the target is {t}: using a docker dev database"
                );
            }
            Kind::Docker(Some(t))
        }
        (None, _) if docker => Kind::Docker(target_major),
        (Some(l), Some(t)) => {
            eprintln!(
                "warning: the dev database is the local PostgreSQL {l} but the target is {t}; catalogs can differ between versions: use --dev docker:{t} or --dev-url with a PostgreSQL {t} server"
            );
            Kind::Local
        }
        (Some(_), None) => Kind::Local,
        (None, _) => Kind::Local,
    }
}

async fn docker_answers() -> bool {
    tokio::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Where the local dev cluster lives: `$XDG_CACHE_HOME/tandem/dev-pg`, else
/// `~/.cache/tandem/dev-pg`; when the server's user cannot reach that (tandem run as root,
/// where the server runs as `postgres` and /root is closed), `/tmp/tandem-dev-pg-<uid>`.
fn local_base(install: &devdb::cluster::Install) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|c| c.join("tandem").join("dev-pg"));
    let reachable = |dir: &PathBuf| {
        std::fs::create_dir_all(dir).is_ok() && install.check_reachable(dir).is_ok()
    };
    cache.filter(reachable).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tandem-dev-pg-{}", nix::unistd::Uid::current()))
    })
}

async fn start_local() -> Result<DevServer, Failure> {
    let shared = tokio::task::spawn_blocking(|| {
        let install = devdb::cluster::Install::find()?;
        devdb::shared::shared_at(local_base(&install))
    })
    .await
        .map_err(|e| Failure::from(anyhow!(e)))?
        .map_err(|e| {
            Failure::new(
                UNAVAILABLE,
                anyhow!(
                    "cannot start the local dev database ({}); install the PostgreSQL server binaries (postgresql-15), or use --dev docker or --dev-url",
                    devdb::chain(&e)
                ),
            )
        })?;
    let major = shared
        .cluster
        .install()
        .major_version()
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let mut admin = shared.cluster.config("postgres");
    admin.application_name("tandem-dev");
    Ok(DevServer {
        admin: pgtls::Endpoint::new(admin, pgtls::Tls::disabled()),
        label: format!("local PostgreSQL {major}"),
        _hold: Hold::Shared,
    })
}

async fn start_docker(major: u32) -> Result<DevServer, Failure> {
    let pg = devdb::docker::PgMajor::from_str(&major.to_string())
        .map_err(|e| Failure::new(USAGE, anyhow!("{e}")))?;
    let progress = |line: &str| eprintln!("dev image: {line}");
    // Built once (minutes) when missing, then reused: say so rather than hang silently.
    devdb::docker::ensure(pg, &progress).await.map_err(|e| {
        Failure::new(
            UNAVAILABLE,
            anyhow!(e).context(format!(
                "cannot build the docker dev image for PostgreSQL {major}"
            )),
        )
    })?;
    let container = devdb::docker::start(pg).await.map_err(|e| {
        Failure::new(
            UNAVAILABLE,
            anyhow!(e).context("cannot start the docker dev database"),
        )
    })?;
    let mut admin = container.config().clone();
    admin.application_name("tandem-dev");
    Ok(DevServer {
        admin: pgtls::Endpoint::new(admin, pgtls::Tls::disabled()),
        label: format!("docker PostgreSQL {major}"),
        _hold: Hold::Container(Box::new(container)),
    })
}

/// Whether two connection settings reach the same server: a host (or socket directory) and
/// port in common.
fn same_server(a: &Config, b: &Config) -> bool {
    let norm = |h: &Host| match h {
        Host::Tcp(name) if name == "localhost" || name == "::1" => "127.0.0.1".to_string(),
        Host::Tcp(name) => name.clone(),
        Host::Unix(path) => path.display().to_string(),
    };
    let port = |c: &Config| c.get_ports().first().copied().unwrap_or(5432);
    port(a) == port(b)
        && a.get_hosts()
            .iter()
            .any(|h| b.get_hosts().iter().any(|g| norm(g) == norm(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_bad_ones_say_what_to_use() {
        assert_eq!(parse_kind("local").ok(), Some(Kind::Local));
        assert_eq!(parse_kind("docker").ok(), Some(Kind::Docker(None)));
        assert_eq!(parse_kind("docker:17").ok(), Some(Kind::Docker(Some(17))));
        let e = parse_kind("docker:16").expect_err("16 is not built");
        assert_eq!(e.code, USAGE);
        assert!(e.render().contains("15 and 17"), "{}", e.render());
        let e = parse_kind("podman").expect_err("unknown kind");
        assert!(e.render().contains("--dev local"), "{}", e.render());
    }

    #[test]
    fn the_same_server_is_recognised_through_localhost() {
        let a = Config::from_str("postgresql://u@localhost:5433/a").expect("url");
        let b = Config::from_str("postgresql://v@127.0.0.1:5433/b").expect("url");
        let c = Config::from_str("postgresql://v@127.0.0.1:5434/b").expect("url");
        assert!(same_server(&a, &b));
        assert!(!same_server(&a, &c));
    }
}
