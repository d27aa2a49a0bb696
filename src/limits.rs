//! Every bound of the process in one place, with units last in the names and the
//! relationships between them checked at compile time.

// The protocol's sizes live with the codec (`dnswire::limits`), which enforces
// them; they are part of this process's bounds too.
pub use dnswire::limits::{
    CNAME_CHAIN_HOPS_MAX, EDNS_UDP_PAYLOAD_BYTES_DEFAULT, EDNS_UDP_PAYLOAD_BYTES_OURS,
    LABEL_BYTES_MAX, MESSAGE_BYTES_MAX, NAME_BYTES_MAX, NAME_POINTER_HOPS_MAX, TCP_LENGTH_BYTES,
    UDP_PAYLOAD_BYTES_LEGACY, UDP_PAYLOAD_BYTES_MAX,
};

/// Upstream: time for one attempt against one upstream (CoreDNS: 2 s read).
pub const UPSTREAM_ATTEMPT_MILLIS: u64 = 2_000;
/// Upstream: time for the whole query across attempts, then SERVFAIL (CoreDNS: 5 s).
pub const UPSTREAM_QUERY_MILLIS: u64 = 5_000;
/// Upstream TCP: queries in flight on one connection before another is opened.
pub const UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX: usize = 256;
/// Upstream TCP: connections per shard and upstream.
pub const UPSTREAM_TCP_CONNS_MAX: usize = 4;
/// Upstream TCP: a connection with queries written and unanswered that has shown no
/// progress for this long (no answer read, counted from its last answer or from the
/// first write while nothing was unanswered) is *stalled*: new queries go to another
/// connection, opening one if the pool has room. An upstream
/// that answers a connection's queries one at a time in order (CoreDNS: miekg/dns
/// reads a connection's next query only after answering the last) holds every query
/// behind a slow one (a reverse lookup CoreDNS forwards outward); a cluster DNS
/// answers its own names within a millisecond.
pub const UPSTREAM_TCP_STALL_MILLIS: u64 = 25;
/// Upstream TCP: from this many entries on, the queue of queries waiting for room
/// (every connection full) drops those that gave up before it grows: it holds the
/// queries waiting (bounded by the shard's pending misses) plus fewer than this.
pub const UPSTREAM_TCP_WAITING_PRUNE_FROM: usize = 256;
/// Upstream TCP: first reconnect delay after a failed connect, doubled up to the max.
pub const UPSTREAM_BACKOFF_MILLIS_MIN: u64 = 100;
pub const UPSTREAM_BACKOFF_MILLIS_MAX: u64 = 5_000;
/// Upstream: attempts of one query at most, whatever `max_connect_attempts` says
/// (its default is two per upstream, at most 15 upstreams), so upstreams that fail at
/// once (connection refused) cannot spin a query until its deadline; all within
/// `UPSTREAM_QUERY_MILLIS`.
pub const UPSTREAM_ATTEMPTS_MAX: usize = 64;
/// Upstream: `max_age` shorter than this is raised to it, so retiring connections
/// cannot turn into a connect per query.
pub const UPSTREAM_TCP_MAX_AGE_MILLIS_MIN: u64 = 100;

/// Upstream TCP: times one query is sent again, within its attempt, after the
/// upstream closed (EOF) a pooled connection under it (CoreDNS: once per dial of a
/// cached connection).
pub const UPSTREAM_TCP_EOF_RESENDS: usize = 1;

/// Upstream TCP on the epoll engine: the read buffer of a connection, so the answers
/// that arrived together are read in one call (a pair of A and AAAA answers is
/// ~300-600 bytes; a larger answer is read straight into its own buffer).
pub const UPSTREAM_TCP_READ_BUFFER_BYTES: usize = 4_096;

/// Upstream TCP: shortest wait between two idle checks of a connection, so a zero
/// `expire` with queries in flight does not spin.
pub const UPSTREAM_TCP_IDLE_CHECK_MILLIS_MIN: u64 = 1;

