//! Waking a shard out of a hot UDP wait when another shard sends it a message.
//!
//! A shard whose UDP loop waits hot blocks its thread in `recvmmsg` (`udp.rs`), so
//! glommio reads the shard's channels only at the loop's next trip through the
//! executor. A miss routed to its owner shard, and the owner's answer back, would wait
//! for that trip. Instead a sender, after queueing a message, counts it in the
//! receiver's [`Wake`] and, when the receiver's thread is in a hot wait, interrupts
//! it with SIGURG: a no-op handler installed without SA_RESTART makes the blocking
//! `recvmmsg` return EINTR, and the loop passes once through the executor, which
//! reads the channel.
//!
//! Before blocking, the receiver publishes its thread id and then compares the count
//! with the one it took before its last pass through the executor. A message counted
//! before the thread id was published shows in the count (the receiver passes through
//! the executor instead of blocking); one counted after finds the thread id and
//! signals. Both sides are SeqCst, so no message waits for a trip.
//!
//! SIGURG is ignored by default and is not queued, so a signal that arrives after the
//! wait ended, or before the handler is installed, does nothing; every other call of
//! a shard's thread either does not block or retries on EINTR (glommio's
//! `io_uring_enter`, std's sleep and writes).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Once};

/// One shard's end: the count of messages sent to it and the thread in a hot wait.
#[derive(Default)]
pub struct Wake {
    /// Messages sent to the shard (wrapping).
    sent: AtomicU64,
    /// The shard's thread while it blocks in a hot wait; 0 otherwise.
    tid: AtomicI32,
}

impl Wake {
    /// A sender queued a message for this shard: interrupt its hot wait, if any.
    pub fn poke(&self) {
        self.sent.fetch_add(1, SeqCst);
        let tid = self.tid.load(SeqCst);
        if tid != 0 && INSTALLED.load(SeqCst) {
            // SAFETY: tgkill with integer arguments; a thread that has exited since
            // makes it fail with ESRCH, which changes nothing.
            unsafe {
                libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGURG);
            }
        }
    }

    /// The count to hand to the next [`Wake::enter`]: taken before a pass through the
    /// executor, after which it has read every message counted so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(SeqCst)
    }

    /// About to block in a hot wait: publishes the thread, so senders interrupt it.
    /// False (nothing published) when a message was sent since `seen`: the loop must
    /// let the executor read it first.
    pub fn enter(&self, seen: u64) -> bool {
        if !INSTALLED.load(SeqCst) {
            return self.sent() == seen;
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        self.tid.store(tid, SeqCst);
        if self.sent.load(SeqCst) != seen {
            self.tid.store(0, SeqCst);
            return false;
        }
        true
    }

    /// The hot wait ended.
    pub fn leave(&self) {
        self.tid.store(0, SeqCst);
    }
}

/// The ends of every shard of a server, indexed like the owner mesh's peers.
pub fn wakes(shards: usize) -> Arc<[Wake]> {
    install();
    (0..shards).map(|_| Wake::default()).collect()
}

/// The SIGURG handler is in place: senders may signal.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the no-op SIGURG handler once per process; without it (sigaction refused)
/// nobody is signalled and hot waits end at their trips, as they would without this
/// module.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        extern "C" fn interrupt(_: libc::c_int) {}
        // SAFETY: a zeroed sigaction is valid; the handler does nothing, so it is
        // async-signal-safe; no SA_RESTART, so a blocking call returns EINTR.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = interrupt as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut())
        };
        match rc {
            0 => INSTALLED.store(true, SeqCst),
            _ => tracing::warn!(
                err = %std::io::Error::last_os_error(),
                "no SIGURG handler: messages to a shard in a hot UDP wait wait for its next trip"
            ),
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_message_sent_before_the_wait_keeps_the_thread_out_of_it() {
        let wake = &wakes(1)[0];
        let seen = wake.sent();
        wake.poke();
        assert!(
            !wake.enter(seen),
            "the executor must read the message first"
        );
        assert!(wake.enter(wake.sent()), "nothing new since");
        wake.leave();
    }

    #[test]
    fn a_poke_interrupts_a_blocking_receive() {
        let wakes = wakes(1);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // A hot wait's socket, with a receive timeout far longer than the test.
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let waiter = {
            let wakes = wakes.clone();
            std::thread::spawn(move || {
                let mut batch = Box::<super::super::udp::Batch>::default();
                let started = Instant::now();
                assert!(wakes[0].enter(wakes[0].sent()));
                let got = batch.receive_waiting(std::os::fd::AsRawFd::as_raw_fd(&socket));
                wakes[0].leave();
                (got.unwrap(), started.elapsed())
            })
        };
        // Poke until the waiter is back: the first pokes may come before it blocks.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !waiter.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            wakes[0].poke();
        }
        let (got, waited) = waiter.join().unwrap();
        assert_eq!(got, 0, "no datagram: interrupted");
        assert!(
            waited < Duration::from_secs(20),
            "woken by the poke, not the timeout: {waited:?}"
        );
    }
}
