//! CI gates: `--fail-if 'p99>2ms,loss>0.1%,qps<50000'`. Each condition names a
//! figure of the report, a comparison and a threshold; a run that meets any of them
//! fails with the reason, so a regression check is one flag.
//!
//! Figures: latency `min mean p50 p90 p99 p99.9 p99.99 max` (a time: `us`, `ms`
//! (the default) or `s`), the send lag `lag_p50 lag_p99 lag_max` (same units),
//! `loss` (percent, `%` optional), `qps`, and the counters `sent answered lost
//! mismatched truncated send_errors`. Comparisons: `>`, `>=`, `<`, `<=`.

use std::fmt;

use thiserror::Error;

use crate::limits::GATES_MAX;
use crate::stats::{Counters, Percentiles};

/// Why a gate expression does not parse.
#[derive(Debug, Error, PartialEq)]
pub enum GateError {
    /// Nothing to check.
    #[error("--fail-if: empty expression")]
    Empty,
    /// Too many conditions.
    #[error("--fail-if: more than {GATES_MAX} conditions")]
    TooMany,
    /// A condition without a comparison.
    #[error("--fail-if {0:?}: no comparison (use >, >=, < or <=, e.g. 'p99>2ms')")]
    NoComparison(String),
    /// An unknown figure.
    #[error("--fail-if {0:?}: unknown figure {1:?} (known: {FIGURES})")]
    UnknownFigure(String, String),
    /// A threshold that is not a number with a fitting unit.
    #[error("--fail-if {0:?}: threshold {1:?} is not a number{2}")]
    BadThreshold(String, String, &'static str),
}

/// Every figure a gate may name.
const FIGURES: &str = "min mean p50 p90 p99 p99.9 p99.99 max lag_p50 lag_p99 lag_max loss qps \
sent answered lost mismatched truncated send_errors lookup_p50 lookup_p99 lookup_max lookups";

/// What a figure measures, which decides its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Microseconds internally; thresholds in us/ms/s.
    Time,
    /// Percent.
    Percent,
    /// A plain number.
    Count,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// One condition: fail when `figure op threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Figure name as written.
    figure: String,
    /// Unit class of the figure.
    kind: Kind,
    /// Comparison.
    op: Op,
    /// Threshold in the figure's internal unit (µs for times).
    threshold: f64,
    /// The condition as written, for messages.
    text: String,
}

/// The numbers of a report that gates can look at.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Latency percentiles.
    pub latency: Percentiles,
    /// Send lag percentiles.
    pub send_lag: Percentiles,
    /// Counts.
    pub counters: Counters,
    /// Answers per second.
    pub qps: f64,
    /// Lost share, percent.
    pub loss_pct: f64,
    /// Lookup latency percentiles (pod model; zeros otherwise).
    pub lookup_latency: Percentiles,
    /// Lookups per second (pod model).
    pub lookups_per_sec: f64,
}

impl Figures {
    fn get(&self, figure: &str) -> Option<f64> {
        let (l, g, c) = (&self.latency, &self.send_lag, &self.counters);
        Some(match figure {
            "min" => l.min_us,
            "mean" => l.mean_us,
            "p50" => l.p50_us,
            "p90" => l.p90_us,
            "p99" => l.p99_us,
            "p99.9" => l.p99_9_us,
            "p99.99" => l.p99_99_us,
            "max" => l.max_us,
            "lag_p50" => g.p50_us,
            "lag_p99" => g.p99_us,
            "lag_max" => g.max_us,
            "loss" => self.loss_pct,
            "qps" => self.qps,
            "sent" => c.sent as f64,
            "answered" => c.answered as f64,
            "lost" => c.lost as f64,
            "mismatched" => c.mismatched as f64,
            "truncated" => c.truncated as f64,
            "send_errors" => c.send_errors as f64,
            "lookup_p50" => self.lookup_latency.p50_us,
            "lookup_p99" => self.lookup_latency.p99_us,
            "lookup_max" => self.lookup_latency.max_us,
            "lookups" => self.lookups_per_sec,
            _ => return None,
        })
    }
}

fn kind_of(figure: &str) -> Option<Kind> {
    match figure {
        "loss" => Some(Kind::Percent),
        "qps" | "sent" | "answered" | "lost" | "mismatched" | "truncated" | "send_errors"
        | "lookups" => Some(Kind::Count),
        f if Figures::default().get(f).is_some() => Some(Kind::Time),
        _ => None,
    }
}

/// Parses a comma-separated list of conditions.
pub fn parse(expr: &str) -> Result<Vec<Gate>, GateError> {
    let parts: Vec<&str> = expr
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(GateError::Empty);
    }
    if parts.len() > GATES_MAX {
        return Err(GateError::TooMany);
    }
    parts.into_iter().map(parse_one).collect()
}

