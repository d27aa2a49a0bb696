//! The metric families we export (CoreDNS names, labels and buckets, plus our
//! `nodelocaldns_*` extras), a label-keyed set of samples that snapshots are built
//! into and merged by adding, and the Prometheus text exposition of that set.

use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: name, help text, type, label names and (histograms) bucket bounds.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub buckets: &'static [f64],
}

/// CoreDNS `plugin.TimeBuckets`: 0.25 ms × 2^k, k = 0..15.
pub const TIME_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];
/// CoreDNS `plugin.SlimTimeBuckets` (health request duration).
pub const SLIM_TIME_BUCKETS: [f64; 5] = [0.00025, 0.0025, 0.025, 0.25, 2.5];
/// CoreDNS request/response size buckets.
pub const SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
];

macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, [$($label:literal),*], $help:literal) => {
        family!($id, $name, $kind, [$($label),*], &[], $help);
    };
    ($id:ident, $name:literal, $kind:ident, [$($label:literal),*], $buckets:expr, $help:literal) => {
        pub static $id: Family = Family {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            labels: &[$($label),*],
            buckets: $buckets,
        };
    };
}

family!(
    DNS_REQUESTS,
    "coredns_dns_requests_total",
    Counter,
    ["server", "zone", "view", "proto", "family", "type"],
    "Counter of DNS requests made per zone, protocol and family."
);
family!(
    DNS_RESPONSES,
    "coredns_dns_responses_total",
    Counter,
    ["server", "zone", "view", "rcode", "plugin"],
    "Counter of response status codes."
);
family!(
    DNS_DURATION,
    "coredns_dns_request_duration_seconds",
    Histogram,
    ["server", "zone", "view"],
    &TIME_BUCKETS,
    "Histogram of the time (in seconds) each request took per zone."
);
family!(
    DNS_REQUEST_SIZE,
    "coredns_dns_request_size_bytes",
    Histogram,
    ["server", "zone", "view", "proto"],
    &SIZE_BUCKETS,
    "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol."
);
family!(
    DNS_RESPONSE_SIZE,
    "coredns_dns_response_size_bytes",
    Histogram,
    ["server", "zone", "view", "proto"],
    &SIZE_BUCKETS,
    "Size of the returned response in bytes."
);
family!(
    DNS_DO_REQUESTS,
    "coredns_dns_do_requests_total",
    Counter,
    ["server", "zone", "view"],
    "Counter of DNS requests with DO bit set per zone."
);

family!(
    CACHE_ENTRIES,
    "coredns_cache_entries",
    Gauge,
    ["server", "type", "zones", "view"],
    "The number of elements in the cache."
);
family!(
    CACHE_REQUESTS,
    "coredns_cache_requests_total",
    Counter,
    ["server", "zones", "view"],
    "The count of cache requests."
);
family!(
    CACHE_HITS,
    "coredns_cache_hits_total",
    Counter,
    ["server", "type", "zones", "view"],
    "The count of cache hits."
);
family!(
    CACHE_MISSES,
    "coredns_cache_misses_total",
    Counter,
    ["server", "zones", "view"],
    "The count of cache misses. Deprecated, derive misses from cache hits/requests counters."
);
family!(
    CACHE_PREFETCH,
    "coredns_cache_prefetch_total",
    Counter,
    ["server", "zones", "view"],
    "The number of times the cache has prefetched a cached item."
);
family!(
    CACHE_DROPS,
    "coredns_cache_drops_total",
    Counter,
    ["server", "zones", "view"],
    "The number responses that are not cached, because the reply is malformed."
);
family!(
    CACHE_SERVED_STALE,
    "coredns_cache_served_stale_total",
    Counter,
    ["server", "zones", "view"],
    "The number of requests served from stale cache entries."
);
family!(
    CACHE_EVICTIONS,
    "coredns_cache_evictions_total",
    Counter,
    ["server", "type", "zones", "view"],
    "The count of cache evictions."
);

