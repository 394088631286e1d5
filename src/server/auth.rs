//! Bearer tokens and their scopes.
//!
//! Tokens are stored only as SHA-256 hashes. A presented token is hashed
//! and looked up by its hash: the lookup's timing depends only on that
//! hash, which reveals nothing an attacker could use without a preimage;
//! the final equality check is constant-time all the same.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::prelude::{Engine, BASE64_URL_SAFE_NO_PAD};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::log::NewToken;
use crate::store::{LogStore, StoreError};

/// Longest token name.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` can name a token: 1 to 128 of `A-Z a-z 0-9 . _ - @`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme
/// is case-insensitive (RFC 9110 §11.1): `bearer x` and `BEARER x` are the
/// same; one or more spaces separate it from the token.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    let token = rest.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a token may do. `admin` implies every other scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Append events (`POST /v1/events`).
    Append,
    /// Read events, proofs, queries and the stream.
    Read,
    /// Manage tokens, redact, back up; and everything the others allow.
    Admin,
    /// Only `GET /v1/risk`: for risk engines that need no event content.
    Risk,
}

/// A stored token, less the token itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique among unrevoked tokens; what audit events name.
    pub name: String,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// A revoked record is kept (its audit trail names it) but authorizes
    /// nothing.
    pub revoked: bool,
}

impl TokenRecord {
    /// The record for a new token.
    pub fn new(name: &str, scopes: Vec<Scope>) -> Self {
        TokenRecord {
            name: name.to_string(),
            scopes,
            revoked: false,
        }
    }

    fn allows(&self, scope: Scope) -> bool {
        // admin implies every scope; read implies risk.
        !self.revoked
            && self.scopes.iter().any(|&s| {
                s == scope || s == Scope::Admin || (s == Scope::Read && scope == Scope::Risk)
            })
    }
}

/// A token just drawn, with its record. The token is shown once and
/// never stored; the log keeps its hash and record (`Minted::stored`),
/// and the token table learns it once the log has (`Tokens::insert`).
pub struct Minted {
    /// The token itself, `sealog_<base64url>`.
    pub token: String,
    /// Its SHA-256: what the store and the table key it by.
    pub hash: [u8; 32],
    /// Its name, scopes and state.
    pub record: TokenRecord,
}

impl Minted {
    /// Draws a new token named `name` with `scopes`.
    pub fn new(name: &str, scopes: Vec<Scope>) -> Self {
        let (token, hash) = Tokens::mint();
        Minted {
            token,
            hash,
            record: TokenRecord::new(name, scopes),
        }
    }

    /// What the log records of it when `by` creates it: the stored record
    /// and the names its audit event carries.
    pub fn stored<'a>(&'a self, by: &'a str) -> NewToken<'a, Scope> {
        NewToken {
            name: &self.record.name,
            scopes: &self.record.scopes,
            hash: self.hash,
            record: serde_json::to_vec(&self.record).expect("records serialize"),
            by,
        }
    }
}

/// Why a request was not authorized.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (401).
    #[error("missing bearer token")]
    Missing,
    /// The token is unknown or revoked (401): the answer does not say
    /// which.
    #[error("invalid bearer token")]
    Invalid,
    /// The token is valid but lacks this scope (403).
    #[error("token lacks scope {0:?}")]
    Forbidden(Scope),
}

/// The token table, cached in memory.
pub struct Tokens {
    by_hash: RwLock<HashMap<[u8; 32], TokenRecord>>,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Loads every token record from the store.
    pub fn load(store: &dyn LogStore) -> Result<Self, StoreError> {
        let mut by_hash = HashMap::new();
        for (hash, record) in store.tokens()? {
            let record: TokenRecord = serde_json::from_slice(&record)
                .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?;
            by_hash.insert(hash, record);
        }
        Ok(Tokens {
            by_hash: RwLock::new(by_hash),
        })
    }

    /// Draws a new token and returns it with its hash. The token is shown
    /// once and never stored; the hash is what the store keeps.
    pub fn mint() -> (String, [u8; 32]) {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let token = format!("sealog_{}", BASE64_URL_SAFE_NO_PAD.encode(secret));
        let hash = token_hash(&token);
        (token, hash)
    }

