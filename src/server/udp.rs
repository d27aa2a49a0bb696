//! The UDP loop of one listening socket, and its batched system calls: recvmmsg
//! drains up to a batch of datagrams per call, the hits of a batch are answered in
//! the same pass, sendmmsg sends them in one call, and misses go to tasks that answer
//! later with one sendmsg. Each datagram carries the address it was sent to, so
//! answers on a wildcard socket leave from it.
//!
//! Waiting for the next datagram is where a moderately loaded shard spends its CPU
//! (at 50k QPS a wake-up finds one or two datagrams), and each I/O engine
//! (`crate::engine`) waits its own way.
//!
//! On **epoll** the loop reads until the socket is empty, then awaits readiness: the
//! shard's runtime waits in one `epoll_wait` for every socket of the shard (all
//! listen addresses, IPv4 and IPv6, TCP), its timers and the eventfd other shards'
//! messages write, so any number of sockets costs one wait per wake-up and none
//! holds back another. No hot waits or coalescing pauses there: the wait is already
//! one system call.
//!
//! On **io_uring**, parking the executor costs glommio several io_uring_enter calls
//! (timeouts armed and cancelled, rings linked) and a membarrier per wake-up, so the
//! loop has two ways to wait:
//!
//! - **cold** (idle or sparse traffic): an io_uring recvmsg with MSG_PEEK parks the
//!   executor until a datagram is queued, so timers, TCP and other tasks run freely;
//! - **hot** (the last park was shorter than [`HOT_GAP`]): one blocking recvmmsg
//!   (MSG_WAITFORONE on a blocking socket) sleeps in the kernel like a plain UDP
//!   server, one system call per wake-up. io_uring completions interrupt it (EINTR
//!   from the ring's task work), so do messages from other shards (`wake.rs`), and
//!   the loop hands the thread back to the executor at least every [`TRIP_EVERY`], at
//!   once after a miss spawned a task, and whenever a wait times out (the traffic went
//!   sparse: back to cold).
//!
//! Only a shard with a single UDP socket waits hot: with several (two listen
//! addresses, IPv4 and IPv6) a blocking wait on one would hold back the others, so
//! such a shard parks on io_uring per wake-up (the epoll engine has no such case).
//!
//! Blocking the shard's thread is bounded by SO_RCVTIMEO ([`HOT_WAIT`], rounded up to
//! whole jiffies by the kernel), and only after datagrams arrived less than
//! [`HOT_GAP`] apart. Glommio timers wait for the next trip through the executor:
//! ≤ [`TRIP_EVERY`] + [`HOT_WAIT`] while traffic flows. A park costs glommio ~9
//! io_uring_enter calls, a membarrier and four io_uring timeouts, so from 500
//! datagrams per second a shard waits hot (`bench/runs/2026-11-22-hot-gap/`).
//!
//! Answers of one batch that go to the same client (address, port and source
//! address) with the same length leave as one UDP GSO send (`UDP_SEGMENT`, on unless
//! `--udp-gso=false`): the kernel builds, routes and queues one super-datagram and
//! splits it into ordinary datagrams at the end (on loopback, at the client's socket),
//! instead of crossing the IP stack once per answer. A client that sends bursts from
//! one socket (a forwarder, a load generator) gets most of its answers this way; a
//! batch of distinct clients sends exactly as before. Only answers up to
//! [`limits::UDP_GSO_SEGMENT_BYTES_MAX`] are grouped, so no segment can exceed a
//! link's MTU, and a kernel or device that refuses GSO switches it off for the
//! socket.
//!
//! Optionally (`--udp-coalesce-usecs`, off by default) a hot loop that answered a
//! small batch sleeps that long before the next receive, so the datagrams of the
//! pause share one wake-up: less CPU per query at moderate rates, for up to that
//! much added latency (interrupt moderation, as NICs do).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::query::{self, Handled};
use super::wake::{self, Wake};
use super::Current;
use crate::engine::{self, Engine};
use crate::limits;
use crate::upstream::Transport;