family!(
    PROXY_DURATION,
    "coredns_proxy_request_duration_seconds",
    Histogram,
    ["proxy_name", "to", "rcode"],
    &TIME_BUCKETS,
    "Histogram of the time each request took."
);
family!(
    PROXY_HEALTHCHECK_FAILURES,
    "coredns_proxy_healthcheck_failures_total",
    Counter,
    ["proxy_name", "to"],
    "Counter of the number of failed healthchecks."
);
family!(
    PROXY_CONN_CACHE_HITS,
    "coredns_proxy_conn_cache_hits_total",
    Counter,
    ["proxy_name", "to", "proto"],
    "Counter of connection cache hits per upstream and protocol."
);
family!(
    PROXY_CONN_CACHE_MISSES,
    "coredns_proxy_conn_cache_misses_total",
    Counter,
    ["proxy_name", "to", "proto"],
    "Counter of connection cache misses per upstream and protocol."
);
family!(
    FORWARD_HEALTHCHECK_BROKEN,
    "coredns_forward_healthcheck_broken_total",
    Counter,
    [],
    "Counter of the number of complete failures of the healthchecks."
);
family!(
    FORWARD_MAX_CONCURRENT_REJECTS,
    "coredns_forward_max_concurrent_rejects_total",
    Counter,
    [],
    "Counter of the number of queries rejected because the concurrent queries were at maximum."
);

family!(
    RELOAD_FAILED,
    "coredns_reload_failed_total",
    Counter,
    [],
    "Counter of the number of failed reload attempts."
);
family!(
    BUILD_INFO,
    "coredns_build_info",
    Gauge,
    ["version", "revision", "goversion"],
    "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built."
);
family!(
    PLUGIN_ENABLED,
    "coredns_plugin_enabled",
    Gauge,
    ["server", "zone", "view", "name"],
    "A metric that indicates whether a plugin is enabled on per server and zone basis."
);
family!(
    ENGINE_INFO,
    "nodelocaldns_engine_info",
    Gauge,
    ["engine"],
    "A metric with a constant '1' value labeled by the I/O engine the shards run on."
);
family!(
    PROCESS_CPU,
    "process_cpu_seconds_total",
    Counter,
    [],
    "Total user and system CPU time spent in seconds."
);
family!(
    PROCESS_OPEN_FDS,
    "process_open_fds",
    Gauge,
    [],
    "Number of open file descriptors."
);
family!(
    PROCESS_MAX_FDS,
    "process_max_fds",
    Gauge,
    [],
    "Maximum number of open file descriptors."
);
family!(
    PROCESS_VIRTUAL_MEMORY,
    "process_virtual_memory_bytes",
    Gauge,
    [],
    "Virtual memory size in bytes."
);
family!(
    PROCESS_VIRTUAL_MEMORY_MAX,
    "process_virtual_memory_max_bytes",
    Gauge,
    [],
    "Maximum amount of virtual memory available in bytes."
);
family!(
    PROCESS_RESIDENT_MEMORY,
    "process_resident_memory_bytes",
    Gauge,
    [],
    "Resident memory size in bytes."
);
family!(
    PROCESS_START_TIME,
    "process_start_time_seconds",
    Gauge,
    [],
    "Start time of the process since unix epoch in seconds."
);
family!(
    PROCESS_NETWORK_RECEIVE,
    "process_network_receive_bytes_total",
    Counter,
    [],
    "Number of bytes received by the process over the network."
);
family!(
    PROCESS_NETWORK_TRANSMIT,
    "process_network_transmit_bytes_total",
    Counter,
    [],
    "Number of bytes sent by the process over the network."
);
family!(
    PANICS,
    "coredns_panics_total",
    Counter,
    [],
    "A metrics that counts the number of panics."
);
family!(
    HEALTH_FAILURES,
    "coredns_health_request_failures_total",
    Counter,
    [],
    "The number of times the health check failed."
);
family!(
    HEALTH_DURATION,
    "coredns_health_request_duration_seconds",
    Histogram,
    [],
    &SLIM_TIME_BUCKETS,
    "Histogram of the time (in seconds) each request took."
);

