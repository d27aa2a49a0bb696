//! The `errors` directive on one shard: each failed query is logged as CoreDNS
//! writes it, `[ERROR] plugin/errors: RCODE qname QTYPE: reason` (RCODE a number,
//! the reason in the words of CoreDNS's forward: `read udp L->R: i/o timeout`,
//! [`upstream_reason`]), except errors whose reason matches a `consolidate` rule,
//! which are counted and summarised once per period (`N errors like 'REGEXP'
//! occurred in last PERIOD`, at the rule's level). So patterns and log-based alerts
//! written for CoreDNS match. Counting is per shard, like every other counter.
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
use crate::upstream::UpstreamError;

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
    /// `show_first`: the period's first error is written whole.
    show_first: bool,
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
                    show_first: r.show_first,
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

    /// Logs one failure, or counts it under the first consolidate rule whose pattern
    /// matches `reason` (CoreDNS matches the error's text, not the line). `rcode` is
    /// the answer's, written as a number as CoreDNS does.
    pub fn failed(&self, rcode: u16, qname: &str, qtype: &str, reason: &str) {
        let rule = self.rules.iter().find(|rule| rule.pattern.is_match(reason));
        let level = match rule {
            Some(rule) => {
                let count = rule.count.get() + 1;
                rule.count.set(count);
                if count > 1 || !rule.show_first {
                    return;
                }
                rule.level
            }
            None => LogLevel::Error,
        };
        let mut line = self.line.borrow_mut();
        line.clear();
        use std::fmt::Write;
        let _ = write!(line, "{rcode} {qname} {qtype}: {reason}");
        if rule.is_none() && !self.storm.admit(rcode, reason) {
            self.summarised.set(self.summarised.get() + 1);
            return;
        }
        write(level, &line);
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
            // A lone error of a `show_first` rule was written already.
            if count == 0 || (count == 1 && rule.show_first) {
                continue;
            }
            let period = go_duration(rule.period);
            let message = format!(
                "{count} errors like '{}' occurred in last {period}",
                rule.source
            );
            write(rule.level, &message);
        }
    }

    /// Errors counted but not yet summarised (for tests).
    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.rules.iter().map(|r| r.count.get()).sum()
    }
}

/// One line as CoreDNS's logger writes it (`[LEVEL] plugin/errors: message`), at
/// the matching tracing level.
fn write(level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "errors", "[ERROR] plugin/errors: {message}"),
        LogLevel::Warning => {
            tracing::warn!(target: "errors", "[WARNING] plugin/errors: {message}")
        }
        LogLevel::Info => tracing::info!(target: "errors", "[INFO] plugin/errors: {message}"),
        LogLevel::Debug => tracing::debug!(target: "errors", "[DEBUG] plugin/errors: {message}"),
    }
}

