//! An LRU cache of query embeddings keyed by model version and normalised text.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

/// (model version, normalised text)
type Key = (Arc<str>, String);

pub struct EmbeddingCache<V: Clone> {
    inner: Option<Mutex<LruCache<Key, V>>>,
}

impl<V: Clone> EmbeddingCache<V> {
    /// A cache of `capacity` entries; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    pub fn get(&self, version: &Arc<str>, text: &str) -> Option<V> {
        let inner = self.inner.as_ref()?;
        inner
            .lock()
            .unwrap()
            .get(&(version.clone(), text.to_string()))
            .cloned()
    }

    pub fn put(&self, version: &Arc<str>, text: String, value: V) {
        if let Some(inner) = &self.inner {
            inner.lock().unwrap().put((version.clone(), text), value);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.lock().unwrap().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_by_version_and_evicts_least_recent() {
        let c = EmbeddingCache::<Arc<[f32]>>::new(2);
        let (v1, v2): (Arc<str>, Arc<str>) = ("m@1".into(), "m@2".into());
        c.put(&v1, "a".into(), Arc::from(vec![1.0]));
        assert!(c.get(&v2, "a").is_none(), "another model version must miss");
        c.put(&v1, "b".into(), Arc::from(vec![2.0]));
        c.get(&v1, "a");
        c.put(&v1, "c".into(), Arc::from(vec![3.0]));
        assert!(c.get(&v1, "b").is_none(), "b was least recently used");
        assert_eq!(c.get(&v1, "a").unwrap()[0], 1.0);
        assert_eq!(c.len(), 2);
        assert!(EmbeddingCache::<Arc<[f32]>>::new(0).get(&v1, "a").is_none());
    }
}
