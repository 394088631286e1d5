//! The stored hashes of the tree's upper levels, kept in memory.
//!
//! Why: a proof reads ~2 log₂ n stored hashes, and each was a B-tree
//! lookup: 45 % of the server's CPU per inclusion proof (BENCHMARKS.md).
//! A stored hash never changes once its transaction commits, so a copy
//! taken from a committed snapshot can never be stale. Levels from
//! `MIN_LEVEL` up hold one stored hash in 2^(MIN_LEVEL-1) (n/8 for n
//! leaves), and every proof of every leaf shares them; the levels below
//! are the leaf's own neighbourhood, a few B-tree pages. The cache stops
//! growing at `MAX_ENTRIES` (about 100 MiB), so memory stays bounded
//! however long the log grows.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::tree::Hash;

/// The lowest level cached.
const MIN_LEVEL: u8 = 4;
/// Hashes at most in the cache.
const MAX_ENTRIES: usize = 1 << 21;
const SHARDS: usize = 16;

/// Hashes a stored-hash index with splitmix64's finalizer: every input
/// bit reaches the low bits the table uses. SipHash's protection against
/// chosen keys is not needed for keys the log itself computes.
#[derive(Default)]
struct IndexHasher(u64);

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

type Map = HashMap<u64, Hash, BuildHasherDefault<IndexHasher>>;

/// Stored hashes by stored-hash index.
pub struct HashCache {
    shards: [RwLock<Map>; SHARDS],
    len: AtomicUsize,
}

impl Default for HashCache {
    fn default() -> Self {
        HashCache {
            shards: std::array::from_fn(|_| RwLock::new(Map::default())),
            len: AtomicUsize::new(0),
        }
    }
}

impl HashCache {
    fn shard(&self, index: u64) -> &RwLock<Map> {
        &self.shards[(index as usize) % SHARDS]
    }

    /// The stored hash at `index`, if cached.
    pub fn get(&self, index: u64) -> Option<Hash> {
        self.shard(index)
            .read()
            .expect("not poisoned")
            .get(&index)
            .copied()
    }

    /// Keeps `hash`, read from a committed snapshot at stored-hash index
    /// `index`, if its level is cached and there is room.
    pub fn put(&self, index: u64, hash: Hash) {
        if tlog_tiles::tlog::split_stored_hash_index(index).0 < MIN_LEVEL
            || self.len.load(Ordering::Relaxed) >= MAX_ENTRIES
        {
            return;
        }
        if self
            .shard(index)
            .write()
            .expect("not poisoned")
            .insert(index, hash)
            .is_none()
        {
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
    fn keeps_upper_levels_only() {
        let c = HashCache::default();
        let h = Hash([7; 32]);
        c.put(stored_hash_index(0, 5), h);
        c.put(stored_hash_index(3, 5), h);
        assert!(c.is_empty(), "levels below MIN_LEVEL are not kept");
        c.put(stored_hash_index(4, 5), h);
        c.put(stored_hash_index(9, 0), Hash([8; 32]));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(stored_hash_index(4, 5)), Some(h));
        assert_eq!(c.get(stored_hash_index(9, 0)), Some(Hash([8; 32])));
        assert_eq!(c.get(stored_hash_index(4, 6)), None);
    }
}
