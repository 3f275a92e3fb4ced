//! One comparison: the client's read and its rewrite, both inside one `REPEATABLE READ READ
//! ONLY` transaction on a mirror connection, so they see one snapshot and can write nothing.
//! The client's read runs as the client's own role (`SET LOCAL ROLE`): what the client could
//! not run is never run for it, and a role tandem's cannot become is a skip. The rewrite
//! (the same statement over tandem's mirror view, which the client's role cannot read) runs
//! after it, as tandem's role, only once the client's own ran.
//!
//! Simple protocol (no parameters): `simple_query`, values as text. Extended protocol: the
//! statement is prepared with the client's parameter types and bound with the client's bytes
//! in the client's formats ([`RawParam`]); results come back in binary and are compared as
//! bytes ([`RawValue`]). The rewrite reads a view with the live table's column names and
//! types, so equal rows are equal bytes.
//!
//! Known limits (each can report a mismatch the application would not see as one): an
//! `ORDER BY` that is not a total order compares its ties by position; `sum`/`avg` over
//! floating-point columns can differ in the last digit with the order rows are read in.

use std::error::Error as StdError;

use bytes::BytesMut;
use futures_util::{pin_mut, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, SimpleQueryMessage, Transaction};

use super::Sample;

/// Rows per side beyond which a read is not compared (the worker holds both sides).
pub(crate) const MAX_ROWS: usize = 10_000;
/// Bytes of values per side beyond which a read is not compared.
pub(crate) const MAX_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CompareError {
    #[error("the comparison failed on the server")]
    Sql(#[from] tokio_postgres::Error),
    #[error("the result has more than {MAX_ROWS} rows or {MAX_BYTES} bytes; larger reads are not compared")]
    TooLarge,
    #[error("tandem's role cannot act as the client's role {0:?}, so its read is not run for it")]
    Role(String),
    #[error("Bind carried {bind} parameters where the statement has {statement}")]
    ParamCount { bind: usize, statement: usize },
    #[error("Bind carried {formats} format codes for {params} parameters")]
    Formats { formats: usize, params: usize },
}

/// What one side of a comparison returned.
#[derive(Debug, Default)]
struct Side {
    columns: Vec<String>,
    /// The columns' types (extended protocol: values are binary); empty for text values.
    types: Vec<Type>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
}

/// Rows that differ between the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drift {
    pub rows_live: i64,
    pub rows_other: i64,
    /// `col=value, ...` of the key of one row found on one side only, when the read returns
    /// every key column.
    pub example_key: Option<String>,
}

/// Run `sample` and `rewritten` in one snapshot; `Ok(None)` when they return the same rows.
pub(crate) async fn compare(
    client: &mut Client,
    sample: &Sample,
    rewritten: &str,
    ordered: bool,
    key_columns: &[String],
) -> Result<Option<Drift>, CompareError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE \"{}\"",
        sample.role.replace('"', "\"\"")
    ))
    .await
    .map_err(|_| CompareError::Role(sample.role.to_string()))?;
    let (live, other) = if sample.params.is_empty() && sample.param_types.is_empty() {
        let live = simple(&tx, &sample.sql).await?;
        tx.batch_execute("RESET ROLE").await?;
        let other = simple(&tx, rewritten).await?;
        (live, other)
    } else {
        extended(&tx, sample, rewritten).await?
    };
    tx.commit().await?;
    Ok(diff(&live, &other, ordered, key_columns))
}

async fn simple(tx: &Transaction<'_>, sql: &str) -> Result<Side, CompareError> {
    let stream = tx.client().simple_query_raw(sql).await?;
    pin_mut!(stream);
    let mut side = Side::default();
    let mut bytes = 0usize;
    while let Some(message) = stream.try_next().await? {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                side.columns = columns.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if side.rows.len() == MAX_ROWS {
                    return Err(CompareError::TooLarge);
                }
                if side.columns.is_empty() {
                    side.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                let values: Vec<Option<Vec<u8>>> = (0..row.len())
                    .map(|i| row.get(i).map(|v| v.as_bytes().to_vec()))
                    .collect();
                bytes += values.iter().flatten().map(Vec::len).sum::<usize>();
                if bytes > MAX_BYTES {
                    return Err(CompareError::TooLarge);
                }
                side.rows.push(values);
            }
            _ => {}
        }
    }
    Ok(side)
}

