//! Building a plan: each change gets a strategy (online, shadow or refused), its locks and
//! an estimate, from the live schema's figures and the linter's analysis of its SQL.

use std::collections::BTreeSet;

use crate::diff::Change;
use crate::finding::{Finding, Lock, LockMode, Remedy, Severity};
use crate::ident::QualName;
use crate::lint::{lint, AnalyzedStatement, LintOptions};
use crate::model::Schema;
use crate::plan::{
    carry, online, DatabaseIdentity, Estimate, Plan, PlanSource, Step, Strategy, PLAN_FORMAT,
};

/// What every plan is built against.
pub struct Target<'a> {
    pub live: &'a Schema,
    pub database: DatabaseIdentity,
    pub pg_version: u32,
    /// A table smaller than this (bytes, with its indexes) is rewritten in place, by the
    /// statement itself under lock_timeout, rather than through a shadow migration: its
    /// rewrite holds the lock for less than the shadow's own cutover and costs a fraction of
    /// its work. 0 makes every rewrite a shadow migration. [`IN_PLACE_BELOW`] by default.
    pub in_place_below: u64,
}

/// The default [`Target::in_place_below`]: 4 MiB, rewritten in about 80 ms at
/// [`REWRITE_BYTES_PER_SEC`].
pub const IN_PLACE_BELOW: u64 = 4 << 20;

/// Rewrite throughput of an ALTER TABLE that rewrites the table and its indexes, measured on
/// a 2-core machine with PostgreSQL 15 (68-100 MB/s for 2.6-52 MB tables; BENCHMARKS.md);
/// conservative.
const REWRITE_BYTES_PER_SEC: u64 = 50 << 20;

/// Throughput figures behind the estimates (bytes per second), measured on a 2-core machine
/// with PostgreSQL 15 (see BENCHMARKS.md); they are deliberately conservative.
const SCAN_BYTES_PER_SEC: u64 = 400 << 20;
const INDEX_BUILD_BYTES_PER_SEC: u64 = 60 << 20;
const SHADOW_COPY_BYTES_PER_SEC: u64 = 40 << 20;
/// A catalog-only change holds its lock for about this long once granted.
const CATALOG_LOCK_MS: u64 = 5;
/// The shadow cutover runs under this lock_timeout (and retries).
const CUTOVER_LOCK_MS: u64 = 50;

/// Plan a change file (`-f CHANGE.sql`) or inline SQL (`--sql`).
pub fn from_sql(target: &Target<'_>, source: PlanSource, sql: &str) -> Plan {
    let report = lint(
        sql,
        &LintOptions {
            pg_version: target.pg_version,
            live: Some(target.live),
            file: Some(source.name.clone()),
        },
    );
    let mut created: BTreeSet<QualName> = BTreeSet::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut findings = report.findings.clone();
    for stmt in &report.statements {
        if !stmt.parsed {
            steps.push(refused(
                stmt,
                "tandem cannot read this statement; fix the syntax error reported for it",
            ));
            continue;
        }
        if stmt.session_control {
            continue;
        }
        let own: Vec<&Finding> = stmt.findings.iter().map(|&i| &report.findings[i]).collect();
        let existing = |t: &QualName| target.live.tables.contains_key(t) && !created.contains(t);
        let mut rewritten = false;
        let step = if let Some(table) = stmt.rewrites.iter().find(|t| existing(t)).cloned() {
            shadow_step(target, table, &stmt.sql)
        } else if let Some(rw) =
            online::rewrite(&stmt.sql, target.pg_version, target.live, &existing)
        {
            let locks = locks_of(&rw.sql, target);
            rewritten = true;
            Step {
                description: format!("{} ({})", describe(&stmt.sql), rw.how),
                strategy: Strategy::Online,
                table: stmt.tables.first().cloned(),
                estimate: estimate_online(target, &rw.sql, &locks),
                transactional: false,
                sql: rw.sql,
                locks,
                refusal: None,
                exposes: Vec::new(),
                in_place_max_bytes: None,
            }
        } else {
            let sql = vec![stmt.sql.clone()];
            Step {
                description: describe(&stmt.sql),
                strategy: Strategy::Online,
                table: stmt.tables.first().cloned(),
                estimate: estimate_online(target, &sql, &stmt.locks),
                transactional: !stmt.concurrently,
                sql,
                locks: stmt.locks.clone(),
                refusal: None,
                exposes: Vec::new(),
                in_place_max_bytes: None,
            }
        };
        // A step that refers to a table or column nobody has is refused, not run.
        let unknown = own
            .iter()
            .find(|f| f.name == "unknown-table" || f.name == "unknown-column");
        let step = match unknown {
            Some(f) => Step {
                strategy: Strategy::Refused,
                refusal: Some(format!("{}; {}", f.message, f.help)),
                ..step
            },
            None => step,
        };
        mark_handled(
            &mut findings,
            &stmt.findings,
            &step,
            rewritten,
            steps.len() + 1,
        );
        created.extend(stmt.created.iter().cloned());
        steps.push(step);
    }
    let (mut steps, numbers) = merge_shadow_steps_numbered(steps);
    renumber(&mut findings, &numbers);
    // A serial column widened to bigint keeps an integer sequence unless the file widens
    // it too (T065): the plan does, once the column holds bigint.
    for w in report
        .unwidened_serials
        .iter()
        .filter(|w| w.sequence_type == "integer")
    {
        let step = widen_sequence_step(target, w);
        let number = steps.len() + 1;
        for f in findings
            .iter_mut()
            .filter(|f| f.id == "T065" && f.message.contains(&w.sequence.display_plain()))
        {
            f.severity = Severity::Info;
            f.help = format!("handled: step {number} widens the sequence");
        }
        steps.push(step);
    }
    finish(target, source, steps, findings)
}

