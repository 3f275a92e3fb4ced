//! What one statement does to the database, independent of any rule: the tables it touches,
//! the locks it takes, the tables it rewrites or scans under a blocking lock. Also the shared
//! readers of the parse tree (names, ALTER TABLE commands, column types, DO blocks).

use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint, Node,
    ObjectType, RangeVar,
};
use pg_query::NodeEnum;

use super::state::FileState;
use super::types::{no_rewrite, node_str, volatility, Ty, Volatility};
use super::LintOptions;
use crate::finding::LockMode;
use crate::ident::{Ident, QualName, MAX_IDENT_BYTES};

/// The facts of one statement (see `AnalyzedStatement`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Facts {
    pub(crate) tables: Vec<QualName>,
    /// Strongest lock per object.
    pub(crate) locks: Vec<(QualName, LockMode)>,
    pub(crate) rewrites: Vec<QualName>,
    pub(crate) scans_under_lock: Vec<QualName>,
    pub(crate) concurrently: bool,
    /// Changes the schema (anything but DML, SET, transaction control).
    pub(crate) ddl: bool,
    /// Tables this statement creates.
    pub(crate) created: Vec<QualName>,
}

impl Facts {
    fn touch(&mut self, t: &QualName) {
        if !self.tables.contains(t) {
            self.tables.push(t.clone());
        }
    }
    fn lock(&mut self, t: &QualName, mode: LockMode) {
        match self.locks.iter_mut().find(|(o, _)| o == t) {
            Some((_, m)) if *m < mode => *m = mode,
            Some(_) => {}
            None => self.locks.push((t.clone(), mode)),
        }
    }
    fn table_lock(&mut self, t: &QualName, mode: LockMode) {
        self.touch(t);
        self.lock(t, mode);
    }
    fn rewrite(&mut self, t: &QualName, state: &FileState) {
        if !state.is_new(t) && !self.rewrites.contains(t) {
            self.rewrites.push(t.clone());
        }
    }
    fn scan(&mut self, t: &QualName, state: &FileState) {
        if !state.is_new(t) && !self.scans_under_lock.contains(t) {
            self.scans_under_lock.push(t.clone());
        }
    }
    /// The strongest lock this statement takes on `t`.
    pub(crate) fn lock_on(&self, t: &QualName) -> Option<LockMode> {
        self.locks.iter().find(|(o, _)| o == t).map(|(_, m)| *m)
    }
}

/// A name as PostgreSQL stores it: truncated to 63 bytes, unqualified → `public`.
pub(crate) fn make_qual(schema: Option<&str>, name: &str) -> QualName {
    fn fix(s: &str) -> std::borrow::Cow<'_, str> {
        let mut end = s.len().min(MAX_IDENT_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let s = &s[..end];
        if s.is_empty() {
            "?".into()
        } else if !s.contains('\0') {
            s.into()
        } else {
            let s: String = s.chars().filter(|&c| c != '\0').collect();
            if s.is_empty() {
                "?".into()
            } else {
                s.into()
            }
        }
    }
    let schema = schema.filter(|s| !s.is_empty()).unwrap_or("public");
    QualName {
        schema: Ident::new_valid(&fix(schema)),
        name: Ident::new_valid(&fix(name)),
    }
}

pub(crate) fn qual(rv: &RangeVar) -> QualName {
    make_qual(Some(rv.schemaname.as_str()), &rv.relname)
}

/// `[schema.]name` from a list of String nodes (DROP, CREATE TYPE, ...).
pub(crate) fn qual_list(names: &[Node]) -> QualName {
    let parts: Vec<&str> = names.iter().filter_map(node_str).collect();
    match parts.as_slice() {
        [.., s, n] => make_qual(Some(s), n),
        [n] => make_qual(None, n),
        [] => make_qual(None, "?"),
    }
}

/// The objects of a DROP statement as names.
pub(crate) fn drop_objects(objects: &[Node]) -> Vec<QualName> {
    objects
        .iter()
        .filter_map(|o| match &o.node {
            Some(NodeEnum::List(l)) => Some(qual_list(&l.items)),
            Some(NodeEnum::String(s)) => Some(make_qual(None, &s.sval)),
            Some(NodeEnum::TypeName(t)) => Some(qual_list(&t.names)),
            _ => None,
        })
        .collect()
}

