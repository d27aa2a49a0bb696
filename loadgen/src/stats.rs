//! Counters and latency histograms, per worker and per second, and their merge.
//!
//! Each worker owns its counters and an HDR histogram and ships them to the main
//! thread once per elapsed second (shared nothing: no atomics on the hot path).
//! The [`Aggregator`] closes a second once every worker has reported it, which
//! yields the per-second series and the run totals.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{HISTOGRAM_SIGFIGS, LATENCY_NS_MAX, SPARE_HISTOGRAMS_PER_WORKER};

/// What happened to queries, in counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Queries handed to the kernel.
    pub sent: u64,
    /// Answers matched to an outstanding query by ID and question.
    pub answered: u64,
    /// Queries with no matching answer within the timeout.
    pub lost: u64,
    /// Answers that matched no outstanding query (wrong ID, wrong question, not a response).
    pub mismatched: u64,
    /// Matched answers with the TC bit set.
    pub truncated: u64,
    /// Sends the kernel refused with an error other than "try again".
    pub send_errors: u64,
    /// Matched answers per header rcode.
    pub rcodes: [u64; 16],
    /// TCP connections opened after the first ones (reconnects, `--tcp-churn`).
    #[serde(default)]
    pub connections: u64,
    /// Lookups finished (pod model): resolved, unresolved or lost.
    #[serde(default)]
    pub lookups: u64,
    /// Lookups that ended with an address.
    #[serde(default)]
    pub lookups_resolved: u64,
    /// Lookups that ended without an address (every candidate NXDOMAIN, or an
    /// error that ends the search).
    #[serde(default)]
    pub lookups_unresolved: u64,
    /// Lookups whose step was not answered within the timeout.
    #[serde(default)]
    pub lookups_lost: u64,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.lost += other.lost;
        self.mismatched += other.mismatched;
        self.truncated += other.truncated;
        self.send_errors += other.send_errors;
        self.connections += other.connections;
        self.lookups += other.lookups;
        self.lookups_resolved += other.lookups_resolved;
        self.lookups_unresolved += other.lookups_unresolved;
        self.lookups_lost += other.lookups_lost;
        for (a, b) in self.rcodes.iter_mut().zip(other.rcodes.iter()) {
            *a += b;
        }
    }
}

/// A latency histogram in nanoseconds, 1 ns to [`LATENCY_NS_MAX`].
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_SIGFIGS)
        .expect("histogram bounds are constants checked by the unit tests")
}

/// Histograms the main thread hands back, emptied, once it has merged a worker's
/// second, for the workers' next seconds. A worker that made three new histograms
/// (230 KB each, mapped fresh and unmapped by the main thread) at every second's end
/// sent its next queries up to 0.3 ms late there; taking spares costs it nothing.
pub struct Spares {
    free: Mutex<Vec<Histogram<u64>>>,
    cap: usize,
}

impl Spares {
    /// The spares of `workers` workers, made (and their memory touched) now,
    /// before the run starts.
    pub fn new(workers: usize) -> Self {
        let cap = workers.saturating_mul(SPARE_HISTOGRAMS_PER_WORKER);
        let free = (0..cap)
            .map(|_| {
                let mut h = new_histogram();
                h.reset();
                h
            })
            .collect();
        Self {
            free: Mutex::new(free),
            cap,
        }
    }

    /// An empty histogram: a spare when one is free, else a new one.
    pub fn take(&self) -> Histogram<u64> {
        let spare = self.free.try_lock().ok().and_then(|mut free| free.pop());
        spare.unwrap_or_else(new_histogram)
    }

    /// Empties `h` and keeps it for a later [`Spares::take`] (dropped when full).
    pub fn give(&self, mut h: Histogram<u64>) {
        h.reset();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.cap {
                free.push(h);
            }
        }
    }
}

/// Why a serialized histogram could not be read back.
#[derive(Debug, Error)]
pub enum HistogramError {
    /// Not base64.
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Not an HDR histogram in the V2 format.
    #[error("histogram is not in the HdrHistogram V2 format: {0}")]
    Format(String),
    /// Another tool's bounds; adding it would not be exact.
    #[error("histogram tracks {low}..{high} at {sigfig} digits; dnsload's is 1..{LATENCY_NS_MAX} at {HISTOGRAM_SIGFIGS}")]
    Bounds { low: u64, high: u64, sigfig: u8 },
}

/// A histogram as base64 of the HdrHistogram V2 encoding (uncompressed), the form
/// other HDR tools read and that [`decode_histogram`] turns back into an equal one.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail for a histogram with valid bounds.
    let _ = V2Serializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Like [`encode_histogram`], deflate-compressed (the V2 "compressed" cookie),
