//! Executor pool and placement, listeners, the per-core loops, shutdown.
//!
//! [`start`] opens every socket on the calling thread (so a bind error is reported
//! before anything runs and port 0 resolves once), then starts one shard thread per
//! shard pinned to its core, on the I/O engine chosen once for the process
//! (`engine`: io_uring, or epoll where io_uring is blocked), and returns once every
//! shard runs. Each shard owns
//! its sockets, cache and upstream connections; besides the owner mesh for misses
//! (mesh.rs, driven by miss.rs), the shards share only their control inboxes and, while stopping, the
//! flags by which they drain together (handover.rs), read by a timer, never per
//! packet.

mod coalesce;
mod dns64;
mod export;
mod handover;
mod listen;
mod liveness;
mod mesh;
mod migrate;
mod miss;
pub mod query;
pub mod shard;
mod tcp;
mod udp;
mod wake;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::{self, Engine, ShardSpec};
use crate::limits;
use crate::telemetry::{self, Publisher, Telemetry};
use shard::Shard;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {reason}")]
    Executor { shard: usize, reason: String },
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("the configuration has no server block to listen for")]
    NothingToServe,
    #[error("cannot start the HTTP endpoints: {0}")]
    Http(std::io::Error),
}

/// Process-level settings that are not in the Corefile.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shards (threads); None = every usable core.
    pub shards: Option<usize>,
    pub rcvbuf_bytes: usize,
    /// SO_SNDBUF of UDP listening sockets; None = the kernel's default (wmem_default).
    pub sndbuf_bytes: Option<usize>,
    /// Datagrams per recvmmsg/sendmmsg, 1..=[`limits::UDP_BATCH_MAX`] (a tuning knob).
    pub udp_batch: usize,
    /// Pause after a small batch on a hot UDP loop, so datagrams gather (`--udp-coalesce-usecs`,
    /// zero = off); see [`udp`].
    pub udp_coalesce: Duration,
    /// Blocking waits (one `epoll_pwait` for all of a shard's UDP sockets, io_uring only)
    /// while datagrams arrive densely (`--udp-hot-wait`); see [`udp`].
    pub udp_hot_wait: bool,
    /// Equal-length answers of a batch to one client leave as one GSO send (`--udp-gso`).
    pub udp_gso: bool,
    /// SO_BUSY_POLL of UDP listening sockets, in microseconds; None = not set.
    pub busy_poll_usecs: Option<u32>,
    /// Attach a reuseport CBPF program that picks the socket of the shard pinned to
    /// the receiving CPU, so a datagram is handled where its softirq ran.
    pub reuseport_cpu: bool,
    /// The I/O engine (`--io-engine`): io_uring, epoll, or auto (io_uring when the
    /// probe at start finds it usable, else epoll).
    pub io_engine: engine::Choice,
    /// io_uring memory per shard (counts against RLIMIT_MEMLOCK without CAP_IPC_LOCK).
    pub io_memory_bytes: usize,
    /// Misses each shard may keep waiting for an answer; past it a miss gets SERVFAIL
    /// at once and is counted (the memory plan sizes it from the cgroup's limit).
    pub misses_pending_max: usize,
    /// Bytes of every block's cache together (the memory plan's); a configuration
    /// whose caches are larger is capped when applied. None: as configured.
    pub cache_bytes_max: Option<u64>,
    /// Pin shard k to the k-th usable core.
    pub pin: bool,
    /// TCP clients: connection limit per shard and idle timeout.
    pub tcp: TcpLimits,
    /// What the HTTP endpoints serve beyond the Corefile (the node's setup errors).
    pub http: telemetry::HttpOptions,
}

