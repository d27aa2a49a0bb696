//! Node integration tests: the real binary inside network namespaces that play the
//! node, with knotd as the cluster DNS and the stub-domain servers, kdig and an
//! in-namespace UDP client as the pods. Each test has its own namespace, removed with
//! everything in it on drop, even on failure.
//!
//! The kernel of the CI machine has no `dummy` link driver, so every test passes
//! `--interface-kind bridge`: a bridge without ports holds local addresses the same
//! way (production keeps node-cache's `dummy`).

mod harness;
mod shard_plan;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{can_run, udp_query, wait_until, Netns, BIN, TEMPLATE};

const SKIP: &str = "NodeLocal DNS Cache: skip conntrack";
const ALLOW: &str = "NodeLocal DNS Cache: allow DNS traffic";
const IFACE: &str = "nodelocaldns";
/// Longest a test waits for something that should take one sync interval (1 s).
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// The upstream DaemonSet's cluster: knotd on 127.0.0.1 serves cluster.local (the
/// cluster DNS, via KUBE_DNS_UPSTREAM_SERVICE_HOST) and example. (the node's
/// resolv.conf upstream); a second knotd on 127.0.0.1:5300 serves acme.local (a stub
/// domain) and reload.test.
fn cluster(test: &str) -> Option<Netns> {
    cluster_on(test, 53)
}

/// [`cluster`] with the cluster knotd on another port of 127.0.0.1.
fn cluster_on(test: &str, port: u16) -> Option<Netns> {
    if !can_run() {
        return None;
    }
    let mut ns = Netns::new(test);
    ns.knotd(
        "cluster",
        &format!("127.0.0.1@{port}"),
        &[
            ("cluster.local.", "kubernetes.default.svc A 10.96.0.1"),
            ("example.", "www A 192.0.2.1"),
        ],
    );
    ns.knotd(
        "stub",
        "127.0.0.1@5300",
        &[
            ("acme.local.", "www A 192.0.2.53"),
            ("reload.test.", "www A 192.0.2.99"),
        ],
    );
    std::fs::write(ns.path("Corefile.base"), TEMPLATE).unwrap();
    std::fs::create_dir(ns.path("kube-dns")).unwrap();
    Some(ns)
}

/// Starts nodelocaldns with the upstream DaemonSet's args plus the test's.
fn start_node(ns: &mut Netns, localip: &str, extra: &[&str]) -> u32 {
    start_node_env(ns, localip, extra, &[])
}

/// [`start_node`] with more environment variables (e.g. PATH).
fn start_node_env(ns: &mut Netns, localip: &str, extra: &[&str], env: &[(&str, &str)]) -> u32 {
    let (conf, base, cm) = (
        ns.path("Corefile"),
        ns.path("Corefile.base"),
        ns.path("kube-dns"),
    );
    let mut command = ns.command(&[BIN]);
    command
        .args(["-localip", localip, "-conf"])
        .arg(&conf)
        .arg("-basecorefile")
        .arg(&base)
        .arg("-kubednscm")
        .arg(&cm)
        .args(["-upstreamsvc", "kube-dns-upstream", "-syncinterval", "1"])
        // No dummy driver on this kernel (see the module comment).
        .args([
            "--interface-kind",
            "bridge",
            "--config-poll-interval",
            "200ms",
        ])
        .args(["--shards", "2"])
        .args(extra)
        .env("KUBE_DNS_UPSTREAM_SERVICE_HOST", "127.0.0.1")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(ns.path("nodelocaldns.log")).unwrap());
    ns.spawn(command)
}

