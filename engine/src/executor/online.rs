//! The plan's online steps: statements PostgreSQL runs without a long lock (CONCURRENTLY
//! builds, NOT VALID constraints and their validation, catalog-only changes). Each runs under
//! the DDL lock timeout with retries; `tandem.migrations.online_done` counts the steps done,
//! so a resumed executor skips them.

use planner::plan::inverse::{inverse_of_step, Inverse};
use planner::plan::{Step, Strategy};

use super::{backoff, is_lock_timeout, Event, Executor};
use crate::error::EngineError;
use crate::state;

/// Index of the first shadow step (online steps before it run in prepare, the rest after
/// cutover).
pub(crate) fn first_shadow(steps: &[Step]) -> usize {
    steps
        .iter()
        .position(|s| s.strategy == Strategy::Shadow)
        .unwrap_or(steps.len())
}

/// Run the online steps in `range` that have not run yet.
///
/// A statement commits together with the count that says it ran (`online_done`, and
/// `online_statements_done` within a step), so a process killed anywhere resumes with the next
/// statement and never runs a committed one again. The exceptions are the statements
/// PostgreSQL runs outside any transaction (`CONCURRENTLY`): they are made safe to run again
/// instead (an interrupted index build is dropped and built again; a finished one is kept).
pub(crate) async fn run(
    ex: &mut Executor,
    steps: &[Step],
    range: std::ops::Range<usize>,
    done: i32,
) -> Result<(), EngineError> {
    // `online_done` counts online steps in plan order.
    let mut seen = 0i32;
    for (i, step) in steps.iter().enumerate() {
        if step.strategy != Strategy::Online {
            continue;
        }
        seen += 1;
        if !range.contains(&i) || seen <= done {
            continue;
        }
        if let (Some(max), Some(table)) = (step.in_place_max_bytes, &step.table) {
            // Planned in place for a small table: not if it has grown since.
            let bytes: i64 = ex
                .client
                .query_one(
                    "SELECT coalesce(pg_total_relation_size(to_regclass($1)), 0)",
                    &[&table.to_string()],
                )
                .await
                .map_err(EngineError::sql("read the table's size"))?
                .get(0);
            if bytes.max(0) as u64 > max {
                return Err(EngineError::refused(
                    format!(
                        "step {} rewrites {} in place because it was under {max} bytes when planned; it is {bytes} bytes now, and a rewrite in place would hold its lock too long",
                        i + 1,
                        table.display_plain()
                    ),
                    "make a new plan (`tandem plan`), which runs the rewrite as a shadow migration, and submit it",
                ));
            }
        }
        ex.emit(Event::Note(format!(
            "online step {}: {}",
            i + 1,
            step.description
        )));
        let mark_step = format!(
            "UPDATE tandem.migrations SET online_done = {seen}, online_statements_done = 0, updated_at = now() WHERE id = {}",
            ex.id
        );
        if step.transactional && step.sql.len() > 1 {
            // One transaction (a multi-statement query runs as one): a swap of a constraint,
            // or a view dropped and created again around an ALTER, is never seen half-done;
            // the count commits with it.
            let mut sql = step.sql.clone();
            sql.push(mark_step);
            run_statement(ex, &sql.join(";\n"), Commit::Along).await?;
        } else {
            let started: i32 = ex
                .client
                .query_one(
                    "SELECT online_statements_done FROM tandem.migrations WHERE id = $1",
                    &[&ex.id],
                )
                .await
                .map_err(EngineError::sql("read the online step's progress"))?
                .get(0);
            let last = step.sql.len();
            for (j, sql) in step.sql.iter().enumerate().skip(started.max(0) as usize) {
                if j > 0 {
                    super::failpoint("online_statement").await;
                }
                let mark = if j + 1 == last {
                    mark_step.clone()
                } else {
                    format!(
                        "UPDATE tandem.migrations SET online_statements_done = {}, updated_at = now() WHERE id = {}",
                        j + 1,
                        ex.id
                    )
                };
                run_statement(ex, sql, Commit::With(&mark)).await?;
            }
        }
        state::record(
            &ex.client,
            ex.id,
            "online",
            "step done",
            serde_json::json!({ "step": i + 1, "description": step.description }),
        )
        .await?;
    }
    Ok(())
}

/// How an online statement's progress count commits.
pub(crate) enum Commit<'a> {
    /// The statement carries it (a transactional step's statements, joined).
    Along,
    /// In one transaction with the statement, or right after it for a statement that
    /// PostgreSQL runs outside a transaction block.
    With(&'a str),
    /// Nothing to record (an inverse run by `rollback --online-steps`).
    Nothing,
}

