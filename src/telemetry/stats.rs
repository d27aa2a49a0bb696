//! What a shard counts on its query path: plain `Cell` counters and fixed-bucket
//! histograms, one set per (server, zone) series of the blocks that have the
//! `prometheus` directive, and per cache and per upstream. Owned by one thread;
//! nothing here is atomic or locked. The server turns a shard's state into labelled
//! [`Metrics`] on its control tick (`server/export.rs`), never per query.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::metrics::{self as m, Metrics, SIZE_BUCKETS, TIME_BUCKETS};
use crate::cache::{CacheStats, Tally};
use crate::config::Config;
use crate::wire::{self, Header, Reader};

/// A histogram with `N - 1` bounds and a +Inf bucket; counts are per bucket.
pub struct Hist<const N: usize> {
    counts: [Cell<u64>; N],
    sum: Cell<f64>,
}

impl<const N: usize> Default for Hist<N> {
    fn default() -> Self {
        Hist {
            counts: std::array::from_fn(|_| Cell::new(0)),
            sum: Cell::new(0.0),
        }
    }
}

impl<const N: usize> Hist<N> {
    #[inline]
    pub fn observe(&self, bounds: &[f64], value: f64) {
        let slot = bounds.iter().position(|b| value <= *b).unwrap_or(N - 1);
        if let Some(count) = self.counts.get(slot) {
            count.set(count.get() + 1);
        }
        self.sum.set(self.sum.get() + value);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(Cell::get).sum()
    }

    fn export(&self, out: &mut Metrics, family: &'static m::Family, labels: &[&str]) {
        if self.count() > 0 {
            let counts: Vec<u64> = self.counts.iter().map(Cell::get).collect();
            out.histogram(family, labels, &counts, self.sum.get());
        }
    }
}

pub type TimeHist = Hist<{ TIME_BUCKETS.len() + 1 }>;
pub type SizeHist = Hist<{ SIZE_BUCKETS.len() + 1 }>;

/// The query types CoreDNS labels by name (their names from the codec's table);
/// every other type is `other`.
pub const TYPES: [u16; 18] = [
    1, 28, 5, 48, 43, 15, 50, 47, 2, 12, 46, 6, 33, 16, 65, 251, 252, 255,
];
const TYPE_SLOTS: usize = TYPES.len() + 1;

#[inline]
fn type_slot(qtype: u16) -> usize {
    TYPES
        .iter()
        .position(|t| *t == qtype)
        .unwrap_or(TYPES.len())
}

fn type_name(slot: usize) -> &'static str {
    TYPES
        .get(slot)
        .and_then(|t| wire::type_name(*t))
        .unwrap_or("other")
}

/// miekg/dns `RcodeToString` for the 4-bit header rcodes, the number beyond its names.
pub(super) fn rcode_name(rcode: usize) -> String {
    u16::try_from(rcode)
        .ok()
        .and_then(wire::rcode_name)
        .map_or_else(|| rcode.to_string(), String::from)
}

/// The transport a query came in on (`proto` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp = 0,
    Tcp = 1,
}

const PROTOS: [&str; 2] = ["udp", "tcp"];

/// Who wrote the answer (`plugin` label of `coredns_dns_responses_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// The server itself (errors: REFUSED, SERVFAIL after a failed forward).
    Server = 0,
    Cache = 1,
    Forward = 2,
    Template = 3,
    Hosts = 4,
    Whoami = 5,
    /// `acl` refusing a query (CoreDNS's acl writes its REFUSED itself).
    Acl = 6,
}

const PLUGINS: [&str; PLUGIN_COUNT] =
    ["", "cache", "forward", "template", "hosts", "whoami", "acl"];
const PLUGIN_COUNT: usize = 7;

/// One answered query, as CoreDNS's metrics plugin reports it.
pub struct Report {
    pub proto: Proto,
    pub ipv6: bool,
    /// Index in [`TYPES`] (its length for `other`).
    pub type_slot: usize,
    pub dnssec_ok: bool,
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// Header rcode of the answer (4 bits).
    pub rcode: usize,
    pub plugin: Plugin,
    /// When the query was received.
    pub start: Instant,
}

