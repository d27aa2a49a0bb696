//! The one clock of a run: nanoseconds since the run started, on the monotonic
//! clock, plus the conversion of the kernel's receive stamps (`SO_TIMESTAMPNS`,
//! which are wall-clock times) onto it.
//!
//! A receive stamp is the moment the answer reached the socket, not the moment the
//! worker got round to reading it, so a worker busy sending (or walking many
//! sockets) does not add its own delay to the server's latency. The wall-clock
//! origin is re-read once a second so a clock step or slew cannot drift the
//! conversion by more than a second's worth of slew.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Time zero of a run and the wall-clock time that corresponds to it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Monotonic time zero.
    start: Instant,
    /// Wall-clock nanoseconds since the Unix epoch at `start`.
    wall_at_start_ns: i128,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A clock whose zero is `start`.
    pub fn starting_at(start: Instant) -> Self {
        let mut clock = Self {
            start,
            wall_at_start_ns: 0,
        };
        clock.resync();
        clock
    }

    /// Monotonic time zero.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since time zero.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Re-reads the wall clock against the monotonic one.
    pub fn resync(&mut self) {
        let since_start = self.start.elapsed().as_nanos() as i128;
        self.wall_at_start_ns = wall_now_ns() - since_start;
    }

    /// A kernel wall-clock stamp as nanoseconds since time zero, never later than
    /// `now_ns` (the clock read right after the receive call) and never before zero.
    pub fn from_wall(&self, secs: i64, nanos: i64, now_ns: u64) -> u64 {
        let wall = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        let since = wall - self.wall_at_start_ns;
        u64::try_from(since.max(0)).unwrap_or(u64::MAX).min(now_ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn wall_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Asks the kernel to wake this thread at its timers' exact times instead of
/// coalescing them over the default 50 µs slack: a timed wait before a send is
/// then late by the wake-up cost only.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// CPU time this thread has used, in nanoseconds (None if the clock is missing).
pub fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives across the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_stamps_map_onto_the_run() {
        let clock = Clock::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let now = clock.now_ns();
        let wall = wall_now_ns();
        let secs = (wall / 1_000_000_000) as i64;
        let nanos = (wall % 1_000_000_000) as i64;
        let t = clock.from_wall(secs, nanos, now + 1_000_000);
        assert!(t.abs_diff(now) < 1_000_000, "{t} vs {now}");
        // Never after the read that followed the receive, never before zero.
        assert_eq!(clock.from_wall(secs + 10, 0, now), now);
        assert_eq!(clock.from_wall(0, 0, now), 0);
    }
}
