//! Snapshot tests of the schema diff: small schemas built in Rust, the ordered changes.
//!
//! Each case renders the changes as annotated SQL (`check`) so a reviewer reads the plan
//! the way PostgreSQL will run it. Definitions are spelled as the server prints them.

use std::collections::BTreeMap;

use planner::diff::{diff, differences, parse_rename_hints, Change, DiffError, RenameHints};
use planner::model::{
    Column, CompositeType, Constraint, ConstraintKind, Domain, DomainCheck, EnumType, Extension,
    ForeignKey, Function, Identity, Index, Namespace, Persistence, Policy, ReplicaIdentity, Schema,
    Sequence, Table, Trigger, View,
};
use planner::QualName;

// ---- builder ------------------------------------------------------------------------

fn q(name: &str) -> QualName {
    let (s, n) = name.split_once('.').expect("schema.name");
    QualName::new(s, n).unwrap()
}

/// A schema holding `public` and plpgsql, like every fresh database.
fn base() -> Schema {
    let mut s = Schema::default();
    s.schemas.insert(
        "public".into(),
        Namespace {
            name: "public".into(),
            comment: Some("standard public schema".into()),
        },
    );
    s.extensions.insert(
        "plpgsql".into(),
        Extension {
            name: "plpgsql".into(),
            schema: "pg_catalog".into(),
            version: "1.0".into(),
        },
    );
    s
}

/// `"name type"`, with `!` after the type for NOT NULL: `col("id bigint!")`.
fn col(spec: &str) -> Column {
    let (name, ty) = spec.split_once(' ').expect("name type");
    let not_null = ty.ends_with('!');
    Column {
        name: name.into(),
        data_type: ty.trim_end_matches('!').into(),
        collation: None,
        not_null,
        default: None,
        identity: None,
        generated: None,
        comment: None,
    }
}

fn table(name: &str, columns: &[&str]) -> Table {
    Table {
        name: q(name),
        persistence: Persistence::Permanent,
        partition_key: None,
        partition_of: None,
        rls_enabled: false,
        rls_forced: false,
        replica_identity: ReplicaIdentity::Default,
        options: Vec::new(),
        columns: columns.iter().map(|c| col(c)).collect(),
        constraints: BTreeMap::new(),
        indexes: BTreeMap::new(),
        triggers: BTreeMap::new(),
        rules: BTreeMap::new(),
        policies: BTreeMap::new(),
        comment: None,
        stats: None,
    }
}

fn constraint(name: &str, kind: ConstraintKind, definition: &str) -> Constraint {
    Constraint {
        name: name.into(),
        kind,
        validated: !definition.ends_with("NOT VALID"),
        definition: definition.into(),
        deferrable: false,
        initially_deferred: false,
        comment: None,
    }
}

fn with_constraint(mut t: Table, c: Constraint) -> Table {
    t.constraints.insert(c.name.clone(), c);
    t
}

fn pk(t: Table, columns: &[&str]) -> Table {
    let name = format!("{}_pkey", t.name.name.as_str());
    let def = format!("PRIMARY KEY ({})", columns.join(", "));
    let cols = columns.iter().map(|c| c.to_string()).collect();
    with_constraint(
        t,
        constraint(&name, ConstraintKind::PrimaryKey { columns: cols }, &def),
    )
}

fn fk(t: Table, name: &str, column: &str, references: &str) -> Table {
    let kind = ConstraintKind::ForeignKey(ForeignKey {
        columns: vec![column.into()],
        references: q(references),
        referenced_columns: vec!["id".into()],
        on_update: 'a',
        on_delete: 'a',
    });
    let def = format!("FOREIGN KEY ({column}) REFERENCES {references}(id)");
    with_constraint(t, constraint(name, kind, &def))
}

fn index(mut t: Table, name: &str, keys: &str) -> Table {
    let def = format!(
        "CREATE INDEX {name} ON {} USING btree ({keys})",
        t.name.to_string().replace('"', "")
    );
    t.indexes.insert(
        name.into(),
        Index {
            name: name.into(),
            unique: false,
            method: "btree".into(),
            keys: vec![keys.into()],
            include: Vec::new(),
            predicate: None,
            definition: def,
            valid: true,
            comment: None,
        },
    );
    t
}

