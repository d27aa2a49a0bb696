//! `cache`: answers from the block's cache shard (`crate::cache`), which counts the
//! hit or the miss once, under the listening address the query came through (the
//! metrics read those tallies at scrape). A miss passes on; the miss path fills the
//! cache through [`Cache::cell`] when the answer comes.

use std::cell::RefCell;

use super::flow::{Flow, Origin, Request, Trail};
use crate::cache;
use crate::config::ServerBlock;

pub struct Cache {
    shard: RefCell<cache::Shard>,
}

impl Cache {
    pub fn new(block: &ServerBlock, shards: usize) -> Option<Cache> {
        let config = block.cache.as_ref()?;
        Some(Cache {
            shard: RefCell::new(cache::Shard::with_share(config, shards)),
        })
    }

    /// The cache shard, for the miss path, the metrics and a reload's hand-over.
    pub fn cell(&self) -> &RefCell<cache::Shard> {
        &self.shard
    }

    #[inline]
    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail, out: &mut [u8]) -> Flow {
        let max_len = out.len();
        let via = Some(req.endpoint);
        let lookup = self
            .shard
            .borrow_mut()
            .lookup_via(via, req.query, req.now, out, max_len);
        let Some(len) = lookup.reply_len() else {
            return Flow::Next;
        };
        trail.refresh = lookup.must_refresh();
        Flow::Answer(len, Origin::Cache)
    }
}
