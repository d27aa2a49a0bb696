//! Command line → one typed, validated [`Config`]. Nothing downstream reads text.
//!
//! The single-letter options are dnsperf's, with the same meaning, so a script
//! switches tools by changing the binary name; everything dnsload adds is a long
//! option.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;
use thiserror::Error;

use crate::gate::{self, Gate, GateError};
use crate::limits::{
    BATCH_MSGS_DEFAULT, BATCH_MSGS_MAX, CHANNELS_PER_WORKER_MAX, START_AT_AHEAD_SECS_MAX,
    THREADS_MAX, TIMEOUT_SECS_MAX,
};
use crate::pods::{PodModel, Profile, ProfileError, Resolver};
use crate::queries::{self, NameSource, Order, QueryError, QuerySpec};
use crate::replay::ReplaySpec;
use crate::schedule::Spacing;
use crate::wire::QueryOptions;

/// Transport protocol (`-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One datagram per query, batched with sendmmsg/recvmmsg.
    Udp,
    /// Length-prefixed queries pipelined over each connection.
    Tcp,
}

/// dnsperf-compatible DNS load generator that reports honest tail latency.
///
/// Closed loop by default (keep -q queries outstanding, like dnsperf). --rate runs
/// open loop: queries leave on a fixed schedule and latency counts from the
/// intended send time, so a stalled server shows in the tail. --ramp raises the
/// rate step by step and reports the knee, like resperf.
#[derive(Debug, Parser)]
#[command(name = "dnsload", version, max_term_width = 100)]
pub struct Args {
    /// Server address to query (IPv4 or IPv6 literal, or "localhost").
    #[arg(short = 's', long = "server", default_value = "127.0.0.1")]
    pub server: String,
    /// Server port.
    #[arg(short = 'p', long = "port", default_value_t = 53)]
    pub port: u16,
    /// Query file in dnsperf format: "name type" per line; ';' or '#' comments.
    #[arg(short = 'd', long = "datafile", value_name = "FILE")]
    pub datafile: Option<PathBuf>,
    /// Run for at most this many seconds.
    #[arg(short = 'l', long = "time-limit", value_name = "SECS")]
    pub time_limit_secs: Option<f64>,
    /// Run through the queries at most N times (default 1 when -l is not given).
    #[arg(short = 'n', long = "passes", value_name = "N")]
    pub passes: Option<u64>,
    /// Clients: UDP sockets (each its own source port) or TCP connections, in total
    /// [default: 4 per thread for UDP, 1 per thread for TCP].
    #[arg(short = 'c', long = "clients", value_name = "N")]
    pub clients: Option<usize>,
    /// Maximum queries outstanding, in total [default: 100 in closed loop; rate x
    /// timeout (at least 1000) in open loop].
    #[arg(short = 'q', long = "outstanding", value_name = "N")]
    pub outstanding: Option<usize>,
    /// Limit the send rate (queries/s) of the closed loop; latency still counts from
    /// the actual send, as in dnsperf. See --rate for an open loop.
    #[arg(short = 'Q', long = "max-qps", value_name = "QPS")]
    pub max_qps: Option<f64>,
    /// Seconds to wait for an answer before counting the query lost.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SECS",
        default_value_t = 5.0
    )]
    pub timeout_secs: f64,
    /// Transport.
    #[arg(short = 'm', long = "mode", value_enum, default_value = "udp")]
    pub mode: Transport,
    /// Add an EDNS0 OPT record to every query.
    #[arg(short = 'e', long = "edns")]
    pub edns: bool,
    /// Set the DNSSEC OK bit (implies -e).
    #[arg(short = 'D', long = "dnssec-ok")]
    pub dnssec_ok: bool,
    /// Worker threads, each with its own sockets, pinned to its own core.
    #[arg(short = 'T', long = "threads", default_value_t = 1)]
    pub threads: usize,

    /// Open loop: send at this fixed rate (queries/s) whatever the server does;
    /// latency counts from the intended send time.
    #[arg(long = "rate", value_name = "QPS", conflicts_with = "max_qps")]
    pub rate: Option<f64>,
    /// Spacing of open-loop sends.
    #[arg(long = "spacing", value_enum, default_value = "constant")]
    pub spacing: Spacing,
    /// Ramp: open loop whose rate rises by --ramp-step every --ramp-step-secs until
    /// loss or p99 crosses its limit; reports the knee (last good rate).
    #[arg(long = "ramp", conflicts_with_all = ["rate", "max_qps"])]
    pub ramp: bool,
    /// First ramp rate (queries/s).
    #[arg(long = "ramp-start", value_name = "QPS", default_value_t = 10_000.0)]
    pub ramp_start: f64,
    /// Rate added per ramp step (queries/s) [default: --ramp-start].
    #[arg(long = "ramp-step", value_name = "QPS")]
    pub ramp_step: Option<f64>,
    /// Seconds per ramp step.
    #[arg(long = "ramp-step-secs", value_name = "SECS", default_value_t = 2)]
    pub ramp_step_secs: u64,
    /// Loss (percent of the step's queries unanswered) that ends the ramp.
    #[arg(long = "ramp-max-loss", value_name = "PCT", default_value_t = 1.0)]
    pub ramp_max_loss_pct: f64,
    /// p99 latency (milliseconds) that ends the ramp.
    #[arg(long = "ramp-max-p99", value_name = "MS", default_value_t = 10.0)]
    pub ramp_max_p99_ms: f64,
    /// Highest rate the ramp tries (queries/s).
    #[arg(long = "ramp-max", value_name = "QPS")]
    pub ramp_max: Option<f64>,

    /// Generate names from a pattern with {a..b} ranges and {x,y} alternatives,
    /// e.g. 'svc{0..9999}.default.svc.cluster.local'.
    #[arg(long = "names", value_name = "PATTERN", conflicts_with = "datafile")]
    pub names: Option<String>,
    /// Generate N unique random names (all cache misses) under --random-suffix.
    #[arg(long = "random-names", value_name = "N", conflicts_with_all = ["datafile", "names"])]
    pub random_names: Option<usize>,
    /// Zone under which random names are made.
    #[arg(
        long = "random-suffix",
        value_name = "ZONE",
        default_value = "example."
    )]
    pub random_suffix: String,
    /// Query type mix for generated names, e.g. 'A=80,AAAA=20'.
    #[arg(long = "qtype", value_name = "MIX", default_value = "A")]
    pub qtype: String,
    /// Pick queries Zipf-distributed with this exponent (e.g. 1.0) instead of in
    /// order: the first entries are the popular ones.
    #[arg(long = "zipf", value_name = "S")]
    pub zipf: Option<f64>,
    /// Seed for random names, type mix, Zipf and Poisson spacing.
    #[arg(long = "seed", default_value_t = 1)]
    pub seed: u64,
    /// EDNS UDP payload size advertised with -e/-D.
    #[arg(long = "edns-size", value_name = "BYTES", default_value_t = crate::limits::EDNS_UDP_PAYLOAD_BYTES_DEFAULT)]
    pub edns_size: u16,

    /// Messages per sendmmsg/recvmmsg (or per TCP write).
    #[arg(long = "batch", value_name = "N", default_value_t = BATCH_MSGS_DEFAULT)]
    pub batch: usize,
    /// Cores to pin the threads to, e.g. '1' or '2,3' [default: the cores this
    /// process may run on, in order].
    #[arg(long = "cores", value_name = "LIST", value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Do not use UDP GSO (UDP_SEGMENT) to send batches of equal-length queries.
    #[arg(long = "no-gso")]
    pub no_gso: bool,
    /// Do not pin threads to cores.
    #[arg(long = "no-pin")]
    pub no_pin: bool,

    /// Write the summary, histogram and per-second series as JSON.
    #[arg(long = "json", value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write the per-second series as CSV.
    #[arg(long = "csv", value_name = "PATH")]
    pub csv: Option<PathBuf>,
    /// Draw latency percentiles and QPS over time as SVG.
    #[arg(long = "plot", value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
    /// No per-second progress line on stderr.
    #[arg(long = "quiet")]
    pub quiet: bool,
    /// TCP connection churn: open a new connection after every N queries (1: one
    /// connection per query), paying the handshake as reconnecting clients do.
    #[arg(long = "tcp-churn", value_name = "N")]
    pub tcp_churn: Option<u64>,
    /// Exit with code 3 and the reason when any condition holds, e.g.
    /// 'p99>2ms,loss>0.1%,qps<50000' (figures: min mean p50 p90 p99 p99.9 p99.99 max
    /// lag_p50 lag_p99 lag_max loss qps sent answered lost mismatched truncated
    /// send_errors, and with --pods lookup_p50 lookup_p99 lookup_max lookups (per
    /// second); comparisons > >= < <=; times in us, ms or s).
    #[arg(long = "fail-if", value_name = "CONDITIONS")]
    pub fail_if: Option<String>,
    /// Wait until this wall-clock time before sending (RFC 3339, e.g.
    /// 2026-12-03T21:00:00Z, or Unix seconds), so runs on many machines share one
    /// start and `dnsload merge` lines up their seconds. A time already past starts now.
    #[arg(long = "start-at", value_name = "TIME")]
    pub start_at: Option<String>,

    /// Kubernetes pod traffic: N pods, each its own UDP socket, whose lookups are
    /// expanded through the pod's search list (ndots:5) and asked as A+AAAA pairs;
    /// Poisson arrivals at --rate lookups/s (default: the profile's rate per pod x
    /// N). The report adds lookups/s and lookup latency. Needs -l.
    #[arg(long = "pods", value_name = "N", conflicts_with_all = ["datafile", "names", "random_names", "clients", "ramp", "max_qps"])]
    pub pods: Option<usize>,
    /// The pod model's knobs (TOML; see the README); implies the pod model.
    #[arg(long = "pod-profile", value_name = "FILE", conflicts_with_all = ["datafile", "names", "random_names", "clients", "ramp", "max_qps"])]
    pub pod_profile: Option<PathBuf>,
    /// The pods' stub resolver [default: the profile's, glibc].
    #[arg(long = "pod-resolver", value_enum, value_name = "LIBC")]
    pub pod_resolver: Option<Resolver>,
    /// Pod model: every outside lookup asks a new name (all cache misses).
    #[arg(long = "pods-churn")]
    pub pods_churn: bool,
    /// Pod model: write the zone files under which every name of the model
    /// resolves into DIR (for knotd or any authoritative server), then exit.
    #[arg(long = "write-zones", value_name = "DIR")]
    pub write_zones: Option<PathBuf>,

    /// Replay the DNS queries of a pcap or pcapng capture (UDP to --replay-port)
    /// or of a text query log (SECONDS CLIENT NAME [TYPE] per line) at their
    /// relative times, each original client (address:port) on its own socket.
    #[arg(long = "replay", value_name = "FILE", conflicts_with_all = ["datafile", "names", "random_names", "clients", "ramp", "max_qps", "rate", "pods", "pod_profile"])]
    pub replay: Option<PathBuf>,
    /// Replay time scale: 2 sends twice as fast, 0.5 half as fast.
    #[arg(long = "replay-speed", value_name = "X", default_value_t = 1.0)]
    pub replay_speed: f64,
    /// The original server's UDP port: queries to it are replayed (captures only).
    #[arg(long = "replay-port", value_name = "PORT", default_value_t = 53)]
    pub replay_port: u16,
}

