//! What hangs off a table: constraints, indexes, triggers and policies.
//!
//! On existing tables everything is added the online way: indexes `CONCURRENTLY`, CHECK and
//! FOREIGN KEY as `NOT VALID` then `VALIDATE`, primary keys and unique constraints over an
//! index built concurrently (`ADD CONSTRAINT .. USING INDEX`). On tables created by the same
//! plan, plain statements. Objects a partition inherits from its parent are left to the parent.
//!
//! A changed CHECK or FOREIGN KEY, and a changed non-unique index, are built **beside** the
//! old one under a temporary name and take its place at the end (drop + rename), so at no point
//! between two steps is the table unprotected or its queries without the index. Dropping first
//! and re-creating last, as a naive diff does, opens a window as long as everything between
//! (hours when a shadow migration runs in between).

use std::collections::BTreeSet;

use super::order::{Draft, Rank};
use super::sql::{concurrently, ident, index_shape, mentions, plain, sibling, strip_not_valid};
use super::tables::is_key;
use super::types::comment;
use super::{ChangeKind, Cx};
use crate::ident::QualName;
use crate::model::{Constraint, ConstraintKind, Index, Policy, Table, Trigger};

/// Whether CREATE TABLE writes the constraint inline (else it is added right after).
pub(crate) fn inline_in_create(c: &Constraint, t: &Table) -> bool {
    t.partition_of.is_none() && c.validated && !matches!(c.kind, ConstraintKind::ForeignKey(_))
}

fn parent<'a>(schema: &'a crate::model::Schema, t: &Table) -> Option<&'a Table> {
    t.partition_of
        .as_ref()
        .and_then(|(p, _)| schema.tables.get(p))
}

fn inherited_constraint(c: &Constraint, parent: Option<&Table>) -> bool {
    parent.is_some_and(|p| {
        p.constraints
            .values()
            .any(|pc| pc.definition == c.definition)
    })
}

fn inherited_index(i: &Index, parent: Option<&Table>) -> bool {
    parent.is_some_and(|p| {
        p.indexes
            .values()
            .any(|pi| index_shape(&pi.definition) == index_shape(&i.definition))
    })
}

fn inherited_trigger(t: &Trigger, parent: Option<&Table>) -> bool {
    parent.is_some_and(|p| p.triggers.contains_key(&t.name))
}

/// Live columns of `table` this diff drops.
fn gone_columns<'a>(cx: &'a Cx, table: &QualName) -> Vec<&'a str> {
    cx.dropped_columns
        .iter()
        .filter(|(t, _)| t == table)
        .map(|(_, c)| c.as_str())
        .collect()
}

/// A live constraint that stays as it is (same definition, nothing it uses dropped).
fn constraint_kept(cx: &Cx, live: &Table, c: &Constraint, desired: &Table) -> bool {
    let gone = gone_columns(cx, &live.name);
    desired
        .constraints
        .get(&c.name)
        .is_some_and(|d| strip_not_valid(&d.definition) == strip_not_valid(&c.definition))
        && !gone.iter().any(|g| mentions(&c.definition, g))
}

fn index_kept(cx: &Cx, live: &Table, i: &Index, desired: &Table) -> bool {
    let gone = gone_columns(cx, &live.name);
    i.valid
        && desired
            .indexes
            .get(&i.name)
            .is_some_and(|d| d.definition == i.definition)
        && !gone.iter().any(|g| mentions(&i.definition, g))
}

/// Whether any key a foreign key could reference (primary key, unique constraint, unique
/// index) of this kept table is dropped or rebuilt.
pub(crate) fn keys_rebuilt(cx: &Cx, live: &Table, desired: &Table) -> bool {
    live.constraints.values().any(|c| {
        is_key(&c.kind)
            && !constraint_kept(cx, live, c, desired)
            && !replaceable_key(cx, live, c, desired)
    }) || live.indexes.values().any(|i| {
        i.unique && !index_kept(cx, live, i, desired) && !replaceable_index(cx, live, i, desired)
    })
}

/// Whether a foreign key of the live schema references exactly these columns of `table`
/// (PostgreSQL then ties it to the key's index, which cannot be dropped under it).
fn referenced_as_key(cx: &Cx, table: &QualName, columns: &[String]) -> bool {
    let wanted: BTreeSet<&String> = columns.iter().collect();
    cx.from.tables.values().any(|t| {
        t.constraints.values().any(|c| match &c.kind {
            ConstraintKind::ForeignKey(fk) => {
                &fk.references == table
                    && fk.referenced_columns.iter().collect::<BTreeSet<_>>() == wanted
            }
            _ => false,
        })
    })
}

