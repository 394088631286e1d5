//! The stored hashes of the tree's upper levels, kept in memory.
//!
//! Why: a proof reads ~2 log₂ n stored hashes, and each was a B-tree
//! lookup: 45 % of the server's CPU per inclusion proof (BENCHMARKS.md).
//! A stored hash never changes once its transaction commits, so a copy
//! taken from a committed snapshot can never be stale. Levels from
//! `MIN_LEVEL` up hold one stored hash in 2^(MIN_LEVEL-1) (n/8 for n
//! leaves), and every proof of every leaf shares them; the levels below
//! are the leaf's own neighbourhood, a few B-tree pages.
//!
//! The upper levels are kept by position: hash `n` of level `l` is slot
//! `n % CHUNK` of chunk `n / CHUNK` of level `l`, so a lookup is one
//! memory read where a hash table took three cache misses (control byte,
//! bucket, and the lock word both cores wrote): `HashCache::get` was
//! 16 % of the server's samples per proof (BENCHMARKS.md, "The hash
//! cache: upper levels by position, lower levels direct-mapped").
//! A level keeps its first `LEVEL_CHUNKS` chunks, allocated when first
//! written, so memory grows with the log only while it is small: a level
//! holds at most 262,144 hashes (8 MiB), all of level 4 up to 4M leaves,
//! of level 5 up to 8M, and so on; ~26 MiB in all at 10M.
//!
//! The levels below `MIN_LEVEL`, and what the chunks leave out, go to
//! `Recent`, a fixed table where a newer hash takes the slot of an older
//! one: proofs of nearby leaves (a producer checking fresh receipts)
//! share them, and keeping all of a large tree's is out of reach. Those
//! reads were ~20 % of the server's CPU per proof (BENCHMARKS.md).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use sealog_verify::tree::Hash;

/// The lowest level kept by position.
const MIN_LEVEL: u8 = 4;
/// Levels kept by position: `MIN_LEVEL..MAX_LEVEL`, enough for 2^48 leaves.
const MAX_LEVEL: u8 = 48;
/// Hashes in a chunk: 32 KiB of hashes.
const CHUNK: u64 = 1024;
/// Chunks a level keeps.
const LEVEL_CHUNKS: u64 = 256;

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
        self.0 = mix(n);
    }
}

/// splitmix64's finalizer of `n`: what `IndexHasher` hashes an index to.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A map keyed by stored-hash index, hashed by `IndexHasher`.
pub type IndexMap<V> = HashMap<u64, V, BuildHasherDefault<IndexHasher>>;

/// Stored hashes by stored-hash index.
pub struct HashCache {
    /// Chunk `c` of level `l` at `(l - MIN_LEVEL) * LEVEL_CHUNKS + c`.
    chunks: Box<[OnceLock<Box<Chunk>>]>,
    recent: Recent,
}

impl Default for HashCache {
    fn default() -> Self {
        let n = usize::from(MAX_LEVEL - MIN_LEVEL) * LEVEL_CHUNKS as usize;
        HashCache {
            chunks: (0..n).map(|_| OnceLock::new()).collect(),
            recent: Recent::new(RECENT_SLOTS),
        }
    }
}

/// `CHUNK` hashes of one level, each written once. A writer stores the
/// hash's four words, then sets its bit with Release; a reader takes the
/// words only after seeing the bit with Acquire. Two writers of one slot
/// write the same hash (a stored hash never changes), so a reader that
/// overlaps the second sees the same words.
struct Chunk {
    ready: [AtomicU64; (CHUNK / 64) as usize],
    words: Box<[AtomicU64]>,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            ready: std::array::from_fn(|_| AtomicU64::new(0)),
            words: (0..CHUNK * 4).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn get(&self, slot: usize) -> Option<Hash> {
        let bit = 1u64 << (slot % 64);
        if self.ready[slot / 64].load(Ordering::Acquire) & bit == 0 {
            return None;
        }
        Some(load(&self.words[slot * 4..]))
    }

    fn put(&self, slot: usize, hash: Hash) {
        store(&self.words[slot * 4..], hash);
        self.ready[slot / 64].fetch_or(1u64 << (slot % 64), Ordering::Release);
    }
}

/// The hash in the first four of `words`; what orders these relaxed
/// loads against its writer is the caller's (a ready bit, a seqlock).
fn load(words: &[AtomicU64]) -> Hash {
    let mut hash = [0u8; 32];
    for (chunk, w) in hash.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    Hash(hash)
}

