//! Views, rules and triggers in the way of a step that retypes or drops a column they read.
//! PostgreSQL refuses the ALTER while a view or a rule reads the column, or while a trigger
//! names it in its WHEN clause or UPDATE OF list, so the diff drops them before the step and
//! creates them again after it. Between the two, every query on the views fails and the
//! trigger or rule does not fire. This pass closes that window wherever the step allows it:
//!
//! - a **shadow** step carries them to the new table in its own swap transaction (the engine
//!   re-points a table's views, views on views included, and re-creates its triggers, as it
//!   carries grants and foreign keys): the drops go, and so do the re-creations that would
//!   give back the definitions they have now. Those whose definition changes as well are
//!   replaced after the step, all in one transaction;
//! - a brief **online** step that runs in a transaction (a binary-coercible retype, a DROP
//!   COLUMN) takes the drops and the re-creations into that transaction: clients wait for
//!   its lock for a moment and never find a view missing or a trigger not firing.
//!
//! Materialized views take part too, with the steps that create their indexes and set their
//! comment. A shadow step carries one that reads the table itself, that no view reads and
//! that the plan gives back as it is: the executor builds it again over the new table right
//! after the swap and swaps it in by rename (`engine::shadow::matviews`).
//!
//! Anything else (a materialized view that changes, a step that cannot run in a
//! transaction, other changes between the drops and the re-creations) keeps the drops, which
//! `state_exposures` then reports.

use std::collections::{BTreeMap, BTreeSet};

use crate::diff::{create_view_sql, plain};
use crate::finding::Lock;
use crate::ident::{Literal, QualName};
use crate::model::Schema;
use crate::plan::{Estimate, Step, Strategy};

/// For each step number before the pass, its number after it (0: the step is gone).
pub(super) type Numbers = Vec<usize>;

/// An object the diff drops and creates again: a plain view, a materialized view, or a
/// table's trigger.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Object<'a> {
    View(&'a QualName),
    MatView(&'a QualName),
    Trigger(&'a QualName, &'a str),
    /// A table's rule: folded into a brief online step's transaction, never carried across
    /// a shadow step (the executor refuses tables with rules; the plan states the window).
    Rule(&'a QualName, &'a str),
}

/// Where the diff drops an object and where it creates it again (and, for a materialized
/// view, the steps after that create its indexes and set its comment).
#[derive(Clone)]
struct Span {
    drop: usize,
    create: usize,
    extras: Vec<usize>,
}

impl Span {
    fn steps(&self) -> impl Iterator<Item = usize> + '_ {
        [self.drop, self.create]
            .into_iter()
            .chain(self.extras.iter().copied())
    }

    fn last(&self) -> usize {
        self.extras.iter().copied().fold(self.create, usize::max)
    }
}

