//! What the workspace's test suites share (a dev-dependency of the server and of
//! dnsload): the real `knotd` they use as the upstream — its one configuration
//! template, zone files and process — and the helpers every harness needs to find
//! programs, pick ports and wait for a server to answer.
//!
//! - [`knot`]: [`knot::Conf`] renders `knot.conf`; [`knot::zone`] writes a zone's
//!   SOA/NS head; [`knot::spawn`] starts `knotd` on a config.
//! - [`process`]: [`process::find_program`], [`process::free_port`],
//!   [`process::answers`], [`process::wait_until`].
//! - [`seccomp`]: [`seccomp::deny_io_uring`] runs a child where io_uring is blocked.

// Only the seccomp filter's pre-exec hook needs unsafe code (allowed there alone).
#![deny(unsafe_code)]

pub mod knot;
pub mod process;
#[allow(unsafe_code)]
pub mod seccomp;
