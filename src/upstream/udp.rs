//! One query over UDP to one upstream: a fresh socket (random source port chosen by
//! the kernel), a random ID, connected so only the upstream's address is accepted,
//! and answers with another ID or question ignored until the caller's deadline.

use std::net::SocketAddr;

use super::UpstreamError;
use crate::engine::UdpSocket;
use crate::limits;
use crate::wire;

/// Sends `query` (its ID is overwritten) to `addr` and returns the first matching answer.
pub async fn exchange(addr: SocketAddr, query: &[u8]) -> Result<Vec<u8>, UpstreamError> {
    let io = |source| UpstreamError::Io { addr, source };
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(io)?;
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
        tracing::debug!(upstream = %addr, "ignored a UDP answer with the wrong ID or question");
    }
}
