//! Witness cosignatures, C2SP tlog-cosignature v1.0.1: timestamped Ed25519
//! signatures of type 0x04 over
//!
//! ```text
//! cosignature/v1\n
//! time <unix seconds>\n
//! <checkpoint body>
//! ```
//!
//! carried as signed-note signature lines whose signature is the 72-byte
//! `timestamp (u64 BE) || Ed25519 signature`. Depends on nothing
//! server-side.

use base64::prelude::{Engine, BASE64_STANDARD};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

/// The signature type byte of timestamped Ed25519 cosignatures.
pub const COSIGNATURE_TYPE: u8 = 0x04;

/// Why a cosigner key is refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key is not `name+id+base64(type || public key)` of an Ed25519 cosigner key.
    #[error("malformed cosigner key")]
    Format,
    /// The key id is not the one the name and key determine.
    #[error("key id does not match the key")]
    Id,
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', COSIGNATURE_TYPE]);
    h.update(public);
    u32::from_be_bytes(h.finalize()[..4].try_into().expect("4 bytes"))
}

fn valid_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

/// The message a v1 cosignature signs.
pub fn signed_message(body: &[u8], time: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// A witness's signing key.
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl Cosigner {
    /// A new random key named `name`: (private key text, vkey).
    pub fn generate(name: &str) -> Result<(String, String), KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Format);
        }
        let key = SigningKey::generate(&mut OsRng);
        let c = Cosigner {
            name: name.to_string(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        };
        let mut seed = vec![COSIGNATURE_TYPE];
        seed.extend_from_slice(&c.key.to_bytes());
        let skey = format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            c.name,
            c.id,
            BASE64_STANDARD.encode(seed)
        );
        Ok((skey, c.vkey()))
    }

    /// Loads `PRIVATE+KEY+<name>+<id>+<base64(0x04 || seed)>`.
    pub fn new(skey: &str) -> Result<Self, KeyError> {
        let (name, id, key) = crate::note::private_key_fields(skey).ok_or(KeyError::Format)?;
        if !valid_name(name) || key.len() != 33 || key[0] != COSIGNATURE_TYPE || id.len() != 8 {
            return Err(KeyError::Format);
        }
        let key = SigningKey::from_bytes(&key[1..].try_into().expect("32 bytes"));
        let want = key_id(name, key.verifying_key().as_bytes());
        if u32::from_str_radix(id, 16).ok() != Some(want) {
            return Err(KeyError::Id);
        }
        Ok(Cosigner {
            name: name.to_string(),
            id: want,
            key,
        })
    }

    /// The witness name the key signs for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<id>+base64(0x04 || public key)`.
    pub fn vkey(&self) -> String {
        let mut k = vec![COSIGNATURE_TYPE];
        k.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64_STANDARD.encode(k)
        )
    }

    /// The note signature line cosigning checkpoint `body` at `time`.
    pub fn cosign(&self, body: &[u8], time: u64) -> String {
        let sig = self.key.sign(&signed_message(body, time));
        let mut bytes = self.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&time.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        format!("\u{2014} {} {}\n", self.name, BASE64_STANDARD.encode(bytes))
    }
}

/// Verifies one witness's cosignatures; a `signed_note::Verifier`, so
/// notes can be checked with log and witness keys together.
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// From a vkey of signature type 0x04.
    pub fn new(vkey: &str) -> Result<Self, KeyError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyError::Format);
        };
        let key = BASE64_STANDARD.decode(key).map_err(|_| KeyError::Format)?;
        if !valid_name(name) || key.len() != 33 || key[0] != COSIGNATURE_TYPE || id.len() != 8 {
            return Err(KeyError::Format);
        }
        let public: [u8; 32] = key[1..].try_into().expect("32 bytes");
        let want = key_id(name, &public);
        if u32::from_str_radix(id, 16).ok() != Some(want) {
            return Err(KeyError::Id);
        }
        Ok(CosignatureVerifier {
            name: name.to_string(),
            id: want,
            key: VerifyingKey::from_bytes(&public).map_err(|_| KeyError::Format)?,
        })
    }

    /// The cosignature's timestamp if `sig` (after the key id) is a valid
    /// cosignature of checkpoint `body`.
    pub fn timestamp(&self, body: &[u8], sig: &[u8]) -> Option<u64> {
        if sig.len() != 72 {
            return None;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().ok()?);
        if time > i64::MAX as u64 {
            return None;
        }
        let s = ed25519_dalek::Signature::from_bytes(sig[8..].try_into().ok()?);
        self.key
            .verify_strict(&signed_message(body, time), &s)
            .is_ok()
            .then_some(time)
    }
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.timestamp(msg, sig).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::Verifier;

    #[test]
    fn cosignatures_verify_and_bind_body_and_time() {
        let (skey, vkey) = Cosigner::generate("witness.example/w1").unwrap();
        let c = Cosigner::new(&skey).unwrap();
        assert_eq!(c.vkey(), vkey);
        let v = CosignatureVerifier::new(&vkey).unwrap();
        let body = b"example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let line = c.cosign(body, 1_679_315_147);
        let b64 = line.trim_end().rsplit(' ').next().unwrap();
        let raw = BASE64_STANDARD.decode(b64).unwrap();
        assert_eq!(raw.len(), 4 + 72);
        assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), v.key_id());
        assert_eq!(v.timestamp(body, &raw[4..]), Some(1_679_315_147));
        // Another body, another time, or a flipped bit: no.
        assert_eq!(v.timestamp(b"example.com/log\n6\n", &raw[4..]), None);
        let mut t = raw[4..].to_vec();
        t[7] ^= 1;
        assert_eq!(v.timestamp(body, &t), None);
        // The key id commits to the type byte 0x04: an Ed25519 note vkey
        // (type 0x01) of the same key is not a cosigner vkey.
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        let mut k = BASE64_STANDARD.decode(parts[2]).unwrap();
        k[0] = 0x01;
        let as_note_key = format!("{}+{}+{}", parts[0], parts[1], BASE64_STANDARD.encode(k));
        assert!(CosignatureVerifier::new(&as_note_key).is_err());
    }

    #[test]
    fn signed_message_is_the_spec_layout() {
        let m = signed_message(b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", 1679315147);
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in ["", "a+b", "PRIVATE+KEY+n+00000000+AAAA", "n+0000+AAAA"] {
            assert!(
                Cosigner::new(bad).is_err() && CosignatureVerifier::new(bad).is_err(),
                "{bad}"
            );
        }
    }
}
