//! The UDP loops of a shard, and their batched system calls: recvmmsg drains up to a
//! batch of datagrams per call, the hits of a batch are answered in the same pass,
//! sendmmsg sends them in one call, and misses go to tasks that answer later with one
//! sendmsg. Each datagram carries the address it was sent to, and every answer leaves
//! from the socket its query came to, so answers on a wildcard socket leave from the
//! address asked.
//!
//! Waiting for the next datagram is where a moderately loaded shard spends its CPU
//! (at 50k QPS a wake-up finds one or two datagrams), so a shard waits **once for all
//! of its UDP sockets**, however many it has: a node binds two local addresses
//! (169.254.20.10 and the kube-dns IP) in four server blocks, others listen on IPv4
//! and IPv6 or on several ports. Each I/O engine (`crate::engine`) does it its own
//! way, behind [`Server`].
//!
//! On **epoll** each socket has a loop that reads until the socket is empty, then
//! awaits readiness: the shard's runtime waits in one `epoll_wait` for every socket
//! of the shard (UDP and TCP), its timers and the eventfd other shards' messages
//! write. No hot waits or coalescing pauses there: the wait is already one system
//! call.
//!
//! On **io_uring** one loop serves every UDP socket of the shard. The sockets also
//! sit in an epoll instance of the loop's own, which tells it which sockets hold
//! datagrams (level-triggered: a socket left with datagrams after a batch is ready
//! again at the next wait, and each wait reads one batch from each ready socket, so
//! none starves another). Parking the executor costs glommio several io_uring_enter
//! calls (timeouts armed and cancelled, rings linked) and a membarrier per wake-up,
//! so the loop has two ways to wait:
//!
//! - **cold** (idle or sparse traffic): an io_uring recvmsg with MSG_PEEK on each
//!   socket parks the executor until a datagram is queued on any of them, so timers,
//!   TCP and other tasks run freely. A peek stays armed until its socket gets a
//!   datagram, so a park arms again only the sockets whose peek completed;
//! - **hot** (the last park was shorter than [`HOT_GAP`]): one blocking
//!   `epoll_pwait` on the loop's epoll instance sleeps in the kernel like a plain UDP
//!   server, then a non-blocking recvmmsg reads each ready socket: one wait per
//!   wake-up for any number of sockets. io_uring completions interrupt it (EINTR from
//!   the ring's task work), so do messages from other shards (`wake.rs`), and the loop
//!   hands the thread back to the executor at least every [`TRIP_EVERY`] and whenever
//!   a wait times out (the traffic went sparse: back to cold).
//!
//! No hot wait while a miss of the shard waits for its upstream. Its task moves on
//! io_uring completions (connect, send, receive), each posted while the thread runs
//! or sleeps, and each next step is submitted only at glommio's next turn: a
//! completion posted while the thread runs (in a recvmmsg or sendmmsg rather than
//! asleep) interrupts nothing, and a step queued just before the loop blocks waits
//! unsubmitted. A hot wait then left the answer, and the client, waiting for the next
//! trip — up to [`TRIP_EVERY`] + [`HOT_WAIT`], which put the node shape's p99 in
//! milliseconds at every rate (`bench/runs/2026-12-04-miss-wait/`). Watching the
//! rings' descriptors in the hot wait does not close the second gap, and passes
//! through the executor every 200 µs cost as much CPU as parks for a longer tail
//! (same record). So while misses are pending the loop parks, which runs their
//! tasks to their next completion; it costs CPU at low rates (the record: 2k
//! 38.9 → 47.4 µs per answer) and nothing in the answers. A saturated loop never
//! parks: while misses have waited [`MISS_TURN_EVERY`] it passes through the
//! executor once.
//!
//! Blocking the shard's thread is bounded by the wait's timeout ([`HOT_WAIT`]), and
//! only after datagrams arrived less than [`HOT_GAP`] apart. Glommio timers wait for
//! the next trip through the executor: ≤ [`TRIP_EVERY`] + [`HOT_WAIT`] while traffic
//! flows (timers here are upstream timeouts of seconds, health checks and expiry, so
//! 20 ms late is nothing to them; other shards' messages and io_uring completions
//! interrupt the wait). A park costs glommio ~9 io_uring_enter calls, a membarrier and
//! four io_uring timeouts, so from ~200 datagrams per second a shard waits hot
//! (`bench/runs/2026-11-22-hot-gap/`); a node's pods send bursts (A+AAAA, the search
//! list) a few ms apart at 1k-2k QPS, which a 2 ms gap and trip sent through a park
//! nearly every time (`bench/runs/2026-12-04-hot-timing/`). A peek still armed on a socket interrupts at
//! most one hot wait when its datagram comes, then stays spent until the next park.
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
//! small batch sleeps that long before the next wait, so the datagrams of the pause
//! share one wake-up: less CPU per query at moderate rates, for up to that much added
//! latency (interrupt moderation, as NICs do).

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::query::{self, Handled};
use super::wake::{self, Wake};
use super::Current;
use crate::engine::{self, Engine};
use crate::limits;
use crate::upstream::Transport;

