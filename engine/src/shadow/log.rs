//! The key log of a [`CopyMethod::Log`](super::CopyMethod::Log) backfill.
//!
//! From dual-write until the forward trigger takes over, three statement triggers (one per
//! event, each with its transition tables) append the key of every row a statement wrote to
//! `tandem.m{id}_t{oid}_log`: one `INSERT ... SELECT` per statement, nothing per row, no
//! subtransaction, nothing that can fail on the new definition. The copy meanwhile fills a
//! shadow nobody else writes.
//!
//! Between the copy's chunks, the entries of keys the copy has not reached yet are dropped
//! ([`prune`]). After the copy, draining the log makes the shadow's rows for the logged keys
//! what the table holds now:
//! take a batch of entries, delete the shadow's rows for their keys, then, in a *later*
//! statement (a newer snapshot, taken after the delete has waited out any trigger write on
//! those rows), copy the table's current rows for them. Draining is idempotent and its order
//! does not matter, so a key logged twice, or logged and then written by the forward trigger,
//! comes out right. Each batch holds the copy lock, for the reason the copy's batches do in
//! the direct method: a DELETE's trigger waits for it, so a re-copied row is never one a
//! delete already missed.

use planner::ident::QualName;

use super::sql::{bare, cols};
use super::{log_function, log_table, log_triggers, TableSpec};

/// `k1, k2, ...`: the log's key columns.
fn key_columns(spec: &TableSpec) -> String {
    (1..=spec.key.len())
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn log_of(spec: &TableSpec) -> QualName {
    log_table(spec.migration, spec.table_oid)
}

/// The log table: a sequence number (the drain's order) and the original's key columns.
/// Autovacuum stays off (a worker would hold a lock the final `DROP` waits for); the log is
/// dropped when drained.
pub fn create_table(spec: &TableSpec) -> String {
    let keys: Vec<String> = spec
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("k{} {}", i + 1, c.sql_type))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {}) \
         WITH (autovacuum_enabled = false)",
        log_of(spec),
        keys.join(", ")
    )
}

/// The log triggers' function. An UPDATE logs its rows' keys before and after (once, when
/// the key did not change).
pub fn function(spec: &TableSpec) -> String {
    let log = log_of(spec);
    let k = key_columns(spec);
    let old = cols(&spec.key, "o");
    let new = cols(&spec.key, "n");
    super::trigger_function(
        &log_function(spec.migration, spec.table_oid),
        &format!(
            "BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {log} ({k}) SELECT {new} FROM tandem_new AS n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO {log} ({k}) SELECT {old} FROM tandem_old AS o;
  ELSE
    INSERT INTO {log} ({k}) SELECT {old} FROM tandem_old AS o UNION SELECT {new} FROM tandem_new AS n;
  END IF;
  RETURN NULL;
END"
        ),
    )
}

/// The tables the log triggers are on: the table, and every partition of a partitioned one
/// (a statement trigger fires only for the table the statement names: a write addressed to a
/// partition fires that partition's, one to the root the root's, with every row it routed).
fn logged(spec: &TableSpec) -> impl Iterator<Item = &QualName> {
    std::iter::once(&spec.table).chain(spec.partitions().iter().map(|p| &p.name))
}

/// Create the log triggers (in the transaction that records dual-write, so an interrupted
/// attempt leaves none).
pub fn create_triggers(spec: &TableSpec) -> Vec<String> {
    let f = log_function(spec.migration, spec.table_oid);
    let mut out = Vec::new();
    for ((name, event), table) in log_triggers(spec.migration)
        .into_iter()
        .flat_map(|t| logged(spec).map(move |table| (t.clone(), table)))
    {
        let referencing = match event {
            "insert" => "NEW TABLE AS tandem_new",
            "delete" => "OLD TABLE AS tandem_old",
            _ => "OLD TABLE AS tandem_old NEW TABLE AS tandem_new",
        };
        out.push(format!(
            "CREATE TRIGGER {name} AFTER {} ON {table} REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {f}()",
            event.to_uppercase(),
        ));
        out.push(super::fire_always(&table, &name));
    }
    out
}

