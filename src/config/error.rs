//! The one error type of the config layer. Every variant that comes from file content
//! carries a [`Location`] (file:line) and the offending token, so an operator can fix
//! the Corefile from the message alone.

use std::fmt;
use std::path::PathBuf;

use super::types::Location;

/// Directives we understand, in the order the "unknown directive" message lists them.
pub const SUPPORTED_DIRECTIVES: &[&str] = &[
    "bind",
    "cache",
    "errors",
    "forward",
    "health",
    "log",
    "loop",
    "prometheus",
    "ready",
    "reload",
    "bufsize",
    "whoami",
    "acl",
    "rewrite",
    "template",
    "hosts",
    "loadbalance",
    "dns64",
    "timeouts",
    "debug",
    "pprof",
    "trace",
];

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Why a Corefile (or a file it names, such as a resolv.conf) was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The Corefile or a file it refers to could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Structure: braces, quotes, block keys, an empty file.
    #[error("{at}: {reason}")]
    Syntax {
        at: Location,
        token: String,
        reason: String,
    },
    #[error("{at}: unknown directive \"{name}\" (supported: {})", SUPPORTED_DIRECTIVES.join(", "))]
    UnknownDirective { at: Location, name: String },
    #[error("{at}: {directive}: unknown option \"{option}\" (supported: {supported})")]
    UnknownOption {
        at: Location,
        directive: &'static str,
        option: String,
        supported: &'static str,
    },
    /// A directive (or option) given twice where CoreDNS allows it once.
    #[error("{at}: duplicate \"{name}\" (already given at line {first_line})")]
    Duplicate {
        at: Location,
        name: String,
        first_line: usize,
    },
    #[error("{at}: {context}: wrong number of arguments ({given}); syntax: {usage}")]
    Arguments {
        at: Location,
        context: String,
        given: usize,
        usage: &'static str,
    },
    /// A value that does not parse or is out of range.
    #[error("{at}: {context}: invalid \"{token}\": {reason}")]
    Invalid {
        at: Location,
        context: String,
        token: String,
        reason: String,
    },
    /// Values that are each valid but not together (force_tcp + prefer_udp, ports).
    #[error("{at}: {context}: {reason}")]
    Conflict {
        at: Location,
        context: String,
        reason: String,
    },
    /// Valid CoreDNS that this server deliberately does not implement.
    #[error("{at}: {context}: \"{token}\" is not supported: {reason}")]
    Unsupported {
        at: Location,
        context: String,
        token: String,
        reason: String,
    },
}

impl ConfigError {
    /// Where in the Corefile the error is, when it comes from file content.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownDirective { at, .. }
            | ConfigError::UnknownOption { at, .. }
            | ConfigError::Duplicate { at, .. }
            | ConfigError::Arguments { at, .. }
            | ConfigError::Invalid { at, .. }
            | ConfigError::Conflict { at, .. }
            | ConfigError::Unsupported { at, .. } => Some(at),
        }
    }
}
