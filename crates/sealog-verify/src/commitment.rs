//! An event's commitment: `SHA-256(salt || JCS(event))`, the value a leaf
//! of the log commits to (spec/leaves.md). The salt keeps the public leaf
//! from revealing the event; the canonical form (RFC 8785) makes the
//! commitment independent of how the event was written.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::tree::Hash;

/// The salt length in bytes.
pub const SALT_LEN: usize = 32;

/// The largest integer magnitude an event may hold: 2^53 - 1, the I-JSON
/// (RFC 7493 §2.2) safe range. Beyond it a number's value depends on the
/// parser, so two honest parties could canonicalize one event two ways.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form the log would accept, with the JSON
/// path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ShapeError {
    /// Path of the field, e.g. `a.b[1]`; empty for the event itself.
    pub field: String,
    /// The rule the field broke.
    pub message: String,
}

impl ShapeError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ShapeError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The commitment `SHA-256(salt || jcs)`.
///
/// ```
/// use sealog_verify::commitment::commitment;
/// let a = commitment(&[1; 32], br#"{"a":1}"#);
/// assert_ne!(a, commitment(&[2; 32], br#"{"a":1}"#), "the salt is bound");
/// ```
pub fn commitment(salt: &[u8], jcs: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(jcs);
    Hash(h.finalize().into())
}

/// Checks that `event` is something the log can hold and returns its
/// canonical form: a JSON object whose numbers all lie within
/// ±(2^53 - 1). Readers take back every event a log ever accepted, so only
/// the JSON parser's own limit bounds nesting here.
pub fn canonical(event: &Value) -> Result<Vec<u8>, ShapeError> {
    let Value::Object(map) = event else {
        return Err(ShapeError::new("", "an event must be a JSON object"));
    };
    check_shape(map, usize::MAX)?;
    Ok(crate::jcs::to_vec(event))
}

/// Checks the object `m` for numbers outside ±(2^53 - 1) and nesting
/// deeper than `limit` levels (the object itself is level 1).
pub fn check_shape(m: &Map<String, Value>, limit: usize) -> Result<(), ShapeError> {
    check_object(m, &mut String::new(), 1, limit)
}

fn check_value(v: &Value, path: &mut String, depth: usize, limit: usize) -> Result<(), ShapeError> {
    match v {
        Value::Number(n) => {
            let ok = if let Some(u) = n.as_u64() {
                u <= MAX_SAFE_INTEGER
            } else if let Some(i) = n.as_i64() {
                i.unsigned_abs() <= MAX_SAFE_INTEGER
            } else {
                // A float: above 2^53 every double is an integer that
                // lost precision when parsed, so the same bound applies.
                n.as_f64()
                    .is_some_and(|f| f.abs() <= MAX_SAFE_INTEGER as f64)
            };
            if ok {
                Ok(())
            } else {
                Err(ShapeError::new(
                    path.clone(),
                    "number outside the I-JSON safe range ±(2^53-1)",
                ))
            }
        }
        Value::Array(_) if depth > limit => Err(ShapeError::new(
            path.clone(),
            format!("nested deeper than {limit} levels"),
        )),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_value(x, path, depth + 1, limit)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(m) => check_object(m, path, depth, limit),
        _ => Ok(()),
    }
}

fn check_object(
    m: &Map<String, Value>,
    path: &mut String,
    depth: usize,
    limit: usize,
) -> Result<(), ShapeError> {
    if depth > limit {
        return Err(ShapeError::new(
            path.clone(),
            format!("nested deeper than {limit} levels"),
        ));
    }
    for (k, x) in m {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
        check_value(x, path, depth + 1, limit)?;
        path.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"] }"#).unwrap();
        assert_eq!(canonical(&v).unwrap(), br#"{"a":[true,null,"x"],"b":1}"#);
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting_example() {
        // RFC 8785 §3.2.3: keys sort by their UTF-16 code units.
        let v: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                    \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                    \"\u{1f600}\":\"Emoji: Grinning Face\",\
                    \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(String::from_utf8(canonical(&v).unwrap()).unwrap(), want);
    }

    #[test]
    fn rfc8785_section_3_2_2_number_example() {
        // The RFC's example less 1E30, which lies beyond the safe range.
        let v: Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,4.50,2e-3,0.000000000000000000000000001]}"#,
        )
        .unwrap();
        assert_eq!(
            canonical(&v).unwrap(),
            br#"{"numbers":[333333333.3333333,4.5,0.002,1e-27]}"#
        );
    }

    #[test]
    fn rfc8785_section_3_2_2_string_example() {
        let v: Value =
            serde_json::from_str(r#"{"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/"}"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(canonical(&v).unwrap()).unwrap(),
            "{\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    #[test]
    fn canonical_form_is_idempotent() {
        let v = json!({"z": {"y": [1.5, -0.0, 1e-7]}, "a": "ü"});
        let once = canonical(&v).unwrap();
        let again: Value = serde_json::from_slice(&once).unwrap();
        assert_eq!(canonical(&again).unwrap(), once);
    }

    #[test]
    fn non_objects_are_refused() {
        for v in [json!([1]), json!("x"), json!(1), json!(null)] {
            assert_eq!(canonical(&v).unwrap_err().field, "");
        }
    }

    #[test]
    fn numbers_beyond_the_safe_range_are_refused_with_their_path() {
        let max = MAX_SAFE_INTEGER;
        assert!(canonical(&json!({ "n": max })).is_ok());
        assert!(canonical(&json!({ "n": -(max as i64) })).is_ok());
        let e = canonical(&json!({"a": {"b": [0, max + 1]}})).unwrap_err();
        assert_eq!(e.field, "a.b[1]");
        let e = canonical(&json!({ "n": -(max as i64) - 1 })).unwrap_err();
        assert_eq!(e.field, "n");
        let v: Value = serde_json::from_str(r#"{"n": 123456789012345678901234567890}"#).unwrap();
        assert_eq!(canonical(&v).unwrap_err().field, "n");
        let v: Value = serde_json::from_str(r#"{"n": 1e300}"#).unwrap();
        assert_eq!(canonical(&v).unwrap_err().field, "n");
    }

    #[test]
    fn nesting_is_bounded_by_the_limit_given() {
        let v = json!({"a": {"b": [1]}});
        let Value::Object(m) = &v else { unreachable!() };
        assert!(check_shape(m, 3).is_ok());
        assert_eq!(check_shape(m, 2).unwrap_err().field, "a.b");
    }
}
