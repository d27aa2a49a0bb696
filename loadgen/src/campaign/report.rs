//! Results of a campaign: one [`Run`] per cell and repeat, written as CSV and JSON,
//! and a Markdown report with a table per metric (median, spread across repeats,
//! delta vs the baseline cell) and an SVG plot per metric.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::experiment::{Cell, Experiment};

/// One measured (or failed) run of a cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub cell: String,
    pub profile: String,
    pub server: String,
    pub load: String,
    pub repeat: u32,
    pub ok: bool,
    pub error: String,
    /// Answers per second of sending time.
    pub qps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub loss_pct: f64,
    /// Server user + system CPU time over the run / answered queries.
    pub cpu_us_per_query: f64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub server_cpu_secs: f64,
    pub started_unix_secs: f64,
}

impl Run {
    /// A run of `cell` from dnsload's JSON report and the server's CPU seconds.
    pub fn from_report(
        exp: &Experiment,
        cell: Cell,
        repeat: u32,
        doc: &serde_json::Value,
        cpu_secs: f64,
    ) -> Run {
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let answered = doc["counters"]["answered"].as_u64().unwrap_or(0);
        Run {
            ok: answered > 0,
            error: if answered > 0 {
                String::new()
            } else {
                "no answers".into()
            },
            qps: f(&doc["qps"]),
            p50_us: f(&doc["latency"]["p50_us"]),
            p99_us: f(&doc["latency"]["p99_us"]),
            p99_9_us: f(&doc["latency"]["p99_9_us"]),
            loss_pct: f(&doc["loss_pct"]),
            cpu_us_per_query: cpu_secs * 1e6 / answered.max(1) as f64,
            sent: doc["counters"]["sent"].as_u64().unwrap_or(0),
            answered,
            lost: doc["counters"]["lost"].as_u64().unwrap_or(0),
            server_cpu_secs: cpu_secs,
            started_unix_secs: f(&doc["started_unix_secs"]),
            ..Run::failed(exp, cell, repeat, "")
        }
    }

    /// A run of `cell` that could not be measured.
    pub fn failed(exp: &Experiment, cell: Cell, repeat: u32, error: &str) -> Run {
        Run {
            cell: exp.label(cell),
            profile: exp.profiles[cell.profile].name.clone(),
            server: exp.servers[cell.server].name.clone(),
            load: exp.loads[cell.load].name.clone(),
            repeat,
            ok: false,
            error: error.into(),
            ..Run::default()
        }
    }
}

/// A metric of the report.
pub struct Metric {
    pub key: &'static str,
    pub title: &'static str,
    pub higher_is_better: bool,
    pub value: fn(&Run) -> f64,
}

/// Every metric, in report order.
pub const METRICS: [Metric; 6] = [
    Metric {
        key: "qps",
        title: "QPS (answers per second)",
        higher_is_better: true,
        value: |r| r.qps,
    },
    Metric {
        key: "p50_us",
        title: "p50 latency (µs)",
        higher_is_better: false,
        value: |r| r.p50_us,
    },
    Metric {
        key: "p99_us",
        title: "p99 latency (µs)",
        higher_is_better: false,
        value: |r| r.p99_us,
    },
    Metric {
        key: "p99_9_us",
        title: "p99.9 latency (µs)",
        higher_is_better: false,
        value: |r| r.p99_9_us,
    },
    Metric {
        key: "loss_pct",
        title: "loss (%)",
        higher_is_better: false,
        value: |r| r.loss_pct,
    },
    Metric {
        key: "cpu_us_per_query",
        title: "server CPU per query (µs)",
        higher_is_better: false,
        value: |r| r.cpu_us_per_query,
    },
];

/// Median, min and max of one metric over a cell's successful runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        })
    }
}

/// The spread of `metric` for each cell label, in cell order.
pub fn spreads(
    exp: &Experiment,
    runs: &[Run],
    metric: &Metric,
) -> Vec<(String, Option<Spread>, Vec<f64>)> {
    exp.cells()
        .into_iter()
        .map(|cell| {
            let label = exp.label(cell);
            let values: Vec<f64> = runs
                .iter()
                .filter(|r| r.ok && r.cell == label)
                .map(metric.value)
                .collect();
            (label, Spread::of(&values), values)
        })
        .collect()
}

