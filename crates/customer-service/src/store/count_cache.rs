//! The customer total of list pages, cached until the next commit through this process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a cached customer count may be reused. Commits through this process invalidate
/// it at once, so only writes through other instances can make a total this stale.
const COUNT_CACHE_TTL: Duration = Duration::from_secs(1);

/// The last counted total: every list page needs it, and counting is a scan of the table
/// (measured: ~7.5 ms for 20,000 rows, thirty times the page query itself).
#[derive(Debug, Default)]
pub(super) struct CountCache {
    /// Commits so far; a count is valid only for the generation it was taken in.
    pub(super) generation: AtomicU64,
    last: Mutex<Option<(i64, u64, Instant)>>,
}

impl CountCache {
    pub(super) fn get(&self) -> Option<i64> {
        let generation = self.generation.load(Ordering::Acquire);
        let last = self.last.lock().ok()?;
        last.filter(|(_, g, at)| *g == generation && at.elapsed() < COUNT_CACHE_TTL)
            .map(|(count, _, _)| count)
    }

    /// Remembers `count`, taken when the generation was `generation`, unless a commit has
    /// happened since (the count might then miss it).
    pub(super) fn put(&self, count: i64, generation: u64) {
        if let Ok(mut last) = self.last.lock() {
            if self.generation.load(Ordering::Acquire) == generation {
                *last = Some((count, generation, Instant::now()));
            }
        }
    }

    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_count_is_dropped_by_any_commit_and_never_stored_across_one() {
        let cache = CountCache::default();
        assert_eq!(cache.get(), None);
        let generation = cache.generation.load(Ordering::Acquire);
        cache.put(41, generation);
        assert_eq!(cache.get(), Some(41));
        cache.invalidate();
        assert_eq!(cache.get(), None);
        // Counted before that commit, stored after it: refused.
        cache.put(41, generation);
        assert_eq!(cache.get(), None);
    }
}
