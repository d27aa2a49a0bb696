//! The `acl` directive (CoreDNS `acl` plugin): who may query this server block.
//!
//! ```text
//! acl [ZONES...] {
//!     ACTION [type QTYPE...] [net SOURCE...]
//! }
//! ```
//!
//! ACTION is `allow`, `block` (answer REFUSED), `filter` (answer NOERROR with no
//! records) or `drop` (no answer). `type` and `net` default to any (`*`); SOURCE is an
//! address or a CIDR prefix (`10.0.0.0/8`, `fd00::/8`). Rules are tried in order, the
//! first whose types and networks both match decides; a query no rule matches, or
//! whose name is outside ZONES (default: the block's zones), is allowed. So a closed
//! resolver is `allow net 10.0.0.0/8` followed by `block`.

use std::net::IpAddr;

use super::context::Ctx;
use super::error::ConfigError;
use super::parser::LineSyntax;
use super::types::{AclAction, AclConfig, AclRule, IpNet, Zone};
use crate::wire;

/// Rules a policy may hold: each is tried per query, so a bound keeps that cheap.
pub const ACL_RULES_MAX: usize = 64;
/// Networks and types one rule may list.
pub const ACL_RULE_ITEMS_MAX: usize = 256;

const USAGE: &str = "acl [ZONES...] { ACTION [type QTYPE...] [net SOURCE...] }";

/// Parses an `acl` line; `block_zones` are the zones when the line names none.
pub(crate) fn parse(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    block_zones: &[Zone],
) -> Result<AclConfig, ConfigError> {
    let zones = if line.args.is_empty() {
        block_zones.to_vec()
    } else {
        line.args
            .iter()
            .map(|t| ctx.zone(t, "acl"))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut rules = Vec::new();
    for option in line.block.iter().flatten() {
        if rules.len() == ACL_RULES_MAX {
            return Err(ctx.invalid(
                &option.name,
                "acl",
                format!("more than {ACL_RULES_MAX} rules"),
            ));
        }
        rules.push(rule(ctx, option)?);
    }
    if rules.is_empty() {
        return Err(ConfigError::Arguments {
            at: ctx.at(line.name.line),
            context: "acl".into(),
            given: 0,
            usage: USAGE,
        });
    }
    let zones_wire = zones
        .iter()
        .filter_map(|z| wire::name::zone_to_wire(&z.name))
        .collect();
    Ok(AclConfig {
        zones,
        zones_wire,
        rules,
    })
}

fn rule(ctx: &Ctx<'_>, option: &LineSyntax) -> Result<AclRule, ConfigError> {
    let action = match option.name.text.to_ascii_lowercase().as_str() {
        "allow" => AclAction::Allow,
        "block" => AclAction::Block,
        "filter" => AclAction::Filter,
        "drop" => AclAction::Drop,
        _ => {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "acl",
                option: option.name.text.clone(),
                supported: "allow, block, filter, drop",
            })
        }
    };
    let mut rule = AclRule {
        action,
        qtypes: Vec::new(),
        nets: Vec::new(),
    };
    // Which list the following words go to; `*` in either means any.
    let mut section: Option<&str> = None;
    let (mut any_type, mut any_net) = (false, false);
    for token in &option.args {
        match token.text.as_str() {
            "type" | "net" => {
                section = Some(if token.text == "type" { "type" } else { "net" });
                continue;
            }
            _ => {}
        }
        match section {
            None => return Err(ctx.invalid(token, "acl", "expected \"type\" or \"net\"")),
            Some("type") if token.text == "*" => any_type = true,
            Some("type") => rule.qtypes.push(qtype(ctx, token)?),
            Some(_) if token.text == "*" => any_net = true,
            Some(_) => rule.nets.push(net(ctx, token)?),
        }
        if rule.qtypes.len() > ACL_RULE_ITEMS_MAX || rule.nets.len() > ACL_RULE_ITEMS_MAX {
            return Err(ctx.invalid(
                token,
                "acl",
                format!("more than {ACL_RULE_ITEMS_MAX} items"),
            ));
        }
    }
    if any_type {
        rule.qtypes.clear();
    }
    if any_net {
        rule.nets.clear();
    }
    Ok(rule)
}

fn qtype(ctx: &Ctx<'_>, token: &super::lexer::Token) -> Result<u16, ConfigError> {
    let text = token.text.to_ascii_uppercase();
    if let Some(number) = text.strip_prefix("TYPE") {
        if let Ok(n) = number.parse::<u16>() {
            return Ok(n);
        }
    }
    match text.parse::<hickory_proto::rr::RecordType>() {
        Ok(t) => Ok(u16::from(t)),
        Err(_) => Err(ctx.invalid(token, "acl type", "unknown record type")),
    }
}

