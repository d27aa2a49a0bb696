//! The `rewrite` directive, after CoreDNS's `plugin/rewrite/setup.go` and its rule
//! constructors: `rewrite [continue|stop] FIELD ...`, one rule per directive (the
//! block form `rewrite [continue|stop] { name ...; answer ... }` is the same rule
//! written over several lines). Fields: `name` (exact, prefix, suffix, substring,
//! regex; `answer auto`, `answer name FROM TO`, `answer value FROM TO`), `type`,
//! `class`, `ttl`, `rcode`. `edns0` and `cname` are refused as not implemented.

use super::context::Ctx;
use super::error::ConfigError;
use super::lexer::Token;
use super::parser::LineSyntax;
use super::template::rcode;
use super::types::{Location, Pattern};
use crate::limits;
use crate::wire;

/// One `rewrite` directive.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteRule {
    /// `stop` (the default): no later rule runs once this one applied.
    pub stop: bool,
    pub action: RewriteAction,
    pub location: Location,
}

/// What a rule matches and changes.
#[derive(Debug, Clone, PartialEq)]
pub enum RewriteAction {
    /// The question's name; the answer's names are mapped back by `answers` (and by
    /// `auto`, the reverse of this rule for this query).
    Name {
        matcher: NameMatch,
        /// The new name: a fully qualified lower-case name; for `regex`, `{N}` are
        /// replaced by the captures.
        to: String,
        auto: bool,
        answers: Vec<AnswerRule>,
    },
    /// The question's type (`rewrite type FROM TO`).
    Type { from: u16, to: u16 },
    /// The question's class.
    Class { from: u16, to: u16 },
    /// The answer's TTLs, clamped to `min..=max`, for names the matcher matches.
    Ttl {
        matcher: NameMatch,
        min: u32,
        max: u32,
    },
    /// The answer's rcode `from` becomes `to`, for names the matcher matches.
    Rcode {
        matcher: NameMatch,
        from: u16,
        to: u16,
    },
}

/// How a rule matches the (lower-cased, fully qualified) query name.
#[derive(Debug, Clone, PartialEq)]
pub enum NameMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Substring(String),
    Regex(Pattern),
}

/// `answer name FROM TO` (record owners) or `answer value FROM TO` (the names in
/// CNAME, DNAME, NS, PTR, MX, SRV, NAPTR and SOA data).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRule {
    pub value: bool,
    pub pattern: Pattern,
    /// Replacement with `{N}` captures, fully qualified, lower-cased.
    pub to: String,
}

const USAGE: &str = "rewrite [continue|stop] name|type|class|ttl|rcode ...";

