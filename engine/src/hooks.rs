//! The seam through which a running `tandem proxy` holds client traffic at the instant of a
//! swap. The engine calls [`CutoverHold::hold`] before each cutover (or rollback) attempt and
//! [`CutoverHold::release`] after it, whatever its outcome. Without a proxy, [`NoHold`] does
//! nothing and the swap relies on its short `lock_timeout` alone; [`ProxyHold`] asks the
//! registered proxies through the database (the engine never calls a proxy directly).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgtls::Endpoint;
use tokio_postgres::Client;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait CutoverHold: Send + Sync {
    /// Ask every proxy to stop starting transactions on `tables` and to acknowledge. `Ok(true)`
    /// when all acknowledged in time; `Ok(false)` when some did not (the engine then makes a
    /// plain `lock_timeout` attempt, never an unsafe one).
    fn hold<'a>(
        &'a self,
        migration: i64,
        tables: &'a [String],
        deadline: Duration,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// Let held traffic go. Called after every `hold`, whether the swap committed or not.
    fn release(&self, migration: i64) -> BoxFuture<'_, ()>;
    /// What the last `hold` found, for the attempt's record; `None` when there is nothing to
    /// say (no proxy was asked).
    fn last_report(&self) -> Option<HoldReport> {
        None
    }
}

/// The outcome of one hold, as the swap records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldReport {
    /// Proxies with a fresh heartbeat when the hold was asked.
    pub proxies: usize,
    /// Of them, those that acknowledged with every session idle.
    pub held: usize,
    pub waited: Duration,
    /// For people: held by all, or why the attempt fell back to a plain one.
    pub detail: String,
}

/// No proxy: nothing to hold.
pub struct NoHold;

impl CutoverHold for NoHold {
    fn hold<'a>(
        &'a self,
        _m: i64,
        _t: &'a [String],
        _d: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        // No proxy acknowledged a hold: the swap relies on its lock_timeout alone.
        Box::pin(async { Ok(false) })
    }
    fn release(&self, _m: i64) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The longest the engine waits for the proxies' acknowledgements. Proxies end a hold by
/// themselves at their `hold_max` (2 s by default), and the swap must fit inside it.
pub const HOLD_WAIT: Duration = Duration::from_secs(1);
/// How often the acknowledgements are re-read when no notification came: a safety net for a
/// notification lost with a connection; the notifications do the real waking.
const RECHECK: Duration = Duration::from_millis(50);

/// Holds traffic through every live `tandem proxy` registered in `tandem.proxies`.
///
/// Protocol (see `migrations/0003_proxy.sql` and `0005_hardening.sql`): `LISTEN
/// tandem_proxy_ack`, then a `hold` row in `tandem.proxy_signals` with `NOTIFY tandem_proxy
/// '<seq>'` (a doorbell: proxies act on the row, which only tandem's role can write, never
/// on a payload, which any role can send); each proxy answers with a row in
/// `tandem.proxy_acks` and `NOTIFY tandem_proxy_ack '<token>'`. The engine waits on the
/// notifications (driven from its own connection's message stream) rather than polling the
/// table every few milliseconds: a wake-up is immediate and the server does no work while
/// nothing happens; the table is read after each notification (it is the truth, the
/// notification only says "look"), and every 50 ms in case one was lost.
///
/// With no live proxy, `hold` answers `Ok(false)` at once without notifying anyone: a
/// database without proxies sees exactly the plain swap it saw before.
pub struct ProxyHold {
    config: Endpoint,
    conn: tokio::sync::Mutex<Option<Listener>>,
    /// The token of the hold to release.
    pending: Mutex<Option<(i64, String)>>,
    last: Mutex<Option<HoldReport>>,
}

/// The hold's own connection, listening on `tandem_proxy_ack`.
struct Listener {
    client: Client,
    /// Its notifications (the acknowledgements' tokens).
    acks: coordination::Pump,
}

