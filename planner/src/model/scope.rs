//! The part of a schema a plan can reach: what the plan's check rebuilds, replays on and
//! compares, instead of the whole schema (a 1,000-table schema with a 50-table change rebuilds
//! ~150 tables, not 1,000).
//!
//! A [`Scope`] is a set of tables and views, found from the plan's own statements, closed in
//! two ways:
//!
//! - **reached**: every relation a statement names (any identifier token equal to its name),
//!   then the views that read those (transitively), their partitions (transitively), and every
//!   relation whose own definition names one of them or has a foreign key to one of them
//!   (foreign keys, policies, column types). These are the relations the plan's statements
//!   can change, directly or as a side effect (a cascade, a moved foreign key).
//! - **needed**: what it takes to create the reached ones: foreign-key targets, the relations
//!   views read, partition parents, and every relation named in a definition (defaults,
//!   constraints, indexes, triggers, policies, column types, view bodies, and the bodies of
//!   every function, since functions are always kept whole), transitively.
//!
//! Everything that is not a table or a view (schemas, extensions, types, functions,
//! sequences not owned by a relation out of scope) is always inside. A plan whose changes
//! reach such an object gets no scope ([`Scope::of`] returns `None`): its check rebuilds the
//! whole schema.
//!
//! Invariant: the plan's statements can change nothing outside the scope, so outside it the
//! result of the plan *is* the live schema; the check compares that part statically (the
//! live schema's outside must equal the desired schema's outside) and the inside on the
//! replayed copy.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use crate::diff::Change;
use crate::ident::QualName;
use crate::model::{ConstraintKind, Schema, Table, View};

/// The tables and views a plan's check must rebuild and compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    relations: BTreeSet<QualName>,
}

/// Change objects that stay inside tables and views (see `diff/` for the labels).
const RELATION_LEVEL: [&str; 8] = [
    "table ",
    "column ",
    "constraint ",
    "index ",
    "trigger ",
    "policy ",
    "view ",
    "materialized view ",
];

impl Scope {
    /// The scope of the changes `changes` (from `live` to `desired`) whose statements, as the
    /// plan runs them, are `statements`. `None` when a change reaches beyond tables and views:
    /// then the whole schema is the scope.
    pub fn of(
        live: &Schema,
        desired: &Schema,
        changes: &[Change],
        statements: &[&str],
    ) -> Option<Scope> {
        if !changes
            .iter()
            .all(|c| RELATION_LEVEL.iter().any(|p| c.object.starts_with(p)))
        {
            return None;
        }
        let sides = [live, desired];
        let names = Names::of(&sides);

        // Reached: named by a statement or a change.
        let mut reached: BTreeSet<QualName> = BTreeSet::new();
        for sql in statements {
            names.mentioned(sql, &mut reached);
        }
        reached.extend(changes.iter().filter_map(|c| c.table.clone()));
        // ... the views over them and their partitions, transitively ...
        close(&mut reached, |r, out| {
            for s in sides {
                out.extend(
                    s.views
                        .iter()
                        .filter(|(_, v)| v.depends_on.contains(r))
                        .map(|(n, _)| n.clone()),
                );
                out.extend(
                    s.tables
                        .iter()
                        .filter(|(_, t)| t.partition_of.as_ref().is_some_and(|(p, _)| p == r))
                        .map(|(n, _)| n.clone()),
                );
            }
        });
        // ... and, one level, the relations that point at them.
        let reached_tokens: HashSet<String> = reached
            .iter()
            .map(|r| r.name.as_str().to_lowercase())
            .collect();
        let names_reached = |text: &str| tokens(text).any(|t| reached_tokens.contains(&*t));
        let mut pointing = BTreeSet::new();
        for s in sides {
            for (name, table) in &s.tables {
                if foreign_key_targets(table).any(|t| reached.contains(t))
                    || table_texts(table).any(names_reached)
                {
                    pointing.insert(name.clone());
                }
            }
            for (name, view) in &s.views {
                if view.depends_on.iter().any(|t| reached.contains(t))
                    || view_texts(view).any(names_reached)
                {
                    pointing.insert(name.clone());
                }
            }
        }
        reached.append(&mut pointing);

        // Needed: what creating them takes, transitively; functions are always kept, so
        // whatever their bodies name is needed too.
        let mut needed = reached;
        for s in sides {
            for f in s.functions.values() {
                names.mentioned(&f.definition, &mut needed);
            }
        }
        close(&mut needed, |r, out| {
            for s in sides {
                if let Some(table) = s.tables.get(r) {
                    for text in table_texts(table) {
                        names.mentioned(text, out);
                    }
                    out.extend(foreign_key_targets(table).cloned());
                    if let Some((parent, _)) = &table.partition_of {
                        out.insert(parent.clone());
                    }
                }
                if let Some(view) = s.views.get(r) {
                    for text in view_texts(view) {
                        names.mentioned(text, out);
                    }
                    out.extend(view.depends_on.iter().cloned());
                }
            }
        });
        // A sequence named in a default comes with the table that owns it.
        let mut owners: HashMap<String, Vec<QualName>> = HashMap::new();
        for s in sides {
            for seq in s.sequences.values() {
                if let Some((owner, _)) = &seq.owned_by {
                    owners
                        .entry(seq.name.name.as_str().to_lowercase())
                        .or_default()
                        .push(owner.clone());
                }
            }
        }
        if !owners.is_empty() {
            close(&mut needed, |r, out| {
                for s in sides {
                    let texts: Vec<&str> = match (s.tables.get(r), s.views.get(r)) {
                        (Some(t), _) => table_texts(t).collect(),
                        (None, Some(v)) => view_texts(v).collect(),
                        (None, None) => Vec::new(),
                    };
                    for token in texts.into_iter().flat_map(tokens) {
                        if let Some(list) = owners.get(&*token) {
                            out.extend(list.iter().cloned());
                        }
                    }
                }
            });
        }
        Some(Scope { relations: needed })
    }