/// Bounds on DNS-over-TCP clients, so idle or slow connections cannot use up the
/// process (defaults in [`limits`]).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections per shard; more are closed at once and counted (`tcp_refused`).
    pub clients_per_shard_max: usize,
    /// Idle time between queries before a connection is closed.
    pub idle: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            clients_per_shard_max: limits::TCP_CLIENTS_PER_SHARD_MAX,
            idle: Duration::from_millis(limits::TCP_CLIENT_IDLE_MILLIS),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shards: None,
            rcvbuf_bytes: limits::UDP_RCVBUF_BYTES_DEFAULT,
            sndbuf_bytes: None,
            udp_batch: limits::UDP_BATCH_MAX,
            udp_coalesce: Duration::ZERO,
            udp_hot_wait: true,
            udp_gso: true,
            busy_poll_usecs: None,
            reuseport_cpu: false,
            io_engine: engine::Choice::Auto,
            io_memory_bytes: limits::IO_MEMORY_BYTES_DEFAULT,
            misses_pending_max: limits::MISSES_PENDING_PER_SHARD_MAX,
            cache_bytes_max: None,
            pin: true,
            tcp: TcpLimits::default(),
            http: telemetry::HttpOptions::default(),
        }
    }
}

/// A message from the control plane to a shard, read by its timer task (every
/// [`limits::CONTROL_POLL_MILLIS`]), never on the packet path.
enum Control {
    /// Swap to a new configuration: serve `endpoints`, open the given new sockets,
    /// close the sockets of endpoints that are gone.
    Reload {
        generation: u64,
        config: Arc<Config>,
        endpoints: Arc<Vec<listen::Endpoint>>,
        opened: listen::ShardSockets,
    },
    Stop,
}

/// A running server: its listening addresses and the handles to reload or stop it.
pub struct Running {
    pub endpoints: Vec<SocketAddr>,
    config: Config,
    options: Options,
    shards: usize,
    /// The engine the shards run on.
    engine: Engine,
    /// Reloads applied so far.
    generation: u64,
    controls: Vec<crossbeam_channel::Sender<Control>>,
    threads: Vec<JoinHandle<()>>,
    /// `/metrics`, `/health`, `/ready`; stops when the server is dropped.
    telemetry: Telemetry,
}

impl Running {
    /// Asks every shard to stop; they close their sockets within ~100 ms.
    pub fn shutdown(&self) {
        for control in &self.controls {
            let _ = control.send(Control::Stop);
        }
    }

    /// `/ready` turns 503 at once; DNS and `/health` keep answering for the
    /// `health { lameduck }` duration (this call sleeps that long).
    pub fn lameduck(&self) {
        let lameduck = self.telemetry.lameduck;
        self.telemetry.enter_lameduck();
        if !lameduck.is_zero() {
            tracing::info!(?lameduck, "lameduck: still serving before exit");
            std::thread::sleep(lameduck);
        }
    }

    /// True when another process holds a UDP socket on one of our endpoints: a
    /// successor started beside this one (SO_REUSEPORT) during a restart or upgrade.
    pub fn successor_present(&self) -> bool {
        handover::successor_on_any(&self.endpoints)
    }

    /// The metrics and readiness of this server.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Waits for every shard to finish.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    /// The I/O engine the shards run on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The configuration being served.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies `config` to every shard at its next control tick. Sockets of
    /// endpoints in both configurations stay open (no query is lost); new endpoints
    /// are opened here first, so a bind error leaves the running configuration
    /// untouched; endpoints that are gone close.
    pub fn reload(&mut self, mut config: Config) -> Result<(), ServerError> {
        crate::memory_plan::fit_caches(&mut config, self.options.cache_bytes_max);
        let mut endpoints = listen::endpoints(&config);
        if endpoints.is_empty() {
            return Err(ServerError::NothingToServe);
        }
        let mut added: Vec<listen::Endpoint> = endpoints
            .iter()
            .filter(|e| !self.endpoints.contains(&e.addr))
            .cloned()
            .collect();
        let opened = listen::open(&mut added, self.shards, &self.options)?;
        let tcp_listeners = listen::tcp_listeners(&opened);
        endpoints
            .retain(|e| self.endpoints.contains(&e.addr) || added.iter().any(|a| a.addr == e.addr));
        let shared_config = Arc::new(config.clone());
        let shared_endpoints = Arc::new(endpoints);
        self.generation += 1;
        for (control, opened) in self.controls.iter().zip(opened) {
            let message = Control::Reload {
                generation: self.generation,
                config: shared_config.clone(),
                endpoints: shared_endpoints.clone(),
                opened,
            };
            let _ = control.send(message);
        }
        migrate::steer_all(&tcp_listeners);
        self.endpoints = shared_endpoints.iter().map(|e| e.addr).collect();
        self.telemetry.lameduck = telemetry::lameduck(&config);
        self.telemetry.configure(&config);
        self.config = config;
        Ok(())
    }
}

