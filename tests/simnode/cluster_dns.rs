//! The cluster DNS as a node sees it: three knotd "CoreDNS pods", each in its own
//! namespace with its own address, serving the same zones, behind the
//! `kube-dns-upstream` ClusterIP that kube-proxy (iptables mode) DNATs per new
//! connection with `statistic --mode random` (1/3, 1/2, then the last). The cache runs
//! as in the DaemonSet (`node.rs`), forwarding `force_tcp` to that ClusterIP.
//!
//! ```text
//!  node  10.0.1.1 ──veth── 10.0.1.2  backend 0  knotd cluster.local
//!        10.0.2.1 ──veth── 10.0.2.2  backend 1  knotd cluster.local
//!        10.0.3.1 ──veth── 10.0.3.2  backend 2  knotd cluster.local
//!  10.96.0.11 (kube-dns-upstream) → KUBE-SVC → KUBE-SEP-n → 10.0.n.2:53
//! ```
//!
//! Answers never say which backend gave them (they must not differ): what reached
//! each backend is counted by its knotd's mod-stats (`knotc stats`). The tests:
//! spread over the backends and rotation with `max_age`, a backend added, removed,
//! reset, blackholed and a rolling restart under pod traffic, bounded retries of a
//! name the upstream never answers, and the node's conntrack entries for upstream
//! TCP.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{wait_until, Netns};
use crate::node::{can_run, cluster_records, link, Knot, Node, PodLoad, KUBE_DNS_UPSTREAM};

/// kube-proxy's chain for the kube-dns-upstream Service (one for both protocols
/// here; kube-proxy has one per Service port, to the same endpoints).
const SVC_CHAIN: &str = "KUBE-SVC-NLDUPSTREAM";
/// The cache's pool bound per shard and upstream: `UPSTREAM_TCP_CONNS_MAX` open, plus
/// the one retired connection still draining (`max_age` retires one at a time).
const POOL_PER_SHARD: usize = 4 + 1;
/// `--shards` of `Node::test_args`.
const SHARDS: usize = 2;
/// Longest wait for the cache to start on a loaded machine.
const START: Duration = Duration::from_secs(30);

/// One "CoreDNS pod": its namespace, address and knotd (None while stopped).
pub struct Backend {
    pub ns: Netns,
    pub ip: String,
    pub knot: Option<Knot>,
    /// knotd starts so far (each gets its own run directory).
    starts: usize,
    /// Queries counted by knotds of this backend that have since been stopped.
    counted_before: u64,
}

impl Backend {
    fn start(&mut self) {
        let tag = format!("b{}", self.starts);
        self.starts += 1;
        let records = cluster_records();
        self.knot = Some(Knot::start(
            &mut self.ns,
            &tag,
            &self.ip,
            &[("cluster.local.", &records)],
        ));
    }

    /// Stops knotd with `signal` (SIGTERM: the pod deleted; SIGKILL: it crashed).
    fn stop(&mut self, signal: i32) {
        let Some(knot) = self.knot.take() else {
            return;
        };
        self.counted_before += knot.total();
        assert_eq!(unsafe { libc::kill(knot.pid as i32, signal) }, 0);
        assert!(
            self.ns
                .wait_exit(knot.pid, Duration::from_secs(10))
                .is_some(),
            "knotd {} did not exit",
            self.ip
        );
    }

    /// Queries this backend received over all its knotd runs. A knotd killed with
    /// SIGKILL takes its last counts along: read them before ([`Backend::stop`]).
    pub fn queries(&self) -> u64 {
        self.counted_before + self.knot.as_ref().map_or(0, Knot::total)
    }

    /// Drops every packet in the backend's namespace (no RST): a blackholed pod.
    fn blackhole(&self, on: bool) {
        for chain in ["INPUT", "OUTPUT"] {
            let op = if on { "-I" } else { "-D" };
            self.ns.run_ok(&["iptables", "-w", op, chain, "-j", "DROP"]);
        }
    }
}

