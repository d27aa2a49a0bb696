//! One run: build the queries, start the pinned workers, collect their per-second
//! reports, drive the ramp, stop at `-l`/`-n`/knee/Ctrl-C, and hand back a
//! [`RunResult`] for the report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;
use thiserror::Error;

use crate::clock::leave_realtime;
use crate::config::{Config, Load, RampPlan, Transport};
use crate::limits::{LOOKUPS_IN_FLIGHT_MAX, REPLAY_CLIENTS_MAX};
use crate::lookups::{run_pod_worker, PodPlan};
use crate::pods::PodModel;
use crate::queries::{self, Budget};
use crate::replay::{self, Event, ReplayError};
use crate::replayer::{run_replay_worker, ReplayPlan};
use crate::schedule::Pacing;
use crate::sender::{run_worker, Shared, WorkerError, WorkerPlan};
use crate::stamps::ArrivalStamps;
use crate::stats::{
    new_histogram, Aggregator, Counters, Interval, Percentiles, SecondStats, Spares,
};
use crate::tcp::{TcpChannels, TcpOptions};
use crate::udp::UdpChannels;

/// Why a run failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The queries could not be built.
    #[error(transparent)]
    Queries(#[from] queries::QueryError),
    /// The replay input cannot be used.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A worker thread could not be started or panicked.
    #[error("worker thread {0}: {1}")]
    Thread(usize, String),
}

/// One ramp step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    /// Offered rate, queries/s.
    pub rate_qps: f64,
    /// Answers per second during the step.
    pub answered_qps: f64,
    /// Queries sent during the step.
    pub sent: u64,
    /// Share of the step's queries without an answer during the step, percent.
    pub loss_pct: f64,
    /// p99 latency of the step, microseconds.
    pub p99_us: f64,
    /// Whether the step stayed within the limits.
    pub ok: bool,
}

/// What the ramp found.
#[derive(Debug, Clone, Serialize)]
pub struct RampResult {
    /// Every finished step.
    pub steps: Vec<RampStep>,
    /// Highest rate that stayed within the limits (`None` if the first step failed).
    pub knee_qps: Option<f64>,
    /// Answers per second at the knee.
    pub knee_answered_qps: Option<f64>,
    /// Why the ramp ended.
    pub ended_by: String,
}

/// Everything a report needs.
pub struct RunResult {
    /// The configuration that ran.
    pub config: Config,
    /// Distinct queries in the set.
    pub query_count: usize,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix_secs: f64,
    /// Time from start until the last worker stopped.
    pub duration: Duration,
    /// Time from start until the last worker stopped sending (QPS denominator).
    pub sending: Duration,
    /// Totals.
    pub counters: Counters,
    /// All latencies.
    pub latency: Histogram<u64>,
    /// How late the generator sent against its schedule (empty in closed loop).
    pub send_lag: Histogram<u64>,
    /// Lookup latencies (pod model; empty otherwise).
    pub lookup_latency: Histogram<u64>,
    /// Per-second series.
    pub series: Vec<SecondStats>,
    /// Ramp outcome, in ramp mode.
    pub ramp: Option<RampResult>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

impl RunResult {
    /// Latency summary of the whole run.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }
}

/// Runs the load described by `config`. `interrupt` is polled (Ctrl-C); `progress`
/// sees each second as it closes.
pub fn run(
    mut config: Config,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(&SecondStats),
) -> Result<RunResult, RunError> {
    let mut set = queries::build(&config.queries)?;
    let mut events = Arc::new(Vec::new());
    if let Some(spec) = &config.replay {
        let trace = replay::read(spec, config.threads * REPLAY_CLIENTS_MAX)?;
        config.clients = trace.clients.len().max(config.threads);
        set = trace.queries;
        events = Arc::new(trace.events);
    }
    let query_count = config.pods.as_ref().map_or(set.len(), |m| m.working_set());
    // Before the start time: answers are stamped on arrival from the first one on.
    let _stamps = ArrivalStamps::for_run();
    if let Some(at) = config.start_at_unix_secs {
        wait_until(at, interrupt);
    }
    let limit = config.passes.map(|p| p.saturating_mul(query_count as u64));
    let shared = Arc::new(Shared {
        queries: set,
        budget: Budget::new(limit),
        stop: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
        rate_bits: AtomicU64::new(0f64.to_bits()),
        spares: Arc::new(Spares::new(config.threads)),
        start: Instant::now(),
    });
    let started_unix_secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    shared.set_rate(initial_rate(&config.load) / config.threads as f64);
    raise_open_files_limit();
    let (tx, rx) = mpsc::channel();
    let handles = spawn_workers(&config, &shared, &events, tx)?;
    // The workers keep real-time scheduling if they have it; this thread gives it up.
    leave_realtime();
    let mut collector = Collector::new(&config, &shared);
    collector.collect(&rx, interrupt, progress);
    let duration = shared.start.elapsed();
    join_workers(handles)?;
    Ok(RunResult {
        query_count,
        started_unix_secs,
        duration,
        sending: Duration::from_nanos(collector.agg.sending_ended_ns).max(Duration::from_millis(1)),
        counters: collector.agg.total.clone(),
        latency: std::mem::replace(&mut collector.agg.total_latency, new_histogram()),
        send_lag: std::mem::replace(&mut collector.agg.total_send_lag, new_histogram()),
        lookup_latency: std::mem::replace(&mut collector.agg.total_lookup_latency, new_histogram()),
        series: collector.series,
        ramp: collector.ramp.map(Ramp::finish),
        interrupted: collector.interrupted,
        config,
    })
}

/// Raises the soft limit on open files to the hard one: thousands of sockets (one
/// per simulated client) pass the usual soft limit of 1,024. Best effort; a socket
/// that still cannot be opened is reported with its error.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Sleeps until the wall clock reads `at` (Unix seconds), or Ctrl-C.
fn wait_until(at: f64, interrupt: &AtomicBool) {
    loop {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if now >= at || interrupt.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64((at - now).min(0.05)));
    }
}

