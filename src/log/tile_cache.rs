//! Full tiles and entry bundles, kept in memory once read.
//!
//! Why: a full tile never changes (tlog-tiles serves it as immutable), and
//! reading a hash tile from the store is 256 B-tree lookups. Memory is
//! bounded by `MAX_BYTES`; when a tile does not fit, the shard it belongs
//! to is emptied first (cheap, and fair to tiles read often: they return).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use axum::body::Bytes;

use sealog_verify::tiles::{TileRef, FULL_WIDTH};

/// Bytes of tile data at most.
const MAX_BYTES: usize = 64 << 20;
const SHARDS: usize = 16;

type Key = (Option<u8>, u64);

/// Full tiles by (level or entries, index).
pub struct TileCache {
    shards: [RwLock<HashMap<Key, Bytes>>; SHARDS],
    bytes: AtomicUsize,
}

impl Default for TileCache {
    fn default() -> Self {
        TileCache {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            bytes: AtomicUsize::new(0),
        }
    }
}

impl TileCache {
    fn shard(&self, key: Key) -> &RwLock<HashMap<Key, Bytes>> {
        &self.shards[(key.1 as usize ^ key.0.map_or(64, usize::from)) % SHARDS]
    }

    /// The data of `t`, if it is a full tile already read.
    pub fn get(&self, t: &TileRef) -> Option<Bytes> {
        if t.width != FULL_WIDTH {
            return None;
        }
        let key = (t.level, t.index);
        self.shard(key)
            .read()
            .expect("not poisoned")
            .get(&key)
            .cloned()
    }

    /// Keeps the data of `t` if it is a full tile.
    pub fn put(&self, t: &TileRef, data: Bytes) {
        if t.width != FULL_WIDTH || data.len() > MAX_BYTES / SHARDS {
            return;
        }
        let key = (t.level, t.index);
        let mut shard = self.shard(key).write().expect("not poisoned");
        if self.bytes.load(Ordering::Relaxed) + data.len() > MAX_BYTES {
            let freed: usize = shard.values().map(Bytes::len).sum();
            shard.clear();
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
        }
        let len = data.len();
        if let Some(old) = shard.insert(key, data) {
            self.bytes.fetch_sub(old.len(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Bytes of tile data held.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(level: Option<u8>, index: u64, width: u32) -> TileRef {
        TileRef {
            level,
            index,
            width,
        }
    }

    #[test]
    fn keeps_full_tiles_only_and_stays_bounded() {
        let c = TileCache::default();
        c.put(&tile(Some(0), 1, 7), Bytes::from(vec![1; 224]));
        assert_eq!(c.get(&tile(Some(0), 1, 7)), None, "partial tiles change");
        c.put(&tile(Some(0), 1, 256), Bytes::from(vec![1; 8192]));
        c.put(&tile(None, 1, 256), Bytes::from(vec![2; 8704]));
        assert_eq!(c.get(&tile(Some(0), 1, 256)).unwrap()[0], 1);
        assert_eq!(c.get(&tile(None, 1, 256)).unwrap()[0], 2, "bundles apart");
        assert_eq!(c.get(&tile(Some(1), 1, 256)), None);
        for i in 0..20_000 {
            c.put(&tile(Some(0), i, 256), Bytes::from(vec![0; 8192]));
            assert!(c.bytes() <= MAX_BYTES);
        }
        assert!(c.bytes() > MAX_BYTES / 2, "emptying a shard frees a share");
    }
}