/// The node of `node.rs` with its kube-dns-upstream ClusterIP DNATed to backends.
pub struct ClusterDns {
    pub node: Node,
    pub backends: Vec<Backend>,
}

impl ClusterDns {
    /// The node, `count` backends with knotd running, and the ClusterIP's rules in
    /// kube-proxy's shape with no endpoint yet ([`ClusterDns::endpoints`]).
    pub fn build(test: &str, count: usize) -> ClusterDns {
        let node = Node::build(test);
        // kube-proxy's plain DNAT of the ClusterIP (node.rs) makes way for the
        // Service chain.
        let nat = |args: &[&str]| {
            let mut all = vec!["iptables", "-w", "-t", "nat"];
            all.extend_from_slice(args);
            node.node.run_ok(&all);
        };
        nat(&["-N", SVC_CHAIN]);
        let to = format!("{}:53", crate::node::CLUSTER_DNS_POD);
        for chain in ["PREROUTING", "OUTPUT"] {
            for proto in ["udp", "tcp"] {
                let rule = [chain, "-d", KUBE_DNS_UPSTREAM, "-p", proto, "--dport", "53"];
                nat(&[&["-D"][..], &rule, &["-j", "DNAT", "--to-destination", &to]].concat());
                nat(&[&["-I"][..], &rule, &["-j", SVC_CHAIN]].concat());
            }
        }
        let tag = format!("{}{}", std::process::id() % 100_000, test.len());
        let backends = (0..count)
            .map(|i| {
                let ns = Netns::new(&format!("be{i}{test}"));
                let ip = format!("10.0.{}.2", i + 1);
                link(
                    &node.node,
                    &format!("b{i}{tag}"),
                    &ns,
                    &format!("10.0.{}.1", i + 1),
                    &ip,
                );
                ns.run_ok(&[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.0.{}.1", i + 1),
                ]);
                let mut backend = Backend {
                    ns,
                    ip,
                    knot: None,
                    starts: 0,
                    counted_before: 0,
                };
                backend.start();
                backend
            })
            .collect();
        ClusterDns { node, backends }
    }

    /// Points the ClusterIP at `endpoints` (`IP:PORT`) as kube-proxy does: one
    /// `iptables-restore --noflush` (atomic), a `statistic --mode random` rule per
    /// endpoint with probability 1/n, 1/(n-1), ..., the last taken unconditionally.
    /// A new connection is DNATed once; established ones keep their endpoint.
    pub fn endpoints(&self, endpoints: &[String]) {
        let mut text = format!("*nat\n:{SVC_CHAIN} - [0:0]\n");
        for i in 0..endpoints.len() {
            text.push_str(&format!(":KUBE-SEP-NLD{i} - [0:0]\n"));
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            let left = endpoints.len() - i;
            let statistic = match left {
                1 => String::new(),
                _ => format!(
                    "-m statistic --mode random --probability {:.10} ",
                    1.0 / left as f64
                ),
            };
            text.push_str(&format!("-A {SVC_CHAIN} {statistic}-j KUBE-SEP-NLD{i}\n"));
            for proto in ["tcp", "udp"] {
                text.push_str(&format!(
                    "-A KUBE-SEP-NLD{i} -p {proto} -j DNAT --to-destination {endpoint}\n"
                ));
            }
        }
        text.push_str("COMMIT\n");
        let file = self.node.node.path("kube-proxy.rules");
        std::fs::write(&file, text).unwrap();
        self.node.node.run_ok(&[
            "iptables-restore",
            "-w",
            "--noflush",
            file.to_str().unwrap(),
        ]);
    }

    /// [`ClusterDns::endpoints`] with the knotd of these backends.
    pub fn serve_from(&self, backends: &[usize]) {
        let endpoints: Vec<String> = backends
            .iter()
            .map(|&i| format!("{}:53", self.backends[i].ip))
            .collect();
        self.endpoints(&endpoints);
    }

