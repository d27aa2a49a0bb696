//! A simulated Kubernetes node in three network namespaces (the `Netns` guards of
//! `tests/node/harness.rs`, which remove everything on drop, also on failure):
//!
//! ```text
//!  pod  10.244.0.2 ──veth── 10.244.0.1  node  10.0.0.1 ──veth── 10.0.0.2, 10.0.0.3  cluster-dns
//!  resolv.conf: 10.96.0.10            nodelocaldns                knotd cluster.local (kube-dns)
//!                                     kube-proxy DNAT:            knotd acme.local (stub zone)
//!                                     10.96.0.10 (kube-dns),
//!                                     10.96.0.11 (kube-dns-upstream) → 10.0.0.2
//! ```
//!
//! The cache runs with the args and the Corefile template of the committed manifests
//! (`deploy/kubernetes/<mode>/nodelocaldns.yaml`), plus the paths and pace a test
//! needs. The kernel here has no `dummy` driver: `--interface-kind bridge` (a bridge
//! without ports holds local addresses the same way).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::harness::{wait_until, Netns, BIN};

pub const KUBE_DNS: &str = "10.96.0.10";
pub const KUBE_DNS_UPSTREAM: &str = "10.96.0.11";
pub const LOCAL_DNS: &str = "169.254.20.10";
pub const CLUSTER_DNS_POD: &str = "10.0.0.2";
pub const STUB_DNS: &str = "10.0.0.3";
pub const NODE_IP: &str = "10.244.0.1";
pub const POD_IP: &str = "10.244.0.2";
/// The node-local-dns pod's address when it runs on the pod network.
pub const CACHE_POD_IP: &str = "10.244.1.2";
pub const OUR_RULES: &str = "NodeLocal DNS Cache";

/// True when this machine can build the node (root and the tools).
pub fn can_run() -> bool {
    crate::harness::require(&[
        "ip",
        "iptables",
        "iptables-save",
        "knotd",
        "knotc",
        "kdig",
        "getent",
        "conntrack",
    ])
}

