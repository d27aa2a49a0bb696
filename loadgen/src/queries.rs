//! The queries to send: read from a dnsperf query file, expanded from a name
//! pattern, or made up as unique random names (all-miss load). Every query is
//! encoded once, up front, into one arena; workers only patch the ID.
//!
//! Which query goes next is decided by a [`Picker`]: in file order (passes over
//! the set, shared by all workers so `-n` counts whole passes) or Zipf-distributed
//! over the set for a realistic hit ratio.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use thiserror::Error;

use crate::limits::{NAMES_MAX, QUERY_LINE_BYTES_MAX};
use crate::wire::{self, NameError, QueryOptions};

/// Why the query set could not be built. Every variant names where the input was.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The query file could not be opened or read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of the query file has an unknown type or a bad name.
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A `--names` pattern is malformed.
    #[error("--names {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    /// A `--qtype` mix is malformed.
    #[error("--qtype {mix:?}: {reason}")]
    Mix { mix: String, reason: String },
    /// A generated name is not a valid DNS name.
    #[error(transparent)]
    Wire(#[from] NameError),
    /// Nothing to send.
    #[error("no queries: the query source is empty")]
    Empty,
    /// More names than [`NAMES_MAX`].
    #[error("{count} names requested, the limit is {NAMES_MAX}")]
    TooMany { count: u128 },
}

/// Where names come from.
#[derive(Debug, Clone)]
pub enum NameSource {
    /// dnsperf format: `name type` per line, `;`/`#` comments and blank lines skipped.
    File(PathBuf),
    /// A pattern with `{a..b}` ranges and `{x,y}` alternatives, e.g.
    /// `svc{0..9999}.default.svc.cluster.local`.
    Pattern(String),
    /// This many unique random names under `suffix`.
    Random { count: usize, suffix: String },
    /// Names made while running, by the pod model: nothing to build up front.
    Model,
}

/// Everything needed to build a [`QuerySet`].
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Where the names come from.
    pub source: NameSource,
    /// Type mix for generated names (`(type, weight)`); file entries carry their own.
    pub qtypes: Vec<(u16, u32)>,
    /// Header and EDNS options shared by every query.
    pub options: QueryOptions,
    /// Seed for random names and the type mix, so runs are repeatable.
    pub seed: u64,
}

/// Location of one encoded query in the arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Byte offset of the message in the arena.
    offset: u32,
    /// Message length in bytes.
    len: u16,
    /// Question length in bytes (name + type + class), for the answer check.
    question_len: u16,
}

/// All queries, encoded with ID 0, in one contiguous buffer.
#[derive(Debug, Default)]
pub struct QuerySet {
    /// Encoded messages back to back; one allocation instead of one per query.
    bytes: Vec<u8>,
    /// Where each message is.
    entries: Vec<Entry>,
}

impl QuerySet {
    /// Number of distinct queries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The encoded message (ID 0) and its question length.
    pub fn get(&self, index: usize) -> Option<(&[u8], usize)> {
        let e = self.entries.get(index)?;
        let start = e.offset as usize;
        let msg = self.bytes.get(start..start + e.len as usize)?;
        Some((msg, e.question_len as usize))
    }

    /// Encodes and appends a query; returns its index.
    pub fn add(&mut self, name: &str, qtype: u16, opts: &QueryOptions) -> Result<u32, NameError> {
        self.push(name, qtype, opts)?;
        Ok(self.entries.len() as u32 - 1)
    }

    fn push(&mut self, name: &str, qtype: u16, opts: &QueryOptions) -> Result<(), NameError> {
        let offset = self.bytes.len();
        let question_len = wire::encode_query(name, qtype, opts, &mut self.bytes)?;
        self.entries.push(Entry {
            offset: offset as u32,
            len: (self.bytes.len() - offset) as u16,
            question_len: question_len as u16,
        });
        Ok(())
    }
}