fn parse_one(text: &str) -> Result<Gate, GateError> {
    let pos = text
        .find(['<', '>'])
        .ok_or_else(|| GateError::NoComparison(text.into()))?;
    let (figure, rest) = text.split_at(pos);
    let (op, value) = match rest.as_bytes() {
        [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
        [b'<', b'=', ..] => (Op::Le, &rest[2..]),
        [b'>', ..] => (Op::Gt, &rest[1..]),
        _ => (Op::Lt, &rest[1..]),
    };
    let figure = figure.trim().to_ascii_lowercase();
    let kind =
        kind_of(&figure).ok_or_else(|| GateError::UnknownFigure(text.into(), figure.clone()))?;
    let threshold = threshold(value.trim(), kind)
        .map_err(|hint| GateError::BadThreshold(text.into(), value.trim().into(), hint))?;
    Ok(Gate {
        figure,
        kind,
        op,
        threshold,
        text: text.into(),
    })
}

/// The threshold in the figure's internal unit, or a hint about the unit.
fn threshold(value: &str, kind: Kind) -> Result<f64, &'static str> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let scale = match (kind, unit.trim()) {
        (Kind::Time, "" | "ms") => 1000.0,
        (Kind::Time, "us" | "µs") => 1.0,
        (Kind::Time, "s") => 1e6,
        (Kind::Time, _) => return Err(" with unit us, ms or s"),
        (Kind::Percent, "" | "%") => 1.0,
        (Kind::Percent, _) => return Err(" of percent (e.g. 0.1%)"),
        (Kind::Count, "") => 1.0,
        (Kind::Count, _) => return Err(" (a plain number, no unit)"),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n * scale),
        _ => Err(""),
    }
}

/// A gate that tripped, with the figure's value, for the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Tripped {
    /// The condition as written.
    pub condition: String,
    /// The figure's value, formatted in the condition's unit class.
    pub value: String,
}

impl fmt::Display for Tripped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (it was {})", self.condition, self.value)
    }
}

/// The gates that hold for `figures`, i.e. the reasons to fail.
pub fn check(gates: &[Gate], figures: &Figures) -> Vec<Tripped> {
    gates
        .iter()
        .filter_map(|g| {
            let value = figures.get(&g.figure)?;
            g.op.holds(value, g.threshold).then(|| Tripped {
                condition: format!(
                    "{}{}{}",
                    g.figure,
                    g.op.symbol(),
                    shown(g.kind, g.threshold)
                ),
                value: shown(g.kind, value),
            })
        })
        .collect()
}

fn shown(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Time => format!("{:.3}ms", v / 1000.0),
        Kind::Percent => format!("{v:.3}%"),
        Kind::Count => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        Figures {
            latency: Percentiles {
                p99_us: 2500.0,
                ..Default::default()
            },
            qps: 40_000.0,
            loss_pct: 0.05,
            ..Default::default()
        }
    }

    #[test]
    fn lookup_figures_gate() {
        let f = Figures {
            lookup_latency: Percentiles {
                p99_us: 9000.0,
                ..Default::default()
            },
            lookups_per_sec: 500.0,
            ..Default::default()
        };
        let tripped = check(&parse("lookup_p99>5ms,lookups<1000").unwrap(), &f);
        assert_eq!(tripped.len(), 2, "{tripped:?}");
    }

    #[test]
    fn trips_with_the_reason() {
        let gates = parse("p99>2ms, loss>0.1%, qps<50000").unwrap();
        let tripped = check(&gates, &figures());
        let text: Vec<String> = tripped.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "p99>2.000ms (it was 2.500ms)",
                "qps<50000.0 (it was 40000.0)"
            ]
        );
        assert!(check(&parse("p99>=3000us,loss>=1").unwrap(), &figures()).is_empty());
        assert_eq!(check(&parse("P99 > 0.002s").unwrap(), &figures()).len(), 1);
    }

    #[test]
    fn malformed_expressions_say_why() {
        assert_eq!(parse(" , "), Err(GateError::Empty));
        assert!(matches!(parse("p99=2ms"), Err(GateError::NoComparison(_))));
        assert!(matches!(
            parse("p98>2ms"),
            Err(GateError::UnknownFigure(..))
        ));
        assert!(matches!(parse("p99>2kg"), Err(GateError::BadThreshold(..))));
        assert!(matches!(
            parse("loss>abc"),
            Err(GateError::BadThreshold(..))
        ));
        assert!(matches!(parse("qps<5ms"), Err(GateError::BadThreshold(..))));
        let msg = parse("p99>").unwrap_err().to_string();
        assert!(msg.contains("not a number"), "{msg}");
    }
}