/// Stop the log triggers. `ALTER TABLE ... DISABLE TRIGGER` takes the SHARE ROW EXCLUSIVE
/// lock `CREATE TRIGGER` takes (it waits for the writers in flight, not for readers);
/// dropping them would take ACCESS EXCLUSIVE, so they go at cutover, under the swap's lock.
pub fn disable_triggers(spec: &TableSpec) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in log_triggers(spec.migration) {
        for table in logged(spec) {
            out.push(format!("ALTER TABLE {table} DISABLE TRIGGER {name}"));
        }
    }
    out
}

/// Everything of the log: triggers, function, table (at cutover, or when a migration is
/// abandoned; the table and its partitions under the user's names).
pub fn drop_all(spec: &TableSpec) -> Vec<String> {
    let (m, oid) = (spec.migration, spec.table_oid);
    let mut out = Vec::new();
    for (name, _) in log_triggers(m) {
        for table in logged(spec) {
            out.push(format!("DROP TRIGGER IF EXISTS {name} ON {table}"));
        }
    }
    out.push(format!(
        "DROP FUNCTION IF EXISTS {}()",
        log_function(m, oid)
    ));
    out.push(format!("DROP TABLE IF EXISTS {}", log_table(m, oid)));
    out
}

/// Take (delete) the `$1` oldest entries above `$2`, the drain's watermark (the highest
/// sequence number it has taken). Returns each entry's sequence number and its key as text.
///
/// From the watermark, not from the log's start: the entries taken before are dead until a
/// vacuum removes them (autovacuum is off), and an index scan from the start walks every one
/// of them, so each take would cost more than the last (12 ms more per 2 M taken entries,
/// measured). An entry whose transaction committed after the watermark passed its number is
/// left behind: the drain takes from 0 again before it calls the log drained, and the
/// switch's last drain reads the whole log.
pub fn take(spec: &TableSpec) -> String {
    let log = log_of(spec);
    let texts: Vec<String> = (1..=spec.key.len())
        .map(|i| format!("k{i}::text"))
        .collect();
    format!(
        "DELETE FROM {log} WHERE seq > $2::int8 \
           AND seq <= (SELECT max(seq) FROM (SELECT seq FROM {log} WHERE seq > $2::int8 ORDER BY seq LIMIT $1::int8) AS s) \
         RETURNING seq, ARRAY[{}]",
        texts.join(", ")
    )
}

/// The highest sequence number the log has handed out (0 before the first entry), of the
/// log named `$1`: the drain's backlog is this less its watermark. Reads the sequence, not
/// the log.
pub const HEAD: &str = "SELECT coalesce(pg_catalog.pg_sequence_last_value(\
     pg_catalog.pg_get_serial_sequence($1, 'seq')::regclass), 0)";

/// Vacuum the log (in the copy's and the drain's loops, when the entries they deleted
/// outnumber the live ones: [`DEAD`]). Without it, the prune's scan of the log between the
/// copy's chunks reads every entry ever logged. `TRUNCATE false`: truncating takes an ACCESS
/// EXCLUSIVE lock that the writers' log inserts would queue behind.
pub fn vacuum(spec: &TableSpec) -> String {
    format!("VACUUM (TRUNCATE false) {}", log_of(spec))
}

/// The live and dead entries of the log named `$1`, as the statistics count them.
pub const DEAD: &str = "SELECT n_live_tup, n_dead_tup FROM pg_catalog.pg_stat_user_tables \
     WHERE relid = pg_catalog.to_regclass($1)";

