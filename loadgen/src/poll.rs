//! Readiness of many sockets at once: one epoll set per worker, waited on with
//! `epoll_pwait2` (nanosecond timeouts, so a wait before a timed send is not rounded
//! to a millisecond), and the list of sockets that are ready.
//!
//! Only ready sockets are read, so a receive pass costs the answers that came, not
//! the number of sockets: a worker with 4,096 sockets and one answer makes one
//! `recvmmsg`, not 4,096. A pass may also take the ready sockets one at a time and
//! stop in between (to send on time); the rest of the list waits for the next pass
//! without another `epoll_pwait2`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::limits::EPOLL_EVENTS_MAX;

/// An epoll set and the events of the last wait not yet handed out.
pub struct Poller {
    /// The epoll instance.
    epoll: OwnedFd,
    /// Event buffer for `epoll_pwait2`.
    events: Vec<libc::epoll_event>,
    /// Valid events in `events` (from the last wait).
    ready: usize,
    /// First of them not yet taken.
    next: usize,
    /// Whether `events[..ready]` came from a wait the caller has not consumed.
    fresh: bool,
}

impl Poller {
    /// A new, empty set.
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes flags only; a non-negative result is a new fd.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` was just created and is owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS_MAX],
            ready: 0,
            next: 0,
            fresh: false,
        })
    }

    /// Watches `fd` for readability (and writability with `out`), reported as `token`.
    pub fn add(&mut self, fd: RawFd, token: usize, out: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, out)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&mut self, fd: RawFd, token: usize, out: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, out)
    }

    /// Stops watching `fd` (a closed fd leaves the set by itself; this is for reuse).
    pub fn remove(&mut self, fd: RawFd) {
        // SAFETY: plain epoll_ctl; a null event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    fn ctl(&mut self, op: libc::c_int, fd: RawFd, token: usize, out: bool) -> io::Result<()> {
        let mut flags = libc::EPOLLIN as u32;
        if out {
            flags |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event {
            events: flags,
            u64: token as u64,
        };
        // SAFETY: `ev` lives across the call; epoll copies it.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ns` (0: just look) and keeps what became ready for
    /// [`Poller::take_ready`].
    pub fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        let ts = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: the event buffer holds `events.len()` entries and outlives the
        // call; `ts` is a valid timespec; no signal mask is passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                &ts as *const libc::timespec,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        self.next = 0;
        if rc < 0 {
            let err = io::Error::last_os_error();
            self.ready = 0;
            return match err.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(err),
            };
        }
        self.ready = rc as usize;
        self.fresh = true;
        Ok(())
    }

    /// The tokens and event bits of the ready sockets: those of the last
    /// [`Poller::wait`] if not yet taken, else of a wait that does not block.
    pub fn take_ready(&mut self) -> io::Result<impl ExactSizeIterator<Item = (usize, u32)> + '_> {
        if !self.fresh {
            self.wait(0)?;
        }
        self.fresh = false;
        let untaken = self.next..self.ready;
        self.next = self.ready;
        Ok(self.events[untaken]
            .iter()
            .map(|e| (e.u64 as usize, e.events)))
    }

    /// The token of the next ready socket not yet taken, if any (see
    /// [`Poller::skip`]); [`Poller::refill`] looks again once none is left.
    pub fn peek(&self) -> Option<usize> {
        (self.next < self.ready).then(|| self.events[self.next].u64 as usize)
    }

    /// Takes the socket [`Poller::peek`] showed.
    pub fn skip(&mut self) {
        self.next = (self.next + 1).min(self.ready);
    }

    /// Looks for ready sockets without blocking when every one of the last look
    /// has been taken; true when the event list came back full (more sockets may
    /// be ready than it holds).
    pub fn refill(&mut self) -> io::Result<bool> {
        if self.next >= self.ready {
            self.wait(0)?;
        }
        Ok(self.ready == self.events.len())
    }
}
