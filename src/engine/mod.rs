//! The I/O engine door: everything the server and the upstreams need from a
//! runtime (shard threads, tasks, timers, sockets, the channels between shards)
//! behind one set of types, so nothing above this module names a runtime.
//!
//! Two engines sit behind it, one file each:
//!
//! - **io_uring** (`uring.rs`): glommio, one executor per shard; the default wherever
//!   the kernel lets a process use io_uring, and the faster where one address takes a
//!   steady flood of hits (on a node's shape, two addresses and pod traffic at 2k–40k
//!   QPS, the epoll engine measured less CPU per answer: `bench/runs/2026-12-04-node-stamped/`);
//! - **epoll** (`epoll.rs`): one tokio current-thread runtime and `LocalSet` per shard
//!   thread: its driver is one epoll instance per shard (every socket, the timers and
//!   an eventfd that other threads write to wake it), so a shard waits in a single
//!   `epoll_wait` for all of its sockets at once. For hosts where io_uring is
//!   blocked: container runtimes' default seccomp profiles, `kernel.io_uring_disabled`.
//!
//! Why tokio for epoll: a well-kept runtime whose current-thread flavour is exactly
//! a per-shard epoll + eventfd reactor with its own timer wheel (shared nothing
//! between shards, unlike a process-wide reactor), and whose sockets expose
//! readiness (`async_io`), so the UDP loop keeps its own recvmmsg/sendmmsg calls.
//! Its differences from glommio are absorbed here: a dropped [`Task`] is cancelled on
//! both engines (tokio's `JoinHandle` would detach), TCP streams speak the same
//! `futures-io` traits (tokio's through `tokio-util`'s compat), and the mesh's
//! channels wake the receiving shard through its runtime's eventfd.
//!
//! [`choose`] picks the engine once per process, before any executor starts: `auto`
//! probes io_uring (`probe.rs`) and falls back to epoll with one log line saying why;
//! an explicit `io_uring` that cannot run is an error naming the cause. Each shard
//! thread records its engine, and the free functions ([`spawn_local`], [`sleep`], ...)
//! act on the calling thread's.

mod epoll;
pub mod probe;
mod uring;

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

pub use probe::Unavailable;

/// Which engine runs the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    IoUring,
    Epoll,
}

impl Engine {
    /// The name used by `--io-engine` and the `engine` label of `coredns_build_info`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::IoUring => "io_uring",
            Engine::Epoll => "epoll",
        }
    }
}

/// `--io-engine`: what the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// io_uring when it can run here, else epoll.
    #[default]
    Auto,
    IoUring,
    Epoll,
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(text: &str) -> Result<Choice, String> {
        match text {
            "auto" => Ok(Choice::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(Choice::IoUring),
            "epoll" => Ok(Choice::Epoll),
            other => Err(format!(
                "unknown I/O engine {other:?}: expected auto, io_uring or epoll"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("--io-engine=io_uring cannot run here: io_uring is {0}")]
    IoUring(Unavailable),
    #[error("cannot start shard {shard} on the {engine} engine: {source}")]
    Start {
        shard: usize,
        engine: &'static str,
        source: io::Error,
    },
}

/// Resolves `choice` (probing io_uring at most once per process); `auto` without
/// io_uring logs why and takes epoll.
pub fn choose(choice: Choice) -> Result<Engine, EngineError> {
    static PROBED: OnceLock<Result<(), Unavailable>> = OnceLock::new();
    let probed = || PROBED.get_or_init(probe::io_uring).clone();
    match choice {
        Choice::Epoll => Ok(Engine::Epoll),
        Choice::IoUring => probed()
            .map(|()| Engine::IoUring)
            .map_err(EngineError::IoUring),
        Choice::Auto => match probed() {
            Ok(()) => Ok(Engine::IoUring),
            Err(why) => {
                tracing::warn!(engine = "epoll", reason = %why, "io_uring unavailable: using the epoll engine");
                Ok(Engine::Epoll)
            }
        },
    }
}

thread_local! {
    /// The engine of the shard running on this thread (io_uring on threads that did
    /// not say: glommio executors started directly, as some unit tests do).
    static CURRENT: Cell<Engine> = const { Cell::new(Engine::IoUring) };
}

/// The engine of the calling shard thread.
pub fn current() -> Engine {
    CURRENT.with(Cell::get)
}

fn enter(engine: Engine) {
    CURRENT.with(|c| c.set(engine));
}

/// Where and how a shard thread runs.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub index: usize,
    /// Pin the thread to this core; None = let the scheduler place it.
    pub core: Option<usize>,
    /// io_uring memory of the shard (io_uring only).
    pub io_memory_bytes: usize,
}

/// Starts a shard thread running `body` on `engine`; its handle ends with it.
pub fn spawn_shard<F, Fut>(
    engine: Engine,
    spec: ShardSpec,
    body: F,
) -> Result<std::thread::JoinHandle<()>, EngineError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let started = match engine {
        Engine::IoUring => uring::spawn_shard(&spec, move || {
            enter(Engine::IoUring);
            body()
        }),
        Engine::Epoll => epoll::spawn_shard(&spec, move || {
            enter(Engine::Epoll);
            body()
        }),
    };
    started.map_err(|source| EngineError::Start {
        shard: spec.index,
        engine: engine.name(),
        source,
    })
}

/// A task of this shard. Dropping it cancels it, on both engines (as glommio does);
/// [`Task::detach`] lets it run on its own.
#[must_use = "a dropped task is cancelled; detach it to let it run"]
pub struct Task<T>(TaskInner<T>);

enum TaskInner<T> {
    Uring(glommio::Task<T>),
    Epoll(Aborting<T>),
}

/// A tokio task handle that aborts its task when dropped (None once detached).
struct Aborting<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Starts `future` as a task of the calling shard.
pub fn spawn_local<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    Task(match current() {
        Engine::IoUring => TaskInner::Uring(glommio::spawn_local(future)),
        Engine::Epoll => TaskInner::Epoll(Aborting(Some(tokio::task::spawn_local(future)))),
    })
}

