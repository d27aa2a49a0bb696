//! The plugin chain of a server block: its plugins in node-cache's order (CoreDNS
//! `plugin.cfg`, see [`ORDER`]), each a type with one entry point, [`Plugin::serve`],
//! that answers the query, drops it, hands it to the miss path, or passes it to the
//! next plugin. Plugins that a query passed see its answer on the way back, last
//! first ([`Plugin::back`]: count it, log it, rewrite it), whether the answer was
//! written at once or arrives later from the miss path: the two halves of CoreDNS's
//! `ServeDNS` and its `ResponseWriter` wrapper.
//!
//! Dispatch is static (a `match` on [`Plugin`]) and a query allocates nothing on its
//! way through: what a plugin keeps for the way back goes in the query's [`Trail`].
//! The chain knows nothing of shards, sockets or tasks: the server runs it
//! (`server/query.rs`) and resolves what it defers (`server/miss.rs`). How to add a
//! plugin: README.md beside this file.

mod acl;
mod cache;
pub mod dns64;
pub mod errors;
mod flow;
mod forward;
mod hosts;
mod loadbalance;
mod log;
pub mod loop_detect;
mod prometheus;
mod rewrite;
mod template;
mod whoami;

use std::rc::Rc;

use crate::config::ServerBlock;
use crate::telemetry::ShardStats;
use crate::upstream::Forwarder;
use crate::wire::{self, Rcode};

pub use cache::Cache;
pub use errors::ErrorLog;
pub use flow::{AnswerAction, Flow, Origin, Request, RewriteSlot, Rewritten, Trail};
pub use forward::Forward;
pub use hosts::Hosts;
pub use rewrite::Rewrite;
pub use template::{Failure as TemplateFailure, Template};

/// node-cache's plugin order (CoreDNS `plugin.cfg` of k8s-dns-node-cache, plus our
/// `acl` where CoreDNS has it, and `ready`): a query meets the plugins of its block in
/// this order. Directives that configure the server rather than handle queries
/// (timeouts, reload, bufsize, bind, health, pprof, ready) are not links of the
/// chain; `bufsize` is read by `forward`.
pub const ORDER: [&str; 22] = [
    "timeouts",
    "reload",
    "bufsize",
    "bind",
    "debug",
    "trace",
    "health",
    "ready",
    "pprof",
    "prometheus",
    "errors",
    "log",
    "dns64",
    "acl",
    "loadbalance",
    "cache",
    "rewrite",
    "template",
    "hosts",
    "loop",
    "forward",
    "whoami",
];

/// A link of the chain: one variant per plugin, each in its own module.
// Built once per block and shard, a handful per chain: the cache's inline size costs
// a few hundred bytes, a box would cost an indirection on every hit.
#[allow(clippy::large_enum_variant)]
pub enum Plugin {
    Prometheus(prometheus::Prometheus),
    Errors(errors::Errors),
    Log(log::Log),
    Dns64(dns64::Dns64),
    Acl(acl::Acl),
    LoadBalance(loadbalance::LoadBalance),
    Cache(cache::Cache),
    Rewrite(rewrite::Rewrite),
    Hosts(hosts::Hosts),
    Loop(loop_detect::Loop),
    Forward(forward::Forward),
    Template(template::Template),
    Whoami(whoami::Whoami),
}

impl Plugin {
    /// The plugin's verdict on `req`; an answer goes into `out`, whose length is the
    /// client's limit. Always inlined: the hit path is this match and the cache's
    /// lookup (plugins with large bodies keep them out of line).
    #[inline(always)]
    fn serve(&self, req: &Request<'_>, trail: &mut Trail, out: &mut [u8]) -> Flow {
        match self {
            Plugin::Prometheus(p) => p.serve(req, trail),
            Plugin::Errors(_) => Flow::Next,
            Plugin::Log(p) => p.serve(req, trail),
            Plugin::Dns64(p) => p.serve(req, trail),
            Plugin::Acl(p) => p.serve(req, out),
            Plugin::LoadBalance(p) => p.serve(),
            Plugin::Cache(p) => p.serve(req, trail, out),
            Plugin::Rewrite(p) => p.serve(req, trail, out),
            Plugin::Hosts(p) => p.serve(req, out),
            Plugin::Loop(p) => p.serve(req),
            Plugin::Forward(p) => p.serve(req),
            Plugin::Template(p) => p.serve(req, out),
            Plugin::Whoami(p) => p.serve(req, out),
        }
    }

