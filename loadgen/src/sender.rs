//! The per-worker query loop, the same for UDP and TCP: pick queries, stamp IDs,
//! send in batches, match answers, expire timeouts, report once a second.
//!
//! A worker owns everything it touches (channels, in-flight table, histogram,
//! picker, pacer); the only shared state is [`Shared`]: the stop flag, the
//! ramp-controlled rate and the `-n` budget. The transport behind the
//! [`Channels`] trait only moves bytes.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::clock::{thread_cpu_ns, tighten_timer_slack, Clock};

use hdrhistogram::Histogram;
use std::sync::mpsc::Sender;
use thiserror::Error;

use crate::inflight::InFlight;
use crate::limits::{
    IDLE_SLEEP_NS_MAX, IDS_PER_CHANNEL_MIN, INTERRUPT_DRAIN_NS_MAX, QUERY_BYTES_MAX,
    RECEIVE_INTERVAL_NS, RECEIVE_MARGIN_NS, SPIN_NS_MIN,
};
use crate::queries::{Budget, Order, Picker, QuerySet};
use crate::schedule::{Pacer, Pacing};
use crate::spin::Spinner;
use crate::stats::{Counters, Interval, Spares, Tally};
use crate::wire;

/// Why a worker stopped early.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// A socket or connection could not be set up.
    #[error("worker {worker}: cannot open channel {channel} to {server}: {source}")]
    Open {
        worker: usize,
        channel: usize,
        server: std::net::SocketAddr,
        source: io::Error,
    },
    /// Receiving failed in a way that is not "try again".
    #[error("worker {worker}: receive failed: {source}")]
    Receive { worker: usize, source: io::Error },
    /// Waiting for readiness failed.
    #[error("worker {worker}: poll failed: {source}")]
    Poll { worker: usize, source: io::Error },
}

/// State shared by all workers and the main thread.
pub struct Shared {
    /// Every query, encoded once.
    pub queries: QuerySet,
    /// `-n` budget across workers.
    pub budget: Budget,
    /// Set by the main thread at `-l`, at a ramp's end, or on Ctrl-C.
    pub stop: AtomicBool,
    /// Set on Ctrl-C: drain for a short while only.
    pub interrupted: AtomicBool,
    /// Per-worker target rate as `f64` bits (open loop and `-Q`); the ramp changes it.
    pub rate_bits: AtomicU64,
    /// Time zero of the run; all timestamps are nanoseconds since then.
    pub start: Instant,
    /// Emptied histograms for the workers' next seconds.
    pub spares: Arc<Spares>,
}

impl Shared {
    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Sets the per-worker rate.
    pub fn set_rate(&self, qps_per_worker: f64) {
        self.rate_bits
            .store(qps_per_worker.to_bits(), Ordering::Relaxed);
    }

    /// The per-worker rate.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }
}

/// When a worker stopped sending and until when it then waits for answers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drain {
    /// Set once sending has stopped: the time by which outstanding answers must arrive.
    until_ns: Option<u64>,
    /// When sending stopped, for the QPS denominator.
    pub sending_ended_ns: Option<u64>,
}

impl Drain {
    /// Stops sending at `now` when the run stops or `done` (the worker has
    /// nothing left to send): answers are then awaited up to `timeout_ns`, or at
    /// most 1 s after Ctrl-C.
    pub fn start_if(&mut self, done: bool, shared: &Shared, timeout_ns: u64, now: u64) {
        if self.until_ns.is_some() || !(done || shared.stop.load(Ordering::Relaxed)) {
            return;
        }
        let mut wait = timeout_ns;
        if shared.interrupted.load(Ordering::Relaxed) {
            wait = wait.min(INTERRUPT_DRAIN_NS_MAX);
        }
        self.until_ns = Some(now + wait);
        self.sending_ended_ns = Some(now);
    }

    /// True once sending has stopped.
    pub fn started(&self) -> bool {
        self.until_ns.is_some()
    }

    /// True when the wait for answers is over: nothing `outstanding`, or time is up.
    pub fn done(&self, outstanding: usize, now: u64) -> bool {
        self.until_ns
            .is_some_and(|until| outstanding == 0 || now >= until)
    }
}