/// `rewrite ...`: one rule.
pub(crate) fn parse(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<RewriteRule, ConfigError> {
    let mut args: Vec<&Token> = line.args.iter().collect();
    if args.len() < 2 {
        // The block form: every token of the block, in order.
        for option in line.block.iter().flatten() {
            args.push(&option.name);
            args.extend(option.args.iter());
        }
    } else {
        ctx.no_options(line, "rewrite")?;
    }
    let stop = match args.first().map(|t| t.text.to_ascii_lowercase()) {
        Some(mode) if mode == "continue" || mode == "stop" => {
            args.remove(0);
            mode == "stop"
        }
        _ => true,
    };
    let Some((field, rest)) = args.split_first() else {
        return Err(ConfigError::Arguments {
            at: ctx.at(line.name.line),
            context: "rewrite".into(),
            given: line.args.len(),
            usage: USAGE,
        });
    };
    let arity = |want: std::ops::RangeInclusive<usize>, usage: &'static str| {
        if want.contains(&rest.len()) {
            Ok(())
        } else {
            Err(ConfigError::Arguments {
                at: ctx.at(field.line),
                context: format!("rewrite {}", field.text),
                given: rest.len(),
                usage,
            })
        }
    };
    let action = match field.text.to_ascii_lowercase().as_str() {
        "name" => {
            arity(
                2..=usize::MAX,
                "name [exact|prefix|suffix|substring|regex] FROM TO [answer ...]",
            )?;
            name_rule(ctx, rest)?
        }
        "type" | "class" => {
            arity(2..=2, "type|class FROM TO")?;
            let code = |t: &Token| match field.text.to_ascii_lowercase().as_str() {
                "type" => wire::parse_qtype(&t.text)
                    .filter(|_| !t.text.to_ascii_uppercase().starts_with("TYPE")),
                _ => class_code(&t.text),
            };
            let (from, to) = (rest[0], rest[1]);
            let from_code = code(from)
                .ok_or_else(|| ctx.invalid(from, "rewrite", format!("invalid {}", field.text)))?;
            let to_code = code(to)
                .ok_or_else(|| ctx.invalid(to, "rewrite", format!("invalid {}", field.text)))?;
            if field.text.eq_ignore_ascii_case("type") {
                RewriteAction::Type {
                    from: from_code,
                    to: to_code,
                }
            } else {
                RewriteAction::Class {
                    from: from_code,
                    to: to_code,
                }
            }
        }
        "ttl" => {
            arity(
                2..=3,
                "ttl [exact|prefix|suffix|substring|regex] NAME SECONDS|MIN-MAX",
            )?;
            let (matcher, value) = matcher_and_rest(ctx, rest, 2)?;
            let token = value[0];
            let (min, max) = ttl_range(&token.text).ok_or_else(|| {
                ctx.invalid(
                    token,
                    "rewrite ttl",
                    "invalid TTL (SECONDS, MIN-MAX, -MAX or MIN-)",
                )
            })?;
            RewriteAction::Ttl { matcher, min, max }
        }
        "rcode" => {
            arity(
                3..=4,
                "rcode [exact|prefix|suffix|substring|regex] NAME FROM TO",
            )?;
            let (matcher, codes) = matcher_and_rest(ctx, rest, 3)?;
            let from = rcode(ctx, codes[0], "rewrite rcode")?;
            let to = rcode(ctx, codes[1], "rewrite rcode")?;
            RewriteAction::Rcode { matcher, from, to }
        }
        "edns0" | "cname" => {
            return Err(ConfigError::Unsupported {
                at: ctx.at(field.line),
                context: "rewrite".into(),
                token: field.text.clone(),
                reason: "only name, type, class, ttl and rcode rules are implemented".into(),
            })
        }
        "answer" => {
            return Err(ctx.invalid(
                field,
                "rewrite",
                "response rewrites must begin with a name rule",
            ))
        }
        _ => {
            return Err(ctx.invalid(
                field,
                "rewrite",
                "invalid rule type (name, type, class, ttl or rcode)",
            ))
        }
    };
    Ok(RewriteRule {
        stop,
        action,
        location: ctx.at(line.name.line),
    })
}

/// CoreDNS `plugin.Name(s).Normalize()`: lower-cased, with a trailing dot.
fn normalize(text: &str) -> String {
    let mut name = text.to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

/// `[TYPE] NAME VALUES...` where TYPE defaults to exact when only `values` + 1
/// arguments are given (ttl, rcode).
fn matcher_and_rest<'t>(
    ctx: &Ctx<'_>,
    args: &'t [&'t Token],
    without_type: usize,
) -> Result<(NameMatch, &'t [&'t Token]), ConfigError> {
    if args.len() == without_type {
        return Ok((NameMatch::Exact(normalize(&args[0].text)), &args[1..]));
    }
    let matcher = matcher(ctx, args[0], args[1])?;
    Ok((matcher, &args[2..]))
}

fn matcher(ctx: &Ctx<'_>, kind: &Token, from: &Token) -> Result<NameMatch, ConfigError> {
    Ok(match kind.text.to_ascii_lowercase().as_str() {
        "exact" => NameMatch::Exact(normalize(&from.text)),
        "prefix" => NameMatch::Prefix(normalize(&from.text)),
        "suffix" => NameMatch::Suffix(normalize(&from.text)),
        "substring" => NameMatch::Substring(normalize(&from.text)),
        "regex" => NameMatch::Regex(ctx.regex(from, "rewrite")?),
        _ => {
            return Err(ctx.invalid(
                kind,
                "rewrite",
                "match type must be exact, prefix, suffix, substring or regex",
            ))
        }
    })
}