/// The DaemonSet's container args and the ConfigMap's Corefile template of a
/// committed variant (`iptables`, `ipvs`, `cilium-lrp`).
pub fn manifest(mode: &str) -> (Vec<String>, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(mode)
        .join("nodelocaldns.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut args = Vec::new();
    let mut template = String::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = Value::deserialize(doc).unwrap();
        match doc["kind"].as_str() {
            Some("DaemonSet") => {
                let containers = &doc["spec"]["template"]["spec"]["containers"];
                args = containers[0]["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
            }
            Some("ConfigMap") => template = doc["data"]["Corefile"].as_str().unwrap().into(),
            _ => {}
        }
    }
    (args, template)
}

/// A knotd with mod-stats and a control socket, so a test can count what reached it.
pub struct Knot {
    conf: PathBuf,
    /// knotd's pid (a child of the namespace it runs in).
    pub pid: u32,
}

impl Knot {
    pub fn start(ns: &mut Netns, tag: &str, ip: &str, zones: &[(&str, &str)]) -> Knot {
        let dir = ns.path(&format!("knot-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = testkit::knot::Conf::new(&dir, &[format!("{ip}@53")])
            .control()
            .stats(testkit::knot::Stats::Protocol);
        for (origin, records) in zones {
            let file = dir.join(format!("{origin}zone"));
            let text = testkit::knot::zone(Some(origin), 300, [60; 4], ip, records);
            std::fs::write(&file, text).unwrap();
            conf = conf.zone(origin, file);
        }
        let conf_path = conf.write();
        let command = ns.command(&["knotd", "-c", conf_path.to_str().unwrap()]);
        let pid = ns.spawn(command);
        let origin = zones[0].0;
        assert!(
            wait_until(Duration::from_secs(5), || ns
                .kdig(&[&format!("@{ip}"), origin, "SOA"])
                .contains("hostmaster")),
            "knotd {tag} on {ip} did not start"
        );
        Knot {
            conf: conf_path,
            pid,
        }
    }

    /// Requests knot received, by protocol (`udp4`, `tcp4`).
    pub fn requests(&self) -> HashMap<String, u64> {
        let out = Command::new("knotc")
            .arg("-c")
            .arg(&self.conf)
            .args(["-t", "3", "stats"])
            .output()
            .expect("knotc stats");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(" = ")?;
                let proto = key.trim().strip_prefix("mod-stats.request-protocol[")?;
                Some((
                    proto.trim_end_matches(']').to_string(),
                    value.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    pub fn udp(&self) -> u64 {
        self.requests().get("udp4").copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.requests().values().sum()
    }
}

/// A headless service with this many endpoints (`sixty.default.svc.cluster.local`):
/// about 1,000 bytes of A records, twice what a client without EDNS takes.
pub const SIXTY_COUNT: usize = 60;
/// Bytes of the one TXT record of `bigtxt.default.svc.cluster.local`: over the
/// 1,232 bytes of an EDNS client's usual size, so it reaches clients over TCP only.
pub const BIG_TXT_BYTES: usize = 6 * 240;

/// The cluster DNS's `cluster.local.` records: two services, a headless one with
/// [`SIXTY_COUNT`] endpoints, an SRV record, a TXT of [`BIG_TXT_BYTES`].
pub fn cluster_records() -> String {
    let mut zone = String::from(
        "kubernetes.default.svc A 10.96.0.1\nweb.default.svc A 10.96.5.5\n\
         _http._tcp.web.default.svc SRV 10 5 80 web.default.svc.cluster.local.\n",
    );
    for i in 1..=SIXTY_COUNT {
        zone.push_str(&format!("sixty.default.svc A 10.96.6.{i}\n"));
    }
    let strings: Vec<String> = (0..BIG_TXT_BYTES / 240)
        .map(|i| format!("\"{}\"", char::from(b'a' + i as u8).to_string().repeat(239)))
        .collect();
    zone.push_str(&format!("bigtxt.default.svc TXT {}\n", strings.join(" ")));
    zone
}

/// The three namespaces, the cluster DNS and the kube-proxy rules.
pub struct Node {
    pub pod: Netns,
    pub node: Netns,
    /// Holds the knotds (killed with the namespace on drop).
    #[allow(dead_code)]
    pub dns: Netns,
    pub cluster: Knot,
    pub stub: Knot,
    /// kube-proxy's rules before the cache ran: `iptables-save -t nat`, or `nft list
    /// table ip kube-proxy`.
    pub nat_before: String,
    /// Options added to the template's `forward` blocks to the cluster DNS (after
    /// `force_tcp`), one per line; none by default.
    pub forward_options: Vec<String>,
    /// Options added to the cluster.local block's `cache { }`; none by default.
    pub cache_options: Vec<String>,
    /// The cache's `RUST_LOG` (`info` by default).
    pub rust_log: &'static str,
}

/// How kube-proxy runs on the simulated node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeProxy {
    /// DNAT rules in iptables' nat table.
    Iptables,
    /// kube-proxy's nftables mode: `table ip kube-proxy` ([`KUBE_PROXY_NFT`]).
    Nftables,
}

/// A kube-proxy-like nftables table: the two Services' ClusterIPs DNATed to the
/// cluster DNS for new connections only (kube-proxy's nftables mode), and filter
/// chains with a drop policy. nftables runs every table's base chains and a drop is
/// final, so the cache's own `accept` cannot let the pod's NOTRACKed DNS through:
/// the node's firewall accepts it (`ct state untracked`), as our README asks of it.
pub const KUBE_PROXY_NFT: &str = "table ip kube-proxy {
    chain nat-prerouting {
        type nat hook prerouting priority -100; policy accept;
        ct state new ip daddr { 10.96.0.10, 10.96.0.11 } meta l4proto { tcp, udp } th dport 53 dnat to 10.0.0.2:53
    }
    chain nat-output {
        type nat hook output priority -100; policy accept;
        ct state new ip daddr { 10.96.0.10, 10.96.0.11 } meta l4proto { tcp, udp } th dport 53 dnat to 10.0.0.2:53
    }
    chain filter-forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct status dnat accept
    }
    chain filter-input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif \"lo\" accept
        ct state untracked accept
    }
}
";

impl Node {
    pub fn build(test: &str) -> Node {
        Node::build_with(test, KubeProxy::Iptables)
    }

    pub fn build_with(test: &str, proxy: KubeProxy) -> Node {
        let pod = Netns::new(&format!("pod{test}"));
        let node = Netns::new(&format!("node{test}"));
        let mut dns = Netns::new(&format!("dns{test}"));
        let tag = format!("{}{}", std::process::id() % 100_000, test.len());
        let (pod_if, dns_if) = (format!("p{tag}"), format!("d{tag}"));
        link(&node, &pod_if, &pod, NODE_IP, POD_IP);
        link(&node, &dns_if, &dns, "10.0.0.1", CLUSTER_DNS_POD);
        dns.run_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{STUB_DNS}/24"),
            "dev",
            "eth0",
        ]);
        pod.run_ok(&["ip", "route", "add", "default", "via", NODE_IP]);
        dns.run_ok(&["ip", "route", "add", "default", "via", "10.0.0.1"]);
        node.run_ok(&["ip", "route", "add", "default", "via", CLUSTER_DNS_POD]);
        node.run_ok(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        match proxy {
            KubeProxy::Iptables => iptables_dnat(&node),
            KubeProxy::Nftables => {
                let file = node.path("kube-proxy.nft");
                std::fs::write(&file, KUBE_PROXY_NFT).unwrap();
                node.run_ok(&["nft", "-f", file.to_str().unwrap()]);
            }
        }
        // The pod's resolv.conf, as kubelet writes it with --cluster-dns 10.96.0.10.
        std::fs::write(
            Path::new("/etc/netns").join(&pod.name).join("resolv.conf"),
            format!("nameserver {KUBE_DNS}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"),
        )
        .unwrap();
        // The node's resolv.conf (the `.` block's upstream): the second knotd, so that
        // the cluster DNS sees only what the cache forwards over TCP.
        std::fs::write(
            Path::new("/etc/netns").join(&node.name).join("resolv.conf"),
            format!("nameserver {STUB_DNS}\n"),
        )
        .unwrap();
        let cluster = Knot::start(
            &mut dns,
            "cluster",
            CLUSTER_DNS_POD,
            &[("cluster.local.", &cluster_records())],
        );
        let stub = Knot::start(
            &mut dns,
            "stub",
            STUB_DNS,
            &[
                ("acme.local.", "www A 192.0.2.53"),
                (
                    "example.",
                    "www A 192.0.2.1\ndual A 192.0.2.2\ndual AAAA 2001:db8::2",
                ),
            ],
        );
        let nat_before = match proxy {
            KubeProxy::Iptables => node.run_ok(&["iptables-save", "-t", "nat"]),
            KubeProxy::Nftables => node.run_ok(&["nft", "list", "table", "ip", "kube-proxy"]),
        };
        Node {
            pod,
            node,
            dns,
            cluster,
            stub,
            nat_before,
            forward_options: Vec::new(),
            cache_options: Vec::new(),
            rust_log: "info",
        }
    }

    /// Starts the cache with `mode`'s manifest args and template, a kube-dns ConfigMap
    /// with a stub domain, and `extra` args. Returns its pid.
    pub fn start_cache(&mut self, mode: &str, extra: &[&str]) -> u32 {
        self.start_cache_with_path(mode, extra, None)
    }

    /// [`Node::start_cache`] with the cache's PATH replaced (e.g. one without
    /// `iptables`).
    pub fn start_cache_with_path(
        &mut self,
        mode: &str,
        extra: &[&str],
        path: Option<&Path>,
    ) -> u32 {
        let (args, mut template) = manifest(mode);
        for option in &self.forward_options {
            template = template.replace("force_tcp\n", &format!("force_tcp\n        {option}\n"));
        }
        for option in &self.cache_options {
            template = template.replace("cache {\n", &format!("cache {{\n        {option}\n"));
        }
        // Written as kubelet updates a mounted ConfigMap: atomically, and only when it
        // changes, so that an instance already running (a hand-over) never reads a
        // half-written template.
        replace_file(&self.node.path("Corefile.base"), &template);
        let cm = self.node.path("kube-dns");
        std::fs::create_dir_all(&cm).unwrap();
        replace_file(
            &cm.join("stubDomains"),
            &format!("{{\"acme.local\": [\"{STUB_DNS}\"]}}"),
        );
        let mut command = self.node.command(&[BIN]);
        command
            .args(&args)
            .args(self.test_args())
            .args(extra)
            .env("KUBE_DNS_UPSTREAM_SERVICE_HOST", KUBE_DNS_UPSTREAM)
            .env("RUST_LOG", self.rust_log)
            .stdout(Stdio::null());
        if let Some(path) = path {
            command.env("PATH", path);
        }
        command.stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.node.path("nodelocaldns.log"))
                .unwrap(),
        );
        self.node.spawn(command)
    }

    /// Starts instance `n` of the cache as a pod of its own would run beside another
    /// during a rolling update: with its own generated Corefile (each container has
    /// its own filesystem; a shared one would make the running instance reload when
    /// the new one writes it). Returns its pid.
    pub fn start_instance(&mut self, mode: &str, n: usize) -> u32 {
        let conf = self.node.path(&format!("Corefile.{n}"));
        self.start_cache(mode, &["-conf", conf.to_str().unwrap()])
    }

    /// What a test adds to the DaemonSet's args: its own paths and pace, and the
    /// interface kind this kernel has (a repeated flag takes its last value).
    pub fn test_args(&self) -> Vec<String> {
        let path = |name: &str| self.node.path(name).display().to_string();
        vec![
            "-conf".into(),
            path("Corefile"),
            "-basecorefile".into(),
            path("Corefile.base"),
            "-kubednscm".into(),
            path("kube-dns"),
            "-syncinterval".into(),
            "1".into(),
            "--interface-kind".into(),
            "bridge".into(),
            "--config-poll-interval".into(),
            "200ms".into(),
            "--shards".into(),
            "2".into(),
        ]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.node.path("nodelocaldns.log")).unwrap_or_default()
    }

    /// Our rules in the node's iptables.
    pub fn our_rules(&self) -> usize {
        self.node
            .run_ok(&["iptables-save"])
            .lines()
            .filter(|l| l.contains(OUR_RULES))
            .count()
    }

    /// Our rules in the node's nftables table (0 without the table).
    pub fn nft_rules(&self) -> usize {
        let out = self
            .node
            .run(&["nft", "list", "table", "inet", "nodelocaldns"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(OUR_RULES))
            .count()
    }

    /// The handle of the first rule of `chain` in our table containing `needle`.
    pub fn nft_handle(&self, chain: &str, needle: &str) -> String {
        let out = self
            .node
            .run_ok(&["nft", "-a", "list", "chain", "inet", "nodelocaldns", chain]);
        out.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.rsplit("# handle ").next())
            .unwrap_or_else(|| panic!("no {needle} in {chain}: {out}"))
            .trim()
            .to_string()
    }

    /// Cilium's Local Redirect Policy, played by a DNAT of the kube-dns IP to the
    /// node-local-dns endpoint (here the node's address), before kube-proxy's.
    pub fn redirect_kube_dns_to_node(&self) {
        self.redirect_kube_dns_to(NODE_IP);
    }

    /// The node-local-dns pod's own network namespace (pod network, as under Cilium's
    /// Local Redirect Policy): [`CACHE_POD_IP`] behind a veth of the node, the node's
    /// resolv.conf.
    pub fn cache_pod(&self, test: &str) -> Netns {
        let pod = Netns::new(&format!("cpod{test}"));
        let tag = format!("{}{}", std::process::id() % 100_000, test.len());
        link(
            &self.node,
            &format!("c{tag}"),
            &pod,
            "10.244.1.1",
            CACHE_POD_IP,
        );
        pod.run_ok(&["ip", "route", "add", "default", "via", "10.244.1.1"]);
        std::fs::write(
            Path::new("/etc/netns").join(&pod.name).join("resolv.conf"),
            format!("nameserver {STUB_DNS}\n"),
        )
        .unwrap();
        pod
    }

    /// [`Node::redirect_kube_dns_to_node`] with the endpoint at `target`.
    pub fn redirect_kube_dns_to(&self, target: &str) {
        for proto in ["udp", "tcp"] {
            self.node.run_ok(&[
                "iptables",
                "-w",
                "-t",
                "nat",
                "-I",
                "PREROUTING",
                "-d",
                KUBE_DNS,
                "-p",
                proto,
                "--dport",
                "53",
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{target}:53"),
            ]);
        }
    }

    /// `getent ahosts NAME` in the pod: the addresses, empty when it failed.
    pub fn resolve(&self, name: &str) -> Vec<String> {
        let out = self.pod.run(&["timeout", "15", "getent", "ahosts", name]);
        if !out.status.success() {
            return Vec::new();
        }
        let mut addrs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        addrs.dedup();
        addrs
    }

    /// Conntrack entries on the node for the pod's DNS to `ip` (the cache's own
    /// start-up probe, sent before its rules are in, is not the pod's).
    pub fn conntrack_dns(&self, ip: &str) -> usize {
        ["udp", "tcp"]
            .iter()
            .map(|proto| {
                self.node
                    .run(&[
                        "conntrack",
                        "-L",
                        "-s",
                        POD_IP,
                        "-d",
                        ip,
                        "-p",
                        proto,
                        "--dport",
                        "53",
                    ])
                    .stdout
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
            })
            .sum()
    }

    /// `nodelocaldns doctor --json` in the node with the manifest's args: (exit, report).
    pub fn doctor(&self, mode: &str, extra: &[&str]) -> (i32, Value) {
        let (args, _) = manifest(mode);
        let out = self
            .node
            .command(&[BIN, "doctor", "--json"])
            .args(&args)
            .args(self.test_args())
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor output: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }
}

