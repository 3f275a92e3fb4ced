//! The shadow table of one migrating table: its names, its shape relative to the original
//! (key, column mapping, deferred indexes), and the SQL that keeps the two in step.
//!
//! The spec is worked out once, in prepare, and stored in `tandem.shadow_tables.spec`; every
//! later phase (and a resumed executor) generates its SQL from the stored spec, so a restart
//! never recomputes a mapping against a table that has changed in between.

pub mod dependents;
pub mod guard;
pub mod log;
pub mod matviews;
pub mod partitions;
pub mod replay;
pub mod sql;
pub mod writer;

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
    /// Identity columns: each table keeps its own sequence, whose state moves at each swap.
    #[serde(default)]
    pub identity: Vec<IdentityColumn>,
    /// How the forward (original -> shadow) and reverse (new -> old) triggers keep a write the
    /// other table rejects from failing the application (`guard.rs`).
    #[serde(default)]
    pub forward_guard: guard::Guard,
    #[serde(default)]
    pub reverse_guard: guard::Guard,
    /// The original's NOT VALID CHECK constraints: absent from the shadow while it is filled
    /// (old rows may violate them; every new write is checked by the original's own), added
    /// NOT VALID to the new table at cutover.
    #[serde(default)]
    pub not_valid_checks: Vec<NotValidCheck>,
    /// Extended statistics: the shadow's copies under tandem's names until cutover, then
    /// under the user's names (the original's parked).
    #[serde(default)]
    pub statistics: Vec<StatisticsPair>,
    /// How the backfill copies and how the writes of the copy's time reach the shadow.
    /// Specs stored before the log existed say nothing and were prepared for `Direct`.
    #[serde(default)]
    pub copy: CopyMethod,
    /// A partitioned table: its partition key (`pg_get_partkeydef`) and every partition of
    /// its tree, each with a shadow partition of the same bounds in the shadow tree. The
    /// copy, the triggers' writes and the verification go through the two roots (PostgreSQL
    /// routes each row to its partition); the swap renames every partition with the root.
    #[serde(default)]
    pub partitioning: Option<Partitioning>,
    /// The role the rows of the shadow and of the old table are written as: the table's
    /// owner, when tandem's role is not (`writer.rs`). None when tandem's role owns the table,
    /// and in specs stored before tandem wrote as the owner.
    #[serde(default)]
    pub writer: Option<Ident>,
}

/// The partition tree of a partitioned table and of its shadow (`prepare.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioning {
    /// `pg_get_partkeydef` of the root, e.g. `RANGE (created_at)`.
    pub key: String,
    /// Every partition, parents before their children.
    pub partitions: Vec<Partition>,
}

/// One partition of the tree (a leaf, or itself partitioned) and its counterpart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub oid: u32,
    /// The user's name: the original partition's until cutover, the new one's after.
    pub name: QualName,
    /// tandem's names: the shadow partition until cutover, the original's after.
    pub shadow: QualName,
    pub old: QualName,
    /// The partition it is a partition of (`None`: the root).
    pub parent: Option<usize>,
    /// `pg_get_expr(relpartbound)`: `FOR VALUES ...` or `DEFAULT`.
    pub bound: String,
    /// Its own partition key when it is partitioned too.
    pub key: Option<String>,
    /// Storage options of a leaf.
    pub reloptions: Vec<String>,
    /// The original partition's indexes, each attached to an index of the root's (`of`:
    /// that index's name), parked under tandem's names while the new tree is live.
    pub indexes: Vec<PartitionIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionIndex {
    pub name: Ident,
    pub parked: Ident,
    pub of: Ident,
}

impl Partition {
    pub fn leaf(&self) -> bool {
        self.key.is_none()
    }
}

impl TableSpec {
    /// The partitions of a partitioned table (none for a plain table).
    pub fn partitions(&self) -> &[Partition] {
        self.partitioning
            .as_ref()
            .map(|p| p.partitions.as_slice())
            .unwrap_or_default()
    }

    /// The tables whose storage the shadow has: the shadow itself, or its leaf partitions.
    pub fn shadow_storage(&self) -> Vec<&QualName> {
        match &self.partitioning {
            None => vec![&self.shadow],
            Some(p) => p
                .partitions
                .iter()
                .filter(|p| p.leaf())
                .map(|p| &p.shadow)
                .collect(),
        }
    }
}

/// How the rows reach the shadow during the backfill (`executor/backfill.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMethod {
    /// The forward trigger writes every change into the shadow from dual-write on, and the
    /// copy upserts into a shadow that has its key index, in short batches under the copy
    /// lock.
    #[default]
    Direct,
    /// Statement triggers log the keys each write touched into a log table
    /// ([`log_table`]); the copy fills a shadow without indexes in large chunks that lock
    /// nothing, the indexes are built on it without CONCURRENTLY (nothing else writes it),
    /// the logged keys are copied again from the table, and then the forward trigger takes
    /// over (`Direct` from there on).
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotValidCheck {
    pub name: Ident,
    /// `pg_get_constraintdef`, ending in `NOT VALID`.
    pub definition: String,
    pub comment: Option<String>,
}

/// One extended statistics object of the original and its copy on the new table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticsPair {
    /// The schema of both (the table's).
    pub schema: Ident,
    pub name: Ident,
    /// The copy's name until cutover (and again after a rollback).
    pub temp: Ident,
    /// The original's name while the new table is live.
    pub parked: Ident,
}

