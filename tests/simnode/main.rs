//! End to end on a simulated Kubernetes node (see `node.rs`): a pod's libc resolver
//! (`getent ahosts`) asks the kube-dns ClusterIP, the cache started with the committed
//! DaemonSet's args answers, conntrack stays out of it, a stub domain of the kube-dns
//! ConfigMap resolves, a restart loses no lookup, the teardown gives kube-proxy's DNAT
//! path back; the same in Cilium-LRP-like mode; and `nodelocaldns doctor` on the node,
//! healthy and with each fault planted. Needs root (ci/deps.sh installs the tools).

mod clients;
mod cluster_dns;
#[allow(dead_code)]
#[path = "../node/harness.rs"]
mod harness;
mod image;
mod node;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clients::{agrees, Client, Lookup, Probes, Truth};
use harness::wait_until;
use node::{
    can_run, failed, KubeProxy, Node, CLUSTER_DNS_POD, KUBE_DNS, LOCAL_DNS, OUR_RULES, SIXTY_COUNT,
    STUB_DNS,
};

/// Longest wait for something the cache does within a second or two.
const SETTLE: Duration = Duration::from_secs(8);
const IFACE: &str = "nodelocaldns";

fn signal(pid: u32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Waits until `rules(node)` (iptables or nftables rules of ours) is `count`.
fn wait_count(node: &Node, what: &str, count: usize, rules: fn(&Node) -> usize) {
    assert!(
        wait_until(SETTLE, || rules(node) == count),
        "{what}: {} of {count}\n{}",
        rules(node),
        node.log()
    );
}

fn wait_rules(node: &Node, count: usize) {
    wait_count(node, "rules", count, Node::our_rules);
}

#[test]
fn iptables_mode_pod_resolves_through_the_cache_and_gets_dnat_back() {
    if !can_run() {
        return;
    }
    let mut node = Node::build("ipt");
    // Before the cache: the pod resolves through kube-proxy's DNAT, over UDP.
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    let direct = node.cluster.udp();
    assert!(direct > 0);

    let pid = node.start_cache("iptables", &[]);
    wait_rules(&node, 24);
    // The pre-cache lookup's DNAT entries would expire; do it now.
    node.node.run(&["conntrack", "-D", "-d", KUBE_DNS]);
    assert!(node
        .node
        .addresses(IFACE)
        .iter()
        .any(|(_, ip, _)| ip == KUBE_DNS));

    // Service names through the cache: the cluster DNS sees TCP only (force_tcp),
    // never the pod's UDP, and repeated lookups are hits.
    assert_eq!(
        node.resolve("kubernetes.default"),
        vec!["10.96.0.1"],
        "{}",
        node.log()
    );
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    let after_first = node.cluster.total();
    for _ in 0..5 {
        assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
        assert_eq!(
            node.resolve("web.default.svc.cluster.local"),
            vec!["10.96.5.5"]
        );
    }
    assert_eq!(
        node.cluster.total(),
        after_first,
        "repeated lookups are cache hits"
    );
    assert_eq!(
        node.cluster.udp(),
        direct,
        "no pod query bypassed the cache"
    );
    // NOTRACK: no conntrack entry for DNS to the local IPs.
    assert_eq!(
        node.conntrack_dns(KUBE_DNS),
        0,
        "{}",
        node.node.run_ok(&["conntrack", "-L"])
    );
    assert_eq!(node.conntrack_dns(LOCAL_DNS), 0);
    // The stub domain of the kube-dns ConfigMap.
    assert_eq!(node.resolve("www.acme.local"), vec!["192.0.2.53"]);
    assert!(node.stub.total() > 0);

    // A restart (SIGTERM, teardown, new process) while the pod keeps resolving.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let pod_name = node.pod.name.clone();
    let looper = {
        let (stop, ok, lost) = (stop.clone(), ok.clone(), lost.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args([
                        "netns", "exec", &pod_name, "timeout", "15", "getent", "ahosts",
                    ])
                    .arg("kubernetes.default")
                    .output()
                    .unwrap();
                let good = out.status.success()
                    && String::from_utf8_lossy(&out.stdout).contains("10.96.0.1");
                if good { &ok } else { &lost }.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    signal(pid, libc::SIGTERM);
    let status = node.node.wait_exit(pid, Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{}", node.log());
    let pid = node.start_cache("iptables", &[]);
    wait_rules(&node, 24);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    let (ok, lost) = (ok.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    assert_eq!(lost, 0, "lookups lost across the restart ({ok} ok)");
    assert!(ok >= 3, "only {ok} lookups during the restart");

    // Teardown: rules and interface gone, kube-proxy's DNAT path as it was.
    signal(pid, libc::SIGTERM);
    assert!(node.node.wait_exit(pid, Duration::from_secs(15)).is_some());
    assert_eq!(node.our_rules(), 0);
    assert!(!node.node.link_exists(IFACE));
    assert_eq!(
        node.node
            .run_ok(&["iptables-save", "-t", "nat"])
            .lines()
            .filter(|l| l.starts_with('-'))
            .collect::<Vec<_>>(),
        node.nat_before
            .lines()
            .filter(|l| l.starts_with('-'))
            .collect::<Vec<_>>()
    );
    let udp = node.cluster.udp();
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    assert!(
        node.cluster.udp() > udp,
        "the pod reaches kube-dns through the DNAT again"
    );
}

#[test]
fn cilium_lrp_mode_touches_nothing_on_the_node() {
    if !can_run() {
        return;
    }
    let mut node = Node::build("lrp");
    node.redirect_kube_dns_to_node();
    let nat = node.node.run_ok(&["iptables-save", "-t", "nat"]);
    let filter = node.node.run_ok(&["iptables-save", "-t", "filter"]);
    let pid = node.start_cache("cilium-lrp", &[]);
    let udp = node.cluster.udp();
    assert!(
        wait_until(SETTLE, || node.resolve("kubernetes.default")
            == vec!["10.96.0.1"]),
        "{}",
        node.log()
    );
    let total = node.cluster.total();
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    assert_eq!(node.cluster.total(), total, "a hit");
    assert_eq!(
        node.cluster.udp(),
        udp,
        "answered by the cache (TCP upstream)"
    );
    assert_eq!(node.resolve("www.acme.local"), vec!["192.0.2.53"]);
    assert!(!node.node.link_exists(IFACE));
    assert_eq!(node.our_rules(), 0);
    let (code, report) = node.doctor("cilium-lrp", &[]);
    assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");

    signal(pid, libc::SIGTERM);
    assert!(node.node.wait_exit(pid, Duration::from_secs(15)).is_some());
    let strip = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with('-'))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&node.node.run_ok(&["iptables-save", "-t", "nat"])),
        strip(&nat)
    );
    assert_eq!(
        strip(&node.node.run_ok(&["iptables-save", "-t", "filter"])),
        strip(&filter)
    );
    assert!(!node.node.link_exists(IFACE));
}

/// `iptables` in the node, asserting success.
fn ipt(node: &Node, args: &str) {
    let mut words: Vec<String> = vec!["iptables".into(), "-w".into()];
    words.extend(shell_words(args));
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    node.node.run_ok(&refs);
}

fn shell_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn doctor_is_quiet_when_healthy_and_names_each_planted_fault() {
    if !can_run() || !harness::require(&["nft"]) {
        return;
    }
    let mut node = Node::build("doc");
    // A long sync interval (last value wins), so that planted faults stay.
    let pid = node.start_cache("iptables", &["-syncinterval", "1h"]);
    wait_rules(&node, 24);
    let healthy = |node: &Node| {
        let (code, report) = node.doctor("iptables", &["-syncinterval", "1h"]);
        assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
        assert_eq!(report["healthy"], true);
        assert_eq!(report["mode"], "iptables");
    };
    let fails = |node: &Node, extra: &[&str]| {
        let (code, report) = node.doctor("iptables", extra);
        assert_eq!(code, 1, "{report:#}");
        failed(&report)
    };
    healthy(&node);

    // A NOTRACK rule missing: the doctor says so, and the pod's queries to the kube-dns
    // IP now leave conntrack entries (and take kube-proxy's DNAT).
    let notrack = format!(
        "PREROUTING -p udp -d {KUBE_DNS} --dport 53 -j NOTRACK -m comment --comment \"{OUR_RULES}: skip conntrack\""
    );
    ipt(&node, &format!("-t raw -D {notrack}"));
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    let found = fails(&node, &[]);
    assert!(found.contains(&"notrack".to_string()), "{found:?}");
    assert!(found.contains(&"rules".to_string()), "{found:?}");
    assert!(
        found.contains(&format!("conntrack {KUBE_DNS}")),
        "{found:?}"
    );
    ipt(&node, &format!("-t raw -I {notrack}"));
    node.node.run(&["conntrack", "-D", "-d", KUBE_DNS]);
    healthy(&node);

    // A duplicate rule.
    let allow = format!("-p tcp -d {LOCAL_DNS} --dport 53 -j ACCEPT -m comment --comment \"{OUR_RULES}: allow DNS traffic\"");
    ipt(&node, &format!("-t filter -I INPUT {allow}"));
    assert_eq!(fails(&node, &[]), vec!["rules"]);
    ipt(&node, &format!("-t filter -D INPUT {allow}"));
    healthy(&node);

    // An address missing from the interface.
    node.node
        .run_ok(&["ip", "addr", "del", &format!("{KUBE_DNS}/32"), "dev", IFACE]);
    let found = fails(&node, &[]);
    assert!(found.contains(&"interface".to_string()), "{found:?}");
    node.node
        .run_ok(&["ip", "addr", "add", &format!("{KUBE_DNS}/32"), "dev", IFACE]);
    assert!(
        wait_until(SETTLE, || fails_none(&node)),
        "healthy after re-adding the address"
    );

    // The upstream (kube-dns-upstream → the cluster DNS pod) unreachable over TCP.
    let reject =
        "-t filter -I OUTPUT -p tcp -d 10.0.0.2 --dport 53 -j REJECT --reject-with tcp-reset";
    ipt(&node, reject);
    let found = fails(&node, &[]);
    assert!(
        found.contains(&format!("upstream {}:53", node::KUBE_DNS_UPSTREAM)),
        "{found:?}"
    );
    assert!(
        found.iter().all(|f| f.starts_with("upstream ")),
        "{found:?}"
    );
    ipt(&node, &reject.replace("-I OUTPUT", "-D OUTPUT"));
    healthy(&node);

    // A table of an earlier nftables-mode run.
    node.node
        .run_ok(&["nft", "add", "table", "inet", "nodelocaldns"]);
    assert_eq!(fails(&node, &[]), vec!["stale nft table"]);
    node.node
        .run_ok(&["nft", "delete", "table", "inet", "nodelocaldns"]);
    healthy(&node);

    // resolv.conf naming the cache itself.
    let resolv = node.node.path("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {LOCAL_DNS}\n")).unwrap();
    let found = fails(&node, &["--resolv-conf", resolv.to_str().unwrap()]);
    assert_eq!(found, vec![format!("resolv.conf {}", resolv.display())]);

    // The cache killed without its teardown: a stale interface nobody answers on.
    signal(pid, libc::SIGKILL);
    assert!(node.node.wait_exit(pid, Duration::from_secs(5)).is_some());
    let found = fails(&node, &[]);
    assert!(found.contains(&"stale interface".to_string()), "{found:?}");
    assert!(found.contains(&format!("udp {LOCAL_DNS}:53")), "{found:?}");
    let (_, report) = node.doctor("iptables", &[]);
    let text = report.to_string();
    assert!(text.contains("ip link del nodelocaldns"), "{text}");
}

fn fails_none(node: &Node) -> bool {
    node.doctor("iptables", &[]).0 == 0
}

/// A PATH for the cache with `ip` (to enter the namespace) and no `iptables`.
fn path_without_iptables(node: &Node) -> std::path::PathBuf {
    let dir = node.node.path("bin-without-iptables");
    std::fs::create_dir_all(&dir).unwrap();
    let ip = std::process::Command::new("sh")
        .args(["-c", "command -v ip"])
        .output()
        .unwrap();
    let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
    let _ = std::os::unix::fs::symlink(ip, dir.join("ip"));
    dir
}

fn wait_nft_rules(node: &Node, count: usize) {
    wait_count(node, "nft rules", count, Node::nft_rules);
}

/// kube-proxy in nftables mode (`table ip kube-proxy`, DNAT for new connections, drop
/// policies): `--rules=auto` picks nftables, the pod resolves through the cache with
/// no conntrack entry, the sync restores a deleted rule and a deleted table, a
/// SIGKILLed predecessor's table is taken over by a start without any iptables binary
/// (one table, no second set), and the teardown gives kube-proxy's DNAT path back.
#[test]
fn nftables_mode_pod_resolves_through_the_cache_and_gets_dnat_back() {
    if !can_run() || !harness::require(&["nft"]) {
        return;
    }
    let mut node = Node::build_with("nft", KubeProxy::Nftables);
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    let direct = node.cluster.udp();
    assert!(direct > 0);
    // A rule an earlier iptables-mode run left: the cache removes it.
    ipt(&node, &format!("-t raw -I PREROUTING -p udp -d {KUBE_DNS} --dport 53 -j NOTRACK -m comment --comment \"{OUR_RULES}: skip conntrack\""));

    let pid = node.start_cache("iptables", &[]);
    wait_nft_rules(&node, 24);
    assert!(
        node.log().contains("reason=kube-proxy's nftables table"),
        "{}",
        node.log()
    );
    assert!(
        wait_until(SETTLE, || node.our_rules() == 0),
        "stale iptables rule: {}",
        node.log()
    );
    node.node.run(&["conntrack", "-D", "-d", KUBE_DNS]);
    assert_eq!(
        node.resolve("kubernetes.default"),
        vec!["10.96.0.1"],
        "{}",
        node.log()
    );
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    assert_eq!(
        node.cluster.udp(),
        direct,
        "no pod query bypassed the cache"
    );
    assert_eq!(
        node.conntrack_dns(KUBE_DNS),
        0,
        "{}",
        node.node.run_ok(&["conntrack", "-L"])
    );
    assert_eq!(node.conntrack_dns(LOCAL_DNS), 0);
    let metrics = node.node.scrape("127.0.0.1:9353");
    assert!(
        metrics.contains("coredns_nodecache_setup_errors_total{errortype=\"nftables\"} 0"),
        "{metrics}"
    );

    // The sync restores a deleted rule, then a deleted table.
    let handle = node.nft_handle(
        "raw-prerouting",
        &format!("ip daddr {KUBE_DNS} udp dport 53"),
    );
    node.node.run_ok(&[
        "nft",
        "delete",
        "rule",
        "inet",
        "nodelocaldns",
        "raw-prerouting",
        "handle",
        &handle,
    ]);
    // (The 1 s sync may restore it before it could be counted: the log says it did.)
    let added_back = |node: &Node, what: &str| {
        wait_until(SETTLE, || {
            node.log()
                .lines()
                .any(|l| l.contains("Added back nodelocaldns rules") && l.contains(what))
        })
    };
    let rule = format!("rule missing in raw-prerouting: ip daddr {KUBE_DNS} udp dport 53 notrack");
    assert!(added_back(&node, &rule), "{}", node.log());
    wait_nft_rules(&node, 24);
    node.node
        .run_ok(&["nft", "delete", "table", "inet", "nodelocaldns"]);
    assert!(
        added_back(&node, "table inet nodelocaldns is missing"),
        "{}",
        node.log()
    );
    wait_nft_rules(&node, 24);

    // A chain deleted comes back too.
    node.node.run_ok(&[
        "nft",
        "flush",
        "chain",
        "inet",
        "nodelocaldns",
        "raw-output",
    ]);
    node.node.run_ok(&[
        "nft",
        "delete",
        "chain",
        "inet",
        "nodelocaldns",
        "raw-output",
    ]);
    assert!(
        added_back(&node, "chain raw-output is missing"),
        "{}",
        node.log()
    );
    wait_nft_rules(&node, 24);
    // An iptables-mode cache beside this one (an upgrade) adds its rules again: found
    // over netlink at the next pass and removed.
    ipt(&node, &format!("-t raw -I PREROUTING -p tcp -d {LOCAL_DNS} --dport 53 -j NOTRACK -m comment --comment \"{OUR_RULES}: skip conntrack\""));
    assert!(
        wait_until(SETTLE, || node.our_rules() == 0),
        "stale iptables rule: {}",
        node.log()
    );

    // SIGKILL leaves the table; a start with no iptables binary at all takes it over.
    signal(pid, libc::SIGKILL);
    assert!(node.node.wait_exit(pid, Duration::from_secs(5)).is_some());
    assert_eq!(node.nft_rules(), 24, "left behind");
    let path = path_without_iptables(&node);
    let pid = node.start_cache_with_path("iptables", &[], Some(&path));
    assert!(
        wait_until(SETTLE, || node
            .log()
            .contains("reason=no iptables binary on PATH")),
        "{}",
        node.log()
    );
    assert!(wait_until(SETTLE, || node.resolve("kubernetes.default")
        == vec!["10.96.0.1"]));
    let tables = node.node.run_ok(&["nft", "list", "tables"]);
    assert_eq!(tables.matches("inet nodelocaldns").count(), 1, "{tables}");
    assert_eq!(node.nft_rules(), 24, "one set of rules");
    assert!(
        wait_until(SETTLE, || node
            .log()
            .contains("table inet nodelocaldns already in place")),
        "{}",
        node.log()
    );
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    assert_eq!(node.conntrack_dns(KUBE_DNS), 0);
    assert_eq!(node.cluster.udp(), direct);

    // Teardown: the table and the interface go, kube-proxy's table is as it was and
    // the pod reaches kube-dns through its DNAT again.
    signal(pid, libc::SIGTERM);
    let status = node.node.wait_exit(pid, Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{}", node.log());
    assert!(!node
        .node
        .run_ok(&["nft", "list", "tables"])
        .contains("nodelocaldns"));
    assert!(!node.node.link_exists(IFACE));
    assert_eq!(
        node.node
            .run_ok(&["nft", "list", "table", "ip", "kube-proxy"]),
        node.nat_before
    );
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    assert!(
        node.cluster.udp() > direct,
        "the pod reaches kube-dns through the DNAT again"
    );
}

/// `doctor` on an nftables node: healthy, then each planted fault named (a NOTRACK
/// rule deleted, a chain deleted, the table deleted, a stale iptables rule).
#[test]
fn doctor_names_each_planted_fault_in_nftables_mode() {
    if !can_run() || !harness::require(&["nft"]) {
        return;
    }
    let mut node = Node::build_with("docnft", KubeProxy::Nftables);
    let pid = node.start_cache("iptables", &["-syncinterval", "1h"]);
    wait_nft_rules(&node, 24);
    let saved = node.node.path("table.nft");
    let table = node
        .node
        .run_ok(&["nft", "list", "table", "inet", "nodelocaldns"]);
    std::fs::write(
        &saved,
        format!("table inet nodelocaldns {{}}\ndelete table inet nodelocaldns\n{table}"),
    )
    .unwrap();
    let restore = |node: &Node| {
        node.node.run_ok(&["nft", "-f", saved.to_str().unwrap()]);
        node.node.run(&["conntrack", "-D", "-d", KUBE_DNS]);
    };
    let healthy = |node: &Node| {
        let (code, report) = node.doctor("iptables", &[]);
        assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
        assert_eq!(report["rules"], "nftables");
    };
    let fails = |node: &Node| {
        let (code, report) = node.doctor("iptables", &[]);
        assert_eq!(code, 1, "{report:#}");
        (failed(&report), report.to_string())
    };
    healthy(&node);

    // A NOTRACK rule deleted: the pod's queries take conntrack (and the DNAT).
    let handle = node.nft_handle(
        "raw-prerouting",
        &format!("ip daddr {KUBE_DNS} udp dport 53"),
    );
    node.node.run_ok(&[
        "nft",
        "delete",
        "rule",
        "inet",
        "nodelocaldns",
        "raw-prerouting",
        "handle",
        &handle,
    ]);
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    let (found, text) = fails(&node);
    for check in ["nft rules", "notrack", &format!("conntrack {KUBE_DNS}")] {
        assert!(found.contains(&check.to_string()), "{check}: {found:?}");
    }
    assert!(
        text.contains(&format!(
            "raw-prerouting: ip daddr {KUBE_DNS} udp dport 53 notrack"
        )),
        "{text}"
    );
    restore(&node);
    healthy(&node);

    // A chain deleted.
    node.node.run_ok(&[
        "nft",
        "flush",
        "chain",
        "inet",
        "nodelocaldns",
        "filter-output",
    ]);
    node.node.run_ok(&[
        "nft",
        "delete",
        "chain",
        "inet",
        "nodelocaldns",
        "filter-output",
    ]);
    let (found, text) = fails(&node);
    assert_eq!(found, vec!["nft chains", "nft rules"], "{text}");
    assert!(text.contains("chain filter-output is missing"), "{text}");
    restore(&node);
    healthy(&node);

    // The table deleted.
    node.node
        .run_ok(&["nft", "delete", "table", "inet", "nodelocaldns"]);
    let (found, text) = fails(&node);
    assert_eq!(found, vec!["nft table", "notrack", "notrack"], "{text}");
    restore(&node);
    healthy(&node);

    // An iptables rule of an earlier iptables-mode run.
    let stale = format!("PREROUTING -p tcp -d {LOCAL_DNS} --dport 53 -j NOTRACK -m comment --comment \"{OUR_RULES}: skip conntrack\"");
    ipt(&node, &format!("-t raw -I {stale}"));
    let (found, text) = fails(&node);
    assert_eq!(found, vec!["stale iptables rules"], "{text}");
    ipt(&node, &format!("-t raw -D {stale}"));
    healthy(&node);
    signal(pid, libc::SIGTERM);
    assert!(node.node.wait_exit(pid, Duration::from_secs(15)).is_some());
}

/// Records of the headless service a client without EDNS gets at least, in 512
/// bytes (CoreDNS fits 28 for a name of this length).
const SIXTY_FIT_MIN: usize = 28;

/// musl 1.2.3 (what Alpine 3.17 and older ship) never retries over TCP: it takes the
/// records a truncated answer holds. A headless service of 60 endpoints resolves
/// only if the cache's truncated answer carries the records that fit, as CoreDNS's.
#[test]
fn musl_resolves_a_headless_service_of_sixty_endpoints() {
    if !can_run() {
        return;
    }
    let mut node = Node::build("musl");
    node.start_cache("iptables", &[]);
    wait_rules(&node, 24);
    let probes = Probes::build(&node.node.path("probes"));
    let sixty = Lookup {
        kind: "a",
        asked: "sixty",
        fqdn: "sixty.default.svc.cluster.local.",
        server: CLUSTER_DNS_POD,
    };
    let Truth::Records(all) = sixty.truth(&node.dns) else {
        panic!("knotd serves the headless service");
    };
    assert_eq!(all.len(), SIXTY_COUNT);
    // A miss (fresh upstream answer), then hits; the short name and the FQDN.
    for round in ["miss", "hit"] {
        let lookups = [sixty.arg(), format!("a:{}", sixty.fqdn)];
        for (lookup, got) in
            lookups
                .iter()
                .zip(Probes::run(&probes, &node.pod, Client::Musl, &lookups))
        {
            assert!(
                agrees(&got, &Truth::Records(all.clone()), Some(SIXTY_FIT_MIN)),
                "musl {lookup} ({round}): {got:?}\n{}",
                node.log()
            );
        }
    }
}

/// The suite's lookups: short names through the search list, FQDNs, an external
/// name, NXDOMAIN, NODATA (AAAA of an A-only name), SRV, a TXT over 1,232 bytes and
/// the 60-endpoint headless service.
fn suite() -> Vec<Lookup> {
    let cluster = |kind, asked, fqdn| Lookup {
        kind,
        asked,
        fqdn,
        server: CLUSTER_DNS_POD,
    };
    vec![
        cluster("a", "web", "web.default.svc.cluster.local."),
        cluster(
            "a",
            "kubernetes.default",
            "kubernetes.default.svc.cluster.local.",
        ),
        cluster(
            "a",
            "web.default.svc.cluster.local.",
            "web.default.svc.cluster.local.",
        ),
        cluster(
            "aaaa",
            "web.default.svc.cluster.local.",
            "web.default.svc.cluster.local.",
        ),
        cluster(
            "a",
            "nosuch.default.svc.cluster.local.",
            "nosuch.default.svc.cluster.local.",
        ),
        cluster(
            "srv",
            "_http._tcp.web.default.svc.cluster.local.",
            "_http._tcp.web.default.svc.cluster.local.",
        ),
        cluster(
            "txt",
            "bigtxt.default.svc.cluster.local.",
            "bigtxt.default.svc.cluster.local.",
        ),
        cluster(
            "a",
            "sixty.default.svc.cluster.local.",
            "sixty.default.svc.cluster.local.",
        ),
        Lookup {
            kind: "a",
            asked: "www.example",
            fqdn: "www.example.",
            server: STUB_DNS,
        },
        Lookup {
            kind: "aaaa",
            asked: "dual.example.",
            fqdn: "dual.example.",
            server: STUB_DNS,
        },
        Lookup {
            kind: "a",
            asked: "nosuch.example.",
            fqdn: "nosuch.example.",
            server: STUB_DNS,
        },
    ]
}

/// Runs every client of [`Client::ALL`] over the lookups that apply to it; the
/// disagreements with the authoritative answers, one line each.
fn run_clients(node: &Node, probes: &Probes, lookups: &[(Lookup, Truth)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for client in Client::ALL {
        let applicable: Vec<&(Lookup, Truth)> = lookups
            .iter()
            .filter(|(l, _)| client.searches() || !l.short())
            .filter(|(l, _)| client.retries_over_tcp() || l.kind != "txt")
            .collect();
        let args: Vec<String> = applicable.iter().map(|(l, _)| l.arg()).collect();
        let results = probes.run(&node.pod, client, &args);
        for ((lookup, truth), got) in applicable.iter().zip(results) {
            let partial = (!client.retries_over_tcp() && lookup.asked.starts_with("sixty"))
                .then_some(SIXTY_FIT_MIN);
            if !agrees(&got, truth, partial) {
                wrong.push(format!(
                    "{client:?} {}: got {got:?}, knotd {truth:?}",
                    lookup.arg()
                ));
            }
        }
    }
    wrong
}

/// glibc (plain, single-request, single-request-reopen, use-vc, edns0), musl, Go's
/// pure resolver, c-ares (Node) and dnspython in the pod, each lookup compared with
/// knotd's own answer; then all of them again while the cache hands over to a
/// successor started beside it.
#[test]
fn real_clients_agree_with_the_authoritative_answers_also_across_a_hand_over() {
    if !can_run() {
        return;
    }
    let mut node = Node::build("clients");
    let old = node.start_instance("iptables", 0);
    wait_rules(&node, 24);
    let probes = Probes::build(&node.node.path("probes"));
    let lookups: Vec<(Lookup, Truth)> = suite()
        .into_iter()
        .map(|l| {
            let truth = l.truth(&node.dns);
            (l, truth)
        })
        .collect();
    let wrong = run_clients(&node, &probes, &lookups);
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), node.log());

    // A hand-over: the successor starts beside the old process, which gets SIGTERM
    // while the clients run.
    let new = node.start_instance("iptables", 1);
    assert!(
        wait_until(SETTLE, || node.log().matches("listening (udp+tcp)").count()
            >= 4),
        "{}",
        node.log()
    );
    let stop = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        signal(old, libc::SIGTERM);
    });
    let started = std::time::Instant::now();
    let mut wrong = Vec::new();
    let mut exited = None;
    while exited.is_none() || started.elapsed() < Duration::from_secs(2) {
        wrong.extend(run_clients(&node, &probes, &lookups));
        exited = exited.or(node.node.wait_exit(old, Duration::from_millis(60)));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "old cache still running"
        );
    }
    stop.join().unwrap();
    assert!(exited.is_some_and(|s| s.success()), "{}", node.log());
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), node.log());
    signal(new, libc::SIGTERM);
    assert!(node.node.wait_exit(new, Duration::from_secs(15)).is_some());
}

