//! The kube-dns ConfigMap as node-cache reads it: a directory where the ConfigMap is
//! mounted (one file per key), of which `stubDomains` (JSON object: domain → list of
//! servers) and `upstreamNameservers` (JSON list of at most 3 servers) matter.
//!
//! Only top-level files count and dot-files are skipped (the kubelet's `..data`
//! symlink farm). Servers must be IP addresses (`IP`, `IP:PORT`, `[IPv6]:PORT`): an
//! FQDN is rejected with an error instead of crashing (kubernetes/dns#539). The result
//! is sorted, so the generated Corefile does not depend on map order.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::resolv::read_bounded;

/// Largest ConfigMap value we read (the API server caps a whole ConfigMap at 1 MiB).
pub const CONFIGMAP_FILE_BYTES_MAX: u64 = 1 << 20;
/// Files of the ConfigMap directory we look at; a kube-dns ConfigMap has a handful.
pub const CONFIGMAP_FILES_MAX: usize = 64;
/// Stub domains we accept: each becomes a server block with its own cache.
pub const STUB_DOMAINS_MAX: usize = 256;
/// Servers per stub domain (the `forward` bound).
pub const STUB_SERVERS_MAX: usize = 15;
/// `upstreamNameservers` entries (kube-dns: at most 3).
pub const UPSTREAM_NAMESERVERS_MAX: usize = 3;

/// The parts of the kube-dns ConfigMap that shape the generated Corefile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeDnsConfig {
    /// Domain (lower case, no trailing dot) → its servers, sorted by domain.
    pub stub_domains: BTreeMap<String, Vec<SocketAddr>>,
    /// Replaces /etc/resolv.conf as the upstream of `__PILLAR__UPSTREAM__SERVERS__`.
    pub upstream_nameservers: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error("cannot read the kube-dns ConfigMap at {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kube-dns ConfigMap {path} has more than {CONFIGMAP_FILES_MAX} files")]
    TooManyFiles { path: PathBuf },
    #[error("kube-dns ConfigMap key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Reads the top-level, non-dot files of `dir` as key → content, sorted by key. A
/// missing directory is an empty ConfigMap (the volume is optional upstream).
pub fn read_configmap_dir(dir: &Path) -> Result<BTreeMap<String, String>, ConfigMapError> {
    let read_err = |path: &Path, source| ConfigMapError::Read {
        path: path.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(read_err(dir, err)),
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|err| read_err(dir, err))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        // Follows symlinks: ConfigMap keys are links into `..data/`.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if files.len() == CONFIGMAP_FILES_MAX {
            return Err(ConfigMapError::TooManyFiles {
                path: dir.to_path_buf(),
            });
        }
        let text = read_bounded(&path, CONFIGMAP_FILE_BYTES_MAX).map_err(|e| read_err(&path, e))?;
        files.insert(name, text);
    }
    Ok(files)
}

