//! Every bound the load generator has, in one place, with its unit last in the name.
//!
//! The relationships between them are checked at compile time so a change to one
//! cannot silently break another (for example a batch larger than the receive ring).

/// Messages per `sendmmsg`/`recvmmsg` call: enough to amortise the syscall, small
/// enough that one batch never sits on the wire long enough to skew timestamps.
pub const BATCH_MSGS_MAX: usize = 64;

/// Default batch size when `--batch` is not given.
pub const BATCH_MSGS_DEFAULT: usize = 32;

/// Bytes reserved per received datagram. Answers larger than this are truncated by
/// the kernel; only the header and question are inspected, so that is harmless.
pub const RECV_SLOT_BYTES: usize = 2048;

/// Longest query we encode: a 255-byte name, header, question trailer and an OPT RR.
pub const QUERY_BYTES_MAX: usize = 512;

// The protocol's sizes live with the codec (`dnswire::limits`), which enforces them.
pub use dnswire::limits::{EDNS_UDP_PAYLOAD_BYTES_DEFAULT, NAME_BYTES_MAX};

const _: () =
    assert!(QUERY_BYTES_MAX >= dnswire::HEADER_BYTES + NAME_BYTES_MAX + 4 + dnswire::OPT_BYTES);

/// DNS message IDs per socket or connection (the ID field is 16 bits).
pub const IDS_PER_CHANNEL_MAX: usize = 1 << 16;

/// Fewest IDs a socket or connection gets (the table is sized per channel from the
/// outstanding limit; this floor keeps an ID from being reused too soon).
pub const IDS_PER_CHANNEL_MIN: usize = 256;

/// Sockets or connections one worker thread may own (a node's pods, each its own
/// socket). Only ready ones are read, so a pass does not grow with this.
pub const CHANNELS_PER_WORKER_MAX: usize = 4096;

/// Ready sockets taken from epoll per wait; more stay ready for the next pass.
pub const EPOLL_EVENTS_MAX: usize = 256;

/// Worker threads.
pub const THREADS_MAX: usize = 256;

/// Names one generator may hold in memory (pattern expansion or random names).
pub const NAMES_MAX: usize = 20_000_000;

/// Longest accepted line in a query file.
pub const QUERY_LINE_BYTES_MAX: usize = 4096;

/// Per-query timeout bounds.
pub const TIMEOUT_SECS_MAX: f64 = 60.0;

/// Highest latency the histogram tracks; larger values are clamped to it.
pub const LATENCY_NS_MAX: u64 = 120_000_000_000;

/// Emptied histograms kept per worker for its next second (`stats::Spares`): the
/// three a second ships.
pub const SPARE_HISTOGRAMS_PER_WORKER: usize = 3;

/// Significant decimal digits kept by the HDR histogram.
pub const HISTOGRAM_SIGFIGS: u8 = 3;

/// Socket buffer size asked for on every UDP socket, so bursts are absorbed by the
/// kernel instead of being dropped before we can measure them.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Bytes of queued, not yet written queries per TCP connection before the worker
/// stops adding more (back-pressure instead of unbounded growth).
pub const TCP_OUT_BYTES_MAX: usize = 256 << 10;

/// Bytes of the per-connection TCP read buffer at most (a DNS message is at most
/// 64 KiB + 2).
pub const TCP_IN_BYTES: usize = 128 << 10;

/// Bytes a TCP read buffer starts with; it doubles while a message does not fit
/// (churn opens many connections, most of which see only small answers).
pub const TCP_IN_BYTES_INITIAL: usize = 4 << 10;

/// Retired connections (`--tcp-churn`) one worker keeps open for their last
/// answers; when all are in use, channels wait before opening another.
pub const TCP_RETIRED_MAX: usize = 4096;

/// Longest a run waits, before it starts, for the kernel to stamp arrivals
/// (`stamps.rs`); it starts anyway after this, with a warning.
pub const STAMP_WAIT_MAX_NS: u64 = 1_000_000_000;

