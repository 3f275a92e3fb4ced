//! The schema diff: the ordered changes that turn one [`Schema`] into another.
//!
//! [`diff`] compares a live schema with a desired one and returns [`Change`]s in an order
//! PostgreSQL accepts (see `order.rs` for the dependency graph). [`differences`] lists the
//! same gaps for people (`tandem diff`). Renames are never guessed: they come only from
//! explicit hints in the desired-schema SQL ([`parse_rename_hints`]).
//!
//! Layout: `hints.rs` renames, `types.rs` schemas/extensions/types/sequences/functions,
//! `tables.rs` tables and columns, `children.rs` constraints/indexes/triggers/policies,
//! `views.rs` views, `order.rs` the graph, `sql.rs` small SQL helpers, `render.rs` the
//! readable differences.

mod children;
mod hints;
mod order;
mod render;
mod rules;
mod sql;
mod tables;
mod types;
mod views;

pub(crate) use sql::plain;
pub(crate) use views::create_sql as create_view_sql;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ident::QualName;
use crate::model::Schema;

pub use hints::{parse_rename_hints, RenameColumn, RenameHints, RenameTable};
pub use render::{differences, Difference, DifferenceKind};

use order::Changes;

/// One step of a schema change: statements that belong together, for people and the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// For people: "add column public.accounts.note".
    pub description: String,
    pub kind: ChangeKind,
    /// The object changed: "table public.accounts", "column public.accounts.note", ...
    pub object: String,
    /// The table it changes, if any.
    pub table: Option<QualName>,
    /// Complete statements, executed in this order.
    pub sql: Vec<String>,
    /// False if any statement cannot run in a transaction block (CONCURRENTLY, ADD VALUE).
    pub transactional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Create,
    Drop,
    Alter,
    Rename,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error("the changes depend on each other in a cycle ({}); split the change into two migrations", .0.join(", "))]
    Cycle(Vec<String>),
    #[error("cannot change {object}: {reason}")]
    Unsupported { object: String, reason: String },
    #[error("rename hint on line {line}: {reason}")]
    BadHint { line: usize, reason: String },
}

/// The changes that turn `from` (live) into `to` (desired), in an order PostgreSQL accepts.
///
/// `hints` name the renames to do instead of drop + create; everything else missing on one
/// side and present on the other is a drop and a create.
pub fn diff(from: &Schema, to: &Schema, hints: &RenameHints) -> Result<Vec<Change>, DiffError> {
    let mut out = Changes::default();
    let from = hints::apply(from, to, hints, &mut out)?;
    let mut cx = Cx {
        from: &from,
        to,
        out,
        disturbed: BTreeSet::new(),
        created_tables: BTreeSet::new(),
        dropped_tables: BTreeSet::new(),
        dropped_columns: BTreeSet::new(),
        retyped_columns: BTreeSet::new(),
    };
    types::diff_namespaces(&mut cx);
    types::diff_extensions(&mut cx);
    types::diff_enums(&mut cx)?;
    types::diff_domains(&mut cx)?;
    types::diff_composites(&mut cx);
    tables::diff_tables(&mut cx)?;
    types::diff_sequences(&mut cx);
    types::diff_functions(&mut cx);
    views::diff_views(&mut cx);
    cx.out.order()
}

/// What the diff passes share while it walks the two schemas.
pub(crate) struct Cx<'a> {
    /// The live schema, with rename hints already applied.
    pub from: &'a Schema,
    pub to: &'a Schema,
    pub out: Changes,
    /// Tables whose views must be dropped before and re-created after (dropped tables,
    /// dropped or retyped columns): "cannot alter type of a column used by a view".
    pub disturbed: BTreeSet<QualName>,
    /// Tables created by this diff (new, or dropped and re-created).
    pub created_tables: BTreeSet<QualName>,
    /// Live tables dropped by this diff (including re-created ones).
    pub dropped_tables: BTreeSet<QualName>,
    /// Live columns dropped by this diff (including re-added ones), of tables that stay.
    pub dropped_columns: BTreeSet<(QualName, String)>,
    /// Columns whose type or collation this diff changes.
    pub retyped_columns: BTreeSet<(QualName, String)>,
}
