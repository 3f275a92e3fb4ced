//! What the statements seen so far in a file have done: tables created, transactions open,
//! timeouts set, constraints added NOT VALID or validated, locks held. Rules read it; the
//! driver folds each statement into it after the rules ran.

use std::collections::{HashMap, HashSet};

use pg_query::protobuf::{AlterTableType, ConstrType, TransactionStmtKind, VariableSetKind};
use pg_query::NodeEnum;

use super::analyze::{
    alter_table, check_is_not_null, cmd_column_def, cmd_constraint, cmds, column_constraints,
    drop_objects, names, qual, qual_list,
};
use super::types::{node_str, Ty};
use super::Stmt;
use crate::finding::LockMode;
use crate::ident::QualName;

/// One transaction, explicit (`BEGIN`), assumed (whole file) or a DO block's.
#[derive(Debug, Clone)]
pub(crate) struct Tx {
    pub(crate) id: usize,
    pub(crate) explicit: bool,
    pub(crate) lock_timeout: bool,
    pub(crate) statement_timeout: bool,
    /// Existing tables locked ACCESS EXCLUSIVE in this transaction, with the statement.
    pub(crate) access_exclusive: Vec<(QualName, usize)>,
    pub(crate) has_ddl: bool,
    do_block: bool,
}

/// A foreign key added in this file, checked for a supporting index at the end.
#[derive(Debug, Clone)]
pub(crate) struct PendingFk {
    pub(crate) statement: usize,
    pub(crate) table: QualName,
    pub(crate) columns: Vec<String>,
}

/// Per-file state across statements.
#[derive(Debug)]
pub struct FileState {
    pub(crate) assume_tx: bool,
    pub(crate) total_statements: usize,
    created: HashSet<QualName>,
    pub(crate) tx: Option<Tx>,
    counter: usize,
    session_lock_timeout: bool,
    session_statement_timeout: bool,
    /// (table, constraint) → transaction id where it was added NOT VALID.
    not_valid: HashMap<(QualName, String), usize>,
    /// (table, constraint) → the column a `CHECK (col IS NOT NULL)` covers.
    not_null_checks: HashMap<(QualName, String), String>,
    not_null_proven: HashSet<(QualName, String)>,
    /// Columns made NOT NULL in this file.
    set_not_null: HashSet<(QualName, String)>,
    columns: HashMap<(QualName, String), Ty>,
    /// Leading columns of indexes and unique/primary keys created in this file, per table.
    pub(crate) indexes: HashMap<QualName, Vec<Vec<String>>>,
    index_tables: HashMap<QualName, QualName>,
    pub(crate) pending_fks: Vec<PendingFk>,
    alters: HashMap<(usize, QualName), usize>,
    /// Columns dropped in this file, per table (a later ADD may be a rename done as drop+add).
    pub(crate) dropped_columns: HashMap<QualName, Vec<(String, usize)>>,
    pub(crate) dropped_types: HashSet<QualName>,
    /// (table, constraint) dropped in this file.
    pub(crate) dropped_constraints: HashSet<(QualName, String)>,
    /// Views created in this file → the relations they read.
    views: HashMap<QualName, Vec<QualName>>,
    /// Statement index of a BEGIN that is still open.
    pub(crate) open_begin: Option<usize>,
    pub(crate) statement_timeout_reported: bool,
    pub(crate) last_statement: usize,
    /// Columns widened to bigint whose default draws from a smaller sequence of the live
    /// schema (a `serial`): PostgreSQL leaves the sequence as it was (T065).
    pub(crate) widened_serials: Vec<WidenedSerial>,
    /// Sequences altered `AS bigint` in this file.
    pub(crate) widened_sequences: HashSet<QualName>,
    /// Tables renamed in this file: (statement, old name, new name, transaction).
    pub(crate) table_renames: Vec<(usize, QualName, String, usize)>,
    /// Views created in this file, with the transaction that created them.
    pub(crate) view_txs: HashMap<QualName, usize>,
}

/// A `serial` column widened to bigint: its sequence still stops at the old type's maximum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WidenedSerial {
    /// The ALTER TABLE statement's index.
    pub statement: usize,
    pub table: QualName,
    pub column: String,
    pub sequence: QualName,
    /// The sequence's type now, e.g. `integer`.
    pub sequence_type: String,
}

