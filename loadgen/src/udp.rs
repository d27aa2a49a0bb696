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
//! The system calls and their headers are the workspace's batched-UDP crate
//! (`mmsg`); this module keeps the sockets and the grouping of a batch.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::Clock;
use crate::limits::{BATCH_MSGS_MAX, RECV_SLOT_BYTES, SOCKET_BUFFER_BYTES};
use crate::poll::Poller;
use crate::sender::{first_bits, Channels, SendBatch};

/// A worker's UDP sockets and the buffers for batched receives.
pub struct UdpChannels {
    /// Connected sockets, one source port each.
    sockets: Vec<Socket>,
    /// `BATCH_MSGS_MAX` receive slots of `RECV_SLOT_BYTES`.
    recv_bytes: Vec<u8>,
    /// recvmmsg headers, with control buffers for the receive stamps.
    recv: mmsg::RecvHeaders,
    /// sendmmsg headers.
    send: mmsg::SendHeaders,
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
            recv: mmsg::RecvHeaders::new(BATCH_MSGS_MAX, false, true),
            send: mmsg::SendHeaders::new(BATCH_MSGS_MAX),
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
    mmsg::enable_receive_stamps(socket.as_raw_fd())?;
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
            match send_gso(&mut self.send, fd, batch) {
                Err(e) if mmsg::gso_refused(&e) => self.gso = false,
                other => return other,
            }
        }
        send_mmsg(&mut self.send, fd, batch).map(first_bits)
    }

    fn receive(
        &mut self,
        clock: &Clock,
        until_ns: u64,
        on_msg: &mut dyn FnMut(usize, &[u8], u64),
    ) -> io::Result<bool> {
        let mut stamps = [0u64; BATCH_MSGS_MAX];
        let mut lens = [0usize; BATCH_MSGS_MAX];
        // A full event list may have left ready sockets out: not everything was read.
        let complete = !self.poller.refill()?;
        while let Some(channel) = self.poller.peek() {
            // Checked before each socket: reading one takes a few µs. The sockets
            // left wait for the next pass, still ready (level-triggered).
            if clock.now_ns() >= until_ns {
                return Ok(false);
            }
            self.poller.skip();
            let Some(socket) = self.sockets.get(channel) else {
                continue;
            };
            loop {
                let slots = RecvSlots {
                    bytes: &mut self.recv_bytes,
                    headers: &mut self.recv,
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
        Ok(complete)
    }

    fn stamps_arrivals(&self) -> bool {
        true
    }

    fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        self.poller.wait(timeout_ns)
    }
}

/// Sends every message of `batch` with one `sendmmsg`; returns how many left.
fn send_mmsg(headers: &mut mmsg::SendHeaders, fd: RawFd, batch: &SendBatch) -> io::Result<usize> {
    let mut out = headers.batch();
    for i in 0..batch.len().min(BATCH_MSGS_MAX) {
        out.payload(batch.message(i));
        out.close(mmsg::To::Connected, None, 0);
    }
    // An error includes ECONNREFUSED: an earlier datagram drew an ICMP "port
    // unreachable" and this batch was not sent; the caller counts it as send errors.
    Ok(out.send(fd, libc::MSG_DONTWAIT)?.messages)
}

/// Segments per GSO send the kernel accepts.
const GSO_SEGMENTS_MAX: usize = mmsg::GSO_SEGMENTS_MAX;

/// Payload bytes per GSO send (a UDP datagram's limit, with room for headers).
const GSO_BYTES_MAX: usize = mmsg::GSO_BYTES_MAX;

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
fn send_gso(headers: &mut mmsg::SendHeaders, fd: RawFd, batch: &SendBatch) -> io::Result<u64> {
    let n = batch.len().min(BATCH_MSGS_MAX);
    let mut order: Vec<u8> = (0..n as u8).collect();
    order.sort_unstable_by_key(|&i| batch.message(usize::from(i)).len());
    let mut groups = Vec::with_capacity(n);
    gso_groups(batch, &order, &mut groups);
    let mut out = headers.batch();
    for &(start, count) in &groups {
        for &pos in &order[start..start + count] {
            out.payload(batch.message(usize::from(pos)));
        }
        let segment = batch.message(usize::from(order[start])).len() as u16;
        out.close(mmsg::To::Connected, None, segment);
    }
    let sent = out.send(fd, libc::MSG_DONTWAIT)?;
    let mut mask = 0u64;
    for &(start, count) in groups.iter().take(sent.messages) {
        for &pos in &order[start..start + count] {
            mask |= 1 << pos;
        }
    }
    Ok(mask)
}

/// The buffers one `recvmmsg` fills: payloads, the headers (with the control
/// data), and what is read out of them (lengths and arrival times).
struct RecvSlots<'a> {
    /// `BATCH_MSGS_MAX` slots of `RECV_SLOT_BYTES`.
    bytes: &'a mut [u8],
    /// The recvmmsg headers, with one control buffer per slot.
    headers: &'a mut mmsg::RecvHeaders,
    /// Payload length per slot (clamped to the slot size).
    lens: &'a mut [usize; BATCH_MSGS_MAX],
    /// Arrival time per slot, nanoseconds since the run started.
    stamps: &'a mut [u64; BATCH_MSGS_MAX],
}

/// Receives up to `BATCH_MSGS_MAX` datagrams with one `recvmmsg`; returns how many.
/// Each one's time is the kernel's stamp, or the clock read right after the call
/// when a stamp is missing.
fn recv_mmsg(fd: RawFd, out: RecvSlots<'_>, clock: &Clock) -> io::Result<usize> {
    let slots = out.bytes.chunks_exact_mut(RECV_SLOT_BYTES);
    let got = out
        .headers
        .receive(fd, slots, BATCH_MSGS_MAX, libc::MSG_DONTWAIT);
    let now = clock.now_ns();
    let got = match got {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => 0,
        other => other?,
    };
    for i in 0..got {
        out.lens[i] = out.headers.len(i).min(RECV_SLOT_BYTES);
        out.stamps[i] = out
            .headers
            .stamp(i)
            .map_or(now, |(secs, nanos)| clock.from_wall(secs, nanos, now));
    }
    Ok(got)
}
