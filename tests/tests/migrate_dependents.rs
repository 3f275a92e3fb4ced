//! What is attached to a table must follow it when the shadow takes its place at cutover, and
//! come back with the original at rollback: views, foreign keys both ways (and to itself),
//! grants, comments, a user trigger, row-level security, the serial sequence, replica
//! identity, storage options and index names. One table, `accounts`, has `id` retyped from
//! integer to bigint through the real `tandem` binary and a real PostgreSQL.

use std::collections::BTreeSet;

use fixtures::pg::TestDb;
use tests::migrate::{
    apply, on, plan_sql, scratch_dir, status_json, strategies, submit, text_rows,
};
use tokio_postgres::Client;

const ROLE: &str = "tandem_e2e_app";

/// The objects around `accounts`; no data (see [`DATA`]).
const SCHEMA: &str = "
    CREATE SCHEMA billing;
    CREATE TABLE countries (code text PRIMARY KEY);
    CREATE TABLE accounts (
        id serial PRIMARY KEY,
        parent_id integer REFERENCES accounts (id),
        balance integer NOT NULL DEFAULT 0,
        country text REFERENCES countries (code),
        email text
    ) WITH (fillfactor = 70);
    CREATE INDEX accounts_email_idx ON accounts (email);
    CREATE UNIQUE INDEX accounts_email_lower_key ON accounts (lower(email));
    CREATE INDEX accounts_country_idx ON accounts (country) WHERE country IS NOT NULL;
    CREATE TABLE billing.invoices (
        id integer PRIMARY KEY,
        account_id integer NOT NULL REFERENCES public.accounts (id),
        amount integer
    );
    CREATE VIEW account_emails AS SELECT email, country FROM accounts;
    GRANT SELECT ON account_emails TO tandem_e2e_app;
    GRANT SELECT, INSERT ON accounts TO tandem_e2e_app;
    GRANT UPDATE (email) ON accounts TO tandem_e2e_app;
    COMMENT ON TABLE accounts IS 'customer accounts';
    COMMENT ON COLUMN accounts.email IS 'login address';
    CREATE TABLE audit (n serial PRIMARY KEY, op text NOT NULL, account_id bigint);
    CREATE FUNCTION audit_account() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        INSERT INTO public.audit (op, account_id) VALUES (TG_OP, NEW.id);
        RETURN NEW;
    END $f$;
    CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE ON accounts
        FOR EACH ROW EXECUTE FUNCTION audit_account();
    ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
    CREATE POLICY accounts_nonneg ON accounts TO tandem_e2e_app USING (balance >= 0);
    ALTER TABLE accounts REPLICA IDENTITY FULL;
";

/// The view that reads the retyped column (PostgreSQL's own ALTER refuses while it exists).
const BALANCES_VIEW: &str = "
    CREATE VIEW account_balances AS SELECT id, balance FROM accounts;
    GRANT SELECT ON account_balances TO tandem_e2e_app;
";

const DATA: &str = "
    INSERT INTO countries VALUES ('fr'), ('de');
    INSERT INTO accounts (balance, country, email)
    SELECT g,
           CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN 'fr' ELSE 'de' END,
           CASE WHEN g % 10 = 0 THEN NULL ELSE 'user' || g || '@example.com' END
      FROM generate_series(1, 2000) g;
    UPDATE accounts SET parent_id = id - 1 WHERE id % 10 = 0;
    INSERT INTO billing.invoices SELECT g, g, g * 10 FROM generate_series(1, 500) g;
    TRUNCATE audit;
    ANALYZE;
";

/// Added after the rows: a NOT VALID constraint that rows 1000..2000 violate (so the copy
/// must not check it), extended statistics with a target, a column's statistics target and
/// an index comment.
const LATE: &str = "
    ALTER TABLE accounts ADD CONSTRAINT accounts_balance_small CHECK (balance < 1000) NOT VALID;
    COMMENT ON CONSTRAINT accounts_balance_small ON accounts IS 'new rows only';
    CREATE STATISTICS accounts_country_email (ndistinct, dependencies) ON country, email FROM accounts;
    ALTER STATISTICS accounts_country_email SET STATISTICS 300;
    ALTER TABLE accounts ALTER COLUMN email SET STATISTICS 500;
    COMMENT ON INDEX accounts_email_idx IS 'login lookups';
";

const CHANGE: &str = "ALTER TABLE accounts ALTER id TYPE bigint";

const ROWS: &str = "SELECT id::text, parent_id::text, balance::text, country, email FROM accounts ORDER BY accounts.id";

