//! When an entry should be refreshed, and the mark that keeps at most one refresh of
//! an entry in flight (prefetch and `serve_stale immediate` alike; CoreDNS started one
//! per hit until it was fixed later).

use super::clock::{millis, Millis, Stamp};
use crate::config::Prefetch;
use crate::limits::{CACHE_REFRESH_MILLIS_MAX, CACHE_REFRESH_RETRY_MILLIS};

/// How popular an entry is right now (CoreDNS `freq.Freq`): the run of hits, each
/// within the prefetch DURATION of the previous one. 12 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Freq {
    /// Hits in the run; 0 before the first (then `last` means nothing).
    hits: u32,
    last: Stamp,
}

impl Freq {
    /// Counts a hit at `now`: the run grows if the previous hit is at most `window`
    /// old, otherwise it restarts at 1 (CoreDNS: `last.Before(now - d)` resets).
    pub(super) fn hit(&mut self, window: Millis, now: Millis) -> u32 {
        let within = self.hits > 0 && now.saturating_sub(self.last.millis()) <= window;
        self.hits = if within {
            self.hits.saturating_add(1)
        } else {
            1
        };
        self.last = Stamp::new(now);
        self.hits
    }
}

/// CoreDNS `shouldPrefetch`, counting this hit: at least `amount` hits in a row, and
/// the remaining TTL at most `percentage`% of the original (rounded up, computed in
/// integers where CoreDNS's float made 10% of 30 s round up to 4 s).
pub(super) fn prefetch_due(
    freq: &mut Freq,
    p: &Prefetch,
    ttl_secs: u32,
    remaining_secs: u32,
    now: Millis,
) -> bool {
    let hits = freq.hit(millis(p.duration), now);
    let threshold = (u64::from(ttl_secs) * u64::from(p.percentage)).div_ceil(100);
    hits >= p.amount && u64::from(remaining_secs) <= threshold
}

/// Whether a refresh of an entry is in flight: set when the shard tells the caller to
/// start one, cleared by the caller's `insert` or `refresh_failed`. A mark older than
/// [`CACHE_REFRESH_MILLIS_MAX`] is presumed lost (a caller that dropped its task), so a
/// lost report delays the next refresh instead of stopping refreshes for good. After a
/// failed refresh the next waits the retry delay the claim names
/// ([`CACHE_REFRESH_RETRY_MILLIS`], or serve_stale's FAILURE_RECHECK). 8 bytes: one
/// stamp serves both states, which never hold together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RefreshMark {
    /// When the refresh started (`InFlight`) or failed (`Failed`).
    at: Stamp,
    state: RefreshState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum RefreshState {
    #[default]
    Idle,
    InFlight,
    Failed,
}

impl RefreshMark {
    const TIMEOUT: Millis = CACHE_REFRESH_MILLIS_MAX;
    /// The retry delay after a failed refresh unless serve_stale sets another.
    pub(super) const RETRY: Millis = CACHE_REFRESH_RETRY_MILLIS;

    fn age(&self, now: Millis) -> Millis {
        now.saturating_sub(self.at.millis())
    }

    /// Whether a refresh is in flight at `now`.
    pub(super) fn in_flight(&self, now: Millis) -> bool {
        self.state == RefreshState::InFlight && self.age(now) < Self::TIMEOUT
    }

    /// True (and marks) if no refresh is in flight and none failed within `retry`
    /// milliseconds: the caller must start one.
    pub(super) fn claim(&mut self, now: Millis, retry: Millis) -> bool {
        let backing_off = self.state == RefreshState::Failed && self.age(now) < retry;
        if self.in_flight(now) || backing_off {
            return false;
        }
        *self = RefreshMark {
            at: Stamp::new(now),
            state: RefreshState::InFlight,
        };
        true
    }

    /// Ends the refresh in flight; returns whether there was one (a mark past the
    /// timeout still counts: its report came late).
    pub(super) fn clear(&mut self) -> bool {
        let was = self.state == RefreshState::InFlight;
        if was {
            *self = RefreshMark::default();
        }
        was
    }

