//! Waking a shard out of a hot UDP wait when another shard sends it a message.
//!
//! A shard whose UDP loop waits hot blocks its thread in `epoll_pwait` on its UDP
//! sockets (`udp.rs`), so glommio reads the shard's channels only at the loop's next
//! trip through the executor. A miss routed to its owner shard, and the owner's answer
//! back, would wait for that trip. Instead a sender, after queueing a message, counts
//! it in the receiver's [`Wake`] and, when the receiver's thread is in a hot wait,
//! interrupts it with SIGURG: a no-op handler installed without SA_RESTART makes the
//! wait return EINTR, and the loop passes once through the executor, which reads the
//! channel.
//!
//! Before blocking, the receiver publishes its thread id and then compares the count
//! with the one it took before its last pass through the executor. A message counted
//! before the thread id was published shows in the count (the receiver passes through
//! the executor instead of blocking); one counted after finds the thread id and
//! signals. Both sides are SeqCst. The loop's thread keeps SIGURG blocked except
//! inside `epoll_pwait`, which unblocks it atomically with the wait
//! ([`hot_wait_mask`]): a signal that comes after the count was compared but before
//! the thread sleeps stays pending and ends the wait as soon as it starts. So no
//! message waits for a trip, and no other call of the thread ever sees EINTR from
//! SIGURG.
//!
//! SIGURG is ignored by default and is not queued: a signal that comes after the wait
//! ended stays pending (blocked) and ends the next hot wait at once, one spurious pass;
//! one sent before the handler is installed does nothing.

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

/// Blocks SIGURG on the calling thread (a shard's UDP loop) outside its hot waits,
/// and returns the signal mask a hot wait passes to `epoll_pwait`: the thread's, with
/// SIGURG unblocked. A poke that comes between [`Wake::enter`] and the wait then stays
/// pending and interrupts the wait at its start instead of being handled before it.
pub fn hot_wait_mask() -> libc::sigset_t {
    // SAFETY: zeroed sigsets are valid arguments of the sigset functions, which only
    // write them; pthread_sigmask changes the calling thread's mask and reads `urg`.
    unsafe {
        let mut urg: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut urg);
        libc::sigaddset(&mut urg, libc::SIGURG);
        let mut waiting: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &urg, &mut waiting);
        libc::sigdelset(&mut waiting, libc::SIGURG);
        waiting
    }
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

    /// An epoll instance holding a fresh UDP socket that nobody sends to: a hot wait's
    /// set, which only a signal ends before its timeout.
    fn quiet_set() -> (std::net::UdpSocket, std::os::fd::OwnedFd) {
        use std::os::fd::FromRawFd;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // SAFETY: plain system calls on fds this test owns; `event` is copied in.
        unsafe {
            let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            assert!(epoll >= 0);
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: 0,
            };
            let fd = socket.as_raw_fd();
            assert_eq!(
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event),
                0
            );
            (socket, std::os::fd::OwnedFd::from_raw_fd(epoll))
        }
    }

    /// A hot wait of at most `timeout`: epoll_pwait's result and errno.
    fn hot_wait(
        epoll: &std::os::fd::OwnedFd,
        mask: &libc::sigset_t,
        timeout: Duration,
    ) -> (i32, Option<i32>) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
        let millis = timeout.as_millis() as i32;
        // SAFETY: room for one event; `mask` is a valid set.
        let rc =
            unsafe { libc::epoll_pwait(epoll.as_raw_fd(), events.as_mut_ptr(), 1, millis, mask) };
        (rc, std::io::Error::last_os_error().raw_os_error())
    }

    /// A thread that enters a hot wait of at most `timeout` on a quiet set as a
    /// shard's loop does (poked by itself between enter and the wait when
    /// `poke_first`), then looks once more without waiting: the wait's result and
    /// errno, and the look's result.
    fn hot_waiter(
        wakes: Arc<[Wake]>,
        poke_first: bool,
        timeout: Duration,
    ) -> std::thread::JoinHandle<((i32, Option<i32>), i32)> {
        std::thread::spawn(move || {
            let (_socket, epoll) = quiet_set();
            let mask = hot_wait_mask();
            assert!(wakes[0].enter(thread_id(), wakes[0].sent()));
            if poke_first {
                wakes[0].poke();
            }
            let waited = hot_wait(&epoll, &mask, timeout);
            wakes[0].leave();
            (waited, hot_wait(&epoll, &mask, Duration::ZERO).0)
        })
    }

    #[test]
    fn a_poke_interrupts_a_hot_wait() {
        let wakes = wakes(1);
        // The timeout only ends the test if nothing interrupts the wait, which then
        // returns 0 instead of EINTR.
        let waiter = hot_waiter(wakes.clone(), false, Duration::from_secs(30));
        // Poke until the waiter is back: the first pokes may come before it blocks.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !waiter.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            wakes[0].poke();
        }
        let (waited, _) = waiter.join().unwrap();
        assert_eq!(
            waited,
            (-1, Some(libc::EINTR)),
            "the wait was interrupted, not timed out"
        );
    }

    #[test]
    fn a_poke_between_enter_and_the_wait_ends_the_wait_at_its_start() {
        // The poke lands after the count was compared and before the thread sleeps
        // (from the thread itself, so surely in that window). Its signal is blocked,
        // so it waits for the wait instead of being spent on the handler before it.
        let (waited, after) = hot_waiter(wakes(1), true, Duration::from_secs(10))
            .join()
            .unwrap();
        assert_eq!(waited, (-1, Some(libc::EINTR)), "the wait ended at once");
        // Outside the wait the signal stays blocked, and none is left pending.
        assert_eq!(after, 0, "the signal was spent on that wait");
    }
}
