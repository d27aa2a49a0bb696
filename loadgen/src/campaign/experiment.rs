//! An experiment file (TOML) → one validated [`Experiment`]: the matrix of
//! profiles × server settings × load shapes, repeats and durations, where the server
//! and the load run. Profiles are sysctl.d files read here once; nothing downstream
//! reads text.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use super::sysctl;

/// Longest a measured run may last: every run is bounded.
pub const DURATION_SECS_MAX: u64 = 600;
/// Most repeats of a cell.
pub const REPEATS_MAX: u32 = 100;
/// Most cells of a matrix.
pub const CELLS_MAX: usize = 256;

/// Why an experiment cannot run as written.
#[derive(Debug, Error)]
pub enum ExperimentError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}:{line}: {reason}")]
    Profile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The file as written (serde view; validated into [`Experiment`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_repeats")]
    repeats: u32,
    #[serde(default = "default_duration")]
    duration_secs: u64,
    #[serde(default = "default_warmup")]
    warmup_secs: u64,
    netns: Option<String>,
    #[serde(default = "default_server_cpus")]
    server_cpus: String,
    #[serde(default = "default_load_cpus")]
    load_cpus: String,
    server_bin: Option<PathBuf>,
    #[serde(default = "default_port")]
    port: u16,
    baseline: Option<String>,
    profiles_dir: Option<PathBuf>,
    #[serde(default = "default_profiles")]
    profiles: Vec<String>,
    #[serde(default)]
    upstream: UpstreamFile,
    server: Vec<ServerSetting>,
    load: Vec<LoadShape>,
}

fn default_repeats() -> u32 {
    3
}
fn default_duration() -> u64 {
    5
}
fn default_warmup() -> u64 {
    1
}
fn default_server_cpus() -> String {
    "0".into()
}
fn default_load_cpus() -> String {
    "1".into()
}
fn default_port() -> u16 {
    5353
}
fn default_profiles() -> Vec<String> {
    vec!["default".into()]
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFile {
    /// An upstream that is already running; otherwise the campaign starts knotd.
    address: Option<String>,
    /// Names svc0..svcN-1 in the knotd zone `example.`.
    records: Option<u32>,
}

/// Where the cache forwards misses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Already running at this address (`[upstream] address`).
    Address(String),
    /// knotd started by the campaign on `port + 1`, zone `example.` with
    /// `svc0.example.` … `svc{records-1}.example.`.
    Knotd { records: u32 },
}

/// One server setting: the server-side knobs, each an option of `nodelocaldns`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSetting {
    pub name: String,
    /// `--shards`.
    pub shards: Option<usize>,
    /// `--rcvbuf-bytes` (SO_RCVBUF, capped by net.core.rmem_max).
    pub rcvbuf_bytes: Option<usize>,
    /// `--sndbuf-bytes` (SO_SNDBUF, capped by net.core.wmem_max).
    pub sndbuf_bytes: Option<usize>,
    /// `--udp-batch` (recvmmsg/sendmmsg batch).
    pub udp_batch: Option<usize>,
    /// `--busy-poll-usecs` (SO_BUSY_POLL).
    pub busy_poll_usecs: Option<u32>,
    /// `--reuseport-cpu` (SO_INCOMING_CPU: receiving CPU → that CPU's shard).
    #[serde(default)]
    pub reuseport_cpu: bool,
    /// CPUs of the server (taskset list); default: the experiment's `server_cpus`.
    pub cpus: Option<String>,
    /// More arguments, verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl ServerSetting {
    /// The `nodelocaldns` options of this setting.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(format!("--{flag}={value}"));
            }
        };
        push("shards", self.shards.map(|v| v.to_string()));
        push("rcvbuf-bytes", self.rcvbuf_bytes.map(|v| v.to_string()));
        push("sndbuf-bytes", self.sndbuf_bytes.map(|v| v.to_string()));
        push("udp-batch", self.udp_batch.map(|v| v.to_string()));
        push(
            "busy-poll-usecs",
            self.busy_poll_usecs.map(|v| v.to_string()),
        );
        if self.reuseport_cpu {
            args.push("--reuseport-cpu".into());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// One load shape: dnsload arguments (server, port, duration and outputs are the
/// campaign's).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoadShape {
    pub name: String,
    pub args: Vec<String>,
}

/// A named sysctl.d profile: the settings it applies, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// None for the built-in `default` profile (changes nothing).
    pub path: Option<PathBuf>,
    pub settings: Vec<sysctl::Setting>,
}

/// One cell of the matrix (indices into the experiment's lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub profile: usize,
    pub server: usize,
    pub load: usize,
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub repeats: u32,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub netns: Option<String>,
    pub server_cpus: String,
    pub load_cpus: String,
    /// None: found next to the running `dnsload`, else in target/{release,debug}.
    pub server_bin: Option<PathBuf>,
    pub port: u16,
    pub upstream: Upstream,
    pub profiles: Vec<Profile>,
    pub servers: Vec<ServerSetting>,
    pub loads: Vec<LoadShape>,
    /// Index into [`Experiment::cells`] of the cell deltas are taken against.
    pub baseline: usize,
}

