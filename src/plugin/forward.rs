//! `forward`: a query whose name the block forwards is deferred to the miss path
//! (`server/miss.rs`: coalescing, the owner shard, then these upstreams); any other
//! passes on. `bufsize` is the EDNS size this block advertises upstream.

use std::rc::Rc;

use super::flow::{Flow, Request};
use crate::config::ServerBlock;
use crate::limits;
use crate::upstream::Forwarder;

pub struct Forward {
    pub forwarder: Rc<Forwarder>,
    /// EDNS UDP size advertised upstream (`bufsize`).
    pub bufsize: u16,
}

impl Forward {
    pub fn new(block: &ServerBlock, shards: usize) -> Option<Forward> {
        Some(Forward {
            forwarder: Forwarder::new(block.forward.as_ref()?, shards),
            bufsize: block.bufsize.unwrap_or(limits::UPSTREAM_BUFSIZE_DEFAULT),
        })
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
