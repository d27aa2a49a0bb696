//! The doctor's checks. Each reads the node (links, iptables-save, conntrack, DNS
//! probes with a bounded wait) and turns what it found into [`Check`]s with a hint
//! in plain words; none changes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{netif, Check, Mode, Status};
use crate::cli::Cli;
use crate::node::rules::{self, Rule, COMMENT_SKIP_CONNTRACK};
use crate::node::sync;

/// Longest wait for one DNS answer or TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(crate::limits::PROBE_MILLIS);
/// Upstreams probed at most (a Corefile names a handful).
const UPSTREAMS_MAX: usize = 16;
/// Marker shared by both of node-cache's rule comments.
pub(super) const OUR_COMMENT: &str = "NodeLocal DNS Cache";

pub fn interface(cli: &Cli, mode: Mode, ips: &[IpAddr]) -> Vec<Check> {
    let name = &cli.interfacename;
    let all = netif::addresses();
    let mut checks = Vec::new();
    if mode == Mode::CiliumLrp {
        checks.push(match netif::link(name) {
            Some(_) => Check::new(
                "interface",
                Status::Fail,
                format!("{name} exists, but in Cilium LRP mode nothing should be on the node"),
            )
            .hint(format!(
                "left over from an iptables/IPVS-mode install: with it, DNS to its addresses \
                 never reaches Cilium's redirect. Remove it: ip link del {name}"
            )),
            None => Check::new("interface", Status::Ok, format!("no {name} (Cilium LRP)")),
        });
        return checks;
    }
    if !cli.setupinterface {
        checks.push(Check::new(
            "interface",
            Status::Skip,
            "-setupinterface=false: not managed by the cache",
        ));
        return checks;
    }
    let held = all.get(name.as_str()).cloned().unwrap_or_default();
    let missing: Vec<String> = ips
        .iter()
        .filter(|ip| !held.contains(ip))
        .map(ToString::to_string)
        .collect();
    checks.push(match netif::link(name) {
        None => Check::new("interface", Status::Fail, format!("{name} does not exist"))
            .hint(format!(
                "the cache creates {name} at start and re-creates it every -syncinterval; \
                 is the cache running (with -setupinterface)?"
            )),
        Some(false) => Check::new("interface", Status::Fail, format!("{name} is down"))
            .hint(format!("ip link set {name} up (the cache does it at its next sync)")),
        Some(true) if !missing.is_empty() => Check::new(
            "interface",
            Status::Fail,
            format!("{name} lacks {}", missing.join(", ")),
        )
        .hint("packets to a missing address are routed away instead of reaching the cache; it re-adds it at its next sync"),
        Some(true) => Check::new(
            "interface",
            Status::Ok,
            format!("{name} is up and holds {}", join(ips)),
        ),
    });
    if mode == Mode::Ipvs {
        if let Some(ipvs) = all.get("kube-ipvs0") {
            let both: Vec<_> = ips.iter().filter(|ip| ipvs.contains(ip)).collect();
            if !both.is_empty() {
                checks.push(
                    Check::new(
                        "ipvs",
                        Status::Fail,
                        format!("kube-ipvs0 also holds {}", join(&both)),
                    )
                    .hint("in IPVS mode -localip must not include the kube-dns IP"),
                );
            }
        }
    }
    checks
}

/// A rule as (table, chain, proto, source, destination, sport, dport, target): the
/// same key for our rule spec and for the line iptables-save prints.
type RuleKey = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn rule_key(table: &str, chain: &str, words: &[String]) -> RuleKey {
    let mut key: RuleKey = (
        table.into(),
        chain.into(),
        "".into(),
        "".into(),
        "".into(),
        "".into(),
        "".into(),
        "".into(),
    );
    let strip = |a: &str| {
        a.trim_end_matches("/32")
            .trim_end_matches("/128")
            .to_string()
    };
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let next = || words.clone().next().cloned().unwrap_or_default();
        match word.as_str() {
            "-A" | "-I" => key.1 = next(),
            "-p" => key.2 = next(),
            "-s" => key.3 = strip(&next()),
            "-d" => key.4 = strip(&next()),
            "--sport" => key.5 = next(),
            "--dport" => key.6 = next(),
            "-j" => key.7 = next(),
            _ => continue,
        }
        words.next();
    }
    key
}

