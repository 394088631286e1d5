//! The map the engine keeps users and source IPs in: it evicts the least
//! recently touched entry in O(1) amortized, which is what bounds the
//! engine's state whatever the mix of users and IPs an attacker sends.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map that remembers the order its keys were last touched, to evict
/// the least recently touched in O(1) amortized. `order` holds a record
/// per touch; records older than the key's last touch are stale and
/// skipped, and dropped whenever they outnumber the live ones.
pub(crate) struct Lru<K, V> {
    map: HashMap<K, (V, u64)>,
    order: VecDeque<(u64, K)>,
    stamp: u64,
}

impl<K: Hash + Eq + Clone, V> Default for Lru<K, V> {
    fn default() -> Self {
        Lru {
            map: HashMap::new(),
            order: VecDeque::new(),
            stamp: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// How many entries it holds.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry of `k`, without touching it.
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|e| &e.0)
    }

    /// The entry of `k`, mutable, without touching it.
    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|e| &mut e.0)
    }

    /// The entry of `k`, made by `make` if absent, now the most recent.
    pub(crate) fn touch<Q>(&mut self, k: &Q, make: impl FnOnce() -> V) -> &mut V
    where
        K: std::borrow::Borrow<Q>,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(s, key)| map.get::<K>(key).is_some_and(|e| e.1 == *s));
        }
        let last = self.order.back().map(|r| r.0);
        let present = self.map.get(k).map(|e| e.1);
        if present.is_some() && present == last {
            // Already the most recent (a burst from one IP, one user's
            // run of events): no new record.
            return &mut self.map.get_mut(k).expect("present").0;
        }
        self.stamp += 1;
        let s = self.stamp;
        let key: K = k.to_owned();
        if present.is_some() {
            self.order.push_back((s, key));
            let e = self.map.get_mut(k).expect("present");
            e.1 = s;
            return &mut e.0;
        }
        self.order.push_back((s, key.clone()));
        &mut self.map.entry(key).or_insert((make(), s)).0
    }

    /// The least recently touched entry, if `pred` holds for it: removed.
    pub(crate) fn pop_oldest_if(&mut self, pred: impl Fn(&V) -> bool) -> Option<(K, V)> {
        while let Some((s, k)) = self.order.front() {
            match self.map.get(k) {
                Some(e) if e.1 == *s => {
                    if !pred(&e.0) {
                        return None;
                    }
                    let (_, k) = self.order.pop_front().expect("front");
                    let (v, _) = self.map.remove(&k).expect("live");
                    return Some((k, v));
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lru_evicts_the_least_recently_touched_and_stays_compact() {
        let mut l: Lru<u32, u32> = Lru::default();
        for k in 0..3 {
            *l.touch(&k, || 0) += 1;
        }
        *l.touch(&0, || 0) += 1; // 0 is now the newest
        assert_eq!(l.pop_oldest_if(|_| true).map(|e| e.0), Some(1));
        assert_eq!(l.pop_oldest_if(|v| *v > 1), None, "2 is not over 1");
        assert_eq!(l.pop_oldest_if(|_| true).map(|e| e.0), Some(2));
        assert_eq!(l.pop_oldest_if(|_| true), Some((0, 2)));
        assert_eq!(l.pop_oldest_if(|_| true), None);
        for i in 0..100_000 {
            l.touch(&(i % 3), || 0);
        }
        assert!(l.order.len() <= 2 * l.len() + 65, "{}", l.order.len());
        // Touching the most recent key again records nothing new.
        *l.touch(&5, || 0) += 1;
        let n = l.order.len();
        for _ in 0..10 {
            *l.touch(&5, || 0) += 1;
        }
        assert_eq!((l.order.len(), l.get(&5)), (n, Some(&11)));
        let order: Vec<u32> =
            std::iter::from_fn(|| l.pop_oldest_if(|_| true).map(|e| e.0)).collect();
        assert_eq!(order, [1, 2, 0, 5]);
    }
}
