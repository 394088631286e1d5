//! Audit events: what an event may be, its canonical form (RFC 8785 JCS),
//! and the salted commitment that becomes the public leaf.
//!
//! The public leaf is `SHA-256(salt || JCS(event))` with a fresh 32-byte
//! salt per event: the tree and tiles reveal nothing about the event, and
//! deleting the event and its salt (redaction) leaves every proof intact.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::detect::Signals;
use crate::ocsf::validate::{self, Violation};
use crate::tree::Hash;

/// Longest producer-supplied `metadata.uid` accepted.
pub const MAX_UID_LEN: usize = 256;

/// The salt length in bytes.
pub const SALT_LEN: usize = 32;

/// The largest integer magnitude an event may hold: 2^53 - 1, the I-JSON
/// (RFC 7493 §2.2) safe range. Beyond it a number's value depends on the
/// parser, so two honest parties could canonicalize one event two ways.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why an event was refused, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    /// Path of the field, e.g. `actor.user.uid` or `auth_factors[0]`; empty
    /// for the event itself.
    pub field: String,
    /// The rule the field broke.
    pub message: String,
}

impl From<Violation> for EventError {
    fn from(v: Violation) -> Self {
        EventError {
            field: v.field,
            message: v.message,
        }
    }
}

impl EventError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What the log indexes an event by: its class and outcome, its time,
/// its subject and actor, its source address and its `metadata.uid`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facets {
    pub class_uid: u32,
    pub activity_id: i64,
    pub status_id: Option<i64>,
    /// Event time, epoch milliseconds.
    pub time: u64,
    /// `user.uid` and `user.name`.
    pub users: Vec<String>,
    /// `actor.user.uid` and `actor.user.name`.
    pub actors: Vec<String>,
    /// `src_endpoint.ip`.
    pub src_ip: Option<String>,
    /// `metadata.uid`: a retry with the same uid is the same event. Kept
    /// in the uid index, not in the stored facets row (nor the next two).
    #[serde(default, skip_serializing)]
    pub uid: String,
    /// `metadata.logged_time`, epoch milliseconds.
    #[serde(default, skip_serializing)]
    pub logged_time: u64,
    /// SHA-256 of the canonical event without `metadata.logged_time`: a
    /// retry carries the same; another event reusing the uid does not.
    #[serde(default, skip_serializing)]
    pub content: [u8; 32],
}

/// An event accepted for the log: its canonical bytes, its salt, the
/// commitment to both, and what it is indexed by.
#[derive(Clone, Debug)]
pub struct Committed {
    pub jcs: Vec<u8>,
    pub salt: [u8; SALT_LEN],
    pub commitment: Hash,
    pub facets: Facets,
    /// Its stored rows, when encoded ahead of the sequencer
    /// (`Store::encode_ahead`).
    pub rows: Option<Rows>,
    /// What the detection rules read of it, when taken from the parsed
    /// event (`prepare`): the sequencer hands them on (`signal_feed`).
    pub signals: Option<Arc<Signals>>,
}

/// An event's stored rows: the `events_z` row and the facets row.
#[derive(Clone, Debug)]
pub struct Rows {
    /// Whether `event` was encoded with the log's dictionary.
    pub with_dictionary: bool,
    pub event: Vec<u8>,
    pub facets: Vec<u8>,
}

impl Committed {
    /// Draws a fresh salt and commits to the canonical event `jcs`.
    pub fn new(jcs: Vec<u8>, facets: Facets) -> Self {
        let mut salt = [0u8; SALT_LEN];
        crate::random::fill(&mut salt);
        let commitment = commitment(&salt, &jcs);
        Committed {
            jcs,
            salt,
            commitment,
            facets,
            rows: None,
            signals: None,
        }
    }
}

