//! Whether a trigger's write into the other table can fail, and how to know beforehand.
//!
//! A PL/pgSQL `EXCEPTION` block opens a subtransaction each time it runs: one per row an
//! application writes, which in a bulk `UPDATE` of more than 64 rows overflows the backend's
//! subtransaction cache and slows every session that checks visibility (on a replica, all of
//! them). So a trigger catches errors only when it must. For each direction, prepare works out
//! from the two tables' definitions whether a write can be rejected:
//!
//! - never (the same type or a widening, no constraint the source lacks): no check at all;
//! - only for values it can test first (an integer out of a narrower range, a string longer
//!   than a `varchar(n)`, a NULL into a NOT NULL column): the trigger tests them and records
//!   the row in `tandem.divergence` instead of writing it, with no subtransaction;
//! - otherwise (a `USING` expression, a cast it cannot test, a constraint the change added, a
//!   target with foreign keys of its own, whose checks run in an order tandem cannot test
//!   beforehand): [`Guard::Catch`], the `EXCEPTION` block.

use planner::ident::Ident;
use serde::{Deserialize, Serialize};

/// How one direction's trigger keeps a write the target rejects from failing the
/// application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Guard {
    /// Catch the error (one subtransaction per row). What specs from older tandem versions
    /// get.
    #[default]
    Catch,
    /// Test these first; none: the write cannot fail.
    Checks(Vec<Check>),
}

/// A condition on one source column (`NEW.<column>` in the trigger) that a write needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
    /// An integer that must fit the target's range.
    Range {
        column: Ident,
        min: i64,
        max: i64,
    },
    /// A string of at most this many characters.
    MaxChars {
        column: Ident,
        max: u32,
    },
    NotNull {
        column: Ident,
    },
}

impl Check {
    /// The condition (true when the write can go ahead), over `NEW`.
    pub fn condition(&self) -> String {
        match self {
            Check::Range { column, min, max } => {
                format!("(NEW.{column} IS NULL OR NEW.{column} BETWEEN {min} AND {max})")
            }
            Check::MaxChars { column, max } => {
                format!("(NEW.{column} IS NULL OR pg_catalog.char_length(NEW.{column}) <= {max})")
            }
            Check::NotNull { column } => format!("(NEW.{column} IS NOT NULL)"),
        }
    }

    /// The SQLSTATE and message PostgreSQL would have raised.
    pub fn failure(&self) -> (&'static str, String) {
        match self {
            Check::Range { column, min, max } => (
                "22003",
                format!(
                    "value of column {} out of range {min}..{max}",
                    column.as_str()
                ),
            ),
            Check::MaxChars { column, max } => (
                "22001",
                format!(
                    "value of column {} longer than {max} characters",
                    column.as_str()
                ),
            ),
            Check::NotNull { column } => {
                ("23502", format!("null value in column {}", column.as_str()))
            }
        }
    }
}

/// What writing a value of type `from` (as `format_type` spells it) into a column of type
/// `to` can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cast {
    /// It cannot fail.
    Safe,
    /// It fails exactly when this check (on `column`) does not hold.
    Checked(Check),
    /// It may fail in ways tandem does not test for.
    Unknown,
}

fn int_range(t: &str) -> Option<(i64, i64)> {
    match t {
        "smallint" => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
        "integer" => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        "bigint" => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// `character varying(n)` -> Some(Some(n)); `character varying` or `text` -> Some(None).
fn string_limit(t: &str) -> Option<Option<u32>> {
    if t == "text" || t == "character varying" {
        return Some(None);
    }
    let n = t.strip_prefix("character varying(")?.strip_suffix(')')?;
    n.parse().ok().map(Some)
}

pub fn cast(column: &Ident, from: &str, to: &str) -> Cast {
    if from == to {
        return Cast::Safe;
    }
    if let (Some((fmin, fmax)), Some((tmin, tmax))) = (int_range(from), int_range(to)) {
        if tmin <= fmin && fmax <= tmax {
            return Cast::Safe;
        }
        return Cast::Checked(Check::Range {
            column: column.clone(),
            min: tmin,
            max: tmax,
        });
    }
    if int_range(from).is_some() && to == "numeric" {
        return Cast::Safe;
    }
    if from.starts_with("numeric") && to == "numeric" {
        return Cast::Safe;
    }
    if from == "real" && to == "double precision" {
        return Cast::Safe;
    }
    if let (Some(f), Some(t)) = (string_limit(from), string_limit(to)) {
        return match (f, t) {
            (_, None) => Cast::Safe,
            (Some(f), Some(t)) if f <= t => Cast::Safe,
            (_, Some(t)) => Cast::Checked(Check::MaxChars {
                column: column.clone(),
                max: t,
            }),
        };
    }
    Cast::Unknown
}

/// A `Mapped::expr` that is a plain column of the source row (`o."name"`), as prepare writes
/// it; `None` for a `USING` expression.
pub fn plain_column(expr: &str) -> Option<String> {
    let quoted = expr.strip_prefix("o.\"")?.strip_suffix('"')?;
    if quoted.replace("\"\"", "").contains('"') {
        return None;
    }
    Some(quoted.replace("\"\"", "\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Ident {
        Ident::new("v".to_string()).unwrap()
    }

    #[test]
    fn widenings_are_safe() {
        for (f, t) in [
            ("integer", "bigint"),
            ("smallint", "integer"),
            ("integer", "numeric"),
            ("numeric(10,2)", "numeric"),
            ("real", "double precision"),
            ("character varying(10)", "character varying(20)"),
            ("character varying(10)", "text"),
            ("text", "character varying"),
            ("timestamp with time zone", "timestamp with time zone"),
        ] {
            assert_eq!(cast(&c(), f, t), Cast::Safe, "{f} -> {t}");
        }
    }

    #[test]
    fn narrowings_are_checked() {
        assert_eq!(
            cast(&c(), "bigint", "integer"),
            Cast::Checked(Check::Range {
                column: c(),
                min: -2147483648,
                max: 2147483647
            })
        );
        assert_eq!(
            cast(&c(), "text", "character varying(5)"),
            Cast::Checked(Check::MaxChars {
                column: c(),
                max: 5
            })
        );
        assert_eq!(
            cast(&c(), "character varying(9)", "character varying(5)"),
            Cast::Checked(Check::MaxChars {
                column: c(),
                max: 5
            })
        );
    }

    #[test]
    fn others_are_unknown() {
        for (f, t) in [
            ("text", "integer"),
            ("numeric", "integer"),
            ("bigint", "double precision"),
            ("timestamp without time zone", "timestamp with time zone"),
            ("character(3)", "character(2)"),
        ] {
            assert_eq!(cast(&c(), f, t), Cast::Unknown, "{f} -> {t}");
        }
    }

    #[test]
    fn plain_columns() {
        assert_eq!(plain_column("o.\"a\"").as_deref(), Some("a"));
        assert_eq!(plain_column("o.\"a\"\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(plain_column("(o.\"a\" * 2)"), None);
        assert_eq!(plain_column("o.\"a\" || o.\"b\""), None);
    }
}
