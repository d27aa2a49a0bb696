//! Integration tests: the `nodelocaldns` binary in front of a real `knotd`, driven
//! over UDP and TCP on 127.0.0.1 as a client would.

mod client;
mod harness;
mod zones;

mod answers;
mod bad_input;
mod caching;
mod capacity;
mod edns_and_case;
mod engines;
mod forward;
mod forward_tls;
mod linters;
mod node_cache_corefile;
mod plugins;
mod readme;
mod refresh;
mod rewrite;
mod tcp;
mod template;
mod truncation;
mod udp_sockets;
mod upstream_pool;