impl FileState {
    pub(crate) fn new(assume_tx: bool, total_statements: usize) -> Self {
        let mut s = FileState {
            assume_tx,
            total_statements,
            created: HashSet::new(),
            tx: None,
            counter: 0,
            session_lock_timeout: false,
            session_statement_timeout: false,
            not_valid: HashMap::new(),
            not_null_checks: HashMap::new(),
            not_null_proven: HashSet::new(),
            set_not_null: HashSet::new(),
            columns: HashMap::new(),
            indexes: HashMap::new(),
            index_tables: HashMap::new(),
            pending_fks: Vec::new(),
            alters: HashMap::new(),
            dropped_columns: HashMap::new(),
            dropped_types: HashSet::new(),
            dropped_constraints: HashSet::new(),
            views: HashMap::new(),
            open_begin: None,
            statement_timeout_reported: false,
            last_statement: 0,
            widened_serials: Vec::new(),
            widened_sequences: HashSet::new(),
            table_renames: Vec::new(),
            view_txs: HashMap::new(),
        };
        if assume_tx {
            s.tx = Some(s.new_tx(false));
        }
        s
    }

    fn new_tx(&mut self, explicit: bool) -> Tx {
        self.counter += 1;
        Tx {
            id: self.counter,
            explicit,
            lock_timeout: false,
            statement_timeout: false,
            access_exclusive: Vec::new(),
            has_ddl: false,
            do_block: false,
        }
    }

    /// Whether a view with this name was created in transaction `tx` (a compatibility view
    /// that keeps a renamed table's old name working).
    pub(crate) fn view_created_in(&self, name: &QualName, tx: usize) -> bool {
        self.view_txs.get(name) == Some(&tx)
    }

    /// Serial columns widened to bigint whose sequence the file does not widen too.
    pub fn unwidened_serials(&self) -> impl Iterator<Item = &WidenedSerial> {
        self.widened_serials
            .iter()
            .filter(|w| !self.widened_sequences.contains(&w.sequence))
    }

    /// Created earlier in this file: new and empty, so locking it hurts no one.
    pub(crate) fn is_new(&self, t: &QualName) -> bool {
        self.created.contains(t)
    }

    pub(crate) fn mark_created(&mut self, tables: &[QualName]) {
        self.created.extend(tables.iter().cloned());
    }