    /// The way back: the answer is `room[..len]` (empty: nothing is sent), written
    /// by `origin`; a plugin may rewrite it in place, or into the rest of `room`
    /// (the client's limit), and returns its new length.
    #[inline]
    fn back(
        &self,
        stats: &ShardStats,
        trail: &Trail,
        room: &mut [u8],
        len: usize,
        origin: Origin,
    ) -> usize {
        let answer = room.get_mut(..len).unwrap_or_default();
        match self {
            Plugin::Prometheus(_) => prometheus::back(stats, trail, answer, origin),
            Plugin::Log(_) => log::back(trail, answer),
            Plugin::LoadBalance(p) => p.back(answer),
            Plugin::Rewrite(p) => return p.back(trail, room, len),
            Plugin::Errors(_)
            | Plugin::Dns64(_)
            | Plugin::Acl(_)
            | Plugin::Cache(_)
            | Plugin::Hosts(_)
            | Plugin::Loop(_)
            | Plugin::Forward(_)
            | Plugin::Template(_)
            | Plugin::Whoami(_) => {}
        }
        len
    }
}

/// A server block's plugins, in [`ORDER`].
pub struct Chain {
    plugins: Box<[Plugin]>,
}

impl Chain {
    /// The chain of `block` on one of `shards` shards.
    pub fn new(block: &ServerBlock, shards: usize) -> Chain {
        // `rewrite` runs before `cache` (node-cache's order has it after): the miss
        // path fills the cache under the question it resolved, the rewritten one, so
        // the lookup must use it too. Answers are restored on the way back either way.
        let plugins = ORDER
            .iter()
            .map(|name| match *name {
                "cache" => "rewrite",
                "rewrite" => "cache",
                other => other,
            })
            .filter_map(|name| Chain::plugin(name, block, shards))
            .collect();
        Chain { plugins }
    }

    /// The plugin `name` of `block`, if the block has it and it handles queries.
    fn plugin(name: &str, block: &ServerBlock, shards: usize) -> Option<Plugin> {
        Some(match name {
            "prometheus" => Plugin::Prometheus(prometheus::Prometheus::new(block)?),
            "errors" => Plugin::Errors(errors::Errors::new(block)?),
            "log" => Plugin::Log(log::Log::new(block)?),
            "dns64" => Plugin::Dns64(dns64::Dns64::new(block)?),
            "acl" => Plugin::Acl(acl::Acl::new(block)?),
            "loadbalance" => Plugin::LoadBalance(loadbalance::LoadBalance::new(block)?),
            "cache" => Plugin::Cache(cache::Cache::new(block, shards)?),
            "rewrite" => Plugin::Rewrite(rewrite::Rewrite::new(block)?),
            "hosts" => Plugin::Hosts(hosts::Hosts::new(block)?),
            "loop" => Plugin::Loop(loop_detect::Loop::new(block)?),
            "forward" => Plugin::Forward(forward::Forward::new(block, shards)?),
            "template" => Plugin::Template(template::Template::new(block)?),
            "whoami" => Plugin::Whoami(whoami::Whoami::new(block)?),
            _ => return None,
        })
    }

