//! Audit events: what an event may be, its canonical form (RFC 8785 JCS),
//! and the salted commitment that becomes the public leaf.
//!
//! The public leaf is `SHA-256(salt || JCS(event))` with a fresh 32-byte
//! salt per event: the tree and tiles reveal nothing about the event, and
//! deleting the event and its salt (redaction) leaves every proof intact.

pub mod json;
pub mod ocsf;
pub mod records;
pub mod signals;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::events::ocsf::validate::{self, Violation};
use crate::events::signals::Signals;
use sealog_verify::commitment::{check_shape, ShapeError};
use sealog_verify::tree::Hash;

/// Longest producer-supplied `metadata.uid` accepted.
pub const MAX_UID_LEN: usize = 256;

use sealog_verify::commitment::{commitment, SALT_LEN};

/// An event's own key, drawn when it is prepared: the store seals the
/// event's private rows under it and a redaction destroys it
/// (spec/storage.md, "Event keys and erasure").
pub type EventKey = [u8; KEY_LEN];
/// The length of an [`EventKey`].
pub const KEY_LEN: usize = 32;

/// A fresh random key.
pub fn new_key() -> EventKey {
    let mut k = [0u8; KEY_LEN];
    crate::sys::random::fill(&mut k);
    k
}

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

impl From<ShapeError> for EventError {
    fn from(e: ShapeError) -> Self {
        EventError {
            field: e.field,
            message: e.message,
        }
    }
}

impl EventError {
    /// A refusal of the field at path `field` (empty: the whole event).
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
    /// `class_uid`, checked against the OCSF schema.
    pub class_uid: u32,
    /// `activity_id`, one of the class's activities.
    pub activity_id: i64,
    /// `status_id` (success, failure...), when the event has one.
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
    /// The event in canonical form (RFC 8785 JCS): exactly the bytes the
    /// commitment binds, which a verifier hashes again.
    pub jcs: Vec<u8>,
    /// Its fresh random salt, which makes the commitment hiding: without
    /// one, a guessable event (a login by one of a few users) could be
    /// confirmed from its leaf (spec/leaves.md).
    pub salt: [u8; SALT_LEN],
    /// `SHA-256(salt || jcs)`: the public leaf data (spec/leaves.md,
    /// "Commitment and leaf").
    pub commitment: Hash,
    /// What the event is indexed and queried by.
    pub facets: Facets,
    /// The key its private rows are sealed under (`store::keys`):
    /// destroyed when it is redacted.
    pub key: EventKey,
    /// Its stored rows, when encoded ahead of the sequencer
    /// (`store::LogStore::encode_ahead`).
    pub rows: Option<Rows>,
    /// What the detection rules read of it, when taken from the parsed
    /// event (`prepare`): the sequencer hands them on
    /// (`log::signal_feed`).
    pub signals: Option<Arc<Signals>>,
}

/// An event's stored rows: the `events_z` row and the facets row, sealed
/// under its key, and its `uid_hashes` row.
#[derive(Clone, Debug)]
pub struct Rows {
    /// Whether `event` was encoded with the log's dictionary.
    pub with_dictionary: bool,
    /// The `events_z` row: salt and canonical event, compressed, sealed.
    pub event: Vec<u8>,
    /// The `facets` row, sealed.
    pub facets: Vec<u8>,
    /// The `uid_hashes` row: the uid's SHA-256 and a keyed tag of the
    /// content hash, never the uid in clear.
    pub uid: Vec<u8>,
}

impl Committed {
    /// Draws a fresh salt and commits to the canonical event `jcs`.
    pub fn new(jcs: Vec<u8>, facets: Facets) -> Self {
        let mut salt = [0u8; SALT_LEN];
        crate::sys::random::fill(&mut salt);
        let commitment = commitment(&salt, &jcs);
        Committed {
            jcs,
            salt,
            commitment,
            facets,
            key: new_key(),
            rows: None,
            signals: None,
        }
    }
}

/// Who hands an event to the log. The server records it inside the event
/// (so inside what the leaf commits to) as the last entry of
/// `metadata.loggers`, like `metadata.logged_time`: an auditor reading any
/// event can tell which token appended it, and the log's own records from
/// everything a token holder posted (spec/leaves.md, "What the log sets").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appender<'a> {
    /// `POST /v1/events` by the token with this name.
    Token(&'a str),
    /// The log itself: token changes, redactions, detection findings.
    Log,
}

/// The name of the server's `metadata.loggers` entry, and the product and
/// `metadata.uid` prefix reserved for the log's own records.
pub const LOGGER_NAME: &str = "sealog";
/// `metadata.uid`s with this prefix are the log's own (findings): no
/// producer may post one, so none can take a uid the detection runner
/// will use.
pub const RESERVED_UID_PREFIX: &str = "sealog-";
/// The deepest nesting an event may have (the event object itself is
/// depth 1). Every reader parses events inside envelopes (a receipt, a
/// query page, a stream message: at most 4 levels more) with serde_json's
/// limit of 128, so whatever is appended can always be read back.
pub const MAX_DEPTH: usize = 64;
/// The largest canonical event, in bytes (CloudTrail's limit too). A
/// query page, a stream message and a receipt each carry whole events;
/// bounding one bounds them, and bounds what parsing one costs in memory
/// (`json::for_each_event`).
pub const MAX_EVENT_BYTES: usize = 256 << 10;

