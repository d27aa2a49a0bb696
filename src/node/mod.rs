//! Node integration, as k8s-dns-node-cache does it: the Corefile generated from the
//! template and the kube-dns ConfigMap and kept in sync, the interface holding the
//! local IPs (rtnetlink), the iptables rules or the nftables table (`--rules`,
//! `detect`), the periodic re-check, the setup-error
//! metric, signals (TERM/INT/QUIT stop, USR1 reloads) and the bounded teardown.
//! See README.md in this directory for the flags and the behaviour.
//!
//! [`run`] follows node-cache's start-up order: rule list, setup metrics, Corefile,
//! config sync, interface, server, rules once the server answers, periodic sync.

pub mod detect;
pub mod interface;
pub mod metrics;
pub mod nfnetlink;
pub mod nftables;
pub mod rules;
pub mod sync;
pub mod watch;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1};

use crate::cli::{Cli, DEFAULT_COREFILE};
use crate::config::{self, service_host_var, Config, ConfigError};
use crate::server::{self, ServerError};

use interface::Interface;
use metrics::{SetupError, SetupErrors};
use sync::{NodeSetup, Rules};
use watch::{Sources, WatchError, Watcher};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("-basecorefile needs -localip (the addresses that fill __PILLAR__LOCAL__DNS__)")]
    TemplateWithoutLocalIp,
    #[error(transparent)]
    Config(Box<ConfigError>),
    #[error(transparent)]
    Watch(Box<WatchError>),
    #[error("starting the server: {0}")]
    Server(#[from] ServerError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

// Exit stays within lameduck + 5 s even if iptables hangs: rule removal ≤ the
// teardown timeout (2 s), control poll 0.1 s + drain ≤ 1.5 s, interface removal
// (netlink) after that. With a successor there is no teardown and the drain may
// take ≤ 3.5 s.

/// What the main thread waits for.
enum Event {
    Stop(i32),
    Apply(Config),
}

/// Runs until SIGTERM, SIGINT or SIGQUIT. Three modes, by the flags:
/// - none of `-conf/-corefile/-basecorefile/-localip`: the embedded default Corefile;
/// - `-conf` without `-localip`: that Corefile, reloaded when it changes;
/// - `-localip`: node-cache (template, ConfigMap, interface, rules, teardown).
pub fn run(cli: &Cli, options: &server::Options) -> Result<(), NodeError> {
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (poke, poked) = crossbeam_channel::bounded(1);
    spawn_signal_thread(events_tx.clone(), poke)?;
    let errors = Arc::new(SetupErrors::default());
    let options = &with_setup_errors(options, &errors);

    if cli.embedded_default() {
        tracing::info!("no -conf or -localip: serving the embedded default Corefile");
        let config = config::parse_corefile(DEFAULT_COREFILE, Path::new("<embedded default>"))
            .map_err(|e| NodeError::Config(Box::new(e)))?;
        let running = start_server(config, options)?;
        return serve_until_stop(running, &events, &errors, None);
    }
    let local_ips: Vec<IpAddr> = cli
        .localip
        .as_ref()
        .map(|l| l.0.clone())
        .unwrap_or_default();
    if local_ips.is_empty() && cli.basecorefile.is_some() {
        return Err(NodeError::TemplateWithoutLocalIp);
    }
    let node_mode = !local_ips.is_empty();

    // 1. The rule list, and the tool that installs it.
    let rules = if node_mode && cli.setupiptables {
        rule_list(cli, &local_ips)
    } else {
        Rules::None
    };
    // 2. Setup metrics, served until this function returns; the whole registry
    // once the server runs (node-cache has one).
    let registry = metrics::Registry::default();
    let _setup_metrics = node_mode
        .then(|| match metrics::serve(cli.metrics_listen_address, errors.clone(), registry.clone()) {
            Ok(listener) => {
                tracing::info!(addr = %listener.addr, "setup metrics on /metrics");
                Some(listener)
            }
            Err(err) => {
                tracing::error!(%err, addr = %cli.metrics_listen_address, "cannot serve setup metrics");
                None
            }
        })
        .flatten();
    // 3. The Corefile, from the template.
    let mut watcher = Watcher::new(sources(cli, &local_ips), errors.clone());
    let config = watcher
        .initial()
        .map_err(|e| NodeError::Watch(Box::new(e)))?;
    // 4. Config sync.
    spawn_watch_thread(watcher, cli, &config, events_tx, poked)?;
    // 5. The interface, without rules yet.
    let interface = (node_mode && cli.setupinterface).then(|| Interface {
        name: cli.interfacename.clone(),
        kind: cli.interface_kind.clone(),
        addrs: local_ips.clone(),
    });
    let setup = NodeSetup::new(
        interface,
        rules,
        sync::probe_target(&local_ips, cli.dns_port),
        cli.syncinterval,
        errors.clone(),
    );
    setup.ensure_interface(true);
    // 6. Serve.
    let running = start_server(config, options)?;
    let _ = registry.set(running.telemetry().exposition());
    let pidfile = PidFile::write(cli.pidfile.as_deref())?;
    // 7-8. Rules once the server answers, then the periodic sync.
    let wake = if node_mode {
        Some(setup.spawn().map_err(io_err("starting the sync thread"))?)
    } else {
        None
    };
    let teardown = (node_mode && !cli.skipteardown).then_some((setup, wake, cli.teardown_timeout));
    let result = serve_until_stop(running, &events, &errors, teardown);
    drop(pidfile);
    result
}

/// `options` with the setup errors appended to every `/metrics` answer: node-cache
/// has one registry, so `coredns_nodecache_setup_errors_total` is on the prometheus
/// address as well as on `-metrics-listen-address`.
fn with_setup_errors(options: &server::Options, errors: &Arc<SetupErrors>) -> server::Options {
    let mut options = options.clone();
    let errors = errors.clone();
    let render = move || errors.render();
    options.http.appended = Some(crate::telemetry::Exposition(Arc::new(render)));
    options
}

/// node-cache's rules for the local IPs, as iptables rules or our nftables table
/// (`--rules`, decided and logged here).
fn rule_list(cli: &Cli, local_ips: &[IpAddr]) -> Rules {
    let choice = detect::choose(cli.rules);
    tracing::info!(rules = choice.backend.label(), reason = %choice.reason, "rules mode");
    let iptables = rules::rules_for(local_ips, cli.dns_port, cli.health_port);
    match choice.backend {
        detect::Backend::Iptables => Rules::Iptables(iptables),
        detect::Backend::Nftables => Rules::Nftables {
            table: nftables::Ruleset::new(rules::captures(
                local_ips,
                cli.dns_port,
                cli.health_port,
            )),
            stale: iptables,
        },
    }
}

fn start_server(config: Config, options: &server::Options) -> Result<server::Running, NodeError> {
    for notice in config.notices() {
        tracing::info!("{notice}");
    }
    let running = server::start(config, options)?;
    for addr in &running.endpoints {
        tracing::info!(%addr, "listening (udp+tcp)");
    }
    Ok(running)
}

/// Applies new configurations until a stop signal; then the teardown (if any), then
/// the server stops.
fn serve_until_stop(
    mut running: server::Running,
    events: &Receiver<Event>,
    errors: &SetupErrors,
    teardown: Option<(Arc<NodeSetup>, Option<Sender<()>>, Duration)>,
) -> Result<(), NodeError> {
    loop {
        match events.recv() {
            Ok(Event::Apply(config)) => match running.reload(config) {
                Ok(()) => tracing::info!("configuration reloaded"),
                Err(err) => {
                    tracing::error!(%err, "cannot apply the new configuration; keeping the running one");
                    errors.count(SetupError::ConfigMap);
                    crate::telemetry::reload_failed();
                }
            },
            Ok(Event::Stop(signal)) => {
                tracing::info!(signal, "stopping");
                break;
            }
            Err(_) => break,
        }
    }
    // Lameduck first (still answering, /ready 503). Then the node gets its original
    // DNS path back while this process still answers, so no query meets a closed
    // socket; then the server stops.
    running.lameduck();
    // A successor already bound beside this one (a restart or an upgrade with
    // maxSurge) shares the interface and the rules: keep them for it.
    let teardown = teardown.filter(|(setup, _, _)| {
        let successor = running.successor_present();
        if successor {
            tracing::info!(probe = %setup.probe, "a successor holds the port; leaving the interface and rules to it");
        }
        !successor
    });
    if let Some((setup, wake, deadline)) = &teardown {
        setup.teardown_part(wake.as_ref(), *deadline, sync::Part::Rules);
    }
    running.shutdown();
    running.join();
    if let Some((setup, wake, deadline)) = &teardown {
        setup.teardown_part(wake.as_ref(), *deadline, sync::Part::Interface);
    }
    Ok(())
}

fn sources(cli: &Cli, local_ips: &[IpAddr]) -> Sources {
    let node_mode = !local_ips.is_empty();
    let var = service_host_var(&cli.upstreamsvc);
    Sources {
        corefile: cli.conf_path(),
        template: node_mode.then(|| cli.basecorefile_path()),
        configmap_dir: if node_mode {
            cli.kubednscm_path()
        } else {
            None
        },
        local_ips: local_ips.to_vec(),
        cluster_dns: std::env::var(&var).ok(),
        cluster_dns_var: var,
        dns_port: cli.dns_port,
        prometheus_endpoint: cli.prometheus_listen_address.clone(),
    }
}

fn spawn_signal_thread(events: Sender<Event>, poke: Sender<()>) -> Result<(), NodeError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGUSR1])
        .map_err(io_err("installing signal handlers"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    tracing::info!("SIGUSR1: reloading");
                    let _ = poke.try_send(());
                } else if events.send(Event::Stop(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(io_err("starting the signal thread"))?;
    Ok(())
}

/// Polls the sources every `--config-poll-interval` (or sooner when the Corefile's
/// `reload` directive asks for it), and at once on SIGUSR1.
fn spawn_watch_thread(
    mut watcher: Watcher,
    cli: &Cli,
    initial: &Config,
    events: Sender<Event>,
    poked: Receiver<()>,
) -> Result<(), NodeError> {
    let default_interval = cli.config_poll_interval;
    let mut interval = poll_interval(initial, default_interval);
    let with_signal = cli.reloadwithsignal;
    std::thread::Builder::new()
        .name("config-sync".into())
        .spawn(move || loop {
            let force = poked.recv_timeout(interval).is_ok();
            let (written, config) = watcher.poll(force);
            if written && with_signal {
                // node-cache -reloadwithsignal: the reload goes through SIGUSR1.
                let _ = signal_hook::low_level::raise(SIGUSR1);
            }
            if let Some(config) = config {
                interval = poll_interval(&config, default_interval);
                if events.send(Event::Apply(config)).is_err() {
                    return;
                }
            }
        })
        .map_err(io_err("starting the config sync thread"))?;
    Ok(())
}

/// The shortest `reload INTERVAL` of the Corefile less a random part of its JITTER
/// (CoreDNS checks every INTERVAL ± JITTER), never above `default` (the ConfigMap and
/// template are polled at that pace whatever the Corefile says).
fn poll_interval(config: &Config, default: Duration) -> Duration {
    let reload = config
        .servers
        .iter()
        .filter_map(|b| b.reload)
        .min_by_key(|r| r.interval);
    match reload {
        Some(r) => {
            let jitter = r.jitter.mul_f64(rand::random::<f64>()).min(r.interval / 2);
            (r.interval - jitter).clamp(Duration::from_millis(100), default)
        }
        None => default,
    }
}

/// `-pidfile`: written once serving, removed on exit.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: Option<&Path>) -> Result<PidFile, NodeError> {
        if let Some(path) = path {
            std::fs::write(path, format!("{}\n", std::process::id()))
                .map_err(io_err(format!("writing -pidfile {}", path.display())))?;
        }
        Ok(PidFile(path.map(Path::to_path_buf)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
