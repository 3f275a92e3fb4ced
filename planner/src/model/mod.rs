//! The schema model: what a database (or a desired-schema file) contains, as plain data.
//!
//! Both sides of a diff are read by the same introspection code on the same server, so
//! expressions and definitions (`pg_get_constraintdef`, `pg_get_viewdef`, `format_type`, ...)
//! are already in PostgreSQL's canonical spelling and can be compared as strings.
//! Maps are `BTreeMap`s so that serialisation, and therefore the fingerprint, is canonical.

mod scope;
mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use scope::Scope;
pub use table::{
    trigger_state_clause, Column, Constraint, ConstraintKind, ForeignKey, Identity, Index,
    Persistence, Policy, ReplicaIdentity, Rule, Table, TableStats, Trigger,
};

use crate::ident::QualName;

/// A whole database schema (user objects only: no `pg_*`, `information_schema` or `tandem`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub schemas: BTreeMap<String, Namespace>,
    pub extensions: BTreeMap<String, Extension>,
    pub enums: BTreeMap<QualName, EnumType>,
    pub domains: BTreeMap<QualName, Domain>,
    pub composites: BTreeMap<QualName, CompositeType>,
    pub sequences: BTreeMap<QualName, Sequence>,
    pub tables: BTreeMap<QualName, Table>,
    pub views: BTreeMap<QualName, View>,
    /// Keyed by `schema.name(identity arguments)`.
    pub functions: BTreeMap<String, Function>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub schema: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    pub name: QualName,
    pub labels: Vec<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: QualName,
    /// `format_type` of the base type, e.g. `character varying(20)`.
    pub base_type: String,
    pub collation: Option<String>,
    pub not_null: bool,
    pub default: Option<String>,
    /// Check constraints by name: (`pg_get_constraintdef`, validated).
    pub checks: BTreeMap<String, DomainCheck>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCheck {
    pub definition: String,
    pub validated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeType {
    pub name: QualName,
    /// (attribute name, `format_type`) in order.
    pub attributes: Vec<(String, String)>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub name: QualName,
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min_value: i64,
    pub max_value: i64,
    pub cache: i64,
    pub cycle: bool,
    /// `OWNED BY table.column`.
    pub owned_by: Option<(QualName, String)>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub name: QualName,
    pub materialized: bool,
    /// `pg_get_viewdef`, normalised by the server.
    pub definition: String,
    /// Output columns: (name, `format_type`).
    pub columns: Vec<(String, String)>,
    /// Tables and views this view reads (from `pg_depend` through its rewrite rule).
    pub depends_on: Vec<QualName>,
    /// Indexes of a materialized view.
    pub indexes: BTreeMap<String, Index>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// `pg_get_function_identity_arguments`.
    pub identity_args: String,
    /// `pg_get_function_result`; `None` for procedures.
    pub result: Option<String>,
    pub language: String,
    /// `pg_get_functiondef`: a complete `CREATE OR REPLACE` statement.
    pub definition: String,
    pub comment: Option<String>,
}

impl Function {
    pub fn key(&self) -> String {
        format!("{}.{}({})", self.schema, self.name, self.identity_args)
    }
}

impl Schema {
    /// SHA-256 of the canonical JSON of the schema without size estimates: identifies the
    /// schema a plan was made against, so a stale plan can be refused.
    pub fn fingerprint(&self) -> String {
        let mut stripped = self.clone();
        for table in stripped.tables.values_mut() {
            table.stats = None;
        }
        let bytes = serde_json::to_vec(&stripped).expect("schema model serialises");
        hex::encode(Sha256::digest(&bytes))
    }

    /// Views that read `table` directly or through other views, in dependency order.
    pub fn dependent_views(&self, table: &QualName) -> Vec<&QualName> {
        let mut out: Vec<&QualName> = Vec::new();
        let mut frontier = vec![table];
        while let Some(current) = frontier.pop() {
            for (name, view) in &self.views {
                if view.depends_on.contains(current) && !out.contains(&name) {
                    out.push(name);
                    frontier.push(name);
                }
            }
        }
        out
    }

    /// Foreign keys on other tables (or the same one) that reference `table`:
    /// (referencing table, constraint name).
    pub fn inbound_foreign_keys(&self, table: &QualName) -> Vec<(&QualName, &str)> {
        let mut out = Vec::new();
        for (name, t) in &self.tables {
            for c in t.constraints.values() {
                if let ConstraintKind::ForeignKey(fk) = &c.kind {
                    if &fk.references == table {
                        out.push((name, c.name.as_str()));
                    }
                }
            }
        }
        out
    }

    /// Look up a table by the names a user would write: `t`, `public.t` or `s.t`.
    pub fn find_table(&self, schema: Option<&str>, name: &str) -> Option<&Table> {
        let schema = schema.unwrap_or("public");
        self.tables
            .values()
            .find(|t| t.name.schema.as_str() == schema && t.name.name.as_str() == name)
    }
}