impl<T> Task<T> {
    /// Lets the task run to its end without anyone waiting for it.
    pub fn detach(self) {
        match self.0 {
            TaskInner::Uring(task) => drop(task.detach()),
            TaskInner::Epoll(mut handle) => drop(handle.0.take()),
        }
    }

    /// Cancels the task and waits until it is gone; its output if it had finished.
    pub async fn cancel(self) -> Option<T> {
        match self.0 {
            TaskInner::Uring(task) => task.cancel().await,
            TaskInner::Epoll(mut handle) => {
                let handle = handle.0.take()?;
                handle.abort();
                handle.await.ok()
            }
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            TaskInner::Uring(task) => Pin::new(task).poll(cx),
            TaskInner::Epoll(Aborting(Some(handle))) => match Pin::new(handle).poll(cx) {
                Poll::Ready(Ok(output)) => Poll::Ready(output),
                Poll::Ready(Err(err)) if err.is_panic() => {
                    std::panic::resume_unwind(err.into_panic())
                }
                // Cancelled: only its owner cancels it, by value, so nobody polls it.
                Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
            },
            TaskInner::Epoll(Aborting(None)) => Poll::Pending,
        }
    }
}

/// A one-shot timer of the calling shard's engine. Polling it again while pending
/// is allowed on both (glommio registers it anew, see `upstream/tcp.rs`).
pub struct Timer(TimerInner);

enum TimerInner {
    Uring(glommio::timer::Timer),
    Epoll(Pin<Box<tokio::time::Sleep>>),
}

