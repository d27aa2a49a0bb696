//! The `hosts` directive (CoreDNS `hosts` plugin): names answered from a hosts(5)
//! file and from entries written inline in the Corefile.
//!
//! ```text
//! hosts [FILE [ZONES...]] {
//!     [INLINE]
//!     ttl SECONDS
//!     no_reverse
//!     reload DURATION
//!     fallthrough [ZONES...]
//! }
//! ```
//!
//! An option line whose first word is an IP address is an inline entry (`IP NAME...`);
//! any other unknown word is an error (CoreDNS ignores a line it cannot read; we name
//! it). The file is read here once, so a missing or unreadable file is an error with
//! file:line; the plugin (`plugin/hosts.rs`) reads it again when it changes. The
//! hosts(5) text format itself is parsed by [`parse_hosts_text`], shared by both.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::context::{Ctx, Once};
use super::error::ConfigError;
use super::lexer::Token;
use super::parser::LineSyntax;
use super::types::{HostsConfig, HostsEntry, Zone};
use super::value::parse_zone_name;
use crate::limits::HOSTS_FILE_BYTES_MAX;

/// CoreDNS's defaults: `/etc/hosts`, TTL 3600 s, checked every 5 s.
pub const HOSTS_FILE_DEFAULT: &str = "/etc/hosts";
pub const HOSTS_TTL_DEFAULT: u32 = 3600;
pub const HOSTS_RELOAD_DEFAULT: Duration = Duration::from_secs(5);

const OPTIONS: &str = "ttl, no_reverse, reload, fallthrough, or an inline entry IP NAME...";

/// Parses a `hosts` line; `block_zones` are the zones when the line names none.
pub(crate) fn parse(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    block_zones: &[Zone],
) -> Result<HostsConfig, ConfigError> {
    let file = line.args.first();
    let path = file.map_or_else(
        || PathBuf::from(HOSTS_FILE_DEFAULT),
        |t| ctx.file.parent().unwrap_or(Path::new("")).join(&t.text),
    );
    let zones = match line.args.get(1..) {
        Some(rest) if !rest.is_empty() => rest
            .iter()
            .map(|t| ctx.zone(t, "hosts"))
            .collect::<Result<Vec<_>, _>>()?,
        _ => block_zones.to_vec(),
    };
    let mut hosts = HostsConfig {
        path,
        zones,
        inline: Vec::new(),
        ttl: HOSTS_TTL_DEFAULT,
        no_reverse: false,
        reload: HOSTS_RELOAD_DEFAULT,
        fallthrough: None,
    };
    let mut once = Once::default();
    for option in line.block.iter().flatten() {
        option_line(ctx, option, &mut hosts, &mut once)?;
    }
    check_file(ctx, line, file, &hosts.path)?;
    Ok(hosts)
}

fn option_line(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    hosts: &mut HostsConfig,
    once: &mut Once,
) -> Result<(), ConfigError> {
    let name = option.name.text.as_str();
    if name.parse::<IpAddr>().is_ok() || strip_scope(name).parse::<IpAddr>().is_ok() {
        hosts.inline.push(inline_entry(ctx, option, &hosts.zones)?);
        return Ok(());
    }
    match name {
        "ttl" | "no_reverse" | "reload" | "fallthrough" => {
            once.check(ctx, name, option.name.line)?
        }
        _ => {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "hosts",
                option: name.to_string(),
                supported: OPTIONS,
            })
        }
    }
    match name {
        "ttl" => {
            ctx.arg_count(option, "hosts ttl", 1..=1, "ttl SECONDS")?;
            if let Some(token) = option.args.first() {
                hosts.ttl = ctx.int(token, "hosts ttl", 1u32, 65_535u32)?;
            }
        }
        "no_reverse" => {
            ctx.arg_count(option, "hosts no_reverse", 0..=0, "no_reverse")?;
            hosts.no_reverse = true;
        }
        "reload" => {
            ctx.arg_count(option, "hosts reload", 1..=1, "reload DURATION")?;
            if let Some(token) = option.args.first() {
                hosts.reload = ctx.duration(token, "hosts reload")?;
            }
        }
        _ => {
            let zones = option
                .args
                .iter()
                .map(|t| ctx.zone(t, "hosts fallthrough"))
                .collect::<Result<Vec<_>, _>>()?;
            hosts.fallthrough = Some(zones);
        }
    }
    Ok(())
}

