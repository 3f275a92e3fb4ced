//! The audit log's hash chain, verified offline against signed checkpoints.
//!
//! Entry `n`'s hash is SHA-256 (hex) of `prev_hash + "\n" + n + "\n" + body`; entry 1's
//! `prev_hash` is [`GENESIS`]. PostgreSQL computes the same with
//! `encode(sha256(convert_to(prev_hash || E'\n' || seq::text || E'\n' || body, 'UTF8')), 'hex')`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::{DatabaseId, Kind, Signed, Statement};
use crate::keys::{PublicKey, SecretKey};
use crate::utc;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry as stored and exported.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    /// The exact JSON text that was hashed.
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of entry `seq` with this body after `prev_hash`.
pub fn entry_hash(prev_hash: &str, seq: i64, body: &str) -> String {
    let mut hasher = Sha256::new();
    let mut out = [0u8; 64];
    hash_into(&mut hasher, prev_hash, seq, body, &mut out);
    // Hex digits are ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

/// Hashes one entry into `out` as lower-case hex, leaving `hasher` reset: no allocation.
fn hash_into(hasher: &mut Sha256, prev_hash: &str, seq: i64, body: &str, out: &mut [u8; 64]) {
    let mut digits = [0u8; 20];
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(decimal(seq, &mut digits));
    hasher.update(b"\n");
    hasher.update(body.as_bytes());
    let digest = hasher.finalize_reset();
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(digest, out);
}

/// `n` in decimal, as PostgreSQL's `bigint::text` writes it.
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// A signed statement vouching that the log's first `size` entries end in `head`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub size: i64,
    pub head: String,
    pub signed: Signed,
}

impl Checkpoint {
    /// Signs the head of the log's first `size` entries.
    pub fn sign(
        database: &DatabaseId,
        size: i64,
        head: &str,
        now: i64,
        key: &SecretKey,
    ) -> Checkpoint {
        let mut st = Statement::new(Kind::Checkpoint, database, head, now);
        st.size = Some(size);
        Checkpoint {
            size,
            head: head.to_string(),
            signed: Signed::sign(st, key),
        }
    }

    /// Reads a checkpoint out of a signed statement (its signature is not checked here).
    pub fn from_signed(signed: Signed) -> Result<Checkpoint, Broken> {
        let st = &signed.statement;
        let Some(size) = st.size.filter(|&s| s >= 0) else {
            return Err(Broken {
                seq: None,
                reason: format!(
                    "the checkpoint signed by {} at {} has no entry count: it is not a checkpoint",
                    st.key_id,
                    utc(st.issued_at)
                ),
            });
        };
        if st.kind != Kind::Checkpoint {
            return Err(Broken {
                seq: None,
                reason: format!(
                    "a {} statement by {} was given as a checkpoint",
                    st.kind, st.key_id
                ),
            });
        }
        Ok(Checkpoint {
            size,
            head: st.subject.clone(),
            signed,
        })
    }
}

/// The log verified: how many entries, the head hash, how many checkpoints it matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub entries: usize,
    pub head: String,
    pub checkpoints: usize,
}

/// Where and how the log is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Broken {
    /// The first bad entry, when one entry is to blame.
    pub seq: Option<i64>,
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "the audit log is broken at entry {seq}: {}", self.reason)?,
            None => write!(f, "the audit log does not verify: {}", self.reason)?,
        }
        f.write_str(
            "; restore the log from a backup or an earlier export, and find out who could write \
             to the database",
        )
    }
}

