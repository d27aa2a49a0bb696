//! The pod model's load loop: lookups arrive as a Poisson process at the worker's
//! share of the rate, each on a random pod of the worker (one UDP socket per pod);
//! a lookup walks its candidates ([`crate::pods::candidates`]) one step at a time,
//! each step an A and an AAAA query sent together on the pod's socket (or AAAA
//! after A with `single_request`), the next step sent when both answers are in.
//!
//! Query latency counts from each query's intended send time (the lookup's arrival
//! for the first step, the previous step's last answer after that); lookup latency
//! counts from the arrival to the answer that ended the lookup, which is what the
//! application waited. How late the worker sent against those times is the send lag.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::{thread_cpu_ns, tighten_timer_slack, Clock};
use crate::limits::{IDLE_SLEEP_NS_MAX, LOOKUP_STARTS_PER_PASS, SPIN_NS_MIN};
use crate::pods::{AnswerSummary, PodModel, Step, QTYPES};
use crate::schedule::{Pacer, Pacing, Spacing};
use crate::sender::{
    answer_fits, count_answer, pause, Channels, Drain, SendBatch, Shared, WorkerError,
};
use crate::spin::Spinner;
use crate::stats::{Interval, Tally};
use crate::wire::{self, QueryOptions};

/// What one pod worker is told to do.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// Worker index, for reports and seeding.
    pub index: usize,
    /// Global index of this worker's first pod (pods are numbered node-wide, so
    /// a pod's namespace does not depend on the thread count).
    pub first_pod: usize,
    /// Lookups in flight at most.
    pub lookups_max: usize,
    /// Time a step may wait for its answers.
    pub timeout_ns: u64,
    /// Seed of this worker's randomness.
    pub seed: u64,
    /// Header and EDNS options of every query.
    pub options: QueryOptions,
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// With an address.
    Resolved,
    /// Without one.
    Unresolved,
    /// A step timed out (or could not be sent).
    Lost,
}

/// One lookup in flight.
struct Lookup {
    /// Pod (channel) index within the worker.
    pod: usize,
    /// Set anew at every send (worker-wide counter), so stale timeout entries
    /// are recognised.
    generation: u64,
    /// Names to try, in order.
    candidates: Vec<String>,
    /// Index of the candidate being asked.
    step: usize,
    /// Intended arrival: the lookup latency's origin.
    started_ns: u64,
    /// The step's encoded A and AAAA queries (ID 0).
    queries: [Vec<u8>; 2],
    /// Their question lengths.
    question_lens: [usize; 2],
    /// IDs sent with.
    ids: [u16; 2],
    /// Intended send times (query latency origins).
    origins: [u64; 2],
    /// Which were sent and not yet answered.
    awaiting: [bool; 2],
    /// What came back.
    answers: [Option<AnswerSummary>; 2],
}

/// A send the worker owes, made after the answers of a receive pass are read.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// The lookup's current step (both queries, or A alone with single_request).
    Step(u32, u64),
    /// The AAAA of a single_request step, after its A answer.
    Second(u32, u64),
}

/// Everything a pod worker owns.
struct PodWorker<'a> {
    plan: PodPlan,
    shared: &'a Shared,
    model: &'a PodModel,
    /// Pods of this worker.
    pods: usize,
    /// Lookups by slot; `None` is free.
    lookups: Vec<Option<Lookup>>,
    /// Free slots.
    free: Vec<u32>,
    /// Lookups in flight.
    active: usize,
    /// Source of send generations, unique across slot reuse (a freed slot's
    /// stale timeout entries must not match its next lookup).
    generations: u64,
    /// (pod, ID) of every unanswered query → (lookup slot, query index).
    outstanding: HashMap<(usize, u16), (u32, usize)>,
    /// (deadline, lookup slot, generation) in send order.
    timeouts: VecDeque<(u64, u32, u64)>,
    /// Sends owed after the current receive pass.
    due: Vec<Due>,
    picker: crate::pods::Picker,
    pacer: Pacer,
    /// How early to wake before a lookup is due (learned, as the open loop does).
    spinner: Spinner,
    rng: SmallRng,
    batch: SendBatch,
    tally: Tally,
    clock: Clock,
    drain: Drain,
}