async fn extended(
    tx: &Transaction<'_>,
    sample: &Sample,
    rewritten: &str,
) -> Result<(Side, Side), CompareError> {
    // The client's leading explicit types; the server infers the rest, as it did for it.
    let types: Vec<Type> = sample
        .param_types
        .iter()
        .take_while(|oid| **oid != 0)
        .map(|&oid| {
            Type::from_oid(oid).unwrap_or_else(|| {
                // Only the OID is sent in Parse; the server knows the type.
                Type::new(format!("oid {oid}"), oid, Kind::Pseudo, "pg_catalog".into())
            })
        })
        .collect();
    let live_stmt = tx.prepare_typed(&sample.sql, &types).await?;
    let n = live_stmt.params().len();
    if sample.params.len() != n {
        return Err(CompareError::ParamCount {
            bind: sample.params.len(),
            statement: n,
        });
    }
    let params = raw_params(sample)?;
    let live = rows(tx, &live_stmt, &params).await?;
    tx.batch_execute("RESET ROLE").await?;
    // The rewrite takes exactly the types the original's parameters got.
    let other_stmt = tx.prepare_typed(rewritten, live_stmt.params()).await?;
    let other = rows(tx, &other_stmt, &params).await?;
    Ok((live, other))
}

fn raw_params(sample: &Sample) -> Result<Vec<RawParam<'_>>, CompareError> {
    let f = &sample.param_formats;
    if f.len() > 1 && f.len() != sample.params.len() {
        return Err(CompareError::Formats {
            formats: f.len(),
            params: sample.params.len(),
        });
    }
    Ok(sample
        .params
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let code = match f.len() {
                0 => 0,
                1 => f[0],
                _ => f[i],
            };
            RawParam {
                value: value.as_deref(),
                format: if code == 1 {
                    Format::Binary
                } else {
                    Format::Text
                },
            }
        })
        .collect())
}

async fn rows(
    tx: &Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    params: &[RawParam<'_>],
) -> Result<Side, CompareError> {
    let stream = tx
        .query_raw(stmt, params.iter().map(|p| p as &(dyn ToSql + Sync)))
        .await?;
    pin_mut!(stream);
    let mut side = Side {
        columns: stmt
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        types: stmt.columns().iter().map(|c| c.type_().clone()).collect(),
        rows: Vec::new(),
    };
    let mut bytes = 0usize;
    while let Some(row) = stream.try_next().await? {
        if side.rows.len() == MAX_ROWS {
            return Err(CompareError::TooLarge);
        }
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            values.push(row.try_get::<_, Option<RawValue>>(i)?.map(|v| v.0));
        }
        bytes += values.iter().flatten().map(Vec::len).sum::<usize>();
        if bytes > MAX_BYTES {
            return Err(CompareError::TooLarge);
        }
        side.rows.push(values);
    }
    Ok(side)
}

/// A parameter exactly as the client sent it, in the client's format.
#[derive(Debug)]
pub(crate) struct RawParam<'a> {
    value: Option<&'a [u8]>,
    format: Format,
}

impl ToSql for RawParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.value {
            None => Ok(IsNull::Yes),
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        self.format
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column value as the server sent it, whatever its type.
struct RawValue(Vec<u8>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue(raw.to_vec()))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn diff(live: &Side, other: &Side, ordered: bool, key_columns: &[String]) -> Option<Drift> {
    let mut live_sorted = live.rows.iter().collect::<Vec<_>>();
    let mut other_sorted = other.rows.iter().collect::<Vec<_>>();
    live_sorted.sort();
    other_sorted.sort();
    let same = live.columns.len() == other.columns.len()
        && if ordered {
            live.rows == other.rows
        } else {
            live_sorted == other_sorted
        };
    if same {
        return None;
    }
    let example_key = first_unmatched(&live_sorted, &other_sorted).and_then(|(from_live, row)| {
        let side = if from_live { live } else { other };
        render_key(side, row, key_columns)
    });
    Some(Drift {
        rows_live: live.rows.len() as i64,
        rows_other: other.rows.len() as i64,
        example_key,
    })
}

type Row = Vec<Option<Vec<u8>>>;

/// The first row (in sort order) of one sorted multiset missing from the other; `true` when
/// it is a live row.
fn first_unmatched<'r>(live: &[&'r Row], other: &[&'r Row]) -> Option<(bool, &'r Row)> {
    let (mut i, mut j) = (0, 0);
    while i < live.len() && j < other.len() {
        match live[i].cmp(other[j]) {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => return Some((true, live[i])),
            std::cmp::Ordering::Greater => return Some((false, other[j])),
        }
    }
    live.get(i)
        .map(|r| (true, *r))
        .or_else(|| other.get(j).map(|r| (false, *r)))
}