/// Splits a rule line into words, keeping a quoted comment as one word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
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

/// Our rules in an iptables-save dump, counted by key.
fn saved_rules(save: &str) -> BTreeMap<RuleKey, usize> {
    let mut table = String::new();
    let mut found = BTreeMap::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
        } else if line.starts_with("-A ") && line.contains(OUR_COMMENT) {
            *found.entry(rule_key(&table, "", &words(line))).or_insert(0) += 1;
        }
    }
    found
}

fn expected_key(rule: &Rule) -> RuleKey {
    rule_key(rule.table, rule.chain, &words(&rule.spec))
}

pub(super) fn iptables_save(ipv6: bool) -> Result<String, String> {
    let cmd = if ipv6 {
        "ip6tables-save"
    } else {
        "iptables-save"
    };
    let out = Command::new(cmd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn rules(cli: &Cli, mode: Mode, ips: &[IpAddr]) -> Vec<Check> {
    let mut dumps = Vec::new();
    for ipv6 in [false, true] {
        let needed = mode == Mode::CiliumLrp || ips.iter().any(|ip| ip.is_ipv6() == ipv6);
        if !needed {
            continue;
        }
        match iptables_save(ipv6) {
            Ok(text) => dumps.push(text),
            Err(err) => {
                return vec![Check::new(
                "rules",
                Status::Warn,
                format!("cannot read the rules: {err}"),
            )
            .hint(
                "run the doctor as root in the node's network namespace, with iptables installed",
            )]
            }
        }
    }
    let mut found: BTreeMap<RuleKey, usize> = BTreeMap::new();
    for dump in &dumps {
        for (key, count) in saved_rules(dump) {
            *found.entry(key).or_insert(0) += count;
        }
    }
    let total: usize = found.values().sum();
    if mode == Mode::CiliumLrp || !cli.setupiptables {
        let status = if total == 0 { Status::Ok } else { Status::Fail };
        let check = Check::new(
            "rules",
            status,
            format!("{total} NodeLocal DNS Cache rules on the node (the cache installs none in this mode)"),
        );
        return vec![if total == 0 {
            check
        } else {
            check.hint("left over from an iptables/IPVS-mode install: they skip conntrack for DNS that Cilium or kube-proxy should handle; delete them (iptables-save | grep 'NodeLocal DNS Cache')")
        }];
    }
    let expected = rules::rules_for(ips, cli.dns_port, cli.health_port);
    let mut missing = Vec::new();
    let mut doubled = Vec::new();
    let mut notrack_missing: BTreeSet<IpAddr> = BTreeSet::new();
    let keys: BTreeSet<RuleKey> = expected.iter().map(expected_key).collect();
    for rule in &expected {
        match found.get(&expected_key(rule)).copied().unwrap_or(0) {
            0 => {
                missing.push(rule.to_string());
                if rule.spec.contains("NOTRACK") && rule.spec.contains(COMMENT_SKIP_CONNTRACK) {
                    if let Some(ip) = ips.iter().find(|ip| rule.spec.contains(&format!(" {ip} "))) {
                        notrack_missing.insert(*ip);
                    }
                }
            }
            1 => {}
            n => doubled.push(format!("{rule} ({n} copies)")),
        }
    }
    let foreign = found.keys().filter(|k| !keys.contains(*k)).count();
    let mut checks = Vec::new();
    if missing.is_empty() && doubled.is_empty() {
        checks.push(Check::new(
            "rules",
            Status::Ok,
            format!("all {} rules present exactly once", expected.len()),
        ));
    }
    if !missing.is_empty() {
        checks.push(
            Check::new(
                "rules",
                Status::Fail,
                missing_text(&missing, expected.len()),
            )
            .hint("the cache installs them once it answers and re-adds them every -syncinterval; is it running with -setupiptables? A lock error shows in coredns_nodecache_setup_errors_total"),
        );
    }
    if !doubled.is_empty() {
        checks.push(
            Check::new("rules", Status::Fail, format!("duplicates: {}", doubled.join("; ")))
                .hint("another version or iptables backend (nft vs legacy) added them too; each should be there once"),
        );
    }
    for ip in notrack_missing {
        checks.push(
            Check::new("notrack", Status::Fail, format!("a NOTRACK rule for {ip} is missing"))
                .hint(format!("DNS to {ip} goes through conntrack: the table fills and kube-proxy's DNAT can send queries past the cache")),
        );
    }
    if foreign > 0 {
        checks.push(
            Check::new("rules", Status::Warn, format!("{foreign} other NodeLocal DNS Cache rules (other IPs or ports)"))
                .hint("left by a cache with other -localip/-dns.port/-health-port; delete them if that cache is gone"),
        );
    }
    checks
}

pub fn conntrack(cli: &Cli, mode: Mode, ips: &[IpAddr]) -> Vec<Check> {
    if mode == Mode::CiliumLrp {
        return vec![Check::new(
            "conntrack",
            Status::Skip,
            "Cilium LRP: redirected in eBPF",
        )];
    }
    let own: BTreeSet<IpAddr> = netif::addresses().into_values().flatten().collect();
    let mut checks = Vec::new();
    for ip in ips {
        // Entries by origin: the node itself (e.g. the cache's start-up probe, sent
        // before its rules were in) or anything else (pods: the bypass is broken).
        let (mut from_node, mut from_others) = (0, 0);
        for proto in ["udp", "tcp"] {
            let out = Command::new("conntrack")
                .args(["-L", "-d", &ip.to_string(), "-p", proto, "--dport"])
                .arg(cli.dns_port.to_string())
                .stdin(Stdio::null())
                .output();
            let out = match out {
                Ok(out) if out.status.success() => out,
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    return vec![Check::new(
                        "conntrack",
                        Status::Warn,
                        format!("cannot list: {err}"),
                    )];
                }
                Err(_) => {
                    return vec![Check::new(
                    "conntrack",
                    Status::Warn,
                    "conntrack is not installed",
                )
                .hint(
                    "install conntrack (Debian package conntrack) to check the conntrack bypass",
                )]
                }
            };
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let source = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("src="))
                    .and_then(|s| s.parse::<IpAddr>().ok());
                match source {
                    Some(source) if own.contains(&source) => from_node += 1,
                    Some(_) => from_others += 1,
                    None => {}
                }
            }
        }
        let name = format!("conntrack {ip}");
        checks.push(if from_others > 0 {
            Check::new(
                name,
                Status::Fail,
                format!("{from_others} conntrack entries for DNS from clients to {ip}"),
            )
            .hint("DNS to the local IP should skip conntrack (raw NOTRACK rules): check the rules; flows that began while they were missing expire within minutes")
        } else if from_node > 0 {
            Check::new(
                name,
                Status::Warn,
                format!("{from_node} conntrack entries for DNS from this node to {ip}"),
            )
            .hint("usually the cache's start-up probe, sent before its rules were in; they expire within a minute")
        } else {
            Check::new(name, Status::Ok, format!("no entries for DNS to {ip}"))
        });
    }
    checks
}