    /// Runs `req` down the chain until a plugin answers, drops or defers it. An
    /// answer written here goes back through the plugins it passed at once; a
    /// deferred one goes back when the miss path calls [`Chain::back`]. A query no
    /// plugin answers is answered SERVFAIL, as CoreDNS does at the chain's end.
    // Always: with `#[inline]` alone the compiler outlined it from the UDP batch once
    // the code around it moved between codegen units (+2 % instructions per hit,
    // bench/runs/2026-12-04-engines/callgrind.tsv).
    #[inline(always)]
    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail, out: &mut [u8]) -> Flow {
        self.serve_links(&self.plugins, 0, req, trail, out)
    }

    /// [`Chain::serve`] over `links`, the chain's plugins from index `start` on.
    #[inline(always)]
    fn serve_links(
        &self,
        links: &[Plugin],
        start: usize,
        req: &Request<'_>,
        trail: &mut Trail,
        out: &mut [u8],
    ) -> Flow {
        for (index, plugin) in links.iter().enumerate() {
            let index = start + index;
            let flow = plugin.serve(req, trail, out);
            if flow == Flow::Next {
                continue;
            }
            trail.passed = index;
            if let Flow::Answer(len, origin) = flow {
                // The first link answering (a plain block's cache hit) has no way back.
                if index > 0 {
                    // An answer dns64 replaces goes back once replaced (`server/dns64.rs`).
                    let answer = out.get(..len).unwrap_or_default();
                    if trail
                        .dns64
                        .is_some_and(|c| dns64::wants_synthesis(&c, answer))
                    {
                        trail.synthesize = true;
                        return flow;
                    }
                    let len = self.back_room(req.stats, trail, out, len, origin);
                    return Flow::Answer(len, origin);
                }
                return flow;
            }
            // Off the hit path: only `rewrite` says so.
            if flow == Flow::Rewritten {
                return self.serve_rewritten(index + 1, req, trail, out);
            }
            return flow;
        }
        trail.passed = self.plugins.len();
        let len = wire::write_error_reply(req.query.packet, Rcode::ServFail, out);
        let len = self.back_room(req.stats, trail, out, len, Origin::Server);
        Flow::Answer(len, Origin::Server)
    }

    /// The rest of the chain, from `start`, with the query `rewrite` left in the
    /// trail; the packet goes back into the trail for the miss path.
    #[cold]
    fn serve_rewritten(
        &self,
        start: usize,
        req: &Request<'_>,
        trail: &mut Trail,
        out: &mut [u8],
    ) -> Flow {
        let packet = trail.rewrite.get_mut().and_then(|r| r.packet.take());
        let links = self.plugins.get(start..).unwrap_or_default();
        let Some(packet) = packet else {
            return self.serve_links(links, start, req, trail, out);
        };
        let flow = match wire::parse_query(&packet) {
            Ok(query) => {
                let rewritten = Request {
                    query: &query,
                    ..*req
                };
                self.serve_links(links, start, &rewritten, trail, out)
            }
            // Built by `rewrite` from a query that parsed: not expected.
            Err(_) => {
                trail.passed = start;
                let len = wire::write_error_reply(req.query.packet, Rcode::ServFail, out);
                Flow::Answer(
                    self.back_room(req.stats, trail, out, len, Origin::Server),
                    Origin::Server,
                )
            }
        };
        if let Some(rewrite) = trail.rewrite.get_mut() {
            rewrite.packet = Some(packet);
        }
        flow
    }

    /// The way back of `answer`: every plugin the query passed, last first. A
    /// rewritten query's answer may change length (up to the client's limit).
    #[inline]
    pub fn back(&self, stats: &ShardStats, trail: &Trail, answer: &mut Vec<u8>, origin: Origin) {
        if trail.passed == 0 {
            return;
        }
        let len = answer.len();
        let room = trail.rewrite.get().map_or(len, |r| r.max_len.max(len));
        answer.resize(room, 0);
        let len = self.back_room(stats, trail, answer, len, origin);
        answer.truncate(len);
    }

    /// The way back of `room[..len]`; the answer's new length.
    #[inline]
    fn back_room(
        &self,
        stats: &ShardStats,
        trail: &Trail,
        room: &mut [u8],
        len: usize,
        origin: Origin,
    ) -> usize {
        if trail.passed == 0 {
            return len;
        }
        let passed = self.plugins.get(..trail.passed).unwrap_or_default();
        passed.iter().rev().fold(len, |len, plugin| {
            plugin.back(stats, trail, room, len, origin)
        })
    }

    /// The block's cache, for the miss path (insert, stale answers, refreshes).
    pub fn cache(&self) -> Option<&cache::Cache> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::Cache(c) => Some(c),
            _ => None,
        })
    }

    /// The block's upstreams, for the miss path.
    pub fn forward(&self) -> Option<&forward::Forward> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::Forward(f) => Some(f),
            _ => None,
        })
    }

    /// The block's forwarder, for the miss path and the metrics.
    pub fn forwarder(&self) -> Option<&Rc<Forwarder>> {
        self.forward().map(|f| &f.forwarder)
    }

    /// The block's error log (`errors`).
    pub fn errors(&self) -> Option<&ErrorLog> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::Errors(e) => Some(&e.log),
            _ => None,
        })
    }

    /// The block's `dns64`, for the server's synthesis and the metrics.
    pub fn dns64(&self) -> Option<&dns64::Dns64> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::Dns64(d) => Some(d),
            _ => None,
        })
    }

    /// The block's `template`, for the metrics.
    pub fn template(&self) -> Option<&template::Template> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::Template(t) => Some(t),
            _ => None,
        })
    }

    /// The block's `hosts`, for the metrics.
    pub fn hosts(&self) -> Option<&hosts::Hosts> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::Hosts(h) => Some(h),
            _ => None,
        })
    }

    /// Queries the block's `acl` refused and dropped.
    pub fn acl_counts(&self) -> (u64, u64) {
        self.plugins
            .iter()
            .find_map(|p| match p {
                Plugin::Acl(a) => Some(a.counts()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Plugin {
        fn name(&self) -> &'static str {
            match self {
                Plugin::Prometheus(_) => "prometheus",
                Plugin::Errors(_) => "errors",
                Plugin::Log(_) => "log",
                Plugin::Dns64(_) => "dns64",
                Plugin::Acl(_) => "acl",
                Plugin::LoadBalance(_) => "loadbalance",
                Plugin::Cache(_) => "cache",
                Plugin::Rewrite(_) => "rewrite",
                Plugin::Hosts(_) => "hosts",
                Plugin::Loop(_) => "loop",
                Plugin::Forward(_) => "forward",
                Plugin::Template(_) => "template",
                Plugin::Whoami(_) => "whoami",
            }
        }
    }

    fn chain(corefile: &str) -> Vec<&'static str> {
        let path = std::path::Path::new("Corefile");
        let config = crate::config::parse_corefile(corefile, path).expect("parses");
        let chain = Chain::new(&config.servers[0], 1);
        chain.plugins.iter().map(Plugin::name).collect()
    }

    /// The links follow node-cache's order whatever the order of the directives.
    #[test]
    fn links_follow_node_cache_order() {
        let corefile = ".:1053 {\n whoami\n forward . 127.0.0.1:53\n loop\n cache 30\n \
                        acl {\n  allow net 127.0.0.0/8\n }\n log\n errors\n prometheus :9253\n \
                        bufsize 1232\n}\n";
        assert_eq!(
            chain(corefile),
            [
                "prometheus",
                "errors",
                "log",
                "acl",
                "cache",
                "loop",
                "forward",
                "whoami"
            ]
        );
    }

    /// `rewrite` runs before `cache` (its rewritten question is the cache key),
    /// `template` after both.
    #[test]
    fn rewrite_precedes_cache() {
        let corefile = ".:1053 {\n template IN A\n cache 30\n rewrite name a.org b.org\n \
                        forward . 127.0.0.1:53\n}\n";
        assert_eq!(chain(corefile), ["rewrite", "cache", "template", "forward"]);
    }

    /// Directives that configure the server are not links.
    #[test]
    fn a_plain_block_is_cache_and_forward() {
        let corefile = ".:1053 {\n bind 127.0.0.1\n cache 30\n forward . 127.0.0.1:53\n}\n";
        assert_eq!(chain(corefile), ["cache", "forward"]);
    }
}
