//! `dnsload`: a DNS load generator that is faster than the server it measures and
//! tells the truth about tail latency. The binary is a thin shell over this crate.
//!
//! Map of the modules, in the order a query flows through them:
//!
//! - [`config`]: dnsperf-compatible command line → one validated [`config::Config`].
//! - [`limits`]: every bound, with its unit, in one place.
//! - [`clock`]: the run's monotonic clock and the kernel's receive stamps on it.
//! - [`queries`]: query files, name patterns, random names, type mix, Zipf; encoded once.
//! - [`wire`]: the DNS codec (the workspace crate `dnswire`, shared with the server).
//! - [`schedule`]: intended send times (closed loop, `-Q`, open loop constant/Poisson).
//! - [`spin`]: how early a worker wakes before a due send (learned wake-up lateness).
//! - [`inflight`]: outstanding queries per worker, keyed by channel and ID; timeouts.
//! - [`sender`]: the per-worker loop shared by both transports.
//! - [`pods`]: the Kubernetes pod traffic model: profile, search-list expansion,
//!   glibc/musl step rules, working set, zone files.
//! - [`lookups`]: the pod model's per-worker loop (lookups made of A+AAAA steps).
//! - [`replay`]: queries, times and clients from a pcap/pcapng capture or a query log.
//! - [`replayer`]: the replay loop: each query at its time on its client's socket.
//! - [`poll`]: one epoll set per worker, nanosecond waits, only ready sockets read.
//! - [`udp`], [`tcp`]: batched UDP sockets (sendmmsg/recvmmsg) and pipelined TCP.
//! - [`stats`]: counters and HDR histograms per worker-second, merged into seconds.
//! - [`run`]: threads, pinning, stop conditions, the ramp controller.
//! - [`report`], [`plot`]: progress line, summary, JSON, CSV, SVG.
//! - [`gate`]: `--fail-if` conditions over the report's figures.
//! - [`merge`]: `dnsload merge`, exact merge of reports from many machines.
//! - [`campaign`]: `dnsload campaign`, tuning experiments over sysctls and server options.

pub mod campaign;
pub mod clock;
pub mod config;
pub mod gate;
pub mod inflight;
pub mod limits;
pub mod lookups;
pub mod merge;
pub mod plot;
pub mod pods;
pub mod poll;
pub mod queries;
pub mod replay;
pub mod replayer;
pub mod report;
pub mod run;
pub mod schedule;
pub mod sender;
pub mod spin;
pub mod stamps;
pub mod stats;
pub mod tcp;
pub mod udp;
pub use dnswire as wire;
