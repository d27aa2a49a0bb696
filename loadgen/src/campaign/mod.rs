//! `dnsload campaign EXPERIMENT.toml`: measure which kernel and socket settings change
//! QPS and tail latency. An experiment names a matrix (sysctl profiles × server
//! settings × load shapes) and repeats; for each cell the campaign applies the
//! profile, starts the server pinned with `taskset`, warms it, runs dnsload, reads the
//! server's CPU time, and puts every changed value back, also on failure, Ctrl-C or
//! panic ([`sysctl::Restore`] is a drop guard). Without `--apply` it only prints the
//! plan and the current values.
//!
//! - [`experiment`]: the TOML file and sysctl.d profiles → one validated experiment.
//! - [`sysctl`]: /proc/sys on the host or inside a namespace; the restore guard.
//! - [`process`]: children, namespaces and scratch directories as drop guards.
//! - [`cell`]: knotd, the server, warm-up and measured runs.
//! - [`report`]: CSV, JSON, Markdown and SVG.

pub mod cell;
pub mod experiment;
pub mod process;
pub mod report;
pub mod sysctl;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser;

use cell::{Bench, CellError};
use experiment::Experiment;
use report::Run;
use sysctl::{Restore, Target};

/// `dnsload campaign`: run a tuning experiment and write its report.
#[derive(Debug, Parser)]
#[command(name = "dnsload campaign", version)]
pub struct CampaignArgs {
    /// The experiment (TOML); see tuning/README.md.
    pub experiment: PathBuf,
    /// Run it: change the settings the plan lists, then restore them. Without it,
    /// print the plan and the current values and change nothing.
    #[arg(long)]
    pub apply: bool,
    /// Refuse (before changing anything) when a setting would change a host value
    /// rather than one inside the experiment's network namespace.
    #[arg(long)]
    pub netns_only: bool,
    /// Report directory [default: report/ next to the experiment].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override the experiment's repeats.
    #[arg(long, value_name = "N")]
    pub repeats: Option<u32>,
    /// Override the experiment's duration of each run, in seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Override the server binary.
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
}

/// Entry point of the subcommand; `args` follow the word `campaign`.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let argv = std::iter::once(std::ffi::OsString::from("dnsload campaign")).chain(args);
    let args = match CampaignArgs::try_parse_from(argv) {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("dnsload campaign: error: {err:#}");
            let bad_input = err.downcast_ref::<experiment::ExperimentError>().is_some();
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// Runs (or plans) the campaign; Ok(true) when every run was measured.
pub fn run(args: &CampaignArgs) -> anyhow::Result<bool> {
    let mut exp = Experiment::load(&args.experiment)?;
    if let Some(repeats) = args.repeats {
        exp.repeats = repeats.clamp(1, experiment::REPEATS_MAX);
    }
    if let Some(secs) = args.duration {
        exp.duration_secs = secs.clamp(1, experiment::DURATION_SECS_MAX);
    }
    let server_bin = args
        .server_bin
        .clone()
        .or_else(|| exp.server_bin.clone())
        .or_else(default_server_bin)
        .context("no nodelocaldns binary: build it (cargo build --release) or set server_bin")?;
    let out = args.out.clone().unwrap_or_else(|| {
        args.experiment
            .parent()
            .unwrap_or(Path::new("."))
            .join("report")
    });
    if !args.apply {
        print!("{}", plan_text(&exp, &server_bin, None)?);
        println!("dry run: nothing was changed; add --apply to run the campaign");
        return Ok(true);
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupt))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&interrupt))?;
    execute(&exp, args, &server_bin, &out, &interrupt)
}