/// True when `target` answers `. IN NS` over TCP with our ID (any rcode).
pub fn tcp_answers(target: SocketAddr) -> Result<(), String> {
    let id: u16 = rand::random();
    let query = crate::wire::root_ns_query(id);
    let mut stream =
        TcpStream::connect_timeout(&target, PROBE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(PROBE_TIMEOUT));
    crate::wire::tcp::write_frame(&mut stream, &query).map_err(|e| format!("send: {e}"))?;
    let reply = crate::wire::tcp::read_frame(&mut stream).map_err(|e| format!("no answer: {e}"))?;
    if crate::wire::answer_matches(&query, &reply, id) {
        Ok(())
    } else {
        Err("not a DNS answer to our query".into())
    }
}

pub fn answers(cli: &Cli, ips: &[IpAddr]) -> Vec<Check> {
    let mut checks = Vec::new();
    for ip in ips {
        let target = sync::probe_target(std::slice::from_ref(ip), cli.dns_port);
        checks.push(if sync::probe(target) {
            Check::new(format!("udp {target}"), Status::Ok, "the cache answers")
        } else {
            Check::new(format!("udp {target}"), Status::Fail, "no answer over UDP")
                .hint("is the cache running, and does its Corefile bind this address?")
        });
        checks.push(match tcp_answers(target) {
            Ok(()) => Check::new(format!("tcp {target}"), Status::Ok, "the cache answers"),
            Err(err) => Check::new(
                format!("tcp {target}"),
                Status::Fail,
                format!("no answer over TCP: {err}"),
            )
            .hint("is the cache running, and does its Corefile bind this address?"),
        });
    }
    checks
}

