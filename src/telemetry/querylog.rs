//! The `log` directive: one line per answered query in CoreDNS's common format,
//! `{remote}:{port} - {id} "{type} {class} {name} {proto} {size} {do} {bufsize}"
//! {rcode} {rflags} {rsize} {duration}`, logged at INFO with target `log`.
//! Built only for blocks with `log`; nothing is formatted otherwise.

use std::net::SocketAddr;
use std::time::Instant;

use super::Proto;
use crate::config::ResponseClasses;
use crate::wire::{self, flags, Header, Reader};

/// What the line needs from the query, taken when the block is known.
pub struct QueryLog {
    client: SocketAddr,
    id: u16,
    qtype: u16,
    qclass: u16,
    name: String,
    proto: Proto,
    size: usize,
    dnssec_ok: bool,
    bufsize: u16,
    start: Instant,
    /// `log { class }`: which answers get a line.
    classes: ResponseClasses,
}

impl QueryLog {
    pub fn new(
        client: SocketAddr,
        query: &wire::Query<'_>,
        proto: Proto,
        size: usize,
        start: Instant,
        classes: ResponseClasses,
    ) -> QueryLog {
        QueryLog {
            client,
            id: query.id,
            qtype: query.qtype,
            qclass: query.qclass,
            name: wire::name_to_string(query.qname),
            proto,
            size,
            dnssec_ok: query.dnssec_ok(),
            bufsize: query
                .edns
                .map_or(crate::limits::UDP_PAYLOAD_BYTES_LEGACY as u16, |e| {
                    e.udp_size
                }),
            start,
            classes,
        }
    }

    /// Logs the line for `response` (nothing when no answer was sent).
    pub fn answered(&self, response: &[u8]) {
        if response.is_empty() || !self.logs(response) {
            return;
        }
        tracing::info!(target: "log", "{}", self.line(response));
    }

    /// Whether the answer's class (success, denial, error) is one to log.
    fn logs(&self, response: &[u8]) -> bool {
        let Ok(header) = Header::read(&mut Reader::new(response)) else {
            return self.classes.error;
        };
        match header.flags & flags::RCODE_MASK {
            0 if header.ancount > 0 => self.classes.success,
            0 | 3 => self.classes.denial,
            _ => self.classes.error,
        }
    }

    fn line(&self, response: &[u8]) -> String {
        let header = Header::read(&mut Reader::new(response)).unwrap_or_default();
        let rcode = super::stats::rcode_name(usize::from(header.flags & flags::RCODE_MASK));
        let bits = [
            (flags::QR, "qr"),
            (flags::AA, "aa"),
            (flags::TC, "tc"),
            (flags::RD, "rd"),
            (flags::RA, "ra"),
            (flags::AD, "ad"),
            (flags::CD, "cd"),
        ];
        let rflags: Vec<&str> = bits
            .iter()
            .filter(|(bit, _)| header.flags & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        let class = match self.qclass {
            1 => "IN".to_string(),
            3 => "CH".to_string(),
            4 => "HS".to_string(),
            255 => "ANY".to_string(),
            other => format!("CLASS{other}"),
        };
        let proto = match self.proto {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        };
        format!(
            "{}:{} - {} \"{} {class} {} {proto} {} {} {}\" {rcode} {} {} {:.9}s",
            self.client.ip(),
            self.client.port(),
            self.id,
            wire::type_to_string(self.qtype),
            self.name,
            self.size,
            self.dnssec_ok,
            self.bufsize,
            rflags.join(","),
            response.len(),
            self.start.elapsed().as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_format() {
        let packet = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x',
            b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1,
        ];
        let query = wire::parse_query(&packet).expect("query");
        let client: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let log = QueryLog::new(
            client,
            &query,
            Proto::Udp,
            packet.len(),
            Instant::now(),
            ResponseClasses::ALL,
        );
        let mut response = packet.to_vec();
        response[2] = 0x85; // QR AA RD
        response[3] = 0x83; // RA, NXDOMAIN
        let line = log.line(&response);
        let expected =
            "127.0.0.1:5353 - 4660 \"A IN www.example. udp 29 false 512\" NXDOMAIN qr,aa,rd,ra 29 ";
        assert!(line.starts_with(expected), "{line}");
        assert!(line.ends_with('s'));
        let errors_only = ResponseClasses {
            success: false,
            denial: false,
            error: true,
        };
        let log = QueryLog::new(
            client,
            &query,
            Proto::Udp,
            packet.len(),
            Instant::now(),
            errors_only,
        );
        assert!(!log.logs(&response), "NXDOMAIN is a denial");
        response[3] = 0x82; // SERVFAIL
        assert!(log.logs(&response));
    }
}
