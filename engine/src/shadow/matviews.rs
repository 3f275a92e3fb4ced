//! Materialized views that read a migrating table, carried across the swap.
//!
//! A materialized view reads its table by oid and cannot be re-pointed the way a view is
//! (`CREATE OR REPLACE` does not exist for it), and building it again inside the swap would
//! hold the swap's locks for as long as its query runs. So the swap leaves it reading the
//! table it parks, and right after the swap commits it is built again beside, over the
//! table now under the user's name, with its indexes, under tandem's names; then one short
//! transaction drops the old one and renames the new one and its indexes into place, with
//! the owner, privileges and comments of the old one. Clients read the old one until that
//! transaction and the new one from it: it is never missing. Its rows come from the table as
//! it is at the rebuild, as a `REFRESH` would give them.
//!
//! The definition comes from the catalog when the rebuild runs, never from a record: it
//! names the parked table, whose name is replaced by the table's ([`retarget`]), so the new
//! view's definition reads as the old one did. Resumable: a rebuild that was interrupted
//! leaves the old view reading the parked table, and the next run finds it again and starts
//! over.

use planner::ident::{Literal, QualName};
use tokio_postgres::GenericClient;

use crate::catalog::table;
use crate::error::EngineError;
use crate::shadow::dependents::{grant_statements, grants, q, role, with_options};
use crate::shadow::ident;

/// One materialized view to carry: built beside, then swapped in.
#[derive(Debug)]
pub struct Rebuild {
    pub name: QualName,
    /// One transaction: any leftover of an interrupted build dropped, the view built beside
    /// over the table under the user's name, its indexes.
    pub build: Vec<String>,
    /// One short transaction: the old one dropped, the new one and its indexes renamed into
    /// place, owner, privileges and comments.
    pub swap: Vec<String>,
}

/// The rebuilds that move the materialized views reading `parked` (by oid) to `live`, for
/// migration `m`. Empty when none reads it, or when `parked` does not exist. Run under a
/// `search_path` of `pg_catalog` only, so that every name the catalog prints is qualified.
pub async fn rebuilds(
    client: &impl GenericClient,
    m: i64,
    parked: &QualName,
    live: &QualName,
) -> Result<Vec<Rebuild>, EngineError> {
    let e = |what: &'static str| EngineError::sql(what);
    let Some(oid) = client
        .query_one("SELECT to_regclass($1)::oid", &[&parked.to_string()])
        .await
        .map_err(e("look up the parked table"))?
        .get::<_, Option<u32>>(0)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in client
        .query(table::MATVIEWS.sql, &[&oid])
        .await
        .map_err(e("read the materialized views"))?
    {
        let view_oid: u32 = row.get(0);
        let name = q(row.get(1), row.get(2))?;
        let definition = retarget(row.get(3), parked, live)?;
        let options: Vec<String> = row.get(4);
        let owner: String = row.get(5);
        let comment: Option<String> = row.get(6);
        let temp = q(name.schema.as_str(), &format!("_tandem_m{m}_mv{view_oid}"))?;
        // Filled by REFRESH as the view's owner (PostgreSQL runs it as the owner), never
        // by tandem's role: the query may call functions of the owner's (`shadow::writer`).
        let mut build = vec![
            format!("DROP MATERIALIZED VIEW IF EXISTS {temp}"),
            format!(
                "CREATE MATERIALIZED VIEW {temp}{} AS {definition} WITH NO DATA",
                with_options(&options)
            ),
            format!("ALTER MATERIALIZED VIEW {temp} OWNER TO {}", role(&owner)?),
            format!("REFRESH MATERIALIZED VIEW {temp}"),
        ];
        let mut swap = vec![
            format!("DROP MATERIALIZED VIEW {name}"),
            format!("ALTER MATERIALIZED VIEW {temp} RENAME TO {}", name.name),
        ];
        let indexes = client
            .query(table::MATVIEW_INDEXES.sql, &[&view_oid])
            .await
            .map_err(e("read a materialized view's indexes"))?;
        for (n, index) in indexes.iter().enumerate() {
            let index_name = ident(index.get(0))?;
            let (cut, tail, unique): (bool, String, bool) =
                (index.get(1), index.get(2), index.get(3));
            if !cut {
                return Err(EngineError::refused(
                    format!("the definition of index {index_name} on materialized view {} could not be read", name.display_plain()),
                    "drop the materialized view before the migration and create it again after; nothing was changed",
                ));
            }
            let index_temp = ident(&format!("_tandem_m{m}_mv{view_oid}_i{n}"))?;
            build.push(format!(
                "CREATE {}INDEX {index_temp} ON {temp} {tail}",
                if unique { "UNIQUE " } else { "" }
            ));
            let in_schema = q(name.schema.as_str(), index_temp.as_str())?;
            swap.push(format!("ALTER INDEX {in_schema} RENAME TO {index_name}"));
            if let Some(c) = index.get::<_, Option<&str>>(4) {
                let named = q(name.schema.as_str(), index_name.as_str())?;
                swap.push(format!("COMMENT ON INDEX {named} IS {}", Literal(c)));
            }
        }
        swap.push(format!(
            "ALTER MATERIALIZED VIEW {name} OWNER TO {}",
            role(&owner)?
        ));
        swap.push(format!("REVOKE ALL ON {name} FROM PUBLIC"));
        swap.extend(grant_statements(
            &name,
            &grants(client, view_oid, false).await?,
        )?);
        if let Some(c) = comment {
            swap.push(format!(
                "COMMENT ON MATERIALIZED VIEW {name} IS {}",
                Literal(&c)
            ));
        }
        out.push(Rebuild { name, build, swap });
    }
    Ok(out)
}

