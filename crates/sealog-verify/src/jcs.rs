//! RFC 8785 (JCS) canonical JSON, written in one pass over a parsed value.
//!
//! Why not `serde_json_canonicalizer` on the append path: it buffers and
//! sorts every object's members through an intermediate formatter and
//! prints every integer through the double formatter; it was 27 % of the
//! server's CPU under batched appends (BENCHMARKS.md). It stays as the
//! oracle: tests and the fuzz corpus check this writer byte for byte
//! against it.
//!
//! The rules, for values the log accepts (no NaN or infinity, numbers
//! within ±(2^53-1), valid Unicode):
//! - object members sorted by their names' UTF-16 code units (§3.2.3);
//! - strings escaped as ECMAScript's JSON.stringify does (§3.2.2.2):
//!   `\"`, `\\`, `\b \t \n \f \r`, other controls as `\u00xx`, the rest
//!   literal;
//! - numbers as ECMAScript's Number.prototype.toString (§3.2.2.3): an
//!   integer in the safe range prints as its digits, other values through
//!   `ryu_js`, the formatter the oracle uses.

use std::cmp::Ordering;
use std::ops::Range;

use serde_json::{Map, Number, Value};

/// The canonical bytes of `v`.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(v, &mut out);
    out
}

/// The canonical bytes of the event object `event`, and the byte ranges
/// of what the server set in it: its top-level `metadata.logged_time`
/// member, and the last entry of `metadata.loggers` (the whole member when
/// that entry is its only one), each with one adjacent comma. Cutting
/// those ranges out (they are in order; two may share a comma, so skip
/// what an earlier range already cut) gives exactly the canonical bytes of
/// the event as it was before the server set them.
pub fn event(event: &Map<String, Value>) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut out = Vec::with_capacity(1024);
    // (start, end, is the metadata's first member)
    let mut cuts: Vec<(usize, usize, bool)> = Vec::with_capacity(2);
    out.push(b'{');
    for (i, (name, value)) in sorted(event).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match value {
            Value::Object(metadata) if name == "metadata" => {
                write_string(name, &mut out);
                out.extend_from_slice(b":{");
                let mut members_cut = 0;
                for (j, (k, x)) in sorted(metadata).into_iter().enumerate() {
                    let start = out.len();
                    // Every member before this one is cut: this one is
                    // first in what remains.
                    let first = members_cut == j;
                    if j > 0 {
                        out.push(b',');
                    }
                    match x {
                        Value::Array(loggers) if k == "loggers" && !loggers.is_empty() => {
                            write_string(k, &mut out);
                            out.push(b':');
                            let last = write_array(loggers, &mut out);
                            if loggers.len() == 1 {
                                cuts.push((start, out.len(), first));
                                members_cut += 1;
                            } else {
                                cuts.push((last.start, last.end, false));
                            }
                        }
                        _ => {
                            write_member(k, x, &mut out);
                            if k == "logged_time" {
                                cuts.push((start, out.len(), first));
                                members_cut += 1;
                            }
                        }
                    }
                }
                out.push(b'}');
            }
            _ => write_member(name, value, &mut out),
        }
    }
    out.push(b'}');
    // A first member takes the comma after it, if another follows (a cut
    // element of loggers is never first: it is not a member).
    let cuts = cuts
        .into_iter()
        .map(|(start, end, first)| start..end + usize::from(first && out[end] == b','))
        .collect();
    (out, cuts)
}

/// Writes the array `a`; returns the byte range of its last element with
/// the comma before it (empty for an empty array).
fn write_array(a: &[Value], out: &mut Vec<u8>) -> Range<usize> {
    out.push(b'[');
    let mut last = out.len()..out.len();
    for (i, x) in a.iter().enumerate() {
        let start = out.len();
        if i > 0 {
            out.push(b',');
        }
        write_value(x, out);
        last = start..out.len();
    }
    out.push(b']');
    last
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            write_array(a, out);
        }
        Value::Object(m) => write_object(m, out),
    }
}

/// `m`'s members in canonical order.
fn sorted(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = m.iter().collect();
    // serde_json's map iterates in UTF-8 byte order, which is UTF-16 order
    // unless names mix code points above U+FFFF with U+E000..U+FFFF.
    if !members.is_sorted_by(|a, b| utf16_cmp(a.0, b.0) != Ordering::Greater) {
        members.sort_by(|a, b| utf16_cmp(a.0, b.0));
    }
    members
}

