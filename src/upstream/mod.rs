//! Forwarding to upstream servers (the `forward` directive), per shard: upstream
//! selection by policy with unhealthy upstreams last, one attempt per upstream
//! bounded by `read_timeout` (2 s), at most `max_connect_attempts` failed attempts
//! (two per upstream), the whole query by 5 s, `failover` to the next upstream on
//! the rcodes it names, UDP with a TCP retry on truncation, and pipelined TCP pools.
//! Nothing is sent upstream before a client asks: health checks start only after a
//! failed attempt, as in CoreDNS. Nothing here is shared between shards.

mod tcp;
mod tls;
mod udp;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::config::{ForwardConfig, Policy};
use crate::limits;
use crate::wire;

/// Why a query got no answer from the upstreams.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream {0}: connection closed before the answer")]
    Closed(SocketAddr),
    #[error("upstream {0}: waiting before reconnecting after a failed connect")]
    Backoff(SocketAddr),
    #[error("upstream {0}: every connection carries its maximum of queries")]
    Busy(SocketAddr),
    #[error("upstream {0}: no answer within the attempt deadline")]
    Timeout(SocketAddr),
    #[error("upstream {0}: answer for another question")]
    WrongQuestion(SocketAddr),
    #[error("every upstream is unhealthy")]
    AllDown,
    #[error("more than max_concurrent queries in flight")]
    MaxConcurrent,
    #[error("no upstream answered within the query deadline")]
    Deadline,
    #[error("query longer than a TCP length prefix can say")]
    QueryTooLong,
}

/// How the query reached us, which picks the upstream transport unless the
/// configuration forces one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The `proto` label of the query's metrics.
impl From<Transport> for crate::telemetry::Proto {
    fn from(transport: Transport) -> Self {
        match transport {
            Transport::Udp => crate::telemetry::Proto::Udp,
            Transport::Tcp => crate::telemetry::Proto::Tcp,
        }
    }
}

/// One upstream as seen by one shard.
pub struct Upstream {
    pub addr: SocketAddr,
    /// A `tls://` upstream: every query goes over TLS (its pool's connections).
    tls: bool,
    /// Pipelined connections from this shard.
    pub tcp: Rc<tcp::TcpPool>,
    /// Consecutive failures; above `max_fails` the upstream is down.
    fails: Cell<u32>,
    /// True while a health-check task probes this upstream.
    probing: Cell<bool>,
    /// Failed health checks (for `coredns_proxy_healthcheck_failures_total`).
    pub healthcheck_failures: Cell<u64>,
    /// Answer durations, UDP exchanges and attempts in flight, for the metrics.
    pub stats: crate::telemetry::UpstreamStats,
}

/// A shard's forwarder for one `forward` directive.
pub struct Forwarder {
    cfg: ForwardConfig,
    /// Wire forms of `except` zones.
    except: Vec<Vec<u8>>,
    upstreams: Vec<Upstream>,
    /// Round-robin position.
    next: Cell<usize>,
    /// Upstream queries in flight from this shard, for `max_concurrent`.
    inflight: Cell<usize>,
    /// This shard's share of `max_concurrent`.
    inflight_max: Option<usize>,
    /// Queries refused because of `max_concurrent`.
    pub rejected: Cell<u64>,
    /// Queries sent while every upstream was down (`coredns_forward_healthcheck_broken_total`).
    pub broken: Cell<u64>,
    /// Failed attempts one query may make (`max_connect_attempts`).
    attempts_max: usize,
    /// Queries that ran out of `max_connect_attempts`
    /// (`nodelocaldns_forward_connect_attempts_exceeded_total`).
    pub attempts_exceeded: Cell<u64>,
}

