//! What the links of a plugin chain share: the query on its way down
//! ([`Request`]), what the plugins it passed keep for its way back ([`Trail`]), and
//! what a link decides ([`Flow`]).

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::Dns64Config;
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
        self.transport.into()
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
    /// `rewrite`: the query the rest of the chain (and the miss path) sees, and how
    /// to turn its answer back into one for the client's question.
    pub rewrite: RewriteSlot,
    /// `dns64`: the query may get a synthesised answer, with this configuration.
    pub dns64: Option<Dns64Config>,
    /// `dns64`: the answer written at once wants synthesis; its way back is left to
    /// the server, which synthesises it first (`server/dns64.rs`).
    pub synthesize: bool,
    /// The plugins before this index passed the query (and see its answer).
    pub(super) passed: usize,
}

/// `rewrite`'s state in a [`Trail`]. Empty on almost every query: its drop is a
/// check, the freeing is out of line, so the hit path's `Trail` drop stays inlined.
#[derive(Default)]
pub struct RewriteSlot(Option<Box<Rewritten>>);

impl RewriteSlot {
    pub fn new(rewritten: Rewritten) -> RewriteSlot {
        RewriteSlot(Some(Box::new(rewritten)))
    }

    pub fn get(&self) -> Option<&Rewritten> {
        self.0.as_deref()
    }

    pub fn get_mut(&mut self) -> Option<&mut Rewritten> {
        self.0.as_deref_mut()
    }
}

impl Drop for RewriteSlot {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.is_some() {
            self.free();
        }
    }
}

impl RewriteSlot {
    #[cold]
    #[inline(never)]
    fn free(&mut self) {
        self.0 = None;
    }
}

impl Trail {
    /// `f` of the query the chain resolved: the rewritten one if `rewrite` changed
    /// it, else `original` (for the miss path and refreshes, which key the cache).
    pub fn with_query<T>(&self, original: &Query<'_>, f: impl FnOnce(&Query<'_>) -> T) -> T {
        let rewritten = self.rewrite.get().and_then(|r| r.packet.as_deref());
        match rewritten.map(crate::wire::parse_query) {
            Some(Ok(query)) => f(&query),
            _ => f(original),
        }
    }
}

/// A query `rewrite` changed: the new packet, the client's question, and the
/// changes to make to the answer, in the order the rules applied (undone last
/// first).
pub struct Rewritten {
    /// The rewritten query; None when only the answer changes (ttl, rcode rules).
    pub packet: Option<Vec<u8>>,
    /// The client's question section (name as sent, type, class).
    pub question: Vec<u8>,
    pub actions: Vec<AnswerAction>,
    /// The largest answer the client takes.
    pub max_len: usize,
}

/// One change `rewrite` makes to every record of the answer (or to its header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerAction {
    /// Owner names (and, with `value`, the names in record data) equal to `from`
    /// or below it get `from` replaced by `to` (`answer auto`).
    Remap {
        from: String,
        to: String,
        value: bool,
    },
    /// Names ending in `from` end in `to` instead (`answer auto` of a suffix rule).
    Suffix {
        from: String,
        to: String,
        value: bool,
    },
    /// `answer name|value FROM TO` of rule `rule`, its `answer`-th answer rule.
    Pattern { rule: usize, answer: usize },
    /// TTLs clamped to `min..=max`.
    Ttl { min: u32, max: u32 },
    /// rcode `from` becomes `to`.
    Rcode { from: u16, to: u16 },
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
    /// `rewrite` changed the query (in the [`Trail`]): the chain goes on with it.
    /// Never returned by the chain itself.
    Rewritten,
}