/// A PATH whose first `iptables` and `ip6tables` never return, as when another
/// process holds the xtables lock forever.
fn hanging_iptables_path(ns: &Netns) -> String {
    let fake = ns.path("fakebin");
    std::fs::create_dir(&fake).unwrap();
    for tool in ["iptables", "ip6tables"] {
        let path = fake.join(tool);
        std::fs::write(&path, "#!/bin/sh\nexec sleep 600\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn log(ns: &Netns) -> String {
    std::fs::read_to_string(ns.path("nodelocaldns.log")).unwrap_or_default()
}

fn signal(pid: u32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// The 12 rules of `ip` as iptables-save prints them: (table, line).
fn expected_rules(ip: &str, prefix: u8) -> Vec<(&'static str, String)> {
    let d = format!("-d {ip}/{prefix}");
    let s = format!("-s {ip}/{prefix}");
    let mut rules = Vec::new();
    for p in ["tcp", "udp"] {
        rules.push((
            "raw",
            format!("-A PREROUTING {d} -p {p} -m {p} --dport 53 -m comment --comment \"{SKIP}\" -j NOTRACK"),
        ));
        rules.push((
            "filter",
            format!(
                "-A INPUT {d} -p {p} -m {p} --dport 53 -m comment --comment \"{ALLOW}\" -j ACCEPT"
            ),
        ));
        rules.push((
            "raw",
            format!(
                "-A OUTPUT {s} -p {p} -m {p} --sport 53 -m comment --comment \"{SKIP}\" -j NOTRACK"
            ),
        ));
        rules.push((
            "filter",
            format!(
                "-A OUTPUT {s} -p {p} -m {p} --sport 53 -m comment --comment \"{ALLOW}\" -j ACCEPT"
            ),
        ));
        rules.push((
            "raw",
            format!(
                "-A OUTPUT {d} -p {p} -m {p} --dport 53 -m comment --comment \"{SKIP}\" -j NOTRACK"
            ),
        ));
    }
    rules.push((
        "raw",
        format!(
            "-A OUTPUT {d} -p tcp -m tcp --dport 8080 -m comment --comment \"{SKIP}\" -j NOTRACK"
        ),
    ));
    rules.push((
        "raw",
        format!(
            "-A OUTPUT {s} -p tcp -m tcp --sport 8080 -m comment --comment \"{SKIP}\" -j NOTRACK"
        ),
    ));
    rules
}

/// Our rules in an iptables-save dump: (table, line), sorted.
fn our_rules(save: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut rules = Vec::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
        } else if line.contains("NodeLocal DNS Cache") {
            rules.push((table.clone(), line.to_string()));
        }
    }
    rules.sort();
    rules
}

fn sorted(rules: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    let mut rules: Vec<_> = rules.into_iter().map(|(t, l)| (t.to_string(), l)).collect();
    rules.sort();
    rules
}

fn has_addr(ns: &Netns, ip: &str, prefix: u64) -> bool {
    ns.addresses(IFACE)
        .iter()
        .any(|(_, local, len)| local == ip && *len == prefix)
}

/// Waits until the rules are in, which happens once the server answers.
fn wait_rules(ns: &Netns, ipv6: bool, count: usize) -> bool {
    wait_until(SYNC_WAIT, || {
        our_rules(&ns.iptables_save(ipv6)).len() == count
    })
}

#[test]
fn daemonset_args_set_up_interface_rules_and_answer() {
    let Some(mut ns) = cluster("daemonset") else {
        return;
    };
    let _pid = start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(wait_rules(&ns, false, 24), "rules: {}", log(&ns));

    assert!(
        has_addr(&ns, "169.254.20.10", 32),
        "{:?}",
        ns.addresses(IFACE)
    );
    assert!(has_addr(&ns, "10.96.0.10", 32));
    let mut want = expected_rules("169.254.20.10", 32);
    want.extend(expected_rules("10.96.0.10", 32));
    assert_eq!(our_rules(&ns.iptables_save(false)), sorted(want));
    assert!(our_rules(&ns.iptables_save(true)).is_empty());

    let corefile = std::fs::read_to_string(ns.path("Corefile")).unwrap();
    let directives = corefile.lines().filter(|l| !l.starts_with('#'));
    assert!(
        !directives.clone().any(|l| l.contains("__PILLAR__")),
        "{corefile}"
    );
    assert!(corefile.contains("forward . 127.0.0.1 {"), "{corefile}");
    assert!(
        corefile.contains("forward . /etc/resolv.conf"),
        "{corefile}"
    );

    for ip in ["169.254.20.10", "10.96.0.10"] {
        for transport in ["+notcp", "+tcp"] {
            let at = format!("@{ip}");
            let cluster = ns.kdig(&[transport, &at, "kubernetes.default.svc.cluster.local"]);
            assert_eq!(
                cluster.trim(),
                "10.96.0.1",
                "{ip} {transport}: {}",
                log(&ns)
            );
            let outside = ns.kdig(&[transport, &at, "www.example"]);
            assert_eq!(outside.trim(), "192.0.2.1", "{ip} {transport}");
        }
    }
    let metrics = ns.scrape("127.0.0.1:9353");
    for kind in [
        "iptables",
        "iptables_lock",
        "interface_add",
        "interface_check",
        "configmap",
        "nftables",
    ] {
        let line = format!("coredns_nodecache_setup_errors_total{{errortype=\"{kind}\"}} 0");
        assert!(metrics.contains(&line), "{kind}: {metrics}");
    }
    // node-cache has one registry, served whole here too.
    for family in ["coredns_build_info{", "process_start_time_seconds "] {
        assert!(metrics.contains(family), "{family}: {metrics}");
    }
}

#[test]
fn sync_restores_deleted_rule_and_address() {
    let Some(mut ns) = cluster("restore") else {
        return;
    };
    start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));
    let full = our_rules(&ns.iptables_save(false));

    ns.run_ok(&[
        "iptables",
        "-t",
        "raw",
        "-D",
        "PREROUTING",
        "-p",
        "udp",
        "-d",
        "169.254.20.10",
        "--dport",
        "53",
        "-j",
        "NOTRACK",
        "-m",
        "comment",
        "--comment",
        SKIP,
    ]);
    ns.run_ok(&["ip", "addr", "del", "10.96.0.10/32", "dev", IFACE]);
    assert_eq!(our_rules(&ns.iptables_save(false)).len(), 23);

    assert!(
        wait_until(SYNC_WAIT, || our_rules(&ns.iptables_save(false)) == full
            && has_addr(&ns, "10.96.0.10", 32)),
        "not restored: {}",
        log(&ns)
    );
    assert!(log(&ns).contains("Added back nodelocaldns rule"));
    // The restored address serves again.
    assert!(wait_until(SYNC_WAIT, || ns
        .kdig(&["@10.96.0.10", "www.example"])
        .trim()
        == "192.0.2.1"));
}

