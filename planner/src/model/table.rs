//! Tables and what hangs off them: columns, constraints, indexes, triggers, policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ident::QualName;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: QualName,
    pub persistence: Persistence,
    /// `pg_get_partkeydef` when this table is a partitioned parent, e.g. `RANGE (created_at)`.
    pub partition_key: Option<String>,
    /// Parent and `pg_get_expr(relpartbound)` when this table is a partition.
    pub partition_of: Option<(QualName, String)>,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub replica_identity: ReplicaIdentity,
    /// `reloptions`, e.g. `fillfactor=70`, sorted.
    pub options: Vec<String>,
    pub columns: Vec<Column>,
    pub constraints: BTreeMap<String, Constraint>,
    /// Indexes that do not back a constraint.
    pub indexes: BTreeMap<String, Index>,
    pub triggers: BTreeMap<String, Trigger>,
    /// Rules (`CREATE RULE`), not the `_RETURN` rule of a view. Left out of the JSON (and so
    /// of the fingerprint) when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, Rule>,
    pub policies: BTreeMap<String, Policy>,
    pub comment: Option<String>,
    /// Size figures a plan needs; not part of the schema's identity.
    pub stats: Option<TableStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    Permanent,
    Unlogged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaIdentity {
    Default,
    Full,
    Nothing,
    Index(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// `pg_class.reltuples` (-1 when never analysed: then a count estimate from pages).
    pub estimated_rows: i64,
    /// `pg_total_relation_size`: heap, indexes and TOAST.
    pub total_bytes: i64,
    /// `pg_relation_size`: heap only.
    pub heap_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `numeric(10,2)`, `public.mood[]`.
    pub data_type: String,
    /// Set only when it differs from the type's default collation.
    pub collation: Option<String>,
    pub not_null: bool,
    /// `pg_get_expr(adbin)`; `None` for generated columns (see `generated`).
    pub default: Option<String>,
    pub identity: Option<Identity>,
    /// The expression of a `GENERATED ALWAYS AS (...) STORED` column.
    pub generated: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    Always,
    ByDefault,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    /// `pg_get_constraintdef`, e.g. `FOREIGN KEY (a) REFERENCES b(id) ON DELETE CASCADE NOT VALID`.
    pub definition: String,
    /// False for a constraint added `NOT VALID` and not yet validated.
    pub validated: bool,
    pub deferrable: bool,
    pub initially_deferred: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey { columns: Vec<String> },
    Unique { columns: Vec<String> },
    ForeignKey(ForeignKey),
    Check,
    Exclusion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub references: QualName,
    pub referenced_columns: Vec<String>,
    /// `a` no action, `r` restrict, `c` cascade, `n` set null, `d` set default.
    pub on_update: char,
    pub on_delete: char,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    /// Access method: btree, hash, gin, gist, brin, ...
    pub method: String,
    /// Key columns or expressions, as `pg_get_indexdef(oid, n, true)` spells them.
    pub keys: Vec<String>,
    pub include: Vec<String>,
    pub predicate: Option<String>,
    /// `pg_get_indexdef`: the full `CREATE INDEX` statement.
    pub definition: String,
    /// False when a concurrent build failed and left the index invalid.
    pub valid: bool,
    pub comment: Option<String>,
}

/// The `ALTER TABLE .. <clause> TRIGGER name` clause that puts a trigger in the state
/// `pg_trigger.tgenabled` records: `O` (or anything else) `ENABLE`, `D` `DISABLE`, `R`
/// `ENABLE REPLICA`, `A` `ENABLE ALWAYS`.
pub fn trigger_state_clause(enabled: char) -> &'static str {
    match enabled {
        'D' => "DISABLE",
        'R' => "ENABLE REPLICA",
        'A' => "ENABLE ALWAYS",
        _ => "ENABLE",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub name: String,
    /// `pg_get_triggerdef`: the full `CREATE TRIGGER` statement.
    pub definition: String,
    /// `O` origin (enabled), `D` disabled, `R` replica, `A` always.
    pub enabled: char,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// `pg_get_ruledef`: the full `CREATE RULE` statement, with its final semicolon.
    pub definition: String,
    /// `O` origin (enabled), `D` disabled, `R` replica, `A` always.
    pub enabled: char,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub permissive: bool,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    pub roles: Vec<String>,
    pub using: Option<String>,
    pub with_check: Option<String>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn primary_key(&self) -> Option<&Constraint> {
        self.constraints
            .values()
            .find(|c| matches!(c.kind, ConstraintKind::PrimaryKey { .. }))
    }

    /// The columns of a key a shadow migration can use to address rows: the primary key,
    /// else a unique constraint or valid, non-partial, plain-column unique index whose
    /// columns are all NOT NULL.
    pub fn usable_key(&self) -> Option<Vec<String>> {
        if let Some(ConstraintKind::PrimaryKey { columns }) = self.primary_key().map(|c| &c.kind) {
            return Some(columns.clone());
        }
        let all_not_null = |cols: &[String]| {
            cols.iter()
                .all(|c| self.column(c).is_some_and(|col| col.not_null))
        };
        for c in self.constraints.values() {
            if let ConstraintKind::Unique { columns } = &c.kind {
                if all_not_null(columns) && !c.deferrable {
                    return Some(columns.clone());
                }
            }
        }
        for i in self.indexes.values() {
            let plain = i.keys.iter().all(|k| self.column(k).is_some());
            if i.unique && i.valid && i.predicate.is_none() && plain && all_not_null(&i.keys) {
                return Some(i.keys.clone());
            }
        }
        None
    }
}
