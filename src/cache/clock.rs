//! The shard's time: milliseconds since the shard's epoch, kept per entry as a 48-bit
//! [`Stamp`] (6 bytes, no wrap for 8,900 years) instead of a 16-byte `Instant`.
//!
//! Milliseconds keep every rule exact where CoreDNS's are: a TTL goes down by whole
//! seconds of age, an entry expires when its age reaches its TTL, the prefetch run
//! and the refresh timeouts compare gaps; only gaps finer than 1 ms are rounded.

use std::time::{Duration, Instant};

/// Milliseconds since a shard's epoch.
pub(super) type Millis = u64;

/// The most a [`Stamp`] holds: 2^48 − 1 ms.
pub(super) const STAMP_MILLIS_MAX: Millis = (1 << 48) - 1;

/// How far before its creation a shard's epoch lies, so that the `now` of a query
/// read just before the shard was made (a reload) still falls after it.
const EPOCH_LEAD: Duration = Duration::from_secs(24 * 3600);

/// Turns `Instant`s into [`Millis`] since the epoch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(super) fn new(now: Instant) -> Clock {
        let epoch = [EPOCH_LEAD, Duration::from_secs(1)]
            .into_iter()
            .find_map(|lead| now.checked_sub(lead))
            .unwrap_or(now);
        Clock { epoch }
    }

    /// Milliseconds from the epoch to `now` (0 before it), at most [`STAMP_MILLIS_MAX`].
    #[inline]
    pub(super) fn millis(&self, now: Instant) -> Millis {
        millis(now.saturating_duration_since(self.epoch))
    }
}

/// Whole milliseconds of `d`, at most [`STAMP_MILLIS_MAX`].
pub(super) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).map_or(STAMP_MILLIS_MAX, |ms| ms.min(STAMP_MILLIS_MAX))
}

/// A point in [`Millis`], 48 bits in three u16 so that it packs into 6 bytes
/// (alignment 2) next to other small fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Stamp([u16; 3]);

impl Stamp {
    /// `ms`, clamped to [`STAMP_MILLIS_MAX`].
    #[inline]
    pub(super) fn new(ms: Millis) -> Stamp {
        let ms = ms.min(STAMP_MILLIS_MAX);
        Stamp([ms as u16, (ms >> 16) as u16, (ms >> 32) as u16])
    }

    #[inline]
    pub(super) fn millis(self) -> Millis {
        let [lo, mid, hi] = self.0;
        u64::from(lo) | u64::from(mid) << 16 | u64::from(hi) << 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_clamp() {
        for ms in [
            0,
            1,
            65_535,
            65_536,
            1 << 32,
            (1 << 32) + 7,
            STAMP_MILLIS_MAX,
        ] {
            assert_eq!(Stamp::new(ms).millis(), ms);
        }
        assert_eq!(Stamp::new(u64::MAX).millis(), STAMP_MILLIS_MAX);
        assert_eq!(size_of::<Stamp>(), 6);
        assert_eq!(millis(Duration::MAX), STAMP_MILLIS_MAX);
        assert_eq!(millis(Duration::from_micros(1_999)), 1);
    }

    #[test]
    fn clock_counts_from_before_its_creation() {
        let before = Instant::now();
        let clock = Clock::new(Instant::now());
        let t = clock.millis(before);
        assert!(t > 0, "a moment before creation is after the epoch");
        assert_eq!(
            clock.millis(before + Duration::from_millis(10_900)) - t,
            10_900,
            "whole milliseconds apart stay exactly apart"
        );
        // Long before the epoch: 0, never a panic.
        if let Some(early) = before.checked_sub(EPOCH_LEAD * 2) {
            assert_eq!(clock.millis(early), 0);
        }
    }
}