#[test]
fn sigterm_removes_rules_and_interface() {
    let Some(mut ns) = cluster("sigterm") else {
        return;
    };
    let pid = start_node(&mut ns, "169.254.20.10,fd00::10", &[]);
    assert!(
        wait_rules(&ns, false, 12) && wait_rules(&ns, true, 12),
        "{}",
        log(&ns)
    );
    // A duplicate left by someone else goes too.
    ns.run_ok(&[
        "iptables",
        "-t",
        "raw",
        "-I",
        "OUTPUT",
        "-p",
        "udp",
        "-d",
        "169.254.20.10",
        "--dport",
        "53",
        "-j",
        "NOTRACK",
        "-m",
        "comment",
        "--comment",
        SKIP,
    ]);
    signal(pid, libc::SIGTERM);
    let status = ns
        .wait_exit(pid, Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", log(&ns));
    assert!(our_rules(&ns.iptables_save(false)).is_empty());
    assert!(our_rules(&ns.iptables_save(true)).is_empty());
    assert!(!ns.link_exists(IFACE));
}

/// A SIGKILLed instance (an OOM kill) leaves its rules and interface; the next start
/// reuses them without duplicates, and its SIGTERM removes everything.
#[test]
fn restart_after_sigkill_reconciles_without_duplicates() {
    let Some(mut ns) = cluster("sigkill") else {
        return;
    };
    let pid = start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));
    signal(pid, libc::SIGKILL);
    assert!(ns.wait_exit(pid, Duration::from_secs(15)).is_some());
    assert_eq!(our_rules(&ns.iptables_save(false)).len(), 24, "left behind");
    assert!(ns.link_exists(IFACE));

    let pid = start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(
        wait_until(SYNC_WAIT, || ns
            .kdig(&["@10.96.0.10", "kubernetes.default.svc.cluster.local"])
            .trim()
            == "10.96.0.1"),
        "{}",
        log(&ns)
    );
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));
    let rules = our_rules(&ns.iptables_save(false));
    assert_eq!(
        rules.len(),
        24,
        "no duplicates after the restart: {rules:?}"
    );
    let want = expected_rules("169.254.20.10", 32)
        .into_iter()
        .chain(expected_rules("10.96.0.10", 32))
        .collect();
    assert_eq!(rules, sorted(want), "exactly the node-cache rule set");
    assert!(has_addr(&ns, "169.254.20.10", 32) && has_addr(&ns, "10.96.0.10", 32));

    signal(pid, libc::SIGTERM);
    let status = ns
        .wait_exit(pid, Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", log(&ns));
    assert!(our_rules(&ns.iptables_save(false)).is_empty());
    assert!(!ns.link_exists(IFACE));
}

