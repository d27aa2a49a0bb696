//! What a run tells the user: the progress line each second, the final summary,
//! and the JSON and CSV files. Pure formatting over a [`RunResult`].

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;
use thiserror::Error;

use crate::config::Config;
use crate::gate::Figures;
use crate::limits::SECOND_HISTOGRAMS_MAX;
use crate::run::{RampResult, RunResult};
use crate::stats::{
    encode_histogram, encode_histogram_compressed, Counters, Percentiles, SecondStats,
};

/// Why an output file could not be written.
#[derive(Debug, Error)]
pub enum ReportError {
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Serialising failed (not expected for these types).
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Drawing the plot failed.
    #[error("{path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

fn ms(us: f64) -> String {
    format!("{:.3}ms", us / 1000.0)
}

/// The one-line progress report for a second.
pub fn progress_line(s: &SecondStats) -> String {
    let c = &s.counters;
    format!(
        "[{:>4}s] sent {:>9} answered {:>9} lost {:>6} mismatched {:>4} qps {:>10.0} p50 {} p99 {} lag p99 {}",
        s.second + 1,
        c.sent,
        c.answered,
        c.lost,
        c.mismatched,
        s.qps,
        ms(s.latency.p50_us),
        ms(s.latency.p99_us),
        ms(s.send_lag.p99_us),
    )
}

/// Answers per second over the run.
pub fn answered_qps(r: &RunResult) -> f64 {
    r.counters.answered as f64 / r.sending.as_secs_f64().max(1e-9)
}

pub(crate) fn loss_pct(c: &Counters) -> f64 {
    if c.sent == 0 {
        0.0
    } else {
        c.lost as f64 * 100.0 / c.sent as f64
    }
}

/// The figures `--fail-if` looks at.
pub fn figures(r: &RunResult) -> Figures {
    Figures {
        latency: r.percentiles(),
        send_lag: Percentiles::of(&r.send_lag),
        counters: r.counters.clone(),
        qps: answered_qps(r),
        loss_pct: loss_pct(&r.counters),
        lookup_latency: Percentiles::of(&r.lookup_latency),
        lookups_per_sec: lookup_summary(r).map_or(0.0, |l| l.lookups_per_sec),
    }
}

/// The final human-readable summary.
pub fn summary_text(r: &RunResult) -> String {
    let c = &r.counters;
    let mut out = String::new();
    let secs = r.duration.as_secs_f64();
    let _ = writeln!(out, "Statistics:\n");
    let _ = writeln!(
        out,
        "  Target:               {} ({:?})",
        r.config.server, r.config.transport
    );
    let _ = writeln!(out, "  Load:                 {}", load_text(&r.config));
    out.push_str(&counts_text(c));
    let _ = writeln!(
        out,
        "  Run time (s):         {:.3} sending, {secs:.3} with the wait for late answers",
        r.sending.as_secs_f64()
    );
    let _ = writeln!(out, "  Queries per second:   {:.1}", answered_qps(r));
    if r.interrupted {
        let _ = writeln!(out, "  Interrupted:          yes (Ctrl-C)");
    }
    out.push_str(&latency_text(
        c,
        latency_origin(&r.config),
        &r.latency,
        &r.send_lag,
    ));
    if let Some(ramp) = &r.ramp {
        out.push_str(&ramp_text(ramp));
    }
    if let Some(l) = lookup_summary(r) {
        out.push_str(&lookups_text(&l));
    }
    out
}

/// The pod model's lookup figures.
#[derive(Debug, Clone, Serialize)]
pub struct LookupSummary {
    /// Lookups finished.
    pub lookups: u64,
    /// ... with an address.
    pub resolved: u64,
    /// ... without one.
    pub unresolved: u64,
    /// ... with a step unanswered within the timeout.
    pub lost: u64,
    /// Lookups finished per second of sending.
    pub lookups_per_sec: f64,
    /// Queries sent per lookup.
    pub queries_per_lookup: f64,
    /// What the model expects when every name resolves where it should.
    pub expected_queries_per_lookup: Option<f64>,
    /// Lookup latency: from the lookup's arrival to its last answer.
    pub latency: Percentiles,
}

impl LookupSummary {
    /// The summary of these counts and latencies over `sending_secs`.
    pub fn of(
        c: &Counters,
        latency: &Histogram<u64>,
        sending_secs: f64,
        expected: Option<f64>,
    ) -> Self {
        Self {
            lookups: c.lookups,
            resolved: c.lookups_resolved,
            unresolved: c.lookups_unresolved,
            lost: c.lookups_lost,
            lookups_per_sec: c.lookups as f64 / sending_secs.max(1e-9),
            queries_per_lookup: c.sent as f64 / c.lookups.max(1) as f64,
            expected_queries_per_lookup: expected,
            latency: Percentiles::of(latency),
        }
    }
}

/// The lookup figures of a pod-model run (`None` for other modes).
pub fn lookup_summary(r: &RunResult) -> Option<LookupSummary> {
    let model = r.config.pods.as_ref()?;
    Some(LookupSummary::of(
        &r.counters,
        &r.lookup_latency,
        r.sending.as_secs_f64(),
        Some(model.expected_queries_per_lookup),
    ))
}

/// The lookups part of a summary.
pub(crate) fn lookups_text(l: &LookupSummary) -> String {
    let mut out = String::from("\n");
    let _ = writeln!(
        out,
        "  Lookups:              {} ({} resolved, {} without an address, {} lost)",
        l.lookups, l.resolved, l.unresolved, l.lost
    );
    let _ = writeln!(out, "  Lookups per second:   {:.1}", l.lookups_per_sec);
    let expected = l
        .expected_queries_per_lookup
        .map(|e| format!(" (the model expects {e:.2})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  Queries per lookup:   {:.2}{expected}",
        l.queries_per_lookup
    );
    let _ = writeln!(
        out,
        "\n  Lookup latency (from the lookup's arrival to its last answer, the whole expansion):"
    );
    for (label, v) in percentile_rows(&l.latency) {
        let _ = writeln!(out, "    {label:<7} {}", ms(v));
    }
    out
}

/// The query counts of a summary.
pub(crate) fn counts_text(c: &Counters) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  Queries sent:         {}", c.sent);
    let _ = writeln!(
        out,
        "  Queries answered:     {} ({:.2}%)",
        c.answered,
        pct(c.answered, c.sent)
    );
    let _ = writeln!(
        out,
        "  Queries lost:         {} ({:.2}%)",
        c.lost,
        loss_pct(c)
    );
    let _ = writeln!(out, "  Mismatched answers:   {}", c.mismatched);
    let _ = writeln!(out, "  Truncated answers:    {}", c.truncated);
    let _ = writeln!(out, "  Send errors:          {}", c.send_errors);
    if c.connections > 0 {
        let _ = writeln!(
            out,
            "  TCP connections:      {} opened after the first",
            c.connections
        );
    }
    out
}

/// The rcode table, the latency percentiles and the send lag of a summary.
pub(crate) fn latency_text(
    c: &Counters,
    origin: &str,
    latency: &Histogram<u64>,
    send_lag: &Histogram<u64>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n  Response codes:");
    for (name, n) in rcode_rows(c) {
        let _ = writeln!(out, "    {name:<10} {n:>12} ({:.2}%)", pct(n, c.answered));
    }
    let _ = writeln!(out, "\n  Latency (from {origin}):");
    for (label, v) in percentile_rows(&Percentiles::of(latency)) {
        let _ = writeln!(out, "    {label:<7} {}", ms(v));
    }
    if !send_lag.is_empty() {
        let _ = writeln!(
            out,
            "\n  Send lag (how late dnsload itself sent, against its schedule):"
        );
        for (label, v) in percentile_rows(&Percentiles::of(send_lag)) {
            let _ = writeln!(out, "    {label:<7} {}", ms(v));
        }
    }
    out
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

fn load_text(c: &Config) -> String {
    use crate::config::Load;
    if let (Some(m), Load::Open { qps, .. }) = (&c.pods, c.load) {
        let p = &m.profile;
        return format!(
            "pod model: {} pods in {} namespaces, {:?} resolver, {qps} lookups/s, Poisson arrivals",
            p.pods, p.namespaces, p.resolver
        );
    }
    match c.load {
        Load::Closed => format!(
            "closed loop, {} outstanding, {} clients, {} threads",
            c.outstanding, c.clients, c.threads
        ),
        Load::RateLimited { qps } => format!(
            "closed loop capped at {qps} qps, {} outstanding",
            c.outstanding
        ),
        Load::Open { qps, spacing } => format!("open loop at {qps} qps, {spacing:?} spacing"),
        Load::Ramp(p) => format!(
            "ramp from {} qps by {} qps every {} s",
            p.start_qps, p.step_qps, p.step_secs
        ),
        Load::Replay { speed } => format!(
            "replay of {} at {speed}x its speed, {} clients",
            c.replay
                .as_ref()
                .map_or_else(String::new, |r| r.path.display().to_string()),
            c.clients
        ),
    }
}

fn latency_origin(c: &Config) -> &'static str {
    use crate::config::Load;
    match c.load {
        Load::Open { .. } | Load::Ramp(_) | Load::Replay { .. } => "intended send time",
        _ => "actual send time",
    }
}

/// The response codes seen, by name (`RCODEnn` for the header codes without one).
pub(crate) fn rcode_rows(c: &Counters) -> Vec<(String, u64)> {
    (0u16..)
        .zip(c.rcodes.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| {
            let name =
                crate::wire::rcode_name(code).map_or_else(|| format!("RCODE{code}"), String::from);
            (name, *n)
        })
        .collect()
}

fn percentile_rows(p: &Percentiles) -> [(&'static str, f64); 8] {
    [
        ("min", p.min_us),
        ("mean", p.mean_us),
        ("p50", p.p50_us),
        ("p90", p.p90_us),
        ("p99", p.p99_us),
        ("p99.9", p.p99_9_us),
        ("p99.99", p.p99_99_us),
        ("max", p.max_us),
    ]
}

fn ramp_text(ramp: &RampResult) -> String {
    let mut out = String::from("\n  Ramp:\n    rate        answered/s  loss%    p99\n");
    for s in &ramp.steps {
        let mark = if s.ok { "" } else { "  <- over limit" };
        let _ = writeln!(
            out,
            "    {:<11.0} {:<11.0} {:<8.2} {}{mark}",
            s.rate_qps,
            s.answered_qps,
            s.loss_pct,
            ms(s.p99_us)
        );
    }
    match (ramp.knee_qps, ramp.knee_answered_qps) {
        (Some(k), Some(a)) => {
            let _ = writeln!(
                out,
                "    knee: {k:.0} qps offered, {a:.0} answered/s ({})",
                ramp.ended_by
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "    knee: none, the first step already failed ({})",
                ramp.ended_by
            );
        }
    }
    out
}

/// The JSON document: the summary, the histogram and the per-second series.
#[derive(Serialize)]
struct JsonReport<'a> {
    tool: &'static str,
    version: &'static str,
    config: &'a Config,
    query_count: usize,
    started_unix_secs: f64,
    duration_secs: f64,
    sending_secs: f64,
    interrupted: bool,
    latency_origin: &'static str,
    counters: &'a Counters,
    qps: f64,
    loss_pct: f64,
    rcodes: std::collections::BTreeMap<String, u64>,
    latency: Percentiles,
    send_lag: Percentiles,
    histogram: Vec<HistogramBucket>,
    histograms: EncodedHistograms,
    series: Vec<SeriesRow>,
    ramp: Option<&'a RampResult>,
    lookups: Option<LookupSummary>,
}

/// The run's full histograms, for `dnsload merge` and other HDR tools.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EncodedHistograms {
    /// Latency in nanoseconds: base64 of the HdrHistogram V2 encoding.
    pub latency_ns_v2_base64: String,
    /// Send lag in nanoseconds, same encoding.
    pub send_lag_ns_v2_base64: String,
    /// Lookup latency in nanoseconds (pod model), same encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_latency_ns_v2_base64: Option<String>,
}