/// Writes `hash` into the first four of `words`, as `load` reads it.
fn store(words: &[AtomicU64], hash: Hash) {
    for (chunk, w) in hash.0.chunks_exact(8).zip(words) {
        w.store(
            u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
            Ordering::Relaxed,
        );
    }
}

/// Slots of `Recent`: 48 bytes each, 48 MiB in all. Twice as many gave
/// 46k instead of 44-48k proofs/s on a 600k-leaf log (BENCHMARKS.md).
const RECENT_SLOTS: usize = 1 << 20;

/// A direct-mapped table of stored hashes: index `i` can only be in slot
/// `mix(i) % slots`, and a put overwrites whatever was there. Each slot is
/// a seqlock (sequence, index + 1, the hash as four words): a writer makes
/// the sequence odd, writes, and makes it even again; a reader takes the
/// value only if the sequence was even and unchanged around its reads, so
/// it never sees half of one hash and half of another. No locks: proofs
/// on both cores read it at once.
struct Recent {
    words: Box<[AtomicU64]>,
}

const WORDS: usize = 6;

impl Recent {
    fn new(slots: usize) -> Self {
        Recent {
            words: (0..slots * WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, index: u64) -> &[AtomicU64] {
        let n = (mix(index) as usize) % (self.words.len() / WORDS);
        &self.words[n * WORDS..(n + 1) * WORDS]
    }

    fn get(&self, index: u64) -> Option<Hash> {
        let s = self.slot(index);
        let seq = s[0].load(Ordering::Acquire);
        if seq & 1 == 1 || s[1].load(Ordering::Relaxed) != index.wrapping_add(1) {
            return None;
        }
        let hash = load(&s[2..]);
        std::sync::atomic::fence(Ordering::Acquire);
        let unchanged = s[0].load(Ordering::Relaxed) == seq;
        (unchanged && s[1].load(Ordering::Relaxed) == index.wrapping_add(1)).then_some(hash)
    }

    fn put(&self, index: u64, hash: Hash) {
        let s = self.slot(index);
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
        store(&s[2..], hash);
        s[0].store(seq + 2, Ordering::Release);
    }
}

impl HashCache {
    /// Where the stored hash at `index` is kept by position: its chunk's
    /// place in `chunks` and its slot, or None if `Recent` holds it.
    fn position(index: u64) -> Option<(usize, usize)> {
        let (level, n) = tlog_tiles::tlog::split_stored_hash_index(index);
        if !(MIN_LEVEL..MAX_LEVEL).contains(&level) || n / CHUNK >= LEVEL_CHUNKS {
            return None;
        }
        let chunk = u64::from(level - MIN_LEVEL) * LEVEL_CHUNKS + n / CHUNK;
        Some((chunk as usize, (n % CHUNK) as usize))
    }

    /// The stored hash at `index`, if cached.
    pub fn get(&self, index: u64) -> Option<Hash> {
        match Self::position(index) {
            Some((chunk, slot)) => self.chunks[chunk].get()?.get(slot),
            None => self.recent.get(index),
        }
    }

    /// Keeps `hash`, committed (read from a snapshot, or just written) at
    /// stored-hash index `index`.
    pub fn put(&self, index: u64, hash: Hash) {
        match Self::position(index) {
            Some((chunk, slot)) => self.chunks[chunk]
                .get_or_init(|| Box::new(Chunk::new()))
                .put(slot, hash),
            None => self.recent.put(index, hash),
        }
    }

    /// Bytes the chunks allocated so far take.
    #[cfg(test)]
    fn chunk_bytes(&self) -> usize {
        let each = std::mem::size_of::<Chunk>() + CHUNK as usize * 32;
        self.chunks.iter().filter(|c| c.get().is_some()).count() * each
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::tlog::stored_hash_index;

    #[test]
    fn keeps_upper_levels_by_position_and_lower_ones_while_recent() {
        let c = HashCache::default();
        let h = Hash([7; 32]);
        c.put(stored_hash_index(0, 5), h);
        c.put(stored_hash_index(3, 5), h);
        assert_eq!(c.chunk_bytes(), 0, "levels below MIN_LEVEL take no chunk");
        assert_eq!(
            c.get(stored_hash_index(0, 5)),
            Some(h),
            "but are kept while recent"
        );
        c.put(stored_hash_index(4, 5), h);
        c.put(stored_hash_index(9, 0), hash_of(9));
        assert_eq!(c.get(stored_hash_index(4, 5)), Some(h));
        assert_eq!(c.get(stored_hash_index(9, 0)), Some(hash_of(9)));
        assert_eq!(c.get(stored_hash_index(4, 4)), None, "a neighbour");
        assert_eq!(c.get(stored_hash_index(4, 6)), None);
        assert_eq!(c.get(stored_hash_index(5, 5)), None, "the level above");
        assert_eq!(c.get(stored_hash_index(9, 1)), None);
    }

    #[test]
    fn a_level_keeps_its_first_chunks_and_sends_the_rest_to_recent() {
        let c = HashCache::default();
        let kept = CHUNK * LEVEL_CHUNKS;
        for n in (0..kept + 3 * CHUNK).step_by(97) {
            c.put(stored_hash_index(MIN_LEVEL, n), hash_of(n));
        }
        let each = std::mem::size_of::<Chunk>() + CHUNK as usize * 32;
        assert_eq!(c.chunk_bytes(), LEVEL_CHUNKS as usize * each);
        for n in (0..kept + 3 * CHUNK).step_by(97) {
            // Beyond the chunks, Recent still holds these few.
            assert_eq!(c.get(stored_hash_index(MIN_LEVEL, n)), Some(hash_of(n)));
        }
        for level in MIN_LEVEL..MAX_LEVEL {
            c.put(stored_hash_index(level, 3), hash_of(u64::from(level)));
        }
        for level in MIN_LEVEL..MAX_LEVEL {
            let got = c.get(stored_hash_index(level, 3));
            assert_eq!(got, Some(hash_of(u64::from(level))), "level {level}");
        }
    }

    #[test]
    fn readers_of_a_chunk_never_see_a_hash_half_written() {
        // Each slot is written once, and the reader takes it the moment
        // its bit is set: a bit set before the words are would show it a
        // hash half written. Several fresh caches, as the window is short.
        let n = CHUNK * LEVEL_CHUNKS;
        let index = |k: u64| stored_hash_index(MIN_LEVEL + (k % 2) as u8, k / 2);
        for _ in 0..8 {
            let c = std::sync::Arc::new(HashCache::default());
            let writer = {
                let c = c.clone();
                std::thread::spawn(move || (0..n).for_each(|k| c.put(index(k), hash_of(index(k)))))
            };
            for k in 0..n {
                let i = index(k);
                let h = loop {
                    let finished = writer.is_finished();
                    if let Some(h) = c.get(i) {
                        break h;
                    }
                    assert!(!finished, "index {i} was never kept");
                    std::hint::spin_loop();
                };
                assert_eq!(h, hash_of(i), "index {i}");
            }
            writer.join().unwrap();
        }
    }

    /// Two writers putting the hash of `index(k, thread)` and two readers
    /// checking every one they find, at once, for `rounds` k each: how
    /// many the readers found.
    fn race<C: Send + Sync + 'static>(
        c: std::sync::Arc<C>,
        rounds: u64,
        index: fn(u64, u64) -> u64,
        put: fn(&C, u64, Hash),
        get: fn(&C, u64) -> Option<Hash>,
    ) -> u64 {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    for k in 0..rounds {
                        let i = index(k, t);
                        if t % 2 == 0 {
                            put(&c, i, hash_of(i));
                        } else if let Some(h) = get(&c, i) {
                            assert_eq!(h, hash_of(i), "index {i}");
                            seen += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
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
        let r = std::sync::Arc::new(Recent::new(8));
        let same_slot: Vec<u64> = (0..1000u64)
            .filter(|&i| std::ptr::eq(r.slot(i).as_ptr(), r.slot(0).as_ptr()))
            .take(2)
            .collect();
        r.put(same_slot[0], hash_of(same_slot[0]));
        r.put(same_slot[1], hash_of(same_slot[1]));
        assert_eq!(r.get(same_slot[0]), None, "evicted");
        assert_eq!(r.get(same_slot[1]), Some(hash_of(same_slot[1])));
        let seen = race(
            r,
            200_000,
            |n, t| (n * 7 + t) % 64,
            Recent::put,
            Recent::get,
        );
        assert!(seen > 0, "readers found hashes while writers wrote");
    }
}
