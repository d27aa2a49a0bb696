//! TCP channels: `-c` connections, each carrying many queries at once (pipelining,
//! RFC 7766), 2-byte length framing. Writes are buffered per connection and
//! flushed without blocking; a connection the server closes is reopened on the
//! next send, and its unanswered queries time out as lost.
//!
//! Readiness comes from one epoll set (a pass reads only the connections with
//! something to read or room to write), and an answer's time is the clock read
//! right after the `read` that completed it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::clock::Clock;
use crate::limits::{TCP_IN_BYTES, TCP_OUT_BYTES_MAX};
use crate::poll::Poller;
use crate::sender::{Channels, SendBatch};

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
    /// Received bytes; always room for one whole message after compaction.
    inbuf: Vec<u8>,
    /// Valid bytes in `inbuf`.
    in_len: usize,
    /// Whether the poller also watches this connection for room to write.
    watch_out: bool,
}

/// A worker's TCP connections.
pub struct TcpChannels {
    /// Where to (re)connect.
    server: SocketAddr,
    /// The connections.
    conns: Vec<Conn>,
    /// Connections reopened after the server closed them.
    pub reconnects: u64,
    /// Readiness; the token is the connection index.
    poller: Poller,
    /// Ready connections of the current pass (reused buffer).
    ready: Vec<(usize, u32)>,
}

fn connect(server: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl TcpChannels {
    /// Opens `count` connections to `server`.
    pub fn open(server: SocketAddr, count: usize) -> Result<Self, (usize, io::Error)> {
        let mut conns = Vec::with_capacity(count);
        let mut poller = Poller::new().map_err(|e| (0, e))?;
        for i in 0..count {
            let stream = connect(server).map_err(|e| (i, e))?;
            poller
                .add(stream.as_raw_fd(), i, false)
                .map_err(|e| (i, e))?;
            conns.push(Conn {
                stream: Some(stream),
                out: Vec::new(),
                out_pos: 0,
                inbuf: vec![0; TCP_IN_BYTES],
                in_len: 0,
                watch_out: false,
            });
        }
        Ok(Self {
            server,
            conns,
            reconnects: 0,
            poller,
            ready: Vec::new(),
        })
    }

    /// Watches connection `channel` for room to write exactly while it has unsent bytes.
    fn sync_watch(&mut self, channel: usize) {
        let Some(conn) = self.conns.get_mut(channel) else {
            return;
        };
        let Some(stream) = conn.stream.as_ref() else {
            return;
        };
        let want = conn.pending() > 0;
        if want != conn.watch_out
            && self
                .poller
                .modify(stream.as_raw_fd(), channel, want)
                .is_ok()
        {
            conn.watch_out = want;
        }
    }
}

impl Conn {
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
        while let Some(prefix) = self
            .inbuf
            .get(pos..pos + 2)
            .filter(|_| pos + 2 <= self.in_len)
        {
            let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            if pos + 2 + len > self.in_len {
                break;
            }
            if let Some(msg) = self.inbuf.get(pos + 2..pos + 2 + len) {
                on_msg(msg);
            }
            pos += 2 + len;
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
        let server = self.server;
        let Some(conn) = self.conns.get_mut(channel) else {
            return Ok(0);
        };
        if conn.stream.is_none() {
            let stream = connect(server)?;
            self.poller.add(stream.as_raw_fd(), channel, false)?;
            conn.stream = Some(stream);
            conn.watch_out = false;
            self.reconnects += 1;
        }
        if conn.pending() > TCP_OUT_BYTES_MAX {
            conn.flush();
            self.sync_watch(channel);
            return Ok(0);
        }
        for i in 0..batch.len() {
            let msg = batch.message(i);
            conn.out
                .extend_from_slice(&(msg.len() as u16).to_be_bytes());
            conn.out.extend_from_slice(msg);
        }
        conn.flush();
        self.sync_watch(channel);
        Ok(batch.all_sent())
    }

    fn receive(
        &mut self,
        clock: &Clock,
        on_msg: &mut dyn FnMut(usize, &[u8], u64),
    ) -> io::Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.poller.take_ready()?);
        for &(channel, _) in &ready {
            let Some(conn) = self.conns.get_mut(channel) else {
                continue;
            };
            conn.flush();
            conn.read(clock, |msg, t| on_msg(channel, msg, t));
            self.sync_watch(channel);
        }
        self.ready = ready;
        Ok(())
    }

    fn stamps_arrivals(&self) -> bool {
        false
    }

    fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        self.poller.wait(timeout_ns)
    }
}
