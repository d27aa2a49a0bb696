//! Zero-loss hand-over of the SO_REUSEPORT UDP sockets to a successor process.
//!
//! Closing a reuseport UDP socket loses the datagrams queued in it, and until it is
//! closed the kernel keeps hashing new datagrams to it. So a stopping shard first
//! takes its sockets out of the kernel's selection and only then drains them:
//!
//! 1. `connect()` each UDP socket to the discard port on loopback. The kernel's
//!    reuseport selection skips connected sockets (`reuseport_select_sock_by_hash`),
//!    and a wildcard socket is re-hashed out of its group; a connected socket only
//!    matches datagrams from its peer, which never sends. New queries therefore go to
//!    the successor's sockets in the same group; already queued ones stay readable.
//!    Answers still go out: `sendmsg` with an explicit address works on a connected
//!    UDP socket.
//! 2. Keep the socket loops running until the receive queues are empty and no miss
//!    is in flight (a few quiet polls), bounded by [`limits::HANDOVER_DRAIN_MILLIS_MAX`].
//! 3. Close.
//!
//! Without a successor, step 1 makes new queries fail fast (ICMP port unreachable)
//! instead of vanishing in a queue that is about to be closed.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::Current;
use crate::limits;

/// Polls without queued datagrams or misses in flight before the sockets close.
const QUIET_POLLS: u32 = 3;
const POLL_MILLIS: u64 = 10;

/// Stops new datagrams reaching the UDP sockets `fds`, then waits until what they
/// hold is answered.
pub async fn drain(current: &Current, fds: &[(RawFd, SocketAddr)]) {
    for &(fd, addr) in fds {
        if let Err(err) = leave_group(fd, addr) {
            tracing::warn!(%addr, %err, "cannot take the UDP socket out of the reuseport group");
        }
    }
    let started = Instant::now();
    let bound = Duration::from_millis(limits::HANDOVER_DRAIN_MILLIS_MAX);
    let mut quiet = 0;
    while quiet < QUIET_POLLS && started.elapsed() < bound {
        glommio::timer::sleep(Duration::from_millis(POLL_MILLIS)).await;
        let queued = fds.iter().any(|&(fd, _)| queued_bytes(fd) > 0);
        let inflight = current.borrow().misses_in_flight() > 0;
        quiet = if queued || inflight { 0 } else { quiet + 1 };
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(
        elapsed_ms,
        drained = quiet >= QUIET_POLLS,
        "UDP sockets drained"
    );
}

/// `connect()` to the discard port of the loopback of the socket's family.
fn leave_group(fd: RawFd, addr: SocketAddr) -> std::io::Result<()> {
    let peer: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 9).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 9).into(),
    };
    let peer = SockAddr::from(peer);
    // SAFETY: `fd` is an open socket of this shard; the address outlives the call.
    let rc = unsafe { libc::connect(fd, peer.as_ptr().cast(), peer.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes waiting in the socket's receive queue (SIOCINQ); 0 on error.
fn queued_bytes(fd: RawFd) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut bytes) };
    if rc == 0 {
        usize::try_from(bytes).unwrap_or(0)
    } else {
        0
    }
}
