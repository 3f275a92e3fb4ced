//! The proxy's side of the coordination with the executor, through the database only
//! (`migrations/0003_proxy.sql` is the contract): registration in `tandem.proxies` with a
//! heartbeat every second, `LISTEN tandem_proxy` for holds, releases and mirror-target
//! changes, and the acknowledgement of each hold in `tandem.proxy_acks`.
//!
//! A notification is only a doorbell: the proxy acts on the rows of `tandem.proxy_signals`,
//! which only tandem's role can write (`migrations/0005_hardening.sql`), never on a payload,
//! which any role of the database can send. A notification that names no new signal is
//! counted (`tandem_proxy_control_notifications_ignored_total`) and changes nothing.
//!
//! The proxy works as a plain pass-through without any of it: when tandem's bookkeeping is
//! not installed it says so once and looks again every 10 s; when the upstream goes away it
//! reconnects with backoff. A hold in progress then ends by itself at `hold_max` (the
//! traffic module guarantees it), so a lost control connection never holds clients longer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coordination::{Pump, Signal};
use tokio_postgres::Client;

use crate::error::Error;
use crate::metrics;
use crate::mirror::Mirror;
use crate::traffic::Traffic;
use crate::upstream::Upstream;

pub struct ControlArgs {
    pub upstream: Upstream,
    pub password: Option<String>,
    pub proxy_id: String,
    pub listen: String,
    pub traffic: Arc<Traffic>,
    pub mirror: Mirror,
}

const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often to look again for tandem's bookkeeping when it is not installed.
const NOT_INSTALLED_RETRY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Every statement of the control connection: a server that stops answering is treated as
/// gone (and reconnected), never waited on forever.
const STATEMENT: Duration = Duration::from_secs(5);

