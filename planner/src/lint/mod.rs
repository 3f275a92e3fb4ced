//! `tandem lint`: reads migration SQL statement by statement and reports what each one locks,
//! rewrites, scans or breaks, as [`Finding`]s (data, never errors).
//!
//! The flow is: [`split`] cuts the file into statements and parses each with `pg_query`
//! (PostgreSQL's own grammar; a large file in parts, in parallel); [`analyze`] derives the facts of one statement (tables, locks,
//! rewrites, scans); every rule in [`rules`] looks at the statement and the [`FileState`]
//! built from the statements before it; [`state`] then folds the statement into that state.
//! Suppression comments (`-- tandem: ignore T012`) are handled in [`suppress`].

mod analyze;
mod rules;
mod split;
mod state;
mod suppress;
mod types;

use pg_query::NodeEnum;

use crate::finding::{Class, Finding, Location, Lock, Remedy, Severity};
use crate::ident::QualName;
use crate::model::{Schema, Table};

pub use rules::rules;
pub use state::{FileState, WidenedSerial};

/// What the linter needs to know about the target.
#[derive(Debug, Clone, Default)]
pub struct LintOptions<'a> {
    /// Major version of the target server, e.g. `15`.
    pub pg_version: u32,
    /// The live schema (with size estimates) when a database is reachable.
    pub live: Option<&'a Schema>,
    /// The file name, copied into every finding's location.
    pub file: Option<String>,
}

/// Settings that change how the file is read, beyond the target (see [`lint_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LintSettings {
    /// The runner wraps the whole file in one transaction (as most migration tools do).
    /// When false (the default), statements outside an explicit `BEGIN` each run in their
    /// own implicit transaction, as `psql -f` runs them.
    pub assume_in_transaction: bool,
}

/// Everything `lint` found in one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LintReport {
    pub statements: Vec<AnalyzedStatement>,
    /// Sorted by (line, column, id).
    pub findings: Vec<Finding>,
    /// `-- tandem: ignore ...` entries that suppressed nothing.
    pub unused_ignores: Vec<Location>,
    /// Serial columns the file widens to bigint without widening their sequence (T065).
    pub unwidened_serials: Vec<WidenedSerial>,
}

/// One statement of the file and what it does to the database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnalyzedStatement {
    pub index: usize,
    /// The statement text, without leading comments and the trailing semicolon.
    pub sql: String,
    pub line: u32,
    pub column: u32,
    /// False if the parser could not read it (then a `T000 parse-error` finding points at it).
    pub parsed: bool,
    /// Tables it touches (unqualified names resolve to `public`).
    pub tables: Vec<QualName>,
    /// Locks it takes, the strongest per object.
    pub locks: Vec<Lock>,
    /// Existing tables it rewrites.
    pub rewrites: Vec<QualName>,
    /// Existing tables fully scanned while a traffic-blocking lock is held.
    pub scans_under_lock: Vec<QualName>,
    /// CONCURRENTLY forms that cannot run inside a transaction block.
    pub concurrently: bool,
    /// Tables it creates.
    pub created: Vec<QualName>,
    /// `BEGIN`/`COMMIT`/`SET ...`: shapes the session rather than the schema.
    pub session_control: bool,
    /// Indexes into [`LintReport::findings`].
    pub findings: Vec<usize>,
}

/// Documentation and classification of one rule.
#[derive(Debug)]
pub struct RuleMeta {
    /// Stable id, `T001`...
    pub id: &'static str,
    /// Kebab-case name.
    pub name: &'static str,
    pub severity: Severity,
    pub class: Class,
    pub summary: &'static str,
    /// What goes wrong, which lock, what to do instead.
    pub docs: &'static str,
    /// SQL that triggers the rule.
    pub bad: &'static str,
    /// SQL that does the same job without triggering it.
    pub good: &'static str,
    /// Whether tandem can make the change without the hazard itself.
    pub remedy: Remedy,
    /// Rows of `HAZARDS.md` the rule covers.
    pub hazards: &'static [u8],
}

/// One finding of a rule before it is placed in the file.
#[derive(Debug, Clone)]
pub struct RuleHit {
    pub(crate) message: String,
    pub(crate) help: String,
    pub(crate) lock: Option<Lock>,
    /// The table the hazard is about: hits on tables created earlier in the file are dropped
    /// for blocking rules, and small live tables downgrade them to info.
    pub(crate) table: Option<QualName>,
    /// Overrides the rule's default severity (e.g. "may rewrite" is a warning).
    pub(crate) severity: Option<Severity>,
}

