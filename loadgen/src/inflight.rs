//! The table of outstanding queries of one worker, keyed by (channel, message ID).
//!
//! A slot remembers which query was sent and when, so an answer can be checked
//! against its question and timed. A FIFO in send order finds timeouts without
//! scanning the table: the oldest outstanding query is always at its front.
//!
//! An ID handed out by [`InFlight::reserve`] is held until the query is sent
//! ([`InFlight::insert`]) or given back ([`InFlight::release`]): a batch is reserved
//! before it is sent, and on a channel whose ID space is nearly all in flight (a
//! server that stalled) an unheld ID would come round again within the same batch,
//! two queries would share it, and the second would silently replace the first.

use std::collections::VecDeque;

/// The generation of a slot reserved for a query not sent yet.
const RESERVED: u32 = u32::MAX;

/// One outstanding query.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slot {
    /// 0 when free, [`RESERVED`] between reserve and send; otherwise a number unique
    /// to this use of the slot, so stale FIFO entries for reused slots are recognised.
    generation: u32,
    /// Index into the query set, to check the answer's question.
    pub query: u32,
    /// Latency origin: intended send time in open loop, actual send time otherwise.
    pub origin_ns: u64,
    /// Actual send time; the timeout counts from here.
    pub sent_ns: u64,
}

/// Outstanding queries of one worker.
pub struct InFlight {
    /// `channels * ids_per_channel` slots.
    slots: Vec<Slot>,
    /// IDs used per channel (a power of two, at most 65536), sized from the
    /// outstanding limit so memory stays proportional to the load.
    ids_per_channel: usize,
    /// Next ID to try per channel; sequential so reuse of an ID is as late as possible.
    next_id: Vec<u16>,
    /// (slot, generation) in send order.
    fifo: VecDeque<(u32, u32)>,
    /// Source of generations.
    generation: u32,
    /// Occupied slots.
    outstanding: usize,
}

impl InFlight {
    /// A table for `channels` channels, each with room for `ids_per_channel` IDs.
    pub fn new(channels: usize, ids_per_channel: usize) -> Self {
        let ids = ids_per_channel.next_power_of_two().clamp(16, 1 << 16);
        Self {
            slots: vec![Slot::default(); channels * ids],
            ids_per_channel: ids,
            next_id: vec![0; channels],
            fifo: VecDeque::new(),
            generation: 0,
            outstanding: 0,
        }
    }

    /// Number of outstanding queries.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// A free ID on `channel`, held until [`InFlight::insert`] or
    /// [`InFlight::release`], advancing the channel's cursor; `None` if all are taken.
    pub fn reserve(&mut self, channel: usize) -> Option<u16> {
        let base = channel * self.ids_per_channel;
        let cursor = self.next_id.get_mut(channel)?;
        for _ in 0..self.ids_per_channel {
            let id = *cursor;
            *cursor = ((usize::from(id) + 1) % self.ids_per_channel) as u16;
            let slot = self.slots.get_mut(base + usize::from(id))?;
            if slot.generation == 0 {
                slot.generation = RESERVED;
                return Some(id);
            }
        }
        None
    }