impl ProxyHold {
    /// `config`: the executor's connection settings (the hold connects on first use).
    pub fn new(config: impl Into<Endpoint>) -> ProxyHold {
        let mut config: Endpoint = config.into();
        // "tandem ..." sessions are not counted as the database's load by the executor.
        config.application_name(format!("tandem hold (pid {})", std::process::id()));
        ProxyHold {
            config,
            conn: tokio::sync::Mutex::new(None),
            pending: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Listener, tokio_postgres::Error> {
        let (client, acks) = coordination::Pump::connect(&self.config).await?;
        client
            .batch_execute(&format!(
                "{}; LISTEN {}",
                crate::executor::PINNED_SEARCH_PATH,
                coordination::ACK_CHANNEL
            ))
            .await?;
        Ok(Listener { client, acks })
    }

    async fn hold_inner(&self, migration: i64, wait: Duration) -> Result<HoldReport, String> {
        let t0 = Instant::now();
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_none_or(|l| l.client.is_closed()) {
            *guard = None;
            *guard = Some(
                self.connect()
                    .await
                    .map_err(|e| format!("cannot reach the database to ask the proxies: {e}"))?,
            );
        }
        let l = guard.as_mut().expect("connected above");
        let live: Vec<String> = l
            .client
            .query(
                // A proxy heartbeats every second; one silent for 5 s is gone.
                "SELECT id FROM tandem.proxies WHERE heartbeat_at > now() - interval '5 seconds' ORDER BY id",
                &[],
            )
            .await
            .map_err(|e| format!("cannot read tandem.proxies: {e}"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if live.is_empty() {
            return Ok(HoldReport {
                proxies: 0,
                held: 0,
                waited: t0.elapsed(),
                detail: "no live proxy".into(),
            });
        }
        while l.acks.notes.try_recv().is_ok() {} // answers to earlier holds
        let token = token();
        // Answers of holds an executor never released (it was killed) are of no use.
        let _ = l
            .client
            .execute(
                "DELETE FROM tandem.proxy_acks WHERE at < now() - interval '1 minute'",
                &[],
            )
            .await;
        let _ = l
            .client
            .execute(
                "DELETE FROM tandem.proxy_signals WHERE at < now() - interval '1 minute'",
                &[],
            )
            .await;
        *self.pending.lock().expect("not poisoned") = Some((migration, token.clone()));
        let max_ms = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
        l.client
            .execute(SIGNAL, &[&"hold", &migration, &token, &Some(max_ms)])
            .await
            .map_err(|e| format!("cannot signal the proxies: {e}"))?;
        let until = tokio::time::Instant::now() + wait;
        loop {
            let acks: Vec<(String, bool)> = l
                .client
                .query(
                    "SELECT proxy_id, held FROM tandem.proxy_acks WHERE token = $1",
                    &[&token],
                )
                .await
                .map_err(|e| format!("cannot read tandem.proxy_acks: {e}"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let held = live
                .iter()
                .filter(|p| acks.iter().any(|(a, h)| a == *p && *h))
                .count();
            let refused: Vec<&str> = acks
                .iter()
                .filter(|(_, h)| !h)
                .map(|(a, _)| a.as_str())
                .collect();
            let report = |detail: String| HoldReport {
                proxies: live.len(),
                held,
                waited: t0.elapsed(),
                detail,
            };
            if held == live.len() {
                return Ok(report(format!(
                    "held by {} prox{} in {} ms",
                    live.len(),
                    if live.len() == 1 { "y" } else { "ies" },
                    t0.elapsed().as_millis()
                )));
            }
            if !refused.is_empty() {
                return Ok(report(format!(
                    "fell back to a plain attempt: prox{} {} could not get every session idle in time",
                    if refused.len() == 1 { "y" } else { "ies" },
                    refused.join(", ")
                )));
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                let silent: Vec<&str> = live
                    .iter()
                    .filter(|p| !acks.iter().any(|(a, _)| a == *p))
                    .map(String::as_str)
                    .collect();
                return Ok(report(format!(
                    "fell back to a plain attempt: no answer within {} ms from prox{} {}",
                    wait.as_millis(),
                    if silent.len() == 1 { "y" } else { "ies" },
                    silent.join(", ")
                )));
            }
            // Woken by an acknowledgement (any token: the table says whose), or re-check.
            let _ = tokio::time::timeout((until - now).min(RECHECK), l.acks.notes.recv()).await;
        }
    }
}

/// A signal to the proxies and its doorbell (`coordination::WRITE`).
const SIGNAL: &str = coordination::WRITE;

/// 128 random bits, hex.
fn token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CutoverHold for ProxyHold {
    fn hold<'a>(
        &'a self,
        migration: i64,
        _tables: &'a [String],
        deadline: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let wait = deadline.min(HOLD_WAIT);
            *self.last.lock().expect("not poisoned") = None;
            // A server that stops answering must not stall the swap: the whole exchange is
            // bounded (connect and queries included).
            let outcome = tokio::time::timeout(
                wait + Duration::from_secs(2),
                self.hold_inner(migration, wait),
            )
            .await
            .unwrap_or_else(|_| Err("the database did not answer the hold in time".into()));
            match outcome {
                Ok(report) => {
                    let all = report.proxies > 0 && report.held == report.proxies;
                    *self.last.lock().expect("not poisoned") = Some(report);
                    Ok(all)
                }
                Err(e) => {
                    // A broken connection is made again at the next hold.
                    *self.conn.lock().await = None;
                    Err(e)
                }
            }
        })
    }

    fn release(&self, migration: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let pending = self.pending.lock().expect("not poisoned").take();
            let Some((m, token)) = pending.filter(|(m, _)| *m == migration) else {
                return;
            };
            let guard = self.conn.lock().await;
            let Some(l) = guard.as_ref() else { return };
            // Best effort: a proxy that misses it ends its hold by itself at its hold_max.
            let release = async {
                let _ = l
                    .client
                    .execute(SIGNAL, &[&"release", &m, &token, &None::<i32>])
                    .await;
                let _ = l
                    .client
                    .execute("DELETE FROM tandem.proxy_acks WHERE token = $1", &[&token])
                    .await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), release).await;
        })
    }

    fn last_report(&self) -> Option<HoldReport> {
        self.last
            .lock()
            .expect("not poisoned")
            .clone()
            .filter(|r| r.proxies > 0)
    }
}