/// `ALTER SEQUENCE ... AS bigint` for a serial column widened to bigint. A catalog change:
/// it holds the sequence's lock (which `nextval` waits on) for an instant, and rewrites nothing.
fn widen_sequence_step(target: &Target<'_>, w: &crate::lint::WidenedSerial) -> Step {
    let sql = vec![format!("ALTER SEQUENCE {} AS bigint", w.sequence)];
    let locks = locks_of(&sql, target);
    Step {
        description: format!(
            "widen sequence {} to bigint ({}.{} is bigint now; PostgreSQL left its serial sequence {})",
            w.sequence.display_plain(),
            w.table.display_plain(),
            w.column,
            w.sequence_type
        ),
        strategy: Strategy::Online,
        table: Some(w.table.clone()),
        estimate: estimate_online(target, &sql, &locks),
        transactional: true,
        sql,
        locks,
        refusal: None,
        exposes: Vec::new(),
        in_place_max_bytes: None,
    }
}

/// Plan the changes the diff found between the live and the desired schema (`--to`).
pub fn from_changes(target: &Target<'_>, source: PlanSource, changes: &[Change]) -> Plan {
    let mut steps = Vec::new();
    let mut findings = Vec::new();
    let mut created: BTreeSet<QualName> = BTreeSet::new();
    let mut renamed: Vec<QualName> = Vec::new();
    for change in changes {
        let number = steps.len() + 1;
        let sql = change.sql.join(";\n") + ";";
        let report = lint(
            &sql,
            &LintOptions {
                pg_version: target.pg_version,
                live: Some(target.live),
                file: Some(format!("step {number}")),
            },
        );
        let existing = |t: &QualName| target.live.tables.contains_key(t) && !created.contains(t);
        let rewrites = report
            .statements
            .iter()
            .flat_map(|s| s.rewrites.iter())
            .find(|t| existing(t))
            .cloned();
        let mut rewritten = false;
        let step = match rewrites {
            Some(table) => {
                let mut step = shadow_step_for(target, table, change.sql.clone());
                step.description = described(change.description.clone(), &step);
                step
            }
            None => {
                // The diff writes plain DDL; blocking forms get their online replacement here,
                // exactly as in a change file.
                let mut sql = Vec::with_capacity(change.sql.len());
                for statement in &change.sql {
                    match online::rewrite(statement, target.pg_version, target.live, &existing) {
                        Some(rw) => {
                            rewritten = true;
                            sql.extend(rw.sql);
                        }
                        None => sql.push(statement.clone()),
                    }
                }
                let locks = if rewritten {
                    locks_of(&sql, target)
                } else {
                    merge_locks(
                        report
                            .statements
                            .iter()
                            .flat_map(|s| s.locks.iter().cloned()),
                    )
                };
                Step {
                    description: change.description.clone(),
                    strategy: Strategy::Online,
                    table: change.table.clone(),
                    estimate: estimate_online(target, &sql, &locks),
                    transactional: change.transactional && !rewritten,
                    sql,
                    locks,
                    refusal: None,
                    exposes: Vec::new(),
                    in_place_max_bytes: None,
                }
            }
        };
        let start = findings.len();
        findings.extend(report.findings);
        let indexes: Vec<usize> = (start..findings.len()).collect();
        mark_handled(&mut findings, &indexes, &step, rewritten, number);
        // The diff drops the views that read a retyped column before the change and
        // re-creates them after it, which is exactly what this finding asks for.
        for f in &mut findings[start..] {
            if f.name == "type-change-of-column-used-by-view" && step.strategy != Strategy::Refused
            {
                f.severity = Severity::Info;
                f.help = "handled: the plan drops the views that read the table before this step and re-creates them after it".into();
            }
        }
        // A step on a relation an earlier step of this plan created (a materialized view
        // and its index, a view built beside): each step is linted alone against the live
        // schema, which does not have it yet. It exists by then, and nobody uses it yet.
        let on_new = !report.statements.is_empty()
            && report
                .statements
                .iter()
                .all(|s| !s.tables.is_empty() && s.tables.iter().all(|t| created.contains(t)));
        if on_new {
            let own: Vec<Finding> = findings.drain(start..).collect();
            for mut f in own {
                if f.name == "unknown-table" {
                    continue;
                }
                if f.name == "require-concurrent-index-creation" {
                    f.severity = Severity::Info;
                    f.help = format!("handled: step {number} builds it on a relation an earlier step of this plan created, which nobody uses yet");
                }
                findings.push(f);
            }
        }
        // A table an earlier step renamed exists by then under its new name, which the live
        // schema this step is linted against does not know.
        let unknown_renamed = |f: &Finding| {
            f.name == "unknown-table"
                && renamed.iter().any(|n| {
                    f.message
                        .starts_with(&format!("table {} does not exist", n.display_plain()))
                })
        };
        let own = findings.split_off(start);
        findings.extend(own.into_iter().filter(|f| !unknown_renamed(f)));
        for s in &report.statements {
            created.extend(s.created.iter().cloned());
        }
        if let Some(to) = change
            .description
            .strip_prefix("rename table ")
            .and_then(|d| d.split_once(" to "))
            .and_then(|(_, to)| to.split_once('.'))
            .and_then(|(schema, name)| QualName::new(schema, name).ok())
        {
            renamed.push(to);
        }
        steps.push(step);
    }
    let (steps, merged) = merge_shadow_steps_numbered(steps);
    let (mut steps, carried) = carry::carry(target.live, steps);
    let numbers: Vec<usize> = merged
        .iter()
        .map(|&n| carried.get(n.wrapping_sub(1)).copied().unwrap_or(0))
        .collect();
    // Findings on the view drops and re-creations the pass took out went with them.
    findings.retain(|f| {
        step_of(f).is_none_or(|n| numbers.get(n.wrapping_sub(1)).is_none_or(|&m| m != 0))
    });
    renumber(&mut findings, &numbers);
    for f in &mut findings {
        let Some(step) = step_of(f).and_then(|n| steps.get(n.wrapping_sub(1))) else {
            continue;
        };
        let atomic = step.strategy == Strategy::Online
            && step.transactional
            && (step.description.starts_with("re-create ")
                || step.description.ends_with("in the same transaction"));
        if f.name == "changing-view-columns" && f.message.starts_with("DROP VIEW") && atomic {
            f.severity = Severity::Info;
            f.help = "handled: the view is dropped and created again in one transaction: its readers wait for the lock, and never find it missing".into();
        }
        if f.name == "dropping-constraint" && step.description.starts_with("swap the new ") {
            f.severity = Severity::Info;
            f.help = "handled: the new constraint, built beside (and validated, or backed by its index), takes the old one's place in the same transaction".into();
        }
        if f.name == "dropping-constraint"
            && step.transactional
            && step.description.starts_with("replace constraint ")
        {
            f.severity = Severity::Info;
            f.help = "handled: the new constraint is added in the same transaction: no row that breaks it can be written in between (but reads and writes wait while its index is built)".into();
        }
        if f.name == "type-change-of-column-used-by-view" {
            if step.strategy == Strategy::Shadow {
                f.help = "handled: the shadow migration's swap re-points the views at the new table in its own transaction: they never go missing".into();
            } else if atomic {
                f.help = "handled: the views are dropped and created again in this step's transaction: their readers wait for the lock, and never find them missing".into();
            }
        }
    }
    state_exposures(&mut steps);
    finish(target, source, steps, findings)
}