/// Builds the query set described by `spec`.
pub fn build(spec: &QuerySpec) -> Result<QuerySet, QueryError> {
    let mut set = QuerySet::default();
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let mix = TypeMix::new(&spec.qtypes);
    match &spec.source {
        NameSource::File(path) => read_file(path, &spec.options, &mut set)?,
        NameSource::Model => return Ok(set),
        NameSource::Pattern(p) => {
            for name in expand_pattern(p)? {
                set.push(&name, mix.pick(&mut rng), &spec.options)?;
            }
        }
        NameSource::Random { count, suffix } => {
            if *count > NAMES_MAX {
                return Err(QueryError::TooMany {
                    count: *count as u128,
                });
            }
            for i in 0..*count {
                let name = format!("r{i:x}-{:08x}.{suffix}", rng.gen::<u32>());
                set.push(&name, mix.pick(&mut rng), &spec.options)?;
            }
        }
    }
    if set.is_empty() {
        return Err(QueryError::Empty);
    }
    Ok(set)
}

fn read_file(path: &Path, opts: &QueryOptions, set: &mut QuerySet) -> Result<(), QueryError> {
    let read_err = |source| QueryError::Read {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_err)?;
        let line_err = |reason: String| QueryError::Line {
            path: path.into(),
            line: i + 1,
            reason,
        };
        if line.len() > QUERY_LINE_BYTES_MAX {
            return Err(line_err(format!(
                "longer than {QUERY_LINE_BYTES_MAX} bytes"
            )));
        }
        let Some((name, qtype)) = parse_line(&line).map_err(line_err)? else {
            continue;
        };
        set.push(name, qtype, opts)
            .map_err(|e| line_err(e.to_string()))?;
        if set.len() > NAMES_MAX {
            return Err(QueryError::TooMany {
                count: set.len() as u128,
            });
        }
    }
    Ok(())
}

/// One query-file line: `None` for blanks and comments, else name and type
/// (type defaults to A, as in dnsperf).
pub(crate) fn parse_line(line: &str) -> Result<Option<(&str, u16)>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut fields = trimmed.split_whitespace();
    let name = fields.next().unwrap_or_default();
    let qtype = match fields.next() {
        None => 1,
        Some(t) => wire::parse_qtype(t).ok_or_else(|| format!("unknown query type {t:?}"))?,
    };
    Ok(Some((name, qtype)))
}

/// Parses a `--qtype` mix such as `A=80,AAAA=20` or just `AAAA`.
pub fn parse_mix(mix: &str) -> Result<Vec<(u16, u32)>, QueryError> {
    let err = |reason: String| QueryError::Mix {
        mix: mix.into(),
        reason,
    };
    let mut out = Vec::new();
    for part in mix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let qtype = wire::parse_qtype(name).ok_or_else(|| err(format!("unknown type {name:?}")))?;
        let weight: u32 = weight
            .parse()
            .map_err(|_| err(format!("bad weight {weight:?}")))?;
        out.push((qtype, weight));
    }
    if out.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
        return Err(err("no type with a positive weight".into()));
    }
    Ok(out)
}

/// Weighted choice of query type for generated names.
struct TypeMix {
    /// Cumulative weights, paired with the type they end at.
    cumulative: Vec<(u64, u16)>,
}

impl TypeMix {
    fn new(mix: &[(u16, u32)]) -> Self {
        let mut total = 0u64;
        let mut cumulative = Vec::new();
        for &(qtype, w) in mix.iter().filter(|(_, w)| *w > 0) {
            total += u64::from(w);
            cumulative.push((total, qtype));
        }
        if cumulative.is_empty() {
            cumulative.push((1, 1));
        }
        Self { cumulative }
    }

    fn pick(&self, rng: &mut SmallRng) -> u16 {
        let total = self.cumulative.last().map_or(1, |(t, _)| *t);
        let x = rng.gen_range(0..total);
        let pos = self.cumulative.partition_point(|(t, _)| *t <= x);
        self.cumulative.get(pos).map_or(1, |(_, q)| *q)
    }
}

/// One piece of a parsed pattern.
enum Part {
    /// Text copied as is.
    Literal(String),
    /// Alternatives, one of which is used per name.
    Choice(Vec<String>),
}

/// Expands a `--names` pattern into every name it describes, in order.
pub fn expand_pattern(pattern: &str) -> Result<Vec<String>, QueryError> {
    let parts = parse_pattern(pattern)?;
    let count = parts.iter().fold(1u128, |acc, p| match p {
        Part::Literal(_) => acc,
        Part::Choice(c) => acc.saturating_mul(c.len() as u128),
    });
    if count > NAMES_MAX as u128 {
        return Err(QueryError::TooMany { count });
    }
    let mut names = vec![String::new()];
    for part in &parts {
        names = match part {
            Part::Literal(text) => names.into_iter().map(|n| n + text).collect(),
            Part::Choice(choices) => names
                .iter()
                .flat_map(|n| choices.iter().map(move |c| format!("{n}{c}")))
                .collect(),
        };
    }
    Ok(names)
}

