//! The `log` directive: one line per answered query, in the rule's format (CoreDNS's
//! common format by default: `{remote}:{port} - {>id} "{type} {class} {name} {proto}
//! {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`), logged at INFO
//! with target `log` as CoreDNS writes it (`[INFO] ` and the line). Built only for
//! blocks with `log`, and only for queries a rule's names match.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use super::Proto;
use crate::config::{LogField, LogPart, LogRule, ResponseClasses};
use crate::wire::{self, flags, Header, Reader};

/// What the line needs from the query, taken when the block is known.
pub struct QueryLog {
    rule: Rc<LogRule>,
    client: SocketAddr,
    /// The address the query came in on.
    local: Option<IpAddr>,
    id: u16,
    opcode: u8,
    qtype: u16,
    qclass: u16,
    name: String,
    proto: Proto,
    size: usize,
    dnssec_ok: bool,
    bufsize: u16,
    start: Instant,
}

impl QueryLog {
    pub fn new(
        rule: Rc<LogRule>,
        (client, local): (SocketAddr, Option<IpAddr>),
        query: &wire::Query<'_>,
        proto: Proto,
        start: Instant,
    ) -> QueryLog {
        // CoreDNS `request.Size`: 64 KiB on TCP, else the EDNS size, at least 512.
        let legacy = crate::limits::UDP_PAYLOAD_BYTES_LEGACY as u16;
        let bufsize = match proto {
            Proto::Tcp => u16::MAX,
            Proto::Udp => query.edns.map_or(legacy, |e| e.udp_size.max(legacy)),
        };
        QueryLog {
            rule,
            client,
            local,
            id: query.id,
            opcode: query.opcode(),
            qtype: query.qtype,
            qclass: query.qclass,
            name: wire::name_to_string(query.qname),
            proto,
            size: query.packet.len(),
            dnssec_ok: query.dnssec_ok(),
            bufsize,
            start,
        }
    }

    /// Logs the line for `response` (nothing when no answer was sent).
    pub fn answered(&self, response: &[u8]) {
        if response.is_empty() || !self.logs(response) {
            return;
        }
        tracing::info!(target: "log", "[INFO] {}", self.line(response));
    }

    /// Whether the answer's class is one to log (CoreDNS `response.Typify` and
    /// `Classify`: records or a referral are success; NXDOMAIN or no records with
    /// an SOA denial; everything else an error).
    fn logs(&self, response: &[u8]) -> bool {
        let classes: ResponseClasses = self.rule.classes;
        if classes == ResponseClasses::ALL {
            return true;
        }
        let Ok(header) = Header::read(&mut Reader::new(response)) else {
            return classes.error;
        };
        let walk = wire::walk_answer(response);
        let soa = walk.as_ref().is_some_and(|w| w.soa_in_authority);
        match header.flags & flags::RCODE_MASK {
            0 if header.ancount > 0 => classes.success,
            0 | 3 if soa => classes.denial,
            // A referral (NS in the authority section) or an empty NOERROR.
            0 => classes.success,
            _ => classes.error,
        }
    }

    fn line(&self, response: &[u8]) -> String {
        let header = Header::read(&mut Reader::new(response)).ok();
        let mut line = String::with_capacity(160);
        for part in &self.rule.format {
            match part {
                LogPart::Text(text) => line.push_str(text),
                LogPart::Field(field) => self.field(&mut line, *field, header.as_ref(), response),
            }
        }
        line
    }

    fn field(&self, line: &mut String, field: LogField, header: Option<&Header>, response: &[u8]) {
        let _ = match field {
            LogField::Type => write!(line, "{}", wire::type_to_string(self.qtype)),
            LogField::Name => write!(line, "{}", self.name),
            LogField::Class => write!(line, "{}", class_name(self.qclass)),
            LogField::Proto => write!(line, "{}", proto_name(self.proto)),
            LogField::Size => write!(line, "{}", self.size),
            LogField::Remote => write_ip(line, self.client.ip()),
            LogField::Port => write!(line, "{}", self.client.port()),
            LogField::Local => match self.local {
                Some(ip) => write_ip(line, ip),
                None => write!(line, "-"),
            },
            LogField::Id => write!(line, "{}", self.id),
            LogField::Opcode => write!(line, "{}", self.opcode),
            LogField::Do => write!(line, "{}", self.dnssec_ok),
            LogField::Bufsize => write!(line, "{}", self.bufsize),
            LogField::Rcode => match header {
                Some(h) => {
                    let rcode = usize::from(h.flags & flags::RCODE_MASK);
                    write!(line, "{}", super::stats::rcode_name(rcode))
                }
                None => write!(line, "-"),
            },
            LogField::Rsize => write!(line, "{}", response.len()),
            // Go's strconv 'f', -1: the shortest decimal that reads back, as Rust's.
            LogField::Duration => write!(line, "{}s", self.start.elapsed().as_secs_f64()),
            LogField::Rflags => match header {
                Some(h) => write_flags(line, h.flags),
                None => write!(line, "-"),
            },
            LogField::Metadata => write!(line, "-"),
        };
    }
}

