//! `cache [TTL] [ZONES...] { ... }` with CoreDNS's options and defaults, plus our own
//! `max_bytes`. TTLs are whole seconds as in CoreDNS; `prefetch`, `serve_stale` and
//! `servfail` take Go durations.

use std::time::Duration;

use super::context::{Ctx, Once};
use super::error::ConfigError;
use super::lexer::Token;
use super::parser::LineSyntax;
use super::types::{CacheClass, CacheConfig, Prefetch, ServeStale, StaleMode, Zone};
use super::value::{parse_duration, parse_size_bytes};

/// 10000 rounded down to 256 shards of 39, as CoreDNS does.
pub const CAPACITY_DEFAULT: usize = 9984;
/// Entries per class: far above any node's need, bounds the memory a typo can ask for.
pub const CAPACITY_MAX: usize = 1 << 26;
pub const SUCCESS_TTL_DEFAULT: Duration = Duration::from_secs(3600);
pub const DENIAL_TTL_DEFAULT: Duration = Duration::from_secs(1800);
pub const MIN_TTL_DEFAULT: Duration = Duration::from_secs(5);
/// RFC 2181: TTLs are 31-bit.
pub const TTL_SECS_MAX: u64 = i32::MAX as u64;
pub const SERVFAIL_TTL_DEFAULT: Duration = Duration::from_secs(5);
pub const SERVFAIL_TTL_MAX: Duration = Duration::from_secs(300);
pub const PREFETCH_DURATION_DEFAULT: Duration = Duration::from_secs(60);
pub const PREFETCH_PERCENTAGE_DEFAULT: u8 = 10;
pub const SERVE_STALE_DEFAULT: Duration = Duration::from_secs(3600);
/// RFC 8767 §4: a failed refresh is retried within 5 minutes at most.
pub const FAILURE_RECHECK_MAX: Duration = Duration::from_secs(300);

const OPTIONS: &str = "success, denial, prefetch, serve_stale, serve_stale_policy, servfail, \
     disable, keepttl, max_bytes";

/// Which MINTTLs were written out: a default MINTTL above a small TTL gives way to it,
/// an explicit one is an error.
#[derive(Default)]
struct ExplicitMin {
    success: bool,
    denial: bool,
}

pub(crate) fn parse(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    block_zones: &[Zone],
) -> Result<CacheConfig, ConfigError> {
    let mut cache = CacheConfig {
        zones: Vec::new(),
        success: CacheClass {
            capacity: CAPACITY_DEFAULT,
            ttl_max: SUCCESS_TTL_DEFAULT,
            ttl_min: MIN_TTL_DEFAULT,
        },
        denial: CacheClass {
            capacity: CAPACITY_DEFAULT,
            ttl_max: DENIAL_TTL_DEFAULT,
            ttl_min: MIN_TTL_DEFAULT,
        },
        prefetch: None,
        serve_stale: None,
        servfail_ttl: SERVFAIL_TTL_DEFAULT,
        disable_success: Vec::new(),
        disable_denial: Vec::new(),
        keepttl: false,
        max_bytes: None,
    };
    let mut zone_args = line.args.as_slice();
    if let Some((first, rest)) = line.args.split_first() {
        // As CoreDNS: a first argument that is a number is the TTL, otherwise a zone.
        let digits = first.text.strip_prefix('-').unwrap_or(&first.text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let ttl = ttl_secs(ctx, first, "cache TTL", 1)?;
            cache.success.ttl_max = ttl;
            cache.denial.ttl_max = ttl;
            zone_args = rest;
        } else if parse_duration(&first.text).is_ok() {
            return Err(ctx.invalid(
                first,
                "cache TTL",
                "a TTL is whole seconds without a unit, e.g. 30",
            ));
        }
    }
    cache.zones = match zone_args {
        [] => block_zones.to_vec(),
        args => args
            .iter()
            .map(|t| ctx.zone(t, "cache zones"))
            .collect::<Result<_, _>>()?,
    };
    let mut once = Once::default();
    let mut explicit = ExplicitMin::default();
    let mut policy = None;
    for option in line.block.iter().flatten() {
        let name = option.name.text.as_str();
        match name {
            "disable" => {}
            _ => once.check(ctx, name, option.name.line)?,
        }
        if name == "serve_stale_policy" {
            policy = Some(serve_stale_policy(ctx, option)?);
            continue;
        }
        cache_option(ctx, option, &mut cache, &mut explicit, &mut once)?;
    }
    if let Some((option, prefer_positive)) = policy {
        let Some(stale) = cache.serve_stale.as_mut() else {
            return Err(ConfigError::Conflict {
                at: ctx.at(option),
                context: "cache serve_stale_policy".into(),
                reason: "serve_stale_policy requires serve_stale".into(),
            });
        };
        stale.prefer_positive = prefer_positive;
    }
    settle_min_ttl(ctx, line, "success", &mut cache.success, explicit.success)?;
    settle_min_ttl(ctx, line, "denial", &mut cache.denial, explicit.denial)?;
    Ok(cache)
}

