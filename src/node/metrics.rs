//! node-cache's setup metric, `coredns_nodecache_setup_errors_total{errortype}`, on
//! its own HTTP listener (`-metrics-listen-address`, default 0.0.0.0:9353, path
//! `/metrics`). Every error type is present at 0 from the start, so alerts on
//! `increase()` work from the first scrape.
//!
//! Control plane only (a handful of increments per sync interval), so plain atomics;
//! nothing here is on the query path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// The counters, shared by the sync loop, the config watcher and the listener.
#[derive(Debug, Default)]
pub struct SetupErrors {
    counts: [AtomicU64; SetupError::ALL.len()],
}

impl SetupErrors {
    pub fn count(&self, kind: SetupError) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, kind: SetupError) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# HELP coredns_nodecache_setup_errors_total The number of errors during periodic network setup for node-cache\n\
             # TYPE coredns_nodecache_setup_errors_total counter\n",
        );
        for kind in SetupError::ALL {
            text.push_str(&format!(
                "coredns_nodecache_setup_errors_total{{errortype=\"{}\"}} {}\n",
                kind.label(),
                self.get(kind)
            ));
        }
        text
    }
}

/// Time a scraper gets to send its request and read the answer.
const SCRAPE_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head we read.
const REQUEST_BYTES_MAX: usize = 8 * 1024;

/// Binds `addr` and serves `/metrics` on a thread of its own for the life of the
/// process. Scrapes are answered one at a time: there is one scraper.
pub fn serve(addr: SocketAddr, errors: Arc<SetupErrors>) -> std::io::Result<SocketAddr> {
    let listener: TcpListener = crate::telemetry::http::bind_reusable(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("setup-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(err) = answer(stream, &errors) {
                    tracing::debug!(%err, "setup metrics scrape failed");
                }
            }
        })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, errors: &SetupErrors) -> std::io::Result<()> {
    stream.set_read_timeout(Some(SCRAPE_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_BYTES_MAX {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", errors.render()),
        ("GET" | "HEAD", _) => ("404 Not Found", "404 page not found\n".to_string()),
        _ => ("405 Method Not Allowed", "method not allowed\n".to_string()),
    };
    let body = if method == "HEAD" { "" } else { body.as_str() };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
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
        assert!(text.contains("{errortype=\"configmap\"} 1\n"));
        assert!(text.contains("{errortype=\"iptables_lock\"} 0\n"));
    }

    #[test]
    fn serves_metrics_over_http() {
        let errors = Arc::new(SetupErrors::default());
        errors.count(SetupError::Iptables);
        let addr = serve("127.0.0.1:0".parse().unwrap(), errors).unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.contains("{errortype=\"iptables\"} 1\n"), "{reply}");
    }
}
