//! Is a sampled statement a plain, deterministic read of a migrating table, and what is the
//! same read against the other table? Pure: pg_query's parse tree in, SQL text or a reason out.
//!
//! Two passes over one parse. The *checks* run on the whole tree serialised to JSON (every
//! node of every kind, so a `FOR UPDATE` or `random()` cannot hide in a node kind the code
//! does not know). The *rewrite* walks the typed tree and swaps each `RangeVar` that names a
//! target for the target's mirror view; a RangeVar the walk did not reach (counted against the
//! JSON pass) means the rewrite would be partial, and the statement is skipped.
//!
//! Name resolution assumes the application's `search_path` finds its tables in `public`: an
//! unqualified `accounts` is the target `public.accounts`, and never a target in another
//! schema. A name that a CTE of an enclosing `WITH` defines is the CTE, not the table.

use std::fmt;

use pg_query::protobuf::{self, Node, SelectStmt};
use pg_query::NodeEnum;
use serde_json::{Map, Value};

use super::registry::{GroupKey, Target};

/// Functions whose result differs between the two runs of one comparison (or that act on the
/// mirror's session). `now()` and `current_timestamp` are stable within the transaction.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "setseed",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "nextval",
    "setval",
    "currval",
    "lastval",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_notify",
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_logical_emit_message",
];
/// Families of the same (advisory locks, large objects, dblink).
const VOLATILE_PREFIXES: &[&str] = &["pg_advisory", "pg_try_advisory", "lo_", "dblink"];
/// Aggregates whose result depends on the order rows arrive in (the two tables' physical
/// orders differ), unless they say `ORDER BY`.
const ORDER_SENSITIVE_AGGREGATES: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "json_agg_strict",
    "jsonb_agg",
    "jsonb_agg_strict",
    "json_object_agg",
    "xmlagg",
];
/// Window functions whose result depends on the order within the window.
const ORDER_SENSITIVE_WINDOW: &[&str] = &[
    "row_number",
    "ntile",
    "first_value",
    "last_value",
    "nth_value",
    "lag",
    "lead",
];

/// Why a sampled statement is not compared. Stable kebab-case ids, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// pg_query could not parse it (the server may still have: a newer grammar).
    Parse,
    NotOneStatement,
    /// Another statement kind (INSERT, UPDATE, EXPLAIN, SET...).
    NotASelect(&'static str),
    SelectInto,
    DataModifyingCte,
    LockingClause,
    Volatile(String),
    TableSample,
    LimitWithoutOrder,
    DistinctOnWithoutOrder,
    OrderSensitiveAggregate(String),
    WindowWithoutOrder(String),
    /// No RangeVar names a target (the table name appeared elsewhere, or only as a CTE).
    NoTarget,
    /// A reference sits in a node kind the rewrite does not walk.
    Unreached,
    /// pg_query could not deparse the rewritten tree.
    Deparse,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Parse => f.write_str("parse-error"),
            Skip::NotOneStatement => f.write_str("not-one-statement"),
            Skip::NotASelect(kind) => write!(f, "not-a-select ({kind})"),
            Skip::SelectInto => f.write_str("select-into"),
            Skip::DataModifyingCte => f.write_str("data-modifying-cte"),
            Skip::LockingClause => f.write_str("locking-clause"),
            Skip::Volatile(name) => write!(f, "volatile-function ({name})"),
            Skip::TableSample => f.write_str("tablesample"),
            Skip::LimitWithoutOrder => f.write_str("limit-without-order-by"),
            Skip::DistinctOnWithoutOrder => f.write_str("distinct-on-without-order-by"),
            Skip::OrderSensitiveAggregate(name) => {
                write!(f, "order-sensitive-aggregate ({name})")
            }
            Skip::WindowWithoutOrder(name) => write!(f, "window-without-order-by ({name})"),
            Skip::NoTarget => f.write_str("no-target-table"),
            Skip::Unreached => f.write_str("unreached-reference"),
            Skip::Deparse => f.write_str("deparse-error"),
        }
    }
}

/// The read against one group of targets (one migration, one side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub group: GroupKey,
    pub sql: String,
    /// The key of the first target replaced, for a drift row's example key.
    pub key_columns: Vec<String>,
}