const _: () = assert!(UPSTREAM_ATTEMPT_MILLIS < UPSTREAM_QUERY_MILLIS);
const _: () = assert!(UPSTREAM_BACKOFF_MILLIS_MIN <= UPSTREAM_BACKOFF_MILLIS_MAX);
const _: () = assert!(UPSTREAM_TCP_INFLIGHT_PER_CONN_MAX <= u16::MAX as usize);
const _: () = assert!(UPSTREAM_ATTEMPTS_MAX >= 2 * 15);

/// UDP: datagrams read (recvmmsg) and answers sent (sendmmsg) per system call.
pub const UDP_BATCH_MAX: usize = 32;
/// UDP (io_uring): ready sockets the shard's UDP loop takes from one wait, one batch
/// each; more wait for the next (epoll hands ready sockets out in turn).
pub const UDP_READY_SOCKETS_MAX: usize = 16;
/// UDP: default SO_RCVBUF of a listening socket (the kernel caps it at rmem_max).
pub const UDP_RCVBUF_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// TCP clients: listen backlog.
pub const TCP_BACKLOG: i32 = 1024;
/// TCP clients: connections per shard; more are closed at once and counted.
pub const TCP_CLIENTS_PER_SHARD_MAX: usize = 1024;
/// TCP clients: queries in flight on one connection before reading pauses.
pub const TCP_CLIENT_INFLIGHT_MAX: usize = 128;
/// TCP clients: time to send the first query (CoreDNS: 3 s read timeout).
pub const TCP_CLIENT_FIRST_READ_MILLIS: u64 = 3_000;
/// TCP clients: idle time between queries before the connection is closed (CoreDNS: 10 s).
pub const TCP_CLIENT_IDLE_MILLIS: u64 = 10_000;
/// TCP clients: time to write answers before the connection is closed (CoreDNS: 5 s).
/// These three are the defaults of the Corefile's `timeouts` (each within 1 s..=24 h).
pub const TCP_CLIENT_WRITE_MILLIS: u64 = 5_000;
/// `hosts`: largest hosts file read (blocklists run to a few MB).
pub const HOSTS_FILE_BYTES_MAX: u64 = 32 << 20;
/// `forward { tls }`: largest PEM file read (a CA bundle is a few hundred KB).
pub const TLS_PEM_FILE_BYTES_MAX: u64 = 4 << 20;
/// Misses of one shard waiting on one in-flight upstream query (coalesced).
pub const COALESCED_WAITERS_MAX: usize = 4096;
/// Distinct misses in flight per shard and server block; more get SERVFAIL.
pub const MISSES_INFLIGHT_MAX: usize = 16_384;
/// EDNS UDP size we advertise upstream when `bufsize` is not set.
pub const UPSTREAM_BUFSIZE_DEFAULT: u16 = EDNS_UDP_PAYLOAD_BYTES_DEFAULT;
/// EDNS UDP size we advertise to clients in replies.
pub const SERVER_BUFSIZE: u16 = EDNS_UDP_PAYLOAD_BYTES_DEFAULT;

const _: () = assert!(UDP_BATCH_MAX >= 1 && UDP_BATCH_MAX <= 1024);
const _: () = assert!(UDP_READY_SOCKETS_MAX >= 1 && UDP_READY_SOCKETS_MAX <= 1024);

/// Engine probe: entries of the io_uring ring set up (and closed) to learn whether
/// io_uring runs here, before any shard starts.
pub const IO_URING_PROBE_ENTRIES: u32 = 4;
/// Engine probe: operations the probe ring is asked about (IORING_OP_LAST is below).
pub const IO_URING_PROBE_OPS: u32 = 256;

/// Engine probe: the RLIMIT_MEMLOCK below which glommio refuses to start an executor
/// (its own minimum), so the probe says so before any shard starts.
pub const IO_URING_MEMLOCK_BYTES_MIN: u64 = 512 * 1024;

