//! Supported changes through the real `tandem` binary and a real PostgreSQL: plan, submit,
//! apply (up to its rollback window), then the live definition read from the catalog and the
//! data compared row for row with the old data as the change maps it; then finalize or
//! rollback, and the same checks again.

use std::path::{Path, PathBuf};

use fixtures::pg::TestDb;
use tests::migrate::{
    apply, on, plan_sql, scratch_dir, status_json, strategies, submit, text_rows,
};
use tests::{fingerprint, tandem};
use tokio_postgres::Client;

/// 3,000 rows with NULLs in most columns; `qty` is nullable but holds none.
const ITEMS: &str = "
    CREATE TABLE items (
        id integer PRIMARY KEY,
        n integer,
        qty integer,
        label varchar(20),
        note text,
        cents integer,
        price numeric(10,2)
    );
    INSERT INTO items
    SELECT g,
           CASE WHEN g % 7 = 0 THEN NULL ELSE g * 3 END,
           g % 50,
           CASE WHEN g % 5 = 0 THEN NULL ELSE 'label ' || g END,
           CASE WHEN g % 11 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
           CASE WHEN g % 13 = 0 THEN NULL ELSE g * 7 - 1000 END,
           CASE WHEN g % 9 = 0 THEN NULL ELSE round((g * 1.37)::numeric, 2) END
      FROM generate_series(1, 3000) g;
    ANALYZE items;
";

struct Fixture {
    db: TestDb,
    url: String,
    dir: PathBuf,
}

async fn fixture(name: &str, sql: &str) -> Fixture {
    let db = TestDb::new(name).await;
    db.client().batch_execute(sql).await.expect("fixture loads");
    let url = db.url();
    Fixture {
        db,
        url,
        dir: scratch_dir(name),
    }
}

impl Fixture {
    fn client(&self) -> &Client {
        self.db.client()
    }

    /// Plan `sql` into a file; the plan must be written and its steps have `expected`
    /// strategies.
    fn plan(&self, sql: &str, expected: &[&str]) -> PathBuf {
        let path = self.dir.join(format!(
            "plan{}.json",
            std::fs::read_dir(&self.dir).unwrap().count()
        ));
        let run = plan_sql(&self.url, sql, &path);
        assert!(
            path.exists(),
            "plan wrote no file (exit {}): {}",
            run.code,
            run.stderr
        );
        assert_eq!(strategies(&path), expected, "{}", run.stderr);
        path
    }

    /// Plan, submit, apply up to the rollback window.
    fn migrate(&self, sql: &str, expected: &[&str]) -> i64 {
        let plan = self.plan(sql, expected);
        self.submit_and_apply(&plan)
    }

