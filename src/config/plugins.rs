//! The small plugin directives, after each CoreDNS plugin's `setup.go`:
//!
//! ```text
//! loadbalance [round_robin | weighted WEIGHTFILE]
//! dns64 [PREFIX] { prefix PREFIX  translate_all  allow_ipv4 }
//! timeouts { read DURATION  write DURATION  idle DURATION  max_queries N }
//! debug
//! pprof [ADDRESS] { block [RATE] }
//! trace [ENDPOINT-TYPE] [ENDPOINT] { every N  service NAME  client_server ... }
//! ```
//!
//! `weighted` is refused as unsupported. `debug`, `pprof` and `trace` are accepted and
//! do here what their README says; [`notices`] gives the line the server logs once.

use std::net::Ipv6Addr;
use std::time::Duration;

use super::context::{Ctx, Once};
use super::error::ConfigError;
use super::parser::LineSyntax;
use super::types::{Dns64Config, TimeoutsConfig};

/// CoreDNS `dns64`'s well-known prefix (RFC 6052).
pub const DNS64_PREFIX_DEFAULT: (Ipv6Addr, u8) =
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// CoreDNS `timeouts` bounds.
const TIMEOUT_MIN: Duration = Duration::from_secs(1);
const TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);
/// CoreDNS `pprof`'s default address.
pub const PPROF_ADDR_DEFAULT: &str = "localhost:6053";

fn unknown(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    directive: &'static str,
    supported: &'static str,
) -> ConfigError {
    ConfigError::UnknownOption {
        at: ctx.at(option.name.line),
        directive,
        option: option.name.text.clone(),
        supported,
    }
}