const CSV_HEADER: &str = "cell,profile,server,load,repeat,ok,error,qps,p50_us,p99_us,p99_9_us,loss_pct,cpu_us_per_query,sent,answered,lost,server_cpu_secs,started_unix_secs";

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Every run as CSV, one line each.
pub fn csv(runs: &[Run]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in runs {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.4},{:.3},{},{},{},{:.3},{:.3}",
            csv_field(&r.cell),
            csv_field(&r.profile),
            csv_field(&r.server),
            csv_field(&r.load),
            r.repeat,
            r.ok,
            csv_field(&r.error),
            r.qps,
            r.p50_us,
            r.p99_us,
            r.p99_9_us,
            r.loss_pct,
            r.cpu_us_per_query,
            r.sent,
            r.answered,
            r.lost,
            r.server_cpu_secs,
            r.started_unix_secs
        );
    }
    out
}

/// The JSON document: the experiment, the environment and every run.
#[derive(Serialize)]
pub struct JsonDoc<'a> {
    pub experiment: &'a str,
    pub description: &'a str,
    pub command: &'a str,
    pub repeats: u32,
    pub duration_secs: u64,
    pub baseline: String,
    pub environment: &'a [(String, String)],
    pub runs: &'a [Run],
}

/// What the Markdown report says besides the tables.
pub struct Context<'a> {
    pub command: &'a str,
    /// (name, value) lines: kernel, CPUs, versions, sysctls at start.
    pub environment: &'a [(String, String)],
    /// Cell label → the server and load command lines.
    pub commands: &'a [(String, String, String)],
    pub restore_log: &'a [String],
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The Markdown report.
pub fn markdown(exp: &Experiment, runs: &[Run], ctx: &Context) -> String {
    let cells = exp.cells();
    let baseline = exp.label(cells[exp.baseline]);
    let mut out = String::new();
    let _ = writeln!(out, "# Tuning campaign: {}\n", exp.name);
    if !exp.description.is_empty() {
        let _ = writeln!(out, "{}\n", exp.description.trim());
    }
    let ok = runs.iter().filter(|r| r.ok).count();
    let _ = writeln!(
        out,
        "{} cells × {} repeats × {} s (after {} s of warm-up each); {ok} of {} runs measured. \
         Repeats are interleaved (every cell once, then again), so slow drift of the machine \
         spreads over all cells instead of biasing one. Baseline: **{baseline}**.\n",
        cells.len(),
        exp.repeats,
        exp.duration_secs,
        exp.warmup_secs,
        runs.len()
    );
    let _ = writeln!(out, "Produced by:\n\n```\n{}\n```\n", ctx.command);
    out.push_str(
        "Each table: the median over the repeats, the range (min – max), the spread \
         ((max − min) / median) and the median's change vs the baseline. A change is in \
         **bold** when the cell's range and the baseline's do not overlap (with at least 2 runs each).\n\n",
    );
    for metric in &METRICS {
        metric_table(&mut out, exp, runs, metric);
    }
    failures(&mut out, runs);
    let _ = writeln!(out, "## Commands of each cell\n");
    for (label, server, load) in ctx.commands {
        let _ = writeln!(
            out,
            "- **{label}**\n  - server: `{server}`\n  - load: `{load}`"
        );
    }
    let _ = writeln!(out, "\n## Environment\n\n| | |\n| --- | --- |");
    for (name, value) in ctx.environment {
        let _ = writeln!(out, "| {name} | `{value}` |");
    }
    if !ctx.restore_log.is_empty() {
        let _ = writeln!(out, "\n## Restored at the end\n\n```");
        for line in ctx.restore_log {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "```");
    }
    let _ = writeln!(
        out,
        "\nEvery run: `runs.csv`, `runs.json`; dnsload's own report of each run: `raw/`."
    );
    out
}

