//! How each direction's trigger guards its writes (`shadow/guard.rs`), from what a row
//! written into each table must satisfy (`catalog/sql/write_rules.sql`).

use tokio_postgres::Transaction;

use crate::catalog::table::TableColumn as Col;
use crate::error::EngineError;
use crate::shadow::guard::{self, Check, Guard};
use crate::shadow::{ident, Mapped, NewIndex, NotValidCheck};

const WRITE_RULES: &str = include_str!("../../catalog/sql/write_rules.sql");

/// What a row written into a table must satisfy beyond its columns' types (see
/// `catalog/sql/write_rules.sql`).
struct WriteRules {
    checks: Vec<String>,
    /// Unique index definitions from `USING` on (the name and table left out).
    uniques: Vec<String>,
    deferrable: bool,
    generated: Vec<String>,
    computed_defaults: Vec<String>,
    foreign_keys: bool,
    forced_rls: bool,
}

fn index_body(def: &str) -> String {
    def.split_once(" USING ")
        .map_or(def, |(_, rest)| rest)
        .to_string()
}

async fn write_rules(tx: &Transaction<'_>, oid: u32) -> Result<WriteRules, EngineError> {
    let r = tx
        .query_one(WRITE_RULES, &[&oid])
        .await
        .map_err(EngineError::sql("read the table's constraints"))?;
    Ok(WriteRules {
        // A NOT VALID constraint checks every new write all the same.
        checks: r
            .get::<_, Vec<String>>("checks")
            .iter()
            .map(|c| c.trim_end_matches(" NOT VALID").to_string())
            .collect(),
        uniques: r
            .get::<_, Vec<String>>("uniques")
            .iter()
            .map(|d| index_body(d))
            .collect(),
        deferrable: r.get("deferrable"),
        generated: r.get("generated"),
        computed_defaults: r.get("computed_defaults"),
        foreign_keys: r.get("foreign_keys"),
        forced_rls: r.get("forced_rls"),
    })
}

/// How each direction's trigger guards its writes (see `shadow/guard.rs`): checks when every
/// way a write can fail is one tandem can test first, else the `EXCEPTION` block.
pub(super) async fn guards(
    tx: &Transaction<'_>,
    oid: u32,
    shadow_oid: u32,
    (orig_cols, new_cols): (&[Col], &[Col]),
    (forward, reverse): (&[Mapped], &[Mapped]),
    new_indexes: &[NewIndex],
    not_valid: &[NotValidCheck],
) -> Result<(Guard, Guard), EngineError> {
    let orig = write_rules(tx, oid).await?;
    let mut new = write_rules(tx, shadow_oid).await?;
    // The shadow's deferred indexes are built after the copy: they count already.
    new.uniques = new_indexes
        .iter()
        .filter(|i| i.definition.starts_with("CREATE UNIQUE INDEX"))
        .map(|i| index_body(&i.definition))
        .collect();
    let forward = guard(orig_cols, (new_cols, &new), forward, &orig)?;
    // From cutover on, when the reverse trigger runs, the new table has the NOT VALID checks
    // too.
    new.checks.extend(
        not_valid
            .iter()
            .map(|c| c.definition.trim_end_matches(" NOT VALID").to_string()),
    );
    let reverse = guard(new_cols, (orig_cols, &orig), reverse, &new)?;
    Ok((forward, reverse))
}

/// The guard for writes from a table with columns `source` (and rules `source_rules`) into
/// one with columns `target` and rules `rules`, through `mapping`.
fn guard(
    source: &[Col],
    (target, rules): (&[Col], &WriteRules),
    mapping: &[Mapped],
    source_rules: &WriteRules,
) -> Result<Guard, EngineError> {
    let subset = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
    if rules.deferrable
        || rules.foreign_keys
        || rules.forced_rls
        || source_rules.deferrable
        || !subset(&rules.checks, &source_rules.checks)
        || !subset(&rules.uniques, &source_rules.uniques)
        || !subset(&rules.generated, &source_rules.generated)
    {
        return Ok(Guard::Catch);
    }
    let mut checks = Vec::new();
    for t in target.iter().filter(|c| !c.is_generated()) {
        let Some(m) = mapping.iter().find(|m| m.column.name.as_str() == t.name) else {
            // Filled by its default: a computed one may fail, none on a NOT NULL column will.
            if rules.computed_defaults.contains(&t.name) || (t.not_null && !t.has_default) {
                return Ok(Guard::Catch);
            }
            continue;
        };
        let Some(src) = guard::plain_column(&m.expr) else {
            return Ok(Guard::Catch);
        };
        let Some(s) = source.iter().find(|c| c.name == src) else {
            return Ok(Guard::Catch);
        };
        let column = ident(&s.name)?;
        match guard::cast(&column, &s.sql_type, &t.sql_type) {
            guard::Cast::Safe => {}
            guard::Cast::Checked(c) => checks.push(c),
            guard::Cast::Unknown => return Ok(Guard::Catch),
        }
        if t.not_null && !s.not_null {
            checks.push(Check::NotNull { column });
        }
    }
    Ok(Guard::Checks(checks))
}
