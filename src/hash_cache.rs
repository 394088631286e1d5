//! The stored hashes of the tree, kept in memory.
//!
//! Why: a proof reads ~2 log₂ n stored hashes, and each was a B-tree
//! lookup: 45 % of the server's CPU per inclusion proof (BENCHMARKS.md).
//! A stored hash never changes once its transaction commits, so a copy
//! taken from a committed snapshot can never be stale.
//!
//! Two direct-mapped tables (`Slots`), where a hash can only be in one
//! slot and a newer one takes it: the upper levels (from `MIN_LEVEL` up,
//! one stored hash in 2^(MIN_LEVEL-1), shared by every proof of every
//! leaf) and the lower ones (a leaf's own neighbourhood: proofs of nearby
//! leaves, such as a producer checking fresh receipts, share them; those
//! reads were ~20 % of the server's CPU per proof). Both are placed by
//! position in storage order, so the upper table holds every upper hash
//! of a log of up to 4M leaves without a collision, and the lower one the
//! ~500k leaves appended last plus whatever proofs read since. Their size
//! is fixed, so memory stays bounded however long the log grows, and
//! readers take no lock: proofs on both cores read them at once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tree::Hash;

/// Hashes a stored-hash index with splitmix64's finalizer: every input
/// bit reaches the low bits the table uses. SipHash's protection against
/// chosen keys is not needed for keys the log itself computes.
#[derive(Default)]
pub struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }
}

/// A map keyed by stored-hash index, hashed by `IndexHasher`.
pub type IndexMap<V> = HashMap<u64, V, BuildHasherDefault<IndexHasher>>;

/// Stored hashes by stored-hash index.
pub struct HashCache {
    upper: Slots,
    lower: Slots,
}

/// The lowest level of the upper table.
const MIN_LEVEL: u8 = 4;
/// Slots of the upper table (24 MiB): the upper levels of a log of 4M
/// leaves. At 10M, proofs ran as fast with a table of 2^21 hashes as with
/// 2^19 (BENCHMARKS.md, session 5).
const UPPER_SLOTS: u64 = 1 << 19;
/// Slots of the lower table (48 MiB). Twice as many gave 46k instead of
/// 44-48k proofs/s on a 600k-leaf log (BENCHMARKS.md).
const LOWER_SLOTS: u64 = 1 << 20;

impl Default for HashCache {
    fn default() -> Self {
        HashCache::with_slots(UPPER_SLOTS, LOWER_SLOTS)
    }
}

impl HashCache {
    fn with_slots(upper: u64, lower: u64) -> Self {
        HashCache {
            upper: Slots::new(upper),
            lower: Slots::new(lower),
        }
    }

    /// The table for stored hash `index`, and its position there: upper
    /// hashes are numbered as the stored hashes of a tree whose leaves
    /// are blocks of 2^MIN_LEVEL leaves, so that they are dense.
    fn place(&self, index: u64) -> (&Slots, u64) {
        let (level, n) = tlog_tiles::tlog::split_stored_hash_index(index);
        match level.checked_sub(MIN_LEVEL) {
            Some(up) => (&self.upper, tlog_tiles::stored_hash_index(up, n)),
            None => (&self.lower, index),
        }
    }

    /// The stored hash at `index`, if cached.
    pub fn get(&self, index: u64) -> Option<Hash> {
        let (slots, position) = self.place(index);
        slots.get(position, index)
    }

    /// Keeps `hash`, committed (read from a snapshot, or just written) at
    /// stored-hash index `index`, in place of what its slot held.
    pub fn put(&self, index: u64, hash: Hash) {
        let (slots, position) = self.place(index);
        slots.put(position, index, hash);
    }
}

/// A direct-mapped table of stored hashes: the hash at `position` can
/// only be in slot `position % slots`, and a put overwrites whatever was
/// there. Each slot is a seqlock (sequence, index + 1, the hash as four
/// words): a writer makes the sequence odd, writes, and makes it even
/// again; a reader takes the value only if the sequence was even and
/// unchanged around its reads, so it never sees half of one hash and half
/// of another.
struct Slots {
    words: Box<[AtomicU64]>,
}

const WORDS: usize = 6;

