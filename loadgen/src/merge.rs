//! `dnsload merge A.json B.json ...`: one report from runs made at the same time on
//! many machines (or pods). Counts add up, and the latency and send-lag histograms
//! travel in full in each JSON report (HdrHistogram V2, base64), so the merged
//! percentiles are exactly those of all samples together, not an average of
//! percentiles. QPS adds up (the runs offered load side by side); per-second counts
//! add up by wall-clock second (runs started with the same `--start-at` line up).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::gate::{self, Figures, GateError};
use crate::limits::{MERGE_INPUTS_MAX, REPORT_BYTES_MAX, SERIES_SECONDS_MAX};
use crate::report::{self, EncodedHistograms, LookupSummary, ReportError, SecondHistograms};
use crate::stats::{
    decode_histogram, new_histogram, Counters, HistogramError, Percentiles, SecondStats,
};

/// Merge dnsload JSON reports into one, exactly (full histograms, not percentiles).
#[derive(Debug, Parser)]
#[command(name = "dnsload merge", max_term_width = 100)]
pub struct MergeArgs {
    /// JSON reports written by `dnsload --json` (or by an earlier merge).
    #[arg(required = true, value_name = "REPORT.json")]
    pub inputs: Vec<PathBuf>,
    /// Write the merged report as JSON.
    #[arg(long = "json", value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write the merged per-second series as CSV (the columns of a run's CSV).
    #[arg(long = "csv", value_name = "PATH")]
    pub csv: Option<PathBuf>,
    /// Draw the merged latency percentiles and QPS over time as SVG.
    #[arg(long = "plot", value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
    /// Exit with code 3 when a condition holds for the merged figures (as for a run).
    #[arg(long = "fail-if", value_name = "CONDITIONS")]
    pub fail_if: Option<String>,
}

/// Why reports could not be merged.
#[derive(Debug, Error)]
pub enum MergeError {
    /// Too many inputs.
    #[error("more than {MERGE_INPUTS_MAX} reports")]
    TooMany,
    /// An input could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input is larger than any report dnsload writes.
    #[error("{path}: larger than {REPORT_BYTES_MAX} bytes, not a dnsload report")]
    TooLarge { path: PathBuf },
    /// An input is not a dnsload JSON report.
    #[error("{path}: not a dnsload JSON report: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// An input's histogram does not decode.
    #[error("{path}: {source}")]
    Histogram {
        path: PathBuf,
        source: HistogramError,
    },
    /// `--fail-if` does not parse.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The merged report could not be written.
    #[error(transparent)]
    Write(#[from] ReportError),
}

/// The parts of a report a merge reads (other fields are ignored).
#[derive(Debug, Deserialize)]
struct Input {
    /// Must be "dnsload".
    tool: String,
    /// Counts.
    counters: Counters,
    /// Answers per second of that run.
    qps: f64,
    /// Wall-clock start.
    started_unix_secs: f64,
    /// Length of the run including the wait for late answers.
    duration_secs: f64,
    /// Where latency counts from.
    latency_origin: String,
    /// Full histograms.
    histograms: EncodedHistograms,
    /// Per-second counts and histograms.
    #[serde(default)]
    series: Vec<InputSecond>,
    /// Lookup figures (pod model).
    #[serde(default)]
    lookups: Option<InputLookups>,
}

/// The lookup figures a merge adds up (the rest comes from the counts and the
/// lookup-latency histogram).
#[derive(Debug, Deserialize)]
struct InputLookups {
    lookups_per_sec: f64,
}

/// One second of an input's series: counts, and the second's histograms
/// (percentiles do not add up; histograms do).
#[derive(Debug, Default, Clone, Deserialize)]
struct InputSecond {
    second: u64,
    sent: u64,
    answered: u64,
    lost: u64,
    mismatched: u64,
    truncated: u64,
    #[serde(default)]
    lookups: u64,
    #[serde(default)]
    histograms: Option<SecondHistograms>,
}

/// One merged second.
struct MergedSecond {
    counters: Counters,
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    lookup: Histogram<u64>,
}

/// Where a merged report came from.
#[derive(Debug, Serialize)]
struct Source {
    path: PathBuf,
    started_unix_secs: f64,
    qps: f64,
    answered: u64,
}

/// All inputs added up.
pub struct Merged {
    /// The inputs, in order.
    sources: Vec<Source>,
    /// Summed counts.
    pub counters: Counters,
    /// Summed QPS.
    pub qps: f64,
    /// Earliest start.
    started_unix_secs: f64,
    /// From the earliest start to the latest end.
    duration_secs: f64,
    /// The inputs' latency origin, or "mixed".
    latency_origin: String,
    /// All latency samples.
    pub latency: Histogram<u64>,
    /// All send-lag samples.
    pub send_lag: Histogram<u64>,
    /// All lookup-latency samples (pod model).
    pub lookup_latency: Histogram<u64>,
    /// Summed lookups per second.
    lookups_per_sec: f64,
    /// Per wall-clock second since the earliest start, counts and histograms summed.
    series: BTreeMap<u64, MergedSecond>,
}

/// Entry point of `dnsload merge` (the arguments after "merge").
pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let args = match MergeArgs::try_parse_from(std::iter::once("dnsload merge".into()).chain(args))
    {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&args) {
        Ok(tripped) if tripped.is_empty() => ExitCode::SUCCESS,
        Ok(tripped) => {
            for t in tripped {
                eprintln!("dnsload merge: --fail-if: {t}");
            }
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("dnsload merge: error: {e}");
            ExitCode::from(if matches!(e, MergeError::Write(_)) {
                1
            } else {
                2
            })
        }
    }
}

