//! Per-shard counters merged into CoreDNS-named metrics; `/metrics`, `/health` and
//! `/ready` on control-plane threads. See README.md beside this file for every
//! metric and endpoint.
//!
//! - [`stats`]: what a shard counts on its query path (plain cells, no atomics).
//! - [`metrics`]: the families, label-keyed samples, merging, text exposition.
//! - [`http`]: the HTTP listeners (tiny_http), one per distinct address.
//! - [`querylog`]: the `log` directive's per-query line.
//! - [`process`]: the `process_*` families, read from `/proc/self` at scrape.
//! - [`tls`]: the metrics endpoint's TLS configuration (`-tls-*`).
//!
//! Flow: each shard's control tick (every 100 ms) asks its [`Publisher`] whether a
//! publication is due (once a second, or at once when a scrape asks for fresh numbers
//! through a generation counter the scrape bumps); if so the server exports the
//! shard's state into a [`Metrics`] snapshot (`server/export.rs`) and the publisher
//! stores it in the shard's slot. A scrape merges the slots. Telemetry never sees a
//! shard's insides.

pub mod http;
pub mod metrics;
pub mod process;
pub mod querylog;
pub mod stats;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub use metrics::Metrics;
pub use querylog::QueryLog;
pub use stats::{Meter, Plugin, Proto, Report, ShardStats, UpstreamStats};

use crate::config::Config;

/// How often a shard publishes without being asked.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a scrape waits for the shards to publish fresh numbers.
const SCRAPE_WAIT: Duration = Duration::from_millis(500);
static PANICS: AtomicU64 = AtomicU64::new(0);
static RELOAD_FAILED: AtomicU64 = AtomicU64::new(0);
static PANIC_HOOK: Once = Once::new();

/// Counts a configuration reload that failed (`coredns_reload_failed_total`).
pub fn reload_failed() {
    RELOAD_FAILED.fetch_add(1, Ordering::Relaxed);
}

/// What one shard last published.
#[derive(Default)]
struct ShardReport {
    generation: u64,
    metrics: Metrics,
    serving: bool,
}

/// State shared by the shards' publishers and the HTTP threads.
pub struct Shared {
    /// Bumped by each scrape; a shard publishes when it is ahead of what it published.
    wanted: AtomicU64,
    shards: Vec<Mutex<ShardReport>>,
    /// SIGTERM received: `/ready` answers 503 while the shards keep serving.
    lameduck: AtomicBool,
    /// `coredns_health_request_duration_seconds` (per-bucket counts, sum).
    health: Mutex<(Vec<u64>, f64)>,
    /// `coredns_health_request_failures_total`.
    health_failures: AtomicU64,
    /// Each shard's last control tick, in milliseconds since `born`.
    heartbeats: Vec<AtomicU64>,
    /// How long each shard's packet loops have left datagrams unread, in ms.
    stuck: Vec<AtomicU64>,
    born: Instant,
    /// The test hook's file (`NODELOCALDNS_TEST_STALL_FILE`), when set.
    stall_file: Option<std::path::PathBuf>,
    /// The I/O engine the shards run on (the `engine` label of `nodelocaldns_engine_info`).
    engine: &'static str,
    /// `coredns_plugin_enabled` of the configuration in force.
    enabled: Mutex<Metrics>,
    /// Text appended to every `/metrics` answer (node-cache's setup errors: one
    /// registry there, so they are on the prometheus address too).
    appended: Option<Exposition>,
}