/// `ALTER TABLE` on a table (not an index, view or sequence), with its commands.
pub(crate) fn alter_table(node: &NodeEnum) -> Option<(QualName, &AlterTableStmt)> {
    match node {
        NodeEnum::AlterTableStmt(a)
            if matches!(
                a.objtype(),
                ObjectType::ObjectTable | ObjectType::ObjectForeignTable
            ) =>
        {
            Some((qual(a.relation.as_ref()?), a))
        }
        _ => None,
    }
}

/// The commands of an ALTER TABLE with their kind.
pub(crate) fn cmds(a: &AlterTableStmt) -> impl Iterator<Item = (AlterTableType, &AlterTableCmd)> {
    a.cmds.iter().filter_map(|c| match &c.node {
        Some(NodeEnum::AlterTableCmd(cmd)) => Some((cmd.subtype(), cmd.as_ref())),
        _ => None,
    })
}

pub(crate) fn cmd_column_def(cmd: &AlterTableCmd) -> Option<&ColumnDef> {
    match cmd.def.as_ref()?.node.as_ref()? {
        NodeEnum::ColumnDef(c) => Some(c),
        _ => None,
    }
}

pub(crate) fn cmd_constraint(cmd: &AlterTableCmd) -> Option<&Constraint> {
    match cmd.def.as_ref()?.node.as_ref()? {
        NodeEnum::Constraint(c) => Some(c),
        _ => None,
    }
}

pub(crate) fn column_constraints(col: &ColumnDef) -> impl Iterator<Item = &Constraint> {
    col.constraints.iter().filter_map(|c| match &c.node {
        Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
        _ => None,
    })
}

pub(crate) fn names(list: &[Node]) -> Vec<String> {
    list.iter()
        .filter_map(node_str)
        .map(str::to_string)
        .collect()
}

/// Why adding this column rewrites the table, if it does.
pub(crate) enum AddColumnRewrite {
    None,
    /// It does, for the reason given.
    Yes(String),
    /// A default calls a function tandem does not know.
    Maybe(String),
}

pub(crate) fn add_column_rewrite(col: &ColumnDef, pg: u32) -> AddColumnRewrite {
    let ty = col.type_name.as_ref().map(Ty::from_ast);
    if let Some(t) = &ty {
        if matches!(t.base.as_str(), "serial" | "bigserial" | "smallserial") {
            return AddColumnRewrite::Yes(format!(
                "a {} column fills every row from a sequence",
                t.base
            ));
        }
    }
    for c in column_constraints(col) {
        match c.contype() {
            ConstrType::ConstrIdentity => {
                return AddColumnRewrite::Yes(
                    "an identity column fills every row from a sequence".into(),
                )
            }
            ConstrType::ConstrGenerated => {
                return AddColumnRewrite::Yes(
                    "a stored generated column is computed for every row".into(),
                )
            }
            ConstrType::ConstrDefault => {
                let Some(expr) = &c.raw_expr else { continue };
                if is_null_const(expr) {
                    continue;
                }
                if pg < 11 {
                    return AddColumnRewrite::Yes(format!(
                        "before PostgreSQL 11 any default is written into every row (target is {pg})"
                    ));
                }
                match volatility(expr) {
                    Volatility::Stable => {}
                    Volatility::Volatile(f) => {
                        return AddColumnRewrite::Yes(format!(
                            "the default calls the volatile function {f}()"
                        ))
                    }
                    Volatility::Unknown(f) => return AddColumnRewrite::Maybe(f),
                }
            }
            _ => {}
        }
    }
    AddColumnRewrite::None
}

fn is_null_const(n: &Node) -> bool {
    matches!(&n.node, Some(NodeEnum::AConst(c)) if c.isnull)
}

/// What an `ALTER COLUMN ... TYPE` does.
pub(crate) struct TypeChange {
    pub(crate) column: String,
    pub(crate) old: Option<Ty>,
    pub(crate) new: Ty,
    pub(crate) using: bool,
    pub(crate) collate: bool,
    /// `Some(true)` rewrites, `Some(false)` does not, `None`: the old type is unknown and the
    /// new one is a binary-coercible target for some types (varchar/text/numeric).
    pub(crate) rewrites: Option<bool>,
}

