//! Every decoder of `proxy::protocol` on arbitrary bytes: none may panic, and a message the
//! proxy frames must come back whole. The first byte picks the frame size limit, so the
//! fuzzer also explores `header`'s limit check.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proxy::protocol;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = 5 + (limit as usize) * 64;
    let _ = protocol::header(rest, max);
    let _ = protocol::startup_length(rest);
    let _ = protocol::parse_startup(rest);
    let _ = protocol::parse_parse(rest);
    let _ = protocol::parse_bind(rest);
    let _ = protocol::statement_target(rest);
    let _ = protocol::sqlstate(rest);
    let _ = protocol::error_fields(rest);
    let _ = protocol::auth_code(rest);
    let _ = protocol::sasl_without_plus(rest);
    let _ = protocol::parse_backend_key(rest);

    // Walk `rest` as a stream of frames, as the relay does.
    let mut pos = 0;
    while let Ok(Some(h)) = protocol::header(&rest[pos..], max) {
        if rest.len() - pos < h.total() {
            break;
        }
        let body = &rest[pos + 5..pos + h.total()];
        let mut out = BytesMut::new();
        protocol::put_message(&mut out, h.tag, body);
        assert_eq!(&out[..], &rest[pos..pos + h.total()], "framing round trip");
        pos += h.total();
    }
});
