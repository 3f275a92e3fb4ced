//! Who writes the rows: the table's owner, never tandem's role.
//!
//! The new table's defaults, CHECK constraints, domains and index expressions, and the old
//! table's in the rollback window, were written by the table's owner, and PostgreSQL runs
//! them as whoever writes a row. tandem's role is often a superuser, or holds rights over
//! many tables; a table owner who could have their functions run with those rights could
//! take them (SECURITY.md). So where tandem's role does not own the table ([`TableSpec::writer`]):
//!
//! - the shadow (and each shadow partition) belongs to the owner from prepare on: its index
//!   builds and `ANALYZE` run as the owner (PostgreSQL runs those as the table's owner);
//! - the executor's statements that write the shadow (the copy, the drain, a verification's
//!   re-copy) run under `SET LOCAL ROLE` the owner ([`act`], then [`BACK`] before tandem's
//!   own bookkeeping), with `row_security = off`, so that a policy that would hide rows from
//!   the owner fails the statement instead of hiding rows from the copy;
//! - the trigger functions that write the other table, and the log triggers' function, are
//!   owned by the owner ([`hand_over`]; they are `SECURITY DEFINER`, so they run as the
//!   owner). They record a write the other table rejects through [`recorder`], a function
//!   of tandem's that the owner may call and that records for this migration and table
//!   only, and append to the migration's log, which the owner may insert into and read.
//!
//! The owner gets `USAGE` on schema tandem, to reach those two, and nothing else of it.
//! Prepare refuses when tandem's role cannot act as the owner (it must be a member of the
//! owner's role that inherits its rights, as `ALTER TABLE ... OWNER` at cutover always
//! needed), and when the owner may create objects in schema tandem.

use planner::ident::{Literal, QualName};

use super::TableSpec;

/// Act as the writer in this transaction; None when tandem's role owns the table.
pub fn act(spec: &TableSpec) -> Option<String> {
    spec.writer
        .as_ref()
        .map(|w| format!("SET LOCAL ROLE {w}; SET LOCAL row_security = off"))
}

/// Back to tandem's role, for its bookkeeping.
pub const BACK: &str = "RESET ROLE; RESET row_security";

/// `statements` run as the writer: [`act`] before them, [`BACK`] after.
pub fn around(spec: &TableSpec, statements: Vec<String>) -> Vec<String> {
    match act(spec) {
        None => statements,
        Some(act) => std::iter::once(act)
            .chain(statements)
            .chain(std::iter::once(BACK.to_string()))
            .collect(),
    }
}

/// Give the trigger function `function` (no arguments) to the writer, in the transaction
/// that creates it. `ALTER FUNCTION ... OWNER` needs the new owner to have CREATE on the
/// function's schema unless tandem's role is a superuser: granted and revoked in the same
/// transaction, so no other session ever sees it (prepare refuses an owner that has it).
pub fn hand_over(spec: &TableSpec, function: &QualName) -> Vec<String> {
    let Some(w) = &spec.writer else {
        return Vec::new();
    };
    vec![
        format!("GRANT CREATE ON SCHEMA tandem TO {w}"),
        format!("ALTER FUNCTION {function}() OWNER TO {w}"),
        format!("REVOKE CREATE ON SCHEMA tandem FROM {w}"),
    ]
}

/// tandem's function that records a write the other table rejected, for the trigger
/// functions the writer owns: `(direction, key, sqlstate, message)`.
pub fn recorder(m: i64, oid: u32) -> QualName {
    QualName::new("tandem", &format!("m{m}_t{oid}_diverged")).expect("short name")
}

/// `DROP FUNCTION` of the [`recorder`] (by its signature).
pub fn drop_recorder(m: i64, oid: u32) -> String {
    format!(
        "DROP FUNCTION IF EXISTS {}(text, text, text, text)",
        recorder(m, oid)
    )
}

/// The [`recorder`], callable by the writer only, and the writer's `USAGE` on schema
/// tandem (to reach it and the log). Nothing without a writer.
pub fn recorder_function(spec: &TableSpec) -> Vec<String> {
    let Some(w) = &spec.writer else {
        return Vec::new();
    };
    let f = recorder(spec.migration, spec.table_oid);
    let body = format!(
        "INSERT INTO tandem.divergence (migration_id, direction, table_name, key, sqlstate, message)
  VALUES ({}, $1, {}, $2, $3, $4)",
        spec.migration,
        Literal(&String::from(spec.table.clone()))
    );
    let tag = super::dollar_tag(&body);
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION {f}(text, text, text, text) RETURNS void LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS {tag}
{body}
{tag}"
        ),
        format!("REVOKE ALL ON FUNCTION {f}(text, text, text, text) FROM PUBLIC"),
        format!("GRANT EXECUTE ON FUNCTION {f}(text, text, text, text) TO {w}"),
        format!("GRANT USAGE ON SCHEMA tandem TO {w}"),
    ]
}

/// The writer's rights on the migration's log: its triggers' function appends to it, and
/// the last drain (as the writer) reads it.
pub fn log_grants(spec: &TableSpec, log: &QualName) -> Vec<String> {
    match &spec.writer {
        None => Vec::new(),
        Some(w) => vec![format!("GRANT SELECT, INSERT ON {log} TO {w}")],
    }
}

/// The shadow and its partitions to the writer, at the end of prepare.
pub fn own_shadow(spec: &TableSpec) -> Vec<String> {
    let Some(w) = &spec.writer else {
        return Vec::new();
    };
    std::iter::once(&spec.shadow)
        .chain(spec.partitions().iter().map(|p| &p.shadow))
        .map(|t| format!("ALTER TABLE {t} OWNER TO {w}"))
        .collect()
}