family!(
    SHARD_QUERIES,
    "nodelocaldns_shard_queries_total",
    Counter,
    ["shard"],
    "Packets received by each shard (UDP datagrams and TCP messages)."
);
family!(
    SHARD_CACHE_ENTRIES,
    "nodelocaldns_shard_cache_entries",
    Gauge,
    ["shard", "type"],
    "Entries in each shard's caches, copies of other shards' entries included (type success, or denial which includes cached SERVFAIL)."
);
family!(
    SHARD_CACHE_BYTES,
    "nodelocaldns_shard_cache_bytes",
    Gauge,
    ["shard"],
    "Bytes accounted to entries in each shard's caches."
);
family!(
    UPSTREAM_CONNECTIONS,
    "nodelocaldns_upstream_connections_open",
    Gauge,
    ["to", "proto"],
    "Open connections to each upstream, summed over shards."
);
family!(
    UPSTREAM_INFLIGHT,
    "nodelocaldns_upstream_queries_inflight",
    Gauge,
    ["to"],
    "Queries waiting for an answer from each upstream, summed over shards."
);
family!(
    FORWARD_ATTEMPT_FAILURES,
    "nodelocaldns_forward_attempt_failures_total",
    Counter,
    ["to", "reason"],
    "Upstream attempts that failed (reason timeout: no answer within read_timeout; error: \
     refused, reset, closed or a wrong answer); the query moves on to another attempt \
     while max_connect_attempts and its deadline allow."
);
family!(
    FORWARD_CONNECT_ATTEMPTS_EXCEEDED,
    "nodelocaldns_forward_connect_attempts_exceeded_total",
    Counter,
    [],
    "Queries answered SERVFAIL because they used up forward's max_connect_attempts."
);
family!(
    DROPPED_PACKETS,
    "nodelocaldns_dropped_packets_total",
    Counter,
    ["reason"],
    "Queries or answers dropped without a reply, by reason."
);
family!(
    COALESCED,
    "nodelocaldns_coalesced_queries_total",
    Counter,
    [],
    "Cache misses that joined an upstream query already in flight for the same key."
);
family!(
    DNS64_TRANSLATED,
    "coredns_dns64_requests_translated_total",
    Counter,
    ["server"],
    "Counter of DNS requests translated by dns64."
);
family!(
    TEMPLATE_MATCHES,
    "coredns_template_matches_total",
    Counter,
    ["server", "zone", "view", "class", "type"],
    "Counter of template regex matches."
);
family!(
    TEMPLATE_FAILURES,
    "coredns_template_template_failures_total",
    Counter,
    ["server", "zone", "view", "class", "type", "section", "template"],
    "Counter of go template failures."
);
family!(
    TEMPLATE_RR_FAILURES,
    "coredns_template_rr_failures_total",
    Counter,
    ["server", "zone", "view", "class", "type", "section", "template"],
    "Counter of mis-templated RRs."
);
family!(
    HOSTS_ENTRIES,
    "coredns_hosts_entries",
    Gauge,
    ["hostsfile"],
    "The combined number of entries in hosts and Corefile."
);
family!(
    HOSTS_RELOAD_TIMESTAMP,
    "coredns_hosts_reload_timestamp_seconds",
    Gauge,
    [],
    "The timestamp of the last reload of hosts file."
);
family!(
    HOSTS_READ_FAILURES,
    "nodelocaldns_hosts_read_failures_total",
    Counter,
    [],
    "Reads of a hosts file that failed (the last good entries stay in use)."
);
family!(
    ERRORS_SUMMARISED,
    "nodelocaldns_errors_summarised_total",
    Counter,
    [],
    "Lines of the errors plugin counted into a periodic summary instead of written (storm guard)."
);
family!(
    SHARDS_SERVING,
    "nodelocaldns_shards_serving",
    Gauge,
    [],
    "Shards whose listeners run."
);