impl EncodedHistograms {
    /// Encodes the histograms (the lookup latency only when there were lookups).
    pub fn of(
        latency: &Histogram<u64>,
        send_lag: &Histogram<u64>,
        lookup_latency: &Histogram<u64>,
    ) -> Self {
        Self {
            latency_ns_v2_base64: encode_histogram(latency),
            send_lag_ns_v2_base64: encode_histogram(send_lag),
            lookup_latency_ns_v2_base64: (!lookup_latency.is_empty())
                .then(|| encode_histogram(lookup_latency)),
        }
    }
}

/// One recorded histogram value (highest equivalent value, in microseconds).
#[derive(Serialize)]
pub(crate) struct HistogramBucket {
    value_us: f64,
    count: u64,
}

/// One second's full histograms (deflated HdrHistogram V2, base64), so that
/// `dnsload merge` reads per-second percentiles off their exact sum.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SecondHistograms {
    /// Query latency, ns.
    pub latency_ns: String,
    /// Send lag, ns.
    pub send_lag_ns: String,
    /// Lookup latency, ns (pod model only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_latency_ns: Option<String>,
}

impl SecondHistograms {
    fn of(s: &SecondStats) -> Self {
        Self {
            latency_ns: encode_histogram_compressed(&s.histogram),
            send_lag_ns: encode_histogram_compressed(&s.send_lag_histogram),
            lookup_latency_ns: (!s.lookup_histogram.is_empty())
                .then(|| encode_histogram_compressed(&s.lookup_histogram)),
        }
    }
}