/// An identity column of both tables. Each table has its own sequence (PostgreSQL ties it to
/// the column); the one behind the user's table carries the user's sequence name, and its
/// state (last value, is_called) is moved from the other at each swap, under the swap's
/// locks, so no value is skipped or given twice. The table that is not live (the shadow, or
/// the old table in the rollback window) is `GENERATED BY DEFAULT` while tandem writes the
/// live table's values into it; `GENERATED ALWAYS` comes back with the user's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityColumn {
    /// The column in the original table, and in the new one.
    pub old_column: Ident,
    pub new_column: Ident,
    /// `GENERATED ALWAYS` on the original (else BY DEFAULT), and on the new table.
    pub old_always: bool,
    pub new_always: bool,
    /// The user's name of the sequence (schema-qualified), which the live table's sequence
    /// carries.
    pub sequence: QualName,
    /// tandem's names (same schema) for the new table's sequence while the shadow is not live,
    /// and for the original's once the new table is.
    pub shadow_sequence: Ident,
    pub old_sequence: Ident,
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
    /// Built after the backfill's copy (every index but the key's; with [`CopyMethod::Log`],
    /// the key's too).
    pub deferred: bool,
    /// The index of the key the migration addresses rows by.
    #[serde(default)]
    pub key: bool,
    /// A UNIQUE or PRIMARY KEY constraint to attach at cutover (`ADD CONSTRAINT ... USING
    /// INDEX`); the key's constraint exists from the start.
    pub constraint: Option<IndexConstraint>,
    /// The comment of the original index it copies, set at cutover (a deferred index is
    /// built from its definition, which has none).
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConstraint {
    pub name: Ident,
    pub primary: bool,
    pub deferrable: bool,
    pub deferred: bool,
    /// `pg_get_constraintdef` when the constraint is added with its index instead of `USING
    /// INDEX` at cutover (a partitioned table, which cannot take one `USING INDEX`).
    #[serde(default)]
    pub definition: Option<String>,
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

/// The table the log triggers append the keys of changed rows to ([`CopyMethod::Log`]).
pub fn log_table(m: i64, oid: u32) -> QualName {
    QualName::new("tandem", &format!("m{m}_t{oid}_log")).expect("short name")
}

/// The function of the log triggers.
pub fn log_function(m: i64, oid: u32) -> QualName {
    QualName::new("tandem", &format!("m{m}_t{oid}_logger")).expect("short name")
}

/// The log triggers, one per event (a trigger with transition tables has one event).
pub fn log_triggers(m: i64) -> [(Ident, &'static str); 3] {
    ["insert", "update", "delete"].map(|event| {
        (
            Ident::new(format!("_tandem_m{m}_log_{event}")).expect("short name"),
            event,
        )
    })
}

/// `CREATE OR REPLACE FUNCTION name() RETURNS trigger` in PL/pgSQL with `body`, running as
/// its owner with a pinned search_path. The body is dollar-quoted with a tag it does not
/// contain (`$tandem$`, else `$tandem1$`, ...): names and expressions inside it are the
/// user's, and one holding `$tandem$` must not end the quoting early.
pub fn trigger_function(name: &QualName, body: &str) -> String {
    let tag = dollar_tag(body);
    format!(
        "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS {tag}
{body}
{tag}"
    )
}

/// A dollar-quote tag that `body` does not contain: `$tandem$`, else `$tandem1$`, ...
pub(crate) fn dollar_tag(body: &str) -> String {
    (0..)
        .map(|n| match n {
            0 => "$tandem$".to_string(),
            n => format!("$tandem{n}$"),
        })
        .find(|tag| !body.contains(tag.as_str()))
        .expect("a tag the body does not contain")
}

/// Make trigger `trigger` on `table` fire in every `session_replication_role`: a logical
/// replication subscriber or a `pg_restore` session (role `replica`) skips triggers left
/// `ENABLE`d (origin only), and its writes would never reach the other table. Runs in the
/// transaction that creates the trigger (the same SHARE ROW EXCLUSIVE lock).
pub fn fire_always(table: &impl std::fmt::Display, trigger: &impl std::fmt::Display) -> String {
    format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
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

/// tandem's names for the sequences of identity column `attnum`: the new table's while it is
/// not live, and the original's once it is not.
pub fn identity_sequences(m: i64, oid: u32, attnum: i16) -> (Ident, Ident) {
    (
        Ident::new(format!("_tandem_m{m}_t{oid}_s{attnum}_new")).expect("short name"),
        Ident::new(format!("_tandem_m{m}_t{oid}_s{attnum}_old")).expect("short name"),
    )
}

/// tandem's names for the copy of the original's `n`th extended statistics object, and for
/// the original's once the copy takes its name.
pub fn statistics_names(m: i64, oid: u32, n: usize) -> (Ident, Ident) {
    (
        Ident::new(format!("_tandem_m{m}_t{oid}_x{n}")).expect("short name"),
        Ident::new(format!("_tandem_m{m}_t{oid}_y{n}")).expect("short name"),
    )
}

/// Name the index `n` of partition `oid` takes while it is not under the user's name: the
/// original's parked, or the new one's after a rollback.
pub fn partition_index(m: i64, oid: u32, n: usize, original: bool) -> Ident {
    let side = if original { 'o' } else { 'n' };
    Ident::new(format!("_tandem_m{m}_p{oid}_{side}{n}")).expect("short name")
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