impl Timer {
    pub fn new(wait: Duration) -> Timer {
        Timer(match current() {
            Engine::IoUring => TimerInner::Uring(glommio::timer::Timer::new(wait)),
            Engine::Epoll => TimerInner::Epoll(Box::pin(tokio::time::sleep(wait))),
        })
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            TimerInner::Uring(timer) => Pin::new(timer).poll(cx).map(|_| ()),
            TimerInner::Epoll(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

/// Sleeps `wait` on the calling shard's timers.
pub fn sleep(wait: Duration) -> Timer {
    Timer::new(wait)
}

/// Lets other tasks of the shard run when this one has run long enough (glommio's
/// task-queue preemption; tokio's cooperative budget).
pub async fn yield_if_needed() {
    match current() {
        Engine::IoUring => glommio::yield_if_needed().await,
        Engine::Epoll => tokio::task::coop::consume_budget().await,
    }
}

/// Lets every other ready task of the shard run once before this one goes on.
pub async fn yield_now() {
    futures_lite::future::yield_now().await
}

/// Channels between tasks of one shard: a queue behind a `RefCell` with wakers,
/// tied to no executor (glommio's `local_channel`, which runs on either engine).
pub mod local_channel {
    pub use glommio::channels::local_channel::{
        new_bounded, new_unbounded, LocalReceiver, LocalSender,
    };
}

/// A UDP socket of the calling shard: the listening sockets (whose datagrams the
/// server reads itself, with recvmmsg) and the upstream queries' sockets.
pub struct UdpSocket(UdpInner);

enum UdpInner {
    Uring(glommio::net::UdpSocket),
    Epoll(tokio::net::UdpSocket),
    /// A listening socket on epoll, registered for readability only. Its answers
    /// are sent with non-blocking sendmmsg that never waits for room, so it has no
    /// use for writability; registered for it (as tokio's `UdpSocket` always is),
    /// every datagram sent wakes the socket's epoll entry as the kernel frees it,
    /// and the shard's next `epoll_wait` returns at once with nothing to do (about
    /// one wasted wait per answer batch on the node's shape).
    EpollListen(tokio::io::unix::AsyncFd<std::net::UdpSocket>),
}

impl UdpSocket {
    /// Takes `socket` (bound, and blocking or not as the server set it up).
    pub fn from_socket(socket: socket2::Socket) -> io::Result<UdpSocket> {
        Ok(UdpSocket(match current() {
            Engine::IoUring => UdpInner::Uring(uring::udp_from(socket)),
            Engine::Epoll => {
                socket.set_nonblocking(true)?;
                let socket: std::net::UdpSocket = socket.into();
                let interest = tokio::io::Interest::READABLE;
                // SAFETY: the AsyncFd owns the socket, so its fd stays open and the
                // same until the AsyncFd drops it.
                let registered =
                    unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, interest) };
                UdpInner::EpollListen(registered?)
            }
        }))
    }

    /// A socket on an ephemeral port of `local`'s family and address.
    pub fn bind(local: SocketAddr) -> io::Result<UdpSocket> {
        Ok(UdpSocket(match current() {
            Engine::IoUring => UdpInner::Uring(glommio::net::UdpSocket::bind(local)?),
            Engine::Epoll => {
                let socket = std::net::UdpSocket::bind(local)?;
                socket.set_nonblocking(true)?;
                UdpInner::Epoll(tokio::net::UdpSocket::from_std(socket)?)
            }
        }))
    }

    pub async fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        match &self.0 {
            UdpInner::Uring(s) => Ok(s.connect(peer).await?),
            UdpInner::Epoll(s) => s.connect(peer).await,
            UdpInner::EpollListen(_) => Err(listening_only()),
        }
    }

    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            UdpInner::Uring(s) => Ok(s.send(buf).await?),
            UdpInner::Epoll(s) => s.send(buf).await,
            UdpInner::EpollListen(_) => Err(listening_only()),
        }
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            UdpInner::Uring(s) => Ok(s.recv(buf).await?),
            UdpInner::Epoll(s) => s.recv(buf).await,
            UdpInner::EpollListen(_) => Err(listening_only()),
        }
    }

    /// Waits until a datagram is queued, without reading it (io_uring: a recvmsg with
    /// MSG_PEEK that parks the executor; epoll: readiness).
    pub async fn queued(&self, probe: &mut [u8]) {
        match &self.0 {
            UdpInner::Uring(s) => drop(s.peek_from(probe).await),
            UdpInner::Epoll(s) => drop(s.readable().await),
            UdpInner::EpollListen(s) => drop(s.readable().await),
        }
    }

    /// Runs `receive` (a non-blocking read of the socket's fd of up to `batch`
    /// datagrams, Ok(0) when empty) once the socket is readable, again each time it
    /// finds the socket empty; its first non-empty result. On epoll this waits in the
    /// shard's one `epoll_wait`, with every other socket of the shard, and a read of
    /// fewer than `batch` datagrams (the queue is empty) clears the socket's readiness
    /// with it: the next call waits instead of first reading nothing (at 2k QPS on the
    /// node's shape that read was 0.4 system calls per answer). A datagram that comes
    /// meanwhile is a new epoll event, so none waits unread. io_uring parks on a peek
    /// first.
    pub async fn receive_ready(
        &self,
        batch: usize,
        mut receive: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let fd = self.as_raw_fd();
        match &self.0 {
            UdpInner::Uring(_) => loop {
                match receive(fd)? {
                    0 => self.queued(&mut [0u8; 1]).await,
                    count => return Ok(count),
                }
            },
            UdpInner::Epoll(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an upstream socket is not read in batches",
            )),
            UdpInner::EpollListen(s) => loop {
                let mut ready = s.readable().await?;
                let mut count = 0;
                // WouldBlock (the queue is empty, or was left empty) clears readiness.
                let read = |_: &_| match receive(fd)? {
                    n if n < batch => {
                        count = n;
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    n => {
                        count = n;
                        Ok(())
                    }
                };
                match ready.try_io(read) {
                    Ok(Ok(())) => return Ok(count),
                    Ok(Err(err)) => return Err(err),
                    Err(_) if count > 0 => return Ok(count),
                    Err(_) => {}
                }
            },
        }
    }
}

