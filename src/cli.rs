//! Command line: every k8s-dns-node-cache flag, Go style (`-flag value`,
//! `-flag=value`, bare `-flag` or `-flag=false` for booleans), and our own
//! double-dash options, normalised and parsed with clap into [`Cli`]. An unknown flag
//! or a bad value is an error naming the flag.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Parser};

pub use crate::telemetry::tls::{ClientAuth, TlsVersion};

/// The Corefile `make run` serves when no `-conf` is given.
pub const DEFAULT_COREFILE: &str = include_str!("../ci/default.Corefile");
/// node-cache's default `-conf` / `-corefile`.
pub const DEFAULT_CONF_PATH: &str = "/etc/Corefile";
/// node-cache's default `-basecorefile`.
pub const DEFAULT_BASECOREFILE_PATH: &str = "/etc/coredns/Corefile.base";
/// node-cache's default `-kubednscm`, used when it exists.
pub const DEFAULT_KUBEDNSCM_PATH: &str = "/etc/kube-dns";

const AFTER_HELP: &str = "\
Modes:
  no -conf, -corefile, -basecorefile or -localip: serve the embedded default Corefile
      (127.0.0.1:5353, forwarding to /etc/resolv.conf): what `make run` does.
  -conf FILE without -localip: serve FILE, reloading it when it changes.
  -localip IPS: node-cache mode: generate -conf from -basecorefile and the kube-dns
      ConfigMap, set up the interface and iptables rules, keep them, tear down on exit.
      Cilium LRP mode: -localip 0.0.0.0 -setupinterface=false -setupiptables=false -skipteardown.
Flags take one dash or two; booleans are -flag or -flag=false.";