    pub(crate) fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Inside a transaction opened with BEGIN in this file.
    pub(crate) fn in_explicit_transaction(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.explicit)
    }

    /// The id of the transaction the next statement runs in (implicit ones get a fresh id).
    pub(crate) fn tx_id(&self) -> usize {
        self.tx.as_ref().map(|t| t.id).unwrap_or(self.counter + 1)
    }

    pub(crate) fn lock_timeout_set(&self) -> bool {
        self.session_lock_timeout || self.tx.as_ref().is_some_and(|t| t.lock_timeout)
    }

    pub(crate) fn statement_timeout_set(&self) -> bool {
        self.session_statement_timeout || self.tx.as_ref().is_some_and(|t| t.statement_timeout)
    }

    pub(crate) fn not_valid_tx(&self, table: &QualName, constraint: &str) -> Option<usize> {
        self.not_valid
            .get(&(table.clone(), constraint.to_string()))
            .copied()
    }

    pub(crate) fn not_null_proven(&self, table: &QualName, column: &str) -> bool {
        self.not_null_proven
            .contains(&(table.clone(), column.to_string()))
    }

    /// True for a `CHECK (col IS NOT NULL)` constraint whose column this file has since made
    /// NOT NULL: dropping it (the last step of the safe SET NOT NULL pattern) loses nothing.
    pub(crate) fn is_redundant_not_null_check(&self, table: &QualName, constraint: &str) -> bool {
        self.not_null_checks
            .get(&(table.clone(), constraint.to_string()))
            .is_some_and(|col| self.set_not_null.contains(&(table.clone(), col.clone())))
    }

    pub(crate) fn column_type(&self, table: &QualName, column: &str) -> Option<&Ty> {
        self.columns.get(&(table.clone(), column.to_string()))
    }

    /// Views created in this file that read `t`.
    pub(crate) fn views_reading<'s>(
        &'s self,
        t: &'s QualName,
    ) -> impl Iterator<Item = &'s QualName> + 's {
        // In name order: the map's own order changes from run to run, and findings must not.
        let mut views: Vec<&QualName> = self
            .views
            .iter()
            .filter(move |(_, reads)| reads.contains(t))
            .map(|(v, _)| v)
            .collect();
        views.sort();
        views.into_iter()
    }

    pub(crate) fn index_table(&self, index: &QualName) -> Option<&QualName> {
        self.index_tables.get(index)
    }

    /// How many ALTER TABLEs took ACCESS EXCLUSIVE on `t` earlier in the current transaction.
    pub(crate) fn alters_in_tx(&self, t: &QualName) -> usize {
        self.alters
            .get(&(self.tx_id(), t.clone()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn after_unparsed(&mut self) {
        if self.tx.is_none() {
            self.counter += 1;
        }
    }

    pub(crate) fn begin_do_block(&mut self) {
        if self.tx.is_none() {
            let mut tx = self.new_tx(false);
            tx.do_block = true;
            self.tx = Some(tx);
        }
    }

    pub(crate) fn end_do_block(&mut self) {
        if self.tx.as_ref().is_some_and(|t| t.do_block) {
            self.tx = None;
        }
    }

    /// Folds one statement into the state.
    pub(crate) fn apply(&mut self, s: &Stmt<'_>) {
        self.last_statement = s.index;
        let implicit = self.tx.is_none();
        if implicit {
            self.counter += 1;
        }
        let tx_id = self.tx_id_for_apply(implicit);
        match s.node {
            NodeEnum::TransactionStmt(t) => match t.kind() {
                TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
                    let tx = self.new_tx(true);
                    self.tx = Some(tx);
                    self.open_begin = Some(s.index);
                }
                TransactionStmtKind::TransStmtCommit
                | TransactionStmtKind::TransStmtRollback
                | TransactionStmtKind::TransStmtPrepare => {
                    self.tx = None;
                    self.open_begin = None;
                }
                _ => {}
            },
            NodeEnum::VariableSetStmt(v) => {
                let name = v.name.to_ascii_lowercase();
                if name == "lock_timeout" || name == "statement_timeout" {
                    let on = v.kind() == VariableSetKind::VarSetValue && !is_zero(&v.args);
                    let lock = name == "lock_timeout";
                    if v.is_local {
                        if let Some(tx) = &mut self.tx {
                            if lock {
                                tx.lock_timeout = on;
                            } else {
                                tx.statement_timeout = on;
                            }
                        }
                    } else if lock {
                        self.session_lock_timeout = on;
                    } else {
                        self.session_statement_timeout = on;
                    }
                } else if v.kind() == VariableSetKind::VarResetAll {
                    self.session_lock_timeout = false;
                    self.session_statement_timeout = false;
                }
            }
            NodeEnum::CreateStmt(c) => {
                if let Some(rv) = &c.relation {
                    let t = qual(rv);
                    self.created.insert(t.clone());
                    for e in &c.table_elts {
                        match &e.node {
                            Some(NodeEnum::ColumnDef(col)) => {
                                if let Some(ty) = &col.type_name {
                                    self.columns
                                        .insert((t.clone(), col.colname.clone()), Ty::from_ast(ty));
                                }
                                for con in column_constraints(col) {
                                    self.record_constraint(
                                        &t,
                                        con,
                                        Some(&col.colname),
                                        tx_id,
                                        s.index,
                                    );
                                }
                            }
                            Some(NodeEnum::Constraint(con)) => {
                                self.record_constraint(&t, con, None, tx_id, s.index)
                            }
                            _ => {}
                        }
                    }
                }
            }
            NodeEnum::CreateTableAsStmt(c) => {
                if let Some(rv) = c.into.as_ref().and_then(|i| i.rel.as_ref()) {
                    self.created.insert(qual(rv));
                }
            }
            NodeEnum::IndexStmt(i) => {
                if let Some(rv) = &i.relation {
                    let t = qual(rv);
                    let cols: Vec<String> = i
                        .index_params
                        .iter()
                        .map(|p| match &p.node {
                            Some(NodeEnum::IndexElem(e)) => e.name.clone(),
                            _ => String::new(),
                        })
                        .collect();
                    self.indexes.entry(t.clone()).or_default().push(cols);
                    if !i.idxname.is_empty() {
                        self.index_tables.insert(
                            super::analyze::make_qual(Some(&rv.schemaname), &i.idxname),
                            t,
                        );
                    }
                }
            }
            NodeEnum::DropStmt(d) => {
                for o in drop_objects(&d.objects) {
                    self.created.remove(&o);
                    if d.remove_type() == pg_query::protobuf::ObjectType::ObjectType {
                        self.dropped_types.insert(o);
                    }
                }
            }
            NodeEnum::RenameStmt(r)
                if r.rename_type() == pg_query::protobuf::ObjectType::ObjectTable =>
            {
                if let Some(rv) = &r.relation {
                    if !self.created.contains(&qual(rv)) {
                        self.table_renames
                            .push((s.index, qual(rv), r.newname.clone(), tx_id));
                    }
                    if self.created.remove(&qual(rv)) {
                        self.created
                            .insert(super::analyze::make_qual(Some(&rv.schemaname), &r.newname));
                    }
                }
            }
            NodeEnum::ViewStmt(v) => {
                if let Some(rv) = &v.view {
                    let mut reads = Vec::new();
                    if let Some(q) = v.query.as_ref().and_then(|q| q.node.as_ref()) {
                        for (n, _, _, _) in q.nodes() {
                            if let pg_query::NodeRef::RangeVar(r) = n {
                                reads.push(qual(r));
                            }
                        }
                    }
                    self.views.insert(qual(rv), reads);
                    self.view_txs.insert(qual(rv), tx_id);
                }
            }
            NodeEnum::CreateEnumStmt(e) => {
                self.dropped_types.remove(&qual_list(&e.type_name));
            }
            NodeEnum::AlterSeqStmt(a) => {
                let to_bigint = a.options.iter().any(|o| match &o.node {
                    Some(NodeEnum::DefElem(d)) if d.defname == "as" => {
                        match d.arg.as_ref().and_then(|n| n.node.as_ref()) {
                            Some(NodeEnum::TypeName(tn)) => Ty::from_ast(tn).base == "bigint",
                            _ => false,
                        }
                    }
                    _ => false,
                });
                if let (true, Some(rv)) = (to_bigint, &a.sequence) {
                    self.widened_sequences.insert(qual(rv));
                }
            }
            _ => {}
        }
        if let Some((t, a)) = alter_table(s.node) {
            let mut strong = false;
            for (sub, cmd) in cmds(a) {
                match sub {
                    AlterTableType::AtAddColumn => {
                        if let Some(col) = cmd_column_def(cmd) {
                            if let Some(ty) = &col.type_name {
                                self.columns
                                    .insert((t.clone(), col.colname.clone()), Ty::from_ast(ty));
                            }
                            for con in column_constraints(col) {
                                self.record_constraint(&t, con, Some(&col.colname), tx_id, s.index);
                            }
                        }
                    }
                    AlterTableType::AtDropColumn => {
                        self.dropped_columns
                            .entry(t.clone())
                            .or_default()
                            .push((cmd.name.clone(), s.index));
                        self.columns.remove(&(t.clone(), cmd.name.clone()));
                    }
                    AlterTableType::AtAlterColumnType => {
                        if let Some(ty) = cmd_column_def(cmd).and_then(|c| c.type_name.as_ref()) {
                            let ty = Ty::from_ast(ty);
                            if ty.base == "bigint" && !ty.array {
                                if let Some((sequence, sequence_type)) =
                                    serial_sequence(s, &t, &cmd.name)
                                {
                                    self.widened_serials.push(WidenedSerial {
                                        statement: s.index,
                                        table: t.clone(),
                                        column: cmd.name.clone(),
                                        sequence,
                                        sequence_type,
                                    });
                                }
                            }
                            self.columns.insert((t.clone(), cmd.name.clone()), ty);
                        }
                    }
                    AlterTableType::AtAddConstraint => {
                        if let Some(con) = cmd_constraint(cmd) {
                            self.record_constraint(&t, con, None, tx_id, s.index);
                        }
                    }
                    AlterTableType::AtValidateConstraint => {
                        let key = (t.clone(), cmd.name.clone());
                        self.not_valid.remove(&key);
                        if let Some(col) = self.not_null_checks.get(&key) {
                            self.not_null_proven.insert((t.clone(), col.clone()));
                        }
                    }
                    AlterTableType::AtDropConstraint => {
                        self.dropped_constraints
                            .insert((t.clone(), cmd.name.clone()));
                    }
                    AlterTableType::AtSetNotNull => {
                        self.not_null_proven.insert((t.clone(), cmd.name.clone()));
                        self.set_not_null.insert((t.clone(), cmd.name.clone()));
                    }
                    _ => {}
                }
                if s.facts
                    .lock_on(&t)
                    .is_some_and(|m| m == LockMode::AccessExclusive)
                {
                    strong = true;
                }
            }
            if strong && !self.is_new(&t) {
                *self.alters.entry((tx_id, t.clone())).or_insert(0) += 1;
            }
        }
        // T030 reports the first long statement without statement_timeout, once per file
        if !self.statement_timeout_set()
            && (!s.facts.rewrites.is_empty() || !s.facts.scans_under_lock.is_empty())
        {
            self.statement_timeout_reported = true;
        }
        if let Some(tx) = &mut self.tx {
            tx.has_ddl |= s.facts.ddl;
            for (t, m) in &s.facts.locks {
                if *m == LockMode::AccessExclusive
                    && !self.created.contains(t)
                    && s.facts.tables.contains(t)
                    && !tx.access_exclusive.iter().any(|(x, _)| x == t)
                {
                    tx.access_exclusive.push((t.clone(), s.index));
                }
            }
        }
    }

    fn tx_id_for_apply(&self, implicit: bool) -> usize {
        if implicit {
            self.counter
        } else {
            self.tx.as_ref().map(|t| t.id).unwrap_or(self.counter)
        }
    }

    fn record_constraint(
        &mut self,
        t: &QualName,
        con: &pg_query::protobuf::Constraint,
        column: Option<&str>,
        tx_id: usize,
        stmt: usize,
    ) {
        let name = con.conname.clone();
        match con.contype() {
            ConstrType::ConstrCheck => {
                if let Some(col) = check_is_not_null(con) {
                    if con.skip_validation {
                        self.not_null_checks.insert((t.clone(), name.clone()), col);
                    } else {
                        self.not_null_proven.insert((t.clone(), col));
                    }
                }
                if con.skip_validation && !name.is_empty() {
                    self.not_valid.insert((t.clone(), name), tx_id);
                }
            }
            ConstrType::ConstrForeign => {
                if con.skip_validation && !name.is_empty() {
                    self.not_valid.insert((t.clone(), name), tx_id);
                }
                let mut cols = names(&con.fk_attrs);
                if cols.is_empty() {
                    if let Some(c) = column {
                        cols.push(c.to_string());
                    }
                }
                if !cols.is_empty() {
                    self.pending_fks.push(PendingFk {
                        statement: stmt,
                        table: t.clone(),
                        columns: cols,
                    });
                }
            }
            ConstrType::ConstrPrimary | ConstrType::ConstrUnique | ConstrType::ConstrExclusion => {
                let mut cols = names(&con.keys);
                if cols.is_empty() {
                    if let Some(c) = column {
                        cols.push(c.to_string());
                    }
                }
                if con.contype() == ConstrType::ConstrPrimary {
                    for c in &cols {
                        self.not_null_proven.insert((t.clone(), c.clone()));
                    }
                }
                self.indexes.entry(t.clone()).or_default().push(cols);
            }
            ConstrType::ConstrNotnull => {
                if let Some(c) = column {
                    self.not_null_proven.insert((t.clone(), c.to_string()));
                }
            }
            _ => {}
        }
    }
}

fn is_zero(args: &[pg_query::protobuf::Node]) -> bool {
    use pg_query::protobuf::a_const::Val;
    args.first().is_some_and(|a| match &a.node {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(Val::Ival(i)) => i.ival == 0,
            Some(Val::Sval(s)) => {
                s.sval.trim() == "0" || s.sval.trim().starts_with("0 ") || s.sval.trim() == "0ms"
            }
            _ => false,
        },
        _ => node_str(a).is_some_and(|s| s == "0"),
    })
}

/// The live sequence a column's default draws from (`nextval('seq'::regclass)`, as `serial`
/// makes it), with its type, when that type is smaller than bigint.
fn serial_sequence(s: &Stmt<'_>, table: &QualName, column: &str) -> Option<(QualName, String)> {
    let live = s.opts.live?;
    let col = live.tables.get(table)?.column(column)?;
    let default = col.default.as_deref()?;
    let inner = default
        .strip_prefix("nextval('")?
        .split_once("'::regclass)")?
        .0
        .replace("''", "'");
    let (schema, name) = match inner.split_once('.') {
        Some((schema, name)) => (unquote(schema), unquote(name)),
        None => (table.schema.as_str().to_string(), unquote(&inner)),
    };
    let seq = live
        .sequences
        .values()
        .find(|q| q.name.schema.as_str() == schema && q.name.name.as_str() == name)?;
    matches!(seq.data_type.as_str(), "integer" | "smallint")
        .then(|| (seq.name.clone(), seq.data_type.clone()))
}

fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => s.to_string(),
    }
}