/// A park on io_uring shorter than this turns the loop hot: datagrams arrive densely
/// enough that a blocking wait pays.
const HOT_GAP: Duration = Duration::from_millis(5);

/// Timeout of a hot wait: twice [`HOT_GAP`]. A wait that long without a datagram
/// turns the loop cold.
const HOT_WAIT: Duration = Duration::from_millis(10);

/// Longest the loop keeps the thread in hot waits before it parks once on io_uring,
/// so the executor polls its rings and fires its timers.
const TRIP_EVERY: Duration = Duration::from_millis(10);

/// A timer this short is still pending when first polled, so awaiting it takes the
/// loop through the executor once (reactor poll, timers, channels) without a park.
const MESSAGE_PASS: Duration = Duration::from_micros(1);

/// While misses have been pending this long and datagrams keep coming (a saturated
/// shard neither waits hot nor parks), the loop passes through the executor, so the
/// misses' tasks run and their upstream steps are submitted; without it they waited
/// for glommio's preemption timer (closed loop on the node's shape: p99 26 ms on
/// io_uring against 5 ms on epoll). 1 ms: p99 6.5 ms at the same maximum QPS; 200 µs
/// gave 5.3 ms for 12 % less (`bench/runs/2026-12-04-closed/`).
const MISS_TURN_EVERY: Duration = Duration::from_millis(1);

/// A hot pass that read fewer datagrams than this is followed by the coalescing pause
/// (`--udp-coalesce-usecs`) before the next wait, so one wake-up answers several.
const COALESCE_BELOW: usize = 4;

/// Longest coalescing pause (it blocks the shard's thread).
pub const COALESCE_MAX: Duration = Duration::from_millis(1);

/// How a shard serves its UDP sockets.
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

/// The UDP side of one shard: what serves its listening sockets, as they come and go
/// with reloads.
pub struct Server {
    current: Current,
    settings: Settings,
    /// io_uring: the shard's sockets and the one loop that serves them all. None on
    /// epoll, where each socket has its own loop (the runtime already waits for all
    /// at once), and on io_uring without an epoll instance (each socket then parks on
    /// io_uring alone, never hot).
    shared: Option<(Rc<Sockets>, engine::Task<()>)>,
}

impl Server {
    /// On io_uring, starts the shard's UDP loop (with no socket yet).
    pub fn start(current: Current, settings: Settings) -> Server {
        let shared = match engine::current() {
            Engine::Epoll => None,
            Engine::IoUring => match Sockets::new() {
                Ok(sockets) => {
                    let sockets = Rc::new(sockets);
                    let task = serve_all(current.clone(), sockets.clone(), settings);
                    Some((sockets, engine::spawn_local(task)))
                }
                Err(err) => {
                    tracing::warn!(%err, "no epoll instance: each UDP socket of this shard waits alone, never hot");
                    None
                }
            },
        };
        Server {
            current,
            settings,
            shared,
        }
    }

