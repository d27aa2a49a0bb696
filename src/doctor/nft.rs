//! The doctor's view of the rules mode: which tool's rules should be on the node
//! (`--rules`, or for `auto` what is there: our table, our iptables rules, else the
//! cache's own decision), and in the nftables mode the table read back over netlink:
//! present, its four chains hooked as expected, each rule once, the NOTRACK rules of
//! every local IP, and no NodeLocal DNS Cache iptables rules left by an iptables-mode
//! run (they keep skipping conntrack after our teardown). In the iptables mode, our
//! table is stale the same way.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::checks::{iptables_save, OUR_COMMENT};
use super::{Check, Mode, Status};
use crate::cli::{Cli, RulesMode};
use crate::node::detect::{self, Backend};
use crate::node::nftables::{self, Problem, Ruleset};
use crate::node::rules;

/// Problems listed in one check's detail before "and N more".
const SHOWN: usize = 3;

/// Which rules the cache installs here: `--rules`, or for `auto` the mode whose
/// rules are there, else (none, or both) the cache's own decision.
pub fn backend(cli: &Cli) -> Backend {
    match cli.rules {
        RulesMode::Iptables => return Backend::Iptables,
        RulesMode::Nftables => return Backend::Nftables,
        RulesMode::Auto => {}
    }
    let table = table_present();
    let iptables = stale_iptables_rules().is_some_and(|n| n > 0);
    match (table, iptables) {
        (true, false) => Backend::Nftables,
        (false, true) => Backend::Iptables,
        _ => detect::choose(RulesMode::Auto).backend,
    }
}

fn table_present() -> bool {
    nftables::inspect().is_ok_and(|found| found.is_some())
}

/// NodeLocal DNS Cache rules in iptables (both families); None without iptables-save.
fn stale_iptables_rules() -> Option<usize> {
    if !detect::on_path("iptables-save") {
        return None;
    }
    let mut count = 0;
    for ipv6 in [false, true] {
        let text = iptables_save(ipv6).ok()?;
        count += text
            .lines()
            .filter(|l| l.starts_with("-A ") && l.contains(OUR_COMMENT))
            .count();
    }
    Some(count)
}

/// The nftables-mode checks.
pub fn rules(cli: &Cli, mode: Mode, ips: &[IpAddr]) -> Vec<Check> {
    let mut checks = Vec::new();
    if mode == Mode::CiliumLrp || !cli.setupiptables {
        checks.push(if table_present() {
            Check::new("nft table", Status::Fail, "table inet nodelocaldns exists, but the cache installs no rules in this mode")
                .hint("left over from an nftables-mode install: it skips conntrack for DNS that Cilium or kube-proxy should handle; nft delete table inet nodelocaldns")
        } else {
            Check::new("nft table", Status::Ok, "no table inet nodelocaldns")
        });
    } else {
        let set = Ruleset::new(rules::captures(ips, cli.dns_port, cli.health_port));
        match set.problems() {
            Ok(problems) => checks.extend(table_checks(&set, &problems)),
            Err(err) => checks.push(
                Check::new(
                    "nft table",
                    Status::Warn,
                    format!("cannot read the nftables ruleset: {err}"),
                )
                .hint("run the doctor as root in the node's network namespace"),
            ),
        }
    }
    checks.push(stale_iptables());
    checks
}

fn table_checks(set: &Ruleset, problems: &[Problem]) -> Vec<Check> {
    let rules = set.rules().len();
    let resync = "the cache reapplies the whole table every -syncinterval; is it running with -setupiptables? Errors show in coredns_nodecache_setup_errors_total{errortype=\"nftables\"}";
    if problems.contains(&Problem::TableMissing) {
        let mut checks = vec![Check::new(
            "nft table",
            Status::Fail,
            "table inet nodelocaldns is missing",
        )
        .hint(resync)];
        checks.extend(notrack(set, problems));
        return checks;
    }
    let chains: Vec<&Problem> = problems
        .iter()
        .filter(|p| {
            matches!(
                p,
                Problem::ChainMissing(_) | Problem::ChainWrong(..) | Problem::ChainExtra(_)
            )
        })
        .collect();
    let rule_problems: Vec<&Problem> = problems
        .iter()
        .filter(|p| matches!(p, Problem::RuleMissing(_) | Problem::RuleExtra(_)))
        .collect();
    let mut checks = Vec::new();
    if problems.is_empty() {
        checks.push(Check::new(
            "nft table",
            Status::Ok,
            format!(
                "table inet nodelocaldns: {} chains and {rules} rules as expected",
                set.chains().len()
            ),
        ));
    }
    if !chains.is_empty() {
        checks.push(Check::new("nft chains", Status::Fail, listed(&chains)).hint(resync));
    }
    if !rule_problems.is_empty() {
        checks.push(Check::new("nft rules", Status::Fail, listed(&rule_problems)).hint(resync));
    }
    checks.extend(notrack(set, problems));
    checks
}

/// A failed `notrack` check per local IP whose NOTRACK rule is missing.
fn notrack(set: &Ruleset, problems: &[Problem]) -> Vec<Check> {
    let table_missing = problems.contains(&Problem::TableMissing);
    let chain_missing = |chain: &str| {
        problems.iter().any(
            |p| matches!(p, Problem::ChainMissing(c) | Problem::ChainWrong(c, ..) if c == chain),
        )
    };
    let mut ips: BTreeSet<IpAddr> = BTreeSet::new();
    for (ip, rule) in set.notrack_rules() {
        if table_missing
            || chain_missing(&rule.chain)
            || problems.contains(&Problem::RuleMissing(rule))
        {
            ips.insert(ip);
        }
    }
    ips.into_iter()
        .map(|ip| {
            Check::new("notrack", Status::Fail, format!("a NOTRACK rule for {ip} is missing"))
                .hint(format!("DNS to {ip} goes through conntrack: the table fills and kube-proxy's DNAT can send queries past the cache"))
        })
        .collect()
}

fn stale_iptables() -> Check {
    match stale_iptables_rules() {
        None => Check::new("stale iptables rules", Status::Skip, "no iptables-save on PATH"),
        Some(0) => Check::new("stale iptables rules", Status::Ok, "no NodeLocal DNS Cache iptables rules"),
        Some(n) => Check::new(
            "stale iptables rules",
            Status::Fail,
            format!("{n} NodeLocal DNS Cache iptables rules beside the nftables table"),
        )
        .hint("left by an iptables-mode run: they stay after the cache's teardown and keep DNS out of conntrack (and kube-proxy's DNAT). The cache removes them when it starts with an iptables binary at hand; or: iptables-save | grep 'NodeLocal DNS Cache'"),
    }
}

/// In the iptables mode: our nftables table should not be there.
pub fn stale_table() -> Option<Check> {
    table_present().then(|| {
        Check::new(
            "stale nft table",
            Status::Fail,
            "table inet nodelocaldns exists beside the iptables rules",
        )
        .hint("left by an nftables-mode run: it stays after the cache's teardown and keeps DNS out of conntrack. The cache removes it when it starts in iptables mode; or: nft delete table inet nodelocaldns")
    })
}

fn listed(problems: &[&Problem]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}
