//! Programs, ports and readiness: what every harness needs before its first query.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `name` found in PATH or in the sbin directories (knotd lives in /usr/sbin).
/// Panics naming the Debian `package` to install (`ci/deps.sh` installs them all):
/// a missing tool fails the test, it never skips it.
pub fn find_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} not found in PATH or sbin: install the Debian package {package} (ci/deps.sh does)"
    );
}

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

/// True when `addr` answers `. IN NS` over UDP within `timeout` (any rcode).
pub fn answers(addr: SocketAddr, timeout: Duration) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = UdpSocket::bind(bind) else {
        return false;
    };
    let id = std::process::id() as u16;
    let query = dnswire::root_ns_query(id);
    if socket.set_read_timeout(Some(timeout)).is_err() || socket.send_to(&query, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(socket.recv_from(&mut buf), Ok((len, from)) if from == addr
        && dnswire::answer_matches(&query, buf.get(..len).unwrap_or_default(), id))
}

/// Polls `done` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
