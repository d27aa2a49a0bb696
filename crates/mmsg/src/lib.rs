//! Batched UDP, the one door of the workspace to `recvmmsg`, `sendmmsg`, UDP GSO
//! (`UDP_SEGMENT`) and the control messages that ride along (`IP_PKTINFO` /
//! `IPV6_PKTINFO` both ways, `SCM_TIMESTAMPNS` on receive). The server, dnsload,
//! its reflector example and the echo floor of `bench/compare.sh` all send and
//! receive through it; each keeps only its loop and its grouping policy.
//!
//! - [`recv`]: [`RecvHeaders`], one `recvmmsg` into caller-owned slots, and what the
//!   kernel says of each datagram (length, sender, destination, arrival stamp).
//! - [`send`]: [`SendHeaders`] and [`Outgoing`], one `sendmmsg` of datagrams and GSO
//!   groups, each to an address or the connected peer, from a source address or not;
//!   [`send_one`] for a single datagram.
//! - [`cmsg`]: control-message buffers, writing and reading them.
//! - [`addr`]: `sockaddr_storage` ⇄ [`std::net::SocketAddr`].
//!
//! The headers are allocated once and re-pointed per call (cheap stores), so a batch
//! zeroes nothing. The buffers they point at are borrowed only for the call that
//! uses them, which keeps the API safe; every `unsafe` block says why it is sound.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod cmsg;
pub mod recv;
pub mod send;

pub use recv::RecvHeaders;
pub use send::{send_one, Outgoing, SendHeaders, To};

/// Segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS`).
pub const GSO_SEGMENTS_MAX: usize = 64;
/// Payload bytes of one GSO send: a UDP datagram's 64 KiB less room for headers.
pub const GSO_BYTES_MAX: usize = 60_000;

const _: () = assert!(GSO_BYTES_MAX < u16::MAX as usize);

/// True when a GSO send failed because the kernel or the device cannot do it
/// (the caller then sends datagram by datagram for good).
pub fn gso_refused(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Asks the kernel to stamp every datagram `fd` receives with its arrival time
/// (`SO_TIMESTAMPNS`, read back with [`RecvHeaders::stamp`]).
pub fn enable_receive_stamps(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: plain setsockopt with a pointer to a live int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The result of a batched call, with WouldBlock and EINTR as "nothing".
fn quiet(rc: libc::c_int) -> std::io::Result<usize> {
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(0),
        _ => Err(err),
    }
}