    /// Queries each backend received so far.
    pub fn queries(&self) -> Vec<u64> {
        self.backends.iter().map(Backend::queries).collect()
    }

    /// Starts the cache with these `forward` options and waits for its rules and a
    /// first answer through the ClusterIP.
    pub fn start_cache(&mut self, options: &[&str]) -> u32 {
        self.node.forward_options = options.iter().map(|o| o.to_string()).collect();
        let pid = self.node.start_cache("iptables", &[]);
        assert!(
            wait_until(START, || self.node.our_rules() == 24),
            "{}",
            self.node.log()
        );
        assert!(
            wait_until(START, || self.node.resolve("kubernetes.default")
                == vec!["10.96.0.1"]),
            "{}",
            self.node.log()
        );
        pid
    }

    /// The node's conntrack entries for TCP to the ClusterIP: (state, the endpoint
    /// it was DNATed to, the node's port).
    pub fn conntrack(&self) -> Vec<(String, String, String)> {
        let out = self.node.node.run(&[
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--orig-dst",
            KUBE_DNS_UPSTREAM,
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let state = words.get(3)?.to_string();
                let field = |key: &str, nth: usize| {
                    words
                        .iter()
                        .filter_map(|w| w.strip_prefix(key))
                        .nth(nth)
                        .map(String::from)
                };
                // The reply direction's source is the endpoint.
                Some((state, field("src=", 1)?, field("sport=", 0)?))
            })
            .collect()
    }

    /// The node's established upstream TCP connections (conntrack).
    pub fn established(&self) -> Vec<(String, String)> {
        self.conntrack()
            .into_iter()
            .filter(|(state, _, _)| state == "ESTABLISHED")
            .map(|(_, endpoint, port)| (endpoint, port))
            .collect()
    }

    /// One metric's value summed over its label sets (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.node.node.scrape("127.0.0.1:9253"), name)
    }
}

/// `name`'s samples in a Prometheus text exposition, summed.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// dnsload in the pod: `rate` queries/s of unique names under cluster.local (each a
/// miss, NXDOMAIN from the cluster DNS) for `secs`, waiting 6 s for each answer (the
/// cache's 5 s query deadline, then a client's patience). The names are made before
/// the first query: as many as the run asks, no more.
fn misses(dns: &ClusterDns, name: &str, rate: u32, secs: u32, seed: u32) -> PodLoad {
    let names = (rate * (secs + 1)).to_string();
    PodLoad::start(
        &dns.node,
        name,
        &[
            "--rate",
            &rate.to_string(),
            "-c",
            "64",
            "--random-names",
            &names,
            "--random-suffix",
            "cluster.local.",
            "--seed",
            &seed.to_string(),
            "-l",
            &secs.to_string(),
            "-t",
            "6",
            "--no-pin",
        ],
    )
}

/// A dnsload report's (sent, lost, mismatched, rcodes other than NXDOMAIN).
fn outcome(report: &Value) -> (u64, u64, u64, Vec<String>) {
    let counters = &report["counters"];
    let count = |key: &str| counters[key].as_u64().unwrap_or(u64::MAX);
    let others = report["rcodes"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(rcode, _)| *rcode != "NXDOMAIN")
        .map(|(rcode, n)| format!("{rcode}={n}"))
        .collect();
    (count("sent"), count("lost"), count("mismatched"), others)
}

/// Asserts a load lost nothing, got nothing twice and saw NXDOMAIN only; its sent.
fn clean(dns: &ClusterDns, what: &str, report: &Value) -> u64 {
    let (sent, lost, mismatched, others) = outcome(report);
    let (failed, closed) = attempts_failed(dns);
    eprintln!(
        "{what}: sent {sent}, lost {lost}, mismatched {mismatched}, other rcodes {others:?}; \
         so far {failed} failed upstream attempts, {closed} silent-connection closes logged"
    );
    let log = dns.node.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upstream") || l.contains("ERROR"))
        .collect();
    let log = lines[lines.len().saturating_sub(60)..].join("\n");
    assert!(sent > 1000, "{what}: the load ran: {}", report["counters"]);
    assert_eq!(
        (lost, mismatched),
        (0, 0),
        "{what}: no query lost or answered twice\n{log}"
    );
    assert!(
        others.is_empty(),
        "{what}: every answer NXDOMAIN, no SERVFAIL: {others:?}\n{log}"
    );
    sent
}

