//! Differences for people (`tandem diff`): each object rendered as text, compared, and
//! shown as a unified diff ("-" live, "+" desired) when it changed.
//!
//! Column order is not compared: PostgreSQL cannot reorder columns, so a drift check that
//! reported it could never be satisfied. Size estimates (`TableStats`) are not compared.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use super::sql::plain;
use crate::ident::QualName;
use crate::model::{Identity, Persistence, ReplicaIdentity, Schema, Table};

/// One way the live schema differs from the desired one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// "table public.accounts", "column public.accounts.note", "view public.v", ...
    pub object: String,
    pub kind: DifferenceKind,
    /// For changed objects: a unified diff of their definitions, "-" live, "+" desired.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Wanted, not in the database.
    Missing,
    /// In the database, not wanted.
    Extra,
    /// In both, defined differently.
    Changed,
}

/// The readable list of differences; empty iff the schemas are equal (ignoring size
/// estimates and column order).
pub fn differences(live: &Schema, desired: &Schema) -> Vec<Difference> {
    let live_objects = render(live);
    let desired_objects = render(desired);
    let live_map: BTreeMap<&str, &str> = live_objects
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let desired_map: BTreeMap<&str, &str> = desired_objects
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut out = Vec::new();
    for (object, text) in &desired_objects {
        match live_map.get(object.as_str()) {
            None => out.push(Difference {
                object: object.clone(),
                kind: DifferenceKind::Missing,
                detail: None,
            }),
            Some(old) if old != text => out.push(Difference {
                object: object.clone(),
                kind: DifferenceKind::Changed,
                detail: Some(
                    TextDiff::from_lines(*old, text.as_str())
                        .unified_diff()
                        .context_radius(3)
                        .header("live", "desired")
                        .to_string(),
                ),
            }),
            Some(_) => {}
        }
    }
    for (object, _) in &live_objects {
        if !desired_map.contains_key(object.as_str()) {
            out.push(Difference {
                object: object.clone(),
                kind: DifferenceKind::Extra,
                detail: None,
            });
        }
    }
    out
}

/// Every object of the schema as (label, canonical text), in a readable order.
fn render(s: &Schema) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |object: String, text: String| out.push((object, text));
    for (name, ns) in &s.schemas {
        put(format!("schema {name}"), lines(&[], ns.comment.as_deref()));
    }
    for (name, e) in &s.extensions {
        put(
            format!("extension {name}"),
            lines(
                &[
                    format!("schema {}", e.schema),
                    format!("version {}", e.version),
                ],
                None,
            ),
        );
    }
    for (name, e) in &s.enums {
        let labels: Vec<String> = e.labels.iter().map(|l| format!("label {l}")).collect();
        put(
            format!("enum {}", plain(name)),
            lines(&labels, e.comment.as_deref()),
        );
    }
    for (name, d) in &s.domains {
        let mut l = vec![format!("base type {}", d.base_type)];
        opt(&mut l, "collation", d.collation.as_deref());
        if d.not_null {
            l.push("not null".into());
        }
        opt(&mut l, "default", d.default.as_deref());
        for (cname, c) in &d.checks {
            l.push(format!(
                "constraint {cname} {}{}",
                c.definition,
                if c.validated { "" } else { " (not validated)" }
            ));
        }
        put(
            format!("domain {}", plain(name)),
            lines(&l, d.comment.as_deref()),
        );
    }
    for (name, c) in &s.composites {
        let attrs: Vec<String> = c
            .attributes
            .iter()
            .map(|(n, t)| format!("attribute {n} {t}"))
            .collect();
        put(
            format!("type {}", plain(name)),
            lines(&attrs, c.comment.as_deref()),
        );
    }
    for (name, q) in &s.sequences {
        let mut l = vec![
            format!("as {}", q.data_type),
            format!("start {}", q.start),
            format!("increment {}", q.increment),
            format!("minvalue {}", q.min_value),
            format!("maxvalue {}", q.max_value),
            format!("cache {}", q.cache),
            format!("cycle {}", q.cycle),
        ];
        if let Some((t, c)) = &q.owned_by {
            l.push(format!("owned by {}.{c}", plain(t)));
        }
        put(
            format!("sequence {}", plain(name)),
            lines(&l, q.comment.as_deref()),
        );
    }
    for f in s.functions.values() {
        let kind = if f.result.is_some() {
            "function"
        } else {
            "procedure"
        };
        put(
            format!("{kind} {}", f.key()),
            lines(&[f.definition.trim_end().to_string()], f.comment.as_deref()),
        );
    }
    for (name, t) in &s.tables {
        render_table(&mut put, name, t);
    }
    for (name, v) in &s.views {
        let kind = if v.materialized {
            "materialized view"
        } else {
            "view"
        };
        let mut l = vec![v.definition.trim_end().to_string()];
        for (c, ty) in &v.columns {
            l.push(format!("-- column {c} {ty}"));
        }
        let mut deps: Vec<String> = v.depends_on.iter().map(plain).collect();
        deps.sort();
        l.push(format!("-- depends on {}", deps.join(", ")));
        put(
            format!("{kind} {}", plain(name)),
            lines(&l, v.comment.as_deref()),
        );
        for i in v.indexes.values() {
            put(
                format!("index {}.{}", name.schema.as_str(), i.name),
                index_text(i),
            );
        }
    }
    out
}