fn parse_pattern(pattern: &str) -> Result<Vec<Part>, QueryError> {
    let err = |reason: &str| QueryError::Pattern {
        pattern: pattern.into(),
        reason: reason.into(),
    };
    let mut parts = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        parts.push(Part::Literal(rest[..open].into()));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| err("'{' without '}'"))?
            + open;
        parts.push(Part::Choice(
            parse_choice(&rest[open + 1..close]).map_err(err)?,
        ));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(err("'}' without '{'"));
    }
    parts.push(Part::Literal(rest.into()));
    Ok(parts)
}

/// The inside of `{...}`: `a..b` (decimal, inclusive) or `x,y,z`.
fn parse_choice(inner: &str) -> Result<Vec<String>, &'static str> {
    if let Some((a, b)) = inner.split_once("..") {
        let a: u64 = a
            .trim()
            .parse()
            .map_err(|_| "range start is not a number")?;
        let b: u64 = b.trim().parse().map_err(|_| "range end is not a number")?;
        if a > b {
            return Err("range start is after its end");
        }
        if b - a >= NAMES_MAX as u64 {
            return Err("range is larger than the name limit");
        }
        return Ok((a..=b).map(|n| n.to_string()).collect());
    }
    let alts: Vec<String> = inner.split(',').map(|s| s.trim().to_string()).collect();
    if alts.iter().any(String::is_empty) {
        return Err("empty alternative in {...}");
    }
    Ok(alts)
}

/// How the next query index is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    /// File order, wrapping; `-n` counts passes.
    Sequential,
    /// Zipf over the set with this exponent: index 0 is the most popular.
    Zipf(f64),
}

/// Shared source of query sequence numbers: every worker claims chunks from one
/// counter, so `-n` passes mean whole passes over the file across all workers.
#[derive(Debug)]
pub struct Budget {
    /// Next unclaimed sequence number.
    next: AtomicU64,
    /// Sequence numbers at or past this are not sent (`u64::MAX` = no limit).
    limit: u64,
}

impl Budget {
    /// A budget of `limit` queries in total (`None`: unlimited).
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            next: AtomicU64::new(0),
            limit: limit.unwrap_or(u64::MAX),
        }
    }

    /// Claims up to `n` sequence numbers; returns the range start and length
    /// (length 0: the budget is spent).
    pub fn claim(&self, n: u64) -> (u64, u64) {
        let start = self.next.fetch_add(n, Ordering::Relaxed);
        (start, self.limit.saturating_sub(start).min(n))
    }
}

/// Per-worker chooser of query indices, with a small local buffer so claims from
/// the shared budget are rare (one atomic per chunk) and unsent picks are kept.
pub struct Picker {
    /// Size of the query set.
    len: u64,
    /// Sequence or Zipf.
    order: Order,
    /// Zipf sampler, built once.
    zipf: Option<Zipf<f64>>,
    /// Worker-local randomness.
    rng: SmallRng,
    /// Picked but not yet sent indices.
    ready: std::collections::VecDeque<u32>,
    /// The budget ran out; no more indices after `ready`.
    exhausted: bool,
}

/// Removes from the first `len` items of `queue` those whose bit is set in `sent`,
/// keeping the order of the rest. A batch is at most 64 items (one bit each).
pub fn remove_sent<T: Copy>(queue: &mut std::collections::VecDeque<T>, len: usize, sent: u64) {
    let len = len.min(queue.len()).min(64);
    let all = if len == 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    if sent & all == all {
        queue.drain(..len);
        return;
    }
    for i in (0..len).rev() {
        if sent & (1 << i) != 0 {
            queue.remove(i);
        }
    }
}

/// Sequence numbers claimed from the budget at a time.
const CLAIM_CHUNK: u64 = 256;

impl Picker {
    /// A picker over `len` queries.
    pub fn new(len: usize, order: Order, seed: u64) -> Self {
        let zipf = match order {
            Order::Zipf(s) => Zipf::new(len as u64, s).ok(),
            Order::Sequential => None,
        };
        Self {
            len: len.max(1) as u64,
            order,
            zipf,
            rng: SmallRng::seed_from_u64(seed),
            ready: Default::default(),
            exhausted: false,
        }
    }

