//! TCP channels: `-c` connections, each carrying many queries at once (pipelining,
//! RFC 7766), 2-byte length framing. Writes are buffered per connection and
//! flushed without blocking; a connection the server closes is reopened on the
//! next send, and its unanswered queries time out as lost.
//!
//! Churn (`--tcp-churn N`): after N queries a connection is retired and the
//! channel's next query opens a new one, so the handshake is paid every N queries
//! (a node cache reconnecting, a client that does not reuse connections). A retired
//! connection stays open, read as usual, until its last answer came or the query
//! timeout passed; then it is closed.
//!
//! Readiness comes from one epoll set (a pass reads only the connections with
//! something to read or room to write), and an answer's time is the clock read
//! right after the `read` that completed it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::limits::{TCP_IN_BYTES, TCP_IN_BYTES_INITIAL, TCP_OUT_BYTES_MAX, TCP_RETIRED_MAX};
use crate::poll::Poller;
use crate::sender::{Channels, SendBatch};
use crate::wire;

/// How long opening a connection may take before the send is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One pipelined connection.
struct Conn {
    /// `None` after the server closed it; reopened lazily.
    stream: Option<TcpStream>,
    /// Framed queries not yet accepted by the kernel.
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_pos: usize,
    /// Received bytes; grows (up to `TCP_IN_BYTES`) until a whole message fits.
    inbuf: Vec<u8>,
    /// Valid bytes in `inbuf`.
    in_len: usize,
    /// Whether the poller also watches this connection for room to write.
    watch_out: bool,
    /// Queries written on this connection (for churn).
    queries: u64,
    /// Queries written and not yet answered on this connection.
    unanswered: u64,
    /// When it was retired (churn), for closing it at the timeout.
    retired_ns: u64,
}

/// How to manage connections.
#[derive(Debug, Clone, Copy)]
pub struct TcpOptions {
    /// Retire a connection after this many queries (`None`: keep it).
    pub churn: Option<u64>,
    /// The query timeout: a retired connection is closed this long after retiring.
    pub timeout_ns: u64,
}

/// A worker's TCP connections.
pub struct TcpChannels {
    /// Where to (re)connect.
    server: SocketAddr,
    /// Churn and timeout.
    options: TcpOptions,
    /// The active connection of each channel.
    conns: Vec<Conn>,
    /// Retired connections still waiting for answers: (channel, connection).
    /// Their poller token is `conns.len()` + index.
    retired: Vec<Option<(usize, Conn)>>,
    /// Connections opened after the first ones (reconnects and churn).
    pub connections_opened: u64,
    /// Readiness; the token is the connection index.
    poller: Poller,
    /// Ready connections of the current pass (reused buffer).
    ready: Vec<(usize, u32)>,
    /// Time zero for retirement times.
    epoch: Instant,
}

