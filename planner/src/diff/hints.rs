//! Explicit rename hints: the only way the diff renames a table or a column.
//!
//! A desired-schema file says `-- tandem: rename table public.old_name to new_name` or
//! `-- tandem: rename column public.accounts.old_col to new_col`. The diff then emits
//! `ALTER TABLE .. RENAME ..` and compares the renamed live object with its desired
//! counterpart (live definitions are rewritten to the new names before comparison).

use serde::{Deserialize, Serialize};

use super::order::{Changes, Draft, Rank};
use super::sql::{ident, index_shape, plain, replace_ident, replace_qualified, strip_not_valid};
use super::{ChangeKind, DiffError};
use crate::ident::{Ident, QualName};
use crate::model::{ConstraintKind, Schema, Table};

/// The renames a desired-schema file asks for, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameHints {
    pub tables: Vec<RenameTable>,
    pub columns: Vec<RenameColumn>,
}

/// `rename table <from> to <to>`: the table keeps its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameTable {
    pub from: QualName,
    pub to: Ident,
    /// 1-based line of the hint, for error messages.
    pub line: usize,
}

/// `rename column <table>.<from> to <to>`; `table` may name the table before or after a
/// table rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameColumn {
    pub table: QualName,
    pub from: Ident,
    pub to: Ident,
    pub line: usize,
}

impl RenameHints {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.columns.is_empty()
    }
}

const USAGE: &str = "write `-- tandem: rename table schema.old to new` or `-- tandem: rename column schema.table.old to new`";

/// Reads the `-- tandem: rename ...` comment lines of a desired-schema file. Other
/// `-- tandem:` directives are left to whoever defines them.
pub fn parse_rename_hints(sql: &str) -> Result<RenameHints, DiffError> {
    let mut hints = RenameHints::default();
    for (n, raw) in sql.lines().enumerate() {
        let line = n + 1;
        let Some(rest) = raw.trim().strip_prefix("--") else {
            continue;
        };
        let Some(rest) = rest.trim().strip_prefix("tandem:") else {
            continue;
        };
        let words = split_words(rest.trim()).map_err(|reason| bad(line, reason))?;
        if words.first().map(|w| w.to_ascii_lowercase()) != Some("rename".into()) {
            continue;
        }
        let [_, kind, name, to_kw, new] = words.as_slice() else {
            return Err(bad(line, format!("expected 5 words; {USAGE}")));
        };
        if !to_kw.eq_ignore_ascii_case("to") {
            return Err(bad(
                line,
                format!("expected `to` before the new name; {USAGE}"),
            ));
        }
        let parts = split_name(name).map_err(|r| bad(line, r))?;
        let new = one_ident(new).map_err(|r| bad(line, r))?;
        match (kind.to_ascii_lowercase().as_str(), parts.as_slice()) {
            ("table", [t]) => hints.tables.push(RenameTable {
                from: qual("public", t, line)?,
                to: new,
                line,
            }),
            ("table", [s, t]) => hints.tables.push(RenameTable {
                from: qual(s, t, line)?,
                to: new,
                line,
            }),
            ("column", [t, c]) => hints.columns.push(RenameColumn {
                table: qual("public", t, line)?,
                from: Ident::new(c.as_str()).map_err(|e| bad(line, e.to_string()))?,
                to: new,
                line,
            }),
            ("column", [s, t, c]) => hints.columns.push(RenameColumn {
                table: qual(s, t, line)?,
                from: Ident::new(c.as_str()).map_err(|e| bad(line, e.to_string()))?,
                to: new,
                line,
            }),
            ("table" | "column", _) => {
                return Err(bad(line, format!("cannot read the name {name:?}; {USAGE}")))
            }
            _ => {
                return Err(bad(
                    line,
                    format!("can rename a table or a column, not {kind:?}; {USAGE}"),
                ))
            }
        }
    }
    Ok(hints)
}