/// Hand-overs in a row in [`twenty_five_hand_overs_fail_no_pod_lookup`].
const HAND_OVERS: usize = 25;
/// Its glibc threads with `use-vc` (a new TCP connection per lookup), enough that
/// connections are in the listeners' queues as they close.
const USE_VC_THREADS: usize = 32;
/// Its glibc threads over UDP.
const UDP_THREADS: usize = 8;

/// What a glibc load process printed: (ok, failed, the failure lines).
fn load_result(out: &std::path::Path) -> (u64, u64, Vec<String>) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let fails = text
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(String::from)
        .collect();
    let last = text.lines().last().unwrap_or("");
    let words: Vec<&str> = last.split_whitespace().collect();
    match words.as_slice() {
        ["ok", ok, "failed", failed] => (ok.parse().unwrap(), failed.parse().unwrap(), fails),
        _ => panic!("load output without its summary: {text}"),
    }
}

/// 25 hand-overs (a successor started beside the running cache, then SIGTERM to the
/// old one, as a DaemonSet with maxSurge does) while the pod resolves without pause:
/// glibc `use-vc` clients (every lookup a new TCP connection) and plain UDP clients,
/// some of whose answers are truncated and retried over TCP. No lookup may fail. The
/// node's `net.ipv4.tcp_migrate_req` stays 0: the cache must not rely on it. No
/// connection of the pod is reset or refused (its kernel's counters).
#[test]
fn twenty_five_hand_overs_fail_no_pod_lookup() {
    if !can_run() {
        return;
    }
    let mut node = Node::build("hand");
    let migrate_req = |node: &Node| {
        node.node
            .run_ok(&["sysctl", "-n", "net.ipv4.tcp_migrate_req"])
            .trim()
            .to_string()
    };
    assert_eq!(migrate_req(&node), "0", "the node's default");
    let mut old = node.start_instance("iptables", 0);
    wait_rules(&node, 24);
    let probes = Probes::build(&node.node.path("probes"));
    let listening = |node: &Node| {
        node.log()
            .matches(&format!("listening (udp+tcp) addr={KUBE_DNS}:53"))
            .count()
    };
    assert!(wait_until(SETTLE, || listening(&node) == 1));
    let stop_file = node.pod.path("stop-load");
    let (tcp_out, udp_out) = (node.pod.path("load-tcp"), node.pod.path("load-udp"));
    let names = ["web", "kubernetes.default", "sixty", "www.example"];
    let tcp_load = probes.start_load(
        &mut node.pod,
        "use-vc",
        USE_VC_THREADS,
        &names,
        &stop_file,
        &tcp_out,
    );
    let udp_load = probes.start_load(&mut node.pod, "", UDP_THREADS, &names, &stop_file, &udp_out);
    let started = std::time::Instant::now();
    for i in 0..HAND_OVERS {
        let new = node.start_instance("iptables", i + 1);
        // A start on a loaded 2-core machine can take seconds; the subject here is
        // what happens to the pod's lookups, not the start time.
        assert!(
            wait_until(Duration::from_secs(30), || listening(&node) == i + 2),
            "successor {i} not listening within 30 s\n{}",
            node.log()
        );
        signal(old, libc::SIGTERM);
        let status = node.node.wait_exit(old, Duration::from_secs(8));
        assert!(
            status.is_some_and(|s| s.success()),
            "hand-over {i}: old process {status:?}\n{}",
            node.log()
        );
        old = new;
    }
    let took = started.elapsed();
    std::fs::write(&stop_file, "").unwrap();
    for pid in [tcp_load, udp_load] {
        assert!(node.pod.wait_exit(pid, Duration::from_secs(20)).is_some());
    }
    let (tcp_ok, tcp_failed, tcp_fails) = load_result(&tcp_out);
    let (udp_ok, udp_failed, udp_fails) = load_result(&udp_out);
    eprintln!(
        "{HAND_OVERS} hand-overs in {took:?}: use-vc {tcp_ok} ok {tcp_failed} failed, UDP {udp_ok} ok {udp_failed} failed"
    );
    // The node's kernel counters that tell why a lookup could fail: no socket for a
    // datagram, a connection reset or dropped, a migration that failed.
    let counters: Vec<String> = node
        .node
        .run_ok(&["nstat", "-az"])
        .lines()
        .filter(|l| {
            [
                "UdpNoPorts",
                "Listen",
                "Migrate",
                "Abort",
                "Rsts",
                "Reset",
                "ReqQFull",
                "InErrors",
                "RcvbufErrors",
                "Drop",
                "Syn",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|v| v != "0"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    eprintln!("node counters: {counters:?}");
    // The pod's side: connections reset once established (TcpEstabResets) or
    // refused while connecting (TcpAttemptFails). (The node's TcpOutRsts also counts
    // upstream connections an exiting instance closes with an answer unread.) Read
    // before the lookups are judged, so a failed lookup is reported with them.
    let pod_counters = node
        .pod
        .run_ok(&["nstat", "-az", "TcpEstabResets", "TcpAttemptFails"]);
    let resets: Vec<&str> = pod_counters
        .lines()
        .filter(|l| l.starts_with("Tcp"))
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|v| v != "0"))
        .collect();
    assert_eq!(
        (tcp_failed, udp_failed),
        (0, 0),
        "failed lookups (start unix ms, took ms, name, error):\n{}\n{}\nnode counters: {counters:?}\npod counters: {resets:?}\nthe processes' stops:\n{}",
        tcp_fails.join("\n"),
        udp_fails.join("\n"),
        node.log()
            .lines()
            .filter(|l| ["WARN", "ERROR", "stopping", "left the", "listening (udp", "exit", "node::", "teardown", "successor"]
                .iter()
                .any(|w| l.contains(w)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        resets.is_empty(),
        "the pod's connections were reset or refused: {resets:?}; node: {counters:?}"
    );
    let log = node.log();
    assert!(
        log.contains("queued connections migrate to the successor"),
        "the TCP hand-over migrates queued connections\n{log}"
    );
    assert!(
        !log.contains("not steered to this instance"),
        "every instance steers new TCP connections to itself (migrate.rs)\n{log}"
    );
    assert!(
        tcp_ok >= 1000 && udp_ok >= 1000,
        "load too low: {tcp_ok} {udp_ok}"
    );
    assert_eq!(
        migrate_req(&node),
        "0",
        "the cache did not rely on the sysctl\n{}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("migrate"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    signal(old, libc::SIGTERM);
    assert!(node.node.wait_exit(old, Duration::from_secs(8)).is_some());
}