/// Runs one pod worker until the run stops; reports through `out`.
pub fn run_pod_worker<C: Channels>(
    plan: PodPlan,
    shared: &Shared,
    model: &PodModel,
    mut channels: C,
    out: Sender<Interval>,
) -> Result<(), WorkerError> {
    tighten_timer_slack();
    let start_ns = shared.now_ns();
    let mut w = PodWorker {
        pods: channels.count().max(1),
        lookups: Vec::new(),
        free: Vec::new(),
        active: 0,
        generations: 0,
        outstanding: HashMap::new(),
        timeouts: VecDeque::new(),
        due: Vec::new(),
        picker: crate::pods::Picker::new(model, plan.index),
        pacer: Pacer::new(Pacing::Open(Spacing::Poisson), start_ns, plan.seed ^ 0x5eed),
        spinner: Spinner::new(start_ns),
        rng: SmallRng::seed_from_u64(plan.seed),
        batch: SendBatch::new(2),
        tally: Tally::new(plan.index, start_ns, out, Arc::clone(&shared.spares)),
        clock: Clock::starting_at(shared.start),
        drain: Drain::default(),
        plan,
        shared,
        model,
    };
    let result = w.run(&mut channels);
    w.tally.finish(w.shared.now_ns(), w.drain.sending_ended_ns);
    result
}

/// Records `value` ns (at least 1) into `h`.
fn record(h: &mut Histogram<u64>, value: u64) {
    h.saturating_record(value.max(1));
}

