//! Which migrations the target has applied, from the migration tool's own history table.
//!
//! | table | tool | what it holds |
//! |---|---|---|
//! | `_sqlx_migrations` | sqlx | one row per applied version, `success` |
//! | `schema_migrations` with `dirty` | golang-migrate | one row: the current version; everything up to it is applied |
//! | `schema_migrations` without `dirty` | Rails and others | one row per applied version |
//! | `flyway_schema_history` | Flyway | one row per run; repeatables have no version |
//!
//! Read-only: one `SELECT` per table, found through the role's `search_path`. With none of
//! them, every migration of the folder counts as applied.

use anyhow::anyhow;
use tokio_postgres::Client;

use super::folder::{Migration, Version};

/// What the target says it has applied.
#[derive(Debug, Clone)]
pub enum Applied {
    /// No history table: every migration counts as applied.
    Unknown,
    /// These versions (and, for Flyway, these repeatable scripts by file name).
    Versions {
        table: &'static str,
        versions: Vec<Version>,
        scripts: Vec<String>,
    },
    /// golang-migrate: every version up to this one.
    UpTo {
        table: &'static str,
        version: Version,
        dirty: bool,
    },
}

impl Applied {
    pub fn contains(&self, m: &Migration) -> bool {
        match self {
            Applied::Unknown => true,
            Applied::Versions {
                versions, scripts, ..
            } => match &m.version {
                Version::Repeatable => m
                    .path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| scripts.iter().any(|s| s == f)),
                v => versions.iter().any(|a| a.cmp(v).is_eq()),
            },
            Applied::UpTo { version, .. } => m.version <= *version,
        }
    }

    /// The history table read, for the report.
    pub fn table(&self) -> Option<&'static str> {
        match self {
            Applied::Unknown => None,
            Applied::Versions { table, .. } | Applied::UpTo { table, .. } => Some(table),
        }
    }
}

/// The tables migration tools keep for themselves: not part of the schema the migrations make.
pub const HISTORY_TABLES: [&str; 3] = [
    "_sqlx_migrations",
    "schema_migrations",
    "flyway_schema_history",
];

pub async fn read(client: &Client) -> anyhow::Result<Applied> {
    let found = client
        .query_one(
            "SELECT to_regclass('_sqlx_migrations') IS NOT NULL,
                    to_regclass('schema_migrations') IS NOT NULL,
                    to_regclass('flyway_schema_history') IS NOT NULL,
                    EXISTS (SELECT FROM pg_attribute
                             WHERE attrelid = to_regclass('schema_migrations')
                               AND attname = 'dirty' AND NOT attisdropped)",
            &[],
        )
        .await?;
    let (sqlx, schema_migrations, flyway, dirty_column): (bool, bool, bool, bool) =
        (found.get(0), found.get(1), found.get(2), found.get(3));
    if sqlx {
        let rows = client
            .query(
                "SELECT version::text FROM _sqlx_migrations WHERE success ORDER BY version",
                &[],
            )
            .await?;
        return Ok(Applied::Versions {
            table: "_sqlx_migrations",
            versions: versions(rows.iter().map(|r| r.get::<_, String>(0)))?,
            scripts: Vec::new(),
        });
    }
    if flyway {
        let rows = client
            .query(
                "SELECT version, script FROM flyway_schema_history WHERE success ORDER BY installed_rank",
                &[],
            )
            .await?;
        let mut numbered = Vec::new();
        let mut scripts = Vec::new();
        for row in &rows {
            match row.get::<_, Option<String>>(0) {
                Some(v) => numbered.push(v),
                None => scripts.push(row.get::<_, String>(1)),
            }
        }
        return Ok(Applied::Versions {
            table: "flyway_schema_history",
            versions: versions(numbered.into_iter())?,
            scripts,
        });
    }
    if schema_migrations && dirty_column {
        let row = client
            .query_opt(
                "SELECT version::text, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1",
                &[],
            )
            .await?;
        return Ok(match row {
            None => Applied::Versions {
                table: "schema_migrations",
                versions: Vec::new(),
                scripts: Vec::new(),
            },
            Some(row) => Applied::UpTo {
                table: "schema_migrations",
                version: versions(std::iter::once(row.get::<_, String>(0)))?
                    .pop()
                    .ok_or_else(|| anyhow!("schema_migrations holds no version"))?,
                dirty: row.get(1),
            },
        });
    }
    if schema_migrations {
        let rows = client
            .query("SELECT version::text FROM schema_migrations", &[])
            .await?;
        return Ok(Applied::Versions {
            table: "schema_migrations",
            versions: versions(rows.iter().map(|r| r.get::<_, String>(0)))?,
            scripts: Vec::new(),
        });
    }
    Ok(Applied::Unknown)
}

fn versions(texts: impl Iterator<Item = String>) -> anyhow::Result<Vec<Version>> {
    texts
        .map(|t| {
            Version::parse(&t).ok_or_else(|| {
                anyhow!("the history table holds the version {t:?}, which is not a number; tandem check reads numbered versions only")
            })
        })
        .collect()
}
