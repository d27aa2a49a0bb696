//! `dns64`: AAAA records synthesised from A records (RFC 6147), as CoreDNS's dns64
//! does (README.md in `dns64/`). On the way down, an eligible query (AAAA, class IN,
//! from an IPv6 client unless `allow_ipv4`) is marked in its `Trail`; when its answer
//! wants synthesis ([`wants_synthesis`]), the chain leaves the way back to the server,
//! which asks the A question through the same chain (`server/dns64.rs`), builds the
//! answer here ([`synthesize`]) and then sends it back through the plugins.
//!
//! Synthesis decodes and encodes with hickory-proto: it runs once per translated
//! answer, never on a cache hit of a plain block.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType};
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{RData, Record, RecordType};

use super::flow::{Flow, Request, Trail};
use crate::config::{Dns64Config, ServerBlock};
use crate::limits::{EDNS_UDP_PAYLOAD_BYTES_OURS, MESSAGE_BYTES_MAX};
use crate::wire::{self, Header, Reader};

const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
/// RFC 6147 §5.1.7: the TTL cap without an SOA in the AAAA answer.
const TTL_WITHOUT_SOA: u32 = 600;

pub struct Dns64 {
    config: Dns64Config,
    /// Answers synthesised, by endpoint index (`coredns_dns64_requests_translated_total`).
    translated: RefCell<Vec<u64>>,
}

impl Dns64 {
    pub fn new(block: &ServerBlock) -> Option<Dns64> {
        Some(Dns64 {
            config: block.dns64?,
            translated: RefCell::new(Vec::new()),
        })
    }

    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail) -> Flow {
        let q = req.query;
        let ipv6_client = match req.client.ip() {
            IpAddr::V4(_) => false,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().is_none(),
        };
        if q.qtype == TYPE_AAAA && q.qclass == CLASS_IN && (ipv6_client || self.config.allow_ipv4) {
            trail.dns64 = Some(self.config);
        }
        Flow::Next
    }

    /// Counts one synthesised answer for `endpoint`.
    pub fn count(&self, endpoint: usize) {
        let mut counts = self.translated.borrow_mut();
        if counts.len() <= endpoint {
            counts.resize(endpoint + 1, 0);
        }
        counts[endpoint] += 1;
    }

    /// Synthesised answers by endpoint index.
    pub fn translated(&self) -> Vec<u64> {
        self.translated.borrow().clone()
    }
}

