//! How early a worker wakes before a due send: long enough that the wake-up's own
//! latency does not make the send late, short enough that the core is not spun away.
//!
//! A timed sleep ends late by the cost of the wake-up: the timer interrupt, the
//! switch back, on a virtual machine an exit to the host. That cost varies by
//! machine from a few to tens of microseconds, so a fixed spin is either too short
//! on one (every send late by the difference) or wasteful on another. The
//! [`Spinner`] learns it: it keeps a slowly decaying high-water mark of how late the
//! worker's timed sleeps ended, and spins that long (within the limits) before each
//! due send.
//!
//! Spinning must still leave the core idle part of the time: a real-time thread that
//! never sleeps is stopped by the kernel for tens of milliseconds once its budget
//! is spent (and any other thread on the core starves). So the spinner reads the
//! worker's CPU time once per short window and keeps a debt of the busy time over
//! the allowed share; while it owes, the worker spins only the minimum (it sleeps
//! in the gaps between sends, and sends after a wake-up may leave late). At rates
//! where the gap between sends is shorter than a wake-up that trades some late
//! sends for the idle time the kernel insists on; at lower rates it never owes.

use crate::limits::{SPIN_BUSY_PERMILLE_MAX, SPIN_NS_MIN, SPIN_WINDOW_NS, WAKE_SPIN_NS_MAX};

/// The learned wake-up lateness and the busy-share guard of one worker.
#[derive(Debug, Clone)]
pub struct Spinner {
    /// Decaying high-water mark of how late timed sleeps ended (ns).
    wake_late_ns: u64,
    /// Start of the current window, on the run's clock.
    window_start_ns: u64,
    /// The thread's CPU time at the window's start.
    window_cpu_ns: Option<u64>,
    /// CPU time used beyond the allowed share, carried over windows (at most one
    /// window's worth, so a busy start is not paid for long after).
    debt_ns: u64,
}

impl Spinner {
    /// A spinner whose first window starts at `now_ns`; it starts cautious (the
    /// longest spin) and learns from the first sleeps.
    pub fn new(now_ns: u64) -> Self {
        Self {
            wake_late_ns: WAKE_SPIN_NS_MAX,
            window_start_ns: now_ns,
            window_cpu_ns: None,
            debt_ns: 0,
        }
    }

    /// How long before a due send to stop sleeping and spin.
    pub fn spin_ns(&self) -> u64 {
        if self.debt_ns > 0 {
            return SPIN_NS_MIN;
        }
        // A margin over the mark: the spin loop looks at the clock only every
        // few microseconds.
        (self.wake_late_ns + SPIN_NS_MIN).clamp(SPIN_NS_MIN, WAKE_SPIN_NS_MAX)
    }

    /// Records a sleep meant to end at `target_ns` that ended at `woke_ns` (an
    /// early end, e.g. a socket became ready, teaches nothing about the timer).
    pub fn woke(&mut self, target_ns: u64, woke_ns: u64) {
        if woke_ns >= target_ns {
            // A stall longer than the largest spin says nothing about the timer.
            let late = (woke_ns - target_ns).min(WAKE_SPIN_NS_MAX);
            // Decays by 1/256 per sleep: the mark sits near the 99.5th percentile.
            self.wake_late_ns = late.max(self.wake_late_ns - (self.wake_late_ns >> 8));
        }
    }

    /// Closes the window when it is over, with the thread's CPU time read by
    /// `cpu_ns` (only then): its busy time beyond the allowed share is owed, its
    /// idle time beyond it pays off what is owed.
    pub fn tick(&mut self, now_ns: u64, cpu_ns: impl FnOnce() -> Option<u64>) {
        let span = now_ns.saturating_sub(self.window_start_ns);
        if span < SPIN_WINDOW_NS {
            return;
        }
        let cpu = cpu_ns();
        if let (Some(start), Some(end)) = (self.window_cpu_ns, cpu) {
            let busy = end.saturating_sub(start);
            let allowed = span * SPIN_BUSY_PERMILLE_MAX / 1000;
            self.debt_ns = (self.debt_ns + busy)
                .saturating_sub(allowed)
                .min(SPIN_WINDOW_NS);
        }
        self.window_start_ns = now_ns;
        self.window_cpu_ns = cpu;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_wake_up_lateness() {
        let mut s = Spinner::new(0);
        assert_eq!(s.spin_ns(), WAKE_SPIN_NS_MAX);
        // Sleeps that end 3 µs late: the mark decays towards 3 µs.
        for _ in 0..5000 {
            s.woke(50_000, 53_000);
        }
        assert_eq!(s.spin_ns(), 3_000 + SPIN_NS_MIN);
        // One late wake-up raises it at once; an early end (readiness) does not.
        s.woke(50_000, 70_000);
        s.woke(50_000, 10_000);
        assert_eq!(s.spin_ns(), 20_000 + SPIN_NS_MIN);
        // A stall is capped at the largest spin.
        s.woke(50_000, 50_000_000);
        assert_eq!(s.spin_ns(), WAKE_SPIN_NS_MAX);
    }

    #[test]
    fn busy_windows_owe_idle_time() {
        let w = SPIN_WINDOW_NS;
        let mut s = Spinner::new(0);
        s.tick(w, || Some(0));
        // A window busy all through owes the allowed idle share: minimum spin.
        s.tick(2 * w, || Some(w));
        assert_eq!(s.spin_ns(), SPIN_NS_MIN);
        // A half-idle window pays it back.
        s.tick(3 * w, || Some(w + w / 2));
        assert!(s.spin_ns() > SPIN_NS_MIN);
        // Within a window nothing is read or changed.
        s.tick(3 * w + 1, || panic!("read within the window"));
        // Without a CPU clock nothing is owed.
        s.tick(4 * w, || None);
        s.tick(5 * w, || Some(u64::MAX));
        assert!(s.spin_ns() > SPIN_NS_MIN);
    }
}
