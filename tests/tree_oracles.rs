//! The tree against independent oracles: a textbook RFC 6962 §2.1
//! implementation written here from the RFC's definitions (MTH, PATH,
//! PROOF), and rs_merkle with an RFC 6962 hasher. Plus properties: every
//! proof for every size up to a few hundred verifies, and any change to a
//! proof or its inputs makes it fail.

use std::cell::RefCell;
use std::collections::HashMap;

use proptest::prelude::*;
use sealog_verify::tree::{self, Hash, MemoryHashes};
use sha2::{Digest, Sha256};

const MAX_EXHAUSTIVE: u64 = 300;

/// Textbook RFC 6962 over leaf data D[0:n], memoized per subtree.
struct Textbook {
    leaves: Vec<Hash>,
    memo: RefCell<HashMap<(u64, u64), Hash>>,
}

fn k_for(n: u64) -> u64 {
    // The largest power of two smaller than n.
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

impl Textbook {
    fn new(data: &[Vec<u8>]) -> Self {
        let leaves = data
            .iter()
            .map(|d| {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(d);
                Hash(h.finalize().into())
            })
            .collect();
        Textbook {
            leaves,
            memo: RefCell::new(HashMap::new()),
        }
    }

    /// MTH(D[lo:hi]).
    fn mth(&self, lo: u64, hi: u64) -> Hash {
        if let Some(h) = self.memo.borrow().get(&(lo, hi)) {
            return *h;
        }
        let h = match hi - lo {
            0 => Hash(Sha256::digest([]).into()),
            1 => self.leaves[lo as usize],
            n => {
                let k = k_for(n);
                let mut s = Sha256::new();
                s.update([1u8]);
                s.update(self.mth(lo, lo + k).0);
                s.update(self.mth(lo + k, hi).0);
                Hash(s.finalize().into())
            }
        };
        self.memo.borrow_mut().insert((lo, hi), h);
        h
    }

    /// PATH(m, D[lo:hi]), RFC 6962 §2.1.1.
    fn path(&self, m: u64, lo: u64, hi: u64) -> Vec<Hash> {
        let n = hi - lo;
        if n == 1 {
            return vec![];
        }
        let k = k_for(n);
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true), RFC 6962 §2.1.2.
    fn proof(&self, m: u64, n: u64) -> Vec<Hash> {
        self.subproof(m, 0, n, true)
    }

    fn subproof(&self, m: u64, lo: u64, hi: u64, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b { vec![] } else { vec![self.mth(lo, hi)] };
        }
        let k = k_for(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }
}

fn data(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

fn tree_of(data: &[Vec<u8>]) -> MemoryHashes {
    let mut t = MemoryHashes::default();
    for d in data {
        t.append(tree::leaf_hash(d));
    }
    t
}

#[test]
fn every_root_and_proof_matches_the_textbook_up_to_300() {
    let d = data(MAX_EXHAUSTIVE);
    let t = tree_of(&d);
    let book = Textbook::new(&d);
    for n in 1..=MAX_EXHAUSTIVE {
        let root = tree::root(n, &t).unwrap();
        assert_eq!(root, book.mth(0, n), "root {n}");
        for i in 0..n {
            let p = tree::prove_inclusion(n, i, &t).unwrap();
            assert_eq!(p, book.path(i, 0, n), "inclusion {i} in {n}");
            tree::check_inclusion(&p, n, root, i, book.leaves[i as usize]).unwrap();
        }
        for m in 1..=n {
            let p = tree::prove_consistency(m, n, &t).unwrap();
            assert_eq!(p, book.proof(m, n), "consistency {m}..{n}");
            tree::check_consistency(&p, m, book.mth(0, m), n, root).unwrap();
        }
    }
}

/// rs_merkle with RFC 6962 interior hashing; leaves are given hashed.
#[derive(Clone)]
struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => {
                let mut s = Sha256::new();
                s.update([1u8]);
                s.update(left);
                s.update(r);
                s.finalize().into()
            }
            // RFC 6962's split at the largest power of two below n is the
            // same as promoting a lone right-edge node a level up.
            None => *left,
        }
    }
}