/// Why the arguments do not describe a runnable load.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `-s` is not an address.
    #[error("-s {0:?}: not an IP address (give an IPv4 or IPv6 literal)")]
    Server(String),
    /// No query source.
    #[error("no queries: give -d FILE, --names PATTERN or --random-names N")]
    NoQueries,
    /// A number is out of its range.
    #[error("{option} {value}: {reason}")]
    Range {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The query set could not be built.
    #[error(transparent)]
    Queries(#[from] QueryError),
    /// `--fail-if` does not parse.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// `--start-at` is not a time, or too far ahead.
    #[error("--start-at {0:?}: {1}")]
    StartAt(String, &'static str),
    /// The pod profile cannot be used.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// An option that the chosen mode cannot honour.
    #[error("{0}")]
    Mode(&'static str),
}

/// The ramp's plan.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RampPlan {
    /// First rate, queries/s.
    pub start_qps: f64,
    /// Added per step, queries/s.
    pub step_qps: f64,
    /// Length of a step.
    pub step_secs: u64,
    /// Loss that ends the ramp, percent.
    pub max_loss_pct: f64,
    /// p99 that ends the ramp, milliseconds.
    pub max_p99_ms: f64,
    /// Highest rate tried, queries/s.
    pub max_qps: f64,
}

/// What kind of load to offer.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Load {
    /// Keep the outstanding limit full.
    Closed,
    /// Closed loop capped at a rate.
    RateLimited { qps: f64 },
    /// Fixed schedule.
    Open { qps: f64, spacing: Spacing },
    /// Rising open-loop rate.
    Ramp(RampPlan),
    /// Queries at the times of a capture or query log (`--replay`), scaled.
    Replay { speed: f64 },
}

/// A validated run description.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Target.
    pub server: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// Worker threads.
    pub threads: usize,
    /// Sockets or connections, total.
    pub clients: usize,
    /// Outstanding queries, total.
    pub outstanding: usize,
    /// Kind of load.
    pub load: Load,
    /// Per-query timeout.
    #[serde(rename = "timeout_secs", serialize_with = "secs")]
    pub timeout: Duration,
    /// Stop after this long.
    #[serde(rename = "time_limit_secs", serialize_with = "opt_secs")]
    pub time_limit: Option<Duration>,
    /// Stop after this many passes over the queries.
    pub passes: Option<u64>,
    /// Query source and shape.
    #[serde(skip)]
    pub queries: QuerySpec,
    /// Query order.
    #[serde(skip)]
    pub order: Order,
    /// Messages per batched send.
    pub batch: usize,
    /// Send UDP batches with GSO when the kernel has it.
    pub gso: bool,
    /// Pin threads to cores.
    pub pin: bool,
    /// Explicit cores to pin to (empty: the allowed cores in order).
    pub cores: Vec<usize>,
    /// JSON output path.
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// CSV output path.
    #[serde(skip)]
    pub csv: Option<PathBuf>,
    /// SVG output path.
    #[serde(skip)]
    pub plot: Option<PathBuf>,
    /// Suppress progress lines.
    #[serde(skip)]
    pub quiet: bool,
    /// `--fail-if` as written.
    pub fail_if: Option<String>,
    /// `--fail-if`, parsed.
    #[serde(skip)]
    pub gates: Vec<Gate>,
    /// Wall-clock start, seconds since the Unix epoch (`--start-at`).
    pub start_at_unix_secs: Option<f64>,
    /// New TCP connection after this many queries (`--tcp-churn`).
    pub tcp_churn: Option<u64>,
    /// The pod traffic model (`--pods`, `--pod-profile`).
    pub pods: Option<PodModel>,
    /// Where to write the pod model's zone files instead of running.
    pub write_zones: Option<PathBuf>,
    /// The capture or query log to replay (`--replay`).
    pub replay: Option<ReplaySpec>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn range_err(option: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError::Range {
        option,
        value: value.to_string(),
        reason,
    }
}

fn positive(option: &'static str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(range_err(option, v, "must be a positive number"))
    }
}

