//! Signed notes (C2SP signed-note v1.0.0) and the checkpoints they carry
//! (C2SP tlog-checkpoint v1.0.0), through the `signed_note` and
//! `tlog_tiles` crates. Depends on nothing server-side.

use base64::prelude::{Engine, BASE64_STANDARD};
use rand_core::OsRng;
use signed_note::{Note, Signer, StandardSigner, StandardVerifier, VerifierList};

use crate::tree::Hash;

/// Why a note or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The private key is not a C2SP signed-note Ed25519 key.
    #[error("malformed private key")]
    PrivateKey,
    /// The verifier key is not a C2SP signed-note Ed25519 key.
    #[error("malformed verifier key")]
    VerifierKey,
    /// The note body is not a C2SP tlog-checkpoint (origin, size, root).
    #[error("malformed checkpoint")]
    Checkpoint,
    /// The checkpoint names another origin than the key.
    #[error("checkpoint origin {origin:?} is not the key name {key:?}")]
    Origin {
        /// The checkpoint's origin.
        origin: String,
        /// The key's name.
        key: String,
    },
    /// The note is not signed by the key (or is not a signed note).
    #[error("note signature: {0}")]
    Signature(#[from] signed_note::NoteError),
}

/// A checkpoint body: the log's origin, tree size and root hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The log's origin line, also the name of its key.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root hash of the tree of `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text (tlog-checkpoint §Note text), with no extension lines.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, self.root)
    }

    /// Parses a checkpoint body; extension lines are refused, as sealog
    /// never writes them and cannot audit them.
    pub fn parse(body: &[u8]) -> Result<Self, NoteError> {
        let c = tlog_tiles::Checkpoint::from_bytes(body).map_err(|_| NoteError::Checkpoint)?;
        if !c.extension().is_empty() {
            return Err(NoteError::Checkpoint);
        }
        Ok(Checkpoint {
            origin: c.origin().to_string(),
            size: c.size(),
            root: *c.hash(),
        })
    }
}

/// Generates an Ed25519 key pair named `name`: the private key text
/// `PRIVATE+KEY+<name>+<id>+<base64(0x01||seed)>` and the verifier key
/// `<name>+<id>+<base64(0x01||pubkey)>` (signed-note §Verifier keys).
pub fn generate_key(name: &str) -> Result<(String, String), NoteError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(NoteError::PrivateKey);
    }
    Ok(signed_note::generate_key(&mut OsRng, name))
}

/// The fields of a signed-note private key,
/// `PRIVATE+KEY+<name>+<id>+<base64(type || seed)>`: the name, the id as
/// written, and the decoded key bytes (type byte first). Checks the form
/// only; what the type and id must be is the caller's.
pub(crate) fn private_key_fields(skey: &str) -> Option<(&str, &str, Vec<u8>)> {
    // The base64 field may hold '+': split off the first four only.
    let mut parts = skey.trim().splitn(5, '+');
    let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id), Some(key)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((name, id, BASE64_STANDARD.decode(key).ok()?))
}

/// The log's checkpoint signer. Its key name is the log's origin.
pub struct LogSigner {
    signer: StandardSigner,
    vkey: String,
}

impl LogSigner {
    /// Loads a signer from its private key text.
    pub fn new(skey: &str) -> Result<Self, NoteError> {
        let skey = skey.trim();
        let signer = StandardSigner::new(skey).map_err(|_| NoteError::PrivateKey)?;
        // StandardSigner has checked the key text; derive the public half
        // from its key field, base64(0x01 || seed).
        let (_, _, key) = private_key_fields(skey).ok_or(NoteError::PrivateKey)?;
        let seed: [u8; 32] = key[1..].try_into().map_err(|_| NoteError::PrivateKey)?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let vkey = signed_note::new_ed25519_verifier_key(signer.name(), &public);
        Ok(LogSigner { signer, vkey })
    }

    /// The origin, which is the key name.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key line for this signer.
    pub fn vkey(&self) -> String {
        self.vkey.clone()
    }

