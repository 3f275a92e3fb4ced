//! The PostgreSQL wire protocol, as much of it as a session-mode proxy reads or writes.
//!
//! Decoding never panics, whatever the input: every read goes through [`Reader`], which
//! returns an error past the end, and lengths are checked before anything is allocated.
//! Messages are framed as a tag byte and a big-endian length that counts itself; the startup
//! packet has no tag.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub const SSL_REQUEST: u32 = 80877103;
pub const GSSENC_REQUEST: u32 = 80877104;
pub const CANCEL_REQUEST: u32 = 80877102;
/// The longest startup packet accepted (PostgreSQL's own limit).
pub const MAX_STARTUP: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("message length {0} is invalid")]
    BadLength(i64),
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("message is truncated")]
    Truncated,
    #[error("a string in the message is not terminated")]
    Unterminated,
    #[error("a string in the message is not UTF-8")]
    NotUtf8,
    #[error("unsupported protocol version {major}.{minor}")]
    Version { major: u16, minor: u16 },
    #[error("{0}")]
    Invalid(&'static str),
}

/// A tagged message's header, read from the first five bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// The body's length (the length field minus its own four bytes).
    pub body: usize,
}

impl Header {
    /// Header plus body.
    pub fn total(&self) -> usize {
        self.body + 5
    }
}

/// The header at the start of `buf`, `None` when fewer than five bytes are there. A length
/// below 4 or a message over `max` bytes is an error.
pub fn header(buf: &[u8], max: usize) -> Result<Option<Header>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength(len as i64));
    }
    let body = len as usize - 4;
    if body + 5 > max {
        return Err(ProtocolError::TooLarge { len: body + 5, max });
    }
    Ok(Some(Header { tag: buf[0], body }))
}

/// A bounds-checked reader over a message body.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.buf.len() {
            return Err(ProtocolError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1)?[0])
    }
    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(self.i32()? as u32)
    }
    /// A NUL-terminated string, without its NUL.
    pub fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::Unterminated)?;
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| ProtocolError::NotUtf8)?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
    /// A count (i16) that must not be negative, and whose items (at least `item` bytes each)
    /// fit in what is left: no allocation sized by a hostile count.
    pub fn count(&mut self, item: usize) -> Result<usize, ProtocolError> {
        let n = self.i16()?;
        if n < 0 {
            return Err(ProtocolError::Invalid("negative count"));
        }
        let n = n as usize;
        if n.saturating_mul(item) > self.buf.len() {
            return Err(ProtocolError::Truncated);
        }
        Ok(n)
    }
}

/// What a client's first packet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    Ssl,
    GssEnc,
    Cancel {
        pid: u32,
        key: Bytes,
    },
    /// Protocol 3.x: the minor version asked for, the parameters, and the packet as sent
    /// (forwarded unchanged, so the server negotiates the version itself).
    Startup {
        minor: u16,
        params: Vec<(String, String)>,
        raw: Bytes,
    },
}

impl Startup {
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// The length of the startup packet at the start of `buf`, if its four length bytes are there.
pub fn startup_length(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP as i32).contains(&len) {
        return Err(ProtocolError::BadLength(len as i64));
    }
    Ok(Some(len as usize))
}

/// Decode a whole startup packet (length included).
pub fn parse_startup(packet: &[u8]) -> Result<Startup, ProtocolError> {
    let mut r = Reader::new(packet);
    let len = r.i32()?;
    if len as usize != packet.len() || len < 8 {
        return Err(ProtocolError::BadLength(len as i64));
    }
    let code = r.u32()?;
    match code {
        SSL_REQUEST if len == 8 => Ok(Startup::Ssl),
        GSSENC_REQUEST if len == 8 => Ok(Startup::GssEnc),
        CANCEL_REQUEST => {
            let pid = r.u32()?;
            // 3.0 keys are 4 bytes; 3.2 allows up to 256.
            let key = r.bytes(r.remaining())?;
            if key.len() < 4 || key.len() > 256 {
                return Err(ProtocolError::Invalid("cancel key length"));
            }
            Ok(Startup::Cancel {
                pid,
                key: Bytes::copy_from_slice(key),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::Version { major, minor });
            }
            let mut params = Vec::new();
            loop {
                let k = r.cstr()?;
                if k.is_empty() {
                    break;
                }
                let v = r.cstr()?;
                params.push((k.to_string(), v.to_string()));
            }
            if r.remaining() != 0 {
                return Err(ProtocolError::Invalid("bytes after the startup parameters"));
            }
            if !params.iter().any(|(k, _)| k == "user") {
                return Err(ProtocolError::Invalid("the startup packet names no user"));
            }
            Ok(Startup::Startup {
                minor,
                params,
                raw: Bytes::copy_from_slice(packet),
            })
        }
    }
}

