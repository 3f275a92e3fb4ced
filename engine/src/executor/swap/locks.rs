//! The locks of a swap: every relation it will touch, taken up front in the order application
//! statements take them (`catalog/sql/swap_locks.sql` says why that order), each in the
//! weakest mode that covers what the swap does to it, all within one time budget, so an
//! attempt never makes clients wait longer than `lock_timeout` in total. And, when an attempt
//! fails, which lock it waited for and who held it; between attempts, a wait for a gap.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use planner::ident::QualName;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::error::EngineError;

const LOCK_SET: &str = include_str!("../../catalog/sql/swap_locks.sql");

/// How long a swap waits, holding locks, before PostgreSQL checks whether it is in a deadlock
/// (and ends the swap's transaction, never the application's) when tandem may set it.
pub(crate) const DEADLOCK_CHECK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    AccessShare,
    ShareRowExclusive,
    AccessExclusive,
}

impl Mode {
    fn from_strength(n: i32) -> Mode {
        match n {
            8 => Mode::AccessExclusive,
            6 => Mode::ShareRowExclusive,
            _ => Mode::AccessShare,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Mode::AccessShare => "ACCESS SHARE",
            Mode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Mode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// One relation the swap locks.
#[derive(Debug, Clone)]
pub(crate) struct Lock {
    pub(crate) oid: u32,
    name: QualName,
    /// `pg_class.relkind`.
    kind: char,
    owner: String,
    mode: Mode,
}

impl Lock {
    /// The statement that takes this lock and no other. `LOCK TABLE` on a view would also
    /// lock the view's tables, at once and in the view's order; a view is locked by
    /// giving it to its own owner instead, which locks the view alone (ACCESS EXCLUSIVE) and
    /// changes nothing.
    fn statement(&self) -> Result<String, EngineError> {
        if self.kind == 'v' && self.mode == Mode::AccessExclusive {
            return Ok(format!(
                "ALTER VIEW {} OWNER TO {}",
                self.name,
                crate::shadow::ident(&self.owner)?
            ));
        }
        Ok(format!(
            "LOCK TABLE ONLY {} IN {} MODE",
            self.name,
            self.mode.sql()
        ))
    }
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name.display_plain(), self.mode.sql())
    }
}

/// Where the tables that reference the table come in the order: before it (a child's
/// INSERT locks the child, then the parent for its key check) or after it (a transaction
/// that writes the parent, then a child, locks them in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    ChildrenFirst = 0,
    ChildrenLast = 1,
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::ChildrenFirst => "referencing tables before the table",
            Order::ChildrenLast => "the table before the referencing tables",
        })
    }
}

/// The locks for swapping each `(live, standby)` pair, in order: the pairs' lists joined, a
/// relation named twice kept at its first place with its strongest mode.
pub(crate) async fn plan(
    client: &impl GenericClient,
    pairs: &[(u32, u32)],
    order: Order,
) -> Result<Vec<Lock>, EngineError> {
    let mut out: Vec<Lock> = Vec::new();
    let children_last = order == Order::ChildrenLast;
    for &(live, standby) in pairs {
        let rows = client
            .query(LOCK_SET, &[&live, &standby, &children_last])
            .await
            .map_err(EngineError::sql("read what the swap must lock"))?;
        for r in rows {
            let kind: String = r.get("kind");
            let lock = Lock {
                oid: r.get("oid"),
                name: QualName::new(r.get::<_, &str>("schema"), r.get::<_, &str>("name")).map_err(
                    |e| {
                        EngineError::refused(
                            format!(
                                "a relation around the table has a name tandem cannot use ({e})"
                            ),
                            "rename it",
                        )
                    },
                )?,
                kind: kind.chars().next().unwrap_or('r'),
                owner: r.get("owner"),
                mode: Mode::from_strength(r.get("strength")),
            };
            match out.iter_mut().find(|l| l.oid == lock.oid) {
                Some(seen) => seen.mode = seen.mode.max(lock.mode),
                None => out.push(lock),
            }
        }
    }
    Ok(out)
}

