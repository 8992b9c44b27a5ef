//! How a search finds its total and its page: the store's choice between a trigram index and
//! walking the list order, made from figures it can trust for a term it has never seen,
//! rather than from the planner's statistics (which are missing right after a bulk load and
//! stale after heavy creates; issue #29).
//!
//! - **The page** is chosen from the term's total, which every page needs anyway and which
//!   is exact: walking the list order and testing each row reads about `(offset + limit) ×
//!   customers / matches` rows, the index every match (then sorts them). The walk is
//!   [`Filter::Walk`], which PostgreSQL's planner cannot turn into an index lookup.
//! - **The total** on MySQL is counted through the posting table when the rarest of the
//!   term's trigrams is in fewer than [`SCAN_ABOVE`] customers' texts, and by a scan
//!   otherwise (a term whose every trigram is that common: `example.com`). A trigram in no
//!   text at all makes the total 0 without a count. The posting lists' sizes are counted
//!   (up to [`SCAN_ABOVE`]) and kept a minute per trigram: they choose a plan and are never
//!   a total. PostgreSQL counts through the trigram index of its narrow search table
//!   (`customers_search`, ~90 rows a page: each candidate is rechecked there, not in
//!   `customers`), SQLite through its FTS5 phrase alone (no row read; see
//!   [`Filter::Phrase`]).
//!
//! A total of 0, counted or proven, is kept as any total is (`count_cache.rs`): while it is
//! up to date, the term costs no query at all.
//!
//! Every count and page query is counted by the path that served it
//! ([`crate::application::SearchQueries`], `/metrics`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::application::{CustomerStore, ListQuery, SearchQueries, StoreError};

use super::error::classify;
use super::row::like_pattern;
use super::sql::{self, Filter};
use super::sql_store::SqlStore;
use super::Backend;

/// Search terms of fewer characters than this have no trigram to look up.
const TRIGRAM: usize = 3;

/// A posting list this long or longer is "common": the total of a term whose every trigram
/// is that common is counted by a scan (1M customers on MariaDB: rechecking the 41,600
/// customers of `joh` through its posting list took 85 ms, scanning the table 385 ms; each
/// recheck is a primary-key read, ~2 µs, against ~0.4 µs a row for the scan). Also the
/// bound of each size count: 50,000 postings are read in ~9 ms.
pub(super) const SCAN_ABOVE: i64 = 50_000;

/// A term's rarest posting list at least this long is intersected with the rarest list of
/// a trigram that does not overlap it in the term (a primary-key probe of the posting
/// table per candidate, ~0.5 µs, before the candidate's row is read, ~2 µs). Overlapping
/// trigrams (`joh`, `ohn`) are in nearly the same texts and remove next to nothing (the
/// count of `john` at 1M: 122 ms intersected, 85 not); apart, they remove most candidates
/// of a rare combination (`maria.ivanova`: 47 ms against 85; the page of `.99999@`,
/// `99@` with `.99`: 14 ms against 36). At a few thousand it is even (`999` with `99@`,
/// 3,700 candidates: 7.6 ms either way); below 2,000 the rows are read at once.
const INTERSECT_ABOVE: i64 = 2_000;

/// At most this many of a term's trigrams are sized (spread over the term): any of them can
/// drive the lookup, since every candidate is rechecked, and a 254-character term of common
/// trigrams would otherwise count up to 250 posting lists of 50,000 entries each.
const MAX_SIZED: usize = 16;

/// How long a posting list's size is reused for planning.
const FREQUENCY_TTL: Duration = Duration::from_secs(60);
/// Sizes kept at once (then all are forgotten).
const MAX_FREQUENCIES: usize = 8_192;

/// What a search runs: its total's query, and the page's two ways.
#[derive(Debug)]
pub(super) struct SearchPlan {
    /// Counts the total, unless `total` is already known.
    pub(super) count: Filter,
    /// Whether `count` reads an index (or a posting list) rather than the table.
    pub(super) count_by_index: bool,
    /// The total, when the plan already proves it (a trigram in no customer's text).
    pub(super) known_total: Option<i64>,
    /// The page through an index, if the term can be looked up in one.
    pub(super) index: Option<Filter>,
    /// The rows the index reads for a page, when more than the matches: the candidates of
    /// the posting list that drives (MySQL), each read and rechecked.
    pub(super) index_candidates: i64,
    /// The page by walking the list order.
    pub(super) walk: Filter,
}

/// The store's search state: posting-list sizes (MySQL) and the paths taken.
#[derive(Debug, Default)]
pub(super) struct SearchState {
    frequencies: Mutex<HashMap<String, (i64, Instant)>>,
    count_index: AtomicU64,
    count_scan: AtomicU64,
    page_index: AtomicU64,
    page_walk: AtomicU64,
}

