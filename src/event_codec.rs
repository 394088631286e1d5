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

use std::cell::RefCell;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

use crate::event::SALT_LEN;
use crate::store::StoreError;

/// The log trains its dictionary when it first holds this many events,
/// from (at most) that many of its first events.
pub const TRAIN_AT: u64 = 4096;

/// The dictionary's size: measured on the load generator's events, 16 KiB
/// compressed as well as 64 KiB (spec/storage.md).
const DICT_BYTES: usize = 16 << 10;

/// zstd's level: 1 and 3 give the same size with a dictionary, 9 is
/// 8x slower for 0.1 % less.
const LEVEL: i32 = 3;

/// No canonical event is larger than this (requests are far smaller):
/// a frame claiming more is damage.
const MAX_EVENT_BYTES: u64 = 16 << 20;

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// A log's compression dictionary, ready for both directions.
pub struct Dictionary {
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl Dictionary {
    pub fn new(bytes: &[u8]) -> Dictionary {
        Dictionary {
            compress: CDict::create(bytes, LEVEL),
            decompress: DDict::create(bytes),
        }
    }

    /// A dictionary for events like `samples` (their canonical bytes),
    /// or why zstd could not make one.
    pub fn train(samples: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        zstd::dict::from_samples(samples, DICT_BYTES).map_err(|e| e.to_string())
    }
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
    if let Some(dict) = dict {
        // zstd writes from the start of the buffer it is given.
        let mut frame = Vec::with_capacity(zstd_safe::compress_bound(jcs.len()));
        let done = CCTX.with(|c| {
            c.borrow_mut()
                .compress_using_cdict(&mut frame, jcs, &dict.compress)
        });
        if done.is_ok() && frame.len() < jcs.len() {
            out[0] = ZSTD;
            out.extend_from_slice(&frame);
            return;
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
                Ok(Some(n)) if n <= MAX_EVENT_BYTES => n as usize,
                _ => return Err(bad("not a zstd frame of an event")),
            };
            let mut jcs = Vec::with_capacity(size);
            DCTX.with(|d| d.borrow_mut().decompress_using_ddict(&mut jcs, body, &dict.decompress))
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
                    r#"{{"activity_id":{},"class_uid":3002,"metadata":{{"uid":"u-{i}","product":{{"name":"idp"}}}},"status_id":{},"user":{{"name":"user{}"}},"src_endpoint":{{"ip":"10.0.{}.{}"}}}}"#,
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

    #[test]
    fn events_round_trip_with_and_without_a_dictionary() {
        let events = samples(2000);
        let dict = Dictionary::new(&Dictionary::train(&events).unwrap());
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
        assert!(packed * 2 < raw, "{packed} vs {raw}");
    }

    #[test]
    fn what_does_not_shrink_is_stored_as_is_and_damage_is_refused() {
        let dict = Dictionary::new(&Dictionary::train(&samples(2000)).unwrap());
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