/// `loadbalance [round_robin]`: true; `weighted` is refused.
pub(crate) fn loadbalance(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<bool, ConfigError> {
    let usage = "loadbalance [round_robin]";
    match line.args.first() {
        None => {}
        Some(t) if t.text == "round_robin" => ctx.arg_count(line, "loadbalance", 1..=1, usage)?,
        Some(t) if t.text == "weighted" => {
            return Err(ConfigError::Unsupported {
                at: ctx.at(t.line),
                context: "loadbalance".into(),
                token: t.text.clone(),
                reason: "weighted round robin (a weight file) is not implemented; use round_robin"
                    .into(),
            })
        }
        Some(t) => {
            return Err(ctx.invalid(t, "loadbalance", "unknown policy (supported: round_robin)"))
        }
    }
    if let Some(option) = line.block.as_deref().and_then(<[LineSyntax]>::first) {
        if option.name.text == "prefer" {
            return Err(ConfigError::Unsupported {
                at: ctx.at(option.name.line),
                context: "loadbalance".into(),
                token: option.name.text.clone(),
                reason: "preferred subnets are not implemented".into(),
            });
        }
        return Err(unknown(ctx, option, "loadbalance", "none"));
    }
    Ok(true)
}

/// `dns64 [PREFIX] { prefix PREFIX  translate_all  allow_ipv4 }`.
pub(crate) fn dns64(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<Dns64Config, ConfigError> {
    ctx.arg_count(
        line,
        "dns64",
        0..=1,
        "dns64 [PREFIX] { prefix PREFIX translate_all allow_ipv4 }",
    )?;
    let (prefix, prefix_len) = DNS64_PREFIX_DEFAULT;
    let mut config = Dns64Config {
        prefix,
        prefix_len,
        translate_all: false,
        allow_ipv4: false,
    };
    if let Some(token) = line.args.first() {
        (config.prefix, config.prefix_len) = dns64_prefix(ctx, token)?;
    }
    let mut once = Once::default();
    for option in line.block.iter().flatten() {
        let name = option.name.text.as_str();
        match name {
            "prefix" => {
                once.check(ctx, name, option.name.line)?;
                ctx.arg_count(option, "dns64 prefix", 1..=1, "prefix PREFIX")?;
                if let Some(token) = option.args.first() {
                    (config.prefix, config.prefix_len) = dns64_prefix(ctx, token)?;
                }
            }
            "translate_all" | "allow_ipv4" => {
                once.check(ctx, name, option.name.line)?;
                let usage = if name == "translate_all" {
                    "translate_all"
                } else {
                    "allow_ipv4"
                };
                ctx.arg_count(option, "dns64", 0..=0, usage)?;
                if name == "translate_all" {
                    config.translate_all = true;
                } else {
                    config.allow_ipv4 = true;
                }
            }
            _ => {
                return Err(unknown(
                    ctx,
                    option,
                    "dns64",
                    "prefix, translate_all, allow_ipv4",
                ))
            }
        }
    }
    Ok(config)
}

/// An IPv6 prefix of 32, 40, 48, 56, 64 or 96 bits... (CoreDNS: a multiple of 8 in
/// 32..=96), host bits cleared.
fn dns64_prefix(ctx: &Ctx<'_>, token: &super::lexer::Token) -> Result<(Ipv6Addr, u8), ConfigError> {
    let context = "dns64 prefix";
    let Some((addr, len)) = token.text.split_once('/') else {
        return Err(ctx.invalid(
            token,
            context,
            "expected an IPv6 prefix such as 64:ff9b::/96",
        ));
    };
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| ctx.invalid(token, context, "not an IPv6 address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| ctx.invalid(token, context, "invalid prefix length"))?;
    if len % 8 != 0 || !(32..=96).contains(&len) {
        return Err(ctx.invalid(
            token,
            context,
            "prefix length must be 32, 40, 48, 56, 64 or 96",
        ));
    }
    let mask = u128::MAX << (128 - u32::from(len));
    Ok((Ipv6Addr::from(u128::from(addr) & mask), len))
}

/// `timeouts { read DURATION  write DURATION  idle DURATION  max_queries N }`.
pub(crate) fn timeouts(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<TimeoutsConfig, ConfigError> {
    let usage = "timeouts { read DURATION write DURATION idle DURATION max_queries N }";
    ctx.arg_count(line, "timeouts", 0..=0, usage)?;
    let mut config = TimeoutsConfig::default();
    let mut once = Once::default();
    let options = line.block.as_deref().unwrap_or_default();
    if options.is_empty() {
        return Err(ConfigError::Arguments {
            at: ctx.at(line.name.line),
            context: "timeouts: a block with no timeouts".into(),
            given: 0,
            usage,
        });
    }
    for option in options {
        let name = option.name.text.as_str();
        let slot = match name {
            "read" => &mut config.read,
            "write" => &mut config.write,
            "idle" => &mut config.idle,
            "max_queries" => {
                once.check(ctx, name, option.name.line)?;
                ctx.arg_count(option, "timeouts max_queries", 1..=1, "max_queries N")?;
                if let Some(token) = option.args.first() {
                    config.max_queries =
                        Some(ctx.int(token, "timeouts max_queries", 0usize, usize::MAX)?);
                }
                continue;
            }
            _ => {
                return Err(unknown(
                    ctx,
                    option,
                    "timeouts",
                    "read, write, idle, max_queries",
                ))
            }
        };
        once.check(ctx, name, option.name.line)?;
        ctx.arg_count(option, "timeouts", 1..=1, "read|write|idle DURATION")?;
        if let Some(token) = option.args.first() {
            let value = ctx.duration(token, "timeouts")?;
            if !(TIMEOUT_MIN..=TIMEOUT_MAX).contains(&value) {
                return Err(ctx.invalid(token, "timeouts", "must be between 1s and 24h"));
            }
            *slot = Some(value);
        }
    }
    Ok(config)
}

/// `pprof [ADDRESS] { block [RATE] }`: the address as written (nothing listens on it).
pub(crate) fn pprof(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<String, ConfigError> {
    ctx.arg_count(line, "pprof", 0..=1, "pprof [ADDRESS] { block [RATE] }")?;
    let addr = match line.args.first() {
        None => PPROF_ADDR_DEFAULT.to_string(),
        Some(token) => {
            let port = token.text.rsplit_once(':').map(|(_, p)| p);
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(ctx.invalid(token, "pprof", "expected HOST:PORT or :PORT"));
            }
            token.text.clone()
        }
    };
    let mut once = Once::default();
    for option in line.block.iter().flatten() {
        if option.name.text != "block" {
            return Err(unknown(ctx, option, "pprof", "block"));
        }
        once.check(ctx, "block", option.name.line)?;
        ctx.arg_count(option, "pprof block", 0..=1, "block [RATE]")?;
        if let Some(token) = option.args.first() {
            ctx.int(token, "pprof block", 0u64, u64::from(u32::MAX))?;
        }
    }
    Ok(addr)
}

/// `trace [ENDPOINT-TYPE] [ENDPOINT] { ... }`: checked as CoreDNS checks it; nothing
/// is traced.
pub(crate) fn trace(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<(), ConfigError> {
    ctx.arg_count(
        line,
        "trace",
        0..=2,
        "trace [zipkin|datadog] [ENDPOINT] { ... }",
    )?;
    if let (Some(kind), Some(_)) = (line.args.first(), line.args.get(1)) {
        if kind.text != "zipkin" && kind.text != "datadog" {
            return Err(ctx.invalid(kind, "trace", "endpoint type must be zipkin or datadog"));
        }
    }
    let mut once = Once::default();
    for option in line.block.iter().flatten() {
        let name = option.name.text.as_str();
        let arity = match name {
            "client_server" => 0..=0,
            "every" | "service" | "datadog_analytics_rate" | "zipkin_max_backlog_size"
            | "zipkin_max_batch_size" | "zipkin_max_batch_interval" => 1..=1,
            _ => {
                return Err(unknown(
                    ctx,
                    option,
                    "trace",
                    "every, service, client_server, datadog_analytics_rate, zipkin_max_backlog_size, zipkin_max_batch_size, zipkin_max_batch_interval",
                ))
            }
        };
        once.check(ctx, name, option.name.line)?;
        ctx.arg_count(option, "trace", arity, "trace option [VALUE]")?;
        if let Some(token) = option.args.first() {
            match name {
                "every" | "zipkin_max_backlog_size" | "zipkin_max_batch_size" => {
                    ctx.int(token, "trace", 0u64, u64::MAX)?;
                }
                "zipkin_max_batch_interval" => {
                    ctx.duration(token, "trace")?;
                }
                "datadog_analytics_rate"
                    if token
                        .text
                        .parse::<f64>()
                        .map_or(true, |r| !(0.0..=1.0).contains(&r)) =>
                {
                    return Err(ctx.invalid(token, "trace", "rate must be a number in 0..=1"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

impl super::types::Config {
    /// What the accepted-but-inert directives (`debug`, `pprof`, `trace`) do here, one
    /// line per block that has them: the server logs these once at start, so no
    /// difference from CoreDNS is silent.
    pub fn notices(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for block in &self.servers {
            let at = &block.location;
            if block.debug {
                lines.push(format!(
                    "plugin/debug ({at}): accepted; it changes nothing here (panics are handled the same with or without it); log detail is set with --log-level or RUST_LOG"
                ));
            }
            if let Some(addr) = &block.pprof {
                lines.push(format!(
                    "plugin/pprof ({at}): accepted; nothing is served on {addr}: Go's pprof profiles do not exist in this server (profile it with perf)"
                ));
            }
            if block.trace {
                lines.push(format!(
                    "plugin/trace ({at}): accepted; no spans are recorded or sent (this server has no tracing exporter)"
                ));
            }
            let next = block
                .forward
                .as_ref()
                .is_some_and(|f| !f.next.is_empty() || f.next_on_nodata);
            if next {
                lines.push(format!(
                    "plugin/forward ({at}): next and next_on_nodata accepted; they change nothing here, as in CoreDNS when the next plugin is not another forward (a block holds one)"
                ));
            }
        }
        lines
    }
}
