//! The `errors` and `log` directives' options: `errors { consolidate DURATION
//! REGEXP [LEVEL] }` (repeated errors matching REGEXP become one summary line per
//! DURATION) and `log [NAMES...] [FORMAT] { class CLASSES... }` (which answers are
//! logged: `success`, `denial`, `error`, `all`).

use std::time::Duration;

use super::context::Ctx;
use super::parser::LineSyntax;
use super::types::{Consolidate, LogLevel, ResponseClasses};
use super::ConfigError;

/// `errors [{ consolidate DURATION REGEXP [LEVEL] ... }]`.
pub fn errors(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<Vec<Consolidate>, ConfigError> {
    ctx.arg_count(
        line,
        "errors",
        0..=0,
        "errors { consolidate DURATION REGEXP [LEVEL] }",
    )?;
    let mut rules = Vec::new();
    for option in line.block.iter().flatten() {
        if option.name.text != "consolidate" {
            return Err(ConfigError::UnknownOption {
                at: ctx.at(option.name.line),
                directive: "errors",
                option: option.name.text.clone(),
                supported: "consolidate",
            });
        }
        let usage = "consolidate DURATION REGEXP [warning|error|info|debug]";
        ctx.arg_count(option, "errors consolidate", 2..=3, usage)?;
        let (Some(period), Some(pattern)) = (option.args.first(), option.args.get(1)) else {
            continue;
        };
        let period_value = ctx.duration(period, "errors consolidate")?;
        if period_value < Duration::from_secs(1) {
            return Err(ctx.invalid(
                period,
                "errors consolidate",
                "the period must be at least 1s",
            ));
        }
        regex::Regex::new(&pattern.text)
            .map_err(|err| ctx.invalid(pattern, "errors consolidate", err.to_string()))?;
        let level = match option.args.get(2).map(|t| (t, t.text.as_str())) {
            None | Some((_, "error")) => LogLevel::Error,
            Some((_, "warning")) => LogLevel::Warning,
            Some((_, "info")) => LogLevel::Info,
            Some((_, "debug")) => LogLevel::Debug,
            Some((token, _)) => {
                return Err(ctx.invalid(
                    token,
                    "errors consolidate",
                    "level must be warning, error, info or debug",
                ))
            }
        };
        rules.push(Consolidate {
            period: period_value,
            pattern: pattern.text.clone(),
            level,
        });
    }
    Ok(rules)
}

/// `log [NAMES...] [FORMAT] [{ class CLASSES... }]`: names and formats are accepted
/// for compatibility (every name is logged, in the common format).
pub fn log(ctx: &Ctx<'_>, line: &LineSyntax) -> Result<ResponseClasses, ConfigError> {
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