#[test]
fn skipteardown_keeps_rules_and_interface() {
    let Some(mut ns) = cluster("skipteardown") else {
        return;
    };
    let pid = start_node(&mut ns, "169.254.20.10,10.96.0.10", &["-skipteardown"]);
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));
    signal(pid, libc::SIGTERM);
    assert!(ns.wait_exit(pid, Duration::from_secs(15)).is_some());
    assert_eq!(our_rules(&ns.iptables_save(false)).len(), 24);
    assert!(has_addr(&ns, "169.254.20.10", 32) && has_addr(&ns, "10.96.0.10", 32));
}

#[test]
fn configmap_stub_domain_is_served() {
    let Some(mut ns) = cluster("stub") else {
        return;
    };
    start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));
    // Without the stub domain, the cluster DNS does not know acme.local.
    assert_eq!(ns.kdig(&["@169.254.20.10", "www.acme.local"]).trim(), "");

    write_configmap(&ns, "stubDomains", r#"{"acme.local": ["127.0.0.1:5300"]}"#);
    assert!(
        wait_until(SYNC_WAIT, || ns
            .kdig(&["@169.254.20.10", "www.acme.local"])
            .trim()
            == "192.0.2.53"),
        "stub domain not served: {}",
        log(&ns)
    );
    let corefile = std::fs::read_to_string(ns.path("Corefile")).unwrap();
    assert!(
        corefile.contains("acme.local:53 {\n    errors\n    cache 30\n    bind 169.254.20.10 10.96.0.10\n    forward . 127.0.0.1:5300\n}"),
        "{corefile}"
    );
    assert_eq!(
        ns.kdig(&["+tcp", "@10.96.0.10", "www.acme.local"]).trim(),
        "192.0.2.53"
    );
}