/// What the worker does with a sample.
#[derive(Debug)]
pub(crate) struct Classified {
    /// The groups whose targets the statement names (for counting a skip).
    pub groups: Vec<GroupKey>,
    /// One rewrite per group, or why none.
    pub outcome: Result<Compare, Skip>,
}

#[derive(Debug)]
pub(crate) struct Compare {
    /// The top-level SELECT has ORDER BY: compare sequences, else multisets.
    pub ordered: bool,
    pub rewrites: Vec<Rewrite>,
    /// Every function and operator the statement names, for the catalog's word on their
    /// volatility before anything runs (`volatile.rs`).
    pub calls: Calls,
}

/// The functions and operators a statement names: (schema, name), the schema empty when
/// the name is unqualified.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Calls {
    pub functions: Vec<(String, String)>,
    pub operators: Vec<(String, String)>,
    /// The relations the statement reads: a view among them calls what its definition calls.
    pub relations: Vec<(String, String)>,
}

pub(crate) fn classify(sql: &str, targets: &[Target]) -> Classified {
    let parsed = match pg_query::parse(sql, 0) {
        Ok(p) => p,
        Err(_) => {
            return Classified {
                groups: Vec::new(),
                outcome: Err(Skip::Parse),
            }
        }
    };
    let json = serde_json::to_value(&parsed.protobuf).unwrap_or(Value::Null);
    let scan = Scan::of(&json);
    let mut groups: Vec<GroupKey> = Vec::new();
    for (schema, rel) in &scan.range_vars {
        for t in targets.iter().filter(|t| t.names(schema, rel)) {
            if !groups.contains(&t.group()) {
                groups.push(t.group());
            }
        }
    }
    let outcome = if groups.is_empty() {
        Err(Skip::NoTarget)
    } else {
        check(&parsed.protobuf, &scan).and_then(|ordered| {
            rewrite(&parsed.protobuf, targets, &groups, scan.range_vars.len()).map(|rewrites| {
                Compare {
                    ordered,
                    rewrites,
                    calls: Calls {
                        relations: scan.range_vars.clone(),
                        ..scan.calls.clone()
                    },
                }
            })
        })
    };
    Classified { groups, outcome }
}

/// Everything the checks need, gathered from every node of the tree.
#[derive(Default)]
struct Scan {
    /// (schemaname, relname) of every RangeVar.
    range_vars: Vec<(String, String)>,
    calls: Calls,
    first_problem: Option<Skip>,
}

impl Scan {
    fn of(json: &Value) -> Scan {
        let mut scan = Scan::default();
        let mut problems = Vec::new();
        visit(json, &mut |obj| scan.object(obj, &mut problems));
        // The most telling reason first: writes, then locks, then nondeterminism.
        problems.sort_by_key(|p: &Skip| match p {
            Skip::DataModifyingCte => 0,
            Skip::LockingClause => 1,
            Skip::Volatile(_) => 2,
            Skip::TableSample => 3,
            Skip::LimitWithoutOrder => 4,
            Skip::DistinctOnWithoutOrder => 5,
            Skip::OrderSensitiveAggregate(_) => 6,
            _ => 7,
        });
        scan.first_problem = problems.into_iter().next();
        scan
    }

    fn object(&mut self, obj: &Map<String, Value>, problems: &mut Vec<Skip>) {
        // A RangeVar, as a Node or as a field (INSERT's target, SELECT INTO's table).
        if obj.contains_key("relname") && obj.contains_key("inh") {
            let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            self.range_vars.push((s("schemaname"), s("relname")));
        }
        // A SelectStmt, as a Node or as a set operation's arm.
        if obj.contains_key("limit_count") && obj.contains_key("sort_clause") {
            let unordered = obj
                .get("sort_clause")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            let present = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
            if unordered && (present("limit_count") || present("limit_offset")) {
                problems.push(Skip::LimitWithoutOrder);
            }
            let distinct_on = obj
                .get("distinct_clause")
                .and_then(Value::as_array)
                .is_some_and(|d| {
                    d.iter()
                        .any(|n| n.get("node").is_some_and(|n| !n.is_null()))
                });
            if unordered && distinct_on {
                problems.push(Skip::DistinctOnWithoutOrder);
            }
        }
        for kind in ["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"] {
            if obj.contains_key(kind) {
                problems.push(Skip::DataModifyingCte);
            }
        }
        if obj.contains_key("LockingClause") {
            problems.push(Skip::LockingClause);
        }
        if obj.contains_key("RangeTableSample") {
            problems.push(Skip::TableSample);
        }
        if let Some(agg) = obj.get("JsonArrayAgg") {
            let ordered = agg
                .pointer("/constructor/agg_order")
                .and_then(Value::as_array)
                .is_some_and(|o| !o.is_empty());
            if !ordered {
                problems.push(Skip::OrderSensitiveAggregate("json_arrayagg".into()));
            }
        }
        if let Some(call) = obj.get("FuncCall") {
            if let Some(name) = call.get("funcname").and_then(qualified) {
                if !self.calls.functions.contains(&name) {
                    self.calls.functions.push(name);
                }
            }
            if let Some(problem) = func_call(call) {
                problems.push(problem);
            }
        }
        if let Some(expr) = obj.get("AExpr") {
            if let Some(name) = expr.get("name").and_then(qualified) {
                if !self.calls.operators.contains(&name) {
                    self.calls.operators.push(name);
                }
            }
        }
    }
}

