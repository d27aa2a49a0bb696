//! Listening sockets, built with socket2 on the control thread and handed to the
//! shards: every shard gets its own SO_REUSEPORT UDP socket and TCP listener on each
//! bind address:port, so the kernel spreads clients over the shards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{Options, ServerError};
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
    options: &Options,
) -> Result<Vec<ShardSockets>, ServerError> {
    let mut per_shard: Vec<ShardSockets> = (0..shards).map(|_| Vec::new()).collect();
    let mut kept = Vec::new();
    for endpoint in endpoints.drain(..) {
        match open_endpoint(&endpoint, shards, options) {
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

/// Each endpoint's TCP listeners, one per shard in shard order (for
/// `migrate::steer_all`).
pub fn tcp_listeners(per_shard: &[ShardSockets]) -> Vec<(SocketAddr, Vec<RawFd>)> {
    let endpoints = per_shard.first().map_or(0, Vec::len);
    (0..endpoints)
        .filter_map(|e| {
            let addr = per_shard.first()?.get(e)?.addr;
            let fds = per_shard
                .iter()
                .filter_map(|shard| shard.get(e).map(|s| s.tcp.as_raw_fd()))
                .collect();
            Some((addr, fds))
        })
        .collect()
}

fn is_optional(endpoint: &Endpoint, err: &ServerError) -> bool {
    let unspecified_v6 = endpoint.addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    unspecified_v6 && matches!(err, ServerError::Bind { .. })
}

type SocketPair = (Socket, Socket);

fn open_endpoint(
    endpoint: &Endpoint,
    shards: usize,
    options: &Options,
) -> Result<(SocketAddr, Vec<SocketPair>), ServerError> {
    let mut addr = endpoint.addr;
    let mut sockets = Vec::with_capacity(shards);
    let cpus = if options.reuseport_cpu {
        shard_cpus(shards, options.pin)
    } else {
        Vec::new()
    };
    for shard in 0..shards {
        let udp = udp_socket(addr, options, cpus.get(shard).copied())?;
        if addr.port() == 0 {
            addr = local_addr(&udp, addr)?;
        }
        let tcp = tcp_listener(addr)?;
        sockets.push((udp, tcp));
    }
    Ok((addr, sockets))
}

/// The CPU each shard is pinned to, by shard index (as `server::start` places them);
/// empty when shards are not pinned.
fn shard_cpus(shards: usize, pin: bool) -> Vec<usize> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if !pin || cores.is_empty() {
        return Vec::new();
    }
    (0..shards).map(|k| cores[k % cores.len()].id).collect()
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
///
/// `incoming_cpu` (`--reuseport-cpu`): SO_INCOMING_CPU, set before `bind` so the
/// group counts it. The kernel's reuseport hash selection (Linux 6.2+) then prefers
/// the socket of the shard pinned to the CPU that received the datagram. Unlike a
/// reuseport BPF program, which picks sockets by their index in the group, this
/// survives a hand-over: while the old and the new process share the group each CPU
/// still maps to a socket of its own, connected (leaving) sockets are skipped, and
/// when the old sockets close, the kernel's compaction of the group cannot permute
/// the mapping.
fn udp_socket(
    addr: SocketAddr,
    options: &Options,
    incoming_cpu: Option<usize>,
) -> Result<Socket, ServerError> {
    let bind = |source| ServerError::Bind {
        addr,
        proto: "udp",
        source,
    };
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP).map_err(bind)?;
    if let Err(err) = socket.set_recv_buffer_size(options.rcvbuf_bytes) {
        tracing::warn!(%addr, %err, "could not set SO_RCVBUF");
    }
    if let Some(bytes) = options.sndbuf_bytes {
        if let Err(err) = socket.set_send_buffer_size(bytes) {
            tracing::warn!(%addr, %err, "could not set SO_SNDBUF");
        }
    }
    if let Some(usecs) = options.busy_poll_usecs {
        if let Err(err) = set_int(&socket, libc::SOL_SOCKET, libc::SO_BUSY_POLL, usecs as i32) {
            tracing::warn!(%addr, %err, "could not set SO_BUSY_POLL");
        }
    }
    if let Some(cpu) = incoming_cpu {
        let cpu = i32::try_from(cpu).unwrap_or(i32::MAX);
        if let Err(err) = set_int(&socket, libc::SOL_SOCKET, libc::SO_INCOMING_CPU, cpu) {
            tracing::warn!(%addr, %err, "could not set SO_INCOMING_CPU");
        }
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
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    set_int(socket, level, name, 1)
}

fn set_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd and a pointer to a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// The two cores the steering tests pin senders to (they need two).
    fn two_cores() -> Vec<core_affinity::CoreId> {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        assert!(
            cores.len() >= 2,
            "steering by CPU needs 2 CPUs, found {}",
            cores.len()
        );
        cores.into_iter().take(2).collect()
    }

    /// One endpoint on a free loopback port (or `addr`'s), 2 shards, `--reuseport-cpu`.
    fn open_steered(addr: SocketAddr) -> (SocketAddr, Vec<SocketPair>) {
        let options = Options {
            reuseport_cpu: true,
            rcvbuf_bytes: 1 << 20,
            ..Default::default()
        };
        let endpoint = Endpoint {
            addr,
            blocks: vec![0],
        };
        open_endpoint(&endpoint, 2, &options).unwrap()
    }

    /// From a thread pinned to core k, 20 datagrams carrying the byte k.
    fn send_from_each_core(cores: &[core_affinity::CoreId], addr: SocketAddr) {
        for (shard, core) in cores.iter().enumerate() {
            let core = *core;
            std::thread::spawn(move || {
                core_affinity::set_for_current(core);
                let client = UdpSocket::bind("127.0.0.1:0").unwrap();
                for _ in 0..20 {
                    client.send_to(&[shard as u8], addr).unwrap();
                }
            })
            .join()
            .unwrap();
        }
    }

    /// What each socket holds now, read without waiting.
    fn received(sockets: &[SocketPair]) -> Vec<Vec<u8>> {
        sockets
            .iter()
            .map(|(udp, _)| {
                let udp: UdpSocket = udp.try_clone().unwrap().into();
                udp.set_nonblocking(true).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4];
                while let Ok(len) = udp.recv(&mut buf) {
                    got.extend_from_slice(&buf[..len]);
                }
                got
            })
            .collect()
    }

    /// Datagrams sent from a thread pinned to CPU c (loopback: the softirq runs there)
    /// land on the socket of the shard pinned to c.
    #[test]
    fn reuseport_cpu_steers_by_cpu() {
        let cores = two_cores();
        let (addr, sockets) = open_steered("127.0.0.1:0".parse().unwrap());
        send_from_each_core(&cores, addr);
        assert_eq!(received(&sockets), vec![vec![0u8; 20], vec![1u8; 20]]);
    }

    /// A successor's sockets joining the group keep the steering by CPU, the old
    /// sockets once connected (handover.rs) get nothing, and after they close the
    /// mapping is still right (a BPF program's socket indices would be permuted).
    #[test]
    fn reuseport_cpu_steering_survives_a_hand_over() {
        let cores = two_cores();
        let (addr, old) = open_steered("127.0.0.1:0".parse().unwrap());
        let (_, new) = open_steered(addr);
        for (socket, _) in &old {
            use std::os::fd::AsRawFd;
            super::super::handover::leave_group(socket.as_raw_fd(), addr).unwrap();
        }
        send_from_each_core(&cores, addr);
        assert_eq!(received(&old), vec![Vec::<u8>::new(), Vec::new()]);
        assert_eq!(received(&new), vec![vec![0u8; 20], vec![1u8; 20]]);
        drop(old);
        send_from_each_core(&cores, addr);
        assert_eq!(received(&new), vec![vec![0u8; 20], vec![1u8; 20]]);
    }
}
