//! A connection's read buffers: small while the connection is quiet, grown while reads fill
//! them, given back when the burst is over. An idle session holds [`QUIET`] bytes per
//! direction, where it used to reserve 16 KiB (client to server) and 32 KiB (server to
//! client): with the session's task made smaller too (`session::run`), an idle connection
//! costs the proxy 4.0 KiB of RSS instead of 13.0 (BENCHMARKS §6, 2,000 connections).

use bytes::BytesMut;

/// The room of a quiet buffer: a simple query, a Bind/Execute, a small result and its
/// ReadyForQuery fit in one read.
pub const QUIET: usize = 256;

/// A new, quiet buffer.
pub fn quiet_buffer() -> BytesMut {
    BytesMut::with_capacity(QUIET)
}

/// Make room in `buf` for the next read. `filled`: the last read filled all the room it had
/// (more is waiting), so the room grows fourfold, up to `ceiling`; otherwise it is kept at
/// least half of [`QUIET`].
pub fn make_room(buf: &mut BytesMut, filled: bool, ceiling: usize) {
    if filled && buf.capacity() < ceiling {
        let target = (buf.capacity() * 4).clamp(QUIET, ceiling.max(QUIET));
        buf.reserve(target.saturating_sub(buf.len()));
    } else if buf.capacity() - buf.len() < QUIET / 2 {
        buf.reserve(QUIET);
    }
}

/// The connection went quiet: when everything read was forwarded and the last read did not
/// fill its room, give a grown buffer's memory back.
pub fn quiet(buf: &mut BytesMut, filled: bool) {
    if buf.is_empty() && !filled && buf.capacity() > QUIET {
        *buf = quiet_buffer();
    }
}

/// A message too large to buffer is streaming through, `streaming` bytes of it still to
/// come: pass `pos` over what of it the buffer (`len` bytes) holds. `true` while the message
/// goes on past the buffer (read more before framing the next one).
pub fn stream_on(len: usize, pos: &mut usize, streaming: &mut usize) -> bool {
    let n = (*streaming).min(len - *pos);
    *pos += n;
    *streaming -= n;
    *streaming > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fill `buf`'s room as a read would; returns whether it filled it.
    fn fill(buf: &mut BytesMut) -> bool {
        let room = buf.capacity() - buf.len();
        buf.extend_from_slice(&vec![0u8; room]);
        true
    }

    #[test]
    fn grows_while_reads_fill_it_and_shrinks_when_quiet() {
        let mut buf = quiet_buffer();
        assert_eq!(buf.capacity(), QUIET);
        let filled = fill(&mut buf);
        buf.clear();
        make_room(&mut buf, filled, 64 * 1024);
        assert!(buf.capacity() >= 4 * QUIET, "{}", buf.capacity());
        // Filling again and again stops at the ceiling.
        for _ in 0..10 {
            let filled = fill(&mut buf);
            buf.clear();
            make_room(&mut buf, filled, 64 * 1024);
        }
        assert!(
            buf.capacity() >= 64 * 1024 && buf.capacity() < 128 * 1024,
            "{}",
            buf.capacity()
        );
        // A short read, everything forwarded: back to a quiet buffer.
        buf.extend_from_slice(b"Z");
        buf.clear();
        quiet(&mut buf, false);
        assert_eq!(buf.capacity(), QUIET);
    }

    #[test]
    fn a_partial_message_is_kept_and_given_room() {
        let mut buf = quiet_buffer();
        buf.extend_from_slice(&[b'Q'; 300]);
        quiet(&mut buf, false);
        assert_eq!(buf.len(), 300);
        make_room(&mut buf, false, 32 * 1024);
        assert!(buf.capacity() - buf.len() >= QUIET / 2);
        // A read that filled it: more room, the message kept.
        let filled = fill(&mut buf);
        make_room(&mut buf, filled, 32 * 1024);
        assert!(buf.capacity() >= 4 * QUIET && buf[..300].iter().all(|b| *b == b'Q'));
    }
}