    /// Makes a stored token known to requests.
    pub fn insert(&self, hash: [u8; 32], record: TokenRecord) {
        self.by_hash
            .write()
            .expect("not poisoned")
            .insert(hash, record);
    }

    /// Marks the active token named `name` revoked in memory; returns its
    /// hash, to undo exactly this if the revocation does not commit.
    pub fn revoke(&self, name: &str) -> Option<[u8; 32]> {
        let mut map = self.by_hash.write().expect("not poisoned");
        let (hash, record) = map.iter_mut().find(|(_, r)| r.name == name && !r.revoked)?;
        record.revoked = true;
        Some(*hash)
    }

    /// Undoes `revoke` for the token with this hash.
    pub fn unrevoke(&self, hash: &[u8; 32]) {
        if let Some(r) = self.by_hash.write().expect("not poisoned").get_mut(hash) {
            r.revoked = false;
        }
    }

    /// Whether an unrevoked token is named `name`.
    pub fn is_active(&self, name: &str) -> bool {
        let map = self.by_hash.read().expect("not poisoned");
        map.values().any(|r| r.name == name && !r.revoked)
    }

    /// Every token record (never the tokens), by name.
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut v: Vec<TokenRecord> = self
            .by_hash
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.revoked.cmp(&b.revoked)));
        v
    }

    /// Checks an `Authorization` header value for `scope`.
    pub fn authorize(&self, header: Option<&str>, scope: Scope) -> Result<TokenRecord, AuthError> {
        let token = header.and_then(bearer_token).ok_or(AuthError::Missing)?;
        let hash = token_hash(token);
        let map = self.by_hash.read().expect("not poisoned");
        let (stored, record) = map.get_key_value(&hash).ok_or(AuthError::Invalid)?;
        if !bool::from(stored.ct_eq(&hash)) || record.revoked {
            return Err(AuthError::Invalid);
        }
        if !record.allows(scope) {
            return Err(AuthError::Forbidden(scope));
        }
        Ok(record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_enforced_and_admin_has_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::engine::open(&dir.path().join("db")).unwrap();
        let tokens = Tokens::load(&store).unwrap();
        let (admin, h1) = Tokens::mint();
        let (writer, h2) = Tokens::mint();
        tokens.insert(h1, TokenRecord::new("admin", vec![Scope::Admin]));
        tokens.insert(h2, TokenRecord::new("writer", vec![Scope::Append]));
        let h = |t: &str| format!("Bearer {t}");
        for s in [Scope::Append, Scope::Read, Scope::Admin] {
            assert!(tokens.authorize(Some(&h(&admin)), s).is_ok());
        }
        assert!(tokens.authorize(Some(&h(&writer)), Scope::Append).is_ok());
        assert!(matches!(
            tokens.authorize(Some(&h(&writer)), Scope::Read),
            Err(AuthError::Forbidden(Scope::Read))
        ));
        assert!(matches!(
            tokens.authorize(None, Scope::Append),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            tokens.authorize(Some(&admin), Scope::Append),
            Err(AuthError::Missing)
        ));
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let h = format!("{scheme}  {writer}");
            assert!(tokens.authorize(Some(&h), Scope::Append).is_ok(), "{h}");
        }
        assert!(matches!(
            tokens.authorize(Some(&format!("Basic {writer}")), Scope::Append),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            tokens.authorize(Some("Bearer sealog_wrong"), Scope::Append),
            Err(AuthError::Invalid)
        ));
        assert!(tokens.revoke("writer").is_some());
        assert!(tokens.revoke("writer").is_none(), "already revoked");
        assert!(matches!(
            tokens.authorize(Some(&h(&writer)), Scope::Append),
            Err(AuthError::Invalid)
        ));
        assert!(!tokens.is_active("writer") && tokens.is_active("admin"));
    }

    #[test]
    fn token_names_are_limited() {
        assert!(valid_name("ci-deployer@prod.example"));
        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