/// An inline `IP NAME...` line: every name must be valid and inside the zones.
fn inline_entry(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    zones: &[Zone],
) -> Result<HostsEntry, ConfigError> {
    let Some(addr) = parse_addr(&option.name.text) else {
        return Err(ctx.invalid(&option.name, "hosts", "not an IP address"));
    };
    if option.args.is_empty() {
        return Err(ConfigError::Arguments {
            at: ctx.at(option.name.line),
            context: "hosts inline entry".into(),
            given: 0,
            usage: "IP NAME...",
        });
    }
    let mut names = Vec::with_capacity(option.args.len());
    for token in &option.args {
        names.push(inline_name(ctx, token, zones)?);
    }
    Ok(HostsEntry { addr, names })
}

fn inline_name(ctx: &Ctx<'_>, token: &Token, zones: &[Zone]) -> Result<String, ConfigError> {
    let zone = parse_zone_name(&token.text).map_err(|r| ctx.invalid(token, "hosts", r))?;
    if !in_zones(&zone.name, zones) {
        return Err(ctx.invalid(token, "hosts", "name is outside the plugin's zones"));
    }
    Ok(zone.name)
}

/// The file must be a readable regular file no larger than the bound.
fn check_file(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    token: Option<&Token>,
    path: &Path,
) -> Result<(), ConfigError> {
    let at_line = token.map_or(line.name.line, |t| t.line);
    let fail = |reason: String| ConfigError::Invalid {
        at: ctx.at(at_line),
        context: "hosts".into(),
        token: path.display().to_string(),
        reason,
    };
    if path.is_dir() {
        return Err(fail("is a directory, not a hosts file".into()));
    }
    super::resolv::read_bounded(path, HOSTS_FILE_BYTES_MAX)
        .map(|_| ())
        .map_err(|err| fail(format!("cannot read the hosts file: {err}")))
}

/// `name` (lower-case, fully qualified) is one of `zones` or below one.
pub fn in_zones(name: &str, zones: &[Zone]) -> bool {
    zones.iter().any(|z| {
        z.name == "."
            || name == z.name
            || name
                .strip_suffix(z.name.as_str())
                .is_some_and(|head| head.ends_with('.'))
    })
}

/// An address, an IPv6 one possibly with a `%scope` (dropped, as CoreDNS does).
fn parse_addr(text: &str) -> Option<IpAddr> {
    strip_scope(text).parse().ok()
}

fn strip_scope(text: &str) -> &str {
    text.split_once('%').map_or(text, |(addr, _)| addr)
}

/// The entries of hosts(5) `text`: `IP NAME...` per line, `#` comments. Lines whose
/// address does not parse and names that are not valid DNS names or lie outside
/// `zones` are skipped (as CoreDNS skips them); their count is returned too.
pub fn parse_hosts_text(text: &str, zones: &[Zone]) -> (Vec<HostsEntry>, usize) {
    let mut entries = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        let line = line.split_once('#').map_or(line, |(head, _)| head);
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        let Some(addr) = parse_addr(first) else {
            skipped += 1;
            continue;
        };
        let mut names = Vec::new();
        for word in words {
            match parse_zone_name(word) {
                Ok(zone) if zone.name != "." && in_zones(&zone.name, zones) => {
                    names.push(zone.name)
                }
                _ => skipped += 1,
            }
        }
        if !names.is_empty() {
            entries.push(HostsEntry { addr, names });
        }
    }
    (entries, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Zone {
        Zone { name: name.into() }
    }

    #[test]
    fn hosts_text() {
        let text = "# comment\n127.0.0.1 localhost\n10.0.0.1 A.Example.  b.example # c\n\
                    fe80::1%eth0 link.example\nnot-an-ip x.example\n::1 ip6-localhost\n\n";
        let (entries, skipped) = parse_hosts_text(text, &[zone(".")]);
        let got: Vec<(String, Vec<String>)> = entries
            .iter()
            .map(|e| (e.addr.to_string(), e.names.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1".into(), vec!["localhost.".to_string()]),
                (
                    "10.0.0.1".into(),
                    vec!["a.example.".to_string(), "b.example.".to_string()]
                ),
                ("fe80::1".into(), vec!["link.example.".to_string()]),
                ("::1".into(), vec!["ip6-localhost.".to_string()]),
            ]
        );
        assert_eq!(skipped, 1);
        let (entries, skipped) = parse_hosts_text(text, &[zone("example.")]);
        assert_eq!(entries.len(), 2);
        assert_eq!(skipped, 3);
    }

    #[test]
    fn zones() {
        let z = [zone("example.")];
        assert!(in_zones("example.", &z));
        assert!(in_zones("a.example.", &z));
        assert!(!in_zones("anexample.", &z));
        assert!(!in_zones("example.org.", &z));
        assert!(in_zones("anything.", &[zone(".")]));
    }
}
