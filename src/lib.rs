//! nodelocaldns: a thread-per-core io_uring DNS cache for Kubernetes nodes.
//!
//! - [`limits`]: every bound of the process, in one place.
//! - [`wire`]: the DNS codec (crate `dnswire`, shared with dnsload) and the `whoami` answer.
//! - [`cache`]: per-core cache shard, stored answers, classification, eviction.
//! - [`upstream`]: pipelined TCP and UDP forwarding, health, policies.
//! - [`config`]: Corefile parser → typed [`config::Config`].
//! - [`node`]: interface, iptables or nftables rules, sync and teardown.
//! - [`telemetry`]: per-shard counters → CoreDNS metrics, health, readiness.
//! - [`cli`]: command-line flags, node-cache style.
//! - [`engine`]: the I/O engine door: io_uring (glommio) or epoll (tokio), probed at start.
//! - [`cgroup`]: the container's CPU quota and memory limit.
//! - [`memory_plan`]: every memory budget sized within the limit.
//! - [`server`]: executors, listeners, the per-core query loop, shutdown.
//! - [`doctor`]: `nodelocaldns doctor`, what is wrong with this node's DNS path.
//! - [`fuzzing`]: the fuzz targets' bodies, shared with the corpus replay test.

// Every unsafe block of the server says why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cache;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod memory_plan;
pub mod node;
pub mod plugin;
pub mod server;
pub mod telemetry;
pub mod upstream;
pub mod wire;
