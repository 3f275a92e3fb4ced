//! The canonical JSON that signatures and fingerprints are computed over.
//!
//! Compact, object keys sorted by their UTF-8 bytes at every depth, strings and numbers as
//! serde_json writes them. Signed payloads hold only strings, integers, booleans and null: the
//! text of a float is not canonical across implementations, so none is ever signed (a float is
//! still encoded, as serde_json prints it, rather than refused).

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Put before the canonical JSON of every signed message, so that a tandem signature can never
/// be taken for a signature of anything else.
pub const DOMAIN: &[u8] = b"tandem-signed-v1\n";

/// The canonical text of `value`.
pub fn to_canonical(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// The bytes a signature covers: [`DOMAIN`] then the canonical JSON of `value`.
pub fn signing_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = DOMAIN.to_vec();
    bytes.extend_from_slice(to_canonical(value).as_bytes());
    bytes
}

/// Lower-case hex of the SHA-256 of `bytes` (64 characters).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // `str`'s order is the order of its UTF-8 bytes.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(out, &Value::String(key.clone()));
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
        scalar => write_scalar(out, scalar),
    }
}

/// Null, a boolean, a number or a string, compact and escaped by serde_json.
fn write_scalar(out: &mut String, value: &Value) {
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_and_output_is_compact() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": true}], "é": "\"q\"\n", "Z": -7}});
        assert_eq!(
            to_canonical(&v),
            r#"{"a":{"Z":-7,"z":[3,{"x":true,"y":null}],"é":"\"q\"\n"},"b":1}"#
        );
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"p":"1","q":"2"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "y": {"q":"2","p":"1"}, "x": 1 }"#).unwrap();
        assert_eq!(to_canonical(&a), to_canonical(&b));
        assert!(signing_bytes(&a).starts_with(DOMAIN));
    }

    #[test]
    fn sha256_hex_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
