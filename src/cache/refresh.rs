//! When an entry should be refreshed, and the mark that keeps at most one refresh of
//! an entry in flight (prefetch and `serve_stale immediate` alike; CoreDNS started one
//! per hit until it was fixed later).

use std::time::{Duration, Instant};

use crate::config::Prefetch;
use crate::limits::{CACHE_REFRESH_MILLIS_MAX, CACHE_REFRESH_RETRY_MILLIS};

/// How popular an entry is right now (CoreDNS `freq.Freq`): the run of hits, each
/// within the prefetch DURATION of the previous one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Freq {
    hits: u32,
    last: Option<Instant>,
}

impl Freq {
    /// Counts a hit at `now`: the run grows if the previous hit is at most `window`
    /// old, otherwise it restarts at 1 (CoreDNS: `last.Before(now - d)` resets).
    pub(super) fn hit(&mut self, window: Duration, now: Instant) -> u32 {
        let within = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) <= window);
        self.hits = if within {
            self.hits.saturating_add(1)
        } else {
            1
        };
        self.last = Some(now);
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
    now: Instant,
) -> bool {
    let hits = freq.hit(p.duration, now);
    let threshold = (u64::from(ttl_secs) * u64::from(p.percentage)).div_ceil(100);
    hits >= p.amount && u64::from(remaining_secs) <= threshold
}

/// Whether a refresh of an entry is in flight: set when the shard tells the caller to
/// start one, cleared by the caller's `insert` or `refresh_failed`. A mark older than
/// [`CACHE_REFRESH_MILLIS_MAX`] is presumed lost (a caller that dropped its task), so a
/// lost report delays the next refresh instead of stopping refreshes for good. After a
/// failed refresh the next waits [`CACHE_REFRESH_RETRY_MILLIS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RefreshMark {
    since: Option<Instant>,
    failed: Option<Instant>,
}

impl RefreshMark {
    const TIMEOUT: Duration = Duration::from_millis(CACHE_REFRESH_MILLIS_MAX);
    const RETRY: Duration = Duration::from_millis(CACHE_REFRESH_RETRY_MILLIS);

    /// Whether a refresh is in flight at `now`.
    pub(super) fn in_flight(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) < Self::TIMEOUT)
    }

    /// True (and marks) if no refresh is in flight and none failed within the retry
    /// delay: the caller must start one.
    pub(super) fn claim(&mut self, now: Instant) -> bool {
        let backing_off = self
            .failed
            .is_some_and(|failed| now.saturating_duration_since(failed) < Self::RETRY);
        if self.in_flight(now) || backing_off {
            return false;
        }
        self.since = Some(now);
        self.failed = None;
        true
    }

    /// Ends the refresh in flight; returns whether there was one.
    pub(super) fn clear(&mut self) -> bool {
        self.since.take().is_some()
    }

    /// Ends the refresh in flight as failed at `now` (the next waits the retry delay);
    /// returns whether there was one.
    pub(super) fn fail(&mut self, now: Instant) -> bool {
        let was = self.clear();
        if was {
            self.failed = Some(now);
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(amount: u32, secs: u64, percentage: u8) -> Prefetch {
        Prefetch {
            amount,
            duration: Duration::from_secs(secs),
            percentage,
        }
    }

    #[test]
    fn freq_runs_and_resets() {
        let t0 = Instant::now();
        let mut f = Freq::default();
        assert_eq!(f.hit(Duration::from_secs(10), t0), 1);
        assert_eq!(
            f.hit(Duration::from_secs(10), t0 + Duration::from_secs(10)),
            2
        );
        assert_eq!(
            f.hit(Duration::from_secs(10), t0 + Duration::from_secs(20)),
            3
        );
        assert_eq!(
            f.hit(
                Duration::from_millis(10_000),
                t0 + Duration::from_millis(30_001)
            ),
            1,
            "a gap longer than the window restarts the run"
        );
        // A clock that goes backwards counts as no gap.
        assert_eq!(f.hit(Duration::from_secs(1), t0), 2);
    }

    #[test]
    fn threshold_is_integer_ceiling() {
        let t0 = Instant::now();
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
    }

    #[test]
    fn mark_allows_one_in_flight() {
        let t0 = Instant::now();
        let mut m = RefreshMark::default();
        assert!(m.claim(t0));
        assert!(!m.claim(t0));
        assert!(!m.claim(t0 + RefreshMark::TIMEOUT - Duration::from_millis(1)));
        assert!(m.claim(t0 + RefreshMark::TIMEOUT), "a lost refresh expires");
        assert!(m.clear());
        assert!(!m.clear());
        assert!(m.claim(t0));
        assert!(m.in_flight(t0));
        // A failure holds the next claim back for the retry delay.
        let t1 = t0 + Duration::from_secs(1);
        assert!(m.fail(t1));
        assert!(!m.in_flight(t1));
        assert!(!m.fail(t1), "nothing in flight any more");
        assert!(!m.claim(t1));
        assert!(!m.claim(t1 + RefreshMark::RETRY - Duration::from_millis(1)));
        assert!(m.claim(t1 + RefreshMark::RETRY));
    }
}