impl SearchState {
    pub(super) fn queries(&self) -> SearchQueries {
        SearchQueries {
            count_index: self.count_index.load(Ordering::Relaxed),
            count_scan: self.count_scan.load(Ordering::Relaxed),
            page_index: self.page_index.load(Ordering::Relaxed),
            page_walk: self.page_walk.load(Ordering::Relaxed),
        }
    }

    /// A total counted, through the index or by a scan.
    pub(super) fn counted(&self, by_index: bool) {
        tally(by_index, &self.count_index, &self.count_scan);
    }

    /// A page found, through the index or by the walk.
    pub(super) fn paged(&self, by_index: bool) {
        tally(by_index, &self.page_index, &self.page_walk);
    }

    /// The remembered sizes of `trigrams` (`None` where unknown or too old).
    fn remembered(&self, trigrams: &[String]) -> Vec<Option<i64>> {
        let Ok(known) = self.frequencies.lock() else {
            return vec![None; trigrams.len()];
        };
        trigrams
            .iter()
            .map(|trigram| {
                known
                    .get(trigram)
                    .filter(|(_, at)| at.elapsed() < FREQUENCY_TTL)
                    .map(|(n, _)| *n)
            })
            .collect()
    }

    /// Keeps sizes for planning. Not a size of 0: that one makes a total (of 0), and a
    /// total follows writes (see `count_cache.rs`), so it is counted again each time
    /// (cheaply: an empty range).
    fn remember(&self, sizes: impl IntoIterator<Item = (String, i64)>) {
        let Ok(mut known) = self.frequencies.lock() else {
            return;
        };
        if known.len() >= MAX_FREQUENCIES {
            known.clear();
        }
        let now = Instant::now();
        for (trigram, n) in sizes {
            if n > 0 {
                known.insert(trigram, (n, now));
            }
        }
    }
}

