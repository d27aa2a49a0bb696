//! `nodelocaldns`: command line → node-cache behaviour (Corefile, interface, rules)
//! and the server, until a stop signal. The work is in [`nodelocaldns::node::run`].
//! `nodelocaldns doctor ...` runs [`nodelocaldns::doctor`] instead.

use std::process::ExitCode;

use anyhow::Context;
use nodelocaldns::cli::Cli;
use nodelocaldns::memory_plan::{LimitSource, Overrides, Plan};
use nodelocaldns::{node, server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("doctor") {
        return ExitCode::from(nodelocaldns::doctor::main(&args[2..]));
    }
    let cli = match Cli::parse_from_args(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let filter = match &cli.log_level {
        Some(level) => tracing_subscriber::EnvFilter::new(level),
        None => {
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nodelocaldns: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// `--shards`, or one per usable core within the cgroup's CPU quota (a container
/// with `--cpus 0.5` gets one shard, not one per core of the node); logged with the
/// limits it was made from.
fn shards(cli: &Cli, limits: &nodelocaldns::cgroup::Limits) -> usize {
    let cores = core_affinity::get_core_ids().map_or(1, |ids| ids.len());
    let shards = cli.shards.unwrap_or_else(|| limits.shards(cores));
    tracing::info!(
        shards,
        usable_cores = cores,
        cpu_quota_cores = ?limits.cpu_cores,
        memory_limit_bytes = ?limits.memory_bytes,
        from = if cli.shards.is_some() { "--shards" } else { "cores and cgroup quota" },
        "shards"
    );
    shards
}

/// The memory plan: every budget within `--memory-limit` (default: the cgroup's
/// limit), each flag winning over the plan; logged in one line.
fn memory_plan(cli: &Cli, limits: &nodelocaldns::cgroup::Limits, shards: usize) -> Plan {
    let (limit, source) = match (cli.memory_limit, limits.memory_bytes) {
        (Some(limit), _) => (Some(limit), LimitSource::Flag),
        (None, Some(limit)) => (Some(limit), LimitSource::Cgroup),
        (None, None) => (None, LimitSource::None),
    };
    let overrides = Overrides {
        cache_bytes: cli.cache_bytes_max,
        misses_pending_per_shard: cli
            .misses_pending_max
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        tcp_clients_per_shard: cli.tcp_clients_max,
        io_memory_bytes: cli.io_memory_bytes,
        rcvbuf_bytes: cli.rcvbuf_bytes,
    };
    let plan = Plan::new(limit, source, shards, &overrides);
    plan.log();
    plan
}

/// The error and its causes, each cause once (our errors often quote their source).
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let limits = nodelocaldns::cgroup::Limits::of_self();
    let shards = shards(&cli, &limits);
    let plan = memory_plan(&cli, &limits, shards);
    let mut options = server::Options {
        shards: Some(shards),
        io_engine: cli.io_engine,
        misses_pending_max: plan.misses_pending_per_shard,
        io_memory_bytes: plan.io_memory_bytes,
        rcvbuf_bytes: plan.rcvbuf_bytes,
        cache_bytes_max: plan.cache_bytes,
        sndbuf_bytes: cli.sndbuf_bytes,
        busy_poll_usecs: cli.busy_poll_usecs,
        udp_coalesce: std::time::Duration::from_micros(cli.udp_coalesce_usecs.into()),
        udp_hot_wait: cli.udp_hot_wait,
        udp_gso: cli.udp_gso,
        reuseport_cpu: cli.reuseport_cpu,
        tcp: server::TcpLimits {
            clients_per_shard_max: plan.tcp_clients_per_shard,
            idle: cli.tcp_idle_timeout,
        },
        ..Default::default()
    };
    if let Some(batch) = cli.udp_batch {
        options.udp_batch = batch;
    }
    options.http.tls = cli.metrics_tls()?;
    node::run(&cli, &options).context("nodelocaldns")
}
