//! The shadow's indexes: the copies LIKE made under tandem's names, which of them are built
//! after the copy, the names they take at cutover, and the original's names parked then.

use std::collections::BTreeMap;

use planner::ident::{Ident, QualName};
use tokio_postgres::{GenericClient, Transaction};

use super::table::{Made, Original};
use crate::catalog::table;
use crate::error::EngineError;
use crate::executor::carry;
use crate::shadow::{self, ident, CopyMethod, IndexConstraint, IndexPair, NewIndex};
use crate::state::Migration;

pub(super) struct Idx {
    oid: u32,
    name: String,
    constraint: Option<(String, String, bool, bool)>,
}

pub(super) async fn indexes(c: &impl GenericClient, oid: u32) -> Result<Vec<Idx>, EngineError> {
    let rows = c
        .query(table::INDEXES.sql, &[&oid])
        .await
        .map_err(EngineError::sql("read the indexes"))?;
    Ok(rows
        .iter()
        .map(|r| Idx {
            oid: r.get(0),
            name: r.get(1),
            constraint: r
                .get::<_, Option<String>>(3)
                .map(|n| (n, r.get(4), r.get(5), r.get(6))),
        })
        .collect())
}

/// `pg_get_constraintdef` of the shadow's constraint `name` (e.g. `PRIMARY KEY (id, at)`).
pub(super) async fn constraint_definition(
    tx: &Transaction<'_>,
    shadow: &QualName,
    name: &Ident,
) -> Result<String, EngineError> {
    Ok(tx
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2",
            &[&shadow.to_string(), &name.as_str()],
        )
        .await
        .map_err(EngineError::sql("read the shadow's constraint"))?
        .get(0))
}

/// `LIKE` copies the indexes in the original's oid order: give each copy tandem's name at
/// once, so no name the step's statements choose can collide with it. Returns the original
/// index oid -> the copy's name.
pub(super) async fn name_copies(
    tx: &Transaction<'_>,
    m: &Migration,
    orig: &Original<'_>,
    shadow: &QualName,
    shadow_oid: u32,
) -> Result<BTreeMap<u32, Ident>, EngineError> {
    let copies = indexes(tx, shadow_oid).await?;
    if copies.len() != orig.indexes.len() {
        return Err(EngineError::refused(
            format!(
                "the shadow of {} got {} indexes, the table has {}",
                orig.name,
                copies.len(),
                orig.indexes.len()
            ),
            "this is a tandem bug; please report it with the table's definition",
        ));
    }
    let mut temp_of = BTreeMap::new();
    for (n, (o, copy)) in orig.indexes.iter().zip(&copies).enumerate() {
        let temp = shadow::shadow_index(m.id, orig.oid, n);
        tx.batch_execute(&format!(
            "ALTER INDEX {}.{} RENAME TO {temp}",
            shadow.schema,
            ident(&copy.name)?
        ))
        .await
        .map_err(EngineError::sql("name the shadow's indexes"))?;
        temp_of.insert(o.oid, temp);
    }
    Ok(temp_of)
}

