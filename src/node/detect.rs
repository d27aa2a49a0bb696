//! `--rules=auto`: which tool installs the rules on this node, decided once at start
//! and logged with its reason. The signals, first match wins:
//!
//! 1. no `iptables` binary on PATH → nftables (the only way left);
//! 2. kube-proxy's nftables tables (`ip kube-proxy`, `ip6 kube-proxy`) → nftables:
//!    kube-proxy runs in nftables mode;
//! 3. kube-proxy's `KUBE-IPTABLES-HINT` chain in the `mangle` table iptables-nft
//!    writes (`ip mangle`, `ip6 mangle`) → iptables: kube-proxy uses iptables with the
//!    nft backend, and node-cache's ACCEPT rules belong in the same chains as its;
//! 4. legacy iptables tables in use (`/proc/net/ip_tables_names`,
//!    `ip6_tables_names`) → iptables;
//! 5. tables of iptables-nft (`ip`/`ip6` `filter`, `nat`, `mangle`, `raw`,
//!    `security`) → iptables: the node's rules are iptables rules;
//! 6. any other nftables table (a native firewall: `inet filter`, `inet firewalld`)
//!    → nftables;
//! 7. nothing at all → iptables, node-cache's behaviour.
//!
//! When the nftables tables cannot be read (netlink refused), the choice falls back to
//! iptables if its binary is there.

use std::path::Path;

use super::nftables;
use crate::cli::RulesMode;

/// The tool that installs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

/// A decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub backend: Backend,
    pub reason: String,
}

const IPTABLES_NFT_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];
const KUBE_PROXY_TABLE: &str = "kube-proxy";
const KUBE_IPTABLES_HINT: &str = "KUBE-IPTABLES-HINT";

/// Decides for `mode` on this node.
pub fn choose(mode: RulesMode) -> Choice {
    let choice = |backend, reason: &str| Choice {
        backend,
        reason: reason.to_string(),
    };
    match mode {
        RulesMode::Iptables => return choice(Backend::Iptables, "--rules=iptables"),
        RulesMode::Nftables => return choice(Backend::Nftables, "--rules=nftables"),
        RulesMode::Auto => {}
    }
    if !on_path("iptables") {
        return choice(Backend::Nftables, "no iptables binary on PATH");
    }
    let tables = match nftables::tables() {
        Ok(tables) => tables,
        Err(err) => {
            return Choice {
                backend: Backend::Iptables,
                reason: format!("cannot list the nftables tables ({err}); iptables is on PATH"),
            }
        }
    };
    let hint = |family: &str| {
        tables.iter().any(|(f, n)| f == family && n == "mangle")
            && nftables::chains_of(family, "mangle")
                .is_ok_and(|chains| chains.iter().any(|c| c == KUBE_IPTABLES_HINT))
    };
    decide(&tables, hint("ip") || hint("ip6"), legacy_tables_in_use())
}

/// The decision from what was read (kept apart for its unit test).
fn decide(tables: &[(String, String)], hint_in_nft: bool, legacy: bool) -> Choice {
    let choice = |backend, reason: String| Choice { backend, reason };
    let ip_family = |f: &str| f == "ip" || f == "ip6";
    if tables
        .iter()
        .any(|(f, n)| ip_family(f) && n == KUBE_PROXY_TABLE)
    {
        return choice(
            Backend::Nftables,
            "kube-proxy's nftables table (ip kube-proxy) is present: kube-proxy runs in nftables mode".into(),
        );
    }
    if hint_in_nft {
        return choice(
            Backend::Iptables,
            format!("{KUBE_IPTABLES_HINT} in iptables-nft's mangle table: kube-proxy uses iptables (nft backend)"),
        );
    }
    if legacy {
        return choice(
            Backend::Iptables,
            "legacy iptables tables are in use".into(),
        );
    }
    let ours = |f: &str, n: &str| f == nftables::TABLE_FAMILY && n == nftables::TABLE;
    let compat: Vec<String> = tables
        .iter()
        .filter(|(f, n)| ip_family(f) && IPTABLES_NFT_TABLES.contains(&n.as_str()))
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    if !compat.is_empty() {
        return choice(
            Backend::Iptables,
            format!(
                "the node's rules are iptables rules (iptables-nft tables: {})",
                compat.join(", ")
            ),
        );
    }
    let native: Vec<String> = tables
        .iter()
        .filter(|(f, n)| !ours(f, n))
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    if !native.is_empty() {
        return choice(
            Backend::Nftables,
            format!(
                "the node's firewall is native nftables (tables: {})",
                native.join(", ")
            ),
        );
    }
    choice(
        Backend::Iptables,
        "no firewall rules on the node: node-cache's default".into(),
    )
}

/// True when an executable `name` is in a directory of PATH.
pub fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn legacy_tables_in_use() -> bool {
    ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .any(|file| {
            std::fs::read_to_string(Path::new(file)).is_ok_and(|names| !names.trim().is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(f, n)| (f.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn auto_follows_kube_proxy_then_the_firewall() {
        let nft = |list: &[(&str, &str)], hint, legacy| decide(&tables(list), hint, legacy).backend;
        assert_eq!(
            nft(&[("ip", "kube-proxy"), ("ip", "nat")], true, true),
            Backend::Nftables
        );
        assert_eq!(
            nft(&[("ip6", "kube-proxy")], false, false),
            Backend::Nftables
        );
        assert_eq!(nft(&[("ip", "mangle")], true, false), Backend::Iptables);
        assert_eq!(nft(&[("inet", "filter")], false, true), Backend::Iptables);
        assert_eq!(
            nft(&[("ip", "nat"), ("inet", "filter")], false, false),
            Backend::Iptables
        );
        assert_eq!(
            nft(&[("inet", "firewalld")], false, false),
            Backend::Nftables
        );
        // Our own table (a predecessor's) says nothing about the node.
        assert_eq!(
            nft(&[("inet", "nodelocaldns")], false, false),
            Backend::Iptables
        );
        assert_eq!(nft(&[], false, false), Backend::Iptables);
        let why = decide(&tables(&[("ip", "kube-proxy")]), false, false).reason;
        assert!(why.contains("kube-proxy"), "{why}");
    }

    #[test]
    fn explicit_modes_are_kept() {
        assert_eq!(choose(RulesMode::Nftables).backend, Backend::Nftables);
        assert_eq!(choose(RulesMode::Iptables).backend, Backend::Iptables);
    }
}