/// A `--to` plan drops an object and re-creates it later only where PostgreSQL leaves no
/// other way (a view over a retyped column, a key a changed foreign key needs): the drop step
/// says what goes missing and until which step, so the review shows the window.
fn state_exposures(steps: &mut [Step]) {
    let dropped = |s: &Step| -> Option<String> {
        let d = s.description.strip_prefix("drop ")?;
        (d.starts_with("view ")
            || d.starts_with("materialized view ")
            || d.starts_with("trigger ")
            || d.starts_with("rule ")
            || d.starts_with("constraint ")
            || d.starts_with("index "))
        .then(|| d.to_string())
    };
    let recreated = |s: &Step, object: &str| {
        let index = object
            .strip_prefix("index ")
            .and_then(|q| q.split_once('.'))
            .map(|(_, name)| format!("create index {name} on "));
        index.is_some_and(|p| s.description.starts_with(&p))
            || s.description == format!("create {object}")
            || s.description == format!("add {object}")
            || s.description.starts_with(&format!("add {object} "))
            || s.description == format!("validate {object}")
    };
    for i in 0..steps.len() {
        let Some(object) = dropped(&steps[i]) else {
            continue;
        };
        // The last step that restores it (a constraint comes back NOT VALID, then VALIDATE).
        let until = (i + 1..steps.len())
            .filter(|&j| recreated(&steps[j], &object))
            .max();
        if let Some(j) = until {
            steps[i]
                .exposes
                .push(format!("{object} is missing until step {}", j + 1));
        }
    }
}