async fn role(client: &Client) {
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {ROLE} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .await
        .expect("role");
}

async fn setup(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    role(db.client()).await;
    db.client()
        .batch_execute(&format!("{SCHEMA}{BALANCES_VIEW}{DATA}{LATE}"))
        .await
        .expect("schema loads");
    db
}

/// Plan, submit and apply the change; returns the migration id.
fn migrate(db: &TestDb, test: &str) -> i64 {
    let url = db.url();
    let plan = scratch_dir(test).join("plan.json");
    plan_sql(&url, CHANGE, &plan);
    // `id` is a serial: the plan widens its sequence after the column (issue 12).
    assert_eq!(strategies(&plan), vec!["shadow", "online"]);
    let id = submit(&url, &plan, &[]);
    apply(&url, id, &[]).expect(0);
    assert_eq!(status_json(&url, id)["phase"], "rollback_window");
    id
}

async fn one(c: &Client, sql: &str) -> String {
    let rows = text_rows(c, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_else(|| "NULL".into())
}

async fn oid(c: &Client, name: &str) -> Option<u32> {
    c.query_one("SELECT to_regclass($1)::oid", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// `column grantee privilege grantable` for the table's and its columns' privileges.
async fn grants(c: &Client, relation: &str) -> Vec<String> {
    c.query(
        "SELECT format('%s %s %s %s', coalesce(x.col, '-'),
                       CASE WHEN (x.a).grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid((x.a).grantee)::text END,
                       (x.a).privilege_type, (x.a).is_grantable)
           FROM (SELECT NULL::text AS col, aclexplode(relacl) AS a FROM pg_class WHERE oid = to_regclass($1)
                 UNION ALL
                 SELECT attname::text, aclexplode(attacl) FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attacl IS NOT NULL) AS x
          ORDER BY 1",
        &[&relation],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn index_names(c: &Client, table_oid: u32) -> BTreeSet<String> {
    c.query(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1",
        &[&table_oid],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// (referencing table, referenced table, validated) of a foreign key, on the user's tables
/// (the parked old table keeps copies of its own under the same names).
async fn foreign_key(c: &Client, name: &str) -> (String, String, bool) {
    let r = c
        .query_one(
            "SELECT conrelid::regclass::text, confrelid::regclass::text, convalidated
               FROM pg_constraint
              WHERE conname = $1 AND contype = 'f' AND conrelid::regclass::text !~ '^_tandem_'",
            &[&name],
        )
        .await
        .unwrap_or_else(|e| panic!("foreign key {name}: {e}"));
    (r.get(0), r.get(1), r.get(2))
}

/// The relation each view reads, by its rewrite rule's dependencies.
async fn view_reads(c: &Client, view: &str) -> Vec<u32> {
    c.query(
        "SELECT DISTINCT d.refobjid FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
          WHERE r.ev_class = to_regclass($1) AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class",
        &[&view],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn sqlstate(e: tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// Tables, views, sequences and functions whose definition differs between two schemas (size
/// figures aside), each as its key and both definitions.
fn schema_differences(a: &planner::model::Schema, b: &planner::model::Schema) -> Vec<String> {
    let json = |s: &planner::model::Schema| {
        let mut s = s.clone();
        for t in s.tables.values_mut() {
            t.stats = None;
        }
        serde_json::to_value(&s).expect("schema serialises")
    };
    let (a, b) = (json(a), json(b));
    let mut out = Vec::new();
    for kind in ["tables", "views", "sequences", "functions"] {
        let empty = serde_json::Map::new();
        let x = a[kind].as_object().unwrap_or(&empty);
        let y = b[kind].as_object().unwrap_or(&empty);
        let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            if x.get(k) != y.get(k) {
                out.push(format!("{kind} {k}:\n  {:?}\n  {:?}", x.get(k), y.get(k)));
            }
        }
    }
    out
}

async fn introspect(c: &Client) -> planner::model::Schema {
    engine::catalog::introspect(c).await.expect("introspection")
}

/// What LIKE does not copy as the table has it, on the table under the user's name: the NOT
/// VALID constraint (still not valid, with its comment), the extended statistics' name and
/// target, the column's statistics target, the index comment.
async fn extras(c: &Client) -> Vec<Vec<Option<String>>> {
    text_rows(
        c,
        "SELECT (SELECT format('%s valid=%s %s', conname, convalidated, obj_description(oid, 'pg_constraint'))
                   FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND conname = 'accounts_balance_small'),
                (SELECT format('%s target=%s', stxname, stxstattarget)
                   FROM pg_statistic_ext WHERE stxrelid = 'accounts'::regclass),
                (SELECT attstattarget::text FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email'),
                obj_description('public.accounts_email_idx'::regclass, 'pg_class')",
    )
    .await
}

const EXTRAS: [&str; 4] = [
    "accounts_balance_small valid=f new rows only",
    "accounts_country_email target=300",
    "500",
    "login lookups",
];

fn expected_extras() -> Vec<Vec<Option<String>>> {
    vec![EXTRAS.iter().map(|s| Some(s.to_string())).collect()]
}

/// What one write does to the audit table: the user trigger fires once per row written.
async fn audit_count(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM audit", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn cutover_carries_every_dependent_and_finalize_keeps_them() {
    let db = setup("md_cutover").await;
    let c = db.client();
    let url = db.url();
    let before_oid = oid(c, "accounts").await.unwrap();
    let before_indexes = index_names(c, before_oid).await;
    let before_grants = grants(c, "accounts").await;
    assert!(
        before_grants.contains(&format!("email {ROLE} UPDATE f")),
        "{before_grants:?}"
    );
    let before_view_grants = (
        grants(c, "account_balances").await,
        grants(c, "account_emails").await,
    );
    let before_rows = text_rows(c, ROWS).await;

    assert_eq!(extras(c).await, expected_extras(), "before");
    let id = migrate(&db, "md_cutover");
    let new_oid = oid(c, "accounts").await.unwrap();
    assert_eq!(extras(c).await, expected_extras(), "after cutover");
    assert_ne!(new_oid, before_oid);
    let old_name = format!("_tandem_m{id}_t{before_oid}_old");
    assert_eq!(oid(c, &old_name).await, Some(before_oid));

    // The whole schema is what PostgreSQL's own ALTER (with the view dropped around it) gives,
    // with the serial's sequence widened as the plan's second step does.
    let expected_db = TestDb::new("md_cutover_expected").await;
    role(expected_db.client()).await;
    expected_db
        .client()
        .batch_execute(&format!(
            "{SCHEMA}{LATE}{CHANGE};{BALANCES_VIEW}ALTER SEQUENCE accounts_id_seq AS bigint;"
        ))
        .await
        .unwrap();
    let diffs = schema_differences(
        &introspect(expected_db.client()).await,
        &introspect(c).await,
    );
    assert!(
        diffs.is_empty(),
        "differs from the plain ALTER:\n{}",
        diffs.join("\n")
    );

    assert_eq!(text_rows(c, ROWS).await, before_rows);

    // Views: both read the new table; the one over the retyped column returns bigint.
    for v in ["account_balances", "account_emails"] {
        assert_eq!(view_reads(c, v).await, vec![new_oid], "{v}");
    }
    assert_eq!(
        one(c, "SELECT data_type::text FROM information_schema.columns WHERE table_name = 'account_balances' AND column_name = 'id'").await,
        "bigint"
    );
    assert_eq!(
        one(c, "SELECT count(*)::text FROM account_balances").await,
        "2000"
    );
    assert_eq!(
        one(
            c,
            "SELECT count(*)::text FROM account_emails WHERE email IS NOT NULL"
        )
        .await,
        "1800"
    );
    assert_eq!(
        (
            grants(c, "account_balances").await,
            grants(c, "account_emails").await
        ),
        before_view_grants
    );

    // Foreign keys: inbound (from another schema), outbound and self-referencing, all on the
    // new table, validated and enforced.
    assert_eq!(
        foreign_key(c, "invoices_account_id_fkey").await,
        ("billing.invoices".into(), "accounts".into(), true)
    );
    assert_eq!(
        foreign_key(c, "accounts_country_fkey").await,
        ("accounts".into(), "countries".into(), true)
    );
    assert_eq!(
        foreign_key(c, "accounts_parent_id_fkey").await,
        ("accounts".into(), "accounts".into(), true)
    );
    let e = c
        .batch_execute("INSERT INTO billing.invoices VALUES (9001, 999999, 1)")
        .await
        .expect_err("inbound FK enforces");
    assert_eq!(sqlstate(e), "23503");
    let e = c
        .batch_execute("INSERT INTO accounts (id, balance, country) VALUES (99999, 1, 'xx')")
        .await
        .expect_err("outbound FK enforces");
    assert_eq!(sqlstate(e), "23503");
    let e = c
        .batch_execute("INSERT INTO accounts (id, balance, parent_id) VALUES (99999, 1, 999999)")
        .await
        .expect_err("self FK enforces");
    assert_eq!(sqlstate(e), "23503");

    // Grants, table and column comments.
    assert_eq!(grants(c, "accounts").await, before_grants);
    assert_eq!(
        one(
            c,
            "SELECT obj_description('accounts'::regclass, 'pg_class')"
        )
        .await,
        "customer accounts"
    );
    assert_eq!(
        one(c, "SELECT col_description('accounts'::regclass, attnum) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email'").await,
        "login address"
    );

    // RLS, replica identity, storage options, index names.
    assert_eq!(
        one(c, "SELECT format('%s %s %s', relrowsecurity, relreplident, reloptions) FROM pg_class WHERE relname = 'accounts'").await,
        "t f {fillfactor=70}"
    );
    assert_eq!(
        one(c, "SELECT format('%s %s', polroles::regrole[], pg_get_expr(polqual, polrelid)) FROM pg_policy WHERE polrelid = 'accounts'::regclass AND polname = 'accounts_nonneg'").await,
        format!("{{{ROLE}}} (balance >= 0)")
    );
    assert_eq!(index_names(c, new_oid).await, before_indexes);
    assert!(index_names(c, before_oid)
        .await
        .is_disjoint(&before_indexes));

    // The user trigger fires once per write (the reverse dual-write does not fire it again),
    // and the serial sequence goes on where it was.
    assert_eq!(audit_count(c).await, 0);
    let new_id: i64 = c
        .query_one(
            "INSERT INTO accounts (balance, email) VALUES (5, 'new@example.com') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(new_id, 2001);
    c.batch_execute("UPDATE accounts SET balance = balance + 1 WHERE id = 3")
        .await
        .unwrap();
    assert_eq!(
        text_rows(c, "SELECT op, account_id::text FROM audit ORDER BY n").await,
        vec![
            vec![Some("INSERT".into()), Some("2001".into())],
            vec![Some("UPDATE".into()), Some("3".into())],
        ]
    );
    assert_eq!(
        one(
            c,
            &format!(
                "SELECT count(*)::text FROM {old_name} WHERE id = 2001 OR (id = 3 AND balance = 4)"
            )
        )
        .await,
        "2",
        "the writes reached the old table too"
    );
    c.batch_execute("INSERT INTO billing.invoices VALUES (9002, 2001, 1)")
        .await
        .expect("a child of the new row");

    // Finalize: the old table goes; the sequence stays with the column and keeps counting.
    on(&url, "finalize", id, &["--yes"]).expect(0);
    assert_eq!(oid(c, &old_name).await, None);
    assert_eq!(
        one(c, "SELECT pg_get_serial_sequence('accounts', 'id')").await,
        "public.accounts_id_seq"
    );
    let next: i64 = c
        .query_one(
            "INSERT INTO accounts (balance) VALUES (6) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 2002);
    assert_eq!(audit_count(c).await, 3);
    for fk in [
        "invoices_account_id_fkey",
        "accounts_country_fkey",
        "accounts_parent_id_fkey",
    ] {
        let (_, to, valid) = foreign_key(c, fk).await;
        assert!(valid, "{fk}");
        assert_ne!(to, old_name, "{fk}");
    }
    assert_eq!(index_names(c, new_oid).await, before_indexes);
    assert_eq!(grants(c, "accounts").await, before_grants);
    assert_eq!(
        one(c, "SELECT count(*)::text FROM account_balances").await,
        "2002"
    );
}

#[tokio::test]
async fn rollback_brings_the_original_back_with_its_dependents() {
    let db = setup("md_rollback").await;
    let c = db.client();
    let url = db.url();
    let before_oid = oid(c, "accounts").await.unwrap();
    let before_indexes = index_names(c, before_oid).await;
    let before_grants = grants(c, "accounts").await;
    let before_view_grants = (
        grants(c, "account_balances").await,
        grants(c, "account_emails").await,
    );
    let before = introspect(c).await;

    let id = migrate(&db, "md_rollback");
    let new_oid = oid(c, "accounts").await.unwrap();
    assert_eq!(extras(c).await, expected_extras(), "after cutover");
    // Writes in the window, through the new table.
    let new_id: i64 = c
        .query_one(
            "INSERT INTO accounts (balance) VALUES (5) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(new_id, 2001);
    c.batch_execute("UPDATE accounts SET email = 'changed@example.com' WHERE id = 3")
        .await
        .unwrap();
    let window_rows = text_rows(c, ROWS).await;
    assert_eq!(audit_count(c).await, 2);

    let run = on(&url, "rollback", id, &["--yes", "--online-steps"]).expect(0);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_eq!(extras(c).await, expected_extras(), "after the rollback");
    assert_eq!(status_json(&url, id)["phase"], "rolled_back");
    assert_eq!(
        oid(c, "accounts").await,
        Some(before_oid),
        "the original table is back"
    );
    assert_eq!(
        one(
            c,
            &format!("SELECT count(*)::text FROM pg_class WHERE oid = {new_oid}")
        )
        .await,
        "0",
        "the new table is dropped"
    );
    assert_eq!(
        text_rows(c, ROWS).await,
        window_rows,
        "no write made in the window is lost"
    );

    // Everything in the schema is as before, except (engine bug, see the ignored test below)
    // the inbound foreign key, which is left NOT VALID.
    let after = introspect(c).await;
    let diffs: Vec<String> = schema_differences(&before, &after)
        .into_iter()
        .filter(|d| !d.starts_with("tables billing.invoices:"))
        .collect();
    assert!(
        diffs.is_empty(),
        "differs from before:\n{}",
        diffs.join("\n")
    );
    assert_eq!(
        one(c, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'account_balances'::regclass AND attname = 'id'").await,
        "integer"
    );
    for v in ["account_balances", "account_emails"] {
        assert_eq!(view_reads(c, v).await, vec![before_oid], "{v}");
    }
    assert_eq!(
        one(c, "SELECT count(*)::text FROM account_balances").await,
        "2001"
    );
    assert_eq!(
        (
            grants(c, "account_balances").await,
            grants(c, "account_emails").await
        ),
        before_view_grants
    );
    assert_eq!(grants(c, "accounts").await, before_grants);
    assert_eq!(index_names(c, before_oid).await, before_indexes);
    assert_eq!(
        one(c, "SELECT format('%s %s %s', relrowsecurity, relreplident, reloptions) FROM pg_class WHERE relname = 'accounts'").await,
        "t f {fillfactor=70}"
    );
    assert_eq!(
        one(
            c,
            "SELECT obj_description('accounts'::regclass, 'pg_class')"
        )
        .await,
        "customer accounts"
    );
    let (from, to, _) = foreign_key(c, "invoices_account_id_fkey").await;
    assert_eq!(
        (from.as_str(), to.as_str()),
        ("billing.invoices", "accounts")
    );
    let e = c
        .batch_execute("INSERT INTO billing.invoices VALUES (9001, 999999, 1)")
        .await
        .expect_err("inbound FK enforces");
    assert_eq!(sqlstate(e), "23503");
    c.batch_execute("INSERT INTO billing.invoices VALUES (9001, 2001, 1)")
        .await
        .expect("the row written in the window is there to reference");

    // The trigger is enabled again on the original, once; the sequence goes on.
    assert_eq!(
        one(c, "SELECT string_agg(tgname || ' ' || tgenabled::text, ',') FROM pg_trigger WHERE tgrelid = 'accounts'::regclass AND NOT tgisinternal").await,
        "accounts_audit O"
    );
    let next: i32 = c
        .query_one(
            "INSERT INTO accounts (balance) VALUES (7) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 2002);
    assert_eq!(audit_count(c).await, 3);
    assert_eq!(
        one(c, "SELECT pg_get_serial_sequence('accounts', 'id')").await,
        "public.accounts_id_seq"
    );
}

#[tokio::test]
async fn rollback_leaves_the_schema_exactly_as_it_was() {
    let db = setup("md_rollback_exact").await;
    let c = db.client();
    let before = introspect(c).await;
    let id = migrate(&db, "md_rollback_exact");
    // The widened sequence is the plan's online step: a plain rollback names it and leaves
    // it, `--online-steps` puts it back to integer too.
    let run = on(&db.url(), "rollback", id, &["--yes"]).expect(0);
    assert!(run.stderr.contains("accounts_id_seq"), "{}", run.stderr);
    on(&db.url(), "rollback", id, &["--yes", "--online-steps"]).expect(0);
    assert_eq!(
        foreign_key(c, "invoices_account_id_fkey").await,
        ("billing.invoices".into(), "accounts".into(), true)
    );
    let diffs = schema_differences(&before, &introspect(c).await);
    assert!(
        diffs.is_empty(),
        "differs from before:\n{}",
        diffs.join("\n")
    );
}
