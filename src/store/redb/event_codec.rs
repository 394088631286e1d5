//! The stored form of an event: `codec (1 byte) || salt (32) || body`,
//! where codec 0 means the body is the canonical event (JCS) as is, and
//! codec 1 that it is a zstd frame of it, compressed with the log's
//! dictionary (`meta.dict`).
//!
//! Why a dictionary: audit events are small and alike (the same OCSF
//! member names, the same enumerations, a few producers' templates), and
//! zstd alone shrinks a ~700-byte event by a third, while with a
//! dictionary trained on the log's own first events it removes most of
//! what events share (spec/storage.md has the measurements). The
//! dictionary is trained once, when the log first holds `TRAIN_AT`
//! events, stored in the log's meta table in its own transaction, and
//! used only by transactions after that one commits: a row never names a
//! dictionary the database does not hold. The salt is stored apart: it
//! is random and would not compress.
//!
//! A trained dictionary is largely byte runs copied from its samples, and
//! it outlives every event (it is in every backup, and it is not sealed
//! under any event's key), so it must hold no event content: a redacted
//! event's user name or product must not survive in it. It is trained on
//! the events' shape only (`Samples`): member names that are the OCSF
//! schema's (others are dropped: `unmapped` takes any), enumerations
//! (integer `*_id` and `*_uid` members, and integers below 100) and their
//! captions (`status` beside `status_id`, `class_name` beside
//! `class_uid`) when the text is one of the schema's captions
//! (`ocsf::vocabulary`); every other string, the producer's
//! `metadata.product` and `metadata.version` among them, is emptied and
//! every other number zeroed.
//!
//! Codec 2 (`store::redb`): the row of codec 0 or 1 sealed under the
//! event's key.

use std::cell::RefCell;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

use crate::store::StoreError;
use sealog_verify::commitment::SALT_LEN;

/// The log trains its dictionary when it first holds this many events,
/// from (at most) that many of its first events.
pub const TRAIN_AT: u64 = 4096;

/// The dictionary's size: measured on the load generator's events, 16 KiB
/// compressed as well as 64 KiB (spec/storage.md).
const DICT_BYTES: usize = 16 << 10;

/// zstd's level. On the load generator's events (`cargo bench --bench core
/// -- "event encode"`), 1 is 20 % faster than 3 (1.49 against 1.88 µs) but
/// stores 5 % more (293 against 278 bytes of 683): ~1 % of a batch's CPU is
/// not worth it. 9 is 8x slower for 0.1 % less.
const LEVEL: i32 = 3;

/// Events larger than this are stored as they are (a frame claiming more
/// is damage), and not used to train.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// Training reads at most this many bytes of samples, and no sample
/// larger than `MAX_SAMPLE_BYTES` (zstd wants ~100x the dictionary).
const MAX_SAMPLES_BYTES: usize = 4 << 20;
const MAX_SAMPLE_BYTES: usize = 64 << 10;

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// A log's compression dictionary, ready for both directions.
pub struct Dictionary {
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl Dictionary {
    /// Prepares `bytes`, the log's stored dictionary, for zstd at `LEVEL`:
    /// the same bytes must compress and decompress every event of the log.
    pub fn new(bytes: &[u8]) -> Dictionary {
        Dictionary {
            compress: CDict::create(bytes, LEVEL),
            decompress: DDict::create(bytes),
        }
    }
}

/// The shapes of the events a dictionary is trained on.
#[derive(Default)]
pub struct Samples {
    shapes: Vec<Vec<u8>>,
    bytes: usize,
}

impl Samples {
    /// Takes the shape of the canonical event `jcs`; false once there are
    /// enough bytes of samples.
    pub fn add(&mut self, jcs: &[u8]) -> bool {
        if jcs.len() <= MAX_SAMPLE_BYTES {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(jcs) {
                blank(&mut v);
                let shape = serde_json::to_vec(&v).expect("a Value serializes");
                self.bytes += shape.len();
                self.shapes.push(shape);
            }
        }
        self.bytes < MAX_SAMPLES_BYTES
    }