/// CoreDNS `appendAddrToRFC3986`: IPv6 in brackets.
fn write_ip(line: &mut String, ip: IpAddr) -> std::fmt::Result {
    match ip {
        IpAddr::V4(v4) => write!(line, "{v4}"),
        IpAddr::V6(v6) => write!(line, "[{v6}]"),
    }
}

/// miekg/dns's flag names, in CoreDNS's order, comma-separated.
fn write_flags(line: &mut String, bits: u16) -> std::fmt::Result {
    const Z: u16 = 0x0040;
    let names = [
        (flags::QR, "qr"),
        (flags::AA, "aa"),
        (flags::TC, "tc"),
        (flags::RD, "rd"),
        (flags::RA, "ra"),
        (Z, "z"),
        (flags::AD, "ad"),
        (flags::CD, "cd"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    line.write_str(&set.join(","))
}

fn class_name(class: u16) -> String {
    match class {
        1 => "IN".to_string(),
        3 => "CH".to_string(),
        4 => "HS".to_string(),
        254 => "NONE".to_string(),
        255 => "ANY".to_string(),
        other => format!("CLASS{other}"),
    }
}

fn proto_name(proto: Proto) -> &'static str {
    match proto {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_log_format as parse_format, COMMON_LOG_FORMAT};

    const PACKET: [u8; 29] = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x', b'a',
        b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1,
    ];

    fn log(format: &str, classes: ResponseClasses, client: &str, proto: Proto) -> QueryLog {
        let query = wire::parse_query(&PACKET).expect("query");
        let rule = LogRule {
            scope: ".".into(),
            format: parse_format(format),
            classes,
        };
        let client: SocketAddr = client.parse().unwrap();
        let local = Some("127.0.0.53".parse().unwrap());
        QueryLog::new(
            Rc::new(rule),
            (client, local),
            &query,
            proto,
            Instant::now(),
        )
    }

    fn nxdomain() -> Vec<u8> {
        let mut response = PACKET.to_vec();
        response[2] = 0x85; // QR AA RD
        response[3] = 0x83; // RA, NXDOMAIN
        response
    }

    #[test]
    fn common_format() {
        let all = ResponseClasses::ALL;
        let line = log(COMMON_LOG_FORMAT, all, "127.0.0.1:5353", Proto::Udp).line(&nxdomain());
        let expected =
            "127.0.0.1:5353 - 4660 \"A IN www.example. udp 29 false 512\" NXDOMAIN qr,aa,rd,ra 29 ";
        assert!(line.starts_with(expected), "{line}");
        assert!(line.ends_with('s'));
        let line = log(COMMON_LOG_FORMAT, all, "[::1]:53000", Proto::Tcp).line(&nxdomain());
        assert!(line.starts_with("[::1]:53000 - 4660 \"A IN www.example. tcp 29 false 65535\""));
    }

    #[test]
    fn every_placeholder() {
        let format = "{type}|{name}|{class}|{proto}|{size}|{remote}|{port}|{local}|{>id}|\
                      {>opcode}|{>do}|{>bufsize}|{rcode}|{rsize}|{>rflags}|{/meta}|{what}";
        let log = log(format, ResponseClasses::ALL, "10.0.0.1:40000", Proto::Udp);
        let line = log.line(&nxdomain());
        assert_eq!(
            line,
            "A|www.example.|IN|udp|29|10.0.0.1|40000|127.0.0.53|4660|0|false|512|NXDOMAIN|29|qr,aa,rd,ra|-|{what}"
        );
        let duration = log.line_for_duration();
        assert!(duration.ends_with('s') && duration.trim_end_matches('s').parse::<f64>().is_ok());
    }

    #[test]
    fn classes_as_coredns_classifies() {
        let errors_only = ResponseClasses {
            success: false,
            denial: false,
            error: true,
        };
        let log = log(COMMON_LOG_FORMAT, errors_only, "127.0.0.1:5353", Proto::Udp);
        // NXDOMAIN without an SOA is an error to CoreDNS, with one a denial.
        assert!(log.logs(&nxdomain()));
        let mut servfail = nxdomain();
        servfail[3] = 0x82;
        assert!(log.logs(&servfail));
        let mut empty = nxdomain();
        empty[3] = 0x80;
        assert!(!log.logs(&empty), "an empty NOERROR is success");
    }

    impl QueryLog {
        fn line_for_duration(&self) -> String {
            let mut line = String::new();
            self.field(&mut line, LogField::Duration, None, &[]);
            line
        }
    }
}
