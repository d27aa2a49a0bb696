//! One pass over an upstream answer's records, for storing it without a full decode.
//!
//! [`walk_answer`] accepts only messages it can vouch for: every name and every
//! record's data checked as strictly as hickory-proto's decoder checks them (for
//! the record types listed in [`rdata_ok`]), at most one OPT and that one the last
//! record, nothing after it. Removing that OPT then moves no byte any compression
//! pointer could refer to, so the records before it can be stored as they are.
//! Anything else is left to the full decoder (`None`).

use super::cursor::Reader;
use super::header::{
    flags, Header, Split, HEADER_BYTES, RECORD_BYTES_MIN, TYPE_NS, TYPE_OPT, TYPE_SOA,
};
use crate::limits::{CNAME_CHAIN_HOPS_MAX, NAME_BYTES_MAX, NAME_POINTER_HOPS_MAX};

/// EDNS option code of Client Subnet (RFC 7871), which a full decoder parses and may reject.
const EDNS_OPTION_SUBNET: u16 = 8;

/// An answer walked by [`walk_answer`]: what classification and storage need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerWalk<'a> {
    /// The message as stored: its records after the question without the OPT, and
    /// its header with an ARCOUNT that no longer counts the OPT.
    pub split: Split<'a>,
    /// Full response code: the header's low 4 bits and the OPT's 8 extended bits.
    pub rcode: u16,
    /// An SOA record is in the authority section.
    pub soa_in_authority: bool,
    /// An NS record is in the authority section.
    pub ns_in_authority: bool,
    /// Smallest TTL of the records (OPT excluded); `u32::MAX` if there are none.
    pub min_ttl: u32,
}

/// One record's fixed fields, its owner name already checked.
struct Fields {
    rtype: u16,
    ttl_at: usize,
    ttl: u32,
    rdata_at: usize,
    rdata_len: usize,
}

/// Walks `msg` (a response with one uncompressed question) and returns its records
/// without the OPT, or None if it is anything but plain (see the module docs).
pub fn walk_answer(msg: &[u8]) -> Option<AnswerWalk<'_>> {
    let mut r = Reader::new(msg);
    let header = Header::read(&mut r).ok()?;
    if header.qdcount != 1 {
        return None;
    }
    r.name_uncompressed().ok()?;
    r.skip(4).ok()?;
    let start = r.pos();
    let [an, ns, ar] = [header.ancount, header.nscount, header.arcount].map(usize::from);
    let total = an + ns + ar;
    let room = (msg.len() - start) / RECORD_BYTES_MIN;
    let mut walk = AnswerWalk {
        split: Split {
            header,
            question_len: start - HEADER_BYTES,
            records: &[],
            ttl_offsets: Vec::with_capacity(total.min(room)),
        },
        rcode: header.flags & flags::RCODE_MASK,
        soa_in_authority: false,
        ns_in_authority: false,
        min_ttl: u32::MAX,
    };
    let mut end = start;
    for i in 0..total {
        let owner_at = end;
        let rec = read_fields(msg, owner_at, start, &walk.split.ttl_offsets)?;
        end = rec.rdata_at + rec.rdata_len;
        if rec.rtype == TYPE_OPT {
            let last_additional = i + 1 == total && i >= an + ns;
            let root_owner = rec.ttl_at == owner_at + 5;
            if !last_additional || !root_owner || !opt_options_ok(msg, &rec) {
                return None;
            }
            walk.rcode |= u16::try_from(rec.ttl >> 24).ok()? << 4;
            walk.split.header.arcount -= 1;
            walk.split.records = msg.get(start..owner_at)?;
            return (end == msg.len()).then_some(walk);
        }
        let ttl_offset = u16::try_from(rec.ttl_at - start).ok()?;
        walk.split.ttl_offsets.push(ttl_offset);
        if !rdata_ok(msg, &rec, start, &walk.split.ttl_offsets) {
            return None;
        }
        walk.min_ttl = walk.min_ttl.min(rec.ttl);
        let in_authority = (an..an + ns).contains(&i);
        walk.soa_in_authority |= in_authority && rec.rtype == TYPE_SOA;
        walk.ns_in_authority |= in_authority && rec.rtype == TYPE_NS;
    }
    walk.split.records = msg.get(start..end)?;
    (end == msg.len()).then_some(walk)
}

