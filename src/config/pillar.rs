//! node-cache's Corefile generation: the template (`-basecorefile`) with its
//! `__PILLAR__` placeholders filled in, plus one server block per stub domain of the
//! kube-dns ConfigMap. The text produced is what node-cache writes to `-conf`.
//!
//! - `__PILLAR__UPSTREAM__SERVERS__`: the ConfigMap's `upstreamNameservers`, or
//!   `/etc/resolv.conf`; with ConfigMap upstreams a `force_tcp` in the option block of
//!   that `forward` is dropped (custom upstreams are reached over UDP, as upstream).
//! - `__PILLAR__CLUSTER__DNS__`: the upstream service IP (`<SVC>_SERVICE_HOST`).
//! - `__PILLAR__LOCAL__DNS__`: the local IPs, space-separated.
//! - `__PILLAR__DNS__SERVER__`: replaced by nothing.
//! - `__PILLAR__DNS__DOMAIN__` is left alone (the operator substitutes it).
//! - `__PROMETHEUS__ENDPOINT__`: `-prometheus-listen-address` (node-cache 1.26:
//!   the template's `prometheus __PROMETHEUS__ENDPOINT__` listens there; a template
//!   without the placeholder keeps its own address).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::configmap::KubeDnsConfig;

pub const UPSTREAM_SERVERS: &str = "__PILLAR__UPSTREAM__SERVERS__";
pub const CLUSTER_DNS: &str = "__PILLAR__CLUSTER__DNS__";
pub const LOCAL_DNS: &str = "__PILLAR__LOCAL__DNS__";
pub const DNS_SERVER: &str = "__PILLAR__DNS__SERVER__";
pub const PROMETHEUS_ENDPOINT: &str = "__PROMETHEUS__ENDPOINT__";
/// Upstream servers when the ConfigMap names none.
pub const DEFAULT_UPSTREAM: &str = "/etc/resolv.conf";
/// `cache TTL` of a generated stub-domain block (node-cache's value).
pub const STUB_CACHE_TTL_SECS: u32 = 30;

/// What the placeholders are replaced with.
#[derive(Debug, Clone)]
pub struct PillarValues<'a> {
    /// `-localip`, in flag order.
    pub local_ips: &'a [IpAddr],
    /// The upstream service's IP from the environment, if set.
    pub cluster_dns: Option<&'a str>,
    /// Service environment variable read for `cluster_dns`, named in errors.
    pub cluster_dns_var: &'a str,
    /// `-dns.port`, the port of the stub-domain blocks.
    pub dns_port: u16,
    pub kube_dns: &'a KubeDnsConfig,
    /// `-prometheus-listen-address`, as given (`:9253` by default).
    pub prometheus_endpoint: &'a str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PillarError {
    #[error("the template uses {CLUSTER_DNS} but ${var} is not set (is -upstreamsvc right?)")]
    MissingClusterDns { var: String },
    #[error("${var}={value:?} is not an IP address")]
    BadClusterDns { var: String, value: String },
}

/// The Corefile text for `template` and `values`.
pub fn render_corefile(template: &str, values: &PillarValues<'_>) -> Result<String, PillarError> {
    let mut text = if values.kube_dns.upstream_nameservers.is_empty() {
        template.to_string()
    } else {
        drop_upstream_force_tcp(template)
    };
    if text.contains(CLUSTER_DNS) {
        let var = values.cluster_dns_var.to_string();
        let value = values
            .cluster_dns
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| PillarError::MissingClusterDns { var: var.clone() })?;
        if value.parse::<IpAddr>().is_err() {
            return Err(PillarError::BadClusterDns {
                var,
                value: value.to_string(),
            });
        }
        text = text.replace(CLUSTER_DNS, value);
    }
    let upstreams = if values.kube_dns.upstream_nameservers.is_empty() {
        DEFAULT_UPSTREAM.to_string()
    } else {
        join_servers(&values.kube_dns.upstream_nameservers)
    };
    let local = join_ips(values.local_ips);
    text = text
        .replace(UPSTREAM_SERVERS, &upstreams)
        .replace(LOCAL_DNS, &local)
        .replace(DNS_SERVER, "")
        .replace(PROMETHEUS_ENDPOINT, values.prometheus_endpoint);
    for (domain, servers) in &values.kube_dns.stub_domains {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = write!(
            text,
            "{domain}:{port} {{\n    errors\n    cache {ttl}\n    bind {local}\n    forward . {servers}\n}}\n",
            port = values.dns_port,
            ttl = STUB_CACHE_TTL_SECS,
            servers = join_servers(servers),
        );
    }
    Ok(text)
}

