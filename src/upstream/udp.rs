//! One query over UDP to one upstream: a fresh socket (random source port chosen by
//! the kernel, on `source_address` when set), a random ID, connected so only the
//! upstream's address is accepted. An answer with another ID is ignored (it may be a
//! late answer to an earlier socket's query, or a spoof); one with our ID and another
//! question ends the attempt at once, so the caller tries again elsewhere instead of
//! waiting out the read timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::UpstreamError;
use crate::engine::UdpSocket;
use crate::limits;
use crate::wire;

/// Sends `query` (its ID is overwritten) to `addr` from `source` and returns the
/// first answer that matches it.
pub async fn exchange(
    addr: SocketAddr,
    source: Option<IpAddr>,
    query: &[u8],
) -> Result<Vec<u8>, UpstreamError> {
    let io = |source| UpstreamError::Io { addr, source };
    let socket = UdpSocket::bind(local_addr(addr, source)).map_err(io)?;
    socket.connect(addr).await.map_err(io)?;
    let id: u16 = rand::random();
    let mut message = query.to_vec();
    wire::set_message_id(&mut message, id);
    socket.send(&message).await.map_err(io)?;
    let mut answer = vec![0u8; limits::UDP_PAYLOAD_BYTES_MAX];
    loop {
        let len = socket.recv(&mut answer).await.map_err(io)?;
        let got = answer.get(..len).unwrap_or_default();
        if wire::answer_matches(&message, got, id) {
            answer.truncate(len);
            return Ok(answer);
        }
        if wire::message_id(got) == Some(id) {
            return Err(UpstreamError::WrongQuestion(addr));
        }
        tracing::debug!(upstream = %addr, "ignored a UDP answer with another ID");
    }
}

/// Where an upstream socket binds: `source` with an ephemeral port, else the
/// unspecified address of `upstream`'s family.
pub fn local_addr(upstream: SocketAddr, source: Option<IpAddr>) -> SocketAddr {
    let ip = source.unwrap_or(match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    });
    (ip, 0).into()
}