/// One second of the series, flattened for JSON and CSV.
#[derive(Serialize)]
pub(crate) struct SeriesRow {
    second: u64,
    sent: u64,
    answered: u64,
    lost: u64,
    mismatched: u64,
    truncated: u64,
    qps: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p99_9_us: f64,
    max_us: f64,
    lag_p50_us: f64,
    lag_p99_us: f64,
    lag_max_us: f64,
    lookups: u64,
    lookup_p50_us: f64,
    lookup_p99_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    histograms: Option<SecondHistograms>,
}

/// The series as rows; for JSON with each second's histograms (the first
/// [`SECOND_HISTOGRAMS_MAX`] seconds).
pub(crate) fn series_rows(series: &[SecondStats], histograms: bool) -> Vec<SeriesRow> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| SeriesRow {
            histograms: (histograms && i < SECOND_HISTOGRAMS_MAX).then(|| SecondHistograms::of(s)),
            second: s.second,
            sent: s.counters.sent,
            answered: s.counters.answered,
            lost: s.counters.lost,
            mismatched: s.counters.mismatched,
            truncated: s.counters.truncated,
            qps: s.qps,
            p50_us: s.latency.p50_us,
            p90_us: s.latency.p90_us,
            p99_us: s.latency.p99_us,
            p99_9_us: s.latency.p99_9_us,
            max_us: s.latency.max_us,
            lag_p50_us: s.send_lag.p50_us,
            lag_p99_us: s.send_lag.p99_us,
            lag_max_us: s.send_lag.max_us,
            lookups: s.counters.lookups,
            lookup_p50_us: s.lookup_latency.p50_us,
            lookup_p99_us: s.lookup_latency.p99_us,
        })
        .collect()
}

