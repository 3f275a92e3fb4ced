//! Shared helpers for the lint tests: a small live schema to lint against.
#![allow(dead_code)]

use std::collections::BTreeMap;

use planner::model::{
    Column, Constraint, ConstraintKind, Persistence, ReplicaIdentity, Schema, Table, TableStats,
};
use planner::QualName;

fn column(name: &str, ty: &str, not_null: bool) -> Column {
    Column {
        name: name.into(),
        data_type: ty.into(),
        collation: None,
        not_null,
        default: None,
        identity: None,
        generated: None,
        comment: None,
    }
}

fn table(
    name: &str,
    columns: Vec<Column>,
    constraints: Vec<Constraint>,
    rows: i64,
    bytes: i64,
) -> Table {
    Table {
        name: QualName::new("public", name).unwrap(),
        persistence: Persistence::Permanent,
        partition_key: None,
        partition_of: None,
        rls_enabled: false,
        rls_forced: false,
        replica_identity: ReplicaIdentity::Default,
        options: Vec::new(),
        columns,
        constraints: constraints
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect(),
        indexes: BTreeMap::new(),
        triggers: BTreeMap::new(),
        rules: BTreeMap::new(),
        policies: BTreeMap::new(),
        comment: None,
        stats: Some(TableStats {
            estimated_rows: rows,
            total_bytes: bytes,
            heap_bytes: bytes / 2,
        }),
    }
}

fn constraint(name: &str, kind: ConstraintKind, definition: &str) -> Constraint {
    Constraint {
        name: name.into(),
        kind,
        definition: definition.into(),
        validated: true,
        deferrable: false,
        initially_deferred: false,
        comment: None,
    }
}

/// `public.accounts` (2,000,000 rows, with a primary key and a CHECK on balance),
/// `public.settings` (12 rows) and `public.logs` (no key).
pub fn live_schema() -> Schema {
    let mut s = Schema::default();
    let accounts = table(
        "accounts",
        vec![
            column("id", "integer", true),
            column("email", "text", false),
            column("name", "character varying(20)", false),
            column("code", "character varying(20)", false),
            column("balance", "numeric(10,2)", false),
        ],
        vec![
            constraint(
                "accounts_pkey",
                ConstraintKind::PrimaryKey {
                    columns: vec!["id".into()],
                },
                "PRIMARY KEY (id)",
            ),
            constraint(
                "balance_positive",
                ConstraintKind::Check,
                "CHECK ((balance >= (0)::numeric))",
            ),
        ],
        2_000_000,
        300 * 1024 * 1024,
    );
    let settings = table(
        "settings",
        vec![
            column("id", "integer", true),
            column("value", "text", false),
        ],
        vec![constraint(
            "settings_pkey",
            ConstraintKind::PrimaryKey {
                columns: vec!["id".into()],
            },
            "PRIMARY KEY (id)",
        )],
        12,
        16 * 1024,
    );
    let logs = table(
        "logs",
        vec![column("line", "integer", false)],
        vec![],
        5_000_000,
        900 * 1024 * 1024,
    );
    // A serial key: its default draws from an integer sequence it owns.
    let mut orders = table(
        "orders",
        vec![column("id", "integer", true)],
        vec![],
        1_000,
        64 * 1024,
    );
    orders.columns[0].default = Some("nextval('orders_id_seq'::regclass)".into());
    let seq = QualName::new("public", "orders_id_seq").expect("name");
    s.sequences.insert(
        seq.clone(),
        planner::model::Sequence {
            name: seq,
            data_type: "integer".into(),
            start: 1,
            increment: 1,
            min_value: 1,
            max_value: i32::MAX as i64,
            cache: 1,
            cycle: false,
            owned_by: Some((orders.name.clone(), "id".into())),
            comment: None,
        },
    );
    for t in [accounts, settings, logs, orders] {
        s.tables.insert(t.name.clone(), t);
    }
    s
}
