//! The floor of `bench/compare.sh`: the least a UDP DNS server can do per query on
//! one core. One thread, blocking `recvmmsg` of up to 32 datagrams (the batch of
//! nodelocaldns), QR bit set in place, `sendmmsg` of the same batch back to each
//! sender. No parsing, no GSO, no io_uring.
//!
//! Usage: `bench-echo ADDR:PORT`

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per system call (nodelocaldns's `UDP_BATCH_MAX`).
const BATCH: usize = 32;
/// Bytes per datagram slot (nodelocaldns's `UDP_PAYLOAD_BYTES_MAX`).
const SLOT_BYTES: usize = 4096;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5353".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = UdpSocket::bind(addr)?;
    let fd = socket.as_raw_fd();
    let size: libc::c_int = 4 << 20;
    // SAFETY: plain setsockopt with a valid int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let mut bufs = vec![[0u8; SLOT_BYTES]; BATCH];
    // SAFETY: plain C structs, all-zero is a valid value.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    loop {
        for i in 0..BATCH {
            iov[i].iov_base = bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = SLOT_BYTES;
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        for i in 0..n {
            let len = msgs[i].msg_len as usize;
            if len > 2 {
                bufs[i][2] |= 0x80; // QR
            }
            iov[i].iov_len = len;
        }
        // SAFETY: as above; msg_namelen was set by recvmmsg.
        unsafe {
            libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0);
        }
    }
}