/// Why the locks were not all granted.
#[derive(Debug, Clone)]
pub(crate) struct NotGranted {
    /// The lock waited for, e.g. `public.orders (ACCESS EXCLUSIVE)`.
    pub(crate) lock: String,
    pub(crate) oid: u32,
    /// "lock timeout", "deadlock", or the budget running out before the lock was asked for.
    pub(crate) cause: String,
    /// From the first lock asked for to the failure.
    pub(crate) waited: Duration,
}

impl fmt::Display for NotGranted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} not granted ({}, after {} ms)",
            self.lock,
            self.cause,
            self.waited.as_millis()
        )
    }
}

/// Whether this session may lower `deadlock_timeout` (a superuser, or on PostgreSQL 15+ a
/// role granted `SET` on it).
pub(crate) async fn can_check_deadlocks(client: &Client) -> bool {
    let Ok(row) = client
        .query_one(
            "SELECT current_setting('is_superuser')::bool, current_setting('server_version_num')::int",
            &[],
        )
        .await
    else {
        return false;
    };
    if row.get::<_, bool>(0) {
        return true;
    }
    if row.get::<_, i32>(1) < 150_000 {
        return false;
    }
    client
        .query_one(
            "SELECT has_parameter_privilege('deadlock_timeout', 'SET')",
            &[],
        )
        .await
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false)
}

/// Take every lock of `locks`, in order, all within `budget`: each waits at most what is left
/// of it. With `check_deadlocks`, a wait that closes a cycle with an application transaction
/// ends the swap's attempt after [`DEADLOCK_CHECK`] rather than at the budget's end. Returns
/// how long the locks took; afterwards, statements in `tx` wait at most what was left of the
/// budget (at least 10 ms) for any lock this list did not foresee.
pub(crate) async fn acquire(
    tx: &Transaction<'_>,
    locks: &[Lock],
    budget: Duration,
    check_deadlocks: bool,
) -> Result<Duration, Result<NotGranted, EngineError>> {
    let t0 = Instant::now();
    if check_deadlocks {
        tx.batch_execute(&format!(
            "SET LOCAL deadlock_timeout = '{}ms'",
            DEADLOCK_CHECK.as_millis()
        ))
        .await
        .map_err(|e| Err(EngineError::sql("set deadlock_timeout")(e)))?;
    }
    // Consecutive tables locked in one mode go in one `LOCK TABLE` (which takes them in the
    // order listed): a partitioned table's hundreds of partitions in one round trip, not one
    // each, which alone would spend the budget.
    let mut i = 0;
    while i < locks.len() {
        let lock = &locks[i];
        let group = if lock.kind == 'v' {
            1
        } else {
            locks[i..]
                .iter()
                .take_while(|l| l.kind != 'v' && l.mode == lock.mode)
                .count()
        };
        let what = match group {
            1 => lock.to_string(),
            n => format!("{lock} and {} more locked with it", n - 1),
        };
        let left = budget.saturating_sub(t0.elapsed());
        if left < Duration::from_millis(1) {
            return Err(Ok(NotGranted {
                lock: what,
                oid: lock.oid,
                cause: "the time budget ran out before it was asked for".into(),
                waited: t0.elapsed(),
            }));
        }
        let ms = left.as_millis().max(1);
        let sql = match group {
            1 => format!(
                "SET LOCAL lock_timeout = '{ms}ms'; {}",
                lock.statement().map_err(Err)?
            ),
            // lock_timeout bounds each lock's wait: the statement as a whole is bounded by
            // statement_timeout, so the group keeps to what is left of the budget too.
            _ => format!(
                "SET LOCAL lock_timeout = '{ms}ms'; SET LOCAL statement_timeout = '{ms}ms'; \
                 LOCK TABLE {} IN {} MODE; SET LOCAL statement_timeout TO DEFAULT",
                locks[i..i + group]
                    .iter()
                    .map(|l| format!("ONLY {}", l.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                lock.mode.sql()
            ),
        };
        if let Err(e) = tx.batch_execute(&sql).await {
            let cause = match e.code().map(|c| c.code()) {
                Some("55P03") => "lock timeout",
                Some("57014") => "lock timeout (the budget ran out within the group)",
                Some("40P01") => "deadlock with an application transaction, detected at once",
                _ => return Err(Err(EngineError::sql(format!("lock {what}"))(e))),
            };
            return Err(Ok(NotGranted {
                lock: what,
                oid: lock.oid,
                cause: cause.into(),
                waited: t0.elapsed(),
            }));
        }
        i += group;
    }
    let took = t0.elapsed();
    let left = budget.saturating_sub(took).max(Duration::from_millis(10));
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        left.as_millis()
    ))
    .await
    .map_err(|e| Err(EngineError::sql("set lock_timeout")(e)))?;
    Ok(took)
}