/// Verifies the chain from entry 1 and every checkpoint against it. When `trusted_keys` is not
/// empty, each checkpoint must be signed by one of them.
pub fn verify(
    entries: &[Entry],
    checkpoints: &[Signed],
    trusted_keys: &[PublicKey],
) -> Result<Summary, Broken> {
    let mut hasher = Sha256::new();
    let mut computed = [0u8; 64];
    let mut prev: &str = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        let expected = i as i64 + 1;
        let broken = |seq: i64, reason: String| Broken {
            seq: Some(seq),
            reason,
        };
        if e.seq != expected {
            return Err(if e.seq > expected {
                let missing = if e.seq == expected + 1 {
                    format!("entry {expected} is missing")
                } else {
                    format!("entries {expected} to {} are missing", e.seq - 1)
                };
                broken(
                    expected,
                    format!(
                        "{missing} (the next entry is {}): removed from the log",
                        e.seq
                    ),
                )
            } else {
                broken(
                    expected,
                    format!("entry {expected} is expected, entry {} came instead: entries were duplicated or reordered", e.seq),
                )
            });
        }
        if e.prev_hash != prev {
            return Err(broken(
                e.seq,
                if i == 0 {
                    format!("the first entry's prev_hash is {}, not the genesis hash: the log's start was cut off", e.prev_hash)
                } else {
                    format!(
                        "its prev_hash is {}, but entry {}'s hash is {}: an entry before it was removed, inserted or changed",
                        e.prev_hash,
                        e.seq - 1,
                        prev
                    )
                },
            ));
        }
        hash_into(&mut hasher, prev, e.seq, &e.body, &mut computed);
        if e.hash.as_bytes() != computed {
            return Err(broken(
                e.seq,
                format!(
                    "its content was modified: its stored hash is {}, its content hashes to {}",
                    e.hash,
                    String::from_utf8_lossy(&computed)
                ),
            ));
        }
        prev = &e.hash;
    }

    for signed in checkpoints {
        check_checkpoint(entries, signed, trusted_keys)?;
    }
    Ok(Summary {
        entries: entries.len(),
        head: prev.to_string(),
        checkpoints: checkpoints.len(),
    })
}