fn bad(line: usize, reason: impl Into<String>) -> DiffError {
    DiffError::BadHint {
        line,
        reason: reason.into(),
    }
}

fn qual(schema: &str, name: &str, line: usize) -> Result<QualName, DiffError> {
    QualName::new(schema, name).map_err(|e| bad(line, e.to_string()))
}

fn one_ident(word: &str) -> Result<Ident, String> {
    match split_name(word)?.as_slice() {
        [one] => Ident::new(one.as_str()).map_err(|e| e.to_string()),
        _ => Err(format!(
            "the new name {word:?} must be a bare name, without a schema or table"
        )),
    }
}

/// Words separated by spaces; double quotes keep spaces inside a word.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for ch in text.chars() {
        if ch == '"' {
            quoted = !quoted;
        }
        if ch.is_whitespace() && !quoted {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(ch);
        }
    }
    if quoted {
        return Err("unterminated double quote".into());
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

/// `a.b."C.d"` -> [a, b, C.d]: unquoted parts fold to lower case, as in SQL.
fn split_name(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(std::mem::take(&mut part));
                was_quoted = false;
            }
            c if quoted || was_quoted && !c.is_alphanumeric() => part.push(c),
            c => part.push(c.to_ascii_lowercase()),
        }
    }
    if quoted {
        return Err("unterminated double quote".into());
    }
    parts.push(part);
    if parts.iter().any(String::is_empty) {
        return Err(format!("empty name part in {text:?}"));
    }
    Ok(parts)
}

/// Applies the hints to a copy of the live schema, emitting the renames into `out`.
pub(crate) fn apply(
    from: &Schema,
    to: &Schema,
    hints: &RenameHints,
    out: &mut Changes,
) -> Result<Schema, DiffError> {
    let mut live = from.clone();
    for h in &hints.tables {
        let new = QualName {
            schema: h.from.schema.clone(),
            name: h.to.clone(),
        };
        if !live.tables.contains_key(&h.from) {
            return Err(bad(
                h.line,
                format!(
                    "table {} is not in the database; fix or remove the hint",
                    plain(&h.from)
                ),
            ));
        }
        if live.tables.contains_key(&new) {
            return Err(bad(
                h.line,
                format!(
                    "table {} already exists in the database; fix or remove the hint",
                    plain(&new)
                ),
            ));
        }
        if !to.tables.contains_key(&new) {
            return Err(bad(
                h.line,
                format!(
                    "table {} is not in the desired schema; fix or remove the hint",
                    plain(&new)
                ),
            ));
        }
        rename_table(&mut live, &h.from, &new);
        let id = out.push(
            Rank::RenameTable,
            Draft::new(
                ChangeKind::Rename,
                format!("table {}", plain(&h.from)),
                format!("rename table {} to {}", plain(&h.from), plain(&new)),
            )
            .table(&new)
            .sql(format!("ALTER TABLE {} RENAME TO {}", h.from, new.name)),
        );
        out.provide(id, format!("table {}", plain(&new)));
        rename_named_after(&mut live, to, &h.from, &new, id, out);
    }
    for h in &hints.columns {
        let table = resolve_table(&live, hints, &h.table).ok_or_else(|| {
            bad(
                h.line,
                format!(
                    "table {} is not in the database; fix or remove the hint",
                    plain(&h.table)
                ),
            )
        })?;
        let t = &live.tables[&table];
        let what = format!("{}.{}", plain(&table), h.from.as_str());
        if t.column(h.from.as_str()).is_none() {
            return Err(bad(
                h.line,
                format!("column {what} is not in the database; fix or remove the hint"),
            ));
        }
        if t.column(h.to.as_str()).is_some() {
            return Err(bad(
                h.line,
                format!(
                    "column {}.{} already exists in the database; fix or remove the hint",
                    plain(&table),
                    h.to.as_str()
                ),
            ));
        }
        if to
            .tables
            .get(&table)
            .and_then(|t| t.column(h.to.as_str()))
            .is_none()
        {
            return Err(bad(
                h.line,
                format!(
                    "column {}.{} is not in the desired schema; fix or remove the hint",
                    plain(&table),
                    h.to.as_str()
                ),
            ));
        }
        rename_column(&mut live, &table, h.from.as_str(), h.to.as_str());
        out.push(
            Rank::RenameColumn,
            Draft::new(
                ChangeKind::Rename,
                format!("column {what}"),
                format!("rename column {what} to {}", h.to.as_str()),
            )
            .table(&table)
            .sql(format!(
                "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                h.from, h.to
            )),
        );
    }
    Ok(live)
}