/// (schema, name) of a list of String nodes (`funcname`, an operator's `name`); the schema
/// empty when unqualified.
fn qualified(list: &Value) -> Option<(String, String)> {
    let parts: Vec<&str> = list
        .as_array()?
        .iter()
        .filter_map(|n| n.pointer("/node/String/sval").and_then(Value::as_str))
        .collect();
    match parts.as_slice() {
        [name] => Some((String::new(), name.to_string())),
        [.., schema, name] => Some((schema.to_string(), name.to_string())),
        [] => None,
    }
}

fn func_call(call: &Value) -> Option<Skip> {
    let parts: Vec<&str> = call
        .get("funcname")?
        .as_array()?
        .iter()
        .filter_map(|n| n.pointer("/node/String/sval").and_then(Value::as_str))
        .collect();
    // A function in a schema of the application's is its own, not the catalog's.
    let name = match parts.as_slice() {
        [name] | ["pg_catalog", name] => name.to_ascii_lowercase(),
        _ => return None,
    };
    if VOLATILE.contains(&name.as_str()) || VOLATILE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some(Skip::Volatile(name));
    }
    let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_none_or(Vec::is_empty);
    let over = call.get("over").filter(|o| !o.is_null());
    match over {
        None if ORDER_SENSITIVE_AGGREGATES.contains(&name.as_str())
            && empty(call.get("agg_order")) =>
        {
            Some(Skip::OrderSensitiveAggregate(name))
        }
        Some(w)
            if (ORDER_SENSITIVE_WINDOW.contains(&name.as_str())
                || ORDER_SENSITIVE_AGGREGATES.contains(&name.as_str()))
                && empty(w.get("order_clause"))
                && w.get("refname")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty() =>
        {
            Some(Skip::WindowWithoutOrder(name))
        }
        _ => None,
    }
}

/// Call `f` on every JSON object of the tree.
fn visit(v: &Value, f: &mut impl FnMut(&Map<String, Value>)) {
    match v {
        Value::Object(obj) => {
            f(obj);
            for child in obj.values() {
                visit(child, f);
            }
        }
        Value::Array(items) => {
            for child in items {
                visit(child, f);
            }
        }
        _ => {}
    }
}

/// The statement-level checks; Ok(ordered).
fn check(tree: &protobuf::ParseResult, scan: &Scan) -> Result<bool, Skip> {
    let [stmt] = tree.stmts.as_slice() else {
        return Err(Skip::NotOneStatement);
    };
    let node = stmt.stmt.as_ref().and_then(|n| n.node.as_ref());
    let Some(NodeEnum::SelectStmt(select)) = node else {
        return Err(Skip::NotASelect(node.map_or("empty", kind_name)));
    };
    if select.into_clause.is_some() {
        return Err(Skip::SelectInto);
    }
    if let Some(problem) = &scan.first_problem {
        return Err(problem.clone());
    }
    Ok(!select.sort_clause.is_empty())
}

fn kind_name(node: &NodeEnum) -> &'static str {
    match node {
        NodeEnum::InsertStmt(_) => "INSERT",
        NodeEnum::UpdateStmt(_) => "UPDATE",
        NodeEnum::DeleteStmt(_) => "DELETE",
        NodeEnum::MergeStmt(_) => "MERGE",
        NodeEnum::ExplainStmt(_) => "EXPLAIN",
        NodeEnum::CopyStmt(_) => "COPY",
        NodeEnum::DeclareCursorStmt(_) => "DECLARE CURSOR",
        NodeEnum::CallStmt(_) => "CALL",
        NodeEnum::VariableSetStmt(_) => "SET",
        NodeEnum::VariableShowStmt(_) => "SHOW",
        NodeEnum::TransactionStmt(_) => "transaction control",
        _ => "other",
    }
}

