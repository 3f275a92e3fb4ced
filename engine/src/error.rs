//! Why the executor stopped, and what the user can do about it.

use gates::Refusal;

/// A failure of a migration command. Every message says how to recover; nothing is left
/// half-done by any of them (each phase's work commits with its record, or not at all).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The server's own message is part of the text (not a separate cause in the chain, which
    /// would print tokio-postgres's bare "db error" and then the message again).
    #[error("{context}: {}", describe(.error))]
    Sql {
        context: String,
        error: tokio_postgres::Error,
    },

    #[error("lost the connection to the database while {context} (tried {attempts} times); the migration's state is saved: check the server, then run the same command again")]
    Connection { context: String, attempts: u32 },

    #[error("cannot connect to {server} ({}); check that the server is running and the connection settings (--database-url, DATABASE_URL or PGHOST/PGPORT/PGUSER/PGDATABASE), then run the command again", describe(.error))]
    Unreachable {
        /// `host:port/dbname as user`, never a password.
        server: String,
        error: tokio_postgres::Error,
    },

    #[error("there is no migration {0} in this database; `tandem status` lists them")]
    UnknownMigration(i64),

    #[error("{0}")]
    Stale(String),

    /// The approval gate refused: who and what is missing, and what to do (exit 4).
    #[error("{0}")]
    Approval(String),

    #[error("{reason}; {remedy}")]
    Refused { reason: String, remedy: String },

    #[error("migration {id} is being run by another process ({holder}); wait for it, or stop that process, then run the command again")]
    Busy { id: i64, holder: String },

    #[error("the gate refused phase {phase}: {refusal}")]
    Gate { phase: String, refusal: Refusal },

    #[error("verification failed: {0}")]
    Verify(String),

    #[error("{what} gave up after {attempts} attempts, each waiting at most {lock_timeout_ms} ms in all for its locks; {state}. The last attempt: {last}. Run `{again}` again when the sessions holding those locks are gone")]
    CutoverGaveUp {
        /// "cutover" or "rollback".
        what: &'static str,
        attempts: u32,
        lock_timeout_ms: u64,
        /// The last attempt's failure: the lock, the cause, who held it.
        last: String,
        /// Where the migration stands.
        state: &'static str,
        /// The command that tries again.
        again: String,
    },

    #[error("interrupted; the migration's state is saved: run `tandem apply` again to resume")]
    Interrupted,
}

impl EngineError {
    pub(crate) fn sql(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> EngineError {
        let context = context.into();
        move |error| EngineError::Sql { context, error }
    }

    pub(crate) fn refused(reason: impl Into<String>, remedy: impl Into<String>) -> EngineError {
        EngineError::Refused {
            reason: reason.into(),
            remedy: remedy.into(),
        }
    }

    /// True when the failure is the connection (or the server) going away: worth a retry.
    pub fn is_connection(&self) -> bool {
        match self {
            EngineError::Sql { error, .. } => is_connection_error(error),
            EngineError::Unreachable { .. } => true,
            EngineError::Connection { .. } => true,
            _ => false,
        }
    }
}

/// A closed connection, an I/O error, or the server shutting down or starting up.
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        }
        None => {
            use std::error::Error;
            e.source().is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// What went wrong in a statement, once: the server's message, SQLSTATE and detail, or the
/// client's own description with its causes (a lost connection, a timeout).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            out.push_str(": ");
            out.push_str(detail);
        }
        return out;
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// `host:port/dbname as user` of a connection's settings, without any password.
pub fn server_of(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{} as {}",
        config.get_dbname().unwrap_or("?"),
        config.get_user().unwrap_or("?")
    )
}
