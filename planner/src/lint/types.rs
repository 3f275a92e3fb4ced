//! Column types and default expressions as the rules need them: canonical type names,
//! which type changes PostgreSQL does without a rewrite, and which defaults are volatile.

use pg_query::protobuf::{a_const, Node, TypeName};
use pg_query::NodeEnum;

/// A column type reduced to what matters for rewrites: canonical base name and modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ty {
    /// Canonical spelling: `integer`, `bigint`, `varchar`, `text`, `numeric`, `timestamp`, ...
    pub(crate) base: String,
    /// Type modifiers, e.g. `[20]` for varchar(20), `[10, 2]` for numeric(10,2).
    pub(crate) mods: Vec<i64>,
    pub(crate) array: bool,
}

impl Ty {
    pub(crate) fn from_ast(t: &TypeName) -> Ty {
        let names: Vec<&str> = t.names.iter().filter_map(node_str).collect();
        let raw = names
            .iter()
            .rev()
            .find(|n| **n != "pg_catalog")
            .copied()
            .unwrap_or("");
        let mods = t
            .typmods
            .iter()
            .filter_map(|m| match &m.node {
                Some(NodeEnum::AConst(c)) => match &c.val {
                    Some(a_const::Val::Ival(i)) => Some(i.ival as i64),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let mut ty = Ty {
            base: canonical(raw).to_string(),
            mods,
            array: !t.array_bounds.is_empty(),
        };
        if names.len() > 1 && names[0] != "pg_catalog" {
            ty.base = names.join(".");
        }
        // char without a length is char(1)
        if ty.base == "char" && ty.mods.is_empty() {
            ty.mods.push(1);
        }
        ty
    }

    /// From `format_type` output: `character varying(20)`, `numeric(10,2)`, `integer[]`.
    pub(crate) fn from_format_type(s: &str) -> Ty {
        let mut s = s.trim();
        let mut array = false;
        while let Some(r) = s.strip_suffix("[]") {
            array = true;
            s = r;
        }
        let mut mods = Vec::new();
        let mut base = s.to_string();
        if let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) {
            mods = s[open + 1..close]
                .split(',')
                .filter_map(|m| m.trim().parse().ok())
                .collect();
            base = format!("{}{}", s[..open].trim_end(), &s[close + 1..]);
        }
        Ty {
            base: canonical(base.trim()).to_string(),
            mods,
            array,
        }
    }

    pub(crate) fn display(&self) -> String {
        let mut s = self.base.clone();
        if !self.mods.is_empty() {
            let m: Vec<String> = self.mods.iter().map(|m| m.to_string()).collect();
            s.push('(');
            s.push_str(&m.join(","));
            s.push(')');
        }
        if self.array {
            s.push_str("[]");
        }
        s
    }
}

pub(crate) fn node_str(n: &Node) -> Option<&str> {
    match &n.node {
        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
        _ => None,
    }
}

fn canonical(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "int2" | "smallint" => "smallint",
        "int4" | "int" | "integer" => "integer",
        "int8" | "bigint" => "bigint",
        "serial" | "serial4" => "serial",
        "bigserial" | "serial8" => "bigserial",
        "smallserial" | "serial2" => "smallserial",
        "varchar" | "character varying" => "varchar",
        "bpchar" | "char" | "character" => "char",
        "text" => "text",
        "numeric" | "decimal" => "numeric",
        "float4" | "real" => "real",
        "float8" | "double precision" => "double precision",
        "bool" | "boolean" => "boolean",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        "timetz" | "time with time zone" => "timetz",
        "varbit" | "bit varying" => "varbit",
        "json" => "json",
        "jsonb" => "jsonb",
        "uuid" => "uuid",
        "inet" => "inet",
        "cidr" => "cidr",
        "bit" => "bit",
        "date" => "date",
        "bytea" => "bytea",
        "interval" => "interval",
        _ => name,
    }
}

/// Whether `ALTER COLUMN ... TYPE new` from `old` needs no table rewrite (binary-coercible
/// or a relaxed length/precision limit). Same type, same modifiers: nothing to do.
pub(crate) fn no_rewrite(old: &Ty, new: &Ty) -> bool {
    if old == new {
        return true;
    }
    if old.array != new.array {
        return false;
    }
    let widen = |o: &[i64], n: &[i64]| match (o.first(), n.first()) {
        (_, None) => true,
        (Some(a), Some(b)) => b >= a,
        (None, Some(_)) => false,
    };
    match (old.base.as_str(), new.base.as_str()) {
        ("varchar", "varchar") => widen(&old.mods, &new.mods),
        ("varchar", "text") => true,
        ("text", "varchar") => new.mods.is_empty(),
        ("numeric", "numeric") => {
            new.mods.is_empty()
                || (widen(&old.mods, &new.mods)
                    && old.mods.get(1).copied().unwrap_or(0)
                        == new.mods.get(1).copied().unwrap_or(0))
        }
        ("varbit", "varbit") | ("bit", "varbit") => widen(&old.mods, &new.mods),
        ("cidr", "inet") => true,
        _ => false,
    }
}

/// Whether the change can fail on, or silently alter, existing values.
pub(crate) fn narrows(old: &Ty, new: &Ty) -> Option<String> {
    let shorter = |o: &[i64], n: &[i64]| match (o.first(), n.first()) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => b < a,
        _ => false,
    };
    let int_rank = |b: &str| match b {
        "smallint" => Some(2),
        "integer" => Some(4),
        "bigint" => Some(8),
        _ => None,
    };
    match (old.base.as_str(), new.base.as_str()) {
        ("varchar" | "text" | "char", "varchar" | "char") if shorter(&old.mods, &new.mods) => {
            Some("values longer than the new limit make it fail".to_string())
        }
        ("numeric", "numeric")
            if shorter(&old.mods, &new.mods) || new.mods.get(1) < old.mods.get(1) =>
        {
            Some("values outside the new precision/scale fail or are rounded".to_string())
        }
        (o, n) if int_rank(o).zip(int_rank(n)).is_some_and(|(a, b)| b < a) => {
            Some(format!("{o} values outside the {n} range make it fail"))
        }
        ("timestamptz", "timestamp") => Some("the time zone information is dropped".to_string()),
        ("double precision", "real")
        | ("numeric", "real" | "double precision" | "integer" | "bigint" | "smallint") => {
            Some("values lose precision".to_string())
        }
        ("text" | "varchar", n) if !matches!(n, "text" | "varchar" | "char") => {
            Some(format!("text values that are not valid {n} make it fail"))
        }
        _ => None,
    }
}

