//! List totals, cached until the next commit through this process: the customer count of
//! plain list pages, and the match count of each recent search.
//!
//! When a total is out of date, one request recounts it and the others answer with the
//! previous total meanwhile (single flight): without that, every concurrent request rescanned
//! after each commit, and list and search p99 grew with the table (issue #13). A total that
//! is only old (no commit through this process since) is recounted in the background while
//! every request answers with it, so no request waits for a count it did not cause.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long a cached count may be reused. Commits through this process invalidate it at
/// once, so only writes through other instances can make a total this stale.
const COUNT_CACHE_TTL: Duration = Duration::from_secs(1);

/// A total of this many rows or more is expensive to count (each row is read, and for a
/// search rechecked): it is reused for [`REUSE_PER_COST`] times as long as counting took
/// (at least [`COUNT_CACHE_TTL`]), commits or not, and always recounted in the background.
/// At a million customers a common term matches ~40,000 of them and counting it takes
/// ~240 ms (before issue #29's narrow search table); recounting twenty such terms every second (or after every write) took more CPU
/// than the machine has, and search throughput fell from 2,550 to 660 req/s
/// (bench/SCALE.md). By rows rather than by time, so that a small count slowed by a busy
/// machine still follows every write.
const EXPENSIVE_COUNT: i64 = 10_000;
const REUSE_PER_COST: u32 = 20;

/// Counts kept at once; a search term beyond them evicts the stale ones, or all.
const MAX_ENTRIES: usize = 256;

/// The key of the plain list's total. Search keys are LIKE patterns, which start with `%`.
pub(super) const ALL_CUSTOMERS: &str = "";

/// The last counted totals: every list page needs one, and counting is a scan (measured:
/// ~7.5 ms for 20,000 rows, thirty times the page query itself; a search's count scans
/// every row's search text).
#[derive(Debug, Default)]
pub(super) struct CountCache {
    /// Commits so far; a count is valid only for the generation it was taken in.
    generation: AtomicU64,
    counts: Mutex<HashMap<String, Entry>>,
    /// Keys being counted for the first time, each with the receiver its counter's
    /// [`FirstCount`] guard wakes when it is done (or dropped: a cancelled request).
    first: Mutex<HashMap<String, watch::Receiver<()>>>,
}

/// Who counts a key that has no total yet ([`Lookup::First`]).
pub(super) enum FirstCount {
    /// This request: count, `put`, then drop the guard.
    Count(FirstCountGuard),
    /// Another request is counting: wait for it, then look the key up again.
    Wait(watch::Receiver<()>),
}