/// Waits `sleep_ns` less `spin_ns` for readiness (so a due send is made on time
/// by spinning the rest), or only yields when less than that is left.
pub fn pause<C: Channels>(
    channels: &mut C,
    worker: usize,
    sleep_ns: u64,
    spin_ns: u64,
) -> Result<(), WorkerError> {
    if sleep_ns > spin_ns {
        channels
            .wait(sleep_ns - spin_ns)
            .map_err(|source| WorkerError::Poll { worker, source })?;
    } else if sleep_ns > 0 {
        // Spinning: let a thread of equal priority on this core (another
        // real-time worker sharing it) run, or it would never stop us.
        std::thread::yield_now();
    }
    Ok(())
}

/// What one worker is told to do.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// Index, used in reports and for seeding.
    pub index: usize,
    /// Core to pin to, if any.
    pub core: Option<core_affinity::CoreId>,
    /// Sockets or connections this worker owns.
    pub channels: usize,
    /// Outstanding queries this worker allows.
    pub outstanding_max: usize,
    /// Closed loop, rate limited or open loop.
    pub pacing: Pacing,
    /// Query order.
    pub order: Order,
    /// Per-query timeout.
    pub timeout_ns: u64,
    /// Messages per batched send.
    pub batch: usize,
    /// Seed for this worker's randomness.
    pub seed: u64,
}

/// Up to a batch of encoded queries waiting to be sent on one channel.
pub struct SendBatch {
    /// `QUERY_BYTES_MAX` bytes per message.
    bytes: Vec<u8>,
    /// Length of each message.
    lens: Vec<usize>,
    /// ID stamped into each message.
    ids: Vec<u16>,
    /// Query index of each message.
    queries: Vec<u32>,
}

impl SendBatch {
    /// An empty batch with room for `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: vec![0; capacity * QUERY_BYTES_MAX],
            lens: Vec::with_capacity(capacity),
            ids: Vec::with_capacity(capacity),
            queries: Vec::with_capacity(capacity),
        }
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Bit mask with one bit set per message.
    pub fn all_sent(&self) -> u64 {
        first_bits(self.len())
    }

    /// The `i`-th message.
    pub fn message(&self, i: usize) -> &[u8] {
        let start = i * QUERY_BYTES_MAX;
        let len = self.lens.get(i).copied().unwrap_or(0);
        self.bytes.get(start..start + len).unwrap_or_default()
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.lens.clear();
        self.ids.clear();
        self.queries.clear();
    }

    /// Appends a copy of `template` with `id` stamped in; false when full.
    pub fn push(&mut self, template: &[u8], id: u16, query: u32) -> bool {
        let start = self.lens.len() * QUERY_BYTES_MAX;
        let Some(dst) = self.bytes.get_mut(start..start + template.len()) else {
            return false;
        };
        dst.copy_from_slice(template);
        wire::set_message_id(dst, id);
        self.lens.push(template.len());
        self.ids.push(id);
        self.queries.push(query);
        true
    }
}

/// The check every answer passes, whatever sent its query: a response whose
/// question is the query's (a message without a question only with an error rcode).
pub fn answer_fits(h: &wire::Header, msg: &[u8], query: &[u8], question_len: usize) -> bool {
    if !h.is_response() {
        return false;
    }
    if h.qdcount == 0 {
        h.rcode() != 0
    } else {
        h.qdcount == 1 && wire::question_matches(msg, query, question_len)
    }
}

/// Counts a matched answer: answered, truncated, its rcode.
pub fn count_answer(counters: &mut Counters, h: &wire::Header) {
    counters.answered += 1;
    counters.truncated += u64::from(h.truncated());
    if let Some(r) = counters.rcodes.get_mut(usize::from(h.rcode())) {
        *r += 1;
    }
}

/// Matches an answer on `channel` to its outstanding query in `inflight`, checks
/// it against the query in `queries`, and counts it (its latency from the
/// query's origin to `now`) or counts it mismatched.
pub fn account_answer(
    inflight: &mut InFlight,
    queries: &QuerySet,
    (counters, latency): (&mut Counters, &mut Histogram<u64>),
    channel: usize,
    msg: &[u8],
    now: u64,
) {
    let Some(h) = wire::Header::parse(msg) else {
        counters.mismatched += 1;
        return;
    };
    let Some(slot) = inflight.get(channel, h.id) else {
        counters.mismatched += 1;
        return;
    };
    let Some((query, question_len)) = queries.get(slot.query as usize) else {
        return;
    };
    if !answer_fits(&h, msg, query, question_len) {
        counters.mismatched += 1;
        return;
    }
    inflight.complete(channel, h.id);
    count_answer(counters, &h);
    latency.saturating_record(now.saturating_sub(slot.origin_ns).max(1));
}

