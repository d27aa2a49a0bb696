//! Helpers the test suites share (the unit tests and `tests/*`), kept in the library
//! so there is one of each.

use std::net::{TcpListener, UdpSocket};

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call (a server
/// listens on both). A UDP port the kernel picks may be the local port of another
/// test's TCP connection, so TCP is checked too.
///
/// # Panics
/// When 100 ports in a row are taken for TCP.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binding an ephemeral UDP port");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 100 tries");
}