fn check_checkpoint(
    entries: &[Entry],
    signed: &Signed,
    trusted_keys: &[PublicKey],
) -> Result<(), Broken> {
    let st = &signed.statement;
    let who = format!("{} at {}", st.key_id, utc(st.issued_at));
    if let Err(e) = signed.verify() {
        return Err(Broken {
            seq: None,
            reason: format!("the checkpoint signed by {who} is forged or damaged ({e})"),
        });
    }
    if !trusted_keys.is_empty() && !trusted_keys.contains(&signed.public_key) {
        return Err(Broken {
            seq: None,
            reason: format!("the checkpoint signed by {who} is by a key that is not trusted"),
        });
    }
    let cp = Checkpoint::from_signed(signed.clone())?;
    if cp.size == 0 {
        return Ok(());
    }
    let have = entries.len() as i64;
    if have < cp.size {
        return Err(Broken {
            seq: Some(have + 1),
            reason: format!(
                "the log has {have} entries, the checkpoint signed by {who} covers {}: the log \
                 was cut short",
                cp.size
            ),
        });
    }
    let ours = &entries[(cp.size - 1) as usize].hash;
    if *ours != cp.head {
        return Err(Broken {
            seq: Some(cp.size),
            reason: format!(
                "history was rewritten at or before entry {}: the checkpoint signed by {who} says \
                 head {}, the log says {ours}",
                cp.size, cp.head
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::tests::db;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let body = format!(r#"{{"event":"phase","seq":{seq}}}"#);
                let hash = entry_hash(&prev, seq, &body);
                Entry {
                    seq,
                    body,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                }
            })
            .collect()
    }

    fn rehash(entries: &mut [Entry]) {
        let mut prev = GENESIS.to_string();
        for e in entries {
            e.prev_hash = prev;
            e.hash = entry_hash(&e.prev_hash, e.seq, &e.body);
            prev = e.hash.clone();
        }
    }

    #[test]
    fn entry_hash_matches_the_sql_vector() {
        // printf '%s\n%s\n%s' 0000…0000 1 '{"a":1}' | sha256sum
        assert_eq!(
            entry_hash(GENESIS, 1, r#"{"a":1}"#),
            "58a8b64ede0a31c39c4c0afb728c913a6b777e6ee987ceea8e4264a089470621"
        );
        let mut buf = [0u8; 20];
        assert_eq!(decimal(i64::MIN, &mut buf), b"-9223372036854775808");
        assert_eq!(decimal(0, &mut buf), b"0");
    }

    #[test]
    fn a_good_chain_passes_with_its_checkpoints() {
        let key = SecretKey::generate();
        let entries = chain(10);
        let cp = Checkpoint::sign(&db(), 6, &entries[5].hash, 1_700_000_000, &key);
        let s = verify(&entries, std::slice::from_ref(&cp.signed), &[key.public()]).unwrap();
        assert_eq!(s.entries, 10);
        assert_eq!(s.head, entries[9].hash);
        assert_eq!(s.checkpoints, 1);
        assert_eq!(verify(&[], &[], &[]).unwrap().head, GENESIS);
    }

    #[test]
    fn a_modified_body_is_reported_at_its_entry() {
        let mut entries = chain(10);
        entries[4].body = r#"{"event":"approve","by":"mallory"}"#.into();
        let err = verify(&entries, &[], &[]).unwrap_err();
        assert_eq!(err.seq, Some(5));
        assert!(
            err.to_string()
                .contains("entry 5: its content was modified"),
            "{err}"
        );
    }

    #[test]
    fn a_removed_entry_is_reported() {
        let mut entries = chain(10);
        entries.remove(3);
        let err = verify(&entries, &[], &[]).unwrap_err();
        assert_eq!(err.seq, Some(4));
        assert!(err.reason.contains("entry 4 is missing"), "{err}");

        let mut renumbered = chain(10);
        renumbered.remove(3);
        for e in &mut renumbered[3..] {
            e.seq -= 1;
        }
        let err = verify(&renumbered, &[], &[]).unwrap_err();
        assert_eq!(err.seq, Some(4));
        assert!(err.reason.contains("prev_hash"), "{err}");
    }

    #[test]
    fn a_truncated_chain_is_caught_by_a_checkpoint() {
        let key = SecretKey::generate();
        let mut entries = chain(10);
        let cp = Checkpoint::sign(&db(), 10, &entries[9].hash, 1_700_000_000, &key);
        entries.truncate(7);
        assert!(verify(&entries, &[], &[]).is_ok());
        let err = verify(&entries, &[cp.signed], &[key.public()]).unwrap_err();
        assert_eq!(err.seq, Some(8));
        assert!(err.reason.contains("the log has 7 entries"), "{err}");
        assert!(err.reason.contains("covers 10"), "{err}");
    }

    #[test]
    fn a_rewritten_and_rehashed_chain_is_caught_by_an_old_checkpoint() {
        let key = SecretKey::generate();
        let mut entries = chain(10);
        let cp = Checkpoint::sign(&db(), 8, &entries[7].hash, 1_700_000_000, &key);
        entries[2].body = r#"{"event":"nothing to see"}"#.into();
        rehash(&mut entries);
        assert!(verify(&entries, &[], &[]).is_ok());
        let err = verify(&entries, &[cp.signed], &[]).unwrap_err();
        assert_eq!(err.seq, Some(8));
        assert!(err.reason.contains("history was rewritten"), "{err}");
        assert!(err.reason.contains(&key.public().id()), "{err}");
    }

    #[test]
    fn a_forged_or_untrusted_checkpoint_is_refused() {
        let key = SecretKey::generate();
        let entries = chain(5);
        let mut cp = Checkpoint::sign(&db(), 5, &entries[4].hash, 1_700_000_000, &key);
        cp.signed.statement.size = Some(3);
        cp.signed.statement.subject = entries[2].hash.clone();
        let err = verify(&entries, &[cp.signed], &[]).unwrap_err();
        assert!(err.reason.contains("forged or damaged"), "{err}");

        let other = SecretKey::generate();
        let cp = Checkpoint::sign(&db(), 5, &entries[4].hash, 1_700_000_000, &other);
        let err = verify(&entries, &[cp.signed], &[key.public()]).unwrap_err();
        assert!(err.reason.contains("not trusted"), "{err}");
    }

    #[test]
    fn verifies_a_long_chain_quickly() {
        let entries = chain(100_000);
        let start = std::time::Instant::now();
        verify(&entries, &[], &[]).unwrap();
        let took = start.elapsed();
        // Generous for debug builds (sha2 is optimised in the dev profile too).
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }
}