#[derive(Debug, Parser)]
#[command(
    name = "nodelocaldns",
    version,
    about = "Node-local DNS cache (drop-in for k8s-dns-node-cache)",
    after_help = AFTER_HELP,
    // Go's flag package: a repeated flag takes its last value.
    args_override_self = true
)]
pub struct Cli {
    /// Comma-separated IPs to listen on, put on the interface and capture with the rules (IPv4 and IPv6 may be mixed; 0.0.0.0 = all addresses, Cilium LRP mode).
    #[arg(long, value_name = "IPS", value_parser = parse_local_ips)]
    pub localip: Option<LocalIps>,
    /// Generated Corefile that the server runs [default: /etc/Corefile]; wins over -corefile.
    #[arg(long, value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Alias of -conf (node-cache -corefile).
    #[arg(long, value_name = "FILE")]
    pub corefile: Option<PathBuf>,
    /// Corefile template with __PILLAR__ placeholders [default: /etc/coredns/Corefile.base].
    #[arg(long, value_name = "FILE")]
    pub basecorefile: Option<PathBuf>,
    /// Directory where the kube-dns ConfigMap is mounted [default: /etc/kube-dns if it exists].
    #[arg(long, value_name = "DIR")]
    pub kubednscm: Option<PathBuf>,
    /// Service whose IP (env <NAME>_SERVICE_HOST) replaces __PILLAR__CLUSTER__DNS__.
    #[arg(long, value_name = "NAME", default_value = "kube-dns")]
    pub upstreamsvc: String,
    /// Create and maintain the interface holding the local IPs.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub setupinterface: bool,
    /// Name of the interface.
    #[arg(long, value_name = "NAME", default_value = "nodelocaldns", value_parser = parse_interface_name)]
    pub interfacename: String,
    /// Install and maintain the iptables rules (NOTRACK + ACCEPT, IPv4 and IPv6).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub setupiptables: bool,
    /// How -setupiptables installs the rules: `nftables` (one table, `inet nodelocaldns`,
    /// over netlink: no iptables binary, no xtables lock), `iptables` (node-cache's rules
    /// through the iptables binaries) or `auto` (nftables when kube-proxy or the node's
    /// firewall uses nftables, or no iptables binary is on PATH; logged at start).
    #[arg(long, value_name = "MODE", default_value = "auto", value_enum)]
    pub rules: RulesMode,
    /// Leave the interface and the rules in place on exit.
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub skipteardown: bool,
    /// Period of the interface and rule re-check: seconds (60) or a Go duration (1m30s).
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = parse_interval)]
    pub syncinterval: Duration,
    /// Health port, used in the NOTRACK rules for the liveness probe.
    #[arg(long = "health-port", value_name = "PORT", default_value_t = 8080)]
    pub health_port: u16,
    /// Address of the HTTP /metrics endpoint with coredns_nodecache_setup_errors_total.
    #[arg(long = "metrics-listen-address", value_name = "ADDR", default_value = "0.0.0.0:9353",
          value_parser = parse_listen_address)]
    pub metrics_listen_address: SocketAddr,
    /// Address of the CoreDNS metrics: replaces __PROMETHEUS__ENDPOINT__ in the -basecorefile template (a template with an address of its own keeps it).
    #[arg(long = "prometheus-listen-address", value_name = "ADDR", default_value = ":9253",
          value_parser = parse_listen_text)]
    pub prometheus_listen_address: String,
    /// Serve the metrics (the `prometheus` addresses) over TLS.
    #[arg(long = "tls-enabled", value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub tls_enabled: bool,
    /// PEM certificate chain of the metrics endpoint (with -tls-enabled).
    #[arg(long = "tls-cert-file", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the metrics endpoint (with -tls-enabled).
    #[arg(long = "tls-private-key-file", value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Client certificates: NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert (Go's tls.ClientAuthType).
    #[arg(long = "tls-client-auth-type", value_name = "TYPE", default_value = "NoClientCert",
          value_parser = |s: &str| s.parse::<ClientAuth>())]
    pub tls_client_auth_type: ClientAuth,
    /// PEM CA certificates that verify client certificates (VerifyClientCertIfGiven, RequireAndVerifyClientCert).
    #[arg(long = "tls-client-ca-file", value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Oldest TLS version accepted: TLS12 or TLS13.
    #[arg(long = "tls-min-version", value_name = "VERSION", default_value = "TLS13",
          value_parser = |s: &str| s.parse::<TlsVersion>())]
    pub tls_min_version: TlsVersion,
    /// DNS port, used in the rules and the stub-domain blocks.
    #[arg(long = "dns.port", value_name = "PORT", default_value_t = 53,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub dns_port: u16,
    /// Write the process id to FILE.
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// After regenerating the Corefile, reload through SIGUSR1 (SIGUSR1 always reloads).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub reloadwithsignal: bool,

    /// Link kind of the interface; `dummy` as node-cache, another kind (`bridge`) on kernels without the dummy driver.
    #[arg(long = "interface-kind", value_name = "KIND", default_value = "dummy",
          value_parser = parse_interface_kind)]
    pub interface_kind: String,
    /// How often the template, the ConfigMap and the Corefile are polled for changes.
    #[arg(long = "config-poll-interval", value_name = "DURATION", default_value = "10s",
          value_parser = parse_interval)]
    pub config_poll_interval: Duration,
    /// Longest the teardown (rules, then the interface) may take on exit; with the
    /// stop drain (≤ 1.5 s) and the successor probe it keeps exit within lameduck + 5 s.
    #[arg(long = "teardown-timeout", value_name = "DURATION", default_value = "2s",
          value_parser = parse_interval)]
    pub teardown_timeout: Duration,
    /// Number of shards (one pinned thread each); default: every usable core.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// SO_RCVBUF of each UDP listening socket, in bytes (the kernel caps it at net.core.rmem_max).
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf_bytes: Option<usize>,
    /// SO_SNDBUF of each UDP listening socket, in bytes (the kernel caps it at net.core.wmem_max); default: the kernel's.
    #[arg(long, value_name = "BYTES")]
    pub sndbuf_bytes: Option<usize>,
    /// Datagrams per recvmmsg/sendmmsg call on a listening socket, 1..=32 [default: 32].
    #[arg(long, value_name = "N", value_parser = parse_udp_batch)]
    pub udp_batch: Option<usize>,
    /// After a small batch while datagrams arrive densely, let more gather this long before
    /// the next receive (fewer wake-ups per query, up to this much added latency), 0..=1000; 0 = off.
    #[arg(long, value_name = "USECS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub udp_coalesce_usecs: u32,
    /// While datagrams arrive densely, wait for the next in one blocking epoll_pwait on all
    /// of the shard's UDP sockets instead of parking on io_uring; false keeps every wait on
    /// io_uring.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub udp_hot_wait: bool,
    /// Send a run of three or more equal-length answers of one batch to the same client as
    /// one UDP GSO send (UDP_SEGMENT): the IP stack is crossed once for the group; false
    /// sends each alone.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub udp_gso: bool,
    /// SO_BUSY_POLL of each UDP listening socket, in microseconds (above net.core.busy_read it needs CAP_NET_ADMIN).
    #[arg(long, value_name = "USECS")]
    pub busy_poll_usecs: Option<u32>,
    /// Steer each UDP datagram to the shard pinned to the CPU that received it (SO_ATTACH_REUSEPORT_CBPF).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse_go_bool)]
    pub reuseport_cpu: bool,
    /// I/O engine of the shards: auto (io_uring when a probe at start finds it usable,
    /// else epoll, logged), io_uring (an error where it cannot run), or epoll.
    #[arg(long = "io-engine", value_name = "ENGINE", default_value = "auto",
          value_parser = |s: &str| s.parse::<crate::engine::Choice>())]
    pub io_engine: crate::engine::Choice,
    /// io_uring memory per shard, in bytes (registered memory counts against
    /// RLIMIT_MEMLOCK without CAP_IPC_LOCK); default: from the memory plan, 2 MiB
    /// without a limit.
    #[arg(long, value_name = "BYTES", value_parser = parse_count)]
    pub io_memory_bytes: Option<usize>,
    /// Memory limit to plan within, in bytes; default: the cgroup's (v1
    /// memory.limit_in_bytes, v2 memory.max), or none. The plan sizes the cache, the
    /// pending misses, the TCP clients, the I/O memory and the UDP receive buffers,
    /// and is logged at start.
    #[arg(long = "memory-limit", value_name = "BYTES")]
    pub memory_limit: Option<u64>,
    /// Bytes of every server block's cache together (a cache configured larger is
    /// capped and logged); default: from the memory plan, as configured without a limit.
    #[arg(long = "cache-bytes-max", value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_bytes_max: Option<u64>,
    /// Misses each shard may keep pending (past it: SERVFAIL, counted); default: from
    /// the memory plan, or 4096 without a limit.
    #[arg(long = "misses-pending-max", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub misses_pending_max: Option<u64>,
    /// TCP clients per shard; more are closed at once and counted; default: from the
    /// memory plan, or 1024 without a limit.
    #[arg(long = "tcp-clients-max", value_name = "N", value_parser = parse_count)]
    pub tcp_clients_max: Option<usize>,
    /// Idle time between queries before a TCP client is closed.
    #[arg(long = "tcp-idle-timeout", value_name = "DURATION", default_value = "10s",
          value_parser = parse_interval)]
    pub tcp_idle_timeout: Duration,
    /// Log filter: error, warn, info, debug, trace, or tracing directives
    /// (`nodelocaldns::upstream=debug`); default: RUST_LOG, else info.
    #[arg(long)]
    pub log_level: Option<String>,
}

