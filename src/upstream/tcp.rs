//! Pipelined TCP to one upstream (RFC 7766): many queries in flight on one
//! connection, answers matched by ID in any order, idle expiry, and a small pool
//! per shard that opens another connection only when the open ones are full; when
//! all are full (or a reconnect must wait) a query waits for room.
//!
//! A connection is *retired* when it reaches `max_age` or is one idle connection too
//! many (`max_idle_conns`): it takes no new query, the queries it carries get their
//! answers, then it closes. A pool retires one aged connection at a time, and each
//! connection's age limit is shortened by a random part of up to a tenth, so
//! connections opened together (a burst, or every shard at start) are replaced one
//! by one, never all at once.
//!
//! A connection on which an attempt got no answer within its `read_timeout`, and
//! nothing else either since that attempt began, is taken for dead (a backend
//! blackholed or gone without a RST, or a connect that never completes) and closed at
//! once: its other queries are retried on another connection at once instead of each
//! waiting out its own timeout, and no new query is queued on it.
//!
//! An upstream may close a pooled connection at any time (its idle timeout, a
//! restart). A query sent on a connection that was open before it, and lost because
//! the upstream then ended the stream (EOF), is sent again on a fresh connection
//! within the same attempt, as CoreDNS's `forward` does on EOF from a cached
//! connection: the upstream never said anything about the query, so it costs no
//! attempt. Once per query ([`limits::UPSTREAM_TCP_EOF_RESENDS`]); a reset, a timeout
//! or a connection opened for the query is an attempt that failed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::tls::TlsTarget;
use super::UpstreamError;
use crate::engine::local_channel::{self, LocalSender};
use crate::engine::{TcpStream, Timer};
use crate::limits;
use crate::limits::TCP_LENGTH_BYTES;
use crate::wire;

/// One query waiting for its answer on a connection.
struct Pending {
    /// The query as sent (2-byte length, then the message): the writer sends it, the
    /// reader checks the answer's question against it.
    frame: Vec<u8>,
    /// Set once the writer took the frame (an ID queued twice is sent once).
    sent: bool,
    /// Where the reader hands the answer.
    reply: oneshot::Sender<Vec<u8>>,
}

impl Pending {
    fn query(&self) -> &[u8] {
        self.frame.get(2..).unwrap_or_default()
    }
}

/// Queries in flight on a connection by ID (random IDs: a fast hash is enough).
type Pendings = hashbrown::HashMap<u16, Pending, foldhash::fast::RandomState>;

/// State shared by a connection's reader and writer tasks and its users.
struct Conn {
    /// Queries sent and not yet answered, by the ID they carry on this connection.
    pending: RefCell<Pendings>,
    /// IDs of queries for the writer task to send; closed when the connection dies.
    frames: LocalSender<u16>,
    /// Set once the connection failed or expired; a closed connection takes no queries.
    closed: Cell<bool>,
    /// Set when the upstream ended the stream (EOF): its unanswered queries may be sent
    /// again on another connection.
    ended: Cell<bool>,
    /// Last time a query was queued, for idle expiry.
    last_used: Cell<Instant>,
    /// Last time an answer arrived (None before the first).
    last_answer: Cell<Option<Instant>>,
    /// Queries written to the socket and not answered (or given up) yet.
    written: Cell<u16>,
    /// Last sign the upstream serves the connection: an answer was read, or a query
    /// was written while none written before was unanswered. See [`Conn::stalled`].
    progress: Cell<Instant>,
    /// The socket, once connected and while the connection carries queries.
    fd: Cell<Option<RawFd>>,
    /// When the connection reaches its age limit (`max_age`, less its jitter).
    retire_at: Option<Instant>,
    /// Set once the connection takes no new queries; it closes when drained.
    retired: Cell<bool>,
    /// Tells the reader a retired connection has nothing in flight any more.
    drained: RefCell<Option<oneshot::Sender<()>>>,
}

impl Conn {
    fn close(&self) {
        self.closed.set(true);
        // Dropping the senders wakes every waiter with an error.
        self.pending.borrow_mut().clear();
        self.written.set(0);
    }

    /// Takes no new queries from now on; closes once the ones in flight are answered.
    fn retire(&self) {
        self.retired.set(true);
        self.check_drained();
    }

    /// Forgets query `id` (answered or given up).
    fn forget(&self, id: u16) -> Option<Pending> {
        let pending = self.pending.borrow_mut().remove(&id);
        if pending.as_ref().is_some_and(|p| p.sent) {
            self.written.set(self.written.get().saturating_sub(1));
        }
        self.check_drained();
        pending
    }

    fn check_drained(&self) {
        if self.retired.get() && self.pending.borrow().is_empty() {
            if let Some(drained) = self.drained.borrow_mut().take() {
                let _ = drained.send(());
            }
        }
    }