/// Every family, in exposition order.
pub static FAMILIES: &[&Family] = &[
    &DNS_REQUESTS,
    &DNS_RESPONSES,
    &DNS_DURATION,
    &DNS_REQUEST_SIZE,
    &DNS_RESPONSE_SIZE,
    &DNS_DO_REQUESTS,
    &CACHE_ENTRIES,
    &CACHE_REQUESTS,
    &CACHE_HITS,
    &CACHE_MISSES,
    &CACHE_PREFETCH,
    &CACHE_DROPS,
    &CACHE_SERVED_STALE,
    &CACHE_EVICTIONS,
    &PROXY_DURATION,
    &PROXY_HEALTHCHECK_FAILURES,
    &PROXY_CONN_CACHE_HITS,
    &PROXY_CONN_CACHE_MISSES,
    &FORWARD_HEALTHCHECK_BROKEN,
    &FORWARD_MAX_CONCURRENT_REJECTS,
    &RELOAD_FAILED,
    &BUILD_INFO,
    &PLUGIN_ENABLED,
    &PANICS,
    &HEALTH_FAILURES,
    &HEALTH_DURATION,
    &SHARD_QUERIES,
    &SHARD_CACHE_ENTRIES,
    &SHARD_CACHE_BYTES,
    &UPSTREAM_CONNECTIONS,
    &UPSTREAM_INFLIGHT,
    &FORWARD_ATTEMPT_FAILURES,
    &FORWARD_CONNECT_ATTEMPTS_EXCEEDED,
    &DROPPED_PACKETS,
    &COALESCED,
    &ERRORS_SUMMARISED,
    &DNS64_TRANSLATED,
    &TEMPLATE_MATCHES,
    &TEMPLATE_FAILURES,
    &TEMPLATE_RR_FAILURES,
    &HOSTS_ENTRIES,
    &HOSTS_RELOAD_TIMESTAMP,
    &HOSTS_READ_FAILURES,
    &SHARDS_SERVING,
    &ENGINE_INFO,
    &PROCESS_CPU,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
    &PROCESS_VIRTUAL_MEMORY,
    &PROCESS_VIRTUAL_MEMORY_MAX,
    &PROCESS_RESIDENT_MEMORY,
    &PROCESS_START_TIME,
    &PROCESS_NETWORK_RECEIVE,
    &PROCESS_NETWORK_TRANSMIT,
];

/// One sample's value; histograms keep per-bucket (not cumulative) counts, the
/// last one for +Inf.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Count(u64),
    Gauge(f64),
    Histogram { counts: Vec<u64>, sum: f64 },
}

impl Value {
    fn add(&mut self, other: &Value) {
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => *a += b,
            (Value::Gauge(a), Value::Gauge(b)) => *a += b,
            (Value::Histogram { counts, sum }, Value::Histogram { counts: c, sum: s }) => {
                if counts.len() < c.len() {
                    counts.resize(c.len(), 0);
                }
                for (a, b) in counts.iter_mut().zip(c) {
                    *a += b;
                }
                *sum += s;
            }
            _ => {}
        }
    }
}

/// Samples by family name, then by label values (in the family's label order).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: BTreeMap<&'static str, BTreeMap<Vec<String>, Value>>,
}

impl Metrics {
    /// Adds `value` to the sample `labels` of `family` (creating it).
    pub fn add(&mut self, family: &'static Family, labels: &[&str], value: Value) {
        debug_assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
        let samples = self.families.entry(family.name).or_default();
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        match samples.get_mut(&key) {
            Some(existing) => existing.add(&value),
            None => {
                samples.insert(key, value);
            }
        }
    }

    pub fn counter(&mut self, family: &'static Family, labels: &[&str], n: u64) {
        self.add(family, labels, Value::Count(n));
    }

    pub fn gauge(&mut self, family: &'static Family, labels: &[&str], v: f64) {
        self.add(family, labels, Value::Gauge(v));
    }

    pub fn histogram(
        &mut self,
        family: &'static Family,
        labels: &[&str],
        counts: &[u64],
        sum: f64,
    ) {
        let counts = counts.to_vec();
        self.add(family, labels, Value::Histogram { counts, sum });
    }

    /// Adds every sample of `other`; with `counters_only`, gauges are skipped (used
    /// to carry the totals of a replaced shard state, whose gauges are gone).
    pub fn merge(&mut self, other: &Metrics, counters_only: bool) {
        for (name, samples) in &other.families {
            let mine = self.families.entry(name).or_default();
            for (labels, value) in samples {
                if counters_only && matches!(value, Value::Gauge(_)) {
                    continue;
                }
                match mine.get_mut(labels) {
                    Some(existing) => existing.add(value),
                    None => {
                        mine.insert(labels.clone(), value.clone());
                    }
                }
            }
        }
    }

    /// The value of one sample (for tests).
    pub fn get(&self, family: &Family, labels: &[&str]) -> Option<&Value> {
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        self.families.get(family.name)?.get(&key)
    }

