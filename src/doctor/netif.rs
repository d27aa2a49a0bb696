//! The node's links and addresses, read only: getifaddrs(3) for the addresses and
//! /sys/class/net for the link, so the doctor needs no `ip` binary in the image.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses per interface name.
pub fn addresses() -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points at a sockaddr whose family says its real type.
        let ip = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                }
                _ => None,
            }
        };
        let slot = out.entry(name).or_default();
        if let Some(ip) = ip {
            slot.push(ip);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Whether link `name` exists, and whether it is administratively up.
pub fn link(name: &str) -> Option<bool> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & libc::IFF_UP as u32 != 0)
}

/// The interface holding `ip`, if any.
pub fn holder(all: &BTreeMap<String, Vec<IpAddr>>, ip: IpAddr) -> Option<&str> {
    all.iter()
        .find(|(_, ips)| ips.contains(&ip))
        .map(|(name, _)| name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_seen() {
        let all = addresses();
        assert_eq!(holder(&all, "127.0.0.1".parse().unwrap()), Some("lo"));
        assert_eq!(link("lo"), Some(true));
        assert_eq!(link("no-such-link0"), None);
        assert_eq!(link("../etc"), None);
    }
}
