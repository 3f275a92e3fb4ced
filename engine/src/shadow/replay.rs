//! A shadow step's statements replayed directly, as the shadow migration's result would be:
//! for the plan's check and the round-trip tests, which run a plan's SQL on a scratch copy.
//!
//! A shadow migration runs the step's ALTER on a new table and carries the table's row-level
//! security policies over at cutover, so a retype of a column a policy reads works there. Run
//! directly, PostgreSQL refuses it ("cannot alter type of a column used in a policy
//! definition"): here the table's policies are dropped and re-created around the statements,
//! in one transaction. The same holds for the views that read the table (directly or through
//! other views), which the swap re-points at the new table, and for the table's triggers,
//! which it re-creates there: here they are dropped (views deepest first) and created again
//! from their own definitions once the statements have run.
//! Materialized views that read the table, which the executor builds again over the new
//! table right after the swap (`shadow::matviews`), are dropped here and created again
//! (with their indexes and comments) in the same transaction. Never used on a target
//! database.

use tokio_postgres::Client;

use planner::ident::Literal;
use planner::QualName;

use crate::catalog::table;
use crate::shadow::dependents::with_options;

/// The policies of `table` as `(DROP POLICY .., CREATE POLICY ..)` statements.
const POLICIES: &str = "
SELECT format('DROP POLICY %I ON %I.%I', policyname, schemaname, tablename),
       format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s',
              policyname, schemaname, tablename, permissive, cmd,
              (SELECT string_agg(CASE WHEN r = 'public' THEN 'PUBLIC' ELSE quote_ident(r) END, ', ')
                 FROM unnest(roles) AS r),
              CASE WHEN qual IS NULL THEN '' ELSE ' USING (' || qual || ')' END,
              CASE WHEN with_check IS NULL THEN '' ELSE ' WITH CHECK (' || with_check || ')' END)
  FROM pg_catalog.pg_policies
 WHERE schemaname = $1 AND tablename = $2
 ORDER BY policyname";

/// The materialized views that read table $1: `DROP ..`, and the statements that create
/// it again as it is (its query, its indexes, its comment).
const MATVIEWS: &str = "
SELECT format('DROP MATERIALIZED VIEW %s', v.oid::regclass),
       array_append(
           array_prepend(
               format('CREATE MATERIALIZED VIEW %s%s AS %s', v.oid::regclass,
                      CASE WHEN v.reloptions IS NULL THEN ''
                           ELSE ' WITH (' || array_to_string(v.reloptions, ', ') || ')' END,
                      rtrim(pg_get_viewdef(v.oid), ';')),
               array(SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                      WHERE i.indrelid = v.oid ORDER BY i.indexrelid)),
           CASE WHEN obj_description(v.oid, 'pg_class') IS NULL THEN 'SELECT 1'
                ELSE format('COMMENT ON MATERIALIZED VIEW %s IS %L', v.oid::regclass,
                            obj_description(v.oid, 'pg_class')) END)
  FROM pg_class v
 WHERE v.relkind = 'm'
   AND v.oid IN (SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                  WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1)
 ORDER BY v.oid";

/// Run a shadow step's `statements` on `table` directly, with its policies, its triggers and
/// the views that read it lifted around them, in one transaction.
pub async fn shadow_step(
    client: &Client,
    table: &QualName,
    statements: &[String],
) -> Result<(), tokio_postgres::Error> {
    let policies = client
        .query(POLICIES, &[&table.schema.as_str(), &table.name.as_str()])
        .await?;
    let oid: u32 = client
        .query_one("SELECT $1::text::regclass::oid", &[&table.to_string()])
        .await?
        .get(0);
    let views: Vec<tokio_postgres::Row> = client
        .query(table::VIEWS.sql, &[&oid])
        .await?
        .into_iter()
        .filter(|r| r.get::<_, &str>(3) == "v")
        .collect();
    let triggers = client.query(table::TRIGGERS.sql, &[&oid]).await?;
    let matviews = client.query(MATVIEWS, &[&oid]).await?;
    let view_name = |r: &tokio_postgres::Row| -> Option<QualName> {
        QualName::new(r.get::<_, &str>(1), r.get::<_, &str>(2)).ok()
    };
    let mut script = String::from("BEGIN;\n");
    for row in &policies {
        script.push_str(row.get::<_, &str>(0));
        script.push_str(";\n");
    }
    for row in &triggers {
        let name = planner::ident::Ident::new(row.get::<_, &str>(0)).ok();
        if let Some(name) = name {
            script.push_str(&format!("DROP TRIGGER {name} ON {table};\n"));
        }
    }
    for name in views.iter().rev().filter_map(view_name) {
        script.push_str(&format!("DROP VIEW {name};\n"));
    }
    for row in &matviews {
        script.push_str(row.get::<_, &str>(0));
        script.push_str(";\n");
    }
    for sql in statements {
        script.push_str(sql);
        script.push_str(";\n");
    }
    for row in &views {
        let Some(name) = view_name(row) else { continue };
        let options: Vec<String> = row.get(5);
        let definition: &str = row.get(4);
        script.push_str(&format!(
            "CREATE VIEW {name}{} AS {};\n",
            with_options(&options),
            definition.trim_end().trim_end_matches(';')
        ));
        if let Some(c) = row.get::<_, Option<&str>>(7) {
            script.push_str(&format!("COMMENT ON VIEW {name} IS {};\n", Literal(c)));
        }
    }
    for row in &matviews {
        for statement in row.get::<_, Vec<String>>(1) {
            script.push_str(&statement);
            script.push_str(";\n");
        }
    }
    for row in &triggers {
        script.push_str(row.get::<_, &str>(1));
        script.push_str(";\n");
        let enabled = row.get::<_, &str>(2).chars().next().unwrap_or('O');
        if enabled == 'O' {
            continue;
        }
        let how = planner::model::trigger_state_clause(enabled);
        if let Ok(name) = planner::ident::Ident::new(row.get::<_, &str>(0)) {
            script.push_str(&format!("ALTER TABLE {table} {how} TRIGGER {name};\n"));
        }
    }
    for row in &policies {
        script.push_str(row.get::<_, &str>(1));
        script.push_str(";\n");
    }
    script.push_str("COMMIT;");
    let result = client.batch_execute(&script).await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}