/// Go's `time.Duration` text (`30s`, `5m0s`, `1h0m0s`, `1.5s`), as CoreDNS prints
/// a consolidate period.
pub fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_secs_f64() * 1000.0);
    }
    let secs = d.as_secs();
    let (hours, minutes) = (secs / 3600, secs % 3600 / 60);
    let seconds = (secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// A failed forward in the words of CoreDNS 1.14's `forward` (Go's `net` errors):
/// `read udp L->R: i/o timeout`, `dial tcp R: connect: connection refused`, `EOF`,
/// `no healthy proxies`. `proto` is the transport the attempt used. The attempt's
/// socket is gone when the error is written: its local address is written as the
/// unspecified address of the family with port 0.
pub fn upstream_reason(err: &UpstreamError, proto: &str) -> String {
    let local = |to: &std::net::SocketAddr| match to {
        std::net::SocketAddr::V4(_) => "0.0.0.0:0",
        std::net::SocketAddr::V6(_) => "[::]:0",
    };
    match err {
        UpstreamError::Timeout(to) => format!("read {proto} {}->{to}: i/o timeout", local(to)),
        UpstreamError::Io { addr, source } => {
            use std::io::ErrorKind;
            let text = go_os_error(source);
            match source.kind() {
                ErrorKind::ConnectionRefused if proto == "tcp" => {
                    format!("dial tcp {addr}: connect: {text}")
                }
                ErrorKind::TimedOut => format!("read {proto} {}->{addr}: i/o timeout", local(addr)),
                _ => format!("read {proto} {}->{addr}: read: {text}", local(addr)),
            }
        }
        UpstreamError::Closed(_) => "EOF".to_string(),
        UpstreamError::AllDown => "no healthy proxies".to_string(),
        other => other.to_string(),
    }
}

/// An OS error as Go's `syscall.Errno` says it: the C library's message in lower
/// case, without Rust's " (os error N)".
fn go_os_error(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

impl Storm {
    /// True when a line of this kind may be written whole in this period.
    fn admit(&self, rcode: u16, reason: &str) -> bool {
        let mut kinds = self.kinds.borrow_mut();
        let code = rcode.to_string();
        let same = |k: &&mut Kind| {
            k.key
                .strip_prefix(code.as_str())
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
            key: format!("{code}: {reason}"),
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
                let period = go_duration(period);
                let message = format!("{n} more errors like '{key}' in the last {period} (summarised; an `errors {{ consolidate }}` rule chooses how)");
                write(LogLevel::Error, &message);
            }
        }
        let other = self.other.replace(0);
        if other > 0 {
            let period = go_duration(period);
            let message =
                format!("{other} more errors of other kinds in the last {period} (summarised)");
            write(LogLevel::Error, &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, show_first: bool) -> Consolidate {
        Consolidate {
            period: Duration::from_secs(5),
            pattern: pattern.into(),
            level: LogLevel::Warning,
            show_first,
        }
    }

    #[test]
    fn consolidates_errors_whose_text_matches_per_period() {
        // CoreDNS matches the error's text: a pattern anchored at its start works.
        let log = ErrorLog::new(&[rule("^read udp .*: i/o timeout$", false)]);
        let timeout = "read udp 0.0.0.0:0->127.0.0.1:53: i/o timeout";
        for _ in 0..3 {
            log.failed(2, "a.example.", "A", timeout);
        }
        log.failed(2, "b.example.", "A", "EOF");
        assert_eq!(log.pending(), 3, "only the matching errors are counted");
        log.flush(Instant::now());
        assert_eq!(log.pending(), 3, "not summarised before the period ends");
        log.flush(Instant::now() + Duration::from_secs(6));
        assert_eq!(log.pending(), 0);
    }

    #[test]
    fn show_first_counts_the_first_error_as_written() {
        let log = ErrorLog::new(&[rule("timeout", true)]);
        log.failed(2, "a.example.", "A", "i/o timeout");
        assert_eq!(log.pending(), 1);
        log.failed(2, "a.example.", "A", "i/o timeout");
        assert_eq!(log.pending(), 2);
    }

    #[test]
    fn reasons_in_corednss_words() {
        let to: std::net::SocketAddr = "10.96.0.10:53".parse().unwrap();
        assert_eq!(
            upstream_reason(&UpstreamError::Timeout(to), "udp"),
            "read udp 0.0.0.0:0->10.96.0.10:53: i/o timeout"
        );
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let refused_os = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            upstream_reason(
                &UpstreamError::Io {
                    addr: to,
                    source: refused_os
                },
                "udp"
            ),
            "read udp 0.0.0.0:0->10.96.0.10:53: read: connection refused"
        );
        assert!(upstream_reason(
            &UpstreamError::Io {
                addr: to,
                source: refused()
            },
            "tcp"
        )
        .starts_with("dial tcp 10.96.0.10:53: connect: "));
        assert_eq!(upstream_reason(&UpstreamError::Closed(to), "tcp"), "EOF");
        assert_eq!(
            upstream_reason(&UpstreamError::AllDown, "udp"),
            "no healthy proxies"
        );
        let v6: std::net::SocketAddr = "[fd00::10]:53".parse().unwrap();
        assert_eq!(
            upstream_reason(&UpstreamError::Timeout(v6), "tcp"),
            "read tcp [::]:0->[fd00::10]:53: i/o timeout"
        );
    }

    #[test]
    fn go_durations() {
        let cases = [
            (30, "30s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
            (3725, "1h2m5s"),
            (90, "1m30s"),
        ];
        for (secs, text) in cases {
            assert_eq!(go_duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn a_storm_of_one_kind_writes_a_few_lines_and_counts_the_rest() {
        let log = ErrorLog::new(&[]);
        let reason = "read udp 0.0.0.0:0->127.0.0.1:53: i/o timeout";
        for i in 0..1_000 {
            log.failed(2, &format!("n{i}.example."), "A", reason);
        }
        let held = 1_000 - ERRORS_LINES_PER_KIND_MAX;
        assert_eq!(log.summarised(), held);
        // Another kind still gets its own lines.
        assert!(log.storm.admit(2, "EOF"));
        assert!(log.storm.admit(5, reason), "the rcode is part of the kind");
        let kinds = log.storm.kinds.borrow().len();
        assert_eq!(kinds, 3);
        // A new period starts with a clean slate.
        log.flush(Instant::now() + Duration::from_secs(ERRORS_STORM_PERIOD_SECS + 1));
        assert!(log.storm.kinds.borrow().is_empty());
        assert!(log.storm.admit(2, reason));
    }

    #[test]
    fn kinds_past_the_bound_are_counted_not_tracked() {
        let log = ErrorLog::new(&[]);
        for i in 0..ERRORS_KINDS_MAX + 10 {
            log.failed(2, "a.example.", "A", &format!("reason {i}"));
        }
        assert_eq!(log.storm.kinds.borrow().len(), ERRORS_KINDS_MAX);
        assert_eq!(log.storm.other.get(), 10);
        assert_eq!(log.summarised(), 10);
    }
}
