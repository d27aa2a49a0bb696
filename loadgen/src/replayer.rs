//! The replay loop: sends a [`Trace`]'s queries at their captured times (divided
//! by `--replay-speed`), each on the socket of its original client, and matches
//! the answers. Open loop: a query's latency counts from its intended time, and how
//! late the worker sent it is the send lag, so a replay that cannot keep up says so.
//!
//! Clients are dealt to workers round robin (client `c` is socket `c / threads` of
//! worker `c % threads`); each worker walks the whole event list and sends its own.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::clock::{tighten_timer_slack, Clock};
use crate::inflight::InFlight;
use crate::limits::{
    IDLE_SLEEP_NS_MAX, IDS_PER_CHANNEL_MAX, IDS_PER_CHANNEL_MIN, REPLAY_ID_SLOTS_MAX, SPIN_NS_MIN,
};
use crate::replay::Event;
use crate::sender::{account_answer, pause, Channels, Drain, SendBatch, Shared, WorkerError};
use crate::stats::{Interval, Tally};

/// What one replay worker is told to do.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// Worker index.
    pub index: usize,
    /// Workers in all (the stride of the client deal).
    pub workers: usize,
    /// Time a query may wait for its answer.
    pub timeout_ns: u64,
    /// Messages per batched send (consecutive queries of one client).
    pub batch: usize,
    /// Time scale: 2 replays twice as fast.
    pub speed: f64,
}

/// Everything a replay worker owns.
struct Replayer<'a> {
    plan: ReplayPlan,
    shared: &'a Shared,
    /// All events; this worker sends those of its clients.
    events: &'a [Event],
    /// Next event to look at.
    cursor: usize,
    /// When the replay started, ns on the run's clock.
    start_ns: u64,
    inflight: InFlight,
    batch: SendBatch,
    tally: Tally,
    clock: Clock,
    drain: Drain,
}

/// Runs one replay worker over `events` until they are sent and answered (or the
/// run stops); reports through `out`.
pub fn run_replay_worker<C: Channels>(
    plan: ReplayPlan,
    shared: &Shared,
    events: &[Event],
    mut channels: C,
    out: Sender<Interval>,
) -> Result<(), WorkerError> {
    tighten_timer_slack();
    // The table first: the schedule starts once everything is allocated, so
    // setup is not charged to the first queries as lateness.
    let inflight = InFlight::new(channels.count(), ids_per_client(channels.count()));
    let start_ns = shared.now_ns();
    let mut w = Replayer {
        cursor: 0,
        start_ns,
        inflight,
        batch: SendBatch::new(plan.batch),
        tally: Tally::new(plan.index, start_ns, out, Arc::clone(&shared.spares)),
        clock: Clock::starting_at(shared.start),
        drain: Drain::default(),
        events,
        plan,
        shared,
    };
    let result = w.run(&mut channels);
    w.tally.finish(w.shared.now_ns(), w.drain.sending_ended_ns);
    result
}

/// IDs per socket: the whole ID space for a few clients (a captured forwarder may
/// have thousands of queries in flight), less for many, within
/// [`REPLAY_ID_SLOTS_MAX`] slots per worker.
fn ids_per_client(clients: usize) -> usize {
    let share = REPLAY_ID_SLOTS_MAX / clients.max(1);
    // A power of two no larger than the share (the table rounds up otherwise).
    let pow2 = 1usize << (usize::BITS - 1 - share.max(1).leading_zeros());
    pow2.clamp(IDS_PER_CHANNEL_MIN, IDS_PER_CHANNEL_MAX)
}