fn view(name: &str, definition: &str, depends_on: &[&str], columns: &[(&str, &str)]) -> View {
    View {
        name: q(name),
        materialized: false,
        definition: definition.into(),
        columns: columns
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        depends_on: depends_on.iter().map(|d| q(d)).collect(),
        indexes: BTreeMap::new(),
        comment: None,
    }
}

fn function(name: &str, args: &str, result: &str, body: &str) -> Function {
    let (schema, fname) = name.split_once('.').unwrap();
    Function {
        schema: schema.into(),
        name: fname.into(),
        identity_args: args.into(),
        result: Some(result.into()),
        language: "plpgsql".into(),
        definition: format!(
            "CREATE OR REPLACE FUNCTION {name}({args})\n RETURNS {result}\n LANGUAGE plpgsql\nAS $function$\n{body}\n$function$\n"
        ),
        comment: None,
    }
}

fn with_tables(mut s: Schema, tables: Vec<Table>) -> Schema {
    for t in tables {
        s.tables.insert(t.name.clone(), t);
    }
    s
}

fn with_views(mut s: Schema, views: Vec<View>) -> Schema {
    for v in views {
        s.views.insert(v.name.clone(), v);
    }
    s
}

// ---- rendering ----------------------------------------------------------------------

fn render(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        let tx = if c.transactional {
            ""
        } else {
            ", outside a transaction"
        };
        let table = c
            .table
            .as_ref()
            .map(|t| format!(", table {t}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "-- {:?} {}: {}{table}{tx}\n",
            c.kind, c.object, c.description
        ));
        for s in &c.sql {
            out.push_str(s);
            out.push_str(";\n");
        }
    }
    out
}

fn check(name: &str, from: &Schema, to: &Schema, hints: &RenameHints) {
    let changes = diff(from, to, hints).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::assert_snapshot!(name, render(&changes));
}

// ---- cases --------------------------------------------------------------------------

fn accounts() -> Table {
    pk(
        table(
            "public.accounts",
            &["id bigint!", "email text!", "balance integer!"],
        ),
        &["id"],
    )
}

#[test]
fn add_table_with_fk_to_new_table() {
    // Named so that alphabetical order would put the referencing table first.
    let parent = pk(
        table("public.z_parents", &["id bigint!", "name text"]),
        &["id"],
    );
    let child = fk(
        pk(
            table("public.a_children", &["id bigint!", "parent_id bigint!"]),
            &["id"],
        ),
        "a_children_parent_id_fkey",
        "parent_id",
        "public.z_parents",
    );
    let child = index(child, "a_children_parent_id_idx", "parent_id");
    check(
        "add_table_with_fk_to_new_table",
        &base(),
        &with_tables(base(), vec![parent, child]),
        &RenameHints::default(),
    );
}

#[test]
fn add_column_and_index_on_existing_table() {
    let from = with_tables(base(), vec![accounts()]);
    let mut t = index(accounts(), "accounts_email_idx", "email");
    let mut note = col("note text");
    note.default = Some("''::text".into());
    t.columns.push(note);
    let changes = diff(
        &from,
        &with_tables(base(), vec![t.clone()]),
        &RenameHints::default(),
    )
    .unwrap();
    let index = changes
        .iter()
        .find(|c| c.object == "index public.accounts_email_idx")
        .unwrap();
    assert!(!index.transactional);
    check(
        "add_column_and_index_on_existing_table",
        &from,
        &with_tables(base(), vec![t]),
        &RenameHints::default(),
    );
}

fn accounts_view() -> View {
    view(
        "public.account_balances",
        " SELECT accounts.id,\n    accounts.balance\n   FROM public.accounts;",
        &["public.accounts"],
        &[("id", "bigint"), ("balance", "integer")],
    )
}

fn rich_accounts_view() -> View {
    view(
        "public.rich_accounts",
        " SELECT account_balances.id\n   FROM public.account_balances\n  WHERE (account_balances.balance > 1000);",
        &["public.account_balances"],
        &[("id", "bigint")],
    )
}

