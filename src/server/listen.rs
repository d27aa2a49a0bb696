//! Listening sockets, built with socket2 on the control thread and handed to the
//! shards: every shard gets its own SO_REUSEPORT UDP socket and TCP listener on each
//! bind address:port, so the kernel spreads clients over the shards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::ServerError;
use crate::config::Config;
use crate::limits;

/// One address:port the configuration listens on, and the server blocks behind it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Indices into `Config::servers` of the blocks that serve this endpoint.
    pub blocks: Vec<usize>,
}

/// One shard's sockets for one endpoint.
pub struct EndpointSockets {
    pub addr: SocketAddr,
    pub udp: Socket,
    pub tcp: Socket,
}

/// The sockets of one shard, in the order of the endpoints.
pub type ShardSockets = Vec<EndpointSockets>;

/// The endpoints of a configuration: each block's bind addresses (the wildcards of
/// both families when it has none) on its port.
pub fn endpoints(config: &Config) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (index, block) in config.servers.iter().enumerate() {
        let wildcard = [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ];
        let addrs = if block.bind.is_empty() {
            &wildcard[..]
        } else {
            &block.bind[..]
        };
        for &ip in addrs {
            let addr = SocketAddr::new(ip, block.port);
            match endpoints.iter_mut().find(|e| e.addr == addr) {
                Some(endpoint) => endpoint.blocks.push(index),
                None => endpoints.push(Endpoint {
                    addr,
                    blocks: vec![index],
                }),
            }
        }
    }
    // A wildcard endpoint also serves the blocks bound to specific addresses of its
    // port only when the kernel hands it their packets, which it does not: specific
    // binds win. Nothing to merge.
    endpoints
}

/// Opens every endpoint's sockets for `shards` shards. A port of 0 is resolved by the
/// first socket so every shard shares it. Wildcard IPv6 endpoints are skipped with a
/// warning when the host has no IPv6.
pub fn open(
    endpoints: &mut Vec<Endpoint>,
    shards: usize,
    rcvbuf_bytes: usize,
) -> Result<Vec<ShardSockets>, ServerError> {
    let mut per_shard: Vec<ShardSockets> = (0..shards).map(|_| Vec::new()).collect();
    let mut kept = Vec::new();
    for endpoint in endpoints.drain(..) {
        match open_endpoint(&endpoint, shards, rcvbuf_bytes) {
            Ok((addr, sockets)) => {
                for (shard, (udp, tcp)) in per_shard.iter_mut().zip(sockets) {
                    shard.push(EndpointSockets { addr, udp, tcp });
                }
                kept.push(Endpoint {
                    addr,
                    blocks: endpoint.blocks,
                });
            }
            Err(err) if is_optional(&endpoint, &err) => {
                tracing::warn!(%err, "skipping the IPv6 wildcard listener");
            }
            Err(err) => return Err(err),
        }
    }
    *endpoints = kept;
    Ok(per_shard)
}

fn is_optional(endpoint: &Endpoint, err: &ServerError) -> bool {
    let unspecified_v6 = endpoint.addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    unspecified_v6 && matches!(err, ServerError::Bind { .. })
}

type SocketPair = (Socket, Socket);

fn open_endpoint(
    endpoint: &Endpoint,
    shards: usize,
    rcvbuf_bytes: usize,
) -> Result<(SocketAddr, Vec<SocketPair>), ServerError> {
    let mut addr = endpoint.addr;
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let udp = udp_socket(addr, rcvbuf_bytes)?;
        if addr.port() == 0 {
            addr = local_addr(&udp, addr)?;
        }
        let tcp = tcp_listener(addr)?;
        sockets.push((udp, tcp));
    }
    Ok((addr, sockets))
}

fn local_addr(socket: &Socket, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or(ServerError::Bind {
            addr,
            proto: "udp",
            source: std::io::Error::other("no local address"),
        })
}

fn new_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A UDP socket; on a wildcard address it also asks for the destination address of
/// each datagram (IP_PKTINFO / IPV6_RECVPKTINFO) so answers leave from it.
fn udp_socket(addr: SocketAddr, rcvbuf_bytes: usize) -> Result<Socket, ServerError> {
    let bind = |source| ServerError::Bind {
        addr,
        proto: "udp",
        source,
    };
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP).map_err(bind)?;
    if let Err(err) = socket.set_recv_buffer_size(rcvbuf_bytes) {
        tracing::warn!(%addr, %err, "could not set SO_RCVBUF");
    }
    if addr.ip().is_unspecified() {
        set_pktinfo(&socket, addr.is_ipv6()).map_err(bind)?;
    }
    socket.bind(&SockAddr::from(addr)).map_err(bind)?;
    Ok(socket)
}

fn tcp_listener(addr: SocketAddr) -> Result<Socket, ServerError> {
    let bind = |source| ServerError::Bind {
        addr,
        proto: "tcp",
        source,
    };
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP).map_err(bind)?;
    socket.set_nodelay(true).map_err(bind)?;
    socket.bind(&SockAddr::from(addr)).map_err(bind)?;
    socket.listen(limits::TCP_BACKLOG).map_err(bind)?;
    Ok(socket)
}

fn set_pktinfo(socket: &Socket, v6: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: a valid fd and a pointer to a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
