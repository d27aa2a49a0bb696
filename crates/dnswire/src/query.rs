//! Client queries: the cheap checks that decide drop / error reply / serve, the
//! zero-copy [`Query`] view, and the two messages we derive from a query without
//! parsing it again: an error reply and the query we send upstream.

use super::cursor::{Reader, WireError, Writer};
use super::header::{
    flags, read_additional_opt, skip_record, write_opt, Edns, Header, Rcode, CLASS_IN, HEADER_BYTES,
};
use crate::limits::{EDNS_UDP_PAYLOAD_BYTES_OURS, UDP_PAYLOAD_BYTES_LEGACY, UDP_PAYLOAD_BYTES_MAX};

/// A query that passed every check, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub packet: &'a [u8],
    pub id: u16,
    /// The raw header flags word.
    pub flags: u16,
    /// Question name in wire form, exactly as sent (client's case, no pointers).
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past QTYPE/QCLASS.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl<'a> Query<'a> {
    pub fn rd(&self) -> bool {
        self.flags & flags::RD != 0
    }

    pub fn cd(&self) -> bool {
        self.flags & flags::CD != 0
    }

    pub fn ad(&self) -> bool {
        self.flags & flags::AD != 0
    }

    /// The EDNS DO bit (false without EDNS).
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags & flags::OPCODE_MASK) >> flags::OPCODE_SHIFT) as u8
    }

    /// Largest UDP reply the client accepts: its EDNS size clamped to
    /// [512, `UDP_PAYLOAD_BYTES_MAX`], 512 without EDNS.
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(UDP_PAYLOAD_BYTES_LEGACY, |e| {
            usize::from(e.udp_size).clamp(UDP_PAYLOAD_BYTES_LEGACY, UDP_PAYLOAD_BYTES_MAX)
        })
    }

    /// The question section's bytes (name, type, class), as sent.
    pub fn question(&self) -> &'a [u8] {
        self.packet
            .get(HEADER_BYTES..self.question_end)
            .unwrap_or(&[])
    }
}

/// Why a packet is dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a header.
    ShortHeader,
    /// QR=1: a response, never answered (prevents reflection loops).
    Response,
}

/// What to do with a packet that is not a servable query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Drop(DropReason),
    /// Answer with [`write_error_reply`] and this rcode.
    Reply(Rcode),
}

const FORMERR: Rejection = Rejection::Reply(Rcode::FormErr);

/// Checks a client packet and returns a view of it. Order follows miekg/dns and
/// CoreDNS: header, QR, opcode, section counts, question, OPT, EDNS version, class.
pub fn parse_query(packet: &[u8]) -> Result<Query<'_>, Rejection> {
    let mut r = Reader::new(packet);
    let h = Header::read(&mut r).map_err(|_| Rejection::Drop(DropReason::ShortHeader))?;
    if h.flags & flags::QR != 0 {
        return Err(Rejection::Drop(DropReason::Response));
    }
    if h.opcode() != 0 {
        return Err(Rejection::Reply(Rcode::NotImp));
    }
    // miekg/dns DefaultMsgAcceptFunc: at most one answer/authority record, two additional.
    if h.qdcount != 1 || h.ancount > 1 || h.nscount > 1 || h.arcount > 2 {
        return Err(FORMERR);
    }
    let qname = r.name_uncompressed().map_err(|_| FORMERR)?;
    let qtype = r.u16().map_err(|_| FORMERR)?;
    let qclass = r.u16().map_err(|_| FORMERR)?;
    let question_end = r.pos();
    for _ in 0..u32::from(h.ancount) + u32::from(h.nscount) {
        skip_record(&mut r).map_err(|_| FORMERR)?;
    }
    let edns = read_additional_opt(&mut r, h.arcount).map_err(|_| FORMERR)?;
    if edns.is_some_and(|e| e.version > 0) {
        return Err(Rejection::Reply(Rcode::BadVers));
    }
    if qclass != CLASS_IN {
        return Err(Rejection::Reply(Rcode::Refused));
    }
    Ok(Query {
        packet,
        id: h.id,
        flags: h.flags,
        qname,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// What [`write_error_reply`] could still read from a rejected packet.
struct Salvage<'a> {
    header: Header,
    question: Option<&'a [u8]>,
    edns: Option<Edns>,
}

fn salvage(packet: &[u8]) -> Option<Salvage<'_>> {
    let mut r = Reader::new(packet);
    let header = Header::read(&mut r).ok()?;
    let mut s = Salvage {
        header,
        question: None,
        edns: None,
    };
    if header.qdcount != 1 {
        return Some(s);
    }
    let question = r.name_uncompressed().and_then(|_| r.skip(4)).ok();
    s.question = question.and_then(|()| packet.get(HEADER_BYTES..r.pos()));
    if s.question.is_none() {
        return Some(s);
    }
    let records = u32::from(header.ancount) + u32::from(header.nscount);
    if (0..records).all(|_| skip_record(&mut r).is_ok()) {
        s.edns = read_additional_opt(&mut r, header.arcount).ok().flatten();
    }
    Some(s)
}

/// Writes an error reply to `packet` into `out` and returns its length (0 when the
/// header cannot be read or `out` is too small). Keeps the client's ID, opcode and
/// RD; echoes the question when it can be read; adds an OPT when the query had one
/// (carrying the high rcode bits: BADVERS = header rcode 0, OPT extended rcode 1).
/// An extended rcode without a client OPT is sent as SERVFAIL.
pub fn write_error_reply(packet: &[u8], rcode: Rcode, out: &mut [u8]) -> usize {
    let Some(s) = salvage(packet) else {
        return 0;
    };
    let mut code = rcode.code();
    if code > flags::RCODE_MASK && s.edns.is_none() {
        code = Rcode::ServFail.code();
    }
    let keep = s.header.flags & (flags::OPCODE_MASK | flags::RD);
    let header = Header {
        id: s.header.id,
        flags: flags::QR | keep | (code & flags::RCODE_MASK),
        qdcount: u16::from(s.question.is_some()),
        ancount: 0,
        nscount: 0,
        arcount: u16::from(s.edns.is_some()),
    };
    let mut w = Writer::new(out);
    let written = (|| -> Result<(), WireError> {
        header.write(&mut w)?;
        if let Some(q) = s.question {
            w.bytes(q)?;
        }
        if let Some(e) = s.edns {
            write_opt(&mut w, EDNS_UDP_PAYLOAD_BYTES_OURS, code, e.dnssec_ok)?;
        }
        Ok(())
    })();
    if written.is_ok() {
        w.len()
    } else {
        0
    }
}

/// Writes the query we send upstream: a new `id`, RD and CD copied, the client's
/// question verbatim, and an OPT advertising `bufsize` with the client's DO bit.
/// Returns the length (0 if `out` is too small).
pub fn write_upstream_query(q: &Query<'_>, id: u16, bufsize: u16, out: &mut [u8]) -> usize {
    let header = Header {
        id,
        flags: q.flags & (flags::RD | flags::CD),
        qdcount: 1,
        ancount: 0,
        nscount: 0,
        arcount: 1,
    };
    let mut w = Writer::new(out);
    let written = header
        .write(&mut w)
        .and_then(|()| w.bytes(q.question()))
        .and_then(|()| write_opt(&mut w, bufsize, 0, q.dnssec_ok()));
    if written.is_ok() {
        w.len()
    } else {
        0
    }
}