#[test]
fn column_type_change_under_dependent_views() {
    let from = with_views(
        with_tables(base(), vec![accounts()]),
        vec![accounts_view(), rich_accounts_view()],
    );
    let mut t = accounts();
    t.columns[2].data_type = "bigint".into();
    let mut v = accounts_view();
    v.columns[1].1 = "bigint".into();
    let to = with_views(with_tables(base(), vec![t]), vec![v, rich_accounts_view()]);
    check(
        "column_type_change_under_dependent_views",
        &from,
        &to,
        &RenameHints::default(),
    );
}

#[test]
fn view_with_appended_column_is_replaced() {
    let from = with_views(with_tables(base(), vec![accounts()]), vec![accounts_view()]);
    let mut v = accounts_view();
    v.definition =
        " SELECT accounts.id,\n    accounts.balance,\n    accounts.email\n   FROM public.accounts;"
            .into();
    v.columns.push(("email".into(), "text".into()));
    let to = with_views(with_tables(base(), vec![accounts()]), vec![v]);
    check(
        "view_with_appended_column_is_replaced",
        &from,
        &to,
        &RenameHints::default(),
    );
}

fn mood(labels: &[&str]) -> Schema {
    let mut s = base();
    s.enums.insert(
        q("public.mood"),
        EnumType {
            name: q("public.mood"),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            comment: None,
        },
    );
    s
}

#[test]
fn enum_add_values() {
    let changes = diff(
        &mood(&["sad", "happy"]),
        &mood(&["meh", "sad", "ok", "happy", "it's great"]),
        &RenameHints::default(),
    )
    .unwrap();
    assert!(changes.iter().all(|c| !c.transactional));
    check(
        "enum_add_values",
        &mood(&["sad", "happy"]),
        &mood(&["meh", "sad", "ok", "happy", "it's great"]),
        &RenameHints::default(),
    );
}