    /// True when a query was queued at or after `since` and no answer has come since:
    /// an attempt that began at `since` and timed out used this connection and it
    /// has said nothing since (a quiet connection nobody used is not suspect).
    fn silent_since(&self, since: Instant) -> bool {
        !self.closed.get()
            && self.last_used.get() >= since
            && self.last_answer.get().is_none_or(|at| at < since)
    }

    /// Closes a connection taken for dead: its waiters get an error at once, its
    /// writer and reader stop (the reader through `drained`), so the socket closes.
    fn abandon(&self) {
        self.close();
        self.retire();
        let _ = self.frames.try_send(0);
    }

    /// Queries written and no progress for [`limits::UPSTREAM_TCP_STALL_MILLIS`],
    /// and no answer waiting unread in the socket: the upstream is busy with one of
    /// them, and may answer the rest only after it. Time counts from what the upstream
    /// could see (a write, an answer), and unread answers are asked of the kernel
    /// (`FIONREAD`), so a shard that did not run for a while (a CPU quota's
    /// throttling) takes no connection for stalled that answered meanwhile.
    fn stalled(&self, now: Instant) -> bool {
        let stall = Duration::from_millis(limits::UPSTREAM_TCP_STALL_MILLIS);
        self.written.get() > 0
            && now.saturating_duration_since(self.progress.get()) >= stall
            && !self.fd.get().is_some_and(unread_bytes)
    }

    fn aged(&self, now: Instant) -> bool {
        self.retire_at.is_some_and(|at| now >= at)
    }

    fn idle(&self) -> bool {
        self.pending.borrow().is_empty()
    }
}

/// The per-shard pool of pipelined connections to one upstream.
pub struct TcpPool {
    addr: SocketAddr,
    /// Where sockets bind (`source_address`, port 0), if anywhere.
    local: Option<SocketAddr>,
    /// `tls://` upstreams: the TLS client configuration and the expected name, or
    /// why rustls refused it (then every connection fails: never clear text).
    tls: Option<Result<TlsTarget, String>>,
    /// Idle connections close after this long (`forward { expire }`).
    expire: Duration,
    /// Connections are retired at this age (`max_age`).
    max_age: Option<Duration>,
    /// Idle connections kept at most (`max_idle_conns`).
    max_idle: Option<usize>,
    /// Connections that take new queries.
    conns: RefCell<Vec<Rc<Conn>>>,
    /// Retired connections still draining their queries.
    retiring: RefCell<Vec<Rc<Conn>>>,
    /// Earliest time a new connection may be attempted after a failed connect.
    retry_at: Cell<Option<Instant>>,
    /// Current reconnect backoff, doubled on each failed connect.
    backoff: Cell<Duration>,
    /// Queries waiting for room while every connection carries its maximum: each
    /// query that leaves a connection hands its place to the first still waiting.
    waiting: RefCell<std::collections::VecDeque<oneshot::Sender<()>>>,
    /// Connections opened (for `coredns_proxy_conn_cache_misses_total`).
    pub opened: Cell<u64>,
    /// Queries that reused an open connection (`coredns_proxy_conn_cache_hits_total`).
    pub reused: Cell<u64>,
}

/// What a pool's connections are opened with (the `forward` options).
pub struct PoolOptions {
    pub source: Option<std::net::IpAddr>,
    pub expire: Duration,
    pub max_age: Option<Duration>,
    pub max_idle: Option<usize>,
}

impl TcpPool {
    pub fn new(
        addr: SocketAddr,
        options: &PoolOptions,
        tls: Option<Result<TlsTarget, String>>,
    ) -> Rc<TcpPool> {
        let min_age = Duration::from_millis(limits::UPSTREAM_TCP_MAX_AGE_MILLIS_MIN);
        Rc::new(TcpPool {
            addr,
            local: options
                .source
                .map(|ip| super::udp::local_addr(addr, Some(ip))),
            tls,
            expire: options.expire,
            max_age: options.max_age.map(|age| age.max(min_age)),
            max_idle: options.max_idle,
            conns: RefCell::new(Vec::new()),
            retiring: RefCell::new(Vec::new()),
            retry_at: Cell::new(None),
            backoff: Cell::new(Duration::from_millis(limits::UPSTREAM_BACKOFF_MILLIS_MIN)),
            waiting: RefCell::new(Default::default()),
            opened: Cell::new(0),
            reused: Cell::new(0),
        })
    }

    /// Connections currently open (or opening), retired ones still draining included.
    pub fn open_conns(&self) -> usize {
        let open = |conns: &RefCell<Vec<Rc<Conn>>>| {
            conns.borrow().iter().filter(|c| !c.closed.get()).count()
        };
        open(&self.conns) + open(&self.retiring)
    }

