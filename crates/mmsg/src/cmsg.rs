//! Control messages: a buffer aligned for `cmsghdr`, appending one (`UDP_SEGMENT`,
//! a source address), and reading the ones the kernel wrote (destination address,
//! arrival stamp).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Room for one IP_PKTINFO or IPV6_PKTINFO control message and a UDP_SEGMENT one,
/// or one SCM_TIMESTAMPNS.
pub const CONTROL_BYTES: usize = 64;
// SAFETY: CMSG_SPACE is arithmetic.
const _: () = assert!(
    unsafe {
        libc::CMSG_SPACE(std::mem::size_of::<libc::in6_pktinfo>() as u32)
            + libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32)
    } as usize
        <= CONTROL_BYTES
);
// SAFETY: CMSG_SPACE is arithmetic.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::timespec>() as u32) } as usize
        <= CONTROL_BYTES
);

/// A control-message buffer aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Control(pub [u8; CONTROL_BYTES]);

impl Default for Control {
    fn default() -> Self {
        Control([0; CONTROL_BYTES])
    }
}

/// Appends a control message (`level`, `kind`, then `data`'s bytes) at `offset` of
/// `control`; returns where the control data now ends, or `offset` when it does not
/// fit. `offset` must be 0 or a value this returned (aligned for the next header).
pub fn append<T: Copy>(
    control: &mut Control,
    offset: usize,
    level: libc::c_int,
    kind: libc::c_int,
    data: T,
) -> usize {
    let data_len = std::mem::size_of::<T>() as u32;
    // SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic.
    let (space, len) = unsafe { (libc::CMSG_SPACE(data_len), libc::CMSG_LEN(data_len)) };
    let end = offset + space as usize;
    if end > CONTROL_BYTES {
        return offset;
    }
    // SAFETY: `offset..end` lies within `control`; the header and the data after it
    // (CMSG_DATA is the header's aligned end) fit in CMSG_SPACE bytes, and both are
    // written unaligned.
    unsafe {
        let cmsg = control.0.as_mut_ptr().add(offset).cast::<libc::cmsghdr>();
        let header = libc::cmsghdr {
            cmsg_len: len as usize,
            cmsg_level: level,
            cmsg_type: kind,
        };
        std::ptr::write_unaligned(cmsg, header);
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<T>(), data);
    }
    end
}

/// Appends a UDP_SEGMENT control message (`segment` bytes per datagram) at `offset`.
pub fn write_segment(control: &mut Control, offset: usize, segment: u16) -> usize {
    append(control, offset, libc::SOL_UDP, libc::UDP_SEGMENT, segment)
}

/// Appends a control message that sets the source address at `offset`.
pub fn write_source(control: &mut Control, offset: usize, local: IpAddr) -> usize {
    match local {
        IpAddr::V4(ip) => {
            // SAFETY: in_pktinfo is plain old data; all-zero is a valid value.
            let mut info: libc::in_pktinfo = unsafe { std::mem::zeroed() };
            info.ipi_spec_dst.s_addr = u32::from(ip).to_be();
            append(control, offset, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
        }
        IpAddr::V6(ip) => {
            // SAFETY: in6_pktinfo is plain old data; all-zero is a valid value.
            let mut info: libc::in6_pktinfo = unsafe { std::mem::zeroed() };
            info.ipi6_addr.s6_addr = ip.octets();
            append(
                control,
                offset,
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                info,
            )
        }
    }
}

/// The destination address from an IP_PKTINFO / IPV6_PKTINFO control message.
///
/// # Safety
/// `hdr` must describe a control buffer the kernel filled (or none: length 0).
pub unsafe fn destination(hdr: &libc::msghdr) -> Option<IpAddr> {
    if hdr.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the caller promises a kernel-filled control buffer, so the CMSG_*
    // macros walk headers the kernel wrote inside it, and each payload read is of
    // the type its level and kind announce (unaligned reads: cmsg data has no
    // alignment guarantee for these structs).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                let info =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
                return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::in6_pktinfo);
                return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// The `SCM_TIMESTAMPNS` of a received message (seconds, nanoseconds), if any.
///
/// # Safety
/// `hdr` must describe a control buffer the kernel filled (or none: length 0).
pub unsafe fn receive_stamp(hdr: &libc::msghdr) -> Option<(i64, i64)> {
    if hdr.msg_controllen == 0 {
        return None;
    }
    // SAFETY: as in `destination`: the kernel wrote these headers, and a
    // SCM_TIMESTAMPNS payload is a timespec (read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some((ts.tv_sec, ts.tv_nsec));
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}
