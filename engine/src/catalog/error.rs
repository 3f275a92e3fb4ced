//! Why introspection failed, and what the user can do about it.

use planner::ident::IdentError;

/// A failure to read the catalog. Every message says how to recover.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the role cannot read {what}: {help}")]
    PermissionDenied {
        what: &'static str,
        help: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("lost the connection while reading {what}; reconnect and run the command again")]
    Connection {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error(
        "could not read {what} from the catalog; check the server log, then run the command again"
    )]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("unexpected value in column {column} of {what}; this is a tandem bug, please report it with the server version")]
    Decode {
        what: &'static str,
        column: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error(
        "the database has a {kind} named {name:?} that tandem cannot address safely; rename it"
    )]
    InvalidName {
        kind: &'static str,
        name: String,
        #[source]
        source: IdentError,
    },

    #[error("the connection is already inside a transaction; commit or roll it back before introspecting")]
    InsideTransaction,

    #[error("server version {version} is too old: tandem needs PostgreSQL 13 or later, so upgrade the server")]
    UnsupportedServer { version: u32 },
}

impl CatalogError {
    /// Classify a failed catalog query by its SQLSTATE.
    pub(crate) fn query(what: &'static str, source: tokio_postgres::Error) -> CatalogError {
        use tokio_postgres::error::SqlState;
        if source.is_closed() {
            return CatalogError::Connection { what, source };
        }
        match source.code() {
            Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
                CatalogError::PermissionDenied {
                    what,
                    help: help_for(what),
                    source,
                }
            }
            Some(code) if code.code().starts_with("08") => {
                CatalogError::Connection { what, source }
            }
            _ => CatalogError::Query { what, source },
        }
    }
}

/// The grant that lets a role read `what`.
fn help_for(what: &'static str) -> &'static str {
    match what {
        "the database identity" => "grant the role pg_monitor (pg_control_system is restricted)",
        _ => "grant the role pg_read_all_stats or connect as the table owner",
    }
}
