//! A shard's state as labelled [`Metrics`]: the server walks its own shard (series,
//! caches, upstreams, extras) on the control tick, never per query, and hands the
//! snapshot to telemetry's publisher, which only stores and merges snapshots.
//!
//! A reload replaces a shard's state while misses may still use the old one: the
//! [`Exporter`] keeps replaced states until their last user is gone, then folds
//! their counters into a carried total, so counters never go backwards.

use std::rc::Rc;

use super::shard::Shard;
use crate::telemetry::metrics as m;
use crate::telemetry::Metrics;

/// What one shard has exported, across reloads.
pub(super) struct Exporter {
    /// The shard's index: the `shard` label of our own families.
    index: usize,
    /// Counters of states replaced by reloads and no longer in use.
    carried: Metrics,
    /// Replaced states still used by misses in flight.
    retired: Vec<Rc<Shard>>,
}

impl Exporter {
    pub fn new(index: usize) -> Exporter {
        Exporter {
            index,
            carried: Metrics::default(),
            retired: Vec::new(),
        }
    }

    /// A reload replaced `old`: keep its counters.
    pub fn retire(&mut self, old: Rc<Shard>) {
        self.retired.push(old);
    }

    /// True while a state replaced by a reload still has work in flight (the stop
    /// drain waits for it).
    pub fn retired_busy(&self) -> bool {
        self.retired.iter().any(|s| Rc::strong_count(s) > 1)
    }

    /// Everything this shard has counted: carried totals, states still draining and
    /// the current state.
    pub fn snapshot(&mut self, current: &Shard) -> Metrics {
        let (done, alive): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|s| Rc::strong_count(s) == 1);
        for old in done {
            let mut finished = Metrics::default();
            export_shard(&old, self.index, &mut finished);
            self.carried.merge(&finished, true);
        }
        self.retired = alive;
        let mut snapshot = self.carried.clone();
        for old in &self.retired {
            let mut partial = Metrics::default();
            export_shard(old, self.index, &mut partial);
            snapshot.merge(&partial, true);
        }
        export_shard(current, self.index, &mut snapshot);
        snapshot
    }
}

/// Adds the state of one shard to `out`: its series, caches, upstreams and extras.
fn export_shard(shard: &Shard, index: usize, out: &mut Metrics) {
    shard.stats.export(out, |block, endpoint| {
        let cache = shard.blocks.get(block).and_then(|b| b.chain.cache());
        cache
            .map(|c| {
                let c = c.cell().borrow();
                (c.stats(), c.tally(endpoint))
            })
            .unwrap_or_default()
    });
    export_upstreams(shard, out);
    export_extras(shard, index, out);
    export_dns64(shard, out);
    export_template(shard, out);
    if index == 0 {
        export_hosts(shard, out);
    }
}

/// Answers `dns64` synthesised, by the listening address they came through.
fn export_dns64(shard: &Shard, out: &mut Metrics) {
    for dns64 in shard.blocks.iter().filter_map(|b| b.chain.dns64()) {
        for (endpoint, n) in dns64.translated().into_iter().enumerate() {
            if let Some(addr) = shard.endpoint_addr(endpoint) {
                let server = crate::telemetry::stats::server_label(addr);
                out.counter(&m::DNS64_TRANSLATED, &[server.as_str()], n);
            }
        }
    }
}

/// `template` matches and record failures, by listening address, zone, class, type
/// (and section and record).
fn export_template(shard: &Shard, out: &mut Metrics) {
    use crate::plugin::TemplateFailure;
    for template in shard.blocks.iter().filter_map(|b| b.chain.template()) {
        for s in template.samples() {
            let Some(addr) = shard.endpoint_addr(s.endpoint) else {
                continue;
            };
            let server = crate::telemetry::stats::server_label(addr);
            let labels = [
                server.as_str(),
                s.zone,
                "",
                s.class.as_str(),
                s.qtype.as_str(),
            ];
            match s.failure {
                None => out.counter(&m::TEMPLATE_MATCHES, &labels, s.count),
                Some((failure, section, text)) => {
                    let family = match failure {
                        TemplateFailure::Render => &m::TEMPLATE_FAILURES,
                        TemplateFailure::Parse => &m::TEMPLATE_RR_FAILURES,
                    };
                    let [server, zone, view, class, qtype] = labels;
                    let labels = [server, zone, view, class, qtype, section.name(), text];
                    out.counter(family, &labels, s.count);
                }
            }
        }
    }
}

