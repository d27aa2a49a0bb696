//! TCP channels: `-c` connections, each carrying many queries at once (pipelining,
//! RFC 7766), 2-byte length framing. Writes are buffered per connection and
//! flushed without blocking; a connection the server closes is reopened on the
//! next send, and its unanswered queries time out as lost.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::limits::{TCP_IN_BYTES, TCP_OUT_BYTES_MAX};
use crate::sender::{Channels, SendBatch};
use crate::udp::ppoll;

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
}

/// A worker's TCP connections.
pub struct TcpChannels {
    /// Where to (re)connect.
    server: SocketAddr,
    /// The connections.
    conns: Vec<Conn>,
    /// Connections reopened after the server closed them.
    pub reconnects: u64,
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
        for i in 0..count {
            let stream = connect(server).map_err(|e| (i, e))?;
            conns.push(Conn {
                stream: Some(stream),
                out: Vec::with_capacity(TCP_OUT_BYTES_MAX),
                out_pos: 0,
                inbuf: vec![0; TCP_IN_BYTES],
                in_len: 0,
            });
        }
        Ok(Self {
            server,
            conns,
            reconnects: 0,
        })
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

    /// Reads what is available and hands every complete message to `on_msg`.
    fn read(&mut self, mut on_msg: impl FnMut(&[u8])) {
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
            self.take_frames(&mut on_msg);
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
            conn.stream = Some(connect(server)?);
            self.reconnects += 1;
        }
        if conn.pending() > TCP_OUT_BYTES_MAX {
            conn.flush();
            return Ok(0);
        }
        for i in 0..batch.len() {
            let msg = batch.message(i);
            conn.out
                .extend_from_slice(&(msg.len() as u16).to_be_bytes());
            conn.out.extend_from_slice(msg);
        }
        conn.flush();
        Ok(batch.all_sent())
    }

    fn receive(
        &mut self,
        start: Instant,
        on_msg: &mut dyn FnMut(usize, &[u8], u64),
    ) -> io::Result<()> {
        for (channel, conn) in self.conns.iter_mut().enumerate() {
            conn.flush();
            conn.read(|msg| on_msg(channel, msg, start.elapsed().as_nanos() as u64));
        }
        Ok(())
    }

    fn wait(&mut self, timeout_ns: u64) -> io::Result<()> {
        let mut fds: Vec<libc::pollfd> = self
            .conns
            .iter()
            .filter_map(|c| {
                let stream = c.stream.as_ref()?;
                let out = if c.pending() > 0 { libc::POLLOUT } else { 0 };
                Some(libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLIN | out,
                    revents: 0,
                })
            })
            .collect();
        ppoll(&mut fds, timeout_ns)
    }
}