    /// An attempt that began at `since` got no answer within its read timeout:
    /// connections used since then that have answered nothing since are closed
    /// (see the module's note). Returns how many.
    pub fn timed_out(&self, since: Instant) -> usize {
        let mut closed = 0;
        for conns in [&self.conns, &self.retiring] {
            for conn in conns.borrow().iter().filter(|c| c.silent_since(since)) {
                conn.abandon();
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::debug!(upstream = %self.addr, closed, "silent upstream connections closed");
        }
        closed
    }

    /// How long until a connection may be attempted again after a failed connect
    /// (zero when it may now).
    pub fn reconnect_in(&self) -> Duration {
        self.retry_at.get().map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    /// Waits until a query leaves one of the connections (its place is handed to
    /// the first query still waiting).
    async fn room(&self) {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.borrow_mut();
            // Queries that gave up waiting (their deadline) leave a dead entry,
            // dropped here: the queue holds the queries waiting and fewer than
            // UPSTREAM_TCP_WAITING_PRUNE_FROM dead ones.
            if waiting.len() >= limits::UPSTREAM_TCP_WAITING_PRUNE_FROM {
                waiting.retain(|w| !w.is_canceled());
            }
            waiting.push_back(tx);
        }
        let _ = rx.await;
    }

    /// A query left a connection: the first query still waiting for room may go.
    fn make_room(&self) {
        let mut waiting = self.waiting.borrow_mut();
        while let Some(next) = waiting.pop_front() {
            if next.send(()).is_ok() {
                return;
            }
        }
    }

    /// Sends `query` (an unframed DNS message whose ID is overwritten) and waits for
    /// its answer. The caller bounds the wait.
    pub async fn exchange(self: &Rc<Self>, query: &[u8]) -> Result<Vec<u8>, UpstreamError> {
        let mut resends = limits::UPSTREAM_TCP_EOF_RESENDS;
        loop {
            let (conn, reused) = match self.pick() {
                // Every connection carries its maximum: wait for a place (the
                // attempt's deadline bounds the wait) instead of failing at once.
                Err(UpstreamError::Busy(_)) => {
                    self.room().await;
                    continue;
                }
                picked => picked?,
            };
            match self.exchange_on(&conn, query).await {
                // The upstream closed a connection older than the query under it: once
                // more on another (see the module comment).
                Err(UpstreamError::Closed(_)) if reused && conn.ended.get() && resends > 0 => {
                    resends -= 1;
                    tracing::debug!(upstream = %self.addr, "upstream closed a pooled connection under a query: sent again");
                }
                result => return result,
            }
        }
    }

    /// Sends `query` on `conn` and waits for its answer.
    async fn exchange_on(
        self: &Rc<Self>,
        conn: &Rc<Conn>,
        query: &[u8],
    ) -> Result<Vec<u8>, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = conn.pending.borrow_mut();
            let id = free_id(&pending);
            let mut frame = Vec::new();
            wire::tcp::frame_into(query, &mut frame).map_err(|_| UpstreamError::QueryTooLong)?;
            if let Some(message) = frame.get_mut(TCP_LENGTH_BYTES..) {
                wire::set_message_id(message, id);
            }
            pending.insert(
                id,
                Pending {
                    frame,
                    sent: false,
                    reply: tx,
                },
            );
            if conn.frames.try_send(id).is_err() {
                pending.remove(&id);
                return Err(UpstreamError::Closed(self.addr));
            }
            id
        };
        conn.last_used.set(Instant::now());
        // Forget the query however this future ends (answer, error, or the caller's
        // deadline dropping it), so abandoned IDs never pile up.
        let forget = Forget {
            pool: self,
            conn,
            id,
        };
        let answer = rx.await.map_err(|_| UpstreamError::Closed(self.addr));
        drop(forget);
        self.trim_idle();
        answer
    }

    /// Retires idle connections beyond `max_idle_conns` (they close at once).
    fn trim_idle(&self) {
        let Some(max_idle) = self.max_idle else {
            return;
        };
        let mut conns = self.conns.borrow_mut();
        let idle = conns.iter().filter(|c| c.idle()).count();
        let mut extra = idle.saturating_sub(max_idle);
        conns.retain(|c| {
            if extra == 0 || !c.idle() {
                return true;
            }
            extra -= 1;
            c.retire();
            false
        });
    }

    /// Retires the oldest connection past its age, unless another retired one is
    /// still draining: connections are replaced one at a time.
    fn retire_aged(&self, conns: &mut Vec<Rc<Conn>>) {
        let mut retiring = self.retiring.borrow_mut();
        retiring.retain(|c| !c.closed.get());
        if self.max_age.is_none() || !retiring.is_empty() {
            return;
        }
        let now = Instant::now();
        let oldest = conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.aged(now))
            .min_by_key(|(_, c)| c.retire_at)
            .map(|(i, _)| i);
        if let Some(index) = oldest {
            let conn = conns.swap_remove(index);
            conn.retire();
            if !conn.closed.get() {
                retiring.push(conn);
            }
        }
    }

    /// The open connection with the fewest queries in flight that is not stalled
    /// (true: it was open already), else a new one when the pool has room, else the
    /// least loaded stalled one; never a full one: `Busy` when every connection is
    /// full, `Backoff` while a reconnect must wait.
    fn pick(self: &Rc<Self>) -> Result<(Rc<Conn>, bool), UpstreamError> {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.closed.get());
        self.retire_aged(&mut conns);
        let now = Instant::now();
        let least = |stalled_too: bool| {
            conns
                .iter()
                .filter(|c| stalled_too || !c.stalled(now))
                .filter(|c| c.pending.borrow().len() < limits::UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX)
                .min_by_key(|c| c.pending.borrow().len())
                .cloned()
        };
        if let Some(conn) = least(false) {
            self.reused.set(self.reused.get() + 1);
            return Ok((conn, true));
        }
        let room = conns.len() < limits::UPSTREAM_TCP_CONNS_MAX;
        let backoff = self.retry_at.get().is_some_and(|at| now < at);
        if room && !backoff {
            let conn = self.open();
            conns.push(conn.clone());
            return Ok((conn, false));
        }
        if let Some(conn) = least(true) {
            self.reused.set(self.reused.get() + 1);
            return Ok((conn, true));
        }
        // Never beyond a connection's bound: one still connecting queues that many
        // and would refuse the query at once (a failed attempt each time, SERVFAIL
        // within microseconds). It waits for room, or for the backoff.
        if room {
            Err(UpstreamError::Backoff(self.addr))
        } else {
            Err(UpstreamError::Busy(self.addr))
        }
    }

    /// Creates a connection at once (queries queue on it) and lets its writer task
    /// connect, so a burst of misses opens one connection, not one each.
    fn open(self: &Rc<Self>) -> Rc<Conn> {
        let (frames, queue) =
            local_channel::new_bounded(limits::UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX);
        let (drained, drained_rx) = oneshot::channel();
        let now = Instant::now();
        let conn = Rc::new(Conn {
            pending: RefCell::new(Pendings::default()),
            frames,
            closed: Cell::new(false),
            ended: Cell::new(false),
            last_used: Cell::new(now),
            last_answer: Cell::new(None),
            written: Cell::new(0),
            progress: Cell::new(now),
            fd: Cell::new(None),
            // Up to a tenth earlier, so connections opened together age apart.
            retire_at: self
                .max_age
                .map(|age| now + age - age.mul_f64(rand::random::<f64>() / 10.0)),
            retired: Cell::new(false),
            drained: RefCell::new(Some(drained)),
        });
        self.opened.set(self.opened.get() + 1);
        let pool = self.clone();
        let task_conn = conn.clone();
        crate::engine::spawn_local(async move {
            let connecting = match pool.local {
                Some(local) => TcpStream::connect_from(pool.addr, local).await,
                None => TcpStream::connect(pool.addr).await,
            };
            let stream = match connecting {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(upstream = %pool.addr, %err, "upstream connect failed");
                    // One given up for dead already says nothing of the upstream now.
                    if !task_conn.closed.get() {
                        pool.connect_failed();
                    }
                    task_conn.close();
                    return;
                }
            };
            // No Nagle: a query written while an earlier one is unacknowledged would
            // otherwise wait for that ACK (up to the upstream's delayed-ACK timer,
            // ~40 ms) before leaving. CoreDNS sets it too.
            let _ = stream.set_nodelay(true);
            let fd = stream.as_raw_fd();
            quickack(fd);
            let tls = match &pool.tls {
                None => {
                    pool.connect_succeeded();
                    return carry(stream, fd, task_conn, queue, pool.expire, drained_rx).await;
                }
                Some(Ok(tls)) => tls,
                Some(Err(_)) => {
                    pool.connect_failed();
                    return task_conn.close();
                }
            };
            let connector = futures_rustls::TlsConnector::from(tls.config.clone());
            match connector.connect(tls.name.clone(), stream).await {
                Ok(stream) => {
                    pool.connect_succeeded();
                    carry(stream, fd, task_conn, queue, pool.expire, drained_rx).await;
                }
                Err(err) => {
                    tracing::debug!(upstream = %pool.addr, %err, "upstream TLS handshake failed");
                    pool.connect_failed();
                    task_conn.close();
                }
            }
        })
        .detach();
        conn
    }

    fn connect_failed(&self) {
        let backoff = self.backoff.get();
        self.retry_at.set(Some(Instant::now() + backoff));
        let next = (backoff * 2).min(Duration::from_millis(limits::UPSTREAM_BACKOFF_MILLIS_MAX));
        self.backoff.set(next);
    }

    fn connect_succeeded(&self) {
        self.retry_at.set(None);
        self.backoff
            .set(Duration::from_millis(limits::UPSTREAM_BACKOFF_MILLIS_MIN));
    }
}