/// Environment variable holding a service's IP: `kube-dns-upstream` →
/// `KUBE_DNS_UPSTREAM_SERVICE_HOST`.
pub fn service_host_var(service: &str) -> String {
    format!(
        "{}_SERVICE_HOST",
        service.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `IP:PORT` / `[IPv6]:PORT`, space-separated.
fn join_servers(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Removes `force_tcp` lines from the option block that follows each
/// `__PILLAR__UPSTREAM__SERVERS__` (dropping the braces when nothing is left).
fn drop_upstream_force_tcp(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find(UPSTREAM_SERVERS) {
        let after = at + UPSTREAM_SERVERS.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        let gap = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let Some(body_and_more) = rest[gap..].strip_prefix('{') else {
            continue;
        };
        let Some(close) = body_and_more.find('}') else {
            continue;
        };
        let body = &body_and_more[..close];
        let kept: Vec<&str> = body
            .lines()
            .filter(|line| line.trim() != "force_tcp")
            .collect();
        if kept.iter().all(|line| line.trim().is_empty()) {
            // `forward . SERVERS {\n force_tcp\n}` → `forward . SERVERS`
        } else {
            out.push_str(&rest[..gap]);
            out.push('{');
            out.push_str(&kept.join("\n"));
            out.push_str("\n}");
        }
        rest = &body_and_more[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const TEMPLATE: &str = "cluster.local:53 {
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
        force_tcp
    }
}
.:53 {
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__UPSTREAM__SERVERS__ {
        force_tcp
    }
}
";

    fn values<'a>(ips: &'a [IpAddr], cm: &'a KubeDnsConfig) -> PillarValues<'a> {
        PillarValues {
            local_ips: ips,
            cluster_dns: Some("10.96.0.20"),
            cluster_dns_var: "KUBE_DNS_UPSTREAM_SERVICE_HOST",
            dns_port: 53,
            kube_dns: cm,
            prometheus_endpoint: ":9253",
        }
    }

    #[test]
    fn prometheus_endpoint_from_the_flag() {
        let ips = ["169.254.20.10".parse().unwrap()];
        let cm = KubeDnsConfig::default();
        let template =
            ".:53 {\n    bind __PILLAR__LOCAL__DNS__\n    prometheus __PROMETHEUS__ENDPOINT__\n}\n";
        let text = render_corefile(template, &values(&ips, &cm)).unwrap();
        assert!(text.contains("prometheus :9253\n"), "{text}");
        let moved = PillarValues {
            prometheus_endpoint: "127.0.0.1:19253",
            ..values(&ips, &cm)
        };
        let text = render_corefile(template, &moved).unwrap();
        assert!(text.contains("prometheus 127.0.0.1:19253\n"), "{text}");
        let config =
            crate::config::parse_corefile_with_env(&text, "t".as_ref(), &|_| None).unwrap();
        assert_eq!(
            config.servers[0].prometheus,
            Some("127.0.0.1:19253".parse().unwrap())
        );
        // A template with an address of its own keeps it.
        let own = ".:53 {\n    prometheus :9300\n}\n";
        assert_eq!(render_corefile(own, &moved).unwrap(), own);
    }

    #[test]
    fn placeholders_without_configmap() {
        let ips = [
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ];
        let cm = KubeDnsConfig::default();
        let text = render_corefile(TEMPLATE, &values(&ips, &cm)).unwrap();
        assert!(!text.contains("__PILLAR__"), "{text}");
        assert!(text.contains("bind 169.254.20.10 10.96.0.10 \n"), "{text}");
        assert!(text.contains("forward . 10.96.0.20 {\n        force_tcp"));
        assert!(text.contains("forward . /etc/resolv.conf {\n        force_tcp"));
        crate::config::parse_corefile_with_env(&text, "t".as_ref(), &|_| None).unwrap();
    }

    #[test]
    fn configmap_upstreams_use_udp_and_stubs_are_sorted() {
        let ips = ["169.254.20.10".parse().unwrap()];
        let mut stubs = BTreeMap::new();
        stubs.insert(
            "zeta.example".into(),
            vec!["10.0.0.2:5353".parse().unwrap()],
        );
        stubs.insert("acme.local".into(), vec!["[fd00::1]:53".parse().unwrap()]);
        let cm = KubeDnsConfig {
            stub_domains: stubs,
            upstream_nameservers: vec!["8.8.8.8:53".parse().unwrap()],
        };
        let text = render_corefile(TEMPLATE, &values(&ips, &cm)).unwrap();
        assert!(text.contains("forward . 8.8.8.8:53\n}"), "{text}");
        assert!(
            text.contains("forward . 10.96.0.20 {\n        force_tcp"),
            "{text}"
        );
        let acme = text.find("acme.local:53 {").unwrap();
        let zeta = text.find("zeta.example:53 {").unwrap();
        assert!(acme < zeta);
        assert!(text.ends_with(
            "zeta.example:53 {\n    errors\n    cache 30\n    bind 169.254.20.10\n    forward . 10.0.0.2:5353\n}\n"
        ));
        let config =
            crate::config::parse_corefile_with_env(&text, "t".as_ref(), &|_| None).unwrap();
        assert_eq!(config.servers.len(), 4);
    }

    #[test]
    fn other_options_survive() {
        let template = "forward . __PILLAR__UPSTREAM__SERVERS__ {\n  force_tcp\n  max_fails 3\n}\n";
        let cm = KubeDnsConfig {
            upstream_nameservers: vec!["1.1.1.1:53".parse().unwrap()],
            ..Default::default()
        };
        let text = render_corefile(template, &values(&[], &cm)).unwrap();
        assert_eq!(text, "forward . 1.1.1.1:53 {\n  max_fails 3\n}\n");
    }

    #[test]
    fn cluster_dns_required_only_when_used() {
        let cm = KubeDnsConfig::default();
        let mut v = values(&[], &cm);
        v.cluster_dns = None;
        assert_eq!(
            render_corefile(TEMPLATE, &v),
            Err(PillarError::MissingClusterDns {
                var: "KUBE_DNS_UPSTREAM_SERVICE_HOST".into()
            })
        );
        assert!(render_corefile(". {\n}\n", &v).is_ok());
        v.cluster_dns = Some("kube-dns.svc");
        assert!(matches!(
            render_corefile(TEMPLATE, &v),
            Err(PillarError::BadClusterDns { .. })
        ));
    }

    #[test]
    fn service_variable_name() {
        assert_eq!(
            service_host_var("kube-dns-upstream"),
            "KUBE_DNS_UPSTREAM_SERVICE_HOST"
        );
        assert_eq!(service_host_var("kube-dns"), "KUBE_DNS_SERVICE_HOST");
    }
}
