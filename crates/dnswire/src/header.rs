//! The 12-byte message header, its flag bits, response codes, and the OPT record.

use super::cursor::{Reader, WireError, Writer};

pub const HEADER_BYTES: usize = 12;

/// Bits of the header flags word (RFC 1035 4.1.1, RFC 4035 3.2).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const OPCODE_MASK: u16 = 0x7800;
    pub const OPCODE_SHIFT: u16 = 11;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const RCODE_MASK: u16 = 0x000F;
}

pub const TYPE_OPT: u16 = 41;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_NS: u16 = 2;
pub const CLASS_IN: u16 = 1;
/// DO bit inside the OPT TTL field (RFC 3225).
pub(crate) const OPT_DO: u32 = 0x8000;
/// Bytes of an OPT record without options.
pub const OPT_BYTES: usize = 11;

/// Response codes we produce or recognise; extended codes (> 15) need an OPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    BadVers,
    Other(u16),
}

impl Rcode {
    pub fn code(self) -> u16 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::BadVers => 16,
            Rcode::Other(c) => c & 0x0FFF,
        }
    }

    pub fn from_code(code: u16) -> Rcode {
        match code {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            16 => Rcode::BadVers,
            c => Rcode::Other(c & 0x0FFF),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    #[inline]
    pub fn read(r: &mut Reader<'_>) -> Result<Header, WireError> {
        Ok(Header {
            id: r.u16()?,
            flags: r.u16()?,
            qdcount: r.u16()?,
            ancount: r.u16()?,
            nscount: r.u16()?,
            arcount: r.u16()?,
        })
    }

    pub fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        for v in [
            self.id,
            self.flags,
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ] {
            w.u16(v)?;
        }
        Ok(())
    }

    /// The header at the start of `msg`, read without looking at the rest; `None`
    /// when `msg` is shorter than a header.
    #[inline]
    pub fn parse(msg: &[u8]) -> Option<Header> {
        Header::read(&mut Reader::new(msg)).ok()
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags & flags::OPCODE_MASK) >> flags::OPCODE_SHIFT) as u8
    }

    /// QR: the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & flags::QR != 0
    }

    /// TC: the answer did not fit.
    pub fn truncated(&self) -> bool {
        self.flags & flags::TC != 0
    }

    /// The 4-bit header response code.
    pub fn rcode(&self) -> u16 {
        self.flags & flags::RCODE_MASK
    }
}

/// EDNS(0) parameters of a query's OPT record (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// Writes an OPT record without options: root owner, our UDP size, the high 8 bits
/// of `rcode`, version 0, DO as given.
pub fn write_opt(
    w: &mut Writer<'_>,
    udp_size: u16,
    rcode: u16,
    dnssec_ok: bool,
) -> Result<(), WireError> {
    let ext = u32::from(rcode >> 4) & 0xFF;
    let ttl = ext << 24 | if dnssec_ok { OPT_DO } else { 0 };
    w.u8(0)?;
    w.u16(TYPE_OPT)?;
    w.u16(udp_size)?;
    w.u32(ttl)?;
    w.u16(0)
}

/// One resource record's fixed fields, as found by [`skip_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Offset of the owner name.
    pub start: usize,
    pub rtype: u16,
    pub class: u16,
    /// Offset of the 4-byte TTL.
    pub ttl_at: usize,
    pub ttl: u32,
    /// Offset of RDATA and its length.
    pub rdata_at: usize,
    pub rdata_len: usize,
}

/// Steps over one resource record and reports where its fields are.
pub fn skip_record(r: &mut Reader<'_>) -> Result<RecordInfo, WireError> {
    let start = r.pos();
    r.skip_name()?;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl_at = r.pos();
    let ttl = r.u32()?;
    let rdata_len = usize::from(r.u16()?);
    let rdata_at = r.pos();
    r.skip(rdata_len)?;
    Ok(RecordInfo {
        start,
        rtype,
        class,
        ttl_at,
        ttl,
        rdata_at,
        rdata_len,
    })
}

/// Reads the OPT among `count` records of the additional section. More than one OPT,
/// or an OPT whose owner is not the root, is an error (RFC 6891 6.1.1).
pub fn read_additional_opt(r: &mut Reader<'_>, count: u16) -> Result<Option<Edns>, WireError> {
    let mut edns = None;
    for _ in 0..count {
        let rec = skip_record(r)?;
        if rec.rtype != TYPE_OPT {
            continue;
        }
        let owner_is_root = rec.ttl_at == rec.start + 5;
        if edns.is_some() || !owner_is_root {
            return Err(WireError::BadOpt);
        }
        edns = Some(Edns {
            udp_size: rec.class,
            version: (rec.ttl >> 16) as u8,
            dnssec_ok: rec.ttl & OPT_DO != 0,
        });
    }
    Ok(edns)
}

/// Offsets of the TTL fields of `count` records starting at `at`; returns the offset
/// just past the last record.
pub fn record_ttl_offsets(
    msg: &[u8],
    at: usize,
    count: usize,
    out: &mut Vec<usize>,
) -> Result<usize, WireError> {
    let mut r = Reader::at(msg, at);
    for _ in 0..count {
        out.push(skip_record(&mut r)?.ttl_at);
    }
    Ok(r.pos())
}

/// Fixed bytes of a record after its owner name: type, class, TTL, RDLENGTH.
const RECORD_FIXED_BYTES: usize = 10;
/// Smallest record: a root owner and the fixed fields. The records a message can
/// hold, whatever its header claims, are at most its bytes over this.
pub(crate) const RECORD_BYTES_MIN: usize = 1 + RECORD_FIXED_BYTES;

/// A message cut after its (single) question, for storing the records as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<'a> {
    pub header: Header,
    /// Bytes of the question section (name, type, class).
    pub question_len: usize,
    /// Every byte after the question: answer, authority and additional records.
    pub records: &'a [u8],
    /// Offsets of each record's TTL within `records`.
    pub ttl_offsets: Vec<u16>,
}

/// Splits a message with exactly one question into header, question length and
/// record bytes, finding every record's TTL. Trailing bytes after the last record
/// are an error, so `records` is exactly the records.
pub fn split_records(msg: &[u8]) -> Result<Split<'_>, WireError> {
    let mut r = Reader::new(msg);
    let header = Header::read(&mut r)?;
    if header.qdcount != 1 {
        return Err(WireError::Truncated(4));
    }
    r.skip_name()?;
    r.skip(4)?;
    let start = r.pos();
    let count =
        usize::from(header.ancount) + usize::from(header.nscount) + usize::from(header.arcount);
    let mut offsets = Vec::with_capacity(count.min((msg.len() - start) / RECORD_BYTES_MIN));
    let end = record_ttl_offsets(msg, start, count, &mut offsets)?;
    if end != msg.len() {
        return Err(WireError::Truncated(end));
    }
    let ttl_offsets = offsets
        .into_iter()
        .map(|o| u16::try_from(o - start).map_err(|_| WireError::Truncated(o)))
        .collect::<Result<Vec<u16>, WireError>>()?;
    let records = Reader::at(msg, start).bytes(end - start)?;
    Ok(Split {
        header,
        question_len: start - HEADER_BYTES,
        records,
        ttl_offsets,
    })
}
