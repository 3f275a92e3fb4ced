//! A partitioned table migrates as one tree: the shadow is partitioned by the same key, with
//! one shadow partition per partition (same bounds, every level), so the copy, the triggers'
//! writes and the verification go through the two roots and PostgreSQL routes each row to
//! its partition. What needs each partition by name lives here: reading the tree (and
//! refusing partitions with objects of their own, which a partition made from the root's
//! definition would not have), creating the shadow partitions, the triggers a write
//! addressed to one partition fires (statement and TRUNCATE triggers are not inherited), the
//! renames of a swap, and the check that no partition was attached or detached since
//! prepare.
//!
//! Row triggers need nothing here: one on the root is cloned to every partition.

use std::collections::{BTreeSet, HashMap};

use planner::ident::{Ident, Literal, QualName};
use tokio_postgres::{GenericClient, Transaction};

use super::dependents::{self, Grant};
use super::{ident, names, Partition, PartitionIndex, Partitioning, TableSpec};
use crate::catalog::table;
use crate::error::EngineError;

const TREE: &str = table::PARTITION_TREE.sql;
const INDEXES: &str = table::PARTITION_INDEXES.sql;
const REFUSALS: &str = table::PARTITION_REFUSALS.sql;

fn qual(schema: &str, name: &str) -> Result<QualName, EngineError> {
    QualName::new(schema, name).map_err(|e| {
        EngineError::refused(
            format!("partition {schema}.{name} has a name tandem cannot use ({e})"),
            "rename it first",
        )
    })
}

/// The tree of partitioned table `root` (migration `m`), with tandem's names for each
/// partition's counterpart; refused when a partition has something of its own.
pub async fn read(
    c: &impl GenericClient,
    m: i64,
    root: u32,
    key: String,
) -> Result<Partitioning, EngineError> {
    let rows = c
        .query(TREE, &[&root])
        .await
        .map_err(EngineError::sql("read the table's partitions"))?;
    let mut partitions: Vec<Partition> = Vec::new();
    for r in &rows {
        let oid: u32 = r.get(0);
        let schema: String = r.get(1);
        let name = qual(&schema, r.get(2))?;
        let parent_oid: u32 = r.get(3);
        let parent = match parent_oid == root {
            true => None,
            false => Some(
                partitions
                    .iter()
                    .position(|p| p.oid == parent_oid)
                    .expect("parents come first"),
            ),
        };
        let (shadow, old) = names(m, oid);
        partitions.push(Partition {
            oid,
            shadow: qual(&schema, &shadow)?,
            old: qual(&schema, &old)?,
            name,
            parent,
            bound: r.get(4),
            key: r.get(5),
            reloptions: r.get(6),
            indexes: Vec::new(),
        });
    }
    let oids: Vec<u32> = partitions.iter().map(|p| p.oid).collect();
    let refusals = refusals(c, &oids).await?;
    if !refusals.is_empty() {
        return Err(EngineError::refused(
            format!("partitions have what tandem does not carry yet: {}", refusals.join("; ")),
            "move it to the partitioned table (an index or trigger on the partitioned table reaches every partition), or drop it for the migration; nothing was changed",
        ));
    }
    for r in c
        .query(INDEXES, &[&oids])
        .await
        .map_err(EngineError::sql("read the partitions' indexes"))?
    {
        let oid: u32 = r.get(0);
        let p = partitions
            .iter_mut()
            .find(|p| p.oid == oid)
            .expect("asked for");
        let of: Option<String> = r.get(2);
        let Some(of) = of else { continue }; // refused above
        let n = p.indexes.len();
        p.indexes.push(PartitionIndex {
            name: ident(r.get(1))?,
            parked: super::partition_index(m, oid, n, true),
            of: ident(&of)?,
        });
    }
    Ok(Partitioning { key, partitions })
}

