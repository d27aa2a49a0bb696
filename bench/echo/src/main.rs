//! The floor of `bench/compare.sh`: the least a UDP DNS server can do per query on
//! one core. One thread, blocking `recvmmsg` of up to 32 datagrams (the batch of
//! nodelocaldns), QR bit set in place, `sendmmsg` of the same batch back to each
//! sender, both through the workspace's batched-UDP crate (`mmsg`). No parsing, no
//! GSO, no io_uring.
//!
//! Usage: `bench-echo ADDR:PORT`

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per system call (nodelocaldns's `UDP_BATCH_MAX`).
const BATCH: usize = 32;
/// Bytes per datagram slot (nodelocaldns's `UDP_PAYLOAD_BYTES_MAX`).
const SLOT_BYTES: usize = 4096;
/// SO_RCVBUF asked for.
const RCVBUF_BYTES: usize = 4 << 20;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5353".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = UdpSocket::bind(addr)?;
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RCVBUF_BYTES);
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; SLOT_BYTES]; BATCH];
    let mut headers = mmsg::RecvHeaders::new(BATCH, true, false);
    loop {
        let slots = bufs.iter_mut().map(|b| &mut b[..]);
        let n = match headers.receive(fd, slots, BATCH, libc::MSG_WAITFORONE) {
            Ok(n) if n > 0 => n,
            _ => continue,
        };
        let mut lens = [0usize; BATCH];
        for (i, (buf, len)) in bufs.iter_mut().zip(lens.iter_mut()).enumerate().take(n) {
            *len = headers.len(i);
            if *len > 2 {
                buf[2] |= 0x80; // QR
            }
        }
        let replies = bufs.iter().zip(lens).map(|(b, len)| &b[..len]);
        let _ = headers.reply(fd, replies.take(n), 0);
    }
}