/// Close the windows the diff's drops open (module doc). Returns the steps and, for each
/// step number before, its number after.
pub(super) fn carry(live: &Schema, steps: Vec<Step>) -> (Vec<Step>, Numbers) {
    let mut objects: BTreeMap<String, Object> = BTreeMap::new();
    for (name, v) in &live.views {
        if v.materialized {
            objects.insert(
                format!("materialized view {}", plain(name)),
                Object::MatView(name),
            );
        } else {
            objects.insert(format!("view {}", plain(name)), Object::View(name));
        }
    }
    for (name, t) in &live.tables {
        for trigger in t.triggers.keys() {
            objects.insert(
                format!("trigger {}.{trigger}", plain(name)),
                Object::Trigger(name, trigger),
            );
        }
        for rule in t.rules.keys() {
            objects.insert(
                format!("rule {}.{rule}", plain(name)),
                Object::Rule(name, rule),
            );
        }
    }
    let mut spans: BTreeMap<Object, Span> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        let Some(key) = s.description.strip_prefix("drop ") else {
            continue;
        };
        let Some(object) = objects.get(key).filter(|_| s.strategy == Strategy::Online) else {
            continue;
        };
        let create = format!("create {key}");
        if let Some(j) = (i + 1..steps.len()).find(|&j| steps[j].description == create) {
            let extras = match object {
                Object::MatView(_) => {
                    let index_of = format!(" on {}", key.trim_start_matches("materialized view "));
                    let comment = format!("set comment on {key}");
                    (j + 1..steps.len())
                        .filter(|&k| {
                            let d = &steps[k].description;
                            (d.starts_with("create index ") && d.ends_with(&index_of))
                                || *d == comment
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            spans.insert(
                object.clone(),
                Span {
                    drop: i,
                    create: j,
                    extras,
                },
            );
        }
    }
    if spans.is_empty() {
        return identity(steps);
    }
    if let Some(folded) = fold_into_online_step(&steps, &spans) {
        return folded;
    }
    carry_across_shadow_steps(live, steps, spans)
}

fn identity(steps: Vec<Step>) -> (Vec<Step>, Numbers) {
    let n = (1..=steps.len()).collect();
    (steps, n)
}

/// The tables an object reads: a trigger its table; a view the tables under the views it reads.
fn base_tables(live: &Schema, object: &Object) -> BTreeSet<QualName> {
    let view = match object {
        Object::Trigger(table, _) | Object::Rule(table, _) => {
            return BTreeSet::from([(*table).clone()])
        }
        Object::View(v) | Object::MatView(v) => (*v).clone(),
    };
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut frontier = vec![view];
    while let Some(v) = frontier.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        match live.views.get(&v) {
            Some(view) => frontier.extend(view.depends_on.iter().cloned()),
            None => {
                out.insert(v);
            }
        }
    }
    out
}

/// Whether the step creates the object exactly as it is live (what the swap carries over).
fn recreates_live(live: &Schema, object: &Object, step: &Step) -> bool {
    let expected = match object {
        Object::View(name) | Object::MatView(name) => create_view_sql(&live.views[*name]),
        Object::Trigger(table, trigger) => live.tables[*table].triggers[*trigger]
            .definition
            .trim_end()
            .to_string(),
        Object::Rule(table, rule) => live.tables[*table].rules[*rule]
            .definition
            .trim_end()
            .trim_end_matches(';')
            .to_string(),
    };
    step.sql.len() == 1 && step.sql[0] == expected
}

fn view_reads<'a>(live: &'a Schema, object: &Object) -> &'a [QualName] {
    match object {
        Object::View(v) | Object::MatView(v) => &live.views[*v].depends_on,
        Object::Trigger(..) | Object::Rule(..) => &[],
    }
}

/// Whether the executor can carry a materialized view across a shadow step as the plan would
/// give it back: it reads tables only, no view reads it, and its definition, its indexes and
/// its comment come back as they are.
fn matview_carried_as_is(live: &Schema, name: &QualName, span: &Span, steps: &[Step]) -> bool {
    let v = &live.views[name];
    let reads_tables_only = v.depends_on.iter().all(|d| live.tables.contains_key(d));
    let read_by_none = !live.views.values().any(|o| o.depends_on.contains(name));
    let comment_step = format!("set comment on materialized view {}", plain(name));
    let mut indexes = 0;
    let extras_as_live = span.extras.iter().all(|&k| {
        let s = &steps[k];
        if s.description == comment_step {
            // The executor carries the live comment: the plan's must be the same text.
            return v.comment.as_deref().is_some_and(|c| {
                s.sql.len() == 1 && s.sql[0].ends_with(&format!(" IS {}", Literal(c)))
            });
        }
        indexes += 1;
        s.sql.len() == 1 && v.indexes.values().any(|i| i.definition == s.sql[0])
    });
    let comment_as_live = v.comment.is_none()
        || span
            .extras
            .iter()
            .any(|&k| steps[k].description == comment_step);
    reads_tables_only
        && read_by_none
        && extras_as_live
        && comment_as_live
        && indexes == v.indexes.len()
        && recreates_live(live, &Object::MatView(name), &steps[span.create])
}