fn initial_rate(load: &Load) -> f64 {
    match load {
        Load::Closed => 0.0,
        Load::RateLimited { qps } | Load::Open { qps, .. } => *qps,
        Load::Ramp(plan) => plan.start_qps,
        Load::Replay { .. } => 0.0,
    }
}

fn pacing_of(load: &Load) -> Pacing {
    match load {
        Load::Closed => Pacing::Closed,
        Load::RateLimited { .. } => Pacing::RateLimited,
        Load::Open { spacing, .. } => Pacing::Open(*spacing),
        Load::Ramp(_) | Load::Replay { .. } => Pacing::Open(crate::schedule::Spacing::Constant),
    }
}

/// Splits `total` into `parts` shares that differ by at most one.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

fn cores_for(config: &Config) -> Vec<core_affinity::CoreId> {
    if !config.pin {
        return Vec::new();
    }
    if config.cores.is_empty() {
        return core_affinity::get_core_ids().unwrap_or_default();
    }
    config
        .cores
        .iter()
        .map(|&id| core_affinity::CoreId { id })
        .collect()
}

fn spawn_workers(
    config: &Config,
    shared: &Arc<Shared>,
    events: &Arc<Vec<Event>>,
    tx: mpsc::Sender<Interval>,
) -> Result<Vec<JoinHandle<Result<(), WorkerError>>>, RunError> {
    let cores = cores_for(config);
    let mut handles = Vec::new();
    for index in 0..config.threads {
        let plan = WorkerPlan {
            index,
            core: cores.get(index % cores.len().max(1)).copied(),
            channels: share(config.clients, config.threads, index).max(1),
            outstanding_max: share(config.outstanding, config.threads, index).max(1),
            pacing: pacing_of(&config.load),
            order: config.order,
            timeout_ns: config.timeout.as_nanos() as u64,
            batch: config.batch,
            seed: config.queries.seed.wrapping_add(index as u64 * 0x9e37_79b9),
        };
        let (shared, tx) = (Arc::clone(shared), tx.clone());
        let link = Link {
            server: config.server,
            transport: config.transport,
            // A resolver sends its A and AAAA as two datagrams (sendmmsg), not
            // as one GSO super-datagram, which a capture would see as one packet;
            // a replay sends each captured datagram as one.
            gso: config.gso && config.pods.is_none() && config.replay.is_none(),
            tcp_churn: config.tcp_churn,
        };
        let work = match (&config.pods, &config.replay) {
            (Some(model), _) => Work::Pods(pod_plan(config, &plan), Box::new(model.clone())),
            (_, Some(spec)) => Work::Replay(
                ReplayPlan {
                    index,
                    workers: config.threads,
                    timeout_ns: plan.timeout_ns,
                    batch: config.batch,
                    speed: spec.speed,
                },
                Arc::clone(events),
            ),
            _ => Work::Queries,
        };
        let handle = std::thread::Builder::new()
            .name(format!("dnsload-{index}"))
            .spawn(move || worker_main(plan, work, &shared, link, tx))
            .map_err(|e| RunError::Thread(index, e.to_string()))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// What a worker runs besides its [`WorkerPlan`].
enum Work {
    /// Queries from the query set.
    Queries,
    /// The pod model's lookups.
    Pods(PodPlan, Box<PodModel>),
    /// A capture's or log's queries.
    Replay(ReplayPlan, Arc<Vec<Event>>),
}

/// The pod plan of worker `plan.index`: its share of the pods (numbered
/// node-wide) and of the lookups in flight.
fn pod_plan(config: &Config, plan: &WorkerPlan) -> PodPlan {
    let first_pod = (0..plan.index)
        .map(|i| share(config.clients, config.threads, i))
        .sum();
    PodPlan {
        index: plan.index,
        first_pod,
        lookups_max: plan.outstanding_max.min(LOOKUPS_IN_FLIGHT_MAX),
        timeout_ns: plan.timeout_ns,
        seed: plan.seed,
        options: config.queries.options,
    }
}

/// How a worker reaches the server.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Server address.
    server: std::net::SocketAddr,
    /// UDP or TCP.
    transport: Transport,
    /// UDP GSO.
    gso: bool,
    /// TCP churn.
    tcp_churn: Option<u64>,
}

fn worker_main(
    plan: WorkerPlan,
    work: Work,
    shared: &Shared,
    link: Link,
    tx: mpsc::Sender<Interval>,
) -> Result<(), WorkerError> {
    let Link {
        server,
        transport,
        gso,
        tcp_churn,
    } = link;
    if let Some(core) = plan.core {
        core_affinity::set_for_current(core);
    }
    let (worker, count) = (plan.index, plan.channels);
    let open_err = |(channel, source)| WorkerError::Open {
        worker,
        channel,
        server,
        source,
    };
    let result = match (transport, work) {
        (_, Work::Pods(pod_plan, model)) => UdpChannels::open(server, count, gso)
            .map_err(open_err)
            .and_then(|c| run_pod_worker(pod_plan, shared, &model, c, tx.clone())),
        (_, Work::Replay(replay_plan, events)) => UdpChannels::open(server, count, gso)
            .map_err(open_err)
            .and_then(|c| run_replay_worker(replay_plan, shared, &events, c, tx.clone())),
        (Transport::Udp, Work::Queries) => UdpChannels::open(server, count, gso)
            .map_err(open_err)
            .and_then(|c| run_worker(plan, shared, c, tx.clone())),
        (Transport::Tcp, Work::Queries) => TcpChannels::open(
            server,
            count,
            TcpOptions {
                churn: tcp_churn,
                timeout_ns: plan.timeout_ns,
            },
        )
        .map_err(open_err)
        .and_then(|c| run_worker(plan, shared, c, tx.clone())),
    };
    if result.is_err() {
        // Tell the collector this worker is gone, then stop the others.
        let _ = tx.send(Interval {
            worker,
            second: shared.now_ns() / 1_000_000_000,
            counters: Counters::default(),
            latency: new_histogram(),
            send_lag: new_histogram(),
            lookup_latency: new_histogram(),
            last: true,
            sending_ended_ns: None,
        });
        shared.stop.store(true, Ordering::Relaxed);
    }
    result
}

fn join_workers(handles: Vec<JoinHandle<Result<(), WorkerError>>>) -> Result<(), RunError> {
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        let r = match h.join() {
            Ok(r) => r.map_err(RunError::from),
            Err(_) => Err(RunError::Thread(i, "panicked".into())),
        };
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The main thread's side of a run.
struct Collector<'a> {
    /// Worker reports merged into seconds.
    agg: Aggregator,
    /// Closed seconds, in order.
    series: Vec<SecondStats>,
    /// Ramp controller, in ramp mode.
    ramp: Option<Ramp>,
    /// `-l` deadline.
    deadline: Option<Instant>,
    /// Flags and rate.
    shared: &'a Shared,
    /// Worker count, to split the ramp rate.
    threads: usize,
    /// Ctrl-C was seen.
    interrupted: bool,
}

impl<'a> Collector<'a> {
    fn new(config: &Config, shared: &'a Shared) -> Self {
        let ramp = match config.load {
            Load::Ramp(plan) => Some(Ramp::new(plan)),
            _ => None,
        };
        Self {
            agg: Aggregator::recycling(config.threads, Arc::clone(&shared.spares)),
            series: Vec::new(),
            ramp,
            deadline: config.time_limit.map(|l| shared.start + l),
            shared,
            threads: config.threads,
            interrupted: false,
        }
    }

    fn collect(
        &mut self,
        rx: &Receiver<Interval>,
        interrupt: &AtomicBool,
        progress: &mut dyn FnMut(&SecondStats),
    ) {
        while !self.agg.all_finished() {
            self.check_stops(interrupt);
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(iv) => {
                    for second in self.agg.add(iv) {
                        progress(&second);
                        self.step_ramp(&second);
                        self.series.push(second);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn check_stops(&mut self, interrupt: &AtomicBool) {
        if interrupt.load(Ordering::Relaxed) && !self.interrupted {
            self.interrupted = true;
            self.shared.interrupted.store(true, Ordering::Relaxed);
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }

    fn step_ramp(&mut self, second: &SecondStats) {
        let Some(ramp) = self.ramp.as_mut() else {
            return;
        };
        if self.shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match ramp.observe(second) {
            RampAction::Hold => {}
            RampAction::SetRate(qps) => self.shared.set_rate(qps / self.threads as f64),
            RampAction::Stop => self.shared.stop.store(true, Ordering::Relaxed),
        }
    }
}

/// What the ramp wants after a second.
enum RampAction {
    /// Keep the rate.
    Hold,
    /// Move to this total rate.
    SetRate(f64),
    /// Knee found or limit reached.
    Stop,
}

/// The resperf-like controller.
struct Ramp {
    /// Limits and step sizes.
    plan: RampPlan,
    /// Rate of the current step.
    rate_qps: f64,
    /// Seconds of the current step seen so far.
    seconds: u64,
    /// Counts of the current step.
    counters: Counters,
    /// Latencies of the current step.
    latency: Histogram<u64>,
    /// Finished steps.
    steps: Vec<RampStep>,
    /// Why it ended.
    ended_by: String,
}

impl Ramp {
    fn new(plan: RampPlan) -> Self {
        Self {
            plan,
            rate_qps: plan.start_qps,
            seconds: 0,
            counters: Counters::default(),
            latency: new_histogram(),
            steps: Vec::new(),
            ended_by: "run stopped (-l, -n or Ctrl-C) before a limit was crossed".into(),
        }
    }

    fn observe(&mut self, second: &SecondStats) -> RampAction {
        // The first second may have started mid-way; steps are counted in whole seconds.
        self.counters.add(&second.counters);
        let _ = self.latency.add(&second.histogram);
        self.seconds += 1;
        if self.seconds < self.plan.step_secs {
            return RampAction::Hold;
        }
        let step = self.close_step();
        let ok = step.ok;
        self.steps.push(step);
        if !ok {
            self.ended_by = "loss or p99 crossed its limit".into();
            return RampAction::Stop;
        }
        let next = self.rate_qps + self.plan.step_qps;
        if next > self.plan.max_qps || self.steps.len() >= crate::limits::RAMP_STEPS_MAX {
            self.ended_by = "reached --ramp-max without crossing a limit".into();
            return RampAction::Stop;
        }
        self.rate_qps = next;
        RampAction::SetRate(next)
    }

    fn close_step(&mut self) -> RampStep {
        let c = std::mem::take(&mut self.counters);
        let p99_us = Percentiles::of(&self.latency).p99_us;
        self.latency.reset();
        let secs = self.seconds as f64;
        self.seconds = 0;
        let loss_pct = if c.sent == 0 {
            100.0
        } else {
            (1.0 - c.answered as f64 / c.sent as f64).max(0.0) * 100.0
        };
        let ok = c.sent > 0
            && loss_pct <= self.plan.max_loss_pct
            && p99_us <= self.plan.max_p99_ms * 1000.0;
        RampStep {
            rate_qps: self.rate_qps,
            answered_qps: c.answered as f64 / secs,
            sent: c.sent,
            loss_pct,
            p99_us,
            ok,
        }
    }

    fn finish(self) -> RampResult {
        let knee = self.steps.iter().take_while(|s| s.ok).last();
        RampResult {
            knee_qps: knee.map(|s| s.rate_qps),
            knee_answered_qps: knee.map(|s| s.answered_qps),
            steps: self.steps,
            ended_by: self.ended_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        let parts: Vec<usize> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(parts, vec![4, 3, 3]);
    }
}