/// One rewritten statement per group.
fn rewrite(
    tree: &protobuf::ParseResult,
    targets: &[Target],
    groups: &[GroupKey],
    range_vars: usize,
) -> Result<Vec<Rewrite>, Skip> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut copy = tree.clone();
        let mut walk = Walk {
            targets: targets.iter().filter(|t| t.group() == *group).collect(),
            ctes: Vec::new(),
            seen: 0,
            replaced: Vec::new(),
            key_columns: None,
        };
        for stmt in &mut copy.stmts {
            if let Some(n) = stmt.stmt.as_deref_mut() {
                walk.node(n);
            }
        }
        if walk.seen != range_vars {
            return Err(Skip::Unreached);
        }
        if walk.replaced.is_empty() {
            // Every mention was a CTE of the same name.
            return Err(Skip::NoTarget);
        }
        let sql = pg_query::deparse(&copy, Default::default()).map_err(|_| Skip::Deparse)?;
        out.push(Rewrite {
            group: *group,
            sql,
            key_columns: walk.key_columns.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The typed walk that swaps target RangeVars for their mirror views.
struct Walk<'t> {
    targets: Vec<&'t Target>,
    /// CTE names in scope, innermost last.
    ctes: Vec<Vec<String>>,
    /// RangeVars reached (compared with the JSON pass's count).
    seen: usize,
    /// (schema, table) of the targets replaced.
    replaced: Vec<(String, String)>,
    key_columns: Option<Vec<String>>,
}

impl Walk<'_> {
    fn nodes(&mut self, nodes: &mut [Node]) {
        for n in nodes {
            self.node(n);
        }
    }

    fn opt(&mut self, n: &mut Option<Box<Node>>) {
        if let Some(n) = n.as_deref_mut() {
            self.node(n);
        }
    }

    fn node(&mut self, n: &mut Node) {
        let Some(inner) = n.node.as_mut() else { return };
        match inner {
            NodeEnum::RangeVar(rv) => self.range_var(rv),
            NodeEnum::SelectStmt(s) => self.select(s),
            NodeEnum::JoinExpr(j) => {
                self.opt(&mut j.larg);
                self.opt(&mut j.rarg);
                self.opt(&mut j.quals);
            }
            NodeEnum::RangeSubselect(r) => self.opt(&mut r.subquery),
            NodeEnum::RangeFunction(r) => self.nodes(&mut r.functions),
            NodeEnum::SubLink(l) => {
                self.opt(&mut l.testexpr);
                self.opt(&mut l.subselect);
            }
            NodeEnum::AExpr(e) => {
                self.opt(&mut e.lexpr);
                self.opt(&mut e.rexpr);
            }
            NodeEnum::BoolExpr(e) => self.nodes(&mut e.args),
            NodeEnum::FuncCall(c) => {
                self.nodes(&mut c.args);
                self.nodes(&mut c.agg_order);
                self.opt(&mut c.agg_filter);
                if let Some(w) = c.over.as_deref_mut() {
                    self.window(w);
                }
            }
            NodeEnum::WindowDef(w) => self.window(w),
            NodeEnum::ResTarget(t) => {
                self.opt(&mut t.val);
                self.nodes(&mut t.indirection);
            }
            NodeEnum::SortBy(s) => self.opt(&mut s.node),
            NodeEnum::TypeCast(t) => self.opt(&mut t.arg),
            NodeEnum::CaseExpr(c) => {
                self.opt(&mut c.arg);
                self.nodes(&mut c.args);
                self.opt(&mut c.defresult);
            }
            NodeEnum::CaseWhen(w) => {
                self.opt(&mut w.expr);
                self.opt(&mut w.result);
            }
            NodeEnum::CoalesceExpr(e) => self.nodes(&mut e.args),
            NodeEnum::MinMaxExpr(e) => self.nodes(&mut e.args),
            NodeEnum::NullTest(t) => self.opt(&mut t.arg),
            NodeEnum::BooleanTest(t) => self.opt(&mut t.arg),
            NodeEnum::RowExpr(r) => self.nodes(&mut r.args),
            NodeEnum::AArrayExpr(a) => self.nodes(&mut a.elements),
            NodeEnum::AIndirection(a) => {
                self.opt(&mut a.arg);
                self.nodes(&mut a.indirection);
            }
            NodeEnum::CollateClause(c) => self.opt(&mut c.arg),
            NodeEnum::GroupingSet(g) => self.nodes(&mut g.content),
            NodeEnum::List(l) => self.nodes(&mut l.items),
            NodeEnum::NamedArgExpr(a) => self.opt(&mut a.arg),
            NodeEnum::CommonTableExpr(c) => self.opt(&mut c.ctequery),
            NodeEnum::ColumnRef(c) => self.column_ref(c),
            _ => {}
        }
    }

    fn window(&mut self, w: &mut protobuf::WindowDef) {
        self.nodes(&mut w.partition_clause);
        self.nodes(&mut w.order_clause);
        self.opt(&mut w.start_offset);
        self.opt(&mut w.end_offset);
    }

    fn select(&mut self, s: &mut SelectStmt) {
        let mut scope = Vec::new();
        if let Some(with) = s.with_clause.as_mut() {
            // WITH RECURSIVE: every CTE sees every name; otherwise only the earlier ones.
            if with.recursive {
                scope.extend(with.ctes.iter().filter_map(cte_name));
            }
            self.ctes.push(scope);
            for cte in &mut with.ctes {
                self.node(cte);
                if !with.recursive {
                    if let Some(name) = cte_name(cte) {
                        self.ctes.last_mut().expect("pushed above").push(name);
                    }
                }
            }
        } else {
            self.ctes.push(scope);
        }
        self.nodes(&mut s.from_clause);
        self.nodes(&mut s.target_list);
        self.opt(&mut s.where_clause);
        self.nodes(&mut s.group_clause);
        self.opt(&mut s.having_clause);
        self.nodes(&mut s.window_clause);
        self.nodes(&mut s.values_lists);
        self.nodes(&mut s.sort_clause);
        self.opt(&mut s.limit_offset);
        self.opt(&mut s.limit_count);
        self.nodes(&mut s.distinct_clause);
        if let Some(l) = s.larg.as_deref_mut() {
            self.select(l);
        }
        if let Some(r) = s.rarg.as_deref_mut() {
            self.select(r);
        }
        self.ctes.pop();
    }

    fn range_var(&mut self, rv: &mut protobuf::RangeVar) {
        self.seen += 1;
        if rv.schemaname.is_empty() && self.ctes.iter().flatten().any(|c| *c == rv.relname) {
            return;
        }
        let Some(target) = self
            .targets
            .iter()
            .find(|t| t.names(&rv.schemaname, &rv.relname))
        else {
            return;
        };
        self.replaced
            .push((target.schema.clone(), target.table.clone()));
        if self.key_columns.is_none() {
            self.key_columns = Some(target.key_columns.clone());
        }
        if rv.alias.is_none() {
            // `accounts.id` must still resolve: the view takes the table's name.
            rv.alias = Some(protobuf::Alias {
                aliasname: rv.relname.clone(),
                colnames: Vec::new(),
            });
        }
        rv.catalogname.clear();
        rv.schemaname = target.view.schema.as_str().to_string();
        rv.relname = target.view.name.as_str().to_string();
    }

    /// `public.accounts.id` names the table through its schema, which the alias does not
    /// carry: drop the schema part.
    fn column_ref(&mut self, c: &mut protobuf::ColumnRef) {
        if c.fields.len() < 3 {
            return;
        }
        let s = |n: &Node| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        };
        let (Some(schema), Some(table)) = (s(&c.fields[0]), s(&c.fields[1])) else {
            return;
        };
        if self
            .targets
            .iter()
            .any(|t| t.schema == schema && t.table == table)
        {
            c.fields.remove(0);
        }
    }
}