/// Opens the listeners of `config` and starts the shards.
pub fn start(mut config: Config, options: &Options) -> Result<Running, ServerError> {
    crate::memory_plan::fit_caches(&mut config, options.cache_bytes_max);
    query::set_misses_pending_max(options.misses_pending_max);
    // Before any executor: an io_uring that cannot run is an error here (or, with
    // `auto`, epoll), never a panic on a shard thread.
    let engine = engine::choose(options.io_engine)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let shards = options.shards.unwrap_or(cores.len()).max(1);
    let mut endpoints = listen::endpoints(&config);
    if endpoints.is_empty() {
        return Err(ServerError::NothingToServe);
    }
    let sockets = listen::open(&mut endpoints, shards, options)?;
    let tcp_listeners = listen::tcp_listeners(&sockets);
    let (telemetry, slots) = Telemetry::start(&config, shards, engine.name(), &options.http)
        .map_err(ServerError::Http)?;
    let shared_config = Arc::new(config.clone());
    let endpoints = Arc::new(endpoints);
    let mut threads = Vec::with_capacity(shards);
    let mut controls = Vec::with_capacity(shards);
    let mesh = mesh::mesh(engine, shards);
    // Hand-over: the shards stop together (handover.rs), and `start` returns only
    // once every shard runs, so "listening" means serving to a predecessor waiting
    // to leave the reuseport group.
    let quiet = handover::Quiet::new(shards);
    let (started_tx, started) = crossbeam_channel::bounded(shards);
    for (index, (sockets, slot)) in sockets.into_iter().zip(slots).enumerate() {
        let spec = ShardSpec {
            index,
            core: cores
                .get(index % cores.len().max(1))
                .filter(|_| options.pin)
                .map(|core| core.id),
            io_memory_bytes: options.io_memory_bytes,
        };
        let (control, inbox) = crossbeam_channel::bounded(limits::CONTROL_QUEUE_MAX);
        let (config, endpoints, mesh) = (shared_config.clone(), endpoints.clone(), mesh.clone());
        let member = handover::Member {
            quiet: quiet.clone(),
            index,
        };
        let started_tx = started_tx.clone();
        let settings = ListenerSettings {
            udp: udp::Settings {
                batch: options.udp_batch.clamp(1, limits::UDP_BATCH_MAX),
                coalesce: options.udp_coalesce.min(udp::COALESCE_MAX),
                hot_wait: options.udp_hot_wait,
                gso: options.udp_gso,
            },
            tcp: options.tcp,
        };
        let thread = engine::spawn_shard(engine, spec, move || async move {
            let current: Current = Rc::new(RefCell::new(Shard::new(
                &config, &endpoints, shards, 0, None,
            )));
            if let Some(mesh) = mesh {
                let handler = miss::owner_handler(current.clone());
                let peers = mesh::join(mesh, handler).await;
                *current.borrow_mut() = Shard::new(&config, &endpoints, shards, 0, peers);
            }
            let _ = started_tx.send(());
            serve(current, sockets, inbox, shards, slot, settings, member).await;
        })?;
        controls.push(control);
        threads.push(thread);
    }
    wait_started(&started, shards)?;
    // Only now that every shard accepts: a slow start must not hold the connections
    // its predecessor would serve meanwhile.
    migrate::steer_all(&tcp_listeners);
    send_loop_probes(&config, &endpoints);
    Ok(Running {
        endpoints: endpoints.iter().map(|e| e.addr).collect(),
        config,
        options: options.clone(),
        shards,
        engine,
        generation: 0,
        controls,
        threads,
        telemetry,
    })
}

/// Waits until every shard's executor runs (bounded: a shard that cannot start is
/// an error, not a hang).
fn wait_started(
    started: &crossbeam_channel::Receiver<()>,
    shards: usize,
) -> Result<(), ServerError> {
    let deadline = Instant::now() + Duration::from_millis(limits::SHARD_START_MILLIS_MAX);
    for shard in 0..shards {
        if started.recv_deadline(deadline).is_err() {
            return Err(ServerError::Executor {
                shard,
                reason: "did not start in time".into(),
            });
        }
    }
    Ok(())
}