impl Replayer<'_> {
    fn run<C: Channels>(&mut self, channels: &mut C) -> Result<(), WorkerError> {
        let worker = self.plan.index;
        loop {
            let now = self.shared.now_ns();
            if self.tally.roll(now) {
                self.clock.resync();
            }
            let done = self.cursor >= self.events.len();
            self.drain
                .start_if(done, self.shared, self.plan.timeout_ns, now);
            if !self.drain.started() {
                self.send_due(channels, now);
            }
            let clock = self.clock;
            let queries = &self.shared.queries;
            let (inflight, tally) = (&mut self.inflight, &mut self.tally);
            channels
                .receive(&clock, u64::MAX, &mut |c, msg, t| {
                    let counts = (&mut tally.counters, &mut tally.latency);
                    account_answer(inflight, queries, counts, c, msg, t);
                })
                .map_err(|source| WorkerError::Receive { worker, source })?;
            let now = self.shared.now_ns();
            self.tally.counters.lost += self.inflight.expire(now, self.plan.timeout_ns);
            if self.drain.done(self.inflight.outstanding(), now) {
                self.tally.counters.lost += self.inflight.expire_all();
                return Ok(());
            }
            let sleep = self.sleep_ns(now);
            pause(channels, worker, sleep, SPIN_NS_MIN)?;
        }
    }

    /// The event's intended send time on the run's clock.
    fn due_ns(&self, e: &Event) -> u64 {
        self.start_ns + (e.at_ns as f64 / self.plan.speed) as u64
    }

    /// This worker's socket for `e`, if the event is this worker's.
    fn channel_of(&self, e: &Event) -> Option<usize> {
        let c = e.client as usize;
        (c % self.plan.workers == self.plan.index).then_some(c / self.plan.workers)
    }

    /// Sends every event whose time has come, consecutive ones of one client in
    /// one batch.
    fn send_due<C: Channels>(&mut self, channels: &mut C, now: u64) {
        while let Some(first) = self.events.get(self.cursor) {
            if self.due_ns(first) > now {
                return;
            }
            let Some(channel) = self.channel_of(first) else {
                self.cursor += 1;
                continue;
            };
            let mut group = Vec::with_capacity(self.plan.batch);
            let mut k = self.cursor;
            while let Some(e) = self.events.get(k) {
                if group.len() >= self.plan.batch || self.due_ns(e) > now {
                    break;
                }
                match self.channel_of(e) {
                    Some(c) if c == channel => group.push(*e),
                    Some(_) => break,
                    None => {}
                }
                k += 1;
            }
            self.cursor = k;
            self.send_group(channels, channel, &group);
        }
    }

    fn send_group<C: Channels>(&mut self, channels: &mut C, channel: usize, group: &[Event]) {
        self.batch.clear();
        let mut ids = Vec::with_capacity(group.len());
        for e in group {
            let template = self.shared.queries.get(e.query as usize).map(|(q, _)| q);
            let id = template.and_then(|_| self.inflight.reserve(channel));
            let (Some(template), Some(id)) = (template, id) else {
                // No free ID on this socket (a client with a full ID space in
                // flight) or no such query: not sent.
                self.tally.counters.send_errors += 1;
                continue;
            };
            self.batch.push(template, id, e.query);
            ids.push((id, *e));
        }
        if self.batch.is_empty() {
            return;
        }
        let now = self.clock.now_ns();
        let sent = channels.send(channel, &self.batch).unwrap_or_default();
        for (i, (id, e)) in ids.iter().enumerate() {
            if sent & (1 << i) == 0 {
                self.inflight.release(channel, *id);
                self.tally.counters.send_errors += 1;
                continue;
            }
            let due = self.due_ns(e);
            self.tally
                .send_lag
                .saturating_record(now.saturating_sub(due).max(1));
            self.inflight.insert(channel, *id, e.query, due, now);
            self.tally.counters.sent += 1;
        }
    }

    fn sleep_ns(&mut self, now: u64) -> u64 {
        let mut until = (now + IDLE_SLEEP_NS_MAX).min(self.tally.second_end_ns());
        if !self.drain.started() {
            if let Some(e) = self.events.get(self.cursor) {
                until = until.min(self.due_ns(e));
            }
        }
        if let Some(oldest) = self.inflight.oldest_sent_ns() {
            until = until.min(oldest + self.plan.timeout_ns);
        }
        until.saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_space_per_client_stays_within_the_slot_budget() {
        assert_eq!(ids_per_client(1), 65_536);
        assert_eq!(ids_per_client(110), 8192);
        assert_eq!(ids_per_client(4096), 256);
        for clients in [1, 3, 17, 110, 1000, 4096] {
            let ids = ids_per_client(clients);
            assert!(ids.is_power_of_two());
            assert!(ids * clients <= REPLAY_ID_SLOTS_MAX.max(clients * IDS_PER_CHANNEL_MIN));
        }
    }
}
