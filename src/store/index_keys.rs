//! The keys an event is indexed under, and their stored form.
//!
//! A looked-up value (leaf hash, metadata.uid, user, actor, IP) becomes a
//! 64-bit key: the first 8 bytes of its SHA-256 (of the leaf hash itself,
//! which already is one). Keys of different values collide with
//! probability ~n²/2^65, so a key only names candidates: every lookup
//! checks them against the log.

use sha2::{Digest, Sha256};

use crate::events::Facets;
use sealog_verify::tree::Hash;

/// The key of a string value.
pub fn of_str(value: &str) -> u64 {
    prefix(&Sha256::digest(value.as_bytes()))
}

/// The key of a string value whose SHA-256 is `hash` (what the log keeps
/// of a metadata.uid): the same as `of_str` of the value.
pub fn of_hash(hash: &[u8; 32]) -> u64 {
    prefix(hash)
}

/// The key of a leaf hash.
pub fn of_leaf(leaf: &Hash) -> u64 {
    prefix(&leaf.0)
}

fn prefix(h: &[u8]) -> u64 {
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// What one event is indexed under, beside its leaf hash and uid.
#[derive(Clone, Debug, PartialEq)]
pub struct Keys {
    /// The event's `class_uid`, indexed as is.
    pub class_uid: u32,
    /// The event's time, epoch ms, indexed as is.
    pub time: u64,
    /// The keys of its `user.uid` and `user.name`.
    pub users: Vec<u64>,
    /// The keys of its `actor.user.uid` and `actor.user.name`.
    pub actors: Vec<u64>,
    /// The key of its `src_endpoint.ip`.
    pub ip: Option<u64>,
}

const USER: u8 = 1;
const ACTOR: u8 = 2;
const IP: u8 = 3;

impl Keys {
    /// The keys of an event with facets `f`.
    pub fn of(f: &Facets) -> Keys {
        Keys {
            class_uid: f.class_uid,
            time: f.time,
            users: f.users.iter().map(|u| of_str(u)).collect(),
            actors: f.actors.iter().map(|a| of_str(a)).collect(),
            ip: f.src_ip.as_deref().map(of_str),
        }
    }

    /// class_uid (4 bytes) || time (8) || then (tag, key) of 9 bytes each:
    /// tag 1 a user, 2 an actor, 3 the IP; integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let tagged = self.users.iter().map(|k| (USER, k));
        let tagged = tagged.chain(self.actors.iter().map(|k| (ACTOR, k)));
        let tagged = tagged.chain(self.ip.iter().map(|k| (IP, k)));
        let mut out = Vec::with_capacity(12 + 9 * 5);
        out.extend_from_slice(&self.class_uid.to_be_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        for (tag, k) in tagged {
            out.push(tag);
            out.extend_from_slice(&k.to_be_bytes());
        }
        out
    }

    /// Reads what `encode` wrote for leaf `i` (the index reads it back to
    /// remove the leaf's keys when it is redacted); a cut-short row, an
    /// unknown tag or a second IP is corrupt, and this says which leaf.
    pub fn decode(i: u64, bytes: &[u8]) -> Result<Keys, String> {
        let bad = || format!("index keys of {i}");
        if bytes.len() < 12 || !(bytes.len() - 12).is_multiple_of(9) {
            return Err(bad());
        }
        let mut keys = Keys {
            class_uid: u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")),
            time: prefix(&bytes[4..12]),
            users: Vec::new(),
            actors: Vec::new(),
            ip: None,
        };
        for entry in bytes[12..].chunks_exact(9) {
            let k = prefix(&entry[1..]);
            match entry[0] {
                USER => keys.users.push(k),
                ACTOR => keys.actors.push(k),
                IP if keys.ip.is_none() => keys.ip = Some(k),
                _ => return Err(bad()),
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_garbage_is_refused() {
        let f = Facets {
            class_uid: 3002,
            time: 1_700_000_000_123,
            users: vec!["alice".into(), "u-1".into()],
            actors: vec!["admin".into()],
            src_ip: Some("10.0.0.1".into()),
            ..Default::default()
        };
        let keys = Keys::of(&f);
        assert_eq!(keys.users, [of_str("alice"), of_str("u-1")]);
        assert_ne!(of_str("alice"), of_str("alicf"));
        let bytes = keys.encode();
        assert_eq!(bytes.len(), 12 + 4 * 9);
        assert_eq!(Keys::decode(7, &bytes).unwrap(), keys);
        let none = Keys::of(&Facets::default());
        assert_eq!(Keys::decode(7, &none.encode()).unwrap(), none);
        assert!(Keys::decode(7, &bytes[..20]).is_err(), "cut short");
        let mut bad_tag = bytes.clone();
        bad_tag[12] = 9;
        assert!(Keys::decode(7, &bad_tag).is_err(), "unknown tag");
    }
}