/// Counters of one (server, zone) pair.
pub struct DnsSeries {
    server: String,
    zone: String,
    /// By proto × family, then type slot.
    requests: [[Cell<u64>; TYPE_SLOTS]; 4],
    do_requests: Cell<u64>,
    /// CoreDNS 1.14 labels the duration by server, zone and view only (no `type`).
    duration: TimeHist,
    request_size: [SizeHist; 2],
    response_size: [SizeHist; 2],
    /// By header rcode, then plugin.
    responses: [[Cell<u64>; PLUGIN_COUNT]; 16],
}

impl DnsSeries {
    fn new(server: String, zone: String) -> DnsSeries {
        DnsSeries {
            server,
            zone,
            requests: std::array::from_fn(|_| std::array::from_fn(|_| Cell::new(0))),
            do_requests: Cell::new(0),
            duration: Hist::default(),
            request_size: std::array::from_fn(|_| Hist::default()),
            response_size: std::array::from_fn(|_| Hist::default()),
            responses: std::array::from_fn(|_| std::array::from_fn(|_| Cell::new(0))),
        }
    }

    /// Counts one answered query (CoreDNS `vars.Report`).
    #[inline]
    pub fn report(&self, r: &Report) {
        let proto = r.proto as usize;
        let slot = r.type_slot.min(TYPE_SLOTS - 1);
        let family = usize::from(r.ipv6);
        bump(&self.requests[proto * 2 + family][slot]);
        if r.dnssec_ok {
            bump(&self.do_requests);
        }
        let seconds = r.start.elapsed().as_secs_f64();
        self.duration.observe(&TIME_BUCKETS, seconds);
        self.request_size[proto].observe(&SIZE_BUCKETS, r.request_bytes as f64);
        self.response_size[proto].observe(&SIZE_BUCKETS, r.response_bytes as f64);
        bump(&self.responses[r.rcode & 0x0f][r.plugin as usize]);
    }

    fn export(&self, out: &mut Metrics) {
        let (server, zone) = (self.server.as_str(), self.zone.as_str());
        for (index, by_type) in self.requests.iter().enumerate() {
            let proto = PROTOS[index / 2];
            let family = if index % 2 == 0 { "1" } else { "2" };
            for (slot, count) in by_type.iter().enumerate() {
                if count.get() > 0 {
                    let labels = [server, zone, "", proto, family, type_name(slot)];
                    out.counter(&m::DNS_REQUESTS, &labels, count.get());
                }
            }
        }
        out.counter(
            &m::DNS_DO_REQUESTS,
            &[server, zone, ""],
            self.do_requests.get(),
        );
        self.duration
            .export(out, &m::DNS_DURATION, &[server, zone, ""]);
        for (proto, name) in PROTOS.iter().enumerate() {
            let labels = [server, zone, "", name];
            self.request_size[proto].export(out, &m::DNS_REQUEST_SIZE, &labels);
            self.response_size[proto].export(out, &m::DNS_RESPONSE_SIZE, &labels);
        }
        for (rcode, by_plugin) in self.responses.iter().enumerate() {
            for (plugin, count) in by_plugin.iter().enumerate() {
                if count.get() > 0 {
                    let name = rcode_name(rcode);
                    let labels = [server, zone, "", name.as_str(), PLUGINS[plugin]];
                    out.counter(&m::DNS_RESPONSES, &labels, count.get());
                }
            }
        }
    }
}

/// The rcode in an answer's header (0 when there is none).
fn response_rcode(response: &[u8]) -> usize {
    response_class(response).0
}

/// An answer's rcode, and whether the cache counts it as denial: an error rcode,
/// or NOERROR with no answer and an authority section (NODATA with its SOA).
#[inline]
pub fn response_class(response: &[u8]) -> (usize, bool) {
    match Header::read(&mut Reader::new(response)) {
        Ok(h) => {
            let rcode = usize::from(h.flags & wire::flags::RCODE_MASK);
            (rcode, rcode != 0 || (h.ancount == 0 && h.nscount > 0))
        }
        Err(_) => (0, false),
    }
}

