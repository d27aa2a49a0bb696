//! DNS over TCP from clients: an accept loop per listener, and per connection a
//! reader that takes length-prefixed queries (many per connection, answered as they
//! complete, possibly out of order) and a writer task that sends the answers.
//! Idle connections close after the CoreDNS timeouts (`--tcp-idle-timeout`, or the
//! `timeouts { read write idle max_queries }` of the listener's blocks); a shard
//! bounds its clients (`--tcp-clients-max`).
//!
//! Stopping ([`Control::stop`]) ends the accept loop without dropping a connection
//! the kernel already handed to it: the listener is shut down (which wakes the
//! pending accept with an error; with migration on, `migrate.rs`, the connections
//! still queued move to the successor's listener), every accepted connection is
//! served until its client closes it, or until it has been idle for
//! [`limits::TCP_STOP_IDLE_MILLIS`] after a query, and its answers in flight are
//! sent first.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::query::{self, Handled};
use crate::engine::{self, local_channel, TcpListener, TcpStream};
use crate::limits;
use crate::upstream::{with_deadline, Transport};
use crate::wire;

thread_local! {
    /// The shard's one buffer a TCP answer is written into before it is framed (a
    /// copy of the answer's own length goes to the client's writer), so a client
    /// holds no 64 KiB answer buffer of its own (memory plan: `TCP_CLIENT_BYTES`).
    static ANSWER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; limits::MESSAGE_BYTES_MAX].into_boxed_slice());
}

/// What the shard's stop sees of one listener and its connections.
#[derive(Debug)]
pub struct Control {
    /// The listening socket (open until the accept loop ends).
    fd: RawFd,
    /// Set by [`Control::stop`]: the accept loop ends, idle connections close.
    stopping: Cell<bool>,
    /// Connections being served.
    clients: Cell<usize>,
}