/// A listening socket on epoll is read in batches and answered with sendmmsg on its
/// fd (`src/server/udp.rs`); the one-datagram calls are the upstream sockets'.
fn listening_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a listening socket is read in batches and answered on its fd",
    )
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        match &self.0 {
            UdpInner::Uring(s) => s.as_raw_fd(),
            UdpInner::Epoll(s) => s.as_raw_fd(),
            UdpInner::EpollListen(s) => s.as_raw_fd(),
        }
    }
}

/// A listening TCP socket of the calling shard.
pub struct TcpListener(ListenerInner);

enum ListenerInner {
    Uring(glommio::net::TcpListener),
    Epoll(tokio::net::TcpListener),
}

impl TcpListener {
    /// Takes the listening `socket`.
    pub fn from_socket(socket: socket2::Socket) -> io::Result<TcpListener> {
        Ok(TcpListener(match current() {
            Engine::IoUring => ListenerInner::Uring(uring::listener_from(socket)),
            Engine::Epoll => {
                socket.set_nonblocking(true)?;
                ListenerInner::Epoll(tokio::net::TcpListener::from_std(socket.into())?)
            }
        }))
    }

    pub async fn accept(&self) -> io::Result<TcpStream> {
        Ok(TcpStream(match &self.0 {
            ListenerInner::Uring(l) => StreamInner::Uring(l.accept().await?),
            ListenerInner::Epoll(l) => StreamInner::Epoll(epoll::stream(l.accept().await?.0)),
        }))
    }
}

/// A TCP connection of the calling shard, read and written through the
/// `futures-io` traits.
pub struct TcpStream(StreamInner);

enum StreamInner {
    Uring(glommio::net::TcpStream),
    Epoll(epoll::Stream),
}

impl TcpStream {
    pub async fn connect(peer: SocketAddr) -> io::Result<TcpStream> {
        Ok(TcpStream(match current() {
            Engine::IoUring => StreamInner::Uring(glommio::net::TcpStream::connect(peer).await?),
            Engine::Epoll => {
                StreamInner::Epoll(epoll::stream(tokio::net::TcpStream::connect(peer).await?))
            }
        }))
    }