pub(crate) fn type_change(
    table: &QualName,
    cmd: &AlterTableCmd,
    state: &FileState,
    opts: &LintOptions<'_>,
) -> Option<TypeChange> {
    let def = cmd_column_def(cmd)?;
    let new = Ty::from_ast(def.type_name.as_ref()?);
    let old = state.column_type(table, &cmd.name).cloned().or_else(|| {
        opts.live
            .and_then(|s| s.tables.get(table))
            .and_then(|t| t.column(&cmd.name))
            .map(|c| Ty::from_format_type(&c.data_type))
    });
    // `USING col` or `USING col::newtype` leaves the values as they are: PostgreSQL skips the
    // rewrite exactly as without USING when the cast is binary-coercible.
    let using = def
        .raw_default
        .as_deref()
        .is_some_and(|e| !using_is_plain_column(e, &cmd.name));
    let collate = def.coll_clause.is_some();
    let rewrites = if using || collate {
        Some(true)
    } else {
        match &old {
            Some(o) => Some(!no_rewrite(o, &new)),
            None if matches!(
                new.base.as_str(),
                "text" | "varchar" | "numeric" | "varbit" | "inet"
            ) =>
            {
                None
            }
            None => Some(true),
        }
    };
    Some(TypeChange {
        column: cmd.name.clone(),
        old,
        new,
        using,
        collate,
        rewrites,
    })
}

fn using_is_plain_column(expr: &Node, column: &str) -> bool {
    match &expr.node {
        Some(NodeEnum::ColumnRef(c)) => matches!(
            c.fields.last().and_then(|f| f.node.as_ref()),
            Some(NodeEnum::String(s)) if s.sval == column
        ),
        Some(NodeEnum::TypeCast(t)) => t
            .arg
            .as_deref()
            .is_some_and(|a| using_is_plain_column(a, column)),
        _ => false,
    }
}

/// Whether `SET NOT NULL` on this column can skip its scan: PostgreSQL 12+ and a validated
/// `CHECK (col IS NOT NULL)` (seen in this file or in the live schema).
pub(crate) fn not_null_proven(
    table: &QualName,
    column: &str,
    state: &FileState,
    opts: &LintOptions<'_>,
) -> bool {
    if opts.pg_version < 12 {
        return false;
    }
    if state.not_null_proven(table, column) {
        return true;
    }
    let Some(t) = opts.live.and_then(|s| s.tables.get(table)) else {
        return false;
    };
    if t.column(column).is_some_and(|c| c.not_null) {
        return true;
    }
    let want = format!("check(({}isnotnull))", column.to_ascii_lowercase());
    let want_q = format!("check((\"{}\"isnotnull))", column.to_ascii_lowercase());
    t.constraints.values().any(|c| {
        let d: String = c
            .definition
            .chars()
            .filter(|ch| !ch.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        c.validated && (d == want || d == want_q)
    })
}

/// `CHECK (col IS NOT NULL)`: the column it proves non-null.
pub(crate) fn check_is_not_null(c: &Constraint) -> Option<String> {
    if c.contype() != ConstrType::ConstrCheck {
        return None;
    }
    match c.raw_expr.as_ref()?.node.as_ref()? {
        NodeEnum::NullTest(t) if t.nulltesttype == 2 => match t.arg.as_ref()?.node.as_ref()? {
            NodeEnum::ColumnRef(r) => r.fields.last().and_then(node_str).map(str::to_string),
            _ => None,
        },
        _ => None,
    }
}

fn lock_from_int(mode: i32) -> LockMode {
    match mode {
        1 => LockMode::AccessShare,
        2 => LockMode::RowShare,
        3 => LockMode::RowExclusive,
        4 => LockMode::ShareUpdateExclusive,
        5 => LockMode::Share,
        6 => LockMode::ShareRowExclusive,
        7 => LockMode::Exclusive,
        _ => LockMode::AccessExclusive,
    }
}

/// The table an index belongs to, when the live schema or this file knows it.
pub(crate) fn index_table(
    index: &QualName,
    state: &FileState,
    opts: &LintOptions<'_>,
) -> Option<QualName> {
    if let Some(t) = state.index_table(index) {
        return Some(t.clone());
    }
    let live = opts.live?;
    live.tables
        .values()
        .find(|t| {
            t.name.schema == index.schema
                && (t.indexes.contains_key(index.name.as_str())
                    || t.constraints.contains_key(index.name.as_str()))
        })
        .map(|t| t.name.clone())
}

fn options_have(params: &[Node], name: &str) -> bool {
    params.iter().any(
        |p| matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case(name)),
    )
}