/// `definition` (a view's query as the catalog prints it, names qualified) with every
/// reference to the parked table `from` made a reference to `to`. The catalog spells the
/// table's name as the table's alias too (`_tandem_m1_t2_old.amount`), so the name is
/// replaced as a word wherever it stands: tandem's parked names are its own (prepare refuses
/// a user object that has one), and never need quoting. The schema stays: the parked table is
/// in the table's schema. The result must parse and read `from` no more.
pub fn retarget(definition: &str, from: &QualName, to: &QualName) -> Result<String, EngineError> {
    let unreadable = |why: String| {
        EngineError::refused(
            format!("a materialized view's definition could not be moved to the new table: {why}"),
            "drop the materialized view before the migration and create it again after; nothing was changed",
        )
    };
    if from.schema != to.schema {
        return Err(unreadable("the tables are in different schemas".into()));
    }
    let word = from.name.as_str();
    let replacement = to.name.to_string();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(word);
        } else {
            out.push_str(&replacement);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    let text = out.trim().trim_end_matches(';').to_string();
    let check = pg_query::parse(&text, 0).map_err(|e| unreadable(e.to_string()))?;
    let parked = format!("{}.{}", from.schema.as_str(), word);
    if check.tables().iter().any(|t| *t == parked || t == word) {
        return Err(unreadable(format!(
            "it still reads {}",
            from.display_plain()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str, n: &str) -> QualName {
        QualName::new(s, n).expect("name")
    }

    #[test]
    fn the_parked_name_becomes_the_table_name_wherever_it_stands() {
        let out = retarget(
            " SELECT _tandem_m1_t2_old.account,\n    sum(_tandem_m1_t2_old.amount) AS total\n   FROM public._tandem_m1_t2_old\n  WHERE (_tandem_m1_t2_old.amount > 0) GROUP BY _tandem_m1_t2_old.account;",
            &q("public", "_tandem_m1_t2_old"),
            &q("public", "payments"),
        )
        .expect("retargets");
        assert_eq!(
            out,
            "SELECT \"payments\".account,\n    sum(\"payments\".amount) AS total\n   FROM public.\"payments\"\n  WHERE (\"payments\".amount > 0) GROUP BY \"payments\".account",
            "quoted always: the server prints the stored view its own way"
        );
    }

    #[test]
    fn longer_names_and_quoted_targets_are_handled() {
        let out = retarget(
            "SELECT p.id FROM public._tandem_m1_t2_old p JOIN public._tandem_m1_t2_old_x o ON o.id = p.id",
            &q("public", "_tandem_m1_t2_old"),
            &q("public", "Payments"),
        )
        .expect("retargets");
        assert_eq!(
            out,
            "SELECT p.id FROM public.\"Payments\" p JOIN public._tandem_m1_t2_old_x o ON o.id = p.id"
        );
    }
}