/// `partition: reason` for what the partitions `oids` have of their own.
pub async fn refusals(c: &impl GenericClient, oids: &[u32]) -> Result<Vec<String>, EngineError> {
    Ok(c.query(REFUSALS, &[&oids])
        .await
        .map_err(EngineError::sql(
            "read what the partitions have of their own",
        ))?
        .iter()
        .map(|r| {
            format!(
                "partition {}: {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            )
        })
        .collect())
}

/// The shadow partitions, parents first, each `PARTITION OF` its parent's shadow with the
/// original's bound; leaves get the original's storage options and no autovacuum while they
/// fill (as a plain shadow does).
pub fn create_shadows(spec: &TableSpec) -> Vec<String> {
    let parts = spec.partitions();
    let mut out = Vec::new();
    for p in parts {
        let parent = match p.parent {
            None => &spec.shadow,
            Some(i) => &parts[i].shadow,
        };
        let by = match &p.key {
            Some(k) => format!(" PARTITION BY {k}"),
            None => String::new(),
        };
        out.push(format!(
            "CREATE TABLE {} PARTITION OF {parent} {}{by}",
            p.shadow, p.bound
        ));
        if p.leaf() {
            if !p.reloptions.is_empty() {
                out.push(format!(
                    "ALTER TABLE {} SET ({})",
                    p.shadow,
                    dependents::option_list(&p.reloptions)
                ));
            }
            out.push(format!(
                "ALTER TABLE {} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)",
                p.shadow
            ));
        }
    }
    out
}

/// Which side of each partition pair a statement addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The user's name.
    Named,
    /// tandem's name for the shadow (and for the new partition after a rollback).
    Shadow,
    /// tandem's name for the original partition after cutover.
    Old,
}

impl Partition {
    pub fn at(&self, side: Side) -> &QualName {
        match side {
            Side::Named => &self.name,
            Side::Shadow => &self.shadow,
            Side::Old => &self.old,
        }
    }
}

/// The function a TRUNCATE of one partition runs: it truncates the counterpart its trigger
/// names (schema and name, the trigger's arguments).
pub fn truncate_function(function: &QualName) -> QualName {
    QualName::new(
        function.schema.as_str(),
        &format!("{}_truncate_part", function.name.as_str()),
    )
    .expect("short name")
}

pub fn truncate_function_sql(function: &QualName) -> String {
    super::trigger_function(
        &truncate_function(function),
        "BEGIN
  EXECUTE format('TRUNCATE %I.%I', TG_ARGV[0], TG_ARGV[1]);
  RETURN NULL;
END",
    )
}

/// TRUNCATE triggers on the leaves named `from`, each truncating its counterpart named `to`
/// (a TRUNCATE of the root fires them all, besides the root's own).
pub fn truncate_triggers(
    spec: &TableSpec,
    trigger: &Ident,
    function: &QualName,
    from: Side,
    to: Side,
) -> Vec<String> {
    let f = truncate_function(function);
    spec.partitions()
        .iter()
        .filter(|p| p.leaf())
        .flat_map(|p| {
            let target = p.at(to);
            [
                format!(
                    "CREATE TRIGGER {trigger} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {f}({}, {})",
                    p.at(from),
                    Literal(target.schema.as_str()),
                    Literal(target.name.as_str())
                ),
                super::fire_always(&p.at(from), trigger),
            ]
        })
        .collect()
}

/// Drop trigger `trigger` from every partition named `side` (leaves only when `leaves`).
pub fn drop_triggers(spec: &TableSpec, trigger: &Ident, side: Side, leaves: bool) -> Vec<String> {
    spec.partitions()
        .iter()
        .filter(|p| !leaves || p.leaf())
        .map(|p| format!("DROP TRIGGER IF EXISTS {trigger} ON {}", p.at(side)))
        .collect()
}