fn write_object(m: &Map<String, Value>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, value)) in sorted(m).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_member(name, value, out);
    }
    out.push(b'}');
}

fn write_member(name: &str, value: &Value, out: &mut Vec<u8>) {
    write_string(name, out);
    out.push(b':');
    write_value(value, out);
}

fn utf16_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    const SAFE: u64 = crate::commitment::MAX_SAFE_INTEGER;
    if let Some(u) = n.as_u64().filter(|&u| u <= SAFE) {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= SAFE) {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else {
        // Beyond the safe range an integer is formatted as the double it
        // rounds to, as ECMAScript would (the log refuses such events; the
        // writer stays total).
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.is_finite() {
            out.extend_from_slice(ryu_js::Buffer::new().format_finite(f).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn oracle(v: &Value) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(v).unwrap()
    }

    /// The event without what the server sets: logged_time, and the last
    /// entry of a non-empty loggers array (the member too if it was alone).
    fn without_server_set(mut v: Value) -> Value {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("logged_time");
            if let Some(Value::Array(l)) = m.get_mut("loggers") {
                match l.len() {
                    0 => {}
                    1 => {
                        m.remove("loggers");
                    }
                    _ => {
                        l.pop();
                    }
                }
            }
        }
        v
    }

    fn check_event(v: &Value) {
        let (bytes, cuts) = event(v.as_object().unwrap());
        assert_eq!(bytes, oracle(v), "full event");
        let mut cut = Vec::new();
        let mut at = 0;
        for r in cuts {
            cut.extend_from_slice(&bytes[at..r.start.max(at)]);
            at = at.max(r.end);
        }
        cut.extend_from_slice(&bytes[at..]);
        assert_eq!(
            cut,
            oracle(&without_server_set(v.clone())),
            "event without what the server set, from {}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn logged_time_is_cut_out_wherever_it_sorts() {
        for v in [
            json!({"metadata": {"logged_time": 5}}),
            json!({"metadata": {"logged_time": 5, "uid": "u"}}),
            json!({"metadata": {"a": 1, "logged_time": 5}}),
            json!({"metadata": {"a": 1, "logged_time": 5, "z": [1]}, "b": {"logged_time": 1}}),
            json!({"a": {"logged_time": 1}, "metadata": {"version": "1.8.0"}}),
            json!({"metadata": 3}),
            json!({}),
            json!({"metadata": {"logged_time": 5, "loggers": [{"name": "sealog"}]}}),
            json!({"metadata": {"logged_time": 5, "loggers": [{"name": "a"}, {"name": "sealog"}], "uid": "u"}}),
            json!({"metadata": {"loggers": [1, [2], {"name": "sealog"}]}, "z": 1}),
            json!({"metadata": {"loggers": [], "logged_time": 5}}),
        ] {
            check_event(&v);
        }
    }

    #[test]
    fn rfc8785_examples_match_the_oracle() {
        for text in [
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
            r#"{"numbers":[333333333.33333329,4.50,2e-3,0.000000000000000000000000001,-0.0,1E30,9007199254740991,-9007199254740991,9007199254740993]}"#,
            r#"{"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/\u007f\u2028\u0000\u001f"}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(to_vec(&v), oracle(&v), "{text}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
            (-1e15f64..1e15).prop_map(Value::from),
            any::<u32>().prop_map(|x| Value::from(f64::from(x) / 1024.0)),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\\u{7f}\u{e000}-\u{e010}\u{10000}-\u{10010}a-c]{0,6}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    "[a-z\u{e000}\u{ffff}\u{10000}\u{1f600}_]{0,5}|logged_time|metadata",
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn matches_the_oracle_on_any_value(v in arb_json()) {
            prop_assert_eq!(to_vec(&v), oracle(&v));
        }

        #[test]
        fn events_match_the_oracle_with_and_without_logged_time(
            v in arb_json(),
            extra in prop::collection::btree_map("[a-z_]{0,12}", arb_json(), 0..4),
            t in 0u64..(1 << 53),
            loggers in prop::collection::vec(arb_json(), 0..3),
        ) {
            let mut meta: Map<String, Value> = extra.into_iter().collect();
            meta.insert("logged_time".into(), Value::from(t));
            let mut loggers = loggers;
            loggers.push(json!({"name": "sealog", "uid": "ingest"}));
            meta.insert("loggers".into(), Value::Array(loggers));
            let e = json!({"metadata": meta, "x": v});
            check_event(&e);
        }
    }
}
