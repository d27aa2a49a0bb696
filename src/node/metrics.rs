//! node-cache's setup metric, `coredns_nodecache_setup_errors_total{errortype}`, on
//! its own HTTP listener (`-metrics-listen-address`, default 0.0.0.0:9353, path
//! `/metrics`). Every error type is present at 0 from the start, so alerts on
//! `increase()` work from the first scrape.
//!
//! Control plane only (a handful of increments per sync interval), counted through
//! the `metrics` facade into a recorder of its own; nothing here is on the query
//! path.

use std::net::SocketAddr;
use std::sync::Arc;

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

/// Binds `addr` and serves `/metrics` with the setup errors for the life of the
/// returned listener, on the same HTTP stack as the `prometheus` directive.
pub fn serve(addr: SocketAddr, errors: Arc<SetupErrors>) -> std::io::Result<http::Listener> {
    http::serve_metrics(addr, Box::new(move || errors.render()))
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

    #[test]
    fn serves_metrics_over_http() {
        use std::io::{Read, Write};
        let errors = Arc::new(SetupErrors::default());
        errors.count(SetupError::Iptables);
        let listener = serve("127.0.0.1:0".parse().unwrap(), errors).unwrap();
        let mut stream = std::net::TcpStream::connect(listener.addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("{errortype=\"iptables\"} 1\n"), "{reply}");
    }
}
