//! Property tests for `proxy::protocol`, the decoder every client byte goes through: it never
//! panics, whatever the input, and what the proxy encodes decodes back to itself.

use bytes::BytesMut;
use proptest::prelude::*;
use proxy::protocol::{self, ProtocolError, Startup};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

/// Bytes that look like protocol data more often than uniform noise would: lengths and
/// counts near the edges, NULs, tags and codes the decoders branch on.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => any::<u8>().prop_map(|b| vec![b]),
        2 => Just(vec![0u8]),
        1 => prop_oneof![Just(b'S'), Just(b'P'), Just(b'C'), Just(b'E'), Just(b'M')].prop_map(|b| vec![b]),
        1 => prop_oneof![Just(0i32), Just(-1), Just(3), Just(4), Just(8), Just(i32::MAX), Just(i32::MIN), Just(10), Just(12)]
            .prop_map(|n| n.to_be_bytes().to_vec()),
        1 => prop_oneof![Just(0i16), Just(-1), Just(1), Just(i16::MAX), Just(i16::MIN)].prop_map(|n| n.to_be_bytes().to_vec()),
        1 => prop_oneof![
            Just(protocol::SSL_REQUEST),
            Just(protocol::GSSENC_REQUEST),
            Just(protocol::CANCEL_REQUEST),
            Just(3u32 << 16),
            Just((3u32 << 16) | 2),
        ]
        .prop_map(|n| n.to_be_bytes().to_vec()),
        1 => "[a-z_.]{0,12}".prop_map(|s| s.into_bytes()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// A startup packet: its own length, then `body`.
fn framed_startup(body: &[u8]) -> Vec<u8> {
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(body);
    p
}

fn cstring() -> impl Strategy<Value = String> {
    // No NUL inside: C strings on the wire cannot hold one.
    "[^\u{0}]{0,24}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoders_never_panic(bytes in wire_bytes(), max in 0usize..2048) {
        let _ = protocol::header(&bytes, max);
        let _ = protocol::startup_length(&bytes);
        let _ = protocol::parse_startup(&bytes);
        let _ = protocol::parse_startup(&framed_startup(&bytes));
        let _ = protocol::parse_parse(&bytes);
        // The client path's Bind check (no copy) accepts what the full decoder accepts.
        prop_assert_eq!(
            protocol::bind_statement(&bytes).ok(),
            protocol::parse_bind(&bytes).ok().map(|b| b.statement)
        );
        let _ = protocol::statement_target(&bytes);
        let _ = protocol::sqlstate(&bytes);
        let _ = protocol::error_fields(&bytes);
        let _ = protocol::auth_code(&bytes);
        let _ = protocol::sasl_without_plus(&bytes);
        let _ = protocol::parse_backend_key(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_noise(bytes in prop::collection::vec(any::<u8>(), 0..300), max in any::<usize>()) {
        let _ = protocol::header(&bytes, max);
        let _ = protocol::startup_length(&bytes);
        let _ = protocol::parse_startup(&bytes);
        let _ = protocol::parse_startup(&framed_startup(&bytes));
        let _ = protocol::parse_parse(&bytes);
        // The client path's Bind check (no copy) accepts what the full decoder accepts.
        prop_assert_eq!(
            protocol::bind_statement(&bytes).ok(),
            protocol::parse_bind(&bytes).ok().map(|b| b.statement)
        );
        let _ = protocol::statement_target(&bytes);
        let _ = protocol::sqlstate(&bytes);
        let _ = protocol::error_fields(&bytes);
        let _ = protocol::auth_code(&bytes);
        let _ = protocol::sasl_without_plus(&bytes);
        let _ = protocol::parse_backend_key(&bytes);
    }

    /// The header gives back the tag and length `put_message` wrote, and refuses a message
    /// over the limit instead of allocating for it.
    #[test]
    fn put_message_and_header_round_trip(tag in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..600), slack in 0usize..64) {
        let mut out = BytesMut::new();
        protocol::put_message(&mut out, tag, &body);
        prop_assert_eq!(out.len(), body.len() + 5);
        let h = protocol::header(&out, body.len() + 5 + slack).unwrap().unwrap();
        prop_assert_eq!(h.tag, tag);
        prop_assert_eq!(h.body, body.len());
        prop_assert_eq!(h.total(), out.len());
        prop_assert_eq!(&out[5..], &body[..]);
        if !body.is_empty() {
            let too_small = body.len() + 4;
            prop_assert_eq!(
                protocol::header(&out, too_small),
                Err(ProtocolError::TooLarge { len: body.len() + 5, max: too_small })
            );
        }
        // Fewer than five bytes: not yet a header.
        prop_assert_eq!(protocol::header(&out[..out.len().min(4)], usize::MAX), Ok(None));
    }

    /// Lengths that count less than themselves, or are negative, are errors whatever the limit.
    #[test]
    fn header_rejects_lengths_below_four(tag in any::<u8>(), len in i32::MIN..4) {
        let mut b = vec![tag];
        b.extend_from_slice(&len.to_be_bytes());
        prop_assert_eq!(protocol::header(&b, usize::MAX), Err(ProtocolError::BadLength(len as i64)));
    }

    #[test]
    fn error_response_and_sqlstate_round_trip(
        severity in prop_oneof![Just("ERROR"), Just("FATAL")],
        code in "[0-9A-Z]{5}",
        message in cstring(),
        hint in prop::option::of(cstring()),
    ) {
        let e = protocol::error_response(severity, &code, &message, hint.as_deref());
        let h = protocol::header(&e, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(h.tag, b'E');
        prop_assert_eq!(h.total(), e.len());
        let body = &e[5..];
        prop_assert_eq!(protocol::sqlstate(body), Some(code.as_str()));
        let fields = protocol::error_fields(body);
        prop_assert!(fields.contains(&(b'S', severity.to_string())));
        prop_assert!(fields.contains(&(b'M', message.clone())));
        prop_assert_eq!(fields.iter().find(|(f, _)| *f == b'H').map(|(_, h)| h.clone()), hint);
    }

    /// What the proxy sends before a replay (Close, then Parse) decodes as that Close and
    /// that Parse, of the text with the comment that says why.
    #[test]
    fn reprepare_and_parse_parse_round_trip(
        name in "[^\u{0}]{1,24}",
        query in cstring(),
        types in prop::collection::vec(any::<u32>(), 0..40),
        n in any::<u64>(),
        error in any::<bool>(),
    ) {
        let mut out = BytesMut::new();
        let again = if error { protocol::Again::Error(n) } else { protocol::Again::Change(n) };
        protocol::reprepare(&mut out, &name, &query, &types, again);
        let close = protocol::header(&out, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(close.tag, b'C');
        prop_assert_eq!(protocol::statement_target(&out[5..close.total()]), Ok(Some(name.as_str())));
        let rest = &out[close.total()..];
        let parse = protocol::header(rest, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(parse.tag, b'P');
        prop_assert_eq!(parse.total(), rest.len());
        let p = protocol::parse_parse(&rest[5..]).unwrap();
        prop_assert_eq!(p.name, name.as_str());
        // The text, then the comment that makes it new to a pooler.
        let kind = if error { "error" } else { "change" };
        prop_assert_eq!(p.query, format!("{query}\n/* tandem: prepared again after {kind} {n} */"));
        prop_assert_eq!(p.types, types);
    }

    /// A Bind as libpq encodes it decodes to its parts; any prefix of it is an error, not a
    /// panic and not a shorter Bind.
    #[test]
    fn parse_bind_reads_what_a_client_encodes(
        portal in cstring(),
        statement in cstring(),
        formats in prop::collection::vec(0i16..2, 0..4),
        params in prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..40)), 0..10),
        result_formats in prop::collection::vec(0i16..2, 0..4),
    ) {
        let mut buf = BytesMut::new();
        let values: Vec<Option<&[u8]>> = params.iter().map(|p| p.as_deref()).collect();
        postgres_protocol::message::frontend::bind(
            &portal,
            &statement,
            formats.iter().copied(),
            values.iter().copied(),
            |v, out| match v {
                Some(bytes) => {
                    out.extend_from_slice(bytes);
                    Ok(postgres_protocol::IsNull::No)
                }
                None => Ok(postgres_protocol::IsNull::Yes),
            },
            result_formats.iter().copied(),
            &mut buf,
        )
        .map_err(|_| "bind")
        .unwrap();
        let body = &buf[5..];
        let b = protocol::parse_bind(body).unwrap();
        prop_assert_eq!(b.portal, portal.as_str());
        prop_assert_eq!(b.statement, statement.as_str());
        prop_assert_eq!(&b.formats, &formats);
        prop_assert_eq!(&b.params, &values);
        // The parameters end before the result formats: cutting into them must fail.
        let params_end = body.len() - 2 - 2 * result_formats.len();
        for cut in 0..params_end {
            prop_assert!(protocol::parse_bind(&body[..cut]).is_err(), "a Bind cut at {} of {} decoded", cut, body.len());
            prop_assert!(protocol::bind_statement(&body[..cut]).is_err(), "a Bind cut at {} of {} checked", cut, body.len());
        }
        prop_assert_eq!(protocol::bind_statement(body).unwrap(), statement.as_str());
    }

    /// A startup packet as a driver builds it decodes to its version and parameters, and the
    /// raw bytes are kept for forwarding unchanged.
    #[test]
    fn startup_packets_decode_to_their_parameters(
        minor in 0u16..4,
        user in "[a-z][a-z0-9_]{0,15}",
        params in prop::collection::vec(("[a-z_.]{1,16}", cstring()), 0..6),
    ) {
        let mut body = ((3u32 << 16) | u32::from(minor)).to_be_bytes().to_vec();
        for (k, v) in std::iter::once(("user".to_string(), user.clone())).chain(params.clone()) {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let packet = framed_startup(&body);
        let want = if packet.len() <= protocol::MAX_STARTUP {
            Ok(Some(packet.len()))
        } else {
            Err(ProtocolError::BadLength(packet.len() as i64))
        };
        prop_assert_eq!(protocol::startup_length(&packet), want);
        let s = protocol::parse_startup(&packet).unwrap();
        prop_assert_eq!(s.param("user"), Some(user.as_str()));
        match s {
            Startup::Startup { minor: m, params: got, raw } => {
                prop_assert_eq!(m, minor);
                prop_assert_eq!(got.len(), params.len() + 1);
                prop_assert_eq!(&raw[..], &packet[..]);
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
    }

    #[test]
    fn cancel_requests_and_backend_keys_round_trip(pid in any::<u32>(), key in prop::collection::vec(any::<u8>(), 4..=256)) {
        let packet = protocol::cancel_request(pid, &key);
        match protocol::parse_startup(&packet).unwrap() {
            Startup::Cancel { pid: p, key: k } => {
                prop_assert_eq!(p, pid);
                prop_assert_eq!(&k[..], &key[..]);
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
        let k = protocol::backend_key_data(pid, &key);
        let h = protocol::header(&k, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(h.tag, b'K');
        let (p, got) = protocol::parse_backend_key(&k[5..]).unwrap();
        prop_assert_eq!(p, pid);
        prop_assert_eq!(&got[..], &key[..]);
    }

    /// Only `-PLUS` mechanisms are removed, in order, and the list stays terminated.
    #[test]
    fn sasl_without_plus_removes_only_channel_binding(mechs in prop::collection::vec(prop_oneof![
        Just("SCRAM-SHA-256".to_string()),
        Just("SCRAM-SHA-256-PLUS".to_string()),
        "[A-Z0-9-]{1,20}",
    ], 0..5)) {
        let mut body = 10i32.to_be_bytes().to_vec();
        for m in &mechs {
            body.extend_from_slice(m.as_bytes());
            body.push(0);
        }
        body.push(0);
        let out = protocol::sasl_without_plus(&body).unwrap();
        prop_assert_eq!(protocol::auth_code(&out), Ok(10));
        let kept: Vec<String> = out[4..out.len() - 1]
            .split(|b| *b == 0)
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8(m.to_vec()).unwrap())
            .collect();
        let want: Vec<String> = mechs.iter().filter(|m| !m.ends_with("-PLUS")).cloned().collect();
        prop_assert_eq!(kept, want);
        prop_assert_eq!(out.last(), Some(&0u8));
    }
}

/// Startup lengths at and around the limits.
#[test]
fn startup_length_limits() {
    let at = |n: i32| protocol::startup_length(&n.to_be_bytes());
    assert_eq!(at(8), Ok(Some(8)));
    assert_eq!(
        at(protocol::MAX_STARTUP as i32),
        Ok(Some(protocol::MAX_STARTUP))
    );
    for bad in [
        7,
        0,
        -1,
        i32::MIN,
        protocol::MAX_STARTUP as i32 + 1,
        i32::MAX,
    ] {
        assert_eq!(at(bad), Err(ProtocolError::BadLength(bad as i64)), "{bad}");
    }
    assert_eq!(protocol::startup_length(&[0, 0, 0]), Ok(None));
}
