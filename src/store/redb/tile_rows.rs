//! Full level-0 hash tiles and full entry bundles, stored whole.
//!
//! Why: built from the tree's own tables, a level-0 tile is a scan of
//! ~511 stored hashes and a bundle one of 256 entries, ~55 and ~37 µs of
//! server CPU against ~12 µs for a whole tile request answered from memory
//! (BENCHMARKS.md, "Full tiles are stored whole, in three parts"), and
//! random tiles of a large log cannot all be in memory. Stored whole, each
//! is one short scan. Both are written in
//! the transaction whose leaves complete them, and never change (a
//! redaction keeps the commitment). Higher tiles, 1/256 as many, are read
//! through the hash cache.
//!
//! A tile's 256 hashes (a bundle's 256 commitments) are stored in three
//! parts of at most 125: redb gives a value of 8,192 bytes a 16 KiB page of
//! its own, and one of 4,000 bytes a 4 KiB page, so a tile takes three
//! pages instead of four (on a 1M-leaf log, 12.5 KiB a tile and 48 bytes a
//! leaf per table, against 16.8 KiB and 64 bytes stored whole). Part `p`
//! of tile `n` is the row `n << 2 | p`.

use redb::{ReadableTable, Table, TableDefinition};

use crate::store::StoreError;
use sealog_verify::tiles::FULL_WIDTH;
use sealog_verify::tree::{self, Hash, HashReader, HASH_SIZE};

/// Full level-0 tiles: their hashes, in parts.
pub(crate) const TILES: TableDefinition<u64, &[u8]> = TableDefinition::new("tiles");
/// Full entry bundles: their commitments, in parts (without the length
/// prefixes the bundle encoding adds).
pub(crate) const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("bundles");

/// Bytes in a part, at most: 125 hashes.
const PART_BYTES: usize = 125 * HASH_SIZE;
/// Bytes of a full tile's hashes or a full bundle's commitments.
const FULL_BYTES: usize = FULL_WIDTH as usize * HASH_SIZE;

/// Reads a level-0 tile's hashes: their indexes ascend, among ~2 × 256
/// consecutive stored hashes, which one range scan reads for a fraction of
/// the cost of a lookup each. Indexes that do not ascend are not found.
pub(crate) struct RangeHashes<'a, T: ReadableTable<u64, [u8; 32]>>(pub &'a T);

impl<T: ReadableTable<u64, [u8; 32]>> HashReader for RangeHashes<'_, T> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tree::Error> {
        let missing = |_| tree::Error::IndexesNotInTree;
        let (Some(&first), Some(&last)) = (indexes.first(), indexes.last()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(indexes.len());
        let mut wanted = indexes.iter().peekable();
        for row in self.0.range(first..=last).map_err(missing)? {
            let (index, hash) = row.map_err(missing)?;
            if wanted.next_if_eq(&&index.value()).is_some() {
                out.push(Hash(hash.value()));
            }
        }
        match wanted.next() {
            None => Ok(out),
            Some(_) => Err(tree::Error::IndexesNotInTree),
        }
    }
}

/// The first `width` hashes of level-0 tile `index`, from the hashes table.
pub(crate) fn build_tile(
    hashes: &impl ReadableTable<u64, [u8; 32]>,
    index: u64,
    width: u32,
) -> Result<Vec<u8>, StoreError> {
    tlog_tiles::Tile::new(sealog_verify::tiles::HEIGHT, 0, index, width, false)
        .read_data(&RangeHashes(hashes))
        .map_err(|e| StoreError::Corrupt(format!("level-0 tile {index}: {e}")))
}

/// The first `width` commitments of bundle `index`, from the entries table.
pub(crate) fn build_bundle(
    entries: &impl ReadableTable<u64, [u8; 32]>,
    index: u64,
    width: u32,
) -> Result<Vec<u8>, StoreError> {
    let start = index * u64::from(FULL_WIDTH);
    let commitments = commitments_in(entries, start, u64::from(width))?;
    Ok(commitments.iter().flat_map(|c| c.0).collect())
}

/// Stores the tiles and bundles that the leaves `from..to` complete.
pub(crate) fn write_completed(
    tiles: &mut Table<u64, &[u8]>,
    bundles: &mut Table<u64, &[u8]>,
    hashes: &impl ReadableTable<u64, [u8; 32]>,
    entries: &impl ReadableTable<u64, [u8; 32]>,
    from: u64,
    to: u64,
) -> Result<(), StoreError> {
    let full = u64::from(FULL_WIDTH);
    for index in from / full..to / full {
        put(tiles, index, &build_tile(hashes, index, FULL_WIDTH)?)?;
        put(bundles, index, &build_bundle(entries, index, FULL_WIDTH)?)?;
    }
    Ok(())
}

fn put(table: &mut Table<u64, &[u8]>, index: u64, data: &[u8]) -> Result<(), StoreError> {
    for (part, bytes) in data.chunks(PART_BYTES).enumerate() {
        table.insert(index << 2 | part as u64, bytes)?;
    }
    Ok(())
}

/// The stored data of full tile (or bundle) `index`, if stored.
pub(crate) fn get(
    table: &impl ReadableTable<u64, &'static [u8]>,
    index: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut data = Vec::with_capacity(FULL_BYTES);
    for row in table.range(index << 2..(index + 1) << 2)? {
        data.extend_from_slice(row?.1.value());
    }
    match data.len() {
        0 => Ok(None),
        FULL_BYTES => Ok(Some(data)),
        n => Err(StoreError::Corrupt(format!(
            "stored tile {index} has {n} bytes, not {FULL_BYTES}"
        ))),
    }
}

/// The number of full tiles stored: every one below it is (they are
/// written in order), none at or above it.
pub(crate) fn stored_count(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<u64, StoreError> {
    Ok(table.last()?.map_or(0, |(k, _)| (k.value() >> 2) + 1))
}

/// The commitments of leaves `start..start + count` in `entries`, of a
/// read or a write transaction.
pub fn commitments_in(
    entries: &impl ReadableTable<u64, [u8; 32]>,
    start: u64,
    count: u64,
) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::with_capacity(count as usize);
    for row in entries.range(start..start.saturating_add(count))? {
        out.push(Hash(row?.1.value()));
    }
    if out.len() as u64 != count {
        return Err(StoreError::Corrupt(format!(
            "entries {start}..{}: found {}",
            start + count,
            out.len()
        )));
    }
    Ok(out)
}