/// The workspace's nodelocaldns: next to this dnsload, else target/{release,debug}.
fn default_server_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let beside = exe.parent()?.join("nodelocaldns");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    [
        beside,
        target.join("release/nodelocaldns"),
        target.join("debug/nodelocaldns"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The settings of each profile with their targets: probed when `probe` (the
/// namespace exists), else assumed from the table of known per-netns sysctls.
fn targets(exp: &Experiment, probe: bool) -> anyhow::Result<Vec<Vec<Target>>> {
    let ns = exp.netns.as_deref();
    exp.profiles
        .iter()
        .map(|p| {
            p.settings
                .iter()
                .map(|s| {
                    if probe {
                        Ok(sysctl::probe_target(&s.key, ns)?)
                    } else {
                        Ok(sysctl::assumed_target(&s.key, ns))
                    }
                })
                .collect()
        })
        .collect()
}

/// The plan: matrix, where everything runs, each setting with its target and
/// current value, each cell's commands.
fn plan_text(
    exp: &Experiment,
    server_bin: &Path,
    probed: Option<&[Vec<Target>]>,
) -> anyhow::Result<String> {
    let assumed;
    let targets = match probed {
        Some(t) => t,
        None => {
            assumed = targets(exp, false)?;
            &assumed
        }
    };
    let cells = exp.cells();
    let run_secs = exp.duration_secs + exp.warmup_secs;
    let mut out = String::new();
    let _ = writeln!(out, "experiment {} ({})", exp.name, exp.path.display());
    let _ = writeln!(
        out,
        "  {} cells × {} repeats × {} s (+{} s warm-up): about {} s of load",
        cells.len(),
        exp.repeats,
        exp.duration_secs,
        exp.warmup_secs,
        cells.len() as u64 * u64::from(exp.repeats) * run_secs
    );
    let _ = match &exp.netns {
        Some(ns) => writeln!(
            out,
            "  network namespace: {ns} (created if missing, deleted at the end if created)"
        ),
        None => writeln!(out, "  network namespace: none (the host's)"),
    };
    let upstream = match &exp.upstream {
        experiment::Upstream::Address(a) => format!("{a} (already running)"),
        experiment::Upstream::Knotd { records } => {
            format!(
                "knotd on 127.0.0.1:{}, zone example. with svc0..svc{} ",
                exp.port + 1,
                records - 1
            )
        }
    };
    let _ = writeln!(out, "  upstream: {upstream}");
    let _ = writeln!(out, "profiles:");
    let mut host_changes = 0;
    for (profile, targets) in exp.profiles.iter().zip(targets) {
        let from = profile
            .path
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}{from}:", profile.name);
        if profile.settings.is_empty() {
            let _ = writeln!(out, "    no changes");
        }
        for (setting, target) in profile.settings.iter().zip(targets) {
            host_changes += usize::from(*target == Target::Host);
            let current = current_value(&setting.key, target);
            let _ = writeln!(
                out,
                "    {} = {}  [{target}]  current: {current}",
                setting.key, setting.value
            );
        }
    }
    let work = PathBuf::from("WORK");
    let never = AtomicBool::new(false);
    let bench = bench_for(exp, &work, &work, server_bin, &never);
    let _ = writeln!(out, "cells:");
    for (index, cell) in cells.iter().enumerate() {
        let mark = if index == exp.baseline {
            "  (baseline)"
        } else {
            ""
        };
        let (server, load) = cell_commands(&bench, *cell);
        let _ = writeln!(out, "  {}. {}{mark}", index + 1, exp.label(*cell));
        let _ = writeln!(out, "     server: {server}\n     load:   {load}");
    }
    let _ = writeln!(out, "host settings changed by this plan: {host_changes}");
    Ok(out)
}

fn current_value(key: &str, target: &Target) -> String {
    let ns_exists = |ns: &str| Path::new("/run/netns").join(ns).exists();
    match target {
        Target::Netns(ns) if !ns_exists(ns) => match sysctl::read(key, &Target::Host) {
            Ok(v) => format!("{v} on the host; a new namespace starts from the kernel default"),
            Err(err) => format!("unreadable ({err})"),
        },
        _ => sysctl::read(key, target).unwrap_or_else(|err| format!("unreadable ({err})")),
    }
}

fn bench_for<'a>(
    exp: &'a Experiment,
    work: &Path,
    raw: &Path,
    server_bin: &Path,
    interrupt: &'a AtomicBool,
) -> Bench<'a> {
    Bench {
        experiment: exp,
        netns: exp.netns.clone(),
        work: work.to_path_buf(),
        raw: raw.to_path_buf(),
        dnsload: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("dnsload")),
        server_bin: server_bin.to_path_buf(),
        interrupt,
    }
}

