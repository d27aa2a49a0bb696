//! The presentation names of query types and response codes: one table each, read
//! both ways (dnsload's `-t AAAA`, logs, metric labels, reports).

use std::borrow::Cow;

/// Query type mnemonics (RFC 1035, 3596, 2782, 4034, 5155, 6698, 8659, 9460).
/// Anything else is written and accepted as `TYPEnnn` (RFC 3597).
pub const QTYPES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (13, "HINFO"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (35, "NAPTR"),
    (41, "OPT"),
    (43, "DS"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (50, "NSEC3"),
    (52, "TLSA"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (251, "IXFR"),
    (252, "AXFR"),
    (255, "ANY"),
    (257, "CAA"),
];

/// Names of the 4-bit header response codes, as miekg/dns `RcodeToString` (and so
/// CoreDNS's metric labels) writes them; 11 to 15 have none.
pub const RCODE_NAMES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

/// The mnemonic of `qtype`, if it has one in [`QTYPES`].
pub fn type_name(qtype: u16) -> Option<&'static str> {
    QTYPES.iter().find(|(t, _)| *t == qtype).map(|(_, n)| *n)
}

/// The mnemonic of `qtype`, else `TYPEnnn` (RFC 3597).
pub fn type_to_string(qtype: u16) -> Cow<'static, str> {
    type_name(qtype).map_or_else(|| format!("TYPE{qtype}").into(), Cow::Borrowed)
}

/// Parses a query type mnemonic, any case (`AAAA`, `srv`, `TYPE65`).
pub fn parse_qtype(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    if let Some(num) = upper.strip_prefix("TYPE") {
        return num.parse().ok();
    }
    QTYPES.iter().find(|(_, n)| *n == upper).map(|(t, _)| *t)
}

/// The name of a header response code, if it has one in [`RCODE_NAMES`].
pub fn rcode_name(rcode: u16) -> Option<&'static str> {
    RCODE_NAMES.get(usize::from(rcode)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_both_ways() {
        assert_eq!(parse_qtype("aaaa"), Some(28));
        assert_eq!(parse_qtype("TYPE65"), Some(65));
        assert_eq!(parse_qtype("BOGUS"), None);
        assert_eq!(type_to_string(28), "AAAA");
        assert_eq!(type_to_string(999), "TYPE999");
        for (code, name) in QTYPES {
            assert_eq!(parse_qtype(name), Some(*code));
            assert_eq!(type_name(*code), Some(*name));
        }
    }

    #[test]
    fn rcodes() {
        assert_eq!(rcode_name(3), Some("NXDOMAIN"));
        assert_eq!(rcode_name(10), Some("NOTZONE"));
        assert_eq!(rcode_name(11), None);
    }
}