/// Upstream conntrack entries in a bound: every established one is a pool
/// connection, so at most [`POOL_PER_SHARD`] per shard.
fn assert_pool_bound(dns: &ClusterDns, most: &mut usize) {
    let established = dns.established().len();
    *most = (*most).max(established);
    assert!(
        established <= SHARDS * POOL_PER_SHARD,
        "{established} upstream connections in conntrack: {:?}",
        dns.conntrack()
    );
}

/// Over 2,000 misses/s, connections replaced every 300 ms (`max_age`; expire as
/// short), each one DNATed to a random backend: each of three backends gets 20–47 %
/// of the upstream queries. A backend added to the Service gets traffic once the
/// connections open before it were replaced, which takes at most `max_age`; no
/// query is lost or answered twice; the node's established upstream connections in
/// conntrack never exceed the pool.
#[test]
fn cluster_dns_spreads_misses_and_rotates_connections_to_an_added_backend() {
    if !can_run() {
        return;
    }
    let mut dns = ClusterDns::build("spread", 3);
    dns.serve_from(&[0, 1]);
    let max_age = Duration::from_millis(300);
    dns.start_cache(&["expire 300ms", "max_age 300ms"]);
    // knotd's start-up check asked each backend once.
    let idle = dns.queries()[2];
    let load = misses(&dns, "spread", 2000, 36, 1);
    let mut most = 0;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(dns.queries()[2], idle, "not an endpoint yet");

    // The third backend joins the Service.
    let before: HashSet<String> = dns.established().into_iter().map(|(_, p)| p).collect();
    assert!(!before.is_empty(), "{:?}", dns.conntrack());
    dns.serve_from(&[0, 1, 2]);
    let added = Instant::now();
    // Every connection open before it joined is retired within max_age (a retired
    // one drains its last answers first: a little slack); each new one is DNATed
    // to any of the three.
    std::thread::sleep(max_age + Duration::from_millis(700));
    let left: Vec<(String, String)> = dns
        .established()
        .into_iter()
        .filter(|(_, port)| before.contains(port))
        .collect();
    assert!(left.is_empty(), "connections older than max_age: {left:?}");
    // A replaced connection lands on the new backend with a chance of one in three,
    // so its first query may take a few max_ages.
    let reached = wait_until(Duration::from_secs(10), || dns.queries()[2] > idle);
    let first_query = added.elapsed();
    assert!(reached, "the added backend got no query in 10 s");
    eprintln!(
        "added backend: {} connections before it, none left after {:?}; its first query within {first_query:?}",
        before.len(),
        max_age + Duration::from_millis(700)
    );

    // The split over the rest of the run.
    let start = dns.queries();
    let opened_start = dns.metric("coredns_proxy_conn_cache_misses_total");
    let window = Instant::now();
    let mut time_wait = 0;
    while window.elapsed() < Duration::from_secs(26) {
        assert_pool_bound(&dns, &mut most);
        time_wait = time_wait.max(
            dns.conntrack()
                .iter()
                .filter(|(s, _, _)| s == "TIME_WAIT")
                .count(),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let report = load.finish();
    let end = dns.queries();
    let opened = dns.metric("coredns_proxy_conn_cache_misses_total") - opened_start;
    let got: Vec<u64> = end.iter().zip(&start).map(|(e, s)| e - s).collect();
    let total: u64 = got.iter().sum();
    let shares: Vec<f64> = got
        .iter()
        .map(|&n| n as f64 * 100.0 / total.max(1) as f64)
        .collect();
    eprintln!(
        "split over {:?}: {got:?} queries = {shares:.1?} %; {opened} connections opened; \
         established upstream connections at most {most}, TIME_WAIT entries at most {time_wait}",
        window.elapsed()
    );
    clean(&dns, "spread", &report);
    assert!(total > 20_000, "upstream queries: {got:?}");
    for (i, share) in shares.iter().enumerate() {
        assert!(
            (20.0..=47.0).contains(share),
            "backend {i} got {share:.1} % of {total}: {shares:.1?}"
        );
    }
}

/// A backend's knotd running and answering on its address.
fn serving(backend: &Backend) -> bool {
    backend
        .ns
        .kdig(&[&format!("@{}", backend.ip), "cluster.local.", "SOA"])
        .contains("hostmaster")
}

/// The cache's upstream connections DNATed to `ip` that are still open: its
/// sockets to the ClusterIP in ESTABLISHED (`ss`), matched by port with conntrack's
/// endpoint. (conntrack alone keeps a blackholed connection ESTABLISHED after the
/// cache closed it: the FIN never leaves behind the unacknowledged data.)
fn open_to(dns: &ClusterDns, ip: &str) -> usize {
    let sockets = dns.node.node.run_ok(&[
        "ss",
        "-Htn",
        "state",
        "established",
        "dst",
        KUBE_DNS_UPSTREAM,
    ]);
    let open: HashSet<&str> = sockets
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let peer = words.iter().position(|w| w.ends_with(":53"))?;
            words.get(peer.checked_sub(1)?)?.rsplit(':').next()
        })
        .collect();
    dns.established()
        .iter()
        .filter(|(endpoint, port)| endpoint == ip && open.contains(port.as_str()))
        .count()
}

