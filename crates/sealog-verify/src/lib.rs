//! Verify what a sealog log hands out, offline, with the log's public key.
//!
//! sealog keeps audit events as leaves of an append-only RFC 6962 Merkle
//! tree (RFC 9162 §2.1). Each leaf commits to `SHA-256(salt || JCS(event))`
//! ([`commitment`]); the log signs C2SP checkpoints ([`note`]), witnesses
//! cosign them ([`cosign`], c2sp.org/tlog-cosignature), and a witness
//! policy ([`policy`], c2sp.org/tlog-witness policy lines) says whose
//! cosignatures a verifier requires. A [`receipt::Receipt`] carries an
//! event, its salt, its leaf index, an inclusion proof and the checkpoint
//! the proof reaches; [`verify::verify_receipt`] checks all of it.
//!
//! This crate depends on no async runtime, HTTP stack or database: the
//! server, the `sealog verify` and `audit` commands and the witness all
//! verify through it, and so can any client.
//!
//! # Verifying a receipt
//!
//! ```
//! use sealog_verify::{commitment, note::{self, LogSigner}, receipt::Receipt, tree, verify};
//!
//! // A log of one event, signed by a throwaway key.
//! let (skey, vkey) = note::generate_key("example.com/log").unwrap();
//! let signer = LogSigner::new(&skey).unwrap();
//! let event = br#"{"class_uid":3002,"time":1}"#;
//! let salt = [7u8; commitment::SALT_LEN];
//! let c = commitment::commitment(&salt, event);
//! let leaf = tree::leaf_hash(&c.0);
//! let receipt = Receipt {
//!     index: 0,
//!     leaf_hash: leaf,
//!     commitment: c,
//!     salt: Some(salt.to_vec()),
//!     event: Some(serde_json::value::RawValue::from_string(
//!         String::from_utf8(event.to_vec()).unwrap()).unwrap()),
//!     redacted_by: None,
//!     duplicate: false,
//!     checkpoint: signer.sign(1, leaf),
//!     inclusion_proof: vec![],
//! };
//! let checkpoint = verify::verify_receipt(&receipt, &vkey).unwrap();
//! assert_eq!(checkpoint.size, 1);
//!
//! // Any change to the event breaks the commitment.
//! let mut forged = receipt.clone();
//! forged.event = Some(serde_json::value::RawValue::from_string(
//!     r#"{"class_uid":3002,"time":2}"#.into()).unwrap());
//! assert!(matches!(verify::verify_receipt(&forged, &vkey),
//!                  Err(verify::VerifyError::Commitment)));
//! ```
//!
//! # Verifying a consistency proof
//!
//! ```
//! use sealog_verify::{note::{self, LogSigner}, receipt::ConsistencyProof, tree, verify};
//!
//! let (skey, vkey) = note::generate_key("example.com/log").unwrap();
//! let signer = LogSigner::new(&skey).unwrap();
//! let mut hashes = tree::MemoryHashes::default();
//! for i in 0..7u8 {
//!     hashes.append(tree::leaf_hash(&[i]));
//! }
//! let old = note::verify_checkpoint(
//!     signer.sign(3, tree::root(3, &hashes).unwrap()).as_bytes(), &vkey).unwrap();
//! let new = note::verify_checkpoint(
//!     signer.sign(7, tree::root(7, &hashes).unwrap()).as_bytes(), &vkey).unwrap();
//! let proof = ConsistencyProof {
//!     from: 3,
//!     to: 7,
//!     hashes: tree::prove_consistency(3, 7, &hashes).unwrap(),
//! };
//! verify::verify_consistency(&proof, &old, &new).unwrap();
//! ```

#![warn(missing_docs)]

pub mod commitment;
pub mod cosign;
pub mod jcs;
pub mod note;
pub mod policy;
pub mod receipt;
pub mod receipt_json;
pub mod tiles;
pub mod tree;
pub mod verify;
