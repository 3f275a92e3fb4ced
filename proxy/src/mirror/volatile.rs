//! The catalog's word on what a statement calls. A function or operator marked VOLATILE, in
//! any schema (an application's own function as much as `random()`), may act on the database
//! or answer differently the second time: a statement that calls one is never mirrored. The
//! answer comes from `pg_proc` (and the functions behind `pg_operator`) for every name the
//! parse tree calls, not from a list of names; an unqualified name counts as volatile when a
//! function of that name is volatile in any schema, since the client's search_path is not
//! known here. A view the statement reads (and every view under it) counts with what its
//! definition calls, from `pg_depend` (`volatile_in_views.sql`).

use tokio_postgres::Client;

use super::classify::Calls;

const FIRST_VOLATILE: &str = concat!(
    "
SELECT f.name FROM unnest($1::text[], $2::text[]) AS f (schema, name)
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proname = f.name AND (f.schema = '' OR n.nspname = f.schema)
                  AND p.provolatile = 'v')
UNION ALL
SELECT 'operator ' || o.name FROM unnest($3::text[], $4::text[]) AS o (schema, name)
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_operator op
                 JOIN pg_catalog.pg_namespace n ON n.oid = op.oprnamespace
                 JOIN pg_catalog.pg_proc p ON p.oid = op.oprcode
                WHERE op.oprname = o.name AND (o.schema = '' OR n.nspname = o.schema)
                  AND p.provolatile = 'v')
UNION ALL
(",
    include_str!("sql/volatile_in_views.sql"),
    ")
LIMIT 1"
);

/// The first function (or `operator NAME`) of `calls` that is volatile, if any.
pub(crate) async fn first_volatile(
    client: &Client,
    calls: &Calls,
) -> Result<Option<String>, tokio_postgres::Error> {
    if calls.functions.is_empty() && calls.operators.is_empty() && calls.relations.is_empty() {
        return Ok(None);
    }
    let split =
        |list: &[(String, String)]| -> (Vec<String>, Vec<String>) { list.iter().cloned().unzip() };
    let (fs, fnames) = split(&calls.functions);
    let (os, onames) = split(&calls.operators);
    let (rs, rnames) = split(&calls.relations);
    Ok(client
        .query_opt(FIRST_VOLATILE, &[&fs, &fnames, &os, &onames, &rs, &rnames])
        .await?
        .map(|r| r.get(0)))
}