impl Config {
    /// Validates `args` into a config.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let ip: IpAddr = match args.server.as_str() {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            s => s
                .trim_matches(['[', ']'])
                .parse()
                .map_err(|_| ConfigError::Server(s.into()))?,
        };
        if args.threads == 0 || args.threads > THREADS_MAX {
            return Err(range_err("-T", args.threads, "must be between 1 and 256"));
        }
        if args.batch == 0 || args.batch > BATCH_MSGS_MAX {
            return Err(range_err("--batch", args.batch, "must be between 1 and 64"));
        }
        let timeout_secs = positive("-t", args.timeout_secs)?;
        if timeout_secs > TIMEOUT_SECS_MAX {
            return Err(range_err("-t", timeout_secs, "must be at most 60 seconds"));
        }
        let pods = pod_model(&args)?;
        let replay = replay_of(&args)?;
        let load = match (&pods, &replay) {
            (Some(model), _) => pod_load(&args, model)?,
            (_, Some(r)) => Load::Replay { speed: r.speed },
            _ => load_of(&args)?,
        };
        let clients = match &pods {
            Some(model) => pod_clients(&args, model)?,
            None => clients_of(&args)?,
        };
        let outstanding = outstanding_of(&args, &load, timeout_secs)?;
        let time_limit = args
            .time_limit_secs
            .map(|l| positive("-l", l).map(Duration::from_secs_f64))
            .transpose()?;
        if pods.is_some() && time_limit.is_none() && args.write_zones.is_none() {
            return Err(ConfigError::Mode(
                "--pods needs -l SECS (lookups never run out)",
            ));
        }
        if let (Some(_), Load::Open { qps, .. }, Some(limit)) = (&pods, &load, time_limit) {
            if qps * limit.as_secs_f64() < 1.0 {
                return Err(range_err(
                    "--rate",
                    qps,
                    "less than one lookup in the whole run (-l)",
                ));
            }
        }
        let passes = match (args.passes, time_limit, &load) {
            (_, _, _) if pods.is_some() || replay.is_some() => None,
            (Some(0), _, _) => return Err(range_err("-n", 0, "must be at least 1")),
            (None, None, Load::Ramp(_)) => None,
            (None, None, _) => Some(1),
            (p, _, _) => p,
        };
        let tcp_churn = tcp_churn_of(&args)?;
        let order = match args.zipf {
            Some(s) => Order::Zipf(positive("--zipf", s)?),
            None => Order::Sequential,
        };
        Ok(Self {
            server: SocketAddr::new(ip, args.port),
            transport: args.mode,
            threads: args.threads,
            clients,
            outstanding,
            load,
            timeout: Duration::from_secs_f64(timeout_secs),
            time_limit,
            passes,
            queries: query_spec(&args)?,
            order,
            batch: args.batch,
            gso: !args.no_gso,
            pin: !args.no_pin,
            cores: args.cores,
            json: args.json,
            csv: args.csv,
            plot: args.plot,
            quiet: args.quiet,
            gates: args
                .fail_if
                .as_deref()
                .map(gate::parse)
                .transpose()?
                .unwrap_or_default(),
            start_at_unix_secs: args.start_at.as_deref().map(start_at).transpose()?,
            tcp_churn,
            fail_if: args.fail_if,
            write_zones: args.write_zones,
            pods,
            replay,
        })
    }
}