fn cache_option(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    cache: &mut CacheConfig,
    explicit: &mut ExplicitMin,
    once: &mut Once,
) -> Result<(), ConfigError> {
    let args = option.args.as_slice();
    match option.name.text.as_str() {
        "success" => explicit.success = class(ctx, option, "cache success", &mut cache.success)?,
        "denial" => explicit.denial = class(ctx, option, "cache denial", &mut cache.denial)?,
        "prefetch" => cache.prefetch = Some(prefetch(ctx, option)?),
        "serve_stale" => cache.serve_stale = Some(serve_stale(ctx, option)?),
        "servfail" => {
            ctx.arg_count(option, "cache servfail", 1..=1, "servfail DURATION")?;
            if let Some(token) = args.first() {
                let ttl = ctx.duration(token, "cache servfail")?;
                if ttl > SERVFAIL_TTL_MAX {
                    return Err(ctx.invalid(
                        token,
                        "cache servfail",
                        "caching SERVFAIL over 5m is not permitted",
                    ));
                }
                cache.servfail_ttl = ttl;
            }
        }
        "disable" => {
            ctx.arg_count(
                option,
                "cache disable",
                1..=usize::MAX,
                "disable success|denial [ZONES...]",
            )?;
            let Some((class, zones)) = args.split_first() else {
                return Ok(());
            };
            once.check(ctx, &format!("disable {}", class.text), option.name.line)?;
            // No zones: everything (CoreDNS disables for the root).
            let zones = match zones {
                [] => vec![Zone { name: ".".into() }],
                zones => zones
                    .iter()
                    .map(|t| ctx.zone(t, "cache disable"))
                    .collect::<Result<_, _>>()?,
            };
            match class.text.as_str() {
                "success" => cache.disable_success = zones,
                "denial" => cache.disable_denial = zones,
                _ => return Err(ctx.invalid(class, "cache disable", "expected success or denial")),
            }
        }
        "keepttl" => {
            ctx.arg_count(option, "cache keepttl", 0..=0, "keepttl")?;
            cache.keepttl = true;
        }
        "max_bytes" => {
            ctx.arg_count(option, "cache max_bytes", 1..=1, "max_bytes SIZE")?;
            if let Some(token) = args.first() {
                let bytes = parse_size_bytes(&token.text)
                    .map_err(|r| ctx.invalid(token, "cache max_bytes", r))?;
                cache.max_bytes = Some(bytes);
            }
        }
        other => {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "cache",
                option: other.to_string(),
                supported: OPTIONS,
            })
        }
    }
    Ok(())
}

/// `success|denial CAPACITY [TTL [MINTTL]]`; returns whether MINTTL was given.
fn class(
    ctx: &Ctx<'_>,
    option: &LineSyntax,
    context: &str,
    class: &mut CacheClass,
) -> Result<bool, ConfigError> {
    ctx.arg_count(
        option,
        context,
        1..=3,
        "success|denial CAPACITY [TTL [MINTTL]]",
    )?;
    let args = option.args.as_slice();
    if let Some(token) = args.first() {
        class.capacity = ctx.int(token, &format!("{context} CAPACITY"), 1, CAPACITY_MAX)?;
    }
    if let Some(token) = args.get(1) {
        class.ttl_max = ttl_secs(ctx, token, &format!("{context} TTL"), 1)?;
    }
    if let Some(token) = args.get(2) {
        class.ttl_min = ttl_secs(ctx, token, &format!("{context} MINTTL"), 0)?;
    }
    Ok(args.len() == 3)
}

fn ttl_secs(
    ctx: &Ctx<'_>,
    token: &Token,
    context: &str,
    min: u64,
) -> Result<Duration, ConfigError> {
    ctx.int(token, context, min, TTL_SECS_MAX)
        .map(Duration::from_secs)
}

fn settle_min_ttl(
    ctx: &Ctx<'_>,
    line: &LineSyntax,
    name: &str,
    class: &mut CacheClass,
    explicit: bool,
) -> Result<(), ConfigError> {
    if class.ttl_min <= class.ttl_max {
        return Ok(());
    }
    if !explicit {
        class.ttl_min = class.ttl_max;
        return Ok(());
    }
    Err(ConfigError::Conflict {
        at: ctx.at(line.name.line),
        context: format!("cache {name}"),
        reason: format!(
            "MINTTL {}s is above TTL {}s",
            class.ttl_min.as_secs(),
            class.ttl_max.as_secs()
        ),
    })
}