fn finish(
    target: &Target<'_>,
    source: PlanSource,
    steps: Vec<Step>,
    mut findings: Vec<Finding>,
) -> Plan {
    findings.sort_by(|a, b| {
        (&a.location.file, a.location.line, a.location.column, &a.id).cmp(&(
            &b.location.file,
            b.location.line,
            b.location.column,
            &b.id,
        ))
    });
    findings.dedup();
    Plan {
        format: PLAN_FORMAT,
        database: target.database.clone(),
        schema_fingerprint: target.live.fingerprint(),
        source,
        steps,
        findings,
        dual_read_min: 0,
    }
}

fn shadow_step(target: &Target<'_>, table: QualName, sql: &str) -> Step {
    let mut step = shadow_step_for(target, table, vec![sql.to_string()]);
    let partitions = step
        .table
        .as_ref()
        .map_or(0, |t| partitions_of(target, t).len());
    step.description = described(describe(sql), &step);
    if partitions > 0 && step.strategy == Strategy::Shadow {
        step.description.push_str(&format!(
            " (partitioned: a shadow tree of {partitions} partition{}, copied through the root and swapped at once)",
            if partitions == 1 { "" } else { "s" }
        ));
    }
    step
}

/// Every partition of `table` (every level), from the live schema.
fn partitions_of<'a>(target: &'a Target<'_>, table: &QualName) -> Vec<&'a QualName> {
    let mut out: Vec<&QualName> = Vec::new();
    let mut parents = vec![table];
    while let Some(parent) = parents.pop() {
        for (name, t) in &target.live.tables {
            if t.partition_of.as_ref().is_some_and(|(p, _)| p == parent) {
                out.push(name);
                parents.push(name);
            }
        }
    }
    out
}

fn shadow_step_for(target: &Target<'_>, table: QualName, sql: Vec<String>) -> Step {
    let live = target.live.tables.get(&table);
    // A partitioned table's figures are its whole tree's (catalog/sql/tables.sql).
    let bytes = live
        .and_then(|t| t.stats)
        .map_or(0, |s| s.total_bytes.max(0) as u64);
    let refusal = match live {
        None => Some(format!("{} does not exist in the database", table.display_plain())),
        Some(t) if t.partition_of.is_some() => Some(format!(
            "{} is a partition of {}: its columns are the partitioned table's; change the partitioned table (tandem migrates the whole tree at once)",
            table.display_plain(),
            t.partition_of.as_ref().map(|(p, _)| p.display_plain()).unwrap_or_default()
        )),
        Some(t) if t.usable_key().is_none() => Some(format!(
            "{} has no primary key or unique index on NOT NULL columns, which the shadow migration needs to address rows; add one first (CREATE UNIQUE INDEX CONCURRENTLY ..., then ALTER TABLE ... ADD PRIMARY KEY USING INDEX ...)",
            table.display_plain()
        )),
        Some(_) => None,
    };
    let partitioned = live.is_some_and(|t| t.partition_key.is_some());
    if refusal.is_none() && !partitioned && bytes < target.in_place_below {
        return in_place_step(target, table, sql, bytes);
    }
    // The shadow migration never takes the statement's own strong lock on the original: it
    // takes brief locks to install triggers and an ACCESS EXCLUSIVE lock for the cutover only.
    let object = table.display_plain();
    let mut locks = vec![Lock {
        mode: LockMode::ShareRowExclusive,
        object: object.clone(),
    }];
    locks.push(Lock {
        mode: LockMode::AccessExclusive,
        object,
    });
    Step {
        description: String::new(),
        strategy: if refusal.is_some() {
            Strategy::Refused
        } else {
            Strategy::Shadow
        },
        table: Some(table),
        sql,
        transactional: false,
        locks,
        estimate: Estimate {
            lock_ms: CUTOVER_LOCK_MS,
            total_ms: ms(bytes, SHADOW_COPY_BYTES_PER_SEC) + ms(bytes, INDEX_BUILD_BYTES_PER_SEC),
        },
        refusal,
        exposes: Vec::new(),
        in_place_max_bytes: None,
    }
}