impl Forwarder {
    /// `shards` splits `max_concurrent` between the shards (rounded up).
    pub fn new(cfg: &ForwardConfig, shards: usize) -> Rc<Forwarder> {
        let except = cfg
            .except
            .iter()
            .filter_map(|zone| wire::name::zone_to_wire(&zone.name))
            .collect();
        let pool = tcp::PoolOptions {
            source: cfg.source_address,
            expire: cfg.expire,
            max_age: cfg.max_age,
            max_idle: cfg.max_idle_conns,
        };
        // The system's CAs are read once per forwarder, not per upstream.
        let tls_config = match cfg.tls_upstreams.is_empty() {
            true => Err("no tls:// upstream".to_string()),
            false => tls::client_config(&cfg.tls),
        };
        let upstreams = cfg
            .to
            .iter()
            .map(|&addr| Upstream {
                addr,
                tls: cfg.tls_upstream(addr).is_some(),
                tcp: tcp::TcpPool::new(addr, &pool, tls_target(cfg, addr, &tls_config)),
                fails: Cell::new(0),
                probing: Cell::new(false),
                healthcheck_failures: Cell::new(0),
                stats: Default::default(),
            })
            .collect();
        Rc::new(Forwarder {
            cfg: cfg.clone(),
            except,
            upstreams,
            next: Cell::new(0),
            inflight: Cell::new(0),
            inflight_max: cfg.max_concurrent.map(|m| m.div_ceil(shards.max(1))),
            rejected: Cell::new(0),
            broken: Cell::new(0),
            attempts_max: cfg.attempts_max(),
            attempts_exceeded: Cell::new(0),
        })
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// False for names under an `except` zone: those are not forwarded.
    pub fn forwards(&self, qname: &[u8]) -> bool {
        !self
            .except
            .iter()
            .any(|zone| wire::name::in_zone(qname, zone))
    }

    /// Resolves `query` (a complete DNS message; its ID is replaced per attempt) and
    /// returns the upstream's answer, already matched by ID and question.
    pub async fn resolve(
        self: &Rc<Self>,
        query: &[u8],
        client: Transport,
    ) -> Result<Vec<u8>, UpstreamError> {
        if self
            .inflight_max
            .is_some_and(|max| self.inflight.get() >= max)
        {
            self.rejected.set(self.rejected.get() + 1);
            return Err(UpstreamError::MaxConcurrent);
        }
        if self.upstreams.iter().all(|u| self.is_down(u)) {
            if self.cfg.failfast_all_unhealthy {
                return Err(UpstreamError::AllDown);
            }
            self.broken.set(self.broken.get() + 1);
        }
        self.inflight.set(self.inflight.get() + 1);
        let _inflight = InflightGuard(&self.inflight);
        let deadline = Instant::now() + Duration::from_millis(limits::UPSTREAM_QUERY_MILLIS);
        let mut last = UpstreamError::Deadline;
        // The answer `failover` passed over, returned if no other upstream does better.
        let mut passed_over = None;
        let (mut failed, mut failovers) = (0, 0);
        // Around the list again while the deadline and `max_connect_attempts` allow
        // (CoreDNS does the same): with one upstream, one lost datagram costs an
        // attempt, not a SERVFAIL. Each turn fails (bounded by `attempts_max`), fails
        // over (bounded by the upstream count) or returns, so the cycle ends.
        let order = self.order();
        for &index in order.iter().cycle() {
            if failed >= self.attempts_max {
                self.attempts_exceeded.set(self.attempts_exceeded.get() + 1);
                break;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let upstream = &self.upstreams[index];
            let budget = remaining.min(self.cfg.read_timeout);
            let attempt = self.attempt(upstream, query, client);
            let started = Instant::now();
            let inflight = &upstream.stats.inflight;
            inflight.set(inflight.get() + 1);
            let waiting = InflightGuard(inflight);
            let outcome = with_deadline(budget, attempt).await;
            drop(waiting);
            match outcome {
                // The one upstream's pool waits to reconnect after a failed connect.
                // Behind a Service's ClusterIP the next connection may reach another
                // backend (one pod reset, the others fine): wait for it within this
                // attempt's budget rather than spend every attempt at once. With
                // other upstreams the query moves on to them (a failed attempt).
                Some(Err(UpstreamError::Backoff(_))) if self.upstreams.len() == 1 => {
                    let wait = upstream.tcp.reconnect_in().min(budget);
                    crate::engine::sleep(wait.max(Duration::from_millis(1))).await;
                    continue;
                }
                Some(Ok(answer)) => {
                    upstream.fails.set(0);
                    upstream.stats.answered(&answer, started.elapsed());
                    if !self.fails_over(&answer) {
                        return Ok(answer);
                    }
                    failovers += 1;
                    if failovers >= self.upstreams.len() {
                        return Ok(answer);
                    }
                    passed_over = Some(answer);
                    continue;
                }
                Some(Err(err)) => {
                    let stats = &upstream.stats;
                    let counter = match err {
                        UpstreamError::Timeout(_) => &stats.timed_out,
                        _ => &stats.errored,
                    };
                    counter.set(counter.get() + 1);
                    last = err;
                }
                None => {
                    // A connection that stayed silent is dead: its other queries go
                    // on to another connection now.
                    upstream.tcp.timed_out(started);
                    let timed_out = &upstream.stats.timed_out;
                    timed_out.set(timed_out.get() + 1);
                    last = UpstreamError::Timeout(upstream.addr);
                }
            }
            tracing::debug!(error = %last, "upstream attempt failed");
            failed += 1;
            self.failed(index);
        }
        passed_over.ok_or(last)
    }

    /// True when `answer`'s rcode is one `failover` names: try the next upstream.
    fn fails_over(&self, answer: &[u8]) -> bool {
        !self.cfg.failover.is_empty()
            && wire::Header::parse(answer).is_some_and(|h| self.cfg.failover.contains(&h.rcode()))
    }

    async fn attempt(
        &self,
        upstream: &Upstream,
        query: &[u8],
        client: Transport,
    ) -> Result<Vec<u8>, UpstreamError> {
        let transport = match (self.cfg.force_tcp || upstream.tls, self.cfg.prefer_udp) {
            (true, _) => Transport::Tcp,
            (false, true) => Transport::Udp,
            (false, false) => client,
        };
        if transport == Transport::Tcp {
            return upstream.tcp.exchange(query).await;
        }
        let exchanges = &upstream.stats.udp_exchanges;
        exchanges.set(exchanges.get() + 1);
        let answer = udp::exchange(upstream.addr, self.cfg.source_address, query).await?;
        if wire::is_truncated(&answer) {
            return upstream.tcp.exchange(query).await;
        }
        Ok(answer)
    }

    /// Upstream indices in the order to try: by policy, healthy ones first.
    fn order(&self) -> Vec<usize> {
        let count = self.upstreams.len();
        let mut order: Vec<usize> = match self.cfg.policy {
            Policy::Sequential => (0..count).collect(),
            Policy::RoundRobin => {
                let start = self.next.get();
                self.next.set(start.wrapping_add(1));
                (0..count).map(|i| (start + i) % count).collect()
            }
            Policy::Random => {
                let mut order: Vec<usize> = (0..count).collect();
                rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rand::thread_rng());
                order
            }
        };
        order.sort_by_key(|&i| self.is_down(&self.upstreams[i]));
        order
    }

    fn is_down(&self, upstream: &Upstream) -> bool {
        self.cfg.max_fails > 0 && upstream.fails.get() > self.cfg.max_fails
    }

    /// Counts a failure and starts probing the upstream if nobody does yet.
    fn failed(self: &Rc<Self>, index: usize) {
        let upstream = &self.upstreams[index];
        upstream.fails.set(upstream.fails.get().saturating_add(1));
        if upstream.probing.replace(true) || self.cfg.max_fails == 0 {
            return;
        }
        crate::engine::spawn_local(probe(Rc::downgrade(self), index)).detach();
    }
}

/// The TLS target of upstream `addr` when it is a `tls://` one; a configuration
/// rustls refuses is logged (the pool then fails every connection).
fn tls_target(
    cfg: &ForwardConfig,
    addr: SocketAddr,
    config: &Result<std::sync::Arc<rustls::ClientConfig>, String>,
) -> Option<Result<tls::TlsTarget, String>> {
    let target = tls::target(cfg, addr, config)?;
    if let Err(reason) = &target {
        tracing::error!(upstream = %addr, %reason, "TLS upstream unusable");
    }
    Some(target)
}

/// Health checks one upstream every `health_check` until it answers; the task ends
/// with the forwarder (a reload drops it).
async fn probe(forwarder: Weak<Forwarder>, index: usize) {
    let Some(query) = forwarder.upgrade().and_then(|f| health_query(&f.cfg)) else {
        return;
    };
    loop {
        let Some(interval) = forwarder.upgrade().map(|f| f.cfg.health_check) else {
            return;
        };
        crate::engine::sleep(interval.max(Duration::from_millis(100))).await;
        let Some(f) = forwarder.upgrade() else {
            return;
        };
        let upstream = &f.upstreams[index];
        let budget = f.cfg.read_timeout;
        let transport = if f.cfg.force_tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let answered = with_deadline(budget, f.attempt(upstream, &query, transport)).await;
        if let Some(Ok(_)) = answered {
            upstream.fails.set(0);
            upstream.probing.set(false);
            return;
        }
        upstream
            .healthcheck_failures
            .set(upstream.healthcheck_failures.get() + 1);
        upstream.fails.set(upstream.fails.get().saturating_add(1));
    }
}

/// The health-check query: `<domain> IN NS`, RD unless `no_rec`.
fn health_query(cfg: &ForwardConfig) -> Option<Vec<u8>> {
    let name = wire::name::zone_to_wire(&cfg.health_check_domain.name)?;
    Some(wire::ns_query(0, &name, !cfg.health_check_no_rec))
}

/// Runs `work` for at most `budget`; None when the time ran out.
pub async fn with_deadline<T>(
    budget: Duration,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let work = async { Some(work.await) };
    let timer = async {
        crate::engine::sleep(budget).await;
        None
    };
    futures_lite::future::or(work, timer).await
}

struct InflightGuard<'a>(&'a Cell<usize>);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