    /// Serves `socket`, bound to `addr`, until [`Serving::stop`]; None (logged) when
    /// the engine cannot take it.
    pub fn serve(&self, addr: SocketAddr, socket: socket2::Socket) -> Option<Serving> {
        let socket = engine::UdpSocket::from_socket(socket)
            .inspect_err(|err| tracing::error!(%addr, %err, "cannot serve UDP on this shard"))
            .ok()?;
        Some(Serving(match &self.shared {
            Some((sockets, _)) => {
                let fd = sockets
                    .add(addr, socket, self.settings.gso)
                    .inspect_err(
                        |err| tracing::error!(%addr, %err, "cannot serve UDP on this shard"),
                    )
                    .ok()?;
                ServingInner::Shared(sockets.clone(), fd)
            }
            None => {
                let batch = new_batch(self.settings);
                let task = serve_ready(self.current.clone(), addr, Rc::new(socket), batch);
                ServingInner::Own(engine::spawn_local(task))
            }
        }))
    }
}

/// One socket being served (see [`Server::serve`]).
pub struct Serving(ServingInner);

enum ServingInner {
    /// In the shard's one loop, by its fd.
    Shared(Rc<Sockets>, RawFd),
    /// By a loop of its own.
    Own(engine::Task<()>),
}

impl Serving {
    /// Stops serving the socket; it closes once the answers of its misses in flight
    /// are sent.
    pub async fn stop(self) {
        match self.0 {
            ServingInner::Shared(sockets, fd) => sockets.remove(fd),
            ServingInner::Own(task) => drop(task.cancel().await),
        }
    }
}