    /// Signs the checkpoint of a tree of `size` leaves with root `root`,
    /// returning the signed note text.
    ///
    /// Callers must only pass a (size, root) that is durably stored: a
    /// signature is a promise the log can never take back.
    pub fn sign(&self, size: u64, root: Hash) -> String {
        let c = Checkpoint {
            origin: self.origin().to_string(),
            size,
            root,
        };
        let mut note =
            Note::new(c.body().as_bytes(), &[]).expect("a checkpoint body is a valid note");
        note.add_sigs(&[&self.signer])
            .expect("an Ed25519 signature cannot fail");
        String::from_utf8(note.to_bytes()).expect("notes are UTF-8")
    }
}

/// Verifies a signed checkpoint with the log's verifier key and returns it.
/// The checkpoint's origin must be the key's name. Signatures by other keys
/// (witnesses) are ignored here, as signed-note requires.
pub fn verify_checkpoint(note: &[u8], vkey: &str) -> Result<Checkpoint, NoteError> {
    let verifier = StandardVerifier::new(vkey.trim()).map_err(|_| NoteError::VerifierKey)?;
    let key = signed_note::Verifier::name(&verifier).to_string();
    let note = Note::from_bytes(note)?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))?;
    let c = Checkpoint::parse(note.text())?;
    if c.origin != key {
        return Err(NoteError::Origin {
            origin: c.origin,
            key,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_note_spec_example_verifies() {
        // signed-note v1.0.0 §Verifier keys, Example.
        let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
        let msg = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let verifier = StandardVerifier::new(vkey).unwrap();
        let note = Note::from_bytes(msg.as_bytes()).unwrap();
        note.verify(&VerifierList::new(vec![Box::new(verifier.clone())]))
            .unwrap();
        let tampered = msg.replace("example message", "example massage");
        let note = Note::from_bytes(tampered.as_bytes()).unwrap();
        assert!(note
            .verify(&VerifierList::new(vec![Box::new(verifier)]))
            .is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_bind_every_field() {
        let (skey, vkey) = generate_key("example.com/log").unwrap();
        let signer = LogSigner::new(&skey).unwrap();
        assert_eq!(signer.vkey(), vkey);
        let root = crate::tree::leaf_hash(b"x");
        let note = signer.sign(42, root);
        assert!(note.starts_with(&format!(
            "example.com/log\n42\n{root}\n\n\u{2014} example.com/log "
        )));
        let c = verify_checkpoint(note.as_bytes(), &vkey).unwrap();
        assert_eq!(
            (c.origin.as_str(), c.size, c.root),
            ("example.com/log", 42, root)
        );

        let forged = note.replace("\n42\n", "\n43\n");
        assert!(verify_checkpoint(forged.as_bytes(), &vkey).is_err());
        let (_, other) = generate_key("example.com/log").unwrap();
        assert!(verify_checkpoint(note.as_bytes(), &other).is_err());
    }

    #[test]
    fn a_key_named_otherwise_than_the_origin_is_refused() {
        let (skey, _) = generate_key("a.example/log").unwrap();
        let (_, vkey_b) = generate_key("b.example/log").unwrap();
        let note = LogSigner::new(&skey).unwrap().sign(1, Hash::default());
        assert!(verify_checkpoint(note.as_bytes(), &vkey_b).is_err());
    }

    #[test]
    fn bad_key_names_are_refused() {
        assert!(generate_key("has space").is_err());
        assert!(generate_key("has+plus").is_err());
        assert!(generate_key("").is_err());
    }

    #[test]
    fn checkpoint_parse_is_strict() {
        let root = Hash::default();
        assert!(Checkpoint::parse(format!("o\n1\n{root}\n").as_bytes()).is_ok());
        for bad in [
            format!("o\n01\n{root}\n"),
            format!("o\n1\n{root}"),
            format!("o\n-1\n{root}\n"),
            "o\n1\nnot-base64\n".to_string(),
            format!("o\n1\n{root}\next\n"),
            format!("\n1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
