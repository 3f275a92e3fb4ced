//! Which tables are migrating and what to compare them with: tandem.mirror_targets, loaded
//! on start, on `reload()` and every few seconds, read lock-free-ish by the client's path.

use std::fmt;

use planner::ident::QualName;
use tokio_postgres::Client;

/// The side a comparison reads instead of the live table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Against {
    /// Before cutover: the shadow table, in the live table's shape.
    Shadow,
    /// In the rollback window: the old table, in the new table's shape.
    Old,
}

impl Against {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Against::Shadow => "shadow",
            Against::Old => "old",
        }
    }
}

impl fmt::Display for Against {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What counters and drift rows are kept per: (migration id, side).
pub(crate) type GroupKey = (i64, Against);

/// One migrating table.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub migration_id: i64,
    pub schema: String,
    pub table: String,
    /// The other table in the live table's shape (same column names and types).
    pub view: QualName,
    pub against: Against,
    /// The table's key, by column name, for the example key of a drift row.
    pub key_columns: Vec<String>,
}

impl Target {
    pub(crate) fn group(&self) -> GroupKey {
        (self.migration_id, self.against)
    }

    /// Does a RangeVar (schema as written, empty when unqualified) name this table? An
    /// unqualified name is taken to be in `public` (see the module `classify`).
    pub(crate) fn names(&self, schema: &str, relation: &str) -> bool {
        relation == self.table
            && (schema == self.schema || (schema.is_empty() && self.schema == "public"))
    }
}

/// Read tandem.mirror_targets; none when tandem (or its version 3) is not installed. A row
/// whose view name does not parse as `schema.name` is left out, with a warning.
pub(crate) async fn load(client: &Client) -> Result<Vec<Target>, tokio_postgres::Error> {
    let installed: bool = client
        .query_one(include_str!("sql/has_targets.sql"), &[])
        .await?
        .get(0);
    if !installed {
        return Ok(Vec::new());
    }
    let rows = client.query(include_str!("sql/targets.sql"), &[]).await?;
    let mut targets = Vec::with_capacity(rows.len());
    for row in rows {
        let migration_id: i64 = row.get("migration_id");
        let schema: String = row.get("schema_name");
        let table: String = row.get("table_name");
        let view: String = row.get("mirror_view");
        let against = match row.get::<_, &str>("against") {
            "old" => Against::Old,
            _ => Against::Shadow,
        };
        let Ok(view) = QualName::try_from(view) else {
            tracing::warn!(
                migration_id,
                schema = %schema,
                table = %table,
                "tandem.shadow_tables.mirror_view is not a schema-qualified name; reads on this table are not compared until the executor sets it again"
            );
            continue;
        };
        let key_columns: Vec<Option<String>> = row.get("key_columns");
        targets.push(Target {
            migration_id,
            schema,
            table,
            view,
            against,
            key_columns: key_columns.into_iter().flatten().collect(),
        });
    }
    Ok(targets)
}
