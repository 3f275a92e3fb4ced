//! Objects that do not hang off a table: schemas, extensions, types, sequences, functions.

use std::collections::{BTreeMap, HashMap};

use planner::ident::QualName;
use planner::model::{
    CompositeType, Domain, DomainCheck, EnumType, Extension, Function, Namespace, Sequence,
};
use tokio_postgres::Row;

use super::row::{qual_name, Fields};
use super::{query, CatalogError, Query};

query!(NAMESPACES, "namespaces.sql", "schemas");
query!(EXTENSIONS, "extensions.sql", "extensions");
query!(ENUMS, "enums.sql", "enum types");
query!(DOMAINS, "domains.sql", "domains");
query!(
    DOMAIN_CHECKS,
    "domain_checks.sql",
    "domain check constraints"
);
query!(COMPOSITES, "composites.sql", "composite types");
query!(SEQUENCES, "sequences.sql", "sequences");
query!(FUNCTIONS, "functions.sql", "functions");

type Rows = (&'static Query, Vec<Row>);

pub(crate) fn namespaces(rows: &Rows) -> Result<BTreeMap<String, Namespace>, CatalogError> {
    Fields::all(rows)
        .map(|r| {
            let name: String = r.get("name")?;
            let namespace = Namespace {
                name: name.clone(),
                comment: r.get("comment")?,
            };
            Ok((name, namespace))
        })
        .collect()
}

pub(crate) fn extensions(rows: &Rows) -> Result<BTreeMap<String, Extension>, CatalogError> {
    Fields::all(rows)
        .map(|r| {
            let extension = Extension {
                name: r.get("name")?,
                schema: r.get("schema")?,
                version: r.get("version")?,
            };
            Ok((extension.name.clone(), extension))
        })
        .collect()
}

pub(crate) fn enums(rows: &Rows) -> Result<BTreeMap<QualName, EnumType>, CatalogError> {
    Fields::all(rows)
        .map(|r| {
            let name = r.qual_name("type", "schema", "name")?;
            let value = EnumType {
                name: name.clone(),
                labels: r.get("labels")?,
                comment: r.get("comment")?,
            };
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn domains(
    rows: &Rows,
    check_rows: &Rows,
) -> Result<BTreeMap<QualName, Domain>, CatalogError> {
    let mut by_oid: HashMap<u32, Domain> = HashMap::new();
    for r in Fields::all(rows) {
        let domain = Domain {
            name: r.qual_name("domain", "schema", "name")?,
            base_type: r.get("base_type")?,
            collation: r.get("collation")?,
            not_null: r.get("not_null")?,
            default: r.get("default")?,
            checks: BTreeMap::new(),
            comment: r.get("comment")?,
        };
        by_oid.insert(r.get("oid")?, domain);
    }
    for r in Fields::all(check_rows) {
        // Checks of domains not read above (system or extension domains) are ignored.
        if let Some(domain) = by_oid.get_mut(&r.get::<u32>("domain")?) {
            let check = DomainCheck {
                definition: r.get("definition")?,
                validated: r.get("validated")?,
            };
            domain.checks.insert(r.get("name")?, check);
        }
    }
    Ok(by_oid.into_values().map(|d| (d.name.clone(), d)).collect())
}

pub(crate) fn composites(rows: &Rows) -> Result<BTreeMap<QualName, CompositeType>, CatalogError> {
    Fields::all(rows)
        .map(|r| {
            let name = r.qual_name("type", "schema", "name")?;
            let names: Vec<String> = r.get("attribute_names")?;
            let types: Vec<String> = r.get("attribute_types")?;
            let value = CompositeType {
                name: name.clone(),
                attributes: names.into_iter().zip(types).collect(),
                comment: r.get("comment")?,
            };
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn sequences(rows: &Rows) -> Result<BTreeMap<QualName, Sequence>, CatalogError> {
    Fields::all(rows)
        .map(|r| {
            let name = r.qual_name("sequence", "schema", "name")?;
            let owner_schema: Option<&str> = r.get("owner_schema")?;
            let owner_table: Option<&str> = r.get("owner_table")?;
            let owner_column: Option<String> = r.get("owner_column")?;
            let owned_by = match (owner_schema, owner_table, owner_column) {
                (Some(schema), Some(table), Some(column)) => {
                    Some((qual_name("table", schema, table)?, column))
                }
                _ => None,
            };
            let value = Sequence {
                name: name.clone(),
                data_type: r.get("data_type")?,
                start: r.get("start")?,
                increment: r.get("increment")?,
                min_value: r.get("min_value")?,
                max_value: r.get("max_value")?,
                cache: r.get("cache")?,
                cycle: r.get("cycle")?,
                owned_by,
                comment: r.get("comment")?,
            };
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn functions(rows: &Rows) -> Result<BTreeMap<String, Function>, CatalogError> {
    Fields::all(rows)
        .map(|r| {
            // Validated like any name that may reach SQL, though the model keeps strings.
            let schema: String = r.get("schema")?;
            let name: String = r.get("name")?;
            qual_name("function", &schema, &name)?;
            let function = Function {
                schema,
                name,
                identity_args: r.get("identity_args")?,
                result: r.get("result")?,
                language: r.get("language")?,
                definition: r.get("definition")?,
                comment: r.get("comment")?,
            };
            Ok((function.key(), function))
        })
        .collect()
}