/// Between the copy's chunks: drop the entries of keys the copy has not reached yet (above
/// `$1`, the last key copied, and not above `$2`, its bound). Their change committed before
/// this statement, so before the snapshot of the chunk that will copy them: the copy brings
/// it. The log keeps only what the copy has passed, and the drain after the copy has less to
/// do.
pub fn prune(spec: &TableSpec) -> String {
    let k = format!("({})", key_columns(spec));
    format!(
        "DELETE FROM {} WHERE {k} > {} AND {k} <= {}",
        log_of(spec),
        super::sql::key_param(&spec.key, 1),
        super::sql::key_param(&spec.key, 2),
    )
}

/// `(SELECT * FROM unnest($1::text[]::type1[], ...))`: the taken keys, one text array per
/// key column, typed as the original's key.
fn keys_param(spec: &TableSpec) -> String {
    let arrays: Vec<String> = spec
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::text[]::{}[]", i + 1, c.sql_type))
        .collect();
    format!("(SELECT * FROM unnest({}))", arrays.join(", "))
}

/// Delete the shadow's rows of the taken keys (`$1..$n`).
pub fn unlink(spec: &TableSpec) -> String {
    unlink_keys(spec, &keys_param(spec))
}

/// Copy the table's current rows of the taken keys (`$1..$n`). Behind the forward trigger
/// (`behind_trigger`), a row it wrote meanwhile is at least as new: the copy skips it (`ON
/// CONFLICT DO NOTHING`). Before the switch only the drain writes the shadow, and its batch
/// has just deleted the keys' rows: a plain insert, which costs less than a speculative one
/// (5,000 keys of pgbench scale 100, quiet: 135–165 ms against 167–200 ms).
pub fn relink(spec: &TableSpec, behind_trigger: bool) -> String {
    relink_keys(spec, &keys_param(spec), behind_trigger)
}

/// Delete the shadow's rows of the keys `keys` (a subquery of the original's key types).
fn unlink_keys(spec: &TableSpec, keys: &str) -> String {
    format!(
        "DELETE FROM {} AS t WHERE ({}) IN {keys}",
        spec.shadow,
        cols(&spec.new_key, "t"),
    )
}

/// Copy the table's rows of the keys `keys` into the shadow, skipping a key it holds when
/// `skip_held`.
fn relink_keys(spec: &TableSpec, keys: &str, skip_held: bool) -> String {
    let target: Vec<String> = spec
        .forward
        .iter()
        .map(|m| m.column.name.to_string())
        .collect();
    let exprs: Vec<String> = spec.forward.iter().map(|m| m.expr.clone()).collect();
    let insert = format!(
        "INSERT INTO {} AS t ({}) SELECT {} FROM {} AS o WHERE ({}) IN {keys}",
        spec.shadow,
        target.join(", "),
        exprs.join(", "),
        spec.table,
        cols(&spec.key, "o"),
    );
    match skip_held {
        true => format!("{insert} ON CONFLICT ({}) DO NOTHING", bare(&spec.new_key)),
        false => insert,
    }
}

/// Whether the forward trigger has taken over from the log triggers (`$1`: the table's oid,
/// `$2`: the forward trigger's name).
pub const SWITCHED: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1::oid AND tgname = $2)";

/// `(SELECT k1, ... FROM log)`: every key the log holds.
fn logged_keys(spec: &TableSpec) -> String {
    format!("(SELECT {} FROM {})", key_columns(spec), log_of(spec))
}

/// The last drain, in the transaction that hands the shadow to the forward trigger (whose
/// `CREATE TRIGGER` has waited out every writer and holds the next ones): delete the shadow's
/// rows of every logged key, copy the table's rows of them, drop the log. No write lands
/// between the last drain and the forward trigger, so the trigger never meets a shadow row
/// the log still has to correct (one holding a unique value its row has since given up).
pub fn drain_and_drop(spec: &TableSpec) -> Vec<String> {
    let keys = logged_keys(spec);
    let mut out = super::writer::around(
        spec,
        vec![unlink_keys(spec, &keys), relink_keys(spec, &keys, true)],
    );
    out.push(format!("DROP TABLE {}", log_of(spec)));
    out
}