/// The swap's renames of the partitions, after the roots': forward, each original partition
/// parked and its shadow named; back, the other way.
pub fn renames(spec: &TableSpec, forward: bool) -> Vec<String> {
    let mut out = Vec::new();
    for p in spec.partitions() {
        let (park_as, standby) = match forward {
            true => (&p.old, &p.shadow),
            false => (&p.shadow, &p.old),
        };
        out.push(format!("ALTER TABLE {} RENAME TO {}", p.name, park_as.name));
        out.push(format!("ALTER TABLE {standby} RENAME TO {}", p.name.name));
    }
    out
}

/// The indexes of `tables`, in order: (position in `tables`, oid, name, parent index oid and
/// name), one query for the whole tree.
async fn index_tree(
    tx: &Transaction<'_>,
    tables: &[&QualName],
) -> Result<Vec<(usize, u32, String, Option<u32>, Option<String>)>, EngineError> {
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    Ok(tx
        .query(table::PARTITION_INDEX_TREE.sql, &[&names])
        .await
        .map_err(EngineError::sql("read the partitions' indexes"))?
        .iter()
        .map(|r| {
            (
                r.get::<_, i32>(0) as usize - 1,
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
            )
        })
        .collect())
}

/// The partitions' indexes follow their tables, after the roots' (run after [`renames`]).
/// Forward: the originals' parked, then each new partition's index takes the name of the
/// original's index attached to the same index of the parent (worked out parents first, so a
/// parent's index has its final name by then); an index the change added keeps the name
/// PostgreSQL gave it, said of the user's partition. Back: the new ones under tandem's names,
/// the originals' restored. One query and one batch of statements each way, whatever the
/// number of partitions.
pub async fn rename_indexes(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    forward: bool,
) -> Result<Vec<String>, EngineError> {
    let parts = spec.partitions();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    if forward {
        for p in parts {
            for i in &p.indexes {
                out.push(format!(
                    "ALTER INDEX {}.{} RENAME TO {}",
                    p.name.schema, i.name, i.parked
                ));
            }
        }
        let tables: Vec<&QualName> = parts.iter().map(|p| &p.name).collect();
        let mut target: HashMap<u32, String> = HashMap::new();
        for (n, oid, name, parent, parent_name) in index_tree(tx, &tables).await? {
            let p = &parts[n];
            let parent_name = parent.and_then(|o| target.get(&o).cloned()).or(parent_name);
            let to = match parent_name
                .as_deref()
                .and_then(|of| p.indexes.iter().find(|i| i.of.as_str() == of))
            {
                Some(i) => i.name.clone(),
                None => match name.strip_prefix(p.shadow.name.as_str()) {
                    Some(rest) => ident(&format!("{}{rest}", p.name.name.as_str()))?,
                    None => ident(&name)?,
                },
            };
            if to.as_str() != name {
                out.push(format!(
                    "ALTER INDEX {}.{} RENAME TO {to}",
                    p.name.schema,
                    ident(&name)?
                ));
            }
            target.insert(oid, to.as_str().to_string());
        }
    } else {
        // The new partitions are under tandem's names by now.
        let tables: Vec<&QualName> = parts.iter().map(|p| &p.shadow).collect();
        let mut seen: HashMap<usize, usize> = HashMap::new();
        for (n, _, name, _, _) in index_tree(tx, &tables).await? {
            let p = &parts[n];
            let k = seen.entry(n).or_default();
            out.push(format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                p.shadow.schema,
                ident(&name)?,
                super::partition_index(spec.migration, p.oid, *k, false)
            ));
            *k += 1;
        }
        for p in parts {
            for i in &p.indexes {
                out.push(format!(
                    "ALTER INDEX IF EXISTS {}.{} RENAME TO {}",
                    p.name.schema, i.parked, i.name
                ));
            }
        }
    }
    Ok(out)
}