fn name_rule(ctx: &Ctx<'_>, args: &[&Token]) -> Result<RewriteAction, ConfigError> {
    let (matcher, to, options) = match args {
        [from, to] => (NameMatch::Exact(normalize(&from.text)), *to, &[][..]),
        [kind, from, to, options @ ..] => (matcher(ctx, kind, from)?, *to, options),
        _ => return Err(ctx.invalid(args[0], "rewrite name", "too few arguments")),
    };
    let target = normalize(&to.text);
    if let NameMatch::Regex(pattern) = &matcher {
        check_groups(ctx, to, pattern)?;
    } else if matches!(matcher, NameMatch::Exact(_))
        && wire::name::from_presentation(&target).is_none()
    {
        return Err(ctx.invalid(to, "rewrite name", "not a valid domain name"));
    }
    let (auto, answers) = answer_rules(ctx, options)?;
    let auto = auto || matches!(matcher, NameMatch::Exact(_));
    Ok(RewriteAction::Name {
        matcher,
        to: target,
        auto,
        answers,
    })
}

/// `answer auto | answer name FROM TO | answer value FROM TO`, repeated; after the
/// first, the word `answer` may be left out.
fn answer_rules(ctx: &Ctx<'_>, args: &[&Token]) -> Result<(bool, Vec<AnswerRule>), ConfigError> {
    let mut auto = false;
    let mut rules = Vec::new();
    let mut at = 0usize;
    while let Some(&token) = args.get(at) {
        if token.text == "answer" {
            at += 1;
        } else if at == 0 {
            return Err(ctx.invalid(token, "rewrite name", "expected \"answer\" after FROM TO"));
        }
        let Some(&kind) = args.get(at) else {
            return Err(ctx.invalid(
                token,
                "rewrite name",
                "answer rule without auto, name or value",
            ));
        };
        at += 1;
        match kind.text.as_str() {
            "auto" => auto = true,
            "name" | "value" => {
                let (Some(&from), Some(&to)) = (args.get(at), args.get(at + 1)) else {
                    return Err(ctx.invalid(
                        kind,
                        "rewrite name",
                        "answer name|value FROM TO needs 2 arguments",
                    ));
                };
                let pattern = ctx.regex(from, "rewrite answer")?;
                check_groups(ctx, to, &pattern)?;
                rules.push(AnswerRule {
                    value: kind.text == "value",
                    pattern,
                    to: normalize(&to.text),
                });
                at += 2;
            }
            _ => {
                return Err(ctx.invalid(
                    kind,
                    "rewrite name",
                    "answer rule must be auto, name or value",
                ))
            }
        }
        if rules.len() > limits::REWRITE_RULES_PER_BLOCK_MAX {
            return Err(ctx.invalid(kind, "rewrite name", "too many answer rules"));
        }
    }
    if auto && rules.iter().any(|r| !r.value) {
        return Err(ctx.invalid(
            args[0],
            "rewrite name",
            "auto name answer rule cannot be combined with explicit name answer rules",
        ));
    }
    Ok((auto, rules))
}

/// A replacement may not use more `{N}` than the pattern has groups.
fn check_groups(ctx: &Ctx<'_>, to: &Token, pattern: &Pattern) -> Result<(), ConfigError> {
    let groups = pattern.0.captures_len() - 1;
    let used = (0..=100)
        .filter(|n| to.text.contains(&format!("{{{n}}}")))
        .count();
    if used > groups {
        let reason = format!("uses {used} subexpressions, the pattern has {groups}");
        return Err(ctx.invalid(to, "rewrite", reason));
    }
    Ok(())
}

/// `SECONDS`, `MIN-MAX`, `-MAX`, `MIN-` (CoreDNS `isValidTTL`).
fn ttl_range(text: &str) -> Option<(u32, u32)> {
    const TTL_MAX: u32 = 2_147_483_647;
    match text.split_once('-') {
        None => text.parse().ok().map(|t| (t, t)),
        Some(("", "")) => None,
        Some((min, max)) => {
            let min = if min.is_empty() { 0 } else { min.parse().ok()? };
            let max = if max.is_empty() {
                TTL_MAX
            } else {
                max.parse().ok()?
            };
            (min <= max).then_some((min, max))
        }
    }
}

fn class_code(text: &str) -> Option<u16> {
    match text.to_ascii_uppercase().as_str() {
        "IN" => Some(1),
        "CH" => Some(3),
        "HS" => Some(4),
        _ => None,
    }
}