/// A live PRIMARY KEY or UNIQUE constraint whose definition changes (same name, same kind),
/// on a plain table that stays, using no column the diff drops: its new index is built
/// beside, concurrently, and one short transaction swaps the constraints, so the table is
/// never without the guarantee. When foreign keys reference it, they must be able to follow
/// it in that transaction (`following_fks`).
fn replaceable_key(cx: &Cx, live: &Table, old: &Constraint, desired: &Table) -> bool {
    replaceable_key_alone(cx, live, old, desired)
        && (!referenced_as_key(cx, &live.name, key_of(old))
            || following_fks(cx, live, old, desired).is_some())
}

/// The columns of a primary key or unique constraint (empty for other kinds).
fn key_of(c: &Constraint) -> &[String] {
    match &c.kind {
        ConstraintKind::PrimaryKey { columns } | ConstraintKind::Unique { columns } => columns,
        _ => &[],
    }
}

/// `replaceable_key` without regard to the foreign keys that reference the key.
fn replaceable_key_alone(cx: &Cx, live: &Table, old: &Constraint, desired: &Table) -> bool {
    let gone = gone_columns(cx, &live.name);
    is_key(&old.kind)
        && live.partition_of.is_none()
        && live.partition_key.is_none()
        && desired.partition_of.is_none()
        && desired.partition_key.is_none()
        && desired.constraints.get(&old.name).is_some_and(|new| {
            std::mem::discriminant(&new.kind) == std::mem::discriminant(&old.kind)
                && strip_not_valid(&new.definition) != strip_not_valid(&old.definition)
                && key_index(&desired.name, new, &beside_name(&new.name)).is_some()
        })
        && !gone.iter().any(|g| mentions(&old.definition, g))
}

/// The foreign keys that reference the key `old` (by its columns), when all of them can
/// follow it through the swap: dropped and re-added `NOT VALID` in the swap's transaction,
/// then validated. The rows they hold were checked by the old ones and every write is
/// checked by the new ones, so no orphan can slip in between. `None` when one of them cannot
/// (its table goes or is partitioned, it changes or loses a column, the key changes its
/// columns) or another key of the table is rebuilt, which re-creates them anyway.
fn following_fks<'a>(
    cx: &'a Cx,
    live: &Table,
    old: &Constraint,
    desired: &Table,
) -> Option<Vec<(&'a QualName, &'a Constraint)>> {
    let columns: BTreeSet<&String> = key_of(old).iter().collect();
    let new = desired.constraints.get(&old.name)?;
    if key_of(new).iter().collect::<BTreeSet<_>>() != columns {
        return None;
    }
    let others_stay = live.constraints.values().all(|c| {
        c.name == old.name
            || !is_key(&c.kind)
            || constraint_kept(cx, live, c, desired)
            || (replaceable_key_alone(cx, live, c, desired)
                && !referenced_as_key(cx, &live.name, key_of(c)))
    }) && live.indexes.values().all(|i| {
        !i.unique || index_kept(cx, live, i, desired) || replaceable_index(cx, live, i, desired)
    });
    if !others_stay {
        return None;
    }
    let mut out = Vec::new();
    for (name, t) in &cx.from.tables {
        for c in t.constraints.values() {
            let ConstraintKind::ForeignKey(fk) = &c.kind else {
                continue;
            };
            if fk.references != live.name
                || fk.referenced_columns.iter().collect::<BTreeSet<_>>() != columns
            {
                continue;
            }
            let stays = cx.to.tables.get(name).is_some_and(|d| {
                // PostgreSQL refuses NOT VALID foreign keys on partitioned tables.
                t.partition_key.is_none()
                    && t.partition_of.is_none()
                    && d.partition_key.is_none()
                    && d.partition_of.is_none()
                    && constraint_kept(cx, t, c, d)
            });
            if !stays {
                return None;
            }
            out.push((name, c));
        }
    }
    Some(out)
}

pub(crate) fn diff_children(
    cx: &mut Cx,
    live: Option<&Table>,
    desired: &Table,
    forced_fks: &BTreeSet<(QualName, String)>,
) {
    diff_constraints(cx, live, desired, forced_fks);
    diff_indexes(cx, live, desired);
    diff_triggers(cx, live, desired);
    super::rules::diff_rules(cx, live, desired);
    diff_policies(cx, live, desired);
}