/// After a hinted table rename, the constraints and indexes PostgreSQL named after the old
/// table (`old_t_pkey`, `old_t_label_idx`) follow it when the desired schema has the same
/// definition under the new table's name (`new_t_pkey`): renamed, not dropped and rebuilt.
fn rename_named_after(
    live: &mut Schema,
    to: &Schema,
    old: &QualName,
    new: &QualName,
    after: Option<usize>,
    out: &mut Changes,
) {
    let (Some(t), Some(desired)) = (live.tables.get(new), to.tables.get(new)) else {
        return;
    };
    let prefix = format!("{}_", old.name.as_str());
    let renamed = |name: &str| {
        name.strip_prefix(&prefix)
            .map(|suffix| format!("{}_{suffix}", new.name.as_str()))
            .filter(|n| n.len() <= 63)
    };
    let mut constraints = Vec::new();
    for c in t.constraints.values() {
        let Some(to_name) = renamed(&c.name) else {
            continue;
        };
        let same = desired
            .constraints
            .get(&to_name)
            .is_some_and(|d| strip_not_valid(&d.definition) == strip_not_valid(&c.definition));
        if same && !desired.constraints.contains_key(&c.name) {
            constraints.push((c.name.clone(), to_name));
        }
    }
    let mut indexes = Vec::new();
    for i in t.indexes.values() {
        let Some(to_name) = renamed(&i.name) else {
            continue;
        };
        let backs_constraint = constraints.iter().any(|(from, _)| from == &i.name);
        let same = desired
            .indexes
            .get(&to_name)
            .is_some_and(|d| index_shape(&d.definition) == index_shape(&i.definition));
        if !backs_constraint && same && !desired.indexes.contains_key(&i.name) {
            indexes.push((i.name.clone(), to_name));
        }
    }
    let table = live.tables.get_mut(new).expect("renamed above");
    let rename_index = |table: &mut Table, from: &str, to_name: &str| {
        if let Some(mut i) = table.indexes.remove(from) {
            i.definition = i.definition.replacen(from, to_name, 1);
            i.name = to_name.to_string();
            table.indexes.insert(to_name.to_string(), i);
        }
    };
    for (from, to_name) in &constraints {
        if let Some(mut c) = table.constraints.remove(from) {
            c.name = to_name.clone();
            table.constraints.insert(to_name.clone(), c);
        }
        // PostgreSQL renames a key's index with its constraint.
        rename_index(table, from, to_name);
        let id = out.push(
            Rank::RenameTable,
            Draft::new(
                ChangeKind::Rename,
                format!("constraint {}.{from}", plain(new)),
                format!("rename constraint {from} of {} to {to_name}", plain(new)),
            )
            .table(new)
            .sql(format!(
                "ALTER TABLE {new} RENAME CONSTRAINT {} TO {}",
                ident(from),
                ident(to_name)
            )),
        );
        out.before(after, id);
    }
    // Sequences the table's columns own (serial), named after the old table: renamed, and
    // the defaults that read them follow (PostgreSQL keeps the default by oid).
    let mut sequences: Vec<(QualName, QualName)> = Vec::new();
    for (name, seq) in &live.sequences {
        let owned_here = seq.owned_by.as_ref().is_some_and(|(t, _)| t == new);
        let Some(to_name) = renamed(name.name.as_str()).filter(|_| owned_here) else {
            continue;
        };
        let Ok(target) = QualName::new(name.schema.as_str(), &to_name) else {
            continue;
        };
        let wanted = to
            .sequences
            .get(&target)
            .is_some_and(|d| d.owned_by == seq.owned_by);
        if wanted && !to.sequences.contains_key(name) && !live.sequences.contains_key(&target) {
            sequences.push((name.clone(), target));
        }
    }
    for (from, target) in &sequences {
        if let Some(mut seq) = live.sequences.remove(from) {
            seq.name = target.clone();
            live.sequences.insert(target.clone(), seq);
        }
        let spell = |q: &QualName| {
            if q.schema.as_str() == "public" {
                q.name.as_str().to_string()
            } else {
                plain(q)
            }
        };
        let (old_ref, new_ref) = (
            format!("nextval('{}'::regclass)", spell(from)),
            format!("nextval('{}'::regclass)", spell(target)),
        );
        let (old_full, new_full) = (
            format!("nextval('{}'::regclass)", plain(from)),
            format!("nextval('{}'::regclass)", plain(target)),
        );
        if let Some(table) = live.tables.get_mut(new) {
            for c in table.columns.iter_mut() {
                if let Some(d) = &mut c.default {
                    *d = d.replace(&old_ref, &new_ref).replace(&old_full, &new_full);
                }
            }
        }
        let id = out.push(
            Rank::RenameTable,
            Draft::new(
                ChangeKind::Rename,
                format!("sequence {}", plain(from)),
                format!(
                    "rename sequence {} to {}",
                    plain(from),
                    target.name.as_str()
                ),
            )
            .table(new)
            .sql(format!(
                "ALTER SEQUENCE {from} RENAME TO {}",
                ident(target.name.as_str())
            )),
        );
        out.before(after, id);
    }
    let table = live.tables.get_mut(new).expect("renamed above");
    for (from, to_name) in &indexes {
        rename_index(table, from, to_name);
        let index = QualName {
            schema: new.schema.clone(),
            name: ident(from),
        };
        let id = out.push(
            Rank::RenameTable,
            Draft::new(
                ChangeKind::Rename,
                format!("index {}", plain(&index)),
                format!("rename index {} to {to_name}", plain(&index)),
            )
            .table(new)
            .sql(format!("ALTER INDEX {index} RENAME TO {}", ident(to_name))),
        );
        out.before(after, id);
    }
}

