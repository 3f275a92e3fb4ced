//! The SQL that moves rows between a table and its shadow: trigger functions, backfill
//! batches, verification checksums. Generated from a [`TableSpec`]; every name is an
//! [`Ident`]/[`QualName`] (always quoted) and every value travels as a bind parameter
//! (key values as `text[]`, cast to the key's types on the server).

use planner::ident::{Literal, QualName};

use super::guard::Guard;
use super::{Column, Mapped, TableSpec};

/// Which way rows flow: original -> shadow before cutover, new -> old in the rollback window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
        }
    }
}

/// The source and target of one direction, under the names they have while it runs.
pub struct Flow<'a> {
    pub source: &'a QualName,
    pub source_key: &'a [Column],
    pub target: &'a QualName,
    pub target_key: &'a [Column],
    pub mapping: &'a [Mapped],
}

impl TableSpec {
    pub fn flow(&self, direction: Direction) -> Flow<'_> {
        match direction {
            Direction::Forward => Flow {
                source: &self.table,
                source_key: &self.key,
                target: &self.shadow,
                target_key: &self.new_key,
                mapping: &self.forward,
            },
            Direction::Reverse => Flow {
                source: &self.table,
                source_key: &self.new_key,
                target: &self.old,
                target_key: &self.key,
                mapping: &self.reverse,
            },
        }
    }
}

