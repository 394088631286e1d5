//! RFC 6962 / RFC 9162 §2.1 Merkle tree math: leaf hashes, the stored-hash
//! layout, tree hashes, inclusion and consistency proofs.
//!
//! The math is Go's `golang.org/x/mod/sumdb/tlog`, through its Rust port
//! `tlog_tiles`; this module names it in sealog's terms and adds nothing
//! clever. It depends on nothing server-side, so clients can use it as is.
//!
//! Storage layout: every node hash the tree will ever need is written once,
//! when its subtree completes, at `stored_hash_index(level, n)` (Crosby and
//! Wallach §3.3). Appending leaf `n` writes its leaf hash and one hash per
//! subtree it completes: just under two hashes per leaf on average. Any tree
//! hash or proof for any past size is computable from these.

pub use tlog_tiles::{Hash, HashReader, HASH_SIZE};

/// An error from proof making or checking.
pub type Error = tlog_tiles::Error;

/// The RFC 6962 leaf hash `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    tlog_tiles::record_hash(data)
}

/// The RFC 6962 interior node hash `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    tlog_tiles::node_hash(left, right)
}

/// The position in hash storage of the hash at `level` and offset `n`.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    tlog_tiles::stored_hash_index(level, n)
}

/// The number of stored hashes for a tree of `size` leaves.
pub fn stored_hash_count(size: u64) -> u64 {
    tlog_tiles::stored_hash_count(size)
}

/// The hashes to store, from `stored_hash_index(0, n)` on, when appending
/// leaf `n` with leaf hash `leaf`. Reads at most log₂ n earlier hashes.
pub fn stored_hashes(n: u64, leaf: Hash, r: &impl HashReader) -> Result<Vec<Hash>, Error> {
    tlog_tiles::stored_hashes_for_record_hash(n, leaf, r)
}

/// The root hash MTH(D[0:size]) (RFC 9162 §2.1.1).
pub fn root(size: u64, r: &impl HashReader) -> Result<Hash, Error> {
    tlog_tiles::tree_hash(size, r)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 9162 §2.1.3.1). Requires `index < size`.
pub fn prove_inclusion(size: u64, index: u64, r: &impl HashReader) -> Result<Vec<Hash>, Error> {
    tlog_tiles::prove_record(size, index, r)
}

/// The inclusion proofs of `leaves` (best ascending, as a batch's are) in
/// the tree of `size` leaves, equal to `prove_inclusion`'s one by one but
/// sharing their work. A complete aligned subtree of 2^j leaves is a node
/// of the tree, so the proofs of its leaves agree above it; below it, leaf
/// `m`'s proof is its sibling subtrees `(l, (m >> l) ^ 1)` for levels
/// `l < j`, each complete and stored. Hence one full proof per subtree,
/// and a batch's other leaves read j stored hashes each.
pub fn prove_inclusions(
    size: u64,
    leaves: &[u64],
    r: &impl HashReader,
) -> Result<Vec<Vec<Hash>>, Error> {
    /// Subtrees of at most 2^SHARED leaves share their proof.
    const SHARED: u32 = 8;
    // The last subtree proven: its level, first leaf, and proof above it.
    let mut shared: Option<(u32, u64, Vec<Hash>)> = None;
    let mut proofs = Vec::with_capacity(leaves.len());
    for &m in leaves {
        // The largest complete aligned subtree over `m`: j = 0 (the leaf
        // alone) always is one, when m < size.
        let j = (0..=SHARED)
            .rev()
            .find(|&j| ((m >> j) + 1) << j <= size)
            .unwrap_or(0);
        let first = m >> j << j;
        let proof = match &shared {
            Some((level, start, above)) if m < size && (*level, *start) == (j, first) => {
                let below: Vec<u64> = (0..j)
                    .map(|l| stored_hash_index(l as u8, (m >> l) ^ 1))
                    .collect();
                let mut proof = r.read_hashes(&below)?;
                proof.extend_from_slice(above);
                proof
            }
            _ => {
                let proof = prove_inclusion(size, m, r)?;
                shared = Some((j, first, proof[j as usize..].to_vec()));
                proof
            }
        };
        proofs.push(proof);
    }
    Ok(proofs)
}

/// Checks that `proof` proves leaf hash `leaf` at `index` in the tree of
/// `size` leaves with root `root` (RFC 9162 §2.1.3.2).
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::InvalidInput("index >= size".into()));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)
}

/// The consistency proof from the tree of `from` leaves to the tree of `to`
/// leaves (RFC 9162 §2.1.4.1). Requires `1 <= from <= to`.
pub fn prove_consistency(from: u64, to: u64, r: &impl HashReader) -> Result<Vec<Hash>, Error> {
    tlog_tiles::prove_tree(to, from, r)
}

