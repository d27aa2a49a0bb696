//! The zones knot serves in the tests.

use crate::harness::{Knot, Zone};

/// `test.`: every record type the tests ask for. TTLs are 300 s, above the caches' caps.
pub const TEST_ZONE: &str = r#"$ORIGIN test.
$TTL 300
@       SOA   ns.test. host.test. 1 3600 600 86400 3600
@       NS    ns
ns      A     127.0.0.1
www     A     192.0.2.1
www     A     192.0.2.2
www     AAAA  2001:db8::1
www     AAAA  2001:db8::2
@       MX    10 mx1
@       MX    20 mx2
mx1     A     192.0.2.10
mx2     A     192.0.2.11
alias   CNAME alias2
alias2  CNAME www
txt     TXT   "hello" "world"
txt     TXT   "second record"
big     TXT   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
nodata  A     192.0.2.5
short 1 A     192.0.2.50
*.many  A     192.0.2.99
"#;

/// The wildcard's address: every `*.many.test.` name resolves to it.
pub const MANY_ADDR: &str = "192.0.2.99";

/// A name with [`SIXTY_COUNT`] A records (a headless service with that many
/// endpoints): 1,000 bytes on the wire, twice what a client without EDNS takes.
pub const SIXTY: &str = "sixty.test.";
pub const SIXTY_COUNT: u8 = 60;

/// [`TEST_ZONE`] and the [`SIXTY`] records.
pub fn test_zone() -> String {
    let mut zone = TEST_ZONE.to_string();
    for i in 1..=SIXTY_COUNT {
        zone.push_str(&format!("sixty   A     198.51.100.{i}\n"));
    }
    zone
}

/// A knot serving [`test_zone`].
pub fn knot() -> Knot {
    Knot::start(&[Zone::new("test.", &test_zone())])
}
