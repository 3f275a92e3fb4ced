//! Typed access to catalog rows, turning a mismatch into a `CatalogError` instead of a panic.

use planner::ident::QualName;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use super::{CatalogError, Query};

/// One row of a catalog query.
pub(crate) struct Fields<'a> {
    query: &'static Query,
    row: &'a Row,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(query: &'static Query, row: &'a Row) -> Self {
        Fields { query, row }
    }

    /// Every row of a query's result.
    pub(crate) fn all(
        (query, rows): &'a (&'static Query, Vec<Row>),
    ) -> impl Iterator<Item = Fields<'a>> + 'a {
        rows.iter().map(move |row| Fields::new(query, row))
    }

    pub(crate) fn get<T: FromSql<'a>>(&self, column: &'static str) -> Result<T, CatalogError> {
        self.row
            .try_get(column)
            .map_err(|source| CatalogError::Decode {
                what: self.query.what,
                column,
                source,
            })
    }

    /// An `int4` that must not be negative.
    pub(crate) fn get_u32(&self, column: &'static str) -> Result<u32, CatalogError> {
        let value: i32 = self.get(column)?;
        Ok(u32::try_from(value).unwrap_or(0))
    }

    /// A one-character code (a `"char"` column cast to text); `None` when empty.
    pub(crate) fn get_char(&self, column: &'static str) -> Result<Option<char>, CatalogError> {
        let text: Option<&str> = self.get(column)?;
        Ok(text.and_then(|t| t.chars().next()))
    }

    /// A validated schema-qualified name from two text columns.
    pub(crate) fn qual_name(
        &self,
        kind: &'static str,
        schema_column: &'static str,
        name_column: &'static str,
    ) -> Result<QualName, CatalogError> {
        let schema: &str = self.get(schema_column)?;
        let name: &str = self.get(name_column)?;
        qual_name(kind, schema, name)
    }
}

/// A validated schema-qualified name.
pub(crate) fn qual_name(
    kind: &'static str,
    schema: &str,
    name: &str,
) -> Result<QualName, CatalogError> {
    QualName::new(schema, name).map_err(|source| CatalogError::InvalidName {
        kind,
        name: format!("{schema}.{name}"),
        source,
    })
}