/// Starts a phase with every upstream connection on backend `target`: the idle
/// ones of the last phase expire (`expire 1s`), then the load starts while `target`
/// is the one endpoint, so both shards connect to it; then `endpoints` serve.
fn pinned_load(
    dns: &ClusterDns,
    name: &str,
    target: usize,
    endpoints: &[usize],
    secs: u32,
    seed: u32,
) -> PodLoad {
    dns.serve_from(&[target]);
    let ip = &dns.backends[target].ip;
    assert!(
        wait_until(Duration::from_secs(5), || dns.established().is_empty()),
        "idle connections expire: {:?}",
        dns.conntrack()
    );
    let load = misses(dns, name, RATE, secs, seed);
    assert!(
        wait_until(Duration::from_secs(5), || open_to(dns, ip) >= SHARDS),
        "{name}: both shards on {ip}: {:?}",
        dns.conntrack()
    );
    dns.serve_from(endpoints);
    load
}

/// Failed upstream attempts (each retried, or the last before a SERVFAIL) as
/// `nodelocaldns_forward_attempt_failures_total` counts them, checked against the
/// cache's debug log of its upstreams, and connections closed as silent (log).
fn attempts_failed(dns: &ClusterDns) -> (usize, usize) {
    let log = dns.node.log();
    let logged = log.matches("upstream attempt failed").count();
    let counted = dns.metric("nodelocaldns_forward_attempt_failures_total") as usize;
    // The scrape comes after the log was read: attempts may fail in between.
    assert!(
        counted >= logged,
        "the metric counts every failed attempt the log shows: {counted} < {logged}"
    );
    (
        counted,
        log.matches("silent upstream connections closed").count(),
    )
}

/// How long the cache took to close its connections to backend `index` after a
/// fault there (asserted within 5 s).
fn closed_within(dns: &ClusterDns, index: usize) -> Duration {
    let fault = Instant::now();
    let ip = &dns.backends[index].ip;
    let closed = wait_until(Duration::from_secs(5), || open_to(dns, ip) == 0);
    let took = fault.elapsed();
    assert!(
        closed,
        "connections to {ip} kept: {:?}\n{}",
        dns.conntrack(),
        dns.node.log()
    );
    took
}

