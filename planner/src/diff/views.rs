//! Views and materialized views: create, drop, `CREATE OR REPLACE` when the columns only
//! append, and the drop-before / re-create-after of views that read a table or column the
//! diff drops or retypes (PostgreSQL refuses those changes while a view uses them).

use std::collections::BTreeSet;

use super::order::{Draft, Rank};
use super::sql::{concurrently, plain, sibling, view_body};
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

    let mut drop_ids = std::collections::BTreeMap::new();
    for (name, live) in &cx.from.views {
        if cx.to.views.contains_key(name) && !replaced.contains(name) {
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
        let fresh = live.is_none() || replaced.contains(name);
        let id = if fresh {
            cx.out.push(
                Rank::View,
                Draft::new(
                    ChangeKind::Create,
                    object.clone(),
                    format!("create {object}"),
                )
                .sql(format!(
                    "CREATE {} {name} AS\n{}",
                    kind_sql(v),
                    view_body(&v.definition)
                )),
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