fn cell_commands(bench: &Bench, cell: experiment::Cell) -> (String, String) {
    let exp = bench.experiment;
    let server = process::shown(&bench.server_command(&exp.servers[cell.server]));
    let json = PathBuf::from("RUN.json");
    let load = bench.load_command(
        &exp.loads[cell.load].args,
        exp.port,
        Some(exp.duration_secs),
        &json,
    );
    (server, process::shown(&load))
}

/// Runs the campaign: namespace, upstream, then every repeat of every cell, each
/// profile applied and restored around its cells; writes the report (also the
/// partial one after a Ctrl-C).
fn execute(
    exp: &Experiment,
    args: &CampaignArgs,
    server_bin: &Path,
    out: &Path,
    interrupt: &AtomicBool,
) -> anyhow::Result<bool> {
    let raw = out.join("raw");
    std::fs::create_dir_all(&raw).with_context(|| raw.display().to_string())?;
    let work = process::WorkDir::new()?;
    let _netns = match &exp.netns {
        Some(ns) => Some(process::Netns::ensure(ns).context("creating the network namespace")?),
        None => None,
    };
    let targets = targets(exp, true)?;
    eprint!("{}", plan_text(exp, server_bin, Some(&targets))?);
    if args.netns_only {
        for (profile, targets) in exp.profiles.iter().zip(&targets) {
            if let Some((s, _)) = profile
                .settings
                .iter()
                .zip(targets)
                .find(|(_, t)| **t == Target::Host)
            {
                bail!(
                    "--netns-only: {} (profile {}) is a host setting here; nothing was changed",
                    s.key,
                    profile.name
                );
            }
        }
    }
    let environment = environment(exp, server_bin);
    let bench = bench_for(exp, &work.0, &raw, server_bin, interrupt);
    let mut runs: Vec<Run> = Vec::new();
    let mut restore_log = Vec::new();
    let outcome = run_matrix(&bench, &targets, &mut runs, &mut restore_log);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let commands: Vec<(String, String, String)> = exp
        .cells()
        .into_iter()
        .map(|cell| {
            let (server, load) = cell_commands(&bench, cell);
            (exp.label(cell), server, load)
        })
        .collect();
    let ctx = report::Context {
        command: &command,
        environment: &environment,
        commands: &commands,
        restore_log: &restore_log,
    };
    report::write_all(out, exp, &runs, &ctx).with_context(|| out.display().to_string())?;
    eprintln!("campaign: wrote {}", out.join("report.md").display());
    outcome?;
    Ok(runs.iter().all(|r| r.ok))
}