/// Carries `conn`'s queries over `stream` (plain TCP or TLS; `fd` its socket) until
/// it closes: a writer draining `queue`, a reader task handing out answers.
async fn carry<S>(
    stream: S,
    fd: RawFd,
    conn: Rc<Conn>,
    queue: local_channel::LocalReceiver<u16>,
    expire: Duration,
    drained: oneshot::Receiver<()>,
) where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    conn.fd.set(Some(fd));
    let (reader, writer) = futures_lite::io::split(stream);
    let (read_done, reader_ended) = oneshot::channel::<()>();
    let reader_conn = conn.clone();
    // No buffer on io_uring (capacity 0: every read goes straight to the socket).
    let capacity = match crate::engine::current() {
        crate::engine::Engine::Epoll => limits::UPSTREAM_TCP_READ_BUFFER_BYTES,
        crate::engine::Engine::IoUring => 0,
    };
    let reader = futures_lite::io::BufReader::with_capacity(capacity, reader);
    let reading = crate::engine::spawn_local(async move {
        read_answers(reader, fd, reader_conn, expire, drained).await;
        drop(read_done);
    });
    // Once the reader ends the writer goes too, even blocked on a full socket buffer
    // (a blackholed upstream acknowledges nothing): the socket closes with both.
    let writing = write_frames(writer, queue, &conn);
    futures_lite::future::or(writing, async {
        let _ = reader_ended.await;
    })
    .await;
    conn.close();
    conn.fd.set(None);
    reading.await;
}