fn net(ctx: &Ctx<'_>, token: &super::lexer::Token) -> Result<IpNet, ConfigError> {
    let bad = |reason: &str| ctx.invalid(token, "acl net", reason.to_string());
    let (ip, prefix) = match token.text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (token.text.as_str(), None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address or CIDR"))?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= bits => p,
            _ => return Err(bad("prefix length out of range")),
        },
    };
    Ok(IpNet::new(ip, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_corefile;
    use std::path::Path;

    fn acl(body: &str) -> Result<AclConfig, String> {
        let text = format!("example.org {{\n{body}\n}}\n");
        parse_corefile(&text, Path::new("Corefile"))
            .map(|c| c.servers[0].acl.clone().expect("acl"))
            .map_err(|e| e.to_string())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const A: u16 = 1;
    const AAAA: u16 = 28;

    #[test]
    fn first_matching_rule_decides() {
        let policy =
            acl("acl {\n drop type ANY\n allow net 10.0.0.0/8 fd00::/8 192.168.1.1\n block\n}")
                .unwrap();
        let q = wire::name::zone_to_wire("www.example.org.").unwrap();
        assert_eq!(policy.decide(ip("10.1.2.3"), &q, A), AclAction::Allow);
        assert_eq!(policy.decide(ip("10.1.2.3"), &q, 255), AclAction::Drop);
        assert_eq!(policy.decide(ip("fd00::5"), &q, AAAA), AclAction::Allow);
        assert_eq!(
            policy.decide(ip("::ffff:10.0.0.1"), &q, A),
            AclAction::Allow
        );
        assert_eq!(policy.decide(ip("192.168.1.1"), &q, A), AclAction::Allow);
        assert_eq!(policy.decide(ip("192.168.1.2"), &q, A), AclAction::Block);
        assert_eq!(policy.decide(ip("11.0.0.1"), &q, A), AclAction::Block);
        assert_eq!(policy.decide(ip("2001:db8::1"), &q, A), AclAction::Block);
    }

    #[test]
    fn zones_limit_the_policy_and_unmatched_is_allowed() {
        let policy = acl("acl sub.example.org {\n filter type A net *\n}").unwrap();
        let inside = wire::name::zone_to_wire("x.SUB.example.org.").unwrap();
        let outside = wire::name::zone_to_wire("example.org.").unwrap();
        assert_eq!(policy.decide(ip("1.2.3.4"), &inside, A), AclAction::Filter);
        assert_eq!(
            policy.decide(ip("1.2.3.4"), &inside, AAAA),
            AclAction::Allow
        );
        assert_eq!(policy.decide(ip("1.2.3.4"), &outside, A), AclAction::Allow);
        let default_zone = acl("acl {\n block net 0.0.0.0/0\n}").unwrap();
        assert_eq!(default_zone.zones[0].name, "example.org.");
        assert_eq!(default_zone.rules[0].nets[0].prefix, 0);
    }

    #[test]
    fn cidr_bits_past_the_prefix_are_cleared() {
        let policy = acl("acl {\n allow net 10.1.2.3/16 TYPE65 type mx\n}");
        assert!(policy.is_err(), "TYPE65 after net is a net");
        let policy = acl("acl {\n allow net 10.1.2.3/16 type TYPE65 mx\n}").unwrap();
        assert_eq!(policy.rules[0].nets[0].addr, ip("10.1.0.0"));
        assert_eq!(policy.rules[0].qtypes, vec![65, 15]);
    }

    #[test]
    fn fails() {
        for (body, needle) in [
            ("acl", "acl"),
            ("acl {\n}", "acl"),
            ("acl {\n permit\n}", "permit"),
            ("acl {\n allow 10.0.0.1\n}", "type"),
            ("acl {\n allow net 10.0.0.0/33\n}", "prefix"),
            ("acl {\n allow net ::/129\n}", "prefix"),
            ("acl {\n allow net nowhere\n}", "nowhere"),
            ("acl {\n allow type NOPE\n}", "NOPE"),
            ("acl {\n block\n}\nacl {\n block\n}", "acl"),
        ] {
            let err = acl(body).unwrap_err();
            assert!(err.contains(needle), "{body:?}: {err}");
            assert!(err.contains("Corefile:"), "{body:?}: {err}");
        }
    }
}