/// One cache as seen through one server address: its hits and misses are the cache
/// shard's own tally for that address, read at scrape.
pub struct CacheSeries {
    server: String,
    zones: String,
    block: usize,
    /// The address's index among the shard's listening addresses.
    endpoint: usize,
    /// Upstream answers not cached because they failed validation.
    pub drops: Cell<u64>,
}

/// Where the series of one block behind one endpoint are.
#[derive(Debug, Clone, Copy)]
pub struct BlockSeries {
    /// Index of the series of the block's first zone; zone k is `dns + k`.
    dns: usize,
    cache: Option<usize>,
    /// The endpoint is IPv6 (`family` 2).
    pub ipv6: bool,
}

/// Everything a shard counts for the metrics of its server blocks.
#[derive(Default)]
pub struct ShardStats {
    dns: Vec<DnsSeries>,
    cache: Vec<CacheSeries>,
    /// By endpoint, then block index: the block's series when it has `prometheus`.
    index: Vec<Vec<Option<BlockSeries>>>,
    /// By endpoint: the series of queries answered before any block's chain (zone
    /// `dropped`, as CoreDNS names it), when some block has `prometheus`.
    dropped: Vec<Option<BlockSeries>>,
    /// By endpoint: its listening address (`log`'s `{local}`).
    addrs: Vec<SocketAddr>,
}

impl ShardStats {
    /// Series for every (endpoint, block with `prometheus`, zone) of `config`;
    /// `endpoints` lists each listening address with the blocks behind it.
    pub fn new<'a>(
        config: &Config,
        endpoints: impl Iterator<Item = (SocketAddr, &'a [usize])>,
    ) -> ShardStats {
        let mut stats = ShardStats::default();
        let metered = config.servers.iter().any(|b| b.prometheus.is_some());
        for (endpoint, (addr, blocks)) in endpoints.enumerate() {
            stats.addrs.push(addr);
            let server = server_label(addr);
            stats.dropped.push(metered.then(|| {
                stats
                    .dns
                    .push(DnsSeries::new(server.clone(), DROPPED_ZONE.into()));
                BlockSeries {
                    dns: stats.dns.len() - 1,
                    cache: None,
                    ipv6: addr.is_ipv6(),
                }
            }));
            let mut by_block = vec![None; config.servers.len()];
            for &b in blocks {
                let Some(block) = config.servers.get(b) else {
                    continue;
                };
                if block.prometheus.is_none() {
                    continue;
                }
                let dns = stats.dns.len();
                for zone in block
                    .zones
                    .iter()
                    .filter(|z| wire::name::zone_to_wire(&z.name).is_some())
                {
                    stats
                        .dns
                        .push(DnsSeries::new(server.clone(), zone.name.clone()));
                }
                let cache = block.cache.as_ref().map(|c| {
                    let zones: Vec<&str> = c.zones.iter().map(|z| z.name.as_str()).collect();
                    stats.cache.push(CacheSeries {
                        server: server.clone(),
                        zones: zones.join(","),
                        block: b,
                        endpoint,
                        drops: Cell::new(0),
                    });
                    stats.cache.len() - 1
                });
                by_block[b] = Some(BlockSeries {
                    dns,
                    cache,
                    ipv6: addr.is_ipv6(),
                });
            }
            stats.index.push(by_block);
        }
        stats
    }

    /// The series of `block` behind `endpoint`; None when the block has no `prometheus`.
    #[inline]
    pub fn block(&self, endpoint: usize, block: usize) -> Option<BlockSeries> {
        *self.index.get(endpoint)?.get(block)?
    }

    /// The IP of the address `endpoint` listens on.
    pub fn endpoint_ip(&self, endpoint: usize) -> Option<std::net::IpAddr> {
        self.addrs.get(endpoint).map(SocketAddr::ip)
    }