/// `--tcp-churn`: only with `-m tcp`, at least 1.
fn tcp_churn_of(args: &Args) -> Result<Option<u64>, ConfigError> {
    match (args.tcp_churn, args.mode) {
        (None, _) => Ok(None),
        (Some(_), Transport::Udp) => Err(range_err(
            "--tcp-churn",
            args.tcp_churn.unwrap_or(0),
            "needs -m tcp",
        )),
        (Some(0), _) => Err(range_err("--tcp-churn", 0, "must be at least 1")),
        (Some(n), _) => Ok(Some(n)),
    }
}

/// `--start-at` as Unix seconds: RFC 3339 or a number, at most a day ahead.
fn start_at(text: &str) -> Result<f64, ConfigError> {
    let err = |why| ConfigError::StartAt(text.into(), why);
    let secs = match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => s,
        Ok(_) => return Err(err("must be a time after 1970")),
        Err(_) => {
            chrono::DateTime::parse_from_rfc3339(text.trim())
                .map_err(|_| err("not RFC 3339 (2026-12-03T21:00:00Z) nor Unix seconds"))?
                .timestamp_micros() as f64
                / 1e6
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    if secs - now > START_AT_AHEAD_SECS_MAX {
        return Err(err("more than a day ahead"));
    }
    Ok(secs)
}

/// What `--replay` reads, checked.
fn replay_of(args: &Args) -> Result<Option<ReplaySpec>, ConfigError> {
    let Some(path) = &args.replay else {
        return Ok(None);
    };
    if args.mode == Transport::Tcp {
        return Err(ConfigError::Mode("--replay sends over UDP: drop -m tcp"));
    }
    Ok(Some(ReplaySpec {
        path: path.clone(),
        port: args.replay_port,
        speed: positive("--replay-speed", args.replay_speed)?,
    }))
}

/// The pod model, when `--pods` or `--pod-profile` asks for it.
fn pod_model(args: &Args) -> Result<Option<PodModel>, ConfigError> {
    if args.pods.is_none() && args.pod_profile.is_none() {
        if args.pods_churn || args.pod_resolver.is_some() || args.write_zones.is_some() {
            return Err(ConfigError::Mode(
                "--pods-churn, --pod-resolver and --write-zones need --pods N or --pod-profile FILE",
            ));
        }
        return Ok(None);
    }
    if args.mode == Transport::Tcp {
        return Err(ConfigError::Mode(
            "--pods models UDP stub resolvers: drop -m tcp",
        ));
    }
    let mut profile = match &args.pod_profile {
        Some(path) => Profile::read(path)?,
        None => Profile::default(),
    };
    if let Some(n) = args.pods {
        profile.pods = n;
        if args.pod_profile.is_none() {
            // Without a profile, a small node has as many namespaces as pods at most.
            profile.namespaces = profile.namespaces.min(n.max(1));
        }
    }
    if let Some(r) = args.pod_resolver {
        profile.resolver = r;
    }
    profile.churn |= args.pods_churn;
    Ok(Some(PodModel::new(profile)?))
}

/// Open loop with Poisson arrivals at the lookup rate.
fn pod_load(args: &Args, model: &PodModel) -> Result<Load, ConfigError> {
    let p = &model.profile;
    let qps = match args.rate {
        Some(r) => positive("--rate", r)?,
        None => p.lookups_per_pod_per_sec * p.pods as f64,
    };
    Ok(Load::Open {
        qps,
        spacing: crate::schedule::Spacing::Poisson,
    })
}

/// One socket per pod, split over the threads.
fn pod_clients(args: &Args, model: &PodModel) -> Result<usize, ConfigError> {
    let pods = model.profile.pods;
    if pods > args.threads * CHANNELS_PER_WORKER_MAX {
        return Err(range_err(
            "--pods",
            pods,
            "at most 4096 pods per thread (-T), each its own socket",
        ));
    }
    if pods < args.threads {
        return Err(range_err("--pods", pods, "fewer pods than threads (-T)"));
    }
    Ok(pods)
}

fn load_of(args: &Args) -> Result<Load, ConfigError> {
    if args.ramp {
        let start_qps = positive("--ramp-start", args.ramp_start)?;
        let step_qps = positive("--ramp-step", args.ramp_step.unwrap_or(start_qps))?;
        if args.ramp_step_secs == 0 {
            return Err(range_err("--ramp-step-secs", 0, "must be at least 1"));
        }
        return Ok(Load::Ramp(RampPlan {
            start_qps,
            step_qps,
            step_secs: args.ramp_step_secs,
            max_loss_pct: positive("--ramp-max-loss", args.ramp_max_loss_pct)?,
            max_p99_ms: positive("--ramp-max-p99", args.ramp_max_p99_ms)?,
            max_qps: positive("--ramp-max", args.ramp_max.unwrap_or(1e9))?,
        }));
    }
    if let Some(qps) = args.rate {
        return Ok(Load::Open {
            qps: positive("--rate", qps)?,
            spacing: args.spacing,
        });
    }
    if let Some(qps) = args.max_qps {
        return Ok(Load::RateLimited {
            qps: positive("-Q", qps)?,
        });
    }
    Ok(Load::Closed)
}

fn clients_of(args: &Args) -> Result<usize, ConfigError> {
    let per_thread = match args.mode {
        Transport::Udp => 4,
        Transport::Tcp => 1,
    };
    let clients = args.clients.unwrap_or(args.threads * per_thread);
    if clients == 0 || clients > args.threads * CHANNELS_PER_WORKER_MAX {
        return Err(range_err(
            "-c",
            clients,
            "must be between 1 and 4096 per thread",
        ));
    }
    Ok(clients.max(args.threads))
}

fn outstanding_of(args: &Args, load: &Load, timeout_secs: f64) -> Result<usize, ConfigError> {
    let open_rate = match load {
        Load::Open { qps, .. } => Some(*qps),
        Load::Ramp(plan) => Some(plan.max_qps.min(plan.start_qps * 100.0)),
        _ => None,
    };
    let default = match open_rate {
        Some(qps) => ((qps * timeout_secs) as usize).clamp(1000, 1 << 20),
        None => 100,
    };
    let outstanding = args.outstanding.unwrap_or(default);
    if outstanding == 0 || outstanding > 1 << 24 {
        return Err(range_err(
            "-q",
            outstanding,
            "must be between 1 and 16777216",
        ));
    }
    Ok(outstanding.max(args.threads))
}

fn query_spec(args: &Args) -> Result<QuerySpec, ConfigError> {
    let source = match (&args.datafile, &args.names, args.random_names) {
        (Some(path), _, _) => NameSource::File(path.clone()),
        (_, Some(pattern), _) => NameSource::Pattern(pattern.clone()),
        (_, _, Some(count)) => NameSource::Random {
            count,
            suffix: args.random_suffix.clone(),
        },
        _ if args.pods.is_some() || args.pod_profile.is_some() || args.replay.is_some() => {
            NameSource::Model
        }
        _ => return Err(ConfigError::NoQueries),
    };
    Ok(QuerySpec {
        source,
        qtypes: queries::parse_mix(&args.qtype)?,
        options: QueryOptions {
            edns: args.edns,
            dnssec_ok: args.dnssec_ok,
            edns_udp_bytes: args.edns_size,
            recursion_desired: true,
        },
        seed: args.seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Config, ConfigError> {
        let args = Args::try_parse_from(line.split_whitespace()).expect("clap accepts");
        Config::from_args(args)
    }

    #[test]
    fn dnsperf_flags_mean_the_same() {
        let c = parse("dnsload -s ::1 -p 5300 -d q.txt -l 3 -c 8 -q 50 -t 2 -m tcp -e -D -T 2")
            .unwrap();
        assert_eq!(c.server, "[::1]:5300".parse().unwrap());
        assert_eq!((c.clients, c.outstanding, c.threads), (8, 50, 2));
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.passes, None);
        assert!(c.queries.options.edns && c.queries.options.dnssec_ok);
        assert!(matches!(c.load, Load::Closed));
    }

    #[test]
    fn defaults_and_modes() {
        let c = parse("dnsload --names a{0..3}.x").unwrap();
        assert_eq!((c.passes, c.outstanding, c.clients), (Some(1), 100, 4));
        let c = parse("dnsload --names a.x --rate 5000 -l 1").unwrap();
        assert!(matches!(c.load, Load::Open { qps, .. } if qps == 5000.0));
        let c = parse("dnsload --names a.x -Q 100").unwrap();
        assert!(matches!(c.load, Load::RateLimited { .. }));
        let c = parse("dnsload --names a.x --ramp --ramp-start 1000").unwrap();
        assert!(matches!(c.load, Load::Ramp(p) if p.step_qps == 1000.0));
        assert_eq!(c.passes, None);
    }

    #[test]
    fn bad_values_fail() {
        assert!(matches!(
            parse("dnsload -s nothost --names a"),
            Err(ConfigError::Server(_))
        ));
        assert!(matches!(parse("dnsload"), Err(ConfigError::NoQueries)));
        assert!(parse("dnsload --names a -t 0").is_err());
        assert!(parse("dnsload --names a -T 0").is_err());
        assert!(parse("dnsload --names a --qtype BOGUS").is_err());
        assert!(parse("dnsload --names a --rate 0").is_err());
        assert!(Args::try_parse_from(["dnsload", "--rate", "1", "-Q", "2"]).is_err());
    }
}