const _: () = assert!(IO_URING_PROBE_ENTRIES.is_power_of_two());
const _: () = assert!(IO_URING_PROBE_OPS >= 64 && IO_URING_PROBE_OPS <= 256);
const _: () = assert!(TCP_CLIENT_FIRST_READ_MILLIS <= TCP_CLIENT_IDLE_MILLIS);
const _: () = assert!(TCP_CLIENT_WRITE_MILLIS >= 1_000 && TCP_CLIENT_WRITE_MILLIS <= 86_400_000);

/// Expired cache entries removed per second by the sweep, per block and shard.
pub const CACHE_SWEEP_ENTRIES_PER_SECOND: usize = 1024;

const _: () = assert!(UPSTREAM_BUFSIZE_DEFAULT as usize <= UDP_PAYLOAD_BYTES_MAX);

/// UDP GSO: longest answer sent as part of a GSO group: DNS's MTU-safe UDP size, so
/// a segment fits any IPv6 link (1280-byte MTU), where the kernel would refuse a
/// larger one.
pub const UDP_GSO_SEGMENT_BYTES_MAX: usize = EDNS_UDP_PAYLOAD_BYTES_DEFAULT as usize;
/// UDP GSO: answers in one GSO send at most: a whole batch, within the kernel's
/// segments and one datagram's payload.
pub const UDP_GSO_SEGMENTS_MAX: usize = UDP_BATCH_MAX;
/// UDP GSO: answers in one GSO send at least, in a batch of fewer than
/// [`UDP_GSO_PAIRS_FROM_BATCH`] answers; shorter runs go one datagram each in the same
/// `sendmmsg`. A pod's A and AAAA answers (equal length when both are NXDOMAIN or
/// NODATA) sent as one GSO pair reached the pod 3-8 µs later at the median at 2k-10k
/// QPS on the node's shape (`bench/runs/2026-12-04-gso-pairs/`).
pub const UDP_GSO_SEGMENTS_MIN: usize = 3;
/// UDP GSO: from this many answers in one batch on (a loaded server, where batches
/// fill), pairs go as GSO sends too: the node's closed loop answered 9 % more so.
pub const UDP_GSO_PAIRS_FROM_BATCH: usize = UDP_BATCH_MAX / 2;

const _: () = assert!(UDP_GSO_SEGMENTS_MAX <= mmsg::GSO_SEGMENTS_MAX);
const _: () = assert!(2 <= UDP_GSO_SEGMENTS_MIN && UDP_GSO_SEGMENTS_MIN <= UDP_GSO_SEGMENTS_MAX);
const _: () = assert!(UDP_GSO_PAIRS_FROM_BATCH <= UDP_BATCH_MAX);
const _: () = assert!(UDP_GSO_SEGMENTS_MAX * UDP_GSO_SEGMENT_BYTES_MAX <= mmsg::GSO_BYTES_MAX);
const _: () = assert!(UDP_GSO_SEGMENT_BYTES_MAX < 1280);

/// Probes (readiness, `doctor`, the node's "does the server answer"): wait for an
/// answer, and for a TCP connect, at most this long.
pub const PROBE_MILLIS: u64 = 2_000;
const _: () = assert!(SERVER_BUFSIZE as usize <= UDP_PAYLOAD_BYTES_MAX);

/// Byte budget of a cache shard per configured entry when `max_bytes` is not set:
/// (success.capacity + denial.capacity) × this. An entry's accounted size is what it
/// takes: its 48-byte slot, its one allocation (name, records, TTL offsets, rounded up
/// as malloc does) and its share of the index (see `cache::shard`); an A / AAAA answer
/// for a cluster name is ~150–180 B, so this bounds memory (large answers) without
/// shrinking the entry count.
pub const CACHE_ENTRY_BYTES_BUDGET: usize = 512;
/// Most entries one cache class of one shard may hold, whatever the configuration says
/// (slot ids are 30 bits).
pub const CACHE_ENTRIES_MAX: usize = 1 << 24;
/// With several shards, a shard keeps copies of the names other shards own (so their
/// hits stay on its core) apart from its share of the configured capacity, in a pool
/// per class of at most its share / this many entries; copies give way first when
/// the byte budget is short.
pub const CACHE_COPY_SHARE_DIVISOR: usize = 2;
/// CoreDNS `dnsutil.MinimalTTL` starts its minimum at 1 h, so no answer TTL exceeds it
/// before the configured cap applies.
pub const ANSWER_TTL_SECS_MAX: u32 = 3600;
/// TTL of a message with no records to take a minimum over (CoreDNS `MinimalDefaultTTL`).
pub const ANSWER_TTL_SECS_DEFAULT: u32 = 5;