fn tally(first: bool, if_first: &AtomicU64, otherwise: &AtomicU64) {
    let counter = if first { if_first } else { otherwise };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The distinct trigrams of `term` (characters, in order of first appearance), or `None`
/// when no index can serve it: fewer than three characters, or the fields' separator in it
/// (no trigram spans fields, and only a scan can find it where it appears).
pub(super) fn trigrams(term: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = term.chars().collect();
    if chars.len() < TRIGRAM || chars.contains(&super::row::SEARCH_SEPARATOR) {
        return None;
    }
    let mut found: Vec<String> = Vec::new();
    for window in chars.windows(TRIGRAM) {
        let trigram: String = window.iter().collect();
        if !found.contains(&trigram) {
            found.push(trigram);
        }
    }
    Some(found)
}

/// At most [`MAX_SIZED`] of `trigrams`, evenly spread over them (first and last included).
fn spread(trigrams: Vec<String>) -> Vec<String> {
    let n = trigrams.len();
    if n <= MAX_SIZED {
        return trigrams;
    }
    // Indices 0, …, n − 1 in MAX_SIZED steps; each step is at least 1, so all distinct.
    let picked: Vec<usize> = (0..MAX_SIZED)
        .map(|k| k * (n - 1) / (MAX_SIZED - 1))
        .collect();
    trigrams
        .into_iter()
        .enumerate()
        .filter(|(i, _)| picked.contains(i))
        .map(|(_, trigram)| trigram)
        .collect()
}

/// Where `trigram` first starts in `chars` (a trigram of them).
fn first_position(chars: &[char], trigram: &str) -> usize {
    let trigram: Vec<char> = trigram.chars().collect();
    chars
        .windows(TRIGRAM)
        .position(|window| window == trigram.as_slice())
        .unwrap_or(0)
}

impl SqlStore {
    /// The plan of a search for `term` (trimmed and lower-cased).
    pub(super) async fn search_plan(&self, term: &str) -> Result<SearchPlan, StoreError> {
        let pattern = like_pattern(term);
        let walk = Filter::Walk {
            pattern: pattern.clone(),
        };
        // PostgreSQL scans its narrow search table rather than `customers`.
        let scanned = |pattern: String| match self.backend {
            Backend::Postgres => Filter::SearchTable { pattern },
            Backend::Sqlite | Backend::MySql => Filter::Like { pattern },
        };
        let scan = |walk| SearchPlan {
            count: scanned(pattern.clone()),
            count_by_index: false,
            known_total: None,
            index: None,
            index_candidates: 0,
            walk,
        };
        let Some(trigrams) = trigrams(term) else {
            return Ok(scan(walk));
        };
        match self.backend {
            Backend::Postgres => Ok(SearchPlan {
                count: scanned(pattern.clone()),
                count_by_index: true,
                known_total: None,
                index: Some(scanned(pattern)),
                index_candidates: 0,
                walk,
            }),
            Backend::Sqlite => {
                // An FTS5 phrase: the term in double quotes, its own quotes doubled.
                let phrase = format!("\"{}\"", term.replace('"', "\"\""));
                let trigram = Filter::Trigram {
                    phrase: phrase.clone(),
                    pattern,
                };
                Ok(SearchPlan {
                    count: Filter::Phrase { phrase },
                    count_by_index: true,
                    known_total: None,
                    index: Some(trigram),
                    index_candidates: 0,
                    walk,
                })
            }
            Backend::MySql => {
                let chars: Vec<char> = term.chars().collect();
                let mut sized = self.trigram_sizes(spread(trigrams)).await?;
                sized.sort_by_key(|(_, n)| *n);
                let Some((driver, rarest)) = sized.first().cloned() else {
                    return Ok(scan(walk));
                };
                let mut chosen = vec![driver.clone()];
                if rarest >= INTERSECT_ABOVE {
                    let at = first_position(&chars, &driver);
                    if let Some((partner, _)) = sized.iter().find(|(trigram, _)| {
                        first_position(&chars, trigram).abs_diff(at) >= TRIGRAM
                    }) {
                        chosen.push(partner.clone());
                    }
                }
                let postings = Filter::Postings {
                    trigrams: chosen,
                    pattern: pattern.clone(),
                };
                let mut plan = if rarest >= SCAN_ABOVE {
                    scan(walk)
                } else {
                    SearchPlan {
                        count: postings.clone(),
                        count_by_index: true,
                        known_total: (rarest == 0).then_some(0),
                        index: None,
                        index_candidates: 0,
                        walk,
                    }
                };
                plan.index = Some(postings);
                plan.index_candidates = rarest;
                Ok(plan)
            }
        }
    }

    /// MySQL: each trigram with the size of its posting list (up to [`SCAN_ABOVE`]), from
    /// the last minute's counts where there are any.
    async fn trigram_sizes(&self, trigrams: Vec<String>) -> Result<Vec<(String, i64)>, StoreError> {
        let remembered = self.search.remembered(&trigrams);
        let unknown: Vec<&String> = trigrams
            .iter()
            .zip(&remembered)
            .filter(|(_, n)| n.is_none())
            .map(|(trigram, _)| trigram)
            .collect();
        let mut counted = Vec::with_capacity(unknown.len());
        if !unknown.is_empty() {
            let mut query = self.query(sql::trigram_frequencies(unknown.len(), SCAN_ABOVE));
            for trigram in &unknown {
                query = query.bind((*trigram).clone());
            }
            let row = self.fetch_one(query).await?;
            for (i, trigram) in unknown.iter().enumerate() {
                let n: i64 = row.try_get(i).map_err(classify)?;
                counted.push(((*trigram).clone(), n));
            }
            self.search.remember(counted.iter().cloned());
        }
        let mut counted = counted.into_iter();
        Ok(trigrams
            .into_iter()
            .zip(remembered)
            .map(|(trigram, n)| match n {
                Some(n) => (trigram, n),
                None => counted.next().unwrap_or((trigram, 0)),
            })
            .collect())
    }

    /// Whether walking the list order finds the page sooner than the index: the walk reads
    /// about `(offset + limit) × customers / matches` rows, the index every match, or every
    /// candidate of the posting list that drives it (then sorts the matches). A term most
    /// customers match (`example.com`) took 570 ms through SQLite's FTS5 at a million
    /// customers, and under a millisecond by the walk.
    pub(super) async fn walk_is_cheaper(
        &self,
        query: &ListQuery,
        matches: i64,
        index_candidates: i64,
    ) -> Result<bool, StoreError> {
        if matches == 0 {
            return Ok(false);
        }
        let customers = i128::from(self.count().await?);
        let wanted = i128::from(query.offset.saturating_add(query.limit));
        let index_reads = i128::from(matches.max(index_candidates));
        Ok(wanted * customers < i128::from(matches) * index_reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_has_its_distinct_trigrams_in_characters() {
        assert_eq!(
            trigrams("müllerll"),
            Some(vec![
                "mül".to_owned(),
                "üll".into(),
                "lle".into(),
                "ler".into(),
                "erl".into(),
                "rll".into()
            ])
        );
        assert_eq!(trigrams("aaaa"), Some(vec!["aaa".to_owned()]));
        let chars: Vec<char> = ".99999@".chars().collect();
        assert_eq!(first_position(&chars, "999"), 1);
        assert_eq!(first_position(&chars, "99@"), 4);
        assert_eq!(trigrams("ab"), None);
        let many: Vec<String> = (0..100).map(|i| format!("{i:03}")).collect();
        let sized = spread(many.clone());
        assert_eq!(sized.len(), MAX_SIZED);
        assert_eq!(sized.first(), many.first());
        assert_eq!(sized.last(), many.last());
        assert_eq!(
            spread(many[..MAX_SIZED].to_vec()),
            many[..MAX_SIZED].to_vec()
        );
        assert_eq!(trigrams("a\u{1f}bc"), None);
    }
}