/// One probe per zone of each block with `loop` and `forward`, sent to the block's
/// first endpoint (a wildcard endpoint is asked on loopback).
fn send_loop_probes(config: &Config, endpoints: &[listen::Endpoint]) {
    for (index, block) in config.servers.iter().enumerate() {
        if !block.loop_detect || block.forward.is_none() {
            continue;
        }
        let Some(endpoint) = endpoints.iter().find(|e| e.blocks.contains(&index)) else {
            continue;
        };
        let mut target = endpoint.addr;
        if target.ip().is_unspecified() {
            target.set_ip(match target {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        for zone in &block.zones {
            crate::plugin::loop_detect::probe(&zone.name, target);
        }
    }
}

/// The shard state the socket tasks read at each batch; a reload swaps it, and
/// misses in flight finish on the state they started with.
pub(crate) type Current = Rc<RefCell<Rc<Shard>>>;

/// What serves one endpoint on a shard.
struct Listener {
    addr: SocketAddr,
    /// The UDP socket, to take it out of the reuseport group when stopping.
    udp_fd: std::os::fd::RawFd,
    /// The UDP socket in the shard's UDP loop(s); None (logged) when the engine could
    /// not take it.
    udp: Option<udp::Serving>,
    /// The accept loop; it ends by itself once `tcp_control` is stopped.
    tcp: engine::Task<()>,
    /// The TCP listener's state, to stop it and see its connections while stopping.
    tcp_control: Rc<tcp::Control>,
}

impl Listener {
    /// Stops serving the UDP socket (the TCP side stops apart).
    async fn stop_udp(&mut self) {
        if let Some(udp) = self.udp.take() {
            udp.stop().await;
        }
    }
}

/// What every listener of a shard is started with.
#[derive(Debug, Clone, Copy)]
struct ListenerSettings {
    udp: udp::Settings,
    tcp: TcpLimits,
}

/// Starts serving one endpoint: its UDP socket in the shard's UDP loop(s), a task
/// for its TCP listener; None (logged) when the engine cannot take its TCP socket.
fn spawn_listener(
    current: &Current,
    udp: &udp::Server,
    sockets: listen::EndpointSockets,
    tcp_limits: TcpLimits,
) -> Option<Listener> {
    let addr = sockets.addr;
    let (tcp_control, tcp_listener) = tcp::Control::new(sockets.tcp)
        .inspect_err(|err| tracing::error!(%addr, %err, "cannot serve this endpoint on this shard"))
        .ok()?;
    Some(Listener {
        addr,
        udp_fd: sockets.udp.as_raw_fd(),
        udp: udp.serve(addr, sockets.udp),
        tcp: engine::spawn_local(tcp::serve(
            current.clone(),
            addr,
            tcp_control.clone(),
            tcp_listener,
            tcp_limits,
        )),
        tcp_control,
    })
}

/// Runs one shard's listeners and applies control messages until told to stop.
async fn serve(
    current: Current,
    sockets: listen::ShardSockets,
    inbox: crossbeam_channel::Receiver<Control>,
    shards: usize,
    slot: telemetry::Slot,
    settings: ListenerSettings,
    member: handover::Member,
) {
    // One UDP loop for all of the shard's sockets on io_uring (udp.rs).
    let udp = udp::Server::start(current.clone(), settings.udp);
    let mut listeners: Vec<Listener> = sockets
        .into_iter()
        .filter_map(|s| spawn_listener(&current, &udp, s, settings.tcp))
        .collect();
    let mut publisher = Publisher::new(slot);
    let mut exporter = export::Exporter::new(publisher.index());
    publisher.serving(exporter.snapshot(&current.borrow()));
    let mut last_sweep = Instant::now();
    let mut progress = liveness::Progress::default();
    loop {
        engine::sleep(Duration::from_millis(limits::CONTROL_POLL_MILLIS)).await;
        while let Ok(message) = inbox.try_recv() {
            match message {
                Control::Stop => {
                    stop(&current, listeners, &member, &exporter).await;
                    publisher.stopped();
                    return;
                }
                Control::Reload {
                    generation,
                    config,
                    endpoints,
                    opened,
                } => {
                    let peers = current.borrow().peers.clone();
                    let new = Shard::new(&config, &endpoints, shards, generation, peers);
                    let adopted = new.adopt_caches(&current.borrow());
                    tracing::debug!(generation, adopted, "caches carried over the reload");
                    exporter.retire(std::mem::replace(&mut *current.borrow_mut(), new));
                    let mut kept = Vec::with_capacity(listeners.len());
                    for mut listener in listeners {
                        if endpoints.iter().any(|e| e.addr == listener.addr) {
                            kept.push(listener);
                        } else {
                            handover::drain_removed(listener.udp_fd, listener.addr).await;
                            listener.stop_udp().await;
                            listener.tcp_control.stop();
                            let _ = listener.tcp.cancel().await;
                        }
                    }
                    kept.extend(
                        opened
                            .into_iter()
                            .filter_map(|s| spawn_listener(&current, &udp, s, settings.tcp)),
                    );
                    listeners = kept;
                }
            }
        }
        if last_sweep.elapsed() >= Duration::from_secs(1) {
            last_sweep = Instant::now();
            let shard = current.borrow().clone();
            shard.sweep(limits::CACHE_SWEEP_ENTRIES_PER_SECOND);
            shard.flush_error_summaries(last_sweep);
        }
        let queued = listeners
            .iter()
            .any(|l| handover::queued_bytes(l.udp_fd) > 0);
        let queries = current.borrow().counters.queries.get();
        publisher.stuck_for(progress.observe(queries, queued, Instant::now()));
        if let Some(wanted) = publisher.due() {
            publisher.publish(exporter.snapshot(&current.borrow()), wanted);
        }
    }
}

/// Hands the endpoints with a successor over to it, drains, then ends the listeners
/// (see handover.rs): UDP sockets leave their groups, TCP listeners stop accepting
/// with their queued connections migrating to the successor (migrate.rs), and the
/// shard exits once every query it read was answered and its TCP clients closed.
async fn stop(
    current: &Current,
    listeners: Vec<Listener>,
    member: &handover::Member,
    exporter: &export::Exporter,
) {
    let fds: Vec<_> = listeners.iter().map(|l| (l.udp_fd, l.addr)).collect();
    let left = handover::leave(&fds);
    let handed: Vec<&Listener> = listeners
        .iter()
        .filter(|l| left.contains(&l.addr))
        .collect();
    if !handed.is_empty() {
        // A steered group has our program already (or the successor's): it migrates.
        let tcp_fds: Vec<_> = handed
            .iter()
            .filter(|l| !migrate::steered(l.addr))
            .map(|l| l.tcp_control.fd())
            .collect();
        migrate::enable(&tcp_fds);
        // New connections go to the successor; connected clients stay served.
        for listener in &handed {
            listener.tcp_control.stop();
        }
    }
    let busy = || {
        let shard = current.borrow();
        let (upstream, pending) = (
            shard.misses_in_flight(),
            shard.counters.pending_misses.get(),
        );
        let retired = exporter.retired_busy();
        let tcp: usize = handed.iter().map(|l| l.tcp_control.clients()).sum();
        (upstream > 0 || pending > 0 || retired || tcp > 0).then(|| {
            format!("{upstream} upstream queries, {pending} client misses, {tcp} TCP clients of the successor's endpoints, state before a reload in use: {retired}")
        })
    };
    handover::drain(member, &fds, !left.is_empty(), busy).await;
    // Endpoints without a successor served until now: stop them too, and let every
    // TCP client finish (idle ones close after `TCP_STOP_IDLE_MILLIS`).
    for listener in &listeners {
        listener.tcp_control.stop();
    }
    let clients = || -> usize { listeners.iter().map(|l| l.tcp_control.clients()).sum() };
    let started = Instant::now();
    let bound = Duration::from_millis(limits::HANDOVER_TCP_CLOSE_MILLIS_MAX);
    while clients() > 0 && started.elapsed() < bound {
        engine::sleep(Duration::from_millis(5)).await;
    }
    if clients() > 0 {
        tracing::warn!(
            clients = clients(),
            "stopping with TCP clients still connected (bound reached)"
        );
    }
    for mut listener in listeners {
        listener.stop_udp().await;
        let _ = listener.tcp.cancel().await;
    }
}