    /// Counts a query answered before any block's chain saw it (an unreadable
    /// question, a class other than IN, no zone of the endpoint matching): CoreDNS's
    /// server counts these under the zone `dropped`. `qtype` None: no readable
    /// question (type `other`).
    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub fn answered_before_chain(
        &self,
        endpoint: usize,
        proto: Proto,
        qtype: Option<u16>,
        dnssec_ok: bool,
        request_bytes: usize,
        response: &[u8],
        start: Instant,
    ) {
        let Some(Some(series)) = self.dropped.get(endpoint).copied() else {
            return;
        };
        if response.is_empty() {
            return;
        }
        if let Some(dns) = self.dns(series, 0) {
            dns.report(&Report {
                proto,
                ipv6: series.ipv6,
                type_slot: qtype.map_or(TYPES.len(), type_slot),
                dnssec_ok,
                request_bytes,
                response_bytes: response.len(),
                rcode: response_rcode(response),
                plugin: Plugin::Server,
                start,
            });
        }
    }

    #[inline]
    pub fn dns(&self, series: BlockSeries, zone: usize) -> Option<&DnsSeries> {
        self.dns.get(series.dns + zone)
    }

    #[inline]
    pub fn cache(&self, series: BlockSeries) -> Option<&CacheSeries> {
        self.cache.get(series.cache?)
    }

    /// Adds the series and the per-cache counters to `out`; `own(block, endpoint)`
    /// gives the counters the cache shard of a block keeps itself (refreshes, stale
    /// answers, evictions, its drops, entries) and its tally of the lookups that came
    /// through `endpoint`.
    pub fn export(&self, out: &mut Metrics, own: impl Fn(usize, usize) -> (CacheStats, Tally)) {
        for series in &self.dns {
            series.export(out);
        }
        for cache in &self.cache {
            let labels = [cache.server.as_str(), cache.zones.as_str(), ""];
            let typed =
                |kind: &'static str| [cache.server.as_str(), kind, cache.zones.as_str(), ""];
            let (own, tally) = own(cache.block, cache.endpoint);
            let requests = tally.hits_success + tally.hits_denial + tally.misses;
            out.counter(&m::CACHE_REQUESTS, &labels, requests);
            out.counter(&m::CACHE_HITS, &typed("success"), tally.hits_success);
            out.counter(&m::CACHE_HITS, &typed("denial"), tally.hits_denial);
            out.counter(&m::CACHE_MISSES, &labels, tally.misses);
            // The meter counts mismatched answers as drops; the cache shard its own.
            out.counter(&m::CACHE_DROPS, &labels, cache.drops.get() + own.drops);
            out.counter(&m::CACHE_PREFETCH, &labels, own.prefetches);
            out.counter(&m::CACHE_SERVED_STALE, &labels, own.served_stale);
            out.counter(
                &m::CACHE_EVICTIONS,
                &typed("success"),
                own.evictions_success,
            );
            out.counter(&m::CACHE_EVICTIONS, &typed("denial"), own.evictions_denial);
            let (success, denial) = (own.entries_success, own.entries_denial);
            out.gauge(&m::CACHE_ENTRIES, &typed("success"), success as f64);
            out.gauge(&m::CACHE_ENTRIES, &typed("denial"), denial as f64);
        }
    }
}

/// What the query path needs to count one query of a block with `prometheus`:
/// taken when the block is known, used when the answer is written.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    series: BlockSeries,
    zone: usize,
    proto: Proto,
    type_slot: u8,
    dnssec_ok: bool,
    request_bytes: usize,
    start: Instant,
}

impl Meter {
    /// None when the block has no `prometheus` directive (nothing is counted).
    #[inline]
    pub fn new(
        stats: &ShardStats,
        endpoint: usize,
        (block, zone): (usize, usize),
        query: &wire::Query<'_>,
        proto: Proto,
        request_bytes: usize,
        start: Instant,
    ) -> Option<Meter> {
        Some(Meter {
            series: stats.block(endpoint, block)?,
            zone,
            proto,
            type_slot: type_slot(query.qtype) as u8,
            dnssec_ok: query.dnssec_ok(),
            request_bytes,
            start,
        })
    }

    /// An upstream answer that failed validation and was not cached.
    pub fn cache_drop(&self, stats: &ShardStats) {
        if let Some(cache) = stats.cache(self.series) {
            bump(&cache.drops);
        }
    }

