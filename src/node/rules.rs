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

/// The 12 rules of each local IP (unspecified addresses have none), in node-cache's
/// order. P = DNS port, H = health port.
pub fn rules_for(local_ips: &[IpAddr], dns_port: u16, health_port: u16) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(local_ips.len() * 12);
    for ip in local_ips.iter().filter(|ip| !ip.is_unspecified()) {
        let ipv6 = ip.is_ipv6();
        let rule = |table, chain, spec: String| Rule {
            ipv6,
            table,
            chain,
            spec,
        };
        let skip = format!("-m comment --comment \"{COMMENT_SKIP_CONNTRACK}\"");
        let allow = format!("-m comment --comment \"{COMMENT_ALLOW_DNS}\"");
        for proto in ["tcp", "udp"] {
            let to = format!("-p {proto} -d {ip} --dport {dns_port}");
            rules.push(rule("raw", "PREROUTING", format!("{to} -j NOTRACK {skip}")));
        }
        for proto in ["tcp", "udp"] {
            let to = format!("-p {proto} -d {ip} --dport {dns_port}");
            rules.push(rule("filter", "INPUT", format!("{to} -j ACCEPT {allow}")));
        }
        for proto in ["tcp", "udp"] {
            let from = format!("-p {proto} -s {ip} --sport {dns_port}");
            rules.push(rule("raw", "OUTPUT", format!("{from} -j NOTRACK {skip}")));
        }
        for proto in ["tcp", "udp"] {
            let from = format!("-p {proto} -s {ip} --sport {dns_port}");
            rules.push(rule(
                "filter",
                "OUTPUT",
                format!("{from} -j ACCEPT {allow}"),
            ));
        }
        for proto in ["tcp", "udp"] {
            let to = format!("-p {proto} -d {ip} --dport {dns_port}");
            rules.push(rule("raw", "OUTPUT", format!("{to} -j NOTRACK {skip}")));
        }
        rules.push(rule(
            "raw",
            "OUTPUT",
            format!("-p tcp -d {ip} --dport {health_port} -j NOTRACK {skip}"),
        ));
        rules.push(rule(
            "raw",
            "OUTPUT",
            format!("-p tcp -s {ip} --sport {health_port} -j NOTRACK {skip}"),
        ));
    }
    rules
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
