//! The engine: catalog introspection, the seven-phase executor and its persisted state.

pub mod catalog;

pub use catalog::{database_identity, introspect, server_version_num, CatalogError};