/// A source of Prometheus text exposition rendered on each scrape, from a layer
/// above telemetry (the node's setup errors).
#[derive(Clone)]
pub struct Exposition(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

/// What the HTTP endpoints serve beyond the Corefile's directives.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Appended to every `/metrics` answer.
    pub appended: Option<Exposition>,
    /// `-tls-enabled`: the addresses that serve `/metrics` speak TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    fn new(shards: usize, engine: &'static str, options: &HttpOptions) -> Shared {
        Shared {
            engine,
            enabled: Mutex::default(),
            appended: options.appended.clone(),
            wanted: AtomicU64::new(0),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            lameduck: AtomicBool::new(false),
            health: Mutex::new((vec![0; metrics::SLIM_TIME_BUCKETS.len() + 1], 0.0)),
            health_failures: AtomicU64::new(0),
            heartbeats: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            stuck: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            born: Instant::now(),
            stall_file: std::env::var_os("NODELOCALDNS_TEST_STALL_FILE").map(Into::into),
        }
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn beat(&self, shard: usize) {
        if let Some(beat) = self.heartbeats.get(shard) {
            beat.store(self.now_millis(), Ordering::Relaxed);
        }
    }

    /// Serving shards that made no progress for [`limits::LIVENESS_STALL_MILLIS`]:
    /// their control tick has not run, or their loops left datagrams unread, for
    /// that long: (shard, milliseconds).
    pub fn stalled(&self) -> Vec<(usize, u64)> {
        let now = self.now_millis();
        self.shards
            .iter()
            .zip(self.heartbeats.iter().zip(&self.stuck))
            .enumerate()
            .filter(|(_, (report, _))| report.lock().map(|r| r.serving).unwrap_or(false))
            .map(|(index, (_, (beat, stuck)))| {
                let silent = now.saturating_sub(beat.load(Ordering::Relaxed));
                (index, silent.max(stuck.load(Ordering::Relaxed)))
            })
            .filter(|(_, age)| *age > crate::limits::LIVENESS_STALL_MILLIS)
            .collect()
    }

    /// `/health`: None when every serving shard makes progress, else what is stuck
    /// (counted in `coredns_health_request_failures_total`).
    pub fn health_failure(&self) -> Option<String> {
        let stalled = self.stalled();
        if stalled.is_empty() {
            return None;
        }
        self.health_failures.fetch_add(1, Ordering::Relaxed);
        let what: Vec<String> = stalled
            .iter()
            .map(|(shard, age)| format!("shard {shard} stalled for {age} ms"))
            .collect();
        Some(what.join(", "))
    }

    fn serving(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| s.lock().map(|r| r.serving).unwrap_or(false))
            .count()
    }

    /// 200 once every shard serves, 503 before and during lameduck. Nothing is sent
    /// upstream for it: node-cache sends nothing before a client asks.
    pub fn ready(&self) -> bool {
        !self.lameduck.load(Ordering::Relaxed) && self.serving() == self.shards.len()
    }

    /// Asks the shards for fresh numbers, waits for them (bounded), merges.
    pub fn collect(&self) -> Metrics {
        let target = self.wanted.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = Instant::now() + SCRAPE_WAIT;
        while Instant::now() < deadline {
            let fresh = self.shards.iter().all(|s| {
                s.lock()
                    .map(|r| !r.serving || r.generation >= target)
                    .unwrap_or(true)
            });
            if fresh {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut all = Metrics::default();
        for shard in &self.shards {
            if let Ok(report) = shard.lock() {
                all.merge(&report.metrics, false);
            }
        }
        self.add_process(&mut all);
        all
    }

    /// The `/metrics` answer: the merged families, then the appended exposition.
    pub fn render(&self) -> String {
        let mut text = self.collect().render();
        if let Some(appended) = &self.appended {
            text.push_str(&(appended.0)());
        }
        text
    }

    fn add_process(&self, out: &mut Metrics) {
        use metrics as m;
        let version = env!("CARGO_PKG_VERSION");
        let revision = option_env!("NODELOCALDNS_REVISION").unwrap_or("");
        out.gauge(&m::BUILD_INFO, &[version, revision, "rust"], 1.0);
        out.gauge(&m::ENGINE_INFO, &[self.engine], 1.0);
        if let Ok(enabled) = self.enabled.lock() {
            out.merge(&enabled, false);
        }
        process::collect(out);
        out.counter(&m::PANICS, &[], PANICS.load(Ordering::Relaxed));
        out.counter(
            &m::HEALTH_FAILURES,
            &[],
            self.health_failures.load(Ordering::Relaxed),
        );
        out.counter(
            &m::RELOAD_FAILED,
            &[],
            RELOAD_FAILED.load(Ordering::Relaxed),
        );
        out.counter(&m::FORWARD_HEALTHCHECK_BROKEN, &[], 0);
        out.counter(&m::FORWARD_MAX_CONCURRENT_REJECTS, &[], 0);
        out.gauge(&m::SHARDS_SERVING, &[], self.serving() as f64);
        if let Ok(health) = self.health.lock() {
            out.histogram(&m::HEALTH_DURATION, &[], &health.0, health.1);
        }
    }

    fn configure(&self, config: &Config) {
        let enabled = plugins_enabled(config);
        if let Ok(mut slot) = self.enabled.lock() {
            *slot = enabled;
        }
    }

    fn observe_health(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Ok(mut health) = self.health.lock() {
            let bounds = &metrics::SLIM_TIME_BUCKETS;
            let slot = bounds
                .iter()
                .position(|b| seconds <= *b)
                .unwrap_or(bounds.len());
            if let Some(count) = health.0.get_mut(slot) {
                *count += 1;
            }
            health.1 += seconds;
        }
    }
}

/// The handle a shard thread gets to publish through (Send; turned into a
/// [`Publisher`] on the shard).
pub struct Slot {
    index: usize,
    shared: Arc<Shared>,
}

/// A shard's publishing state: lives on the shard's thread. It stores the snapshots
/// the server exports; it never looks inside a shard.
pub struct Publisher {
    slot: Slot,
    published: u64,
    last: Instant,
}

impl Publisher {
    pub fn new(slot: Slot) -> Publisher {
        Publisher {
            slot,
            published: 0,
            last: Instant::now(),
        }
    }

    /// The shard's index (the `shard` label of its own families).
    pub fn index(&self) -> usize {
        self.slot.index
    }

    /// The shard's listeners run; `snapshot` is its state now.
    pub fn serving(&mut self, snapshot: Metrics) {
        self.slot.shared.beat(self.slot.index);
        self.publish(snapshot, 0);
        if let Some(report) = self.report() {
            report.lock().map(|mut r| r.serving = true).ok();
        }
    }

    /// The shard stops: scrapes no longer wait for it.
    pub fn stopped(&mut self) {
        if let Some(report) = self.report() {
            report.lock().map(|mut r| r.serving = false).ok();
        }
    }

    /// Called on every control tick (which is the shard's heartbeat for `/health`):
    /// the generation to publish for when a scrape asked for fresh numbers or a
    /// publication is due, else None.
    pub fn due(&self) -> Option<u64> {
        self.slot.shared.beat(self.slot.index);
        self.stall_hook();
        let wanted = self.slot.shared.wanted.load(Ordering::Relaxed);
        (wanted > self.published || self.last.elapsed() >= PUBLISH_INTERVAL).then_some(wanted)
    }

    /// Stores `snapshot` as this shard's numbers, answering scrapes up to `wanted`.
    pub fn publish(&mut self, snapshot: Metrics, wanted: u64) {
        if let Some(report) = self.report() {
            if let Ok(mut report) = report.lock() {
                report.metrics = snapshot;
                report.generation = report.generation.max(wanted);
            }
        }
        self.published = self.published.max(wanted);
        self.last = Instant::now();
    }

    /// The shard's packet loops have left datagrams unread for `stuck` (zero when
    /// they make progress), as the server's control tick sees it.
    pub fn stuck_for(&self, stuck: Duration) {
        if let Some(cell) = self.slot.shared.stuck.get(self.slot.index) {
            let millis = u64::try_from(stuck.as_millis()).unwrap_or(u64::MAX);
            cell.store(millis, Ordering::Relaxed);
        }
    }

    /// Test hook: when `NODELOCALDNS_TEST_STALL_FILE` names a file that says
    /// "SHARD MILLIS" and SHARD is this shard, the file is removed and the shard's
    /// thread blocks that long (at most [`limits::TEST_STALL_MILLIS_MAX`]), as a
    /// wedged loop would. Without the variable this costs nothing.
    fn stall_hook(&self) {
        let Some(path) = &self.slot.shared.stall_file else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let mut words = text.split_whitespace();
        let (Some(Ok(shard)), Some(Ok(millis))) = (
            words.next().map(str::parse::<usize>),
            words.next().map(str::parse::<u64>),
        ) else {
            return;
        };
        if shard != self.slot.index || std::fs::remove_file(path).is_err() {
            return;
        }
        let millis = millis.min(crate::limits::TEST_STALL_MILLIS_MAX);
        tracing::warn!(shard, millis, "test hook: stalling this shard");
        std::thread::sleep(Duration::from_millis(millis));
    }

    fn report(&self) -> Option<&Mutex<ShardReport>> {
        self.slot.shared.shards.get(self.slot.index)
    }
}

/// The control-plane side: HTTP listeners and readiness.
pub struct Telemetry {
    shared: Arc<Shared>,
    listeners: Vec<http::Listener>,
    /// `health { lameduck }`: how long to keep serving after SIGTERM.
    pub lameduck: Duration,
}

impl Telemetry {
    /// Starts the HTTP listeners `config` asks for; returns the slots to hand to the shards.
    /// `engine` names the I/O engine the shards run on (`coredns_build_info`).
    pub fn start(
        config: &Config,
        shards: usize,
        engine: &'static str,
        options: &HttpOptions,
    ) -> std::io::Result<(Telemetry, Vec<Slot>)> {
        install_panic_hook();
        let shared = Arc::new(Shared::new(shards, engine, options));
        shared.configure(config);
        let listeners = http::start(config, &shared, options.tls.as_ref())?;
        let lameduck = lameduck(config);
        let slots = (0..shards)
            .map(|index| Slot {
                index,
                shared: shared.clone(),
            })
            .collect();
        let telemetry = Telemetry {
            shared,
            listeners,
            lameduck,
        };
        Ok((telemetry, slots))
    }

    /// Where each HTTP listener listens (with the port resolved).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// A new configuration is in force: its `coredns_plugin_enabled` replaces the
    /// old one's (CoreDNS resets the family on reload).
    pub fn configure(&self, config: &Config) {
        self.shared.configure(config);
    }

    /// Enters lameduck: `/ready` answers 503 from now on; `/health` stays 200.
    pub fn enter_lameduck(&self) {
        self.shared.lameduck.store(true, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    /// The merged metrics, as a scrape sees them.
    pub fn collect(&self) -> Metrics {
        self.shared.collect()
    }

    /// The `/metrics` text of the prometheus addresses, for a listener of another
    /// layer (node-cache has one registry: its setup-metrics address serves it all).
    pub fn exposition(&self) -> Exposition {
        let shared = self.shared.clone();
        Exposition(Arc::new(move || shared.render()))
    }
}

/// The plugins CoreDNS registers as handlers of a block's chain, in node-cache's
/// directive order (`plugin.cfg`; `acl` where CoreDNS has it): the `name` label of
/// `coredns_plugin_enabled`. Directives that only configure the server (timeouts,
/// reload, bind, debug, health, ready, pprof) are not handlers there either.
fn handlers(block: &crate::config::ServerBlock) -> Vec<&'static str> {
    let present = [
        ("bufsize", block.bufsize.is_some()),
        ("trace", block.trace),
        ("prometheus", block.prometheus.is_some()),
        ("errors", block.errors),
        ("log", block.log),
        ("dns64", block.dns64.is_some()),
        ("acl", block.acl.is_some()),
        ("loadbalance", block.loadbalance),
        ("cache", block.cache.is_some()),
        ("rewrite", !block.rewrites.is_empty()),
        ("template", !block.templates.is_empty()),
        ("hosts", block.hosts.is_some()),
        ("loop", block.loop_detect),
        ("forward", block.forward.is_some()),
        ("whoami", block.whoami),
    ];
    present
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect()
}

/// `coredns_plugin_enabled{server, zone, view, name}` = 1 for every handler of every
/// block with `prometheus`, per listen address and zone, as CoreDNS's `prometheus`
/// sets it at start (`server` is `dns://` and the bind address, empty without
/// `bind`, and the port).
fn plugins_enabled(config: &Config) -> Metrics {
    let mut out = Metrics::default();
    for block in config.servers.iter().filter(|b| b.prometheus.is_some()) {
        let hosts: Vec<String> = if block.bind.is_empty() {
            vec![format!("dns://:{}", block.port)]
        } else {
            let addrs = block.bind.iter();
            addrs
                .map(|ip| format!("dns://{}", SocketAddr::new(*ip, block.port)))
                .collect()
        };
        let names = handlers(block);
        for (server, zone) in hosts
            .iter()
            .flat_map(|h| block.zones.iter().map(move |z| (h, z)))
        {
            for name in &names {
                let labels = [server.as_str(), zone.name.as_str(), "", name];
                out.gauge(&metrics::PLUGIN_ENABLED, &labels, 1.0);
            }
        }
    }
    out
}

/// The longest `health { lameduck }` of the configuration (zero without).
pub fn lameduck(config: &Config) -> Duration {
    config
        .servers
        .iter()
        .filter_map(|b| b.health.map(|h| h.lameduck))
        .max()
        .unwrap_or_default()
}

fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `~~~ corefile` example of README.md parses and asks for the endpoints.
    #[test]
    fn readme_examples() {
        let readme = include_str!("README.md");
        let mut rest = readme;
        let mut examples = 0;
        while let Some(start) = rest.find("~~~ corefile\n") {
            let body = &rest[start + "~~~ corefile\n".len()..];
            let end = body.find("~~~").expect("example is closed");
            let config = crate::config::parse_corefile(&body[..end], "README.md".as_ref())
                .unwrap_or_else(|e| panic!("README example fails: {e}"));
            assert!(config.servers.iter().any(|b| b.prometheus.is_some()));
            assert_eq!(lameduck(&config), Duration::from_secs(5));
            examples += 1;
            rest = &body[end..];
        }
        assert_eq!(examples, 1);
    }

    #[test]
    fn ready_needs_every_shard() {
        let shared = Shared::new(2, "io_uring", &HttpOptions::default());
        assert!(!shared.ready());
        for shard in &shared.shards {
            shard.lock().unwrap().serving = true;
        }
        assert!(shared.ready());
        shared.lameduck.store(true, Ordering::Relaxed);
        assert!(!shared.ready());
    }
}