/// Held by the request that counts a key first; dropping it wakes the requests waiting.
pub(super) struct FirstCountGuard {
    cache: Arc<CountCache>,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FirstCountGuard {
    fn drop(&mut self) {
        if let Ok(mut first) = self.cache.first.lock() {
            first.remove(&self.key);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: i64,
    generation: u64,
    at: Instant,
    /// How long counting took.
    cost: Duration,
    /// Since when a request has been recounting it, if one is. A recount older than the
    /// cache's lifetime is taken as abandoned (its request was cancelled).
    recounting_since: Option<Instant>,
}

/// What a request does for a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Up to date: answer with it.
    Fresh(i64),
    /// Out of date, and another request is recounting: answer with the previous total.
    Previous(i64),
    /// Count it, then [`CountCache::put`] the count with this generation.
    Recount(u64),
    /// Never counted (or forgotten): there is nothing to answer with meanwhile, so one
    /// request counts and the others wait for its total ([`CountCache::first_count`]) rather
    /// than each counting — sixteen clients' first search for a common term at a million
    /// customers were sixteen counts of ~100 ms each. Then `put` with this generation.
    First(u64),
    /// Only aged (no commit through this process since it was counted): answer with
    /// `previous` at once and recount in the background, then `put` with `generation`.
    Refresh { previous: i64, generation: u64 },
}

impl Entry {
    fn expensive(&self) -> bool {
        self.count >= EXPENSIVE_COUNT
    }

    /// How long the count may be reused.
    fn lifetime(&self) -> Duration {
        if self.expensive() {
            COUNT_CACHE_TTL.max(self.cost * REUSE_PER_COST)
        } else {
            COUNT_CACHE_TTL
        }
    }

    fn valid(&self, generation: u64) -> bool {
        self.at.elapsed() < self.lifetime() && (self.generation == generation || self.expensive())
    }
}

impl CountCache {
    /// The generation now: pass it to [`Self::put`] with a count taken after this call.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The total of `key` if it is up to date (without taking on a recount).
    pub(super) fn fresh(&self, key: &str) -> Option<i64> {
        let generation = self.generation();
        let counts = self.counts.lock().ok()?;
        counts
            .get(key)
            .filter(|entry| entry.valid(generation))
            .map(|entry| entry.count)
    }

    /// The total of `key`, the previous one while another request recounts, or the task of
    /// recounting it (which this call hands to the caller alone).
    pub(super) fn lookup(&self, key: &str) -> Lookup {
        let generation = self.generation();
        let Ok(mut counts) = self.counts.lock() else {
            return Lookup::Recount(generation);
        };
        let Some(entry) = counts.get_mut(key) else {
            return Lookup::First(generation);
        };
        if entry.valid(generation) {
            return Lookup::Fresh(entry.count);
        }
        match entry.recounting_since {
            Some(since) if since.elapsed() < entry.lifetime() => Lookup::Previous(entry.count),
            _ => {
                entry.recounting_since = Some(Instant::now());
                if entry.generation == generation || entry.expensive() {
                    Lookup::Refresh {
                        previous: entry.count,
                        generation,
                    }
                } else {
                    // A commit here since: this request must see it (read your writes).
                    Lookup::Recount(generation)
                }
            }
        }
    }

    /// Remembers `count` for `key`, taken when the generation was `generation` and counted
    /// in `cost`. If a commit has happened since, the count may miss it: unless expensive, it
    /// is kept only as the previous total, to answer with while the next request recounts.
    pub(super) fn put(&self, key: &str, count: i64, generation: u64, cost: Duration) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if counts.len() >= MAX_ENTRIES && !counts.contains_key(key) {
            counts.retain(|_, entry| entry.valid(generation));
            if counts.len() >= MAX_ENTRIES {
                counts.clear();
            }
        }
        let at = Instant::now();
        counts.insert(
            key.to_owned(),
            Entry {
                count,
                generation,
                at,
                cost,
                recounting_since: None,
            },
        );
    }

    /// Who counts `key` for the first time: this caller (until its guard drops) or the
    /// caller already counting it.
    pub(super) fn first_count(self: &Arc<Self>, key: &str) -> FirstCount {
        let Ok(mut first) = self.first.lock() else {
            let (done, _) = watch::channel(());
            return FirstCount::Count(FirstCountGuard {
                cache: self.clone(),
                key: key.to_owned(),
                _done: done,
            });
        };
        if let Some(waiting) = first.get(key) {
            return FirstCount::Wait(waiting.clone());
        }
        let (done, waiting) = watch::channel(());
        first.insert(key.to_owned(), waiting);
        FirstCount::Count(FirstCountGuard {
            cache: self.clone(),
            key: key.to_owned(),
            _done: done,
        })
    }

    /// Gives up a recount that failed: the next request recounts.
    pub(super) fn abandon(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(entry) = counts.get_mut(key) {
                entry.recounting_since = None;
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
        assert_eq!(cache.fresh(ALL_CUSTOMERS), None);
        let generation = cache.generation();
        cache.put(ALL_CUSTOMERS, 41, generation, Duration::ZERO);
        cache.put("%ann%", 3, generation, Duration::ZERO);
        assert_eq!(cache.fresh(ALL_CUSTOMERS), Some(41));
        assert_eq!(cache.fresh("%ann%"), Some(3));
        assert_eq!(cache.fresh("%bob%"), None);
        cache.invalidate();
        assert_eq!(cache.fresh(ALL_CUSTOMERS), None);
        assert_eq!(cache.fresh("%ann%"), None);
        // Counted before that commit, stored after it: refused.
        cache.put(ALL_CUSTOMERS, 41, generation, Duration::ZERO);
        assert_eq!(cache.fresh(ALL_CUSTOMERS), None);
    }

    #[test]
    fn one_request_recounts_an_out_of_date_total_while_the_others_answer_with_the_previous() {
        let cache = CountCache::default();
        let key = "%ann%";
        // Never counted: the key's first count (see `first_count`).
        let first = cache.generation();
        assert_eq!(cache.lookup(key), Lookup::First(first));
        assert_eq!(cache.lookup(key), Lookup::First(first));
        cache.put(key, 3, first, Duration::ZERO);
        assert_eq!(cache.lookup(key), Lookup::Fresh(3));

        cache.invalidate();
        let second = cache.generation();
        assert_eq!(
            cache.lookup(key),
            Lookup::Recount(second),
            "the first recounts"
        );
        assert_eq!(
            cache.lookup(key),
            Lookup::Previous(3),
            "the others answer with 3"
        );
        assert_eq!(cache.lookup(key), Lookup::Previous(3));
        // A commit lands during the recount: its count is only the previous total now, and
        // the next request recounts.
        cache.invalidate();
        cache.put(key, 4, second, Duration::ZERO);
        let third = cache.generation();
        assert_eq!(cache.lookup(key), Lookup::Recount(third));
        assert_eq!(cache.lookup(key), Lookup::Previous(4));
        // A failed recount hands the task on.
        cache.abandon(key);
        assert_eq!(cache.lookup(key), Lookup::Recount(third));
        cache.put(key, 5, third, Duration::ZERO);
        assert_eq!(cache.lookup(key), Lookup::Fresh(5));
    }

    #[test]
    fn an_aged_total_is_refreshed_in_the_background_a_committed_one_is_not() {
        let cache = CountCache::default();
        let key = "%ann%";
        let generation = cache.generation();
        cache.put(key, 3, generation, Duration::ZERO);
        let age = |cache: &CountCache| {
            if let Ok(mut counts) = cache.counts.lock() {
                if let Some(entry) = counts.get_mut(key) {
                    entry.at -= COUNT_CACHE_TTL * 2;
                }
            }
        };
        age(&cache);
        assert_eq!(
            cache.lookup(key),
            Lookup::Refresh {
                previous: 3,
                generation
            }
        );
        assert_eq!(cache.lookup(key), Lookup::Previous(3));
        cache.put(key, 4, generation, Duration::ZERO);
        assert_eq!(cache.lookup(key), Lookup::Fresh(4));
        // Aged and committed to since: the first request must count.
        age(&cache);
        cache.invalidate();
        assert_eq!(cache.lookup(key), Lookup::Recount(cache.generation()));
    }

    #[test]
    fn a_key_is_counted_first_by_one_request_while_the_others_wait_for_it() {
        let cache = Arc::new(CountCache::default());
        let FirstCount::Count(counting) = cache.first_count("%john%") else {
            panic!("the first request counts");
        };
        let FirstCount::Wait(waiting) = cache.first_count("%john%") else {
            panic!("the second waits");
        };
        assert!(matches!(cache.first_count("%ann%"), FirstCount::Count(_)));
        assert!(
            matches!(waiting.has_changed(), Ok(false)),
            "not woken before the count"
        );
        cache.put(
            "%john%",
            41_000,
            cache.generation(),
            Duration::from_millis(90),
        );
        drop(counting);
        assert!(
            waiting.has_changed().is_err(),
            "woken once the counter is done"
        );
        assert_eq!(cache.lookup("%john%"), Lookup::Fresh(41_000));
        // Done (or cancelled): the next first count is someone's again.
        assert!(matches!(cache.first_count("%john%"), FirstCount::Count(_)));
    }

    #[test]
    fn an_expensive_total_is_reused_for_twenty_times_its_cost_commits_or_not() {
        let cache = CountCache::default();
        let key = "%john%";
        cache.put(key, 40_000, cache.generation(), Duration::from_millis(240));
        cache.invalidate();
        assert_eq!(
            cache.lookup(key),
            Lookup::Fresh(40_000),
            "4.8 s, commits or not"
        );
        if let Ok(mut counts) = cache.counts.lock() {
            if let Some(entry) = counts.get_mut(key) {
                entry.at -= Duration::from_secs(5);
            }
        }
        // Past it: recounted in the background even after a commit, never by a request.
        assert_eq!(
            cache.lookup(key),
            Lookup::Refresh {
                previous: 40_000,
                generation: cache.generation()
            }
        );
        assert_eq!(cache.lookup(key), Lookup::Previous(40_000));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = CountCache::default();
        let generation = cache.generation();
        for i in 0..MAX_ENTRIES + 10 {
            cache.put(&format!("%{i}%"), 1, generation, Duration::ZERO);
        }
        let len = cache.counts.lock().map(|c| c.len()).unwrap_or(0);
        assert!(len <= MAX_ENTRIES, "{len} entries");
        assert_eq!(cache.fresh(&format!("%{}%", MAX_ENTRIES + 9)), Some(1));
    }
}