/// Misses per second of the dead-backend phases: what the 2-core machine serves
/// beside the rest of the suite with room to spare (the cache, three knotds and the
/// load generator share it).
const RATE: u32 = 2000;

/// With the DaemonSet's `force_tcp` (no `max_age`), `read_timeout 500ms`,
/// `max_connect_attempts 8` (eight attempts fit in the 5 s query deadline) and
/// `expire 1s` (so each phase starts afresh), under 2,000 misses/s from the pod,
/// every connection first on the backend the phase is about:
/// - removed from the Service: its open connections keep answering, then its knotd
///   stops (the pod deleted) and their queries go to the others;
/// - a reset (knotd SIGKILLed, still an endpoint);
/// - blackholed mid-stream (every packet dropped in its namespace, no RST), still an
///   endpoint: the queries in flight on its connections are retried on another one
///   after `read_timeout`, and the dead connections are dropped;
/// - a rolling restart of the three backends, one by one, as a Deployment does it
///   (endpoint removed, knotd stopped, started, endpoint back).
///
/// Each with zero lost queries and zero SERVFAIL.
#[test]
fn cluster_dns_dead_backends_and_a_rolling_restart_fail_no_query() {
    if !can_run() {
        return;
    }
    let mut dns = ClusterDns::build("dead", 3);
    // Each failed attempt logged (a few hundred lines per fault).
    dns.node.rust_log = "info,nodelocaldns::upstream=debug";
    dns.serve_from(&[0, 1, 2]);
    dns.start_cache(&["read_timeout 500ms", "max_connect_attempts 8", "expire 1s"]);

    // Removed from the Service, then deleted.
    let load = pinned_load(&dns, "removed", 0, &[1, 2], 8, 1);
    let removed_at = dns.queries()[0];
    std::thread::sleep(Duration::from_secs(2));
    let after_removal = dns.queries()[0] - removed_at;
    assert!(after_removal > 0, "its open connections keep answering");
    dns.backends[0].stop(libc::SIGTERM);
    let detected = closed_within(&dns, 0);
    let report = load.finish();
    eprintln!(
        "removed: {after_removal} queries answered on its connections in the 2 s after the removal; \
         its connections gone {detected:?} after knotd stopped"
    );
    clean(&dns, "removed then deleted", &report);
    dns.backends[0].start();

    // Reset: knotd killed, the pod still an endpoint.
    let load = pinned_load(&dns, "reset", 1, &[0, 1, 2], 8, 2);
    std::thread::sleep(Duration::from_secs(1));
    dns.backends[1].stop(libc::SIGKILL);
    let detected = closed_within(&dns, 1);
    let report = load.finish();
    eprintln!("reset: its connections gone {detected:?} after the kill");
    clean(&dns, "reset", &report);
    dns.backends[1].start();

    // Blackholed mid-stream, still an endpoint.
    let load = pinned_load(&dns, "blackhole", 2, &[0, 1, 2], 8, 3);
    std::thread::sleep(Duration::from_secs(1));
    dns.backends[2].blackhole(true);
    let detected = closed_within(&dns, 2);
    let report = load.finish();
    dns.backends[2].blackhole(false);
    eprintln!("blackhole: its connections dropped {detected:?} after the cut");
    clean(&dns, "blackhole", &report);
    assert!(serving(&dns.backends[2]));

    // A rolling restart under pod traffic.
    dns.serve_from(&[0, 1, 2]);
    let load = misses(&dns, "rolling", RATE, 16, 4);
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3 {
        let others: Vec<usize> = (0..3).filter(|&j| j != i).collect();
        dns.serve_from(&others);
        std::thread::sleep(Duration::from_millis(1000));
        dns.backends[i].stop(libc::SIGTERM);
        dns.backends[i].start();
        dns.serve_from(&[0, 1, 2]);
        std::thread::sleep(Duration::from_millis(2500));
    }
    let report = load.finish();
    let split = dns.queries();
    eprintln!("rolling restart: queries per backend over the whole test {split:?}");
    clean(&dns, "rolling restart", &report);
}