/// After the locks: the relations the swap must lock now, read again. One that was not in
/// `taken` (a view or a foreign key created meanwhile) would be locked late, out of order:
/// the attempt must start again.
pub(crate) async fn changed_since(
    tx: &Transaction<'_>,
    pairs: &[(u32, u32)],
    taken: &[Lock],
) -> Result<Option<String>, EngineError> {
    // The same relations and modes whatever the order.
    let now = plan(tx, pairs, Order::ChildrenFirst).await?;
    let had: HashSet<u32> = taken.iter().map(|l| l.oid).collect();
    Ok(now
        .iter()
        .find(|l| !had.contains(&l.oid) || taken.iter().any(|t| t.oid == l.oid && t.mode < l.mode))
        .map(|l| l.to_string()))
}

/// The sessions holding locks on relation `oid`, longest transaction first (at most five),
/// with the mode held and what they run (its literals replaced: `crate::redact`).
pub(crate) async fn holders(client: &Client, oid: u32) -> Result<String, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT format('pid %s (%s, %s held, transaction open %s, %s', a.pid,
                    coalesce(nullif(a.application_name, ''), 'no name'),
                    string_agg(DISTINCT l.mode, '+'),
                    date_trunc('millisecond', now() - a.xact_start), a.state),
                    a.query
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.relation = $1 AND l.granted AND a.pid <> pg_backend_pid()
              GROUP BY a.pid, a.application_name, a.xact_start, a.state, a.query
              ORDER BY a.xact_start LIMIT 5",
            &[&oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let query: Option<String> = r.get(1);
            format!(
                "{}: {})",
                r.get::<_, String>(0),
                crate::redact::query(query.as_deref().unwrap_or(""), 80)
            )
        })
        .collect::<Vec<_>>()
        .join("; "))
}

/// Wait, at most `max`, until no session holds a lock on any of `oids` inside a transaction
/// open longer than `older_than`: such a session would make the next attempt wait its whole
/// budget. Returns what was waited for, if anything.
pub(crate) async fn wait_for_gap(
    client: &Client,
    oids: &[u32],
    older_than: Duration,
    max: Duration,
) -> Result<Option<String>, tokio_postgres::Error> {
    let t0 = Instant::now();
    let mut first: Option<String> = None;
    loop {
        let row = client
            .query_one(
                "SELECT count(DISTINCT a.pid),
                        string_agg(DISTINCT format('pid %s (%s)', a.pid, l.relation::regclass), ', ')
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.relation = ANY($1) AND l.granted AND a.pid <> pg_backend_pid()
                    AND a.xact_start < now() - make_interval(secs => $2)",
                &[&oids, &older_than.as_secs_f64()],
            )
            .await?;
        let n: i64 = row.get(0);
        if n == 0 {
            return Ok(
                first.map(|w| format!("waited {} ms for {w} to end", t0.elapsed().as_millis()))
            );
        }
        if first.is_none() {
            first = row.get(1);
        }
        if t0.elapsed() >= max {
            return Ok(first.map(|w| {
                format!(
                    "{w} still in a transaction after {} ms; trying anyway",
                    t0.elapsed().as_millis()
                )
            }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
