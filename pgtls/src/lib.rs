//! TLS to the PostgreSQL server, with libpq's meanings, for every connection tandem opens.
//!
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey` come from a connection string (URL or
//! `key=value`, [`parse`]) or from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`;
//! tokio-postgres knows only `sslmode` disable/prefer/require and refuses the other keys, so
//! they are taken out of the string before the rest is handed to it, and the verification
//! is done here ([`connect`]: rustls with the ring provider). The proxy, which speaks the
//! protocol itself, negotiates with [`start_tls`].
//!
//! | sslmode | encrypted | server checked |
//! |---|---|---|
//! | `disable` | never | no |
//! | `allow` | only if the plain attempt is refused | no (the chain if `sslrootcert` is set) |
//! | `prefer` (default) | if the server offers it; a fallback to plain text is logged (`warn`) | no (the chain if `sslrootcert` is set) |
//! | `require` | always | no; the chain if `sslrootcert` is set (libpq's rule) |
//! | `verify-ca` | always | the chain, against `sslrootcert` |
//! | `verify-full` | always | the chain and the host name |
//!
//! `sslrootcert=system` takes the platform's roots and needs `verify-full` (the default with
//! it). Without `sslrootcert`, `~/.postgresql/root.crt` is used when it exists; without
//! `sslcert`, `~/.postgresql/postgresql.crt` (with `postgresql.key`), as libpq does. A key
//! file that group or others can read is refused, as libpq refuses it.

mod connector;
mod parse;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use connector::{connect, start_tls, Connector, Negotiated, Stream};
pub use parse::{split, Keys};

/// libpq's `sslmode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection in this mode is never plain text.
    pub fn encrypts(self) -> bool {
        self >= SslMode::Require
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<SslMode, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(Error::BadMode(other.to_string())),
        })
    }
}

/// Where the certificate authorities that sign the server's certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the platform's trusted roots.
    System,
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCert::File(p) => write!(f, "{}", p.display()),
            RootCert::System => f.write_str("system"),
        }
    }
}

/// Resolved TLS settings for one server: defaults applied, combinations checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    pub mode: SslMode,
    /// The roots the server's chain is checked against, if any.
    pub root_cert: Option<RootCert>,
    /// The client certificate chain (PEM) and its key (PEM, mode 0600), sent when the server
    /// asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing: encrypted against a passive listener only.
    Nothing,
    /// The chain up to `sslrootcert`, not the name.
    Chain,
    /// The chain and the host name.
    Full,
}

impl Tls {
    /// No TLS at all: for the servers tandem starts itself (reached over their Unix socket or
    /// loopback).
    pub fn disabled() -> Tls {
        Tls {
            mode: SslMode::Disable,
            ..Tls::default()
        }
    }

    /// What the handshake checks: libpq verifies the chain whenever a root certificate is
    /// there, whatever the mode, and the name only in `verify-full`.
    pub fn check(&self) -> Check {
        match self.mode {
            SslMode::VerifyFull => Check::Full,
            SslMode::VerifyCa => Check::Chain,
            _ if self.root_cert.is_some() => Check::Chain,
            _ => Check::Nothing,
        }
    }

    /// The same settings without a client certificate (the proxy's relayed sessions, which
    /// must authenticate as their own client, never as tandem).
    pub fn without_client_cert(&self) -> Tls {
        Tls {
            cert: None,
            key: None,
            ..self.clone()
        }
    }

    /// `sslmode=... sslrootcert=...`, for messages (paths only, never key material).
    pub fn describe(&self) -> String {
        let mut s = format!("sslmode={}", self.mode);
        if let Some(root) = &self.root_cert {
            s.push_str(&format!(" sslrootcert={root}"));
        }
        if let Some(cert) = &self.cert {
            s.push_str(&format!(" sslcert={}", cert.display()));
        }
        s
    }
}

/// A server's connection settings: tokio-postgres's, and the TLS settings it cannot hold.
/// Dereferences to the `tokio_postgres::Config`, whose `ssl_mode` is kept to what
/// tokio-postgres must do for `tls.mode` (see [`connect`]).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub pg: tokio_postgres::Config,
    pub tls: Tls,
}

impl Endpoint {
    pub fn new(pg: tokio_postgres::Config, tls: Tls) -> Endpoint {
        Endpoint { pg, tls }
    }

    /// Parse a connection string (URL or `key=value`), taking the TLS keys out of it and
    /// filling those it lacks from the PG* environment, as libpq does.
    pub fn parse(text: &str) -> Result<Endpoint, Error> {
        Endpoint::parse_with_env(text, |k| std::env::var(k).ok())
    }

    /// [`Endpoint::parse`] with the environment given (for tests).
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, Error> {
        let (rest, keys) = split(text)?;
        let pg =
            tokio_postgres::Config::from_str(&rest).map_err(|e| Error::Invalid(e.to_string()))?;
        let tls = keys.or_env(env).resolve(home().as_deref())?;
        Ok(Endpoint { pg, tls })
    }

    /// Settings built in code (from the libpq variables), TLS from `PGSSL*`.
    pub fn from_env_tls(pg: tokio_postgres::Config) -> Result<Endpoint, Error> {
        let tls = Keys::default()
            .or_env(|k| std::env::var(k).ok())
            .resolve(home().as_deref())?;
        Ok(Endpoint { pg, tls })
    }