/// One socket's loop: receive until the socket is empty, then wait for readiness. On
/// epoll the shard's runtime waits for all of its sockets (every UDP and TCP socket,
/// its timers, and the eventfd other shards' messages write) in one `epoll_wait`, so
/// any number of listen addresses costs one wait per wake-up and nothing blocks the
/// thread on one socket: no hot waits, no coalescing pause. (On io_uring only without
/// an epoll instance: each socket parks on a peek.)
async fn serve_ready(
    current: Current,
    addr: SocketAddr,
    socket: Rc<engine::UdpSocket>,
    mut batch: Box<Batch>,
) {
    loop {
        let max = batch.max();
        let count = match socket.receive_ready(max, |fd| batch.receive(fd)).await {
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

/// The io_uring shard's one UDP loop, for every socket in `sockets`, waiting hot or
/// cold (see the module docs).
async fn serve_all(current: Current, sockets: Rc<Sockets>, settings: Settings) {
    let mut batch = new_batch(settings);
    let mut wait = Wait::new(settings.hot_wait);
    // Messages from other shards interrupt hot waits (none with one shard).
    let peers = current.borrow().peers.clone();
    let wake = peers.as_deref().and_then(|p| p.wake());
    let coalesce = settings.coalesce.min(COALESCE_MAX);
    let mut ready = [NO_EVENT; limits::UDP_READY_SOCKETS_MAX];
    loop {
        let misses = current.borrow().counters.pending_misses.get();
        let found = match wait.hot_now(misses) {
            true => wait.hot(&sockets, &mut ready, wake),
            false => sockets.ready(&mut ready, Duration::ZERO, None),
        };
        let count = match found {
            Ok(0) => {
                if wait.message_came(wake) {
                    // Another shard's message interrupted the wait or came before it:
                    // one pass through the executor, which reads the channels and
                    // fires due timers. Not a park: it would return at once without
                    // the executor when a datagram is queued already.
                    wait.pass().await;
                    continue;
                }
                // Park until a datagram is queued on any socket (io_uring peeks); the
                // executor reads every message counted so far meanwhile.
                let parked = Instant::now();
                sockets.queued().await;
                wait.woke(parked.elapsed());
                continue;
            }
            Ok(count) => count,
            Err(err) => {
                tracing::warn!(%err, "UDP wait failed");
                engine::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (mut received, mut failed) = (0, None);
        for event in &ready[..count.min(limits::UDP_READY_SOCKETS_MAX)] {
            let fd = { event.u64 } as RawFd;
            match sockets.serve(fd, &current, &mut batch) {
                Ok(served) => received += served,
                Err(err) => failed = Some(err),
            }
        }
        if let Some(err) = failed {
            tracing::warn!(%err, "UDP receive failed");
            engine::sleep(Duration::from_millis(10)).await;
        }
        let (waited, misses) = (misses, current.borrow().counters.pending_misses.get());
        if misses > 0 {
            if waited == 0 {
                // The clock of MISS_TURN_EVERY starts when misses begin to wait.
                wait.turned = Instant::now();
            } else if wait.turned.elapsed() >= MISS_TURN_EVERY {
                wait.pass().await;
                continue;
            }
        }
        if !coalesce.is_zero() && received < COALESCE_BELOW && wait.hot_now(misses) {
            // Bounded (COALESCE_MAX) and only while datagrams arrive densely.
            std::thread::sleep(coalesce);
        }
        engine::yield_if_needed().await;
    }
}

/// An empty slot for `epoll_pwait` to fill.
const NO_EVENT: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };

/// The UDP sockets of an io_uring shard, served by its one loop ([`serve_all`]).
struct Sockets {
    /// Every socket (readable, keyed by fd), level-triggered: which to read, and the
    /// hot wait.
    epoll: OwnedFd,
    members: RefCell<Vec<Member>>,
    /// The loop while it parks cold: woken by the peeks, and when a socket joins so
    /// the park covers it.
    parked: Parked,
}

/// The waker of the loop while it parks cold (shared with the peeks' wakers, which
/// must be Sync: never contended, one thread).
type Parked = Arc<Mutex<Option<Waker>>>;

/// Wakes the loop parked in `parked`, if it is.
fn wake_parked(parked: &Parked) {
    let waker = parked.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// One socket of [`Sockets`].
struct Member {
    addr: SocketAddr,
    socket: Rc<engine::UdpSocket>,
    /// GSO sends on this socket (a refusal turns them off for good).
    gso: bool,
    /// The io_uring peek that ends a cold park when a datagram is queued; armed at a
    /// park, kept across hot waits and parks until it completes.
    peek: Option<Peek>,
}

/// An armed io_uring peek, polled only when its own waker fired: a glommio source
/// keeps a clone of the waker of every poll until it completes, so polling the peek
/// of a quiet socket at every park would pile up clones (and overflow the task's
/// reference count).
struct Peek {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Arc<PeekWaker>,
}

impl Peek {
    fn arm(socket: Rc<engine::UdpSocket>, parked: Parked) -> Peek {
        Peek {
            future: Box::pin(async move { socket.queued(&mut [0u8; 1]).await }),
            // Fired: the first poll submits it.
            waker: Arc::new(PeekWaker {
                fired: AtomicBool::new(true),
                parked,
            }),
        }
    }

    /// Polls the peek if its waker fired since the last poll; true once it completed.
    fn completed(&mut self) -> bool {
        if !self.waker.fired.swap(false, Ordering::Relaxed) {
            return false;
        }
        let waker = Waker::from(self.waker.clone());
        self.future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
    }
}

/// A peek's waker: marks it for polling and wakes the parked loop.
struct PeekWaker {
    fired: AtomicBool,
    parked: Parked,
}

impl std::task::Wake for PeekWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Relaxed);
        wake_parked(&self.parked);
    }
}

impl Sockets {
    fn new() -> std::io::Result<Sockets> {
        // SAFETY: epoll_create1 takes a flag and returns a new fd or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Sockets {
            // SAFETY: a new fd that nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            members: RefCell::new(Vec::new()),
            parked: Parked::default(),
        })
    }

    /// Adds `socket` (bound to `addr`) to the loop; its fd.
    fn add(
        &self,
        addr: SocketAddr,
        socket: engine::UdpSocket,
        gso: bool,
    ) -> std::io::Result<RawFd> {
        let fd = socket.as_raw_fd();
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: both fds are open; the kernel copies `event`.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.members.borrow_mut().push(Member {
            addr,
            socket: Rc::new(socket),
            gso,
            peek: None,
        });
        wake_parked(&self.parked);
        Ok(fd)
    }

    /// Takes the socket with `fd` out of the loop (its peek, if armed, is cancelled).
    fn remove(&self, fd: RawFd) {
        // SAFETY: a DEL ignores the event; a fd not (or no longer) in the set fails
        // with ENOENT, which changes nothing.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
        self.members
            .borrow_mut()
            .retain(|m| m.socket.as_raw_fd() != fd);
    }

    /// Waits up to `timeout` (zero: only looks) for sockets with datagrams, filling
    /// `ready` with their fds; `mask` is the signal mask during the wait (None: the
    /// thread's). Ok(0) on the timeout and when a signal or io_uring task work
    /// interrupted the wait.
    fn ready(
        &self,
        ready: &mut [libc::epoll_event],
        timeout: Duration,
        mask: Option<&libc::sigset_t>,
    ) -> std::io::Result<usize> {
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let slots = i32::try_from(ready.len()).unwrap_or(i32::MAX);
        let mask = mask.map_or(std::ptr::null(), |m| m as *const libc::sigset_t);
        // SAFETY: `ready` has room for `slots` events; `mask` is null or a valid set.
        let rc = unsafe {
            libc::epoll_pwait(
                self.epoll.as_raw_fd(),
                ready.as_mut_ptr(),
                slots,
                millis,
                mask,
            )
        };
        match rc {
            count if count >= 0 => Ok(count as usize),
            _ => match std::io::Error::last_os_error() {
                err if err.raw_os_error() == Some(libc::EINTR) => Ok(0),
                err => Err(err),
            },
        }
    }

    /// Reads one batch from the socket with `fd` and answers it: how many datagrams
    /// it read.
    fn serve(&self, fd: RawFd, current: &Current, batch: &mut Batch) -> std::io::Result<usize> {
        let member = {
            let members = self.members.borrow();
            let found = members.iter().find(|m| m.socket.as_raw_fd() == fd);
            found.map(|m| (m.addr, m.socket.clone(), m.gso))
        };
        let Some((addr, socket, gso)) = member else {
            return Ok(0);
        };
        batch.gso = gso;
        let received = batch.receive(fd)?;
        if received == 0 {
            return Ok(0);
        }
        let shard = current.borrow().clone();
        // A miss's task runs at the next park: the loop parks while misses are pending.
        answer_batch(&shard, addr, &socket, batch, received);
        if batch.gso != gso {
            let mut members = self.members.borrow_mut();
            if let Some(m) = members.iter_mut().find(|m| m.socket.as_raw_fd() == fd) {
                m.gso = batch.gso;
            }
        }
        Ok(received)
    }

    /// Parks until a datagram is queued on any socket: an io_uring peek on each that
    /// has none armed (a socket added meanwhile gets one too).
    async fn queued(&self) {
        std::future::poll_fn(|cx| {
            *self.parked.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            let mut queued = false;
            for member in self.members.borrow_mut().iter_mut() {
                let peek = member
                    .peek
                    .get_or_insert_with(|| Peek::arm(member.socket.clone(), self.parked.clone()));
                if peek.completed() {
                    member.peek = None;
                    queued = true;
                }
            }
            if !queued {
                return Poll::Pending;
            }
            self.parked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            Poll::Ready(())
        })
        .await
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

/// Which way the io_uring loop waits for its next datagrams (see the module comment).
struct Wait {
    /// Hot waits allowed (`--udp-hot-wait`).
    capable: bool,
    /// The last park was shorter than HOT_GAP: datagrams are arriving densely.
    hot: bool,
    /// When the loop last parked on io_uring.
    tripped: Instant,
    /// When the loop last went through the executor (a park or a pass), or when
    /// misses began to wait since.
    turned: Instant,
    /// Messages from other shards counted before the last pass through the executor
    /// (see `wake.rs`).
    seen: u64,
    /// This thread's id, which hot waits publish in the shard's wake.
    tid: i32,
    /// The signal mask of a hot wait: the thread's, with the wake signal unblocked
    /// (blocked everywhere else, see `wake.rs`).
    mask: libc::sigset_t,
}

impl Wait {
    /// For the loop running on the calling thread.
    fn new(capable: bool) -> Wait {
        Wait {
            capable,
            hot: false,
            tripped: Instant::now(),
            turned: Instant::now(),
            seen: 0,
            tid: wake::thread_id(),
            mask: wake::hot_wait_mask(),
        }
    }

    /// Before the loop passes through the executor (which then reads every message
    /// counted so far): true when a message came since the last pass.
    fn message_came(&mut self, wake: Option<&Wake>) -> bool {
        let sent = wake.map_or(0, Wake::sent);
        std::mem::replace(&mut self.seen, sent) != sent
    }

    /// A hot wait for the ready sockets, which a message from another shard
    /// interrupts; Ok(0) at once when one came since the last pass (the executor must
    /// read it).
    fn hot(
        &self,
        sockets: &Sockets,
        ready: &mut [libc::epoll_event],
        wake: Option<&Wake>,
    ) -> std::io::Result<usize> {
        let Some(wake) = wake else {
            return sockets.ready(ready, HOT_WAIT, Some(&self.mask));
        };
        if !wake.enter(self.tid, self.seen) {
            return Ok(0);
        }
        let found = sockets.ready(ready, HOT_WAIT, Some(&self.mask));
        wake.leave();
        found
    }

    /// True when the next wait may block the thread (a hot wait): none while any of
    /// the shard's `misses` waits for its upstream (see the module comment).
    fn hot_now(&self, misses: usize) -> bool {
        self.capable && self.hot && misses == 0 && self.tripped.elapsed() < TRIP_EVERY
    }

    /// Back from a park on io_uring that took `waited`.
    fn woke(&mut self, waited: Duration) {
        self.tripped = Instant::now();
        self.turned = self.tripped;
        self.hot = waited < HOT_GAP;
    }

    /// One pass through the executor without a park (see [`MESSAGE_PASS`]).
    async fn pass(&mut self) {
        engine::sleep(MESSAGE_PASS).await;
        self.turned = Instant::now();
    }
}

/// Where a datagram came from and the local address it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub client: SocketAddr,
    /// Destination address of the query (only known on wildcard sockets).
    pub local: Option<IpAddr>,
}

/// Buffers for one batch in each direction, allocated once per loop. The system
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
    /// Datagrams one receive reads at most.
    pub fn max(&self) -> usize {
        self.size.clamp(1, limits::UDP_BATCH_MAX)
    }

    /// Reads up to a batch without blocking; Ok(0) when the socket is empty.
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let max = self.max();
        let slots = self.recv_bufs.iter_mut().map(|b| &mut b[..]);
        let count = self.recv.receive(fd, slots, max, libc::MSG_DONTWAIT)?;
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
/// [`limits::UDP_GSO_SEGMENT_BYTES_MAX`]) when it has at least
/// [`limits::UDP_GSO_SEGMENTS_MIN`] (two in a batch of
/// [`limits::UDP_GSO_PAIRS_FROM_BATCH`] or more); else one.
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
    let min = if count >= limits::UDP_GSO_PAIRS_FROM_BATCH {
        2
    } else {
        limits::UDP_GSO_SEGMENTS_MIN
    };
    if n < min {
        return 1;
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

    /// A full batch (a loaded server) groups pairs too; the same pairs in a small
    /// batch go one datagram each.
    #[test]
    fn pairs_go_as_gso_sends_only_in_a_full_batch() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (client(), client());
        for (count, pair) in [(limits::UDP_GSO_PAIRS_FROM_BATCH, 2), (4, 1)] {
            let mut batch = Box::<Batch>::default();
            batch.gso = true;
            for k in 0..count {
                let to = if k / 2 % 2 == 0 { &a } else { &b };
                let peer = Peer {
                    client: to.local_addr().unwrap(),
                    local: None,
                };
                batch.send_bufs[batch.send_count][..30].fill(k as u8);
                batch.push_send(30, peer);
            }
            let groups: Vec<usize> = (0..count)
                .step_by(2)
                .map(|i| group_len(&batch.send_lens, &batch.send_peers, true, i, count))
                .collect();
            assert_eq!(groups, vec![pair; count / 2], "batch of {count}");
            assert_eq!(batch.flush(server.as_raw_fd()), 0, "all sent");
            let (got_a, got_b) = (datagrams(&a), datagrams(&b));
            assert_eq!(got_a.len() + got_b.len(), count, "one datagram per answer");
            assert!(got_a.iter().chain(&got_b).all(|d| d.0 == 30));
        }
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
                // The pair to `b` is shorter than UDP_GSO_SEGMENTS_MIN: one by one.
                assert_eq!(segments, [3, 1, 1, 1, 1, 1, 1]);
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
