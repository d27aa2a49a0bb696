//! One `recvmmsg` into caller-owned slots, and what the kernel says of each datagram.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

use crate::addr;
use crate::cmsg::{self, Control, CONTROL_BYTES};

/// The headers of one `recvmmsg` call, allocated once for `capacity` datagrams. Each
/// header points at its iovec, address and control buffer for good (boxed slices do
/// not move); a call only re-points the iovecs at the caller's slots and resets the
/// lengths the kernel overwrote. Sender addresses and control data (pktinfo, stamps)
/// are kept only when asked for at construction.
pub struct RecvHeaders {
    iovecs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    /// Sender addresses (empty: not asked for, e.g. a connected socket).
    names: Box<[libc::sockaddr_storage]>,
    /// Control buffers (empty: not asked for).
    controls: Box<[Control]>,
    /// Datagrams the last call received.
    count: usize,
}

impl RecvHeaders {
    /// Headers for up to `capacity` datagrams per call, with room for each sender's
    /// address (`names`) and control messages (`control`) when asked.
    pub fn new(capacity: usize, names: bool, control: bool) -> Self {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is a valid value
        // (null pointers, zero lengths).
        let (iovec, msg): (libc::iovec, libc::mmsghdr) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let mut headers = RecvHeaders {
            iovecs: vec![iovec; capacity].into_boxed_slice(),
            msgs: vec![msg; capacity].into_boxed_slice(),
            names: vec![addr::zeroed_storage(); if names { capacity } else { 0 }]
                .into_boxed_slice(),
            controls: vec![Control::default(); if control { capacity } else { 0 }]
                .into_boxed_slice(),
            count: 0,
        };
        let slots = headers.msgs.iter_mut().zip(headers.iovecs.iter_mut());
        for (i, (msg, iovec)) in slots.enumerate() {
            let hdr = &mut msg.msg_hdr;
            hdr.msg_iov = iovec;
            hdr.msg_iovlen = 1;
            if let Some(name) = headers.names.get_mut(i) {
                hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            }
            if let Some(control) = headers.controls.get_mut(i) {
                hdr.msg_control = control.0.as_mut_ptr().cast();
            }
        }
        headers
    }

    /// Datagrams one call reads at most.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Receives up to `max` datagrams (at most the capacity and the slots given),
    /// datagram `i` into the `i`th slot, with one `recvmmsg(flags)`; how many came.
    /// WouldBlock and EINTR are `Ok(0)`.
    pub fn receive<'s>(
        &mut self,
        fd: RawFd,
        slots: impl IntoIterator<Item = &'s mut [u8]>,
        max: usize,
        flags: libc::c_int,
    ) -> std::io::Result<usize> {
        let mut pointed = 0;
        let headers = self.iovecs.iter_mut().zip(self.msgs.iter_mut());
        for (slot, (iovec, msg)) in slots.into_iter().zip(headers).take(max) {
            *iovec = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            // The kernel overwrote the lengths of the last call's headers.
            let hdr = &mut msg.msg_hdr;
            if !hdr.msg_name.is_null() {
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            if !hdr.msg_control.is_null() {
                hdr.msg_controllen = CONTROL_BYTES;
            }
            pointed += 1;
        }
        self.count = 0;
        if pointed == 0 {
            return Ok(0);
        }
        // SAFETY: the first `pointed` headers point at iovecs just pointed at the
        // caller's slots (exclusively borrowed for this call) and at address and
        // control buffers owned by `self` (set in `new`, never moved); the kernel
        // writes within the lengths given.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                pointed as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        self.count = crate::quiet(rc)?.min(pointed);
        Ok(self.count)
    }

    /// Bytes of datagram `i` of the last call (0 beyond it), at most its slot.
    pub fn len(&self, i: usize) -> usize {
        match self.msgs.get(i).filter(|_| i < self.count) {
            Some(m) => (m.msg_len as usize).min(self.iovecs[i].iov_len),
            None => 0,
        }
    }

    /// True when the last call received nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The sender of datagram `i` (`None` without names, or an unknown family).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        self.names
            .get(i)
            .filter(|_| i < self.count)
            .and_then(addr::to_socket_addr)
    }

    /// The address datagram `i` was sent to (IP_PKTINFO / IPV6_PKTINFO enabled on
    /// the socket and control buffers asked for).
    pub fn destination(&self, i: usize) -> Option<IpAddr> {
        let hdr = self.filled_control(i)?;
        // SAFETY: `filled_control` returns only headers whose control buffer the
        // kernel filled in the last call.
        unsafe { cmsg::destination(hdr) }
    }

    /// The kernel's arrival stamp of datagram `i` (SO_TIMESTAMPNS), if any.
    pub fn stamp(&self, i: usize) -> Option<(i64, i64)> {
        let hdr = self.filled_control(i)?;
        // SAFETY: as in `destination`.
        unsafe { cmsg::receive_stamp(hdr) }
    }

    fn filled_control(&self, i: usize) -> Option<&libc::msghdr> {
        (i < self.count && i < self.controls.len()).then(|| &self.msgs[i].msg_hdr)
    }

    /// Sends each of the first `replies.len()` datagrams of the last call back to
    /// its sender with one `sendmmsg(flags)`: reply `i` is `replies[i]`
    /// (typically the received slot, changed in place). Needs sender names.
    pub fn reply<'r>(
        &mut self,
        fd: RawFd,
        replies: impl IntoIterator<Item = &'r [u8]>,
        flags: libc::c_int,
    ) -> std::io::Result<usize> {
        let mut pointed = 0;
        for (i, reply) in replies
            .into_iter()
            .take(self.count.min(self.names.len()))
            .enumerate()
        {
            self.iovecs[i] = libc::iovec {
                iov_base: reply.as_ptr() as *mut libc::c_void,
                iov_len: reply.len(),
            };
            // No control data on the way back (the next receive restores the length).
            self.msgs[i].msg_hdr.msg_controllen = 0;
            pointed = i + 1;
        }
        if pointed == 0 {
            return Ok(0);
        }
        // SAFETY: the first `pointed` headers point at the replies (borrowed for
        // this call) and at the sender addresses recvmmsg wrote, with the lengths
        // it set; the kernel only reads them.
        let rc =
            unsafe { libc::sendmmsg(fd, self.msgs.as_mut_ptr(), pointed as libc::c_uint, flags) };
        crate::quiet(rc)
    }
}
