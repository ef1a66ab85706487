//! A bounded map that forgets the least recently used entries first,
//! approximately, in O(1): the identity cache's and the stream-store's.

use std::{collections::HashMap, hash::Hash};

/// A map of at most `capacity` entries that forgets the least recently used
/// ones first, approximately: two generations, `hot` and `cold`, of up to
/// `capacity / 2` entries each. A hit in `cold` moves the entry to `hot`;
/// when `hot` is full, `cold` is dropped and `hot` becomes `cold`. Every
/// operation is O(1), with no list to maintain.
#[derive(Debug)]
pub struct Bounded<K, V> {
    hot: HashMap<K, V>,
    cold: HashMap<K, V>,
    half: usize,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    /// An empty map of at most `capacity` entries (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Bounded {
            hot: HashMap::new(),
            cold: HashMap::new(),
            half: capacity / 2,
        }
    }

    /// The value of `key`, marking it recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        if let Some(value) = self.hot.get(key) {
            return Some(value.clone());
        }
        let (key, value) = self.cold.remove_entry(key)?;
        self.insert(key, value.clone());
        Some(value)
    }

    /// Keeps `value` for `key`, forgetting the older generation when the
    /// newer one is full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.half == 0 {
            return;
        }
        if self.hot.len() >= self.half && !self.hot.contains_key(&key) {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.cold.remove(&key);
        self.hot.insert(key, value);
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        self.hot.remove(key);
        self.cold.remove(key);
    }

    /// Forgets `key`, handing back its value (no clone).
    pub fn take(&mut self, key: &K) -> Option<V> {
        self.hot.remove(key).or_else(|| self.cold.remove(key))
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_hands_the_value_back_from_either_generation_and_forgets_it() {
        let mut map = Bounded::new(4);
        map.insert("a", 1);
        map.insert("b", 2);
        // a third entry fills `hot` (2 of 4): a and b move to `cold`
        map.insert("c", 3);
        assert_eq!(map.take(&"a"), Some(1), "from cold");
        assert_eq!(map.take(&"c"), Some(3), "from hot");
        assert_eq!(map.take(&"a"), None);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn the_recently_used_outlive_the_rest() {
        let mut map = Bounded::new(4);
        for n in 0..4 {
            map.insert(n, n);
        }
        // 0 and 1 went cold when 2 came; using 0 brings it back
        assert_eq!(map.get(&0), Some(0));
        for n in 4..6 {
            map.insert(n, n);
        }
        assert_eq!(map.get(&0), Some(0), "recently used");
        assert_eq!(map.get(&1), None, "least recently used, forgotten");
        assert!(map.len() <= 4);
    }
}
