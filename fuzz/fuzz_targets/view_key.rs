//! Group keys of materialized views (`views` column family keys): splitting, decoding of whole
//! keys and of single values, and the order-preserving encoding.
//!
//! Input: a kind count and kinds, then the key. A key that decodes is encoded again: that
//! encoding decodes to the same values and is a fixed point; and the byte order of two
//! re-encoded one-value keys is the order of their values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_engine::fuzzing::{compare_values, decode_key_value};
use tally_engine::internals::{KeyKind, KeyValue, decode_key, encode_key_value, split_key};

fn kind(b: u8) -> KeyKind {
    match b % 5 {
        0 => KeyKind::Int,
        1 => KeyKind::Float,
        2 => KeyKind::Decimal,
        3 => KeyKind::Bool,
        _ => KeyKind::Bytes,
    }
}

fn encode(values: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode_key_value(&mut out, v);
    }
    out
}

/// Values compare equal by their encoding (NaN is one canonical value there).
fn same(a: &[KeyValue], b: &[KeyValue]) -> bool {
    encode(a) == encode(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, data)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 6);
    if data.len() < n {
        return;
    }
    let (kinds, key) = data.split_at(n);
    let kinds: Vec<KeyKind> = kinds.iter().map(|&b| kind(b)).collect();

    let parts = split_key(key, &kinds);
    let decoded = decode_key(key, &kinds);
    if let Some(parts) = &parts {
        assert_eq!(parts.len(), kinds.len());
        for (part, kind) in parts.iter().zip(&kinds) {
            let _ = decode_key_value(part, *kind);
        }
    }
    let Ok(values) = decoded else { return };
    let parts = parts.expect("a key that decodes splits");
    assert_eq!(parts.concat(), key, "the parts of a decoded key are the key");
    for ((part, kind), value) in parts.iter().zip(&kinds).zip(&values) {
        let one = decode_key_value(part, *kind).expect("a part of a decoded key decodes");
        assert!(same(std::slice::from_ref(value), &[one]), "{value:?}");
    }
    let encoded = encode(&values);
    let again = decode_key(&encoded, &kinds).expect("an encoded key decodes");
    assert!(same(&values, &again), "{values:?} came back as {again:?}");
    assert_eq!(encode(&again), encoded, "encoding is not a fixed point");

    // Memcomparable: for two non-null values of one kind (in canonical form, as decoded from
    // an encoding), byte order is value order.
    if let [a, b, ..] = &again[..]
        && kinds[0] == kinds[1]
        && *a != KeyValue::Null
        && *b != KeyValue::Null
    {
        let (ka, kb) = (encode(std::slice::from_ref(a)), encode(std::slice::from_ref(b)));
        assert_eq!(ka.cmp(&kb), compare_values(a, b), "{a:?} vs {b:?}");
    }
});
