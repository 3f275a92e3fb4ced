//! Objects that tables use: schemas, extensions, enums, domains, composite types, sequences
//! and functions. Created before tables, dropped after them.

use std::collections::{BTreeMap, BTreeSet};

use super::order::{Draft, Rank};
use super::sql::{comment_sql, ident, plain, strip_not_valid};
use super::{ChangeKind, Cx, DiffError};
use crate::ident::{Literal, QualName};
use crate::model::{CompositeType, Domain, Function, Sequence};

/// Emits a comment change when the comment differs (`live` is `None` for new objects).
pub(crate) fn comment(
    cx: &mut Cx,
    object: &str,
    target: &str,
    table: Option<&QualName>,
    live: Option<&str>,
    desired: Option<&str>,
) {
    if live == desired {
        return;
    }
    let what = if desired.is_some() { "set" } else { "remove" };
    let mut draft = Draft::new(
        ChangeKind::Alter,
        object.to_string(),
        format!("{what} comment on {object}"),
    )
    .sql(comment_sql(target, desired));
    if let Some(t) = table {
        draft = draft.table(t);
    }
    cx.out.push(Rank::Comment, draft);
}

pub(crate) fn diff_namespaces(cx: &mut Cx) {
    for (name, ns) in &cx.to.schemas {
        let live = cx.from.schemas.get(name);
        let object = format!("schema {name}");
        if live.is_none() {
            let id = cx.out.push(
                Rank::CreateSchema,
                Draft::new(
                    ChangeKind::Create,
                    object.clone(),
                    format!("create {object}"),
                )
                .sql(format!("CREATE SCHEMA {}", ident(name))),
            );
            cx.out.provide(id, object.clone());
        }
        let target = format!("SCHEMA {}", ident(name));
        let live_comment = live.and_then(|l| l.comment.as_deref());
        comment(
            cx,
            &object,
            &target,
            None,
            live_comment,
            ns.comment.as_deref(),
        );
    }
    let (from, to) = (cx.from, cx.to);
    drop_missing(cx, &from.schemas, &to.schemas, Rank::DropSchema, |name| {
        (
            format!("schema {name}"),
            format!("DROP SCHEMA {}", ident(name)),
        )
    });
}

pub(crate) fn diff_extensions(cx: &mut Cx) {
    for (name, ext) in &cx.to.extensions {
        let object = format!("extension {name}");
        let sql = match cx.from.extensions.get(name) {
            None => vec![format!(
                "CREATE EXTENSION {} WITH SCHEMA {} VERSION {}",
                ident(name),
                ident(&ext.schema),
                Literal(&ext.version)
            )],
            Some(live) => {
                let mut sql = Vec::new();
                if live.schema != ext.schema {
                    sql.push(format!(
                        "ALTER EXTENSION {} SET SCHEMA {}",
                        ident(name),
                        ident(&ext.schema)
                    ));
                }
                if live.version != ext.version {
                    sql.push(format!(
                        "ALTER EXTENSION {} UPDATE TO {}",
                        ident(name),
                        Literal(&ext.version)
                    ));
                }
                sql
            }
        };
        let (kind, verb) = if cx.from.extensions.contains_key(name) {
            (ChangeKind::Alter, "alter")
        } else {
            (ChangeKind::Create, "create")
        };
        let mut draft = Draft::new(kind, object.clone(), format!("{verb} {object}"));
        draft.sql = sql;
        cx.out.push(Rank::Extension, draft);
    }
    let (from, to) = (cx.from, cx.to);
    drop_missing(
        cx,
        &from.extensions,
        &to.extensions,
        Rank::DropExtension,
        |name| {
            (
                format!("extension {name}"),
                format!("DROP EXTENSION {}", ident(name)),
            )
        },
    );
}

