//! A shadow step's statements replayed directly, as the shadow migration's result would be:
//! for the plan's check and the round-trip tests, which run a plan's SQL on a scratch copy.
//!
//! A shadow migration runs the step's ALTER on a new table and carries the table's row-level
//! security policies over at cutover, so a retype of a column a policy reads works there. Run
//! directly, PostgreSQL refuses it ("cannot alter type of a column used in a policy
//! definition"): here the table's policies are dropped and re-created around the statements,
//! in one transaction. Never used on a target database.

use tokio_postgres::Client;

use planner::QualName;

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

/// Run a shadow step's `statements` on `table` directly, with its policies lifted around
/// them, in one transaction.
pub async fn shadow_step(
    client: &Client,
    table: &QualName,
    statements: &[String],
) -> Result<(), tokio_postgres::Error> {
    let policies = client
        .query(POLICIES, &[&table.schema.as_str(), &table.name.as_str()])
        .await?;
    let mut script = String::from("BEGIN;\n");
    for row in &policies {
        script.push_str(row.get::<_, &str>(0));
        script.push_str(";\n");
    }
    for sql in statements {
        script.push_str(sql);
        script.push_str(";\n");
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
