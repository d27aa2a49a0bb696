//! `loadbalance round_robin`: on an answer's way back, its A, AAAA and MX records
//! are put in a random order (`wire::shuffle_answer`), as CoreDNS's loadbalance does.
//! It works on the buffer that goes out, never on the cache's stored copy, so a
//! block without `loadbalance` pays nothing and one with it pays one walk of the
//! answer.

use std::cell::Cell;

use super::flow::Flow;
use crate::config::ServerBlock;
use crate::wire;

pub struct LoadBalance {
    /// xorshift64 state (never zero).
    state: Cell<u64>,
}

impl LoadBalance {
    pub fn new(block: &ServerBlock) -> Option<LoadBalance> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let addr = &block.zones as *const _ as u64;
        block.loadbalance.then(|| LoadBalance {
            state: Cell::new((seed ^ addr.rotate_left(32)) | 1),
        })
    }

    #[inline]
    pub fn serve(&self) -> Flow {
        Flow::Next
    }

    /// Shuffles `answer` in place.
    pub fn back(&self, answer: &mut [u8]) {
        let mut next = || {
            let mut x = self.state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state.set(x);
            x
        };
        wire::shuffle_answer(answer, &mut next);
    }
}