/// Before copying the taken keys (`$1..$n`) again: delete the shadow rows that hold one of
/// their rows' values of the unique columns `unique` (shadow columns) under another key,
/// where the table's row of that key no longer holds it. Such a row is stale (its row gave the
/// value up after it was copied), so its key is still in the log, untaken, and a later batch
/// copies it again; without this, the copy of the row that took the value over would fail
/// on it. A shadow row whose table row still holds the value is a true duplicate and stays,
/// to be reported. `None` for the key's own index, or when a unique column is not one the
/// copy writes.
pub fn evict(spec: &TableSpec, unique: &[planner::ident::Ident]) -> Option<String> {
    evict_for(
        spec,
        unique,
        &format!(
            "{} AS o WHERE ({}) IN {}",
            spec.table,
            cols(&spec.key, "o"),
            keys_param(spec)
        ),
    )
}

/// [`evict`] for the row a forward trigger is about to write (`NEW`), when it took over from
/// a log that was not drained (`executor/drain.rs`): a stale shadow row, whose key the log
/// still holds, may hold the unique value the row now has.
pub fn evict_new(spec: &TableSpec, unique: &[planner::ident::Ident]) -> Option<String> {
    evict_for(spec, unique, "(SELECT NEW.*) AS o")
}

/// Whether the unique columns `unique` are the shadow's key's (a stale row cannot hold a
/// value of them under another key: nothing to evict).
pub fn is_key(spec: &TableSpec, unique: &[planner::ident::Ident]) -> bool {
    unique.len() == spec.new_key.len() && spec.new_key.iter().all(|k| unique.contains(&k.name))
}

/// The eviction of stale shadow rows holding the `unique` values of the rows `source` (a
/// `FROM` item, the table's rows as `o`) gives.
fn evict_for(spec: &TableSpec, unique: &[planner::ident::Ident], source: &str) -> Option<String> {
    // The key's own index: the unlink already clears its rows.
    if is_key(spec, unique) {
        return None;
    }
    let expr = |name: &planner::ident::Ident| {
        spec.forward
            .iter()
            .find(|m| &m.column.name == name)
            .map(|m| m.expr.clone())
    };
    let values: Vec<String> = unique
        .iter()
        .enumerate()
        .map(|(i, u)| expr(u).map(|e| format!("{e} AS u{}", i + 1)))
        .collect::<Option<_>>()?;
    let new_key: Vec<String> = spec
        .new_key
        .iter()
        .enumerate()
        .map(|(i, k)| expr(&k.name).map(|e| format!("{e} AS k{}", i + 1)))
        .collect::<Option<_>>()?;
    let shadow_values: Vec<String> = unique.iter().map(|u| format!("t.{u}")).collect();
    let us: Vec<String> = (1..=unique.len()).map(|i| format!("n.u{i}")).collect();
    let cs: Vec<String> = (1..=unique.len()).map(|i| format!("c.u{i}")).collect();
    let ks: Vec<String> = (1..=spec.new_key.len())
        .map(|i| format!("n.k{i}"))
        .collect();
    Some(format!(
        "DELETE FROM {shadow} AS t
  USING (SELECT {values}, {new_key} FROM {source}) AS n
  WHERE ({tvals}) = ({us}) AND ({tkey}) <> ({ks})
    AND NOT EXISTS (SELECT 1 FROM (SELECT {values} FROM {table} AS o WHERE ({okey}) = ({tkey})) AS c
                     WHERE ({cs}) = ({tvals}))",
        shadow = spec.shadow,
        values = values.join(", "),
        new_key = new_key.join(", "),
        table = spec.table,
        okey = cols(&spec.key, "o"),
        tvals = shadow_values.join(", "),
        us = us.join(", "),
        tkey = cols(&spec.new_key, "t"),
        ks = ks.join(", "),
        cs = cs.join(", "),
    ))
}