/// `metadata.loggers`' last entry, as the server writes it.
fn logger(by: Appender) -> Value {
    let product = serde_json::json!({"name": LOGGER_NAME, "vendor_name": LOGGER_NAME});
    match by {
        Appender::Token(name) => serde_json::json!({
            "name": LOGGER_NAME, "log_name": "events", "uid": name, "product": product,
        }),
        Appender::Log => serde_json::json!({
            "name": LOGGER_NAME, "log_name": "records", "product": product,
        }),
    }
}

/// Refuses what only the log may write: a `metadata.loggers` entry, a
/// product or a `unmapped.sealog` member claiming to be sealog, or a
/// `metadata.uid` in the log's reserved range.
fn check_not_imitating(map: &Map<String, Value>) -> Result<(), EventError> {
    let is_sealog = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(LOGGER_NAME))
    };
    let metadata = &map["metadata"];
    if let Some(loggers) = metadata.get("loggers").and_then(Value::as_array) {
        for (i, l) in loggers.iter().enumerate() {
            if is_sealog(&l["name"]) || is_sealog(&l["product"]["name"]) {
                return Err(EventError::new(
                    format!("metadata.loggers[{i}]"),
                    "the logger named sealog is the log's own, set by the server",
                ));
            }
        }
    }
    if is_sealog(&metadata["product"]["name"]) {
        return Err(EventError::new(
            "metadata.product.name",
            "product sealog is reserved for the log's own records",
        ));
    }
    if metadata["uid"]
        .as_str()
        .is_some_and(|u| u.starts_with(RESERVED_UID_PREFIX))
    {
        return Err(EventError::new(
            "metadata.uid",
            format!("uids starting {RESERVED_UID_PREFIX:?} are reserved for the log's own records"),
        ));
    }
    if map
        .get("unmapped")
        .and_then(|u| u.get(LOGGER_NAME))
        .is_some()
    {
        return Err(EventError::new(
            "unmapped.sealog",
            "reserved for the log's own records",
        ));
    }
    Ok(())
}

/// Makes an OCSF event ready for the log: validates it against the schema,
/// fills in `type_uid` and `category_uid` when absent, sets
/// `metadata.logged_time` to `logged_time`, `metadata.uid` to a fresh
/// UUID when the producer gave none, and appends the server's entry naming
/// `by` to `metadata.loggers`; canonicalizes it and commits to it. A
/// token's event may not imitate the log's own records
/// (`check_not_imitating`).
pub fn prepare(event: Value, logged_time: u64, by: Appender) -> Result<Committed, EventError> {
    let Value::Object(mut map) = event else {
        return Err(EventError::new("", "an event must be a JSON object"));
    };
    check_shape(&map, MAX_DEPTH)?;
    let class_uid = validate::validate(&mut map)?;
    if by != Appender::Log {
        check_not_imitating(&map)?;
    }
    let metadata = map
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("validated: metadata is an object");
    metadata.insert("logged_time".into(), Value::from(logged_time));
    match metadata.get_mut("loggers") {
        Some(Value::Array(loggers)) => loggers.push(logger(by)),
        _ => {
            metadata.insert("loggers".into(), Value::Array(vec![logger(by)]));
        }
    }
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
    let (jcs, server_set) = sealog_verify::jcs::event(&map);
    if jcs.len() > MAX_EVENT_BYTES {
        return Err(EventError::new(
            "",
            format!(
                "the canonical event is {} bytes; the limit is {MAX_EVENT_BYTES}",
                jcs.len()
            ),
        ));
    }
    let signals = Signals::of_event(&map, &jcs).map(Arc::new);
    // The content hash is over the canonical event without what the
    // server set (logged_time, its logger): the same bytes with those cut
    // out, so a retry, from any token, carries the same.
    let mut h = Sha256::new();
    let mut at = 0;
    for cut in server_set {
        h.update(&jcs[at..cut.start.max(at)]);
        at = at.max(cut.end);
    }
    h.update(&jcs[at..]);
    facets.content = h.finalize().into();
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
    crate::sys::random::fill(&mut b);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_prepared_event_carries_the_signals_of_its_canonical_form() {
        let v = json!({
            "class_uid": 3002, "activity_id": 1, "time": 1763800000000u64, "severity_id": 1, "status_id": 2,
            "user": {"uid": "u-42", "name": "alice"}, "dst_endpoint": {"hostname": "sso.example.com"},
            "src_endpoint": {"ip": "192.0.2.7", "location": {"lat": 48.85, "long": 2.35, "city": "Paris"}},
            "metadata": {"version": "1.8.0", "product": {"name": "Example IdP"}}});
        let e = prepare(v, 1763800000123, Appender::Token("t")).unwrap();
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