    /// Ends the refresh in flight as failed at `now` (the next waits the retry delay);
    /// returns whether there was one.
    pub(super) fn fail(&mut self, now: Millis) -> bool {
        let was = self.clear();
        if was {
            *self = RefreshMark {
                at: Stamp::new(now),
                state: RefreshState::Failed,
            };
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::cache::clock::STAMP_MILLIS_MAX;

    fn p(amount: u32, secs: u64, percentage: u8) -> Prefetch {
        Prefetch {
            amount,
            duration: Duration::from_secs(secs),
            percentage,
        }
    }

    #[test]
    fn freq_runs_and_resets() {
        let t0: Millis = 5_000;
        let mut f = Freq::default();
        assert_eq!(size_of::<Freq>(), 12);
        assert_eq!(f.hit(10_000, t0), 1);
        assert_eq!(f.hit(10_000, t0 + 10_000), 2);
        assert_eq!(f.hit(10_000, t0 + 20_000), 3);
        assert_eq!(
            f.hit(10_000, t0 + 30_001),
            1,
            "a gap longer than the window restarts the run"
        );
        // A clock that goes backwards counts as no gap.
        assert_eq!(f.hit(1_000, t0), 2);
        // The first hit starts a run even at time 0.
        assert_eq!(Freq::default().hit(u64::MAX, 0), 1);
    }

    #[test]
    fn threshold_is_integer_ceiling() {
        let t0: Millis = 0;
        let due =
            |ttl, remaining| prefetch_due(&mut Freq::default(), &p(1, 60, 10), ttl, remaining, t0);
        assert!(due(30, 3));
        assert!(!due(30, 4), "CoreDNS's float gives 4; 10% of 30 is 3");
        assert!(due(31, 4), "3.1 rounds up");
        assert!(!due(31, 5));
        assert!(due(1, 1), "10% of 1 s rounds up to 1 s");
        assert!(due(u32::MAX, 0), "no overflow");
        let mut f = Freq::default();
        assert!(!prefetch_due(&mut f, &p(3, 60, 90), 100, 10, t0));
        assert!(!prefetch_due(&mut f, &p(3, 60, 90), 100, 10, t0));
        assert!(prefetch_due(&mut f, &p(3, 60, 90), 100, 10, t0));
        // A window longer than any stamp still works.
        let huge = Prefetch {
            amount: 2,
            duration: Duration::MAX,
            percentage: 90,
        };
        let mut f = Freq::default();
        assert!(!prefetch_due(&mut f, &huge, 100, 10, 0));
        assert!(prefetch_due(&mut f, &huge, 100, 10, STAMP_MILLIS_MAX));
    }

    #[test]
    fn mark_allows_one_in_flight() {
        let t0: Millis = 1_000;
        let mut m = RefreshMark::default();
        assert_eq!(size_of::<RefreshMark>(), 8);
        assert!(m.claim(t0, RefreshMark::RETRY));
        assert!(!m.claim(t0, RefreshMark::RETRY));
        assert!(!m.claim(t0 + RefreshMark::TIMEOUT - 1, RefreshMark::RETRY));
        assert!(
            m.claim(t0 + RefreshMark::TIMEOUT, RefreshMark::RETRY),
            "a lost refresh expires"
        );
        assert!(m.clear());
        assert!(!m.clear());
        assert!(m.claim(t0, RefreshMark::RETRY));
        assert!(m.in_flight(t0));
        // A failure holds the next claim back for the retry delay.
        let t1 = t0 + 1_000;
        assert!(m.fail(t1));
        assert!(!m.in_flight(t1));
        assert!(!m.fail(t1), "nothing in flight any more");
        assert!(!m.claim(t1, RefreshMark::RETRY));
        assert!(!m.claim(t1 + RefreshMark::RETRY - 1, RefreshMark::RETRY));
        assert!(m.claim(t1 + RefreshMark::RETRY, RefreshMark::RETRY));
        // serve_stale's FAILURE_RECHECK names a longer delay.
        let mut m = RefreshMark::default();
        assert!(m.claim(t0, 30_000) && m.fail(t1));
        assert!(!m.claim(t1 + 29_999, 30_000));
        assert!(m.claim(t1 + 30_000, 30_000));
        // Claimed at time 0 is in flight too (no sentinel value).
        let mut m = RefreshMark::default();
        assert!(m.claim(0, RefreshMark::RETRY));
        assert!(m.in_flight(0) && !m.claim(1, RefreshMark::RETRY));
    }
}