/// `--rules`: which tool installs node-cache's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesMode {
    /// Decide from the node (see `node::detect`).
    Auto,
    /// One nftables table over netlink.
    Nftables,
    /// The iptables binaries, as node-cache.
    Iptables,
}

/// `-localip`: the addresses in flag order, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIps(pub Vec<IpAddr>);

impl Cli {
    /// The metrics' TLS configuration (`-tls-*`), when `-tls-enabled`.
    pub fn metrics_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, crate::telemetry::tls::TlsError> {
        if !self.tls_enabled {
            return Ok(None);
        }
        let flags = crate::telemetry::tls::TlsFlags {
            cert_file: self.tls_cert_file.clone(),
            private_key_file: self.tls_private_key_file.clone(),
            client_auth: self.tls_client_auth_type,
            client_ca_file: self.tls_client_ca_file.clone(),
            min_version: self.tls_min_version,
        };
        crate::telemetry::tls::server_config(&flags).map(Some)
    }

    /// Parses `args` (program name first), accepting `-flag` for node-cache's flags.
    pub fn parse_from_args(args: impl IntoIterator<Item = String>) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args.into_iter().map(|arg| normalise(&arg)))
    }

    /// The Corefile path chosen by the flags, if any (`-conf` wins).
    pub fn corefile_path(&self) -> Option<&PathBuf> {
        self.conf.as_ref().or(self.corefile.as_ref())
    }

    /// True when none of the flags that choose a Corefile is given: `make run`.
    pub fn embedded_default(&self) -> bool {
        self.corefile_path().is_none() && self.basecorefile.is_none() && self.localip.is_none()
    }

    /// `-conf`, `-corefile` or node-cache's default.
    pub fn conf_path(&self) -> PathBuf {
        self.corefile_path()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONF_PATH))
    }

    /// `-basecorefile` or node-cache's default.
    pub fn basecorefile_path(&self) -> PathBuf {
        self.basecorefile
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BASECOREFILE_PATH))
    }

    /// `-kubednscm`, or /etc/kube-dns when it exists.
    pub fn kubednscm_path(&self) -> Option<PathBuf> {
        self.kubednscm.clone().or_else(|| {
            Path::new(DEFAULT_KUBEDNSCM_PATH)
                .is_dir()
                .then(|| PathBuf::from(DEFAULT_KUBEDNSCM_PATH))
        })
    }
}

