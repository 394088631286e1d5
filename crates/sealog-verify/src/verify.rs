//! What clients, witnesses and auditors run to check the log's answers:
//! a receipt against the log's key, a consistency proof between two
//! checkpoints.

use crate::commitment;
use crate::note::{self, Checkpoint};
use crate::receipt::{ConsistencyProof, Receipt};
use crate::tree;

/// Why a receipt or proof does not check out.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The checkpoint's signature or form does not check out.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] note::NoteError),
    /// The event is not JSON the log could hold.
    #[error("event is not canonical JSON: {0}")]
    Event(String),
    /// The event was redacted: its receipt proves the leaf, not its content.
    #[error("the receipt carries no event: redacted by {0:?}")]
    Redacted(Option<u64>),
    /// The commitment is not the event's under its salt.
    #[error("commitment is not SHA-256(salt || JCS(event))")]
    Commitment,
    /// The leaf hash is not the commitment's.
    #[error("leaf hash is not SHA-256(0x00 || commitment)")]
    LeafHash,
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("inclusion proof does not reach the checkpoint: {0}")]
    Inclusion(tree::Error),
    /// The consistency proof does not lead from the old root to the new.
    #[error("consistency proof does not hold: {0}")]
    Consistency(tree::Error),
    /// The proof is for other sizes than the checkpoints'.
    #[error("proof is for sizes {got:?}, expected {want:?}")]
    Sizes {
        /// The sizes the proof is for.
        got: (u64, u64),
        /// The sizes of the checkpoints.
        want: (u64, u64),
    },
}

/// Checks a receipt offline against the log's verifier key: the event's
/// canonical form, the commitment, the leaf hash, the checkpoint signature
/// and the inclusion proof. Returns the checkpoint the receipt reaches.
pub fn verify_receipt(r: &Receipt, vkey: &str) -> Result<Checkpoint, VerifyError> {
    let (Some(ev), Some(salt)) = (&r.event, &r.salt) else {
        return Err(VerifyError::Redacted(r.redacted_by));
    };
    let value: serde_json::Value =
        serde_json::from_str(ev.get()).map_err(|e| VerifyError::Event(e.to_string()))?;
    let jcs = commitment::canonical(&value).map_err(|e| VerifyError::Event(e.to_string()))?;
    if commitment::commitment(salt, &jcs) != r.commitment {
        return Err(VerifyError::Commitment);
    }
    if tree::leaf_hash(&r.commitment.0) != r.leaf_hash {
        return Err(VerifyError::LeafHash);
    }
    let c = note::verify_checkpoint(r.checkpoint.as_bytes(), vkey)?;
    tree::check_inclusion(&r.inclusion_proof, c.size, c.root, r.index, r.leaf_hash)
        .map_err(VerifyError::Inclusion)?;
    Ok(c)
}

/// Checks that `proof` shows checkpoint `old` is a prefix of `new`.
pub fn verify_consistency(
    proof: &ConsistencyProof,
    old: &Checkpoint,
    new: &Checkpoint,
) -> Result<(), VerifyError> {
    if (proof.from, proof.to) != (old.size, new.size) {
        return Err(VerifyError::Sizes {
            got: (proof.from, proof.to),
            want: (old.size, new.size),
        });
    }
    tree::check_consistency(&proof.hashes, old.size, old.root, new.size, new.root)
        .map_err(VerifyError::Consistency)
}
