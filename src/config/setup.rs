//! Syntax tree → typed [`ServerBlock`]s, after CoreDNS's per-plugin `setup.go`: the block
//! keys give zones and port, each directive line is checked and turned into its typed
//! value with CoreDNS's defaults. The small directives live here; `cache` and `forward`
//! have their own modules.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::context::{Ctx, Once};
use super::error::{ConfigError, SUPPORTED_DIRECTIVES};
use super::lexer::Token;
use super::parser::{BlockSyntax, LineSyntax};
use super::types::{HealthConfig, ReloadConfig, ServerBlock, Zone};
use super::value::{parse_listen_addr, parse_zone_name};
use super::{acl, cache, forward, hosts, logging, plugins, rewrite, template};
use crate::limits;

const DNS_PORT: u16 = 53;
/// Directives that may appear more than once in a block.
const REPEATABLE: [&str; 4] = ["bind", "log", "rewrite", "template"];
const HEALTH_PORT: u16 = 8080;
const READY_PORT: u16 = 8181;
const PROMETHEUS_PORT: u16 = 9253;
/// CoreDNS `bufsize` without an argument: the DNS flag day 2020 size.
const BUFSIZE_DEFAULT: u16 = crate::limits::EDNS_UDP_PAYLOAD_BYTES_DEFAULT;
const RELOAD_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
const RELOAD_JITTER_DEFAULT: Duration = Duration::from_secs(15);
const RELOAD_INTERVAL_MIN: Duration = Duration::from_secs(2);
const RELOAD_JITTER_MIN: Duration = Duration::from_secs(1);

fn all_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

pub(crate) fn server_block(ctx: &Ctx<'_>, block: &BlockSyntax) -> Result<ServerBlock, ConfigError> {
    let (zones, port) = block_keys(ctx, &block.keys)?;
    let mut server = ServerBlock {
        zones,
        port,
        bind: Vec::new(),
        cache: None,
        forward: None,
        acl: None,
        errors: false,
        errors_consolidate: Vec::new(),
        log: false,
        log_rules: Vec::new(),
        health: None,
        ready: None,
        prometheus: None,
        reload: None,
        loop_detect: false,
        bufsize: None,
        whoami: false,
        templates: Vec::new(),
        rewrites: Vec::new(),
        hosts: None,
        loadbalance: false,
        dns64: None,
        timeouts: None,
        debug: false,
        pprof: None,
        trace: false,
        location: ctx.at(block.line),
    };
    let mut once = Once::default();
    for line in &block.lines {
        let name = line.name.text.as_str();
        if !SUPPORTED_DIRECTIVES.contains(&name) {
            return Err(ConfigError::UnknownDirective {
                at: ctx.at(line.name.line),
                name: name.to_string(),
            });
        }
        // CoreDNS accumulates repeated `bind` and `log` lines and runs every
        // `rewrite` and `template` in order; every other directive is once-only.
        if !REPEATABLE.contains(&name) {
            once.check(ctx, name, line.name.line)?;
        }
        directive(ctx, line, &mut server)?;
    }
    Ok(server)
}

fn directive(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    server: &mut ServerBlock,
) -> Result<(), ConfigError> {
    match line.name.text.as_str() {
        "bind" => bind(ctx, line, &mut server.bind)?,
        "acl" => server.acl = Some(acl::parse(ctx, line, &server.zones)?),
        "cache" => server.cache = Some(cache::parse(ctx, line, &server.zones)?),
        "forward" => server.forward = Some(forward::parse(ctx, line)?),
        "errors" => {
            server.errors_consolidate = logging::errors(ctx, line)?;
            server.errors = true;
        }
        "log" => {
            server.log_rules.extend(logging::log(ctx, line)?);
            server.log = true;
        }
        "health" => server.health = Some(health(ctx, line)?),
        "ready" => server.ready = Some(listen(ctx, line, "ready", "ready [ADDR]", READY_PORT)?),
        "prometheus" => {
            server.prometheus = Some(listen(
                ctx,
                line,
                "prometheus",
                "prometheus [ADDR]",
                PROMETHEUS_PORT,
            )?)
        }
        "reload" => server.reload = Some(reload(ctx, line)?),
        "loop" => server.loop_detect = flag(ctx, line, "loop")?,
        "bufsize" => server.bufsize = Some(bufsize(ctx, line)?),
        "whoami" => server.whoami = flag(ctx, line, "whoami")?,
        "template" => {
            bounded(
                ctx,
                line,
                server.templates.len(),
                limits::TEMPLATES_PER_BLOCK_MAX,
            )?;
            server
                .templates
                .push(template::parse(ctx, line, &server.zones)?);
        }
        "rewrite" => {
            bounded(
                ctx,
                line,
                server.rewrites.len(),
                limits::REWRITE_RULES_PER_BLOCK_MAX,
            )?;
            server.rewrites.push(rewrite::parse(ctx, line)?);
        }
        "hosts" => server.hosts = Some(hosts::parse(ctx, line, &server.zones)?),
        "loadbalance" => server.loadbalance = plugins::loadbalance(ctx, line)?,
        "dns64" => server.dns64 = Some(plugins::dns64(ctx, line)?),
        "timeouts" => server.timeouts = Some(plugins::timeouts(ctx, line)?),
        "debug" => server.debug = flag(ctx, line, "debug")?,
        "pprof" => server.pprof = Some(plugins::pprof(ctx, line)?),
        "trace" => {
            plugins::trace(ctx, line)?;
            server.trace = true;
        }
        _ => {
            return Err(ConfigError::UnknownDirective {
                at: ctx.at(line.name.line),
                name: line.name.text.clone(),
            })
        }
    }
    Ok(())
}

