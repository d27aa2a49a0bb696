//! UDP channels: connected, non-blocking sockets, each with its own source port
//! (so a SO_REUSEPORT server spreads them over its cores), driven with `sendmmsg`
//! and `recvmmsg` to move a whole batch per system call.
//!
//! Sends also use UDP GSO (`UDP_SEGMENT`) when the kernel has it: queries of equal
//! length in a batch leave as one super-datagram that crosses the IP stack once
//! and is split into ordinary datagrams at the end (on loopback, just before the
//! server's socket). That is where a generator's time goes, so it is the
//! difference between keeping up with a fast server and not.
//!
//! Receives read only the sockets epoll reports ready (a pass costs the answers,
//! not the socket count), and every answer carries the kernel's receive stamp
//! (`SO_TIMESTAMPNS`): its latency ends when it reached the socket, however long
//! the worker took to read it.
//!
//! The unsafe code is confined to building the `mmsghdr` arrays; every buffer they
//! point into is owned by [`UdpChannels`] and outlives the call.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::Clock;
use crate::limits::{BATCH_MSGS_MAX, RECV_SLOT_BYTES, SOCKET_BUFFER_BYTES};
use crate::poll::Poller;
use crate::sender::{first_bits, Channels, SendBatch};

/// Bytes of control data per received datagram: room for one `SCM_TIMESTAMPNS`
/// (CMSG_SPACE(16) = 32) with margin, in u64s to keep `cmsghdr` aligned.
const RECV_CONTROL_WORDS: usize = 8;

/// A worker's UDP sockets and the buffers for batched receives.
pub struct UdpChannels {
    /// Connected sockets, one source port each.
    sockets: Vec<Socket>,
    /// `BATCH_MSGS_MAX` receive slots of `RECV_SLOT_BYTES`.
    recv_bytes: Vec<u8>,
    /// Control buffers for the receive stamps, one per slot.
    recv_control: Vec<[u64; RECV_CONTROL_WORDS]>,
    /// Readiness of the sockets; the token is the channel index.
    poller: Poller,
    /// Use UDP GSO; switched off for good if the kernel refuses it.
    gso: bool,
}

impl UdpChannels {
    /// Opens `count` sockets connected to `server`.
    pub fn open(server: SocketAddr, count: usize, gso: bool) -> Result<Self, (usize, io::Error)> {
        let sockets = (0..count)
            .map(|i| open_socket(server).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut poller = Poller::new().map_err(|e| (0, e))?;
        for (i, s) in sockets.iter().enumerate() {
            poller.add(s.as_raw_fd(), i, false).map_err(|e| (i, e))?;
        }
        Ok(Self {
            sockets,
            recv_bytes: vec![0; BATCH_MSGS_MAX * RECV_SLOT_BYTES],
            recv_control: vec![[0; RECV_CONTROL_WORDS]; BATCH_MSGS_MAX],
            poller,
            gso,
        })
    }
}

fn open_socket(server: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer only means earlier drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    enable_receive_stamps(socket.as_raw_fd())?;
    socket.connect(&server.into())?;
    Ok(socket)
}

impl Channels for UdpChannels {
    fn count(&self) -> usize {
        self.sockets.len()
    }

    fn send(&mut self, channel: usize, batch: &SendBatch) -> io::Result<u64> {
        let Some(socket) = self.sockets.get(channel) else {
            return Ok(0);
        };
        let fd = socket.as_raw_fd();
        if self.gso && batch.len() > 1 {
            match send_gso(fd, batch) {
                Err(e) if gso_unsupported(&e) => self.gso = false,
                other => return other,
            }
        }
        send_mmsg(fd, batch).map(first_bits)
    }

    fn receive(
        &mut self,
        clock: &Clock,
        on_msg: &mut dyn FnMut(usize, &[u8], u64),
    ) -> io::Result<()> {
        let mut stamps = [0u64; BATCH_MSGS_MAX];
        let mut lens = [0usize; BATCH_MSGS_MAX];
        let ready = self.poller.take_ready()?;
        for (channel, _) in ready {
            let Some(socket) = self.sockets.get(channel) else {
                continue;
            };
            loop {
                let slots = RecvSlots {
                    bytes: &mut self.recv_bytes,
                    control: &mut self.recv_control,
                    lens: &mut lens,
                    stamps: &mut stamps,
                };
                let got = recv_mmsg(socket.as_raw_fd(), slots, clock)?;
                for i in 0..got {
                    let begin = i * RECV_SLOT_BYTES;
                    if let Some(msg) = self.recv_bytes.get(begin..begin + lens[i]) {
                        on_msg(channel, msg, stamps[i]);
                    }
                }
                if got < BATCH_MSGS_MAX {
                    break;
                }
            }
        }
        Ok(())
    }

    fn stamps_arrivals(&self) -> bool {
        true
    }

    fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        self.poller.wait(timeout_ns)
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
        iov[i] = libc::iovec {
            iov_base: msg.as_ptr() as *mut _,
            iov_len: msg.len(),
        };
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
        // Includes ECONNREFUSED: an earlier datagram drew an ICMP "port unreachable"
        // and this batch was not sent; the caller counts it as send errors.
        _ => Err(err),
    }
}

/// Segments per GSO send the kernel accepts (`UDP_MAX_SEGMENTS` on older kernels).
const GSO_SEGMENTS_MAX: usize = 64;

/// Payload bytes per GSO send (a UDP datagram's limit, with room for headers).
const GSO_BYTES_MAX: usize = 60_000;