fn carry_across_shadow_steps(
    live: &Schema,
    steps: Vec<Step>,
    spans: BTreeMap<Object, Span>,
) -> (Vec<Step>, Numbers) {
    let own: BTreeSet<usize> = spans.values().flat_map(Span::steps).collect();
    // Carried: something between the drop and the re-creation changes a table the object
    // reads, and every such step is a shadow migration (which carries it). A materialized
    // view only as it is (the executor builds it again from its live definition).
    let mut carried: BTreeSet<Object> = spans
        .iter()
        .filter(|(object, span)| match object {
            Object::MatView(name) => matview_carried_as_is(live, name, span, &steps),
            Object::Rule(..) => false,
            _ => true,
        })
        .filter(|(object, span)| {
            let bases = base_tables(live, object);
            let disturbing: Vec<&Step> = (span.drop + 1..span.create)
                .filter(|k| !own.contains(k))
                .map(|k| &steps[k])
                .filter(|s| s.table.as_ref().is_some_and(|t| bases.contains(t)))
                .collect();
            !disturbing.is_empty() && disturbing.iter().all(|s| s.strategy == Strategy::Shadow)
        })
        .map(|(o, _)| o.clone())
        .collect();
    // A view read by a carried view stays too, or PostgreSQL could not drop it; so a carried
    // view must read no view the plan drops for good, nor a materialized view it drops.
    let dropped = |name: &QualName| {
        let key = format!("drop materialized view {}", plain(name));
        steps.iter().any(|s| s.description == key)
    };
    loop {
        let keep: BTreeSet<Object> = carried
            .iter()
            .filter(|o| {
                view_reads(live, o).iter().all(|d| {
                    let as_view = Object::View(d);
                    !dropped(d) && (!spans.contains_key(&as_view) || carried.contains(&as_view))
                })
            })
            .cloned()
            .collect();
        if keep.len() == carried.len() {
            break;
        }
        carried = keep;
    }
    if carried.is_empty() {
        return identity(steps);
    }

    // What the swap leaves in place needs no re-creation; the others are replaced after the
    // step, with every carried view that reads them, in one transaction.
    let mut changed: BTreeSet<Object> = carried
        .iter()
        .filter(|o| !recreates_live(live, o, &steps[spans[*o].create]))
        .cloned()
        .collect();
    loop {
        let more: Vec<Object> = carried
            .iter()
            .filter(|o| !changed.contains(*o))
            .filter(|o| {
                view_reads(live, o)
                    .iter()
                    .any(|d| changed.contains(&Object::View(d)))
            })
            .cloned()
            .collect();
        if more.is_empty() {
            break;
        }
        changed.extend(more);
    }

    let drops: BTreeSet<usize> = carried.iter().map(|o| spans[o].drop).collect();
    let creates: BTreeSet<usize> = carried
        .iter()
        .flat_map(|o| std::iter::once(spans[o].create).chain(spans[o].extras.iter().copied()))
        .collect();
    let replaced: BTreeSet<usize> = changed.iter().map(|o| spans[o].create).collect();
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut numbers = vec![0; steps.len()];
    let mut replacement: Option<usize> = None;
    for (k, step) in steps.iter().enumerate() {
        if drops.contains(&k) || (creates.contains(&k) && !replaced.contains(&k)) {
            continue;
        }
        if replaced.contains(&k) {
            let at = *replacement.get_or_insert_with(|| {
                let drop_steps: BTreeSet<usize> = changed.iter().map(|o| spans[o].drop).collect();
                out.push(replace(&steps, &drop_steps, &replaced));
                out.len()
            });
            numbers[k] = at;
            continue;
        }
        out.push(step.clone());
        numbers[k] = out.len();
    }
    (out, numbers)
}