/// Reads the record at `at`: its owner name (checked) and fixed fields, with the
/// RDATA bounds-checked.
fn read_fields(msg: &[u8], at: usize, base: usize, ttls: &[u16]) -> Option<Fields> {
    let mut r = Reader::at(msg, check_name(msg, at, base, ttls)?);
    let rtype = r.u16().ok()?;
    r.skip(2).ok()?;
    let ttl_at = r.pos();
    let ttl = r.u32().ok()?;
    let rdata_len = usize::from(r.u16().ok()?);
    let rdata_at = r.pos();
    r.skip(rdata_len).ok()?;
    Some(Fields {
        rtype,
        ttl_at,
        ttl,
        rdata_at,
        rdata_len,
    })
}

/// Record types [`rdata_ok`] knows: A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, DS,
/// RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM.
const KNOWN_TYPES: [u16; 15] = [1, 2, 5, 6, 12, 15, 16, 28, 33, 43, 46, 47, 48, 50, 51];

/// Whether a record's data is what hickory-proto's decoder accepts for its type and
/// re-encodes with the same meaning. Types other than [`KNOWN_TYPES`] are left to
/// the full decoder.
fn rdata_ok(msg: &[u8], rec: &Fields, base: usize, ttls: &[u16]) -> bool {
    let (at, len) = (rec.rdata_at, rec.rdata_len);
    let end = at + len;
    let name_ends_at = |from: usize, fixed_after: usize| {
        len >= from - at && check_name(msg, from, base, ttls).map(|e| e + fixed_after) == Some(end)
    };
    // Empty data is kept empty by the decoder, whatever the type, but only the
    // types below are plain records wherever they stand (SIG and TSIG are not).
    if len == 0 {
        return KNOWN_TYPES.contains(&rec.rtype);
    }
    match rec.rtype {
        // A, AAAA
        1 => len == 4,
        28 => len == 16,
        // NS, CNAME, PTR: one name.
        2 | 5 | 12 => name_ends_at(at, 0),
        // MX: preference, exchange.
        15 => name_ends_at(at + 2, 0),
        // SRV: priority, weight, port, target.
        33 => name_ends_at(at + 6, 0),
        // SOA: MNAME, RNAME, five 32-bit fields.
        6 => check_name(msg, at, base, ttls).is_some_and(|m| m < end && name_ends_at(m, 20)),
        // TXT: character-strings filling the data exactly.
        16 => character_strings_fill(msg, at, end),
        // DS, RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM: kept as opaque bytes.
        43 | 46 | 47 | 48 | 50 | 51 => true,
        _ => false,
    }
}

/// Whether `msg[at..end]` is a sequence of length-prefixed strings ending at `end`.
fn character_strings_fill(msg: &[u8], mut at: usize, end: usize) -> bool {
    let mut r = Reader::at(msg, at);
    while at < end {
        match r.u8().ok().and_then(|n| r.skip(usize::from(n)).ok()) {
            Some(()) => at = r.pos(),
            None => return false,
        }
    }
    at == end
}

/// Whether the OPT's data is a whole number of options, none of them one the full
/// decoder parses (Client Subnet).
fn opt_options_ok(msg: &[u8], rec: &Fields) -> bool {
    let end = rec.rdata_at + rec.rdata_len;
    let mut r = Reader::at(msg, rec.rdata_at);
    while r.pos() < end {
        let option = r.u16().and_then(|code| Ok((code, r.u16()?)));
        match option {
            Ok((code, len)) if code != EDNS_OPTION_SUBNET && r.skip(usize::from(len)).is_ok() => {}
            _ => return false,
        }
    }
    r.pos() == end
}

