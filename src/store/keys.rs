//! Per-event keys: what makes a redaction erase.
//!
//! redb is copy-on-write and never zeroes a freed page, so deleting an
//! event's rows leaves their bytes in the file until the page is reused
//! (and in every copy of the file). Each event's private rows are
//! therefore sealed (AES-256-GCM) under a fresh random 32-byte key
//! of its own, and the keys live outside redb, in a file of fixed 32-byte
//! slots (slot i, at offset 32·i, is leaf i's key) that is changed in
//! place: a redaction overwrites the slot with zeros, and what is left of
//! the event anywhere (freed pages, backups taken before) is ciphertext
//! nobody can open.
//!
//! What must stay true:
//! - a leaf's key is durable before the transaction that commits the leaf
//!   (`LogStore::write` syncs the slots first), so every committed leaf has
//!   its key after any crash;
//! - a redaction is acknowledged only once its slot is zeros on disk; a
//!   crash between its commit and the zeroing is finished at the next open
//!   (the driver's open zeroes the slots of every redacted leaf);
//! - a key seals exactly two messages, each under its own fixed nonce
//!   (`Sealed`): the key is never reused for anything else.
//!
//! An all-zero slot, or one past the end of the file, holds no key.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use sha2::{Digest, Sha256};

pub use crate::events::{EventKey, KEY_LEN};
/// What sealing adds to a message: the GCM tag.
pub const OVERHEAD: usize = 16;

/// Which of an event's rows a message is: each has its own nonce, so one
/// key seals both without reusing a nonce.
#[derive(Clone, Copy)]
pub enum Sealed {
    /// The event's row: its salt and canonical bytes (`event_codec`).
    Event = 0,
    /// The event's facets row.
    Facets = 1,
}

fn nonce(which: Sealed) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[0] = which as u8;
    n.into()
}

/// Appends `plain` sealed under `key` to `out`.
pub fn seal(key: &EventKey, which: Sealed, plain: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = Aes256Gcm::new(key.into())
        .encrypt_in_place_detached(&nonce(which), b"", &mut out[start..])
        .expect("a message this short seals");
    out.extend_from_slice(&tag);
}

/// The message `sealed` holds, or None if it was not sealed under `key`
/// as `which` (damage, or another key).
pub fn open(key: &EventKey, which: Sealed, sealed: &[u8]) -> Option<Vec<u8>> {
    let body_len = sealed.len().checked_sub(OVERHEAD)?;
    let (body, tag) = sealed.split_at(body_len);
    let mut plain = body.to_vec();
    Aes256Gcm::new(key.into())
        .decrypt_in_place_detached(&nonce(which), b"", &mut plain, Tag::from_slice(tag))
        .ok()?;
    Some(plain)
}

/// What the log keeps of an event's content hash to tell a retry from a
/// reused uid: a hash keyed by the event's key. Once the key is gone it
/// confirms no guess of the content (the plain content hash would: it is
/// a hash of the canonical event without its salt).
pub fn content_tag(key: &EventKey, content: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"sealog content tag\0")
        .chain_update(key)
        .chain_update(content)
        .finalize()
        .into()
}

/// The key file of the log database at `db`: beside it, with the
/// extension `keys` (`DIR/sealog.keys` for `DIR/sealog.redb`).
pub fn path_of(db: &Path) -> PathBuf {
    db.with_extension("keys")
}

/// The file grows by this much at a time, written with zeros (no keys),
/// so that a batch's keys overwrite blocks the file already has: its
/// fdatasync then flushes data only, where growing the file by each batch
/// made every sync commit the filesystem's journal as well (the size and
/// the new blocks) on top of the log's own commit.
const GROW: u64 = 1 << 20;

/// The file of event keys.
pub struct KeyFile {
    file: File,
    /// The file's length: keys past it are first preceded by `GROW`
    /// bytes of zeros.
    len: std::sync::atomic::AtomicU64,
}

