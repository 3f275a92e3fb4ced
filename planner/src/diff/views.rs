//! Views and materialized views: create, drop, `CREATE OR REPLACE` when the columns only
//! append, and the drop-before / re-create-after of views that read a table or column the
//! diff drops or retypes (PostgreSQL refuses those changes while a view uses them).
//!
//! A view that must be replaced for its own sake (a materialized view whose query changes,
//! a view whose columns change) and that no other view reads, and that reads no function or
//! type the diff changes (those go first, and the old view must not outlive them), is built **beside** under a
//! temporary name, with its indexes, and swapped in by rename in one short transaction: its
//! readers never find it missing. The drop + re-create that remains (views over a retyped
//! column, views other views read) is stated by the plan as what clients see.

use std::collections::BTreeSet;

use super::children::beside_name;
use super::order::{Draft, Rank};
use super::sql::{concurrently, ident, plain, sibling, view_body};
use super::types::comment;
use super::{ChangeKind, Cx};
use crate::ident::QualName;
use crate::model::View;

fn kind_word(v: &View) -> &'static str {
    if v.materialized {
        "materialized view"
    } else {
        "view"
    }
}

fn kind_sql(v: &View) -> &'static str {
    if v.materialized {
        "MATERIALIZED VIEW"
    } else {
        "VIEW"
    }
}

/// `CREATE [MATERIALIZED] VIEW name AS body`: how the diff creates a view (and what the plan
/// compares a re-creation with, `plan/carry.rs`).
pub(crate) fn create_sql(v: &View) -> String {
    format!(
        "CREATE {} {} AS\n{}",
        kind_sql(v),
        v.name,
        view_body(&v.definition)
    )
}

pub(crate) fn diff_views(cx: &mut Cx) {
    // Live views that must go away before the table changes (and come back after, if wanted).
    let mut forced: BTreeSet<QualName> = BTreeSet::new();
    for table in &cx.disturbed {
        forced.extend(cx.from.dependent_views(table).into_iter().cloned());
    }
    // Views replaced by drop + create take the views that read them along.
    let mut replaced: BTreeSet<QualName> = forced.clone();
    for (name, live) in &cx.from.views {
        if let Some(v) = cx.to.views.get(name) {
            if needs_recreate(live, v) {
                replaced.insert(name.clone());
            }
        }
    }
    for name in replaced.clone() {
        replaced.extend(cx.from.dependent_views(&name).into_iter().cloned());
    }
    let beside: BTreeSet<QualName> = replaced
        .iter()
        .filter(|name| {
            !forced.contains(*name)
                && cx.from.dependent_views(name).is_empty()
                && !cx.to.views.values().any(|w| w.depends_on.contains(*name))
                && cx
                    .to
                    .views
                    .get(*name)
                    .zip(cx.from.views.get(*name))
                    .is_some_and(|(v, l)| {
                        v.materialized == l.materialized
                            && !reads_changed_routine_or_type(cx, &l.definition)
                    })
        })
        .cloned()
        .collect();

    let mut drop_ids = std::collections::BTreeMap::new();
    for (name, live) in &cx.from.views {
        if cx.to.views.contains_key(name) && !replaced.contains(name) || beside.contains(name) {
            continue;
        }
        let object = format!("{} {}", kind_word(live), plain(name));
        let id = cx.out.push(
            Rank::DropView,
            Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                .sql(format!("DROP {} {name}", kind_sql(live))),
        );
        drop_ids.insert(name.clone(), id);
    }
    // A view is dropped before the views it reads.
    for (name, live) in &cx.from.views {
        for dep in &live.depends_on {
            if let (Some(&a), Some(&b)) = (drop_ids.get(name), drop_ids.get(dep)) {
                cx.out.before(a, b);
            }
        }
    }

    for (name, v) in &cx.to.views {
        let live = cx.from.views.get(name);
        let object = format!("{} {}", kind_word(v), plain(name));
        if beside.contains(name) {
            replace_beside(cx, v);
            continue;
        }
        let fresh = live.is_none() || replaced.contains(name);
        let id = if fresh {
            cx.out.push(
                Rank::View,
                Draft::new(
                    ChangeKind::Create,
                    object.clone(),
                    format!("create {object}"),
                )
                .sql(create_sql(v)),
            )
        } else if live.is_some_and(|l| view_body(&l.definition) != view_body(&v.definition)) {
            cx.out.push(
                Rank::View,
                Draft::new(
                    ChangeKind::Alter,
                    object.clone(),
                    format!("replace {object}"),
                )
                .sql(format!(
                    "CREATE OR REPLACE VIEW {name} AS\n{}",
                    view_body(&v.definition)
                )),
            )
        } else {
            None
        };
        cx.out.provide(id, format!("view {}", plain(name)));
        for dep in &v.depends_on {
            cx.out.need(id, format!("view {}", plain(dep)));
            cx.out.need(id, format!("table {}", plain(dep)));
        }
        let live = live.filter(|_| !fresh);
        view_indexes(cx, live, v);
        let target = format!("{} {name}", kind_sql(v));
        comment(
            cx,
            &object,
            &target,
            None,
            live.and_then(|l| l.comment.as_deref()),
            v.comment.as_deref(),
        );
    }
}

