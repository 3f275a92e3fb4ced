//! Catalog introspection: reads every user object of a live database into the schema model.
//!
//! Everything is read inside one `REPEATABLE READ READ ONLY` transaction, so the result is
//! one consistent snapshot and introspection can never write. Each object kind is read by one
//! query (in `sql/`, next to this file) that returns that kind for the whole database at once;
//! the rows are then joined by oid in memory. The queries run pipelined on the one connection.
//!
//! Definitions come from the server's own deparsers (`format_type`, `pg_get_expr`,
//! `pg_get_constraintdef`, ...) with only `pg_catalog` on the search path, so user names come
//! out schema-qualified and two introspected schemas compare as plain strings.

mod error;
mod objects;
mod relations;
mod row;
pub(crate) mod table;

use planner::model::Schema;
use planner::plan::DatabaseIdentity;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};

pub use error::CatalogError;

/// Oldest server the queries support (`pg_trigger.tgparentid` is new in 13).
const MIN_SERVER_VERSION: u32 = 130_000;

/// One catalog query: the file it lives in, and what it reads (for error messages).
pub(crate) struct Query {
    pub(crate) what: &'static str,
    pub(crate) sql: &'static str,
}

macro_rules! query {
    ($name:ident, $file:literal, $what:literal) => {
        pub(crate) const $name: crate::catalog::Query = crate::catalog::Query {
            what: $what,
            sql: include_str!(concat!("sql/", $file)),
        };
    };
}
pub(crate) use query;

query!(IDENTITY, "identity.sql", "the database identity");
query!(SERVER_VERSION, "server_version.sql", "the server version");
query!(GUARD, "guard.sql", "the transaction state");
query!(SESSION, "session.sql", "the session settings");

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Read every user object of the database `client` is connected to.
///
/// Excluded: the system schemas (`pg_catalog`, `information_schema`, `pg_toast`, temporary
/// schemas), tandem's own schema `tandem`, and objects that belong to an extension. The
/// connection must not be inside a transaction (that is refused with
/// [`CatalogError::InsideTransaction`], and leaves the caller's transaction aborted); its
/// session settings are left unchanged.
pub async fn introspect(client: &Client) -> Result<Schema, CatalogError> {
    if let Err(err) = client.batch_execute(BEGIN).await {
        // Inside the caller's transaction, after it ran a statement, BEGIN with an isolation
        // level fails (and aborts that transaction, which can then only be rolled back).
        if err.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION) {
            return Err(CatalogError::InsideTransaction);
        }
        return Err(CatalogError::query("a snapshot of the catalog", err));
    }
    // Until the guard has proved the transaction is ours, leave it alone: when the caller had
    // just opened a transaction, BEGIN only warned, and ending it would end theirs.
    let guard = client
        .query_one(GUARD.sql, &[])
        .await
        .map_err(|e| CatalogError::query(GUARD.what, e))?;
    let guard = row::Fields::new(&GUARD, &guard);
    if !guard.get::<bool>("ours")? {
        return Err(CatalogError::InsideTransaction);
    }
    let version = guard.get::<i32>("server_version_num")?;

    let read = async {
        let version = u32::try_from(version).unwrap_or(0);
        if version < MIN_SERVER_VERSION {
            return Err(CatalogError::UnsupportedServer { version });
        }
        client
            .batch_execute(SESSION.sql)
            .await
            .map_err(|e| CatalogError::query(SESSION.what, e))?;
        read_schema(client).await
    };
    match read.await {
        Ok(schema) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| CatalogError::query("a snapshot of the catalog", e))?;
            Ok(schema)
        }
        Err(err) => {
            // The error being returned says what went wrong; a failed ROLLBACK adds nothing
            // (the server rolls back by itself when the connection is gone).
            let _ = client.batch_execute("ROLLBACK").await;
            Err(err)
        }
    }
}

/// The cluster's system identifier, the database name and the server version: what a plan
/// records so that it is never applied to a different database.
pub async fn database_identity(client: &Client) -> Result<DatabaseIdentity, CatalogError> {
    let row = client
        .query_one(IDENTITY.sql, &[])
        .await
        .map_err(|e| CatalogError::query(IDENTITY.what, e))?;
    let row = row::Fields::new(&IDENTITY, &row);
    Ok(DatabaseIdentity {
        system_identifier: row.get("system_identifier")?,
        database: row.get("database")?,
        server_version_num: row.get_u32("server_version_num")?,
    })
}

/// `server_version_num`, e.g. 150018 for 15.18.
pub async fn server_version_num(client: &Client) -> Result<u32, CatalogError> {
    let row = client
        .query_one(SERVER_VERSION.sql, &[])
        .await
        .map_err(|e| CatalogError::query(SERVER_VERSION.what, e))?;
    row::Fields::new(&SERVER_VERSION, &row).get_u32("server_version_num")
}

/// Run one catalog query.
async fn fetch(
    client: &Client,
    query: &'static Query,
) -> Result<(&'static Query, Vec<Row>), CatalogError> {
    let rows = client
        .query(query.sql, &[])
        .await
        .map_err(|e| CatalogError::query(query.what, e))?;
    Ok((query, rows))
}

/// All queries, pipelined on the one connection, then assembled into the model.
async fn read_schema(client: &Client) -> Result<Schema, CatalogError> {
    use objects as o;
    use relations as r;
    let (
        namespaces,
        extensions,
        enums,
        domains,
        domain_checks,
        composites,
        sequences,
        functions,
        tables,
        columns,
        constraints,
        indexes,
        triggers,
        rules,
        policies,
        views,
        view_dependencies,
    ) = tokio::try_join!(
        fetch(client, &o::NAMESPACES),
        fetch(client, &o::EXTENSIONS),
        fetch(client, &o::ENUMS),
        fetch(client, &o::DOMAINS),
        fetch(client, &o::DOMAIN_CHECKS),
        fetch(client, &o::COMPOSITES),
        fetch(client, &o::SEQUENCES),
        fetch(client, &o::FUNCTIONS),
        fetch(client, &r::TABLES),
        fetch(client, &r::COLUMNS),
        fetch(client, &r::CONSTRAINTS),
        fetch(client, &r::INDEXES),
        fetch(client, &r::TRIGGERS),
        fetch(client, &r::RULES),
        fetch(client, &r::POLICIES),
        fetch(client, &r::VIEWS),
        fetch(client, &r::VIEW_DEPENDENCIES),
    )?;

    let mut schema = Schema {
        schemas: o::namespaces(&namespaces)?,
        extensions: o::extensions(&extensions)?,
        enums: o::enums(&enums)?,
        domains: o::domains(&domains, &domain_checks)?,
        composites: o::composites(&composites)?,
        sequences: o::sequences(&sequences)?,
        functions: o::functions(&functions)?,
        ..Schema::default()
    };
    let mut relations = r::Relations::default();
    relations.tables(&tables)?;
    relations.views(&views)?;
    relations.columns(&columns)?;
    relations.constraints(&constraints)?;
    relations.indexes(&indexes)?;
    relations.triggers(&triggers)?;
    relations.rules(&rules)?;
    relations.policies(&policies)?;
    relations.view_dependencies(&view_dependencies)?;
    relations.finish(&mut schema);
    Ok(schema)
}
