//! One `sendmmsg` of datagrams and GSO groups, and a single `sendmsg`.
//!
//! [`SendHeaders`] are allocated once; [`SendHeaders::batch`] starts an
//! [`Outgoing`] that borrows the payloads until it is sent, so no header can point
//! at a buffer that is gone. A message of several payloads is a GSO send: the
//! kernel splits it into datagrams of the first payload's length.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use crate::addr;
use crate::cmsg::{self, Control};

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The socket's connected peer.
    Connected,
    /// This address.
    Addr(SocketAddr),
}

/// The headers of one `sendmmsg` call and the addresses and control data they
/// point at, for up to `capacity` payloads.
pub struct SendHeaders {
    iovecs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    /// Payloads (datagrams) of each message: more than one is a GSO send.
    segments: Box<[usize]>,
}

impl SendHeaders {
    /// Headers for up to `capacity` payloads in as many messages.
    pub fn new(capacity: usize) -> Self {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is a valid value.
        let (iovec, msg): (libc::iovec, libc::mmsghdr) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        SendHeaders {
            iovecs: vec![iovec; capacity].into_boxed_slice(),
            msgs: vec![msg; capacity].into_boxed_slice(),
            names: vec![addr::zeroed_storage(); capacity].into_boxed_slice(),
            controls: vec![Control::default(); capacity].into_boxed_slice(),
            segments: vec![0; capacity].into_boxed_slice(),
        }
    }

    /// Starts a batch whose payloads live at least as long as `'p`.
    pub fn batch<'p>(&mut self) -> Outgoing<'_, 'p> {
        Outgoing {
            headers: self,
            msgs: 0,
            iovecs: 0,
            open: 0,
            _payloads: PhantomData,
        }
    }
}

/// A batch being filled: payloads are added with [`Outgoing::payload`], then
/// [`Outgoing::close`] makes the payloads since the last close one message.
pub struct Outgoing<'h, 'p> {
    headers: &'h mut SendHeaders,
    /// Messages closed.
    msgs: usize,
    /// Payloads added.
    iovecs: usize,
    /// First payload of the message being built.
    open: usize,
    /// The payloads the iovecs point at.
    _payloads: PhantomData<&'p [u8]>,
}

/// What one `sendmmsg` took: messages, and the payloads (datagrams) in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sent {
    pub messages: usize,
    pub datagrams: usize,
}

impl<'p> Outgoing<'_, 'p> {
    /// Adds a payload to the message being built; false when the batch is full.
    pub fn payload(&mut self, bytes: &'p [u8]) -> bool {
        let Some(iovec) = self.headers.iovecs.get_mut(self.iovecs) else {
            return false;
        };
        *iovec = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        self.iovecs += 1;
        true
    }

    /// Closes the payloads added since the last close into one message to `to`,
    /// from source address `from` (a pktinfo, when given); several payloads of
    /// `segment` bytes each (the last may be shorter) make it a GSO send. False
    /// (the payloads dropped) when no payload was added or the batch is full.
    pub fn close(&mut self, to: To, from: Option<IpAddr>, segment: u16) -> bool {
        let (first, count) = (self.open, self.iovecs - self.open);
        self.open = self.iovecs;
        let h = &mut *self.headers;
        let (Some(msg), Some(name), Some(control), Some(segments)) = (
            h.msgs.get_mut(self.msgs),
            h.names.get_mut(self.msgs),
            h.controls.get_mut(self.msgs),
            h.segments.get_mut(self.msgs),
        ) else {
            return false;
        };
        if count == 0 {
            return false;
        }
        let hdr = &mut msg.msg_hdr;
        (hdr.msg_name, hdr.msg_namelen) = match to {
            To::Connected => (std::ptr::null_mut(), 0),
            To::Addr(addr) => {
                let len = addr::write_socket_addr(addr, name);
                ((name as *mut libc::sockaddr_storage).cast(), len)
            }
        };
        hdr.msg_iov = &mut h.iovecs[first];
        hdr.msg_iovlen = count;
        let mut control_len = from.map_or(0, |local| cmsg::write_source(control, 0, local));
        if count > 1 {
            // Always fits after a pktinfo (CONTROL_BYTES is checked at compile time).
            control_len = cmsg::write_segment(control, control_len, segment);
        }
        (hdr.msg_control, hdr.msg_controllen) = match control_len {
            0 => (std::ptr::null_mut(), 0),
            len => (control.0.as_mut_ptr().cast(), len),
        };
        *segments = count;
        self.msgs += 1;
        true
    }

    /// Messages closed so far.
    pub fn messages(&self) -> usize {
        self.msgs
    }

    /// Sends the closed messages with one `sendmmsg(flags)`. WouldBlock and EINTR
    /// are nothing sent; other errors are returned (e.g. ECONNREFUSED after an
    /// ICMP port unreachable, or a refused GSO send: see [`crate::gso_refused`]).
    pub fn send(self, fd: RawFd, flags: libc::c_int) -> std::io::Result<Sent> {
        if self.msgs == 0 {
            return Ok(Sent::default());
        }
        // SAFETY: the first `msgs` headers were set by `close` and point at iovecs,
        // addresses and control data in `headers`, and at payloads borrowed for
        // `'p`; all outlive the call, and the kernel only reads them.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.msgs.as_mut_ptr(),
                self.msgs as libc::c_uint,
                flags,
            )
        };
        let messages = crate::quiet(rc)?.min(self.msgs);
        let datagrams = self.headers.segments.iter().take(messages).sum();
        Ok(Sent {
            messages,
            datagrams,
        })
    }
}