fn run(args: &MergeArgs) -> Result<Vec<gate::Tripped>, MergeError> {
    let gates = args.fail_if.as_deref().map(gate::parse).transpose()?;
    let merged = merge_files(&args.inputs)?;
    print!("{}", merged.summary_text());
    if let Some(path) = &args.json {
        let text = merged.json_string().map_err(|source| ReportError::Json {
            path: path.clone(),
            source,
        })?;
        report::write(path, &text)?;
    }
    if let Some(path) = &args.csv {
        report::write(path, &report::csv_of(&merged.seconds()))?;
    }
    if let Some(path) = &args.plot {
        crate::plot::write_svg(&merged.seconds(), path).map_err(|reason| ReportError::Plot {
            path: path.clone(),
            reason,
        })?;
    }
    Ok(gate::check(&gates.unwrap_or_default(), &merged.figures()))
}

/// Reads and merges the reports at `paths`.
pub fn merge_files(paths: &[PathBuf]) -> Result<Merged, MergeError> {
    if paths.len() > MERGE_INPUTS_MAX {
        return Err(MergeError::TooMany);
    }
    let inputs = paths
        .iter()
        .map(|p| read_input(p).map(|i| (p.clone(), i)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut merged = Merged::empty(&inputs);
    for (path, input) in inputs {
        merged.add(path, input)?;
    }
    Ok(merged)
}

fn read_input(path: &Path) -> Result<Input, MergeError> {
    let read_err = |source| MergeError::Read {
        path: path.into(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > REPORT_BYTES_MAX {
        return Err(MergeError::TooLarge { path: path.into() });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let input: Input = serde_json::from_str(&text).map_err(|source| MergeError::Parse {
        path: path.into(),
        source,
    })?;
    if input.tool != "dnsload" {
        let source = serde::de::Error::custom(format!("tool is {:?}", input.tool));
        return Err(MergeError::Parse {
            path: path.into(),
            source,
        });
    }
    Ok(input)
}

impl Merged {
    fn empty(inputs: &[(PathBuf, Input)]) -> Self {
        let start = inputs
            .iter()
            .map(|(_, i)| i.started_unix_secs)
            .fold(f64::INFINITY, f64::min);
        let end = inputs
            .iter()
            .map(|(_, i)| i.started_unix_secs + i.duration_secs)
            .fold(f64::NEG_INFINITY, f64::max);
        let mut origins: Vec<&str> = inputs.iter().map(|(_, i)| &*i.latency_origin).collect();
        origins.dedup();
        Self {
            sources: Vec::new(),
            counters: Counters::default(),
            qps: 0.0,
            started_unix_secs: if start.is_finite() { start } else { 0.0 },
            duration_secs: (end - start).max(0.0),
            latency_origin: match origins.as_slice() {
                [one] => (*one).to_owned(),
                _ => "mixed".into(),
            },
            latency: new_histogram(),
            send_lag: new_histogram(),
            lookup_latency: new_histogram(),
            lookups_per_sec: 0.0,
            series: BTreeMap::new(),
        }
    }

    fn add(&mut self, path: PathBuf, input: Input) -> Result<(), MergeError> {
        let hist_err = |source| MergeError::Histogram {
            path: path.clone(),
            source,
        };
        let latency = decode_histogram(&input.histograms.latency_ns_v2_base64).map_err(hist_err)?;
        let send_lag =
            decode_histogram(&input.histograms.send_lag_ns_v2_base64).map_err(hist_err)?;
        // Same bounds (checked by the decoder), so adding cannot fail or lose samples.
        let _ = self.latency.add(&latency);
        let _ = self.send_lag.add(&send_lag);
        if let Some(text) = &input.histograms.lookup_latency_ns_v2_base64 {
            let _ = self
                .lookup_latency
                .add(decode_histogram(text).map_err(hist_err)?);
        }
        self.counters.add(&input.counters);
        self.qps += input.qps;
        self.lookups_per_sec += input.lookups.as_ref().map_or(0.0, |l| l.lookups_per_sec);
        let offset = (input.started_unix_secs - self.started_unix_secs)
            .round()
            .max(0.0) as u64;
        for s in &input.series {
            let second = s.second.saturating_add(offset);
            if second > SERIES_SECONDS_MAX {
                continue;
            }
            let row = self.series.entry(second).or_insert_with(|| MergedSecond {
                counters: Counters::default(),
                latency: new_histogram(),
                send_lag: new_histogram(),
                lookup: new_histogram(),
            });
            row.counters.add(&Counters {
                sent: s.sent,
                answered: s.answered,
                lost: s.lost,
                mismatched: s.mismatched,
                truncated: s.truncated,
                lookups: s.lookups,
                ..Counters::default()
            });
            if let Some(h) = &s.histograms {
                let _ = row
                    .latency
                    .add(decode_histogram(&h.latency_ns).map_err(hist_err)?);
                let _ = row
                    .send_lag
                    .add(decode_histogram(&h.send_lag_ns).map_err(hist_err)?);
                if let Some(l) = &h.lookup_latency_ns {
                    let _ = row.lookup.add(decode_histogram(l).map_err(hist_err)?);
                }
            }
        }
        self.sources.push(Source {
            path,
            started_unix_secs: input.started_unix_secs,
            qps: input.qps,
            answered: input.counters.answered,
        });
        Ok(())
    }

    /// The merged per-second series (percentiles from the summed histograms of
    /// each second).
    pub fn seconds(&self) -> Vec<SecondStats> {
        self.series
            .iter()
            .map(|(&second, m)| {
                SecondStats::new(
                    second,
                    m.counters.clone(),
                    m.latency.clone(),
                    m.send_lag.clone(),
                    m.lookup.clone(),
                )
            })
            .collect()
    }

    /// Lookup figures, when the runs had lookups (pod model).
    fn lookups(&self) -> Option<LookupSummary> {
        (self.counters.lookups > 0).then(|| {
            let mut l = LookupSummary::of(&self.counters, &self.lookup_latency, 1.0, None);
            l.lookups_per_sec = self.lookups_per_sec;
            l
        })
    }

    /// Merged latency percentiles.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }

    /// The figures `--fail-if` looks at.
    pub fn figures(&self) -> Figures {
        Figures {
            latency: self.percentiles(),
            send_lag: Percentiles::of(&self.send_lag),
            counters: self.counters.clone(),
            qps: self.qps,
            loss_pct: report::loss_pct(&self.counters),
            lookup_latency: Percentiles::of(&self.lookup_latency),
            lookups_per_sec: self.lookups_per_sec,
        }
    }

    /// Human-readable summary.
    pub fn summary_text(&self) -> String {
        let mut out = String::from("Statistics (merged):\n\n");
        for s in &self.sources {
            let _ = writeln!(
                out,
                "  From:                 {} ({} answered, {:.1} qps)",
                s.path.display(),
                s.answered,
                s.qps
            );
        }
        out.push_str(&report::counts_text(&self.counters));
        let _ = writeln!(
            out,
            "  Queries per second:   {:.1} (sum of the runs)",
            self.qps
        );
        out.push_str(&report::latency_text(
            &self.counters,
            &self.latency_origin,
            &self.latency,
            &self.send_lag,
        ));
        if let Some(l) = self.lookups() {
            out.push_str(&report::lookups_text(&l));
        }
        out
    }

    /// The merged report; the same shape as a run's where the fields mean the same,
    /// so it can be merged again.
    pub fn json_string(&self) -> Result<String, serde_json::Error> {
        let doc = MergedJson {
            tool: "dnsload",
            version: env!("CARGO_PKG_VERSION"),
            merged_from: &self.sources,
            started_unix_secs: self.started_unix_secs,
            duration_secs: self.duration_secs,
            latency_origin: &self.latency_origin,
            counters: &self.counters,
            qps: self.qps,
            loss_pct: report::loss_pct(&self.counters),
            rcodes: report::rcode_rows(&self.counters).into_iter().collect(),
            latency: self.percentiles(),
            send_lag: Percentiles::of(&self.send_lag),
            histogram: report::histogram_buckets(&self.latency),
            histograms: EncodedHistograms::of(&self.latency, &self.send_lag, &self.lookup_latency),
            series: report::series_rows(&self.seconds(), true),
            lookups: self.lookups(),
        };
        serde_json::to_string_pretty(&doc)
    }
}

/// The merged JSON document.
#[derive(Serialize)]
struct MergedJson<'a> {
    tool: &'static str,
    version: &'static str,
    merged_from: &'a [Source],
    started_unix_secs: f64,
    duration_secs: f64,
    latency_origin: &'a str,
    counters: &'a Counters,
    qps: f64,
    loss_pct: f64,
    rcodes: BTreeMap<String, u64>,
    latency: Percentiles,
    send_lag: Percentiles,
    histogram: Vec<report::HistogramBucket>,
    histograms: EncodedHistograms,
    series: Vec<report::SeriesRow>,
    lookups: Option<LookupSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A report as `dnsload --json` writes it, around these samples.
    fn report_with(samples: &[u64], start: f64) -> String {
        let mut h = new_histogram();
        for &v in samples {
            h.record(v).unwrap();
        }
        let counters = Counters {
            sent: samples.len() as u64,
            answered: samples.len() as u64,
            ..Default::default()
        };
        serde_json::json!({
            "tool": "dnsload",
            "counters": counters,
            "qps": samples.len() as f64,
            "started_unix_secs": start,
            "duration_secs": 1.0,
            "latency_origin": "intended send time",
            "histograms": EncodedHistograms::of(&h, &new_histogram(), &new_histogram()),
            "series": [{"second": 0, "sent": samples.len(), "answered": samples.len(),
                        "lost": 0, "mismatched": 0, "truncated": 0, "qps": samples.len() as f64}],
        })
        .to_string()
    }

    #[test]
    fn merged_percentiles_are_those_of_all_samples() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let dir = tempfile::tempdir().unwrap();
        let mut all = new_histogram();
        let mut paths = Vec::new();
        // Three runs with different latency shapes: averaging their p99s would be
        // far from the p99 of all samples.
        for (k, scale) in [(0u64, 50_000u64), (1, 400_000), (2, 9_000_000)].iter() {
            let samples: Vec<u64> = (0..(5_000 + k * 3_000))
                .map(|_| rng.gen_range(1..*scale))
                .collect();
            for &v in &samples {
                all.record(v).unwrap();
            }
            let path = dir.path().join(format!("r{k}.json"));
            std::fs::write(&path, report_with(&samples, 1000.0 + *k as f64)).unwrap();
            paths.push(path);
        }
        let merged = merge_files(&paths).unwrap();
        assert_eq!(merged.percentiles(), Percentiles::of(&all));
        assert_eq!(merged.latency, all);
        assert_eq!(merged.counters.answered, all.len());
        // Seconds line up by wall clock: the runs started 1 s apart.
        assert_eq!(merged.series.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        // A merged report merges again to the same thing.
        let again = dir.path().join("merged.json");
        std::fs::write(&again, merged.json_string().unwrap()).unwrap();
        let twice = merge_files(&[again]).unwrap();
        assert_eq!(twice.latency, all);
    }

    #[test]
    fn bad_inputs_say_which_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let bad_json = dir.path().join("bad.json");
        std::fs::write(&bad_json, "{ not json").unwrap();
        let other_tool = dir.path().join("other.json");
        std::fs::write(
            &other_tool,
            report_with(&[1], 0.0).replace("dnsload", "dnsperf"),
        )
        .unwrap();
        let bad_hist = dir.path().join("hist.json");
        let text = report_with(&[1], 0.0);
        let start = text.find("latency_ns_v2_base64").unwrap() + 23;
        let mut broken = text.clone();
        broken.replace_range(start..start + 8, "!!!!!!!!");
        std::fs::write(&bad_hist, broken).unwrap();
        for (path, says) in [
            (dir.path().join("missing.json"), "missing.json"),
            (bad_json, "not a dnsload JSON report"),
            (other_tool, "tool is \"dnsperf\""),
            (bad_hist, "histogram is not base64"),
        ] {
            let err = merge_files(&[path]).err().expect("must fail").to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