const _: () = assert!(CACHE_ENTRIES_MAX < 1 << 30);
const _: () = assert!(CACHE_COPY_SHARE_DIVISOR > 0);
const _: () = assert!(ANSWER_TTL_SECS_DEFAULT <= ANSWER_TTL_SECS_MAX);

/// Control plane → shard: how often a shard reads its control inbox (reload, stop).
pub const CONTROL_POLL_MILLIS: u64 = 100;
/// Liveness: `/health` answers 503 while a serving shard's control tick has not run
/// for this long (a wedged loop, a blocked thread). 50 missed ticks: far above what
/// scheduling on a loaded node delays a tick by, far below the ≥ 20 s a kubelet
/// needs to act on it (failureThreshold 3 × periodSeconds 10 by default).
pub const LIVENESS_STALL_MILLIS: u64 = 5_000;
const _: () = assert!(LIVENESS_STALL_MILLIS >= 20 * CONTROL_POLL_MILLIS);
/// The test hook that stalls a shard (`NODELOCALDNS_TEST_STALL_FILE`) stalls it at
/// most this long.
pub const TEST_STALL_MILLIS_MAX: u64 = 60_000;
/// Stop without a successor: longest a shard keeps draining its UDP sockets (queued
/// datagrams, misses in flight) before closing them. The rules' teardown (≤ 2 s) runs
/// before it, so exit stays within lameduck + 5 s.
pub const HANDOVER_DRAIN_MILLIS_MAX: u64 = 1_500;
/// Stop with a successor (no teardown then): long enough for a miss whose upstream
/// datagram was lost to be retried after a whole attempt and answered, still within
/// lameduck + 5 s.
pub const HANDOVER_DRAIN_SUCCESSOR_MILLIS_MAX: u64 = UPSTREAM_ATTEMPT_MILLIS + 1_500;
const _: () = assert!(CONTROL_POLL_MILLIS + HANDOVER_DRAIN_SUCCESSOR_MILLIS_MAX < 5_000);
/// TCP clients while stopping: a connection with no further query for this long
/// closes (its answers sent first). Long enough for a client that asks its second
/// question only after the first answer (glibc `single-request`, or a TC retry) on
/// a loaded node: closing between the two would reset the second (measured: 100 ms
/// was not, under a load average of 13 on 2 cores).
pub const TCP_STOP_IDLE_MILLIS: u64 = 1_000;
/// Stopping: longest a shard waits, after its drain, for its TCP connections to
/// close (idle for [`TCP_STOP_IDLE_MILLIS`], answers sent) before it exits.
pub const HANDOVER_TCP_CLOSE_MILLIS_MAX: u64 = 1_200;
const _: () = assert!(TCP_STOP_IDLE_MILLIS < HANDOVER_TCP_CLOSE_MILLIS_MAX);
const _: () = assert!(TCP_STOP_IDLE_MILLIS < HANDOVER_DRAIN_SUCCESSOR_MILLIS_MAX);
const _: () = assert!(
    CONTROL_POLL_MILLIS + HANDOVER_DRAIN_SUCCESSOR_MILLIS_MAX + HANDOVER_TCP_CLOSE_MILLIS_MAX
        < 5_000
);
/// Reload that removes a listen address: longest a shard keeps reading the datagrams
/// already queued on its socket for it before closing it.
pub const RELOAD_DRAIN_MILLIS_MAX: u64 = 250;
/// Start-up: time for every shard's executor to run before `server::start` fails.
pub const SHARD_START_MILLIS_MAX: u64 = 10_000;
/// Control plane → shard: messages queued per shard.
pub const CONTROL_QUEUE_MAX: usize = 16;