/// The live (already renamed) table a column hint means: its new name or its old one.
fn resolve_table(live: &Schema, hints: &RenameHints, named: &QualName) -> Option<QualName> {
    if live.tables.contains_key(named) {
        return Some(named.clone());
    }
    hints
        .tables
        .iter()
        .find(|t| &t.from == named)
        .map(|t| QualName {
            schema: t.from.schema.clone(),
            name: t.to.clone(),
        })
}

fn rename_table(s: &mut Schema, old: &QualName, new: &QualName) {
    let mut table = s.tables.remove(old).expect("checked by the caller");
    table.name = new.clone();
    let q = |text: &mut String| *text = replace_qualified(text, old, new);
    for i in table.indexes.values_mut() {
        q(&mut i.definition);
    }
    for t in table.triggers.values_mut() {
        q(&mut t.definition);
    }
    s.tables.insert(new.clone(), table);
    for t in s.tables.values_mut() {
        for c in t.constraints.values_mut() {
            if let ConstraintKind::ForeignKey(fk) = &mut c.kind {
                if &fk.references == old {
                    fk.references = new.clone();
                    q(&mut c.definition);
                }
            }
        }
        if let Some((parent, _)) = &mut t.partition_of {
            if parent == old {
                *parent = new.clone();
            }
        }
    }
    for v in s.views.values_mut() {
        if v.depends_on.contains(old) {
            v.depends_on
                .iter_mut()
                .filter(|d| *d == old)
                .for_each(|d| *d = new.clone());
            q(&mut v.definition);
        }
    }
    for seq in s.sequences.values_mut() {
        if let Some((t, _)) = &mut seq.owned_by {
            if t == old {
                *t = new.clone();
            }
        }
    }
}