/// A mask of the first `n` bits (n ≤ 64).
pub fn first_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// A set of sockets or connections to the server.
pub trait Channels {
    /// Number of channels.
    fn count(&self) -> usize;
    /// Sends the batch on `channel`; returns which messages were accepted, one bit
    /// per message (a transport may reorder, so this need not be a prefix).
    /// `Err` means the kernel refused them all (counted as send errors).
    fn send(&mut self, channel: usize, batch: &SendBatch) -> io::Result<u64>;
    /// Delivers every message that can be read without blocking to `on_msg`,
    /// with the channel index and the time it arrived (nanoseconds on `clock`).
    /// A transport that stamps arrivals stops once `until_ns` (on `clock`) has
    /// passed, so reading does not hold up a due send; it returns false then
    /// (something may be left to read), true when it read everything.
    fn receive(
        &mut self,
        clock: &Clock,
        until_ns: u64,
        on_msg: &mut dyn FnMut(usize, &[u8], u64),
    ) -> io::Result<bool>;
    /// True when [`Channels::receive`] reports each message's arrival time as the
    /// kernel stamped it, so reading it later does not change its latency.
    fn stamps_arrivals(&self) -> bool;
    /// Connections opened after the first ones (TCP reconnects and churn).
    fn connections_opened(&self) -> u64 {
        0
    }
    /// Blocks up to `timeout_ns` until something is readable (or writable, for
    /// channels with unsent bytes).
    fn wait(&mut self, timeout_ns: u64) -> io::Result<()>;
}

/// Everything a worker owns besides its channels.
struct Worker<'a> {
    /// Instructions.
    plan: WorkerPlan,
    /// Shared flags and queries.
    shared: &'a Shared,
    /// Outstanding queries.
    inflight: InFlight,
    /// Next queries to send.
    picker: Picker,
    /// When to send.
    pacer: Pacer,
    /// Reused send buffer.
    batch: SendBatch,
    /// Counts, latencies and send lags (how late the worker sent each query against
    /// its schedule: the tool's own lateness) of the current second, shipped as it ends.
    tally: Tally,
    /// The run's clock, with this worker's wall-clock sync for receive stamps.
    clock: Clock,
    /// Sending stopped, answers awaited.
    drain: Drain,
    /// Channel to try first in the next send round (spreads batches).
    next_channel: usize,
    /// The transport stamps each answer's arrival (UDP), so reading may wait.
    stamped_arrivals: bool,
    /// When answers are read next, if reads are deferred (in the past while a
    /// read cut short by a due send has more to read).
    next_receive_ns: u64,
    /// How early to wake before a due send.
    spinner: Spinner,
    /// Connections opened, as counted so far.
    connections_seen: u64,
}

/// Runs one worker until the run stops; reports through `out`.
pub fn run_worker<C: Channels>(
    plan: WorkerPlan,
    shared: &Shared,
    mut channels: C,
    out: Sender<Interval>,
) -> Result<(), WorkerError> {
    tighten_timer_slack();
    let inflight = InFlight::new(
        channels.count(),
        ids_per_channel(plan.outstanding_max, channels.count(), plan.batch),
    );
    // The schedule starts once everything is allocated, so setup is not charged
    // to the first queries as lateness.
    let start_ns = shared.now_ns();
    let mut w = Worker {
        inflight,
        picker: Picker::new(shared.queries.len(), plan.order, plan.seed),
        pacer: Pacer::new(plan.pacing, start_ns, plan.seed ^ 0x5eed),
        batch: SendBatch::new(plan.batch),
        tally: Tally::new(plan.index, start_ns, out, Arc::clone(&shared.spares)),
        clock: Clock::starting_at(shared.start),
        drain: Drain::default(),
        stamped_arrivals: channels.stamps_arrivals(),
        next_receive_ns: 0,
        spinner: Spinner::new(start_ns),
        connections_seen: 0,
        next_channel: plan.index,
        plan,
        shared,
    };
    let result = w.run(&mut channels);
    w.report_last();
    result
}

