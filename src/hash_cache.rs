//! The stored hashes of the tree's upper levels, kept in memory.
//!
//! Why: a proof reads ~2 log₂ n stored hashes, and each was a B-tree
//! lookup: 45 % of the server's CPU per inclusion proof (BENCHMARKS.md).
//! A stored hash never changes once its transaction commits, so a copy
//! taken from a committed snapshot can never be stale. Levels from
//! `MIN_LEVEL` up hold one stored hash in 2^(MIN_LEVEL-1) (n/8 for n
//! leaves), and every proof of every leaf shares them; the levels below
//! are the leaf's own neighbourhood, a few B-tree pages. The cache holds
//! at most `SHARDS * PER_SHARD` hashes in tables allocated whole at the
//! start, so memory does not grow with the log.
//!
//! The levels below `MIN_LEVEL` go to `Recent`, a fixed table where a
//! newer hash takes the slot of an older one: proofs of nearby leaves (a
//! producer checking fresh receipts) share them, and keeping all of a
//! large tree's is out of reach. Those reads were ~20 % of the server's
//! CPU per proof (BENCHMARKS.md).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::tree::Hash;

/// The lowest level cached.
const MIN_LEVEL: u8 = 4;
const SHARDS: usize = 16;
/// Hashes at most in a shard: 7/8 of 2^15, the most a table of 2^15
/// buckets holds before it reallocates at twice the size. 16 shards hold
/// 458,752 hashes in ~21 MiB, the upper levels of a log of ~3.7M leaves.
/// At 10M, proofs ran as fast with 2^19 hashes as with 2^21
/// (BENCHMARKS.md, session 5). The tables are allocated whole at the
/// start, so that they never reallocate: grown on demand, a table doubles
/// (copying itself under its write lock), and 2^19 hashes in 16 shards
/// filled tables of 2^16 buckets, ~43 MiB in all.
const PER_SHARD: usize = 28_672;

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

type Map = IndexMap<Hash>;

/// Stored hashes by stored-hash index.
pub struct HashCache {
    shards: [RwLock<Map>; SHARDS],
    len: AtomicUsize,
    recent: Recent,
}

impl Default for HashCache {
    fn default() -> Self {
        HashCache {
            shards: std::array::from_fn(|_| {
                RwLock::new(Map::with_capacity_and_hasher(PER_SHARD, Default::default()))
            }),
            len: AtomicUsize::new(0),
            recent: Recent::new(RECENT_SLOTS),
        }
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
        let mut hash = [0u8; 32];
        for (chunk, w) in hash.chunks_exact_mut(8).zip(&s[2..]) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        std::sync::atomic::fence(Ordering::Acquire);
        let unchanged = s[0].load(Ordering::Relaxed) == seq;
        (unchanged && s[1].load(Ordering::Relaxed) == index.wrapping_add(1)).then_some(Hash(hash))
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
        for (chunk, w) in hash.0.chunks_exact(8).zip(&s[2..]) {
            w.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
        s[0].store(seq + 2, Ordering::Release);
    }
}

/// Whether the stored hash at `index` is of a level `Recent` holds.
fn below_min_level(index: u64) -> bool {
    tlog_tiles::tlog::split_stored_hash_index(index).0 < MIN_LEVEL
}

impl HashCache {
    fn shard(&self, index: u64) -> &RwLock<Map> {
        // Mixed: the upper levels' indexes are far from uniform modulo 16.
        // Bits 32-35, which a shard's table uses neither for the bucket
        // (low bits) nor for its tag (top 7).
        &self.shards[(mix(index) >> 32) as usize % SHARDS]
    }

    /// The stored hash at `index`, if cached.
    pub fn get(&self, index: u64) -> Option<Hash> {
        if below_min_level(index) {
            return self.recent.get(index);
        }
        self.shard(index)
            .read()
            .expect("not poisoned")
            .get(&index)
            .copied()
    }

    /// Keeps `hash`, committed (read from a snapshot, or just written) at stored-hash index
    /// `index`, if its level is cached and there is room.
    pub fn put(&self, index: u64, hash: Hash) {
        if below_min_level(index) {
            self.recent.put(index, hash);
            return;
        }
        if self.len.load(Ordering::Relaxed) >= SHARDS * PER_SHARD {
            return;
        }
        let mut shard = self.shard(index).write().expect("not poisoned");
        if shard.len() < PER_SHARD && shard.insert(index, hash).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hashes held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::tlog::stored_hash_index;

    #[test]
    fn keeps_upper_levels_for_good_and_lower_ones_while_recent() {
        let c = HashCache::default();
        let h = Hash([7; 32]);
        c.put(stored_hash_index(0, 5), h);
        c.put(stored_hash_index(3, 5), h);
        assert!(c.is_empty(), "levels below MIN_LEVEL are not counted");
        assert_eq!(
            c.get(stored_hash_index(0, 5)),
            Some(h),
            "but kept while recent"
        );
        c.put(stored_hash_index(4, 5), h);
        c.put(stored_hash_index(9, 0), Hash([8; 32]));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(stored_hash_index(4, 5)), Some(h));
        assert_eq!(c.get(stored_hash_index(9, 0)), Some(Hash([8; 32])));
        assert_eq!(c.get(stored_hash_index(4, 6)), None);
    }

    #[test]
    fn a_full_cache_keeps_its_first_tables() {
        let c = HashCache::default();
        let capacity = |c: &HashCache| -> Vec<usize> {
            c.shards
                .iter()
                .map(|s| s.read().unwrap().capacity())
                .collect()
        };
        let before = capacity(&c);
        assert!(before.iter().all(|&n| n >= PER_SHARD));
        for n in 0..1_000_000 {
            c.put(stored_hash_index(MIN_LEVEL, n), hash_of(n));
        }
        assert_eq!(c.len(), SHARDS * PER_SHARD, "every shard full");
        assert_eq!(capacity(&c), before, "and none reallocated");
        assert_eq!(c.get(stored_hash_index(MIN_LEVEL, 999_999)), None);
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
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    for n in 0..200_000u64 {
                        let i = (n * 7 + t) % 64;
                        if t % 2 == 0 {
                            r.put(i, hash_of(i));
                        } else if let Some(h) = r.get(i) {
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