/// How long a stamp probe waits between its send and its read: a stamp this much
/// older than the read (half of it, for the check) was taken on arrival.
pub const STAMP_PROBE_GAP_NS: u64 = 200_000;

/// Longest a stamp probe's read waits for the probe (loopback: it is there already).
pub const STAMP_PROBE_READ_NS: u64 = 100_000_000;

/// Pause between stamp probes while the kernel has not switched stamps on yet.
pub const STAMP_PROBE_EVERY_NS: u64 = 1_000_000;

/// Longest a worker sleeps in `epoll_pwait2` before looking at the clock and stop flag.
pub const IDLE_SLEEP_NS_MAX: u64 = 2_000_000;

/// A worker wakes this long before its next send is due at least, and spins the
/// rest, so the wake-up's own latency does not make the send late.
pub const SPIN_NS_MIN: u64 = 2_000;

/// Longest spin before a due send of the open loop, `-Q` and the pod model
/// ([`crate::spin`]): the
/// spin follows the wake-up lateness the worker observes, up to this. Wake-ups on
/// a virtual machine end 20-30 µs late typically and some tens more now and then.
pub const WAKE_SPIN_NS_MAX: u64 = 60_000;

/// The spin guard's window: how often the worker reads its CPU time.
pub const SPIN_WINDOW_NS: u64 = 10_000_000;

/// The share of its time a worker may be busy (on the CPU), per mille; while it
/// owes idle time it spins only [`SPIN_NS_MIN`]: a real-time thread must leave its
/// core idle now and then, or the kernel stops it for tens of ms.
pub const SPIN_BUSY_PERMILLE_MAX: u64 = 900;

/// An answer read in open loop over UDP stops this long before the next due send
/// (one `recvmmsg` of a few answers costs a few µs), so reading rarely delays it.
/// A larger allowance was tried: at 50k QPS reads then rarely fit between sends,
/// fall overdue and are made all at once, which delays sends more.
pub const RECEIVE_MARGIN_NS: u64 = 5_000;

/// In open loop over UDP (arrivals stamped by the kernel), answers are read this
/// often instead of as each comes: a late read changes no latency, and one read
/// per socket per interval replaces a wake-up per answer.
pub const RECEIVE_INTERVAL_NS: u64 = 1_000_000;

/// How long a worker keeps waiting for outstanding answers after Ctrl-C.
pub const INTERRUPT_DRAIN_NS_MAX: u64 = 1_000_000_000;

/// Rate the `-Q` limiter may fall behind before it forgets the debt (no catch-up burst).
pub const RATE_LIMIT_DEBT_NS_MAX: u64 = 100_000_000;

/// Conditions one `--fail-if` may hold.
pub const GATES_MAX: usize = 64;

/// Reports one `dnsload merge` reads.
pub const MERGE_INPUTS_MAX: usize = 10_000;

/// Bytes of a JSON report `dnsload merge` accepts (a day-long run's report with its
/// per-second series and histograms is a few MB).
pub const REPORT_BYTES_MAX: u64 = 256 << 20;

/// Seconds of a JSON report's series that carry their own histograms (about 5 KB
/// a second, deflated): an hour, so a report stays far below
/// [`REPORT_BYTES_MAX`]; later seconds carry counts and percentiles only, and a
/// merge adds only their counts.
pub const SECOND_HISTOGRAMS_MAX: usize = 3600;

/// Seconds of a merged per-second series (a week); later seconds are left out.
pub const SERIES_SECONDS_MAX: u64 = 7 * 86_400;

/// Furthest ahead `--start-at` may be, seconds.
pub const START_AT_AHEAD_SECS_MAX: f64 = 86_400.0;

/// Ramp steps before the ramp gives up looking for a knee.
pub const RAMP_STEPS_MAX: usize = 1000;

/// Namespaces a pod profile may spread its pods over.
pub const NAMESPACES_MAX: usize = 10_000;