impl Control {
    /// Takes `socket` for the accept loop; the loop's [`Control`] and its listener.
    pub fn new(socket: socket2::Socket) -> std::io::Result<(Rc<Control>, TcpListener)> {
        let fd = socket.as_raw_fd();
        let listener = TcpListener::from_socket(socket)?;
        let control = Rc::new(Control {
            fd,
            stopping: Cell::new(false),
            clients: Cell::new(0),
        });
        Ok((control, listener))
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Connections still being served.
    pub fn clients(&self) -> usize {
        self.clients.get()
    }

    /// Stops accepting: shuts the listener down, which takes it out of its reuseport
    /// group (its queued connections migrate or are reset, see `migrate.rs`) and
    /// fails the accept in progress, so the loop ends without losing a connection
    /// it was handed. Connected clients stay served (see the module docs).
    pub fn stop(&self) {
        if self.stopping.replace(true) {
            return;
        }
        // SAFETY: the accept loop keeps the listener open while this Control is
        // reachable from the shard's stop; shutdown has no memory arguments.
        let rc = unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if rc != 0 {
            tracing::debug!(err = %std::io::Error::last_os_error(), "TCP listener shutdown");
        }
    }
}

/// Accepts clients until [`Control::stop`] (or until the task is cancelled).
pub async fn serve(
    current: super::Current,
    addr: std::net::SocketAddr,
    control: Rc<Control>,
    listener: TcpListener,
    bounds: super::TcpLimits,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(_) if control.stopping.get() => return,
            Err(err) => {
                tracing::warn!(%err, "TCP accept failed");
                engine::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shard = current.borrow().clone();
        if control.clients.get() >= bounds.clients_per_shard_max {
            shard
                .counters
                .tcp_refused
                .set(shard.counters.tcp_refused.get() + 1);
            continue;
        }
        control.clients.set(control.clients.get() + 1);
        let (current, control) = (current.clone(), control.clone());
        engine::spawn_local(async move {
            serve_client(&current, addr, stream, bounds.idle, &control.stopping).await;
            control.clients.set(control.clients.get() - 1);
        })
        .detach();
    }
}

/// Reads queries until the client closes, sends garbage framing, or idles out
/// (after `idle`, or [`limits::TCP_STOP_IDLE_MILLIS`] once `stopping`).
async fn serve_client(
    current: &super::Current,
    addr: std::net::SocketAddr,
    stream: TcpStream,
    idle: Duration,
    stopping: &Cell<bool>,
) {
    let client = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let timeouts = {
        let shard = current.borrow();
        shard.endpoint_index(addr).map(|e| shard.tcp_timeouts(e))
    }
    .unwrap_or_default();
    let idle = timeouts.idle.unwrap_or(idle);
    let read = timeouts.read;
    let write = timeouts
        .write
        .unwrap_or(Duration::from_millis(limits::TCP_CLIENT_WRITE_MILLIS));
    let mut queries_left = timeouts.max_queries.filter(|n| *n > 0);
    let (mut reader, writer) = futures_lite::io::split(stream);
    // Unbounded so an answer finishing later is never dropped for want of room; the
    // reader bounds it instead: it stops reading while too many answers wait.
    let (frames, queue) = local_channel::new_unbounded();
    let frames = Rc::new(frames);
    let writing = engine::spawn_local(write_answers(writer, queue, write));
    let inflight = Rc::new(Cell::new(0usize));
    // Grown to the query's length (a client's queries are small), never 64 KiB per
    // client up front; the answer is written into the shard's buffer (`ANSWER`).
    let mut packet = Vec::new();
    // The first query may take CoreDNS's 3 s (`timeouts { read }`), unless the idle
    // limit is shorter.
    let first_read = Duration::from_millis(limits::TCP_CLIENT_FIRST_READ_MILLIS);
    let mut wait = read.unwrap_or(first_read.min(idle));
    // A connection on which no query came yet is not idle, however long its client
    // takes to send (a loaded client thread between connect and write): closing it
    // would reset the query on its way. It gets the first-read wait, stop or not.
    let no_stop = Cell::new(false);
    let mut first = true;
    loop {
        let stop_idle = if first { &no_stop } else { stopping };
        let Some(len) = read_length(&mut reader, wait, stop_idle).await else {
            break;
        };
        first = false;
        // A frame shorter than a header can never be a query: close.
        if len < 12 {
            break;
        }
        packet.clear();
        packet.shrink_to(limits::UDP_PAYLOAD_BYTES_MAX);
        packet.resize(len, 0);
        match with_deadline(read.unwrap_or(first_read), reader.read_exact(&mut packet)).await {
            Some(Ok(())) => {}
            _ => break,
        }
        wait = idle;
        // Backpressure: wait while too many queries are in flight or answers are
        // unsent; a client that stops reading its answers is dropped after `idle`.
        let stalled_since = Instant::now();
        while inflight.get() >= limits::TCP_CLIENT_INFLIGHT_MAX
            || frames.len() >= limits::TCP_CLIENT_INFLIGHT_MAX
        {
            if stalled_since.elapsed() > idle {
                break;
            }
            engine::sleep(Duration::from_millis(1)).await;
        }
        if stalled_since.elapsed() > idle {
            break;
        }
        let reply = || {
            let (later_frames, later_inflight) = (frames.clone(), inflight.clone());
            move |answer: &[u8]| {
                if !answer.is_empty() {
                    let _ = later_frames.try_send(frame(answer));
                }
                later_inflight.set(later_inflight.get() - 1);
            }
        };
        inflight.set(inflight.get() + 1);
        let shard = current.borrow().clone();
        let Some(endpoint) = shard.endpoint_index(addr) else {
            break;
        };
        let answered = ANSWER.with_borrow_mut(|out| {
            let handled = query::handle(
                &shard,
                endpoint,
                client,
                &packet,
                Transport::Tcp,
                Instant::now(),
                out,
                reply,
            );
            match handled {
                Handled::Reply(n) => Some(Some(frame(&out[..n]))),
                Handled::Later => Some(None),
                Handled::Drop => None,
            }
        });
        match answered {
            Some(Some(framed)) => {
                inflight.set(inflight.get() - 1);
                if frames.try_send(framed).is_err() {
                    break;
                }
            }
            Some(None) => {}
            None => {
                inflight.set(inflight.get() - 1);
                break;
            }
        }
        // `timeouts { max_queries N }`: the connection ends after N queries.
        if let Some(left) = queries_left.as_mut() {
            *left -= 1;
            if *left == 0 {
                break;
            }
        }
    }
    // Let answers still being resolved go out before closing (bounded by the
    // upstream deadline).
    let deadline = Instant::now() + Duration::from_millis(limits::UPSTREAM_QUERY_MILLIS + 100);
    while inflight.get() > 0 && Instant::now() < deadline {
        engine::sleep(Duration::from_millis(5)).await;
    }
    drop(frames);
    writing.await;
}

/// Reads the 2-byte length of the next query; None when the client closed, sent
/// nothing for `wait`, or (once `stopping`) for [`limits::TCP_STOP_IDLE_MILLIS`]
/// with no byte of the length read. Reads in slices of that time, keeping the bytes
/// read so far, so a stop is noticed while waiting.
async fn read_length<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    wait: Duration,
    stopping: &Cell<bool>,
) -> Option<usize> {
    let slice = Duration::from_millis(limits::TCP_STOP_IDLE_MILLIS);
    let started = Instant::now();
    let mut len = [0u8; 2];
    let mut filled = 0;
    while filled < len.len() {
        let left = wait.checked_sub(started.elapsed())?;
        let buf = len.get_mut(filled..)?;
        match with_deadline(left.min(slice), reader.read(buf)).await {
            Some(Ok(0)) | Some(Err(_)) => return None,
            Some(Ok(n)) => filled += n,
            None if stopping.get() && filled == 0 => return None,
            None => {}
        }
    }
    Some(wire::tcp::frame_len(len))
}

/// An answer with its length prefix; our answers are at most `MESSAGE_BYTES_MAX`
/// long, so nothing is ever cut (an empty frame would be, and is never sent).
fn frame(answer: &[u8]) -> Vec<u8> {
    wire::tcp::frame(answer).unwrap_or_default()
}

async fn write_answers<W: futures_lite::AsyncWrite + Unpin>(
    mut writer: W,
    queue: local_channel::LocalReceiver<Vec<u8>>,
    write: Duration,
) {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while let Some(Some(more)) = futures_lite::future::poll_once(queue.recv()).await {
            batch.extend_from_slice(&more);
        }
        let sent = with_deadline(write, async {
            writer.write_all(&batch).await?;
            writer.flush().await
        })
        .await;
        if !matches!(sent, Some(Ok(()))) {
            return;
        }
    }
    let _ = writer.close().await;
}