pub(super) fn cols(cols: &[Column], alias: &str) -> String {
    cols.iter()
        .map(|c| format!("{alias}.{}", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn bare(cols: &[Column]) -> String {
    cols.iter()
        .map(|c| c.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(($n::text[])[1]::type1, ...)`: key values sent as text, typed on the server.
pub(super) fn key_param(cols: &[Column], n: usize) -> String {
    let parts: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("(${n}::text[])[{}]::{}", i + 1, c.sql_type))
        .collect();
    format!("({})", parts.join(", "))
}

/// `(alias.k1, ...)::text[]` spelled as an array of the key's text forms.
pub fn key_text(cols: &[Column], alias: &str) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| format!("{alias}.{}::text", c.name))
        .collect();
    format!("ARRAY[{}]", parts.join(", "))
}

/// The key range predicate on `alias`: `> $lo` (when `lower`) and `<= $hi`.
pub fn range(cols: &[Column], alias: &str, lower: bool) -> String {
    let k = format!("({})", self::cols(cols, alias));
    if lower {
        format!(
            "{k} > {} AND {k} <= {}",
            key_param(cols, 1),
            key_param(cols, 2)
        )
    } else {
        format!("$1::text[] IS NULL AND {k} <= {}", key_param(cols, 2))
    }
}

/// `ORDER BY` on the key.
fn order(cols: &[Column], alias: &str, desc: bool) -> String {
    cols.iter()
        .map(|c| format!("{alias}.{}{}", c.name, if desc { " DESC" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trigger function that applies every row change on the source to the target.
///
/// Runs as its owner (tandem's role) with a fixed `search_path`, so applications need no
/// rights on the shadow or on schema tandem. A write the target's definition rejects (a data
/// exception or a constraint violation) does not fail the application's transaction: it is
/// recorded in `tandem.divergence`, which fails verification (forward) or blocks a rollback
/// (reverse) with the key. The spec's guard says whether that takes a test before the write
/// or an `EXCEPTION` block (a subtransaction per row).
///
/// `evict` (forward only): statements that run before the write, deleting stale shadow rows
/// that hold the row's unique values (`log::evict_new`), for a forward trigger that took over
/// from a log not yet drained.
pub fn trigger_function(
    spec: &TableSpec,
    direction: Direction,
    function: &QualName,
    evict: &[String],
) -> String {
    let f = spec.flow(direction);
    let src_old: Vec<String> = f
        .source_key
        .iter()
        .map(|c| format!("OLD.{}", c.name))
        .collect();
    let src_new: Vec<String> = f
        .source_key
        .iter()
        .map(|c| format!("NEW.{}", c.name))
        .collect();
    let target_cols: Vec<String> = f
        .mapping
        .iter()
        .map(|m| m.column.name.to_string())
        .collect();
    let exprs: Vec<String> = f.mapping.iter().map(|m| m.expr.clone()).collect();
    let key_names: Vec<String> = f.target_key.iter().map(|c| c.name.to_string()).collect();
    let updates: Vec<String> = f
        .mapping
        .iter()
        .filter(|m| !f.target_key.iter().any(|k| k.name == m.column.name))
        .map(|m| format!("{0} = EXCLUDED.{0}", m.column.name))
        .collect();
    let on_conflict = if updates.is_empty() {
        format!("ON CONFLICT ({}) DO NOTHING", key_names.join(", "))
    } else {
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            key_names.join(", "),
            updates.join(", ")
        )
    };
    let table = Literal(&String::from(spec.table.clone())).to_string();
    let write = match direction {
        // Before cutover the backfill writes the shadow too: an upsert on the key settles
        // every race between the two.
        Direction::Forward => format!(
            "    INSERT INTO {target} AS t ({tcols}) SELECT {exprs} FROM (SELECT NEW.*) AS o\n    {on_conflict};",
            target = f.target,
            tcols = target_cols.join(", "),
            exprs = exprs.join(", "),
        ),
        // In the rollback window only this trigger writes the old table. Update first, so an
        // old column the change dropped (NOT NULL, no default) only matters for new rows.
        Direction::Reverse => {
            let sets: Vec<String> = f
                .mapping
                .iter()
                .map(|m| format!("{} = s.{}", m.column.name, m.column.name))
                .collect();
            format!(
                "    UPDATE {target} AS t SET {sets} FROM (SELECT {named} FROM (SELECT NEW.*) AS o) AS s\n     WHERE ({tkeys}) = ({newkeys});\n    IF NOT FOUND THEN\n      INSERT INTO {target} AS t ({tcols}) SELECT {exprs} FROM (SELECT NEW.*) AS o;\n    END IF;",
                target = f.target,
                sets = sets.join(", "),
                named = f.mapping.iter().map(|m| format!("{} AS {}", m.expr, m.column.name)).collect::<Vec<_>>().join(", "),
                tkeys = cols(f.target_key, "t"),
                newkeys = src_new.join(", "),
                tcols = target_cols.join(", "),
                exprs = exprs.join(", "),
            )
        }
    };
    let guard = match direction {
        Direction::Forward => &spec.forward_guard,
        Direction::Reverse => &spec.reverse_guard,
    };
    let record = |state: &str, message: &str| {
        let key = format!(
            "CASE WHEN TG_OP = 'DELETE' THEN ROW({})::text ELSE ROW({})::text END",
            src_old.join(", "),
            src_new.join(", "),
        );
        let dir = direction.as_str();
        match &spec.writer {
            // The function is the writer's, who may not write tandem's tables (writer.rs).
            Some(_) => format!(
                "PERFORM {}('{dir}', {key}, {state}, {message});
  RETURN NULL;",
                super::writer::recorder(spec.migration, spec.table_oid)
            ),
            None => format!(
                "INSERT INTO tandem.divergence (migration_id, direction, table_name, key, sqlstate, message)
  VALUES ({m}, '{dir}', {table},
          {key},
          {state}, {message});
  RETURN NULL;",
                m = spec.migration,
            ),
        }
    };
    // Checks first, when they are all a write can fail on: no EXCEPTION block, so no
    // subtransaction per row (guard.rs).
    let (checks, catch) = match guard {
        Guard::Checks(checks) => (
            checks
                .iter()
                .map(|c| {
                    let (state, message) = c.failure();
                    format!(
                        "  IF TG_OP <> 'DELETE' AND NOT {} THEN\n  {}\n  END IF;\n",
                        c.condition(),
                        record(&format!("'{state}'"), &Literal(&message).to_string())
                            .replace('\n', "\n  ")
                    )
                })
                .collect::<String>(),
            String::new(),
        ),
        Guard::Catch => (
            String::new(),
            format!(
                "EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN\n  {}\n",
                record("SQLSTATE", "SQLERRM")
            ),
        ),
    };
    let body = format!(
        "#variable_conflict use_column
BEGIN
{checks}  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND ({old}) IS DISTINCT FROM ({new})) THEN
{copy_lock}    DELETE FROM {target} AS t WHERE ({tkeys}) = ({old});
  END IF;
  IF TG_OP <> 'DELETE' THEN
{evict}{write}
  END IF;
  RETURN NULL;
{catch}END",
        evict = evict
            .iter()
            .map(|e| format!("    {};\n", e.replace('\n', "\n    ")))
            .collect::<String>(),
        old = src_old.join(", "),
        new = src_new.join(", "),
        target = f.target,
        tkeys = cols(f.target_key, "t"),
        copy_lock = match direction {
            Direction::Forward => format!(
                "    PERFORM pg_advisory_xact_lock_shared({COPY_LOCK_CLASS}, {}::int4);\n",
                crate::state::lock_key(spec.migration)
            ),
            Direction::Reverse => String::new(),
        },
    );
    super::trigger_function(function, &body)
}

/// The largest key of the source now: the backfill copies up to it; later rows arrive
/// through the triggers.
pub fn bound(spec: &TableSpec) -> String {
    format!(
        "SELECT {} FROM {} AS o ORDER BY {} LIMIT 1",
        key_text(&spec.key, "o"),
        spec.table,
        order(&spec.key, "o", true)
    )
}

/// The key `$3` rows after `$1` (or from the start), not past the bound `$2`: the end of the
/// next batch. No row comes back when fewer rows are left.
pub fn batch_end(spec: &TableSpec, lower: bool) -> String {
    format!(
        "SELECT {} FROM {} AS o WHERE {} ORDER BY {} OFFSET $3::int8 - 1 LIMIT 1",
        key_text(&spec.key, "o"),
        spec.table,
        range(&spec.key, "o", lower),
        order(&spec.key, "o", false)
    )
}

/// The advisory lock class of the copy lock (the executor's lock class + 1).
pub const COPY_LOCK_CLASS: i32 = crate::state::EXECUTOR_LOCK_CLASS + 1;

/// Before a batch copies (`share` false): take the migration's copy lock exclusively until
/// the batch commits. The forward trigger takes it shared before it deletes a row from the
/// shadow (DELETE, key change), so a delete either committed before the batch read its rows
/// or deletes the batch's copy after the batch committed: the copy never resurrects a row.
/// Ordinary writes never wait for it, and the original's pages are not touched (row locks
/// would write every tuple of the table once more).
///
/// For a re-copy (`share` true): lock the range's rows `FOR SHARE`, so nothing changes them
/// while the shadow's part of the range is emptied and copied again.
pub fn lock_batch(spec: &TableSpec, lower: bool, share: bool) -> String {
    if !share {
        return format!(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock({COPY_LOCK_CLASS}, {}::int4)) AS locked",
            crate::state::lock_key(spec.migration)
        );
    }
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM {} AS o WHERE {} FOR SHARE) AS locked",
        spec.table,
        range(&spec.key, "o", lower),
    )
}

/// Copy the batch. With `upsert` (the shadow has its key index and the triggers write it
/// too), a row the triggers already wrote is newer than what the copy read, so the copy skips
/// it (`DO NOTHING` on the key). Without (the log method's copy into a shadow nobody else
/// writes, which has no index yet) it is a plain insert. Any other failure is an error that
/// says which row the new definition rejects.
pub fn copy_batch(spec: &TableSpec, lower: bool, upsert: bool) -> String {
    let target_cols: Vec<String> = spec
        .forward
        .iter()
        .map(|m| m.column.name.to_string())
        .collect();
    let exprs: Vec<String> = spec.forward.iter().map(|m| m.expr.clone()).collect();
    let mut out = format!(
        "INSERT INTO {} AS t ({}) SELECT {} FROM {} AS o WHERE {}",
        spec.shadow,
        target_cols.join(", "),
        exprs.join(", "),
        spec.table,
        range(&spec.key, "o", lower),
    );
    if upsert {
        out.push_str(&format!(
            " ON CONFLICT ({}) DO NOTHING",
            bare(&spec.new_key)
        ));
    }
    out
}

/// [`copy_batch`], also counting the range's rows in the original (in the same statement, so
/// the same snapshot): `(rows in the range, rows copied)`.
pub fn copy_batch_counted(spec: &TableSpec, lower: bool, upsert: bool) -> String {
    format!(
        "WITH copied AS ({} RETURNING 1) SELECT (SELECT count(*) FROM {} AS o WHERE {}), (SELECT count(*) FROM copied)",
        copy_batch(spec, lower, upsert),
        spec.table,
        range(&spec.key, "o", lower)
    )
}

/// The keys (as text) of the `$2` rows after `$1` (or from the start), in key order.
pub fn keys_after(spec: &TableSpec) -> String {
    format!(
        "SELECT {} FROM {} AS o WHERE $1::text[] IS NULL OR ({}) > {} ORDER BY {} LIMIT $2",
        key_text(&spec.key, "o"),
        spec.table,
        cols(&spec.key, "o"),
        key_param(&spec.key, 1),
        order(&spec.key, "o", false)
    )
}

/// Rows of the shadow whose key is past `$1` (the original's last key): extra rows.
pub fn shadow_rows_past(spec: &TableSpec) -> String {
    format!(
        "SELECT count(*) FROM {} AS t WHERE ({}) > {}",
        spec.shadow,
        cols(&spec.new_key, "t"),
        key_param(&spec.new_key, 1)
    )
}

/// Remove the shadow's rows of a key range (before copying it again).
pub fn delete_shadow_range(spec: &TableSpec, lower: bool) -> String {
    format!(
        "DELETE FROM {} AS t WHERE {}",
        spec.shadow,
        range(&spec.new_key, "t", lower)
    )
}

/// The row as the shadow should hold it, as text: each mapped expression cast to the new
/// column's type.
fn mapped_row(spec: &TableSpec) -> String {
    let parts: Vec<String> = spec
        .forward
        .iter()
        .map(|m| format!("({})::{}", m.expr, m.column.sql_type))
        .collect();
    format!("ROW({})::text", parts.join(", "))
}

fn shadow_row(spec: &TableSpec) -> String {
    let parts: Vec<String> = spec
        .forward
        .iter()
        .map(|m| format!("t.{}", m.column.name))
        .collect();
    format!("ROW({})::text", parts.join(", "))
}

/// Count and order-independent checksum of a whole side, the original's rows mapped and cast
/// (`shadow` false) or the shadow's: `(count, sum as text)`. Each side is one sequential
/// scan. With `typed`, a row's hash is the XOR of its columns' hashes, each by its type's own
/// extended hash function ([`column_hash`]; the text form's for the other types) seeded with
/// the column's position, so that values swapped between two columns change it; a NULL
/// counts as 0, as in `hash_record_extended`. That is half the time of hashing the row as a
/// record with `hash_record_extended` (10,000,000 pgbench rows: 1.5–1.6 s against 2.7–3.5 s,
/// the scan alone 0.5 s), which builds and takes apart a record for every row. Without
/// `typed` (the fallback when the typed query fails), the hash of the row's text.
pub fn table_sums(spec: &TableSpec, shadow: bool, typed: bool) -> String {
    let (table, alias) = if shadow {
        (&spec.shadow, "t")
    } else {
        (&spec.table, "o")
    };
    let hash = if typed {
        spec.forward
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let value = if shadow {
                    format!("t.{}", m.column.name)
                } else {
                    format!("({})::{}", m.expr, m.column.sql_type)
                };
                let seed = i + 1;
                match column_hash(&m.column.sql_type) {
                    Some(f) => format!("coalesce({f}({value}, {seed}::int8), 0)"),
                    None => format!(
                        "coalesce(pg_catalog.hashtextextended(({value})::text, {seed}::int8), 0)"
                    ),
                }
            })
            .collect::<Vec<_>>()
            .join(" # ")
    } else {
        let row = if shadow {
            shadow_row(spec)
        } else {
            mapped_row(spec)
        };
        format!("pg_catalog.hashtextextended({row}, 0::int8)")
    };
    format!("SELECT count(*), coalesce(sum({hash}), 0)::text FROM {table} AS {alias}")
}

/// The extended hash function (the default hash operator class's) of a column type, spelled
/// as `format_type` spells it, for the types whose function takes the value as it is; `None`
/// for the others (arrays, domains, types with a precision such as `timestamp(3)`, and any
/// type not listed), which [`table_sums`] hashes through their text form.
fn column_hash(sql_type: &str) -> Option<&'static str> {
    if sql_type.ends_with(']') {
        return None;
    }
    // `character varying(20)`, `numeric(10,2)`, `character(84)`: the type's name.
    let name = sql_type.split('(').next().unwrap_or(sql_type).trim_end();
    Some(match name {
        "smallint" => "pg_catalog.hashint2extended",
        "integer" => "pg_catalog.hashint4extended",
        "bigint" => "pg_catalog.hashint8extended",
        "real" => "pg_catalog.hashfloat4extended",
        "double precision" => "pg_catalog.hashfloat8extended",
        "numeric" => "pg_catalog.hash_numeric_extended",
        "text" | "character varying" => "pg_catalog.hashtextextended",
        "character" => "pg_catalog.hashbpcharextended",
        "uuid" => "pg_catalog.uuid_hash_extended",
        "jsonb" => "pg_catalog.jsonb_hash_extended",
        "timestamp without time zone" => "pg_catalog.timestamp_hash_extended",
        _ => return None,
    })
}

/// Count and order-independent checksum of one key range on both sides.
pub fn chunk_sums(spec: &TableSpec, lower: bool) -> String {
    format!(
        "SELECT a.n, a.s, b.n, b.s
           FROM (SELECT count(*) AS n, coalesce(sum(pg_catalog.hashtextextended({mapped}, 0::int8)), 0)::text AS s
                   FROM {table} AS o WHERE {orange}) AS a,
                (SELECT count(*) AS n, coalesce(sum(pg_catalog.hashtextextended({srow}, 0::int8)), 0)::text AS s
                   FROM {shadow} AS t WHERE {srange}) AS b",
        table = spec.table,
        shadow = spec.shadow,
        orange = range(&spec.key, "o", lower),
        srange = range(&spec.new_key, "t", lower),
        mapped = mapped_row(spec),
        srow = shadow_row(spec),
    )
}

/// Keys (as text) whose rows differ between the two sides within one range: missing,
/// extra, or different. At most `$3` of them.
pub fn chunk_differences(spec: &TableSpec, lower: bool) -> String {
    format!(
        "SELECT coalesce(a.k, b.k)::text, a.k IS NULL, b.k IS NULL
           FROM (SELECT ROW({okeys})::text AS k, {mapped} AS r FROM {table} AS o WHERE {orange}) AS a
           FULL JOIN (SELECT ROW({skeys})::text AS k, {srow} AS r FROM {shadow} AS t WHERE {srange}) AS b
             ON a.k = b.k
          WHERE a.r IS DISTINCT FROM b.r
          LIMIT $3::int8",
        table = spec.table,
        shadow = spec.shadow,
        okeys = cols(&spec.key, "o"),
        skeys = cols(&spec.new_key, "t"),
        orange = range(&spec.key, "o", lower),
        srange = range(&spec.new_key, "t", lower),
        mapped = mapped_row(spec),
        srow = shadow_row(spec),
    )
}

/// The function a TRUNCATE of the source runs: it empties the target too (the shadow before
/// cutover, the old table in the rollback window). Named after the row trigger's `function`.
pub fn truncate_function(spec: &TableSpec, direction: Direction, function: &QualName) -> String {
    super::trigger_function(
        &super::truncate_function(function),
        &format!(
            "BEGIN
  TRUNCATE {};
  RETURN NULL;
END",
            spec.flow(direction).target
        ),
    )
}

/// The statements that move the identity sequences at a swap, run after the tables' renames:
/// `live` is the table now under the user's name, `parked` the other. `forward`: the new
/// table became live (cutover), else the original (rollback). The user's sequence name goes
/// with the live table; its sequence takes the other's state (read under the swap's locks,
/// so no insert can draw a value between the read and the write); the live column gets its
/// `GENERATED ALWAYS` back and the parked one turns `BY DEFAULT`, so tandem can write the
/// live table's values into it.
pub fn identity_swap(
    spec: &TableSpec,
    forward: bool,
    live: &QualName,
    parked: &QualName,
) -> Vec<String> {
    let mut out = Vec::new();
    for i in &spec.identity {
        let schema = &i.sequence.schema;
        let (parked_name, live_from, live_col, live_always, parked_col, parked_always) = if forward
        {
            (
                &i.old_sequence,
                &i.shadow_sequence,
                &i.new_column,
                i.new_always,
                &i.old_column,
                i.old_always,
            )
        } else {
            (
                &i.shadow_sequence,
                &i.old_sequence,
                &i.old_column,
                i.old_always,
                &i.new_column,
                i.new_always,
            )
        };
        out.push(format!(
            "ALTER SEQUENCE {} RENAME TO {parked_name}",
            i.sequence
        ));
        out.push(format!(
            "ALTER SEQUENCE {schema}.{live_from} RENAME TO {}",
            i.sequence.name
        ));
        out.push(format!(
            "SELECT pg_catalog.setval({}::regclass, last_value, is_called) FROM {schema}.{parked_name}",
            Literal(&i.sequence.to_string())
        ));
        if live_always {
            out.push(format!(
                "ALTER TABLE {live} ALTER COLUMN {live_col} SET GENERATED ALWAYS"
            ));
        }
        if parked_always {
            out.push(format!(
                "ALTER TABLE {parked} ALTER COLUMN {parked_col} SET GENERATED BY DEFAULT"
            ));
        }
    }
    out
}

/// The rest of what a swap moves between the two tables, run after the renames: extended
/// statistics take the live table's names (the other's parked), and at cutover the new table
/// gets the original's NOT VALID constraints (no scan) and its index comments.
pub fn extras_swap(spec: &TableSpec, forward: bool, live: &QualName) -> Vec<String> {
    let mut out = Vec::new();
    for s in &spec.statistics {
        let (away, back) = if forward {
            (&s.parked, &s.temp)
        } else {
            (&s.temp, &s.parked)
        };
        out.push(format!(
            "ALTER STATISTICS {}.{} RENAME TO {away}",
            s.schema, s.name
        ));
        out.push(format!(
            "ALTER STATISTICS {}.{back} RENAME TO {}",
            s.schema, s.name
        ));
    }
    if !forward {
        return out;
    }
    for c in &spec.not_valid_checks {
        out.push(format!(
            "ALTER TABLE {live} ADD CONSTRAINT {} {}",
            c.name, c.definition
        ));
        if let Some(comment) = &c.comment {
            out.push(format!(
                "COMMENT ON CONSTRAINT {} ON {live} IS {}",
                c.name,
                Literal(comment)
            ));
        }
    }
    for i in &spec.new_indexes {
        if let Some(comment) = &i.comment {
            out.push(format!(
                "COMMENT ON INDEX {}.{} IS {}",
                spec.table.schema,
                i.final_name,
                Literal(comment)
            ));
        }
    }
    out
}
