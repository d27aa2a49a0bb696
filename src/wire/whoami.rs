//! The `whoami` answer (CoreDNS's plugin): no answer records; the additional section
//! carries the client's address as A or AAAA and its port and transport as
//! `_udp.<qname>` / `_tcp.<qname>` SRV `0 0 PORT .`, all with TTL 0 and AA set.

use std::net::{IpAddr, SocketAddr};

use super::cursor::{WireError, Writer};
use super::header::{flags, write_opt, Header, CLASS_IN};
use super::query::Query;
use crate::limits::EDNS_UDP_PAYLOAD_BYTES_OURS;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
/// A compression pointer to the question name (always at offset 12).
const POINTER_TO_QNAME: u16 = 0xc00c;

/// Writes the whoami reply to `q` from `client` into `out`; 0 when it does not fit.
pub fn write_whoami(q: &Query<'_>, client: SocketAddr, tcp: bool, out: &mut [u8]) -> usize {
    let mut w = Writer::new(out);
    match write(&mut w, q, client, tcp) {
        Ok(()) => w.len(),
        Err(_) => 0,
    }
}

fn write(
    w: &mut Writer<'_>,
    q: &Query<'_>,
    client: SocketAddr,
    tcp: bool,
) -> Result<(), WireError> {
    let header = Header {
        id: q.id,
        flags: flags::QR | flags::AA | (q.flags & (flags::OPCODE_MASK | flags::RD | flags::CD)),
        qdcount: 1,
        ancount: 0,
        nscount: 0,
        arcount: 2 + u16::from(q.edns.is_some()),
    };
    header.write(w)?;
    w.bytes(q.question())?;
    // The address record, owned by the question name.
    w.u16(POINTER_TO_QNAME)?;
    match client.ip() {
        IpAddr::V4(ip) => {
            record_header(w, TYPE_A, 4)?;
            w.bytes(&ip.octets())?;
        }
        IpAddr::V6(ip) => {
            record_header(w, TYPE_AAAA, 16)?;
            w.bytes(&ip.octets())?;
        }
    }
    // `_udp` or `_tcp` label, then a pointer to the question name.
    w.u8(4)?;
    w.bytes(if tcp { b"_tcp" } else { b"_udp" })?;
    w.u16(POINTER_TO_QNAME)?;
    record_header(w, TYPE_SRV, 7)?;
    w.u16(0)?; // priority
    w.u16(0)?; // weight
    w.u16(client.port())?;
    w.u8(0)?; // target "."
    if let Some(edns) = q.edns {
        write_opt(w, EDNS_UDP_PAYLOAD_BYTES_OURS, 0, edns.dnssec_ok)?;
    }
    Ok(())
}

fn record_header(w: &mut Writer<'_>, rtype: u16, rdlength: u16) -> Result<(), WireError> {
    w.u16(rtype)?;
    w.u16(CLASS_IN)?;
    w.u32(0)?;
    w.u16(rdlength)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Message;
    use hickory_proto::rr::{RData, RecordType};

    use super::*;
    use crate::wire::parse_query;

    fn query(name: &[u8], edns: bool) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0x80, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn reports_address_port_and_transport() {
        let packet = query(b"\x07Example\x03org\x00", true);
        let q = parse_query(&packet).unwrap();
        let mut out = [0u8; 512];
        let client: SocketAddr = "10.240.0.1:40212".parse().unwrap();
        let len = write_whoami(&q, client, false, &mut out);
        let reply = Message::from_vec(&out[..len]).unwrap();
        assert_eq!(reply.id(), 0xabcd);
        assert!(reply.authoritative());
        assert!(reply.answers().is_empty());
        assert_eq!(reply.queries()[0].name().to_string(), "Example.org.");
        let extra = reply.additionals();
        assert_eq!(extra.len(), 2);
        assert_eq!(extra[0].record_type(), RecordType::A);
        assert_eq!(
            extra[0].data(),
            &RData::A("10.240.0.1".parse::<std::net::Ipv4Addr>().unwrap().into())
        );
        assert_eq!(extra[1].name().to_string(), "_udp.Example.org.");
        match extra[1].data() {
            RData::SRV(srv) => assert_eq!(srv.port(), 40212),
            other => panic!("not SRV: {other:?}"),
        }
        assert!(reply
            .extensions()
            .as_ref()
            .is_some_and(|e| e.flags().dnssec_ok));
    }

    #[test]
    fn ipv6_over_tcp() {
        let packet = query(b"\x00", false);
        let q = parse_query(&packet).unwrap();
        let mut out = [0u8; 512];
        let len = write_whoami(&q, "[fd00::10]:53000".parse().unwrap(), true, &mut out);
        let reply = Message::from_vec(&out[..len]).unwrap();
        assert_eq!(reply.additionals()[0].record_type(), RecordType::AAAA);
        assert_eq!(reply.additionals()[1].name().to_string(), "_tcp.");
        assert_eq!(
            write_whoami(&q, "[::1]:1".parse().unwrap(), true, &mut out[..20]),
            0
        );
    }
}