    /// The Prometheus text exposition (format 0.0.4) of every family with samples.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        for family in FAMILIES {
            let Some(samples) = self.families.get(family.name) else {
                continue;
            };
            if samples.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            for (labels, value) in samples {
                render_sample(&mut out, family, labels, value);
            }
        }
        out
    }
}

fn render_sample(out: &mut String, family: &Family, labels: &[String], value: &Value) {
    match value {
        Value::Count(n) => {
            let _ = writeln!(
                out,
                "{}{} {n}",
                family.name,
                label_text(family.labels, labels, None)
            );
        }
        Value::Gauge(v) => {
            let _ = writeln!(
                out,
                "{}{} {v}",
                family.name,
                label_text(family.labels, labels, None)
            );
        }
        Value::Histogram { counts, sum } => {
            let mut cumulative = 0u64;
            for (i, bound) in family.buckets.iter().enumerate() {
                cumulative += counts.get(i).copied().unwrap_or(0);
                let le = bound.to_string();
                let text = label_text(family.labels, labels, Some(&le));
                let _ = writeln!(out, "{}_bucket{text} {cumulative}", family.name);
            }
            cumulative += counts.get(family.buckets.len()).copied().unwrap_or(0);
            let text = label_text(family.labels, labels, Some("+Inf"));
            let _ = writeln!(out, "{}_bucket{text} {cumulative}", family.name);
            let text = label_text(family.labels, labels, None);
            let _ = writeln!(out, "{}_sum{text} {sum}", family.name);
            let _ = writeln!(out, "{}_count{text} {cumulative}", family.name);
        }
    }
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut text = String::from("{");
    let pairs = names.iter().copied().zip(values.iter().map(String::as_str));
    for (i, (name, value)) in pairs.chain(le.map(|le| ("le", le))).enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{name}=\"{}\"", escape(value));
    }
    text.push('}');
    text
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_merges() {
        let mut a = Metrics::default();
        a.counter(&PANICS, &[], 2);
        a.histogram(&HEALTH_DURATION, &[], &[1, 0, 0, 0, 0, 1], 3.0);
        let mut b = Metrics::default();
        b.counter(&PANICS, &[], 3);
        b.gauge(&SHARDS_SERVING, &[], 1.0);
        b.histogram(&HEALTH_DURATION, &[], &[0, 1, 0, 0, 0, 0], 0.001);
        a.merge(&b, true);
        assert_eq!(a.get(&PANICS, &[]), Some(&Value::Count(5)));
        assert_eq!(a.get(&SHARDS_SERVING, &[]), None);
        let text = a.render();
        assert!(text.contains("coredns_panics_total 5\n"), "{text}");
        assert!(text.contains("coredns_health_request_duration_seconds_bucket{le=\"0.0025\"} 2\n"));
        assert!(text.contains("coredns_health_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("coredns_health_request_duration_seconds_count 3\n"));
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for family in FAMILIES {
            assert!(seen.insert(family.name), "{}", family.name);
            let counter = family.kind == Kind::Counter;
            assert_eq!(counter, family.name.ends_with("_total"), "{}", family.name);
            assert_eq!(family.kind == Kind::Histogram, !family.buckets.is_empty());
            assert!(
                family.name.starts_with("coredns_")
                    || family.name.starts_with("nodelocaldns_")
                    || family.name.starts_with("process_")
            );
        }
    }

    #[test]
    fn escapes_label_values() {
        let mut m = Metrics::default();
        m.counter(&DROPPED_PACKETS, &["a\"b\\c\nd"], 1);
        assert!(m.render().contains(r#"{reason="a\"b\\c\nd"} 1"#));
    }

    #[test]
    fn dashboard_uses_only_exported_metrics() {
        let dashboard = include_str!("../../deploy/grafana/nodelocaldns.json");
        let mut used = 0;
        for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !(word.starts_with("coredns_") || word.starts_with("nodelocaldns_")) {
                continue;
            }
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word);
            assert!(
                FAMILIES.iter().any(|f| f.name == base || f.name == word),
                "the dashboard uses {word}, which we do not export"
            );
            used += 1;
        }
        assert!(used > 10);
    }
}