/// for the per-second histograms of a report; [`decode_histogram`] reads both.
pub fn encode_histogram_compressed(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    let _ = hdrhistogram::serialization::V2DeflateSerializer::new().serialize(h, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The histogram [`encode_histogram`] or [`encode_histogram_compressed`] wrote; refuses other bounds, so adding it
/// to dnsload's own histograms is exact.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| HistogramError::Format(format!("{e:?}")))?;
    let (low, high, sigfig) = (h.low(), h.high(), h.sigfig());
    if low != 1 || high != LATENCY_NS_MAX || sigfig != HISTOGRAM_SIGFIGS {
        return Err(HistogramError::Bounds { low, high, sigfig });
    }
    Ok(h)
}

/// One worker's report for one second of the run.
#[derive(Debug)]
pub struct Interval {
    /// Worker index.
    pub worker: usize,
    /// Second of the run (0-based) this covers.
    pub second: u64,
    /// Counts during that second.
    pub counters: Counters,
    /// Latencies of answers received during that second.
    pub latency: Histogram<u64>,
    /// How late each query sent during that second left against its schedule.
    pub send_lag: Histogram<u64>,
    /// Latencies of lookups finished during that second (pod model): from the
    /// lookup's intended start to its last answer, the whole expansion.
    pub lookup_latency: Histogram<u64>,
    /// Last report of this worker: it has stopped.
    pub last: bool,
    /// When this worker stopped sending (ns since start), in its last report.
    /// QPS is answers over the sending time, so waiting for stragglers after the
    /// end does not dilute it.
    pub sending_ended_ns: Option<u64>,
}

/// A worker's counts and histograms of the current second, shipped to the main
/// thread as each second ends (for the loops of the pod model and replay).
pub struct Tally {
    /// Counts of the current second.
    pub counters: Counters,
    /// Query latencies of the current second.
    pub latency: Histogram<u64>,
    /// Send lags of the current second.
    pub send_lag: Histogram<u64>,
    /// Lookup latencies of the current second.
    pub lookup_latency: Histogram<u64>,
    /// Worker index.
    worker: usize,
    /// Second being counted.
    second: u64,
    /// Where seconds go.
    out: std::sync::mpsc::Sender<Interval>,
    /// Where the next seconds' histograms come from.
    spares: Arc<Spares>,
}

impl Tally {
    /// A tally for `worker`, starting in the second of `now_ns`.
    pub fn new(
        worker: usize,
        now_ns: u64,
        out: std::sync::mpsc::Sender<Interval>,
        spares: Arc<Spares>,
    ) -> Self {
        Self {
            counters: Counters::default(),
            latency: spares.take(),
            send_lag: spares.take(),
            lookup_latency: spares.take(),
            worker,
            second: now_ns / 1_000_000_000,
            out,
            spares,
        }
    }

    /// When the current second ends, ns since the run started.
    pub fn second_end_ns(&self) -> u64 {
        (self.second + 1) * 1_000_000_000
    }

    /// Ships every second that ended by `now_ns`; true if any did.
    pub fn roll(&mut self, now_ns: u64) -> bool {
        let rolled = now_ns >= self.second_end_ns();
        while now_ns >= self.second_end_ns() {
            self.ship(false, None);
            self.second += 1;
        }
        rolled
    }

    /// Ships every second up to `now_ns` and then the last one, of a worker that
    /// stopped sending at `sending_ended_ns`.
    pub fn finish(&mut self, now_ns: u64, sending_ended_ns: Option<u64>) {
        self.roll(now_ns);
        self.ship(true, sending_ended_ns);
    }

    /// Ships the current second (`last`: the worker has stopped, having stopped
    /// sending at `sending_ended_ns`).
    pub fn ship(&mut self, last: bool, sending_ended_ns: Option<u64>) {
        let iv = Interval {
            worker: self.worker,
            second: self.second,
            counters: std::mem::take(&mut self.counters),
            latency: std::mem::replace(&mut self.latency, self.spares.take()),
            send_lag: std::mem::replace(&mut self.send_lag, self.spares.take()),
            lookup_latency: std::mem::replace(&mut self.lookup_latency, self.spares.take()),
            last,
            sending_ended_ns: sending_ended_ns.filter(|_| last),
        };
        let _ = self.out.send(iv);
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    /// Summary of `h` (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p99_9_us: us(h.value_at_quantile(0.999)),
            p99_99_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// The whole run's view of one second.
#[derive(Debug, Clone, Serialize)]
pub struct SecondStats {
    /// Second of the run (0-based).
    pub second: u64,
    /// Counts in that second, all workers.
    pub counters: Counters,
    /// Answers received in that second (the last second of a run may be partial,
    /// and may hold only the wait for late answers).
    pub qps: f64,
    /// Latency of the answers received in that second.
    pub latency: Percentiles,
    /// The generator's own lateness against its schedule in that second.
    pub send_lag: Percentiles,
    /// Lookups finished in that second (pod model).
    pub lookups_per_sec: f64,
    /// Latency of the lookups finished in that second (pod model).
    pub lookup_latency: Percentiles,
    /// Latency histogram of that second (ramp steps, the JSON series); not
    /// serialised here.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
    /// Send-lag histogram of that second.
    #[serde(skip)]
    pub send_lag_histogram: Histogram<u64>,
    /// Lookup-latency histogram of that second.
    #[serde(skip)]
    pub lookup_histogram: Histogram<u64>,
}

impl SecondStats {
    /// The figures of `second` from its counts and histograms.
    pub fn new(
        second: u64,
        counters: Counters,
        latency: Histogram<u64>,
        send_lag: Histogram<u64>,
        lookup: Histogram<u64>,
    ) -> Self {
        Self {
            second,
            qps: counters.answered as f64,
            latency: Percentiles::of(&latency),
            send_lag: Percentiles::of(&send_lag),
            lookups_per_sec: counters.lookups as f64,
            lookup_latency: Percentiles::of(&lookup),
            counters,
            histogram: latency,
            send_lag_histogram: send_lag,
            lookup_histogram: lookup,
        }
    }
}

/// A second some workers have reported.
struct OpenSecond {
    /// Counts so far.
    counters: Counters,
    /// Query latencies so far.
    latency: Histogram<u64>,
    /// Send lags so far.
    send_lag: Histogram<u64>,
    /// Lookup latencies so far.
    lookup_latency: Histogram<u64>,
}

impl OpenSecond {
    fn new() -> Self {
        Self {
            counters: Counters::default(),
            latency: new_histogram(),
            send_lag: new_histogram(),
            lookup_latency: new_histogram(),
        }
    }
}

/// Merges worker intervals into closed seconds and run totals.
pub struct Aggregator {
    /// Highest second each worker has reported, `None` before the first report.
    reported: Vec<Option<u64>>,
    /// Workers that sent their last report.
    finished: Vec<bool>,
    /// Seconds with some reports but not yet closed.
    open: BTreeMap<u64, OpenSecond>,
    /// Next second to close.
    next_second: u64,
    /// Totals over the whole run.
    pub total: Counters,
    /// All latencies of the run.
    pub total_latency: Histogram<u64>,
    /// All send lags of the run.
    pub total_send_lag: Histogram<u64>,
    /// All lookup latencies of the run (pod model).
    pub total_lookup_latency: Histogram<u64>,
    /// Latest time any worker stopped sending, ns since start.
    pub sending_ended_ns: u64,
    /// Where merged intervals' histograms go back to the workers, if anywhere.
    spares: Option<Arc<Spares>>,
}

impl Aggregator {
    /// An aggregator for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            reported: vec![None; workers],
            finished: vec![false; workers],
            open: BTreeMap::new(),
            next_second: 0,
            total: Counters::default(),
            total_latency: new_histogram(),
            total_send_lag: new_histogram(),
            total_lookup_latency: new_histogram(),
            sending_ended_ns: 0,
            spares: None,
        }
    }

    /// An aggregator that hands each merged interval's histograms back to `spares`.
    pub fn recycling(workers: usize, spares: Arc<Spares>) -> Self {
        Self {
            spares: Some(spares),
            ..Self::new(workers)
        }
    }

    /// True when every worker has stopped.
    pub fn all_finished(&self) -> bool {
        self.finished.iter().all(|f| *f)
    }

    /// Takes one interval; returns the seconds it closed, in order.
    pub fn add(&mut self, iv: Interval) -> Vec<SecondStats> {
        self.total.add(&iv.counters);
        self.sending_ended_ns = self.sending_ended_ns.max(iv.sending_ended_ns.unwrap_or(0));
        let _ = self.total_latency.add(&iv.latency);
        let _ = self.total_send_lag.add(&iv.send_lag);
        let _ = self.total_lookup_latency.add(&iv.lookup_latency);
        let entry = self.open.entry(iv.second).or_insert_with(OpenSecond::new);
        entry.counters.add(&iv.counters);
        let _ = entry.latency.add(&iv.latency);
        let _ = entry.send_lag.add(&iv.send_lag);
        let _ = entry.lookup_latency.add(&iv.lookup_latency);
        if let Some(r) = self.reported.get_mut(iv.worker) {
            *r = Some(r.map_or(iv.second, |s| s.max(iv.second)));
        }
        if iv.last {
            if let Some(f) = self.finished.get_mut(iv.worker) {
                *f = true;
            }
        }
        if let Some(spares) = &self.spares {
            for h in [iv.latency, iv.send_lag, iv.lookup_latency] {
                spares.give(h);
            }
        }
        self.close_ready()
    }

    fn close_ready(&mut self) -> Vec<SecondStats> {
        let all_done = self.all_finished();
        let closable = self
            .reported
            .iter()
            .zip(&self.finished)
            .filter(|(_, f)| !**f)
            .map(|(r, _)| r.map_or(-1, |s| s as i64))
            .min()
            .unwrap_or(i64::MAX);
        let mut closed = Vec::new();
        while let Some((&second, _)) = self.open.first_key_value() {
            if !all_done && second as i64 > closable {
                break;
            }
            let Some((_, open)) = self.open.pop_first() else {
                break;
            };
            closed.push(SecondStats::new(
                second,
                open.counters,
                open.latency,
                open.send_lag,
                open.lookup_latency,
            ));
            self.next_second = second + 1;
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(worker: usize, second: u64, answered: u64, last: bool) -> Interval {
        let mut latency = new_histogram();
        latency.record(1000).unwrap();
        Interval {
            worker,
            second,
            counters: Counters {
                answered,
                sent: answered,
                ..Default::default()
            },
            latency,
            send_lag: new_histogram(),
            lookup_latency: new_histogram(),
            last,
            sending_ended_ns: None,
        }
    }

    #[test]
    fn merged_histograms_come_back_empty_and_bounded() {
        let spares = Arc::new(Spares::new(1));
        let taken: Vec<_> = (0..SPARE_HISTOGRAMS_PER_WORKER)
            .map(|_| spares.take())
            .collect();
        assert!(taken.iter().all(|h| h.is_empty()));
        assert_eq!(spares.free.lock().unwrap().len(), 0, "all spares taken");
        // Taking from an empty pool still gives a histogram.
        assert!(spares.take().is_empty());
        let mut a = Aggregator::recycling(1, Arc::clone(&spares));
        let closed = a.add(iv(0, 0, 5, true));
        // Merged first: the run's figures hold the sample ...
        assert_eq!(closed[0].histogram.len(), 1);
        assert_eq!(a.total_latency.len(), 1);
        // ... then the interval's three histograms are back, emptied.
        assert_eq!(spares.free.lock().unwrap().len(), 3);
        let back = spares.take();
        assert!(back.is_empty(), "a spare comes back empty");
        // Never more than the cap, however many are given.
        for h in taken {
            spares.give(h);
        }
        spares.give(new_histogram());
        assert_eq!(
            spares.free.lock().unwrap().len(),
            SPARE_HISTOGRAMS_PER_WORKER
        );
    }

    #[test]
    fn seconds_close_when_every_worker_reported() {
        let mut a = Aggregator::new(2);
        assert!(a.add(iv(0, 0, 5, false)).is_empty());
        let closed = a.add(iv(1, 0, 7, false));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].counters.answered, 12);
        assert_eq!(closed[0].latency.p50_us, 1.0);
        assert!(a.add(iv(0, 1, 1, true)).is_empty());
        let closed = a.add(iv(1, 1, 1, true));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].qps, 2.0);
        assert!(a.all_finished());
        assert_eq!(a.total.answered, 14);
    }

    #[test]
    fn histograms_survive_encoding() {
        let mut h = new_histogram();
        for v in [1, 999, 1_000_000, 77_777_777, LATENCY_NS_MAX] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back, h);
        let back = decode_histogram(&encode_histogram_compressed(&h)).unwrap();
        assert_eq!(back, h);
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
        let other = Histogram::<u64>::new_with_bounds(1, 1000, 2).unwrap();
        let err = decode_histogram(&encode_histogram(&other)).unwrap_err();
        assert!(
            matches!(err, HistogramError::Bounds { high: 1000, .. }),
            "{err}"
        );
    }

    #[test]
    fn histogram_bounds_are_valid() {
        let mut h = new_histogram();
        h.saturating_record(u64::MAX);
        assert!(Percentiles::of(&h).max_us as u64 >= LATENCY_NS_MAX / 1000);
    }
}
