//! Catalog introspection against a real PostgreSQL: every object kind (snapshots of the
//! model from the SQL cases in `tests/catalog/`), keys and size figures, the read-only
//! snapshot, and the dependency queries the cutover relies on.

use engine::catalog::{self, CatalogError};
use fixtures::pg::TestDb;
use planner::ident::QualName;
use planner::model::Schema;

/// A fresh database with `sql` applied.
async fn database(test_name: &str, sql: &str) -> TestDb {
    let db = TestDb::new(test_name).await;
    db.client()
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("setting up {test_name}: {e:?}"));
    db
}

fn name(schema: &str, name: &str) -> QualName {
    QualName::new(schema, name).unwrap()
}

/// The schema without size figures, which vary from run to run.
fn without_stats(mut schema: Schema) -> Schema {
    for table in schema.tables.values_mut() {
        table.stats = None;
    }
    schema
}

/// Apply one SQL case, introspect it and compare the model with the case's snapshot.
#[test]
fn introspects_each_case() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    insta::glob!("catalog/*.sql", |path| {
        let sql = std::fs::read_to_string(path).unwrap();
        let case = path.file_stem().unwrap().to_str().unwrap();
        let schema = runtime.block_on(async {
            let db = database(&format!("catalog_case_{case}"), &sql).await;
            catalog::introspect(db.client()).await.unwrap()
        });
        insta::assert_json_snapshot!(without_stats(schema));
    });
}

#[tokio::test]
async fn usable_key_and_size_figures() {
    let db = database(
        "catalog_keys",
        "CREATE TABLE keyed (id int NOT NULL, v text);
         INSERT INTO keyed SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
         CREATE UNIQUE INDEX keyed_id_idx ON keyed (id);
         ANALYZE keyed;
         CREATE TABLE keyless (a int, b text);
         CREATE TABLE nullable_unique (a int);
         CREATE UNIQUE INDEX nullable_unique_a_idx ON nullable_unique (a);
         CREATE TABLE never_analysed (id int, v text) WITH (autovacuum_enabled = false);
         INSERT INTO never_analysed SELECT g, 'row ' || g FROM generate_series(1, 10000) g;",
    )
    .await;
    let schema = catalog::introspect(db.client()).await.unwrap();

    let keyed = schema.find_table(None, "keyed").unwrap();
    assert_eq!(keyed.usable_key(), Some(vec!["id".to_string()]));
    let stats = keyed.stats.unwrap();
    assert_eq!(stats.estimated_rows, 1000);
    assert!(stats.heap_bytes > 0, "{stats:?}");
    assert!(
        stats.total_bytes > stats.heap_bytes,
        "indexes count: {stats:?}"
    );

    assert_eq!(
        schema.find_table(None, "keyless").unwrap().usable_key(),
        None
    );
    assert_eq!(
        schema
            .find_table(None, "nullable_unique")
            .unwrap()
            .usable_key(),
        None
    );

    // Never analysed (reltuples = -1): estimated from its pages and declared row width.
    let estimate = schema
        .find_table(None, "never_analysed")
        .unwrap()
        .stats
        .unwrap()
        .estimated_rows;
    assert!((2_000..=50_000).contains(&estimate), "estimate {estimate}");
}

#[tokio::test]
async fn repeated_introspection_is_identical_and_leaves_the_session_alone() {
    let db = database(
        "catalog_repeat",
        "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT '2024-05-06 07:08:09+02');
         CREATE VIEW v AS SELECT id FROM t;
         SET search_path = public, pg_catalog;
         SET timezone = 'America/New_York';",
    )
    .await;
    let client = db.client();

    let first = catalog::introspect(client).await.unwrap();
    let second = catalog::introspect(client).await.unwrap();
    assert_eq!(without_stats(first.clone()), without_stats(second.clone()));
    assert_eq!(first.fingerprint(), second.fingerprint());
    // The snapshot's time zone, not the session's, prints the default.
    assert_eq!(
        first
            .find_table(None, "t")
            .unwrap()
            .column("at")
            .unwrap()
            .default
            .as_deref(),
        Some("'2024-05-06 05:08:09+00'::timestamp with time zone")
    );

    let row = client
        .query_one(
            "SELECT current_setting('search_path'), current_setting('timezone'),
                    pg_current_xact_id_if_assigned() IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "public, pg_catalog");
    assert_eq!(row.get::<_, String>(1), "America/New_York");
    assert!(
        row.get::<_, bool>(2),
        "introspection left a transaction open"
    );
}