impl Experiment {
    /// Reads and validates `path`; profiles are looked up in `profiles_dir`
    /// (relative to the file), default `../../profiles` (tuning/profiles/).
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        let text = fs::read_to_string(path).map_err(|source| ExperimentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Experiment::parse(path, &text)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, ExperimentError> {
        let file: File = toml::from_str(text).map_err(|source| ExperimentError::Toml {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let invalid = |reason: String| ExperimentError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let profiles_dir = dir.join(
            file.profiles_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("../../profiles")),
        );
        check_file(&file).map_err(invalid)?;
        let profiles = file
            .profiles
            .iter()
            .map(|name| load_profile(&profiles_dir, name))
            .collect::<Result<Vec<_>, _>>()?;
        let upstream = match (&file.upstream.address, file.upstream.records) {
            (Some(address), None) => Upstream::Address(address.clone()),
            (None, records) => Upstream::Knotd {
                records: records.unwrap_or(1000).clamp(1, 100_000),
            },
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "[upstream]: address and records exclude each other".into(),
                ))
            }
        };
        let mut experiment = Experiment {
            path: path.to_path_buf(),
            name: file.name,
            description: file.description,
            repeats: file.repeats,
            duration_secs: file.duration_secs,
            warmup_secs: file.warmup_secs,
            netns: file.netns,
            server_cpus: file.server_cpus,
            load_cpus: file.load_cpus,
            server_bin: file.server_bin.map(|p| dir.join(p)),
            port: file.port,
            upstream,
            profiles,
            servers: file.server,
            loads: file.load,
            baseline: 0,
        };
        if let Some(label) = &file.baseline {
            experiment.baseline = (0..experiment.cells().len())
                .find(|&i| &experiment.label(experiment.cells()[i]) == label)
                .ok_or_else(|| invalid(format!("baseline {label:?} is not a cell")))?;
        }
        Ok(experiment)
    }

    /// Every cell, profile-major.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for profile in 0..self.profiles.len() {
            for server in 0..self.servers.len() {
                for load in 0..self.loads.len() {
                    cells.push(Cell {
                        profile,
                        server,
                        load,
                    });
                }
            }
        }
        cells
    }

    /// `profile / server / load`, the cell's name in every output.
    pub fn label(&self, cell: Cell) -> String {
        format!(
            "{} / {} / {}",
            self.profiles[cell.profile].name,
            self.servers[cell.server].name,
            self.loads[cell.load].name
        )
    }

    /// The CPUs the server of `setting` runs on.
    pub fn server_cpus_of(&self, setting: &ServerSetting) -> String {
        setting
            .cpus
            .clone()
            .unwrap_or_else(|| self.server_cpus.clone())
    }
}

fn check_file(file: &File) -> Result<(), String> {
    if file.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    if !(1..=REPEATS_MAX).contains(&file.repeats) {
        return Err(format!("repeats must be 1..={REPEATS_MAX}"));
    }
    if !(1..=DURATION_SECS_MAX).contains(&file.duration_secs) {
        return Err(format!("duration_secs must be 1..={DURATION_SECS_MAX}"));
    }
    if file.warmup_secs > DURATION_SECS_MAX {
        return Err(format!("warmup_secs must be at most {DURATION_SECS_MAX}"));
    }
    if file.port == 0 || file.port == u16::MAX {
        return Err("port must be 1..=65534 (the upstream takes port + 1)".into());
    }
    if let Some(ns) = &file.netns {
        let ok = !ns.is_empty()
            && ns.len() <= 64
            && ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!("netns {ns:?}: letters, digits, '-' and '_' only"));
        }
    }
    for cpus in std::iter::once(&file.server_cpus)
        .chain(std::iter::once(&file.load_cpus))
        .chain(file.server.iter().filter_map(|s| s.cpus.as_ref()))
    {
        if cpus.is_empty()
            || !cpus
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        {
            return Err(format!("{cpus:?} is not a CPU list (e.g. 0 or 0-1 or 0,2)"));
        }
    }
    unique("profiles", file.profiles.iter())?;
    unique("server", file.server.iter().map(|s| &s.name))?;
    unique("load", file.load.iter().map(|l| &l.name))?;
    let cells = file.profiles.len() * file.server.len() * file.load.len();
    if cells == 0 || cells > CELLS_MAX {
        return Err(format!(
            "the matrix has {cells} cells; it needs 1..={CELLS_MAX} (profiles × [[server]] × [[load]])"
        ));
    }
    for load in &file.load {
        check_load(load)?;
    }
    Ok(())
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for name in names {
        if name.trim().is_empty() || name.contains('/') {
            return Err(format!("{what}: name {name:?} is empty or has a '/'"));
        }
        if !seen.insert(name) {
            return Err(format!("{what}: {name:?} appears twice"));
        }
    }
    Ok(())
}

/// Flags the campaign sets itself.
const OWN_FLAGS: [&str; 8] = [
    "-s", "-p", "-l", "--json", "--csv", "--plot", "--server", "--port",
];

fn check_load(load: &LoadShape) -> Result<(), String> {
    if let Some(flag) = load
        .args
        .iter()
        .find(|a| OWN_FLAGS.contains(&a.split('=').next().unwrap_or("")))
    {
        return Err(format!(
            "load {:?}: {flag} is set by the campaign",
            load.name
        ));
    }
    let argv = std::iter::once("dnsload".to_string()).chain(load.args.iter().cloned());
    crate::config::Args::try_parse_from(argv)
        .map(|_| ())
        .map_err(|err| format!("load {:?}: {}", load.name, first_line(&err.to_string())))
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}

/// `default` is built in (no settings); anything else is `<dir>/<name>.conf`.
fn load_profile(dir: &Path, name: &str) -> Result<Profile, ExperimentError> {
    if name == "default" {
        return Ok(Profile {
            name: name.into(),
            path: None,
            settings: Vec::new(),
        });
    }
    let path = dir.join(format!("{name}.conf"));
    let text = fs::read_to_string(&path).map_err(|source| ExperimentError::Read {
        path: path.clone(),
        source,
    })?;
    let settings =
        sysctl::parse_sysctl_d(&text).map_err(|(line, reason)| ExperimentError::Profile {
            path: path.clone(),
            line,
            reason,
        })?;
    Ok(Profile {
        name: name.into(),
        path: Some(path),
        settings,
    })
}
