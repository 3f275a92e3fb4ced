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
        if step.transactional && step.sql.len() > 1 {
            // One transaction (a multi-statement query runs as one): a swap of a constraint,
            // or a view dropped and created again around an ALTER, is never seen half-done.
            run_statement(ex, &step.sql.join(";\n"), true).await?;
        } else {
            for sql in &step.sql {
                run_statement(ex, sql, step.transactional).await?;
            }
        }
        ex.client
            .execute(
                "UPDATE tandem.migrations SET online_done = $2, updated_at = now() WHERE id = $1",
                &[&ex.id, &seen],
            )
            .await
            .map_err(EngineError::sql("record the online step"))?;
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

pub(crate) async fn run_statement(
    ex: &mut Executor,
    sql: &str,
    _transactional: bool,
) -> Result<(), EngineError> {
    // A CONCURRENTLY build killed half-way leaves an invalid index behind: drop it first.
    if let Some(name) = concurrent_index_name(sql) {
        let invalid: bool = ex
            .client
            .query_one(
                "SELECT coalesce((SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)), false)",
                &[&name],
            )
            .await
            .map_err(EngineError::sql("look for an invalid index left by an earlier run"))?
            .get(0);
        if invalid {
            ex.emit(Event::Note(format!(
                "dropping the invalid index {name} an interrupted run left"
            )));
            ex.client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .await
                .map_err(EngineError::sql("drop the invalid index"))?;
        } else {
            let exists: bool = ex
                .client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                .await
                .map_err(EngineError::sql("look for the index"))?
                .get(0);
            if exists {
                return Ok(());
            }
        }
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let set = format!(
            "SET lock_timeout = '{}ms'",
            ex.opts.lock_timeout.as_millis().max(1)
        );
        ex.client
            .batch_execute(&set)
            .await
            .map_err(EngineError::sql("set the lock timeout"))?;
        let result = ex.client.batch_execute(sql).await;
        let _ = ex.client.batch_execute("RESET lock_timeout").await;
        match result {
            Ok(()) => return Ok(()),
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
                    run_statement(ex, sql, false).await?;
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
