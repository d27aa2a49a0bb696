//! Messages built from scratch: a dotted name in wire form, dnsload's queries
//! (encoded once, the ID patched per send) and the probes the processes send
//! themselves (`. IN NS` readiness and health checks, loop detection).

use crate::header::{flags, CLASS_IN, OPT_DO, TYPE_NS, TYPE_OPT};
use crate::limits::{EDNS_UDP_PAYLOAD_BYTES_DEFAULT, LABEL_BYTES_MAX, NAME_BYTES_MAX};

/// The root name in wire form.
pub const ROOT: &[u8] = b"\0";

/// Why a dotted name could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
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

/// Appends `name` (dotted, absolute or not, case kept) in uncompressed wire format.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), NameError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel { name: name.into() });
            }
            let len = match u8::try_from(label.len()) {
                Ok(len) if usize::from(len) <= LABEL_BYTES_MAX => len,
                _ => return Err(NameError::LabelTooLong { name: name.into() }),
            };
            out.push(len);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - start > NAME_BYTES_MAX {
        return Err(NameError::NameTooLong { name: name.into() });
    }
    Ok(())
}

/// Options that shape every query dnsload sends the same way.
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
            edns_udp_bytes: EDNS_UDP_PAYLOAD_BYTES_DEFAULT,
            recursion_desired: true,
        }
    }
}

/// Appends a query header: `id`, RD as asked, one question, `arcount` additionals.
fn push_header(out: &mut Vec<u8>, id: u16, rd: bool, arcount: u16) {
    let flags = if rd { flags::RD } else { 0 };
    for word in [id, flags, 1, 0, 0, arcount] {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Appends the type and class (IN) that end a question.
fn push_type_class(out: &mut Vec<u8>, qtype: u16) {
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
}

/// Encodes a query for the dotted `name` with ID 0 at the end of `out`; returns the
/// question length in bytes (name + type + class), which
/// [`question_matches`](crate::question_matches) compares against.
pub fn encode_query(
    name: &str,
    qtype: u16,
    opts: &QueryOptions,
    out: &mut Vec<u8>,
) -> Result<usize, NameError> {
    let edns = opts.edns || opts.dnssec_ok;
    push_header(out, 0, opts.recursion_desired, u16::from(edns));
    let start = out.len();
    encode_name(name, out)?;
    push_type_class(out, qtype);
    let question_len = out.len() - start;
    if edns {
        let ttl_flags: u32 = if opts.dnssec_ok { OPT_DO } else { 0 };
        out.push(0); // root owner
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&opts.edns_udp_bytes.to_be_bytes());
        out.extend_from_slice(&ttl_flags.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    Ok(question_len)
}

/// A query for `name` (wire form) of type `qtype`, class IN, with `id` and RD as
/// asked, no EDNS: the probes the process sends itself (health checks, readiness,
/// loop detection).
pub fn simple_query(id: u16, name: &[u8], qtype: u16, rd: bool) -> Vec<u8> {
    let mut query = Vec::with_capacity(crate::HEADER_BYTES + name.len() + 4);
    push_header(&mut query, id, rd, 0);
    query.extend_from_slice(name);
    push_type_class(&mut query, qtype);
    query
}

/// `<name> IN NS` (wire-form name) with `id`: the upstream health check.
pub fn ns_query(id: u16, name: &[u8], rd: bool) -> Vec<u8> {
    simple_query(id, name, TYPE_NS, rd)
}

/// `. IN NS` with RD set and `id`: the "does this server answer at all" probe.
pub fn root_ns_query(id: u16) -> Vec<u8> {
    ns_query(id, ROOT, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_query, question_matches, set_message_id, Header, HEADER_BYTES};

    #[test]
    fn query_round_trips_through_checks() {
        let mut q = Vec::new();
        let qlen = encode_query("Svc1.example.", 28, &QueryOptions::default(), &mut q).unwrap();
        assert_eq!(qlen, 1 + 4 + 1 + 7 + 1 + 4);
        assert!(set_message_id(&mut q, 0xbeef));
        let mut a = q.clone();
        a[2] |= 0x80;
        a[3] = 3;
        let h = Header::parse(&a).unwrap();
        assert_eq!(
            (h.id, h.is_response(), h.rcode(), h.qdcount),
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
        assert_eq!(q.len(), HEADER_BYTES + 5 + 11);
        assert_eq!(&q[10..12], &[0, 1]);
        assert_eq!(q[HEADER_BYTES + 5 + 7], 0x80);
        let parsed = parse_query(&q).unwrap();
        assert!(parsed.dnssec_ok());
        assert_eq!(parsed.edns.map(|e| e.udp_size), Some(1232));
    }

    #[test]
    fn bad_names_are_errors() {
        let mut out = Vec::new();
        assert!(encode_name("a..b", &mut out).is_err());
        assert!(encode_name(&"x".repeat(64), &mut out).is_err());
        assert!(encode_name(&"x".repeat(300), &mut out).is_err());
        let long = vec!["abcdefghij"; 30].join(".");
        assert!(encode_name(&long, &mut out).is_err());
        assert!(Header::parse(&[0; 11]).is_none());
    }

    #[test]
    fn simple_queries_parse() {
        let q = simple_query(0xbeef, b"\x03www\x00", 13, true);
        let parsed = parse_query(&q).unwrap();
        assert_eq!(
            (parsed.id, parsed.qtype, parsed.qclass, parsed.rd()),
            (0xbeef, 13, 1, true)
        );
        assert_eq!(parsed.qname, b"\x03www\x00");
        assert!(!parse_query(&simple_query(1, b"\x00", 2, false))
            .unwrap()
            .rd());
        let probe = root_ns_query(7);
        let parsed = parse_query(&probe).map(|p| (p.id, p.qname, p.qtype, p.rd()));
        assert_eq!(parsed, Ok((7, ROOT, TYPE_NS, true)));
    }
}
