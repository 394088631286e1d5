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
    /// The event's leaf index.
    pub index: u64,
    /// The event in its canonical (RFC 8785) form; absent once redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<RawValue>>,
    /// Absent once redacted.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub salt: Option<Vec<u8>>,
    /// `SHA-256(salt || JCS(event))`, the leaf's data.
    #[serde(with = "b64_hash")]
    pub commitment: Hash,
    /// `SHA-256(0x00 || commitment)` (RFC 6962 leaf hash).
    #[serde(with = "b64_hash")]
    pub leaf_hash: Hash,
    /// The signed note of the checkpoint the proof reaches.
    pub checkpoint: String,
    /// The inclusion proof of `index` in the checkpoint's tree (RFC 9162 §2.1.3).
    #[serde(with = "b64_hashes")]
    pub inclusion_proof: Vec<Hash>,
    /// Set when an append was a retry of an event the log already held.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The index of the redaction record, when the event was redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_by: Option<u64>,
}

/// The first line of a C2SP tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a tlog-proof text does not parse.
#[derive(Debug, thiserror::Error)]
#[error("malformed tlog-proof: {0}")]
pub struct TlogProofError(&'static str);

impl Receipt {
    /// The receipt in the C2SP tlog-proof@v1 text form. The `extra` line
    /// carries base64(salt || JCS(event)), from which the leaf is rebuilt,
    /// so the proof stands alone. None for a redacted event.
    pub fn to_tlog_proof(&self) -> Option<String> {
        let (event, salt) = (self.event.as_ref()?, self.salt.as_ref()?);
        let mut extra = salt.clone();
        extra.extend_from_slice(event.get().as_bytes());
        let mut out = format!(
            "{TLOG_PROOF_HEADER}\nextra {}\nindex {}\n",
            BASE64_STANDARD.encode(extra),
            self.index
        );
        for h in &self.inclusion_proof {
            out.push_str(&BASE64_STANDARD.encode(h.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        Some(out)
    }

    /// Parses the tlog-proof@v1 form written by `to_tlog_proof`. The
    /// commitment and leaf hash are recomputed from the extra data.
    pub fn from_tlog_proof(text: &str) -> Result<Receipt, TlogProofError> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(TlogProofError("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(TlogProofError("first line is not c2sp.org/tlog-proof@v1"));
        }
        let extra = lines
            .next()
            .and_then(|l| l.strip_prefix("extra "))
            .and_then(|b| BASE64_STANDARD.decode(b).ok())
            .ok_or(TlogProofError("no extra line with base64(salt || event)"))?;
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .filter(|n| n == &"0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or(TlogProofError("no index line"))?;
        let inclusion_proof = lines
            .map(|l| parse_hash(l).ok_or(TlogProofError("a proof line is not a base64 hash")))
            .collect::<Result<Vec<_>, _>>()?;
        if extra.len() < crate::commitment::SALT_LEN {
            return Err(TlogProofError("extra is shorter than a salt"));
        }
        let (salt, jcs) = extra.split_at(crate::commitment::SALT_LEN);
        let event =
            String::from_utf8(jcs.to_vec()).map_err(|_| TlogProofError("event is not UTF-8"))?;
        let event =
            RawValue::from_string(event).map_err(|_| TlogProofError("event is not JSON"))?;
        let commitment = crate::commitment::commitment(salt, jcs);
        Ok(Receipt {
            index,
            event: Some(event),
            salt: Some(salt.to_vec()),
            commitment,
            leaf_hash: crate::tree::leaf_hash(&commitment.0),
            checkpoint: checkpoint.to_string(),
            inclusion_proof,
            duplicate: false,
            redacted_by: None,
        })
    }
}

/// `GET /v1/proof/inclusion` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The proof's hashes, leaf to root.
    #[serde(with = "b64_hashes")]
    pub hashes: Vec<Hash>,
}

/// `GET /v1/proof/consistency` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof's hashes (RFC 9162 §2.1.4).
    #[serde(with = "b64_hashes")]
    pub hashes: Vec<Hash>,
}

/// Decodes a standard base64 32-byte hash.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let v = BASE64_STANDARD.decode(s).ok()?;
    Some(Hash(v.try_into().ok()?))
}

/// Serde for bytes as standard base64.
pub mod b64 {
    use super::*;
    /// Writes `v` as base64.
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64_STANDARD.encode(v))
    }
    /// Reads base64.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        BASE64_STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serde for optional bytes as standard base64.
pub mod b64_opt {
    use super::*;
    /// Writes `v` as base64, or none.
    pub fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&BASE64_STANDARD.encode(v)),
            None => s.serialize_none(),
        }
    }
    /// Reads base64, or none.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| BASE64_STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `h` in standard base64, written into `buf` rather than a new `String`:
/// a proof's answer writes ~20 (`b64_hashes`).
fn hash_b64<'b>(h: &Hash, buf: &'b mut [u8; 44]) -> &'b str {
    let n = BASE64_STANDARD
        .encode_slice(h.0, buf)
        .expect("44 bytes hold 32 in base64");
    std::str::from_utf8(&buf[..n]).expect("base64 is ASCII")
}

/// Serde for a 32-byte hash as standard base64.
pub mod b64_hash {
    use super::*;
    /// Writes `h` as base64.
    pub fn serialize<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hash_b64(h, &mut [0; 44]))
    }
    /// Reads a base64 32-byte hash.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        parse_hash(&s).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte hash"))
    }
}

/// Serde for a list of 32-byte hashes as standard base64.
pub mod b64_hashes {
    use super::*;
    use serde::ser::SerializeSeq;
    /// Writes each hash as base64.
    pub fn serialize<S: serde::Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(hash_b64(h, &mut [0; 44]))?;
        }
        seq.end()
    }
    /// Reads a list of base64 32-byte hashes.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                parse_hash(&s).ok_or_else(|| serde::de::Error::custom("not a base64 32-byte hash"))
            })
            .collect()
    }
}