/// A step's description: what it does, and for an in-place rewrite, why in place.
fn described(what: String, step: &Step) -> String {
    if step.in_place_max_bytes.is_some() {
        format!("{what} ({})", step.description)
    } else {
        what
    }
}

/// A rewrite of a small table, run in place (see [`Target::in_place_below`]), with the size
/// it may reach before apply refuses it.
fn in_place_step(target: &Target<'_>, table: QualName, sql: Vec<String>, bytes: u64) -> Step {
    let lock_ms = ms(bytes, REWRITE_BYTES_PER_SEC).max(CATALOG_LOCK_MS);
    Step {
        description: format!(
            "in place: {} is {} (under {}), rewritten under ACCESS EXCLUSIVE in about {lock_ms} ms, less than a shadow migration's cutover",
            table.display_plain(),
            human_bytes(bytes),
            human_bytes(target.in_place_below)
        ),
        strategy: Strategy::Online,
        locks: vec![Lock {
            mode: LockMode::AccessExclusive,
            object: table.display_plain(),
        }],
        table: Some(table),
        sql,
        transactional: true,
        estimate: Estimate {
            lock_ms,
            total_ms: lock_ms,
        },
        refusal: None,
        exposes: Vec::new(),
        in_place_max_bytes: Some(target.in_place_below),
    }
}

/// `4 MiB`, `72 kB`, `512 B`.
fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{} kB", n >> 10),
        n => format!("{n} B"),
    }
}

fn refused(stmt: &AnalyzedStatement, why: &str) -> Step {
    Step {
        description: describe(&stmt.sql),
        strategy: Strategy::Refused,
        table: stmt.tables.first().cloned(),
        sql: vec![stmt.sql.clone()],
        transactional: true,
        locks: Vec::new(),
        estimate: Estimate {
            lock_ms: 0,
            total_ms: 0,
        },
        refusal: Some(why.to_string()),
        exposes: Vec::new(),
        in_place_max_bytes: None,
    }
}

/// Consecutive shadow steps on one table become one step (one copy, one cutover). Also
/// returns, for each step number before the merge (1-based), its number after it.
fn merge_shadow_steps_numbered(steps: Vec<Step>) -> (Vec<Step>, Vec<usize>) {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut numbers = Vec::with_capacity(steps.len());
    for step in steps {
        if let Some(last) = out.last_mut() {
            if last.strategy == Strategy::Shadow
                && step.strategy == Strategy::Shadow
                && last.table == step.table
            {
                last.sql.extend(step.sql);
                last.description = format!("{}; {}", last.description, step.description);
                numbers.push(out.len());
                continue;
            }
        }
        out.push(step);
        numbers.push(out.len());
    }
    (out, numbers)
}

/// The step a `--to` plan's finding is about ("step 4" as its file).
fn step_of(f: &Finding) -> Option<usize> {
    f.location
        .file
        .as_deref()?
        .strip_prefix("step ")?
        .parse()
        .ok()
}

/// Findings name steps by their number before the merge ("handled: step 4 ...", and "step 4"
/// as the file of a `--to` plan's findings): renumber them to the plan's steps.
fn renumber(findings: &mut [Finding], numbers: &[usize]) {
    let map = |n: usize| numbers.get(n.wrapping_sub(1)).copied().unwrap_or(n);
    let fix = |text: &str| -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("step ") {
            out.push_str(&rest[..at + 5]);
            rest = &rest[at + 5..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<usize>() {
                out.push_str(&map(n).to_string());
                rest = &rest[digits.len()..];
            }
        }
        out.push_str(rest);
        out
    };
    for f in findings {
        if f.help.starts_with("handled: step ") {
            f.help = fix(&f.help);
        }
        if let Some(file) = f
            .location
            .file
            .as_deref()
            .filter(|x| x.starts_with("step "))
        {
            f.location.file = Some(fix(file));
        }
    }
}