/// A client's Parse: statement name, query text, parameter type OIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub types: Vec<u32>,
}

pub fn parse_parse(body: &[u8]) -> Result<Parse<'_>, ProtocolError> {
    let mut r = Reader::new(body);
    let name = r.cstr()?;
    let query = r.cstr()?;
    let n = r.count(4)?;
    let mut types = Vec::with_capacity(n);
    for _ in 0..n {
        types.push(r.u32()?);
    }
    Ok(Parse { name, query, types })
}

/// A client's Bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub formats: Vec<i16>,
    pub params: Vec<Option<&'a [u8]>>,
}

pub fn parse_bind(body: &[u8]) -> Result<Bind<'_>, ProtocolError> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nf = r.count(2)?;
    let mut formats = Vec::with_capacity(nf);
    for _ in 0..nf {
        formats.push(r.i16()?);
    }
    let np = r.count(4)?;
    let mut params = Vec::with_capacity(np);
    for _ in 0..np {
        let len = r.i32()?;
        if len == -1 {
            params.push(None);
        } else if len < 0 {
            return Err(ProtocolError::BadLength(len as i64));
        } else {
            params.push(Some(r.bytes(len as usize)?));
        }
    }
    Ok(Bind {
        portal,
        statement,
        formats,
        params,
    })
}

/// The statement a Bind names, the rest of the message checked as [`parse_bind`] checks it
/// but nothing copied: what every Bind costs when its parameters are not sampled.
pub fn bind_statement(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut r = Reader::new(body);
    let _portal = r.cstr()?;
    let statement = r.cstr()?;
    let nf = r.count(2)?;
    r.bytes(nf * 2)?;
    let np = r.count(4)?;
    for _ in 0..np {
        let len = r.i32()?;
        if len < -1 {
            return Err(ProtocolError::BadLength(len as i64));
        }
        if len > 0 {
            r.bytes(len as usize)?;
        }
    }
    Ok(statement)
}

/// The statement a Close or Describe names, if it names a statement (`S`) rather than a portal.
pub fn statement_target(body: &[u8]) -> Result<Option<&str>, ProtocolError> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let name = r.cstr()?;
    Ok((kind == b'S').then_some(name))
}

/// The SQLSTATE of an ErrorResponse or NoticeResponse body.
pub fn sqlstate(body: &[u8]) -> Option<&str> {
    let mut r = Reader::new(body);
    loop {
        let field = r.u8().ok()?;
        if field == 0 {
            return None;
        }
        let value = r.cstr().ok()?;
        if field == b'C' {
            return Some(value);
        }
    }
}

/// The fields of an ErrorResponse (code, value), for logs.
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while let Ok(field) = r.u8() {
        if field == 0 {
            break;
        }
        match r.cstr() {
            Ok(v) => out.push((field, v.to_string())),
            Err(_) => break,
        }
    }
    out
}

/// The authentication request code of an `R` message body.
pub fn auth_code(body: &[u8]) -> Result<i32, ProtocolError> {
    Reader::new(body).i32()
}

/// AuthenticationSASL without the mechanisms that bind to a TLS channel (`-PLUS`): the TLS
/// session the client sees ends at the proxy, so channel binding cannot succeed end to end.
pub fn sasl_without_plus(body: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut r = Reader::new(body);
    let code = r.i32()?;
    if code != 10 {
        return Err(ProtocolError::Invalid("not AuthenticationSASL"));
    }
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&code.to_be_bytes());
    loop {
        let m = r.cstr()?;
        if m.is_empty() {
            break;
        }
        if !m.ends_with("-PLUS") {
            out.extend_from_slice(m.as_bytes());
            out.push(0);
        }
    }
    out.push(0);
    Ok(out)
}

/// Whether a SASLInitialResponse body (mechanism, length, data) carries the GS2 flag `y`:
/// the client can bind to the TLS channel but believes the server cannot. A server that can
/// (PostgreSQL over TLS) takes that for a downgrade and refuses the login.
pub fn sasl_claims_no_server_binding(body: &[u8]) -> bool {
    let mut r = Reader::new(body);
    let (Ok(_), Ok(len)) = (r.cstr(), r.i32()) else {
        return false;
    };
    len > 0 && r.bytes(1).is_ok_and(|b| b == b"y")
}

/// Put a tagged message with `body` into `out`.
pub fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 5);
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
}

