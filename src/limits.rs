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

/// Upstream: time for one attempt against one upstream (CoreDNS: 2 s read).
pub const UPSTREAM_ATTEMPT_MILLIS: u64 = 2_000;
/// Upstream: time for the whole query across attempts, then SERVFAIL (CoreDNS: 5 s).
pub const UPSTREAM_QUERY_MILLIS: u64 = 5_000;
/// Upstream TCP: queries in flight on one connection before another is opened.
pub const UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX: usize = 256;
/// Upstream TCP: connections per shard and upstream.
pub const UPSTREAM_TCP_CONNS_MAX: usize = 4;
/// Upstream TCP: first reconnect delay after a failed connect, doubled up to the max.
pub const UPSTREAM_BACKOFF_MILLIS_MIN: u64 = 100;
pub const UPSTREAM_BACKOFF_MILLIS_MAX: u64 = 5_000;
/// Upstream: attempts of one query (each on the next upstream).
pub const UPSTREAM_ATTEMPTS_MAX: usize = 3;

const _: () = assert!(UPSTREAM_ATTEMPT_MILLIS < UPSTREAM_QUERY_MILLIS);
const _: () = assert!(UPSTREAM_BACKOFF_MILLIS_MIN <= UPSTREAM_BACKOFF_MILLIS_MAX);
const _: () = assert!(UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX <= u16::MAX as usize);
