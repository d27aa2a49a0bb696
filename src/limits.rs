//! Every bound of the process in one place, with units last in the names and the
//! relationships between them checked at compile time.

/// Largest DNS message over TCP (the 2-byte length prefix bounds it).
pub const MESSAGE_BYTES_MAX: usize = 65_535;
/// Largest UDP payload we read or send.
pub const UDP_PAYLOAD_BYTES_MAX: usize = 4096;
/// UDP answer size without EDNS (RFC 1035).
pub const UDP_PAYLOAD_BYTES_LEGACY: usize = 512;
/// Largest name in wire form, labels and length octets included (RFC 1035).
pub const NAME_BYTES_MAX: usize = 255;
/// Largest label.
pub const LABEL_BYTES_MAX: usize = 63;

const _: () = assert!(UDP_PAYLOAD_BYTES_LEGACY <= UDP_PAYLOAD_BYTES_MAX);
const _: () = assert!(UDP_PAYLOAD_BYTES_MAX <= MESSAGE_BYTES_MAX);

/// UDP payload size we advertise in the OPT of our replies to clients (what we read).
pub const EDNS_UDP_PAYLOAD_BYTES_OURS: u16 = UDP_PAYLOAD_BYTES_MAX as u16;
/// Compression pointers followed while reading one name. Pointers must also point
/// backwards, so loops are impossible anyway; this bounds the work per name.
pub const NAME_POINTER_HOPS_MAX: usize = 64;

const _: () = assert!(EDNS_UDP_PAYLOAD_BYTES_OURS as usize == UDP_PAYLOAD_BYTES_MAX);
const _: () = assert!(UDP_PAYLOAD_BYTES_MAX <= u16::MAX as usize);

/// Byte budget of a cache shard per configured entry when `max_bytes` is not set:
/// (success.capacity + denial.capacity) × this. An entry's accounted size is its
/// record bytes, name, TTL offsets and bookkeeping (see `cache::shard`); a typical A /
/// AAAA answer is ~150–300 B, so this bounds memory without shrinking the entry count.
pub const CACHE_ENTRY_BYTES_BUDGET: usize = 512;
/// Most entries one cache class of one shard may hold, whatever the configuration says
/// (slot ids are 31 bits).
pub const CACHE_ENTRIES_MAX: usize = 1 << 24;
/// CoreDNS `dnsutil.MinimalTTL` starts its minimum at 1 h, so no answer TTL exceeds it
/// before the configured cap applies.
pub const ANSWER_TTL_SECS_MAX: u32 = 3600;
/// TTL of a message with no records to take a minimum over (CoreDNS `MinimalDefaultTTL`).
pub const ANSWER_TTL_SECS_DEFAULT: u32 = 5;

const _: () = assert!(CACHE_ENTRIES_MAX < 1 << 31);
const _: () = assert!(ANSWER_TTL_SECS_DEFAULT <= ANSWER_TTL_SECS_MAX);