/// Whether `answer` (to an eligible AAAA query) should be replaced by a synthesised
/// one: not NXDOMAIN (RFC 6147 §5.1.2), and no AAAA record in its answer section
/// (§5.1.1) unless `translate_all`. An answer that does not parse is left alone.
pub fn wants_synthesis(config: &Dns64Config, answer: &[u8]) -> bool {
    let mut r = Reader::new(answer);
    let Ok(header) = Header::read(&mut r) else {
        return false;
    };
    if header.rcode() == RCODE_NXDOMAIN || header.qdcount != 1 {
        return false;
    }
    if config.translate_all {
        return true;
    }
    if r.skip_name().and_then(|()| r.skip(4)).is_err() {
        return false;
    }
    for _ in 0..header.ancount {
        match wire::header::skip_record(&mut r) {
            Ok(rec) if rec.rtype == TYPE_AAAA => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

/// The A query of the same name: `packet` (a parsed AAAA query) with QTYPE set to A.
pub fn a_query(query: &wire::Query<'_>) -> Vec<u8> {
    let mut packet = query.packet.to_vec();
    if let Some(qtype) = packet.get_mut(query.question_end - 4..query.question_end - 2) {
        qtype.copy_from_slice(&1u16.to_be_bytes());
    }
    packet
}

/// The synthesised answer to `query` from its AAAA answer and the A answer, at most
/// `max_len` bytes (records cut with TC set); None if either does not decode.
pub fn synthesize(
    config: &Dns64Config,
    query: &wire::Query<'_>,
    aaaa_answer: &[u8],
    a_answer: &[u8],
    max_len: usize,
) -> Option<Vec<u8>> {
    let original = Message::from_vec(aaaa_answer).ok()?;
    let a = Message::from_vec(a_answer).ok()?;
    let soa_ttl = original
        .name_servers()
        .iter()
        .rev()
        .find(|r| r.record_type() == RecordType::SOA)
        .map(Record::ttl)
        .unwrap_or(TTL_WITHOUT_SOA);
    let mut out = Message::new();
    out.set_id(query.id)
        .set_message_type(MessageType::Response)
        .set_op_code(original.op_code())
        .set_recursion_desired(query.rd())
        .set_checking_disabled(query.cd())
        .set_recursion_available(a.recursion_available())
        .set_truncated(a.truncated());
    out.add_queries(original.queries().iter().cloned());
    let answers = a.answers().iter().map(|rr| match rr.data() {
        RData::A(v4) => {
            let mut aaaa = Record::from_rdata(
                rr.name().clone(),
                rr.ttl().min(soa_ttl),
                RData::AAAA(AAAA(embed(config, v4.0))),
            );
            aaaa.set_dns_class(rr.dns_class());
            aaaa
        }
        _ => rr.clone(),
    });
    out.add_answers(answers);
    out.add_name_servers(a.name_servers().iter().cloned());
    out.add_additionals(a.additionals().iter().cloned());
    if let Some(edns) = query.edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_UDP_PAYLOAD_BYTES_OURS);
        opt.set_dnssec_ok(edns.dnssec_ok);
        out.set_edns(opt);
    }
    fit(out, max_len.min(MESSAGE_BYTES_MAX))
}

/// Encodes `msg`, dropping additional, then authority, then answer records from the
/// end (TC set) until it fits `max_len`.
fn fit(mut msg: Message, max_len: usize) -> Option<Vec<u8>> {
    loop {
        let bytes = msg.to_vec().ok()?;
        if bytes.len() <= max_len {
            return Some(bytes);
        }
        msg.set_truncated(true);
        if !msg.additionals().is_empty() {
            msg.additionals_mut().pop();
        } else if !msg.name_servers().is_empty() {
            msg.name_servers_mut().pop();
        } else if msg.answers_mut().pop().is_none() {
            return None;
        }
    }
}

/// RFC 6052 §2.2: the IPv4 address in the prefix, skipping bits 64..72 (the `u`
/// octet), for prefixes of 32, 40, 48, 56, 64 or 96 bits.
fn embed(config: &Dns64Config, v4: Ipv4Addr) -> Ipv6Addr {
    let mut bytes = config.prefix.octets();
    let mut at = usize::from(config.prefix_len / 8);
    for octet in v4.octets() {
        if at == 8 {
            at += 1;
        }
        bytes[at] = octet;
        at += 1;
    }
    Ipv6Addr::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str, len: u8) -> Dns64Config {
        Dns64Config {
            prefix: prefix.parse().unwrap(),
            prefix_len: len,
            translate_all: false,
            allow_ipv4: false,
        }
    }

    /// RFC 6052 §2.4's table, for 192.0.2.33.
    #[test]
    fn rfc6052_examples() {
        let v4: Ipv4Addr = "192.0.2.33".parse().unwrap();
        let cases = [
            ("2001:db8::", 32, "2001:db8:c000:221::"),
            ("2001:db8:100::", 40, "2001:db8:1c0:2:21::"),
            ("2001:db8:122::", 48, "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::", 56, "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::", 64, "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::", 96, "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::", 96, "64:ff9b::c000:221"),
        ];
        for (prefix, len, want) in cases {
            let want: Ipv6Addr = want.parse().unwrap();
            assert_eq!(embed(&config(prefix, len), v4), want, "{prefix}/{len}");
        }
    }

    fn answer(records: &[&str]) -> Vec<u8> {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response);
        m.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("x.test.").unwrap(),
            RecordType::AAAA,
        ));
        for text in records {
            let (rtype, data) = text.split_once(' ').unwrap();
            let name = hickory_proto::rr::Name::from_ascii("x.test.").unwrap();
            let rdata = match rtype {
                "A" => RData::A(hickory_proto::rr::rdata::A(data.parse().unwrap())),
                _ => RData::AAAA(AAAA(data.parse().unwrap())),
            };
            m.add_answer(Record::from_rdata(name, 300, rdata));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn which_answers_are_translated() {
        let c = config("64:ff9b::", 96);
        assert!(wants_synthesis(&c, &answer(&[])));
        assert!(!wants_synthesis(&c, &answer(&["AAAA 2001:db8::1"])));
        let all = Dns64Config {
            translate_all: true,
            ..c
        };
        assert!(wants_synthesis(&all, &answer(&["AAAA 2001:db8::1"])));
        let mut nx = answer(&[]);
        nx[3] |= 3;
        assert!(!wants_synthesis(&all, &nx));
        assert!(!wants_synthesis(&c, &[1, 2, 3]));
    }

    #[test]
    fn synthesised_answer() {
        let c = config("64:ff9b::", 96);
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x01x\x04test\x00\x00\x1c\x00\x01");
        let query = wire::parse_query(&q).unwrap();
        let a = answer(&["A 192.0.2.1", "A 192.0.2.2"]);
        let out = synthesize(&c, &query, &answer(&[]), &a, 512).unwrap();
        let msg = Message::from_vec(&out).unwrap();
        assert_eq!(msg.id(), 0xabcd);
        let got: Vec<String> = msg.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(got, ["64:ff9b::c000:201", "64:ff9b::c000:202"]);
        assert!(msg.answers().iter().all(|r| r.ttl() == 300));
        let cut = synthesize(&c, &query, &answer(&[]), &a, 60).unwrap();
        let msg = Message::from_vec(&cut).unwrap();
        assert!(msg.truncated());
        assert!(msg.answers().len() < 2);
        assert_eq!(a_query(&query)[q.len() - 3], 1);
    }
}
