//! `nodelocaldns doctor [--json] [--resolv-conf FILE] [the DaemonSet's flags]`: looks
//! at this node's DNS path and says what is wrong in plain words. It takes the same
//! flags as the cache (so an operator pastes the DaemonSet's args) and checks, read
//! only: the interface and its addresses, each iptables rule present exactly once (or,
//! in the nftables rules mode, our table, its chains and rules, and no stale iptables
//! rules),
//! conntrack entries for DNS to the local IPs, the cache answering on each local IP
//! over UDP and TCP, each upstream of the Corefile over TCP, resolv.conf, and hints for
//! the redirect mode (a NOTRACK rule missing, a stale interface nobody answers on,
//! leftovers under Cilium LRP). Exit status: 0 healthy, 1 problems, 2 bad flags.

mod checks;
mod netif;
mod nft;

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cli::Cli;
use crate::node::detect::Backend;

/// resolv.conf the node's upstream servers come from (node-cache's default).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Worth knowing; not a broken DNS path.
    Warn,
    /// The DNS path is broken or will break.
    Fail,
    /// Not applicable in this mode or not checkable here.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Check {
    /// Short name, stable for scripts (`interface`, `rules`, `udp 169.254.20.10`, …).
    pub name: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, for warnings and failures.
    pub hint: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

/// How the node's DNS reaches the cache, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The cache holds the kube-dns IP too and NOTRACKs it (kube-proxy iptables mode).
    Iptables,
    /// Link-local IPs only; kubelet points pods at them (kube-proxy IPVS mode).
    Ipvs,
    /// `-localip 0.0.0.0`, nothing on the node: Cilium redirects kube-dns traffic.
    CiliumLrp,
}

impl Mode {
    pub fn of(cli: &Cli) -> Mode {
        let ips = local_ips(cli);
        let wildcard = ips.iter().any(IpAddr::is_unspecified);
        if wildcard || (!cli.setupinterface && !cli.setupiptables) {
            return Mode::CiliumLrp;
        }
        let link_local = |ip: &IpAddr| match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if ips.iter().all(link_local) {
            Mode::Ipvs
        } else {
            Mode::Iptables
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Ipvs => "ipvs",
            Mode::CiliumLrp => "cilium-lrp",
        }
    }
}

fn local_ips(cli: &Cli) -> Vec<IpAddr> {
    cli.localip
        .as_ref()
        .map(|l| l.0.clone())
        .unwrap_or_default()
}

/// The doctor's own options; everything else is the cache's command line.
#[derive(Debug)]
pub struct Options {
    pub json: bool,
    pub resolv_conf: PathBuf,
    pub cli: Cli,
}

impl Options {
    /// Parses the words after `doctor`. Err carries the message for exit status 2.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut json = false;
        let mut resolv_conf = PathBuf::from(RESOLV_CONF);
        let mut rest = vec!["nodelocaldns".to_string()];
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let flag = word.trim_start_matches('-');
            if !word.starts_with('-') {
                rest.push(word.clone());
            } else if flag == "json" {
                json = true;
            } else if let Some(path) = flag.strip_prefix("resolv-conf=") {
                resolv_conf = PathBuf::from(path);
            } else if flag == "resolv-conf" {
                let path = words.next().ok_or("--resolv-conf needs a file")?;
                resolv_conf = PathBuf::from(path);
            } else {
                rest.push(word.clone());
            }
        }
        let cli = Cli::parse_from_args(rest).map_err(|e| e.to_string())?;
        if cli.localip.is_none() {
            return Err("doctor needs the cache's -localip (paste the DaemonSet's args)".into());
        }
        Ok(Options {
            json,
            resolv_conf,
            cli,
        })
    }
}

/// Everything the doctor found.
#[derive(Debug)]
pub struct Report {
    pub mode: Mode,
    /// The tool whose rules should be on the node.
    pub rules: Backend,
    pub local_ips: Vec<IpAddr>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn problems(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "check": c.name,
                    "status": c.status.label(),
                    "detail": c.detail,
                    "hint": c.hint,
                })
            })
            .collect();
        serde_json::json!({
            "mode": self.mode.label(),
            "rules": self.rules.label(),
            "local_ips": self.local_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "healthy": self.problems() == 0,
            "problems": self.problems(),
            "checks": checks,
        })
    }

    pub fn to_text(&self) -> String {
        let ips: Vec<String> = self.local_ips.iter().map(ToString::to_string).collect();
        let mut text = format!(
            "nodelocaldns doctor: {} mode, {} rules, local IPs {}\n",
            self.mode.label(),
            self.rules.label(),
            ips.join(", ")
        );
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let status = match check.status {
                Status::Fail => "FAIL",
                other => other.label(),
            };
            text.push_str(&format!(
                "{status:<5} {:<width$}  {}\n",
                check.name, check.detail
            ));
            if let Some(hint) = &check.hint {
                text.push_str(&format!("      {:<width$}  -> {hint}\n", ""));
            }
        }
        match self.problems() {
            0 => text.push_str("No problem found.\n"),
            1 => text.push_str("1 problem found.\n"),
            n => text.push_str(&format!("{n} problems found.\n")),
        }
        text
    }
}

/// Runs every check for `options`.
pub fn examine(options: &Options) -> Report {
    let cli = &options.cli;
    let mode = Mode::of(cli);
    let local_ips = local_ips(cli);
    let mut checks = Vec::new();
    checks.extend(checks::interface(cli, mode, &local_ips));
    let rules = nft::backend(cli);
    match rules {
        Backend::Nftables => checks.extend(nft::rules(cli, mode, &local_ips)),
        Backend::Iptables => {
            checks.extend(checks::rules(cli, mode, &local_ips));
            checks.extend(nft::stale_table());
        }
    }
    checks.extend(checks::conntrack(cli, mode, &local_ips));
    checks.extend(checks::answers(cli, &local_ips));
    checks.extend(checks::stale_interface(cli, mode, &local_ips, &checks));
    checks.extend(checks::upstreams(cli));
    checks.push(checks::resolv_conf(&options.resolv_conf, &local_ips));
    Report {
        mode,
        rules,
        local_ips,
        checks,
    }
}

/// The `doctor` subcommand: `args` are the words after `doctor`; returns the exit
/// status.
pub fn main(args: &[String]) -> u8 {
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("nodelocaldns doctor: {err}");
            return 2;
        }
    };
    let report = examine(&options);
    let text = if options.json {
        format!("{:#}\n", report.to_json())
    } else {
        report.to_text()
    };
    // A closed pipe (`doctor | head`) is not the node's problem.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    u8::from(report.problems() > 0)
}
