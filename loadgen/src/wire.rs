//! DNS wire format, reduced to what a load generator needs: encode a query once,
//! patch its ID per send, and run the cheap checks on an answer (header, then the
//! question against the query we sent). This is the only module that indexes
//! packet bytes; everything here returns `None`/errors instead of panicking.

use thiserror::Error;

/// Fixed DNS header length in bytes.
pub const HEADER_LEN: usize = 12;

/// Longest wire-format name.
const NAME_BYTES_MAX: usize = 255;

/// Longest label.
const LABEL_BYTES_MAX: usize = 63;

/// Why a name or query could not be encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// A label between dots is empty (`a..b`).
    #[error("name {name:?}: empty label")]
    EmptyLabel { name: String },
    /// A label is longer than 63 bytes.
    #[error("name {name:?}: label longer than 63 bytes")]
    LabelTooLong { name: String },
    /// The whole name is longer than 255 bytes on the wire.
    #[error("name {name:?}: longer than 255 bytes")]
    NameTooLong { name: String },
}

/// Options that shape every query the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOptions {
    /// Add an OPT record (`-e`).
    pub edns: bool,
    /// Set the DO bit in the OPT record (`-D`, implies EDNS).
    pub dnssec_ok: bool,
    /// UDP payload size advertised in the OPT record.
    pub edns_udp_bytes: u16,
    /// Set RD, as dnsperf does, so a forwarding cache treats the query as a stub's.
    pub recursion_desired: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            edns: false,
            dnssec_ok: false,
            edns_udp_bytes: 1232,
            recursion_desired: true,
        }
    }
}

/// Encodes a query with ID 0 at the end of `out`; returns the question length in
/// bytes (name + type + class), which the answer check compares against.
pub fn encode_query(
    name: &str,
    qtype: u16,
    opts: &QueryOptions,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let edns = opts.edns || opts.dnssec_ok;
    let flags: u16 = if opts.recursion_desired { 0x0100 } else { 0 };
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&u16::from(edns).to_be_bytes());
    let start = out.len();
    encode_name(name, out)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    let question_len = out.len() - start;
    if edns {
        let ttl_flags: u32 = if opts.dnssec_ok { 0x0000_8000 } else { 0 };
        out.push(0); // root owner
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&opts.edns_udp_bytes.to_be_bytes());
        out.extend_from_slice(&ttl_flags.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    Ok(question_len)
}

/// Appends `name` (dotted, absolute or not) in uncompressed wire format.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(WireError::EmptyLabel { name: name.into() });
            }
            if label.len() > LABEL_BYTES_MAX {
                return Err(WireError::LabelTooLong { name: name.into() });
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - start > NAME_BYTES_MAX {
        return Err(WireError::NameTooLong { name: name.into() });
    }
    Ok(())
}

/// Writes the message ID into an encoded message. Does nothing on a buffer shorter
/// than two bytes (never the case for our own queries).
pub fn set_id(msg: &mut [u8], id: u16) {
    if let Some(field) = msg.get_mut(0..2) {
        field.copy_from_slice(&id.to_be_bytes());
    }
}

/// What the header of an answer says, read without trusting the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerHeader {
    /// Message ID, used to find the outstanding query.
    pub id: u16,
    /// QR bit: a query arriving here is a mismatch, not an answer.
    pub is_response: bool,
    /// TC bit: the answer did not fit, counted separately.
    pub truncated: bool,
    /// Low four bits of the response code (the header part).
    pub rcode: u8,
    /// Number of questions; 1 for a normal answer.
    pub qdcount: u16,
}

/// Reads the fixed header; `None` if the message is shorter than a header.
pub fn read_header(msg: &[u8]) -> Option<AnswerHeader> {
    let h = msg.get(0..HEADER_LEN)?;
    Some(AnswerHeader {
        id: u16::from_be_bytes([h[0], h[1]]),
        is_response: h[2] & 0x80 != 0,
        truncated: h[2] & 0x02 != 0,
        rcode: h[3] & 0x0f,
        qdcount: u16::from_be_bytes([h[4], h[5]]),
    })
}

/// True when the answer carries exactly the question of `query` (names compared
/// ASCII case-insensitively, since servers may echo 0x20-mixed case).
pub fn question_matches(answer: &[u8], query: &[u8], question_len: usize) -> bool {
    let end = HEADER_LEN + question_len;
    match (answer.get(HEADER_LEN..end), query.get(HEADER_LEN..end)) {
        (Some(a), Some(q)) => a.eq_ignore_ascii_case(q),
        _ => false,
    }
}

/// Query type mnemonics we accept by name; anything else may be given as `TYPEnnn`.
const QTYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("HINFO", 13),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("SRV", 33),
    ("NAPTR", 35),
    ("DS", 43),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
    ("NSEC3", 50),
    ("TLSA", 52),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("CAA", 257),
    ("ANY", 255),
];

/// Parses a query type mnemonic (`AAAA`, `srv`, `TYPE65`).
pub fn parse_qtype(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    if let Some(num) = upper.strip_prefix("TYPE") {
        return num.parse().ok();
    }
    QTYPES.iter().find(|(n, _)| *n == upper).map(|(_, v)| *v)
}

/// Response code names, indexed by the 4-bit header rcode.
pub const RCODE_NAMES: [&str; 16] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_through_checks() {
        let mut q = Vec::new();
        let qlen = encode_query("Svc1.example.", 28, &QueryOptions::default(), &mut q).unwrap();
        assert_eq!(qlen, 1 + 4 + 1 + 7 + 1 + 4);
        set_id(&mut q, 0xbeef);
        let mut a = q.clone();
        a[2] |= 0x80;
        a[3] = 3;
        let h = read_header(&a).unwrap();
        assert_eq!(
            (h.id, h.is_response, h.rcode, h.qdcount),
            (0xbeef, true, 3, 1)
        );
        let mut lower = a.clone();
        lower[13] = b's';
        assert!(question_matches(&lower, &q, qlen));
        lower[14] = b'x';
        assert!(!question_matches(&lower, &q, qlen));
        assert!(!question_matches(&a[..14], &q, qlen));
    }

    #[test]
    fn edns_adds_opt_with_do() {
        let opts = QueryOptions {
            dnssec_ok: true,
            ..Default::default()
        };
        let mut q = Vec::new();
        encode_query(".", 1, &opts, &mut q).unwrap();
        assert_eq!(q.len(), 12 + 5 + 11);
        assert_eq!(&q[10..12], &[0, 1]);
        assert_eq!(q[12 + 5 + 7], 0x80);
    }

    #[test]
    fn bad_names_are_errors() {
        let mut out = Vec::new();
        assert!(encode_name("a..b", &mut out).is_err());
        assert!(encode_name(&"x".repeat(64), &mut out).is_err());
        let long = vec!["abcdefghij"; 30].join(".");
        assert!(encode_name(&long, &mut out).is_err());
        assert!(read_header(&[0; 11]).is_none());
    }

    #[test]
    fn qtypes_parse() {
        assert_eq!(parse_qtype("aaaa"), Some(28));
        assert_eq!(parse_qtype("TYPE65"), Some(65));
        assert_eq!(parse_qtype("BOGUS"), None);
    }
}