fn rename_column(s: &mut Schema, table: &QualName, old: &str, new: &str) {
    let r = |text: &mut String| *text = replace_ident(text, old, new);
    let rename_in = |cols: &mut Vec<String>| {
        cols.iter_mut()
            .filter(|c| *c == old)
            .for_each(|c| *c = new.to_string())
    };
    let t: &mut Table = s.tables.get_mut(table).expect("checked by the caller");
    for c in t.columns.iter_mut() {
        if c.name == old {
            c.name = new.to_string();
        }
        if let Some(g) = &mut c.generated {
            r(g);
        }
    }
    for c in t.constraints.values_mut() {
        match &mut c.kind {
            ConstraintKind::PrimaryKey { columns } | ConstraintKind::Unique { columns } => {
                rename_in(columns);
                r(&mut c.definition);
            }
            ConstraintKind::ForeignKey(fk) => {
                rename_in(&mut fk.columns);
                // Only the local column list; the referenced side is another table's.
                match c.definition.find(" REFERENCES ") {
                    Some(at) => {
                        let (head, tail) = c.definition.split_at(at);
                        c.definition = replace_ident(head, old, new) + tail;
                    }
                    None => r(&mut c.definition),
                }
            }
            ConstraintKind::Check | ConstraintKind::Exclusion => r(&mut c.definition),
        }
    }
    for i in t.indexes.values_mut() {
        rename_in(&mut i.keys);
        rename_in(&mut i.include);
        if let Some(p) = &mut i.predicate {
            r(p);
        }
        r(&mut i.definition);
    }
    for tr in t.triggers.values_mut() {
        r(&mut tr.definition);
    }
    for p in t.policies.values_mut() {
        for e in [&mut p.using, &mut p.with_check].into_iter().flatten() {
            r(e);
        }
    }
    // Foreign keys elsewhere that reference the column: the referenced column list.
    for other in s.tables.values_mut() {
        for c in other.constraints.values_mut() {
            if let ConstraintKind::ForeignKey(fk) = &mut c.kind {
                if &fk.references == table {
                    rename_in(&mut fk.referenced_columns);
                    if let Some(at) = c.definition.find(" REFERENCES ") {
                        let (head, tail) = c.definition.split_at(at);
                        c.definition = head.to_string() + &replace_ident(tail, old, new);
                    }
                }
            }
        }
    }
    for v in s.views.values_mut() {
        if v.depends_on.contains(table) {
            r(&mut v.definition);
        }
    }
    for seq in s.sequences.values_mut() {
        if let Some((t, c)) = &mut seq.owned_by {
            if t == table && c == old {
                *c = new.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hints_and_rejects_bad_ones() {
        let hints = parse_rename_hints(
            "-- tandem: rename table public.old to new\nCREATE TABLE x();\n  --tandem: rename column \"S\".t.\"Old Col\" to \"New Col\"\n",
        )
        .unwrap();
        assert_eq!(
            hints.tables[0].from,
            QualName::new("public", "old").unwrap()
        );
        assert_eq!(hints.columns[0].table, QualName::new("S", "t").unwrap());
        assert_eq!(hints.columns[0].from.as_str(), "Old Col");
        assert_eq!(hints.columns[0].to.as_str(), "New Col");
        assert!(matches!(
            parse_rename_hints("\n-- tandem: rename table a to"),
            Err(DiffError::BadHint { line: 2, .. })
        ));
        assert!(matches!(
            parse_rename_hints("-- tandem: rename index a to b"),
            Err(DiffError::BadHint { line: 1, .. })
        ));
    }
}
