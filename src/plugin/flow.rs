//! What the links of a plugin chain share: the query on its way down
//! ([`Request`]), what the plugins it passed keep for its way back ([`Trail`]), and
//! what a link decides ([`Flow`]).

use std::net::SocketAddr;
use std::time::Instant;

use crate::telemetry::{Meter, Proto, QueryLog, ShardStats};
use crate::upstream::Transport;
use crate::wire::Query;

/// Who wrote an answer (the `plugin` label of the response metrics).
pub use crate::telemetry::Plugin as Origin;

/// One query on its way down a chain: what every plugin may read.
pub struct Request<'a> {
    /// Parsed once, when the query arrived on this shard.
    pub query: &'a Query<'a>,
    pub client: SocketAddr,
    pub transport: Transport,
    /// The listening address the query came in on (index on this shard).
    pub endpoint: usize,
    /// The block's index, and the index of the zone that matched in it.
    pub block: usize,
    pub zone: usize,
    /// The largest answer the client takes.
    pub max_len: usize,
    pub now: Instant,
    /// The shard's metric series (written by `prometheus` and `cache`).
    pub stats: &'a ShardStats,
}

impl Request<'_> {
    pub fn proto(&self) -> Proto {
        match self.transport {
            Transport::Udp => Proto::Udp,
            Transport::Tcp => Proto::Tcp,
        }
    }
}

/// What the plugins a query passed leave for its way back, and for the server.
#[derive(Default)]
pub struct Trail {
    /// `prometheus`: the query's series.
    pub meter: Option<Meter>,
    /// `log`: the query's line, written when the answer is.
    pub log: Option<QueryLog>,
    /// `cache`: the answer came from an entry that wants a refresh (prefetch, stale).
    pub refresh: bool,
    /// The plugins before this index passed the query (and see its answer).
    pub(super) passed: usize,
}

/// What a plugin, or the whole chain, did with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Pass to the next plugin.
    Next,
    /// An answer of this many bytes is in the output buffer, written by `Origin`.
    Answer(usize, Origin),
    /// Send nothing.
    Drop,
    /// Forward: the miss path resolves the query and answers later.
    Defer,
}
