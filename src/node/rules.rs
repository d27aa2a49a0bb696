//! node-cache's iptables rules: 12 per local IP (raw NOTRACK so DNS skips conntrack,
//! filter ACCEPT so a restrictive INPUT/OUTPUT policy lets it through), with the
//! literal comments node-cache uses, through the `iptables` crate (which runs
//! `iptables`/`ip6tables` with the xtables wait flag). A rule is inserted at the top
//! of its chain only when `-C` does not find it; removal repeats while a copy exists,
//! so duplicates left by other versions go too.

use std::net::IpAddr;

/// node-cache's comments, literal (operators grep for them).
pub const COMMENT_SKIP_CONNTRACK: &str = "NodeLocal DNS Cache: skip conntrack";
pub const COMMENT_ALLOW_DNS: &str = "NodeLocal DNS Cache: allow DNS traffic";

/// Copies of one rule removed before giving up (a loop guard: each pass deletes one).
const RULE_COPIES_MAX: usize = 64;

/// One rule: where it goes and its match/target arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub ipv6: bool,
    pub table: &'static str,
    pub chain: &'static str,
    /// Arguments after `-t TABLE -I CHAIN`, quoted where needed.
    pub spec: String,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cmd = if self.ipv6 { "ip6tables" } else { "iptables" };
        write!(f, "{cmd} -t {} {} {}", self.table, self.chain, self.spec)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Another process held the xtables lock (`iptables_lock`).
    #[error("{rule}: xtables lock held: {text}")]
    Lock { rule: String, text: String },
    /// Any other failure (`iptables`).
    #[error("{rule}: {text}")]
    Failed { rule: String, text: String },
}

impl RuleError {
    fn classify(rule: &Rule, text: String) -> RuleError {
        let rule = rule.to_string();
        if text.contains("holding the xtables lock") {
            RuleError::Lock { rule, text }
        } else {
            RuleError::Failed { rule, text }
        }
    }

    pub fn is_lock(&self) -> bool {
        matches!(self, RuleError::Lock { .. })
    }
}

/// Which way a captured packet goes relative to the local IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Way {
    /// `-d IP --dport PORT`: to the cache.
    To,
    /// `-s IP --sport PORT`: from the cache.
    From,
}

/// What a rule does with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// raw table: skip conntrack.
    Notrack,
    /// filter table: let it through a restrictive policy.
    Accept,
}

/// One of node-cache's rules, whatever tool installs it: the iptables rules
/// ([`rules_for`]) and the nftables table (`super::nftables`) are both drawn from
/// [`captures`], so the two modes capture exactly the same traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capture {
    /// `raw` or `filter`.
    pub table: &'static str,
    /// `PREROUTING`, `INPUT` or `OUTPUT`.
    pub chain: &'static str,
    /// `tcp` or `udp`.
    pub proto: &'static str,
    pub ip: IpAddr,
    pub way: Way,
    pub port: u16,
    pub target: Target,
}

impl Capture {
    /// node-cache's comment for this rule.
    pub fn comment(&self) -> &'static str {
        match self.target {
            Target::Notrack => COMMENT_SKIP_CONNTRACK,
            Target::Accept => COMMENT_ALLOW_DNS,
        }
    }
}

/// The 12 captures of each local IP (unspecified addresses have none), in
/// node-cache's order. P = DNS port, H = health port.
pub fn captures(local_ips: &[IpAddr], dns_port: u16, health_port: u16) -> Vec<Capture> {
    use Target::{Accept, Notrack};
    use Way::{From, To};
    // (table, chain, way, port, target, protocols), node-cache's order.
    let dns = [
        ("raw", "PREROUTING", To, Notrack),
        ("filter", "INPUT", To, Accept),
        ("raw", "OUTPUT", From, Notrack),
        ("filter", "OUTPUT", From, Accept),
        ("raw", "OUTPUT", To, Notrack),
    ];
    let mut out = Vec::with_capacity(local_ips.len() * 12);
    for &ip in local_ips.iter().filter(|ip| !ip.is_unspecified()) {
        for (table, chain, way, target) in dns {
            for proto in ["tcp", "udp"] {
                out.push(Capture {
                    table,
                    chain,
                    proto,
                    ip,
                    way,
                    port: dns_port,
                    target,
                });
            }
        }
        // The liveness probe: tcp only, both ways.
        for way in [To, From] {
            out.push(Capture {
                table: "raw",
                chain: "OUTPUT",
                proto: "tcp",
                ip,
                way,
                port: health_port,
                target: Notrack,
            });
        }
    }
    out
}

