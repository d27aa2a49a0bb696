//! UDP channels: connected, non-blocking sockets, each with its own source port
//! (so a SO_REUSEPORT server spreads them over its cores), driven with `sendmmsg`
//! and `recvmmsg` to move a whole batch per system call.
//!
//! The unsafe code is confined to building the `mmsghdr` arrays; every buffer they
//! point into is owned by [`UdpChannels`] and outlives the call.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use crate::limits::{BATCH_MSGS_MAX, RECV_SLOT_BYTES, SOCKET_BUFFER_BYTES};
use crate::sender::{Channels, SendBatch};

/// A worker's UDP sockets and the buffers for batched receives.
pub struct UdpChannels {
    /// Connected sockets, one source port each.
    sockets: Vec<Socket>,
    /// `BATCH_MSGS_MAX` receive slots of `RECV_SLOT_BYTES`.
    recv_bytes: Vec<u8>,
    /// Descriptors for `ppoll`, one per socket.
    pollfds: Vec<libc::pollfd>,
}

impl UdpChannels {
    /// Opens `count` sockets connected to `server`.
    pub fn open(server: SocketAddr, count: usize) -> Result<Self, (usize, io::Error)> {
        let sockets = (0..count)
            .map(|i| open_socket(server).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let pollfds = sockets
            .iter()
            .map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        Ok(Self { sockets, recv_bytes: vec![0; BATCH_MSGS_MAX * RECV_SLOT_BYTES], pollfds })
    }
}

fn open_socket(server: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(server), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer only means earlier drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.connect(&server.into())?;
    Ok(socket)
}

impl Channels for UdpChannels {
    fn count(&self) -> usize {
        self.sockets.len()
    }

    fn send(&mut self, channel: usize, batch: &SendBatch) -> io::Result<usize> {
        let Some(socket) = self.sockets.get(channel) else { return Ok(0) };
        send_mmsg(socket.as_raw_fd(), batch)
    }

    fn receive(&mut self, start: Instant, on_msg: &mut dyn FnMut(usize, &[u8], u64)) -> io::Result<()> {
        for (channel, socket) in self.sockets.iter().enumerate() {
            let mut lens = [0usize; BATCH_MSGS_MAX];
            loop {
                let got = recv_mmsg(socket.as_raw_fd(), &mut self.recv_bytes, &mut lens)?;
                let now = start.elapsed().as_nanos() as u64;
                for (i, len) in lens.iter().take(got).enumerate() {
                    let begin = i * RECV_SLOT_BYTES;
                    if let Some(msg) = self.recv_bytes.get(begin..begin + len) {
                        on_msg(channel, msg, now);
                    }
                }
                if got < BATCH_MSGS_MAX {
                    break;
                }
            }
        }
        Ok(())
    }

    fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        ppoll(&mut self.pollfds, timeout_ns)
    }
}

/// Sends every message of `batch` with one `sendmmsg`; returns how many left.
fn send_mmsg(fd: RawFd, batch: &SendBatch) -> io::Result<usize> {
    let n = batch.len().min(BATCH_MSGS_MAX);
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iov: [libc::iovec; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let msg = batch.message(i);
        iov[i] = libc::iovec { iov_base: msg.as_ptr() as *mut _, iov_len: msg.len() };
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first n headers point at iovecs on this stack frame, which point
    // into `batch`; both outlive the call. The kernel only reads the iovec data.
    let rc = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock => Ok(0),
        // A previous datagram drew an ICMP error (port closed); the batch was not sent.
        io::ErrorKind::ConnectionRefused => Ok(0),
        _ => Err(err),
    }
}

/// Receives up to `BATCH_MSGS_MAX` datagrams into `bytes` with one `recvmmsg`;
/// stores their lengths (clamped to the slot size) in `lens`, returns how many.
fn recv_mmsg(fd: RawFd, bytes: &mut [u8], lens: &mut [usize; BATCH_MSGS_MAX]) -> io::Result<usize> {
    let slots = (bytes.len() / RECV_SLOT_BYTES).min(BATCH_MSGS_MAX);
    // SAFETY: plain C structs, all-zero is valid.
    let mut iov: [libc::iovec; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    for (i, chunk) in bytes.chunks_exact_mut(RECV_SLOT_BYTES).take(slots).enumerate() {
        iov[i] = libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: chunk.len() };
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each header points at one iovec on this frame covering a distinct
    // RECV_SLOT_BYTES chunk of `bytes`, which is exclusively borrowed for the call.
    let rc = unsafe {
        libc::recvmmsg(fd, hdrs.as_mut_ptr(), slots as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted => {
                Ok(0)
            }
            _ => Err(err),
        };
    }
    for (len, h) in lens.iter_mut().zip(&hdrs[..rc as usize]) {
        *len = (h.msg_len as usize).min(RECV_SLOT_BYTES);
    }
    Ok(rc as usize)
}

/// Waits up to `timeout_ns` for any of `fds` to become ready.
pub fn ppoll(fds: &mut [libc::pollfd], timeout_ns: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `fds` is a valid slice of pollfd for the duration of the call.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}
