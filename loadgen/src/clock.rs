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

/// Takes the calling thread out of real-time scheduling (`SCHED_FIFO`/`SCHED_RR`,
/// e.g. dnsload started under `chrt`) into the normal class; other threads keep
/// theirs. The main thread only merges seconds and prints: as a real-time thread
/// of the workers' priority on a worker's core it would, once woken, hold that core
/// until done whenever the worker napped (sends 0.5–0.9 ms late at each second's
/// end at 10k QPS); in the normal class a worker takes the core back at once.
pub fn leave_realtime() {
    // SAFETY: sched_getscheduler and sched_setscheduler on the calling thread (0),
    // with a pointer to a live sched_param.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        if policy == libc::SCHED_FIFO || policy == libc::SCHED_RR {
            let normal = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &normal);
        }
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
    fn the_main_thread_leaves_realtime_and_only_it() {
        let policies = std::thread::spawn(|| {
            let fifo = libc::sched_param { sched_priority: 1 };
            // SAFETY: this thread's own policy, with a pointer to a live sched_param.
            let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) };
            assert_eq!(
                rc,
                0,
                "SCHED_FIFO needs CAP_SYS_NICE: {}",
                std::io::Error::last_os_error()
            );
            // A thread started now inherits SCHED_FIFO, and keeps it.
            let worker = std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                // SAFETY: reads this thread's policy.
                unsafe { libc::sched_getscheduler(0) }
            });
            leave_realtime();
            // SAFETY: reads this thread's policy.
            let own = unsafe { libc::sched_getscheduler(0) };
            (own, worker.join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(policies, (libc::SCHED_OTHER, libc::SCHED_FIFO));
    }

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