/// Checks that `proof` proves the tree of `from` leaves with root
/// `from_root` is a prefix of the tree of `to` leaves with root `to_root`
/// (RFC 9162 §2.1.4.2).
pub fn check_consistency(
    proof: &[Hash],
    from: u64,
    from_root: Hash,
    to: u64,
    to_root: Hash,
) -> Result<(), Error> {
    tlog_tiles::check_tree(&proof.to_vec(), to, to_root, from, from_root)
}

/// A hash store in memory, indexed by stored-hash index. For tests, the
/// client-side replay of a log, and the batch being integrated.
#[derive(Default, Clone)]
pub struct MemoryHashes(pub Vec<Hash>);

impl MemoryHashes {
    /// Appends leaf `self.size()` and returns its stored hashes' count.
    pub fn append(&mut self, leaf: Hash) -> usize {
        let n = self.size();
        let hashes = stored_hashes(n, leaf, self).expect("memory reads cannot fail");
        let count = hashes.len();
        self.0.extend(hashes);
        count
    }

    /// The number of leaves appended.
    pub fn size(&self) -> u64 {
        // The stored hash count is strictly increasing in the size, so the
        // size is the largest n with stored_hash_count(n) <= len.
        let len = self.0.len() as u64;
        let (mut lo, mut hi) = (0u64, len + 1);
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if stored_hash_count(mid) <= len {
                lo = mid
            } else {
                hi = mid
            }
        }
        lo
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(Error::IndexesNotInTree)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: Hash) -> String {
        h.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The eight leaves of the RFC 6962 test vectors used by the reference
    // implementations (certificate-transparency merkle_tree_test, Go's
    // tlog ct_test, Trillian's rfc6962 tests).
    fn leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
    }

    fn tree_of(n: usize) -> MemoryHashes {
        let mut t = MemoryHashes::default();
        for d in leaves().iter().take(n) {
            t.append(leaf_hash(d));
        }
        t
    }

    #[test]
    fn batch_proofs_equal_single_proofs() {
        let mut t = MemoryHashes::default();
        for size in 1..=300u64 {
            t.append(leaf_hash(&size.to_le_bytes()));
            let one = |m: u64| prove_inclusion(size, m, &t).unwrap();
            // The whole tree, a batch at the right edge (as receipts are),
            // and a batch with gaps (duplicates leave them).
            let all: Vec<u64> = (0..size).collect();
            let edge: Vec<u64> = (size.saturating_sub(37)..size).collect();
            let gaps: Vec<u64> = (0..size).filter(|m| m % 3 != 1).collect();
            for leaves in [all, edge, gaps] {
                let got = prove_inclusions(size, &leaves, &t).unwrap();
                for (m, p) in leaves.iter().zip(got) {
                    assert_eq!(p, one(*m), "leaf {m} of {size}");
                }
            }
        }
        assert!(
            prove_inclusions(5, &[2, 5], &tree_of(5)).is_err(),
            "leaf 5 of 5"
        );
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            hex(root(0, &MemoryHashes::default()).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn known_answer_roots() {
        let want = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let t = tree_of(8);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(hex(root(i as u64 + 1, &t).unwrap()), *w, "size {}", i + 1);
        }
    }

    #[test]
    fn known_answer_inclusion_proofs() {
        // (index, size, proof) from the RFC 6962 reference test data.
        let cases: &[(u64, u64, &[&str])] = &[
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let t = tree_of(8);
        for (index, size, want) in cases {
            let got: Vec<String> = prove_inclusion(*size, *index, &t)
                .unwrap()
                .into_iter()
                .map(hex)
                .collect();
            assert_eq!(got, *want, "index {index} size {size}");
        }
    }

    #[test]
    fn known_answer_consistency_proofs() {
        // (from, to, proof) from the RFC 6962 reference test data.
        let cases: &[(u64, u64, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let t = tree_of(8);
        for (from, to, want) in cases {
            let got: Vec<String> = prove_consistency(*from, *to, &t)
                .unwrap()
                .into_iter()
                .map(hex)
                .collect();
            assert_eq!(got, *want, "from {from} to {to}");
        }
    }

    #[test]
    fn memory_hashes_size_tracks_appends() {
        let mut t = MemoryHashes::default();
        for n in 0..600u64 {
            assert_eq!(t.size(), n);
            t.append(leaf_hash(&n.to_be_bytes()));
        }
    }

    #[test]
    fn out_of_range_requests_are_errors_not_panics() {
        let t = tree_of(4);
        assert!(prove_inclusion(4, 4, &t).is_err());
        assert!(prove_consistency(0, 4, &t).is_err());
        assert!(prove_consistency(5, 4, &t).is_err());
        assert!(prove_inclusion(9, 0, &t).is_err());
        let r = root(4, &t).unwrap();
        assert!(check_inclusion(&[], 4, r, 7, r).is_err());
        assert!(check_consistency(&[], 0, r, 4, r).is_err());
    }
}