/// Findings about how a file is run rather than what it changes: the executor takes care of
/// them for every step (timeouts with retries, progress recorded per step).
const EXECUTOR_HANDLES: &[&str] = &[
    "require-lock-timeout",
    "require-statement-timeout",
    "prefer-robust-stmts",
];

/// Findings whose hazard the step's strategy removes are kept, as notes saying so.
fn mark_handled(
    findings: &mut [Finding],
    indexes: &[usize],
    step: &Step,
    rewritten: bool,
    number: usize,
) {
    for &i in indexes {
        let f = &mut findings[i];
        let handled = match (f.remedy, step.strategy) {
            _ if step.strategy == Strategy::Refused => None,
            _ if EXECUTOR_HANDLES.contains(&f.name.as_str()) => Some(
                "runs under tandem's lock_timeout and statement_timeout, retried with backoff, and is recorded when done so a re-run resumes after it",
            ),
            (Remedy::Shadow, Strategy::Shadow) => Some("runs it as a shadow-table migration: no long lock on the table"),
            (Remedy::Shadow, Strategy::Online) if step.in_place_max_bytes.is_some() => Some("rewrites the table in place: it is small, so the lock is brief, and apply refuses the step if the table has grown past the limit since"),
            (Remedy::Online, Strategy::Online) if rewritten => Some("runs it in its online form"),
            _ => None,
        };
        if let Some(how) = handled {
            f.severity = Severity::Info;
            f.help = format!("handled: step {number} {how}");
        }
    }
}

fn locks_of(sql: &[String], target: &Target<'_>) -> Vec<Lock> {
    let joined = sql.join(";\n") + ";";
    let report = lint(
        &joined,
        &LintOptions {
            pg_version: target.pg_version,
            live: Some(target.live),
            file: None,
        },
    );
    merge_locks(report.statements.into_iter().flat_map(|s| s.locks))
}

/// The strongest lock per object, in a stable order.
fn merge_locks(locks: impl Iterator<Item = Lock>) -> Vec<Lock> {
    let mut out: Vec<Lock> = Vec::new();
    for lock in locks {
        match out.iter_mut().find(|l| l.object == lock.object) {
            Some(existing) => existing.mode = existing.mode.max(lock.mode),
            None => out.push(lock),
        }
    }
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

fn estimate_online(target: &Target<'_>, sql: &[String], locks: &[Lock]) -> Estimate {
    let text = sql.join("\n").to_ascii_uppercase();
    let bytes_of = |object: &str| {
        target
            .live
            .tables
            .values()
            .find(|t| t.name.display_plain() == object)
            .and_then(|t| t.stats)
            .map_or(0, |s| s.total_bytes.max(0) as u64)
    };
    let bytes: u64 = locks.iter().map(|l| bytes_of(&l.object)).max().unwrap_or(0);
    let blocking = locks.iter().any(|l| l.mode.blocks_traffic());
    let work = if text.contains("CREATE INDEX")
        || text.contains("CREATE UNIQUE INDEX")
        || text.contains("REINDEX")
    {
        // A concurrent build scans the table twice.
        2 * ms(bytes, INDEX_BUILD_BYTES_PER_SEC)
    } else if text.contains("VALIDATE CONSTRAINT") {
        ms(bytes, SCAN_BYTES_PER_SEC)
    } else {
        0
    };
    let lock_ms = if !blocking {
        0
    } else if text.contains("CONCURRENTLY") || text.contains("VALIDATE") {
        CATALOG_LOCK_MS
    } else {
        CATALOG_LOCK_MS + work
    };
    Estimate {
        lock_ms,
        total_ms: work.max(lock_ms) + CATALOG_LOCK_MS,
    }
}

fn ms(bytes: u64, per_sec: u64) -> u64 {
    bytes.saturating_mul(1000) / per_sec
}

/// The statement's first line, squeezed, for a step's description.
fn describe(sql: &str) -> String {
    let squeezed: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if squeezed.len() > 100 {
        let mut cut = 97;
        while !squeezed.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &squeezed[..cut])
    } else {
        squeezed
    }
}
