//! The `errors` directive on one shard: each failed query is logged as
//! `RCODE qname QTYPE: reason`, except lines matching a `consolidate` rule, which
//! are counted and summarised once per period ("N errors like 'REGEXP' occurred in
//! last PERIOD"). Counting is per shard, like every other counter.
//!
//! A storm of errors no rule matches (a flood of cold names while the upstream
//! stalls: one line per query) is held down too: per period, the first lines of each
//! kind (same rcode and reason, any name and type) are written whole, the rest only
//! counted and summarised at the period's end, so logging can neither fill the
//! node's disk nor take the shard's CPU. The lines summarised are counted
//! (`nodelocaldns_errors_summarised_total`).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::config::{Consolidate, LogLevel, ServerBlock};
use crate::limits::{ERRORS_KINDS_MAX, ERRORS_LINES_PER_KIND_MAX, ERRORS_STORM_PERIOD_SECS};

/// The plugin: passes every query on; the miss path writes its failures to `log`.
pub struct Errors {
    pub log: ErrorLog,
}

impl Errors {
    pub fn new(block: &ServerBlock) -> Option<Errors> {
        block.errors.then(|| Errors {
            log: ErrorLog::new(&block.errors_consolidate),
        })
    }
}

struct Rule {
    pattern: regex::Regex,
    /// As written in the Corefile, for the summary line.
    source: String,
    period: Duration,
    level: LogLevel,
    count: Cell<u64>,
    since: Cell<Instant>,
}

/// Lines of one kind in the current storm period.
struct Kind {
    /// `RCODE: reason`.
    key: String,
    written: u64,
    held: u64,
}

/// The storm guard for lines no `consolidate` rule matches.
struct Storm {
    since: Cell<Instant>,
    kinds: RefCell<Vec<Kind>>,
    /// Lines of kinds past `ERRORS_KINDS_MAX` in this period.
    other: Cell<u64>,
}

/// A block's error log on one shard.
pub struct ErrorLog {
    rules: Vec<Rule>,
    storm: Storm,
    /// Lines counted instead of written, over the life of the log.
    summarised: Cell<u64>,
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
            storm: Storm {
                since: Cell::new(now),
                kinds: RefCell::new(Vec::new()),
                other: Cell::new(0),
            },
            summarised: Cell::new(0),
            line: RefCell::new(String::new()),
        }
    }

    /// Lines counted instead of written so far (storm summaries).
    pub fn summarised(&self) -> u64 {
        self.summarised.get()
    }

    /// Logs one failure, or counts it under the first consolidate rule it matches.
    pub fn failed(&self, rcode: &str, qname: &str, qtype: &str, reason: &str) {
        let mut line = self.line.borrow_mut();
        line.clear();
        use std::fmt::Write;
        let _ = write!(line, "{rcode} {qname} {qtype}: {reason}");
        match self.rules.iter().find(|rule| rule.pattern.is_match(&line)) {
            Some(rule) => rule.count.set(rule.count.get() + 1),
            None if self.storm.admit(rcode, reason) => {
                tracing::error!(target: "errors", "{line}")
            }
            None => self.summarised.set(self.summarised.get() + 1),
        }
    }

    /// Prints the summary of every rule whose period is over, and of the storm
    /// period when it is over; called by the shard's control loop.
    pub fn flush(&self, now: Instant) {
        self.storm.flush(now);
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

impl Storm {
    /// True when a line of this kind may be written whole in this period.
    fn admit(&self, rcode: &str, reason: &str) -> bool {
        let mut kinds = self.kinds.borrow_mut();
        let same = |k: &&mut Kind| {
            k.key
                .strip_prefix(rcode)
                .and_then(|rest| rest.strip_prefix(": "))
                .is_some_and(|rest| rest == reason)
        };
        if let Some(kind) = kinds.iter_mut().find(same) {
            if kind.written < ERRORS_LINES_PER_KIND_MAX {
                kind.written += 1;
                return true;
            }
            kind.held += 1;
            return false;
        }
        if kinds.len() >= ERRORS_KINDS_MAX {
            self.other.set(self.other.get() + 1);
            return false;
        }
        kinds.push(Kind {
            key: format!("{rcode}: {reason}"),
            written: 1,
            held: 0,
        });
        true
    }

    /// At the end of a period: one line per kind that had lines held back.
    fn flush(&self, now: Instant) {
        let period = Duration::from_secs(ERRORS_STORM_PERIOD_SECS);
        if now.duration_since(self.since.get()) < period {
            return;
        }
        self.since.set(now);
        for kind in self.kinds.borrow_mut().drain(..) {
            if kind.held > 0 {
                let (n, key) = (kind.held, kind.key);
                tracing::error!(target: "errors", "{n} more errors like '{key}' in the last {period:?} (summarised; an `errors {{ consolidate }}` rule chooses how)");
            }
        }
        let other = self.other.replace(0);
        if other > 0 {
            tracing::error!(target: "errors", "{other} more errors of other kinds in the last {period:?} (summarised)");
        }
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

    #[test]
    fn a_storm_of_one_kind_writes_a_few_lines_and_counts_the_rest() {
        let log = ErrorLog::new(&[]);
        let reason = "upstream 127.0.0.1:53: no answer within the attempt deadline";
        for i in 0..1_000 {
            log.failed("SERVFAIL", &format!("n{i}.example."), "A", reason);
        }
        let held = 1_000 - ERRORS_LINES_PER_KIND_MAX;
        assert_eq!(log.summarised(), held);
        // Another kind still gets its own lines.
        assert!(log.storm.admit("SERVFAIL", "upstream answered SERVFAIL"));
        assert!(
            log.storm.admit("REFUSED", reason),
            "the rcode is part of the kind"
        );
        let kinds = log.storm.kinds.borrow().len();
        assert_eq!(kinds, 3);
        // A new period starts with a clean slate.
        log.flush(Instant::now() + Duration::from_secs(ERRORS_STORM_PERIOD_SECS + 1));
        assert!(log.storm.kinds.borrow().is_empty());
        assert!(log.storm.admit("SERVFAIL", reason));
    }

    #[test]
    fn kinds_past_the_bound_are_counted_not_tracked() {
        let log = ErrorLog::new(&[]);
        for i in 0..ERRORS_KINDS_MAX + 10 {
            log.failed("SERVFAIL", "a.example.", "A", &format!("reason {i}"));
        }
        assert_eq!(log.storm.kinds.borrow().len(), ERRORS_KINDS_MAX);
        assert_eq!(log.storm.other.get(), 10);
        assert_eq!(log.summarised(), 10);
    }
}
