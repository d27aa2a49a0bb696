//! When each query is meant to go out.
//!
//! In open loop the schedule is fixed in advance by the rate (constant or Poisson
//! spacing) and never waits for answers: a query that could not leave on time
//! keeps its intended send time, and its latency is measured from that time. A
//! server that stalls therefore shows up in the tail instead of quietly lowering
//! the send rate (the coordinated-omission trap). Under `-Q` the same schedule
//! only caps the rate, and latency is measured from the actual send, as dnsperf does.

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp1};

use crate::limits::RATE_LIMIT_DEBT_NS_MAX;

/// Gaps between intended send times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// Exactly 1/rate apart.
    Constant,
    /// Exponentially distributed gaps with mean 1/rate (a Poisson arrival process).
    Poisson,
}

/// How a worker decides to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Keep `-q` queries outstanding; latency from the actual send.
    Closed,
    /// Closed loop capped at a rate (`-Q`); latency from the actual send; no catch-up bursts.
    RateLimited,
    /// Fixed schedule; latency from the intended send time.
    Open(Spacing),
}

/// Produces intended send times (nanoseconds since the run started).
pub struct Pacer {
    /// Mode; decides spacing and whether debt is forgiven.
    pacing: Pacing,
    /// Intended time of the first query not yet in `due`.
    next_ns: u64,
    /// Intended times that are due but not sent yet (a socket was full, or the
    /// outstanding limit was reached). Kept so they leave late, not never.
    due: VecDeque<u64>,
    /// Randomness for Poisson gaps.
    rng: SmallRng,
    /// Whether the rate was zero last time (a ramp that has not started).
    paused: bool,
}

impl Pacer {
    /// A pacer starting at time `start_ns`.
    pub fn new(pacing: Pacing, start_ns: u64, seed: u64) -> Self {
        Self {
            pacing,
            next_ns: start_ns,
            due: VecDeque::new(),
            rng: SmallRng::seed_from_u64(seed),
            paused: false,
        }
    }

    /// True when latency must be measured from the intended send time.
    pub fn latency_from_intended(&self) -> bool {
        matches!(self.pacing, Pacing::Open(_))
    }

    /// True when queries have intended send times (open loop and `-Q`), so how late
    /// each actually left can be reported.
    pub fn is_scheduled(&self) -> bool {
        self.pacing != Pacing::Closed
    }

    /// Makes up to `max` intended times that are due at `now_ns` available through
    /// [`Pacer::due_times`]; returns how many are due. Closed loop: `max`, all "now".
    pub fn poll(&mut self, now_ns: u64, rate_qps: f64, max: usize) -> usize {
        if self.pacing == Pacing::Closed {
            self.due.clear();
            self.due.extend(std::iter::repeat_n(now_ns, max));
            return max;
        }
        if rate_qps <= 0.0 {
            self.paused = true;
            return 0;
        }
        if self.paused || self.owes_too_much(now_ns) {
            self.paused = false;
            self.next_ns = self.next_ns.max(now_ns);
        }
        while self.due.len() < max && self.next_ns <= now_ns {
            self.due.push_back(self.next_ns);
            self.next_ns += self.gap_ns(rate_qps);
        }
        self.due.len().min(max)
    }

    /// The intended times made available by the last [`Pacer::poll`].
    pub fn due_times(&mut self) -> &[u64] {
        self.due.make_contiguous()
    }

    /// Marks the first `n` due times as sent.
    pub fn consume(&mut self, n: usize) {
        self.due.drain(..n.min(self.due.len()));
    }

    /// Like [`Pacer::consume`] for a batch where only the messages with their bit
    /// set in `sent` went out.
    pub fn consume_sent(&mut self, len: usize, sent: u64) {
        if self.pacing == Pacing::Closed {
            return self.consume(len);
        }
        crate::queries::remove_sent(&mut self.due, len, sent);
    }

    /// When the next query is due (`None` in closed loop: whenever a slot frees up).
    pub fn next_due_ns(&self) -> Option<u64> {
        match self.pacing {
            Pacing::Closed => None,
            _ => Some(self.due.front().copied().unwrap_or(self.next_ns)),
        }
    }

    /// Under `-Q` only, a backlog older than the debt limit is dropped from the
    /// schedule so the limiter never bursts above its rate.
    fn owes_too_much(&mut self, now_ns: u64) -> bool {
        if self.pacing != Pacing::RateLimited {
            return false;
        }
        let behind = now_ns.saturating_sub(self.next_ns) > RATE_LIMIT_DEBT_NS_MAX;
        if behind {
            self.due.clear();
        }
        behind
    }

    fn gap_ns(&mut self, rate_qps: f64) -> u64 {
        let mean_ns = 1e9 / rate_qps;
        let gap = match self.pacing {
            Pacing::Open(Spacing::Poisson) => {
                let e: f64 = Exp1.sample(&mut self.rng);
                e * mean_ns
            }
            _ => mean_ns,
        };
        (gap.round() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_keeps_intended_times_when_behind() {
        let mut p = Pacer::new(Pacing::Open(Spacing::Constant), 0, 1);
        // 1000 QPS, but we only look after 10 ms: ten queries are due, with their
        // own intended times, not "now".
        assert_eq!(p.poll(9_500_000, 1000.0, 64), 10);
        assert_eq!(p.due_times()[..3], [0, 1_000_000, 2_000_000]);
        p.consume(4);
        assert_eq!(p.poll(9_500_000, 1000.0, 64), 6);
        assert_eq!(p.due_times()[0], 4_000_000);
        assert_eq!(p.next_due_ns(), Some(4_000_000));
    }

    #[test]
    fn poisson_mean_matches_rate() {
        let mut p = Pacer::new(Pacing::Open(Spacing::Poisson), 0, 3);
        let n = p.poll(1_000_000_000, 10_000.0, 1 << 20);
        assert!((9_500..10_500).contains(&n), "{n}");
    }

    #[test]
    fn rate_limit_forgives_old_debt() {
        let mut p = Pacer::new(Pacing::RateLimited, 0, 1);
        assert_eq!(p.poll(5_000_000_000, 100.0, 1000), 1);
        assert!(!p.latency_from_intended());
    }

    #[test]
    fn closed_loop_is_always_due() {
        let mut p = Pacer::new(Pacing::Closed, 0, 1);
        assert_eq!(p.poll(7, 0.0, 5), 5);
        assert_eq!(p.due_times(), &[7; 5]);
        assert_eq!(p.next_due_ns(), None);
    }
}