pub(crate) async fn run_statement(
    ex: &mut Executor,
    sql: &str,
    commit: Commit<'_>,
) -> Result<(), EngineError> {
    let concurrent = concurrent_index_name(sql);
    // A CONCURRENTLY build killed half-way leaves an invalid index behind: drop it first.
    if let Some(name) = &concurrent {
        let invalid: bool = as_written(
            ex,
            "SELECT coalesce((SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)), false)",
            name,
        )
        .await
        .map_err(EngineError::sql("look for an invalid index left by an earlier run"))?;
        if invalid {
            ex.emit(Event::Note(format!(
                "dropping the invalid index {name} an interrupted run left"
            )));
            ex.client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .await
                .map_err(EngineError::sql("drop the invalid index"))?;
        } else {
            let exists = as_written(ex, "SELECT to_regclass($1) IS NOT NULL", name)
                .await
                .map_err(EngineError::sql("look for the index"))?;
            if exists {
                return mark_after(ex, &commit).await;
            }
        }
    }
    // A `DROP INDEX CONCURRENTLY` (without IF EXISTS) that finished before a kill, its count
    // not yet recorded: the index is gone, and running it again would fail (42704).
    if let Some(names) = concurrent_drop_names(sql) {
        let mut gone = true;
        for name in &names {
            let exists = as_written(ex, "SELECT to_regclass($1) IS NOT NULL", name)
                .await
                .map_err(EngineError::sql("look for the index"))?;
            gone &= !exists;
        }
        if gone {
            ex.emit(Event::Note(format!(
                "{} already dropped by an earlier run",
                names.join(", ")
            )));
            return mark_after(ex, &commit).await;
        }
    }
    // The plan's statements run under the database's own search_path (the names in them
    // resolve as they did when they were planned); tandem's own under its pinned one.
    let body = match (&commit, &concurrent) {
        (Commit::With(mark), None) if !outside_transactions(sql) => {
            format!("BEGIN;\n{sql};\n{mark};\nCOMMIT")
        }
        _ => sql.to_string(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let set = format!(
            "SET lock_timeout = '{}ms'; SET search_path TO DEFAULT",
            ex.opts.lock_timeout.as_millis().max(1)
        );
        ex.client
            .batch_execute(&set)
            .await
            .map_err(EngineError::sql("set the lock timeout"))?;
        let result = ex.client.batch_execute(&body).await;
        let reset = ex
            .client
            .batch_execute(&format!(
                "{}RESET lock_timeout; {}",
                if result.is_err() { "ROLLBACK; " } else { "" },
                super::PINNED_SEARCH_PATH
            ))
            .await;
        match result {
            Ok(()) => {
                reset.map_err(EngineError::sql("set tandem's search_path back"))?;
                if body == sql {
                    super::failpoint("online_unmarked").await;
                    return mark_after(ex, &commit).await;
                }
                return Ok(());
            }
            Err(e) if is_lock_timeout(&e) && attempt < ex.opts.cutover_attempts => {
                tokio::time::sleep(backoff(attempt, ex.opts.cutover_max_backoff)).await;
            }
            Err(e) => {
                return Err(EngineError::sql(format!(
                    "run the online statement `{}`",
                    sql.lines().next().unwrap_or(sql)
                ))(e))
            }
        }
    }
}

/// `query` (one boolean) about `name` as the plan's statement names it: resolved under the
/// database's default search_path, as the statement itself runs (tandem's sessions pin
/// theirs, which finds no index of the application's by an unqualified name).
async fn as_written(ex: &Executor, query: &str, name: &str) -> Result<bool, tokio_postgres::Error> {
    ex.client
        .batch_execute("SET search_path TO DEFAULT")
        .await?;
    let answer = ex.client.query_one(query, &[&name]).await;
    ex.client.batch_execute(super::PINNED_SEARCH_PATH).await?;
    Ok(answer?.get(0))
}

/// Record a statement's progress after it ran on its own.
async fn mark_after(ex: &Executor, commit: &Commit<'_>) -> Result<(), EngineError> {
    match commit {
        Commit::With(mark) => ex
            .client
            .batch_execute(mark)
            .await
            .map_err(EngineError::sql("record the online statement")),
        Commit::Along | Commit::Nothing => Ok(()),
    }
}

/// Statements PostgreSQL refuses inside a transaction block: the `CONCURRENTLY` forms (and
/// VACUUM, which a plan does not make). They run alone, and are safe to run again.
fn outside_transactions(sql: &str) -> bool {
    let Ok(tree) = pg_query::parse(sql, 0) else {
        return true;
    };
    tree.protobuf.nodes().iter().any(|(node, ..)| match node {
        pg_query::NodeRef::IndexStmt(s) => s.concurrent,
        pg_query::NodeRef::DropStmt(s) => s.concurrent,
        pg_query::NodeRef::ReindexStmt(s) => s.params.iter().any(|p| {
            matches!(&p.node, Some(pg_query::NodeEnum::DefElem(d)) if d.defname == "concurrently")
        }),
        pg_query::NodeRef::VacuumStmt(_) => true,
        pg_query::NodeRef::AlterTableStmt(s) => s.cmds.iter().any(|c| {
            matches!(&c.node, Some(pg_query::NodeEnum::AlterTableCmd(cmd))
                if cmd.subtype() == pg_query::protobuf::AlterTableType::AtDetachPartition
                    && matches!(&cmd.def, Some(d) if matches!(&d.node, Some(pg_query::NodeEnum::PartitionCmd(p)) if p.concurrent)))
        }),
        _ => false,
    })
}

/// The (qualified, as written) name of the index a `CREATE INDEX CONCURRENTLY` builds.
fn concurrent_index_name(sql: &str) -> Option<String> {
    let tree = pg_query::parse(sql, 0).ok()?;
    for (node, ..) in tree.protobuf.nodes() {
        if let pg_query::NodeRef::IndexStmt(stmt) = node {
            if stmt.concurrent && !stmt.idxname.is_empty() {
                let schema = stmt
                    .relation
                    .as_ref()
                    .map(|r| r.schemaname.clone())
                    .unwrap_or_default();
                let name = planner::ident::Ident::new(stmt.idxname.clone()).ok()?;
                return Some(if schema.is_empty() {
                    name.to_string()
                } else {
                    format!("{}.{name}", planner::ident::Ident::new(schema).ok()?)
                });
            }
        }
    }
    None
}

/// The indexes (qualified as written) a `DROP INDEX CONCURRENTLY` without `IF EXISTS` drops.
fn concurrent_drop_names(sql: &str) -> Option<Vec<String>> {
    let tree = pg_query::parse(sql, 0).ok()?;
    for (node, ..) in tree.protobuf.nodes() {
        if let pg_query::NodeRef::DropStmt(stmt) = node {
            if stmt.concurrent
                && !stmt.missing_ok
                && stmt.remove_type() == pg_query::protobuf::ObjectType::ObjectIndex
            {
                return stmt
                    .objects
                    .iter()
                    .map(|object| match &object.node {
                        Some(pg_query::NodeEnum::List(list)) => list
                            .items
                            .iter()
                            .map(|part| match &part.node {
                                Some(pg_query::NodeEnum::String(s)) => {
                                    planner::ident::Ident::new(s.sval.clone())
                                        .ok()
                                        .map(|i| i.to_string())
                                }
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()
                            .map(|parts| parts.join(".")),
                        _ => None,
                    })
                    .collect();
            }
        }
    }
    None
}

/// After a rollback (or an abandon): the plan's online steps that ran are not undone by the
/// swap. Without `undo`, say which, and how (`rollback --online-steps`) or why not; with it,
/// undo those that have an inverse (`planner::plan::inverse`), last step first, each
/// recorded. Statements are `IF EXISTS`, so running it again is harmless.
pub(crate) async fn after_rollback(
    ex: &mut Executor,
    steps: &[Step],
    done: i32,
    undo: bool,
) -> Result<(), EngineError> {
    let mut ran = Vec::new();
    let mut seen = 0;
    for (i, step) in steps.iter().enumerate() {
        if step.strategy != Strategy::Online {
            continue;
        }
        seen += 1;
        if seen <= done {
            ran.push((i, step));
        }
    }
    let id = ex.id;
    for (i, step) in ran.into_iter().rev() {
        let what = format!("online step {} ({})", i + 1, step.description);
        match inverse_of_step(&step.sql) {
            Inverse::NotNeeded => {}
            Inverse::Impossible(why) => {
                ex.emit(Event::Note(format!("{what} stays: {why}")));
            }
            Inverse::Statements(undo_sql) if !undo => {
                ex.emit(Event::Note(format!(
                    "{what} is not undone; `tandem rollback {id} --online-steps` runs: {}",
                    undo_sql.join("; ")
                )));
            }
            Inverse::Statements(undo_sql) => {
                ex.emit(Event::Note(format!("undoing {what}")));
                for sql in &undo_sql {
                    run_statement(ex, sql, Commit::Nothing).await?;
                }
                state::record(
                    &ex.client,
                    id,
                    "online",
                    "step undone",
                    serde_json::json!({ "step": i + 1, "description": step.description, "sql": undo_sql }),
                )
                .await?;
            }
        }
    }
    Ok(())
}