pub(crate) fn reindex_concurrent(params: &[Node]) -> bool {
    options_have(params, "concurrently")
}

pub(crate) fn vacuum_full(options: &[Node]) -> bool {
    options_have(options, "full")
}

/// Computes the facts of one statement, given the state before it.
pub(crate) fn facts(node: &NodeEnum, state: &FileState, opts: &LintOptions<'_>) -> Facts {
    use AlterTableType as A;
    use LockMode::*;
    let mut f = Facts::default();
    match node {
        NodeEnum::CreateStmt(c) => {
            f.ddl = true;
            if let Some(rv) = &c.relation {
                f.table_lock(&qual(rv), AccessExclusive);
                f.created.push(qual(rv));
            }
            for p in &c.inh_relations {
                if let Some(NodeEnum::RangeVar(rv)) = &p.node {
                    // PARTITION OF locks the parent; INHERITS takes SHARE UPDATE EXCLUSIVE
                    let mode = if c.partbound.is_some() {
                        AccessExclusive
                    } else {
                        ShareUpdateExclusive
                    };
                    f.table_lock(&qual(rv), mode);
                }
            }
            for fk in table_fk_targets(c) {
                f.table_lock(&fk, ShareRowExclusive);
            }
        }
        NodeEnum::CreateTableAsStmt(c) => {
            f.ddl = true;
            if let Some(rv) = c.into.as_ref().and_then(|i| i.rel.as_ref()) {
                f.table_lock(&qual(rv), AccessExclusive);
                f.created.push(qual(rv));
            }
        }
        NodeEnum::IndexStmt(i) => {
            f.ddl = true;
            if let Some(rv) = &i.relation {
                let t = qual(rv);
                if i.concurrent {
                    f.concurrently = true;
                    f.table_lock(&t, ShareUpdateExclusive);
                } else {
                    f.table_lock(&t, Share);
                    f.scan(&t, state);
                }
            }
        }
        NodeEnum::DropStmt(d) => {
            f.ddl = true;
            let mode = if d.concurrent {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            };
            f.concurrently |= d.concurrent;
            for o in drop_objects(&d.objects) {
                match d.remove_type() {
                    ObjectType::ObjectTable
                    | ObjectType::ObjectView
                    | ObjectType::ObjectMatview => {
                        if d.remove_type() == ObjectType::ObjectTable {
                            f.touch(&o);
                        }
                        f.lock(&o, AccessExclusive)
                    }
                    ObjectType::ObjectIndex => {
                        f.lock(&o, AccessExclusive);
                        if let Some(t) = index_table(&o, state, opts) {
                            f.table_lock(&t, mode);
                        }
                    }
                    _ => {}
                }
            }
        }
        NodeEnum::AlterTableStmt(a) => {
            f.ddl = true;
            if let Some((t, a)) = alter_table(node) {
                f.touch(&t);
                for (sub, cmd) in cmds(a) {
                    alter_cmd_facts(&mut f, &t, sub, cmd, state, opts);
                }
            } else if let Some(rv) = &a.relation {
                let o = qual(rv);
                let mode = if a.cmds.iter().all(|c| {
                    matches!(&c.node, Some(NodeEnum::AlterTableCmd(c))
                        if matches!(c.subtype(), A::AtSetStatistics | A::AtSetRelOptions | A::AtResetRelOptions | A::AtSetOptions | A::AtResetOptions))
                }) {
                    ShareUpdateExclusive
                } else {
                    AccessExclusive
                };
                f.lock(&o, mode);
            }
        }
        NodeEnum::RenameStmt(r) => {
            f.ddl = true;
            if let Some(rv) = &r.relation {
                let t = qual(rv);
                match r.rename_type() {
                    ObjectType::ObjectTable
                    | ObjectType::ObjectColumn
                    | ObjectType::ObjectTabconstraint => f.table_lock(&t, AccessExclusive),
                    ObjectType::ObjectIndex => f.lock(&t, ShareUpdateExclusive),
                    _ => f.lock(&t, AccessExclusive),
                }
            }
        }
        NodeEnum::ReindexStmt(r) => {
            f.ddl = true;
            let conc = reindex_concurrent(&r.params);
            f.concurrently |= conc;
            if let Some(rv) = &r.relation {
                let o = qual(rv);
                let index = r.kind == 1;
                let table = if index {
                    index_table(&o, state, opts)
                } else {
                    Some(o.clone())
                };
                if conc {
                    if let Some(t) = &table {
                        f.table_lock(t, ShareUpdateExclusive);
                    }
                } else {
                    if index {
                        f.lock(&o, AccessExclusive);
                    }
                    if let Some(t) = &table {
                        f.table_lock(t, Share);
                        f.scan(t, state);
                    }
                }
            }
        }
        NodeEnum::ClusterStmt(c) => {
            f.ddl = true;
            if let Some(rv) = &c.relation {
                let t = qual(rv);
                f.table_lock(&t, AccessExclusive);
                f.rewrite(&t, state);
            }
        }
        NodeEnum::VacuumStmt(v) => {
            let full = v.is_vacuumcmd && vacuum_full(&v.options);
            for r in &v.rels {
                if let Some(NodeEnum::VacuumRelation(vr)) = &r.node {
                    if let Some(rv) = &vr.relation {
                        let t = qual(rv);
                        if full {
                            f.ddl = true;
                            f.table_lock(&t, AccessExclusive);
                            f.rewrite(&t, state);
                        } else {
                            f.table_lock(&t, ShareUpdateExclusive);
                        }
                    }
                }
            }
        }
        NodeEnum::CreateTrigStmt(c) => {
            f.ddl = true;
            if let Some(rv) = &c.relation {
                f.table_lock(&qual(rv), ShareRowExclusive);
            }
        }
        NodeEnum::TruncateStmt(t) => {
            for r in &t.relations {
                if let Some(NodeEnum::RangeVar(rv)) = &r.node {
                    f.table_lock(&qual(rv), AccessExclusive);
                }
            }
        }
        NodeEnum::UpdateStmt(u) => {
            if let Some(rv) = &u.relation {
                f.table_lock(&qual(rv), RowExclusive);
            }
        }
        NodeEnum::DeleteStmt(d) => {
            if let Some(rv) = &d.relation {
                f.table_lock(&qual(rv), RowExclusive);
            }
        }
        NodeEnum::InsertStmt(i) => {
            if let Some(rv) = &i.relation {
                f.table_lock(&qual(rv), RowExclusive);
            }
        }
        NodeEnum::LockStmt(l) => {
            for r in &l.relations {
                if let Some(NodeEnum::RangeVar(rv)) = &r.node {
                    f.table_lock(&qual(rv), lock_from_int(l.mode));
                }
            }
        }
        NodeEnum::CreatePolicyStmt(p) => {
            f.ddl = true;
            if let Some(rv) = &p.table {
                f.table_lock(&qual(rv), AccessExclusive);
            }
        }
        NodeEnum::AlterPolicyStmt(p) => {
            f.ddl = true;
            if let Some(rv) = &p.table {
                f.table_lock(&qual(rv), AccessExclusive);
            }
        }
        NodeEnum::ViewStmt(v) => {
            f.ddl = true;
            if let Some(rv) = &v.view {
                f.lock(&qual(rv), AccessExclusive);
            }
        }
        NodeEnum::RefreshMatViewStmt(r) => {
            if let Some(rv) = &r.relation {
                f.lock(
                    &qual(rv),
                    if r.concurrent {
                        Exclusive
                    } else {
                        AccessExclusive
                    },
                );
            }
        }
        NodeEnum::VariableSetStmt(_)
        | NodeEnum::VariableShowStmt(_)
        | NodeEnum::TransactionStmt(_)
        | NodeEnum::SelectStmt(_)
        | NodeEnum::DoStmt(_)
        | NodeEnum::ExplainStmt(_) => {}
        _ => f.ddl = true,
    }
    f
}