    /// Check now what a connection would find wrong later: unreadable or malformed
    /// certificate files, a key others can read.
    pub fn check_files(&self) -> Result<(), Error> {
        if self.tls.mode == SslMode::Disable {
            return Ok(());
        }
        Connector::new(&self.tls).map(drop)
    }
}

impl std::ops::Deref for Endpoint {
    type Target = tokio_postgres::Config;
    fn deref(&self) -> &tokio_postgres::Config {
        &self.pg
    }
}

impl std::ops::DerefMut for Endpoint {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.pg
    }
}

/// A bare tokio-postgres config keeps the meaning of its own `ssl_mode` (disable, prefer or
/// require, without verification): tests and the servers tandem starts itself.
impl From<tokio_postgres::Config> for Endpoint {
    fn from(pg: tokio_postgres::Config) -> Endpoint {
        let mode = match pg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        Endpoint {
            pg,
            tls: Tls {
                mode,
                ..Tls::default()
            },
        }
    }
}

impl From<&tokio_postgres::Config> for Endpoint {
    fn from(pg: &tokio_postgres::Config) -> Endpoint {
        Endpoint::from(pg.clone())
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(e: &Endpoint) -> Endpoint {
        e.clone()
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Everything that can be wrong with TLS settings before a connection is tried. Every
/// message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sslmode={0:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    BadMode(String),
    #[error("{0} is not supported by tandem (it reads sslmode, sslrootcert, sslcert and sslkey); remove it{1}")]
    Unsupported(String, &'static str),
    #[error("the connection string is not valid: {0}")]
    Syntax(String),
    #[error("the connection string is not valid ({0}); use postgresql://user@host:port/dbname?sslmode=... or host=... dbname=... sslmode=...")]
    Invalid(String),
    #[error("sslmode={0} checks the server's certificate but no certificate authority is given; set sslrootcert=/path/to/ca.pem (or sslrootcert=system for the platform's roots), or use sslmode=require")]
    NoRoot(SslMode),
    #[error("sslrootcert=system needs sslmode=verify-full (it is {0}): with the platform's roots, any certificate a public authority signed would pass for the server; use sslmode=verify-full, or give your own CA file")]
    WeakSystem(SslMode),
    #[error("sslcert is set without sslkey (and there is no ~/.postgresql/postgresql.key); set sslkey to the certificate's private key file")]
    CertWithoutKey,
    #[error("sslkey is set without sslcert; set sslcert to the client certificate that goes with the key")]
    KeyWithoutCert,
    #[error("cannot read {what} {path}: {source}; check the path and its permissions")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no {expected}; it must be PEM (`-----BEGIN ...-----`)")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the private key file {path} has group or world access (mode {mode:o}); run `chmod 600 {path}` (0640 is allowed for a file owned by root)")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("sslrootcert=system: no trusted roots found on this system ({0}); install the ca-certificates package, or give a CA file")]
    NoSystemRoots(String),
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

impl Keys {
    /// Fill from this process's PG* variables and resolve with its home directory.
    pub fn resolve_here(self) -> Result<Tls, Error> {
        self.or_env(|k| std::env::var(k).ok())
            .resolve(home().as_deref())
    }

    /// Apply libpq's defaults and rules: a missing mode is `prefer` (`verify-full` with
    /// `sslrootcert=system`), `~/.postgresql/root.crt` and `postgresql.crt`/`.key` when they
    /// exist, `verify-*` needs a root.
    pub fn resolve(&self, home: Option<&Path>) -> Result<Tls, Error> {
        let root_cert = match self.sslrootcert.as_deref() {
            Some("system") => Some(RootCert::System),
            Some(path) if !path.is_empty() => Some(RootCert::File(PathBuf::from(path))),
            _ => None,
        };
        let mode = match self.sslmode.as_deref() {
            Some(m) => m.parse()?,
            None if root_cert == Some(RootCert::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if mode == SslMode::Disable {
            return Ok(Tls::disabled());
        }
        if root_cert == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(Error::WeakSystem(mode));
        }
        let pg_dir = home.map(|h| h.join(".postgresql"));
        let default = |name: &str| {
            pg_dir
                .as_ref()
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
        };
        let root_cert = root_cert.or_else(|| default("root.crt").map(RootCert::File));
        if mode >= SslMode::VerifyCa && root_cert.is_none() {
            return Err(Error::NoRoot(mode));
        }
        let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(PathBuf::from);
        let (cert, key) = match (given(&self.sslcert), given(&self.sslkey)) {
            (Some(cert), Some(key)) => (Some(cert), Some(key)),
            (Some(cert), None) => match default("postgresql.key") {
                Some(key) => (Some(cert), Some(key)),
                None => return Err(Error::CertWithoutKey),
            },
            (None, Some(_)) => {
                let Some(cert) = default("postgresql.crt") else {
                    return Err(Error::KeyWithoutCert);
                };
                (Some(cert), given(&self.sslkey))
            }
            (None, None) => match (default("postgresql.crt"), default("postgresql.key")) {
                (Some(cert), Some(key)) => (Some(cert), Some(key)),
                _ => (None, None),
            },
        };
        Ok(Tls {
            mode,
            root_cert,
            cert,
            key,
        })
    }
}