impl Slots {
    fn new(slots: u64) -> Self {
        Slots {
            words: (0..slots as usize * WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, position: u64) -> &[AtomicU64] {
        let n = (position % (self.words.len() / WORDS) as u64) as usize;
        &self.words[n * WORDS..(n + 1) * WORDS]
    }

    fn get(&self, position: u64, index: u64) -> Option<Hash> {
        let s = self.slot(position);
        let seq = s[0].load(Ordering::Acquire);
        if seq & 1 == 1 || s[1].load(Ordering::Relaxed) != index.wrapping_add(1) {
            return None;
        }
        let mut hash = [0u8; 32];
        for (chunk, w) in hash.chunks_exact_mut(8).zip(&s[2..]) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        std::sync::atomic::fence(Ordering::Acquire);
        let unchanged = s[0].load(Ordering::Relaxed) == seq;
        (unchanged && s[1].load(Ordering::Relaxed) == index.wrapping_add(1)).then_some(Hash(hash))
    }

    fn put(&self, position: u64, index: u64, hash: Hash) {
        let s = self.slot(position);
        let seq = s[0].load(Ordering::Relaxed);
        // Another writer holds the slot: this hash is simply not kept.
        if seq & 1 == 1
            || s[0]
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        std::sync::atomic::fence(Ordering::Release);
        s[1].store(index.wrapping_add(1), Ordering::Relaxed);
        for (chunk, w) in hash.0.chunks_exact(8).zip(&s[2..]) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
        s[0].store(seq + 2, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::tlog::stored_hash_index;

    #[test]
    fn every_upper_hash_of_a_log_that_fits_keeps_a_slot_of_its_own() {
        // 64 upper slots: the upper hashes of 64 * 8 leaves (63 of them).
        let c = HashCache::with_slots(64, 16);
        let upper: Vec<u64> = (MIN_LEVEL..=9)
            .flat_map(|l| (0..512u64 >> l).map(move |n| stored_hash_index(l, n)))
            .collect();
        assert_eq!(upper.len(), 63);
        for &i in &upper {
            c.put(i, hash_of(i));
        }
        // Lower hashes fill their own table and do not displace them.
        for n in 0..512 {
            c.put(stored_hash_index(0, n), hash_of(n));
        }
        for &i in &upper {
            assert_eq!(c.get(i), Some(hash_of(i)), "upper hash {i}");
        }
        // The lower table keeps the last 16 positions put.
        let last = stored_hash_index(0, 511);
        assert_eq!(c.get(last), Some(hash_of(511)));
        assert_eq!(c.get(stored_hash_index(0, 0)), None, "displaced");
        // A longer log wraps: a newer upper hash (position 128, that of
        // block 65) takes the slot of an older one (position 0).
        let newer = stored_hash_index(MIN_LEVEL, 65);
        c.put(newer, hash_of(newer));
        assert_eq!(c.get(newer), Some(hash_of(newer)));
        assert_eq!(c.get(upper[0]), None);
        assert!(upper[1..].iter().all(|&i| c.get(i).is_some()));
    }

    /// A hash whose every byte depends on `i`: half of one and half of
    /// another would not be anyone's.
    fn hash_of(i: u64) -> Hash {
        let mut h = [0u8; 32];
        for (k, chunk) in h.chunks_exact_mut(8).enumerate() {
            chunk
                .copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64).to_le_bytes());
        }
        Hash(h)
    }

    #[test]
    fn a_newer_hash_takes_the_slot_and_readers_never_see_a_torn_one() {
        let r = std::sync::Arc::new(Slots::new(8));
        r.put(3, 3, hash_of(3));
        r.put(11, 11, hash_of(11));
        assert_eq!(r.get(3, 3), None, "evicted");
        assert_eq!(r.get(11, 11), Some(hash_of(11)));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    for n in 0..200_000u64 {
                        let i = (n * 7 + t) % 64;
                        if t % 2 == 0 {
                            r.put(i, i, hash_of(i));
                        } else if let Some(h) = r.get(i, i) {
                            assert_eq!(h, hash_of(i), "index {i}");
                            seen += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        let seen: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(seen > 0, "readers found hashes while writers wrote");
    }
}
