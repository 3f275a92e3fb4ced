//! The shadow table of one migrating table: its names, its shape relative to the original
//! (key, column mapping, deferred indexes), and the SQL that keeps the two in step.
//!
//! The spec is worked out once, in prepare, and stored in `tandem.shadow_tables.spec`; every
//! later phase (and a resumed executor) generates its SQL from the stored spec, so a restart
//! never recomputes a mapping against a table that has changed in between.

pub mod dependents;
pub mod sql;

use planner::ident::{Ident, QualName};
use serde::{Deserialize, Serialize};

/// Everything the phases need to know about one migrating table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    pub migration: i64,
    pub table_oid: u32,
    /// The user's table (the name stays; the physical table behind it changes at cutover).
    pub table: QualName,
    /// tandem's name for the shadow while it is built, and for the other table once swapped.
    pub shadow: QualName,
    /// tandem's name for the original table after cutover.
    pub old: QualName,
    /// Key columns of the original, and their types.
    pub key: Vec<Column>,
    /// The same key columns as named and typed in the new table.
    pub new_key: Vec<Column>,
    /// New column <- expression over an original row (`o`), in the new table's column order.
    /// Columns the change added are absent: their default fills them.
    pub forward: Vec<Mapped>,
    /// Old column <- new column, for the reverse triggers of the rollback window. Old columns
    /// the change dropped are absent (they get their default, or NULL).
    pub reverse: Vec<Mapped>,
    /// Indexes of the new table.
    pub new_indexes: Vec<NewIndex>,
    /// Indexes of the original table, parked at cutover.
    pub old_indexes: Vec<IndexPair>,
    /// Why a rollback could not rebuild the old rows exactly, if it could not.
    pub rollback_blocker: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: Ident,
    /// `format_type` of the column.
    pub sql_type: String,
}

/// One target column and the SQL expression that computes it from a source row aliased `o`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapped {
    pub column: Column,
    /// Server-safe SQL: a quoted column reference (`o."a"`) or a `USING` expression as parsed
    /// and deparsed by pg_query.
    pub expr: String,
}

/// An index of the new table: built with the shadow (the key's) or after the backfill (the
/// rest), under a temporary name until cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIndex {
    /// The `CREATE INDEX` statement (`pg_get_indexdef` on the shadow, under `temp_name`).
    pub definition: String,
    pub temp_name: Ident,
    /// The name it takes at cutover.
    pub final_name: Ident,
    /// Built after the backfill (every index but the key's).
    pub deferred: bool,
    /// A UNIQUE or PRIMARY KEY constraint to attach at cutover (`ADD CONSTRAINT ... USING
    /// INDEX`); the key's constraint exists from the start.
    pub constraint: Option<IndexConstraint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConstraint {
    pub name: Ident,
    pub primary: bool,
    pub deferrable: bool,
    pub deferred: bool,
}

/// An index of the original table: parked under tandem's name while the other table is live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPair {
    pub name: Ident,
    pub parked: Ident,
}

/// A catalog name as an [`Ident`], or a refusal saying to rename the object (the catalog can
/// hold names tandem will not write into SQL, e.g. with control characters).
pub(crate) fn ident(name: &str) -> Result<Ident, crate::error::EngineError> {
    Ident::new(name.to_string()).map_err(|e| {
        crate::error::EngineError::refused(format!("name {name:?}: {e}"), "rename the object first")
    })
}

/// tandem's object names for migration `m` on table `oid`: short (they always fit in 63
/// bytes), and distinct per migration and table, so reruns and parallel migrations of other
/// tables never collide. Prepare refuses to start if a user object already has one of them.
pub fn names(m: i64, oid: u32) -> (String, String) {
    (
        format!("_tandem_m{m}_t{oid}_new"),
        format!("_tandem_m{m}_t{oid}_old"),
    )
}

pub fn forward_function(m: i64, oid: u32) -> QualName {
    QualName::new("tandem", &format!("m{m}_t{oid}_forward")).expect("short name")
}

pub fn reverse_function(m: i64, oid: u32) -> QualName {
    QualName::new("tandem", &format!("m{m}_t{oid}_reverse")).expect("short name")
}

pub fn forward_trigger(m: i64) -> Ident {
    Ident::new(format!("_tandem_m{m}_forward")).expect("short name")
}

pub fn reverse_trigger(m: i64) -> Ident {
    Ident::new(format!("_tandem_m{m}_reverse")).expect("short name")
}

/// Temporary name of an index of the shadow (`n`: its position).
pub fn shadow_index(m: i64, oid: u32, n: usize) -> Ident {
    Ident::new(format!("_tandem_m{m}_t{oid}_n{n}")).expect("short name")
}

/// Name an original index is parked under while the other table is live.
pub fn parked_index(m: i64, oid: u32, n: usize) -> Ident {
    Ident::new(format!("_tandem_m{m}_t{oid}_o{n}")).expect("short name")
}

pub fn truncate_trigger(m: i64) -> Ident {
    Ident::new(format!("_tandem_m{m}_truncate")).expect("short name")
}

pub fn reverse_truncate_trigger(m: i64) -> Ident {
    Ident::new(format!("_tandem_m{m}_reverse_truncate")).expect("short name")
}

/// The function a TRUNCATE of the source runs: `<forward function>_truncate`.
pub fn truncate_function(forward: &QualName) -> QualName {
    QualName::new(
        forward.schema.as_str(),
        &format!("{}_truncate", forward.name.as_str()),
    )
    .expect("short name")
}

/// The view `tandem proxy` reads instead of the live table in a mirrored read (see
/// `executor/mirror.rs`): in schema `tandem`, so introspection, `diff` and the dependents a
/// swap carries over never see it; at most 39 bytes.
pub fn mirror_view(m: i64, oid: u32) -> QualName {
    QualName::new("tandem", &format!("mirror_m{m}_t{oid}")).expect("short name")
}