/// One transaction that drops the objects (in the diff's order: views deepest first) and
/// creates them from their desired definitions.
fn replace(steps: &[Step], drops: &BTreeSet<usize>, creates: &BTreeSet<usize>) -> Step {
    let mut sql: Vec<String> = Vec::new();
    let mut locks: Vec<Lock> = Vec::new();
    let mut what: Vec<&str> = Vec::new();
    for &k in drops.iter().chain(creates) {
        sql.extend(steps[k].sql.iter().cloned());
        locks.extend(steps[k].locks.iter().cloned());
    }
    for &k in creates {
        what.push(steps[k].description.trim_start_matches("create "));
    }
    Step {
        description: format!(
            "re-create {} in one transaction (clients wait for the lock, never find {} missing)",
            what.join(", "),
            if what.len() == 1 { "it" } else { "them" }
        ),
        strategy: Strategy::Online,
        table: None,
        sql,
        transactional: true,
        locks: unique(locks),
        estimate: Estimate {
            lock_ms: 5,
            total_ms: 5 * what.len() as u64,
        },
        refusal: None,
        exposes: Vec::new(),
        in_place_max_bytes: None,
    }
}

/// The drops, one brief online step that runs in a transaction, and the re-creations, with
/// nothing else among them but comments: one transaction. `None` when the plan has no such run.
fn fold_into_online_step(
    steps: &[Step],
    spans: &BTreeMap<Object, Span>,
) -> Option<(Vec<Step>, Numbers)> {
    let first = spans.values().map(|s| s.drop).min()?;
    let last = spans.values().map(Span::last).max()?;
    let own: BTreeSet<usize> = spans.values().flat_map(Span::steps).collect();
    let comment = |s: &Step| {
        [
            "set comment on view ",
            "remove comment on view ",
            "set comment on materialized view ",
            "remove comment on materialized view ",
            "set comment on trigger ",
            "remove comment on trigger ",
            "set comment on rule ",
            "remove comment on rule ",
        ]
        .iter()
        .any(|p| s.description.starts_with(p))
    };
    let others: Vec<&Step> = (first..=last)
        .filter(|k| !own.contains(k))
        .map(|k| &steps[k])
        .filter(|s| !comment(s))
        .collect();
    let [change] = others.as_slice() else {
        return None;
    };
    let run = &steps[first..=last];
    let brief = change.strategy == Strategy::Online
        && change.table.is_some()
        && change.estimate.lock_ms <= 1_000
        && run.iter().all(|s| s.transactional);
    if !brief {
        return None;
    }
    let mut what: Vec<&str> = spans
        .values()
        .map(|s| steps[s.create].description.trim_start_matches("create "))
        .collect();
    what.sort_unstable();
    let step = Step {
        description: format!(
            "{}, with {} dropped and created again in the same transaction",
            change.description,
            what.join(", ")
        ),
        strategy: Strategy::Online,
        table: change.table.clone(),
        sql: run.iter().flat_map(|s| s.sql.iter().cloned()).collect(),
        transactional: true,
        locks: unique(run.iter().flat_map(|s| s.locks.iter().cloned()).collect()),
        estimate: Estimate {
            lock_ms: run.iter().map(|s| s.estimate.lock_ms).sum(),
            total_ms: run.iter().map(|s| s.estimate.total_ms).sum(),
        },
        refusal: None,
        exposes: Vec::new(),
        in_place_max_bytes: change.in_place_max_bytes,
    };
    let mut out: Vec<Step> = steps[..first].to_vec();
    out.push(step);
    out.extend(steps[last + 1..].iter().cloned());
    let numbers = (0..steps.len())
        .map(|k| match k {
            k if k < first => k + 1,
            k if k <= last => first + 1,
            k => k - (last - first) + 1,
        })
        .collect();
    Some((out, numbers))
}

fn unique(locks: Vec<Lock>) -> Vec<Lock> {
    let mut out: Vec<Lock> = Vec::with_capacity(locks.len());
    for l in locks {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}