/// Zones and the shared port of the block keys `ZONE[:PORT][,ZONE[:PORT]]...`.
fn block_keys(ctx: &Ctx<'_>, keys: &[Token]) -> Result<(Vec<Zone>, u16), ConfigError> {
    let mut zones: Vec<Zone> = Vec::new();
    let mut port: Option<(u16, &str)> = None;
    for token in keys {
        for part in token.text.split(',').filter(|p| !p.is_empty()) {
            let (zone, key_port) = block_key(ctx, token, part)?;
            let key_port = key_port.unwrap_or(DNS_PORT);
            match port {
                None => port = Some((key_port, part)),
                Some((p, first)) if p != key_port => {
                    return Err(ConfigError::Conflict {
                        at: ctx.at(token.line),
                        context: "server block keys".into(),
                        reason: format!(
                            "\"{part}\" has port {key_port} but \"{first}\" has port {p}; the zones of one block share a port"
                        ),
                    });
                }
                Some(_) => {}
            }
            if zones.contains(&zone) {
                return Err(ctx.invalid(
                    token,
                    "server block keys",
                    format!("zone {} given twice", zone.name),
                ));
            }
            zones.push(zone);
        }
    }
    match (port, keys.first()) {
        (Some((p, _)), _) => Ok((zones, p)),
        (None, Some(token)) => Err(ctx.invalid(token, "server block keys", "no zone")),
        (None, None) => Err(ConfigError::Syntax {
            at: ctx.at(1),
            token: String::new(),
            reason: "server block without zone keys".into(),
        }),
    }
}

/// One key: `[dns://]ZONE[:PORT]`.
fn block_key(ctx: &Ctx<'_>, token: &Token, key: &str) -> Result<(Zone, Option<u16>), ConfigError> {
    let context = "server block keys";
    let rest = match key.split_once("://") {
        None => key,
        Some(("dns", rest)) => rest,
        Some((scheme @ ("tls" | "https" | "grpc" | "grpcs" | "quic" | "h3"), _)) => {
            return Err(ConfigError::Unsupported {
                at: ctx.at(token.line),
                context: context.into(),
                token: key.to_string(),
                reason: format!(
                    "{scheme}:// servers are not implemented, only dns:// (UDP and TCP)"
                ),
            });
        }
        Some((scheme, _)) => {
            return Err(ctx.invalid(token, context, format!("unknown scheme \"{scheme}://\"")));
        }
    };
    let (name, port) = match rest.rsplit_once(':') {
        None => (rest, None),
        Some((name, port)) => {
            let port = port.parse::<u16>().map_err(|_| {
                ctx.invalid(
                    token,
                    context,
                    format!("invalid port \"{port}\" (0..=65535)"),
                )
            })?;
            (name, Some(port))
        }
    };
    let zone = parse_zone_name(name).map_err(|reason| ctx.invalid(token, context, reason))?;
    Ok((zone, port))
}

/// Refuses one more of a repeatable directive past its bound.
fn bounded(ctx: &Ctx<'_>, line: &LineSyntax, count: usize, max: usize) -> Result<(), ConfigError> {
    if count < max {
        return Ok(());
    }
    Err(ctx.invalid(
        &line.name,
        &line.name.text,
        format!("more than {max} in one block"),
    ))
}