fn run_matrix(
    bench: &Bench,
    targets: &[Vec<Target>],
    runs: &mut Vec<Run>,
    restore_log: &mut Vec<String>,
) -> anyhow::Result<()> {
    let exp = bench.experiment;
    let interrupted = || bench.interrupt.load(Ordering::Relaxed);
    let _upstream = match bench.start_upstream() {
        Ok(upstream) => upstream,
        Err(CellError::Interrupted) => bail!("interrupted"),
        Err(CellError::Failed(why)) => bail!("upstream: {why}"),
    };
    let cells = exp.cells();
    for repeat in 1..=exp.repeats {
        for (p, profile) in exp.profiles.iter().enumerate() {
            let mut restore = Restore::default();
            let applied = apply_profile(&mut restore, profile, &targets[p]);
            for (s, setting) in exp.servers.iter().enumerate() {
                let cells_here: Vec<_> = cells
                    .iter()
                    .copied()
                    .filter(|c| c.profile == p && c.server == s)
                    .collect();
                if interrupted() {
                    break;
                }
                if let Err(why) = &applied {
                    runs.extend(cells_here.iter().map(|c| Run::failed(exp, *c, repeat, why)));
                    continue;
                }
                let server = match bench.start_server(setting) {
                    Ok(server) => server,
                    Err(CellError::Interrupted) => break,
                    Err(CellError::Failed(why)) => {
                        eprintln!("campaign: {} / {}: {why}", profile.name, setting.name);
                        runs.extend(
                            cells_here
                                .iter()
                                .map(|c| Run::failed(exp, *c, repeat, &why)),
                        );
                        continue;
                    }
                };
                for cell in cells_here {
                    match bench.measure(cell, repeat, &server) {
                        Ok(run) => {
                            eprintln!(
                                "campaign: {} r{repeat}: {:.0} qps, p99 {:.0} µs, loss {:.2} %, {:.2} µs CPU/query",
                                run.cell, run.qps, run.p99_us, run.loss_pct, run.cpu_us_per_query
                            );
                            runs.push(run);
                        }
                        Err(CellError::Interrupted) => break,
                        Err(CellError::Failed(why)) => {
                            runs.push(Run::failed(exp, cell, repeat, &why))
                        }
                    }
                }
            }
            let failed = restore.restore();
            restore_log.append(&mut restore.log);
            if failed > 0 {
                bail!("{failed} settings could not be restored; see the log above");
            }
            if interrupted() {
                bail!("interrupted (Ctrl-C); every setting was restored");
            }
        }
    }
    Ok(())
}

/// Applies a profile's settings; a failing one whose line starts with `-` is
/// skipped, any other failure stops (what was applied is restored by the guard).
fn apply_profile(
    restore: &mut Restore,
    profile: &experiment::Profile,
    targets: &[Target],
) -> Result<(), String> {
    for (setting, target) in profile.settings.iter().zip(targets) {
        match restore.apply(&setting.key, target, &setting.value) {
            Ok(()) => eprintln!("campaign: {} = {} ({target})", setting.key, setting.value),
            Err(err) if setting.ignore_failure => eprintln!("campaign: skipped: {err}"),
            Err(err) => return Err(format!("profile {}: {err}", profile.name)),
        }
    }
    Ok(())
}

/// Sysctls shown in every report's environment (host values at the start).
const REPORTED_SYSCTLS: [&str; 12] = [
    "net.core.rmem_max",
    "net.core.rmem_default",
    "net.core.wmem_max",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.busy_read",
    "net.core.busy_poll",
    "net.core.optmem_max",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.ipv4.udp_mem",
];

fn environment(exp: &Experiment, server_bin: &Path) -> Vec<(String, String)> {
    let sh = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let dir = exp
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    let mut env = vec![
        (
            "date (UTC)".to_string(),
            sh("date", &["-u", "+%Y-%m-%d %H:%M"]),
        ),
        ("kernel".into(), sh("uname", &["-r"])),
        ("CPUs".into(), format!("{} × {cpu}", sh("nproc", &[]))),
        (
            "commit".into(),
            sh("git", &["-C", &dir, "rev-parse", "--short", "HEAD"]),
        ),
        ("dnsload".into(), env!("CARGO_PKG_VERSION").into()),
        (
            "server".into(),
            sh(&server_bin.display().to_string(), &["--version"]),
        ),
        (
            "load average at start".into(),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .into(),
        ),
    ];
    for key in REPORTED_SYSCTLS {
        let value = sysctl::read(key, &Target::Host).unwrap_or_else(|_| "unreadable".into());
        env.push((format!("{key} (host)"), value));
    }
    env
}
