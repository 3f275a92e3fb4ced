//! Tables and views, and what hangs off them: columns, constraints, indexes, triggers,
//! policies and view dependencies, joined to their relation by oid.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use planner::ident::QualName;
use planner::model::{
    Column, Constraint, ConstraintKind, ForeignKey, Identity, Index, Persistence, Policy,
    ReplicaIdentity, Rule, Schema, Table, TableStats, Trigger, View,
};
use tokio_postgres::Row;

use super::row::{qual_name, Fields};
use super::{query, CatalogError, Query};

query!(TABLES, "tables.sql", "tables");
query!(COLUMNS, "columns.sql", "columns");
query!(CONSTRAINTS, "constraints.sql", "constraints");
query!(INDEXES, "indexes.sql", "indexes");
query!(TRIGGERS, "triggers.sql", "triggers");
query!(RULES, "rules.sql", "rules");
query!(POLICIES, "policies.sql", "row-level security policies");
query!(VIEWS, "views.sql", "views");
query!(
    VIEW_DEPENDENCIES,
    "view_dependencies.sql",
    "view dependencies"
);

type Rows = (&'static Query, Vec<Row>);

/// Tables and views by oid while their parts are attached. Rows for relations that are not
/// here (system, extension or temporary relations) are skipped.
#[derive(Default)]
pub(crate) struct Relations {
    tables: HashMap<u32, Table>,
    views: HashMap<u32, View>,
    view_dependencies: HashMap<u32, BTreeSet<QualName>>,
}

impl Relations {
    pub(crate) fn tables(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let parent_schema: Option<&str> = r.get("parent_schema")?;
            let parent_name: Option<&str> = r.get("parent_name")?;
            let bound: Option<String> = r.get("partition_bound")?;
            let partition_of = match (parent_schema, parent_name, bound) {
                (Some(schema), Some(name), Some(bound)) => {
                    Some((qual_name("table", schema, name)?, bound))
                }
                _ => None,
            };
            let replica_index: Option<String> = r.get("replica_index")?;
            let replica_identity = match r.get_char("replica_identity")? {
                Some('f') => ReplicaIdentity::Full,
                Some('n') => ReplicaIdentity::Nothing,
                // An `i` whose index was dropped behaves like NOTHING on the server.
                Some('i') => replica_index.map_or(ReplicaIdentity::Nothing, ReplicaIdentity::Index),
                _ => ReplicaIdentity::Default,
            };
            let persistence = match r.get_char("persistence")? {
                Some('u') => Persistence::Unlogged,
                _ => Persistence::Permanent,
            };
            let mut options: Vec<String> = r.get("options")?;
            options.sort();
            let table = Table {
                name: r.qual_name("table", "schema", "name")?,
                persistence,
                partition_key: r.get("partition_key")?,
                partition_of,
                rls_enabled: r.get("rls_enabled")?,
                rls_forced: r.get("rls_forced")?,
                replica_identity,
                options,
                columns: Vec::new(),
                constraints: BTreeMap::new(),
                indexes: BTreeMap::new(),
                triggers: BTreeMap::new(),
                rules: BTreeMap::new(),
                policies: BTreeMap::new(),
                comment: r.get("comment")?,
                stats: Some(TableStats {
                    estimated_rows: r.get::<i64>("estimated_rows")?.max(0),
                    total_bytes: r.get("total_bytes")?,
                    heap_bytes: r.get("heap_bytes")?,
                }),
            };
            self.tables.insert(r.get("oid")?, table);
        }
        Ok(())
    }

    pub(crate) fn views(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let view = View {
                name: r.qual_name("view", "schema", "name")?,
                materialized: r.get("materialized")?,
                definition: r.get("definition")?,
                columns: Vec::new(),
                depends_on: Vec::new(),
                indexes: BTreeMap::new(),
                comment: r.get("comment")?,
            };
            self.views.insert(r.get("oid")?, view);
        }
        Ok(())
    }

    /// Rows arrive in attnum order, so pushing keeps the column order.
    pub(crate) fn columns(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let relation: u32 = r.get("relation")?;
            if let Some(table) = self.tables.get_mut(&relation) {
                let identity = match r.get_char("identity")? {
                    Some('a') => Some(Identity::Always),
                    Some('d') => Some(Identity::ByDefault),
                    _ => None,
                };
                table.columns.push(Column {
                    name: r.get("name")?,
                    data_type: r.get("data_type")?,
                    collation: r.get("collation")?,
                    not_null: r.get("not_null")?,
                    default: r.get("default")?,
                    identity,
                    generated: r.get("generated")?,
                    comment: r.get("comment")?,
                });
            } else if let Some(view) = self.views.get_mut(&relation) {
                view.columns.push((r.get("name")?, r.get("data_type")?));
            }
        }
        Ok(())
    }

    pub(crate) fn constraints(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let Some(table) = self.tables.get_mut(&r.get::<u32>("relation")?) else {
                continue;
            };
            let columns: Vec<String> = r.get("columns")?;
            let kind = match r.get_char("kind")? {
                Some('p') => ConstraintKind::PrimaryKey { columns },
                Some('u') => ConstraintKind::Unique { columns },
                Some('f') => ConstraintKind::ForeignKey(ForeignKey {
                    columns,
                    references: r.qual_name("table", "ref_schema", "ref_table")?,
                    referenced_columns: r.get("ref_columns")?,
                    on_update: r.get_char("on_update")?.unwrap_or('a'),
                    on_delete: r.get_char("on_delete")?.unwrap_or('a'),
                }),
                Some('x') => ConstraintKind::Exclusion,
                _ => ConstraintKind::Check,
            };
            let constraint = Constraint {
                name: r.get("name")?,
                kind,
                definition: r.get("definition")?,
                validated: r.get("validated")?,
                deferrable: r.get("deferrable")?,
                initially_deferred: r.get("initially_deferred")?,
                comment: r.get("comment")?,
            };
            table
                .constraints
                .insert(constraint.name.clone(), constraint);
        }
        Ok(())
    }

    pub(crate) fn indexes(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let relation: u32 = r.get("relation")?;
            let indexes = if let Some(table) = self.tables.get_mut(&relation) {
                &mut table.indexes
            } else if let Some(view) = self.views.get_mut(&relation) {
                &mut view.indexes
            } else {
                continue;
            };
            let index = Index {
                name: r.get("name")?,
                unique: r.get("unique")?,
                method: r.get("method")?,
                keys: r.get("keys")?,
                include: r.get("include")?,
                predicate: r.get("predicate")?,
                definition: r.get("definition")?,
                valid: r.get("valid")?,
                comment: r.get("comment")?,
            };
            indexes.insert(index.name.clone(), index);
        }
        Ok(())
    }

    pub(crate) fn triggers(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let Some(table) = self.tables.get_mut(&r.get::<u32>("relation")?) else {
                continue;
            };
            let trigger = Trigger {
                name: r.get("name")?,
                definition: r.get("definition")?,
                enabled: r.get_char("enabled")?.unwrap_or('O'),
                comment: r.get("comment")?,
            };
            table.triggers.insert(trigger.name.clone(), trigger);
        }
        Ok(())
    }

    pub(crate) fn rules(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let Some(table) = self.tables.get_mut(&r.get::<u32>("relation")?) else {
                continue;
            };
            let rule = Rule {
                name: r.get("name")?,
                definition: r.get("definition")?,
                enabled: r.get_char("enabled")?.unwrap_or('O'),
                comment: r.get("comment")?,
            };
            table.rules.insert(rule.name.clone(), rule);
        }
        Ok(())
    }

    pub(crate) fn policies(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let Some(table) = self.tables.get_mut(&r.get::<u32>("relation")?) else {
                continue;
            };
            // Sorted here, in byte order, not by the database's collation.
            let mut roles: Vec<String> = r.get("roles")?;
            roles.sort();
            let policy = Policy {
                name: r.get("name")?,
                permissive: r.get("permissive")?,
                command: r.get("command")?,
                roles,
                using: r.get("using")?,
                with_check: r.get("with_check")?,
            };
            table.policies.insert(policy.name.clone(), policy);
        }
        Ok(())
    }

    pub(crate) fn view_dependencies(&mut self, rows: &Rows) -> Result<(), CatalogError> {
        for r in Fields::all(rows) {
            let name = r.qual_name("relation", "schema", "name")?;
            self.view_dependencies
                .entry(r.get("view")?)
                .or_default()
                .insert(name);
        }
        Ok(())
    }

    /// Move the assembled tables and views into the schema, keyed by name.
    pub(crate) fn finish(self, schema: &mut Schema) {
        let Relations {
            tables,
            views,
            mut view_dependencies,
        } = self;
        schema.tables = tables.into_values().map(|t| (t.name.clone(), t)).collect();
        schema.views = views
            .into_iter()
            .map(|(oid, mut v)| {
                v.depends_on = view_dependencies
                    .remove(&oid)
                    .map(|deps| deps.into_iter().collect())
                    .unwrap_or_default();
                (v.name.clone(), v)
            })
            .collect();
    }
}
