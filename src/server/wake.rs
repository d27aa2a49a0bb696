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

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Once};

/// One shard's end: the count of messages sent to it and the thread in a hot wait.
/// Written by its shard on every hot wait, so each has its own cache lines (two, as
/// x86 prefetches them in pairs): the shards never share a line on the packet path.
#[derive(Default)]
#[repr(align(128))]
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
        let (tid, pid) = (self.tid.load(SeqCst), PID.load(SeqCst));
        if tid != 0 && pid != 0 {
            // SAFETY: tgkill with integer arguments; a thread that has exited since
            // makes it fail with ESRCH, which changes nothing.
            unsafe {
                libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGURG);
            }
        }
    }

    /// The count to hand to the next [`Wake::enter`]: taken before a pass through the
    /// executor, after which it has read every message counted so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(SeqCst)
    }

    /// About to block in a hot wait: publishes the thread `tid` ([`thread_id`]), so
    /// senders interrupt it. False (nothing published) when a message was sent since
    /// `seen`: the loop must let the executor read it first.
    pub fn enter(&self, tid: i32, seen: u64) -> bool {
        if PID.load(SeqCst) == 0 {
            return self.sent() == seen;
        }
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

/// The calling thread's id, for [`Wake::enter`]: taken once per loop, not per wait.
pub fn thread_id() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// This process's id once the SIGURG handler is in place (senders may signal); 0
/// before.
static PID: AtomicI32 = AtomicI32::new(0);

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
            // SAFETY: getpid has no arguments and cannot fail.
            0 => PID.store(unsafe { libc::getpid() }, SeqCst),
            _ => tracing::warn!(
                err = %std::io::Error::last_os_error(),
                "no SIGURG handler: messages to a shard in a hot UDP wait wait for its next trip"
            ),
        }
    });
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_message_sent_before_the_wait_keeps_the_thread_out_of_it() {
        let wake = &wakes(1)[0];
        let tid = thread_id();
        let seen = wake.sent();
        wake.poke();
        assert!(
            !wake.enter(tid, seen),
            "the executor must read the message first"
        );
        assert!(wake.enter(tid, wake.sent()), "nothing new since");
        wake.leave();
    }

    #[test]
    fn a_poke_interrupts_a_blocking_receive() {
        let wakes = wakes(1);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // A hot wait's socket; its timeout only ends the test if nothing interrupts
        // the receive, which then fails with EAGAIN instead of EINTR.
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let waiter = {
            let wakes = wakes.clone();
            std::thread::spawn(move || {
                assert!(wakes[0].enter(thread_id(), wakes[0].sent()));
                let mut byte = [0u8; 1];
                // SAFETY: reads at most one byte into `byte`.
                let rc = unsafe { libc::recv(socket.as_raw_fd(), byte.as_mut_ptr().cast(), 1, 0) };
                let err = std::io::Error::last_os_error();
                wakes[0].leave();
                (rc, err.raw_os_error())
            })
        };
        // Poke until the waiter is back: the first pokes may come before it blocks.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !waiter.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            wakes[0].poke();
        }
        let (rc, errno) = waiter.join().unwrap();
        assert_eq!(
            (rc, errno),
            (-1, Some(libc::EINTR)),
            "the receive was interrupted, not timed out or served"
        );
    }
}