    fn submit_and_apply(&self, plan: &Path) -> i64 {
        let id = submit(&self.url, plan, &[]);
        let run = apply(&self.url, id, &[]).expect(0);
        let all_online = tests::migrate::read_plan(plan)["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().all(|s| s["strategy"] == "online"));
        if all_online {
            // Nothing to swap: the migration is done, with no rollback window.
            assert!(
                run.stderr.contains("every step was online"),
                "{}",
                run.stderr
            );
            assert_eq!(status_json(&self.url, id)["phase"], "finalized");
        } else {
            assert!(run.stderr.contains("is live"), "{}", run.stderr);
            assert_eq!(status_json(&self.url, id)["phase"], "rollback_window");
        }
        id
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        text_rows(self.client(), sql).await
    }

    async fn one(&self, sql: &str) -> String {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone().unwrap_or_default()
    }

    /// `format_type` and NOT NULL of a column of the table now named `table`.
    async fn column(&self, table: &str, column: &str) -> (String, bool) {
        let r = self
            .client()
            .query_one(
                "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped",
                &[&table, &column],
            )
            .await
            .unwrap_or_else(|e| panic!("column {table}.{column}: {e}"));
        (r.get(0), r.get(1))
    }

    /// The oid of the table now named `table`, if there is one.
    async fn oid(&self, table: &str) -> Option<u32> {
        self.client()
            .query_one("SELECT to_regclass($1)::oid", &[&table])
            .await
            .unwrap()
            .get(0)
    }

    /// Name, type and whether it is validated, of each constraint of `table`, sorted.
    async fn constraints(&self, table: &str) -> Vec<(String, String, bool)> {
        self.client()
            .query(
                "SELECT conname::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint
                  WHERE conrelid = to_regclass($1) ORDER BY conname",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// tandem's tables, triggers and functions still in the database.
    async fn leftovers(&self) -> Vec<Vec<Option<String>>> {
        self.rows(
            "SELECT relname::text FROM pg_class WHERE relname LIKE '\\_tandem\\_%'
             UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE '\\_tandem\\_%'
             UNION ALL SELECT proname::text FROM pg_proc WHERE pronamespace = to_regnamespace('tandem')
                                                        AND proname NOT IN ('audit_append', 'refuse_rewrite')",
        )
        .await
    }

    fn finalize(&self, id: i64) {
        on(&self.url, "finalize", id, &["--yes"]).expect(0);
        assert_eq!(status_json(&self.url, id)["phase"], "finalized");
    }

    fn rollback(&self, id: i64) {
        let run = on(&self.url, "rollback", id, &["--yes"]).expect(0);
        assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
        assert_eq!(status_json(&self.url, id)["phase"], "rolled_back");
    }
}

/// The shadow's row count must be the table's, and the data the mapped old data.
async fn assert_rows(f: &Fixture, sql: &str, expected: &[Vec<Option<String>>]) {
    let got = f.rows(sql).await;
    assert_eq!(got.len(), expected.len(), "row count of `{sql}`");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g, e, "`{sql}`");
    }
}

const ALL_AS_TEXT: &str = "SELECT id::text, n::text, qty::text, label::text, note, cents::text, price::text FROM items ORDER BY items.id";

#[tokio::test]
async fn int_to_bigint_on_the_key_and_a_plain_column_then_rollback() {
    let f = fixture("mc_int_bigint", ITEMS).await;
    let before_fp = fingerprint(f.client()).await;
    let before_oid = f.oid("items").await;
    let before = f.rows(ALL_AS_TEXT).await;

    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ALTER n TYPE bigint",
        &["shadow"],
    );
    assert_ne!(f.oid("items").await, before_oid, "a new table is live");
    assert_eq!(f.column("items", "id").await, ("bigint".into(), true));
    assert_eq!(f.column("items", "n").await, ("bigint".into(), false));
    assert_eq!(f.column("items", "qty").await.0, "integer");
    assert_eq!(
        f.constraints("items").await,
        vec![("items_pkey".into(), "PRIMARY KEY (id)".into(), true)]
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    assert_eq!(
        f.one("SELECT count(*)::text FROM items WHERE n IS NULL")
            .await,
        "428",
        "the NULLs were copied as NULLs"
    );

    // Writes during the rollback window reach the old table: a rollback loses none.
    f.client()
        .batch_execute(
            "INSERT INTO items (id, n, qty, label) VALUES (5000, 123, 1, 'window');
             UPDATE items SET note = 'updated in the window' WHERE id = 10;
             DELETE FROM items WHERE id = 20;",
        )
        .await
        .unwrap();
    let window = f.rows(ALL_AS_TEXT).await;
    f.rollback(id);
    assert_eq!(
        f.oid("items").await,
        before_oid,
        "the original table is back"
    );
    assert_eq!(f.column("items", "id").await, ("integer".into(), true));
    assert_eq!(f.column("items", "n").await, ("integer".into(), false));
    assert_rows(&f, ALL_AS_TEXT, &window).await;
    assert_eq!(fingerprint(f.client()).await, before_fp);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

#[tokio::test]
async fn varchar_to_text_is_planned_online_and_applied() {
    // varchar -> text is binary coercible: PostgreSQL rewrites nothing, so the planner makes
    // it an online step, not a shadow one; the executor still runs it to its window.
    let f = fixture("mc_varchar_text", ITEMS).await;
    let before_oid = f.oid("items").await;
    let before = f.rows(ALL_AS_TEXT).await;
    let id = f.migrate("ALTER TABLE items ALTER label TYPE text", &["online"]);
    assert_eq!(f.oid("items").await, before_oid, "no shadow table");
    assert_eq!(f.column("items", "label").await, ("text".into(), false));
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    f.finalize(id);
    assert_eq!(f.column("items", "label").await.0, "text");
    assert!(f.leftovers().await.is_empty());
}

#[tokio::test]
async fn varchar_to_text_with_a_key_retype_goes_through_the_shadow_then_finalize() {
    let f = fixture("mc_varchar_text_shadow", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ALTER label TYPE text",
        &["shadow"],
    );
    assert_eq!(f.column("items", "label").await.0, "text");
    assert_eq!(f.column("items", "id").await.0, "bigint");
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    f.finalize(id);
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

#[tokio::test]
async fn text_to_varchar_that_fits_then_finalize() {
    let f = fixture("mc_text_varchar", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let old_oid = f.oid("items").await;
    let id = f.migrate("ALTER TABLE items ALTER note TYPE varchar(50)", &["shadow"]);
    assert_eq!(
        f.one("SELECT (data_type || '(' || character_maximum_length || ')')::text FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'").await,
        "character varying(50)"
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    // The old table is kept current until finalize, then dropped.
    let old = format!("_tandem_m{id}_t{}_old", old_oid.unwrap());
    assert_eq!(f.column(&old, "note").await.0, "text");
    f.finalize(id);
    assert_eq!(f.oid(&old).await, None, "finalize drops the old table");
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
    assert_rows(&f, ALL_AS_TEXT, &before).await;
}

#[tokio::test]
async fn numeric_precision_with_a_cast_using_then_rollback() {
    let f = fixture("mc_numeric", ITEMS).await;
    let before_fp = fingerprint(f.client()).await;
    let mapped = "SELECT id::text, price::numeric(12,4)::text FROM items ORDER BY items.id";
    let expected = f.rows(mapped).await;
    let id = f.migrate(
        "ALTER TABLE items ALTER price TYPE numeric(12,4) USING price::numeric(12,4)",
        &["shadow"],
    );
    assert_eq!(
        f.one("SELECT (numeric_precision || ',' || numeric_scale)::text FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'price'").await,
        "12,4"
    );
    assert_rows(
        &f,
        "SELECT id::text, price::text FROM items ORDER BY items.id",
        &expected,
    )
    .await;
    assert!(f.one("SELECT price::text FROM items WHERE id = 1").await == "1.3700");
    // A cast of the column itself can be undone: rollback is offered.
    assert_eq!(
        status_json(&f.url, id)["rollback_blocker"],
        serde_json::Value::Null
    );
    f.rollback(id);
    assert_eq!(f.column("items", "price").await.0, "numeric(10,2)");
    assert_eq!(fingerprint(f.client()).await, before_fp);
    assert_eq!(
        f.one("SELECT price::text FROM items WHERE id = 1").await,
        "1.37"
    );
}

#[tokio::test]
async fn using_expression_maps_the_values_and_rollback_is_refused() {
    let f = fixture("mc_using", ITEMS).await;
    let expected = f
        .rows("SELECT id::text, (cents * 100)::bigint::text, n::text FROM items ORDER BY items.id")
        .await;
    let id = f.migrate(
        "ALTER TABLE items ALTER COLUMN cents TYPE bigint USING cents * 100",
        &["shadow"],
    );
    assert_eq!(f.column("items", "cents").await.0, "bigint");
    assert_rows(
        &f,
        "SELECT id::text, cents::text, n::text FROM items ORDER BY items.id",
        &expected,
    )
    .await;
    assert_eq!(
        f.one("SELECT cents::text FROM items WHERE id = 1").await,
        "-99300"
    );
    assert_eq!(
        f.one("SELECT count(*)::text FROM items WHERE cents IS NULL")
            .await,
        "230",
        "NULL * 100 stays NULL"
    );

    // status says rollback is unavailable, and why.
    let blocker = status_json(&f.url, id)["rollback_blocker"].clone();
    assert!(
        blocker
            .as_str()
            .is_some_and(|b| b.contains("cents") && b.contains("USING")),
        "{blocker}"
    );
    let text = on(&f.url, "status", id, &[]).expect(0);
    assert!(
        text.stdout.contains("rollback unavailable") && text.stdout.contains("USING"),
        "{}",
        text.stdout
    );

    // rollback is refused with what to do, and changes nothing.
    let fp = fingerprint(f.client()).await;
    let live = f
        .rows("SELECT id::text, cents::text FROM items ORDER BY items.id")
        .await;
    let run = on(&f.url, "rollback", id, &["--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("USING"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("tandem finalize {id}")),
        "{}",
        run.stderr
    );
    assert_eq!(status_json(&f.url, id)["phase"], "rollback_window");
    assert_eq!(fingerprint(f.client()).await, fp);
    assert_rows(
        &f,
        "SELECT id::text, cents::text FROM items ORDER BY items.id",
        &live,
    )
    .await;

    f.finalize(id);
    assert_eq!(f.column("items", "cents").await.0, "bigint");
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

#[tokio::test]
async fn add_column_not_null_default_alone_is_online_and_with_a_retype_is_shadow() {
    let f = fixture("mc_add_column", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    // PostgreSQL 11+ adds a column with a constant default without a rewrite: online.
    let id = f.migrate(
        "ALTER TABLE items ADD COLUMN flags integer NOT NULL DEFAULT 0",
        &["online"],
    );
    assert_eq!(f.column("items", "flags").await, ("integer".into(), true));
    assert_eq!(
        f.one("SELECT column_default::text FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'flags'").await,
        "0"
    );
    f.finalize(id);

    // With a type change in the same ALTER the table is rebuilt: the shadow fills the new
    // column from its default.
    let id = f.migrate(
        "ALTER TABLE items ADD COLUMN score bigint NOT NULL DEFAULT 0, ALTER id TYPE bigint",
        &["shadow"],
    );
    assert_eq!(f.column("items", "score").await, ("bigint".into(), true));
    assert_eq!(f.column("items", "id").await.0, "bigint");
    assert_eq!(
        f.one("SELECT count(*)::text FROM items WHERE score = 0 AND flags = 0")
            .await,
        "3000"
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    f.client()
        .batch_execute("INSERT INTO items (id) VALUES (9001)")
        .await
        .unwrap();
    assert_eq!(
        f.one("SELECT score::text FROM items WHERE id = 9001").await,
        "0"
    );
    f.finalize(id);
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

#[tokio::test]
async fn set_not_null_with_a_type_change() {
    let f = fixture("mc_set_not_null", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ALTER qty SET NOT NULL",
        &["shadow"],
    );
    assert_eq!(f.column("items", "qty").await, ("integer".into(), true));
    assert_eq!(
        f.one("SELECT is_nullable::text FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'qty'").await,
        "NO"
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    let err = f
        .client()
        .batch_execute("INSERT INTO items (id, qty) VALUES (9001, NULL)")
        .await
        .expect_err("NOT NULL holds");
    assert_eq!(err.code().map(|c| c.code()), Some("23502"));
    f.finalize(id);
    assert_eq!(f.column("items", "qty").await, ("integer".into(), true));
}

#[tokio::test]
async fn check_constraint_with_a_type_change() {
    let f = fixture("mc_check", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ADD CONSTRAINT items_qty_nonneg CHECK (qty >= 0)",
        &["shadow"],
    );
    assert_eq!(
        f.constraints("items").await,
        vec![
            ("items_pkey".into(), "PRIMARY KEY (id)".into(), true),
            ("items_qty_nonneg".into(), "CHECK ((qty >= 0))".into(), true),
        ]
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    let err = f
        .client()
        .batch_execute("INSERT INTO items (id, qty) VALUES (9001, -1)")
        .await
        .expect_err("the check holds");
    assert_eq!(err.code().map(|c| c.code()), Some("23514"));
    f.rollback(id);
    assert_eq!(
        f.constraints("items").await,
        vec![("items_pkey".into(), "PRIMARY KEY (id)".into(), true)],
        "the original table never had the check"
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
}

#[tokio::test]
async fn unique_constraint_with_a_type_change() {
    let f = fixture("mc_unique", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ADD CONSTRAINT items_note_key UNIQUE (note)",
        &["shadow"],
    );
    assert_eq!(
        f.constraints("items").await,
        vec![
            ("items_note_key".into(), "UNIQUE (note)".into(), true),
            ("items_pkey".into(), "PRIMARY KEY (id)".into(), true),
        ]
    );
    assert_eq!(
        f.one("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'items'::regclass AND NOT indisprimary").await,
        "items_note_key"
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    let err = f
        .client()
        .batch_execute("INSERT INTO items (id, note) SELECT 9001, note FROM items WHERE id = 1")
        .await
        .expect_err("the unique constraint holds");
    assert_eq!(err.code().map(|c| c.code()), Some("23505"));
    f.finalize(id);
}

const PARENTS: &str = "
    CREATE TABLE parents (id integer PRIMARY KEY);
    INSERT INTO parents SELECT g FROM generate_series(0, 10000) g;
";

#[tokio::test]
async fn foreign_key_with_a_type_change_then_finalize() {
    let f = fixture("mc_fk", &format!("{PARENTS}{ITEMS}")).await;
    let before = f.rows(ALL_AS_TEXT).await;
    // Qualified: see unqualified_foreign_key_with_a_type_change for the form users write.
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ADD CONSTRAINT items_n_fkey FOREIGN KEY (n) REFERENCES public.parents (id)",
        &["shadow"],
    );
    assert_eq!(
        f.constraints("items").await,
        vec![
            (
                "items_n_fkey".into(),
                "FOREIGN KEY (n) REFERENCES parents(id)".into(),
                true
            ),
            ("items_pkey".into(), "PRIMARY KEY (id)".into(), true),
        ]
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    let err = f
        .client()
        .batch_execute("INSERT INTO items (id, n) VALUES (9001, 123456)")
        .await
        .expect_err("the foreign key holds");
    assert_eq!(err.code().map(|c| c.code()), Some("23503"));
    f.finalize(id);
    assert_eq!(f.constraints("items").await.len(), 2);
}

#[tokio::test]
async fn unqualified_foreign_key_with_a_type_change() {
    let f = fixture("mc_fk_unqualified", &format!("{PARENTS}{ITEMS}")).await;
    let plan = f.plan(
        "ALTER TABLE items ALTER id TYPE bigint, ADD CONSTRAINT items_n_fkey FOREIGN KEY (n) REFERENCES parents (id)",
        &["shadow"],
    );
    let id = submit(&f.url, &plan, &[]);
    let run = apply(&f.url, id, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(f
        .constraints("items")
        .await
        .iter()
        .any(|c| c.0 == "items_n_fkey" && c.2));
}

#[tokio::test]
async fn rollback_of_an_added_foreign_key_restores_the_original_constraints() {
    let f = fixture("mc_fk_rollback", &format!("{PARENTS}{ITEMS}")).await;
    let before_fp = fingerprint(f.client()).await;
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, ADD CONSTRAINT items_n_fkey FOREIGN KEY (n) REFERENCES public.parents (id)",
        &["shadow"],
    );
    f.rollback(id);
    assert_eq!(
        f.constraints("items").await,
        vec![("items_pkey".into(), "PRIMARY KEY (id)".into(), true)]
    );
    assert_eq!(fingerprint(f.client()).await, before_fp);
}

#[tokio::test]
async fn drop_column_with_a_type_change_then_rollback() {
    let f = fixture("mc_drop_column", ITEMS).await;
    let before_fp = fingerprint(f.client()).await;
    let kept = "SELECT id::text, n::text, qty::text, label::text, cents::text, price::text FROM items ORDER BY items.id";
    let before_kept = f.rows(kept).await;
    let before_all = f.rows(ALL_AS_TEXT).await;
    // The drop is an error-level finding (plan exits 3) but the plan is written and runs.
    let id = f.migrate(
        "ALTER TABLE items ALTER id TYPE bigint, DROP COLUMN note",
        &["shadow"],
    );
    assert_eq!(
        f.one("SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'").await,
        "0"
    );
    assert_eq!(f.column("items", "id").await.0, "bigint");
    assert_rows(&f, kept, &before_kept).await;
    f.client()
        .batch_execute("INSERT INTO items (id, n) VALUES (9001, 5)")
        .await
        .unwrap();
    f.rollback(id);
    assert_eq!(fingerprint(f.client()).await, before_fp);
    // The dropped column is back with its old values; the row written since has NULL there.
    let mut expected = before_all.clone();
    expected.push(vec![
        Some("9001".into()),
        Some("5".into()),
        None,
        None,
        None,
        None,
        None,
    ]);
    assert_rows(&f, ALL_AS_TEXT, &expected).await;
}

#[tokio::test]
async fn several_statements_on_one_table_in_one_plan() {
    let f = fixture("mc_several_one_table", ITEMS).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let change = f.dir.join("change.sql");
    std::fs::write(
        &change,
        "ALTER TABLE items ALTER id TYPE bigint;\n\
         ALTER TABLE items ALTER n TYPE bigint;\n\
         ALTER TABLE items ALTER label TYPE varchar(40);\n\
         ALTER TABLE items ADD CONSTRAINT items_qty_nonneg CHECK (qty >= 0);\n\
         CREATE INDEX items_label_idx ON items (label);\n",
    )
    .unwrap();
    let plan = f.dir.join("plan.json");
    tandem(&[
        "--database-url",
        &f.url,
        "plan",
        "--in-place-below",
        "0",
        "-f",
        change.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ])
    .expect(0);
    // The two retypes that rewrite become one shadow migration; the varchar widening (binary
    // coercible), the check and the index are online steps, run on the new table after the
    // cutover.
    assert_eq!(
        strategies(&plan),
        vec!["shadow", "online", "online", "online"]
    );
    let id = f.submit_and_apply(&plan);
    assert_eq!(f.column("items", "id").await.0, "bigint");
    assert_eq!(f.column("items", "n").await.0, "bigint");
    assert_eq!(f.column("items", "label").await.0, "character varying(40)");
    assert!(f.constraints("items").await.contains(&(
        "items_qty_nonneg".into(),
        "CHECK ((qty >= 0))".into(),
        true
    )));
    assert_eq!(
        f.one("SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass('items_label_idx') AND indrelid = 'items'::regclass").await,
        "true"
    );
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    f.finalize(id);
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

#[tokio::test]
async fn changes_on_two_tables_in_one_plan_then_rollback() {
    let f = fixture(
        "mc_two_tables",
        &format!(
            "{ITEMS}
             CREATE TABLE orders (id integer PRIMARY KEY, amount integer, memo varchar(10));
             INSERT INTO orders SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE g END, 'm' || g FROM generate_series(1, 2500) g;
             ANALYZE orders;"
        ),
    )
    .await;
    let before_fp = fingerprint(f.client()).await;
    let items = f.rows(ALL_AS_TEXT).await;
    let orders_sql = "SELECT id::text, amount::text, memo::text FROM orders ORDER BY orders.id";
    let orders = f.rows(orders_sql).await;
    let change = f.dir.join("change.sql");
    std::fs::write(
        &change,
        "ALTER TABLE items ALTER id TYPE bigint;\nALTER TABLE orders ALTER amount TYPE bigint, ALTER memo TYPE varchar(5);\n",
    )
    .unwrap();
    let plan = f.dir.join("plan.json");
    tandem(&[
        "--database-url",
        &f.url,
        "plan",
        "--in-place-below",
        "0",
        "-f",
        change.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ])
    .expect(0);
    assert_eq!(strategies(&plan), vec!["shadow", "shadow"]);
    let id = f.submit_and_apply(&plan);
    assert_eq!(
        status_json(&f.url, id)["tables"].as_array().unwrap().len(),
        2
    );
    assert_eq!(f.column("items", "id").await.0, "bigint");
    assert_eq!(f.column("orders", "amount").await.0, "bigint");
    assert_eq!(f.column("orders", "memo").await.0, "character varying(5)");
    assert_rows(&f, ALL_AS_TEXT, &items).await;
    assert_rows(&f, orders_sql, &orders).await;
    f.rollback(id);
    assert_eq!(fingerprint(f.client()).await, before_fp);
    assert_rows(&f, ALL_AS_TEXT, &items).await;
    assert_rows(&f, orders_sql, &orders).await;
    assert!(f.leftovers().await.is_empty(), "{:?}", f.leftovers().await);
}

#[tokio::test]
async fn narrowing_a_row_does_not_fit_fails_and_leaves_the_table_alone() {
    let f = fixture("mc_narrow_fail", ITEMS).await;
    f.client()
        .batch_execute("UPDATE items SET label = 'twelve chars' WHERE id = 2500")
        .await
        .unwrap();
    let before_fp = fingerprint(f.client()).await;
    let before_oid = f.oid("items").await;
    let before = f.rows(ALL_AS_TEXT).await;
    let plan = f.plan(
        "ALTER TABLE items ALTER label TYPE varchar(10)",
        &["shadow"],
    );
    let id = submit(&f.url, &plan, &[]);
    let run = apply(&f.url, id, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let err = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        err.contains("does not fit the new definition")
            && err.contains("value too long for type character varying(10)"),
        "names the problem: {}",
        run.stderr
    );
    assert!(
        err.contains("fix that row") && err.contains("key (2500)"),
        "says what to do: {}",
        run.stderr
    );
    // The original table is untouched: same table, definition and data; writes still work.
    assert_eq!(f.oid("items").await, before_oid);
    assert_eq!(f.column("items", "label").await.0, "character varying(20)");
    assert_eq!(fingerprint(f.client()).await, before_fp);
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    assert_ne!(status_json(&f.url, id)["phase"], "rollback_window");

    // Doing what the message says works: fix the row, apply again.
    f.client()
        .batch_execute("UPDATE items SET label = 'fits now' WHERE id = 2500")
        .await
        .unwrap();
    let expected = f.rows(ALL_AS_TEXT).await;
    apply(&f.url, id, &[]).expect(0);
    assert_eq!(f.column("items", "label").await.0, "character varying(10)");
    assert_rows(&f, ALL_AS_TEXT, &expected).await;
}

#[tokio::test]
async fn set_not_null_over_a_null_row_fails_naming_the_row() {
    let f = fixture("mc_not_null_fail", ITEMS).await;
    let before_fp = fingerprint(f.client()).await;
    let before = f.rows(ALL_AS_TEXT).await;
    let plan = f.plan(
        "ALTER TABLE items ALTER id TYPE bigint, ALTER n SET NOT NULL",
        &["shadow"],
    );
    let id = submit(&f.url, &plan, &[]);
    let run = apply(&f.url, id, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("violates not-null constraint") && run.stderr.contains("key (7)"),
        "names the constraint and the row: {}",
        run.stderr
    );
    assert!(run.stderr.contains("fix that row"), "{}", run.stderr);
    assert_eq!(fingerprint(f.client()).await, before_fp);
    assert_rows(&f, ALL_AS_TEXT, &before).await;
    assert_eq!(f.column("items", "n").await, ("integer".into(), false));
}

#[tokio::test]
async fn rollback_of_an_online_only_migration_restores_or_is_refused() {
    let f = fixture("mc_online_rollback", ITEMS).await;
    let id = f.migrate("ALTER TABLE items ALTER label TYPE text", &["online"]);
    let run = on(&f.url, "rollback", id, &["--yes"]);
    let restored = f.column("items", "label").await.0 == "character varying(20)";
    assert!(
        restored || run.code != 0,
        "rollback exited {} saying {:?} but the column is still {}",
        run.code,
        run.stderr,
        f.column("items", "label").await.0
    );
}

/// `items` with one label too long for varchar(10), and a migration to varchar(10) whose apply
/// failed on it (left in dual-write).
async fn failed_narrowing(name: &str) -> (Fixture, i64, String) {
    let f = fixture(name, ITEMS).await;
    f.client()
        .batch_execute("UPDATE items SET label = 'twelve chars' WHERE id = 2500")
        .await
        .unwrap();
    let plan = f.plan(
        "ALTER TABLE items ALTER label TYPE varchar(10)",
        &["shadow"],
    );
    let id = submit(&f.url, &plan, &[]);
    let run = apply(&f.url, id, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    (f, id, run.stderr)
}

#[tokio::test]
async fn narrowing_failure_names_the_row() {
    let (_f, _id, stderr) = failed_narrowing("mc_narrow_names_row").await;
    assert!(
        stderr.contains("2500"),
        "the key of the row is named: {stderr}"
    );
}

#[tokio::test]
async fn a_failed_migration_can_give_way_to_a_corrected_change() {
    let (f, id, stderr) = failed_narrowing("mc_narrow_corrected").await;
    assert!(stderr.contains("or the change"), "{stderr}");
    // Follow the advice: fix the change (a wider type), plan it and run it.
    let corrected = f.plan(
        "ALTER TABLE items ALTER label TYPE varchar(15)",
        &["shadow"],
    );
    let next = submit(&f.url, &corrected, &[]);
    let mut runs = vec![apply(&f.url, next, &[])];
    if runs[0].code != 0 {
        // Whatever the refusal asks for (finishing the failed migration) must be possible.
        for command in ["rollback", "finalize"] {
            runs.push(on(&f.url, command, id, &["--yes"]));
        }
        runs.push(apply(&f.url, next, &[]));
    }
    let last = runs.last().unwrap();
    assert_eq!(last.code, 0, "{runs:#?}");
    assert_eq!(f.column("items", "label").await.0, "character varying(15)");
}

/// Issue 12: a `serial` key widened to bigint keeps an `AS integer` sequence in PostgreSQL;
/// the plan widens the sequence too, so ids can pass 2,147,483,647 afterwards.
#[tokio::test]
async fn a_serial_key_widened_to_bigint_gets_its_sequence_widened_too() {
    let f = fixture(
        "mc_serial_bigint",
        "CREATE TABLE orders (id serial PRIMARY KEY, note text);
         INSERT INTO orders (note) SELECT 'n' || g FROM generate_series(1, 2000) g;
         ANALYZE orders;",
    )
    .await;
    let plan = f.plan(
        "ALTER TABLE orders ALTER COLUMN id TYPE bigint",
        &["shadow", "online"],
    );
    let steps = tests::migrate::read_plan(&plan)["steps"].clone();
    assert_eq!(
        steps[1]["sql"][0], "ALTER SEQUENCE \"public\".\"orders_id_seq\" AS bigint",
        "{steps}"
    );
    f.submit_and_apply(&plan);
    assert_eq!(f.column("orders", "id").await.0, "bigint");
    assert_eq!(
        f.one("SELECT data_type || ' ' || maximum_value FROM information_schema.sequences WHERE sequence_name = 'orders_id_seq'")
            .await,
        "bigint 9223372036854775807"
    );
    // The next id past the old maximum is drawn and stored.
    f.client()
        .batch_execute(
            "SELECT setval('orders_id_seq', 2147483647);
             INSERT INTO orders (note) VALUES ('past the integer maximum');",
        )
        .await
        .expect("an id past 2^31 - 1");
    assert_eq!(
        f.one("SELECT max(id)::text FROM orders").await,
        "2147483648"
    );
}

/// A fixture loaded from `fixtures/cases/CASE/before.sql` (then ANALYZE), and the case's
/// `after.sql`.
async fn case_fixture(name: &str, case: &str) -> (Fixture, PathBuf) {
    let case = tests::root().join("fixtures/cases").join(case);
    let before = std::fs::read_to_string(case.join("before.sql")).expect("before.sql");
    let f = fixture(name, &format!("{before}\nANALYZE;")).await;
    (f, case.join("after.sql"))
}

impl Fixture {
    /// `tandem plan [EXTRA] --to AFTER -o plan.json`, which must exit with `code`.
    fn plan_to(&self, after: &Path, extra: &[&str], code: i32) -> PathBuf {
        let plan = self.dir.join("plan.json");
        let mut args = vec!["--database-url", &self.url, "plan"];
        args.extend_from_slice(extra);
        args.extend([
            "--to",
            after.to_str().expect("utf-8"),
            "-o",
            plan.to_str().expect("utf-8"),
        ]);
        tandem(&args).expect(code);
        plan
    }
}

/// Issue 12: a `--to` plan that changes an FK, a CHECK, a partial index and a materialized
/// view next to a shadow step, applied by the engine: every step runs, the result is the
/// desired schema, and the rows are all there.
#[tokio::test]
async fn a_to_plan_that_builds_beside_a_shadow_step_applies_and_reaches_the_desired_schema() {
    let (f, after) = case_fixture("mc_beside_shadow", "diff_no_window_beside_a_shadow_step").await;
    let plan = f.plan_to(&after, &["--in-place-below", "0"], 0);
    let after = after.to_str().expect("utf-8");
    assert_eq!(strategies(&plan)[0], "shadow");
    f.submit_and_apply(&plan);
    tandem(&[
        "--database-url",
        &f.url,
        "diff",
        "--to",
        after,
        "--exit-code",
    ])
    .expect(0);
    assert_eq!(f.one("SELECT count(*)::text FROM orders").await, "2000");
    assert_eq!(
        f.one("SELECT count(*)::text FROM pg_constraint WHERE conname LIKE '%tandem_new'")
            .await,
        "0"
    );
}

/// A generated column widened is planned without USING (PostgreSQL refuses it there) and
/// the engine carries the recomputed values.
#[tokio::test]
async fn a_generated_column_widened_through_the_shadow() {
    let f = fixture(
        "mc_generated_widen",
        "CREATE TABLE items (id bigint PRIMARY KEY, price integer NOT NULL, doubled integer GENERATED ALWAYS AS (price * 2) STORED);
         INSERT INTO items (id, price) SELECT g, g FROM generate_series(1, 2000) g;
         ANALYZE items;",
    )
    .await;
    let plan = f.plan(
        "ALTER TABLE items ALTER COLUMN doubled TYPE bigint",
        &["shadow"],
    );
    f.submit_and_apply(&plan);
    assert_eq!(f.column("items", "doubled").await.0, "bigint");
    assert_eq!(
        f.one("SELECT count(*)::text FROM items WHERE doubled = price * 2")
            .await,
        "2000"
    );
}

/// Issue 12: a column that a generated column reads cannot be retyped while the generated
/// column exists ("cannot alter type of a column used by a generated column"); one statement
/// that drops the generated column, retypes and adds it back does it, through the shadow.
#[tokio::test]
async fn a_column_read_by_a_generated_column_is_retyped_with_it_in_one_statement() {
    let f = fixture(
        "mc_generated_base",
        "CREATE TABLE items (id bigint PRIMARY KEY, price integer NOT NULL, doubled integer GENERATED ALWAYS AS (price * 2) STORED);
         INSERT INTO items (id, price) SELECT g, g FROM generate_series(1, 2000) g;
         ANALYZE items;",
    )
    .await;
    let plan = f.plan(
        "ALTER TABLE items DROP COLUMN doubled, ALTER COLUMN price TYPE bigint, ADD COLUMN doubled bigint GENERATED ALWAYS AS (price * 2) STORED",
        &["shadow"],
    );
    f.submit_and_apply(&plan);
    assert_eq!(f.column("items", "price").await.0, "bigint");
    assert_eq!(f.column("items", "doubled").await.0, "bigint");
    assert_eq!(
        f.one("SELECT count(*)::text FROM items WHERE doubled = price * 2")
            .await,
        "2000"
    );
}

/// Issue 12: PostgreSQL refuses to retype a column a row-level security policy reads
/// ("cannot alter type of a column used in a policy definition"); the shadow migration
/// carries the policy to the new table instead, so it never stops protecting the rows.
#[tokio::test]
async fn a_column_a_policy_reads_is_retyped_through_the_shadow_with_the_policy_in_force() {
    let f = fixture(
        "mc_policy_column",
        "CREATE TABLE notes (id bigint PRIMARY KEY, level integer NOT NULL, body text);
         INSERT INTO notes SELECT g, g % 5, 'b' || g FROM generate_series(1, 2000) g;
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY notes_low ON notes USING (level < 3);
         ANALYZE notes;",
    )
    .await;
    let plan = f.plan(
        "ALTER TABLE notes ALTER COLUMN level TYPE bigint",
        &["shadow"],
    );
    f.submit_and_apply(&plan);
    assert_eq!(f.column("notes", "level").await.0, "bigint");
    assert_eq!(
        f.one("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'notes_low' AND polrelid = 'notes'::regclass")
            .await,
        "(level < 3)"
    );
}

/// Clients that read `queries` in a loop until `stop`; each returns (reads, errors).
async fn readers(
    f: &Fixture,
    queries: &[&'static str],
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    let mut out = Vec::new();
    for &sql in queries {
        let client = f.db.connect().await;
        let stop = stop.clone();
        out.push(tokio::spawn(async move {
            let (mut reads, mut errors) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.simple_query(sql).await {
                    Ok(_) => reads += 1,
                    Err(e) => errors.push(
                        e.as_db_error()
                            .map_or_else(|| e.to_string(), |d| d.message().to_string()),
                    ),
                }
            }
            (reads, errors)
        }));
    }
    out
}

async fn no_reader_failed(readers: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>) {
    for r in readers {
        let (reads, errors) = r.await.expect("reader");
        assert!(errors.is_empty(), "a client saw: {errors:?}");
        assert!(reads > 10, "the reader ran ({reads} reads)");
    }
}

/// Submit and apply `plan` on a blocking thread, so the test's clients keep running; the
/// migration's id.
async fn submit_and_apply_beside(f: &Fixture, plan: &Path) -> i64 {
    let (url, plan) = (f.url.clone(), plan.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let id = submit(&url, &plan, &[]);
        apply(&url, id, &[]).expect(0);
        id
    })
    .await
    .expect("apply")
}

/// Submit and apply `plan` while clients read `queries` in a loop (from 100 ms before to
/// 100 ms after); none of them may see an error.
async fn apply_under_readers(f: &Fixture, plan: &Path, queries: &[&'static str]) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = readers(f, queries, &stop).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    submit_and_apply_beside(f, plan).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    no_reader_failed(readers).await;
}

/// Issue 12: a varchar column a view reads is widened. PostgreSQL refuses the ALTER while
/// the view exists; the plan's one online step drops the view, widens the column and
/// creates the view again in one transaction, so a client reading the view the whole time
/// never finds it missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_widened_column_is_never_missing() {
    let (f, after) = case_fixture("mc_view_widened", "diff_view_over_widened_column").await;
    let plan = f.plan_to(&after, &["--in-place-below", "0"], 0);
    assert_eq!(strategies(&plan), ["online"]);
    apply_under_readers(&f, &plan, &["SELECT count(*) FROM member_handles"; 2]).await;
    assert_eq!(
        f.one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'member_handles'::regclass AND attname = 'handle'").await,
        "character varying(64)"
    );
}

/// Issue 12: a column two views read (one built on the other) is retyped through the shadow.
/// The plan no longer drops the views around the copy: the swap re-points both at the new
/// table in its own transaction, and back again on rollback. Clients read both views the
/// whole time and never get an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_on_views_over_a_retyped_column_stay_readable_through_apply_and_rollback() {
    let (f, after) = case_fixture("mc_views_carried", "diff_view_dependent_type_change").await;
    let plan = f.plan_to(&after, &["--in-place-below", "0"], 0);
    assert_eq!(strategies(&plan), ["shadow"], "the views are not dropped");
    let total = f.one("SELECT total::text FROM big_order_total").await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = readers(
        &f,
        &[
            "SELECT count(*) FROM big_orders",
            "SELECT total::text FROM big_order_total",
        ],
        &stop,
    )
    .await;
    let id = submit_and_apply_beside(&f, &plan).await;
    let view_type = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'big_orders'::regclass AND attname = 'amount_cents'";
    assert_eq!(f.one(view_type).await, "bigint");
    assert_eq!(
        f.one("SELECT total::text FROM big_order_total").await,
        total
    );
    let url = f.url.clone();
    tokio::task::spawn_blocking(move || {
        on(&url, "rollback", id, &["--yes"]).expect(0);
    })
    .await
    .expect("rollback");
    assert_eq!(f.one(view_type).await, "integer");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    no_reader_failed(readers).await;
    assert_eq!(
        f.one("SELECT total::text FROM big_order_total").await,
        total
    );
}

/// Issue 12: a rewrite of a small table runs in place (the statement itself, under
/// lock_timeout) rather than as a shadow migration, and says why; a table that has grown
/// past the limit since the plan is refused at apply, unchanged, with what to do.
#[tokio::test]
async fn a_small_table_is_rewritten_in_place_and_refused_once_it_has_grown() {
    let f = fixture(
        "mc_in_place",
        "CREATE TABLE items (id bigint PRIMARY KEY, price integer NOT NULL, label text);
         INSERT INTO items SELECT g, g, 'l' || g FROM generate_series(1, 2000) g;
         ANALYZE items;",
    )
    .await;
    let change = "ALTER TABLE items ALTER COLUMN price TYPE bigint";
    let in_place = |limit: &str, name: &str| {
        let path = f.dir.join(name);
        tandem(&[
            "--database-url",
            &f.url,
            "plan",
            "--in-place-below",
            limit,
            "--sql",
            change,
            "-o",
            path.to_str().expect("utf-8"),
        ])
        .expect(0);
        path
    };
    // Planned under a 1 MB limit (the table has about 100 kB), then grown past it.
    let plan = in_place("1MB", "small.json");
    assert_eq!(strategies(&plan), ["online"]);
    let step = &tests::migrate::read_plan(&plan)["steps"][0];
    let description = step["description"].as_str().expect("text");
    assert!(description.contains("in place: items is"), "{description}");
    assert_eq!(step["in_place_max_bytes"], 1 << 20);
    f.client()
        .batch_execute(
            "INSERT INTO items SELECT g, g, repeat('x', 200) FROM generate_series(2001, 12000) g",
        )
        .await
        .expect("grow the table");
    let id = submit(&f.url, &plan, &[]);
    let run = apply(&f.url, id, &[]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("in place because it was under 1048576 bytes")
            && run.stderr.contains("make a new plan"),
        "{}",
        run.stderr
    );
    assert_eq!(f.column("items", "price").await.0, "integer");

    // A new plan under the same limit is a shadow migration now; under the default (4 MB)
    // it is in place again, and applies.
    assert_eq!(strategies(&in_place("1MB", "grown.json")), ["shadow"]);
    let plan = in_place("4MB", "default.json");
    assert_eq!(strategies(&plan), ["online"]);
    // The refused migration changed nothing; it is rolled back (nothing to undo) first.
    on(&f.url, "rollback", id, &["--yes"]).expect(0);
    f.submit_and_apply(&plan);
    assert_eq!(f.column("items", "price").await.0, "bigint");
    assert_eq!(f.one("SELECT count(*)::text FROM items").await, "12000");
}

/// Issue 12: a hinted table rename takes the serial column's sequence along (renamed with
/// the table, not dropped and made again): the next id follows the last one, as before.
#[tokio::test]
async fn a_hinted_table_rename_keeps_the_serial_sequence_counting() {
    let (f, after) = case_fixture("mc_rename_sequence", "diff_rename_table_hint_sequence").await;
    // A rename is a breaking change (T041): planned, but the plan exits 3 for it.
    let plan = f.plan_to(&after, &[], 3);
    f.submit_and_apply(&plan);
    assert_eq!(
        f.one("INSERT INTO issues (title) VALUES ('next') RETURNING id::text")
            .await,
        "51"
    );
    assert_eq!(
        f.one("SELECT pg_get_serial_sequence('issues', 'id')").await,
        "public.issues_id_seq"
    );
}

/// Issue 12: on a small table, the retype of a column two views read runs in place, with the
/// views dropped and created again in its transaction; the step keeps its size limit, and
/// readers of both views never see an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_a_small_table_retyped_in_place_are_never_missing() {
    let (f, after) = case_fixture("mc_views_in_place", "diff_view_dependent_type_change").await;
    let plan = f.plan_to(&after, &[], 0);
    assert_eq!(strategies(&plan), ["online"]);
    let step = &tests::migrate::read_plan(&plan)["steps"][0];
    assert_eq!(step["in_place_max_bytes"], 4 << 20, "{step}");
    assert_eq!(step["sql"].as_array().map(Vec::len), Some(5), "{step}");
    apply_under_readers(
        &f,
        &plan,
        &[
            "SELECT count(*) FROM big_orders",
            "SELECT total::text FROM big_order_total",
        ],
    )
    .await;
    assert_eq!(
        f.one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'big_orders'::regclass AND attname = 'amount_cents'").await,
        "bigint"
    );
}

/// Issue 12: a primary key that three foreign keys reference (one from its own table, one
/// NOT VALID) changes. The new key is built beside and swapped in with its foreign keys
/// re-added NOT VALID in the same transaction: while it applies, children keep inserting
/// (never an error), and an orphan insert is refused every single time (never a window
/// without the foreign key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_key_changes_with_children_inserting_and_no_orphan_ever_accepted() {
    let (f, after) = case_fixture("mc_referenced_key", "diff_referenced_primary_key_changed").await;
    let plan = f.plan_to(&after, &[], 0);
    let steps = tests::migrate::read_plan(&plan)["steps"].clone();
    let dropping: Vec<&serde_json::Value> = steps
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s.to_string().contains("DROP CONSTRAINT"))
        .collect();
    assert_eq!(dropping.len(), 1, "one step drops anything: {steps}");
    assert_eq!(
        dropping[0]["sql"].as_array().map(Vec::len),
        Some(8),
        "3 foreign keys dropped, the key swapped (2), the 3 re-added: {steps}"
    );
    assert_eq!(dropping[0]["transactional"], true);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for worker in 0..2i64 {
        let client = f.db.connect().await;
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut writes, mut orphans_refused) = (0u64, 0u64);
            let mut failures = Vec::new();
            let mut k = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                let id = 1_000_000 * (worker + 1) + k;
                let good = format!(
                    "INSERT INTO invoices VALUES ({id}, {}); \
                     INSERT INTO accounts VALUES ({}, NULL, 'new') \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                    k % 100 + 1,
                    k % 100 + 1
                );
                match client.batch_execute(&good).await {
                    Ok(()) => writes += 1,
                    Err(e) => failures.push(format!("a valid write failed: {e:?}")),
                }
                let orphan = format!("INSERT INTO invoices VALUES ({}, 999999)", -id);
                match client.batch_execute(&orphan).await {
                    Ok(()) => failures.push(format!("an orphan invoice {} was accepted", -id)),
                    Err(e)
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) =>
                    {
                        orphans_refused += 1
                    }
                    Err(e) => failures.push(format!("an orphan insert failed otherwise: {e:?}")),
                }
            }
            (writes, orphans_refused, failures)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    submit_and_apply_beside(&f, &plan).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        let (writes, refused, failures) = c.await.expect("client");
        assert!(failures.is_empty(), "{failures:?}");
        assert!(
            writes > 10 && refused > 10,
            "{writes} writes, {refused} refusals"
        );
    }
    let after = after.to_str().expect("utf-8");
    tandem(&[
        "--database-url",
        &f.url,
        "diff",
        "--to",
        after,
        "--exit-code",
    ])
    .expect(0);
    assert_eq!(
        f.one(
            "SELECT string_agg(conname || ' ' || convalidated, ', ' ORDER BY conname) \
             FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        )
        .await,
        "accounts_parent_id_fkey true, invoices_account_id_fkey true, notes_account_id_fkey false"
    );
}

/// Issue 12: a column a materialized view reads is retyped through the shadow. The plan no
/// longer drops the materialized view around the copy: right after the swap the executor
/// builds it again beside over the new table and swaps it in by rename, with its index,
/// comment, owner and grants; the same after a rollback, and the tables under it can then be
/// dropped (rollback's cleanup, finalize). Clients read it the whole time and never get an
/// error, and its rows are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_materialized_view_over_a_retyped_column_is_rebuilt_beside_never_missing() {
    let (f, after) = case_fixture("mc_matview", "diff_matview_over_retyped_column").await;
    f.client()
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE mc_matview_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT SELECT ON account_totals TO mc_matview_reader;",
        )
        .await
        .expect("grant");
    let plan = f.plan_to(&after, &["--in-place-below", "0"], 0);
    assert_eq!(
        strategies(&plan),
        ["shadow"],
        "the materialized view is not dropped"
    );
    let rows = "SELECT string_agg(account || ':' || total || ':' || n, ',' ORDER BY account) FROM account_totals";
    let before = f.one(rows).await;
    let total_type = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'account_totals'::regclass AND attname = 'total'";
    let carried = "SELECT (SELECT count(DISTINCT d.refobjid) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class = 'account_totals'::regclass AND d.refobjid = 'payments'::regclass)::text
                   || ' ' || obj_description('account_totals'::regclass, 'pg_class')
                   || ' ' || (SELECT indisunique FROM pg_index WHERE indexrelid = 'account_totals_account'::regclass)::text
                   || ' ' || has_table_privilege('mc_matview_reader', 'account_totals', 'SELECT')::text
                   || ' ' || (SELECT count(*) FROM pg_class WHERE relname LIKE '\\_tandem\\_m%\\_mv%')::text";

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = readers(
        &f,
        &[
            "SELECT total FROM account_totals WHERE account = 7",
            "SELECT count(*) FROM account_totals",
        ],
        &stop,
    )
    .await;
    let id = submit_and_apply_beside(&f, &plan).await;
    assert_eq!(f.one(total_type).await, "numeric", "sum(bigint) now");
    assert_eq!(f.one(carried).await, "1 refreshed nightly true true 0");
    assert_eq!(f.one(rows).await, before);

    let url = f.url.clone();
    tokio::task::spawn_blocking(move || {
        on(&url, "rollback", id, &["--yes"]).expect(0);
    })
    .await
    .expect("rollback");
    assert_eq!(
        f.one(total_type).await,
        "bigint",
        "over the old table again"
    );
    assert_eq!(f.one(carried).await, "1 refreshed nightly true true 0");
    assert_eq!(f.one(rows).await, before);

    // Again, to the end of the window: finalize drops the old table, which nothing reads.
    let plan = f.plan_to(&after, &["--in-place-below", "0"], 0);
    let (url, plan_path) = (f.url.clone(), plan.clone());
    tokio::task::spawn_blocking(move || {
        let id = submit(&url, &plan_path, &[]);
        apply(&url, id, &[]).expect(0);
        on(&url, "finalize", id, &["--yes"]).expect(0);
    })
    .await
    .expect("apply and finalize");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    no_reader_failed(readers).await;
    assert_eq!(f.one(total_type).await, "numeric");
    assert_eq!(f.one(carried).await, "1 refreshed nightly true true 0");
    assert_eq!(f.one(rows).await, before);
    let after = after.to_str().expect("utf-8");
    tandem(&[
        "--database-url",
        &f.url,
        "diff",
        "--to",
        after,
        "--exit-code",
    ])
    .expect(0);
}

/// Issue 12: a column a rule reads is retyped in place (a small table): the rule is dropped,
/// the column retyped and the rule created again in the step's one transaction. Clients
/// insert the whole time; every insert fires the rule (none lands while it is missing) and
/// none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_over_a_column_retyped_in_place_fires_for_every_insert() {
    let (f, after) = case_fixture("mc_rule_in_place", "diff_type_change_read_by_rule").await;
    let plan = f.plan_to(&after, &[], 0);
    assert_eq!(strategies(&plan), ["online"]);
    let step = &tests::migrate::read_plan(&plan)["steps"][0];
    assert_eq!(step["sql"].as_array().map(Vec::len), Some(3), "{step}");
    assert!(step.get("exposes").is_none(), "{step}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for worker in 0..2i64 {
        let client = f.db.connect().await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let (mut n, mut failures) = (0i64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = 1_000_000 * (worker + 1) + n;
                if let Err(e) = client
                    .batch_execute(&format!("INSERT INTO orders VALUES ({id}, {n})"))
                    .await
                {
                    failures.push(format!("{e:?}"));
                }
            }
            (n, failures)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    submit_and_apply_beside(&f, &plan).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let (n, failures) = w.await.expect("writer");
        assert!(failures.is_empty(), "{failures:?}");
        assert!(n > 10, "the writer ran ({n} inserts)");
    }
    assert_eq!(
        f.one("SELECT count(*)::text FROM orders o WHERE o.id > 1000000 AND NOT EXISTS (SELECT 1 FROM order_log l WHERE l.order_id = o.id)").await,
        "0",
        "an insert missed the rule"
    );
    let after = after.to_str().expect("utf-8");
    tandem(&[
        "--database-url",
        &f.url,
        "diff",
        "--to",
        after,
        "--exit-code",
    ])
    .expect(0);
}