#[test]
fn invalid_configmap_keeps_config_and_counts_error() {
    let Some(mut ns) = cluster("badcm") else {
        return;
    };
    write_configmap(&ns, "stubDomains", r#"{"acme.local": ["127.0.0.1:5300"]}"#);
    start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));
    assert_eq!(
        ns.kdig(&["@169.254.20.10", "www.acme.local"]).trim(),
        "192.0.2.53"
    );
    let before = std::fs::read_to_string(ns.path("Corefile")).unwrap();

    write_configmap(&ns, "stubDomains", r#"{"acme.local": ["127.0.0.1:5300"]"#);
    let counted = "coredns_nodecache_setup_errors_total{errortype=\"configmap\"} 1";
    assert!(
        wait_until(SYNC_WAIT, || ns.scrape("127.0.0.1:9353").contains(counted)),
        "{}",
        ns.scrape("127.0.0.1:9353")
    );
    // An FQDN server is rejected too, not a crash (kubernetes/dns#539).
    write_configmap(&ns, "stubDomains", r#"{"acme.local": ["ns.acme.local"]}"#);
    let twice = "coredns_nodecache_setup_errors_total{errortype=\"configmap\"} 2";
    assert!(wait_until(SYNC_WAIT, || ns
        .scrape("127.0.0.1:9353")
        .contains(twice)));

    assert_eq!(
        std::fs::read_to_string(ns.path("Corefile")).unwrap(),
        before
    );
    assert_eq!(
        ns.kdig(&["@169.254.20.10", "www.acme.local"]).trim(),
        "192.0.2.53"
    );
    assert_eq!(ns.kdig(&["@10.96.0.10", "www.example"]).trim(), "192.0.2.1");
}

#[test]
fn template_change_under_load_loses_no_query() {
    let Some(mut ns) = cluster("reload") else {
        return;
    };
    start_node(&mut ns, "169.254.20.10,10.96.0.10", &[]);
    assert!(wait_rules(&ns, false, 24), "{}", log(&ns));

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let name = ns.name.clone();
        std::thread::spawn(move || {
            let path = PathBuf::from("/run/netns").join(name);
            let file = std::fs::File::open(path).unwrap();
            use std::os::fd::AsRawFd;
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let servers: [SocketAddr; 2] = [
                "169.254.20.10:53".parse().unwrap(),
                "10.96.0.10:53".parse().unwrap(),
            ];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let name = ["www.example.", "kubernetes.default.svc.cluster.local."][i % 2];
                let rcode = udp_query(&socket, servers[i / 2 % 2], name);
                sent.fetch_add(1, Ordering::Relaxed);
                if rcode != Some(0) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let extra =
        "reload.test:53 {\n    bind __PILLAR__LOCAL__DNS__\n    forward . 127.0.0.1:5300\n}\n";
    for round in 0..3 {
        let mut template = TEMPLATE.to_string();
        if round % 2 == 0 {
            template.push_str(extra);
        }
        template.push_str(&format!("# round {round}\n"));
        std::fs::write(ns.path("Corefile.base"), template).unwrap();
        let want = if round % 2 == 0 { "192.0.2.99" } else { "" };
        assert!(
            wait_until(SYNC_WAIT, || ns
                .kdig(&["@169.254.20.10", "www.reload.test"])
                .trim()
                == want),
            "round {round}: {}",
            log(&ns)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 100, "too little load: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} queries failed: {}", log(&ns));
    assert!(log(&ns).matches("configuration reloaded").count() >= 3);
}

#[test]
fn dual_stack_in_one_process() {
    let Some(mut ns) = cluster("dualstack") else {
        return;
    };
    start_node(&mut ns, "169.254.20.10,fd00::10", &[]);
    assert!(
        wait_rules(&ns, false, 12) && wait_rules(&ns, true, 12),
        "{}",
        log(&ns)
    );
    assert!(has_addr(&ns, "169.254.20.10", 32) && has_addr(&ns, "fd00::10", 128));
    assert_eq!(
        our_rules(&ns.iptables_save(true)),
        sorted(expected_rules("fd00::10", 128))
    );
    for server in ["@169.254.20.10", "@fd00::10"] {
        for transport in ["+notcp", "+tcp"] {
            let answer = ns.kdig(&[transport, server, "www.example"]);
            assert_eq!(
                answer.trim(),
                "192.0.2.1",
                "{server} {transport}: {}",
                log(&ns)
            );
        }
    }
}

/// `nft list table inet nodelocaldns` as (chain, rule) without comments and handles,
/// sorted; empty without the table.
fn nft_table(ns: &Netns) -> Vec<(String, String)> {
    let out = ns.run(&["nft", "list", "table", "inet", "nodelocaldns"]);
    let mut chain = String::new();
    let mut rules = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("chain ") {
            chain = name.trim_end_matches(" {").to_string();
        } else if let Some((rule, _)) = line.split_once(" comment ") {
            rules.push((chain.clone(), rule.to_string()));
        }
    }
    rules.sort();
    rules
}

/// The nftables mode, dual-stack: one `inet` table with both families' rules, the
/// exact chains, answers on both addresses, nothing in iptables; -skipteardown keeps
/// the table.
#[test]
fn nftables_mode_dual_stack_one_table_and_skipteardown() {
    let Some(mut ns) = cluster("nftdual") else {
        return;
    };
    harness::require(&["nft"]);
    let pid = start_node(
        &mut ns,
        "169.254.20.10,fd00::10",
        &["--rules=nftables", "-skipteardown"],
    );
    assert!(
        wait_until(SYNC_WAIT, || nft_table(&ns).len() == 24),
        "{:?} {}",
        nft_table(&ns),
        log(&ns)
    );
    let text = ns.run_ok(&["nft", "list", "table", "inet", "nodelocaldns"]);
    for chain in [
        "type filter hook prerouting priority raw; policy accept;",
        "type filter hook output priority raw; policy accept;",
        "type filter hook input priority filter; policy accept;",
        "type filter hook output priority filter; policy accept;",
    ] {
        assert!(text.contains(chain), "{chain}: {text}");
    }
    let rules = nft_table(&ns);
    let has = |chain: &str, rule: &str| rules.contains(&(chain.to_string(), rule.to_string()));
    for (ip, family) in [("169.254.20.10", "ip"), ("fd00::10", "ip6")] {
        for p in ["tcp", "udp"] {
            assert!(
                has(
                    "raw-prerouting",
                    &format!("{family} daddr {ip} {p} dport 53 notrack")
                ),
                "{rules:?}"
            );
            assert!(has(
                "filter-input",
                &format!("{family} daddr {ip} {p} dport 53 accept")
            ));
            assert!(has(
                "raw-output",
                &format!("{family} saddr {ip} {p} sport 53 notrack")
            ));
            assert!(has(
                "raw-output",
                &format!("{family} daddr {ip} {p} dport 53 notrack")
            ));
            assert!(has(
                "filter-output",
                &format!("{family} saddr {ip} {p} sport 53 accept")
            ));
        }
        assert!(has(
            "raw-output",
            &format!("{family} daddr {ip} tcp dport 8080 notrack")
        ));
        assert!(has(
            "raw-output",
            &format!("{family} saddr {ip} tcp sport 8080 notrack")
        ));
    }
    assert!(text.contains("comment \"NodeLocal DNS Cache: skip conntrack\""));
    assert!(our_rules(&ns.iptables_save(false)).is_empty());
    assert!(our_rules(&ns.iptables_save(true)).is_empty());
    for server in ["@169.254.20.10", "@fd00::10"] {
        for transport in ["+notcp", "+tcp"] {
            let answer = ns.kdig(&[transport, server, "www.example"]);
            assert_eq!(answer.trim(), "192.0.2.1", "{server} {transport}");
        }
    }
    signal(pid, libc::SIGTERM);
    assert!(ns.wait_exit(pid, Duration::from_secs(15)).is_some());
    assert_eq!(nft_table(&ns), rules, "-skipteardown keeps the table");

    // Switching to the iptables mode removes the stale table, which would outlive
    // the teardown.
    let pid = start_node(&mut ns, "169.254.20.10,fd00::10", &["--rules=iptables"]);
    assert!(
        wait_rules(&ns, false, 12) && wait_rules(&ns, true, 12),
        "{}",
        log(&ns)
    );
    assert!(wait_until(SYNC_WAIT, || nft_table(&ns).is_empty()));
    assert!(log(&ns).contains("removed the stale table inet nodelocaldns"));
    signal(pid, libc::SIGTERM);
    assert!(ns.wait_exit(pid, Duration::from_secs(15)).is_some());
}

/// A table the nftables mode refuses to write (more local IPs than it holds) is an
/// error counted as `nftables`, and nothing is half-installed.
#[test]
fn nftables_errors_are_counted() {
    let Some(mut ns) = cluster("nfterr") else {
        return;
    };
    harness::require(&["nft"]);
    let ips: Vec<String> = (1..=17).map(|i| format!("169.254.20.{i}")).collect();
    start_node(
        &mut ns,
        &ips.join(","),
        &["--rules=nftables", "--shards", "1"],
    );
    let counted = |ns: &Netns| {
        ns.scrape("127.0.0.1:9353").lines().any(|l| {
            l.starts_with("coredns_nodecache_setup_errors_total{errortype=\"nftables\"} ")
                && !l.ends_with(" 0")
        })
    };
    assert!(wait_until(SYNC_WAIT, || counted(&ns)), "{}", log(&ns));
    assert!(
        log(&ns).contains("17 local IPs: the nftables table holds at most 16"),
        "{}",
        log(&ns)
    );
    assert!(nft_table(&ns).is_empty());
    let metrics = ns.scrape("127.0.0.1:9353");
    assert!(
        metrics.contains("coredns_nodecache_setup_errors_total{errortype=\"iptables\"} 0"),
        "{metrics}"
    );
}

/// The nftables mode needs no iptables: with an `iptables` that hangs first on PATH
/// (the xtables lock held forever), the table goes in, a deleted table comes back,
/// and the teardown deletes it in time.
#[test]
fn nftables_mode_is_unaffected_by_a_hanging_iptables() {
    let Some(mut ns) = cluster("nfthang") else {
        return;
    };
    harness::require(&["nft"]);
    let path = hanging_iptables_path(&ns);
    let pid = start_node_env(
        &mut ns,
        "169.254.20.10",
        &["--rules=nftables", "--shards", "1"],
        &[("PATH", &path)],
    );
    assert!(
        wait_until(SYNC_WAIT, || nft_table(&ns).len() == 12),
        "{}",
        log(&ns)
    );
    ns.run_ok(&["nft", "delete", "table", "inet", "nodelocaldns"]);
    assert!(
        wait_until(SYNC_WAIT, || nft_table(&ns).len() == 12),
        "not restored: {}",
        log(&ns)
    );
    let started = std::time::Instant::now();
    signal(pid, libc::SIGTERM);
    let status = ns.wait_exit(pid, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", log(&ns));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(nft_table(&ns).is_empty(), "{}", log(&ns));
    assert!(!ns.link_exists(IFACE));
    assert!(!log(&ns).contains("did not finish in time"), "{}", log(&ns));
}

#[test]
fn cilium_lrp_mode_touches_nothing() {
    // Listening on 0.0.0.0:53 excludes any other :53 socket in the namespace, so the
    // upstream knotd is on 127.0.0.1:1053, named by the ConfigMap's upstreamNameservers.
    let Some(mut ns) = cluster_on("lrp", 1053) else {
        return;
    };
    let template = ".:53 {\n    errors\n    cache 30\n    bind __PILLAR__LOCAL__DNS__\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n        force_tcp\n    }\n}\n";
    std::fs::write(ns.path("Corefile.base"), template).unwrap();
    write_configmap(&ns, "upstreamNameservers", r#"["127.0.0.1:1053"]"#);
    let before = (ns.iptables_save(false), ns.iptables_save(true));
    let pid = start_node(
        &mut ns,
        "0.0.0.0",
        &[
            "-setupinterface=false",
            "-setupiptables=false",
            "-skipteardown",
        ],
    );
    // Serves on every address: loopback and another one of the namespace.
    ns.run_ok(&["ip", "addr", "add", "192.0.2.200/32", "dev", "lo"]);
    assert!(
        wait_until(SYNC_WAIT, || ns.kdig(&["@127.0.0.1", "www.example"]).trim()
            == "192.0.2.1"),
        "{}",
        log(&ns)
    );
    assert_eq!(
        ns.kdig(&["+tcp", "@192.0.2.200", "www.example"]).trim(),
        "192.0.2.1"
    );
    let corefile = std::fs::read_to_string(ns.path("Corefile")).unwrap();
    // ConfigMap upstreams are reached over UDP: force_tcp dropped, as node-cache does.
    assert!(
        corefile.contains("bind 0.0.0.0\n    forward . 127.0.0.1:1053\n}"),
        "{corefile}"
    );
    assert!(!ns.link_exists(IFACE));
    assert_eq!(our_rules(&ns.iptables_save(false)), Vec::new());
    signal(pid, libc::SIGTERM);
    assert!(ns.wait_exit(pid, Duration::from_secs(15)).is_some());
    let rule_lines = |save: &str| save.lines().filter(|l| l.starts_with("-A")).count();
    assert_eq!(rule_lines(&ns.iptables_save(false)), rule_lines(&before.0));
    assert_eq!(rule_lines(&ns.iptables_save(true)), rule_lines(&before.1));
}

fn write_configmap(ns: &Netns, key: &str, value: &str) {
    // As the kubelet does: write aside, then swap atomically.
    let path = ns.path("kube-dns").join(key);
    let aside = ns.path(&format!("{key}.new"));
    std::fs::write(&aside, value).unwrap();
    std::fs::rename(aside, path).unwrap();
}

#[test]
fn flags_version_help_and_errors() {
    let out = Command::new(BIN).arg("-version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "-localip",
        "-skipteardown",
        "-dns.port",
        "--interface-kind",
        "embedded default",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }

    for (args, name) in [
        (&["-nosuchflag"][..], "nosuchflag"),
        (&["-syncinterval", "often"][..], "syncinterval"),
        (&["-localip", "169.254.20.10,bogus"][..], "localip"),
        (&["-setupiptables=perhaps"][..], "setupiptables"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{args:?}: {err}");
    }
    // A template without -localip cannot be filled in.
    let out = Command::new(BIN)
        .args(["-basecorefile", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-localip"));
}

#[test]
fn teardown_is_bounded_when_iptables_hangs() {
    let Some(mut ns) = cluster("hang") else {
        return;
    };
    // An `iptables` that never returns: first on PATH for the node process only.
    let path = hanging_iptables_path(&ns);
    let conf = ns.path("Corefile");
    let mut command = ns.command(&[BIN]);
    command
        .args(["-localip", "169.254.20.10", "-conf"])
        .arg(&conf)
        .arg("-basecorefile")
        .arg(ns.path("Corefile.base"))
        .args(["-upstreamsvc", "kube-dns-upstream", "-syncinterval", "1"])
        .args([
            "--interface-kind",
            "bridge",
            "--teardown-timeout",
            "1s",
            "--shards",
            "1",
        ])
        .env("KUBE_DNS_UPSTREAM_SERVICE_HOST", "127.0.0.1")
        .env("PATH", path)
        .stderr(std::fs::File::create(ns.path("nodelocaldns.log")).unwrap());
    let pid = ns.spawn(command);
    // Serving, the sync pass stuck in iptables.
    assert!(
        wait_until(SYNC_WAIT, || ns
            .kdig(&["@169.254.20.10", "www.example"])
            .trim()
            == "192.0.2.1"),
        "{}",
        log(&ns)
    );
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    signal(pid, libc::SIGTERM);
    assert!(
        ns.wait_exit(pid, Duration::from_secs(10)).is_some(),
        "no exit: {}",
        log(&ns)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        log(&ns).contains("teardown did not finish in time"),
        "{}",
        log(&ns)
    );
}

#[test]
fn sigusr1_reloads_at_once() {
    let Some(mut ns) = cluster("sigusr1") else {
        return;
    };
    // Polling effectively off: only the signal can pick the change up.
    let pid = start_node(
        &mut ns,
        "169.254.20.10",
        &["--config-poll-interval", "1h", "-reloadwithsignal"],
    );
    assert!(wait_rules(&ns, false, 12), "{}", log(&ns));
    write_configmap(&ns, "stubDomains", r#"{"acme.local": ["127.0.0.1:5300"]}"#);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ns.kdig(&["@169.254.20.10", "www.acme.local"]).trim(), "");
    signal(pid, libc::SIGUSR1);
    assert!(
        wait_until(SYNC_WAIT, || ns
            .kdig(&["@169.254.20.10", "www.acme.local"])
            .trim()
            == "192.0.2.53"),
        "{}",
        log(&ns)
    );
}
