//! Answers kept in the server's memory while the projections they were read from have not
//! changed: the dashboards' figures (`vyzov.written`, the projections' checkpoints).
//!
//! Each kind of answer keeps the version it was read at. A page asks with the version it read
//! first (`stamps::Stamps`, kept in memory for up to a second): a different version forgets
//! everything kept, and an answer read meanwhile is kept only under the version it was asked
//! at. So an answer is never older than the version a page saw. At most `capacity` answers;
//! full, it starts again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Kept<W, K, V> {
    capacity: usize,
    held: Mutex<Held<W, K, V>>,
}

/// The version the answers were read at, and the answers.
type Held<W, K, V> = (Option<W>, HashMap<K, Arc<V>>);

impl<W: PartialEq + Clone, K: Eq + Hash, V> Kept<W, K, V> {
    pub fn new(capacity: usize) -> Self {
        Kept {
            capacity,
            held: Mutex::new((None, HashMap::new())),
        }
    }

    /// The answer kept for `key`, if read at `version`.
    pub fn get(&self, version: &W, key: &K) -> Option<Arc<V>> {
        let mut held = self.lock();
        if held.0.as_ref() != Some(version) {
            *held = (Some(version.clone()), HashMap::new());
            return None;
        }
        held.1.get(key).cloned()
    }

    /// Keeps `value`, read at `version`, for `key` (unless the version changed meanwhile).
    pub fn put(&self, version: &W, key: K, value: V) -> Arc<V> {
        let value = Arc::new(value);
        let mut held = self.lock();
        if held.0.as_ref() == Some(version) {
            if held.1.len() >= self.capacity {
                held.1.clear();
            }
            held.1.insert(key, Arc::clone(&value));
        }
        value
    }

    fn lock(&self) -> MutexGuard<'_, Held<W, K, V>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_version_forgets_and_an_old_one_keeps_nothing() {
        let kept: Kept<u32, &str, i32> = Kept::new(2);
        assert_eq!(kept.get(&1, &"a"), None);
        kept.put(&1, "a", 10);
        assert_eq!(kept.get(&1, &"a").as_deref(), Some(&10));
        // Version 2 seen: what version 1 read is gone, and a late answer of version 1
        // is not kept.
        assert_eq!(kept.get(&2, &"a"), None);
        assert_eq!(*kept.put(&1, "a", 11), 11);
        assert_eq!(kept.get(&2, &"a"), None);
        kept.put(&2, "a", 20);
        kept.put(&2, "b", 21);
        // Full: it starts again.
        kept.put(&2, "c", 22);
        assert_eq!(kept.get(&2, &"a"), None);
        assert_eq!(kept.get(&2, &"c").as_deref(), Some(&22));
    }
}
