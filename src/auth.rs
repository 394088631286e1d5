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

use crate::store::{Store, StoreError};

/// What a token may do. `admin` implies every other scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Append,
    Read,
    Admin,
}

/// A stored token, less the token itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub revoked: bool,
}

impl TokenRecord {
    fn allows(&self, scope: Scope) -> bool {
        !self.revoked && self.scopes.iter().any(|&s| s == scope || s == Scope::Admin)
    }
}

/// Why a request was not authorized.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
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
    pub fn load(store: &Store) -> Result<Self, StoreError> {
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

    /// Creates a token, stores its hash, and returns the token: the only
    /// time it exists in clear.
    pub fn create(
        &self,
        store: &Store,
        name: &str,
        scopes: Vec<Scope>,
    ) -> Result<String, StoreError> {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let token = format!("sealog_{}", BASE64_URL_SAFE_NO_PAD.encode(secret));
        let record = TokenRecord {
            name: name.to_string(),
            scopes,
            revoked: false,
        };
        let hash = token_hash(&token);
        store.put_token(
            hash,
            &serde_json::to_vec(&record).expect("records serialize"),
        )?;
        self.by_hash
            .write()
            .expect("not poisoned")
            .insert(hash, record);
        Ok(token)
    }

    /// Checks an `Authorization` header value for `scope`.
    pub fn authorize(&self, header: Option<&str>, scope: Scope) -> Result<TokenRecord, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
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
        let store = Store::open(&dir.path().join("db")).unwrap();
        let tokens = Tokens::load(&store).unwrap();
        let admin = tokens.create(&store, "admin", vec![Scope::Admin]).unwrap();
        let writer = tokens
            .create(&store, "writer", vec![Scope::Append])
            .unwrap();
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
        assert!(matches!(
            tokens.authorize(Some("Bearer sealog_wrong"), Scope::Append),
            Err(AuthError::Invalid)
        ));

        // Only hashes are stored, and they survive a reload.
        let reloaded = Tokens::load(&store).unwrap();
        assert!(reloaded.authorize(Some(&h(&writer)), Scope::Append).is_ok());
        for (hash, record) in store.tokens().unwrap() {
            let record = String::from_utf8(record).unwrap();
            assert!(!record.contains(&writer[7..]) && !record.contains(&admin[7..]));
            assert_ne!(hash, [0; 32]);
        }
    }
}