/// Cache: a refresh (prefetch or serve_stale) the server was told to start and never
/// reported back (`insert` or `refresh_failed`) is presumed lost after this long, and
/// the next due hit of that entry asks for another. Longer than a whole upstream query.
pub const CACHE_REFRESH_MILLIS_MAX: u64 = 2 * UPSTREAM_QUERY_MILLIS;

const _: () = assert!(CACHE_REFRESH_MILLIS_MAX > UPSTREAM_QUERY_MILLIS);

/// Cache: after a refresh failed (no answer, or one that could not replace the entry),
/// the next refresh of that entry starts no sooner than this: a dead upstream that
/// refuses at once must not get one refresh per hit of a popular entry.
pub const CACHE_REFRESH_RETRY_MILLIS: u64 = 1_000;

/// Cross-core miss routing: messages queued between two shards.
pub const OWNER_CHANNEL_MAX: usize = 1024;
/// Cross-core miss routing: seed of the key → owner hash (the same on every shard).
pub const OWNER_HASH_SEED: u64 = 0x6e6f_6465_6c6f_6361;

/// Misses waiting for an answer on one shard; past it a miss gets SERVFAIL at once
/// and is counted. A waiting miss is a task whose future holds the upstream query
/// buffer (~8 KiB with its state), so this bounds a flood to ~32 MiB per shard.
pub const MISSES_PENDING_PER_SHARD_MAX: usize = 4_096;
/// The fewest pending misses a shard gets from a memory plan, however small.
pub const MISSES_PENDING_PER_SHARD_MIN: usize = 64;
/// Memory plan (`memory_plan`) under a cgroup memory limit (or `--memory-limit`):
/// what the process takes apart from the shards and the budgets below (the binary,
/// the HTTP threads, the node's control plane, allocator arenas): idle RSS measured
/// 9.3 MiB with one shard and 11.8 with two (the node's four blocks, 2 MiB of I/O
/// memory a shard), rounded up with room for a reload's second configuration.
pub const MEMORY_BASE_BYTES: u64 = 16 << 20;
/// Memory plan: what each shard adds before any budget is used, besides its I/O
/// memory: its UDP batches (2 × 32 × 4 KiB: one on io_uring, one per socket and up
/// to four sockets on epoll), its
/// scratch answer buffers, its thread's stack and tables.
pub const MEMORY_SHARD_BYTES: u64 = 2 << 20;
/// io_uring memory per shard (`--io-memory-bytes`; registered memory counts against
/// RLIMIT_MEMLOCK without CAP_IPC_LOCK) unless the plan makes it smaller.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 2 << 20;
/// The smallest io_uring memory a plan gives a shard (a tight limit).
pub const IO_MEMORY_BYTES_MIN: usize = 512 << 10;
/// Memory plan: the part of the limit no budget takes, in quarters: the kernel's
/// socket buffers charged to the cgroup (UDP receive queues, TCP windows), the
/// allocator's fragmentation, page tables.
pub const MEMORY_SLACK_QUARTERS: u64 = 1;
/// Memory plan: how what is left after the base and the shards is shared, in
/// eighths: the cache, the pending misses (with their upstream queries and in-flight
/// entries), the TCP clients.
pub const MEMORY_CACHE_EIGHTHS: u64 = 3;
pub const MEMORY_MISSES_EIGHTHS: u64 = 3;
pub const MEMORY_TCP_EIGHTHS: u64 = 2;
/// Memory plan: what one pending miss costs, measured with heaptrack under a miss
/// flood (its task's future ~6.5 KiB, its cross-shard request and upstream queue
/// entry), rounded up. Every upstream query in flight belongs to a pending miss (the
/// asker's or, routed to its owner, another shard's), so this bounds the upstream
/// queues and in-flight tables too.
pub const MISS_PENDING_BYTES: u64 = 12 << 10;
/// Memory plan: what one TCP client costs while it asks small queries: its tasks and
/// their futures, its query buffer (grown to the largest query it sent), its queued
/// answers and its socket's kernel buffers (charged to the cgroup); measured 1.3 KiB
/// of RSS per idle client and 1.6 KiB after a query each (1,000 clients, one shard,
/// `bench/runs/2026-12-04-memory-plan`), rounded up for the kernel's part and
/// answers in flight.
pub const TCP_CLIENT_BYTES: u64 = 16 << 10;
/// The fewest TCP clients per shard a plan allows, however small the limit.
pub const TCP_CLIENTS_PER_SHARD_MIN: usize = 16;
/// Memory plan: bytes one cache entry takes for planning the entry count from the
/// cache's bytes: its 48-byte slot, its allocation (an A / AAAA / NXDOMAIN answer of
/// a cluster name: 110–180 bytes, malloc-rounded) and its ~16 bytes of index and
/// expiry bucket. The byte budget still bounds larger answers.
pub const CACHE_ENTRY_BYTES_TYPICAL: usize = 256;
/// The smallest cache a plan leaves, however small the limit (bytes, all blocks).
pub const CACHE_BYTES_MIN: u64 = 1 << 20;
/// Memory plan: each UDP listening socket's SO_RCVBUF is at most the limit divided by
/// this (the kernel charges the queue, up to twice SO_RCVBUF, to the cgroup), within
/// [`UDP_RCVBUF_BYTES_MIN`] and [`UDP_RCVBUF_BYTES_DEFAULT`].
pub const MEMORY_RCVBUF_DIVISOR: u64 = 64;
pub const UDP_RCVBUF_BYTES_MIN: usize = 256 << 10;
/// Memory plan: logging. Lines are formatted into one thread-local line buffer and
/// written unbuffered to stderr; the `errors` plugin tracks at most
/// [`ERRORS_KINDS_MAX`] kinds per block and shard, the `log` plugin writes each line
/// as it goes. What that takes at most, per shard.
pub const MEMORY_LOG_BYTES: u64 = 256 << 10;
const _: () = assert!(MISSES_PENDING_PER_SHARD_MIN <= MISSES_PENDING_PER_SHARD_MAX);
const _: () = assert!(TCP_CLIENTS_PER_SHARD_MIN <= TCP_CLIENTS_PER_SHARD_MAX);
const _: () = assert!(MEMORY_SLACK_QUARTERS >= 1 && MEMORY_SLACK_QUARTERS < 4);
const _: () = assert!(MEMORY_CACHE_EIGHTHS + MEMORY_MISSES_EIGHTHS + MEMORY_TCP_EIGHTHS == 8);
const _: () = assert!(CACHE_ENTRY_BYTES_TYPICAL <= CACHE_ENTRY_BYTES_BUDGET);
const _: () = assert!(IO_MEMORY_BYTES_MIN <= IO_MEMORY_BYTES_DEFAULT);
const _: () = assert!(UDP_RCVBUF_BYTES_MIN <= UDP_RCVBUF_BYTES_DEFAULT);
const _: () = assert!(MEMORY_LOG_BYTES >= ERRORS_KINDS_MAX as u64 * 1024);
// A TCP client's query buffer holds the largest query it sent; the plan's figure is
// for the small queries clients send, never below one UDP payload.
const _: () = assert!(TCP_CLIENT_BYTES >= UDP_PAYLOAD_BYTES_MAX as u64);