impl RuleHit {
    pub(crate) fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        RuleHit {
            message: message.into(),
            help: help.into(),
            lock: None,
            table: None,
            severity: None,
        }
    }
    pub(crate) fn lock(mut self, mode: crate::finding::LockMode, object: &QualName) -> Self {
        self.lock = Some(Lock {
            mode,
            object: object.display_plain(),
        });
        self
    }
    pub(crate) fn table(mut self, table: &QualName) -> Self {
        self.table = Some(table.clone());
        self
    }
    pub(crate) fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }
}

/// A lint rule: one hazard, one file under `lint/rules/`.
pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;
    /// Looks at one statement, with the state left by the statements before it.
    fn check(&self, stmt: &Stmt<'_>, state: &FileState, out: &mut Vec<RuleHit>);
    /// Called once after the last statement, for hazards only visible at the end of the file.
    /// Hits are attributed to the statement index given with them.
    fn finish(
        &self,
        _state: &FileState,
        _opts: &LintOptions<'_>,
        _out: &mut Vec<(usize, RuleHit)>,
    ) {
    }
}

/// One parsed statement as the rules see it.
pub struct Stmt<'a> {
    pub(crate) index: usize,
    /// The statement's text (for a DO block's inner statement, that statement's text).
    pub(crate) sql: &'a str,
    pub(crate) node: &'a NodeEnum,
    pub(crate) opts: &'a LintOptions<'a>,
    pub(crate) facts: analyze::Facts,
    /// Inside an explicit (or assumed, or DO-block) transaction.
    pub(crate) in_transaction: bool,
    /// Extracted from a `DO $$ ... $$` block.
    pub(crate) in_do_block: bool,
}

impl<'a> Stmt<'a> {
    pub(crate) fn pg(&self) -> u32 {
        self.opts.pg_version
    }
    pub(crate) fn live_table(&self, name: &QualName) -> Option<&'a Table> {
        self.opts.live.and_then(|s| s.tables.get(name))
    }
    /// " (~2,000,000 rows, 300 MB)" when the live schema knows the size.
    pub(crate) fn size_note(&self, name: &QualName) -> String {
        match self.live_table(name).and_then(|t| t.stats) {
            Some(s) if s.estimated_rows >= 0 => {
                format!(
                    " (~{} rows, {})",
                    thousands(s.estimated_rows),
                    human_bytes(s.total_bytes)
                )
            }
            _ => String::new(),
        }
    }
}

pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let head = digits.len() % 3;
    let mut parts: Vec<&str> = Vec::new();
    if head > 0 {
        parts.push(&digits[..head]);
    }
    parts.extend(
        digits.as_bytes()[head..]
            .chunks(3)
            .map(|c| std::str::from_utf8(c).unwrap_or("")),
    );
    let joined = parts.join(",");
    if n < 0 {
        format!("-{joined}")
    } else {
        joined
    }
}

pub(crate) fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b.max(0) as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

/// Below both limits a table counts as small: locking it is brief.
const SMALL_ROWS: i64 = 10_000;
const SMALL_BYTES: i64 = 10 * 1024 * 1024;

/// The byte ranges of the statements of `sql`, in order, as PostgreSQL's parser splits them
/// (comments and whitespace between statements left out). A statement the parser rejects is
/// still a range of its own, cut by the lexical splitter.
pub fn statement_spans(sql: &str) -> Vec<std::ops::Range<usize>> {
    split::split(sql)
        .into_iter()
        .map(|p| p.start..p.end)
        .collect()
}

/// [`statement_spans`] when PostgreSQL's parser reads the whole file, found without building
/// parse trees (cheaper); `None` when some statement does not parse ([`lint`] says where).
pub fn parsed_statement_spans(sql: &str) -> Option<Vec<std::ops::Range<usize>>> {
    split::parsed_spans(sql)
}

/// Lints one file of migration SQL.
pub fn lint(sql: &str, opts: &LintOptions) -> LintReport {
    lint_with(sql, opts, LintSettings::default())
}