/// Checks the possibly compressed name at `at` the way hickory-proto reads names
/// (a pointer must point before the start of the labels that hold it, and what it
/// points to must end before them; at most 255 bytes expanded), and more strictly:
/// pointers must point past the header, at most `NAME_POINTER_HOPS_MAX` of them,
/// and no byte read through a pointer may be a TTL already seen (`ttls`, offsets
/// from `base`), since a reply rewrites those. Returns the offset after the name.
fn check_name(msg: &[u8], at: usize, base: usize, ttls: &[u16]) -> Option<usize> {
    let mut pos = at;
    // Start of the labels being read, and the bound hickory-proto puts on them.
    let (mut labels_at, mut limit) = (at, usize::MAX);
    // Where the name ends in place: set at its first pointer.
    let mut after: Option<usize> = None;
    let (mut expanded, mut hops) = (1usize, 0usize);
    loop {
        if pos >= limit {
            return None;
        }
        let mut r = Reader::at(msg, pos);
        let len = r.u8().ok()?;
        let pointer = match len & 0xC0 {
            0x00 => false,
            0xC0 => true,
            _ => return None,
        };
        let element = if pointer { 2 } else { 1 + usize::from(len) };
        r.skip(element - 1).ok()?;
        if after.is_some() && overlaps_ttl(pos, element, base, ttls) {
            return None;
        }
        if len == 0 {
            return Some(after.unwrap_or(pos + 1));
        }
        if pointer {
            let low = msg.get(pos + 1).copied()?;
            let target = usize::from(u16::from_be_bytes([len, low]) & 0x3FFF);
            hops += 1;
            if target >= labels_at || target < HEADER_BYTES || hops > NAME_POINTER_HOPS_MAX {
                return None;
            }
            after.get_or_insert(pos + 2);
            (limit, labels_at, pos) = (labels_at, target, target);
        } else {
            expanded += element;
            if expanded > NAME_BYTES_MAX {
                return None;
            }
            pos += element;
        }
    }
}

/// Whether `msg[pos..pos + len]` overlaps any of the 4-byte TTL fields at `ttls`
/// (sorted offsets from `base`).
fn overlaps_ttl(pos: usize, len: usize, base: usize, ttls: &[u16]) -> bool {
    let first_after = ttls.partition_point(|&t| base + usize::from(t) + 4 <= pos);
    ttls.get(first_after)
        .is_some_and(|&t| base + usize::from(t) < pos + len)
}

/// The longest run of whole records at the start of `records` that fits in `room`
/// bytes: how many records, and their bytes. `ttl_offsets` gives each record's TTL
/// offset within `records`, in order (each record ends 6 bytes after it plus its
/// RDATA). This is how CoreDNS (miekg/dns `Msg.Truncate`) cuts a reply to a client's
/// size: answer records first, then authority, then additional, up to the first one
/// that does not fit, never a part of one. A prefix keeps every compression pointer
/// valid, since pointers only point backwards. An offset that does not lead to a
/// whole record ends the run. Allocates nothing.
pub fn fitting_records(
    records: &[u8],
    ttl_offsets: impl Iterator<Item = usize>,
    room: usize,
) -> (usize, &[u8]) {
    let limit = room.min(records.len());
    let (mut count, mut end) = (0, 0);
    for ttl_at in ttl_offsets {
        let mut r = Reader::at(records, ttl_at.saturating_add(4));
        let record_end = r.u16().ok().and_then(|rdata_len| {
            let rdata_at = r.pos();
            r.skip(usize::from(rdata_len)).ok()?;
            Some(rdata_at + usize::from(rdata_len))
        });
        match record_end {
            Some(e) if e > end && e <= limit => (count, end) = (count + 1, e),
            _ => break,
        }
    }
    (count, Reader::new(records).bytes(end).unwrap_or(&[]))
}

const TYPE_CNAME: u16 = 5;
const TYPE_ANY: u16 = 255;
const CLASS_ANY: u16 = 255;