/// Highest `ndots` (resolv.conf(5) caps the option at 15).
pub const NDOTS_MAX: usize = 15;

/// Search domains a resolver reads (glibc's MAXDNSRCH); the cluster uses three.
pub const SEARCH_DOMAINS_MAX: usize = 6;

/// Services of a pod profile, all namespaces together.
pub const SERVICES_MAX: usize = 1_000_000;

/// Distinct outside names of a pod profile.
pub const OUTSIDE_NAMES_MAX: usize = 1_000_000;

/// Bytes of a pod profile file.
pub const PROFILE_BYTES_MAX: u64 = 1 << 20;

/// Lookups one worker keeps in flight at most (pod model); arrivals beyond it
/// wait, and the wait shows as send lag.
pub const LOOKUPS_IN_FLIGHT_MAX: usize = 1 << 16;

/// Lookups one worker starts per pass of its loop, before it reads answers again.
pub const LOOKUP_STARTS_PER_PASS: usize = 64;

/// Queries one replay holds (16 bytes each, plus the distinct queries encoded).
pub const REPLAY_QUERIES_MAX: usize = 10_000_000;

/// Outstanding-query slots one replay worker allocates over its sockets (24
/// bytes each, 24 MiB): the whole ID space for up to 16 clients, 256 IDs each
/// for 4,096.
pub const REPLAY_ID_SLOTS_MAX: usize = 1 << 20;

/// Original clients one replay thread maps to sockets of its own.
pub const REPLAY_CLIENTS_MAX: usize = CHANNELS_PER_WORKER_MAX;

const _: () = assert!(BATCH_MSGS_DEFAULT <= BATCH_MSGS_MAX);
// A batch's sent/unsent state travels as one bit per message in a u64.
const _: () = assert!(BATCH_MSGS_MAX <= 64);
const _: () = assert!(QUERY_BYTES_MAX <= RECV_SLOT_BYTES);
const _: () = assert!(TCP_IN_BYTES >= (1 << 16) + 2);
const _: () = assert!(IDS_PER_CHANNEL_MAX == u16::MAX as usize + 1);
const _: () = assert!(IDS_PER_CHANNEL_MIN.is_power_of_two());
const _: () = assert!(IDS_PER_CHANNEL_MIN <= IDS_PER_CHANNEL_MAX);
const _: () = assert!(IDS_PER_CHANNEL_MIN >= 2 * BATCH_MSGS_MAX);
const _: () = assert!(RECEIVE_INTERVAL_NS <= IDLE_SLEEP_NS_MAX);
// The spin is shorter than the longest sleep, and a guard window spans several sleeps.
const _: () = assert!(SPIN_NS_MIN <= WAKE_SPIN_NS_MAX && WAKE_SPIN_NS_MAX < IDLE_SLEEP_NS_MAX);
const _: () = assert!(SPIN_WINDOW_NS >= 4 * IDLE_SLEEP_NS_MAX && SPIN_BUSY_PERMILLE_MAX < 1000);
const _: () = assert!(RECEIVE_MARGIN_NS < RECEIVE_INTERVAL_NS);
// A probe's gap is far longer than a read takes, and many probes fit the wait.
const _: () =
    assert!(STAMP_PROBE_GAP_NS >= 100_000 && STAMP_WAIT_MAX_NS >= 100 * STAMP_PROBE_GAP_NS);
const _: () = assert!(TCP_IN_BYTES_INITIAL <= TCP_IN_BYTES);
const _: () = assert!(SEARCH_DOMAINS_MAX > 3);
const _: () = assert!(LOOKUP_STARTS_PER_PASS <= LOOKUPS_IN_FLIGHT_MAX);
// A step's queries (A and AAAA) go out in one batch.
const _: () = assert!(BATCH_MSGS_MAX >= 2);
const _: () = assert!((SECOND_HISTOGRAMS_MAX as u64) * (64 << 10) < REPORT_BYTES_MAX);