/// [`lint`] with non-default [`LintSettings`].
pub fn lint_with(sql: &str, opts: &LintOptions, settings: LintSettings) -> LintReport {
    let index = split::LineIndex::new(sql);
    let pieces = split::split(sql);
    let starts: Vec<(usize, usize)> = pieces.iter().map(|p| (p.start, p.end)).collect();
    let directives = suppress::Directives::parse(sql, &index);
    let mut state = FileState::new(settings.assume_in_transaction, pieces.len());
    let all_rules = rules();

    let mut statements = Vec::with_capacity(pieces.len());
    // (finding, statement index)
    let mut raw: Vec<(Finding, usize)> = Vec::new();
    let mut scratch = Vec::new();

    // By value: each parse tree is freed once its statement is done, and its memory reused.
    for (i, piece) in pieces.into_iter().enumerate() {
        let (line, column) = index.line_col(piece.start);
        let location = Location {
            file: opts.file.clone(),
            line,
            column,
            statement: i,
        };
        let mut analyzed = AnalyzedStatement {
            index: i,
            sql: sql[piece.start..piece.end].to_string(),
            line,
            column,
            parsed: piece.parsed.is_some(),
            tables: Vec::new(),
            locks: Vec::new(),
            rewrites: Vec::new(),
            scans_under_lock: Vec::new(),
            concurrently: false,
            created: Vec::new(),
            session_control: false,
            findings: Vec::new(),
        };
        let Some(node) = piece.parsed.as_ref() else {
            let err = piece.error.as_deref().unwrap_or("syntax error");
            let (l, c) = index.line_col(split::error_offset(sql, &piece, err));
            let meta = rules::parse_error_meta();
            raw.push((
                make_finding(
                    meta,
                    RuleHit::new(
                        format!("statement {} could not be parsed: {err}", i + 1),
                        "fix the SQL (PostgreSQL's own parser rejects it); the other statements were still checked",
                    )
                    .severity(Severity::Error),
                    Location { file: opts.file.clone(), line: l, column: c, statement: i },
                ),
                i,
            ));
            state.after_unparsed();
            statements.push(analyzed);
            continue;
        };

        analyzed.session_control = matches!(
            node,
            NodeEnum::TransactionStmt(_) | NodeEnum::VariableSetStmt(_)
        );
        // A DO block is analysed through the static SQL inside it, at the block's location.
        let block = analyze::do_block(node);
        let units: Vec<(&NodeEnum, &str, bool)> = match &block {
            Some(b) => b
                .statements
                .iter()
                .map(|(n, s)| (n, s.as_str(), true))
                .collect(),
            None => vec![(node, &sql[piece.start..piece.end], false)],
        };
        if block.is_some() {
            state.begin_do_block();
        }
        for (unit, text, in_do) in units {
            let facts = analyze::facts(unit, &state, opts);
            // a table created by this statement is new for the rules already
            state.mark_created(&facts.created);
            let stmt = Stmt {
                index: i,
                sql: text,
                node: unit,
                opts,
                facts,
                in_transaction: state.in_transaction() || in_do,
                in_do_block: in_do,
            };
            for rule in all_rules {
                scratch.clear();
                rule.check(&stmt, &state, &mut scratch);
                for hit in scratch.drain(..) {
                    if let Some(hit) = adjust(rule.meta(), hit, &state, opts) {
                        raw.push((make_finding(rule.meta(), hit, location.clone()), i));
                    }
                }
            }
            merge_facts(&mut analyzed, &stmt.facts);
            state.apply(&stmt);
        }
        if let Some(b) = &block {
            state.end_do_block();
            if b.dynamic > 0 {
                let hit = RuleHit::new(
                    format!(
                        "the DO block runs {} statement(s) built at run time (EXECUTE of a non-constant string, or a non-PL/pgSQL body): tandem cannot see what they lock or change",
                        b.dynamic
                    ),
                    "write the statements out as plain SQL so they can be checked, or review the generated SQL by hand",
                );
                raw.push((
                    make_finding(rules::uninspectable_meta(), hit, location.clone()),
                    i,
                ));
            }
        }
        statements.push(analyzed);
    }

    let mut late = Vec::new();
    for rule in all_rules {
        late.clear();
        rule.finish(&state, opts, &mut late);
        for (i, hit) in late.drain(..) {
            if let Some(hit) = adjust(rule.meta(), hit, &state, opts) {
                let s = &statements[i.min(statements.len().saturating_sub(1))];
                let loc = Location {
                    file: opts.file.clone(),
                    line: s.line,
                    column: s.column,
                    statement: s.index,
                };
                raw.push((make_finding(rule.meta(), hit, loc), s.index));
            }
        }
    }

    // Suppression, then ordering.
    let mut directives = directives;
    directives.attach(&starts, &index);
    // A change that breaks running applications is an error; silencing it takes a reason.
    raw.retain_mut(|(f, i)| match directives.suppresses(*i, &f.id, &f.name) {
        suppress::Suppressed::No => true,
        suppress::Suppressed::Yes => false,
        suppress::Suppressed::WithoutReason
            if f.class == Class::Breaking && f.severity == Severity::Error =>
        {
            f.help = format!(
                "{}; to accept the breakage, give the reason: `-- tandem: ignore {} -- why`",
                f.help, f.id
            );
            true
        }
        suppress::Suppressed::WithoutReason => false,
    });
    raw.sort_by(|(a, _), (b, _)| {
        (a.location.line, a.location.column, &a.id).cmp(&(
            b.location.line,
            b.location.column,
            &b.id,
        ))
    });
    let mut findings = Vec::with_capacity(raw.len());
    for (n, (f, i)) in raw.into_iter().enumerate() {
        if let Some(s) = statements.get_mut(i) {
            s.findings.push(n);
        }
        findings.push(f);
    }
    let unused_ignores = directives.unused(opts.file.as_deref());
    LintReport {
        statements,
        findings,
        unused_ignores,
        unwidened_serials: state.unwidened_serials().cloned().collect(),
    }
}

