//! The protocol's bounds and the sizes the codec enforces, in one place; the server's
//! and dnsload's `limits.rs` re-export them. Relations are checked at compile time.

/// Largest DNS message over TCP (the 2-byte length prefix bounds it).
pub const MESSAGE_BYTES_MAX: usize = 65_535;
/// Largest UDP payload read or sent; a client's EDNS size is clamped to it.
pub const UDP_PAYLOAD_BYTES_MAX: usize = 4096;
/// UDP answer size without EDNS (RFC 1035).
pub const UDP_PAYLOAD_BYTES_LEGACY: usize = 512;
/// EDNS UDP size that avoids IP fragmentation (DNS Flag Day 2020): the default we
/// advertise upstream, to clients, and in dnsload's queries.
pub const EDNS_UDP_PAYLOAD_BYTES_DEFAULT: u16 = 1232;
/// UDP payload size advertised in the OPT of error replies (what we read).
pub const EDNS_UDP_PAYLOAD_BYTES_OURS: u16 = UDP_PAYLOAD_BYTES_MAX as u16;
/// Largest name in wire form, labels and length octets included (RFC 1035).
pub const NAME_BYTES_MAX: usize = 255;
/// Largest label.
pub const LABEL_BYTES_MAX: usize = 63;
/// Labels in the longest name: each takes at least two bytes (length and one octet).
pub const NAME_LABELS_MAX: usize = NAME_BYTES_MAX / 2;
/// Compression pointers followed while reading one name. Pointers must also point
/// backwards, so loops are impossible anyway; this bounds the work per name.
pub const NAME_POINTER_HOPS_MAX: usize = 64;
/// CNAME records followed from a question name when deciding whether an answer
/// answers it; a longer chain is taken as answering nothing (resolvers give up
/// sooner: BIND after 16 restarts, Unbound after 11). Bounds the work per answer.
pub const CNAME_CHAIN_HOPS_MAX: usize = 16;
/// Length prefix of a message over TCP (RFC 1035 4.2.2).
pub const TCP_LENGTH_BYTES: usize = 2;

const _: () = assert!(UDP_PAYLOAD_BYTES_LEGACY <= EDNS_UDP_PAYLOAD_BYTES_DEFAULT as usize);
const _: () = assert!(EDNS_UDP_PAYLOAD_BYTES_DEFAULT as usize <= UDP_PAYLOAD_BYTES_MAX);
const _: () = assert!(UDP_PAYLOAD_BYTES_MAX <= MESSAGE_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX == u16::MAX as usize);
const _: () = assert!(EDNS_UDP_PAYLOAD_BYTES_OURS as usize == UDP_PAYLOAD_BYTES_MAX);
const _: () = assert!(LABEL_BYTES_MAX < NAME_BYTES_MAX);
const _: () = assert!(NAME_POINTER_HOPS_MAX <= NAME_LABELS_MAX);