/// Every recorded value of `h` with its count, for readers without an HDR decoder.
pub(crate) fn histogram_buckets(h: &Histogram<u64>) -> Vec<HistogramBucket> {
    h.iter_recorded()
        .map(|v| HistogramBucket {
            value_us: v.value_iterated_to() as f64 / 1000.0,
            count: v.count_at_value(),
        })
        .collect()
}

/// Renders the JSON report.
pub fn json_string(r: &RunResult) -> Result<String, serde_json::Error> {
    let histogram = histogram_buckets(&r.latency);
    let doc = JsonReport {
        tool: "dnsload",
        version: env!("CARGO_PKG_VERSION"),
        config: &r.config,
        query_count: r.query_count,
        started_unix_secs: r.started_unix_secs,
        duration_secs: r.duration.as_secs_f64(),
        sending_secs: r.sending.as_secs_f64(),
        interrupted: r.interrupted,
        latency_origin: latency_origin(&r.config),
        counters: &r.counters,
        qps: answered_qps(r),
        loss_pct: loss_pct(&r.counters),
        rcodes: rcode_rows(&r.counters).into_iter().collect(),
        latency: r.percentiles(),
        send_lag: Percentiles::of(&r.send_lag),
        histogram,
        histograms: EncodedHistograms::of(&r.latency, &r.send_lag, &r.lookup_latency),
        series: series_rows(&r.series, true),
        ramp: r.ramp.as_ref(),
        lookups: lookup_summary(r),
    };
    serde_json::to_string_pretty(&doc)
}

/// Renders the per-second series as CSV.
pub fn csv_string(r: &RunResult) -> String {
    csv_of(&r.series)
}

/// The CSV of a per-second series (a run's or a merge's).
pub(crate) fn csv_of(series: &[SecondStats]) -> String {
    let mut out = String::from(
        "second,sent,answered,lost,mismatched,truncated,qps,p50_us,p90_us,p99_us,p99_9_us,max_us,lag_p50_us,lag_p99_us,lag_max_us,lookups,lookup_p50_us,lookup_p99_us\n",
    );
    for s in series_rows(series, false) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{},{:.1},{:.1}",
            s.second,
            s.sent,
            s.answered,
            s.lost,
            s.mismatched,
            s.truncated,
            s.qps,
            s.p50_us,
            s.p90_us,
            s.p99_us,
            s.p99_9_us,
            s.max_us,
            s.lag_p50_us,
            s.lag_p99_us,
            s.lag_max_us,
            s.lookups,
            s.lookup_p50_us,
            s.lookup_p99_us
        );
    }
    out
}

/// Writes every output file the config asks for.
pub fn write_outputs(r: &RunResult) -> Result<(), ReportError> {
    if let Some(path) = &r.config.json {
        let text = json_string(r).map_err(|source| ReportError::Json {
            path: path.clone(),
            source,
        })?;
        write(path, &text)?;
    }
    if let Some(path) = &r.config.csv {
        write(path, &csv_string(r))?;
    }
    if let Some(path) = &r.config.plot {
        crate::plot::write_svg(&r.series, path).map_err(|reason| ReportError::Plot {
            path: path.clone(),
            reason,
        })?;
    }
    Ok(())
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.into(),
        source,
    })
}