fn diff_constraints(
    cx: &mut Cx,
    live: Option<&Table>,
    desired: &Table,
    forced_fks: &BTreeSet<(QualName, String)>,
) {
    let name = &desired.name;
    let mut kept = BTreeSet::new();
    if let Some(live) = live {
        let live_parent = parent(cx.from, live);
        for c in live.constraints.values() {
            if inherited_constraint(c, live_parent) {
                continue;
            }
            let forced = forced_fks.contains(&(name.clone(), c.name.clone()));
            if constraint_kept(cx, live, c, desired) && !forced {
                kept.insert(c.name.clone());
                continue;
            }
            if !forced
                && (replaceable_constraint(cx, live, c, desired)
                    || replaceable_key(cx, live, c, desired)
                    || replaceable_exclusion(cx, live, c, desired))
            {
                // Built beside and swapped in below: the old one stays until then.
                continue;
            }
            let object = format!("constraint {}.{}", plain(name), c.name);
            let rank = if matches!(c.kind, ConstraintKind::ForeignKey(_)) {
                Rank::DropForeignKey
            } else {
                Rank::DropConstraint
            };
            cx.out.push(
                rank,
                Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                    .table(name)
                    .sql(format!(
                        "ALTER TABLE {name} DROP CONSTRAINT {}",
                        ident(&c.name)
                    )),
            );
        }
    }
    let desired_parent = parent(cx.to, desired);
    for c in desired.constraints.values() {
        if inherited_constraint(c, desired_parent) {
            continue;
        }
        let object = format!("constraint {}.{}", plain(name), c.name);
        let old = live
            .and_then(|l| l.constraints.get(&c.name))
            .filter(|_| kept.contains(&c.name));
        match old {
            Some(old) => {
                if c.validated && !old.validated {
                    validate(cx, name, &c.name);
                }
            }
            None => match live.and_then(|l| {
                l.constraints
                    .get(&c.name)
                    .filter(|_| !forced_fks.contains(&(name.clone(), c.name.clone())))
                    .map(|old| {
                        (
                            replaceable_constraint(cx, l, old, desired),
                            replaceable_key(cx, l, old, desired),
                            replaceable_exclusion(cx, l, old, desired),
                        )
                    })
            }) {
                Some((true, _, _)) => replace_constraint_beside(cx, desired, c),
                Some((_, _, true)) => replace_exclusion(cx, desired, c),
                Some((_, true, _)) => {
                    if let Some(live) = live {
                        replace_key_beside(cx, live, desired, c);
                    }
                }
                _ => add_constraint(cx, desired, c, live.is_none()),
            },
        }
        let target = format!("CONSTRAINT {} ON {name}", ident(&c.name));
        comment(
            cx,
            &object,
            &target,
            Some(name),
            old.and_then(|o| o.comment.as_deref()),
            c.comment.as_deref(),
        );
    }
}

/// A live CHECK or FOREIGN KEY whose definition changes, on a table that stays, using no
/// column the diff drops: it can be built beside and swapped in.
fn replaceable_constraint(cx: &Cx, live: &Table, old: &Constraint, desired: &Table) -> bool {
    let gone = gone_columns(cx, &live.name);
    live.partition_of.is_none()
        && desired.partition_of.is_none()
        && desired.constraints.get(&old.name).is_some_and(|new| {
            std::mem::discriminant(&new.kind) == std::mem::discriminant(&old.kind)
                && matches!(
                    new.kind,
                    ConstraintKind::Check | ConstraintKind::ForeignKey(_)
                )
                && strip_not_valid(&new.definition) != strip_not_valid(&old.definition)
        })
        && !gone.iter().any(|g| mentions(&old.definition, g))
}

/// A live EXCLUDE constraint whose definition changes, on a plain table that stays, using no
/// column the diff drops: replaced in one transaction (`replace_exclusion`).
fn replaceable_exclusion(cx: &Cx, live: &Table, old: &Constraint, desired: &Table) -> bool {
    let gone = gone_columns(cx, &live.name);
    matches!(old.kind, ConstraintKind::Exclusion)
        && live.partition_of.is_none()
        && live.partition_key.is_none()
        && desired.partition_key.is_none()
        && desired.constraints.get(&old.name).is_some_and(|new| {
            matches!(new.kind, ConstraintKind::Exclusion) && new.definition != old.definition
        })
        && !gone.iter().any(|g| mentions(&old.definition, g))
}

/// A changed EXCLUDE constraint. PostgreSQL can neither build one concurrently, nor add one
/// NOT VALID, nor adopt an index for it, so any change holds ACCESS EXCLUSIVE while its index
/// is built. Dropping the old one and adding the new one in that same transaction at least
/// leaves no moment in which conflicting rows could be written.
fn replace_exclusion(cx: &mut Cx, t: &Table, c: &Constraint) {
    let name = &t.name;
    let object = format!("constraint {}.{}", plain(name), c.name);
    let cname = ident(&c.name);
    cx.out.push(
        Rank::AddConstraint,
        Draft::new(
            ChangeKind::Alter,
            object.clone(),
            format!("replace {object} in one transaction (an exclusion constraint cannot be built concurrently: reads and writes wait for its index to be built)"),
        )
        .table(name)
        .sql(format!("ALTER TABLE {name} DROP CONSTRAINT {cname}"))
        .sql(format!("ALTER TABLE {name} ADD CONSTRAINT {cname} {}", c.definition)),
    );
}