/// One answer-section record as [`answers_question`] needs it: owner and CNAME
/// target as ranges of the lower-cased names it collected.
struct ChainRecord {
    owner: (usize, usize),
    rtype: u16,
    rclass: u16,
    target: Option<(usize, usize)>,
}

/// Whether the answer section of `msg` answers its question (CoreDNS 1.14
/// `answersQuestion`; RFC 1034 §3.6.2, RFC 2308 §1–2): for a CNAME query, the name
/// has one CNAME target; for ANY, some record is at the name; for any other type,
/// the CNAME chain from the name (followed through the answer section) ends at a
/// name holding a record of that type. Classes must match the question's (ANY
/// matches all). A chain that forks (one owner, two targets), loops, or runs longer
/// than [`CNAME_CHAIN_HOPS_MAX`] answers nothing; so does an empty answer section
/// or a message that does not read.
pub fn answers_question(msg: &[u8]) -> bool {
    chain_answers(msg).unwrap_or(false)
}

fn chain_answers(msg: &[u8]) -> Option<bool> {
    let mut r = Reader::new(msg);
    let header = Header::read(&mut r).ok()?;
    if header.qdcount != 1 || header.ancount == 0 {
        return Some(false);
    }
    let mut names = Vec::new();
    let qname = push_name(&mut names, &mut r)?;
    let (qtype, qclass) = (r.u16().ok()?, r.u16().ok()?);
    let room = msg.len().saturating_sub(r.pos()) / RECORD_BYTES_MIN;
    let mut records = Vec::with_capacity(usize::from(header.ancount).min(room));
    for _ in 0..header.ancount {
        let owner = push_name(&mut names, &mut r)?;
        let (rtype, rclass) = (r.u16().ok()?, r.u16().ok()?);
        r.skip(4).ok()?;
        let rdata_len = usize::from(r.u16().ok()?);
        let mut rdata = Reader::at(msg, r.pos());
        r.skip(rdata_len).ok()?;
        let target = match rtype {
            TYPE_CNAME => Some(push_name(&mut names, &mut rdata)?),
            _ => None,
        };
        records.push(ChainRecord {
            owner,
            rtype,
            rclass,
            target,
        });
    }
    let name = |range: (usize, usize)| names.get(range.0..range.1).unwrap_or_default();
    let class_ok = |rclass: u16| qclass == CLASS_ANY || rclass == qclass;
    let at = |rec: &ChainRecord, owner: &[u8]| class_ok(rec.rclass) && name(rec.owner) == owner;
    // The one CNAME target of `owner`: Some(None) if it has none, None if two differ.
    let target_of = |owner: &[u8]| -> Option<Option<&[u8]>> {
        let mut found: Option<&[u8]> = None;
        for target in records.iter().filter(|rec| at(rec, owner)) {
            let Some(target) = target.target.map(name) else {
                continue;
            };
            match found {
                Some(other) if other != target => return None,
                _ => found = Some(target),
            }
        }
        Some(found)
    };
    let mut owner = name(qname);
    match qtype {
        TYPE_ANY => return Some(records.iter().any(|rec| at(rec, owner))),
        TYPE_CNAME => return Some(matches!(target_of(owner), Some(Some(_)))),
        _ => {}
    }
    for _ in 0..=CNAME_CHAIN_HOPS_MAX {
        match target_of(owner) {
            None => return Some(false),
            Some(Some(next)) => owner = next,
            Some(None) => {
                return Some(
                    records
                        .iter()
                        .any(|rec| rec.rtype == qtype && at(rec, owner)),
                )
            }
        }
    }
    Some(false)
}

/// Reads the name at `r`, expanded, and appends it lower-cased to `names`; returns
/// its range there.
fn push_name(names: &mut Vec<u8>, r: &mut Reader<'_>) -> Option<(usize, usize)> {
    let mut buf = [0u8; NAME_BYTES_MAX];
    let len = r.name_expanded(&mut buf).ok()?;
    let start = names.len();
    names.extend(buf.get(..len)?.iter().map(u8::to_ascii_lowercase));
    Some((start, names.len()))
}
