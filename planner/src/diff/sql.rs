//! Small SQL helpers for the diff: names for people, comments, index and view text surgery.
//!
//! Identifiers reach SQL only through `Ident`/`QualName` Display; definitions that the
//! server produced (`pg_get_indexdef`, `pg_get_viewdef`, ...) are embedded as they are.

use crate::ident::{Ident, Literal, QualName};

/// `schema.name`, unquoted, for descriptions and object labels (never for SQL).
pub(crate) fn plain(q: &QualName) -> String {
    let mut s = String::from(crate::ident::plain(q.schema.as_str()));
    s.push('.');
    s.push_str(&crate::ident::plain(q.name.as_str()));
    s
}

/// A qualified name for an object that lives in a table's schema (indexes).
pub(crate) fn sibling(table: &QualName, name: &str) -> QualName {
    QualName {
        schema: table.schema.clone(),
        name: ident(name),
    }
}

/// An identifier from the model. Model names were read from the catalog, so they are
/// valid; a name PostgreSQL cannot have is a bug in whoever built the model.
pub(crate) fn ident(name: &str) -> Ident {
    Ident::new(name).unwrap_or_else(|e| panic!("schema model holds an invalid name: {e}"))
}

/// `COMMENT ON <target> IS '...'` or `IS NULL`.
pub(crate) fn comment_sql(target: &str, comment: Option<&str>) -> String {
    match comment {
        Some(text) => format!("COMMENT ON {target} IS {}", Literal(text)),
        None => format!("COMMENT ON {target} IS NULL"),
    }
}

/// A constraint definition without the trailing ` NOT VALID` that `pg_get_constraintdef`
/// appends to constraints not yet validated.
pub(crate) fn strip_not_valid(def: &str) -> &str {
    def.trim_end()
        .strip_suffix(" NOT VALID")
        .unwrap_or(def.trim_end())
}

/// `CREATE [UNIQUE] INDEX name ...` -> `CREATE [UNIQUE] INDEX CONCURRENTLY name ...`.
pub(crate) fn concurrently(index_def: &str) -> String {
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = index_def.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY {rest}");
        }
    }
    index_def.to_string()
}

/// The SELECT of a `pg_get_viewdef` result, without the leading space and final `;`.
pub(crate) fn view_body(def: &str) -> &str {
    let t = def.trim();
    t.strip_suffix(';').unwrap_or(t).trim_end()
}

/// An index definition with its own name and table taken out, to tell whether a partition's
/// index is the one its parent's index created (`ON ONLY public.parent` vs `ON public.child`).
pub(crate) fn index_shape(def: &str) -> &str {
    def.find(" USING ").map(|i| &def[i..]).unwrap_or(def)
}

/// Whether `name` appears in `text` as an identifier (bare or double-quoted), outside
/// string literals. Used to find what a dropped column takes with it.
pub(crate) fn mentions(text: &str, name: &str) -> bool {
    rewrite(text, &pg_quote(name), "\u{0}") != text
}

/// Replaces the identifier `old` by `new` (written as PostgreSQL's `quote_ident` would)
/// where it stands as a whole identifier, outside string literals. Used only to normalise
/// live definitions after a hinted rename, for comparison; never to build SQL.
pub(crate) fn replace_ident(text: &str, old: &str, new: &str) -> String {
    rewrite(text, &pg_quote(old), &pg_quote(new))
}

/// Replaces the qualified name `schema.old` by `schema.new`, as [`replace_ident`] does.
pub(crate) fn replace_qualified(text: &str, old: &QualName, new: &QualName) -> String {
    let spell = |q: &QualName| {
        format!(
            "{}.{}",
            pg_quote(q.schema.as_str()),
            pg_quote(q.name.as_str())
        )
    };
    rewrite(text, &spell(old), &spell(new))
}

/// Replaces `quoted_old` by `quoted_new` (both spelled as in SQL text) where it stands as a
/// whole identifier, outside string literals.
fn rewrite(text: &str, quoted_old: &str, quoted_new: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    while i < text.len() {
        let b = bytes[i];
        if b == b'\'' {
            // Copy a string literal untouched.
            let mut j = i + 1;
            while j < text.len() {
                if bytes[j] == b'\'' {
                    if j + 1 < text.len() && bytes[j + 1] == b'\'' {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let end = (j + 1).min(text.len());
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        let prev_ok = i == 0 || !is_word(bytes[i - 1]) && bytes[i - 1] != b'"';
        if prev_ok && text[i..].starts_with(quoted_old) {
            let after = i + quoted_old.len();
            let next_ok = after >= text.len()
                || (!is_word(bytes[after]) && bytes[after] != b'"')
                || quoted_old.ends_with('"');
            if next_ok {
                out.push_str(quoted_new);
                i = after;
                continue;
            }
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// How `quote_ident` spells a name: bare when it is a plain lower-case word, else quoted.
/// (Keywords are not known here; a keyword name makes a comparison miss, never wrong SQL.)
fn pg_quote(name: &str) -> String {
    let plain = name.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_lowercase() || b == b'_' || (i > 0 && (b.is_ascii_digit() || b == b'$'))
    });
    if plain && !name.is_empty() {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_identifiers_only() {
        assert_eq!(
            replace_ident("CHECK ((a > 0) AND (ab = 'a'))", "a", "b"),
            "CHECK ((b > 0) AND (ab = 'a'))"
        );
        assert_eq!(replace_ident("t.a::text", "a", "New"), "t.\"New\"::text");
        assert!(mentions("lower((email)::text)", "email"));
        assert!(!mentions("lower((email2)::text)", "email"));
    }

    #[test]
    fn index_text() {
        assert_eq!(
            concurrently("CREATE UNIQUE INDEX i ON public.t USING btree (a)"),
            "CREATE UNIQUE INDEX CONCURRENTLY i ON public.t USING btree (a)"
        );
        assert_eq!(
            strip_not_valid("CHECK ((a > 0)) NOT VALID"),
            "CHECK ((a > 0))"
        );
        assert_eq!(view_body(" SELECT 1;"), "SELECT 1");
    }
}