/// nftables rules mode: longest one netlink receive waits for the kernel (a batch's
/// acknowledgements, one message of a dump); the teardown's own deadline bounds the
/// whole exchange too.
pub const NFT_NETLINK_TIMEOUT_MILLIS: u64 = 2_000;
/// nftables: bytes of one netlink receive (the kernel sends dumps in datagrams of at
/// most 32 KiB; a larger one is an error, not a truncation).
pub const NFT_RECV_BYTES: usize = 64 * 1024;
/// nftables: objects (tables, chains or rules) read from one dump before it is
/// refused; our table holds 12 rules per local IP, a node's whole ruleset more.
pub const NFT_DUMP_MESSAGES_MAX: usize = 100_000;
/// nftables: local IPs our table holds rules for (12 rules each, all in one batch; a
/// node has two, four dual-stack). More is refused with an error, counted.
pub const NFT_LOCAL_IPS_MAX: usize = 16;
/// nftables: largest batch we send. The kernel refuses a netlink message larger than
/// the socket's send buffer (net.core.wmem_default, 212,992 bytes unless lowered);
/// our table for NFT_LOCAL_IPS_MAX IPv6 addresses takes 96,172 bytes (unit test
/// `nftables::tests::largest_batch_fits`).
pub const NFT_BATCH_BYTES_MAX: usize = 160 * 1024;

