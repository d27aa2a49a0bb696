//! `forward`: a query whose name the block forwards is deferred to the miss path
//! (`server/miss.rs`: coalescing, the owner shard, then these upstreams); any other
//! passes on. `bufsize` is the EDNS size this block advertises upstream.

use std::rc::Rc;

use super::flow::{Flow, Request};
use crate::config::ServerBlock;
use crate::limits;
use crate::upstream::{Forwarder, Transport};

pub struct Forward {
    pub forwarder: Rc<Forwarder>,
    /// EDNS UDP size advertised upstream (`bufsize`).
    pub bufsize: u16,
    /// `force_tcp` and `prefer_udp`, which pick the transport an attempt uses (for
    /// the `errors` line).
    force_tcp: bool,
    prefer_udp: bool,
}

impl Forward {
    pub fn new(block: &ServerBlock, shards: usize) -> Option<Forward> {
        let config = block.forward.as_ref()?;
        Some(Forward {
            forwarder: Forwarder::new(config, shards),
            bufsize: block.bufsize.unwrap_or(limits::UPSTREAM_BUFSIZE_DEFAULT),
            force_tcp: config.force_tcp,
            prefer_udp: config.prefer_udp,
        })
    }

    /// The transport of an upstream attempt for a query that came in on `client`
    /// (`udp` or `tcp`), as the forwarder picks it.
    pub fn upstream_proto(&self, client: Transport) -> &'static str {
        match (self.force_tcp, self.prefer_udp, client) {
            (true, _, _) | (false, false, Transport::Tcp) => "tcp",
            _ => "udp",
        }
    }

    #[inline]
    pub fn serve(&self, req: &Request<'_>) -> Flow {
        if self.forwarder.forwards(req.query.qname) {
            Flow::Defer
        } else {
            Flow::Next
        }
    }
}