/// An ErrorResponse: severity (`FATAL`, `ERROR`), SQLSTATE, message, and a hint saying what to do.
pub fn error_response(severity: &str, code: &str, message: &str, hint: Option<&str>) -> BytesMut {
    let mut body = Vec::with_capacity(64 + message.len());
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(f);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    if let Some(h) = hint {
        body.push(b'H');
        body.extend_from_slice(h.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = BytesMut::new();
    put_message(&mut out, b'E', &body);
    out
}

pub fn backend_key_data(pid: u32, key: &[u8]) -> BytesMut {
    let mut body = Vec::with_capacity(4 + key.len());
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend_from_slice(key);
    let mut out = BytesMut::new();
    put_message(&mut out, b'K', &body);
    out
}

/// The (pid, key) of a BackendKeyData body.
pub fn parse_backend_key(body: &[u8]) -> Result<(u32, Bytes), ProtocolError> {
    let mut r = Reader::new(body);
    let pid = r.u32()?;
    let key = r.bytes(r.remaining())?;
    if key.len() < 4 || key.len() > 256 {
        return Err(ProtocolError::Invalid("backend key length"));
    }
    Ok((pid, Bytes::copy_from_slice(key)))
}

pub fn cancel_request(pid: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.len());
    out.extend_from_slice(&((12 + key.len()) as i32).to_be_bytes());
    out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Why a statement is prepared again, which [`reprepare`] writes into its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// After swap number `n` (the traffic epoch): every session prepares its statement with
    /// the same text, so a pooler prepares it once per server connection.
    Change(u64),
    /// After `cached plan must not change result type`; `n` is unique in the process.
    Error(u64),
}

/// Close statement `name`, then Parse it again from its text, with a comment that says why
/// (`again`): sent after a swap, or before a request is replayed.
///
/// The comment makes the text one a pooler between the proxy and PostgreSQL has not seen: a
/// pooler that keeps prepared statements on its server connections (pgbouncer's
/// `max_prepared_statements`) answers the Close itself and, for a text it has prepared
/// before, skips the Parse, so the server would go on executing the statement planned for
/// the table's old shape. PostgreSQL ignores the comment.
pub fn reprepare(out: &mut BytesMut, name: &str, query: &str, types: &[u32], again: Again) {
    let note = match again {
        Again::Change(n) => format!("\n/* tandem: prepared again after change {n} */"),
        Again::Error(n) => format!("\n/* tandem: prepared again after error {n} */"),
    };
    let mut close = Vec::with_capacity(name.len() + 2);
    close.push(b'S');
    close.extend_from_slice(name.as_bytes());
    close.push(0);
    put_message(out, b'C', &close);
    let mut parse = Vec::with_capacity(name.len() + query.len() + note.len() + 4 + 4 * types.len());
    parse.extend_from_slice(name.as_bytes());
    parse.push(0);
    parse.extend_from_slice(query.as_bytes());
    parse.extend_from_slice(note.as_bytes());
    parse.push(0);
    parse.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        parse.extend_from_slice(&t.to_be_bytes());
    }
    put_message(out, b'P', &parse);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)], minor: u16) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&((3u32 << 16) | minor as u32).to_be_bytes());
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        p.extend(body);
        p
    }

    #[test]
    fn startup_packets() {
        let p = startup(&[("user", "app"), ("database", "shop")], 2);
        let s = parse_startup(&p).unwrap();
        assert_eq!(s.param("database"), Some("shop"));
        assert!(matches!(s, Startup::Startup { minor: 2, .. }));
        assert_eq!(
            parse_startup(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap(),
            Startup::Ssl
        );
        let c = cancel_request(7, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(
            matches!(parse_startup(&c).unwrap(), Startup::Cancel { pid: 7, ref key } if key.len() == 8)
        );
        assert!(
            parse_startup(&startup(&[("database", "x")], 0)).is_err(),
            "no user"
        );
        let mut v2 = startup(&[("user", "u")], 0);
        v2[4] = 0;
        v2[5] = 2;
        assert!(matches!(
            parse_startup(&v2),
            Err(ProtocolError::Version { major: 2, .. })
        ));
    }

    #[test]
    fn sasl_drops_channel_binding() {
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let out = sasl_without_plus(&body).unwrap();
        assert_eq!(&out[4..], b"SCRAM-SHA-256\0\0");
    }

    #[test]
    fn bind_and_error_fields() {
        let mut b = Vec::new();
        b.extend_from_slice(b"\0stmt\0");
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&42i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        let bind = parse_bind(&b).unwrap();
        assert_eq!(bind.statement, "stmt");
        assert_eq!(bind.params, vec![Some(&42i32.to_be_bytes()[..]), None]);
        let e = error_response(
            "ERROR",
            "0A000",
            "cached plan must not change result type",
            None,
        );
        assert_eq!(sqlstate(&e[5..]), Some("0A000"));
        // A hostile count does not allocate or panic.
        assert!(parse_bind(b"\0\0\x7f\xff").is_err());
    }
}