    /// Records a sent query under a reserved ID.
    pub fn insert(&mut self, channel: usize, id: u16, query: u32, origin_ns: u64, sent_ns: u64) {
        let index = channel * self.ids_per_channel + usize::from(id);
        // 1..RESERVED, round and round.
        self.generation = self.generation % (RESERVED - 1) + 1;
        let generation = self.generation;
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.generation == 0 || slot.generation == RESERVED {
                self.outstanding += 1;
            }
            *slot = Slot {
                generation,
                query,
                origin_ns,
                sent_ns,
            };
            self.fifo.push_back((index as u32, generation));
        }
    }

    /// The outstanding query with this ID on this channel, if any.
    pub fn get(&self, channel: usize, id: u16) -> Option<Slot> {
        if usize::from(id) >= self.ids_per_channel {
            return None;
        }
        let slot = self
            .slots
            .get(channel * self.ids_per_channel + usize::from(id))?;
        (slot.generation != 0 && slot.generation != RESERVED).then_some(*slot)
    }

    /// Frees the slot of an answered query.
    pub fn complete(&mut self, channel: usize, id: u16) {
        let index = channel * self.ids_per_channel + usize::from(id);
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.generation != 0 && slot.generation != RESERVED {
                slot.generation = 0;
                self.outstanding -= 1;
            }
        }
    }

    /// Gives back a reserved ID whose query was not sent.
    pub fn release(&mut self, channel: usize, id: u16) {
        let index = channel * self.ids_per_channel + usize::from(id);
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.generation == RESERVED {
                slot.generation = 0;
            }
        }
    }

    /// Frees and counts queries sent at or before `now_ns - timeout_ns`.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        let mut lost = 0;
        while let Some(&(index, generation)) = self.fifo.front() {
            let Some(slot) = self.slots.get_mut(index as usize) else {
                break;
            };
            if slot.generation == generation {
                if slot.sent_ns.saturating_add(timeout_ns) > now_ns {
                    break;
                }
                slot.generation = 0;
                self.outstanding -= 1;
                lost += 1;
            }
            self.fifo.pop_front();
        }
        lost
    }

    /// Frees and counts everything still outstanding (end of run).
    pub fn expire_all(&mut self) -> u64 {
        self.expire(u64::MAX, 0)
    }

    /// Send time of the oldest outstanding query, for sleeping until its timeout.
    pub fn oldest_sent_ns(&mut self) -> Option<u64> {
        self.expire(0, u64::MAX);
        let &(index, _) = self.fifo.front()?;
        self.slots.get(index as usize).map(|s| s.sent_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_insert_complete_expire() {
        let mut t = InFlight::new(2, 16);
        let a = t.reserve(1).unwrap();
        t.insert(1, a, 7, 10, 10);
        let b = t.reserve(1).unwrap();
        assert_ne!(a, b);
        t.insert(1, b, 8, 20, 20);
        assert_eq!(t.outstanding(), 2);
        assert_eq!(t.get(1, a).unwrap().query, 7);
        assert!(t.get(0, a).is_none());
        assert!(t.get(1, 999).is_none());
        t.complete(1, a);
        assert_eq!(t.oldest_sent_ns(), Some(20));
        assert_eq!(t.expire(25, 10), 0);
        assert_eq!(t.expire(30, 10), 1);
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_nearly_full_channel_never_hands_out_an_id_twice() {
        // 16 IDs, 13 in flight (a stalled server): a batch of 8 gets the 3 free ones.
        let mut t = InFlight::new(1, 16);
        for q in 0..13 {
            let id = t.reserve(0).unwrap();
            t.insert(0, id, q, 0, 0);
        }
        let batch: Vec<u16> = (0..8).map_while(|_| t.reserve(0)).collect();
        assert_eq!(batch, vec![13, 14, 15]);
        // The first two are sent, the third is not and comes back.
        t.insert(0, batch[0], 100, 1, 1);
        t.insert(0, batch[1], 101, 1, 1);
        t.release(0, batch[2]);
        assert_eq!(t.outstanding(), 15);
        assert!(
            t.get(0, batch[2]).is_none(),
            "a reserved ID is not in flight"
        );
        assert_eq!(t.reserve(0), Some(15));
        assert_eq!(t.reserve(0), None);
        assert_eq!(t.expire_all(), 15);
    }

    #[test]
    fn full_channel_refuses() {
        let mut t = InFlight::new(1, 16);
        for q in 0..16 {
            let id = t.reserve(0).unwrap();
            t.insert(0, id, q, 0, 0);
        }
        assert_eq!(t.reserve(0), None);
        assert_eq!(t.expire_all(), 16);
        assert!(t.reserve(0).is_some());
    }
}
