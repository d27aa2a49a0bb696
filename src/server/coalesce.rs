//! Misses in flight on one block of one shard, by cache key (lower-cased name, type,
//! class, DO, CD): the first miss of a key leads (resolves it), the others wait for
//! the leader's resolution, so a cold name asked by many clients costs one upstream
//! query. Both the table and each key's waiters are bounded; past a bound the miss
//! is answered SERVFAIL instead of queued.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;

use crate::cache::StoredAnswer;
use crate::limits;
use crate::wire::{self, Query, Rcode};

/// The outcome of one upstream resolution, shared by every coalesced waiter.
pub type Resolution = Rc<Result<StoredAnswer, Rcode>>;

type Waiters = Vec<oneshot::Sender<Resolution>>;

#[derive(Default)]
pub struct Inflight {
    /// foldhash, randomly seeded per table: the keys are names from the network.
    waiting: RefCell<hashbrown::HashMap<Vec<u8>, Waiters, foldhash::fast::RandomState>>,
}

/// What a miss does about its key.
pub enum Join<'a> {
    /// Nobody resolves the key yet: this miss does, and must `finish`.
    Lead(Leader<'a>),
    /// Another miss resolves it: wait for its resolution.
    Wait(oneshot::Receiver<Resolution>),
    /// Too many keys in flight, or too many waiters on this one.
    Full,
}

impl Inflight {
    /// Distinct keys being resolved.
    pub fn len(&self) -> usize {
        self.waiting.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leads the resolution of `key` or waits for the one in flight.
    pub fn join(&self, key: Vec<u8>) -> Join<'_> {
        let mut waiting = self.waiting.borrow_mut();
        let full = waiting.len() >= limits::MISSES_INFLIGHT_MAX;
        match waiting.get_mut(&key) {
            Some(waiters) if waiters.len() < limits::COALESCED_WAITERS_MAX => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Join::Wait(rx)
            }
            Some(_) => Join::Full,
            None if full => Join::Full,
            None => {
                waiting.insert(key.clone(), Vec::new());
                Join::Lead(Leader {
                    inflight: self,
                    key,
                })
            }
        }
    }
}

/// The leader of one key. Dropping it (the resolving future was dropped) removes
/// the key, so waiters never park forever: they see a closed channel.
pub struct Leader<'a> {
    inflight: &'a Inflight,
    key: Vec<u8>,
}

impl Leader<'_> {
    /// Hands `resolution` to every waiter and ends the key's flight.
    pub fn finish(self, resolution: &Resolution) {
        let waiters = self.inflight.waiting.borrow_mut().remove(&self.key);
        for waiter in waiters.unwrap_or_default() {
            let _ = waiter.send(resolution.clone());
        }
    }

    /// The key, for routing to its owner shard.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.inflight.waiting.borrow_mut().remove(&self.key);
    }
}

/// The cache key of a query as owned bytes: lower-cased name, type, class, DO, CD.
pub fn key(query: &Query<'_>) -> Vec<u8> {
    let mut name = [0u8; limits::NAME_BYTES_MAX];
    let lower = wire::name::lowercase_into(query.qname, &mut name).unwrap_or(query.qname);
    let mut key = Vec::with_capacity(lower.len() + 5);
    key.extend_from_slice(lower);
    key.extend_from_slice(&query.qtype.to_be_bytes());
    key.extend_from_slice(&query.qclass.to_be_bytes());
    key.push(u8::from(query.dnssec_ok()) | u8::from(query.cd()) << 1);
    key
}