/// Run until `shutdown`: register in tandem.proxies, heartbeat every second, LISTEN on
/// `tandem_proxy`, hold/ack/release, tell the mirror when targets change; deregister at the end.
pub async fn run(args: ControlArgs, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    let mut said_not_installed = false;
    loop {
        let ended = session(&args, shutdown.as_mut()).await;
        let state = &args.traffic.metrics().control_state;
        state.store(
            match ended {
                Ended::NotInstalled => metrics::CONTROL_NOT_INSTALLED,
                _ => metrics::CONTROL_DOWN,
            },
            std::sync::atomic::Ordering::Relaxed,
        );
        let wait = match ended {
            Ended::Shutdown => return,
            Ended::NotInstalled => {
                if !said_not_installed {
                    tracing::info!(
                        upstream = %args.upstream.describe(),
                        "tandem's bookkeeping is not installed in the upstream database: passing traffic through without cutover holds or dual reads; looking again every 10 s"
                    );
                    said_not_installed = true;
                }
                NOT_INSTALLED_RETRY
            }
            Ended::Lost { error, registered } => {
                if registered {
                    // It worked before: start the backoff again.
                    backoff = Duration::from_millis(100);
                    said_not_installed = false;
                }
                tracing::warn!(
                    upstream = %args.upstream.describe(),
                    %error,
                    retry_ms = backoff.as_millis() as u64,
                    "control connection lost; holds and target reloads wait until it is back"
                );
                let b = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                b
            }
        };
        tokio::select! {
            _ = shutdown.as_mut() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

enum Ended {
    Shutdown,
    NotInstalled,
    Lost { error: String, registered: bool },
}

/// The control connection and its notifications.
struct Conn {
    client: Client,
    pump: Pump,
}

async fn connect(args: &ControlArgs) -> Result<Conn, Error> {
    let config = args.upstream.pg_config(
        args.password.as_deref(),
        &format!("tandem proxy control {}", args.proxy_id),
    );
    let (client, pump) = Pump::connect(&config)
        .await
        .map_err(|e| Error::Upstream(format!("connect: {e}")))?;
    Ok(Conn { client, pump })
}

/// How long a notification to this session may take to come back.
const PROBE: Duration = Duration::from_secs(2);

/// Whether a notification sent on a channel this session listens on comes back to it. It
/// does not when `--upstream` is a pooler in transaction mode (the LISTEN stays on one server
/// connection, the next statement runs on another): then holds could never reach this
/// proxy, and it says to set `control_upstream`.
async fn listen_reaches(conn: &mut Conn) -> Result<(), Error> {
    let channel = format!("tandem_probe_{:016x}", rand::random::<u64>());
    let payload = format!("probe {:016x}", rand::random::<u64>());
    timed(
        "listen",
        conn.client.batch_execute(&format!("LISTEN {channel}")),
    )
    .await?;
    timed(
        "notify",
        conn.client
            .execute("SELECT pg_catalog.pg_notify($1, $2)", &[&channel, &payload]),
    )
    .await?;
    let arrived = tokio::time::timeout(PROBE, async {
        while let Some(note) = conn.pump.notes.recv().await {
            if note == payload {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    timed(
        "unlisten",
        conn.client.batch_execute(&format!("UNLISTEN {channel}")),
    )
    .await?;
    if arrived {
        Ok(())
    } else {
        Err(Error::Upstream(format!(
            "a notification this session listened for did not come back within {} s: --upstream looks like a pooler in transaction mode, which carries neither LISTEN nor session settings; set control_upstream in the proxy's config to PostgreSQL itself (clients keep going through --upstream)",
            PROBE.as_secs()
        )))
    }
}

/// `op` with the statement time limit, its error as text.
async fn timed<T>(
    what: &str,
    op: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(STATEMENT, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Upstream(format!("{what}: {e}"))),
        Err(_) => Err(Error::Upstream(format!(
            "{what}: no answer within {} s",
            STATEMENT.as_secs()
        ))),
    }
}

/// One connection's life: returns when it is lost, tandem is not installed, or on shutdown.
async fn session<S: Future<Output = ()>>(
    args: &ControlArgs,
    mut shutdown: std::pin::Pin<&mut S>,
) -> Ended {
    let lost = |error: Error, registered: bool| Ended::Lost {
        error: error.to_string(),
        registered,
    };
    let mut conn = tokio::select! {
        _ = shutdown.as_mut() => return Ended::Shutdown,
        c = connect(args) => match c {
            Ok(c) => c,
            Err(e) => return lost(e, false),
        },
    };
    let installed = timed(
        "look for tandem's bookkeeping",
        conn.client
            .query_one("SELECT to_regclass('tandem.proxies') IS NOT NULL", &[]),
    )
    .await;
    match installed {
        Ok(row) if row.get::<_, bool>(0) => {}
        Ok(_) => return Ended::NotInstalled,
        Err(e) => return lost(e, false),
    }
    // Before any session setting: through a transaction-mode pooler, LISTEN and settings
    // stay on a server connection that other clients get next.
    if let Err(e) = listen_reaches(&mut conn).await {
        return lost(e, false);
    }
    // LISTEN first: a hold notified between the registration and the LISTEN would be missed.
    // The session's own statements resolve names in pg_catalog first and nowhere an
    // application role can create objects.
    if let Err(e) = timed(
        "listen",
        conn.client.batch_execute(&format!(
            "SET search_path = pg_catalog, pg_temp; LISTEN {}",
            coordination::PROXY_CHANNEL
        )),
    )
    .await
    {
        return lost(e, false);
    }
    if let Err(e) = register(args, &conn.client).await {
        return lost(e, false);
    }
    // Signals written before this proxy listened are history.
    let mut last = match timed(
        "read the newest signal",
        conn.client.query_one(
            "SELECT coalesce(max(seq), 0) FROM tandem.proxy_signals",
            &[],
        ),
    )
    .await
    {
        Ok(row) => row.get::<_, i64>(0),
        Err(e) => return lost(e, false),
    };
    tracing::info!(proxy_id = %args.proxy_id, "registered with tandem: cutover holds and dual reads are on");
    args.traffic.metrics().control_state.store(
        metrics::CONTROL_REGISTERED,
        std::sync::atomic::Ordering::Relaxed,
    );
    // The targets may have changed while this proxy was not listening.
    args.mirror.reload();

    // Holds this proxy acknowledged as held, by token, until released.
    let mut holds: HashMap<String, u64> = HashMap::new();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => {
                // Deregister, so executors stop counting this proxy at once.
                let _ = timed(
                    "deregister",
                    conn.client.execute("DELETE FROM tandem.proxies WHERE id = $1", &[&args.proxy_id]),
                )
                .await;
                tracing::info!(proxy_id = %args.proxy_id, "deregistered from tandem");
                return Ended::Shutdown;
            }
            _ = heartbeat.tick() => {
                match timed(
                    "heartbeat",
                    conn.client.execute(
                        "UPDATE tandem.proxies SET heartbeat_at = now() WHERE id = $1",
                        &[&args.proxy_id],
                    ),
                )
                .await
                {
                    // Someone removed the row (a cleanup): register again.
                    Ok(0) => {
                        if let Err(e) = register(args, &conn.client).await {
                            return lost(e, true);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return lost(e, true),
                }
                // No hold is on: those the executor never released ended by themselves.
                if !args.traffic.is_held() {
                    holds.clear();
                }
                // A doorbell lost with a connection: the rows are the truth.
                if let Err(e) = follow(args, &conn.client, &mut holds, &mut last).await {
                    return lost(e, true);
                }
            }
            note = conn.pump.notes.recv() => {
                let Some(payload) = note else {
                    return lost(Error::Upstream("the server closed the connection".into()), true);
                };
                if let Err(e) = follow(args, &conn.client, &mut holds, &mut last).await {
                    return lost(e, true);
                }
                if coordination::doorbell(&payload).is_none_or(|seq| seq > last) {
                    args.traffic.metrics().control_ignored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(payload, "a notification on tandem_proxy named no signal of tandem's: ignored");
                }
            }
        }
    }
}

async fn register(args: &ControlArgs, client: &Client) -> Result<(), Error> {
    timed(
        "register",
        client.execute(
            "INSERT INTO tandem.proxies (id, host, pid, listen) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
                 listen = EXCLUDED.listen, started_at = now(), heartbeat_at = now()",
            &[
                &args.proxy_id,
                &hostname(),
                &(std::process::id() as i32),
                &args.listen,
            ],
        ),
    )
    .await
    .map(|_| ())
}

/// This machine's name, for people reading tandem.proxies.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Act on the signals written after `last`, in order; `last` moves to the newest.
async fn follow(
    args: &ControlArgs,
    client: &Client,
    holds: &mut HashMap<String, u64>,
    last: &mut i64,
) -> Result<(), Error> {
    let rows = timed(
        "read the signals",
        client.query(coordination::READ, &[&*last]),
    )
    .await?;
    for row in rows {
        *last = row.get(0);
        let kind: String = row.get(1);
        match Signal::of_row(&kind, row.get(2), row.get(3), row.get(4), row.get(5)) {
            Some(signal) => handle(args, client, holds, signal).await?,
            None => tracing::debug!(kind, "signal skipped (a hold given up, or unknown)"),
        }
    }
    Ok(())
}

/// Act on one signal. `Err` only when the connection failed.
async fn handle(
    args: &ControlArgs,
    client: &Client,
    holds: &mut HashMap<String, u64>,
    signal: Signal,
) -> Result<(), Error> {
    match signal {
        Signal::Targets => {
            // Sent in the swap's own transaction too: sessions re-prepare before their next
            // transaction even when no hold was acknowledged.
            args.traffic.schema_changed();
            args.mirror.reload();
            Ok(())
        }
        Signal::Release { token } => {
            if let Some(g) = holds.remove(&token) {
                args.traffic.release(g);
                tracing::debug!(token, "cutover hold released");
            }
            Ok(())
        }
        Signal::Hold {
            migration,
            token,
            max,
        } => {
            let traffic = &args.traffic;
            let g = traffic.hold();
            // Half of what the executor waits (and of hold_max): the answer must reach it,
            // and the swap must commit, before either side gives up.
            let wait = max.min(traffic.hold_max()) / 2;
            let all_idle = traffic.wait_idle(wait).await;
            if all_idle {
                holds.insert(token.clone(), g);
            } else {
                // Running transactions did not finish in time: let the waiting ones go now
                // rather than at hold_max; the executor makes a plain attempt.
                traffic.release(g);
            }
            tracing::info!(
                migration,
                held = all_idle,
                busy = traffic.busy(),
                "cutover hold {}",
                if all_idle {
                    "acknowledged: every session idle"
                } else {
                    "refused: sessions still inside a transaction"
                }
            );
            // One statement, one transaction: the notification is delivered when the row
            // is visible.
            timed(
                "acknowledge the hold",
                client.execute(
                    coordination::ACKNOWLEDGE,
                    &[&token, &args.proxy_id, &all_idle],
                ),
            )
            .await
            .map(|_| ())
        }
    }
}