/// Makes an OCSF event ready for the log: validates it against the schema,
/// fills in `type_uid` and `category_uid` when absent, sets
/// `metadata.logged_time` to `logged_time` and `metadata.uid` to a fresh
/// UUID when the producer gave none, canonicalizes it and commits to it.
pub fn prepare(event: Value, logged_time: u64) -> Result<Committed, EventError> {
    let Value::Object(mut map) = event else {
        return Err(EventError::new("", "an event must be a JSON object"));
    };
    check_numbers_in(&map, &mut String::new())?;
    let class_uid = validate::validate(&mut map)?;
    let metadata = map
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("validated: metadata is an object");
    metadata.insert("logged_time".into(), Value::from(logged_time));
    let uid = match metadata.get("uid") {
        None | Some(Value::Null) => {
            let uid = new_uuid();
            metadata.insert("uid".into(), Value::from(uid.clone()));
            uid
        }
        Some(Value::String(u)) if !u.is_empty() && u.len() <= MAX_UID_LEN => u.clone(),
        Some(_) => {
            return Err(EventError::new(
                "metadata.uid",
                format!("must be a non-empty string of at most {MAX_UID_LEN} bytes"),
            ))
        }
    };
    let mut facets = Facets {
        class_uid,
        activity_id: map["activity_id"].as_i64().expect("validated"),
        status_id: map.get("status_id").and_then(Value::as_i64),
        time: map["time"].as_u64().expect("validated: not negative"),
        users: names(map.get("user")),
        actors: names(map.get("actor").and_then(|a| a.get("user"))),
        src_ip: map
            .get("src_endpoint")
            .and_then(|e| e.get("ip"))
            .and_then(Value::as_str)
            .map(String::from),
        uid,
        logged_time,
        content: [0; 32],
    };
    let (jcs, logged_time_member) = crate::jcs::event(&map);
    let signals = Signals::of_event(&map, &jcs).map(Arc::new);
    // The content hash is over the canonical event without logged_time:
    // the same bytes with that member cut out.
    let cut = logged_time_member.expect("logged_time was just set");
    facets.content = Sha256::new()
        .chain_update(&jcs[..cut.start])
        .chain_update(&jcs[cut.end..])
        .finalize()
        .into();
    Ok(Committed {
        signals,
        ..Committed::new(jcs, facets)
    })
}

/// Refuses an event dated more than `max_skew_ms` after `now` (the log's
/// clock): one such event would move the detection rules' notion of now
/// ahead of every other event's. Past times (backfills) are accepted.
pub fn not_after(e: &Committed, now: u64, max_skew_ms: u64) -> Result<(), EventError> {
    let bound = now.saturating_add(max_skew_ms);
    if e.facets.time > bound {
        return Err(EventError::new(
            "time",
            format!(
                "{} is {} ms past the log's clock; at most {max_skew_ms} ms ahead is accepted",
                e.facets.time,
                e.facets.time - now
            ),
        ));
    }
    Ok(())
}

/// The `uid` and `name` of an OCSF user object, without repeats.
fn names(user: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = ["uid", "name"]
        .iter()
        .filter_map(|k| user?.get(k)?.as_str().map(String::from))
        .collect();
    out.dedup();
    out
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    crate::random::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The commitment `SHA-256(salt || jcs)`.
pub fn commitment(salt: &[u8], jcs: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(jcs);
    Hash(h.finalize().into())
}

/// Checks that `event` is something the log can hold and returns its
/// canonical form. This issue's rule: a JSON object whose numbers all lie
/// within ±(2^53 - 1).
pub fn canonical(event: &Value) -> Result<Vec<u8>, EventError> {
    let Value::Object(map) = event else {
        return Err(EventError::new("", "an event must be a JSON object"));
    };
    check_numbers_in(map, &mut String::new())?;
    Ok(crate::jcs::to_vec(event))
}

fn check_numbers(v: &Value, path: &mut String) -> Result<(), EventError> {
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
                Err(EventError::new(
                    path.clone(),
                    "number outside the I-JSON safe range ±(2^53-1)",
                ))
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(x, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(m) => check_numbers_in(m, path),
        _ => Ok(()),
    }
}

fn check_numbers_in(m: &Map<String, Value>, path: &mut String) -> Result<(), EventError> {
    for (k, x) in m {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
        check_numbers(x, path)?;
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
    fn a_prepared_event_carries_the_signals_of_its_canonical_form() {
        let v = json!({
            "class_uid": 3002, "activity_id": 1, "time": 1763800000000u64, "severity_id": 1, "status_id": 2,
            "user": {"uid": "u-42", "name": "alice"}, "dst_endpoint": {"hostname": "sso.example.com"},
            "src_endpoint": {"ip": "192.0.2.7", "location": {"lat": 48.85, "long": 2.35, "city": "Paris"}},
            "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}});
        let e = prepare(v, 1763800000123).unwrap();
        let fed = e
            .signals
            .as_deref()
            .expect("signals taken from the parsed event");
        assert_eq!(Some(fed), Signals::parse(&e.jcs).as_ref());
    }

    #[test]
    fn commitment_binds_salt_and_event() {
        let a = Committed::new(b"{}".to_vec(), Facets::default());
        let b = Committed::new(b"{}".to_vec(), Facets::default());
        assert_ne!(a.salt, b.salt, "every event gets a fresh salt");
        assert_ne!(a.commitment, b.commitment);
        assert_eq!(a.commitment, commitment(&a.salt, b"{}"));
        assert_ne!(a.commitment, commitment(&a.salt, b"{ }"));
    }
}