/// A scripted cluster DNS whose fault is the point: it answers every query at once
/// (NXDOMAIN, the question echoed) except names starting with `silent`, which it
/// never answers, counting those it got; names starting with `stale` get an A
/// record ([`STALE_A`], TTL 1) while `answer_stale` is set, else no answer (counted
/// with the silent ones).
struct SilentUpstream {
    script: Arc<Script>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What [`SilentUpstream`]'s threads share with the test.
#[derive(Default)]
struct Script {
    stop: AtomicBool,
    /// Queries left unanswered.
    silent: AtomicU64,
    /// `stale*` names are answered while set.
    answer_stale: AtomicBool,
}

/// The address [`SilentUpstream`] gives `stale*` names while it answers them.
const STALE_A: &str = "192.0.2.7";

impl SilentUpstream {
    /// Listens on `addr` inside `ns`.
    fn start(ns: &Netns, addr: SocketAddr) -> SilentUpstream {
        let script = Arc::new(Script::default());
        script.answer_stale.store(true, Ordering::Relaxed);
        let netns = Path::new("/run/netns").join(&ns.name);
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = {
            let script = script.clone();
            std::thread::spawn(move || {
                let file = std::fs::File::open(&netns).expect("open netns");
                assert_eq!(
                    unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                let listener = TcpListener::bind(addr).expect("bind");
                listener.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                let mut conns = Vec::new();
                while !script.stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let script = script.clone();
                            // Threads made here stay in the namespace.
                            conns.push(std::thread::spawn(move || serve_silently(stream, &script)));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                for conn in conns {
                    let _ = conn.join();
                }
            })
        };
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("listening");
        SilentUpstream {
            script,
            thread: Some(thread),
        }
    }

    fn unanswered(&self) -> u64 {
        self.script.silent.load(Ordering::Relaxed)
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.script.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection of [`SilentUpstream`]: length-prefixed queries in, answers out.
fn serve_silently(mut stream: TcpStream, script: &Script) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !script.stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        while buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() < 2 + len {
                break;
            }
            let query: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
            let Some(answer) = scripted_answer(&query, script) else {
                continue;
            };
            let mut frame = (answer.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&answer);
            if stream.write_all(&frame).is_err() {
                return;
            }
        }
    }
}

/// [`SilentUpstream`]'s answer to `query`, None for none.
fn scripted_answer(query: &[u8], script: &Script) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record};
    let message = Message::from_vec(query).ok()?;
    let question = message.queries().first()?.clone();
    let name = question.name().to_ascii();
    let stale = name.starts_with("stale");
    if name.starts_with("silent") || (stale && !script.answer_stale.load(Ordering::Relaxed)) {
        script.silent.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let mut reply = message.clone();
    reply
        .set_message_type(MessageType::Response)
        .set_recursion_available(true);
    if stale {
        let rdata = RData::A(A(STALE_A.parse().ok()?));
        reply.add_answer(Record::from_rdata(question.name().clone(), 1, rdata));
    } else {
        reply.set_response_code(ResponseCode::NXDomain);
    }
    reply.to_vec().ok()
}