/// The new table's indexes, once the change ran: each one's definition, temporary and final
/// names, constraint and comment; every one but the key's (and with the log method the key's
/// too) dropped from the shadow, to be built after the copy. Refused: an exclusion
/// constraint, a change that removes the key index.
pub(super) async fn new_indexes(
    tx: &Transaction<'_>,
    m: &Migration,
    orig: &Original<'_>,
    made: &Made,
    temp_of: &BTreeMap<u32, Ident>,
    copy: CopyMethod,
) -> Result<Vec<NewIndex>, EngineError> {
    let (table, shadow, name, oid) = (orig.table, &made.shadow, &orig.name, orig.oid);
    let partitioned = orig.partitioning.is_some();
    // Indexes of the new table: keep the key's, defer the rest.
    let key_temp = temp_of
        .get(&orig.key_index)
        .cloned()
        .expect("the key index was copied");
    let mut new_indexes = Vec::new();
    let mut kept_key = false;
    for idx in indexes(tx, made.oid).await? {
        let temp = ident(&idx.name)?;
        let copied_from = temp_of.iter().find(|(_, t)| **t == temp).map(|(o, _)| *o);
        let final_name = match copied_from {
            Some(o) => ident(
                &orig
                    .indexes
                    .iter()
                    .find(|i| i.oid == o)
                    .expect("known")
                    .name,
            )?,
            // Added by the change: the name PostgreSQL chose on the shadow, said of the table.
            None => match idx.name.strip_prefix(shadow.name.as_str()) {
                Some(rest) => ident(&format!("{}{rest}", table.name.as_str()))?,
                None => temp.clone(),
            },
        };
        let is_key = temp == key_temp;
        kept_key |= is_key;
        let constraint = match &idx.constraint {
            Some((_, t, ..)) if t == "x" => {
                return Err(EngineError::refused(
                    format!("{name} has an exclusion constraint, which tandem cannot build without blocking writes"),
                    "drop it for the migration, or use a maintenance window",
                ))
            }
            // An index-backed constraint shares its index's name (renaming one renames both).
            Some((_, t, deferrable, deferred)) => Some(IndexConstraint {
                name: final_name.clone(),
                primary: t == "p",
                deferrable: *deferrable,
                deferred: *deferred,
                // A partitioned table cannot take a constraint `USING INDEX`: the shadow's
                // is added whole when its index is built.
                definition: if partitioned {
                    Some(constraint_definition(tx, shadow, &temp).await?)
                } else {
                    None
                },
            }),
            None => None,
        };
        // Give an added index a temporary name too, so it cannot collide at cutover.
        let temp = if copied_from.is_none() {
            let t = shadow::shadow_index(m.id, oid, 1000 + new_indexes.len());
            tx.batch_execute(&format!(
                "ALTER INDEX {}.{} RENAME TO {t}",
                shadow.schema,
                ident(&idx.name)?
            ))
            .await
            .map_err(EngineError::sql("name the shadow's indexes"))?;
            t
        } else {
            temp
        };
        let definition: String = tx
            .query_one(
                "SELECT pg_get_indexdef(to_regclass($1))",
                &[&format!("{}.{temp}", shadow.schema)],
            )
            .await
            .map_err(EngineError::sql("read the shadow's index"))?
            .get(0);
        // A partitioned table's index reads `ON ONLY` (the root's alone, left invalid until
        // each partition's is attached): built from the definition, it must reach every
        // partition. The names before it are tandem's.
        let definition = match partitioned {
            true => definition.replacen(" ON ONLY ", " ON ", 1),
            false => definition,
        };
        // The log method copies into a shadow without any index (built after, sorted).
        let deferred = !is_key || copy == CopyMethod::Log;
        if deferred {
            // The constraint was renamed with its index.
            let drop = match &idx.constraint {
                Some(_) => format!("ALTER TABLE {shadow} DROP CONSTRAINT {temp}"),
                None => format!("DROP INDEX {}.{temp}", shadow.schema),
            };
            tx.batch_execute(&drop)
                .await
                .map_err(EngineError::sql("defer the shadow's index"))?;
        }
        let comment = match copied_from {
            Some(o) => carry::index_comment(tx, o).await?,
            None => None,
        };
        new_indexes.push(NewIndex {
            definition,
            temp_name: temp,
            final_name,
            deferred,
            key: is_key,
            constraint,
            comment,
        });
    }
    if !kept_key {
        return Err(EngineError::refused(
            format!("the change removes the key index of {name}"),
            "keep the key, or add another primary key first",
        ));
    }
    Ok(new_indexes)
}

/// The original's indexes and the names they are parked under while the new table is live.
pub(super) fn old_indexes(
    m: &Migration,
    orig: &Original<'_>,
) -> Result<Vec<IndexPair>, EngineError> {
    orig.indexes
        .iter()
        .enumerate()
        .map(|(n, i)| {
            Ok(IndexPair {
                name: ident(&i.name)?,
                parked: shadow::parked_index(m.id, orig.oid, n),
            })
        })
        .collect()
}