#[tokio::test]
async fn refuses_to_run_inside_the_callers_transaction() {
    let db = TestDb::new("catalog_in_txn").await;
    let client = db.client();
    client
        .batch_execute("BEGIN; CREATE TABLE made_in_txn (a int);")
        .await
        .unwrap();

    let err = catalog::introspect(client).await.unwrap_err();
    assert!(matches!(err, CatalogError::InsideTransaction), "{err:?}");

    // Nothing was committed for the caller: their transaction is still theirs to roll back.
    client.batch_execute("ROLLBACK").await.unwrap();
    let schema = catalog::introspect(client).await.unwrap();
    assert!(schema.find_table(None, "made_in_txn").is_none());
}

/// PostgreSQL names may hold any character but NUL; a tab or a newline in a table or column
/// name is read as it is (and quoted wherever tandem writes it). Before issue 13 a table so
/// named was an error, and a column so named made the diff panic.
#[tokio::test]
async fn names_with_control_characters_are_read_as_they_are() {
    let db = database(
        "catalog_control_names",
        "CREATE TABLE \"line\nbreak\" (\"a\tb\" int);",
    )
    .await;
    let schema = catalog::introspect(db.client()).await.unwrap();
    let table = &schema.tables[&QualName::new("public", "line\nbreak").unwrap()];
    assert!(
        table.columns.iter().any(|c| c.name == "a\tb"),
        "{:?}",
        table.columns
    );
}

#[tokio::test]
async fn dependent_views_and_inbound_foreign_keys() {
    let db = database(
        "catalog_deps",
        "CREATE TABLE accounts (id int PRIMARY KEY, parent_id int REFERENCES accounts (id));
         CREATE TABLE unrelated (id int PRIMARY KEY);
         CREATE SCHEMA billing;
         CREATE TABLE billing.charges (
             id int PRIMARY KEY,
             account_id int CONSTRAINT charges_account_fk REFERENCES public.accounts (id)
         );
         CREATE VIEW active_accounts AS SELECT id FROM accounts WHERE parent_id IS NULL;
         CREATE VIEW billing.account_charges AS
             SELECT a.id, c.id AS charge FROM active_accounts a JOIN billing.charges c
             ON c.account_id = a.id;
         CREATE MATERIALIZED VIEW billing.charge_count AS
             SELECT count(*) AS n FROM billing.account_charges;
         CREATE VIEW unrelated_view AS SELECT id FROM unrelated;",
    )
    .await;
    let schema = catalog::introspect(db.client()).await.unwrap();

    let accounts = name("public", "accounts");
    let dependents: Vec<String> = schema
        .dependent_views(&accounts)
        .into_iter()
        .map(|n| n.display_plain())
        .collect();
    assert_eq!(
        dependents,
        [
            "active_accounts",
            "billing.account_charges",
            "billing.charge_count"
        ]
    );
    assert_eq!(
        schema.views[&name("billing", "account_charges")].depends_on,
        [
            name("billing", "charges"),
            name("public", "active_accounts")
        ]
    );

    assert_eq!(
        schema.inbound_foreign_keys(&accounts),
        [
            (&name("billing", "charges"), "charges_account_fk"),
            (&accounts, "accounts_parent_id_fkey"),
        ]
    );
    assert!(schema
        .inbound_foreign_keys(&name("public", "unrelated"))
        .is_empty());
}

#[tokio::test]
async fn database_identity_names_this_server_and_database() {
    let db = TestDb::new("catalog_identity").await;
    let identity = catalog::database_identity(db.client()).await.unwrap();
    assert_eq!(identity.database, db.name());
    assert!(
        !identity.system_identifier.is_empty()
            && identity
                .system_identifier
                .bytes()
                .all(|b| b.is_ascii_digit()),
        "{identity:?}"
    );
    let version = catalog::server_version_num(db.client()).await.unwrap();
    assert_eq!(identity.server_version_num, version);
    assert!(version >= 130_000, "{version}");
}