/// Sends one datagram outside a batch with `sendmsg(flags)`, to `to`, from source
/// address `from` when given.
pub fn send_one(
    fd: RawFd,
    payload: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
    flags: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: all-zero is a valid msghdr; every pointer set below targets a local
    // that outlives the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    let mut name = addr::zeroed_storage();
    let mut control = Control::default();
    let mut iovec = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    hdr.msg_namelen = addr::write_socket_addr(to, &mut name);
    hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    hdr.msg_iov = &mut iovec;
    hdr.msg_iovlen = 1;
    let control_len = from.map_or(0, |local| cmsg::write_source(&mut control, 0, local));
    if control_len > 0 {
        hdr.msg_control = control.0.as_mut_ptr().cast();
        hdr.msg_controllen = control_len;
    }
    // SAFETY: hdr is fully initialised and points at live locals; the kernel only
    // reads them.
    let sent = unsafe { libc::sendmsg(fd, &hdr, flags) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecvHeaders;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    }

    #[test]
    fn batch_out_gso_and_back() {
        let (a, b) = (socket(), socket());
        let to = To::Addr(b.local_addr().unwrap());
        let payloads = [[1u8; 100], [2; 100], [3; 100]];
        let mut headers = SendHeaders::new(8);
        let mut out = headers.batch();
        assert!(out.payload(&payloads[0]) && out.close(to, None, 100));
        assert!(out.payload(&payloads[1]) && out.payload(&payloads[2][..40]));
        assert!(out.close(to, Some("127.0.0.1".parse().unwrap()), 100));
        assert!(!out.close(to, None, 0), "an empty message is refused");
        let sent = match out.send(a.as_raw_fd(), 0) {
            Err(e) if crate::gso_refused(&e) => return, // no GSO here: nothing to check
            other => other.unwrap(),
        };
        assert_eq!(
            sent,
            Sent {
                messages: 2,
                datagrams: 3
            }
        );
        let mut slots = vec![[0u8; 256]; 4];
        let mut recv = RecvHeaders::new(4, true, false);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = recv
                .receive(
                    b.as_raw_fd(),
                    slots.iter_mut().map(|s| &mut s[..]),
                    4,
                    libc::MSG_WAITFORONE,
                )
                .unwrap();
            assert!(n > 0, "datagrams arrive");
            for (i, slot) in slots.iter().enumerate().take(n) {
                assert_eq!(recv.source(i), Some(a.local_addr().unwrap()));
                got.push((recv.len(i), slot[0]));
            }
        }
        assert_eq!(got, [(100, 1), (100, 2), (40, 3)]);
    }

    #[test]
    fn one_datagram_and_a_reply_in_place() {
        let (a, b) = (socket(), socket());
        send_one(a.as_raw_fd(), b"ping", b.local_addr().unwrap(), None, 0).unwrap();
        let mut slot = [0u8; 64];
        let mut recv = RecvHeaders::new(2, true, false);
        let n = recv
            .receive(b.as_raw_fd(), [&mut slot[..]], 2, libc::MSG_WAITFORONE)
            .unwrap();
        assert_eq!((n, recv.len(0), recv.len(1)), (1, 4, 0));
        slot[0] = b'P';
        assert_eq!(recv.reply(b.as_raw_fd(), [&slot[..4]], 0).unwrap(), 1);
        let mut buf = [0u8; 8];
        assert_eq!(a.recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"Ping");
        // Nothing waiting: no error, nothing received.
        assert_eq!(
            recv.receive(b.as_raw_fd(), [&mut slot[..]], 2, libc::MSG_DONTWAIT)
                .unwrap(),
            0
        );
    }
}