fn render_table(put: &mut impl FnMut(String, String), name: &QualName, t: &Table) {
    let mut l = Vec::new();
    if t.persistence == Persistence::Unlogged {
        l.push("unlogged".to_string());
    }
    opt(&mut l, "partition by", t.partition_key.as_deref());
    if let Some((p, bound)) = &t.partition_of {
        l.push(format!("partition of {} {bound}", plain(p)));
    }
    if t.rls_enabled {
        l.push("row level security enabled".into());
    }
    if t.rls_forced {
        l.push("row level security forced".into());
    }
    match &t.replica_identity {
        ReplicaIdentity::Default => {}
        ReplicaIdentity::Full => l.push("replica identity full".into()),
        ReplicaIdentity::Nothing => l.push("replica identity nothing".into()),
        ReplicaIdentity::Index(i) => l.push(format!("replica identity using index {i}")),
    }
    for o in &t.options {
        l.push(format!("with {o}"));
    }
    let table = plain(name);
    put(format!("table {table}"), lines(&l, t.comment.as_deref()));
    let mut columns: Vec<_> = t.columns.iter().collect();
    columns.sort_by(|a, b| a.name.cmp(&b.name));
    for c in columns {
        let mut l = vec![format!("type {}", c.data_type)];
        opt(&mut l, "collate", c.collation.as_deref());
        if c.not_null {
            l.push("not null".into());
        }
        opt(&mut l, "default", c.default.as_deref());
        match c.identity {
            Some(Identity::Always) => l.push("generated always as identity".into()),
            Some(Identity::ByDefault) => l.push("generated by default as identity".into()),
            None => {}
        }
        opt(&mut l, "generated always as", c.generated.as_deref());
        put(
            format!("column {table}.{}", c.name),
            lines(&l, c.comment.as_deref()),
        );
    }
    for c in t.constraints.values() {
        put(
            format!("constraint {table}.{}", c.name),
            lines(std::slice::from_ref(&c.definition), c.comment.as_deref()),
        );
    }
    for i in t.indexes.values() {
        put(
            format!("index {}.{}", name.schema.as_str(), i.name),
            index_text(i),
        );
    }
    for tr in t.triggers.values() {
        let mut l = vec![tr.definition.trim_end().to_string()];
        if tr.enabled != 'O' {
            l.push(format!("enabled {}", tr.enabled));
        }
        put(
            format!("trigger {table}.{}", tr.name),
            lines(&l, tr.comment.as_deref()),
        );
    }
    for p in t.policies.values() {
        let mut l = vec![
            format!(
                "as {}",
                if p.permissive {
                    "permissive"
                } else {
                    "restrictive"
                }
            ),
            format!("for {}", p.command),
            format!("to {}", p.roles.join(", ")),
        ];
        opt(&mut l, "using", p.using.as_deref());
        opt(&mut l, "with check", p.with_check.as_deref());
        put(format!("policy {table}.{}", p.name), lines(&l, None));
    }
}

fn index_text(i: &crate::model::Index) -> String {
    let mut l = vec![i.definition.clone()];
    if !i.valid {
        l.push("-- invalid".into());
    }
    lines(&l, i.comment.as_deref())
}

fn opt(l: &mut Vec<String>, label: &str, value: Option<&str>) {
    if let Some(v) = value {
        l.push(format!("{label} {v}"));
    }
}

/// The lines, then the comment, each ending with a newline (for clean unified diffs).
fn lines(l: &[String], comment: Option<&str>) -> String {
    let mut s = String::new();
    for line in l {
        let _ = writeln!(s, "{line}");
    }
    if let Some(c) = comment {
        let _ = writeln!(s, "comment {c:?}");
    }
    s
}