/// The temporary name of an object built beside `name`: `name` + `_tandem_new`, shortened to
/// fit PostgreSQL's 63 bytes (on a character boundary).
pub(crate) fn beside_name(name: &str) -> String {
    const SUFFIX: &str = "_tandem_new";
    let mut head = name;
    while head.len() + SUFFIX.len() > 63 {
        let mut end = head.len() - 1;
        while !head.is_char_boundary(end) {
            end -= 1;
        }
        head = &head[..end];
    }
    format!("{head}{SUFFIX}")
}

/// A changed CHECK or FOREIGN KEY: added NOT VALID under a temporary name, validated (when
/// the desired one is), then swapped for the old one in one short transaction.
fn replace_constraint_beside(cx: &mut Cx, t: &Table, c: &Constraint) {
    let name = &t.name;
    let object = format!("constraint {}.{}", plain(name), c.name);
    let temp = beside_name(&c.name);
    let tname = ident(&temp);
    let rank = match c.kind {
        ConstraintKind::ForeignKey(_) => Rank::AddForeignKey,
        _ => Rank::AddConstraint,
    };
    let add = cx.out.push(
        rank,
        Draft::new(
            ChangeKind::Create,
            format!("constraint {}.{temp}", plain(name)),
            format!("build the new {object} beside the old one, as {temp}, without checking existing rows"),
        )
        .table(name)
        .sql(format!(
            "ALTER TABLE {name} ADD CONSTRAINT {tname} {} NOT VALID",
            strip_not_valid(&c.definition)
        )),
    );
    if let ConstraintKind::ForeignKey(fk) = &c.kind {
        cx.out.need(add, format!("table {}", plain(&fk.references)));
        cx.out.need(add, format!("keys {}", plain(&fk.references)));
    }
    for col in key_columns(c) {
        cx.out.need(add, format!("column {}.{col}", plain(name)));
    }
    if c.validated {
        validate(cx, name, &temp);
    }
    swap_constraint(
        cx,
        name,
        &c.name,
        format!(
            "ALTER TABLE {name} RENAME CONSTRAINT {tname} TO {}",
            ident(&c.name)
        ),
    );
}

/// The step that drops the old constraint `constraint` and, in the same transaction, lets the
/// one built beside take its place with `take_place`.
fn swap_constraint(
    cx: &mut Cx,
    table: &QualName,
    constraint: &str,
    take_place: String,
) -> Option<usize> {
    let object = format!("constraint {}.{constraint}", plain(table));
    cx.out.push(
        Rank::SwapConstraint,
        Draft::new(
            ChangeKind::Alter,
            object.clone(),
            format!("swap the new {object} in for the old one"),
        )
        .table(table)
        .sql(format!(
            "ALTER TABLE {table} DROP CONSTRAINT {}",
            ident(constraint)
        ))
        .sql(take_place),
    )
}

