//! A minimal, fast UDP "DNS server" for benchmarking load generators: it answers
//! every datagram by echoing it back with the QR bit set (NOERROR, no records).
//! One thread, `recvmmsg`/`sendmmsg` in batches of 64 through the workspace's
//! batched-UDP crate (`mmsg`), so its cost per query is far below a real server's
//! and the generator becomes the bottleneck.
//!
//! Usage: `reflector ADDR:PORT` (loopback only in this project's benchmarks).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per batch.
const BATCH: usize = 64;
/// Bytes per datagram slot.
const SLOT_BYTES: usize = 2048;
/// Socket buffers asked for.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5353".into())
        .parse()?;
    let socket = UdpSocket::bind(addr)?;
    let sock2 = socket2::SockRef::from(&socket);
    sock2.set_recv_buffer_size(SOCKET_BUFFER_BYTES)?;
    sock2.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
    eprintln!("reflector listening on {addr}");
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; SLOT_BYTES]; BATCH];
    let mut recv = mmsg::RecvHeaders::new(BATCH, true, false);
    let mut send = mmsg::SendHeaders::new(BATCH);
    let mut order = Vec::with_capacity(BATCH);
    loop {
        let slots = bufs.iter_mut().map(|b| &mut b[..]);
        let n = match recv.receive(fd, slots, BATCH, libc::MSG_WAITFORONE) {
            Ok(n) if n > 0 => n,
            _ => continue,
        };
        // (sender, length, slot) of each datagram, QR set in place.
        order.clear();
        for (i, buf) in bufs.iter_mut().enumerate().take(n) {
            let len = recv.len(i);
            if len >= 3 {
                buf[2] |= 0x80;
            }
            if let Some(from) = recv.source(i) {
                order.push((from, len, i));
            }
        }
        reply(&mut send, fd, &bufs, &mut order);
    }
}

/// Sends the replies: those to the same client address with the same length go
/// out as one UDP GSO send, so the reflector spends less per answer than any
/// generator spends per query. Replies the kernel refuses are dropped (counted as
/// lost by the generator).
fn reply(
    send: &mut mmsg::SendHeaders,
    fd: i32,
    bufs: &[[u8; SLOT_BYTES]],
    order: &mut [(SocketAddr, usize, usize)],
) {
    order.sort_unstable();
    let mut out = send.batch();
    let mut k = 0;
    while k < order.len() {
        let (to, len, _) = order[k];
        while k < order.len() && (order[k].0, order[k].1) == (to, len) {
            out.payload(&bufs[order[k].2][..len]);
            k += 1;
        }
        out.close(mmsg::To::Addr(to), None, len as u16);
    }
    let _ = out.send(fd, 0);
}