/// A park on io_uring shorter than this turns the loop hot: datagrams arrive densely
/// enough that a blocking wait pays.
const HOT_GAP: Duration = Duration::from_millis(2);

/// SO_RCVTIMEO of a hot wait (the kernel rounds it up to whole jiffies): twice
/// [`HOT_GAP`]. A wait that long without a datagram turns the loop cold.
const HOT_WAIT: Duration = Duration::from_millis(4);

/// Longest the loop keeps the thread in hot waits before it parks once on io_uring,
/// so the executor polls its rings and fires its timers.
const TRIP_EVERY: Duration = Duration::from_millis(2);

/// A timer this short is still pending when first polled, so awaiting it takes the
/// loop through the executor once (reactor poll, timers, channels) without a park.
const MESSAGE_PASS: Duration = Duration::from_micros(1);

/// A hot batch of fewer datagrams than this is followed by the coalescing pause
/// (`--udp-coalesce-usecs`) before the next receive, so one wake-up answers several.
const COALESCE_BELOW: usize = 4;

/// Longest coalescing pause (it blocks the shard's thread).
pub const COALESCE_MAX: Duration = Duration::from_millis(1);

/// How a shard serves each of its UDP sockets.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Datagrams per recvmmsg/sendmmsg (`--udp-batch`).
    pub batch: usize,
    /// Pause after a small hot batch (`--udp-coalesce-usecs`); zero = off.
    pub coalesce: Duration,
    /// Hot waits allowed (`--udp-hot-wait`).
    pub hot_wait: bool,
    /// Group answers to one client into GSO sends (`--udp-gso`).
    pub gso: bool,
}

/// Serves one UDP socket until the task is cancelled: drain a batch, answer hits in
/// the same batch, hand misses to tasks, send, then wait: on io_uring hot or cold
/// (see above), on epoll for readiness in the shard's one `epoll_wait`.
pub async fn serve(
    current: Current,
    addr: SocketAddr,
    socket: socket2::Socket,
    settings: Settings,
) {
    let engine = engine::current();
    // Hot waits (io_uring only) need a blocking socket with a receive timeout; every
    // other call on it passes MSG_DONTWAIT, and io_uring does not care.
    let hot_capable = matches!(engine, Engine::IoUring)
        && settings.hot_wait
        && set_blocking_wait(&socket, HOT_WAIT)
            .inspect_err(|err| tracing::debug!(%addr, %err, "UDP hot waits disabled"))
            .is_ok();
    let socket = match engine::UdpSocket::from_socket(socket) {
        Ok(socket) => Rc::new(socket),
        Err(err) => {
            tracing::error!(%addr, %err, "cannot serve UDP on this shard");
            return;
        }
    };
    let batch = new_batch(settings);
    match engine {
        Engine::IoUring => serve_parking(current, addr, socket, batch, hot_capable, settings).await,
        Engine::Epoll => serve_ready(current, addr, socket, batch).await,
    }
}