#[test]
fn enum_remove_or_reorder_is_unsupported() {
    let removed = diff(
        &mood(&["sad", "happy"]),
        &mood(&["happy"]),
        &RenameHints::default(),
    )
    .unwrap_err();
    let reordered = diff(
        &mood(&["sad", "happy"]),
        &mood(&["happy", "sad"]),
        &RenameHints::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!("enum_unsupported", format!("{removed}\n{reordered}"));
}

fn parents_children() -> (Table, Table) {
    let parent = pk(table("public.parents", &["id bigint!"]), &["id"]);
    let child = fk(
        pk(
            table("public.children", &["id bigint!", "parent_id bigint"]),
            &["id"],
        ),
        "children_parent_id_fkey",
        "parent_id",
        "public.parents",
    );
    (parent, child)
}

#[test]
fn drop_table_referenced_by_fk() {
    let (parent, child) = parents_children();
    let from = with_tables(base(), vec![parent, child.clone()]);
    let mut kept = child;
    kept.constraints.remove("children_parent_id_fkey");
    check(
        "drop_table_referenced_by_fk",
        &from,
        &with_tables(base(), vec![kept]),
        &RenameHints::default(),
    );
    // Both tables go: the foreign key first, then the tables in any order.
    check(
        "drop_both_tables_of_fk",
        &from,
        &base(),
        &RenameHints::default(),
    );
}

#[test]
fn check_and_fk_on_existing_table_are_not_valid_then_validated() {
    let (parent, child) = parents_children();
    let mut bare_child = child.clone();
    bare_child.constraints.remove("children_parent_id_fkey");
    let from = with_tables(base(), vec![accounts(), parent.clone(), bare_child]);
    let checked = with_constraint(
        accounts(),
        constraint(
            "accounts_balance_check",
            ConstraintKind::Check,
            "CHECK ((balance >= 0))",
        ),
    );
    // A desired constraint that is itself NOT VALID is added as such, and not validated.
    let checked = with_constraint(
        checked,
        constraint(
            "accounts_email_check",
            ConstraintKind::Check,
            "CHECK ((email <> ''::text)) NOT VALID",
        ),
    );
    check(
        "check_and_fk_not_valid_then_validate",
        &from,
        &with_tables(base(), vec![checked, parent, child]),
        &RenameHints::default(),
    );
}

#[test]
fn unique_and_primary_key_use_a_concurrent_index() {
    let from = with_tables(
        base(),
        vec![table(
            "public.accounts",
            &["id bigint!", "email text!", "balance integer!"],
        )],
    );
    let t = with_constraint(
        accounts(),
        constraint(
            "accounts_email_key",
            ConstraintKind::Unique {
                columns: vec!["email".into()],
            },
            "UNIQUE NULLS NOT DISTINCT (email) INCLUDE (balance) WITH (fillfactor='90') DEFERRABLE",
        ),
    );
    check(
        "unique_and_primary_key_use_a_concurrent_index",
        &from,
        &with_tables(base(), vec![t]),
        &RenameHints::default(),
    );
}

#[test]
fn function_body_and_result_change() {
    let mut from = base();
    let mut to = base();
    let a = function("public.answer", "", "integer", "BEGIN RETURN 41; END");
    let b = function("public.answer", "", "integer", "BEGIN RETURN 42; END");
    let c = function(
        "public.label",
        "n integer",
        "integer",
        "BEGIN RETURN n; END",
    );
    let d = function(
        "public.label",
        "n integer",
        "text",
        "BEGIN RETURN n::text; END",
    );
    from.functions.insert(a.key(), a);
    to.functions.insert(b.key(), b);
    from.functions.insert(c.key(), c);
    to.functions.insert(d.key(), d);
    check(
        "function_body_and_result_change",
        &from,
        &to,
        &RenameHints::default(),
    );
}

#[test]
fn comment_changes() {
    let mut live = accounts();
    live.comment = Some("old".into());
    live.columns[1].comment = Some("login".into());
    let mut desired = accounts();
    desired.comment = Some("customer's accounts".into());
    desired.columns[2].comment = Some("in cents".into());
    let mut to = with_tables(base(), vec![desired]);
    to.schemas.get_mut("public").unwrap().comment = None;
    check(
        "comment_changes",
        &with_tables(base(), vec![live]),
        &to,
        &RenameHints::default(),
    );
}

#[test]
fn rename_hints_for_table_and_column() {
    let live = with_constraint(
        index(accounts(), "accounts_email_idx", "email"),
        constraint(
            "accounts_balance_check",
            ConstraintKind::Check,
            "CHECK ((balance >= 0))",
        ),
    );
    let from = with_views(with_tables(base(), vec![live]), vec![accounts_view()]);
    // Desired: accounts -> customers, balance -> credit. The primary key and index keep
    // their names (a rename does not rename them); the check follows the column.
    let mut t = with_constraint(
        index(accounts(), "accounts_email_idx", "email"),
        constraint(
            "accounts_balance_check",
            ConstraintKind::Check,
            "CHECK ((credit >= 0))",
        ),
    );
    t.name = q("public.customers");
    t.indexes.get_mut("accounts_email_idx").unwrap().definition =
        "CREATE INDEX accounts_email_idx ON public.customers USING btree (email)".into();
    t.columns[2].name = "credit".into();
    let v = view(
        "public.account_balances",
        " SELECT customers.id,\n    customers.credit AS balance\n   FROM public.customers;",
        &["public.customers"],
        &[("id", "bigint"), ("balance", "integer")],
    );
    let to = with_views(with_tables(base(), vec![t]), vec![v]);
    let hints = parse_rename_hints(
        "-- tandem: rename table public.accounts to customers\n\
         CREATE TABLE customers (...);\n\
         -- tandem: rename column public.customers.balance to credit\n",
    )
    .unwrap();
    check("rename_hints_for_table_and_column", &from, &to, &hints);
    // Without hints: drop and create.
    check(
        "no_hints_means_drop_and_create",
        &from,
        &to,
        &RenameHints::default(),
    );
}

#[test]
fn bad_hints_are_reported_with_their_line() {
    let errors: Vec<String> = [
        "-- tandem: rename table public.accounts",
        "\n-- tandem: rename column accounts to x",
        "-- tandem: rename sequence public.s to t",
        "-- tandem: rename table public.accounts into customers",
    ]
    .iter()
    .map(|sql| parse_rename_hints(sql).unwrap_err().to_string())
    .collect();
    let from = with_tables(base(), vec![accounts()]);
    let hints = parse_rename_hints("-- tandem: rename table public.nope to customers").unwrap();
    let unknown = diff(&from, &from, &hints).unwrap_err().to_string();
    insta::assert_snapshot!("bad_hints", format!("{}\n{unknown}", errors.join("\n")));
}

#[test]
fn views_depending_on_each_other_are_a_cycle() {
    let a = view(
        "public.a",
        " SELECT b.x\n   FROM public.b;",
        &["public.b"],
        &[("x", "integer")],
    );
    let b = view(
        "public.b",
        " SELECT a.x\n   FROM public.a;",
        &["public.a"],
        &[("x", "integer")],
    );
    let err = diff(
        &base(),
        &with_views(base(), vec![a, b]),
        &RenameHints::default(),
    )
    .unwrap_err();
    match &err {
        DiffError::Cycle(objects) => assert_eq!(objects, &["view public.a", "view public.b"]),
        other => panic!("expected a cycle, got {other}"),
    }
    insta::assert_snapshot!("cycle_error", err.to_string());
}

/// A schema with one object of every kind the model has.
fn everything() -> Schema {
    let mut s = mood(&["sad", "happy"]);
    s.schemas.insert(
        "app".into(),
        Namespace {
            name: "app".into(),
            comment: Some("the application".into()),
        },
    );
    s.extensions.insert(
        "pgcrypto".into(),
        Extension {
            name: "pgcrypto".into(),
            schema: "public".into(),
            version: "1.3".into(),
        },
    );
    let mut checks = BTreeMap::new();
    checks.insert(
        "email_check".into(),
        DomainCheck {
            definition: "CHECK ((VALUE ~~ '%@%'::text))".into(),
            validated: true,
        },
    );
    s.domains.insert(
        q("app.email"),
        Domain {
            name: q("app.email"),
            base_type: "text".into(),
            collation: Some("\"pg_catalog\".\"C\"".into()),
            not_null: true,
            default: None,
            checks,
            comment: None,
        },
    );
    s.composites.insert(
        q("app.money_amount"),
        CompositeType {
            name: q("app.money_amount"),
            attributes: vec![
                ("amount".into(), "numeric(12,2)".into()),
                ("currency".into(), "character(3)".into()),
            ],
            comment: Some("an amount with its currency".into()),
        },
    );
    s.sequences.insert(
        q("app.orders_id_seq"),
        Sequence {
            name: q("app.orders_id_seq"),
            data_type: "bigint".into(),
            start: 1,
            increment: 1,
            min_value: 1,
            max_value: i64::MAX,
            cache: 1,
            cycle: false,
            owned_by: Some((q("app.orders"), "id".into())),
            comment: None,
        },
    );
    let touch = function(
        "app.touch",
        "",
        "trigger",
        "BEGIN NEW.updated_at := now(); RETURN NEW; END",
    );
    s.functions.insert(touch.key(), touch);

    let mut orders = table(
        "app.orders",
        &[
            "id bigint!",
            "created_at timestamp with time zone!",
            "status public.mood",
            "email app.email",
        ],
    );
    orders.columns[0].default = Some("nextval('app.orders_id_seq'::regclass)".into());
    orders.columns[1].default = Some("now()".into());
    orders.columns.push(Column {
        generated: Some("(id * 2)".into()),
        ..col("double_id bigint")
    });
    orders.columns.push(Column {
        collation: Some("\"pg_catalog\".\"C\"".into()),
        ..col("code text")
    });
    orders.columns.push(Column {
        data_type: "timestamp with time zone".into(),
        ..col("updated_at timestamp")
    });
    orders.options = vec!["fillfactor=90".into()];
    orders.rls_enabled = true;
    orders.replica_identity = ReplicaIdentity::Full;
    orders.comment = Some("orders".into());
    let mut orders = pk(orders, &["id"]);
    orders.triggers.insert(
        "orders_touch".into(),
        Trigger {
            name: "orders_touch".into(),
            definition: "CREATE TRIGGER orders_touch BEFORE UPDATE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch()".into(),
            enabled: 'D',
            comment: None,
        },
    );
    orders.policies.insert(
        "own_orders".into(),
        Policy {
            name: "own_orders".into(),
            permissive: true,
            command: "SELECT".into(),
            roles: vec!["public".into()],
            using: Some("(email = (current_user)::text)".into()),
            with_check: None,
        },
    );
    let mut lines = table(
        "app.order_lines",
        &[
            "order_id bigint!",
            "line integer!",
            "amount app.money_amount",
        ],
    );
    lines.columns[1].identity = Some(Identity::ByDefault);
    let lines = fk(
        pk(lines, &["order_id", "line"]),
        "order_lines_order_id_fkey",
        "order_id",
        "app.orders",
    );

    let mut events = table(
        "app.events",
        &["at timestamp with time zone!", "payload jsonb"],
    );
    events.partition_key = Some("RANGE (at)".into());
    events.persistence = Persistence::Permanent;
    let mut events_2024 = table(
        "app.events_2024",
        &["at timestamp with time zone!", "payload jsonb"],
    );
    events_2024.partition_of = Some((
        q("app.events"),
        "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2025-01-01 00:00:00+00')".into(),
    ));
    let events = index(events, "events_at_idx", "at");
    let mut events_2024 = index(events_2024, "events_2024_at_idx", "at");
    events_2024
        .indexes
        .get_mut("events_2024_at_idx")
        .unwrap()
        .definition = "CREATE INDEX events_2024_at_idx ON app.events_2024 USING btree (at)".into();
    events.indexes.get("events_at_idx").unwrap();
    let mut events = events;
    events.indexes.get_mut("events_at_idx").unwrap().definition =
        "CREATE INDEX events_at_idx ON ONLY app.events USING btree (at)".into();
    let mut scratch = table("app.scratch", &["k text"]);
    scratch.persistence = Persistence::Unlogged;

    let s = with_tables(s, vec![orders, lines, events, events_2024, scratch]);
    let mut totals = view(
        "app.order_totals",
        " SELECT order_lines.order_id,\n    count(*) AS lines\n   FROM app.order_lines\n  GROUP BY order_lines.order_id;",
        &["app.order_lines"],
        &[("order_id", "bigint"), ("lines", "bigint")],
    );
    totals.materialized = true;
    totals.indexes.insert(
        "order_totals_order_id_idx".into(),
        Index {
            name: "order_totals_order_id_idx".into(),
            unique: true,
            method: "btree".into(),
            keys: vec!["order_id".into()],
            include: Vec::new(),
            predicate: None,
            definition: "CREATE UNIQUE INDEX order_totals_order_id_idx ON app.order_totals USING btree (order_id)".into(),
            valid: true,
            comment: None,
        },
    );
    let big = view(
        "app.big_orders",
        " SELECT order_totals.order_id\n   FROM app.order_totals\n  WHERE (order_totals.lines > 10);",
        &["app.order_totals"],
        &[("order_id", "bigint")],
    );
    with_views(s, vec![totals, big])
}

#[test]
fn create_everything() {
    check(
        "create_everything",
        &base(),
        &everything(),
        &RenameHints::default(),
    );
}

#[test]
fn drop_everything() {
    check(
        "drop_everything",
        &everything(),
        &base(),
        &RenameHints::default(),
    );
}

#[test]
fn equal_schemas_have_no_changes_and_no_differences() {
    let mut live = everything();
    let desired = everything();
    // Size estimates are not part of the schema.
    live.tables.get_mut(&q("app.orders")).unwrap().stats = Some(planner::model::TableStats {
        estimated_rows: 10,
        total_bytes: 8192,
        heap_bytes: 8192,
    });
    assert_eq!(
        diff(&live, &desired, &RenameHints::default()).unwrap(),
        Vec::<Change>::new()
    );
    assert_eq!(differences(&live, &desired), Vec::new());
    assert!(!differences(&base(), &desired).is_empty());
}

#[test]
fn differences_show_a_unified_diff_for_a_changed_view() {
    let live = with_views(with_tables(base(), vec![accounts()]), vec![accounts_view()]);
    let mut v = accounts_view();
    v.definition = " SELECT accounts.id,\n    accounts.balance\n   FROM public.accounts\n  WHERE (accounts.balance > 0);".into();
    let mut t = index(accounts(), "accounts_email_idx", "email");
    t.columns.remove(2);
    let desired = with_views(with_tables(base(), vec![t]), vec![v]);
    insta::assert_json_snapshot!("differences_changed_view", differences(&live, &desired));
}