pub(crate) fn diff_enums(cx: &mut Cx) -> Result<(), DiffError> {
    for (name, e) in &cx.to.enums {
        let object = format!("enum {}", plain(name));
        let live = cx.from.enums.get(name);
        match live {
            None => {
                let labels: Vec<String> = e.labels.iter().map(|l| Literal(l).to_string()).collect();
                cx.out.push(
                    Rank::CreateEnum,
                    Draft::new(
                        ChangeKind::Create,
                        object.clone(),
                        format!("create {object}"),
                    )
                    .sql(format!(
                        "CREATE TYPE {name} AS ENUM ({})",
                        labels.join(", ")
                    )),
                );
            }
            Some(live) if live.labels != e.labels => {
                let sql = enum_additions(&object, &live.labels, &e.labels, name)?;
                let added: Vec<&str> = e
                    .labels
                    .iter()
                    .filter(|l| !live.labels.contains(l))
                    .map(String::as_str)
                    .collect();
                let mut draft = Draft::new(
                    ChangeKind::Alter,
                    object.clone(),
                    format!(
                        "add {} to {object}",
                        added
                            .iter()
                            .map(|l| Literal(l).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .non_transactional();
                draft.sql = sql;
                cx.out.push(Rank::AlterEnum, draft);
            }
            Some(_) => {}
        }
        let target = format!("TYPE {name}");
        comment(
            cx,
            &object,
            &target,
            None,
            live.and_then(|l| l.comment.as_deref()),
            e.comment.as_deref(),
        );
    }
    let (from, to) = (cx.from, cx.to);
    drop_missing(cx, &from.enums, &to.enums, Rank::DropEnum, |name| {
        (format!("enum {}", plain(name)), format!("DROP TYPE {name}"))
    });
    Ok(())
}

/// `ALTER TYPE .. ADD VALUE` statements placing each new label where the desired order has it.
fn enum_additions(
    object: &str,
    live: &[String],
    desired: &[String],
    name: &QualName,
) -> Result<Vec<String>, DiffError> {
    let kept: Vec<&String> = desired.iter().filter(|l| live.contains(l)).collect();
    if kept.len() != live.len() || kept.iter().zip(live).any(|(a, b)| *a != b) {
        let removed: Vec<&str> = live
            .iter()
            .filter(|l| !desired.contains(l))
            .map(String::as_str)
            .collect();
        let reason = if removed.is_empty() {
            "PostgreSQL cannot reorder enum labels; create a new enum type with the wanted order, \
             move the columns to it with ALTER COLUMN .. TYPE .. USING, then drop the old type"
                .to_string()
        } else {
            format!(
                "PostgreSQL cannot remove enum labels ({}); create a new enum type without them, \
                 move the columns to it with ALTER COLUMN .. TYPE .. USING, then drop the old type",
                removed.join(", ")
            )
        };
        return Err(DiffError::Unsupported {
            object: object.to_string(),
            reason,
        });
    }
    let mut sql = Vec::new();
    for (i, label) in desired.iter().enumerate() {
        if live.contains(label) {
            continue;
        }
        let position = match (i.checked_sub(1).map(|p| &desired[p]), live.first()) {
            (Some(prev), _) => format!(" AFTER {}", Literal(prev)),
            (None, Some(first)) => format!(" BEFORE {}", Literal(first)),
            (None, None) => String::new(),
        };
        sql.push(format!(
            "ALTER TYPE {name} ADD VALUE {}{position}",
            Literal(label)
        ));
    }
    Ok(sql)
}

pub(crate) fn diff_domains(cx: &mut Cx) -> Result<(), DiffError> {
    for (name, d) in &cx.to.domains {
        let object = format!("domain {}", plain(name));
        let live = cx.from.domains.get(name);
        match live {
            None => create_domain(cx, &object, d),
            Some(live) => alter_domain(cx, &object, live, d)?,
        }
        let target = format!("DOMAIN {name}");
        comment(
            cx,
            &object,
            &target,
            None,
            live.and_then(|l| l.comment.as_deref()),
            d.comment.as_deref(),
        );
    }
    let (from, to) = (cx.from, cx.to);
    drop_missing(cx, &from.domains, &to.domains, Rank::DropDomain, |name| {
        (
            format!("domain {}", plain(name)),
            format!("DROP DOMAIN {name}"),
        )
    });
    Ok(())
}

fn create_domain(cx: &mut Cx, object: &str, d: &Domain) {
    let mut stmt = format!("CREATE DOMAIN {} AS {}", d.name, d.base_type);
    if let Some(c) = &d.collation {
        stmt.push_str(&format!(" COLLATE {c}"));
    }
    if let Some(def) = &d.default {
        stmt.push_str(&format!(" DEFAULT {def}"));
    }
    if d.not_null {
        stmt.push_str(" NOT NULL");
    }
    // CREATE DOMAIN takes only valid checks; NOT VALID ones are added afterwards.
    let mut later = Vec::new();
    for (cname, check) in &d.checks {
        if check.validated {
            stmt.push_str(&format!(
                " CONSTRAINT {} {}",
                ident(cname),
                check.definition
            ));
        } else {
            later.push(format!(
                "ALTER DOMAIN {} ADD CONSTRAINT {} {}",
                d.name,
                ident(cname),
                check.definition
            ));
        }
    }
    let mut draft = Draft::new(
        ChangeKind::Create,
        object.to_string(),
        format!("create {object}"),
    )
    .sql(stmt);
    draft.sql.extend(later);
    cx.out.push(Rank::CreateDomain, draft);
}

fn alter_domain(cx: &mut Cx, object: &str, live: &Domain, d: &Domain) -> Result<(), DiffError> {
    if live.base_type != d.base_type || live.collation != d.collation {
        return Err(DiffError::Unsupported {
            object: object.to_string(),
            reason:
                "PostgreSQL cannot change a domain's base type or collation; create a new domain, \
                     move the columns to it with ALTER COLUMN .. TYPE, then drop the old one"
                    .into(),
        });
    }
    let name = &d.name;
    let mut sql = Vec::new();
    if live.default != d.default {
        sql.push(match &d.default {
            Some(def) => format!("ALTER DOMAIN {name} SET DEFAULT {def}"),
            None => format!("ALTER DOMAIN {name} DROP DEFAULT"),
        });
    }
    if live.not_null != d.not_null {
        let verb = if d.not_null { "SET" } else { "DROP" };
        sql.push(format!("ALTER DOMAIN {name} {verb} NOT NULL"));
    }
    let mut validate = Vec::new();
    for (cname, old) in &live.checks {
        let same = d.checks.get(cname).is_some_and(|new| {
            strip_not_valid(&new.definition) == strip_not_valid(&old.definition)
        });
        if !same {
            sql.push(format!(
                "ALTER DOMAIN {name} DROP CONSTRAINT {}",
                ident(cname)
            ));
        }
    }
    for (cname, new) in &d.checks {
        let old = live.checks.get(cname);
        let same = old.is_some_and(|old| {
            strip_not_valid(&new.definition) == strip_not_valid(&old.definition)
        });
        if same {
            if new.validated && !old.is_some_and(|o| o.validated) {
                validate.push(format!(
                    "ALTER DOMAIN {name} VALIDATE CONSTRAINT {}",
                    ident(cname)
                ));
            }
            continue;
        }
        // Existing columns are checked by VALIDATE, which does not block writes.
        sql.push(format!(
            "ALTER DOMAIN {name} ADD CONSTRAINT {} {} NOT VALID",
            ident(cname),
            strip_not_valid(&new.definition)
        ));
        if new.validated {
            validate.push(format!(
                "ALTER DOMAIN {name} VALIDATE CONSTRAINT {}",
                ident(cname)
            ));
        }
    }
    let mut draft = Draft::new(
        ChangeKind::Alter,
        object.to_string(),
        format!("alter {object}"),
    );
    draft.sql = sql;
    cx.out.push(Rank::AlterDomain, draft);
    let mut draft = Draft::new(
        ChangeKind::Alter,
        object.to_string(),
        format!("validate checks of {object}"),
    );
    draft.sql = validate;
    cx.out.push(Rank::Validate, draft);
    Ok(())
}

pub(crate) fn diff_composites(cx: &mut Cx) {
    for (name, c) in &cx.to.composites {
        let object = format!("type {}", plain(name));
        let live = cx.from.composites.get(name);
        match live {
            None => {
                cx.out
                    .push(Rank::CreateComposite, create_composite(&object, c));
            }
            Some(live) if live.attributes != c.attributes => {
                match alter_composite(live, c) {
                    Some(sql) => {
                        let mut draft = Draft::new(
                            ChangeKind::Alter,
                            object.clone(),
                            format!("alter {object}"),
                        );
                        draft.sql = sql;
                        cx.out.push(Rank::AlterComposite, draft);
                    }
                    None => {
                        // Attributes cannot be reordered in place.
                        cx.out.push(
                            Rank::DropReplacedType,
                            Draft::new(
                                ChangeKind::Drop,
                                object.clone(),
                                format!("drop {object} to re-create it"),
                            )
                            .sql(format!("DROP TYPE {name}")),
                        );
                        cx.out
                            .push(Rank::CreateComposite, create_composite(&object, c));
                    }
                }
            }
            Some(_) => {}
        }
        let live_comment = live
            .filter(|l| alter_composite(l, c).is_some())
            .and_then(|l| l.comment.as_deref());
        let target = format!("TYPE {name}");
        comment(
            cx,
            &object,
            &target,
            None,
            live_comment,
            c.comment.as_deref(),
        );
    }
    let (from, to) = (cx.from, cx.to);
    drop_missing(
        cx,
        &from.composites,
        &to.composites,
        Rank::DropComposite,
        |name| (format!("type {}", plain(name)), format!("DROP TYPE {name}")),
    );
}

fn create_composite(object: &str, c: &CompositeType) -> Draft {
    let attrs: Vec<String> = c
        .attributes
        .iter()
        .map(|(n, t)| format!("{} {t}", ident(n)))
        .collect();
    Draft::new(
        ChangeKind::Create,
        object.to_string(),
        format!("create {object}"),
    )
    .sql(format!("CREATE TYPE {} AS ({})", c.name, attrs.join(", ")))
}

/// In-place changes, or `None` when the desired attribute order cannot be reached
/// (new attributes are appended; kept ones keep their order).
fn alter_composite(live: &CompositeType, c: &CompositeType) -> Option<Vec<String>> {
    let desired_names: Vec<&String> = c.attributes.iter().map(|(n, _)| n).collect();
    let mut result: Vec<&String> = live
        .attributes
        .iter()
        .map(|(n, _)| n)
        .filter(|n| desired_names.contains(n))
        .collect();
    result.extend(
        desired_names
            .iter()
            .filter(|n| !live.attributes.iter().any(|(l, _)| l == **n)),
    );
    if result != desired_names {
        return None;
    }
    let mut sql = Vec::new();
    for (n, _) in live
        .attributes
        .iter()
        .filter(|(n, _)| !desired_names.contains(&n))
    {
        sql.push(format!("ALTER TYPE {} DROP ATTRIBUTE {}", c.name, ident(n)));
    }
    for (n, t) in &c.attributes {
        match live.attributes.iter().find(|(l, _)| l == n) {
            None => sql.push(format!(
                "ALTER TYPE {} ADD ATTRIBUTE {} {t}",
                c.name,
                ident(n)
            )),
            Some((_, old)) if old != t => sql.push(format!(
                "ALTER TYPE {} ALTER ATTRIBUTE {} TYPE {t}",
                c.name,
                ident(n)
            )),
            Some(_) => {}
        }
    }
    Some(sql)
}

pub(crate) fn diff_sequences(cx: &mut Cx) {
    for (name, s) in &cx.to.sequences {
        let object = format!("sequence {}", plain(name));
        let live = cx.from.sequences.get(name);
        match live {
            None => {
                cx.out.push(
                    Rank::Sequence,
                    Draft::new(
                        ChangeKind::Create,
                        object.clone(),
                        format!("create {object}"),
                    )
                    .sql(format!(
                        "CREATE SEQUENCE {name}{}",
                        sequence_options(None, s)
                    )),
                );
            }
            Some(live) => {
                let options = sequence_options(Some(live), s);
                if !options.is_empty() {
                    cx.out.push(
                        Rank::Sequence,
                        Draft::new(ChangeKind::Alter, object.clone(), format!("alter {object}"))
                            .sql(format!("ALTER SEQUENCE {name}{options}")),
                    );
                }
                // The owner goes away with a dropped column or table (and would take the
                // sequence with it): release the sequence first.
                if owner_dropped(cx, live) {
                    cx.out.push(
                        Rank::DisownSequence,
                        Draft::new(
                            ChangeKind::Alter,
                            object.clone(),
                            format!("release {object} from its column"),
                        )
                        .sql(format!("ALTER SEQUENCE {name} OWNED BY NONE")),
                    );
                }
            }
        }
        let live_owner = live
            .filter(|l| !owner_dropped(cx, l))
            .and_then(|l| l.owned_by.as_ref());
        if s.owned_by.as_ref() != live_owner {
            let (sql, needs) = match &s.owned_by {
                Some((t, c)) => (
                    format!("ALTER SEQUENCE {name} OWNED BY {t}.{}", ident(c)),
                    Some(format!("column {}.{c}", plain(t))),
                ),
                None => (format!("ALTER SEQUENCE {name} OWNED BY NONE"), None),
            };
            let id = cx.out.push(
                Rank::OwnSequence,
                Draft::new(
                    ChangeKind::Alter,
                    object.clone(),
                    format!("set the owner of {object}"),
                )
                .sql(sql),
            );
            if let Some(key) = needs {
                cx.out.need(id, key);
            }
        }
        let target = format!("SEQUENCE {name}");
        comment(
            cx,
            &object,
            &target,
            None,
            live.and_then(|l| l.comment.as_deref()),
            s.comment.as_deref(),
        );
    }
    for (name, live) in cx
        .from
        .sequences
        .iter()
        .filter(|(n, _)| !cx.to.sequences.contains_key(*n))
    {
        // A sequence owned by a dropped column or table goes away with it.
        if owner_dropped(cx, live) {
            continue;
        }
        let object = format!("sequence {}", plain(name));
        cx.out.push(
            Rank::DropSequence,
            Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                .sql(format!("DROP SEQUENCE {name}")),
        );
    }
}

/// Whether the column or table that owns the live sequence is dropped by this diff.
fn owner_dropped(cx: &Cx, live: &Sequence) -> bool {
    live.owned_by.as_ref().is_some_and(|(t, c)| {
        cx.dropped_tables.contains(t) || cx.dropped_columns.contains(&(t.clone(), c.clone()))
    })
}

/// ` AS .. INCREMENT BY ..`: all options for a new sequence, the changed ones otherwise.
fn sequence_options(live: Option<&Sequence>, s: &Sequence) -> String {
    let mut o = String::new();
    let changed = |f: fn(&Sequence) -> String| live.is_none_or(|l| f(l) != f(s));
    if changed(|x| x.data_type.clone()) {
        o.push_str(&format!(" AS {}", s.data_type));
    }
    if changed(|x| x.increment.to_string()) {
        o.push_str(&format!(" INCREMENT BY {}", s.increment));
    }
    if changed(|x| x.min_value.to_string()) {
        o.push_str(&format!(" MINVALUE {}", s.min_value));
    }
    if changed(|x| x.max_value.to_string()) {
        o.push_str(&format!(" MAXVALUE {}", s.max_value));
    }
    if changed(|x| x.start.to_string()) {
        o.push_str(&format!(" START WITH {}", s.start));
    }
    if changed(|x| x.cache.to_string()) {
        o.push_str(&format!(" CACHE {}", s.cache));
    }
    if changed(|x| x.cycle.to_string()) {
        o.push_str(if s.cycle { " CYCLE" } else { " NO CYCLE" });
    }
    o
}

pub(crate) fn diff_functions(cx: &mut Cx) {
    for (key, f) in &cx.to.functions {
        let object = function_object(f);
        let live = cx.from.functions.get(key);
        let mut recreated = false;
        match live {
            Some(live) if live.definition == f.definition => {}
            Some(live) => {
                if live.result != f.result {
                    // CREATE OR REPLACE cannot change the result type.
                    recreated = true;
                    cx.out.push(
                        Rank::DropReplacedFunction,
                        Draft::new(
                            ChangeKind::Drop,
                            object.clone(),
                            format!("drop {object} to re-create it"),
                        )
                        .sql(drop_function(live)),
                    );
                    cx.out
                        .push(Rank::Function, create_function(&object, f, "create"));
                } else {
                    cx.out
                        .push(Rank::Function, create_function(&object, f, "replace"));
                }
            }
            None => {
                cx.out
                    .push(Rank::Function, create_function(&object, f, "create"));
            }
        }
        let live_comment = live
            .filter(|_| !recreated)
            .and_then(|l| l.comment.as_deref());
        let target = function_target(f);
        comment(
            cx,
            &object,
            &target,
            None,
            live_comment,
            f.comment.as_deref(),
        );
    }
    let dropped: BTreeSet<&String> = cx
        .from
        .functions
        .keys()
        .filter(|k| !cx.to.functions.contains_key(*k))
        .collect();
    for key in dropped {
        let f = &cx.from.functions[key];
        let object = function_object(f);
        cx.out.push(
            Rank::DropFunction,
            Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}"))
                .sql(drop_function(f)),
        );
    }
}

fn function_object(f: &Function) -> String {
    let kind = if f.result.is_some() {
        "function"
    } else {
        "procedure"
    };
    format!("{kind} {}", f.key())
}

/// `FUNCTION "s"."f"(integer, text)`: the identity arguments are server text.
fn function_target(f: &Function) -> String {
    let kind = if f.result.is_some() {
        "FUNCTION"
    } else {
        "PROCEDURE"
    };
    let name = QualName {
        schema: ident(&f.schema),
        name: ident(&f.name),
    };
    format!("{kind} {name}({})", f.identity_args)
}

fn drop_function(f: &Function) -> String {
    format!("DROP {}", function_target(f))
}

fn create_function(object: &str, f: &Function, verb: &str) -> Draft {
    // pg_get_functiondef is already `CREATE OR REPLACE ...`.
    let kind = if verb == "replace" {
        ChangeKind::Alter
    } else {
        ChangeKind::Create
    };
    let draft = Draft::new(kind, object.to_string(), format!("{verb} {object}"));
    // A SQL-language body is checked when created, and may read tables that this plan
    // creates later; the desired-schema load already checked it (pg_dump does the same).
    let draft = if f.language == "sql" {
        draft.sql("SET check_function_bodies = off".to_string())
    } else {
        draft
    };
    draft.sql(f.definition.trim_end().to_string())
}

/// A drop for every object the live schema has and the desired one lacks; `what` gives the
/// object's description and its DROP statement.
fn drop_missing<K: Ord, V>(
    cx: &mut Cx,
    live: &BTreeMap<K, V>,
    desired: &BTreeMap<K, V>,
    rank: Rank,
    what: impl Fn(&K) -> (String, String),
) {
    for name in live.keys().filter(|n| !desired.contains_key(*n)) {
        let (object, sql) = what(name);
        cx.out.push(
            rank,
            Draft::new(ChangeKind::Drop, object.clone(), format!("drop {object}")).sql(sql),
        );
    }
}