/// The interface holds the local IPs but nothing answers there: pods' queries
/// vanish instead of falling back to kube-dns.
pub fn stale_interface(cli: &Cli, mode: Mode, ips: &[IpAddr], so_far: &[Check]) -> Option<Check> {
    if mode == Mode::CiliumLrp {
        return None;
    }
    let name = &cli.interfacename;
    let all = netif::addresses();
    let held: Vec<IpAddr> = ips
        .iter()
        .copied()
        .filter(|ip| netif::holder(&all, *ip) == Some(name.as_str()))
        .collect();
    let silent = so_far
        .iter()
        .filter(|c| c.name.starts_with("udp ") && c.status == Status::Fail)
        .count();
    (!held.is_empty() && silent == ips.len()).then(|| {
        Check::new(
            "stale interface",
            Status::Fail,
            format!("{name} holds {} but no cache answers there", join(&held)),
        )
        .hint(format!(
            "a cache killed without its teardown (or run with -skipteardown) left it: DNS to these addresses times out instead of reaching kube-dns. Start the cache, or remove the leftovers: ip link del {name} and the NodeLocal DNS Cache rules"
        ))
    })
}

pub fn upstreams(cli: &Cli) -> Vec<Check> {
    let path = cli.conf_path();
    let config = match crate::config::load_corefile(&path) {
        Ok(config) => config,
        Err(err) => {
            return vec![Check::new(
                "corefile",
                Status::Fail,
                format!("cannot read {}: {err}", path.display()),
            )
            .hint("the cache writes -conf from -basecorefile at start; is -conf the cache's?")]
        }
    };
    let mut seen = BTreeSet::new();
    // Each upstream with whether it is a `tls://` one (then only TCP is checked:
    // the doctor speaks no TLS).
    let targets: Vec<(SocketAddr, bool)> = config
        .servers
        .iter()
        .filter_map(|b| b.forward.as_ref())
        .flat_map(|f| f.to.iter().map(|&a| (a, f.tls_upstream(a).is_some())))
        .filter(|(addr, _)| seen.insert(*addr))
        .take(UPSTREAMS_MAX)
        .collect();
    if targets.is_empty() {
        return vec![Check::new(
            "upstreams",
            Status::Warn,
            "the Corefile forwards nowhere",
        )];
    }
    targets
        .into_iter()
        .map(|(target, tls)| {
            let checked = if tls {
                TcpStream::connect_timeout(&target, PROBE_TIMEOUT)
                    .map(|_| "accepts TCP (DNS over TLS: the handshake is not checked)")
                    .map_err(|e| format!("connect: {e}"))
            } else {
                tcp_answers(target).map(|()| "answers over TCP")
            };
            match checked {
                Ok(what) => Check::new(format!("upstream {target}"), Status::Ok, what),
                Err(err) => Check::new(format!("upstream {target}"), Status::Fail, format!("unreachable over TCP: {err}"))
                    .hint("the cache forwards (force_tcp for the cluster domain) to this server; check the kube-dns-upstream Service, its endpoints and network policies"),
            }
        })
        .collect()
}

