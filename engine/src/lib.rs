//! The engine: catalog introspection, the seven-phase executor and its persisted state.

pub mod approval;
pub mod catalog;
mod error;
pub mod executor;
pub mod hooks;
pub mod redact;
pub mod shadow;
pub mod state;
pub mod status;

pub use catalog::{database_identity, introspect, server_version_num, CatalogError};
pub use error::{is_connection_error, server_of, EngineError};
pub use executor::PINNED_SEARCH_PATH;
