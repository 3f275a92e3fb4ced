//! Why the executor stopped, and what the user can do about it.

use gates::Refusal;

/// A failure of a migration command. Every message says how to recover; nothing is left
/// half-done by any of them (each phase's work commits with its record, or not at all).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("lost the connection to the database while {context} (tried {attempts} times); the migration's state is saved: check the server, then run the same command again")]
    Connection { context: String, attempts: u32 },

    #[error("there is no migration {0} in this database; `tandem status` lists them")]
    UnknownMigration(i64),

    #[error("{0}")]
    Stale(String),

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
        move |source| EngineError::Sql { context, source }
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
            EngineError::Sql { source, .. } => is_connection_error(source),
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
