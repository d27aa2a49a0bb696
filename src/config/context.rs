//! What every directive parser shares: the file being read (for file:line in errors
//! and relative paths) and the check that a directive or option appears once. Its own
//! module so the directive modules (`cache`, `forward`, `logging`, `acl`) and `setup`,
//! which dispatches to them, all import it from below.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::lexer::Token;
use super::parser::LineSyntax;
use super::types::{Location, Pattern, Zone};
use super::value::{parse_duration, parse_int, parse_zone_name};

/// What every directive parser needs: the file, for locations and relative paths.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
}

impl Ctx<'_> {
    pub fn at(&self, line: usize) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line,
        }
    }

    pub fn invalid(&self, token: &Token, context: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(token.line),
            context: context.to_string(),
            token: token.text.clone(),
            reason: reason.into(),
        }
    }

    /// Checks the argument count of a directive or option line.
    pub fn arg_count(
        &self,
        line: &LineSyntax,
        context: &str,
        range: std::ops::RangeInclusive<usize>,
        usage: &'static str,
    ) -> Result<(), ConfigError> {
        if range.contains(&line.args.len()) {
            return Ok(());
        }
        Err(ConfigError::Arguments {
            at: self.at(line.name.line),
            context: context.to_string(),
            given: line.args.len(),
            usage,
        })
    }

    /// Refuses an option block on a directive that takes none (`{ }` empty is fine).
    pub fn no_options(
        &self,
        line: &LineSyntax,
        directive: &'static str,
    ) -> Result<(), ConfigError> {
        match line.block.as_deref().and_then(<[LineSyntax]>::first) {
            None => Ok(()),
            Some(option) => Err(ConfigError::UnknownOption {
                at: self.at(option.name.line),
                directive,
                option: option.name.text.clone(),
                supported: "none",
            }),
        }
    }

    pub fn duration(&self, token: &Token, context: &str) -> Result<Duration, ConfigError> {
        parse_duration(&token.text).map_err(|reason| self.invalid(token, context, reason))
    }

    pub fn zone(&self, token: &Token, context: &str) -> Result<Zone, ConfigError> {
        parse_zone_name(&token.text).map_err(|reason| self.invalid(token, context, reason))
    }

    /// A regular expression within the pattern and compiled-size bounds.
    pub fn regex(&self, token: &Token, context: &str) -> Result<Pattern, ConfigError> {
        let max = crate::limits::REGEX_PATTERN_BYTES_MAX;
        if token.text.len() > max {
            let reason = format!("regex pattern too long: {} > {max}", token.text.len());
            return Err(self.invalid(token, context, reason));
        }
        regex::RegexBuilder::new(&token.text)
            .size_limit(crate::limits::REGEX_COMPILED_BYTES_MAX)
            .build()
            .map(Pattern)
            .map_err(|err| self.invalid(token, context, format!("bad regex: {err}")))
    }

    pub fn int<T>(&self, token: &Token, context: &str, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        parse_int(&token.text, min, max).map_err(|reason| self.invalid(token, context, reason))
    }
}

/// Remembers the line of each directive or option seen, to refuse a second one.
#[derive(Default)]
pub(crate) struct Once(HashMap<String, usize>);

impl Once {
    pub fn check(&mut self, ctx: &Ctx<'_>, name: &str, line: usize) -> Result<(), ConfigError> {
        match self.0.insert(name.to_string(), line) {
            None => Ok(()),
            Some(first_line) => Err(ConfigError::Duplicate {
                at: ctx.at(line),
                name: name.to_string(),
                first_line,
            }),
        }
    }
}
