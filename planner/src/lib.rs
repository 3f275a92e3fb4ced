//! The planner: schema model, DDL parsing, schema diff, breaking-change findings, the plan.
//!
//! Pure: nothing here does I/O. The engine reads catalogs into [`model::Schema`]; the
//! planner turns schemas and SQL into findings and a [`plan::Plan`].

pub mod diff;
pub mod finding;
pub mod ident;
pub mod lint;
pub mod model;
pub mod plan;

pub use finding::{Class, Finding, Location, Lock, LockMode, Remedy, Severity};
pub use ident::{Ident, IdentError, Literal, QualName};
