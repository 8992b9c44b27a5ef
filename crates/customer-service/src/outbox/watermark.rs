//! The settled prefix of the event log, kept by the relay leader.
//!
//! Positions come from a sequence when an event is inserted, but transactions commit in any
//! order: position 10 can be committed and published while 9 is still in flight (or will
//! roll back and never exist). A reader that pages with `position > cursor` and has passed
//! 10 would never see 9. So readers only read up to the *watermark*: every position at or
//! below it is published or dead. The relay advances it over published positions in order;
//! a missing position holds it back until it is published, or — if it stays missing for
//! [`GAP_GRACE`] while later ones are published — is taken as rolled back and passed.
//!
//! Write transactions commit right after inserting their events (milliseconds), so a
//! position missing for seconds is a rollback. One that commits later still is published
//! (the relay reads pending rows, not the watermark), but cursor readers skip it; the relay
//! logs a warning naming its position.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a missing position may hold the watermark back.
pub const GAP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Watermark {
    settled: i64,
    /// Published positions above `settled`.
    above: BTreeSet<i64>,
    /// `settled + 1` while it is missing and later positions are published: since when.
    gap_since: Option<(i64, Instant)>,
}

impl Watermark {
    /// The watermark `settled` as stored, with the positions above it already published.
    pub fn new(settled: i64, published_above: impl IntoIterator<Item = i64>) -> Watermark {
        Watermark {
            settled,
            above: published_above
                .into_iter()
                .filter(|p| *p > settled)
                .collect(),
            gap_since: None,
        }
    }

    pub fn settled(&self) -> i64 {
        self.settled
    }

    /// Whether a missing position holds the watermark back (an idle relay should still call
    /// [`Self::advance`] now and then).
    pub fn waiting(&self) -> bool {
        !self.above.is_empty()
    }

    /// Records newly published positions; returns those at or below the watermark — events
    /// that committed after it passed them (see the module docs).
    pub fn published(&mut self, positions: &[i64]) -> Vec<i64> {
        let mut late = Vec::new();
        for &position in positions {
            if position <= self.settled {
                late.push(position);
            } else {
                self.above.insert(position);
            }
        }
        late
    }

    /// Moves the watermark as far as it may go at `now`; the new value if it moved.
    pub fn advance(&mut self, now: Instant, grace: Duration) -> Option<i64> {
        let before = self.settled;
        while let Some(&lowest) = self.above.first() {
            let next = self.settled + 1;
            if lowest == next {
                self.above.remove(&lowest);
                self.settled = next;
                continue;
            }
            // `next` is missing while a later position is published.
            match self.gap_since {
                Some((position, since)) if position == next => {
                    if now.duration_since(since) < grace {
                        break;
                    }
                    // Rolled back: step over it and the whole run of missing positions up to
                    // `lowest`. They are as old: positions are handed out in order, so each
                    // was taken before `lowest`, which was already published when the gap
                    // was first seen.
                    self.settled = lowest - 1;
                    self.gap_since = None;
                }
                _ => {
                    self.gap_since = Some((next, now));
                    break;
                }
            }
        }
        (self.settled != before).then_some(self.settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    #[test]
    fn it_moves_over_published_positions_in_order_only() {
        let t = Instant::now();
        let mut w = Watermark::new(8, []);
        assert!(w.published(&[9, 10]).is_empty());
        assert_eq!(w.advance(t, GRACE), Some(10));
        // 12 published, 11 not yet: held at 10.
        w.published(&[12]);
        assert_eq!(w.advance(t, GRACE), None);
        assert_eq!(w.settled(), 10);
        assert!(w.waiting());
        // 11 arrives within the grace period: on to 12.
        w.published(&[11]);
        assert_eq!(w.advance(t + Duration::from_secs(1), GRACE), Some(12));
        assert!(!w.waiting());
    }

    #[test]
    fn a_position_missing_for_the_grace_period_is_passed_as_rolled_back() {
        let t = Instant::now();
        let mut w = Watermark::new(10, []);
        w.published(&[13, 14]);
        assert_eq!(w.advance(t, GRACE), None, "11 and 12 just went missing");
        assert_eq!(w.advance(t + GRACE - Duration::from_millis(1), GRACE), None);
        assert_eq!(w.advance(t + GRACE, GRACE), Some(14));
        // A "dead" position that commits after all is reported, not counted.
        assert_eq!(w.published(&[12, 15]), [12]);
        assert_eq!(w.advance(t + GRACE, GRACE), Some(15));
    }

    #[test]
    fn nothing_published_above_means_nothing_to_wait_for() {
        let t = Instant::now();
        let mut w = Watermark::new(5, [3, 7]);
        assert!(w.waiting(), "7 is above with 6 missing");
        assert_eq!(w.advance(t, GRACE), None);
        let mut empty = Watermark::new(5, []);
        assert!(!empty.waiting());
        assert_eq!(empty.advance(t + GRACE * 2, GRACE), None);
        assert_eq!(empty.settled(), 5);
    }
}
