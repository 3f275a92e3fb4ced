//! Where to connect: `--database-url`, `DATABASE_URL`, or the libpq variables and ~/.pgpass.
//!
//! Passwords come from the libpq password file only (`~/.pgpass` or `PGPASSFILE`, which must
//! be readable by its owner alone). A password in `PGPASSWORD`, in `DATABASE_URL` or in
//! `--database-url` is refused (exit 64) rather than ignored: environment variables and
//! arguments show in `ps`, `/proc` and shell histories.

use std::path::PathBuf;

use anyhow::anyhow;
use pgtls::Endpoint;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

use crate::args::Global;
use crate::exit::{Failure, UNAVAILABLE, USAGE};

/// Resolve the connection settings without connecting.
pub fn resolve(global: &Global) -> Result<Endpoint, Failure> {
    let from_env = std::env::var("DATABASE_URL").ok();
    let (text, origin) = match (&global.database_url, &from_env) {
        (Some(url), _) => (Some(url.as_str()), "--database-url"),
        (None, Some(url)) => (Some(url.as_str()), "DATABASE_URL"),
        (None, None) => (None, "the PG* environment"),
    };
    let mut config = match text {
        Some(text) => parse(text, origin)?,
        None => Endpoint::from_env_tls(from_libpq_env())
            .map_err(|e| Failure::usage(format!("the PG* environment: {e}")))?,
    };
    if text.is_some() && config.get_password().is_some() {
        return Err(Failure::usage(format!(
            "{origin} carries a password, which `ps`, /proc and shell histories can show; remove it and {PGPASS_ADVICE}"
        )));
    }
    if std::env::var_os("PGPASSWORD").is_some() {
        return Err(Failure::usage(format!(
            "PGPASSWORD is set: tandem takes no secret from the environment, which other processes of the same user can read; unset it and {PGPASS_ADVICE}"
        )));
    }
    if config.get_hosts().is_empty() {
        let socket = PathBuf::from("/var/run/postgresql");
        if socket.is_dir() {
            config.host_path(socket);
        } else {
            config.host("localhost");
        }
    }
    if config.get_user().is_none() {
        config.user(os_user());
    }
    if config.get_dbname().is_none() {
        let user = config.get_user().unwrap_or("postgres").to_string();
        config.dbname(&user);
    }
    match source(&config)? {
        Source::Command(argv) => {
            let password = crate::secrets::from_command(&argv)?;
            config.password(password.as_bytes());
        }
        Source::Sealed { file, identity } => {
            let password = crate::secrets::from_sealed(&file, &identity)?;
            config.password(password.as_bytes());
        }
        Source::PgPass { password, .. } => {
            config.password(password.as_bytes());
        }
        Source::None => {}
    }
    config.application_name("tandem");
    check_files(&config, origin)?;
    Ok(config)
}

/// A connection string, its TLS keys taken out (see `pgtls::split`) and the PG* TLS
/// variables applied where it sets none.
fn parse(text: &str, origin: &str) -> Result<Endpoint, Failure> {
    Endpoint::parse(text).map_err(|e| match e {
        pgtls::Error::Invalid(e) => Failure::new(
            USAGE,
            anyhow!("{origin} is not a valid connection string ({e}); use postgresql://user@host:port/dbname or host=... dbname=..."),
        ),
        e => Failure::usage(format!("{origin}: {e}")),
    })
}

/// The certificate files read now: a wrong path or a key others can read is a usage error
/// (exit 64) before anything connects.
fn check_files(config: &Endpoint, origin: &str) -> Result<(), Failure> {
    config
        .check_files()
        .map_err(|e| Failure::usage(format!("{origin}: {e}")))
}

/// Resolve a connection string for a server other than the target (`--dev-url`): no
/// password in it, the rest defaulted as libpq would, the password from the libpq password
/// file only (tandem's `password_command` and sealed file are for the target).
pub fn resolve_other(text: &str, origin: &str) -> Result<Endpoint, Failure> {
    let mut config = parse(text, origin)?;
    if config.get_password().is_some() {
        return Err(Failure::usage(format!(
            "{origin} carries a password, which `ps`, /proc and shell histories can show; remove it and {PGPASS_ADVICE}"
        )));
    }
    if config.get_hosts().is_empty() {
        config.host("localhost");
    }
    if config.get_user().is_none() {
        config.user(os_user());
    }
    if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    if let Some((_, _, password)) = pgpass_lookup(&config)? {
        config.password(password.as_bytes());
    }
    check_files(&config, origin)?;
    Ok(config)
}