/// Connects; with `churn`, closing sends a reset instead of a FIN, so thousands of
/// connections a second do not use up the ephemeral ports in TIME_WAIT.
fn connect(server: SocketAddr, churn: bool) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    if churn {
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    }
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl TcpChannels {
    /// Opens `count` connections to `server`.
    pub fn open(
        server: SocketAddr,
        count: usize,
        options: TcpOptions,
    ) -> Result<Self, (usize, io::Error)> {
        let mut conns = Vec::with_capacity(count);
        let mut poller = Poller::new().map_err(|e| (0, e))?;
        for i in 0..count {
            let stream = connect(server, options.churn.is_some()).map_err(|e| (i, e))?;
            poller
                .add(stream.as_raw_fd(), i, false)
                .map_err(|e| (i, e))?;
            conns.push(Conn::new(stream));
        }
        Ok(Self {
            server,
            options,
            conns,
            retired: Vec::new(),
            connections_opened: 0,
            poller,
            ready: Vec::new(),
            epoch: Instant::now(),
        })
    }

    fn conn_mut(&mut self, token: usize) -> Option<&mut Conn> {
        match token.checked_sub(self.conns.len()) {
            None => self.conns.get_mut(token),
            Some(i) => self.retired.get_mut(i)?.as_mut().map(|(_, c)| c),
        }
    }

    /// Watches connection `token` for room to write exactly while it has unsent bytes.
    fn sync_watch(&mut self, token: usize) {
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        let Some(fd) = conn.stream.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let want = conn.pending() > 0;
        if want == conn.watch_out {
            return;
        }
        conn.watch_out = want;
        if self.poller.modify(fd, token, want).is_err() {
            if let Some(conn) = self.conn_mut(token) {
                conn.watch_out = !want;
            }
        }
    }

    /// Opens a new connection for `channel` if it has none.
    fn ensure_open(&mut self, channel: usize) -> io::Result<()> {
        let server = self.server;
        let Some(conn) = self.conns.get_mut(channel) else {
            return Ok(());
        };
        if conn.stream.is_some() {
            return Ok(());
        }
        let stream = connect(server, self.options.churn.is_some())?;
        self.poller.add(stream.as_raw_fd(), channel, false)?;
        *conn = Conn::new(stream);
        self.connections_opened += 1;
        Ok(())
    }

    /// Moves `channel`'s connection to the retired list when it has carried its
    /// share of queries; false when the list is full (the channel then waits).
    fn retire_if_done(&mut self, channel: usize, now_ns: u64) -> bool {
        let Some(limit) = self.options.churn else {
            return true;
        };
        let Some(conn) = self.conns.get(channel) else {
            return true;
        };
        if conn.stream.is_none() || conn.queries < limit {
            return true;
        }
        let Some(slot) = self.free_retired_slot(now_ns) else {
            return false;
        };
        let mut old = std::mem::replace(&mut self.conns[channel], Conn::closed());
        old.retired_ns = now_ns;
        let token = self.conns.len() + slot;
        if let Some(fd) = old.stream.as_ref().map(AsRawFd::as_raw_fd) {
            // Same fd, new token: answers on it still count for `channel`.
            if self.poller.modify(fd, token, old.pending() > 0).is_err() {
                return true;
            }
            old.watch_out = old.pending() > 0;
        }
        if old.unanswered > 0 {
            self.retired[slot] = Some((channel, old));
        }
        true
    }

    /// A free index in the retired list, closing those past the timeout if needed.
    fn free_retired_slot(&mut self, now_ns: u64) -> Option<usize> {
        if let Some(i) = self.retired.iter().position(Option::is_none) {
            return Some(i);
        }
        if self.retired.len() < TCP_RETIRED_MAX {
            self.retired.push(None);
            return Some(self.retired.len() - 1);
        }
        let timeout = self.options.timeout_ns;
        for entry in &mut self.retired {
            if entry
                .as_ref()
                .is_some_and(|(_, c)| now_ns.saturating_sub(c.retired_ns) >= timeout)
            {
                *entry = None;
            }
        }
        self.retired.iter().position(Option::is_none)
    }
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream: Some(stream),
            ..Self::closed()
        }
    }

    fn closed() -> Self {
        Self {
            stream: None,
            out: Vec::new(),
            out_pos: 0,
            inbuf: vec![0; TCP_IN_BYTES_INITIAL],
            in_len: 0,
            watch_out: false,
            queries: 0,
            unanswered: 0,
            retired_ns: 0,
        }
    }

    fn close(&mut self) {
        self.stream = None;
        self.out.clear();
        self.out_pos = 0;
        self.in_len = 0;
    }

    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes as much buffered output as the kernel takes.
    fn flush(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        while self.out_pos < self.out.len() {
            match stream.write(self.out.get(self.out_pos..).unwrap_or_default()) {
                Ok(0) => return self.close(),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Reads what is available and hands every complete message to `on_msg`, with
    /// the clock read right after the `read` that completed it.
    fn read(&mut self, clock: &Clock, mut on_msg: impl FnMut(&[u8], u64)) {
        loop {
            if self.in_len == self.inbuf.len() && self.inbuf.len() < TCP_IN_BYTES {
                self.inbuf
                    .resize((self.inbuf.len() * 2).min(TCP_IN_BYTES), 0);
            }
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let Some(room) = self.inbuf.get_mut(self.in_len..) else {
                return;
            };
            match stream.read(room) {
                Ok(0) => return self.close(),
                Ok(n) => self.in_len += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(),
            }
            let now = clock.now_ns();
            self.take_frames(&mut |msg| on_msg(msg, now));
        }
    }

    fn take_frames(&mut self, on_msg: &mut impl FnMut(&[u8])) {
        let mut pos = 0;
        while let Some((msg, taken)) = self
            .inbuf
            .get(pos..self.in_len)
            .and_then(wire::tcp::split_frame)
        {
            self.unanswered = self.unanswered.saturating_sub(1);
            on_msg(msg);
            pos += taken;
        }
        self.inbuf.copy_within(pos..self.in_len, 0);
        self.in_len -= pos;
    }
}

impl Channels for TcpChannels {
    fn count(&self) -> usize {
        self.conns.len()
    }

    fn send(&mut self, channel: usize, batch: &SendBatch) -> io::Result<u64> {
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        if !self.retire_if_done(channel, now_ns) {
            return Ok(0);
        }
        self.ensure_open(channel)?;
        let churn = self.options.churn;
        let Some(conn) = self.conns.get_mut(channel) else {
            return Ok(0);
        };
        // Under churn, only what this connection has left of its share.
        let room = churn
            .map_or(u64::MAX, |limit| limit.saturating_sub(conn.queries))
            .min(batch.len() as u64) as usize;
        if conn.pending() > TCP_OUT_BYTES_MAX {
            conn.flush();
            self.sync_watch(channel);
            return Ok(0);
        }
        for i in 0..room {
            // Our queries are a few hundred bytes; none is too long to frame.
            let _ = wire::tcp::frame_into(batch.message(i), &mut conn.out);
        }
        conn.queries += room as u64;
        conn.unanswered += room as u64;
        conn.flush();
        self.sync_watch(channel);
        Ok(crate::sender::first_bits(room))
    }

    /// Reads everything whatever `until_ns` says: an answer's latency ends when it
    /// is read here (TCP has no receive stamps), so a later read would add to it.
    fn receive(
        &mut self,
        clock: &Clock,
        _until_ns: u64,
        on_msg: &mut dyn FnMut(usize, &[u8], u64),
    ) -> io::Result<bool> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.poller.take_ready()?);
        let active = self.conns.len();
        for &(token, _) in &ready {
            let channel = match token.checked_sub(active) {
                None => token,
                Some(i) => match self.retired.get(i) {
                    Some(Some((channel, _))) => *channel,
                    _ => continue,
                },
            };
            let Some(conn) = self.conn_mut(token) else {
                continue;
            };
            conn.flush();
            conn.read(clock, |msg, t| on_msg(channel, msg, t));
            let done = conn.stream.is_none() || conn.unanswered == 0;
            if token >= active && done {
                // A retired connection with every answer in: close it.
                if let Some(entry) = self.retired.get_mut(token - active) {
                    *entry = None;
                }
                continue;
            }
            self.sync_watch(token);
        }
        self.ready = ready;
        Ok(true)
    }

    fn stamps_arrivals(&self) -> bool {
        false
    }

    fn connections_opened(&self) -> u64 {
        self.connections_opened
    }

    fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        self.poller.wait(timeout_ns)
    }
}