impl PodWorker<'_> {
    fn run<C: Channels>(&mut self, channels: &mut C) -> Result<(), WorkerError> {
        let worker = self.plan.index;
        loop {
            let now = self.shared.now_ns();
            if self.tally.roll(now) {
                self.clock.resync();
            }
            self.drain
                .start_if(false, self.shared, self.plan.timeout_ns, now);
            if !self.drain.started() {
                self.start_lookups(now);
            }
            let clock = self.clock;
            channels
                .receive(&clock, u64::MAX, &mut |c, msg, t| self.on_answer(c, msg, t))
                .map_err(|source| WorkerError::Receive { worker, source })?;
            for due in std::mem::take(&mut self.due) {
                self.send(channels, due);
            }
            let now = self.shared.now_ns();
            self.spinner.tick(now, thread_cpu_ns);
            self.expire(now);
            if self.drain.done(self.active, now) {
                let slots: Vec<u32> = (0..self.lookups.len() as u32).collect();
                for slot in slots {
                    self.lose(slot, now);
                }
                return Ok(());
            }
            let (sleep, spin) = (self.sleep_ns(now), self.spin_ns());
            pause(channels, worker, sleep, spin)?;
            if sleep > spin {
                // How late the wake-up was teaches the spinner the next spin (an
                // answer that ended the wait early teaches nothing).
                self.spinner.woke(now + sleep - spin, self.shared.now_ns());
            }
        }
    }

    /// Starts the lookups whose arrival time has come (as many as there is room for).
    fn start_lookups(&mut self, now: u64) {
        let room = self.plan.lookups_max.saturating_sub(self.active);
        let n = self
            .pacer
            .poll(now, self.shared.rate(), room.min(LOOKUP_STARTS_PER_PASS));
        for i in 0..n {
            let arrival = self.pacer.due_times().get(i).copied().unwrap_or(now);
            let pod = self.rng.gen_range(0..self.pods);
            let global_pod = self.plan.first_pod + pod;
            let (name, _) = self.picker.pick(self.model, &mut self.rng);
            let lookup = Lookup {
                pod,
                generation: 0,
                candidates: self.model.candidates_for(global_pod, &name),
                step: 0,
                started_ns: arrival,
                queries: Default::default(),
                question_lens: [0; 2],
                ids: [0; 2],
                origins: [arrival; 2],
                awaiting: [false; 2],
                answers: [None; 2],
            };
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.lookups.push(None);
                    self.lookups.len() as u32 - 1
                }
            };
            if let Some(entry) = self.lookups.get_mut(slot as usize) {
                *entry = Some(lookup);
                self.active += 1;
                self.due.push(Due::Step(slot, arrival));
            }
        }
        self.pacer.consume(n);
    }

    /// Sends what `due` asks for.
    fn send<C: Channels>(&mut self, channels: &mut C, due: Due) {
        let (slot, origin, which) = match due {
            Due::Step(slot, origin) => {
                if !self.encode_step(slot) {
                    return;
                }
                let which = if self.model.profile.single_request {
                    0..1
                } else {
                    0..2
                };
                (slot, origin, which)
            }
            Due::Second(slot, origin) => (slot, origin, 1..2),
        };
        let Some(Some(l)) = self.lookups.get_mut(slot as usize) else {
            return;
        };
        let pod = l.pod;
        self.batch.clear();
        let mut ids = [0u16; 2];
        for k in which.clone() {
            let Some(id) = free_id(&self.outstanding, pod, &mut self.rng) else {
                break;
            };
            ids[k] = id;
            self.batch.push(&l.queries[k], id, slot);
        }
        let now = self.clock.now_ns();
        // A refused send (e.g. ICMP port unreachable) sends nothing.
        let sent: u64 = channels.send(pod, &self.batch).unwrap_or_default();
        for (bit, k) in which.clone().take(self.batch.len()).enumerate() {
            if sent & (1 << bit) == 0 {
                self.tally.counters.send_errors += 1;
                continue;
            }
            self.tally.counters.sent += 1;
            record(&mut self.tally.send_lag, now.saturating_sub(origin));
            l.ids[k] = ids[k];
            l.origins[k] = origin;
            l.awaiting[k] = true;
            self.outstanding.insert((pod, ids[k]), (slot, k));
        }
        let missing = which.len() - sent.count_ones() as usize;
        if missing > 0 && self.batch.len() < which.len() {
            self.tally.counters.send_errors += (which.len() - self.batch.len()) as u64;
        }
        if missing > 0 {
            self.lose(slot, now);
            return;
        }
        self.generations += 1;
        l.generation = self.generations;
        self.timeouts
            .push_back((now + self.plan.timeout_ns, slot, l.generation));
    }

    /// Encodes the lookup's current candidate as A and AAAA queries; a name that
    /// does not encode ends the lookup unresolved (a resolver skips it too).
    fn encode_step(&mut self, slot: u32) -> bool {
        let Some(Some(l)) = self.lookups.get_mut(slot as usize) else {
            return false;
        };
        let Some(name) = l.candidates.get(l.step) else {
            return false;
        };
        l.answers = [None; 2];
        for (k, qtype) in QTYPES.iter().enumerate() {
            l.queries[k].clear();
            match wire::encode_query(name, *qtype, &self.plan.options, &mut l.queries[k]) {
                Ok(len) => l.question_lens[k] = len,
                Err(_) => {
                    let started = l.started_ns;
                    self.finish(slot, End::Unresolved, started);
                    return false;
                }
            }
        }
        true
    }

    fn on_answer(&mut self, pod: usize, msg: &[u8], t: u64) {
        let Some(h) = wire::Header::parse(msg) else {
            self.tally.counters.mismatched += 1;
            return;
        };
        let Some((slot, k)) = self.outstanding.get(&(pod, h.id)).copied() else {
            self.tally.counters.mismatched += 1;
            return;
        };
        let Some(Some(l)) = self.lookups.get_mut(slot as usize) else {
            self.outstanding.remove(&(pod, h.id));
            return;
        };
        if !answer_fits(&h, msg, &l.queries[k], l.question_lens[k]) {
            self.tally.counters.mismatched += 1;
            return;
        }
        self.outstanding.remove(&(pod, h.id));
        count_answer(&mut self.tally.counters, &h);
        record(&mut self.tally.latency, t.saturating_sub(l.origins[k]));
        l.awaiting[k] = false;
        l.answers[k] = Some(AnswerSummary {
            // The 4-bit header rcode: always fits.
            rcode: h.rcode() as u8,
            answers: h.ancount,
        });
        if l.awaiting.iter().any(|a| *a) {
            return;
        }
        if l.answers[1].is_none() {
            // single_request: the AAAA goes out once the A is answered.
            self.due.push(Due::Second(slot, t));
            return;
        }
        let answers: Vec<AnswerSummary> = l.answers.iter().flatten().copied().collect();
        match self.model.profile.resolver.step(&answers) {
            Step::Resolved => self.finish(slot, End::Resolved, t),
            Step::Unresolved => self.finish(slot, End::Unresolved, t),
            Step::Next if l.step + 1 < l.candidates.len() => {
                l.step += 1;
                self.due.push(Due::Step(slot, t));
            }
            Step::Next => self.finish(slot, End::Unresolved, t),
        }
    }

    /// Ends a lookup at time `t` and frees its slot.
    fn finish(&mut self, slot: u32, end: End, t: u64) {
        let Some(entry) = self.lookups.get_mut(slot as usize) else {
            return;
        };
        let Some(l) = entry.take() else {
            return;
        };
        for k in 0..2 {
            if l.awaiting[k] {
                self.outstanding.remove(&(l.pod, l.ids[k]));
            }
        }
        self.active -= 1;
        self.free.push(slot);
        let c = &mut self.tally.counters;
        c.lookups += 1;
        match end {
            End::Resolved => c.lookups_resolved += 1,
            End::Unresolved => c.lookups_unresolved += 1,
            End::Lost => c.lookups_lost += 1,
        }
        if end != End::Lost {
            record(
                &mut self.tally.lookup_latency,
                t.saturating_sub(l.started_ns),
            );
        }
    }

    /// Ends a lookup as lost, counting its unanswered queries.
    fn lose(&mut self, slot: u32, now: u64) {
        if let Some(Some(l)) = self.lookups.get(slot as usize) {
            self.tally.counters.lost += l.awaiting.iter().filter(|a| **a).count() as u64;
            self.finish(slot, End::Lost, now);
        }
    }

    /// Ends the lookups whose step has waited longer than the timeout.
    fn expire(&mut self, now: u64) {
        while let Some(&(deadline, slot, generation)) = self.timeouts.front() {
            if deadline > now {
                break;
            }
            self.timeouts.pop_front();
            let current = matches!(
                self.lookups.get(slot as usize),
                Some(Some(l)) if l.generation == generation && l.awaiting.iter().any(|a| *a)
            );
            if current {
                self.lose(slot, now);
            }
        }
    }

    fn sleep_ns(&self, now: u64) -> u64 {
        if !self.due.is_empty() {
            return 0;
        }
        let mut until = (now + IDLE_SLEEP_NS_MAX).min(self.tally.second_end_ns());
        if !self.drain.started() && self.active < self.plan.lookups_max {
            if let Some(due) = self.pacer.next_due_ns() {
                until = until.min(due);
            }
        }
        if let Some(&(deadline, _, _)) = self.timeouts.front() {
            until = until.min(deadline);
        }
        until.saturating_sub(now)
    }

    /// How long before a due lookup the worker stops sleeping and spins
    /// ([`crate::spin`]).
    fn spin_ns(&self) -> u64 {
        if self.shared.rate() <= 0.0 {
            return SPIN_NS_MIN;
        }
        self.spinner.spin_ns()
    }
}

/// A random ID not outstanding on `pod` (resolvers pick IDs at random); `None`
/// after a bounded number of tries on a pod whose ID space is nearly full.
fn free_id(
    outstanding: &HashMap<(usize, u16), (u32, usize)>,
    pod: usize,
    rng: &mut SmallRng,
) -> Option<u16> {
    (0..64)
        .map(|_| rng.gen::<u16>())
        .find(|id| !outstanding.contains_key(&(pod, *id)))
}