/// The epoll engine's loop: receive until the socket is empty, then wait for
/// readiness. The shard's runtime waits for all of its sockets (every UDP and TCP
/// socket, its timers, and the eventfd other shards' messages write) in one
/// `epoll_wait`, so any number of listen addresses costs one wait per wake-up and
/// nothing blocks the thread on one socket: no hot waits, no coalescing pause.
async fn serve_ready(
    current: Current,
    addr: SocketAddr,
    socket: Rc<engine::UdpSocket>,
    mut batch: Box<Batch>,
) {
    loop {
        let count = match socket.receive_ready(|fd| batch.receive(fd)).await {
            Ok(count) => count,
            Err(err) => {
                tracing::warn!(%err, "UDP receive failed");
                engine::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shard = current.borrow().clone();
        if answer_batch(&shard, addr, &socket, &mut batch, count) {
            // Let the miss tasks send their upstream queries before the next batch.
            engine::yield_now().await;
        }
    }
}

fn new_batch(settings: Settings) -> Box<Batch> {
    let mut batch = Box::<Batch>::default();
    batch.size = settings.batch.clamp(1, limits::UDP_BATCH_MAX);
    batch.gso = settings.gso;
    batch
}

/// The io_uring engine's loop, waiting hot or cold (see the module docs).
async fn serve_parking(
    current: Current,
    addr: SocketAddr,
    socket: Rc<engine::UdpSocket>,
    mut batch: Box<Batch>,
    hot_capable: bool,
    settings: Settings,
) {
    let fd = socket.as_raw_fd();
    let _loop = UdpLoop::enter();
    let mut wait = Wait::new(hot_capable);
    // Messages from other shards interrupt hot waits (none with one shard).
    let peers = current.borrow().peers.clone();
    let wake = peers.as_deref().and_then(|p| p.wake());
    let coalesce = settings.coalesce.min(COALESCE_MAX);
    let mut probe = [0u8; 1];
    loop {
        let received = match wait.hot_now() {
            true => wait.hot_receive(&mut batch, fd, wake),
            false => batch.receive(fd),
        };
        let count = match received {
            Ok(0) => {
                if wait.message_came(wake) {
                    // Another shard's message interrupted the wait or came before it:
                    // one pass through the executor, which reads the channels and
                    // fires due timers. Not a park: it would return at once without
                    // the executor when a datagram is queued already.
                    engine::sleep(MESSAGE_PASS).await;
                    continue;
                }
                // Park until a datagram is queued (io_uring recvmsg with MSG_PEEK);
                // the executor reads every message counted so far meanwhile.
                let parked = Instant::now();
                socket.queued(&mut probe).await;
                wait.woke(parked.elapsed());
                continue;
            }
            Ok(count) => count,
            Err(err) => {
                tracing::warn!(%err, "UDP receive failed");
                engine::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shard = current.borrow().clone();
        if answer_batch(&shard, addr, &socket, &mut batch, count) {
            wait.spawned();
        }
        if !coalesce.is_zero() && count < COALESCE_BELOW && wait.hot_now() {
            // Bounded (COALESCE_MAX) and only while datagrams arrive densely.
            std::thread::sleep(coalesce);
        }
        engine::yield_if_needed().await;
    }
}

/// Answers the `count` datagrams of `batch`: hits and errors in one sendmmsg, misses
/// later from their tasks. True when a miss started a task.
fn answer_batch(
    shard: &Rc<super::shard::Shard>,
    addr: SocketAddr,
    socket: &Rc<engine::UdpSocket>,
    batch: &mut Batch,
    count: usize,
) -> bool {
    let Some(endpoint) = shard.endpoint_index(addr) else {
        return false;
    };
    let now = Instant::now();
    let mut spawned = false;
    for i in 0..count.min(limits::UDP_BATCH_MAX) {
        let peer = batch.peers[i];
        let len = batch.recv_lens[i].min(limits::UDP_PAYLOAD_BYTES_MAX);
        // Built only for a miss: a hit clones nothing.
        let reply = || {
            let (socket, shard) = (socket.clone(), shard.clone());
            move |answer: &[u8]| {
                if !answer.is_empty() && send_one(socket.as_raw_fd(), answer, peer).is_err() {
                    let failures = &shard.counters.send_failures;
                    failures.set(failures.get() + 1);
                }
            }
        };
        let slot = batch.send_count.min(limits::UDP_BATCH_MAX - 1);
        let packet = &batch.recv_bufs[i][..len];
        let out = &mut batch.send_bufs[slot];
        let handled = query::handle(
            shard,
            endpoint,
            peer.client,
            packet,
            Transport::Udp,
            now,
            out,
            reply,
        );
        match handled {
            Handled::Reply(len) => batch.push_send(len, peer),
            Handled::Later => spawned = true,
            Handled::Drop => {}
        }
    }
    let unsent = batch.flush(socket.as_raw_fd());
    if unsent > 0 {
        let failures = &shard.counters.send_failures;
        failures.set(failures.get() + unsent as u64);
    }
    spawned
}

thread_local! {
    /// UDP loops running on this shard's thread.
    static UDP_LOOPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a UDP loop on this shard while it lives. A hot wait blocks the thread on
/// one socket, which would hold back the datagrams of the shard's other sockets (two
/// listen addresses, or IPv4 and IPv6) by up to HOT_WAIT: only a shard's only UDP loop
/// waits hot.
struct UdpLoop;

impl UdpLoop {
    fn enter() -> UdpLoop {
        UDP_LOOPS.with(|n| n.set(n.get() + 1));
        UdpLoop
    }

    fn alone() -> bool {
        UDP_LOOPS.with(|n| n.get() == 1)
    }
}

impl Drop for UdpLoop {
    fn drop(&mut self) {
        UDP_LOOPS.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Which way the loop waits for its next datagram (see the module comment).
struct Wait {
    /// The socket blocks with a receive timeout, so hot waits are possible.
    capable: bool,
    /// The last park was shorter than HOT_GAP: datagrams are arriving densely.
    hot: bool,
    /// When the loop last parked on io_uring.
    tripped: Instant,
    /// A miss started a task since the last park: it must run (and its upstream
    /// query be submitted) before the thread blocks again.
    spawned: bool,
    /// Messages from other shards counted before the last pass through the executor
    /// (see `wake.rs`).
    seen: u64,
    /// This thread's id, which hot waits publish in the shard's wake.
    tid: i32,
}

impl Wait {
    fn new(capable: bool) -> Wait {
        Wait {
            capable,
            hot: false,
            tripped: Instant::now(),
            spawned: false,
            seen: 0,
            tid: wake::thread_id(),
        }
    }

    /// Before the loop passes through the executor (which then reads every message
    /// counted so far): true when a message came since the last pass.
    fn message_came(&mut self, wake: Option<&Wake>) -> bool {
        let sent = wake.map_or(0, Wake::sent);
        std::mem::replace(&mut self.seen, sent) != sent
    }

    /// A hot wait: a blocking receive that a message from another shard interrupts;
    /// Ok(0) at once when one came since the last park (the executor must read it).
    fn hot_receive(
        &self,
        batch: &mut Batch,
        fd: RawFd,
        wake: Option<&Wake>,
    ) -> std::io::Result<usize> {
        let Some(wake) = wake else {
            return batch.receive_waiting(fd);
        };
        if !wake.enter(self.tid, self.seen) {
            return Ok(0);
        }
        let received = batch.receive_waiting(fd);
        wake.leave();
        received
    }

    /// True when the next receive may block the thread (a hot wait).
    fn hot_now(&self) -> bool {
        self.capable
            && self.hot
            && !self.spawned
            && UdpLoop::alone()
            && self.tripped.elapsed() < TRIP_EVERY
    }

    /// A miss started a task in the last batch.
    fn spawned(&mut self) {
        self.spawned = true;
    }

    /// Back from a park on io_uring that took `waited`.
    fn woke(&mut self, waited: Duration) {
        self.tripped = Instant::now();
        self.spawned = false;
        self.hot = waited < HOT_GAP;
    }
}

/// Clears O_NONBLOCK and sets SO_RCVTIMEO, so a recvmmsg without MSG_DONTWAIT sleeps
/// at most `timeout` for the first datagram.
fn set_blocking_wait(socket: &socket2::Socket, timeout: Duration) -> std::io::Result<()> {
    socket.set_read_timeout(Some(timeout))?;
    socket.set_nonblocking(false)
}

/// Where a datagram came from and the local address it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub client: SocketAddr,
    /// Destination address of the query (only known on wildcard sockets).
    pub local: Option<IpAddr>,
}

/// Buffers for one batch in each direction, allocated once per socket. The system
/// call headers (crate `mmsg`) live here too and are reused, so a batch zeroes
/// nothing: receive points each header at its slot again (cheap stores), send fills
/// only the headers of the answers it sends.
pub struct Batch {
    pub recv_bufs: Box<[[u8; limits::UDP_PAYLOAD_BYTES_MAX]]>,
    pub recv_lens: [usize; limits::UDP_BATCH_MAX],
    pub peers: [Peer; limits::UDP_BATCH_MAX],
    pub send_bufs: Box<[[u8; limits::UDP_PAYLOAD_BYTES_MAX]]>,
    pub send_lens: [usize; limits::UDP_BATCH_MAX],
    pub send_peers: [Peer; limits::UDP_BATCH_MAX],
    pub send_count: usize,
    /// Datagrams read per recvmmsg (1..=UDP_BATCH_MAX, `--udp-batch`); the answers of a
    /// batch, at most as many, go out in one sendmmsg.
    pub size: usize,
    /// Send equal-length answers to one client as one GSO send; cleared for good when
    /// the kernel refuses one.
    pub gso: bool,
    recv: mmsg::RecvHeaders,
    send: mmsg::SendHeaders,
}

impl Default for Batch {
    fn default() -> Self {
        let none = Peer {
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            local: None,
        };
        Batch {
            recv_bufs: vec![[0u8; limits::UDP_PAYLOAD_BYTES_MAX]; limits::UDP_BATCH_MAX]
                .into_boxed_slice(),
            recv_lens: [0; limits::UDP_BATCH_MAX],
            peers: [none; limits::UDP_BATCH_MAX],
            send_bufs: vec![[0u8; limits::UDP_PAYLOAD_BYTES_MAX]; limits::UDP_BATCH_MAX]
                .into_boxed_slice(),
            send_lens: [0; limits::UDP_BATCH_MAX],
            send_peers: [none; limits::UDP_BATCH_MAX],
            send_count: 0,
            size: limits::UDP_BATCH_MAX,
            gso: false,
            recv: mmsg::RecvHeaders::new(limits::UDP_BATCH_MAX, true, true),
            send: mmsg::SendHeaders::new(limits::UDP_BATCH_MAX),
        }
    }
}

impl Batch {
    /// Reads up to a batch without blocking; Ok(0) when the socket is empty.
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.receive_with(fd, libc::MSG_DONTWAIT)
    }

    /// Reads up to a batch, sleeping until the first datagram arrives, at most the
    /// socket's receive timeout (a blocking socket); Ok(0) on the timeout or when a
    /// signal (io_uring task work) interrupted the wait.
    pub fn receive_waiting(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.receive_with(fd, libc::MSG_WAITFORONE)
    }

    fn receive_with(&mut self, fd: RawFd, flags: libc::c_int) -> std::io::Result<usize> {
        let slots = self.recv_bufs.iter_mut().map(|b| &mut b[..]);
        let max = self.size.clamp(1, limits::UDP_BATCH_MAX);
        let count = self.recv.receive(fd, slots, max, flags)?;
        let received = self.recv_lens.iter_mut().zip(self.peers.iter_mut());
        for (i, (len, peer)) in received.take(count).enumerate() {
            *len = self.recv.len(i);
            let client = self.recv.source(i).unwrap_or(peer.client);
            let local = self.recv.destination(i);
            *peer = Peer { client, local };
        }
        Ok(count)
    }

    /// Queues `len` bytes already written in send slot `send_count` for `peer`.
    pub fn push_send(&mut self, len: usize, peer: Peer) {
        if self.send_count < limits::UDP_BATCH_MAX {
            self.send_lens[self.send_count] = len;
            self.send_peers[self.send_count] = peer;
            self.send_count += 1;
        }
    }

    /// Sends every queued answer; returns how many the kernel did not take.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let count = std::mem::take(&mut self.send_count).min(limits::UDP_BATCH_MAX);
        let mut done = 0;
        while done < count {
            // A partial send (a full socket buffer) builds the headers of the rest again.
            let gso = self.gso;
            let mut out = self.send.batch();
            let mut i = done;
            while i < count {
                let (len, peer) = (self.send_lens[i], self.send_peers[i]);
                let n = group_len(&self.send_lens, &self.send_peers, gso, i, count);
                for buf in &self.send_bufs[i..i + n] {
                    out.payload(buf.get(..len).unwrap_or(buf));
                }
                let segment = u16::try_from(len).unwrap_or(u16::MAX);
                if !out.close(mmsg::To::Addr(peer.client), peer.local, segment) {
                    break;
                }
                i += n;
            }
            // A refused GSO send fails the call only when it is the first message.
            let grouped = group_len(&self.send_lens, &self.send_peers, gso, done, count) > 1;
            match out.send(fd, libc::MSG_DONTWAIT) {
                Ok(sent) if sent.datagrams == 0 => return count - done,
                Ok(sent) => done += sent.datagrams,
                Err(err) if self.gso && grouped && mmsg::gso_refused(&err) => {
                    tracing::info!(%err, "UDP GSO refused: answers on this socket go one by one");
                    self.gso = false;
                }
                Err(_) => return count - done,
            }
        }
        0
    }
}

/// How many queued answers from `i` on (before `count`) go out as one message: with
/// GSO, the run of answers to the same peer with the same length (at most
/// [`limits::UDP_GSO_SEGMENTS_MAX`], each at most
/// [`limits::UDP_GSO_SEGMENT_BYTES_MAX`]); else one.
fn group_len(lens: &[usize], peers: &[Peer], gso: bool, i: usize, count: usize) -> usize {
    let len = lens[i];
    if !gso || !(1..=limits::UDP_GSO_SEGMENT_BYTES_MAX).contains(&len) {
        return 1;
    }
    let mut n = 1;
    while i + n < count
        && n < limits::UDP_GSO_SEGMENTS_MAX
        && lens[i + n] == len
        && peers[i + n] == peers[i]
    {
        n += 1;
    }
    n
}

/// Sends one answer outside a batch (answers of misses, written later), straight
/// from `buf`.
pub fn send_one(fd: RawFd, buf: &[u8], peer: Peer) -> std::io::Result<()> {
    let buf = buf.get(..limits::UDP_PAYLOAD_BYTES_MAX).unwrap_or(buf);
    mmsg::send_one(fd, buf, peer.client, peer.local, libc::MSG_DONTWAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn client() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        socket
    }

    /// Every datagram `socket` holds, as (length, first byte).
    fn datagrams(socket: &UdpSocket) -> Vec<(usize, u8)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(len) = socket.recv(&mut buf) {
            got.push((len, buf[0]));
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
        }
        got
    }

    #[test]
    fn a_batch_groups_runs_of_equal_answers_to_one_client_into_gso_sends() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (client(), client());
        let peer = |s: &UdpSocket| Peer {
            client: s.local_addr().unwrap(),
            local: None,
        };
        // (client, length, tag): runs broken by another length, another client, and
        // one answer too long to be a segment.
        let queued = [
            (&a, 20, 1),
            (&a, 20, 2),
            (&a, 20, 3),
            (&a, 21, 4),
            (&b, 20, 5),
            (&b, 20, 6),
            (&a, 20, 7),
            (&a, limits::UDP_GSO_SEGMENT_BYTES_MAX + 1, 8),
            (&a, limits::UDP_GSO_SEGMENT_BYTES_MAX + 1, 9),
        ];
        for gso in [true, false] {
            let mut batch = Box::<Batch>::default();
            batch.gso = gso;
            for &(to, len, tag) in &queued {
                batch.send_bufs[batch.send_count][..len].fill(tag);
                batch.push_send(len, peer(to));
            }
            let mut segments = Vec::new();
            let mut i = 0;
            while i < queued.len() {
                let n = group_len(&batch.send_lens, &batch.send_peers, gso, i, queued.len());
                segments.push(n);
                i += n;
            }
            if gso {
                assert_eq!(segments, [3, 1, 2, 1, 1, 1]);
            } else {
                assert_eq!(segments, [1; 9]);
            }
            assert_eq!(batch.flush(server.as_raw_fd()), 0, "gso {gso}: all sent");
            let expect = |to: &UdpSocket| -> Vec<(usize, u8)> {
                let to = to.local_addr().unwrap();
                queued
                    .iter()
                    .filter(|q| q.0.local_addr().unwrap() == to)
                    .map(|&(_, len, tag)| (len, tag))
                    .collect()
            };
            assert_eq!(
                datagrams(&a),
                expect(&a),
                "gso {gso}: one datagram per answer"
            );
            assert_eq!(
                datagrams(&b),
                expect(&b),
                "gso {gso}: one datagram per answer"
            );
        }
    }
}