    /// The answer went out (`response` empty: nothing was sent, nothing counted).
    #[inline]
    pub fn answered(&self, stats: &ShardStats, response: &[u8], plugin: Plugin) {
        if response.is_empty() {
            return;
        }
        self.report(stats, response.len(), response_rcode(response), plugin);
    }

    #[inline]
    fn report(&self, stats: &ShardStats, response_bytes: usize, rcode: usize, plugin: Plugin) {
        if let Some(series) = stats.dns(self.series, self.zone) {
            series.report(&Report {
                proto: self.proto,
                ipv6: self.series.ipv6,
                type_slot: usize::from(self.type_slot),
                dnssec_ok: self.dnssec_ok,
                request_bytes: self.request_bytes,
                response_bytes,
                rcode,
                plugin,
                start: self.start,
            });
        }
    }
}

/// CoreDNS's zone label of queries that never entered a plugin chain (no closing
/// dot: never a real zone).
pub const DROPPED_ZONE: &str = "dropped";

/// CoreDNS's `server` label: `dns://` and the listen address, `dns://:53` for the
/// wildcard addresses.
pub fn server_label(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("dns://:{}", addr.port())
    } else {
        format!("dns://{addr}")
    }
}

/// Per-upstream counters of one shard that the forwarder itself does not keep.
#[derive(Default)]
pub struct UpstreamStats {
    /// Answer durations by the answer's rcode.
    durations: RefCell<Vec<(usize, TimeHist)>>,
    /// UDP exchanges (each a fresh socket: a connection cache miss for CoreDNS).
    pub udp_exchanges: Cell<u64>,
    /// Attempts waiting for this upstream.
    pub inflight: Cell<usize>,
    /// Attempts that got no answer within their budget.
    pub timed_out: Cell<u64>,
    /// Attempts that failed otherwise (refused, reset, closed, a wrong answer).
    pub errored: Cell<u64>,
}

impl UpstreamStats {
    /// Counts an answer received `elapsed` after the attempt started.
    pub fn answered(&self, answer: &[u8], elapsed: Duration) {
        let rcode = response_rcode(answer);
        let mut durations = self.durations.borrow_mut();
        let index = match durations.iter().position(|(r, _)| *r == rcode) {
            Some(index) => index,
            None => {
                durations.push((rcode, Hist::default()));
                durations.len() - 1
            }
        };
        durations[index]
            .1
            .observe(&TIME_BUCKETS, elapsed.as_secs_f64());
    }

    /// Adds the answer durations of upstream `to` to `out`, by rcode.
    pub fn export(&self, out: &mut Metrics, to: &str) {
        for (rcode, hist) in self.durations.borrow().iter() {
            let rcode = rcode_name(*rcode);
            hist.export(out, &m::PROXY_DURATION, &["forward", to, rcode.as_str()]);
        }
        let failures = &m::FORWARD_ATTEMPT_FAILURES;
        out.counter(failures, &[to, "timeout"], self.timed_out.get());
        out.counter(failures, &[to, "error"], self.errored.get());
    }
}

#[inline]
fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let h = TimeHist::default();
        h.observe(&TIME_BUCKETS, 0.00025);
        h.observe(&TIME_BUCKETS, 0.0003);
        h.observe(&TIME_BUCKETS, 100.0);
        assert_eq!(h.counts[0].get(), 1);
        assert_eq!(h.counts[1].get(), 1);
        assert_eq!(h.counts[16].get(), 1);
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn types_and_rcodes() {
        assert_eq!(type_name(type_slot(1)), "A");
        assert_eq!(type_name(type_slot(65)), "HTTPS");
        assert_eq!(type_name(type_slot(99)), "other");
        assert!((0..TYPES.len()).all(|slot| type_name(slot) != "other"));
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(12), "12");
    }

    #[test]
    fn server_labels() {
        assert_eq!(
            server_label("127.0.0.1:53".parse().unwrap()),
            "dns://127.0.0.1:53"
        );
        assert_eq!(server_label("0.0.0.0:53".parse().unwrap()), "dns://:53");
        assert_eq!(
            server_label("[::1]:5353".parse().unwrap()),
            "dns://[::1]:5353"
        );
    }
}