/// A changed PRIMARY KEY or UNIQUE constraint: its new index built concurrently under a
/// temporary name, then one short transaction drops the old constraint and adds the new one
/// over that index (`USING INDEX`, which takes the constraint's name). The old guarantee
/// holds until the new one does. Foreign keys that reference the key follow it in that
/// transaction: dropped first, re-added `NOT VALID` last, validated after.
fn replace_key_beside(cx: &mut Cx, live: &Table, t: &Table, c: &Constraint) {
    let name = &t.name;
    let object = format!("constraint {}.{}", plain(name), c.name);
    let temp = beside_name(&c.name);
    let Some((index_sql, using)) = key_index(name, c, &temp) else {
        return;
    };
    let fks: Vec<(QualName, String, String, bool)> = match live.constraints.get(&c.name) {
        Some(old) if referenced_as_key(cx, &live.name, key_of(old)) => {
            following_fks(cx, live, old, t)
                .unwrap_or_default()
                .into_iter()
                .map(|(table, fk)| {
                    // Validated after the swap when the desired schema has it valid (a
                    // VALIDATE the diff plans for it runs before the swap re-adds it).
                    let validated = cx
                        .to
                        .tables
                        .get(table)
                        .and_then(|d| d.constraints.get(&fk.name))
                        .is_some_and(|d| d.validated);
                    (
                        table.clone(),
                        fk.name.clone(),
                        strip_not_valid(&fk.definition).to_string(),
                        validated,
                    )
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let build = cx.out.push(
        Rank::CreateIndex,
        Draft::new(
            ChangeKind::Create,
            format!("index {}", plain(&sibling(name, &temp))),
            format!(
                "build the index of the new {object} concurrently beside the old one, as {temp}"
            ),
        )
        .table(name)
        .sql(index_sql)
        .non_transactional(),
    );
    for col in key_columns(c) {
        cx.out.need(build, format!("column {}.{col}", plain(name)));
    }
    let description = if fks.is_empty() {
        format!("swap the new {object} in for the old one")
    } else {
        let names: Vec<String> = fks
            .iter()
            .map(|(table, fk, _, _)| format!("{}.{fk}", plain(table)))
            .collect();
        format!(
            "swap the new {object} in for the old one, with the foreign keys that reference it re-added NOT VALID in the same transaction ({})",
            names.join(", ")
        )
    };
    let mut draft = Draft::new(ChangeKind::Alter, object, description).table(name);
    for (table, fk, _, _) in &fks {
        draft = draft.sql(format!("ALTER TABLE {table} DROP CONSTRAINT {}", ident(fk)));
    }
    draft = draft
        .sql(format!(
            "ALTER TABLE {name} DROP CONSTRAINT {}",
            ident(&c.name)
        ))
        .sql(format!(
            "ALTER TABLE {name} ADD CONSTRAINT {} {using}",
            ident(&c.name)
        ));
    for (table, fk, definition, _) in &fks {
        draft = draft.sql(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {definition} NOT VALID",
            ident(fk)
        ));
    }
    let swap = cx.out.push(Rank::SwapConstraint, draft);
    cx.out.before(build, swap);
    cx.out.provide(swap, format!("keys {}", plain(name)));
    for (table, fk, _, validated) in &fks {
        if *validated {
            validate_at(cx, Rank::ValidateFollowers, table, fk);
        }
    }
}

fn validate(cx: &mut Cx, table: &QualName, constraint: &str) {
    validate_at(cx, Rank::Validate, table, constraint);
}

fn validate_at(cx: &mut Cx, rank: Rank, table: &QualName, constraint: &str) {
    let object = format!("constraint {}.{constraint}", plain(table));
    cx.out.push(
        rank,
        Draft::new(
            ChangeKind::Alter,
            object.clone(),
            format!("validate {object}"),
        )
        .table(table)
        .sql(format!(
            "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
            ident(constraint)
        )),
    );
}

fn add_constraint(cx: &mut Cx, t: &Table, c: &Constraint, fresh: bool) {
    let name = &t.name;
    let object = format!("constraint {}.{}", plain(name), c.name);
    let cname = ident(&c.name);
    let add = |def: &str| format!("ALTER TABLE {name} ADD CONSTRAINT {cname} {def}");
    let rank = match &c.kind {
        ConstraintKind::ForeignKey(_) => Rank::AddForeignKey,
        ConstraintKind::PrimaryKey { .. } | ConstraintKind::Unique { .. } => Rank::AddKey,
        ConstraintKind::Check | ConstraintKind::Exclusion => Rank::AddConstraint,
    };
    let draft = |description: String| {
        Draft::new(ChangeKind::Create, object.clone(), description).table(name)
    };
    let id = if fresh {
        if inline_in_create(c, t) {
            return;
        }
        // A new, empty table: nothing to scan, so the plain definition.
        cx.out
            .push(rank, draft(format!("add {object}")).sql(add(&c.definition)))
    } else {
        match &c.kind {
            ConstraintKind::Check | ConstraintKind::ForeignKey(_) if c.validated => {
                let id = cx.out.push(
                    rank,
                    draft(format!("add {object} without checking existing rows")).sql(add(
                        &format!("{} NOT VALID", strip_not_valid(&c.definition)),
                    )),
                );
                validate(cx, name, &c.name);
                id
            }
            ConstraintKind::PrimaryKey { .. } | ConstraintKind::Unique { .. } => {
                match key_index(name, c, &c.name) {
                    Some((index_sql, using)) => {
                        let index = sibling(name, &c.name);
                        let iid = cx.out.push(
                            Rank::CreateIndex,
                            Draft::new(
                                ChangeKind::Create,
                                format!("index {}", plain(&index)),
                                format!("build the index of {object} concurrently"),
                            )
                            .table(name)
                            .sql(index_sql)
                            .non_transactional(),
                        );
                        let id = cx.out.push(
                            rank,
                            draft(format!("add {object} using its index")).sql(add(&using)),
                        );
                        cx.out.before(iid, id);
                        id
                    }
                    None => cx
                        .out
                        .push(rank, draft(format!("add {object}")).sql(add(&c.definition))),
                }
            }
            _ => cx
                .out
                .push(rank, draft(format!("add {object}")).sql(add(&c.definition))),
        }
    };
    if is_key(&c.kind) {
        cx.out.provide(id, format!("keys {}", plain(name)));
    }
    if let ConstraintKind::ForeignKey(fk) = &c.kind {
        cx.out.need(id, format!("table {}", plain(&fk.references)));
        cx.out.need(id, format!("keys {}", plain(&fk.references)));
    }
    for col in key_columns(c) {
        cx.out.need(id, format!("column {}.{col}", plain(name)));
    }
}

fn key_columns(c: &Constraint) -> Vec<&String> {
    match &c.kind {
        ConstraintKind::PrimaryKey { columns } | ConstraintKind::Unique { columns } => {
            columns.iter().collect()
        }
        ConstraintKind::ForeignKey(fk) => fk.columns.iter().collect(),
        _ => Vec::new(),
    }
}

/// For `PRIMARY KEY (..)` / `UNIQUE [NULLS NOT DISTINCT] (..) [INCLUDE (..)] [WITH (..)]
/// [USING INDEX TABLESPACE ..] [DEFERRABLE ..]`: the `CREATE UNIQUE INDEX CONCURRENTLY`
/// statement, and the `PRIMARY KEY USING INDEX ..` definition that adopts the index.
fn key_index(table: &QualName, c: &Constraint, index: &str) -> Option<(String, String)> {
    let def = strip_not_valid(&c.definition);
    let (keyword, rest) = if let Some(r) = def.strip_prefix("PRIMARY KEY ") {
        ("PRIMARY KEY", r)
    } else {
        ("UNIQUE", def.strip_prefix("UNIQUE ")?)
    };
    let (nulls, rest) = match rest.strip_prefix("NULLS NOT DISTINCT ") {
        Some(r) => (" NULLS NOT DISTINCT", r),
        None => ("", rest),
    };
    let (body, deferrable) = match rest.find(" DEFERRABLE") {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let columns_end = paren_group_end(body)?;
    let (columns, mut tail) = body.split_at(columns_end);
    let mut include = "";
    if let Some(r) = tail.strip_prefix(" INCLUDE ") {
        let end = paren_group_end(r)?;
        include = &tail[.." INCLUDE ".len() + end];
        tail = &r[end..];
    }
    let tail = tail.replace(" USING INDEX TABLESPACE ", " TABLESPACE ");
    let index = sibling(table, index);
    let index_sql = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} USING btree {columns}{include}{nulls}{tail}",
        index.name
    );
    let using = format!("{keyword} USING INDEX {}{deferrable}", index.name);
    Some((index_sql, using))
}

/// The length of the parenthesised group `text` starts with (quotes respected).
fn paren_group_end(text: &str) -> Option<usize> {
    if !text.starts_with('(') {
        return None;
    }
    let mut depth = 0usize;
    let mut in_quote: Option<char> = None;
    for (i, ch) in text.char_indices() {
        match (in_quote, ch) {
            (Some(q), c) if c == q => in_quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => in_quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn diff_indexes(cx: &mut Cx, live: Option<&Table>, desired: &Table) {
    let name = &desired.name;
    // Partitioned tables take neither CREATE nor DROP INDEX CONCURRENTLY.
    let partitioned = desired.partition_key.is_some();
    let mut kept = BTreeSet::new();
    if let Some(live) = live {
        let live_parent = parent(cx.from, live);
        for i in live.indexes.values() {
            if inherited_index(i, live_parent) {
                continue;
            }
            if index_kept(cx, live, i, desired) {
                kept.insert(i.name.clone());
                continue;
            }
            if replaceable_index(cx, live, i, desired) {
                // Built beside and swapped in below: queries keep the old one until then.
                continue;
            }
            let index = sibling(name, &i.name);
            let object = format!("index {}", plain(&index));
            let draft =
                Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}")).table(name);
            let draft = if partitioned {
                draft.sql(format!("DROP INDEX {index}"))
            } else {
                draft
                    .sql(format!("DROP INDEX CONCURRENTLY {index}"))
                    .non_transactional()
            };
            cx.out.push(Rank::DropIndex, draft);
        }
    }
    let desired_parent = parent(cx.to, desired);
    for i in desired.indexes.values() {
        if inherited_index(i, desired_parent) {
            continue;
        }
        let index = sibling(name, &i.name);
        let object = format!("index {}", plain(&index));
        let old = live
            .and_then(|l| l.indexes.get(&i.name))
            .filter(|_| kept.contains(&i.name));
        let beside = live
            .and_then(|l| l.indexes.get(&i.name).map(|old| (l, old)))
            .is_some_and(|(l, old)| replaceable_index(cx, l, old, desired));
        if beside {
            replace_index_beside(cx, name, i);
        } else if old.is_none() {
            let draft = Draft::new(
                ChangeKind::Create,
                object.clone(),
                format!("create index {} on {}", i.name, plain(name)),
            )
            .table(name);
            let draft = if partitioned {
                // pg_get_indexdef writes `ON ONLY` for a partitioned parent: that form builds
                // no index on the partitions. The plain form builds and attaches them all.
                draft.sql(i.definition.replacen(" ON ONLY ", " ON ", 1))
            } else if live.is_none() {
                draft.sql(i.definition.clone())
            } else {
                draft.sql(concurrently(&i.definition)).non_transactional()
            };
            let id = cx.out.push(Rank::CreateIndex, draft);
            if i.unique {
                cx.out.provide(id, format!("keys {}", plain(name)));
            }
            cx.out.need(id, format!("table {}", plain(name)));
        }
        let target = format!("INDEX {index}");
        comment(
            cx,
            &object,
            &target,
            Some(name),
            old.and_then(|o| o.comment.as_deref()),
            i.comment.as_deref(),
        );
    }
}

/// A valid index of a plain table that stays, whose definition changes (unique staying unique)
/// and uses no column the diff drops: it can be built beside and swapped in. A unique index
/// a foreign key depends on cannot be dropped under it, and partitioned tables take no
/// CONCURRENTLY: those keep drop + create.
fn replaceable_index(cx: &Cx, live: &Table, old: &Index, desired: &Table) -> bool {
    let gone = gone_columns(cx, &live.name);
    // A foreign key may depend on a unique index over plain columns, without predicate.
    let backs_a_key =
        old.unique && old.predicate.is_none() && referenced_as_key(cx, &live.name, &old.keys);
    old.valid
        && !backs_a_key
        && live.partition_key.is_none()
        && desired.partition_key.is_none()
        && live.partition_of.is_none()
        && desired
            .indexes
            .get(&old.name)
            .is_some_and(|new| new.unique == old.unique && new.definition != old.definition)
        && !gone.iter().any(|g| mentions(&old.definition, g))
}

/// A changed index: built concurrently under a temporary name, then the old one dropped
/// concurrently and the new one renamed (the two serve queries in turn, never neither).
fn replace_index_beside(cx: &mut Cx, table: &QualName, i: &Index) {
    let temp = beside_name(&i.name);
    let temp_q = sibling(table, &temp);
    let old_q = sibling(table, &i.name);
    let object = format!("index {}", plain(&old_q));
    let Some(rest) = i.definition.split_once(" ON ").map(|(_, rest)| rest) else {
        return;
    };
    let build = cx.out.push(
        Rank::CreateIndex,
        Draft::new(
            ChangeKind::Create,
            format!("index {}", plain(&temp_q)),
            format!("build the new {object} concurrently beside the old one, as {temp}"),
        )
        .table(table)
        .sql(format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {rest}",
            if i.unique { "UNIQUE " } else { "" },
            ident(&temp)
        ))
        .non_transactional(),
    );
    cx.out.need(build, format!("table {}", plain(table)));
    if i.unique {
        cx.out.provide(build, format!("keys {}", plain(table)));
    }
    cx.out.push(
        Rank::DropReplacedIndex,
        Draft::new(
            ChangeKind::Drop,
            object.clone(),
            format!("drop the old {object} (the new one serves)"),
        )
        .table(table)
        .sql(format!("DROP INDEX CONCURRENTLY {old_q}"))
        .non_transactional(),
    );
    cx.out.push(
        Rank::RenameReplacedIndex,
        Draft::new(
            ChangeKind::Rename,
            object.clone(),
            format!("rename {temp} to {}", i.name),
        )
        .table(table)
        .sql(format!("ALTER INDEX {temp_q} RENAME TO {}", ident(&i.name))),
    );
}

fn enable_sql(table: &QualName, t: &Trigger) -> String {
    format!(
        "ALTER TABLE {table} {} TRIGGER {}",
        crate::model::trigger_state_clause(t.enabled),
        ident(&t.name)
    )
}

/// Whether the trigger's WHEN clause or UPDATE OF list names a column whose type changes:
/// PostgreSQL refuses the ALTER while the trigger exists ("cannot alter type of a column used
/// in a trigger definition"), so the trigger is dropped and created again around it (the
/// plan then keeps it in place: a shadow migration carries it, a brief ALTER takes the two
/// into its transaction). Read from the definition's text; a false match only costs a
/// re-creation.
fn reads_retyped_column(t: &Trigger, live: &Table, desired: &Table) -> bool {
    let def = t.definition.as_str();
    let head_end = def.find(" ON ").unwrap_or(0);
    let when = def
        .find(" WHEN (")
        .zip(def.rfind(" EXECUTE "))
        .map_or("", |(a, b)| if a < b { &def[a..b] } else { "" });
    live.columns.iter().any(|c| {
        desired
            .columns
            .iter()
            .find(|d| d.name == c.name)
            .is_some_and(|d| d.data_type != c.data_type || d.collation != c.collation)
            && (mentions(when, &c.name) || mentions(&def[..head_end], &c.name))
    })
}

fn diff_triggers(cx: &mut Cx, live: Option<&Table>, desired: &Table) {
    let name = &desired.name;
    let mut kept = BTreeSet::new();
    if let Some(live) = live {
        let live_parent = parent(cx.from, live);
        for t in live
            .triggers
            .values()
            .filter(|t| !inherited_trigger(t, live_parent))
        {
            if desired
                .triggers
                .get(&t.name)
                .is_some_and(|d| d.definition == t.definition)
                && !reads_retyped_column(t, live, desired)
            {
                kept.insert(t.name.clone());
                continue;
            }
            let object = format!("trigger {}.{}", plain(name), t.name);
            cx.out.push(
                Rank::DropTrigger,
                Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                    .table(name)
                    .sql(format!("DROP TRIGGER {} ON {name}", ident(&t.name))),
            );
        }
    }
    let desired_parent = parent(cx.to, desired);
    for t in desired
        .triggers
        .values()
        .filter(|t| !inherited_trigger(t, desired_parent))
    {
        let object = format!("trigger {}.{}", plain(name), t.name);
        let old = live
            .and_then(|l| l.triggers.get(&t.name))
            .filter(|_| kept.contains(&t.name));
        match old {
            Some(old) if old.enabled != t.enabled => {
                cx.out.push(
                    Rank::Trigger,
                    Draft::new(
                        ChangeKind::Alter,
                        object.clone(),
                        format!("change whether {object} fires"),
                    )
                    .table(name)
                    .sql(enable_sql(name, t)),
                );
            }
            Some(_) => {}
            None => {
                let mut draft = Draft::new(
                    ChangeKind::Create,
                    object.clone(),
                    format!("create {object}"),
                )
                .table(name)
                .sql(t.definition.trim_end().to_string());
                if t.enabled != 'O' {
                    draft = draft.sql(enable_sql(name, t));
                }
                cx.out.push(Rank::Trigger, draft);
            }
        }
        let target = format!("TRIGGER {} ON {name}", ident(&t.name));
        comment(
            cx,
            &object,
            &target,
            Some(name),
            old.and_then(|o| o.comment.as_deref()),
            t.comment.as_deref(),
        );
    }
}

fn roles_sql(p: &Policy) -> String {
    if p.roles.is_empty() {
        return "PUBLIC".into();
    }
    p.roles
        .iter()
        .map(|r| {
            if r == "public" {
                "PUBLIC".to_string()
            } else {
                ident(r).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn command_sql(p: &Policy) -> &'static str {
    match p.command.to_ascii_uppercase().as_str() {
        "SELECT" => "SELECT",
        "INSERT" => "INSERT",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        _ => "ALL",
    }
}

fn diff_policies(cx: &mut Cx, live: Option<&Table>, desired: &Table) {
    let name = &desired.name;
    if let Some(live) = live {
        for p in live.policies.values() {
            let replace = match desired.policies.get(&p.name) {
                None => true,
                Some(d) => {
                    d.permissive != p.permissive
                        || command_sql(d) != command_sql(p)
                        || (p.using.is_some() && d.using.is_none())
                        || (p.with_check.is_some() && d.with_check.is_none())
                }
            };
            if replace {
                let object = format!("policy {}.{}", plain(name), p.name);
                cx.out.push(
                    Rank::DropPolicy,
                    Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                        .table(name)
                        .sql(format!("DROP POLICY {} ON {name}", ident(&p.name))),
                );
            }
        }
    }
    for p in desired.policies.values() {
        let object = format!("policy {}.{}", plain(name), p.name);
        let pname = ident(&p.name);
        let old = live.and_then(|l| l.policies.get(&p.name));
        let alterable = old.filter(|o| {
            o.permissive == p.permissive
                && command_sql(o) == command_sql(p)
                && !(o.using.is_some() && p.using.is_none())
                && !(o.with_check.is_some() && p.with_check.is_none())
        });
        match alterable {
            Some(o) if o == p => {}
            Some(o) => {
                let mut stmt = format!("ALTER POLICY {pname} ON {name}");
                if o.roles != p.roles {
                    stmt.push_str(&format!(" TO {}", roles_sql(p)));
                }
                if o.using != p.using {
                    stmt.push_str(&format!(
                        " USING ({})",
                        p.using.as_deref().unwrap_or("true")
                    ));
                }
                if o.with_check != p.with_check {
                    stmt.push_str(&format!(
                        " WITH CHECK ({})",
                        p.with_check.as_deref().unwrap_or("true")
                    ));
                }
                cx.out.push(
                    Rank::Policy,
                    Draft::new(ChangeKind::Alter, object.clone(), format!("alter {object}"))
                        .table(name)
                        .sql(stmt),
                );
            }
            None => {
                let kind = if p.permissive {
                    "PERMISSIVE"
                } else {
                    "RESTRICTIVE"
                };
                let mut stmt = format!(
                    "CREATE POLICY {pname} ON {name} AS {kind} FOR {} TO {}",
                    command_sql(p),
                    roles_sql(p)
                );
                if let Some(u) = &p.using {
                    stmt.push_str(&format!(" USING ({u})"));
                }
                if let Some(w) = &p.with_check {
                    stmt.push_str(&format!(" WITH CHECK ({w})"));
                }
                cx.out.push(
                    Rank::Policy,
                    Draft::new(
                        ChangeKind::Create,
                        object.clone(),
                        format!("create {object}"),
                    )
                    .table(name)
                    .sql(stmt),
                );
            }
        }
    }
}
