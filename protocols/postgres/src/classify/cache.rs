//! The classification cache: one classification per distinct normalized statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::Classified;
use super::statement::classify_key;

const CACHE_LIMIT: usize = 8192;
/// Longer keys are classified every time: caching them would let one agent keep gigabytes
/// (8192 distinct 4 MB statements), and re-parsing text that long costs little beside it.
const CACHE_MAX_KEY: usize = 4096;

fn cache() -> &'static Mutex<HashMap<String, Arc<Classified>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Classified>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Classification of a normalized statement, computed once per distinct key.
pub(super) fn cached(key: &str) -> Arc<Classified> {
    if key.len() > CACHE_MAX_KEY {
        return Arc::new(classify_key(key));
    }
    if let Ok(c) = cache().lock()
        && let Some(hit) = c.get(key)
    {
        return hit.clone();
    }
    let fresh = Arc::new(classify_key(key));
    if let Ok(mut c) = cache().lock() {
        if c.len() >= CACHE_LIMIT {
            // Crude but bounded: a workload with this many distinct shapes re-parses anyway.
            c.clear();
        }
        c.insert(key.to_string(), fresh.clone());
    }
    fresh
}