/// `hosts` has one table per shard, all reading the same file: shard 0 speaks for
/// them (CoreDNS has one gauge per hosts file, `hostsfile` its path).
fn export_hosts(shard: &Shard, out: &mut Metrics) {
    let mut any = false;
    let (mut reloaded, mut failures) = (0f64, 0);
    for hosts in shard.blocks.iter().filter_map(|b| b.chain.hosts()) {
        let (n, at, failed) = hosts.stats();
        (reloaded, failures) = (reloaded.max(at), failures + failed);
        let path = hosts.path().display().to_string();
        out.gauge(&m::HOSTS_ENTRIES, &[path.as_str()], n as f64);
        any = true;
    }
    if any {
        out.gauge(&m::HOSTS_RELOAD_TIMESTAMP, &[], reloaded);
        out.counter(&m::HOSTS_READ_FAILURES, &[], failures);
    }
}

fn export_upstreams(shard: &Shard, out: &mut Metrics) {
    let mut broken = 0;
    let mut rejects = 0;
    let mut exceeded = 0;
    for forwarder in shard.blocks.iter().filter_map(|b| b.chain.forwarder()) {
        broken += forwarder.broken.get();
        rejects += forwarder.rejected.get();
        exceeded += forwarder.attempts_exceeded.get();
        for upstream in forwarder.upstreams() {
            let to = upstream.addr.to_string();
            let to = to.as_str();
            out.counter(
                &m::PROXY_HEALTHCHECK_FAILURES,
                &["forward", to],
                upstream.healthcheck_failures.get(),
            );
            let (tcp, stats) = (&upstream.tcp, &upstream.stats);
            out.counter(
                &m::PROXY_CONN_CACHE_HITS,
                &["forward", to, "tcp"],
                tcp.reused.get(),
            );
            out.counter(&m::PROXY_CONN_CACHE_HITS, &["forward", to, "udp"], 0);
            out.counter(
                &m::PROXY_CONN_CACHE_MISSES,
                &["forward", to, "tcp"],
                tcp.opened.get(),
            );
            let udp = stats.udp_exchanges.get();
            out.counter(&m::PROXY_CONN_CACHE_MISSES, &["forward", to, "udp"], udp);
            stats.export(out, to);
            let open = tcp.open_conns() as f64;
            out.gauge(&m::UPSTREAM_CONNECTIONS, &[to, "tcp"], open);
            out.gauge(&m::UPSTREAM_INFLIGHT, &[to], stats.inflight.get() as f64);
        }
    }
    out.counter(&m::FORWARD_HEALTHCHECK_BROKEN, &[], broken);
    out.counter(&m::FORWARD_MAX_CONCURRENT_REJECTS, &[], rejects);
    out.counter(&m::FORWARD_CONNECT_ATTEMPTS_EXCEEDED, &[], exceeded);
}

fn export_extras(shard: &Shard, index: usize, out: &mut Metrics) {
    let shard_label = index.to_string();
    let label = shard_label.as_str();
    let counters = &shard.counters;
    let acl_dropped = shard.blocks.iter().map(|b| b.chain.acl_counts().1).sum();
    out.counter(&m::SHARD_QUERIES, &[label], counters.queries.get());
    out.counter(&m::COALESCED, &[], counters.coalesced.get());
    let dropped = [
        ("malformed", counters.dropped.get()),
        ("send_failed", counters.send_failures.get()),
        ("tcp_clients_full", counters.tcp_refused.get()),
        ("miss_overload", counters.miss_overload.get()),
        ("acl", acl_dropped),
    ];
    for (reason, n) in dropped {
        out.counter(&m::DROPPED_PACKETS, &[reason], n);
    }
    let summarised = shard
        .blocks
        .iter()
        .filter_map(|b| b.chain.errors())
        .map(|e| e.summarised())
        .sum();
    out.counter(&m::ERRORS_SUMMARISED, &[], summarised);
    let (mut success, mut denial, mut bytes) = (0, 0, 0);
    for cache in shard.blocks.iter().filter_map(|b| b.chain.cache()) {
        let cache = cache.cell().borrow();
        let (s, d) = cache.len();
        success += s;
        denial += d;
        bytes += cache.bytes();
    }
    out.gauge(&m::SHARD_CACHE_ENTRIES, &[label, "success"], success as f64);
    out.gauge(&m::SHARD_CACHE_ENTRIES, &[label, "denial"], denial as f64);
    out.gauge(&m::SHARD_CACHE_BYTES, &[label], bytes as f64);
}
