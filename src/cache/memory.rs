//! The in-process store: an LRU map with a time-to-live per entry and a byte budget.
//!
//! Recency is a monotonically increasing tick per access, kept in a `BTreeMap` beside the
//! entries so the least recently used one is the first of that map. Inserting evicts expired
//! entries at the cold end, then least recently used ones until the new entry fits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::{CacheKey, Entry, Purge};

/// Bytes counted per entry on top of its strings (map slots, `Arc`, bookkeeping).
const OVERHEAD: u64 = 160;

/// The memory an entry is charged for.
pub fn entry_size(entry: &Entry) -> u64 {
    (entry.body.len() + entry.route.len() + entry.prompt_version.len() + entry.corpus_version.len())
        as u64
        + OVERHEAD
}

struct Slot {
    entry: Arc<Entry>,
    expires: Instant,
    tick: u64,
    size: u64,
}

/// What an insert or lookup evicted, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub expired: u64,
    pub size: u64,
}

/// The LRU map. Not synchronised: the cache holds it under a mutex.
pub struct Lru {
    map: HashMap<CacheKey, Slot>,
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    bytes: u64,
    max_bytes: u64,
}

impl Lru {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries held.
    pub fn entries(&self) -> usize {
        self.map.len()
    }

    /// A live entry (marked most recently used); an expired one is removed and reported.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> (Option<Arc<Entry>>, Evicted) {
        let Some(slot) = self.map.get(key) else {
            return (None, Evicted::default());
        };
        if slot.expires <= now {
            self.remove(key);
            return (
                None,
                Evicted {
                    expired: 1,
                    size: 0,
                },
            );
        }
        let old = slot.tick;
        self.tick += 1;
        let tick = self.tick;
        self.order.remove(&old);
        self.order.insert(tick, *key);
        let slot = self.map.get_mut(key);
        (
            slot.map(|s| {
                s.tick = tick;
                Arc::clone(&s.entry)
            }),
            Evicted::default(),
        )
    }

    /// Store an entry until `expires`, evicting what it takes to stay within the budget. An
    /// entry larger than the whole budget is not stored (and evicts nothing).
    pub fn insert(
        &mut self,
        key: CacheKey,
        entry: Arc<Entry>,
        expires: Instant,
        now: Instant,
    ) -> Evicted {
        let size = entry_size(&entry);
        let mut evicted = Evicted::default();
        if size > self.max_bytes {
            return evicted;
        }
        self.remove(&key);
        while let Some((_, cold)) = self.order.first_key_value() {
            let cold = *cold;
            let expired = self.map.get(&cold).is_some_and(|s| s.expires <= now);
            if expired {
                evicted.expired += 1;
            } else if self.bytes + size > self.max_bytes {
                evicted.size += 1;
            } else {
                break;
            }
            self.remove(&cold);
        }
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.bytes += size;
        self.map.insert(
            key,
            Slot {
                entry,
                expires,
                tick: self.tick,
                size,
            },
        );
        evicted
    }

    /// Remove every entry the purge selects; how many were removed.
    pub fn purge(&mut self, what: &Purge) -> u64 {
        let doomed: Vec<CacheKey> = self
            .map
            .iter()
            .filter(|(_, slot)| what.selects(&slot.entry))
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            self.remove(key);
        }
        doomed.len() as u64
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.tick);
            self.bytes -= slot.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyParts;
    use std::time::Duration;

    fn key(i: u32) -> CacheKey {
        let v = serde_json::json!(i);
        CacheKey::new(&KeyParts {
            route: "/r",
            chart: &v,
            question: "",
            locale: "",
            options: &v,
            model: "",
            model_hash: "",
            prompt_version: "",
            corpus_version: "",
        })
    }

    fn entry(len: usize, route: &str) -> Arc<Entry> {
        Arc::new(Entry {
            body: vec![b'x'; len],
            route: route.into(),
            prompt_version: "p".into(),
            corpus_version: "c".into(),
        })
    }

    #[test]
    fn least_recently_used_goes_first() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let one = entry_size(&entry(100, "/r"));
        let mut lru = Lru::new(one * 3);
        for i in 0..3 {
            assert_eq!(
                lru.insert(key(i), entry(100, "/r"), later, now),
                Evicted::default()
            );
        }
        assert!(lru.get(&key(0), now).0.is_some()); // 1 is now the coldest
        let ev = lru.insert(key(3), entry(100, "/r"), later, now);
        assert_eq!(ev.size, 1);
        assert!(lru.get(&key(1), now).0.is_none());
        assert!(lru.get(&key(0), now).0.is_some());
        assert_eq!(lru.bytes(), one * 3);
        assert_eq!(lru.entries(), 3);
        // Too big for the whole budget: not stored, nothing evicted.
        assert_eq!(
            lru.insert(key(9), entry(one as usize * 3, "/r"), later, now),
            Evicted::default()
        );
        assert_eq!(lru.entries(), 3);
    }

    #[test]
    fn expired_entries_are_dropped() {
        let now = Instant::now();
        let mut lru = Lru::new(1 << 20);
        lru.insert(key(1), entry(10, "/a"), now + Duration::from_secs(1), now);
        assert!(lru.get(&key(1), now).0.is_some());
        let (hit, ev) = lru.get(&key(1), now + Duration::from_secs(2));
        assert!(hit.is_none());
        assert_eq!(ev.expired, 1);
        assert_eq!(lru.bytes(), 0);
    }

    #[test]
    fn purge_by_route() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut lru = Lru::new(1 << 20);
        lru.insert(key(1), entry(10, "/a"), later, now);
        lru.insert(key(2), entry(10, "/b"), later, now);
        lru.insert(key(3), entry(10, "/a"), later, now);
        assert_eq!(lru.purge(&Purge::Route("/a".into())), 2);
        assert_eq!(lru.entries(), 1);
        assert_eq!(lru.purge(&Purge::All), 1);
        assert_eq!(lru.bytes(), 0);
    }
}