/// Removes a query from its connection's in-flight table when dropped.
struct Forget<'a> {
    pool: &'a TcpPool,
    conn: &'a Conn,
    id: u16,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.forget(self.id);
        self.pool.make_room();
    }
}

/// A random ID not in flight on this connection.
fn free_id(pending: &Pendings) -> u16 {
    loop {
        let id: u16 = rand::random();
        if !pending.contains_key(&id) {
            return id;
        }
    }
}

/// Drains queued frames into the socket, many per write when they pile up.
async fn write_frames<W: futures_lite::AsyncWrite + Unpin>(
    mut writer: W,
    queue: local_channel::LocalReceiver<u16>,
    conn: &Conn,
) {
    let mut batch = Vec::new();
    while let Some(id) = queue.recv().await {
        if conn.closed.get() {
            return;
        }
        batch.clear();
        let unanswered = conn.written.get();
        take_frame(conn, id, &mut batch);
        while let Some(Some(more)) = futures_lite::future::poll_once(queue.recv()).await {
            take_frame(conn, more, &mut batch);
        }
        if batch.is_empty() {
            continue;
        }
        if unanswered == 0 {
            conn.progress.set(Instant::now());
        }
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
}

/// Appends the frame of query `id` to `batch` unless it was sent already or is gone
/// (its caller gave up before the writer ran).
fn take_frame(conn: &Conn, id: u16, batch: &mut Vec<u8>) {
    if let Some(p) = conn.pending.borrow_mut().get_mut(&id) {
        if !std::mem::replace(&mut p.sent, true) {
            batch.extend_from_slice(&p.frame);
            conn.written.set(conn.written.get().saturating_add(1));
        }
    }
}

/// Reads answers and hands each to the query with its ID; closes the connection on
/// error, end of stream, once idle (nothing in flight) for `expire`, or once retired
/// and drained (`drained` fires). One idle check lives across reads (no timer per
/// answer).
///
/// Each answer is read as its length, then its body, both exactly. On io_uring
/// straight from the socket: glommio follows a read that does not fill its buffer
/// with an io_uring poll that the next read waits for, so reading whole batches into
/// a large buffer measured slower (all-miss load, 70k vs 75k answers/s) despite a
/// tenth of the recv calls. On epoll through a buffer
/// ([`limits::UPSTREAM_TCP_READ_BUFFER_BYTES`]): one read takes the answers that
/// arrived together, and a read that does not fill it clears the socket's readiness
/// (tokio), so the next waits in `epoll_wait` instead of calling to find nothing.
///
/// `fd` is the connection's socket (open as long as `reader` is): an answer read
/// while others are in flight, and none more read already, re-arms TCP_QUICKACK on
/// it ([`quickack`]).
async fn read_answers<R: futures_lite::AsyncRead + Unpin>(
    mut reader: futures_lite::io::BufReader<R>,
    fd: RawFd,
    conn: Rc<Conn>,
    expire: Duration,
    drained: oneshot::Receiver<()>,
) {
    let mut idle = pin!(idle(&conn, expire));
    let mut drained = pin!(drained);
    let mut answer = Vec::new();
    loop {
        let mut len = [0u8; 2];
        let read_len = async { Some(reader.read_exact(&mut len).await) };
        let expired = async {
            futures_lite::future::or(idle.as_mut(), async {
                // A dropped sender (the connection is gone) is no signal.
                if drained.as_mut().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await;
            None
        };
        match futures_lite::future::or(read_len, expired).await {
            Some(Ok(())) => {}
            Some(Err(err)) => {
                // Ended between answers: what it carries was never answered.
                conn.ended
                    .set(err.kind() == std::io::ErrorKind::UnexpectedEof);
                break;
            }
            None => break,
        }
        let len = wire::tcp::frame_len(len);
        answer.resize(len, 0);
        if len == 0 || reader.read_exact(&mut answer).await.is_err() {
            break;
        }
        let now = Instant::now();
        conn.last_answer.set(Some(now));
        conn.progress.set(now);
        if !deliver(&conn, &answer) {
            break;
        }
        // Only while more answers are due and none of them was read already: with
        // nothing in flight the ACK rides on our next query (or the delayed-ACK timer)
        // and no answer waits for it; an answer in the buffer was sent already.
        if !conn.idle() && reader.buffer().is_empty() {
            quickack(fd);
        }
    }
    conn.close();
    // Wake the writer so it exits.
    let _ = conn.frames.try_send(0);
}

/// Sets TCP_QUICKACK on the upstream socket `fd`: acknowledge what arrives at once
/// instead of delaying the ACK. An upstream that does not set TCP_NODELAY holds a
/// second answer while its first is unacknowledged (Nagle), so two answers due in
/// one round trip would otherwise cost our delayed-ACK timer (~40 ms on Linux) on
/// a cold miss. The kernel drops quick-ACK mode again on its own (when it sees
/// an interactive exchange), so this is re-armed after every answer that leaves
/// others in flight (setting it also sends the pending ACK at once). With nothing
/// in flight no answer can be held back, and the ACK rides on our next query: at 2k
/// QPS on the node's shape the call and its lone ACK were 4-5 % of the server's CPU
/// (`bench/runs/2026-12-04-profile-2k/`). A failure only costs latency.
fn quickack(fd: RawFd) {
    // SAFETY: `fd` is the connection's socket, open while its reader half lives,
    // and every caller holds that half (or the stream itself).
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&socket).set_quickack(true);
}

/// Whether bytes wait unread on socket `fd` (`FIONREAD`); false if it cannot tell.
fn unread_bytes(fd: RawFd) -> bool {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid. `fd` is
    // a connection's socket, open while the connection is (see `carry`); on a closed
    // fd the call fails and nothing is written.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) };
    rc == 0 && unread > 0
}

/// Hands `answer` to the query waiting under its ID; false when the stream is not
/// trustworthy any more (a message too short for an ID, or a wrong question under a
/// known ID). An ID we no longer wait for (timed out) is ignored.
fn deliver(conn: &Conn, answer: &[u8]) -> bool {
    let Some(id) = wire::message_id(answer) else {
        return false;
    };
    let waiter = conn.forget(id);
    match waiter {
        Some(p) if wire::answer_matches(p.query(), answer, id) => {
            let _ = p.reply.send(answer.to_vec());
            true
        }
        // A wrong question under a known ID: the stream is not trustworthy.
        Some(_) => false,
        // An ID we no longer wait for (timed out): ignore.
        None => true,
    }
}

/// Resolves once `conn` has had nothing in flight and no query queued for `expire`.
/// It sleeps until the last query is `expire` old (or `expire` again while queries
/// are in flight), so it makes one timer per check, not one per answer.
async fn idle(conn: &Conn, expire: Duration) {
    let check_min = Duration::from_millis(limits::UPSTREAM_TCP_IDLE_CHECK_MILLIS_MIN);
    let mut wait = expire;
    loop {
        Deadline::after(wait.max(check_min)).await;
        let idle_for = conn.last_used.get().elapsed();
        if idle_for >= expire && conn.pending.borrow().is_empty() {
            return;
        }
        wait = expire
            .checked_sub(idle_for)
            .filter(|left| !left.is_zero())
            .unwrap_or(expire);
    }
}

/// A timer that is polled again only once it is due (or by another task): polling a
/// pending io_uring-engine (glommio) timer registers it with the reactor anew, which
/// would otherwise cost every read that has to wait.
struct Deadline {
    timer: Timer,
    /// When it fires, taken just before the timer's own instant (so never later).
    at: Instant,
    /// The waker the timer is registered with, after its first pending poll.
    waker: Option<Waker>,
}

impl Deadline {
    fn after(wait: Duration) -> Deadline {
        let at = Instant::now() + wait;
        Deadline {
            timer: Timer::new(wait),
            at,
            waker: None,
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let registered = this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if registered && Instant::now() < this.at {
            return Poll::Pending;
        }
        match Pin::new(&mut this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => {
                this.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection (no socket: the pool's choices alone are under test) retiring
    /// at `retire_at`, with `inflight` queries waiting, and its drained signal.
    fn conn(retire_at: Option<Instant>, inflight: u16) -> (Rc<Conn>, oneshot::Receiver<()>) {
        let (frames, _queue) = local_channel::new_bounded(4);
        let (drained, drained_rx) = oneshot::channel();
        let conn = Conn {
            pending: RefCell::new(Pendings::default()),
            frames,
            closed: Cell::new(false),
            ended: Cell::new(false),
            last_used: Cell::new(Instant::now()),
            last_answer: Cell::new(None),
            written: Cell::new(inflight),
            progress: Cell::new(Instant::now()),
            fd: Cell::new(None),
            retire_at,
            retired: Cell::new(false),
            drained: RefCell::new(Some(drained)),
        };
        for id in 0..inflight {
            let (reply, _) = oneshot::channel();
            let pending = Pending {
                frame: Vec::new(),
                sent: true,
                reply,
            };
            conn.pending.borrow_mut().insert(id, pending);
        }
        (Rc::new(conn), drained_rx)
    }

    fn pool(max_age: Option<Duration>, max_idle: Option<usize>) -> Rc<TcpPool> {
        let options = PoolOptions {
            source: None,
            expire: Duration::from_secs(10),
            max_age,
            max_idle,
        };
        TcpPool::new(([127, 0, 0, 1], 53).into(), &options, None)
    }

    /// Three connections, two past their age: the oldest is retired first, the
    /// other only once the first has drained and closed, and the young one keeps
    /// taking queries throughout.
    #[test]
    fn aged_connections_are_retired_one_at_a_time() {
        let now = Instant::now();
        let ago = |ms| now.checked_sub(Duration::from_millis(ms));
        let pool = pool(Some(Duration::from_secs(1)), None);
        let (oldest, mut oldest_drained) = conn(ago(5), 1);
        let (old, _) = conn(ago(1), 1);
        let (young, _) = conn(Some(now + Duration::from_secs(60)), 1);
        *pool.conns.borrow_mut() = vec![old.clone(), oldest.clone(), young.clone()];

        pool.pick().expect("a connection");
        assert!(oldest.retired.get() && !old.retired.get());
        assert_eq!(pool.conns.borrow().len(), 2);
        assert_eq!(pool.open_conns(), 3, "the retired one still drains");
        pool.pick().expect("a connection");
        assert!(!old.retired.get(), "one at a time");

        // Its last answer comes: the reader is told to close it.
        assert!(oldest_drained.try_recv().expect("open").is_none());
        assert!(oldest.forget(0).is_some());
        assert_eq!(oldest_drained.try_recv(), Ok(Some(())));
        oldest.close();
        pool.pick().expect("a connection");
        assert!(
            old.retired.get(),
            "the next aged one, after the first closed"
        );
        assert!(!young.retired.get());
        assert_eq!(pool.conns.borrow().len(), 1);
    }

    /// Every connection carries its maximum: a query is told to wait (not queued
    /// beyond a connection's bound), and each query that leaves lets the first one
    /// still waiting go; one that gave up waiting is passed over.
    #[test]
    fn a_query_waits_for_room_when_every_connection_is_full() {
        use futures_lite::future::{block_on, poll_once};
        let pool = pool(None, None);
        let full = limits::UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX as u16;
        *pool.conns.borrow_mut() = (0..limits::UPSTREAM_TCP_CONNS_MAX)
            .map(|_| conn(None, full).0)
            .collect();
        assert!(matches!(pool.pick(), Err(UpstreamError::Busy(_))));

        let mut gave_up = Box::pin(pool.room());
        let mut first = Box::pin(pool.room());
        let mut second = Box::pin(pool.room());
        for waiting in [&mut gave_up, &mut first, &mut second] {
            assert!(block_on(poll_once(waiting)).is_none(), "waits");
        }
        drop(gave_up);
        pool.make_room();
        assert!(block_on(poll_once(&mut first)).is_some(), "the first goes");
        assert!(
            block_on(poll_once(&mut second)).is_none(),
            "one place, one query"
        );
        pool.make_room();
        assert!(block_on(poll_once(&mut second)).is_some());
    }

    /// After a failed connect, a full connection is not handed out while the pool
    /// waits to reconnect: the query waits for the backoff (or moves to another
    /// upstream); one with room still takes queries.
    #[test]
    fn a_full_connection_is_not_handed_out_during_the_backoff() {
        let pool = pool(None, None);
        let full = limits::UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX as u16;
        let (conn, _) = conn(None, full);
        *pool.conns.borrow_mut() = vec![conn.clone()];
        pool.connect_failed();
        assert!(matches!(pool.pick(), Err(UpstreamError::Backoff(_))));
        assert!(conn.forget(0).is_some());
        let (picked, reused) = pool.pick().expect("room again");
        assert!(reused && Rc::ptr_eq(&picked, &conn));
    }

    /// A connection whose queries have waited past the stall time with no answer
    /// takes no new query while another connection serves, however few it carries;
    /// when every connection is stalled and the pool is at its bound, the least
    /// loaded takes it.
    #[test]
    fn a_stalled_connection_is_passed_over() {
        let pool = pool(None, None);
        let stall = Duration::from_millis(limits::UPSTREAM_TCP_STALL_MILLIS);
        let long_ago = Instant::now()
            .checked_sub(stall * 4)
            .expect("a past instant");
        let (stalled, _) = conn(None, 1);
        stalled.progress.set(long_ago);
        let (serving, _) = conn(None, 5);
        *pool.conns.borrow_mut() = vec![stalled.clone(), serving.clone()];
        let (picked, reused) = pool.pick().expect("a connection");
        assert!(reused && Rc::ptr_eq(&picked, &serving));

        // Answers waiting unread in its socket (the shard did not run meanwhile):
        // not stalled, and, less loaded, picked.
        let (mut upstream, ours) = std::os::unix::net::UnixStream::pair().expect("a pair");
        std::io::Write::write_all(&mut upstream, b"\x00\x0canswer bytes").expect("write");
        stalled.fd.set(Some(ours.as_raw_fd()));
        let (picked, _) = pool.pick().expect("a connection");
        assert!(Rc::ptr_eq(&picked, &stalled), "answers wait unread on it");
        stalled.fd.set(None);

        // An answer read on it is progress: it serves again.
        stalled.progress.set(Instant::now());
        let (picked, _) = pool.pick().expect("a connection");
        assert!(Rc::ptr_eq(&picked, &stalled));

        let conns: Vec<Rc<Conn>> = (1..=limits::UPSTREAM_TCP_CONNS_MAX as u16)
            .map(|inflight| {
                let (c, _) = conn(None, inflight * 3);
                c.progress.set(long_ago);
                c
            })
            .collect();
        *pool.conns.borrow_mut() = conns.clone();
        let (picked, reused) = pool.pick().expect("a connection");
        assert!(reused && Rc::ptr_eq(&picked, &conns[0]), "the least loaded");
    }

    /// A retired connection with nothing in flight is told to close at once.
    #[test]
    fn an_idle_retired_connection_closes_at_once() {
        let (conn, mut drained) = conn(None, 0);
        conn.retire();
        assert_eq!(drained.try_recv(), Ok(Some(())));
    }

    /// An attempt that began at `since` timed out: the connection it used, silent
    /// since, is closed and its other waiters hear of it at once; one that answered
    /// since, and a quiet one nobody used since, are kept.
    #[test]
    fn a_connection_silent_since_a_timed_out_attempt_is_closed() {
        let pool = pool(None, None);
        let since = Instant::now();
        let later = since + Duration::from_millis(1);
        let (silent, mut silent_drained) = conn(None, 0);
        let (answering, _) = conn(None, 1);
        let (quiet, _) = conn(None, 1);
        silent.last_used.set(later);
        let (reply, mut waiter) = oneshot::channel();
        let pending = Pending {
            frame: Vec::new(),
            sent: true,
            reply,
        };
        silent.pending.borrow_mut().insert(7, pending);
        answering.last_used.set(later);
        answering.last_answer.set(Some(later));
        quiet
            .last_used
            .set(since.checked_sub(Duration::from_millis(1)).unwrap_or(since));
        quiet.last_answer.set(Some(since));
        *pool.conns.borrow_mut() = vec![silent.clone(), answering.clone(), quiet.clone()];

        assert_eq!(pool.timed_out(since), 1);
        assert!(silent.closed.get());
        assert!(waiter.try_recv().is_err(), "its waiter is told at once");
        assert_eq!(silent_drained.try_recv(), Ok(Some(())), "its reader stops");
        assert!(!answering.closed.get() && !quiet.closed.get());
        pool.pick().expect("a connection");
        assert_eq!(pool.conns.borrow().len(), 2, "the dead one takes no query");
    }

    /// `max_idle_conns 1`: of three idle connections two are retired; a busy one
    /// is kept.
    #[test]
    fn idle_connections_beyond_max_idle_are_retired() {
        let pool = pool(None, Some(1));
        let conns: Vec<_> = [0, 0, 0, 2].into_iter().map(|n| conn(None, n).0).collect();
        *pool.conns.borrow_mut() = conns.clone();
        pool.trim_idle();
        let retired = conns.iter().filter(|c| c.retired.get()).count();
        assert_eq!(retired, 2);
        assert!(!conns[3].retired.get(), "the busy one stays");
        assert_eq!(pool.conns.borrow().len(), 2);
    }
}