/// Go style: `-conf` → `--conf`, `-conf=x` → `--conf=x`. Every single-dash word
/// longer than one letter is a long flag (we have no short flags but `-h`/`-V`), so
/// an unknown one is reported by its whole name.
fn normalise(arg: &str) -> String {
    match arg.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') && rest.len() > 1 => format!("-{arg}"),
        _ => arg.to_string(),
    }
}

/// Go's strconv.ParseBool.
fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true or false)")),
    }
}

fn parse_local_ips(text: &str) -> Result<LocalIps, String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: IpAddr = part
            .parse()
            .map_err(|_| format!("{part:?} is not an IP address"))?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err("no IP address given".into());
    }
    if ips.len() > 1 && ips.iter().any(|ip| ip.is_unspecified()) {
        return Err("0.0.0.0 / :: (listen on all addresses) must be the only local IP".into());
    }
    Ok(LocalIps(ips))
}

fn parse_udp_batch(text: &str) -> Result<usize, String> {
    let max = crate::limits::UDP_BATCH_MAX;
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a batch size from 1 to {max}")),
    }
}

/// Seconds as a plain number (node-cache's `-syncinterval 60`) or a Go duration; > 0.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => crate::config::parse_go_duration(text)?,
    };
    if duration.is_zero() {
        return Err("must be more than 0".into());
    }
    if duration > Duration::from_secs(24 * 3600) {
        return Err("must be at most 24h".into());
    }
    Ok(duration)
}

/// A count of at least 1.
fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or Go's `:PORT` (all IPv4 addresses).
fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full;
    let text = match text.strip_prefix(':') {
        Some(port) => {
            full = format!("0.0.0.0:{port}");
            &full
        }
        None => text,
    };
    text.parse()
        .map_err(|_| format!("{text:?} is not IP:PORT, [IPv6]:PORT or :PORT"))
}

/// A listen address as [`parse_listen_address`] reads it, kept as written (it goes
/// into the Corefile as node-cache writes it).
fn parse_listen_text(text: &str) -> Result<String, String> {
    parse_listen_address(text).map(|_| text.to_string())
}

/// A Linux interface name: 1..=15 bytes, no '/', ':' or white space.
fn parse_interface_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() < 16
        && text != "."
        && text != ".."
        && !text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"
        ))
    }
}

