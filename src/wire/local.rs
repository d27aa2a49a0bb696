//! Answers a plugin writes itself from local data (`hosts`): the question echoed,
//! AA set, every answer record owned by the question name (a compression pointer)
//! with one TTL, and an OPT when the query had one. Records that do not fit the
//! client's limit are left out and TC is set, as CoreDNS's scrub does.

use super::cursor::{WireError, Writer};
use super::header::{flags, write_opt, Header, CLASS_IN, OPT_BYTES};
use super::query::Query;
use crate::limits::EDNS_UDP_PAYLOAD_BYTES_OURS;

/// A compression pointer to the question name (always at offset 12).
const POINTER_TO_QNAME: u16 = 0xc00c;
/// Owner pointer, type, class, TTL and RDLENGTH.
const RECORD_HEAD_BYTES: usize = 12;

/// Writes a NOERROR answer to `q` whose records are `(type, rdata)` pairs, all with
/// `ttl`, into `out` (whose length is the client's limit); 0 when not even the
/// header and question fit.
pub fn write_local_answer<'r>(
    q: &Query<'_>,
    ttl: u32,
    records: impl Iterator<Item = (u16, &'r [u8])>,
    out: &mut [u8],
) -> usize {
    let mut w = Writer::new(out);
    match write(&mut w, q, ttl, records) {
        Ok(()) => w.len(),
        Err(_) => 0,
    }
}

fn write<'r>(
    w: &mut Writer<'_>,
    q: &Query<'_>,
    ttl: u32,
    records: impl Iterator<Item = (u16, &'r [u8])>,
) -> Result<(), WireError> {
    let mut header = Header {
        id: q.id,
        flags: flags::QR | flags::AA | (q.flags & (flags::OPCODE_MASK | flags::RD | flags::CD)),
        qdcount: 1,
        ancount: 0,
        nscount: 0,
        arcount: u16::from(q.edns.is_some()),
    };
    header.write(w)?;
    w.bytes(q.question())?;
    let reserve = if q.edns.is_some() { OPT_BYTES } else { 0 };
    for (rtype, rdata) in records {
        let need = RECORD_HEAD_BYTES + rdata.len() + reserve;
        let rdlength = u16::try_from(rdata.len()).map_err(|_| WireError::NoSpace)?;
        if w.len() + need > w.capacity() || header.ancount == u16::MAX {
            header.flags |= flags::TC;
            break;
        }
        w.u16(POINTER_TO_QNAME)?;
        w.u16(rtype)?;
        w.u16(CLASS_IN)?;
        w.u32(ttl)?;
        w.u16(rdlength)?;
        w.bytes(rdata)?;
        header.ancount += 1;
    }
    if let Some(edns) = q.edns {
        write_opt(w, EDNS_UDP_PAYLOAD_BYTES_OURS, 0, edns.dnssec_ok)?;
    }
    w.set_u16(2, header.flags)?;
    w.set_u16(6, header.ancount)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::wire::parse_query;

    #[test]
    fn records_then_truncation() {
        let mut packet = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(b"\x04Host\x07example\x00\x00\x01\x00\x01");
        let q = parse_query(&packet).unwrap();
        let addrs: Vec<[u8; 4]> = (0..40u8).map(|i| [10, 0, 0, i]).collect();
        let mut out = [0u8; 512];
        let len = write_local_answer(&q, 60, addrs.iter().map(|a| (1, &a[..])), &mut out);
        let reply = Message::from_vec(&out[..len]).unwrap();
        assert!(reply.authoritative());
        assert!(reply.truncated(), "40 A records do not fit 512 bytes");
        assert_eq!(reply.answers().len(), (512 - 12 - 18) / 16);
        assert_eq!(reply.answers()[0].name().to_string(), "Host.example.");
        assert_eq!(reply.answers()[0].record_type(), RecordType::A);
        assert_eq!(reply.answers()[0].ttl(), 60);
        let len = write_local_answer(&q, 60, addrs[..2].iter().map(|a| (1, &a[..])), &mut out);
        let reply = Message::from_vec(&out[..len]).unwrap();
        assert!(!reply.truncated());
        assert_eq!(reply.answers().len(), 2);
        assert_eq!(
            write_local_answer(&q, 60, std::iter::empty(), &mut out[..20]),
            0
        );
    }
}