    /// A dictionary for events of these shapes, or why zstd could not
    /// make one.
    pub fn train(&self) -> Result<Vec<u8>, String> {
        zstd::dict::from_samples(&self.shapes, DICT_BYTES).map_err(|e| e.to_string())
    }
}

/// Blanks what may be an event's content in `v`.
fn blank(v: &mut serde_json::Value) {
    use serde_json::Value;
    let words = crate::events::ocsf::vocabulary();
    match v {
        Value::String(s) => s.clear(),
        Value::Number(n) if n.as_u64().is_none_or(|n| n >= 100) => *v = Value::from(0),
        Value::Array(a) => a.iter_mut().for_each(blank),
        Value::Object(m) => {
            // A member name the schema does not know is the producer's.
            m.retain(|k, _| words.contains(k));
            // Enumerations (`status_id`, `class_uid`) and their captions
            // are the schema's words, not the event's.
            let schema: Vec<String> = m
                .iter()
                .filter(|(k, v)| {
                    (v.is_u64() && (k.ends_with("_id") || k.ends_with("_uid")))
                        || (v.as_str().is_some_and(|s| words.contains(s)) && is_caption(m, k))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (k, v) in m.iter_mut() {
                if !schema.contains(k) {
                    blank(v);
                }
            }
        }
        _ => {}
    }
}

/// Whether member `k` of `m` is the caption of an enumeration beside it
/// (`status` of `status_id`, `activity_name` of `activity_id`,
/// `class_name` of `class_uid`): schema text, not event content.
fn is_caption(m: &serde_json::Map<String, serde_json::Value>, k: &str) -> bool {
    let base = k.strip_suffix("_name").unwrap_or(k);
    [
        format!("{k}_id"),
        format!("{base}_id"),
        format!("{base}_uid"),
    ]
    .iter()
    .any(|id| m.get(id).is_some_and(|v| v.is_u64()))
}

thread_local! {
    // A zstd context costs ~8 µs to make, more than compressing an event.
    static CCTX: RefCell<CCtx<'static>> = RefCell::new(CCtx::create());
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

/// Writes the stored form of (`salt`, `jcs`) into `out`, compressed when
/// there is a dictionary and it makes the event smaller.
pub fn encode(salt: &[u8; SALT_LEN], jcs: &[u8], dict: Option<&Dictionary>, out: &mut Vec<u8>) {
    out.clear();
    out.push(RAW);
    out.extend_from_slice(salt);
    if let Some(dict) = dict.filter(|_| jcs.len() <= MAX_EVENT_BYTES) {
        // zstd writes the frame into the slice after the salt.
        const HEAD: usize = 1 + SALT_LEN;
        out.resize(HEAD + zstd_safe::compress_bound(jcs.len()), 0);
        let written = CCTX.with(|c| {
            c.borrow_mut()
                .compress_using_cdict(&mut out[HEAD..], jcs, &dict.compress)
        });
        match written {
            Ok(n) if n < jcs.len() => {
                out[0] = ZSTD;
                out.truncate(HEAD + n);
                return;
            }
            _ => out.truncate(HEAD),
        }
    }
    out.extend_from_slice(jcs);
}

/// The (salt, canonical event) of leaf `i`'s stored form.
pub fn decode(
    i: u64,
    row: &[u8],
    dict: Option<&Dictionary>,
) -> Result<([u8; SALT_LEN], Vec<u8>), StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("event {i}: {what}"));
    if row.len() < 1 + SALT_LEN {
        return Err(bad("shorter than its salt"));
    }
    let salt = row[1..1 + SALT_LEN].try_into().expect("SALT_LEN bytes");
    let body = &row[1 + SALT_LEN..];
    let jcs = match row[0] {
        RAW => body.to_vec(),
        ZSTD => {
            let dict = dict.ok_or_else(|| bad("compressed, but the log has no dictionary"))?;
            let size = match zstd_safe::get_frame_content_size(body) {
                Ok(Some(n)) if n <= MAX_EVENT_BYTES as u64 => n as usize,
                _ => return Err(bad("not a zstd frame of an event")),
            };
            let mut jcs = Vec::with_capacity(size);
            DCTX.with(|d| {
                d.borrow_mut()
                    .decompress_using_ddict(&mut jcs, body, &dict.decompress)
            })
            .map_err(|code| bad(zstd_safe::get_error_name(code)))?;
            if jcs.len() != size {
                return Err(bad("frame shorter than it says"));
            }
            jcs
        }
        _ => return Err(bad("unknown codec")),
    };
    Ok((salt, jcs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"activity_id":{},"class_uid":3002,"metadata":{{"uid":"u-{i}","product":{{"name":"Zyxwv IdP"}}}},"status_id":{},"user":{{"name":"user{}"}},"src_endpoint":{{"ip":"10.0.{}.{}"}}}}"#,
                    i % 3,
                    i % 2 + 1,
                    i % 97,
                    i % 13,
                    i % 251
                )
                .into_bytes()
            })
            .collect()
    }

    fn trained(events: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Samples::default();
        for e in events {
            assert!(s.add(e));
        }
        s.train().unwrap()
    }

    #[test]
    fn schema_captions_are_kept_and_content_is_blanked() {
        let mut v = serde_json::json!({
            "status": "Failure", "status_id": 2, "class_name": "Authentication",
            "class_uid": 3002, "message": "bob failed", "time": 1_700_000_000_000u64,
            "activity_name": "bob's own caption", "activity_id": 1,
            "metadata": {"product": {"name": "IdP"}, "version": "1.8.0", "uid": "x1"},
            "user": {"name": "bob", "type": "User", "type_id": 1, "groups": [{"name": "g"}]},
            "unmapped": {"bob_was_here": "x", "name": "y"}
        });
        blank(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "status": "Failure", "status_id": 2, "class_name": "Authentication",
                "class_uid": 3002, "message": "", "time": 0,
                "activity_name": "", "activity_id": 1,
                "metadata": {"product": {"name": ""}, "version": "", "uid": ""},
                "user": {"name": "", "type": "User", "type_id": 1, "groups": [{"name": ""}]},
                "unmapped": {"name": ""}
            })
        );
    }

    #[test]
    fn the_dictionary_holds_the_events_shape_not_their_content() {
        let events = samples(2000);
        let has = |dict: &[u8], s: &[u8]| dict.windows(s.len()).any(|w| w == s);
        let raw = zstd::dict::from_samples(&events, DICT_BYTES).unwrap();
        assert!(
            has(&raw, b"Zyxwv"),
            "trained on the events themselves, it would"
        );
        let dict = trained(&events);
        for content in [&b"user1"[..], b"10.0.", b"u-1"] {
            assert!(!has(&dict, content), "{}", String::from_utf8_lossy(content));
        }
        assert!(has(&dict, b"src_endpoint"), "member names stay");
        assert!(!has(&dict, b"Zyxwv"), "the producer is event content too");
    }

    #[test]
    fn events_round_trip_with_and_without_a_dictionary() {
        let events = samples(2000);
        let dict = Dictionary::new(&trained(&events));
        let salt = [7u8; SALT_LEN];
        let mut row = Vec::new();
        let (mut raw, mut packed) = (0, 0);
        for e in &events {
            encode(&salt, e, None, &mut row);
            assert_eq!(row[0], RAW);
            raw += row.len();
            assert_eq!(decode(1, &row, None).unwrap(), (salt, e.clone()));
            encode(&salt, e, Some(&dict), &mut row);
            assert_eq!(row[0], ZSTD);
            packed += row.len();
            assert_eq!(decode(1, &row, Some(&dict)).unwrap(), (salt, e.clone()));
            assert!(decode(1, &row, None).is_err(), "no dictionary");
        }
        // ~55 %: these events are short, and their producer's name is not
        // in the dictionary (it is event content).
        assert!(packed * 5 < raw * 3, "{packed} vs {raw}");
    }

    #[test]
    fn what_does_not_shrink_is_stored_as_is_and_damage_is_refused() {
        let dict = Dictionary::new(&trained(&samples(2000)));
        let salt = [1u8; SALT_LEN];
        let mut row = Vec::new();
        encode(&salt, b"{}", Some(&dict), &mut row);
        assert_eq!(row[0], RAW, "2 bytes do not compress");
        assert_eq!(decode(1, &row, Some(&dict)).unwrap().1, b"{}");
        encode(&salt, &samples(1)[0], Some(&dict), &mut row);
        let mut cut = row.clone();
        cut.truncate(row.len() - 3);
        assert!(decode(1, &cut, Some(&dict)).is_err(), "cut short");
        let mut flipped = row.clone();
        *flipped.last_mut().unwrap() ^= 0x55;
        if let Ok((_, jcs)) = decode(1, &flipped, Some(&dict)) {
            // zstd frames carry no checksum here: damage may decode, but
            // never to the event (the commitment check catches it).
            assert_ne!(jcs, samples(1)[0]);
        }
        let mut codec = row.clone();
        codec[0] = 9;
        assert!(decode(1, &codec, Some(&dict)).is_err(), "unknown codec");
        assert!(decode(1, &row[..10], Some(&dict)).is_err());
    }
}