fn table_fk_targets(c: &pg_query::protobuf::CreateStmt) -> Vec<QualName> {
    let mut out = Vec::new();
    let mut add = |con: &Constraint| {
        if con.contype() == ConstrType::ConstrForeign {
            if let Some(rv) = &con.pktable {
                out.push(qual(rv));
            }
        }
    };
    for e in &c.table_elts {
        match &e.node {
            Some(NodeEnum::ColumnDef(col)) => column_constraints(col).for_each(&mut add),
            Some(NodeEnum::Constraint(con)) => add(con),
            _ => {}
        }
    }
    out
}

fn alter_cmd_facts(
    f: &mut Facts,
    t: &QualName,
    sub: AlterTableType,
    cmd: &AlterTableCmd,
    state: &FileState,
    opts: &LintOptions<'_>,
) {
    use AlterTableType as A;
    use LockMode::*;
    match sub {
        A::AtAddColumn => {
            f.lock(t, AccessExclusive);
            if let Some(col) = cmd_column_def(cmd) {
                if let AddColumnRewrite::Yes(_) = add_column_rewrite(col, opts.pg_version) {
                    f.rewrite(t, state);
                }
                for c in column_constraints(col) {
                    match c.contype() {
                        ConstrType::ConstrCheck
                        | ConstrType::ConstrPrimary
                        | ConstrType::ConstrUnique => f.scan(t, state),
                        ConstrType::ConstrForeign => {
                            if let Some(rv) = &c.pktable {
                                f.table_lock(&qual(rv), ShareRowExclusive);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        A::AtSetNotNull => {
            f.lock(t, AccessExclusive);
            if !not_null_proven(t, &cmd.name, state, opts) {
                f.scan(t, state);
            }
        }
        A::AtAddConstraint => {
            let Some(c) = cmd_constraint(cmd) else {
                f.lock(t, AccessExclusive);
                return;
            };
            match c.contype() {
                ConstrType::ConstrForeign => {
                    f.lock(t, ShareRowExclusive);
                    if let Some(rv) = &c.pktable {
                        f.table_lock(&qual(rv), ShareRowExclusive);
                    }
                    if !c.skip_validation {
                        f.scan(t, state);
                    }
                }
                ConstrType::ConstrCheck => {
                    f.lock(t, AccessExclusive);
                    if !c.skip_validation {
                        f.scan(t, state);
                    }
                }
                ConstrType::ConstrPrimary
                | ConstrType::ConstrUnique
                | ConstrType::ConstrExclusion => {
                    f.lock(t, AccessExclusive);
                    if c.indexname.is_empty() || c.contype() == ConstrType::ConstrPrimary {
                        f.scan(t, state);
                    }
                }
                _ => f.lock(t, AccessExclusive),
            }
        }
        A::AtValidateConstraint => f.lock(t, ShareUpdateExclusive),
        A::AtAlterColumnType => {
            f.lock(t, AccessExclusive);
            if let Some(tc) = type_change(t, cmd, state, opts) {
                if tc.rewrites == Some(true) {
                    f.rewrite(t, state);
                }
            }
        }
        A::AtSetLogged | A::AtSetUnLogged | A::AtSetAccessMethod | A::AtSetTableSpace => {
            f.lock(t, AccessExclusive);
            f.rewrite(t, state);
        }
        A::AtSetStatistics
        | A::AtSetOptions
        | A::AtResetOptions
        | A::AtSetRelOptions
        | A::AtResetRelOptions
        | A::AtClusterOn
        | A::AtDropCluster
        | A::AtAttachPartition => f.lock(t, ShareUpdateExclusive),
        A::AtDetachPartition => {
            if let Some(NodeEnum::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
            {
                if p.concurrent {
                    f.concurrently = true;
                    f.lock(t, ShareUpdateExclusive);
                } else {
                    f.lock(t, AccessExclusive);
                }
                if let Some(rv) = &p.name {
                    f.table_lock(&qual(rv), AccessExclusive);
                }
            } else {
                f.lock(t, AccessExclusive);
            }
        }
        A::AtEnableTrig
        | A::AtEnableAlwaysTrig
        | A::AtEnableReplicaTrig
        | A::AtDisableTrig
        | A::AtEnableTrigAll
        | A::AtDisableTrigAll
        | A::AtEnableTrigUser
        | A::AtDisableTrigUser => f.lock(t, ShareRowExclusive),
        _ => f.lock(t, AccessExclusive),
    }
}

/// The statements a `DO` block runs that can be read without running it: plain SQL and
/// `EXECUTE` of a string constant. `dynamic` counts EXECUTEs of computed strings.
pub(crate) struct DoBlock {
    pub(crate) statements: Vec<(NodeEnum, String)>,
    pub(crate) dynamic: usize,
}

pub(crate) fn do_block(node: &NodeEnum) -> Option<DoBlock> {
    let NodeEnum::DoStmt(d) = node else {
        return None;
    };
    let mut body = None;
    let mut language = "plpgsql".to_string();
    for a in &d.args {
        if let Some(NodeEnum::DefElem(e)) = &a.node {
            let val = e.arg.as_ref().and_then(|v| node_str(v)).unwrap_or("");
            match e.defname.as_str() {
                "as" => body = Some(val.to_string()),
                "language" => language = val.to_ascii_lowercase(),
                _ => {}
            }
        }
    }
    let mut out = DoBlock {
        statements: Vec::new(),
        dynamic: 0,
    };
    let body = body?;
    if language != "plpgsql" {
        out.dynamic += 1;
        return Some(out);
    }
    let mut tag = String::from("$tandem_do$");
    while body.contains(&tag) {
        tag.insert(1, 'x');
    }
    let wrapped =
        format!("CREATE FUNCTION tandem_do() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}");
    let Ok(json) = pg_query::parse_plpgsql(&wrapped) else {
        out.dynamic += 1;
        return Some(out);
    };
    let mut texts = Vec::new();
    collect_plpgsql(&json, &mut texts, &mut out.dynamic);
    for text in texts {
        if let Ok(p) = pg_query::parse(&text, 0) {
            for raw in p.protobuf.stmts {
                if let Some(n) = raw.stmt.and_then(|n| n.node) {
                    out.statements.push((n, text.clone()));
                }
            }
        }
    }
    Some(out)
}

fn collect_plpgsql(v: &serde_json::Value, out: &mut Vec<String>, dynamic: &mut usize) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map {
                match k.as_str() {
                    "PLpgSQL_stmt_execsql" => {
                        if let Some(q) = val
                            .pointer("/sqlstmt/PLpgSQL_expr/query")
                            .and_then(|q| q.as_str())
                        {
                            out.push(q.to_string());
                        }
                    }
                    "PLpgSQL_stmt_dynexecute" => {
                        match val
                            .pointer("/query/PLpgSQL_expr/query")
                            .and_then(|q| q.as_str())
                            .and_then(string_constant)
                        {
                            Some(s) => out.push(s),
                            None => *dynamic += 1,
                        }
                    }
                    _ => collect_plpgsql(val, out, dynamic),
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|i| collect_plpgsql(i, out, dynamic))
        }
        _ => {}
    }
}

/// The value of an expression that is a single string literal (`'...'`, `E'...'`, `$$...$$`).
fn string_constant(expr: &str) -> Option<String> {
    let p = pg_query::parse(&format!("SELECT {expr}"), 0).ok()?;
    let stmt = p.protobuf.stmts.first()?.stmt.as_ref()?.node.as_ref()?;
    let NodeEnum::SelectStmt(s) = stmt else {
        return None;
    };
    let [target] = s.target_list.as_slice() else {
        return None;
    };
    let Some(NodeEnum::ResTarget(rt)) = &target.node else {
        return None;
    };
    match rt.val.as_ref()?.node.as_ref()? {
        NodeEnum::AConst(c) => match &c.val {
            Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Identifiers in the statement text longer than PostgreSQL keeps (the parse tree already
/// holds them truncated).
pub(crate) fn long_identifiers(sql: &str) -> Vec<String> {
    let mut run = 0usize;
    let mut longest = 0usize;
    for b in sql.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'"' || b >= 0x80 {
            run += 1;
            longest = longest.max(run);
        } else if b != b' ' || run == 0 {
            run = 0;
        }
    }
    if longest <= MAX_IDENT_BYTES {
        return Vec::new();
    }
    let Ok(scan) = pg_query::scan(sql) else {
        return Vec::new();
    };
    scan.tokens
        .iter()
        .filter(|t| t.token == pg_query::protobuf::Token::Ident as i32)
        .filter_map(|t| sql.get(t.start as usize..t.end as usize))
        .map(|s| s.trim_matches('"').replace("\"\"", "\""))
        .filter(|s| s.len() > MAX_IDENT_BYTES)
        .collect()
}