/// How a default expression behaves for `ADD COLUMN ... DEFAULT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Volatility {
    /// Constant, or stable/immutable: evaluated once, no rewrite on PostgreSQL 11+.
    Stable,
    /// Calls a volatile function: every row gets its own value, so the table is rewritten.
    Volatile(String),
    /// Calls a function tandem does not know.
    Unknown(String),
}

const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "gen_random_bytes",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "setval",
    "setseed",
    "txid_current",
    "pg_current_xact_id",
    "gen_salt",
];

const NOT_VOLATILE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_timestamp",
    "current_date",
    "localtimestamp",
    "to_timestamp",
    "to_date",
    "to_char",
    "to_json",
    "to_jsonb",
    "make_date",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "date_trunc",
    "lower",
    "upper",
    "length",
    "concat",
    "coalesce",
    "greatest",
    "least",
    "abs",
    "round",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "array_fill",
    "timezone",
    "current_setting",
    "current_user",
    "session_user",
    "current_schema",
    "md5",
    "replace",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "format",
];

pub(crate) fn volatility(expr: &Node) -> Volatility {
    let mut worst = Volatility::Stable;
    walk(expr, &mut worst);
    worst
}

fn walk(n: &Node, worst: &mut Volatility) {
    let Some(node) = &n.node else { return };
    match node {
        NodeEnum::AConst(_)
        | NodeEnum::SqlvalueFunction(_)
        | NodeEnum::ColumnRef(_)
        | NodeEnum::ParamRef(_) => {}
        NodeEnum::TypeCast(c) => {
            if let Some(a) = &c.arg {
                walk(a, worst)
            }
        }
        NodeEnum::FuncCall(f) => {
            let name = f
                .funcname
                .last()
                .and_then(node_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            if VOLATILE.contains(&name.as_str()) {
                *worst = Volatility::Volatile(name);
                return;
            }
            if !NOT_VOLATILE.contains(&name.as_str()) && !matches!(worst, Volatility::Volatile(_)) {
                *worst = Volatility::Unknown(name);
            }
            for a in &f.args {
                walk(a, worst);
            }
        }
        NodeEnum::AArrayExpr(a) => a.elements.iter().for_each(|e| walk(e, worst)),
        NodeEnum::AExpr(e) => {
            for x in [&e.lexpr, &e.rexpr].into_iter().flatten() {
                walk(x, worst);
            }
        }
        NodeEnum::BoolExpr(b) => b.args.iter().for_each(|e| walk(e, worst)),
        NodeEnum::CoalesceExpr(c) => c.args.iter().for_each(|e| walk(e, worst)),
        NodeEnum::MinMaxExpr(c) => c.args.iter().for_each(|e| walk(e, worst)),
        NodeEnum::List(l) => l.items.iter().for_each(|e| walk(e, worst)),
        NodeEnum::RowExpr(r) => r.args.iter().for_each(|e| walk(e, worst)),
        NodeEnum::NullTest(t) => {
            if let Some(a) = &t.arg {
                walk(a, worst)
            }
        }
        NodeEnum::CaseExpr(c) => {
            for a in c.args.iter() {
                walk(a, worst);
            }
            if let Some(d) = &c.defresult {
                walk(d, worst);
            }
        }
        NodeEnum::CaseWhen(w) => {
            for x in [&w.expr, &w.result].into_iter().flatten() {
                walk(x, worst);
            }
        }
        _ => {
            if !matches!(worst, Volatility::Volatile(_)) {
                *worst = Volatility::Unknown("a subexpression".to_string());
            }
        }
    }
}
