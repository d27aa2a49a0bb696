//! `prometheus`: counts each query of the block in the shard's series (CoreDNS's
//! `coredns_dns_*` families) when its answer goes out. The series are plain
//! per-shard cells (`telemetry::stats`), merged at scrape; the listener itself is
//! the server's.

use super::flow::{Flow, Origin, Request, Trail};
use crate::config::ServerBlock;
use crate::telemetry::{Meter, ShardStats};

pub struct Prometheus;

impl Prometheus {
    pub fn new(block: &ServerBlock) -> Option<Prometheus> {
        block.prometheus.map(|_| Prometheus)
    }

    /// Takes the query's series (and its start time) for the way back.
    #[inline]
    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail) -> Flow {
        trail.meter = Meter::new(
            req.stats,
            req.endpoint,
            (req.block, req.zone),
            req.query,
            req.proto(),
            req.query.packet.len(),
            req.now,
        );
        Flow::Next
    }
}

/// Counts the answer (nothing when none was sent).
#[inline]
pub fn back(stats: &ShardStats, trail: &Trail, answer: &[u8], origin: Origin) {
    if let Some(meter) = trail.meter {
        meter.answered(stats, answer, origin);
    }
}