#[test]
fn roots_and_inclusion_proofs_match_rs_merkle() {
    let d = data(1100);
    let t = tree_of(&d);
    let leaves: Vec<[u8; 32]> = d.iter().map(|x| tree::leaf_hash(x).0).collect();
    for n in
        (1..=1100u64).filter(|n| *n <= 70 || n % 37 == 0 || n.is_power_of_two() || n % 256 <= 1)
    {
        let oracle = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&leaves[..n as usize]);
        let root = tree::root(n, &t).unwrap();
        assert_eq!(Some(root.0), oracle.root(), "root {n}");
        for i in (0..n).step_by(1 + n as usize / 13) {
            let ours: Vec<[u8; 32]> = tree::prove_inclusion(n, i, &t)
                .unwrap()
                .into_iter()
                .map(|h| h.0)
                .collect();
            let theirs = oracle.proof(&[i as usize]);
            assert_eq!(ours, theirs.proof_hashes(), "inclusion {i} in {n}");
            assert!(theirs.verify(root.0, &[i as usize], &[leaves[i as usize]], n as usize));
        }
    }
}

fn flip(h: &mut Hash, bit: usize) {
    h.0[bit / 8 % 32] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_bit_flip_breaks_an_inclusion_proof(n in 2u64..400, i_seed: u64, which: usize, bit in 0usize..256) {
        let d = data(n);
        let t = tree_of(&d);
        let i = i_seed % n;
        let root = tree::root(n, &t).unwrap();
        let leaf = tree::leaf_hash(&d[i as usize]);
        let proof = tree::prove_inclusion(n, i, &t).unwrap();
        prop_assert!(tree::check_inclusion(&proof, n, root, i, leaf).is_ok());

        let mut bad = proof.clone();
        let w = which % bad.len();
        flip(&mut bad[w], bit);
        prop_assert!(tree::check_inclusion(&bad, n, root, i, leaf).is_err());
        let mut bad_root = root;
        flip(&mut bad_root, bit);
        prop_assert!(tree::check_inclusion(&proof, n, bad_root, i, leaf).is_err());
        let mut bad_leaf = leaf;
        flip(&mut bad_leaf, bit);
        prop_assert!(tree::check_inclusion(&proof, n, root, i, bad_leaf).is_err());
        prop_assert!(tree::check_inclusion(&proof, n, root, (i + 1) % n, leaf).is_err());
        prop_assert!(tree::check_inclusion(&proof[..proof.len() - 1], n, root, i, leaf).is_err());
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(tree::check_inclusion(&longer, n, root, i, leaf).is_err());
    }

    #[test]
    fn any_bit_flip_breaks_a_consistency_proof(n in 2u64..400, m_seed: u64, which: usize, bit in 0usize..256) {
        let d = data(n);
        let t = tree_of(&d);
        let m = 1 + m_seed % (n - 1); // m < n, so the proof is non-empty
        let (old, new) = (tree::root(m, &t).unwrap(), tree::root(n, &t).unwrap());
        let proof = tree::prove_consistency(m, n, &t).unwrap();
        prop_assert!(tree::check_consistency(&proof, m, old, n, new).is_ok());

        let mut bad = proof.clone();
        let w = which % bad.len();
        flip(&mut bad[w], bit);
        prop_assert!(tree::check_consistency(&bad, m, old, n, new).is_err());
        let mut bad_old = old;
        flip(&mut bad_old, bit);
        prop_assert!(tree::check_consistency(&proof, m, bad_old, n, new).is_err());
        let mut bad_new = new;
        flip(&mut bad_new, bit);
        prop_assert!(tree::check_consistency(&proof, m, old, n, bad_new).is_err());
        prop_assert!(tree::check_consistency(&proof[1..], m, old, n, new).is_err());
    }

    #[test]
    fn random_proofs_never_panic_the_checker(n in 1u64..1000, i in 0u64..1000, len in 0usize..24, seed: u8) {
        let proof: Vec<Hash> = (0..len).map(|k| Hash([seed.wrapping_add(k as u8); 32])).collect();
        let h = Hash([seed; 32]);
        let _ = tree::check_inclusion(&proof, n, h, i, h);
        let _ = tree::check_consistency(&proof, i.max(1), h, n, h);
    }
}
