//! Cancel requests. The proxy gives each client its own (pid, key), never the server's: a
//! `CancelRequest` to the proxy is looked up here and sent on a new connection to the server
//! with that session's real backend pid and key.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use rand::RngCore;
use tokio::io::AsyncWriteExt;

use crate::upstream::Upstream;

struct Entry {
    key: Vec<u8>,
    server_pid: u32,
    server_key: Bytes,
}

#[derive(Default)]
pub struct CancelMap {
    sessions: Mutex<HashMap<u32, Entry>>,
}

impl CancelMap {
    /// A fresh (pid, key) for a client whose server backend is (`server_pid`, `server_key`);
    /// the key has the server's length (4 bytes in protocol 3.0, up to 256 in 3.2).
    pub fn register(&self, server_pid: u32, server_key: Bytes) -> (u32, Vec<u8>) {
        let mut rng = rand::thread_rng();
        let mut key = vec![0u8; server_key.len()];
        rng.fill_bytes(&mut key);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let pid = loop {
            // Random, so a client cannot guess another's; never 0.
            let pid = rng.next_u32() & 0x7fff_ffff;
            if pid != 0 && !sessions.contains_key(&pid) {
                break pid;
            }
        };
        sessions.insert(
            pid,
            Entry {
                key: key.clone(),
                server_pid,
                server_key,
            },
        );
        (pid, key)
    }

    pub fn unregister(&self, pid: u32) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }

    /// The server's (pid, key) for a client's cancel request, if the key matches.
    pub fn lookup(&self, pid: u32, key: &[u8]) -> Option<(u32, Bytes)> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let e = sessions.get(&pid)?;
        constant_time_eq(&e.key, key).then(|| (e.server_pid, e.server_key.clone()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Send a CancelRequest for backend (`pid`, `key`) on a new connection to the server.
pub async fn send(
    upstream: &Upstream,
    pid: u32,
    key: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    let mut s = upstream.connect(timeout).await?;
    s.write_all(&crate::protocol::cancel_request(pid, key))
        .await?;
    s.flush().await?;
    // The server closes the connection without an answer; wait briefly so the request is read.
    let mut buf = [0u8; 1];
    let _ = tokio::time::timeout(timeout, tokio::io::AsyncReadExt::read(&mut s, &mut buf)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_forgotten() {
        let m = CancelMap::default();
        let (pid, key) = m.register(4242, Bytes::from_static(&[9, 9, 9, 9]));
        assert_eq!(key.len(), 4);
        assert_eq!(m.lookup(pid, &key).map(|(p, _)| p), Some(4242));
        let mut wrong = key.clone();
        wrong[0] ^= 1;
        assert!(m.lookup(pid, &wrong).is_none());
        m.unregister(pid);
        assert!(m.lookup(pid, &key).is_none());
    }
}