fn merge_facts(into: &mut AnalyzedStatement, facts: &analyze::Facts) {
    for t in &facts.tables {
        if !into.tables.contains(t) {
            into.tables.push(t.clone());
        }
    }
    for (object, mode) in &facts.locks {
        let object = object.display_plain();
        match into.locks.iter_mut().find(|x| x.object == object) {
            Some(x) if x.mode < *mode => x.mode = *mode,
            Some(_) => {}
            None => into.locks.push(Lock {
                mode: *mode,
                object,
            }),
        }
    }
    for t in &facts.created {
        if !into.created.contains(t) {
            into.created.push(t.clone());
        }
    }
    for t in &facts.rewrites {
        if !into.rewrites.contains(t) {
            into.rewrites.push(t.clone());
        }
    }
    for t in &facts.scans_under_lock {
        if !into.scans_under_lock.contains(t) {
            into.scans_under_lock.push(t.clone());
        }
    }
    into.concurrently |= facts.concurrently;
}

/// Applies the file-wide policies to a hit: blocking hazards on tables created in this file
/// are dropped, those on small live tables become info, and shadow remedies on tables
/// without a usable key say so.
fn adjust(
    meta: &RuleMeta,
    mut hit: RuleHit,
    state: &FileState,
    opts: &LintOptions,
) -> Option<RuleHit> {
    let Some(table) = hit.table.clone() else {
        return Some(hit);
    };
    if meta.class == Class::Blocking && state.is_new(&table) {
        return None;
    }
    let live = opts.live.and_then(|s| s.tables.get(&table));
    if let Some(t) = live {
        if meta.class == Class::Blocking {
            if let Some(stats) = t.stats {
                if stats.estimated_rows >= 0
                    && stats.estimated_rows < SMALL_ROWS
                    && stats.total_bytes < SMALL_BYTES
                {
                    hit.severity = Some(Severity::Info);
                    hit.message.push_str(&format!(
                        "; small table ({} rows, {}): the lock is brief",
                        thousands(stats.estimated_rows),
                        human_bytes(stats.total_bytes)
                    ));
                }
            }
        }
        if meta.remedy == Remedy::Shadow && t.usable_key().is_none() {
            hit.help.push_str(&format!(
                "; note: {} has no primary key or unique NOT NULL index, and the shadow strategy needs one: add it first",
                table.display_plain()
            ));
        }
    }
    Some(hit)
}

fn make_finding(meta: &RuleMeta, hit: RuleHit, location: Location) -> Finding {
    Finding {
        id: meta.id.to_string(),
        name: meta.name.to_string(),
        severity: hit.severity.unwrap_or(meta.severity),
        class: meta.class,
        message: hit.message,
        help: hit.help,
        lock: hit.lock,
        remedy: meta.remedy,
        location,
    }
}