pub fn resolv_conf(path: &Path, ips: &[IpAddr]) -> Check {
    let name = format!("resolv.conf {}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return Check::new(name, Status::Fail, format!("cannot read: {err}"))
                .hint("the . block forwards to the node's resolv.conf unless the kube-dns ConfigMap sets upstreamNameservers")
        }
    };
    let servers: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().split('%').next()?.parse().ok())
        .collect();
    if servers.is_empty() {
        return Check::new(name, Status::Fail, "no nameserver")
            .hint("names outside the cluster will not resolve through the . block");
    }
    if let Some(ip) = servers.iter().find(|ip| ips.contains(ip)) {
        return Check::new(name, Status::Fail, format!("nameserver {ip} is the cache itself"))
            .hint("a forwarding loop: give the node's real resolvers (kubelet --resolv-conf) or set upstreamNameservers");
    }
    if servers.iter().all(IpAddr::is_loopback) {
        return Check::new(name, Status::Warn, format!("only loopback nameservers ({})", join(&servers)))
            .hint("a local stub (systemd-resolved): reachable from the host network only; prefer /run/systemd/resolve/resolv.conf");
    }
    Check::new(name, Status::Ok, format!("nameservers {}", join(&servers)))
}

/// "none of the 24 rules", or the first few missing ones.
fn missing_text(missing: &[String], total: usize) -> String {
    const SHOWN: usize = 3;
    if missing.len() == total {
        return format!("none of the {total} rules is present");
    }
    let mut text = format!("{} of {total} rules missing: ", missing.len());
    text.push_str(
        &missing
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    );
    if missing.len() > SHOWN {
        text.push_str(&format!("; and {} more", missing.len() - SHOWN));
    }
    text
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_specs_match_iptables_save_lines() {
        let ips: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "fd00::10".parse().unwrap(),
        ];
        let expected = rules::rules_for(&ips, 53, 8080);
        let save = "*raw\n:PREROUTING ACCEPT [0:0]\n\
            -A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK\n\
            -A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK\n\
            -A OUTPUT -s 169.254.20.10/32 -p tcp -m tcp --sport 8080 -m comment --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK\n\
            -A OUTPUT -d 10.0.0.1/32 -p tcp -m tcp --dport 53 -j NOTRACK\n\
            COMMIT\n*filter\n\
            -A INPUT -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -m comment --comment \"NodeLocal DNS Cache: allow DNS traffic\" -j ACCEPT\nCOMMIT\n";
        let found = saved_rules(save);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[&expected_key(&expected[1])], 2); // raw PREROUTING udp
        assert_eq!(found[&expected_key(&expected[11])], 1); // raw OUTPUT sport 8080
        assert_eq!(found[&expected_key(&expected[2])], 1); // filter INPUT tcp
        assert!(!found.contains_key(&expected_key(&expected[0])));
        let v6 = "*raw\n-A PREROUTING -d fd00::10/128 -p tcp -m tcp --dport 53 -m comment --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK\n";
        assert_eq!(saved_rules(v6)[&expected_key(&expected[12])], 1);
    }

    #[test]
    fn resolv_conf_findings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        let local: Vec<IpAddr> = vec!["169.254.20.10".parse().unwrap()];
        let status = |text: &str| {
            std::fs::write(&file, text).unwrap();
            resolv_conf(&file, &local).status
        };
        assert_eq!(status("nameserver 10.0.0.2\nsearch x\n"), Status::Ok);
        assert_eq!(status("search x\n"), Status::Fail);
        assert_eq!(status("nameserver 169.254.20.10\n"), Status::Fail);
        assert_eq!(status("nameserver 127.0.0.53\n"), Status::Warn);
        assert_eq!(
            resolv_conf(&dir.path().join("none"), &local).status,
            Status::Fail
        );
    }
}