/// Owner, comment, privileges and storage options of each partition, from the one that was
/// live (now parked as `from`) to its counterpart under the user's name (run after
/// [`renames`]). One query for the tree (and one per partition with explicit privileges).
pub async fn carry(
    tx: &Transaction<'_>,
    spec: &TableSpec,
    from: Side,
) -> Result<Vec<String>, EngineError> {
    let parts = spec.partitions();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = parts.iter().map(|p| p.at(from).to_string()).collect();
    let rows = tx
        .query(table::PARTITION_CARRY.sql, &[&names])
        .await
        .map_err(EngineError::sql(
            "read the partitions' owners and privileges",
        ))?;
    let mut out = Vec::new();
    for r in rows {
        let p = &parts[r.get::<_, i32>(0) as usize - 1];
        let Some(oid) = r.get::<_, Option<u32>>(1) else {
            return Err(EngineError::refused(
                format!("partition {} is gone", p.at(from).display_plain()),
                "nothing was changed",
            ));
        };
        let owner = ident(r.get(2))?;
        let comment: Option<String> = r.get(3);
        let target = &p.name;
        out.push(format!("ALTER TABLE {target} OWNER TO {owner}"));
        out.push(match &comment {
            Some(c) => format!("COMMENT ON TABLE {target} IS {}", Literal(c)),
            None => format!("COMMENT ON TABLE {target} IS NULL"),
        });
        if p.leaf() {
            out.push(format!(
                "ALTER TABLE {target} RESET (autovacuum_enabled, toast.autovacuum_enabled)"
            ));
            if !p.reloptions.is_empty() {
                out.push(format!(
                    "ALTER TABLE {target} SET ({})",
                    dependents::option_list(&p.reloptions)
                ));
            }
        }
        if r.get::<_, bool>(4) {
            let grants: Vec<Grant> = dependents::table_grants(tx, oid).await?;
            out.push(format!("REVOKE ALL ON {target} FROM PUBLIC"));
            out.push(format!("REVOKE ALL ON {target} FROM {owner}"));
            out.extend(dependents::grant_statements(target, &grants)?);
        }
    }
    Ok(out)
}

/// No partition was attached to or detached from either tree since prepare: the shadow tree
/// has the partitions of then, and a swap would leave an attached one's rows behind. `live`
/// and `standby`: which names each tree's partitions have now.
pub async fn check_unchanged(
    c: &impl GenericClient,
    spec: &TableSpec,
    roots: [(&QualName, Side); 2],
) -> Result<(), EngineError> {
    if spec.partitioning.is_none() {
        return Ok(());
    }
    for (root, side) in roots {
        let Some(oid) = c
            .query_one("SELECT to_regclass($1)::oid", &[&root.to_string()])
            .await
            .map_err(EngineError::sql("find a table"))?
            .get::<_, Option<u32>>(0)
        else {
            continue;
        };
        let now: BTreeSet<String> = c
            .query(TREE, &[&oid])
            .await
            .map_err(EngineError::sql("read the table's partitions"))?
            .iter()
            .map(|r| format!("{}.{}", r.get::<_, String>(1), r.get::<_, String>(2)))
            .collect();
        let then: BTreeSet<String> = spec
            .partitions()
            .iter()
            .map(|p| {
                let q = p.at(side);
                format!("{}.{}", q.schema.as_str(), q.name.as_str())
            })
            .collect();
        let attached: Vec<&String> = now.difference(&then).collect();
        let detached: Vec<&String> = then.difference(&now).collect();
        if attached.is_empty() && detached.is_empty() {
            continue;
        }
        let mut what = Vec::new();
        if !attached.is_empty() {
            what.push(format!("{} attached to", join(&attached)));
        }
        if !detached.is_empty() {
            what.push(format!("{} detached from", join(&detached)));
        }
        return Err(EngineError::refused(
            format!(
                "partitions were {} {} since the migration was prepared; the two trees no longer have the same partitions, and a swap would leave rows behind",
                what.join(" and "),
                root.display_plain()
            ),
            "undo the attach or detach and run the command again, or roll the migration back (tandem rollback ID) and plan the change again",
        ));
    }
    Ok(())
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
