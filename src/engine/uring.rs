//! The io_uring engine: glommio, one `LocalExecutor` per shard thread. Only what
//! differs from the facade's direct calls lives here (starting a shard, taking
//! sockets the server opened).

use std::future::Future;
use std::os::fd::{FromRawFd, IntoRawFd};

use glommio::{LocalExecutorBuilder, Placement};

use super::ShardSpec;

/// Starts a glommio executor for the shard (pinned when `spec.core` says so); the
/// returned thread ends when the executor does.
pub fn spawn_shard<F, Fut>(
    spec: &ShardSpec,
    body: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let placement = match spec.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let executor = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{}", spec.index))
        .io_memory(spec.io_memory_bytes)
        .spawn(body)
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    Ok(std::thread::spawn(move || {
        let _ = executor.join();
    }))
}

/// A glommio UDP socket for `socket` (blocking or not: io_uring does not care).
pub fn udp_from(socket: socket2::Socket) -> glommio::net::UdpSocket {
    // SAFETY: the fd comes from a socket we own and give up here.
    unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) }
}

/// A glommio stream connecting from `local` to `peer`: the connect is started
/// non-blocking and io_uring's first send or receive on the socket waits for it.
pub fn connect_from(
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> std::io::Result<glommio::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&local.into())?;
    socket.set_nonblocking(true)?;
    match socket.connect(&peer.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    // SAFETY: the fd comes from a socket we own and give up here.
    Ok(unsafe { glommio::net::TcpStream::from_raw_fd(socket.into_raw_fd()) })
}

/// A glommio listener for the listening `socket`.
pub fn listener_from(socket: socket2::Socket) -> glommio::net::TcpListener {
    // SAFETY: the fd comes from a socket we own and give up here.
    unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) }
}