    /// Connects to `peer` from `local` (an address with port 0: `source_address`).
    /// On io_uring the connect is started here and completes under the first send or
    /// receive (io_uring waits for the socket like for any other not-ready socket),
    /// because glommio connects only sockets it creates itself.
    pub async fn connect_from(peer: SocketAddr, local: SocketAddr) -> io::Result<TcpStream> {
        Ok(TcpStream(match current() {
            Engine::IoUring => StreamInner::Uring(uring::connect_from(peer, local)?),
            Engine::Epoll => {
                let socket = match peer {
                    SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                socket.bind(local)?;
                StreamInner::Epoll(epoll::stream(socket.connect(peer).await?))
            }
        }))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.0 {
            StreamInner::Uring(s) => Ok(s.peer_addr()?),
            StreamInner::Epoll(s) => s.get_ref().peer_addr(),
        }
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match &self.0 {
            StreamInner::Uring(s) => Ok(s.set_nodelay(on)?),
            StreamInner::Epoll(s) => s.get_ref().set_nodelay(on),
        }
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        match &self.0 {
            StreamInner::Uring(s) => s.as_raw_fd(),
            StreamInner::Epoll(s) => s.get_ref().as_raw_fd(),
        }
    }
}

impl futures_lite::AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            StreamInner::Uring(s) => Pin::new(s).poll_read(cx, buf),
            StreamInner::Epoll(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl futures_lite::AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            StreamInner::Uring(s) => Pin::new(s).poll_write(cx, buf),
            StreamInner::Epoll(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamInner::Uring(s) => Pin::new(s).poll_flush(cx),
            StreamInner::Epoll(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            StreamInner::Uring(s) => Pin::new(s).poll_close(cx),
            StreamInner::Epoll(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// Bounded channels between every pair of shards (a full mesh), on the shards'
/// engine: glommio's channel mesh, or tokio channels whose sends wake the receiving
/// shard's runtime through its eventfd.
pub struct MeshBuilder<T: Send + 'static>(MeshInner<T>);

enum MeshInner<T: Send + 'static> {
    Uring(glommio::channels::channel_mesh::MeshBuilder<T, glommio::channels::channel_mesh::Full>),
    Epoll(std::sync::Arc<epoll::Mesh<T>>),
}

impl<T: Send + 'static> Clone for MeshBuilder<T> {
    fn clone(&self) -> Self {
        MeshBuilder(match &self.0 {
            MeshInner::Uring(m) => MeshInner::Uring(m.clone()),
            MeshInner::Epoll(m) => MeshInner::Epoll(m.clone()),
        })
    }
}

/// A mesh of `peers` shards with `capacity` messages per direction of each pair.
pub fn mesh<T: Send + 'static>(engine: Engine, peers: usize, capacity: usize) -> MeshBuilder<T> {
    MeshBuilder(match engine {
        Engine::IoUring => MeshInner::Uring(glommio::channels::channel_mesh::MeshBuilder::full(
            peers, capacity,
        )),
        Engine::Epoll => MeshInner::Epoll(std::sync::Arc::new(epoll::Mesh::new(peers, capacity))),
    })
}

impl<T: Send + 'static> MeshBuilder<T> {
    /// Joins the mesh (peer ids in joining order, as glommio gives them); this
    /// shard's senders and one receiver per other peer. None when the mesh is full
    /// or closed.
    pub async fn join(self) -> Option<(Senders<T>, Vec<Receiver<T>>)> {
        match self.0 {
            MeshInner::Uring(mesh) => {
                let (senders, mut receivers) = mesh.join().await.ok()?;
                let streams = receivers.streams().into_iter();
                let receivers = streams.map(|(_, r)| Receiver(ReceiverInner::Uring(r)));
                Some((Senders(SendersInner::Uring(senders)), receivers.collect()))
            }
            MeshInner::Epoll(mesh) => {
                let (senders, receivers) = mesh.join()?;
                let receivers = receivers
                    .into_iter()
                    .map(|r| Receiver(ReceiverInner::Epoll(r)));
                Some((Senders(SendersInner::Epoll(senders)), receivers.collect()))
            }
        }
    }
}

/// A shard's sending ends of the mesh.
pub struct Senders<T: Send + 'static>(SendersInner<T>);

enum SendersInner<T: Send + 'static> {
    Uring(glommio::channels::channel_mesh::Senders<T>),
    Epoll(epoll::Senders<T>),
}

impl<T: Send + 'static> Senders<T> {
    /// This shard's id in the mesh.
    pub fn peer_id(&self) -> usize {
        match &self.0 {
            SendersInner::Uring(s) => s.peer_id(),
            SendersInner::Epoll(s) => s.me,
        }
    }

    /// Shards in the mesh.
    pub fn nr_consumers(&self) -> usize {
        match &self.0 {
            SendersInner::Uring(s) => s.nr_consumers(),
            SendersInner::Epoll(s) => s.to.len(),
        }
    }

    /// Queues `message` for peer `to`, waiting while its channel is full; None when
    /// the mesh is closed.
    pub async fn send_to(&self, to: usize, message: T) -> Option<()> {
        match &self.0 {
            SendersInner::Uring(s) => s.send_to(to, message).await.ok(),
            SendersInner::Epoll(s) => s.send_to(to, message).await.ok(),
        }
    }
}

/// The messages from one other shard.
pub struct Receiver<T: Send + 'static>(ReceiverInner<T>);

enum ReceiverInner<T: Send + 'static> {
    Uring(glommio::channels::shared_channel::ConnectedReceiver<T>),
    Epoll(tokio::sync::mpsc::Receiver<T>),
}

impl<T: Send + 'static> Receiver<T> {
    /// The next message; None once the sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        match &mut self.0 {
            ReceiverInner::Uring(r) => r.recv().await,
            ReceiverInner::Epoll(r) => r.recv().await,
        }
    }
}
