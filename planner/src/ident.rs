//! Identifier validation and quoting: the one way a name reaches SQL text.
//!
//! Every identifier that tandem writes into SQL passes through [`Ident`], which
//! rejects names PostgreSQL would silently truncate or cannot hold (NUL), and always
//! double-quotes on output. Any other character is a valid name character for PostgreSQL
//! (a tab, a newline, `$`, a dot, a quote): such names work, and [`plain`] writes their
//! control characters escaped when a name is shown to people. Building SQL from names with
//! a bare `format!` is not allowed anywhere in the workspace.

use std::fmt;

use serde::{Deserialize, Serialize};

/// PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the server.
pub const MAX_IDENT_BYTES: usize = 63;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("empty identifier: give the object a name")]
    Empty,
    #[error("identifier {0:?} is {1} bytes; PostgreSQL truncates names over 63 bytes, so choose a shorter name")]
    TooLong(String, usize),
    #[error("identifier {0:?} contains a NUL character, which PostgreSQL names cannot hold")]
    Nul(String),
    #[error("{0:?} is not a schema-qualified name; write it as schema.name")]
    Malformed(String),
}

/// A validated SQL identifier. `Display` always writes it double-quoted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ident(String);

impl Ident {
    pub fn new(name: impl Into<String>) -> Result<Self, IdentError> {
        let name = name.into();
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.len() > MAX_IDENT_BYTES {
            let len = name.len();
            return Err(IdentError::TooLong(name, len));
        }
        if name.contains('\0') {
            return Err(IdentError::Nul(name));
        }
        Ok(Ident(name))
    }

    /// A name the caller has already made valid (as `lint::analyze::make_qual` does): skips
    /// the checks, which showed in the lint's profile.
    pub(crate) fn new_valid(name: &str) -> Self {
        debug_assert!(
            Ident::new(name).is_ok(),
            "{name:?} is not a valid identifier"
        );
        Ident(name.to_string())
    }

    /// The raw (unquoted) name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Ident {
    type Error = IdentError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Ident::new(value)
    }
}

impl From<Ident> for String {
    fn from(value: Ident) -> Self {
        value.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        f.write_str(&self.0.replace('"', "\"\""))?;
        f.write_str("\"")
    }
}

/// A schema-qualified name, written `"schema"."name"` in SQL.
///
/// Serialised as one string, `schema.name`, each part double-quoted only when it needs to be
/// (so it can be a JSON map key and stays readable: `public.accounts`, `"My Schema"."T"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QualName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualName {
    pub fn new(schema: &str, name: &str) -> Result<Self, IdentError> {
        Ok(QualName {
            schema: Ident::new(schema)?,
            name: Ident::new(name)?,
        })
    }

    /// `schema.name` without quotes, for messages meant for people (control characters
    /// escaped, [`plain`]).
    pub fn display_plain(&self) -> String {
        if self.schema.as_str() == "public" {
            plain(self.name.as_str()).into_owned()
        } else {
            let (schema, name) = (plain(self.schema.as_str()), plain(self.name.as_str()));
            let mut s = String::with_capacity(schema.len() + name.len() + 1);
            s.push_str(&schema);
            s.push('.');
            s.push_str(&name);
            s
        }
    }
}

impl From<QualName> for String {
    fn from(value: QualName) -> Self {
        format!(
            "{}.{}",
            maybe_quoted(value.schema.as_str()),
            maybe_quoted(value.name.as_str())
        )
    }
}

impl TryFrom<String> for QualName {
    type Error = IdentError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let parts = split_qualified(&value).ok_or(IdentError::Malformed(value))?;
        QualName::new(&parts.0, &parts.1)
    }
}

/// A name for people: as it is, but with control characters escaped (`\t`, `\n`,
/// `\u{1b}`), so that a name cannot break a line of a log or forge one.
pub fn plain(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(
        name.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The name bare when it is a plain lower-case identifier, else double-quoted.
fn maybe_quoted(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        Ident(name.to_string()).to_string()
    }
}

/// Split `schema.name` where either part may be double-quoted.
fn split_qualified(text: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => break,
            Some(_) => return None,
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Some((schema, name)),
        Err(_) => None,
    }
}

impl fmt::Display for QualName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A string literal, written single-quoted with quotes doubled (standard_conforming_strings).
pub struct Literal<'a>(pub &'a str);

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains('\\') {
            f.write_str("E'")?;
            f.write_str(&self.0.replace('\\', "\\\\").replace('\'', "''"))?;
        } else {
            f.write_str("'")?;
            f.write_str(&self.0.replace('\'', "''"))?;
        }
        f.write_str("'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(Ident::new("a\"b").unwrap().to_string(), "\"a\"\"b\"");
        assert_eq!(
            QualName::new("public", "T").unwrap().to_string(),
            "\"public\".\"T\""
        );
        assert_eq!(Literal("it's").to_string(), "'it''s'");
        assert_eq!(Literal("a\\b").to_string(), "E'a\\\\b'");
    }

    #[test]
    fn qualified_names_round_trip_as_strings() {
        for (schema, name, text) in [
            ("public", "accounts", "public.accounts"),
            ("My Schema", "T", "\"My Schema\".\"T\""),
            ("s", "a.b\"c", "s.\"a.b\"\"c\""),
        ] {
            let q = QualName::new(schema, name).unwrap();
            assert_eq!(String::from(q.clone()), text);
            assert_eq!(QualName::try_from(text.to_string()).unwrap(), q);
        }
        assert!(QualName::try_from("nodot".to_string()).is_err());
        assert!(QualName::try_from("a.b.c".to_string()).is_err());
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Ident::new(""), Err(IdentError::Empty));
        assert!(matches!(
            Ident::new("x".repeat(64)),
            Err(IdentError::TooLong(_, 64))
        ));
        assert!(Ident::new("x".repeat(63)).is_ok());
        assert!(matches!(Ident::new("a\0b"), Err(IdentError::Nul(_))));
        // PostgreSQL takes any other character in a quoted name.
        let tab = QualName::new("public", "a\tb").unwrap();
        assert_eq!(tab.to_string(), "\"public\".\"a\tb\"");
        assert_eq!(tab.display_plain(), "a\\tb");
        assert_eq!(QualName::try_from(String::from(tab.clone())).unwrap(), tab);
    }
}
