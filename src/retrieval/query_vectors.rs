//! A bounded, process-wide memo of query vectors keyed on (embedding model, query text).
//!
//! A reading searches once per chart fact, and fact queries repeat across users (there are ten
//! day masters, twelve Sun signs…): embedding them again on every reading made the embedder the
//! bottleneck of composed readings. Vectors are pure functions of the model and the text, so a
//! memo is exact; only the free question of a request usually misses. Least recently used
//! entries go first once [`CAPACITY`] is reached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Most vectors kept (384-d e5 vectors: ~1.6 KiB each, ~6.5 MiB in all).
pub const CAPACITY: usize = 4096;

/// (model, query text).
type Key = (String, String);
/// A vector and the tick it was last used at.
type Entry = (Arc<Vec<f32>>, u64);

/// The memo.
#[derive(Default)]
pub struct QueryVectors {
    entries: HashMap<Key, Entry>,
    tick: u64,
    capacity: usize,
}

impl QueryVectors {
    /// An empty memo holding at most `capacity` vectors.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    /// The vector of `query` under `model`, if memoised (and mark it used).
    pub fn get(&mut self, model: &str, query: &str) -> Option<Arc<Vec<f32>>> {
        self.tick += 1;
        let tick = self.tick;
        // Borrowed-tuple lookups need an owned key; queries are short.
        let key = (model.to_owned(), query.to_owned());
        self.entries.get_mut(&key).map(|(v, used)| {
            *used = tick;
            v.clone()
        })
    }

    /// Remember `vector` for `query` under `model`, dropping the least recently used eighth of
    /// the memo when it is full.
    pub fn put(&mut self, model: &str, query: &str, vector: Arc<Vec<f32>>) {
        self.tick += 1;
        if self.entries.len() >= self.capacity {
            let mut ages: Vec<u64> = self.entries.values().map(|(_, used)| *used).collect();
            ages.sort_unstable();
            let drop = (self.capacity / 8).max(1).min(ages.len());
            let cutoff = ages[drop - 1];
            self.entries.retain(|_, (_, used)| *used > cutoff);
        }
        self.entries
            .insert((model.to_owned(), query.to_owned()), (vector, self.tick));
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The process-wide memo.
pub fn shared() -> &'static Mutex<QueryVectors> {
    static MEMO: OnceLock<Mutex<QueryVectors>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(QueryVectors::new(CAPACITY)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: f32) -> Arc<Vec<f32>> {
        Arc::new(vec![x; 4])
    }

    #[test]
    fn hits_are_per_model_and_text() {
        let mut m = QueryVectors::new(8);
        m.put("e5", "갑목 일간", v(1.0));
        assert_eq!(m.get("e5", "갑목 일간").as_deref(), Some(&vec![1.0; 4]));
        assert!(m.get("minilm", "갑목 일간").is_none());
        assert!(m.get("e5", "을목 일간").is_none());
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let mut m = QueryVectors::new(8);
        for i in 0..8 {
            m.put("e5", &format!("q{i}"), v(i as f32));
        }
        // q0 is used again, so q1 is now the oldest.
        assert!(m.get("e5", "q0").is_some());
        m.put("e5", "q8", v(8.0));
        assert!(m.len() <= 8);
        assert!(
            m.get("e5", "q0").is_some(),
            "a recently used vector was evicted"
        );
        assert!(m.get("e5", "q1").is_none(), "the oldest vector survived");
        assert!(m.get("e5", "q8").is_some());
    }
}