    /// The `i`-th next query index, refilling from the budget as needed; `None`
    /// once the budget is spent.
    pub fn peek(&mut self, i: usize, budget: &Budget) -> Option<u32> {
        while self.ready.len() <= i && !self.exhausted {
            self.refill(budget);
        }
        self.ready.get(i).copied()
    }

    /// Removes the first `n` peeked indices (they were sent).
    pub fn consume(&mut self, n: usize) {
        self.ready.drain(..n.min(self.ready.len()));
    }

    /// Removes, among the first `len` peeked indices, those whose bit is set in
    /// `sent`; the others stay first in line.
    pub fn consume_sent(&mut self, len: usize, sent: u64) {
        remove_sent(&mut self.ready, len, sent);
    }

    /// True when nothing more will ever be returned.
    pub fn is_done(&self) -> bool {
        self.exhausted && self.ready.is_empty()
    }

    fn refill(&mut self, budget: &Budget) {
        let (start, n) = budget.claim(CLAIM_CHUNK);
        if n == 0 {
            self.exhausted = true;
            return;
        }
        for seq in start..start + n {
            let index = match (&self.order, &self.zipf) {
                (Order::Zipf(_), Some(z)) => (z.sample(&mut self.rng) as u64).saturating_sub(1),
                _ => seq % self.len,
            };
            self.ready.push_back(index.min(self.len - 1) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_expands_ranges_and_alternatives() {
        let names = expand_pattern("svc{0..2}.{a,b}.local").unwrap();
        assert_eq!(names.len(), 6);
        assert_eq!(names[0], "svc0.a.local");
        assert_eq!(names[5], "svc2.b.local");
        assert!(expand_pattern("svc{3..1}").is_err());
        assert!(expand_pattern("svc{0..").is_err());
        assert!(expand_pattern("svc}").is_err());
        assert!(expand_pattern("svc{x..2}").is_err());
    }

    #[test]
    fn lines_parse_like_dnsperf() {
        assert_eq!(parse_line("; c").unwrap(), None);
        assert_eq!(parse_line("   ").unwrap(), None);
        assert_eq!(
            parse_line("a.example AAAA").unwrap(),
            Some(("a.example", 28))
        );
        assert_eq!(parse_line("a.example").unwrap(), Some(("a.example", 1)));
        assert!(parse_line("a.example BOGUS").is_err());
    }

    #[test]
    fn mix_parses_and_rejects() {
        assert_eq!(parse_mix("A=80,AAAA=20").unwrap(), vec![(1, 80), (28, 20)]);
        assert_eq!(parse_mix("srv").unwrap(), vec![(33, 1)]);
        assert!(parse_mix("A=x").is_err());
        assert!(parse_mix("A=0").is_err());
        assert!(parse_mix("NOPE").is_err());
    }

    #[test]
    fn budget_counts_passes_across_pickers() {
        let budget = Budget::new(Some(10));
        let mut a = Picker::new(4, Order::Sequential, 1);
        let got: Vec<u32> = (0..10).map_while(|i| a.peek(i, &budget)).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
        a.consume(10);
        assert_eq!(a.peek(0, &budget), None);
        assert!(a.is_done());
        let mut b = Picker::new(4, Order::Sequential, 1);
        assert_eq!(b.peek(0, &budget), None);
    }

    #[test]
    fn remove_sent_keeps_unsent_in_order() {
        let mut q: std::collections::VecDeque<u32> = (0..6).collect();
        remove_sent(&mut q, 4, 0b0101);
        assert_eq!(q, [1, 3, 4, 5]);
        remove_sent(&mut q, 2, 0b11);
        assert_eq!(q, [4, 5]);
    }

    #[test]
    fn zipf_prefers_the_head() {
        let budget = Budget::new(None);
        let mut p = Picker::new(1000, Order::Zipf(1.1), 7);
        let picks: Vec<u32> = (0..5000).map(|i| p.peek(i, &budget).unwrap()).collect();
        let head = picks.iter().filter(|&&i| i < 10).count();
        assert!(head > 2000, "head picks {head}");
        assert!(picks.iter().all(|&i| i < 1000));
    }
}