/// Parses and validates the ConfigMap keys we use; other keys are ignored.
pub fn parse_kube_dns(files: &BTreeMap<String, String>) -> Result<KubeDnsConfig, ConfigMapError> {
    let mut config = KubeDnsConfig::default();
    if let Some(text) = files.get("stubDomains").filter(|t| !t.trim().is_empty()) {
        config.stub_domains = parse_stub_domains(text)?;
    }
    if let Some(text) = files
        .get("upstreamNameservers")
        .filter(|t| !t.trim().is_empty())
    {
        config.upstream_nameservers = parse_upstream_nameservers(text)?;
    }
    Ok(config)
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigMapError {
    ConfigMapError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn parse_stub_domains(text: &str) -> Result<BTreeMap<String, Vec<SocketAddr>>, ConfigMapError> {
    const KEY: &str = "stubDomains";
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(KEY, format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid(KEY, "must be a JSON object of domain to server list"))?;
    if object.len() > STUB_DOMAINS_MAX {
        return Err(invalid(
            KEY,
            format!("more than {STUB_DOMAINS_MAX} stub domains"),
        ));
    }
    let mut stubs = BTreeMap::new();
    for (domain, servers) in object {
        let name = stub_domain_name(domain).map_err(|reason| invalid(KEY, reason))?;
        let servers = server_list(servers, STUB_SERVERS_MAX)
            .map_err(|reason| invalid(KEY, format!("domain {domain:?}: {reason}")))?;
        if stubs.insert(name, servers).is_some() {
            return Err(invalid(KEY, format!("domain {domain:?} is listed twice")));
        }
    }
    Ok(stubs)
}

fn parse_upstream_nameservers(text: &str) -> Result<Vec<SocketAddr>, ConfigMapError> {
    const KEY: &str = "upstreamNameservers";
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(KEY, format!("invalid JSON: {e}")))?;
    server_list(&value, UPSTREAM_NAMESERVERS_MAX).map_err(|reason| invalid(KEY, reason))
}

/// A JSON list of 1..=`max` servers.
fn server_list(value: &serde_json::Value, max: usize) -> Result<Vec<SocketAddr>, String> {
    let list = value.as_array().ok_or("must be a JSON list of servers")?;
    if list.is_empty() {
        return Err("the server list is empty".into());
    }
    if list.len() > max {
        return Err(format!("more than {max} servers"));
    }
    list.iter()
        .map(|item| {
            let text = item
                .as_str()
                .ok_or_else(|| format!("server {item} is not a string"))?;
            parse_server(text)
        })
        .collect()
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT` (port default 53, not 0).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let addr = if let Ok(ip) = text.parse::<IpAddr>() {
        Some(SocketAddr::new(ip, 53))
    } else {
        text.parse::<SocketAddr>().ok()
    };
    match addr {
        Some(addr) if addr.port() != 0 => Ok(addr),
        Some(_) => Err(format!("server {text:?}: port 0")),
        None => Err(format!(
            "server {text:?} is not IP, IP:PORT or [IPv6]:PORT (host names are not supported)"
        )),
    }
}

/// A stub domain: DNS labels of letters, digits, '-' and '_', lower-cased, without
/// the trailing dot; not the root.
fn stub_domain_name(domain: &str) -> Result<String, String> {
    let name = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    let bad = |why: &str| {
        Err(format!(
            "domain {domain:?} is not a valid domain name: {why}"
        ))
    };
    if name.is_empty() {
        return bad("empty (the root cannot be a stub domain)");
    }
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("a label is empty or longer than 63 characters");
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !label.chars().all(ok) || label.starts_with('-') || label.ends_with('-') {
            return bad("labels are letters, digits, '-' and '_'");
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stub_domains_and_upstreams_sorted() {
        let cm = parse_kube_dns(&files(&[
            (
                "stubDomains",
                r#"{"Zeta.example.": ["10.0.0.2:5353"], "acme.local": ["1.2.3.4", "[fd00::1]:54"]}"#,
            ),
            ("upstreamNameservers", r#"["8.8.8.8", "fd00::53"]"#),
            ("federations", "whatever"),
        ]))
        .unwrap();
        let domains: Vec<_> = cm.stub_domains.keys().cloned().collect();
        assert_eq!(domains, ["acme.local", "zeta.example"]);
        assert_eq!(
            cm.stub_domains["acme.local"],
            vec![
                "1.2.3.4:53".parse().unwrap(),
                "[fd00::1]:54".parse().unwrap()
            ]
        );
        assert_eq!(cm.upstream_nameservers.len(), 2);
    }

    #[test]
    fn rejects_bad_content() {
        let fails = [
            ("stubDomains", "{not json"),
            ("stubDomains", r#"["a"]"#),
            ("stubDomains", r#"{"acme.local": ["ns.acme.local"]}"#),
            ("stubDomains", r#"{"acme.local": []}"#),
            ("stubDomains", r#"{"acme.local": [53]}"#),
            ("stubDomains", r#"{"bad domain": ["1.2.3.4"]}"#),
            ("stubDomains", r#"{".": ["1.2.3.4"]}"#),
            ("stubDomains", r#"{"a.local": ["1.2.3.4:0"]}"#),
            (
                "upstreamNameservers",
                r#"["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]"#,
            ),
            ("upstreamNameservers", r#"["dns.google"]"#),
            ("upstreamNameservers", r#""1.1.1.1""#),
        ];
        for (key, value) in fails {
            let err = parse_kube_dns(&files(&[(key, value)]));
            assert!(err.is_err(), "{key}={value} accepted");
        }
    }

    #[test]
    fn fqdn_server_names_the_problem() {
        let err = parse_kube_dns(&files(&[(
            "stubDomains",
            r#"{"acme.local": ["ns.acme.local"]}"#,
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ns.acme.local") && err.contains("host names"),
            "{err}"
        );
    }

    #[test]
    fn directory_skips_dot_files_and_subdirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        std::fs::write(dir.path().join("..data/stubDomains"), "{}").unwrap();
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        std::fs::write(dir.path().join("upstreamNameservers"), r#"["1.1.1.1"]"#).unwrap();
        let files = read_configmap_dir(dir.path()).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["upstreamNameservers"]);
        assert!(read_configmap_dir(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