fn cte_name(n: &Node) -> Option<String> {
    match &n.node {
        Some(NodeEnum::CommonTableExpr(c)) => Some(c.ctename.clone()),
        _ => None,
    }
}

/// A cheap test on the caller's path: does the SQL mention one of the names at all
/// (ASCII case-insensitive, as unquoted identifiers fold)?
pub(crate) fn mentions(sql: &[u8], name: &[u8]) -> bool {
    let Some(&first) = name.first() else {
        return false;
    };
    if sql.len() < name.len() {
        return false;
    }
    let first = first.to_ascii_lowercase();
    (0..=sql.len() - name.len()).any(|i| {
        sql[i].to_ascii_lowercase() == first && sql[i..i + name.len()].eq_ignore_ascii_case(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::registry::Against;
    use planner::ident::QualName;

    #[test]
    fn names_every_function_and_operator_it_calls() {
        let c = classify(
            "SELECT app.f(balance), lower(owner), counted_too(id) FROM accounts \
             WHERE balance OPERATOR(app.#@#) 1 > 5 AND id = 3 ORDER BY id",
            &targets(),
        );
        let calls = c.outcome.expect("compared").calls;
        let pair = |s: &str, n: &str| (s.to_string(), n.to_string());
        assert_eq!(
            calls.functions,
            [pair("app", "f"), pair("", "lower"), pair("", "counted_too")]
        );
        assert_eq!(
            calls.operators,
            [pair("", ">"), pair("app", "#@#"), pair("", "=")]
        );
    }

    fn targets() -> Vec<Target> {
        vec![
            Target {
                migration_id: 1,
                schema: "public".into(),
                table: "accounts".into(),
                view: QualName::new("tandem", "m1_accounts").unwrap(),
                against: Against::Shadow,
                key_columns: vec!["id".into()],
            },
            Target {
                migration_id: 2,
                schema: "Sales Dept".into(),
                table: "Order\"Items".into(),
                view: QualName::new("tandem", "m2 odd.view").unwrap(),
                against: Against::Old,
                key_columns: vec!["id".into()],
            },
        ]
    }

    /// (name, SQL): every shape the classifier must get right.
    const CASES: &[(&str, &str)] = &[
        ("plain", "SELECT id, balance FROM accounts WHERE id = 1"),
        ("qualified", "SELECT * FROM public.accounts"),
        ("qualified column ref", "SELECT accounts.id FROM accounts"),
        ("three part column ref", "SELECT public.accounts.id FROM public.accounts"),
        ("alias kept", "SELECT a.id FROM accounts AS a WHERE a.balance > $1"),
        ("alias with columns", "SELECT x FROM accounts a (x, y)"),
        ("other schema is not the target", "SELECT * FROM archive.accounts"),
        ("catalog name in text only", "SELECT 'accounts' AS t"),
        (
            "join with a non-target table",
            "SELECT a.id, u.name FROM accounts a JOIN users u ON u.id = a.owner_id ORDER BY a.id",
        ),
        ("subquery in FROM", "SELECT s.n FROM (SELECT count(*) AS n FROM accounts) s"),
        ("subquery in WHERE", "SELECT id FROM users WHERE id IN (SELECT owner_id FROM accounts)"),
        ("EXISTS", "SELECT 1 WHERE EXISTS (SELECT 1 FROM accounts WHERE balance < 0)"),
        ("scalar subquery in CASE", "SELECT CASE WHEN (SELECT max(id) FROM accounts) > 1 THEN 'a' END"),
        ("CTE reading the table", "WITH big AS (SELECT * FROM accounts WHERE balance > 100) SELECT count(*) FROM big"),
        ("CTE named like the table", "WITH accounts AS (SELECT 1 AS id) SELECT id FROM accounts"),
        ("CTE shadows a later use only", "WITH a AS (SELECT id FROM accounts), accounts AS (SELECT id FROM a) SELECT id FROM accounts"),
        ("UNION", "SELECT id FROM accounts UNION ALL SELECT id FROM users ORDER BY 1"),
        ("ORDER BY with LIMIT", "SELECT id FROM accounts ORDER BY id LIMIT 10"),
        ("LIMIT without ORDER BY", "SELECT id FROM accounts LIMIT 10"),
        ("OFFSET in a subquery without ORDER BY", "SELECT * FROM (SELECT id FROM accounts OFFSET 5) s ORDER BY id"),
        ("DISTINCT ON without ORDER BY", "SELECT DISTINCT ON (owner_id) id FROM accounts"),
        ("DISTINCT", "SELECT DISTINCT owner_id FROM accounts"),
        ("FOR UPDATE", "SELECT * FROM accounts WHERE id = 1 FOR UPDATE"),
        ("FOR SHARE in a subquery", "SELECT * FROM (SELECT * FROM accounts FOR SHARE) s"),
        ("INSERT", "INSERT INTO accounts (id) VALUES (1)"),
        ("UPDATE", "UPDATE accounts SET balance = 0 WHERE id = 1"),
        ("SELECT INTO", "SELECT * INTO copy FROM accounts"),
        ("data-modifying CTE", "WITH d AS (DELETE FROM accounts RETURNING *) SELECT * FROM d"),
        ("two statements", "SELECT 1 FROM accounts; SELECT 2 FROM accounts"),
        ("random()", "SELECT id, random() FROM accounts"),
        ("nextval in WHERE", "SELECT id FROM accounts WHERE id < nextval('s')"),
        ("advisory lock", "SELECT pg_advisory_lock(id) FROM accounts"),
        ("pg_catalog.clock_timestamp", "SELECT pg_catalog.clock_timestamp(), id FROM accounts"),
        ("an application's own random()", "SELECT app.random(), id FROM accounts"),
        ("now() is stable", "SELECT id FROM accounts WHERE created_at < now() - interval '1 day'"),
        ("array_agg without ORDER BY", "SELECT array_agg(id) FROM accounts"),
        ("array_agg with ORDER BY", "SELECT array_agg(id ORDER BY id) FROM accounts"),
        ("row_number without ORDER BY", "SELECT row_number() OVER (), id FROM accounts"),
        ("row_number with ORDER BY", "SELECT row_number() OVER (ORDER BY id), id FROM accounts"),
        ("TABLESAMPLE", "SELECT * FROM accounts TABLESAMPLE SYSTEM (10)"),
        ("TABLE", "TABLE accounts"),
        ("EXPLAIN", "EXPLAIN SELECT * FROM accounts"),
        ("odd identifiers", "SELECT \"Order\"\"Items\".id FROM \"Sales Dept\".\"Order\"\"Items\""),
        ("odd unqualified is not public", "SELECT id FROM \"Order\"\"Items\""),
        ("two migrations in one read", "SELECT a.id FROM accounts a, \"Sales Dept\".\"Order\"\"Items\" o WHERE o.id = a.id"),
        ("unparsable", "SELEC id FROM accounts"),
        ("JSON_ARRAYAGG without ORDER BY", "SELECT JSON_ARRAYAGG(id) FROM accounts"),
    ];

    #[test]
    fn classifies_and_rewrites() {
        let targets = targets();
        let mut out = String::new();
        for (name, sql) in CASES {
            let c = classify(sql, &targets);
            out.push_str(&format!("## {name}\n{sql}\n"));
            match c.outcome {
                Ok(compare) => {
                    for r in compare.rewrites {
                        out.push_str(&format!(
                            "=> [{} {}{}] {}\n",
                            r.group.0,
                            r.group.1,
                            if compare.ordered { ", ordered" } else { "" },
                            r.sql
                        ));
                    }
                }
                Err(skip) => {
                    let groups: Vec<String> = c
                        .groups
                        .iter()
                        .map(|g| format!("{} {}", g.0, g.1))
                        .collect();
                    out.push_str(&format!("=> skip: {skip} [{}]\n", groups.join(", ")));
                }
            }
            out.push('\n');
        }
        insta::assert_snapshot!("classify", out);
    }

    #[test]
    fn every_rewrite_parses_and_names_no_target() {
        let targets = targets();
        for (name, sql) in CASES {
            let Ok(compare) = classify(sql, &targets).outcome else {
                continue;
            };
            for r in compare.rewrites {
                // Either no RangeVar names the target, or each that does is a CTE.
                let again = classify(&r.sql, &targets);
                assert!(
                    again.groups.iter().all(|g| *g != r.group)
                        || matches!(again.outcome, Err(Skip::NoTarget)),
                    "{name}: the rewrite still reads the live table: {}",
                    r.sql
                );
                assert!(pg_query::parse(&r.sql, 0).is_ok(), "{name}: {}", r.sql);
            }
        }
    }

    #[test]
    fn mentions_is_ascii_case_insensitive() {
        assert!(mentions(b"select * from ACCOUNTS", b"accounts"));
        assert!(mentions(b"accounts", b"accounts"));
        assert!(!mentions(b"select * from acc", b"accounts"));
        assert!(!mentions(b"", b"accounts"));
        assert!(!mentions(b"anything", b""));
    }
}
