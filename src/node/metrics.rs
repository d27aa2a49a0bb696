//! node-cache's setup metric, `coredns_nodecache_setup_errors_total{errortype}`, on
//! its own HTTP listener (`-metrics-listen-address`, default 0.0.0.0:9353, path
//! `/metrics`). Every error type is present at 0 from the start, so alerts on
//! `increase()` work from the first scrape. node-cache has one registry, which this
//! address serves whole: once the server runs, every family of the prometheus
//! addresses is here too (the setup errors among them).
//!
//! Control plane only (a handful of increments per sync interval), counted through
//! the `metrics` facade into a recorder of its own; nothing here is on the query
//! path.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::telemetry::http;

/// The `errortype` label values, in node-cache's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// An iptables command failed.
    Iptables,
    /// An iptables command failed because another process held the xtables lock.
    IptablesLock,
    /// Creating the interface or adding an address failed.
    InterfaceAdd,
    /// Reading the interface or its addresses failed.
    InterfaceCheck,
    /// The kube-dns ConfigMap, the template or the Corefile was invalid.
    ConfigMap,
    /// Installing, checking or deleting the nftables table failed (our label, not
    /// node-cache's: its rules mode has no nftables).
    Nftables,
}

impl SetupError {
    pub const ALL: [SetupError; 6] = [
        SetupError::Iptables,
        SetupError::IptablesLock,
        SetupError::InterfaceAdd,
        SetupError::InterfaceCheck,
        SetupError::ConfigMap,
        SetupError::Nftables,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SetupError::Iptables => "iptables",
            SetupError::IptablesLock => "iptables_lock",
            SetupError::InterfaceAdd => "interface_add",
            SetupError::InterfaceCheck => "interface_check",
            SetupError::ConfigMap => "configmap",
            SetupError::Nftables => "nftables",
        }
    }
}

/// The counters, shared by the sync loop, the config watcher and the listener: a
/// `metrics` recorder of their own (metrics-exporter-prometheus, rendered on demand,
/// no listener of its own), so the exposition is the crate's, not hand-written.
pub struct SetupErrors {
    recorder: PrometheusRecorder,
}

impl Default for SetupErrors {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let errors = SetupErrors { recorder };
        metrics::with_local_recorder(&errors.recorder, || {
            metrics::describe_counter!(SETUP_ERRORS, SETUP_ERRORS_HELP);
            for kind in SetupError::ALL {
                metrics::counter!(SETUP_ERRORS, "errortype" => kind.label()).absolute(0);
            }
        });
        errors
    }
}

impl std::fmt::Debug for SetupErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupErrors")
    }
}

/// node-cache's family name and help text.
const SETUP_ERRORS: &str = "coredns_nodecache_setup_errors_total";
const SETUP_ERRORS_HELP: &str = "The number of errors during periodic network setup for node-cache";

impl SetupErrors {
    pub fn count(&self, kind: SetupError) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!(SETUP_ERRORS, "errortype" => kind.label()).increment(1);
        });
    }

    /// The count of one kind, read from the exposition (tests and diagnostics).
    pub fn get(&self, kind: SetupError) -> u64 {
        let sample = format!("{SETUP_ERRORS}{{errortype=\"{}\"}} ", kind.label());
        self.render()
            .lines()
            .find_map(|line| line.strip_prefix(sample.as_str()))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

/// The whole registry once the server runs (set by `node::run`).
pub type Registry = Arc<OnceLock<crate::telemetry::Exposition>>;

/// Binds `addr` and serves `/metrics` for the life of the returned listener, on the
/// same HTTP stack as the `prometheus` directive: the setup errors until `registry`
/// is set, then the whole registry (which carries them).
pub fn serve(
    addr: SocketAddr,
    errors: Arc<SetupErrors>,
    registry: Registry,
) -> std::io::Result<http::Listener> {
    let render = move || match registry.get() {
        Some(whole) => (whole.0)(),
        None => errors.render(),
    };
    http::serve_metrics(addr, Box::new(render))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_types_present_from_start() {
        let errors = SetupErrors::default();
        errors.count(SetupError::ConfigMap);
        let text = errors.render();
        for kind in SetupError::ALL {
            assert!(text.contains(&format!("errortype=\"{}\"", kind.label())));
        }
        assert!(text.contains("{errortype=\"configmap\"} 1\n"), "{text}");
        assert!(text.contains("{errortype=\"iptables_lock\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE coredns_nodecache_setup_errors_total counter"));
        assert_eq!(errors.get(SetupError::ConfigMap), 1);
        assert_eq!(errors.get(SetupError::Iptables), 0);
    }

    fn get(addr: SocketAddr) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        reply
    }

    #[test]
    fn serves_the_setup_errors_then_the_whole_registry() {
        let errors = Arc::new(SetupErrors::default());
        errors.count(SetupError::Iptables);
        let registry = Registry::default();
        let listener = serve("127.0.0.1:0".parse().unwrap(), errors, registry.clone()).unwrap();
        let reply = get(listener.addr);
        assert!(reply.contains("{errortype=\"iptables\"} 1\n"), "{reply}");
        let whole = || "coredns_panics_total 0\n".to_string();
        let _ = registry.set(crate::telemetry::Exposition(Arc::new(whole)));
        let reply = get(listener.addr);
        assert!(
            reply.ends_with("\r\n\r\ncoredns_panics_total 0\n"),
            "{reply}"
        );
    }
}