/// A view replaced beside: `CREATE [MATERIALIZED] VIEW <name>_tandem_new`, its indexes under
/// temporary names, then one transaction drops the old view and renames the new one and its
/// indexes into place.
fn replace_beside(cx: &mut Cx, v: &View) {
    let name = &v.name;
    let object = format!("{} {}", kind_word(v), plain(name));
    let temp = sibling(name, &beside_name(name.name.as_str()));
    let built = cx.out.push(
        Rank::View,
        Draft::new(
            ChangeKind::Create,
            format!("{} {}", kind_word(v), plain(&temp)),
            format!(
                "build the new {object} beside the old one, as {}",
                temp.name.as_str()
            ),
        )
        .sql(format!(
            "CREATE {} {temp} AS\n{}",
            kind_sql(v),
            view_body(&v.definition)
        )),
    );
    for dep in &v.depends_on {
        cx.out.need(built, format!("view {}", plain(dep)));
        cx.out.need(built, format!("table {}", plain(dep)));
    }
    let mut renames = Vec::new();
    for i in v.indexes.values() {
        let (Some((head, _)), Some(using)) = (
            i.definition.split_once(" INDEX "),
            i.definition.find(" USING ").map(|at| &i.definition[at..]),
        ) else {
            continue;
        };
        let itemp = beside_name(&i.name);
        let id = cx.out.push(
            Rank::ViewIndex,
            Draft::new(
                ChangeKind::Create,
                format!("index {}.{itemp}", name.schema.as_str()),
                format!("build index {} of the new {object}", i.name),
            )
            .sql(format!("{head} INDEX {} ON {temp}{using}", ident(&itemp))),
        );
        cx.out.before(built, id);
        renames.push(format!(
            "ALTER INDEX {} RENAME TO {}",
            sibling(name, &itemp),
            ident(&i.name)
        ));
    }
    let mut swap = Draft::new(
        ChangeKind::Alter,
        object.clone(),
        format!("swap the new {object} in for the old one"),
    )
    .sql(format!("DROP {} {name}", kind_sql(v)))
    .sql(format!(
        "ALTER {} {temp} RENAME TO {}",
        kind_sql(v),
        name.name
    ));
    for r in renames {
        swap = swap.sql(r);
    }
    let id = cx.out.push(Rank::SwapView, swap);
    cx.out.provide(id, format!("view {}", plain(name)));
    let target = format!("{} {name}", kind_sql(v));
    comment(cx, &object, &target, None, None, v.comment.as_deref());
    for i in v.indexes.values() {
        let index = sibling(name, &i.name);
        comment(
            cx,
            &format!("index {}", plain(&index)),
            &format!("INDEX {index}"),
            None,
            None,
            i.comment.as_deref(),
        );
    }
}

/// Whether a view body names a function or a type that the diff changes or drops (a
/// conservative test on the text: the name followed by `(`, or the type's name).
fn reads_changed_routine_or_type(cx: &Cx, body: &str) -> bool {
    let routines = cx
        .from
        .functions
        .iter()
        .filter(|(k, f)| cx.to.functions.get(*k) != Some(*f))
        .any(|(_, f)| body.contains(&format!("{}(", f.name)));
    let types = cx
        .from
        .enums
        .iter()
        .filter(|(k, t)| cx.to.enums.get(*k) != Some(*t))
        .map(|(k, _)| k)
        .chain(
            cx.from
                .domains
                .iter()
                .filter(|(k, t)| cx.to.domains.get(*k) != Some(*t))
                .map(|(k, _)| k),
        )
        .chain(
            cx.from
                .composites
                .iter()
                .filter(|(k, t)| cx.to.composites.get(*k) != Some(*t))
                .map(|(k, _)| k),
        )
        .any(|k| body.contains(k.name.as_str()));
    routines || types
}

/// Whether the view cannot be changed by `CREATE OR REPLACE VIEW`: materialized, or its
/// columns do not only append to the live ones.
fn needs_recreate(live: &View, v: &View) -> bool {
    if live.materialized != v.materialized {
        return true;
    }
    if view_body(&live.definition) == view_body(&v.definition) && live.columns == v.columns {
        return false;
    }
    v.materialized || !v.columns.starts_with(&live.columns)
}

/// Indexes of a materialized view (`live` is `None` when the view is created by this diff).
fn view_indexes(cx: &mut Cx, live: Option<&View>, v: &View) {
    let name = &v.name;
    if let Some(live) = live {
        for i in live.indexes.values() {
            if v.indexes
                .get(&i.name)
                .is_some_and(|d| d.definition == i.definition && i.valid)
            {
                continue;
            }
            let index = sibling(name, &i.name);
            let object = format!("index {}", plain(&index));
            cx.out.push(
                Rank::DropIndex,
                Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                    .sql(format!("DROP INDEX CONCURRENTLY {index}"))
                    .non_transactional(),
            );
        }
    }
    for i in v.indexes.values() {
        let index = sibling(name, &i.name);
        let object = format!("index {}", plain(&index));
        let old = live
            .and_then(|l| l.indexes.get(&i.name))
            .filter(|o| o.definition == i.definition && o.valid);
        if old.is_none() {
            let draft = Draft::new(
                ChangeKind::Create,
                object.clone(),
                format!("create index {} on {}", i.name, plain(name)),
            );
            let draft = match live {
                None => draft.sql(i.definition.clone()),
                Some(_) => draft.sql(concurrently(&i.definition)).non_transactional(),
            };
            let id = cx.out.push(Rank::ViewIndex, draft);
            cx.out.need(id, format!("view {}", plain(name)));
        }
        let target = format!("INDEX {index}");
        comment(
            cx,
            &object,
            &target,
            None,
            old.and_then(|o| o.comment.as_deref()),
            i.comment.as_deref(),
        );
    }
}