fn render_key(side: &Side, row: &Row, key_columns: &[String]) -> Option<String> {
    if key_columns.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(key_columns.len());
    for key in key_columns {
        let i = side.columns.iter().position(|c| c == key)?;
        let value = match row.get(i)? {
            None => "NULL".to_string(),
            Some(bytes) => render_value(side.types.get(i), bytes),
        };
        parts.push(format!("{key}={value}"));
    }
    Some(parts.join(", "))
}

/// A value as text: as sent for text results, decoded for the usual key types in binary,
/// else `\x` and hex.
fn render_value(ty: Option<&Type>, bytes: &[u8]) -> String {
    let Some(ty) = ty else {
        return String::from_utf8_lossy(bytes).into_owned();
    };
    let decoded = match *ty {
        Type::INT2 => i16::from_sql(ty, bytes).map(|v| v.to_string()),
        Type::INT4 => i32::from_sql(ty, bytes).map(|v| v.to_string()),
        Type::INT8 => i64::from_sql(ty, bytes).map(|v| v.to_string()),
        Type::OID => u32::from_sql(ty, bytes).map(|v| v.to_string()),
        Type::BOOL => bool::from_sql(ty, bytes).map(|v| v.to_string()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            String::from_sql(ty, bytes).map(|v| v.to_string())
        }
        Type::UUID if bytes.len() == 16 => {
            let h = hex::encode(bytes);
            Ok(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        _ => Err("no decoder".into()),
    };
    decoded.unwrap_or_else(|_| format!("\\x{}", hex::encode(bytes)))
}

/// SHA-256 of the parameters as sent (format, then length and bytes or NULL); None without
/// parameters. Recorded salted with the database's secret (`sql/drift.sql`), never as is.
pub(crate) fn param_digest(sample: &Sample) -> Option<Vec<u8>> {
    if sample.params.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    let formats = raw_params(sample).ok();
    for (i, value) in sample.params.iter().enumerate() {
        let binary = formats
            .as_ref()
            .is_some_and(|f| matches!(f[i].format, Format::Binary));
        h.update([u8::from(binary)]);
        match value {
            None => h.update((-1i32).to_be_bytes()),
            Some(v) => {
                h.update((v.len() as u32).to_be_bytes());
                h.update(v);
            }
        }
    }
    Some(h.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(columns: &[&str], rows: &[&[Option<&str>]]) -> Side {
        Side {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            types: Vec::new(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect())
                .collect(),
        }
    }

    #[test]
    fn multisets_ignore_order_sequences_do_not() {
        let a = side(&["id", "b"], &[&[Some("1"), Some("x")], &[Some("2"), None]]);
        let b = side(&["id", "b"], &[&[Some("2"), None], &[Some("1"), Some("x")]]);
        let keys = ["id".to_string()];
        assert_eq!(diff(&a, &b, false, &keys), None);
        let d = diff(&a, &b, true, &keys).expect("order differs");
        // Same rows, other order: no row is missing from either side.
        assert_eq!(d.example_key, None);
    }

    #[test]
    fn example_key_names_a_row_found_on_one_side() {
        let a = side(
            &["id", "b"],
            &[&[Some("1"), Some("x")], &[Some("2"), Some("y")]],
        );
        let b = side(
            &["id", "b"],
            &[&[Some("1"), Some("x")], &[Some("2"), Some("z")]],
        );
        let d = diff(&a, &b, false, &["id".to_string()]).expect("differ");
        assert_eq!(d.example_key.as_deref(), Some("id=2"));
        assert_eq!((d.rows_live, d.rows_other), (2, 2));
        // Without every key column in the result, no example.
        let d = diff(&a, &b, false, &["id".to_string(), "k".to_string()]).expect("differ");
        assert_eq!(d.example_key, None);
    }

    #[test]
    fn column_counts_are_compared() {
        let a = side(&["id"], &[]);
        let b = side(&["id", "extra"], &[]);
        assert!(diff(&a, &b, false, &[]).is_some());
    }

    #[test]
    fn binary_keys_render_as_text() {
        assert_eq!(render_value(Some(&Type::INT4), &7i32.to_be_bytes()), "7");
        assert_eq!(
            render_value(Some(&Type::INT8), &(-3i64).to_be_bytes()),
            "-3"
        );
        assert_eq!(render_value(Some(&Type::BYTEA), &[0xde, 0xad]), "\\xdead");
        assert_eq!(render_value(None, b"abc"), "abc");
    }
}