/// kube-proxy, iptables mode: the two Services' ClusterIPs DNATed to kube-dns.
fn iptables_dnat(node: &Netns) {
    for svc in [KUBE_DNS, KUBE_DNS_UPSTREAM] {
        for chain in ["PREROUTING", "OUTPUT"] {
            for proto in ["udp", "tcp"] {
                node.run_ok(&[
                    "iptables",
                    "-w",
                    "-t",
                    "nat",
                    "-A",
                    chain,
                    "-d",
                    svc,
                    "-p",
                    proto,
                    "--dport",
                    "53",
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &format!("{CLUSTER_DNS_POD}:53"),
                ]);
            }
        }
    }
}

/// `dnsload`, built by the workspace beside our binary.
pub fn dnsload() -> PathBuf {
    let path = Path::new(BIN).with_file_name("dnsload");
    assert!(
        path.is_file(),
        "{} missing: cargo build --workspace",
        path.display()
    );
    path
}

/// dnsload in the pod's namespace against the kube-dns IP, its JSON report read when
/// it ends.
pub struct PodLoad {
    child: std::process::Child,
    report: PathBuf,
}

impl PodLoad {
    pub fn start(node: &Node, name: &str, args: &[&str]) -> PodLoad {
        let report = node.pod.path(&format!("{name}.json"));
        let child = node
            .pod
            .command(&[dnsload().to_str().unwrap()])
            .args(["-s", KUBE_DNS, "-p", "53", "--quiet", "--json"])
            .arg(&report)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        PodLoad { child, report }
    }

    /// Waits for dnsload to end; its report (it must have succeeded).
    pub fn finish(self) -> serde_json::Value {
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "dnsload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(&self.report).unwrap()).unwrap()
    }
}

/// The names of the failed checks of a doctor report.
pub fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Replaces `path` with `text` atomically (a rename), unless it holds `text` already.
pub fn replace_file(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A veth pair: `name` in `a` with `a_ip`, its peer `eth0` in `b` with `b_ip` (/24).
pub fn link(a: &Netns, name: &str, b: &Netns, a_ip: &str, b_ip: &str) {
    a.run_ok(&[
        "ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ]);
    a.run_ok(&["ip", "addr", "add", &format!("{a_ip}/24"), "dev", name]);
    a.run_ok(&["ip", "link", "set", name, "up"]);
    b.run_ok(&["ip", "addr", "add", &format!("{b_ip}/24"), "dev", "eth0"]);
    b.run_ok(&["ip", "link", "set", "eth0", "up"]);
}