fn metric_table(out: &mut String, exp: &Experiment, runs: &[Run], metric: &Metric) {
    let rows = spreads(exp, runs, metric);
    let base = rows[exp.baseline].1;
    let better = if metric.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let _ = writeln!(
        out,
        "## {} ({better})\n\n![{}]({}.svg)\n",
        metric.title, metric.key, metric.key
    );
    let _ = writeln!(
        out,
        "| cell | runs | median | min – max | spread | Δ vs baseline |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for (index, (label, spread, _)) in rows.iter().enumerate() {
        let Some(s) = spread else {
            let _ = writeln!(out, "| {label} | 0 | – | – | – | – |");
            continue;
        };
        let spread_pct = if s.median != 0.0 {
            (s.max - s.min) / s.median.abs() * 100.0
        } else {
            0.0
        };
        let delta = match base {
            _ if index == exp.baseline => "baseline".to_string(),
            Some(b) if b.median != 0.0 => {
                let d = (s.median / b.median - 1.0) * 100.0;
                let text = format!("{d:+.1} %");
                let apart = s.min > b.max || s.max < b.min;
                if apart && s.runs > 1 && b.runs > 1 {
                    format!("**{text}**")
                } else {
                    text
                }
            }
            Some(b) => format!("{:+.3} (abs.)", s.median - b.median),
            None => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} – {} | {spread_pct:.1} % | {delta} |",
            s.runs,
            fmt_value(s.median),
            fmt_value(s.min),
            fmt_value(s.max)
        );
    }
    out.push('\n');
}

fn failures(out: &mut String, runs: &[Run]) {
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.ok).collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Failed runs\n\n| cell | repeat | error |\n| --- | ---: | --- |"
    );
    for r in failed {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            r.cell,
            r.repeat,
            r.error.replace('|', "\\|").replace('\n', " ")
        );
    }
    out.push('\n');
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart of one metric: a bar to each cell's median, a whisker
/// from min to max, a dot per run; the baseline's bar is darker.
pub fn svg(exp: &Experiment, runs: &[Run], metric: &Metric) -> String {
    let rows = spreads(exp, runs, metric);
    let (label_w, plot_w, row_h, top) = (360.0, 420.0, 30.0, 50.0);
    let width = label_w + plot_w + 40.0;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let max = rows
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.05;
    let x = |v: f64| label_w + v / max * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let better = if metric.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15">{}: {} ({better}; bar = median, line = min–max, dots = runs)</text>"#,
        xml(&exp.name),
        xml(metric.title)
    );
    for tick in 0..=4 {
        let v = max * f64::from(tick) / 4.0;
        let tx = x(v);
        let bottom = top + row_h * rows.len() as f64;
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{bottom}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 16.0,
            fmt_value(v)
        );
    }
    for (index, (label, spread, values)) in rows.iter().enumerate() {
        let y = top + row_h * index as f64;
        let mid = y + row_h / 2.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            mid + 4.0,
            xml(label)
        );
        let Some(sp) = spread else {
            let _ = writeln!(
                s,
                r#"<text x="{label_w}" y="{:.1}" fill="red">no successful run</text>"#,
                mid + 4.0
            );
            continue;
        };
        let fill = if index == exp.baseline {
            "#4a6fa5"
        } else {
            "#8fb3e0"
        };
        let _ = writeln!(
            s,
            r#"<rect x="{label_w}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>median {}</title></rect>"#,
            y + 6.0,
            x(sp.median) - label_w,
            row_h - 12.0,
            fmt_value(sp.median)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="black"/>"#,
            x(sp.min),
            x(sp.max)
        );
        for v in values {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{mid:.1}" r="2.5" fill="black"/>"#,
                x(*v)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Writes runs.csv, runs.json, report.md and one SVG per metric into `dir`.
pub fn write_all(dir: &Path, exp: &Experiment, runs: &[Run], ctx: &Context) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("runs.csv"), csv(runs))?;
    let doc = JsonDoc {
        experiment: &exp.name,
        description: &exp.description,
        command: ctx.command,
        repeats: exp.repeats,
        duration_secs: exp.duration_secs,
        baseline: exp.label(exp.cells()[exp.baseline]),
        environment: ctx.environment,
        runs,
    };
    fs::write(
        dir.join("runs.json"),
        serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?,
    )?;
    fs::write(dir.join("report.md"), markdown(exp, runs, ctx))?;
    for metric in &METRICS {
        fs::write(
            dir.join(format!("{}.svg", metric.key)),
            svg(exp, runs, metric),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
