//! A minimal, fast UDP "DNS server" for benchmarking load generators: it answers
//! every datagram by echoing it back with the QR bit set (NOERROR, no records).
//! One thread, `recvmmsg`/`sendmmsg` in batches of 64, so its cost per query is
//! far below a real server's and the generator becomes the bottleneck.
//!
//! Usage: `reflector ADDR:PORT` (loopback only in this project's benchmarks).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per batch.
const BATCH: usize = 64;
/// Bytes per datagram slot.
const SLOT_BYTES: usize = 2048;

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5353".into())
        .parse()?;
    let socket = UdpSocket::bind(addr)?;
    let sock2 = socket2::SockRef::from(&socket);
    sock2.set_recv_buffer_size(8 << 20)?;
    sock2.set_send_buffer_size(8 << 20)?;
    eprintln!("reflector listening on {addr}");
    let fd = socket.as_raw_fd();
    let mut bufs = vec![0u8; BATCH * SLOT_BYTES];
    // SAFETY: plain C structs, all-zero is a valid value.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut out = Replies::default();
    loop {
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: bufs[i * SLOT_BYTES..].as_mut_ptr().cast(),
                iov_len: SLOT_BYTES,
            };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        // SAFETY: every header points at its own iovec, slot and address buffer,
        // all alive across the call. Blocks until at least one datagram arrives.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        let mut lens = [0usize; BATCH];
        for i in 0..n {
            lens[i] = (hdrs[i].msg_len as usize).min(SLOT_BYTES);
            if lens[i] >= 3 {
                bufs[i * SLOT_BYTES + 2] |= 0x80;
            }
        }
        out.send(fd, &bufs, &lens[..n], &names, &hdrs[..n]);
    }
}

/// Reply batching: answers to the same client address with the same length go out
/// as one UDP GSO send, so the reflector spends less per answer than any generator
/// spends per query.
#[derive(Default)]
struct Replies {
    /// Datagram indices, sorted by (address, length).
    order: Vec<usize>,
}

impl Replies {
    fn send(
        &mut self,
        fd: i32,
        bufs: &[u8],
        lens: &[usize],
        names: &[libc::sockaddr_storage; BATCH],
        rx: &[libc::mmsghdr],
    ) {
        let key = |i: usize| {
            // SAFETY: sockaddr_storage is plain bytes of the given length.
            let addr = unsafe {
                std::slice::from_raw_parts(
                    (&names[i] as *const libc::sockaddr_storage).cast::<u8>(),
                    rx[i].msg_hdr.msg_namelen as usize,
                )
            };
            (addr, lens[i])
        };
        self.order.clear();
        self.order.extend(0..lens.len());
        self.order.sort_by(|&a, &b| key(a).cmp(&key(b)));
        // SAFETY: plain C structs, all-zero is valid.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut control = [[0u64; 4]; BATCH];
        for (k, &i) in self.order.iter().enumerate() {
            iov[k] = libc::iovec {
                iov_base: bufs[i * SLOT_BYTES..].as_ptr() as *mut _,
                iov_len: lens[i],
            };
        }
        let mut groups = 0;
        let mut k = 0;
        while k < self.order.len() {
            let start = k;
            while k < self.order.len() && key(self.order[k]) == key(self.order[start]) {
                k += 1;
            }
            let first = self.order[start];
            let hdr = &mut hdrs[groups].msg_hdr;
            hdr.msg_iov = &mut iov[start];
            hdr.msg_iovlen = k - start;
            hdr.msg_name = (&names[first] as *const libc::sockaddr_storage) as *mut _;
            hdr.msg_namelen = rx[first].msg_hdr.msg_namelen;
            if k - start > 1 {
                hdr.msg_control = control[groups].as_mut_ptr().cast();
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: control[groups] is 32 aligned bytes, enough for one u16 cmsg.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<u16>(),
                        lens[first] as u16,
                    );
                }
            }
            groups += 1;
        }
        // SAFETY: headers point at iovecs, addresses and control buffers that are
        // alive for the call. Replies the kernel refuses are dropped (counted as
        // lost by the generator).
        unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), groups as u32, 0) };
    }
}
