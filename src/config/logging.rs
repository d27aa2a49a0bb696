//! The `errors` and `log` directives, as CoreDNS 1.14 parses them:
//! `errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }`
//! (errors whose text matches REGEXP become one summary line per DURATION) and
//! `log [NAMES...] [FORMAT] { class CLASSES... }` (which names and answers are
//! logged, and the line's placeholders, resolved here once).

use std::time::Duration;

use super::context::Ctx;
use super::parser::LineSyntax;
use super::types::{Consolidate, LogField, LogLevel, LogPart, LogRule, ResponseClasses};
use super::ConfigError;
use crate::limits::REGEX_PATTERN_BYTES_MAX;

/// CoreDNS `log.CommonLogFormat` (`-` is its replacer's empty value).
pub const COMMON_LOG_FORMAT: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";

impl LogRule {
    /// `log` without arguments: every name, every answer, the common format.
    pub fn common() -> LogRule {
        LogRule {
            scope: ".".into(),
            format: parse_format(COMMON_LOG_FORMAT),
            classes: ResponseClasses::ALL,
        }
    }
}

/// `errors [stdout] [{ stacktrace; consolidate ... }]`.
pub fn errors(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<Vec<Consolidate>, ConfigError> {
    let usage = "errors [stdout] { consolidate DURATION REGEXP [LEVEL] [show_first] }";
    ctx.arg_count(line, "errors", 0..=1, usage)?;
    if let Some(token) = line.args.first().filter(|t| t.text != "stdout") {
        return Err(ctx.invalid(token, "errors", "the only log file is stdout"));
    }
    let mut rules = Vec::new();
    for option in line.block.iter().flatten() {
        match option.name.text.as_str() {
            "consolidate" => rules.push(consolidate(ctx, option)?),
            // Go stack traces of recovered panics; a Rust panic is logged with its
            // location (and a backtrace under RUST_BACKTRACE) either way.
            "stacktrace" => ctx.arg_count(option, "errors stacktrace", 0..=0, "stacktrace")?,
            _ => {
                return Err(ConfigError::UnknownOption {
                    at: ctx.at(option.name.line),
                    directive: "errors",
                    option: option.name.text.clone(),
                    supported: "consolidate, stacktrace",
                })
            }
        }
    }
    Ok(rules)
}

/// `consolidate DURATION REGEXP [warning|error|info|debug] [show_first]`.
fn consolidate(ctx: &Ctx<'_>, option: &LineSyntax) -> Result<Consolidate, ConfigError> {
    let usage = "consolidate DURATION REGEXP [warning|error|info|debug] [show_first]";
    ctx.arg_count(option, "errors consolidate", 2..=4, usage)?;
    let (Some(period), Some(pattern)) = (option.args.first(), option.args.get(1)) else {
        return Err(ctx.invalid(&option.name, "errors consolidate", usage));
    };
    let period_value = ctx.duration(period, "errors consolidate")?;
    if period_value < Duration::from_secs(1) {
        return Err(ctx.invalid(
            period,
            "errors consolidate",
            "the period must be at least 1s",
        ));
    }
    if pattern.text.len() > REGEX_PATTERN_BYTES_MAX {
        let reason = format!(
            "regex pattern too long: {} > {REGEX_PATTERN_BYTES_MAX}",
            pattern.text.len()
        );
        return Err(ctx.invalid(pattern, "errors consolidate", reason));
    }
    regex::Regex::new(&pattern.text)
        .map_err(|err| ctx.invalid(pattern, "errors consolidate", err.to_string()))?;
    let (mut level, mut show_first) = (None, false);
    for token in option.args.iter().skip(2) {
        let named = match token.text.as_str() {
            "error" => Some(LogLevel::Error),
            "warning" => Some(LogLevel::Warning),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "show_first" if !show_first => None,
            _ => {
                return Err(ctx.invalid(
                    token,
                    "errors consolidate",
                    "level must be warning, error, info or debug, then show_first",
                ))
            }
        };
        match named {
            Some(_) if level.is_some() || show_first => {
                return Err(ctx.invalid(
                    token,
                    "errors consolidate",
                    "one level, before show_first",
                ))
            }
            Some(named) => level = Some(named),
            None => show_first = true,
        }
    }
    Ok(Consolidate {
        period: period_value,
        pattern: pattern.text.clone(),
        level: level.unwrap_or(LogLevel::Error),
        show_first,
    })
}

/// `log [NAMES...] [FORMAT] [{ class CLASSES... }]`: one rule per name (every name
/// without), as CoreDNS: one argument is a name; with more, the last is the format
/// when it holds a `{`, with `{common}` and `{combined}` expanded.
pub fn log(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<Vec<LogRule>, ConfigError> {
    let mut names: Vec<&super::lexer::Token> = line.args.iter().collect();
    let mut format = COMMON_LOG_FORMAT.to_string();
    if names.len() > 1 && names.last().is_some_and(|t| t.text.contains('{')) {
        let last = names.pop().map(|t| t.text.as_str()).unwrap_or_default();
        let combined = format!("{COMMON_LOG_FORMAT} \"{{>opcode}}\"");
        format = last
            .replace("{common}", COMMON_LOG_FORMAT)
            .replace("{combined}", &combined);
    }
    let format = parse_format(&format);
    let classes = log_classes(ctx, line)?;
    if names.is_empty() {
        return Ok(vec![LogRule {
            scope: ".".into(),
            format,
            classes,
        }]);
    }
    names
        .into_iter()
        .map(|token| {
            let scope = fqdn(&token.text);
            if crate::wire::name::zone_to_wire(&scope).is_none() {
                return Err(ctx.invalid(token, "log", "not a domain name"));
            }
            Ok(LogRule {
                scope,
                format: format.clone(),
                classes,
            })
        })
        .collect()
}

/// Lower-cased, with the closing dot (CoreDNS `dns.Fqdn`; names match any case).
fn fqdn(name: &str) -> String {
    let mut name = name.to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

/// `{ class success|denial|error|all... }`, every class without.
fn log_classes(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<ResponseClasses, ConfigError> {
    let mut classes: Option<ResponseClasses> = None;
    for option in line.block.iter().flatten() {
        if option.name.text != "class" {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "log",
                option: option.name.text.clone(),
                supported: "class",
            });
        }
        ctx.arg_count(
            option,
            "log class",
            1..=4,
            "class success|denial|error|all...",
        )?;
        let set = classes.get_or_insert(ResponseClasses::NONE);
        for token in &option.args {
            match token.text.as_str() {
                "all" => *set = ResponseClasses::ALL,
                "success" => set.success = true,
                "denial" => set.denial = true,
                "error" => set.error = true,
                _ => {
                    return Err(ctx.invalid(
                        token,
                        "log class",
                        "classes are success, denial, error and all",
                    ))
                }
            }
        }
    }
    Ok(classes.unwrap_or(ResponseClasses::ALL))
}

/// A format's placeholders, as CoreDNS's replacer reads them: each `}` closes the
/// nearest `{` before it; a known placeholder becomes a field, `{/NAME}` metadata,
/// anything else stays text.
pub fn parse_format(mut text: &str) -> Vec<LogPart> {
    let mut parts: Vec<LogPart> = Vec::new();
    let mut literal = String::new();
    while let Some(close) = text.find('}') {
        let (head, rest) = text.split_at(close + 1);
        let field = head.rfind('{').and_then(|open| {
            let name = head.get(open..)?;
            let field = field_named(name)
                .or_else(|| name.starts_with("{/").then_some(LogField::Metadata))?;
            Some((open, field))
        });
        match field {
            Some((open, field)) => {
                literal.push_str(head.get(..open).unwrap_or_default());
                if !literal.is_empty() {
                    parts.push(LogPart::Text(std::mem::take(&mut literal)));
                }
                parts.push(LogPart::Field(field));
            }
            None => literal.push_str(head),
        }
        text = rest;
    }
    literal.push_str(text);
    if !literal.is_empty() {
        parts.push(LogPart::Text(literal));
    }
    parts
}

fn field_named(placeholder: &str) -> Option<LogField> {
    Some(match placeholder {
        "{type}" => LogField::Type,
        "{name}" => LogField::Name,
        "{class}" => LogField::Class,
        "{proto}" => LogField::Proto,
        "{size}" => LogField::Size,
        "{remote}" => LogField::Remote,
        "{port}" => LogField::Port,
        "{local}" => LogField::Local,
        "{>id}" => LogField::Id,
        "{>opcode}" => LogField::Opcode,
        "{>do}" => LogField::Do,
        "{>bufsize}" => LogField::Bufsize,
        "{rcode}" => LogField::Rcode,
        "{rsize}" => LogField::Rsize,
        "{duration}" => LogField::Duration,
        "{>rflags}" => LogField::Rflags,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_as_coredns_reads_them() {
        use LogField as F;
        let text = |t: &str| LogPart::Text(t.into());
        assert_eq!(
            parse_format("{remote} {>id} x{name}}{nope} {/meta}."),
            vec![
                LogPart::Field(F::Remote),
                text(" "),
                LogPart::Field(F::Id),
                text(" x"),
                LogPart::Field(F::Name),
                text("}{nope} "),
                LogPart::Field(F::Metadata),
                text("."),
            ]
        );
        assert_eq!(parse_format("plain"), vec![text("plain")]);
        assert_eq!(
            parse_format("{{type}"),
            vec![text("{"), LogPart::Field(F::Type)]
        );
        let common = parse_format(COMMON_LOG_FORMAT);
        let fields = common
            .iter()
            .filter(|p| matches!(p, LogPart::Field(_)))
            .count();
        assert_eq!(fields, 14);
    }
}
