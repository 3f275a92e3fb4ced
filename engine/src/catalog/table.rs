//! Reads of one table, by oid, for the executor: what prepare, the swap and the mirror views
//! need to know of a live table and of its shadow (introspection, in the rest of `catalog`,
//! reads a whole database into the schema model instead). Each query is a file in
//! `sql/table/`; columns have one reader, [`columns`].

use planner::ident::{Ident, QualName};
use tokio_postgres::GenericClient;

use crate::catalog::query;
use crate::error::EngineError;

query!(DEFINITION, "table/definition.sql", "the table's definition");
query!(VIEWS, "table/views.sql", "the views that read the table");
query!(
    FOREIGN_KEYS,
    "table/foreign_keys.sql",
    "the table's foreign keys"
);
query!(TRIGGERS, "table/triggers.sql", "the table's triggers");
query!(
    TRIGGERS_IN_FORCE,
    "table/triggers_in_force.sql",
    "the state of tandem's triggers on the table"
);
query!(POLICIES, "table/policies.sql", "the table's policies");
query!(
    PUBLICATIONS,
    "table/publications.sql",
    "the table's publications"
);
query!(
    OWNED_SEQUENCES,
    "table/owned_sequences.sql",
    "the table's sequences"
);
query!(
    SQL_BODIES,
    "table/sql_bodies.sql",
    "the functions that depend on the table"
);
query!(COLUMNS, "table/columns.sql", "the table's columns");
query!(INDEXES, "table/indexes.sql", "the table's indexes");
query!(KEY, "table/key.sql", "the table's key");
query!(
    UNIQUE_COLUMNS,
    "table/unique_columns.sql",
    "the shadow's unique indexes"
);
query!(
    CROSS_ROW_INDEXES,
    "table/cross_row_indexes.sql",
    "the shadow's unique and exclusion indexes"
);
query!(SIZE, "table/size.sql", "the table's size");
query!(
    ROW_ESTIMATE,
    "table/row_estimate.sql",
    "the planner's estimate of the table's rows"
);
query!(GRANTS, "table/grants.sql", "the privileges granted on it");
query!(
    SETTLE,
    "table/settle.sql",
    "whether the table is larger than the server's shared buffers"
);
query!(
    TRIGGER_NAMES,
    "table/trigger_names.sql",
    "the table's triggers"
);
query!(
    POLICY_NAMES,
    "table/policy_names.sql",
    "the table's policies"
);
query!(
    FOREIGN_KEY_NAMES,
    "table/foreign_key_names.sql",
    "the table's foreign keys"
);
query!(INDEX_NAMES, "table/index_names.sql", "the table's indexes");
query!(
    PARTITION_TREE,
    "table/partition_tree.sql",
    "the table's partitions"
);
query!(
    PARTITION_INDEXES,
    "table/partition_indexes.sql",
    "the partitions' indexes"
);
query!(
    PARTITION_REFUSALS,
    "table/partition_refusals.sql",
    "what the partitions have of their own"
);
query!(
    PARTITION_INDEX_TREE,
    "table/partition_index_tree.sql",
    "the partitions' indexes and the parent indexes they are attached to"
);
query!(
    MATVIEWS,
    "table/matviews.sql",
    "the materialized views that read the table"
);
query!(
    MATVIEW_INDEXES,
    "table/matview_indexes.sql",
    "a materialized view's indexes"
);
query!(
    PARTITION_CARRY,
    "table/partition_carry.sql",
    "the partitions' owners and privileges"
);

/// A column of a table.
#[derive(Debug, Clone)]
pub(crate) struct TableColumn {
    pub(crate) name: String,
    /// `format_type`, under the executor's `search_path = pg_catalog` (so qualified).
    pub(crate) sql_type: String,
    /// The generation expression of a generated column.
    pub(crate) generated: Option<String>,
    pub(crate) not_null: bool,
    pub(crate) has_default: bool,
    /// `attidentity`: "a" (ALWAYS), "d" (BY DEFAULT) or "".
    pub(crate) identity: String,
    pub(crate) attnum: i16,
}

impl TableColumn {
    pub(crate) fn is_generated(&self) -> bool {
        self.generated.is_some()
    }
}

/// The column sets of the unique indexes (on plain columns) of `table`.
pub(crate) async fn unique_columns(
    c: &impl GenericClient,
    table: &QualName,
) -> Result<Vec<Vec<Ident>>, EngineError> {
    let rows = c
        .query(UNIQUE_COLUMNS.sql, &[&table.to_string()])
        .await
        .map_err(EngineError::sql(format!("read {}", UNIQUE_COLUMNS.what)))?;
    // Catalog names are never empty: none is skipped.
    Ok(rows
        .iter()
        .filter_map(|r| {
            r.get::<_, Vec<String>>(0)
                .into_iter()
                .map(Ident::new)
                .collect::<Result<Vec<_>, _>>()
                .ok()
        })
        .collect())
}

/// One of the shadow's unique or exclusion indexes other than its key's.
pub(crate) struct CrossRowIndex {
    pub(crate) name: String,
    /// Its columns, when a stale row holding its values can be found by them (a unique
    /// index on plain columns whose NULLs are distinct); `None` otherwise.
    pub(crate) unique_columns: Option<Vec<Ident>>,
}

/// The shadow's unique and exclusion indexes other than its key's.
pub(crate) async fn cross_row_indexes(
    c: &impl GenericClient,
    spec: &crate::shadow::TableSpec,
) -> Result<Vec<CrossRowIndex>, EngineError> {
    let key: Vec<String> = spec
        .new_key
        .iter()
        .map(|k| k.name.as_str().to_string())
        .collect();
    let rows = c
        .query(CROSS_ROW_INDEXES.sql, &[&spec.shadow.to_string(), &key])
        .await
        .map_err(EngineError::sql(format!("read {}", CROSS_ROW_INDEXES.what)))?;
    Ok(rows
        .iter()
        .map(|r| CrossRowIndex {
            name: r.get(0),
            // Catalog names are never empty.
            unique_columns: r.get::<_, Option<Vec<String>>>(1).and_then(|cols| {
                cols.into_iter()
                    .map(Ident::new)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
            }),
        })
        .collect())
}

/// The columns of table `oid`, in order.
pub(crate) async fn columns(
    c: &impl GenericClient,
    oid: u32,
) -> Result<Vec<TableColumn>, EngineError> {
    Ok(c.query(COLUMNS.sql, &[&oid])
        .await
        .map_err(EngineError::sql(format!("read {}", COLUMNS.what)))?
        .iter()
        .map(|r| TableColumn {
            name: r.get(0),
            sql_type: r.get(1),
            generated: r.get(2),
            not_null: r.get(3),
            has_default: r.get(4),
            identity: r.get(5),
            attnum: r.get(6),
        })
        .collect())
}