fn prefetch(ctx: &Ctx<'_>, option: &LineSyntax) -> Result<Prefetch, ConfigError> {
    let context = "cache prefetch";
    ctx.arg_count(
        option,
        context,
        1..=3,
        "prefetch AMOUNT [DURATION [PERCENTAGE%]]",
    )?;
    let args = option.args.as_slice();
    let mut prefetch = Prefetch {
        amount: 1,
        duration: PREFETCH_DURATION_DEFAULT,
        percentage: PREFETCH_PERCENTAGE_DEFAULT,
    };
    if let Some(token) = args.first() {
        prefetch.amount = ctx.int(token, context, 1, u32::MAX)?;
    }
    if let Some(token) = args.get(1) {
        prefetch.duration = ctx.duration(token, context)?;
    }
    if let Some(token) = args.get(2) {
        let Some(number) = token.text.strip_suffix('%') else {
            return Err(ctx.invalid(token, context, "percentage must end with %, e.g. 10%"));
        };
        prefetch.percentage = number
            .parse::<u8>()
            .ok()
            .filter(|p| (10..=90).contains(p))
            .ok_or_else(|| ctx.invalid(token, context, "percentage must be in 10%..=90%"))?;
    }
    Ok(prefetch)
}

/// `serve_stale [DURATION] [immediate [RESPONSE_TTL [FAILURE_RECHECK]] | verify
/// [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]`, as CoreDNS 1.14.
fn serve_stale(ctx: &Ctx<'_>, option: &LineSyntax) -> Result<ServeStale, ConfigError> {
    let context = "cache serve_stale";
    let usage = "serve_stale [DURATION] [immediate [RESPONSE_TTL [FAILURE_RECHECK]] | \
                 verify [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]";
    ctx.arg_count(option, context, 0..=5, usage)?;
    let mut stale = ServeStale {
        duration: SERVE_STALE_DEFAULT,
        mode: StaleMode::Immediate,
        response_ttl_secs: 0,
        failure_recheck: None,
        prefer_positive: false,
    };
    let args = option.args.as_slice();
    if let Some(token) = args.first() {
        stale.duration = ctx.duration(token, context)?;
    }
    let mut rest = args.get(2..).unwrap_or_default();
    if let Some(token) = args.get(1) {
        stale.mode = match token.text.to_ascii_lowercase().as_str() {
            "immediate" => StaleMode::Immediate,
            "verify" => {
                let timeout = match rest.split_first() {
                    Some((t, after)) => {
                        rest = after;
                        Some(ctx.duration(t, "cache serve_stale VERIFY_TIMEOUT")?)
                    }
                    None => None,
                };
                StaleMode::Verify {
                    timeout: timeout.filter(|t| !t.is_zero()),
                }
            }
            _ => return Err(ctx.invalid(token, context, "expected immediate or verify")),
        };
    }
    if rest.len() > 2 {
        return Err(ConfigError::Arguments {
            at: ctx.at(option.name.line),
            context: context.to_string(),
            given: args.len(),
            usage,
        });
    }
    if let Some(token) = rest.first() {
        stale.response_ttl_secs = response_ttl(ctx, token)?;
    }
    if let Some(token) = rest.get(1) {
        let context = "cache serve_stale FAILURE_RECHECK";
        let recheck = ctx.duration(token, context)?;
        if recheck > FAILURE_RECHECK_MAX {
            return Err(ctx.invalid(token, context, "must not exceed 5m (RFC 8767)"));
        }
        stale.failure_recheck = Some(recheck).filter(|r| !r.is_zero());
    }
    Ok(stale)
}

/// `RESPONSE_TTL`: a Go duration of whole seconds, within the 31-bit TTL range.
fn response_ttl(ctx: &Ctx<'_>, token: &Token) -> Result<u32, ConfigError> {
    let context = "cache serve_stale RESPONSE_TTL";
    let ttl = ctx.duration(token, context)?;
    if ttl.subsec_nanos() != 0 {
        return Err(ctx.invalid(token, context, "must be a whole number of seconds"));
    }
    u32::try_from(ttl.as_secs())
        .ok()
        .filter(|&secs| u64::from(secs) <= TTL_SECS_MAX)
        .ok_or_else(|| ctx.invalid(token, context, "above the TTL range (2147483647s)"))
}

/// `serve_stale_policy prefer_positive`: returns the option's line and the policy.
fn serve_stale_policy(ctx: &Ctx<'_>, option: &LineSyntax) -> Result<(usize, bool), ConfigError> {
    let context = "cache serve_stale_policy";
    ctx.arg_count(option, context, 1..=1, "serve_stale_policy prefer_positive")?;
    match option.args.first() {
        Some(t) if t.text.eq_ignore_ascii_case("prefer_positive") => Ok((option.name.line, true)),
        Some(t) => Err(ctx.invalid(t, context, "the only policy is prefer_positive")),
        None => Ok((option.name.line, false)),
    }
}