/// IDs each channel needs: its share of the outstanding limit twice over (IDs are
/// reused late), plus a batch; a power of two between the floor and 65,536. Sized
/// per channel so thousands of sockets do not each get the whole ID space.
fn ids_per_channel(outstanding: usize, channels: usize, batch: usize) -> usize {
    let share = outstanding.div_ceil(channels.max(1));
    (share * 2 + batch * 2).clamp(IDS_PER_CHANNEL_MIN, crate::limits::IDS_PER_CHANNEL_MAX)
}

impl Worker<'_> {
    fn run<C: Channels>(&mut self, channels: &mut C) -> Result<(), WorkerError> {
        let worker = self.plan.index;
        loop {
            let now = self.shared.now_ns();
            self.roll_seconds(now);
            self.maybe_start_drain(now);
            if !self.drain.started() {
                self.send_round(channels, now);
                let opened = channels.connections_opened();
                self.tally.counters.connections += opened - self.connections_seen;
                self.connections_seen = opened;
            }
            if self.receive_due(now) {
                let clock = self.clock;
                let until = self.receive_until(now);
                let complete = channels
                    .receive(&clock, until, &mut |c, msg, t| self.on_answer(c, msg, t))
                    .map_err(|source| WorkerError::Receive { worker, source })?;
                if complete {
                    self.next_receive_ns = now + RECEIVE_INTERVAL_NS;
                }
            }
            let now = self.shared.now_ns();
            self.spinner.tick(now, thread_cpu_ns);
            self.tally.counters.lost += self.inflight.expire(now, self.plan.timeout_ns);
            if self.drain_done(now) {
                self.tally.counters.lost += self.inflight.expire_all();
                return Ok(());
            }
            // Wake a little before the next send is due and spin the rest, so the
            // send leaves on time whatever the wake-up costs.
            let sleep = self.sleep_ns(now);
            let spin = self.spin_ns();
            if sleep > spin && self.receives_deferred() {
                std::thread::sleep(std::time::Duration::from_nanos(sleep - spin));
            } else {
                pause(channels, worker, sleep, spin)?;
            }
            if sleep > spin {
                // How late the wake-up was teaches the spinner the next spin.
                self.spinner.woke(now + sleep - spin, self.shared.now_ns());
            }
        }
    }

    /// Whether answers are read on a timer instead of as they come: in open loop
    /// over a transport that stamps arrivals, reading late changes no latency, and
    /// reading every 1 ms instead of waking per answer saves most system calls.
    fn receives_deferred(&self) -> bool {
        self.stamped_arrivals && self.pacer.latency_from_intended() && !self.drain.started()
    }

    /// How long before a due send the worker stops sleeping and spins: as long as
    /// its wake-ups run late (learned, within the limits); the minimum in closed loop.
    fn spin_ns(&self) -> u64 {
        if !self.pacer.is_scheduled() || self.shared.rate() <= 0.0 {
            return SPIN_NS_MIN;
        }
        self.spinner.spin_ns()
    }

    /// Whether to read answers now. Deferred reads wait for a moment when no send
    /// is about to fall due, but not longer than one more interval (a worker that
    /// is always behind must still read, or the socket buffers overflow).
    fn receive_due(&self, now: u64) -> bool {
        if !self.receives_deferred() {
            return true;
        }
        now >= self.next_receive_ns
            && (now < self.send_due_soon_ns() || now >= self.next_receive_ns + RECEIVE_INTERVAL_NS)
    }

    /// Until when a read may go on: unbounded unless reads are deferred, else up
    /// to shortly before the next due send (unbounded too once a read is overdue).
    fn receive_until(&self, now: u64) -> u64 {
        if !self.receives_deferred() || now >= self.next_receive_ns + RECEIVE_INTERVAL_NS {
            return u64::MAX;
        }
        self.send_due_soon_ns()
    }

    /// Shortly before the next send falls due: reading stops there.
    fn send_due_soon_ns(&self) -> u64 {
        let room = self.inflight.outstanding() < self.plan.outstanding_max;
        match self.pacer.next_due_ns() {
            Some(due) if room => due.saturating_sub(RECEIVE_MARGIN_NS),
            _ => u64::MAX,
        }
    }

    fn maybe_start_drain(&mut self, now: u64) {
        let done = self.picker.is_done();
        self.drain
            .start_if(done, self.shared, self.plan.timeout_ns, now);
    }

    fn drain_done(&self, now: u64) -> bool {
        self.drain.done(self.inflight.outstanding(), now)
    }

    /// One pass over the channels, each getting at most one batch.
    fn send_round<C: Channels>(&mut self, channels: &mut C, now: u64) {
        let n = channels.count();
        for k in 0..n {
            let room = self
                .plan
                .outstanding_max
                .saturating_sub(self.inflight.outstanding());
            let due = self
                .pacer
                .poll(now, self.shared.rate(), room.min(self.plan.batch));
            if due == 0 {
                return;
            }
            let channel = (self.next_channel + k) % n;
            if !self.send_batch(channels, channel, due) {
                return;
            }
        }
        self.next_channel = self.next_channel.wrapping_add(1);
    }

    /// Builds and sends up to `due` queries on `channel`; false when there was
    /// nothing left to pick.
    fn send_batch<C: Channels>(&mut self, channels: &mut C, channel: usize, due: usize) -> bool {
        self.batch.clear();
        for i in 0..due {
            let Some(q) = self.picker.peek(i, &self.shared.budget) else {
                break;
            };
            let Some((template, _)) = self.shared.queries.get(q as usize) else {
                break;
            };
            let Some(id) = self.inflight.reserve(channel) else {
                break;
            };
            if !self.batch.push(template, id, q) {
                self.inflight.release(channel, id);
                break;
            }
        }
        if self.batch.is_empty() {
            return !self.picker.is_done();
        }
        let len = self.batch.len();
        // The clock read at the actual send, not at the top of the loop.
        let now = self.clock.now_ns();
        let sent = match channels.send(channel, &self.batch) {
            Ok(sent) => sent,
            Err(_) => {
                // Refused by the kernel (e.g. ICMP port unreachable): these queries
                // are spent, not retried, so `-n` still ends.
                for &id in &self.batch.ids {
                    self.inflight.release(channel, id);
                }
                self.tally.counters.send_errors += len as u64;
                self.pacer.consume_sent(len, self.batch.all_sent());
                self.picker.consume_sent(len, self.batch.all_sent());
                return true;
            }
        };
        let from_intended = self.pacer.latency_from_intended();
        let scheduled = self.pacer.is_scheduled();
        let due_times = self.pacer.due_times();
        for i in (0..len).filter(|i| sent & (1 << i) == 0) {
            self.inflight.release(channel, self.batch.ids[i]);
        }
        for i in (0..len).filter(|i| sent & (1 << i) != 0) {
            let due = due_times.get(i).copied().unwrap_or(now);
            if scheduled {
                self.tally
                    .send_lag
                    .saturating_record(now.saturating_sub(due).max(1));
            }
            let origin = if from_intended { due } else { now };
            self.inflight.insert(
                channel,
                self.batch.ids[i],
                self.batch.queries[i],
                origin,
                now,
            );
            self.tally.counters.sent += 1;
        }
        self.pacer.consume_sent(len, sent);
        self.picker.consume_sent(len, sent);
        true
    }

    fn on_answer(&mut self, channel: usize, msg: &[u8], now: u64) {
        let tally = (&mut self.tally.counters, &mut self.tally.latency);
        account_answer(
            &mut self.inflight,
            &self.shared.queries,
            tally,
            channel,
            msg,
            now,
        );
    }

    /// How long the worker may sleep before it has something to do.
    fn sleep_ns(&mut self, now: u64) -> u64 {
        let mut until = now + IDLE_SLEEP_NS_MAX;
        let room = self.inflight.outstanding() < self.plan.outstanding_max;
        if !self.drain.started() && room {
            match self.pacer.next_due_ns() {
                None => return 0,
                Some(due) => until = until.min(due),
            }
        }
        if let Some(oldest) = self.inflight.oldest_sent_ns() {
            until = until.min(oldest + self.plan.timeout_ns);
        }
        if self.receives_deferred() {
            // A read cut short goes on right after the next send, or when it is
            // overdue: it is no reason not to sleep until then.
            let read_at = match self.next_receive_ns {
                at if at > now => at,
                at => at + RECEIVE_INTERVAL_NS,
            };
            until = until.min(read_at);
        }
        until = until.min(self.tally.second_end_ns());
        until.saturating_sub(now)
    }

    /// Ships the counts of every second that has ended.
    fn roll_seconds(&mut self, now: u64) {
        if self.tally.roll(now) {
            self.clock.resync();
        }
    }

    fn report_last(&mut self) {
        self.tally
            .finish(self.shared.now_ns(), self.drain.sending_ended_ns);
    }
}
