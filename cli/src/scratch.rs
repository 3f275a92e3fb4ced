//! Scratch databases: where a desired-schema file is loaded to be introspected, and where a
//! plan is replayed to check it. Created on the dev server (`dev.rs`), never on the target;
//! always dropped afterwards, also on error and on Ctrl-C. A process killed before it could
//! drop them leaves them behind, with its name in their comment: the next tandem process to
//! use that dev server drops those of processes that are gone ([`sweep`]).

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
        let owner = format!("{OWNER_PREFIX}{}", devdb::owner::this_process());
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {name} IS {}",
                planner::ident::Literal(&owner)
            ))
            .await?;
        let client = connect::connect(&dev.config(name.as_str()))
            .await
            .map_err(|f| f.error)?;
        client.batch_execute(SCRATCH_SESSION).await?;
        // Tests kill the process here, to leave a scratch database (and a container) behind.
        engine::executor::failpoint("scratch").await;
        Ok(Scratch {
            name,
            admin,
            client,
        })
    }

    /// Run a whole SQL file as psql would (its own BEGIN/COMMIT and CONCURRENTLY work);
    /// errors carry the file's line and column.
    ///
    /// Statements go to the server in groups of up to [`BATCH`] per round trip (one
    /// implicit transaction each: small enough that catalog invalidations do not pile up),
    /// except those that must run alone: transaction control, `CONCURRENTLY`, `VACUUM`,
    /// `ALTER TYPE .. ADD VALUE` (whose value the same transaction may not use) and
    /// anything tandem cannot classify. A group that fails is rolled back by the server and
    /// replayed one statement at a time, so the error names the statement.
    pub async fn load(&self, sql: &str, file: &str) -> anyhow::Result<()> {
        let spans = planner::lint::parsed_statement_spans(sql)
            .unwrap_or_else(|| planner::lint::statement_spans(sql));
        self.load_spans(sql, spans, file).await
    }

    /// [`Scratch::load`] of the statements of `sql` at `spans` (as
    /// [`planner::lint::statement_spans`] finds them).
    pub async fn load_spans(
        &self,
        sql: &str,
        spans: Vec<std::ops::Range<usize>>,
        file: &str,
    ) -> anyhow::Result<()> {
        let mut group: Vec<std::ops::Range<usize>> = Vec::new();
        for span in spans {
            if batchable(&sql[span.clone()]) && group.len() < BATCH {
                group.push(span);
                continue;
            }
            self.run_group(sql, file, &group).await?;
            group.clear();
            if batchable(&sql[span.clone()]) {
                group.push(span);
            } else {
                self.run_group(sql, file, std::slice::from_ref(&span))
                    .await?;
            }
        }
        self.run_group(sql, file, &group).await
    }

    async fn run_group(
        &self,
        sql: &str,
        file: &str,
        group: &[std::ops::Range<usize>],
    ) -> anyhow::Result<()> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(());
        };
        if group.len() > 1
            && self
                .client
                .batch_execute(&sql[first.start..last.end])
                .await
                .is_ok()
        {
            return Ok(());
        }
        for span in group {
            if let Err(e) = self.client.batch_execute(&sql[span.clone()]).await {
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

/// The comment of a scratch database starts with this, then names the process that made it.
const OWNER_PREFIX: &str = "tandem scratch database of ";

/// Drop the scratch databases on the dev server whose process is gone ([`devdb::owner::is_gone`]).
/// Best effort, logged; returns their names.
pub async fn sweep(dev_admin: &pgtls::Endpoint) -> Vec<String> {
    let Ok(admin) = connect::connect(dev_admin).await else {
        return Vec::new();
    };
    let rows = admin
        .query(
            "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
              WHERE datname LIKE 'tandem\\_scratch\\_%' AND shobj_description(oid, 'pg_database') LIKE $1",
            &[&format!("{OWNER_PREFIX}%")],
        )
        .await
        .unwrap_or_default();
    let mut dropped = Vec::new();
    for row in rows {
        let (name, comment): (String, String) = (row.get(0), row.get(1));
        let owner = comment.trim_start_matches(OWNER_PREFIX);
        let Ok(ident) = Ident::new(name.clone()) else {
            continue;
        };
        if !devdb::owner::is_gone(owner) {
            continue;
        }
        match admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
            .await
        {
            Ok(()) => {
                tracing::info!(
                    "dropped scratch database {name}, left by a process that is gone ({owner})"
                );
                dropped.push(name);
            }
            Err(e) => tracing::warn!("cannot drop the leftover scratch database {name}: {e}"),
        }
    }
    dropped
}

/// Statements per round trip when loading a file.
const BATCH: usize = 200;

/// Whether a statement may share an implicit transaction with its neighbours.
fn batchable(statement: &str) -> bool {
    let code: String = statement
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let upper = code.trim_start().to_ascii_uppercase();
    let alone = [
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "PREPARE",
        "VACUUM",
        "CLUSTER",
        "REINDEX",
        "CHECKPOINT",
        "LOCK",
        "DO",
        "CALL",
        "CREATE DATABASE",
        "DROP DATABASE",
        "ALTER SYSTEM",
        "CREATE TABLESPACE",
        "COPY",
    ];
    let keyword = alone.iter().any(|k| {
        upper.starts_with(k)
            && upper[k.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
    });
    let add_value = upper.starts_with("ALTER TYPE") && upper.contains("ADD VALUE");
    !(keyword || add_value || upper.contains("CONCURRENTLY") || upper.starts_with("/*"))
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
mod batch_tests {
    use super::batchable;

    #[test]
    fn what_must_run_alone() {
        assert!(batchable("CREATE TABLE t (id int)"));
        assert!(batchable("CREATE INDEX i ON t (id)"));
        assert!(batchable("ENDPOINTS_NOT_A_KEYWORD"));
        assert!(batchable("-- a comment\nCREATE TABLE t (id int)"));
        for alone in [
            "BEGIN",
            "commit",
            "CREATE INDEX CONCURRENTLY i ON t (id)",
            "ALTER TYPE mood ADD VALUE 'meh'",
            "VACUUM t",
            "DO $$ BEGIN END $$",
        ] {
            assert!(!batchable(alone), "{alone}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_become_lines() {
        assert_eq!(super::line_col("select 1;\nselec 2;", 11), (2, 1));
        assert_eq!(super::line_col("abc", 2), (1, 2));
    }
}