    pub fn contains(&self, relation: &QualName) -> bool {
        self.relations.contains(relation)
    }

    pub fn len(&self) -> usize {
        self.relations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }
}

impl Schema {
    /// The schema split at `scope`: (inside, outside). Inside: the scope's tables and views
    /// and every object that is not a table or a view, except sequences owned by a table
    /// outside. Outside: the other tables and views, and the sequences they own.
    pub fn split(&self, scope: &Scope) -> (Schema, Schema) {
        let mut inside = Schema {
            schemas: self.schemas.clone(),
            extensions: self.extensions.clone(),
            enums: self.enums.clone(),
            domains: self.domains.clone(),
            composites: self.composites.clone(),
            functions: self.functions.clone(),
            ..Schema::default()
        };
        let mut outside = Schema::default();
        for (name, table) in &self.tables {
            let side = if scope.contains(name) {
                &mut inside
            } else {
                &mut outside
            };
            side.tables.insert(name.clone(), table.clone());
        }
        for (name, view) in &self.views {
            let side = if scope.contains(name) {
                &mut inside
            } else {
                &mut outside
            };
            side.views.insert(name.clone(), view.clone());
        }
        for (name, seq) in &self.sequences {
            let side = match &seq.owned_by {
                Some((owner, _)) if !scope.contains(owner) => &mut outside,
                _ => &mut inside,
            };
            side.sequences.insert(name.clone(), seq.clone());
        }
        (inside, outside)
    }
}

/// Add to `set` what `step` gives for each member, until nothing new comes.
fn close(set: &mut BTreeSet<QualName>, step: impl Fn(&QualName, &mut BTreeSet<QualName>)) {
    let mut todo: Vec<QualName> = set.iter().cloned().collect();
    while let Some(r) = todo.pop() {
        let mut found = BTreeSet::new();
        step(&r, &mut found);
        for f in found {
            if set.insert(f.clone()) {
                todo.push(f);
            }
        }
    }
}

fn foreign_key_targets(table: &Table) -> impl Iterator<Item = &QualName> {
    table.constraints.values().filter_map(|c| match &c.kind {
        ConstraintKind::ForeignKey(fk) => Some(&fk.references),
        _ => None,
    })
}