impl KeyFile {
    /// Opens (or creates, readable by its owner only) the key file.
    pub fn open(path: &Path) -> io::Result<KeyFile> {
        let new = !path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Never through a symlink another user planted in its place.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        if new {
            // The file's name must survive a crash as its keys do.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
        }
        // Keys anyone on the machine can read open every event; a file of
        // another user's could be read (or replaced) by them.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = file.metadata()?;
        let mode = meta.permissions().mode();
        if meta.uid() != crate::sys::datadir::euid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} belongs to another user", path.display()),
            ));
        }
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} has mode {:o}; it must be readable by its owner only (chmod 600)",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
        let len = file.metadata()?.len().into();
        Ok(KeyFile { file, len })
    }

    /// The key file at `path` opened for reading only: every write fails
    /// (a disk that refuses writes, for tests).
    #[cfg(test)]
    pub fn read_only(path: &Path) -> io::Result<KeyFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len().into();
        Ok(KeyFile { file, len })
    }

    /// Leaf `i`'s key, if the file holds one.
    pub fn get(&self, i: u64) -> io::Result<Option<EventKey>> {
        Ok(self.get_range(i, 1)?.pop().flatten())
    }

    /// The keys of leaves `start..start + n`, each if the file holds it.
    pub fn get_range(&self, start: u64, n: u64) -> io::Result<Vec<Option<EventKey>>> {
        let mut buf = vec![0u8; (n as usize) * KEY_LEN];
        let mut read = 0;
        while read < buf.len() {
            match self
                .file
                .read_at(&mut buf[read..], start * KEY_LEN as u64 + read as u64)
            {
                Ok(0) => break, // past the end: no keys
                Ok(k) => read += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(buf
            .chunks_exact(KEY_LEN)
            .map(|k| {
                let k: EventKey = k.try_into().expect("KEY_LEN bytes");
                (k != [0; KEY_LEN]).then_some(k)
            })
            .collect())
    }

    /// Writes `keys` into the slots from `start` on (not yet durable:
    /// `sync`).
    pub fn put(&self, start: u64, keys: &[EventKey]) -> io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if keys.is_empty() {
            return Ok(());
        }
        let end = (start + keys.len() as u64) * KEY_LEN as u64;
        let len = self.len.load(Relaxed);
        if end > len {
            let grown = end.next_multiple_of(GROW);
            let zeros = vec![0u8; (grown - len) as usize];
            self.file.write_all_at(&zeros, len)?;
            self.len.store(grown, Relaxed);
        }
        self.file
            .write_all_at(keys.as_flattened(), start * KEY_LEN as u64)
    }

    /// Overwrites leaf `i`'s slot with zeros, in place (not yet durable:
    /// `sync`). A slot past the end holds nothing to overwrite.
    pub fn erase(&self, i: u64) -> io::Result<()> {
        if self.len.load(std::sync::atomic::Ordering::Relaxed) < (i + 1) * KEY_LEN as u64 {
            return Ok(());
        }
        self.file.write_all_at(&[0; KEY_LEN], i * KEY_LEN as u64)
    }

    /// Makes every write so far durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::new_key;

    #[test]
    fn a_sealed_row_opens_with_its_key_and_nonce_only() {
        let (k, other) = (new_key(), new_key());
        let mut out = vec![9];
        seal(&k, Sealed::Event, b"secret body", &mut out);
        assert_eq!(out.len(), 1 + 11 + OVERHEAD);
        assert!(!out.windows(6).any(|w| w == b"secret"));
        let sealed = &out[1..];
        assert_eq!(open(&k, Sealed::Event, sealed).unwrap(), b"secret body");
        assert!(open(&other, Sealed::Event, sealed).is_none(), "another key");
        assert!(open(&k, Sealed::Facets, sealed).is_none(), "another row");
        let mut flipped = sealed.to_vec();
        flipped[3] ^= 1;
        assert!(open(&k, Sealed::Event, &flipped).is_none(), "damage");
        assert!(open(&k, Sealed::Event, &sealed[..10]).is_none());
    }

    #[test]
    fn slots_are_written_read_and_erased_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.keys");
        let f = KeyFile::open(&path).unwrap();
        assert_eq!(f.get(0).unwrap(), None, "an empty file holds no key");
        let keys: Vec<EventKey> = (0..5).map(|_| new_key()).collect();
        f.put(10, &keys).unwrap();
        f.sync().unwrap();
        assert_eq!(f.get(9).unwrap(), None, "a hole holds no key");
        assert_eq!(f.get(12).unwrap(), Some(keys[2]));
        assert_eq!(f.get(15).unwrap(), None, "past the end");
        f.erase(12).unwrap();
        f.erase(99).unwrap();
        f.sync().unwrap();
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), GROW, "grown by zeros; erasing did not grow it");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[12 * 32..13 * 32], &[0; 32], "zeros in place");
        let f = KeyFile::open(&path).unwrap();
        let got = f.get_range(10, 5).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(
            KeyFile::open(&path).is_err(),
            "a readable key file is refused"
        );
        assert_eq!(
            got,
            vec![
                Some(keys[0]),
                Some(keys[1]),
                None,
                Some(keys[3]),
                Some(keys[4])
            ]
        );
    }
}