/// Connect, or fail with exit 69 naming the server and the reason. `config`: an
/// [`Endpoint`], or a bare tokio-postgres config (the servers tandem starts itself), whose
/// own `ssl_mode` then holds.
pub async fn connect(config: impl Into<Endpoint>) -> Result<Client, Failure> {
    let config: Endpoint = config.into();
    let (client, connection) = pgtls::connect(&config).await.map_err(|e| {
        Failure::new(
            UNAVAILABLE,
            anyhow!(
                "cannot connect to {} ({}); {}",
                describe(&config),
                reason(&e),
                advice(&e, &config)
            ),
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(client)
}

/// [`connect`] to the target database, for tandem's own statements: the session's
/// `search_path` is pinned to `pg_catalog, pg_temp`, so a function an application role made
/// in `public` can never be a better match for a call tandem makes (issue 13). Scratch and dev
/// databases, where the user's schema is loaded, keep theirs ([`connect`]), and so does
/// `check`, which reads the migration tool's version table by the application's name for it.
pub async fn target(config: impl Into<Endpoint>) -> Result<Client, Failure> {
    let config: Endpoint = config.into();
    let client = connect(config.clone()).await?;
    client
        .batch_execute(engine::PINNED_SEARCH_PATH)
        .await
        .map_err(|e| {
            Failure::new(
                UNAVAILABLE,
                anyhow!(
                    "cannot set up the session on {} ({})",
                    describe(&config),
                    reason(&e)
                ),
            )
        })?;
    Ok(client)
}

/// `host:port/dbname as user`, without any password.
pub fn describe(config: &Config) -> String {
    engine::server_of(config)
}

/// What to check after a failed connection: the TLS settings when TLS failed or the server
/// wants it, else the server and the usual settings.
fn advice(e: &tokio_postgres::Error, config: &Endpoint) -> &'static str {
    let refused_plain = e
        .as_db_error()
        .is_some_and(|db| db.code().code() == "28000" && db.message().contains("no encryption"));
    if refused_plain && config.tls.mode < pgtls::SslMode::Require {
        "the server takes only TLS connections from here: set sslmode=verify-full with sslrootcert=/path/to/ca.pem (or sslmode=require)"
    } else if e.to_string().starts_with("error performing TLS handshake") {
        "check the TLS settings: sslmode, sslrootcert, sslcert and sslkey in the URL, or PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY"
    } else {
        "check that the server is running and the connection settings (--database-url, DATABASE_URL or PGHOST/PGPORT/PGUSER/PGDATABASE)"
    }
}

fn reason(e: &tokio_postgres::Error) -> String {
    use std::error::Error;
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    match e.source() {
        Some(source) => source.to_string(),
        None => e.to_string(),
    }
}

fn from_libpq_env() -> Config {
    let mut config = Config::new();
    if let Ok(host) = std::env::var("PGHOST") {
        if host.starts_with('/') {
            config.host_path(host);
        } else {
            config.host(&host);
        }
    }
    if let Some(port) = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()) {
        config.port(port);
    }
    if let Ok(user) = std::env::var("PGUSER") {
        config.user(&user);
    }
    if let Ok(db) = std::env::var("PGDATABASE") {
        config.dbname(&db);
    }
    config
}

fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "postgres".into())
}

/// The first matching line of the password file (`host:port:db:user:password`, `*` wildcards).
/// Where a password goes instead of an argument or a variable.
const PGPASS_ADVICE: &str = "put the password in ~/.pgpass (or the file PGPASSFILE names), mode 0600, one line `host:port:database:user:password`";

/// Where tandem's password for `config` comes from.
pub enum Source {
    /// `password_command` in tandem's config (its argv).
    Command(Vec<String>),
    /// `password_file` sealed with age to `identity_file`.
    Sealed { file: PathBuf, identity: PathBuf },
    /// The libpq password file: its path, the matching line (0-based) and the password.
    PgPass {
        path: PathBuf,
        line: usize,
        password: zeroize::Zeroizing<String>,
    },
    /// None: the server does not ask (trust, peer) or the connection fails.
    None,
}

/// The password source for `config`: `password_command`, then a sealed `password_file`,
/// then the libpq password file.
pub fn source(config: &Config) -> Result<Source, Failure> {
    let settings = crate::secrets::settings()?.connection;
    if let Some(argv) = settings.password_command {
        return Ok(Source::Command(argv));
    }
    if let Some((file, identity)) = settings.sealed()? {
        return Ok(Source::Sealed { file, identity });
    }
    Ok(match pgpass_lookup(config)? {
        Some((path, line, password)) => Source::PgPass {
            path,
            line,
            password,
        },
        None => Source::None,
    })
}

/// The password for `config` from the libpq password file, as libpq finds it, with the file
/// and the line. A file others can read is refused (libpq ignores it with a warning; tandem
/// says so and stops).
fn pgpass_lookup(
    config: &Config,
) -> Result<Option<(PathBuf, usize, zeroize::Zeroizing<String>)>, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))
    else {
        return Ok(None);
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "the password file {} can be read by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    let Ok(text) = std::fs::read_to_string(&path).map(zeroize::Zeroizing::new) else {
        return Ok(None);
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .find_map(|(number, line)| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w);
            matches.then(|| {
                (
                    path.clone(),
                    number,
                    zeroize::Zeroizing::new(fields[4].clone()),
                )
            })
        }))
}

pub(crate) fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("one field").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::split_pgpass;

    #[test]
    fn pgpass_fields_unescape() {
        assert_eq!(
            split_pgpass(r"db.example:5432:*:app:pa\:ss\\word"),
            vec!["db.example", "5432", "*", "app", r"pa:ss\word"]
        );
    }
}