/// Every definition of a table that can name another relation.
fn table_texts(t: &Table) -> impl Iterator<Item = &str> {
    let columns = t.columns.iter().flat_map(|c| {
        [Some(&c.data_type), c.default.as_ref(), c.generated.as_ref()]
            .into_iter()
            .flatten()
            .map(String::as_str)
    });
    let constraints = t.constraints.values().map(|c| c.definition.as_str());
    let indexes = t.indexes.values().map(|i| i.definition.as_str());
    let triggers = t.triggers.values().map(|tr| tr.definition.as_str());
    let policies = t.policies.values().flat_map(|p| {
        [p.using.as_deref(), p.with_check.as_deref()]
            .into_iter()
            .flatten()
    });
    columns
        .chain(constraints)
        .chain(indexes)
        .chain(triggers)
        .chain(policies)
}

fn view_texts(v: &View) -> impl Iterator<Item = &str> {
    std::iter::once(v.definition.as_str())
        .chain(v.columns.iter().map(|(_, ty)| ty.as_str()))
        .chain(v.indexes.values().map(|i| i.definition.as_str()))
}

/// Relation names of both schemas by their lower-cased bare name: a token of SQL text names
/// every relation it could be, whatever the schema or the case (more is only slower).
struct Names {
    by_token: HashMap<String, Vec<QualName>>,
}