fn parse_interface_kind(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() < 32
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a link kind (e.g. dummy, bridge)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_from_args(
            std::iter::once("nodelocaldns")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn go_and_gnu_styles() {
        assert_eq!(
            parse(&["-conf", "a"]).unwrap().corefile_path().unwrap(),
            &PathBuf::from("a")
        );
        assert_eq!(
            parse(&["-conf=b"]).unwrap().corefile_path().unwrap(),
            &PathBuf::from("b")
        );
        assert_eq!(
            parse(&["--conf", "c"]).unwrap().corefile_path().unwrap(),
            &PathBuf::from("c")
        );
        let both = parse(&["-corefile", "x", "-conf", "y"]).unwrap();
        assert_eq!(both.corefile_path().unwrap(), &PathBuf::from("y"));
        assert_eq!(parse(&["--shards", "2"]).unwrap().shards, Some(2));
        let twice = parse(&["-syncinterval", "5", "-syncinterval=7"]).unwrap();
        assert_eq!(twice.syncinterval, Duration::from_secs(7));
        let tuned = parse(&[
            "--sndbuf-bytes=1048576",
            "--udp-batch",
            "8",
            "--busy-poll-usecs",
            "50",
            "--reuseport-cpu",
        ])
        .unwrap();
        assert_eq!(tuned.sndbuf_bytes, Some(1 << 20));
        assert_eq!(tuned.udp_batch, Some(8));
        assert_eq!(tuned.busy_poll_usecs, Some(50));
        assert!(tuned.reuseport_cpu && !parse(&[]).unwrap().reuseport_cpu);
        assert!(parse(&[]).unwrap().udp_hot_wait);
        assert!(!parse(&["--udp-hot-wait=false"]).unwrap().udp_hot_wait);
        assert!(parse(&[]).unwrap().udp_gso);
        assert!(!parse(&["--udp-gso=false"]).unwrap().udp_gso);
        assert!(parse(&["--udp-gso=maybe"]).is_err());
        let level = parse(&["-log-level", "debug"]).unwrap().log_level;
        assert_eq!(level.as_deref(), Some("debug"));
    }

    #[test]
    fn upstream_daemonset_args() {
        let cli = parse(&[
            "-localip",
            "169.254.20.10,10.96.0.10",
            "-conf",
            "/etc/Corefile",
            "-upstreamsvc",
            "kube-dns-upstream",
            "-health-port=8081",
            "-dns.port",
            "5353",
            "-syncinterval=1",
            "-metrics-listen-address",
            ":9354",
        ])
        .unwrap();
        let ips = cli.localip.as_ref().unwrap();
        assert_eq!(ips.0.len(), 2);
        assert_eq!(cli.upstreamsvc, "kube-dns-upstream");
        assert_eq!(cli.health_port, 8081);
        assert_eq!(cli.dns_port, 5353);
        assert_eq!(cli.syncinterval, Duration::from_secs(1));
        assert_eq!(
            cli.metrics_listen_address,
            "0.0.0.0:9354".parse::<SocketAddr>().unwrap()
        );
        assert!(cli.setupinterface && cli.setupiptables && !cli.skipteardown);
        assert!(!cli.embedded_default());
    }

    #[test]
    fn booleans_go_style() {
        let cli = parse(&[
            "-localip",
            "0.0.0.0",
            "-setupinterface=false",
            "-setupiptables=0",
            "-skipteardown",
            "-reloadwithsignal=true",
        ])
        .unwrap();
        assert!(!cli.setupinterface && !cli.setupiptables);
        assert!(cli.skipteardown && cli.reloadwithsignal);
        // Go does not take a separate value for a boolean either.
        assert!(parse(&["-skipteardown", "false"]).is_err());
        let err = parse(&["-skipteardown=maybe"]).unwrap_err().to_string();
        assert!(err.contains("skipteardown"), "{err}");
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert!(cli.embedded_default());
        assert_eq!(cli.conf_path(), PathBuf::from("/etc/Corefile"));
        assert_eq!(
            cli.basecorefile_path(),
            PathBuf::from("/etc/coredns/Corefile.base")
        );
        assert_eq!(cli.interfacename, "nodelocaldns");
        assert_eq!(cli.interface_kind, "dummy");
        assert_eq!(cli.rules, RulesMode::Auto);
        assert_eq!(
            parse(&["-rules=nftables"]).unwrap().rules,
            RulesMode::Nftables
        );
        assert_eq!(
            parse(&["--rules", "iptables"]).unwrap().rules,
            RulesMode::Iptables
        );
        assert!(parse(&["-rules=nft"]).is_err());
        assert_eq!(cli.syncinterval, Duration::from_secs(60));
        assert_eq!(cli.health_port, 8080);
        assert_eq!(cli.dns_port, 53);
        assert_eq!(cli.upstreamsvc, "kube-dns");
        assert_eq!(
            cli.metrics_listen_address,
            "0.0.0.0:9353".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(cli.prometheus_listen_address, ":9253");
        assert!(!cli.tls_enabled);
        assert_eq!(cli.tls_client_auth_type, ClientAuth::NoClientCert);
        assert_eq!(cli.tls_min_version, TlsVersion::Tls13);
    }

    #[test]
    fn node_cache_1_26_flags() {
        let cli = parse(&[
            "-prometheus-listen-address=127.0.0.1:19253",
            "-tls-enabled",
            "-tls-cert-file",
            "/c.pem",
            "-tls-private-key-file=/k.pem",
            "-tls-client-auth-type",
            "RequireAndVerifyClientCert",
            "-tls-client-ca-file",
            "/ca.pem",
            "-tls-min-version=TLS12",
        ])
        .unwrap();
        assert_eq!(cli.prometheus_listen_address, "127.0.0.1:19253");
        assert!(cli.tls_enabled);
        assert_eq!(cli.tls_cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(cli.tls_private_key_file, Some(PathBuf::from("/k.pem")));
        assert_eq!(
            cli.tls_client_auth_type,
            ClientAuth::RequireAndVerifyClientCert
        );
        assert_eq!(cli.tls_client_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(cli.tls_min_version, TlsVersion::Tls12);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases = [
            (&["-localip", "169.254.20.10,nope"][..], "localip"),
            (&["-localip", "0.0.0.0,10.0.0.1"][..], "localip"),
            (&["-syncinterval", "0"][..], "syncinterval"),
            (&["-syncinterval", "soon"][..], "syncinterval"),
            (&["-health-port", "70000"][..], "health-port"),
            (&["-dns.port", "0"][..], "dns.port"),
            (
                &["-metrics-listen-address", "nowhere"][..],
                "metrics-listen-address",
            ),
            (&["-interfacename", "a/b"][..], "interfacename"),
            (
                &["-interfacename", "much-too-long-name"][..],
                "interfacename",
            ),
            (&["--interface-kind", "a b"][..], "interface-kind"),
            (&["-bogus"][..], "bogus"),
            (&["-shards", "x"][..], "shards"),
            (&["--udp-batch", "0"][..], "udp-batch"),
            (&["--udp-batch", "33"][..], "udp-batch"),
            (&["--tcp-clients-max", "0"][..], "tcp-clients-max"),
            (&["--tcp-idle-timeout", "0s"][..], "tcp-idle-timeout"),
            (
                &["-prometheus-listen-address", "9253"][..],
                "prometheus-listen-address",
            ),
            (
                &["-tls-client-auth-type", "Always"][..],
                "tls-client-auth-type",
            ),
            (&["-tls-min-version", "TLS11"][..], "tls-min-version"),
            (&["-tls-enabled=maybe"][..], "tls-enabled"),
        ];
        for (args, flag) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn dual_stack_and_durations() {
        let cli = parse(&["-localip=169.254.20.10,fd00::10", "-syncinterval", "1m30s"]).unwrap();
        assert_eq!(
            cli.localip.unwrap().0,
            vec![
                "169.254.20.10".parse::<IpAddr>().unwrap(),
                "fd00::10".parse().unwrap()
            ]
        );
        assert_eq!(cli.syncinterval, Duration::from_secs(90));
    }

    #[test]
    fn help_lists_every_flag() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "localip",
            "conf",
            "corefile",
            "basecorefile",
            "kubednscm",
            "upstreamsvc",
            "setupinterface",
            "interfacename",
            "setupiptables",
            "skipteardown",
            "syncinterval",
            "health-port",
            "metrics-listen-address",
            "prometheus-listen-address",
            "tls-enabled",
            "tls-cert-file",
            "tls-private-key-file",
            "tls-client-auth-type",
            "tls-client-ca-file",
            "tls-min-version",
            "dns.port",
            "pidfile",
            "reloadwithsignal",
            "version",
            "interface-kind",
            "config-poll-interval",
            "teardown-timeout",
            "rules",
            "nftables",
            "embedded default",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
    }
}