fn gso_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Groups of equal-length messages, as (first position in `order`, count).
fn gso_groups(batch: &SendBatch, order: &[u8], groups: &mut Vec<(usize, usize)>) {
    let len_of = |k: usize| batch.message(usize::from(order[k])).len();
    let mut k = 0;
    while k < order.len() {
        let (start, len) = (k, len_of(k));
        while k < order.len()
            && len_of(k) == len
            && k - start < GSO_SEGMENTS_MAX
            && (k - start + 1) * len <= GSO_BYTES_MAX
        {
            k += 1;
        }
        groups.push((start, k - start));
    }
}

/// Sends `batch` with one `sendmmsg` whose entries are GSO groups of equal-length
/// messages; returns which messages went out.
fn send_gso(fd: RawFd, batch: &SendBatch) -> io::Result<u64> {
    let n = batch.len().min(BATCH_MSGS_MAX);
    let mut order: Vec<u8> = (0..n as u8).collect();
    order.sort_unstable_by_key(|&i| batch.message(usize::from(i)).len());
    let mut groups = Vec::with_capacity(n);
    gso_groups(batch, &order, &mut groups);
    // SAFETY: plain C structs, all-zero is valid.
    let mut iov: [libc::iovec; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    // u64 elements keep each control buffer aligned for cmsghdr.
    let mut control = [[0u64; 4]; BATCH_MSGS_MAX];
    for (k, &pos) in order.iter().enumerate() {
        let msg = batch.message(usize::from(pos));
        iov[k] = libc::iovec {
            iov_base: msg.as_ptr() as *mut _,
            iov_len: msg.len(),
        };
    }
    for (g, &(start, count)) in groups.iter().enumerate() {
        let hdr = &mut hdrs[g].msg_hdr;
        hdr.msg_iov = &mut iov[start];
        hdr.msg_iovlen = count;
        if count > 1 {
            let segment = batch.message(usize::from(order[start])).len() as u16;
            // SAFETY: `control[g]` is 32 bytes, enough for CMSG_SPACE(2) = 24, and
            // lives until sendmmsg returns.
            unsafe { set_segment_size(hdr, &mut control[g], segment) };
        }
    }
    // SAFETY: every header points at iovecs and control buffers on this frame,
    // which point into `batch`; all outlive the call.
    let rc = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            groups.len() as u32,
            libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(err),
        };
    }
    let mut sent = 0u64;
    for &(start, count) in groups.iter().take(rc as usize) {
        for &pos in &order[start..start + count] {
            sent |= 1 << pos;
        }
    }
    Ok(sent)
}

/// Attaches a `UDP_SEGMENT` control message with `segment` bytes per datagram.
///
/// # Safety
/// `hdr` must stay in use only while `control` is alive.
unsafe fn set_segment_size(hdr: &mut libc::msghdr, control: &mut [u64; 4], segment: u16) {
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = libc::CMSG_SPACE(2) as usize;
    let cmsg = libc::CMSG_FIRSTHDR(hdr);
    (*cmsg).cmsg_level = libc::SOL_UDP;
    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
}

/// Asks the kernel to stamp every received datagram with its arrival time.
fn enable_receive_stamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: plain setsockopt with a valid int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The buffers one `recvmmsg` fills: payloads, control data, and what is read
/// out of them (lengths and arrival times).
struct RecvSlots<'a> {
    /// `BATCH_MSGS_MAX` slots of `RECV_SLOT_BYTES`.
    bytes: &'a mut [u8],
    /// One control buffer per slot.
    control: &'a mut [[u64; RECV_CONTROL_WORDS]],
    /// Payload length per slot (clamped to the slot size).
    lens: &'a mut [usize; BATCH_MSGS_MAX],
    /// Arrival time per slot, nanoseconds since the run started.
    stamps: &'a mut [u64; BATCH_MSGS_MAX],
}

/// Receives up to `BATCH_MSGS_MAX` datagrams with one `recvmmsg`; returns how many.
/// Each one's time is the kernel's stamp, or the clock read right after the call
/// when a stamp is missing.
fn recv_mmsg(fd: RawFd, out: RecvSlots<'_>, clock: &Clock) -> io::Result<usize> {
    let slots = (out.bytes.len() / RECV_SLOT_BYTES)
        .min(out.control.len())
        .min(BATCH_MSGS_MAX);
    // SAFETY: plain C structs, all-zero is valid.
    let mut iov: [libc::iovec; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH_MSGS_MAX] = unsafe { std::mem::zeroed() };
    let chunks = out.bytes.chunks_exact_mut(RECV_SLOT_BYTES);
    for (i, (chunk, control)) in chunks.zip(out.control.iter_mut()).take(slots).enumerate() {
        iov[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        h.msg_control = control.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of_val(control);
    }
    // SAFETY: each header points at one iovec on this frame covering a distinct
    // RECV_SLOT_BYTES chunk of `bytes`, and at its own control buffer; both are
    // exclusively borrowed for the call.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            slots as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let now = clock.now_ns();
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(err),
        };
    }
    let got = rc as usize;
    for (i, h) in hdrs[..got].iter().enumerate() {
        out.lens[i] = (h.msg_len as usize).min(RECV_SLOT_BYTES);
        // SAFETY: the kernel filled `msg_control` up to `msg_controllen`, within
        // the buffer this header points at.
        out.stamps[i] = unsafe { receive_stamp(&h.msg_hdr) }
            .map_or(now, |(secs, nanos)| clock.from_wall(secs, nanos, now));
    }
    Ok(got)
}

/// The `SCM_TIMESTAMPNS` of a received message, if it has one.
///
/// # Safety
/// `hdr` must be a header the kernel just filled, with its control buffer alive.
unsafe fn receive_stamp(hdr: &libc::msghdr) -> Option<(i64, i64)> {
    let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
    while !cmsg.is_null() {
        let c = &*cmsg;
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
            return Some((ts.tv_sec, ts.tv_nsec));
        }
        cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
    }
    None
}