impl Names {
    fn of(sides: &[&Schema]) -> Names {
        let mut by_token: HashMap<String, Vec<QualName>> = HashMap::new();
        for s in sides {
            for name in s.tables.keys().chain(s.views.keys()) {
                let list = by_token
                    .entry(name.name.as_str().to_lowercase())
                    .or_default();
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
        }
        Names { by_token }
    }

    /// Add to `out` every relation a token of `sql` could name.
    fn mentioned(&self, sql: &str, out: &mut BTreeSet<QualName>) {
        for token in tokens(sql) {
            if let Some(list) = self.by_token.get(&*token) {
                out.extend(list.iter().cloned());
            }
        }
    }
}

/// `s` lower-cased, borrowed when it already is.
fn folded(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The identifiers of SQL text, lower-cased, quoted ones unquoted (`""` → `"`). Keywords,
/// string contents and comments come out too: a spurious token only widens the scope.
fn tokens(sql: &str) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    let bytes = sql.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'"' {
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                while j < bytes.len() {
                    if bytes[j] == b'"' {
                        if bytes.get(j + 1) == Some(&b'"') {
                            escaped = true;
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                let inner = &sql[start..j.min(bytes.len())];
                i = j + 1;
                return Some(if escaped {
                    Cow::Owned(inner.replace("\"\"", "\"").to_lowercase())
                } else {
                    folded(inner)
                });
            }
            if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                return Some(folded(&sql[start..i]));
            }
            i += 1;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::diff::{diff, RenameHints};
    use crate::model::{Column, Constraint, ForeignKey, Persistence, ReplicaIdentity};

    fn q(name: &str) -> QualName {
        QualName::new("public", name).expect("name")
    }

    fn table(name: &str, references: Option<&str>) -> Table {
        let mut constraints = BTreeMap::new();
        if let Some(target) = references {
            constraints.insert(
                format!("{name}_fk"),
                Constraint {
                    name: format!("{name}_fk"),
                    kind: ConstraintKind::ForeignKey(ForeignKey {
                        columns: vec!["ref".into()],
                        references: q(target),
                        referenced_columns: vec!["id".into()],
                        on_update: 'a',
                        on_delete: 'a',
                    }),
                    definition: format!("FOREIGN KEY (ref) REFERENCES public.{target}(id)"),
                    validated: true,
                    deferrable: false,
                    initially_deferred: false,
                    comment: None,
                },
            );
        }
        Table {
            name: q(name),
            persistence: Persistence::Permanent,
            partition_key: None,
            partition_of: None,
            rls_enabled: false,
            rls_forced: false,
            replica_identity: ReplicaIdentity::Default,
            options: Vec::new(),
            columns: vec![column("id"), column("ref")],
            constraints,
            indexes: BTreeMap::new(),
            triggers: BTreeMap::new(),
            rules: BTreeMap::new(),
            policies: BTreeMap::new(),
            comment: None,
            stats: None,
        }
    }

    fn column(name: &str) -> Column {
        Column {
            name: name.into(),
            data_type: "integer".into(),
            collation: None,
            not_null: false,
            default: None,
            identity: None,
            generated: None,
            comment: None,
        }
    }

    fn view(name: &str, over: &str) -> View {
        View {
            name: q(name),
            materialized: false,
            definition: format!(" SELECT id FROM public.{over};"),
            columns: vec![("id".into(), "integer".into())],
            depends_on: vec![q(over)],
            indexes: BTreeMap::new(),
            comment: None,
        }
    }

    /// a <- b <- c (foreign keys), v over b, and d, e unrelated.
    fn live() -> Schema {
        let mut s = Schema::default();
        for t in [
            table("a", None),
            table("b", Some("a")),
            table("c", Some("b")),
            table("d", None),
            table("e", Some("d")),
        ] {
            s.tables.insert(t.name.clone(), t);
        }
        s.views.insert(q("v"), view("v", "b"));
        s
    }

    fn scope_of(live: &Schema, desired: &Schema) -> Option<Scope> {
        let changes = diff(live, desired, &RenameHints::default()).expect("diff");
        let statements: Vec<&str> = changes
            .iter()
            .flat_map(|c| c.sql.iter().map(String::as_str))
            .collect();
        Scope::of(live, desired, &changes, &statements)
    }

    #[test]
    fn a_change_reaches_its_referrers_and_views_and_needs_its_targets() {
        let live = live();
        let mut desired = live.clone();
        desired
            .tables
            .get_mut(&q("b"))
            .expect("b")
            .columns
            .push(column("note"));
        let scope = scope_of(&live, &desired).expect("a relation-level change");
        for inside in ["a", "b", "c", "v"] {
            assert!(scope.contains(&q(inside)), "{inside}");
        }
        for outside in ["d", "e"] {
            assert!(!scope.contains(&q(outside)), "{outside}");
        }
        let (inside, outside) = live.split(&scope);
        assert_eq!(inside.tables.len(), 3);
        assert_eq!(outside.tables.len(), 2);
        assert_eq!(inside.views.len(), 1);
    }

    #[test]
    fn a_plan_that_forgets_a_table_is_caught_outside_the_scope() {
        let live = live();
        let mut desired = live.clone();
        for t in ["b", "d"] {
            desired
                .tables
                .get_mut(&q(t))
                .expect("table")
                .columns
                .push(column("note"));
        }
        let changes = diff(&live, &desired, &RenameHints::default()).expect("diff");
        // A faulty plan: only b's change.
        let forgetful: Vec<Change> = changes
            .into_iter()
            .filter(|c| c.table.as_ref() == Some(&q("b")))
            .collect();
        let statements: Vec<&str> = forgetful
            .iter()
            .flat_map(|c| c.sql.iter().map(String::as_str))
            .collect();
        let scope = Scope::of(&live, &desired, &forgetful, &statements).expect("scope");
        assert!(!scope.contains(&q("d")));
        let (_, live_out) = live.split(&scope);
        let (_, desired_out) = desired.split(&scope);
        let off = crate::diff::differences(&live_out, &desired_out);
        assert!(off.iter().any(|d| d.object.ends_with("d.note")), "{off:?}");
    }

    #[test]
    fn a_change_beyond_tables_and_views_has_no_scope() {
        let live = live();
        let mut desired = live.clone();
        desired.schemas.insert(
            "extra".into(),
            crate::model::Namespace {
                name: "extra".into(),
                comment: None,
            },
        );
        assert_eq!(scope_of(&live, &desired), None);
    }

    #[test]
    fn tokens_unquote_and_fold() {
        let t: Vec<String> = tokens(r#"SELECT "My""T".x FROM public.Abc -- c"#)
            .map(Cow::into_owned)
            .collect();
        assert_eq!(t, ["select", "my\"t", "x", "from", "public", "abc", "c"]);
    }
}
