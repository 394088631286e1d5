//! The receipt a writer gets for each appended event, and the JSON wire
//! forms of proofs. Shared by the server and the client; depends on
//! nothing server-side.

use base64::prelude::{Engine, BASE64_STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::tree::Hash;

/// Proof that an event is leaf `index` of the log, under a signed
/// checkpoint, standing alone: anyone with the log's verifier key can
/// check it offline (client::verify_receipt).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub index: u64,
    /// The event in its canonical (RFC 8785) form.
    pub event: Box<RawValue>,
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64_hash")]
    pub commitment: Hash,
    #[serde(with = "b64_hash")]
    pub leaf_hash: Hash,
    /// The signed note of the checkpoint the proof reaches.
    pub checkpoint: String,
    #[serde(with = "b64_hashes")]
    pub inclusion_proof: Vec<Hash>,
}

/// `GET /v1/proof/inclusion` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    #[serde(with = "b64_hashes")]
    pub hashes: Vec<Hash>,
}

/// `GET /v1/proof/consistency` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    #[serde(with = "b64_hashes")]
    pub hashes: Vec<Hash>,
}

/// Decodes a standard base64 32-byte hash.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let v = BASE64_STANDARD.decode(s).ok()?;
    Some(Hash(v.try_into().ok()?))
}

pub mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64_STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        BASE64_STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

pub mod b64_hash {
    use super::*;
    pub fn serialize<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64_STANDARD.encode(h.0))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        parse_hash(&s).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte hash"))
    }
}

pub mod b64_hashes {
    use super::*;
    use serde::ser::SerializeSeq;
    pub fn serialize<S: serde::Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&BASE64_STANDARD.encode(h.0))?;
        }
        seq.end()
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<&str>::deserialize(d)?
            .into_iter()
            .map(|s| {
                parse_hash(s).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte hash"))
            })
            .collect()
    }
}
