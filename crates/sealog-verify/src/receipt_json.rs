//! The JSON of an append's receipts, written directly: byte for byte what
//! serde writes for `Receipt`, without its per-field calls, a `String` per
//! base64 hash, and the checkpoint note escaped again for every receipt
//! (receipts of one commit share it). serde's output was ~5 % of a
//! 100-event batch's server CPU.

use std::io::Write;

use base64::prelude::{Engine, BASE64_STANDARD};

use crate::receipt::Receipt;

/// `receipts` as one JSON object (`single`) or an array of them.
pub fn write(receipts: &[Receipt], single: bool) -> Vec<u8> {
    let per = receipts.first().map_or(0, |r| 1100 + r.checkpoint.len());
    let mut out = Vec::with_capacity(receipts.len() * per + 2);
    if !single {
        out.push(b'[');
    }
    // (the checkpoint note, its JSON string) of the receipt before
    let mut last: Option<(&str, Vec<u8>)> = None;
    for (n, r) in receipts.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        if last.as_ref().is_none_or(|(note, _)| *note != r.checkpoint) {
            last = Some((&r.checkpoint, string(&r.checkpoint)));
        }
        let checkpoint = &last.as_ref().expect("just set").1;
        receipt(&mut out, r, checkpoint);
    }
    if !single {
        out.push(b']');
    }
    out
}

/// One receipt; `checkpoint` is its note as a JSON string. The members
/// come in `Receipt`'s order, and are skipped where serde skips them.
fn receipt(out: &mut Vec<u8>, r: &Receipt, checkpoint: &[u8]) {
    out.extend_from_slice(b"{\"index\":");
    integer(out, r.index);
    if let Some(event) = &r.event {
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(event.get().as_bytes());
    }
    if let Some(salt) = &r.salt {
        out.extend_from_slice(b",\"salt\":");
        base64(out, salt);
    }
    out.extend_from_slice(b",\"commitment\":");
    base64(out, &r.commitment.0);
    out.extend_from_slice(b",\"leaf_hash\":");
    base64(out, &r.leaf_hash.0);
    out.extend_from_slice(b",\"checkpoint\":");
    out.extend_from_slice(checkpoint);
    out.extend_from_slice(b",\"inclusion_proof\":[");
    for (n, h) in r.inclusion_proof.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        base64(out, &h.0);
    }
    out.push(b']');
    if r.duplicate {
        out.extend_from_slice(b",\"duplicate\":true");
    }
    if let Some(by) = r.redacted_by {
        out.extend_from_slice(b",\"redacted_by\":");
        integer(out, by);
    }
    out.push(b'}');
}

/// `n` in decimal, without a `String` on the way.
fn integer(out: &mut Vec<u8>, n: u64) {
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

/// `bytes` as a quoted base64 string (its alphabet needs no escaping).
fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let at = out.len();
    out.resize(at + bytes.len().div_ceil(3) * 4, 0);
    BASE64_STANDARD
        .encode_slice(bytes, &mut out[at..])
        .expect("sized for the encoding");
    out.push(b'"');
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).expect("a str serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Hash;
    use serde_json::value::RawValue;

    fn receipt(i: u64, checkpoint: &str) -> Receipt {
        Receipt {
            index: i,
            event: Some(RawValue::from_string(format!(r#"{{"i":{i},"s":"a\"\u00e9"}}"#)).unwrap()),
            salt: Some(vec![i as u8; 32]),
            commitment: Hash([1 + i as u8; 32]),
            leaf_hash: Hash([2 + i as u8; 32]),
            checkpoint: checkpoint.into(),
            inclusion_proof: (0..i % 4).map(|k| Hash([k as u8 * 40; 32])).collect(),
            duplicate: false,
            redacted_by: None,
        }
    }

    #[test]
    fn writes_what_serde_writes() {
        let note = "log.example/x\n17\nq83=\n\n\u{2014} log.example/x AbCd\"\\\n";
        let mut all: Vec<Receipt> = (0..6).map(|i| receipt(i, note)).collect();
        all[1].duplicate = true;
        all[2].redacted_by = Some(9);
        (all[2].event, all[2].salt) = (None, None);
        all[4].checkpoint = "another\nnote\n".into(); // a change midway
        assert_eq!(write(&all, false), serde_json::to_vec(&all).unwrap());
        for r in &all {
            let one = write(std::slice::from_ref(r), true);
            assert_eq!(one, serde_json::to_vec(r).unwrap());
        }
        assert_eq!(write(&[], false), b"[]");
    }
}