fn flag(ctx: &Ctx<'_>, line: &LineSyntax, directive: &'static str) -> Result<bool, ConfigError> {
    ctx.arg_count(line, directive, 0..=0, directive)?;
    ctx.no_options(line, directive)?;
    Ok(true)
}

fn bind(ctx: &Ctx<'_>, line: &LineSyntax, bind: &mut Vec<IpAddr>) -> Result<(), ConfigError> {
    ctx.arg_count(line, "bind", 1..=usize::MAX, "bind ADDRESS...")?;
    ctx.no_options(line, "bind")?;
    for token in &line.args {
        let ip = token.text.parse::<IpAddr>().map_err(|_| {
            let looks_like_interface = token
                .text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
            if looks_like_interface && !token.text.contains('.') {
                ConfigError::Unsupported {
                    at: ctx.at(token.line),
                    context: "bind".into(),
                    token: token.text.clone(),
                    reason: "interface names are not supported, give the interface's IP addresses"
                        .into(),
                }
            } else {
                ctx.invalid(token, "bind", "not an IP address")
            }
        })?;
        if bind.contains(&ip) {
            return Err(ctx.invalid(token, "bind", "address given twice"));
        }
        bind.push(ip);
    }
    Ok(())
}

/// `DIRECTIVE [ADDR]` for the HTTP endpoints.
fn listen(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    directive: &'static str,
    usage: &'static str,
    default_port: u16,
) -> Result<SocketAddr, ConfigError> {
    ctx.arg_count(line, directive, 0..=1, usage)?;
    ctx.no_options(line, directive)?;
    match line.args.first() {
        None => Ok(all_v4(default_port)),
        Some(token) => {
            parse_listen_addr(&token.text).map_err(|reason| ctx.invalid(token, directive, reason))
        }
    }
}

fn health(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<HealthConfig, ConfigError> {
    ctx.arg_count(line, "health", 0..=1, "health [ADDR] { lameduck DURATION }")?;
    let addr = match line.args.first() {
        None => all_v4(HEALTH_PORT),
        Some(token) => {
            parse_listen_addr(&token.text).map_err(|reason| ctx.invalid(token, "health", reason))?
        }
    };
    let mut lameduck = Duration::ZERO;
    let mut once = Once::default();
    for option in line.block.iter().flatten() {
        match option.name.text.as_str() {
            "lameduck" => {
                once.check(ctx, "lameduck", option.name.line)?;
                ctx.arg_count(option, "health lameduck", 1..=1, "lameduck DURATION")?;
                if let Some(token) = option.args.first() {
                    lameduck = ctx.duration(token, "health lameduck")?;
                }
            }
            other => {
                return Err(ConfigError::UnknownOption {
                    at: ctx.at(option.name.line),
                    directive: "health",
                    option: other.to_string(),
                    supported: "lameduck",
                })
            }
        }
    }
    Ok(HealthConfig { addr, lameduck })
}

fn reload(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<ReloadConfig, ConfigError> {
    ctx.arg_count(line, "reload", 0..=2, "reload [INTERVAL [JITTER]]")?;
    ctx.no_options(line, "reload")?;
    let mut interval = RELOAD_INTERVAL_DEFAULT;
    let mut jitter = RELOAD_JITTER_DEFAULT;
    if let Some(token) = line.args.first() {
        interval = ctx.duration(token, "reload")?;
        if interval < RELOAD_INTERVAL_MIN {
            return Err(ctx.invalid(token, "reload", "interval must be at least 2s"));
        }
    }
    if let Some(token) = line.args.get(1) {
        jitter = ctx.duration(token, "reload")?;
        if jitter < RELOAD_JITTER_MIN {
            return Err(ctx.invalid(token, "reload", "jitter must be at least 1s"));
        }
    }
    // CoreDNS caps the jitter at half the interval.
    Ok(ReloadConfig {
        interval,
        jitter: jitter.min(interval / 2),
    })
}

fn bufsize(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<u16, ConfigError> {
    ctx.arg_count(line, "bufsize", 0..=1, "bufsize [SIZE]")?;
    ctx.no_options(line, "bufsize")?;
    match line.args.first() {
        None => Ok(BUFSIZE_DEFAULT),
        Some(token) => ctx.int(token, "bufsize", 512u16, 4096u16),
    }
}
