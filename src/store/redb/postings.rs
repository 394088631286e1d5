//! Posting blocks: the leaf indexes one query key (a user, an actor, an
//! IP, a class) holds, stored a run at a time.
//!
//! Why: one row per (key, leaf index) cost the index follower a B-tree
//! insert per leaf and key, ~7 % of its time each, although a round holds
//! many leaves of one user or class (BENCHMARKS.md, "Posting blocks in the
//! lookup tables"). A round writes one row per key it saw: (key, first leaf index) → the
//! others, ascending, each as its LEB128 distance from the one before.
//! A key seen once in a round costs one row, as a row per leaf would (the
//! value is empty).
//!
//! What must stay true: a block's indexes are ascending and all above its
//! first, and blocks of one key never interleave (each round's indexes lie
//! above every earlier round's), so a key's blocks in key order list its
//! leaves in index order.

use crate::store::StoreError;
use crate::sys::varint::{self, VarintError};

/// The most leaf indexes in one block: a query decodes whole blocks, so
/// a page of results never reads more than a few hundred indexes more
/// than it returns.
pub const MAX_BLOCK: usize = 256;

/// The stored value of a block of `first` and `rest` (ascending, above
/// `first`).
pub fn encode(first: u64, rest: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = first;
    for i in rest {
        varint::put(&mut out, i - last);
        last = i;
    }
    out
}

/// The leaf indexes of the block stored under `first` with value `bytes`.
pub fn decode(first: u64, bytes: &[u8]) -> Result<Vec<u64>, StoreError> {
    let damaged = |why: &str| StoreError::Corrupt(format!("posting block at {first}: {why}"));
    let mut out = vec![first];
    let (mut last, mut rest) = (first, bytes);
    while !rest.is_empty() {
        let (d, len) = varint::get(rest).map_err(|e| match e {
            VarintError::CutShort => damaged("cut short"),
            VarintError::TooLong => damaged("a distance of more than 64 bits"),
        })?;
        if d == 0 {
            return Err(damaged("a leaf listed twice"));
        }
        last = last.checked_add(d).ok_or_else(|| damaged("past 2^64"))?;
        out.push(last);
        rest = &rest[len..];
    }
    Ok(out)
}

/// Groups (key, leaf index) rows into blocks of at most `MAX_BLOCK`:
/// (key, first, stored value), in key order.
pub fn blocks<K: Ord + Copy>(mut rows: Vec<(K, u64)>) -> Vec<(K, u64, Vec<u8>)> {
    rows.sort_unstable();
    rows.dedup();
    rows.chunk_by(|a, b| a.0 == b.0)
        .flat_map(|run| run.chunks(MAX_BLOCK))
        .map(|block| {
            let (key, first) = block[0];
            (key, first, encode(first, block[1..].iter().map(|r| r.1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_in_key_and_index_order() {
        let mut rows = vec![(7u64, 5u64), (3, 9), (7, 1), (7, 300), (3, 2)];
        rows.extend((0..MAX_BLOCK as u64 + 3).map(|i| (1, 1000 + i * 977)));
        let blocks = blocks(rows.clone());
        let keys: Vec<(u64, u64)> = blocks.iter().map(|b| (b.0, b.1)).collect();
        let split = 1000 + MAX_BLOCK as u64 * 977;
        assert_eq!(keys, [(1, 1000), (1, split), (3, 2), (7, 1)]);
        let mut back: Vec<(u64, u64)> = Vec::new();
        for (k, first, v) in &blocks {
            back.extend(decode(*first, v).unwrap().into_iter().map(|i| (*k, i)));
        }
        rows.sort();
        assert_eq!(back, rows);
        assert!(
            blocks.last().unwrap().2.len() == 3,
            "4 and 295: 1 and 2 bytes"
        );
        assert!(
            decode(42, &[]).unwrap() == [42],
            "a lone leaf stores nothing"
        );
        assert_eq!(
            decode(u64::MAX - 1, &encode(u64::MAX - 1, [u64::MAX]))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn damaged_blocks_are_errors() {
        assert!(decode(1, &[0x80]).is_err(), "cut short");
        assert!(decode(1, &[0]).is_err(), "a zero distance");
        assert!(decode(u64::MAX, &[1]).is_err(), "past 2^64");
        assert!(decode(1, &[0xff; 11]).is_err(), "too long");
        let mut max = vec![0xff; 9];
        max.push(0x02);
        assert!(decode(0, &max).is_err(), "a tenth byte above 1");
    }
}
