//! The `errors` directive on one shard: each failed query is logged as
//! `RCODE qname QTYPE: reason`, except lines matching a `consolidate` rule, which
//! are counted and summarised once per period ("N errors like 'REGEXP' occurred in
//! last PERIOD"). Counting is per shard, like every other counter.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::config::{Consolidate, LogLevel};

struct Rule {
    pattern: regex::Regex,
    /// As written in the Corefile, for the summary line.
    source: String,
    period: Duration,
    level: LogLevel,
    count: Cell<u64>,
    since: Cell<Instant>,
}

/// A block's error log on one shard.
pub struct ErrorLog {
    rules: Vec<Rule>,
    /// Reused buffer for formatting a line before matching it.
    line: RefCell<String>,
}

impl ErrorLog {
    /// Rules whose pattern fails to compile are skipped (the parser rejects them).
    pub fn new(rules: &[Consolidate]) -> ErrorLog {
        let now = Instant::now();
        let rules = rules
            .iter()
            .filter_map(|r| {
                Some(Rule {
                    pattern: regex::Regex::new(&r.pattern).ok()?,
                    source: r.pattern.clone(),
                    period: r.period,
                    level: r.level,
                    count: Cell::new(0),
                    since: Cell::new(now),
                })
            })
            .collect();
        ErrorLog {
            rules,
            line: RefCell::new(String::new()),
        }
    }

    /// Logs one failure, or counts it under the first consolidate rule it matches.
    pub fn failed(&self, rcode: &str, qname: &str, qtype: &str, reason: &str) {
        let mut line = self.line.borrow_mut();
        line.clear();
        use std::fmt::Write;
        let _ = write!(line, "{rcode} {qname} {qtype}: {reason}");
        match self.rules.iter().find(|rule| rule.pattern.is_match(&line)) {
            Some(rule) => rule.count.set(rule.count.get() + 1),
            None => tracing::error!(target: "errors", "{line}"),
        }
    }

    /// Prints the summary of every rule whose period is over; called by the shard's
    /// control loop.
    pub fn flush(&self, now: Instant) {
        for rule in &self.rules {
            if now.duration_since(rule.since.get()) < rule.period {
                continue;
            }
            let count = rule.count.replace(0);
            rule.since.set(now);
            if count == 0 {
                continue;
            }
            let message = format!(
                "{count} errors like '{}' occurred in last {:?}",
                rule.source, rule.period
            );
            match rule.level {
                LogLevel::Error => tracing::error!(target: "errors", "{message}"),
                LogLevel::Warning => tracing::warn!(target: "errors", "{message}"),
                LogLevel::Info => tracing::info!(target: "errors", "{message}"),
                LogLevel::Debug => tracing::debug!(target: "errors", "{message}"),
            }
        }
    }

    /// Errors counted but not yet summarised (for tests).
    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.rules.iter().map(|r| r.count.get()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consolidates_matching_lines_per_period() {
        let rules = [Consolidate {
            period: Duration::from_secs(5),
            pattern: "^SERVFAIL .* i/o timeout$".into(),
            level: LogLevel::Warning,
        }];
        let log = ErrorLog::new(&rules);
        for _ in 0..3 {
            log.failed("SERVFAIL", "a.example.", "A", "i/o timeout");
        }
        log.failed("SERVFAIL", "b.example.", "A", "connection refused");
        assert_eq!(log.pending(), 3, "only the matching lines are counted");
        log.flush(Instant::now());
        assert_eq!(log.pending(), 3, "not summarised before the period ends");
        log.flush(Instant::now() + Duration::from_secs(6));
        assert_eq!(log.pending(), 0);
    }
}
