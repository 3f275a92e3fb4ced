//! The rows of `tandem.proxy_signals` and their doorbells.

use std::time::Duration;

/// What the executor asks of the proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Hold new transactions (migration, token, max_ms).
    Hold,
    /// End the hold of a token.
    Release,
    /// `tandem.mirror_targets` changed.
    Targets,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hold => "hold",
            Kind::Release => "release",
            Kind::Targets => "targets",
        }
    }
}

/// Write a signal (`$1` kind, `$2` migration, `$3` token, `$4` max_ms; NULLs where the kind
/// has none) and ring its doorbell, in one statement: the notification is delivered when
/// the row is visible.
pub const WRITE: &str = "WITH s AS (
         INSERT INTO tandem.proxy_signals (kind, migration_id, token, max_ms)
         VALUES ($1, $2, $3, $4) RETURNING seq)
     SELECT pg_notify('tandem_proxy', seq::text) FROM s";

/// The `targets` signal and its doorbell, with no parameter (it goes in a batch of
/// statements, and is delivered when their transaction commits).
pub const TARGETS: &str =
    "WITH s AS (INSERT INTO tandem.proxy_signals (kind) VALUES ('targets') RETURNING seq)
     SELECT pg_notify('tandem_proxy', seq::text) FROM s";

/// A proxy's answer to the hold of token `$1` (`$2` the proxy, `$3` whether every session is
/// idle), and its notification on the ack channel, in one statement.
pub const ACKNOWLEDGE: &str = "WITH ack AS (
         INSERT INTO tandem.proxy_acks (token, proxy_id, held) VALUES ($1, $2, $3)
         ON CONFLICT (token, proxy_id) DO UPDATE SET held = EXCLUDED.held, at = now()
         RETURNING token)
     SELECT pg_notify('tandem_proxy_ack', token) FROM ack";

/// The signals after `$1` (a seq), in order: seq, kind, migration, token, max_ms, and the
/// row's age in milliseconds (the input of [`Signal::of_row`]).
pub const READ: &str = "SELECT seq, kind, migration_id, token, max_ms,
        (extract(epoch FROM clock_timestamp() - at) * 1000)::int8
   FROM tandem.proxy_signals WHERE seq > $1 ORDER BY seq";

/// The seq a doorbell's payload names; `None` for a payload no executor sends (another
/// role's notification: it changes nothing, and the proxy counts it).
pub fn doorbell(payload: &str) -> Option<i64> {
    payload.parse::<i64>().ok().filter(|seq| *seq > 0)
}

/// A row of `tandem.proxy_signals`, as a proxy acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Hold new transactions, for at most `max` from now.
    Hold {
        migration: i64,
        token: String,
        max: Duration,
    },
    Release {
        token: String,
    },
    Targets,
}

impl Signal {
    /// The signal of a row (kind, migration, token, max_ms, its age in ms); `None` for a
    /// hold the executor has already given up on (older than its max), or a row this proxy
    /// does not understand (a newer tandem).
    pub fn of_row(
        kind: &str,
        migration: Option<i64>,
        token: Option<String>,
        max_ms: Option<i32>,
        age_ms: i64,
    ) -> Option<Signal> {
        match kind {
            "hold" => {
                let left = i64::from(max_ms?) - age_ms.max(0);
                (left > 0).then(|| Signal::Hold {
                    migration: migration.unwrap_or_default(),
                    token: token.unwrap_or_default(),
                    max: Duration::from_millis(left as u64),
                })
            }
            "release" => Some(Signal::Release { token: token? }),
            "targets" => Some(Signal::Targets),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_keeps_what_is_left_of_its_max() {
        assert_eq!(
            Signal::of_row("hold", Some(7), Some("ab12".into()), Some(1000), 200),
            Some(Signal::Hold {
                migration: 7,
                token: "ab12".into(),
                max: Duration::from_millis(800)
            })
        );
        assert_eq!(
            Signal::of_row("hold", Some(7), Some("ab12".into()), Some(1000), 1000),
            None
        );
        assert_eq!(
            Signal::of_row("release", Some(7), Some("ab12".into()), None, 5),
            Some(Signal::Release {
                token: "ab12".into()
            })
        );
        assert_eq!(Signal::of_row("later", None, None, None, 0), None);
    }

    #[test]
    fn only_a_positive_seq_is_a_doorbell() {
        assert_eq!(doorbell("42"), Some(42));
        for forged in ["", "hold 1 abc 2000", "-1", "0", "1e3", " 4"] {
            assert_eq!(doorbell(forged), None, "{forged:?}");
        }
    }
}