const _: () = assert!(NFT_RECV_BYTES >= 32 * 1024);
const _: () = assert!(NFT_LOCAL_IPS_MAX * 12 < NFT_DUMP_MESSAGES_MAX);

/// `errors` without a matching `consolidate` rule: the period over which lines of one
/// kind (same rcode and reason, any name and type) are counted on a block of a shard.
pub const ERRORS_STORM_PERIOD_SECS: u64 = 10;
/// `errors`: whole lines of one kind written per period before the rest are only
/// counted and summarised at its end (a flood of cold names whose upstream stalls
/// would otherwise write one line per query).
pub const ERRORS_LINES_PER_KIND_MAX: u64 = 10;
/// `errors`: kinds tracked per period; lines of further kinds count under one
/// "other" summary, so the tracking itself is bounded.
pub const ERRORS_KINDS_MAX: usize = 64;

const _: () = assert!(ERRORS_LINES_PER_KIND_MAX >= 1 && ERRORS_KINDS_MAX >= 1);

/// `template` and `rewrite`: longest regular expression accepted (CoreDNS refuses
/// patterns over 10,000 characters for the same reason: compiling one costs memory).
pub const REGEX_PATTERN_BYTES_MAX: usize = 10_000;
/// `template` and `rewrite`: memory one compiled regular expression may take (the
/// `regex` crate's size limit; its default, 10 MiB, is meant for one regex per
/// program, a Corefile may hold hundreds, and each shard keeps a copy).
pub const REGEX_COMPILED_BYTES_MAX: usize = 1 << 20;
/// `template` directives in one server block.
pub const TEMPLATES_PER_BLOCK_MAX: usize = 64;
/// `answer`, `additional` and `authority` records of one template together, and
/// `match` patterns of one template.
pub const TEMPLATE_RECORDS_MAX: usize = 32;
/// Longest text of one record template and of one rendered record.
pub const TEMPLATE_TEXT_BYTES_MAX: usize = 4096;
/// `template`: metric series (listening address, zone, class, type, and for failures
/// the record) one block's templates keep per shard; further ones count under the
/// last kept series' neighbours as type `other`, so a flood of query types cannot
/// grow them.
pub const TEMPLATE_SERIES_MAX: usize = 256;
/// `rewrite` rules in one server block, and `answer` rules of one rule.
pub const REWRITE_RULES_PER_BLOCK_MAX: usize = 64;

const _: () = assert!(REGEX_PATTERN_BYTES_MAX < REGEX_COMPILED_BYTES_MAX);
const _: () = assert!(TEMPLATE_TEXT_BYTES_MAX <= dnswire::limits::MESSAGE_BYTES_MAX);

/// Metrics over TLS (`-tls-enabled`): largest PEM file read (certificate chain, key,
/// client CAs).
pub const TLS_PEM_BYTES_MAX: u64 = 1 << 20;
/// Metrics over TLS: one connection's handshake, request and answer each get this
/// long before the connection is dropped; connections are served one at a time per
/// address, so a silent client holds the next scrape back at most this long.
pub const HTTP_TLS_IO_MILLIS: u64 = 5_000;
/// Metrics over TLS: longest request head (request line and headers) read.
pub const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
