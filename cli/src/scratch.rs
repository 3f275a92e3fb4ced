//! Scratch databases: where a desired-schema file is loaded to be introspected, and where a
//! plan is replayed to check it. Created on the dev server (`dev.rs`), never on the target;
//! always dropped afterwards, also on error and on Ctrl-C.

use anyhow::anyhow;
use planner::Ident;
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::Client;

use crate::connect;
use crate::dev::DevServer;

pub struct Scratch {
    name: Ident,
    /// The connection the scratch database was created from; used to drop it.
    admin: Client,
    pub client: Client,
}

impl Scratch {
    /// Create an empty scratch database on the dev server.
    pub async fn create(dev: &DevServer, purpose: &str) -> anyhow::Result<Scratch> {
        let name = Ident::new(format!(
            "tandem_scratch_{}_{}_{:08x}",
            purpose,
            std::process::id(),
            rand::random::<u32>()
        ))?;
        let admin = connect::connect(dev.admin()).await.map_err(|f| f.error)?;
        let create = format!("CREATE DATABASE {name} TEMPLATE template0");
        admin.batch_execute(&create).await.map_err(|e| {
            anyhow!(e).context(format!(
                "cannot create a scratch database on the dev server ({}); its role needs CREATEDB",
                dev.label
            ))
        })?;
        let client = connect::connect(&dev.config(name.as_str()))
            .await
            .map_err(|f| f.error)?;
        client.batch_execute(SCRATCH_SESSION).await?;
        Ok(Scratch {
            name,
            admin,
            client,
        })
    }

    /// Run a whole SQL file statement by statement, as psql does (so its own BEGIN/COMMIT
    /// and CONCURRENTLY work, and PostgreSQL does not pile up a whole schema's catalog
    /// invalidations in one transaction); errors carry the file's line and column.
    pub async fn load(&self, sql: &str, file: &str) -> anyhow::Result<()> {
        for span in planner::lint::statement_spans(sql) {
            let statement = &sql[span.clone()];
            if let Err(e) = self.client.batch_execute(statement).await {
                return Err(anyhow!(describe_sql_error(&e, sql, span.start, file)));
            }
        }
        Ok(())
    }

    /// Drop the scratch database (forcing out its own connections).
    pub async fn drop(self) {
        let Scratch {
            name,
            admin,
            client,
        } = self;
        drop(client);
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = admin.batch_execute(&sql).await {
            eprintln!(
                "warning: could not drop scratch database {}: {e}; drop it by hand",
                name.as_str()
            );
        }
    }
}

/// Scratch databases hold nothing worth a disk flush per commit.
const SCRATCH_SESSION: &str = "SET synchronous_commit = off";

/// `file:line:col: message` for an error PostgreSQL reported while running the statement
/// that starts at byte `offset` of the file `sql`.
pub fn describe_sql_error(
    e: &tokio_postgres::Error,
    sql: &str,
    offset: usize,
    file: &str,
) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("{file}: {e}");
    };
    let (line, col) = match db.position() {
        Some(ErrorPosition::Original(pos)) => {
            let chars_before = sql[..offset].chars().count();
            line_col(sql, chars_before + *pos as usize)
        }
        _ => (0, 0),
    };
    let mut out = if line > 0 {
        format!("{file}:{line}:{col}: {}", db.message())
    } else {
        format!("{file}: {}", db.message())
    };
    if let Some(hint) = db.hint() {
        out.push_str(&format!(" (hint: {hint})"));
    }
    out
}

/// 1-based line and column of the 1-based character position `pos`.
fn line_col(sql: &str, pos: usize) -> (usize, usize) {
    let (mut line, mut col) = (1, 1);
    for c in sql.chars().take(pos.saturating_sub(1)) {
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_become_lines() {
        assert_eq!(super::line_col("select 1;\nselec 2;", 11), (2, 1));
        assert_eq!(super::line_col("abc", 2), (1, 2));
    }
}