/// The 12 iptables rules of each local IP, in node-cache's order.
pub fn rules_for(local_ips: &[IpAddr], dns_port: u16, health_port: u16) -> Vec<Rule> {
    captures(local_ips, dns_port, health_port)
        .iter()
        .map(iptables_rule)
        .collect()
}

fn iptables_rule(capture: &Capture) -> Rule {
    let Capture {
        proto, ip, port, ..
    } = capture;
    let matched = match capture.way {
        Way::To => format!("-p {proto} -d {ip} --dport {port}"),
        Way::From => format!("-p {proto} -s {ip} --sport {port}"),
    };
    let target = match capture.target {
        Target::Notrack => "NOTRACK",
        Target::Accept => "ACCEPT",
    };
    Rule {
        ipv6: ip.is_ipv6(),
        table: capture.table,
        chain: capture.chain,
        spec: format!(
            "{matched} -j {target} -m comment --comment \"{}\"",
            capture.comment()
        ),
    }
}

/// The `iptables` and `ip6tables` commands, looked up on first use.
#[derive(Default)]
pub struct Iptables {
    v4: Option<iptables::IPTables>,
    v6: Option<iptables::IPTables>,
}

impl Iptables {
    fn command(&mut self, rule: &Rule) -> Result<&iptables::IPTables, RuleError> {
        let slot = if rule.ipv6 {
            &mut self.v6
        } else {
            &mut self.v4
        };
        if slot.is_none() {
            let found = iptables::new(rule.ipv6).map_err(|e| {
                RuleError::classify(rule, format!("cannot run the iptables command: {e}"))
            })?;
            *slot = Some(found);
        }
        slot.as_ref()
            .ok_or_else(|| RuleError::classify(rule, "iptables unavailable".into()))
    }

    /// Inserts `rule` at the top of its chain unless it is there; Ok(true) if added.
    pub fn ensure(&mut self, rule: &Rule) -> Result<bool, RuleError> {
        let ipt = self.command(rule)?;
        let exists = ipt
            .exists(rule.table, rule.chain, &rule.spec)
            .map_err(|e| RuleError::classify(rule, e.to_string()))?;
        if exists {
            return Ok(false);
        }
        ipt.insert(rule.table, rule.chain, &rule.spec, 1)
            .map_err(|e| RuleError::classify(rule, e.to_string()))?;
        Ok(true)
    }

    /// Deletes every copy of `rule`; returns how many were deleted.
    pub fn remove(&mut self, rule: &Rule) -> Result<usize, RuleError> {
        let ipt = self.command(rule)?;
        let mut deleted = 0;
        while deleted < RULE_COPIES_MAX {
            let exists = ipt
                .exists(rule.table, rule.chain, &rule.spec)
                .map_err(|e| RuleError::classify(rule, e.to_string()))?;
            if !exists {
                break;
            }
            ipt.delete(rule.table, rule.chain, &rule.spec)
                .map_err(|e| RuleError::classify(rule, e.to_string()))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_rules_per_ip_in_node_cache_order() {
        let ips = [
            "169.254.20.10".parse().unwrap(),
            "fd00::10".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
        ];
        let rules = rules_for(&ips, 53, 8080);
        assert_eq!(rules.len(), 24);
        assert_eq!(rules.iter().filter(|r| r.ipv6).count(), 12);
        assert_eq!(
            rules[0].spec,
            "-p tcp -d 169.254.20.10 --dport 53 -j NOTRACK -m comment --comment \"NodeLocal DNS Cache: skip conntrack\""
        );
        assert_eq!((rules[0].table, rules[0].chain), ("raw", "PREROUTING"));
        assert_eq!((rules[2].table, rules[2].chain), ("filter", "INPUT"));
        assert!(rules[3].spec.contains("-p udp") && rules[3].spec.contains("allow DNS traffic"));
        assert_eq!((rules[6].table, rules[6].chain), ("filter", "OUTPUT"));
        assert!(rules[6]
            .spec
            .starts_with("-p tcp -s 169.254.20.10 --sport 53 -j ACCEPT"));
        assert_eq!(
            rules[10].spec,
            "-p tcp -d 169.254.20.10 --dport 8080 -j NOTRACK -m comment --comment \"NodeLocal DNS Cache: skip conntrack\""
        );
        assert!(rules[11]
            .spec
            .starts_with("-p tcp -s 169.254.20.10 --sport 8080"));
        assert!(rules[12].spec.contains("-d fd00::10"));
    }

    #[test]
    fn lock_errors_are_classified() {
        let rule = &rules_for(&["10.0.0.1".parse().unwrap()], 53, 8080)[0];
        let lock = RuleError::classify(
            rule,
            "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?".into(),
        );
        assert!(lock.is_lock());
        assert!(!RuleError::classify(rule, "Bad rule".into()).is_lock());
    }
}
