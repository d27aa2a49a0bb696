//! Whether a shard's packet loops make progress, for `/health`: the control tick
//! (which runs beside the loops on the shard's executor) sees datagrams waiting in a
//! UDP socket while the shard's query count has not moved. A loop wedged that way
//! (kubernetes/dns #586) leaves the tick running, so the tick's own heartbeat cannot
//! tell; this can. A blocked thread stops the tick itself, which telemetry sees.

use std::time::{Duration, Instant};

/// One shard's progress, observed on each control tick.
#[derive(Debug, Default)]
pub(super) struct Progress {
    last_queries: u64,
    stuck_since: Option<Instant>,
}

impl Progress {
    /// Observes the shard's query count and whether a UDP socket has datagrams
    /// waiting, at `now`; how long the loops have been stuck (zero when not).
    pub fn observe(&mut self, queries: u64, queued: bool, now: Instant) -> Duration {
        let moved = queries != self.last_queries;
        self.last_queries = queries;
        if moved || !queued {
            self.stuck_since = None;
            return Duration::ZERO;
        }
        now.saturating_duration_since(*self.stuck_since.get_or_insert(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_while_datagrams_wait_and_nothing_is_read() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut progress = Progress::default();
        assert_eq!(progress.observe(0, false, at(0)), Duration::ZERO, "idle");
        assert_eq!(
            progress.observe(0, true, at(100)),
            Duration::ZERO,
            "first sight"
        );
        assert_eq!(
            progress.observe(0, true, at(600)),
            Duration::from_millis(500)
        );
        assert_eq!(
            progress.observe(0, true, at(6100)),
            Duration::from_millis(6000)
        );
        assert_eq!(
            progress.observe(5, true, at(6200)),
            Duration::ZERO,
            "reads again"
        );
        assert_eq!(progress.observe(5, true, at(6300)), Duration::ZERO);
        assert_eq!(
            progress.observe(5, true, at(6400)),
            Duration::from_millis(100)
        );
        assert_eq!(
            progress.observe(5, false, at(6500)),
            Duration::ZERO,
            "drained"
        );
        // A reload starts a new count: any change is progress.
        assert_eq!(progress.observe(0, true, at(6600)), Duration::ZERO);
    }
}
