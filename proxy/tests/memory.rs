//! The proxy streams what it does not need to read: a 100 MB value and a million rows go
//! through it while the process's peak memory (VmHWM) grows by a small fraction of that.
//!
//! Alone in its test binary on purpose: the peak is the process's, so another test running
//! alongside (under `cargo test`) would blur it. The client here is a raw one that checks the
//! bytes as they come and keeps none of them, so what grows is the proxy's.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use fixtures::pg::TestDb;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt};

/// `VmHWM` (peak resident set) or `VmRSS` of this process, in bytes.
fn vm(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Read one message without keeping it: its tag, and its body handed to `each` in pieces.
async fn stream_message<S: AsyncRead + Unpin>(s: &mut S, mut each: impl FnMut(&[u8])) -> u8 {
    let mut head = [0u8; 5];
    tokio::time::timeout(READ_LIMIT, s.read_exact(&mut head))
        .await
        .expect("a message in time")
        .expect("a message header");
    let mut left = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = left.min(buf.len());
        let n = tokio::time::timeout(READ_LIMIT, s.read(&mut buf[..want]))
            .await
            .expect("data in time")
            .expect("read");
        assert!(n > 0, "closed inside a message");
        each(&buf[..n]);
        left -= n;
    }
    head[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_value_and_a_million_rows_stream_through_in_bounded_memory() {
    within(async {
        let db = TestDb::new("proxy_memory").await;
        let target = Target::from_config(&db.tcp_config());
        let proxy = Running::start(target.upstream(), file_config()).await;
        let mut raw = Raw::connect(proxy.addr).await;
        raw.login(&target, 0, &[]).await;
        // Warm up: one ordinary query, so the baseline includes a running session.
        assert_eq!(data_rows(&raw.query("SELECT 1").await).len(), 1);
        let Raw { mut stream, .. } = raw;
        // Reset the peak to the current size (Linux 4.0+), so setup's own peak does not count.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = vm("VmRSS:");

        const SIZE: usize = 100 << 20;
        let mut q = BytesMut::new();
        frontend::query(&format!("SELECT repeat('x', {SIZE})"), &mut q).unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, &q)
            .await
            .unwrap();
        assert_eq!(stream_message(&mut stream, |_| {}).await, b'T');
        let (mut seen, mut header, mut wrong) = (0usize, Vec::new(), 0usize);
        let tag = stream_message(&mut stream, |piece| {
            for &b in piece {
                if header.len() < 6 {
                    header.push(b);
                } else {
                    seen += 1;
                    wrong += usize::from(b != b'x');
                }
            }
        })
        .await;
        assert_eq!(tag, b'D');
        assert_eq!(header[..2], 1i16.to_be_bytes(), "one column");
        assert_eq!(header[2..6], (SIZE as i32).to_be_bytes(), "its length");
        assert_eq!((seen, wrong), (SIZE, 0), "100 MB of 'x'");
        assert_eq!(stream_message(&mut stream, |_| {}).await, b'C');
        assert_eq!(stream_message(&mut stream, |_| {}).await, b'Z');

        // A million rows.
        let mut q = BytesMut::new();
        frontend::query("SELECT i FROM generate_series(1, 1000000) i", &mut q).unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, &q)
            .await
            .unwrap();
        let mut raw = Raw::new(stream);
        let (mut rows, mut sum) = (0u64, 0u64);
        loop {
            let m = raw.expect().await;
            match m.tag {
                b'D' => {
                    rows += 1;
                    sum += std::str::from_utf8(&m.body[6..])
                        .unwrap()
                        .parse::<u64>()
                        .unwrap();
                }
                b'Z' => break,
                b'T' | b'C' => {}
                other => panic!("unexpected {:?}", other as char),
            }
        }
        assert_eq!((rows, sum), (1_000_000, 1_000_000 * 1_000_001 / 2));

        let peak = vm("VmHWM:");
        let grew = peak.saturating_sub(before);
        eprintln!(
            "VmRSS before {} MB, peak after {} MB",
            before >> 20,
            peak >> 20
        );
        assert!(
            grew < 32 << 20,
            "the process grew by {} MB for a 100 MB value: the proxy buffered it",
            grew >> 20
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            proxy
                .metrics
                .protocol_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    })
    .await;
}