/// `count` UDP queries for `name` A from the pod at once, each on its own socket:
/// their rcodes (None: no answer in 8 s).
fn burst(dns: &ClusterDns, name: &str, count: usize) -> Vec<Option<u8>> {
    let name = name.to_string();
    dns.node.pod.in_ns(move || {
        let server: SocketAddr = (
            crate::node::KUBE_DNS.parse::<std::net::IpAddr>().unwrap(),
            53,
        )
            .into();
        let threads: Vec<_> = (0..count)
            .map(|_| {
                let name = name.clone();
                std::thread::spawn(move || {
                    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                    socket
                        .set_read_timeout(Some(Duration::from_secs(8)))
                        .unwrap();
                    crate::harness::udp_query(&socket, server, &name)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// A name the cluster DNS never answers: one client's query costs exactly
/// `max_connect_attempts` (3) upstream attempts, then SERVFAIL; fifty clients asking
/// another such name at once share one resolution (coalesced): 3 attempts in all,
/// fifty SERVFAILs; `nodelocaldns_forward_connect_attempts_exceeded_total` counts one
/// per resolution. Other names keep being answered meanwhile. With `serve_stale
/// verify`, a cached name whose upstream then stops answering costs the same three
/// attempts once expired, and the client gets the stale answer instead of SERVFAIL.
#[test]
fn cluster_dns_a_name_never_answered_costs_bounded_attempts() {
    if !can_run() {
        return;
    }
    let mut dns = ClusterDns::build("silent", 1);
    // The scripted upstream is the Service's one endpoint (beside backend 0's knotd).
    let addr: SocketAddr = format!("{}:5300", dns.backends[0].ip).parse().unwrap();
    let upstream = SilentUpstream::start(&dns.backends[0].ns, addr);
    dns.serve_from(&[0]);
    dns.node.cache_options = vec!["serve_stale 1h verify".into()];
    dns.start_cache(&["read_timeout 500ms", "max_connect_attempts 3", "expire 1s"]);
    dns.endpoints(&[addr.to_string()]);
    // The start's connection to knotd expires; new ones reach the scripted upstream.
    assert!(wait_until(Duration::from_secs(5), || dns
        .established()
        .is_empty()));
    let exceeded = "nodelocaldns_forward_connect_attempts_exceeded_total";
    let base = dns.metric(exceeded);

    let started = Instant::now();
    let one = burst(&dns, "silent-one.default.svc.cluster.local.", 1);
    let took = started.elapsed();
    let attempts_one = upstream.unanswered();
    let after_one = dns.metric(exceeded) - base;
    assert_eq!(one, vec![Some(2)], "SERVFAIL\n{}", dns.node.log());
    assert_eq!(attempts_one, 3, "max_connect_attempts attempts upstream");

    let many = burst(&dns, "silent-many.default.svc.cluster.local.", 50);
    let attempts_many = upstream.unanswered() - attempts_one;
    let servfails = many.iter().filter(|r| **r == Some(2)).count();
    let after_many = dns.metric(exceeded) - base;
    eprintln!(
        "never answered: one client: {attempts_one} attempts, SERVFAIL after {took:?}; \
         50 clients: {attempts_many} attempts, {servfails} SERVFAIL; {exceeded} {after_one} then {after_many}"
    );
    assert_eq!(servfails, 50, "{many:?}");
    assert!(attempts_many <= 3, "coalesced: {attempts_many} attempts");
    assert_eq!((after_one, after_many), (1.0, 2.0));
    // Other names are answered by the same upstream.
    let other = burst(&dns, "web-nosuch.default.svc.cluster.local.", 1);
    assert_eq!(other, vec![Some(3)]);

    // serve_stale: cached (TTL 1, raised to the cache's MINTTL of 5 s), expired, then
    // never answered: bounded attempts, then the stale answer.
    let name = "stale-one.default.svc.cluster.local.";
    assert_eq!(burst(&dns, name, 1), vec![Some(0)]);
    upstream.script.answer_stale.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(6));
    let before = upstream.unanswered();
    let started = Instant::now();
    let stale = burst(&dns, name, 1);
    let took = started.elapsed();
    let attempts = upstream.unanswered() - before;
    eprintln!("serve_stale verify: {attempts} attempts, the stale answer after {took:?}");
    assert_eq!(stale, vec![Some(0)], "the stale answer\n{}", dns.node.log());
    assert!((1..=3).contains(&attempts), "{attempts} attempts");
}
