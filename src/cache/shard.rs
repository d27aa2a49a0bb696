//! One core's cache: a hash index over two CLOCK pools (success; denial and
//! SERVFAIL, as CoreDNS's pcache / ncache), bounded by entries per class and by bytes.
//! Owned by one thread: no locks, no atomics.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::answer::{write_reply, AnswerClass, StoredAnswer};
use crate::config::{CacheConfig, Zone};
use crate::limits::{CACHE_ENTRIES_MAX, CACHE_ENTRY_BYTES_BUDGET};
use crate::wire::name::{hash_lowercase, in_zone, zone_to_wire};
use crate::wire::Query;

/// What identifies a cached answer: the query name (compared ignoring case), type,
/// class, DO and CD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// Wire form, any case.
    pub name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub dnssec_ok: bool,
    pub cd: bool,
}

impl<'a> Key<'a> {
    pub fn of(q: &Query<'a>) -> Key<'a> {
        Key {
            name: q.qname,
            qtype: q.qtype,
            qclass: q.qclass,
            dnssec_ok: q.dnssec_ok(),
            cd: q.cd(),
        }
    }

    fn bits(&self) -> u8 {
        u8::from(self.dnssec_ok) | u8::from(self.cd) << 1
    }

    fn hash(&self, state: &impl BuildHasher) -> u64 {
        let mut h = state.build_hasher();
        hash_lowercase(self.name, &mut h);
        h.write_u16(self.qtype);
        h.write_u16(self.qclass);
        h.write_u8(self.bits());
        h.finish()
    }
}

/// Result of [`Shard::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A reply of this many bytes was written.
    Hit(usize),
    Miss,
}

struct Entry {
    /// Lower-cased query name, wire form.
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    /// DO | CD << 1.
    bits: u8,
    /// Kept so that removal and rehashing never hash the name again.
    hash: u64,
    answer: StoredAnswer,
    inserted: Instant,
    /// CLOCK reference bit: set on a hit, cleared when the hand passes.
    referenced: bool,
    /// What this entry counts against the byte budget.
    bytes: usize,
}

impl Entry {
    fn matches(&self, key: &Key<'_>) -> bool {
        self.qtype == key.qtype
            && self.qclass == key.qclass
            && self.bits == key.bits()
            && self.name.eq_ignore_ascii_case(key.name)
    }

    /// Whole seconds since insertion.
    fn age_secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.inserted).as_secs()
    }

    fn expired(&self, now: Instant) -> bool {
        self.age_secs(now) >= u64::from(self.answer.ttl_secs())
    }

    /// Past expiry and past the serve_stale window: nothing can use it any more.
    fn dead(&self, now: Instant, stale: Duration) -> bool {
        let ttl = Duration::from_secs(u64::from(self.answer.ttl_secs()));
        now.saturating_duration_since(self.inserted) >= ttl.saturating_add(stale)
    }
}

/// Index into a pool: pool number in the top bit, slot in the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotId(u32);

impl SlotId {
    fn new(pool: usize, slot: usize) -> SlotId {
        SlotId((pool as u32) << 31 | slot as u32)
    }
    fn pool(self) -> usize {
        (self.0 >> 31) as usize
    }
    fn slot(self) -> usize {
        (self.0 & !(1 << 31)) as usize
    }
}

const SUCCESS: usize = 0;
const DENIAL: usize = 1;

/// The entries of one class, walked by a CLOCK hand for eviction.
#[derive(Default)]
struct Pool {
    slots: Vec<Option<Entry>>,
    /// Empty slots below `slots.len()`.
    free: Vec<usize>,
    hand: usize,
    len: usize,
    capacity: usize,
    bytes: usize,
}

/// One core's cache.
pub struct Shard {
    index: HashTable<SlotId>,
    pools: [Pool; 2],
    hasher: foldhash::fast::RandomState,
    bytes: usize,
    bytes_max: usize,
    /// Position of the incremental sweep over both pools' slots.
    sweep_at: usize,
    keepttl: bool,
    /// Entries stay this long after expiry (serve_stale), then are dead.
    stale: Duration,
    servfail_ttl: Duration,
    /// Lower-cased wire-form zones: `zones` the cache applies to, and the disabled ones.
    zones: Vec<Vec<u8>>,
    disable_success: Vec<Vec<u8>>,
    disable_denial: Vec<Vec<u8>>,
}

fn wire_zones(zones: &[Zone]) -> Vec<Vec<u8>> {
    zones.iter().filter_map(|z| zone_to_wire(&z.name)).collect()
}

impl Shard {
    /// A shard with the whole configured capacity.
    pub fn new(cfg: &CacheConfig) -> Shard {
        Shard::with_share(cfg, 1)
    }

    /// A shard holding `1 / shards` of the configured capacity and byte budget
    /// (rounded up), for when the configured size is meant for the whole process.
    pub fn with_share(cfg: &CacheConfig, shards: usize) -> Shard {
        let shards = shards.max(1);
        let share = |n: usize| n.div_ceil(shards).min(CACHE_ENTRIES_MAX);
        let success = share(cfg.success.capacity);
        let denial = share(cfg.denial.capacity);
        let bytes_max = cfg
            .max_bytes
            .map(|b| b.div_ceil(shards))
            .unwrap_or((success + denial).saturating_mul(CACHE_ENTRY_BYTES_BUDGET));
        let pool = |capacity| Pool {
            capacity,
            ..Pool::default()
        };
        Shard {
            index: HashTable::new(),
            pools: [pool(success), pool(denial)],
            hasher: foldhash::fast::RandomState::default(),
            bytes: 0,
            bytes_max,
            sweep_at: 0,
            keepttl: cfg.keepttl,
            stale: cfg.serve_stale.map_or(Duration::ZERO, |s| s.duration),
            servfail_ttl: cfg.servfail_ttl,
            zones: wire_zones(&cfg.zones),
            disable_success: wire_zones(&cfg.disable_success),
            disable_denial: wire_zones(&cfg.disable_denial),
        }
    }

    /// Entries per class: (success, denial + SERVFAIL).
    pub fn len(&self) -> (usize, usize) {
        (self.pools[SUCCESS].len, self.pools[DENIAL].len)
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes accounted to entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    fn entry(&self, id: SlotId) -> Option<&Entry> {
        self.pools.get(id.pool())?.slots.get(id.slot())?.as_ref()
    }

    fn find(&self, key: &Key<'_>, hash: u64) -> Option<SlotId> {
        let pools = &self.pools;
        let hit = |id: &SlotId| {
            let e = pools
                .get(id.pool())
                .and_then(|p| p.slots.get(id.slot()))
                .and_then(Option::as_ref);
            e.is_some_and(|e| e.matches(key))
        };
        self.index.find(hash, hit).copied()
    }

    /// Looks `q` up without allocating. On a hit writes the reply into `out` (every
    /// TTL = entry TTL − whole seconds elapsed, or the original with keepttl). An
    /// expired entry is a miss, and is removed once past the serve_stale window.
    pub fn lookup(
        &mut self,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Lookup {
        let key = Key::of(q);
        let Some(id) = self.find(&key, key.hash(&self.hasher)) else {
            return Lookup::Miss;
        };
        let (stale, keepttl) = (self.stale, self.keepttl);
        let Some(e) = self.pools[id.pool()]
            .slots
            .get_mut(id.slot())
            .and_then(Option::as_mut)
        else {
            return Lookup::Miss;
        };
        if e.expired(now) {
            if e.dead(now, stale) {
                self.remove(id);
            }
            return Lookup::Miss;
        }
        e.referenced = true;
        let ttl = e.answer.ttl_secs();
        let remaining = if keepttl {
            ttl
        } else {
            ttl - e.age_secs(now) as u32
        };
        match write_reply(&e.answer, q, remaining, true, out, max_len) {
            0 => Lookup::Miss,
            n => Lookup::Hit(n),
        }
    }

    /// Caches `stored` as the answer to `q`, replacing any previous one. Skips
    /// uncacheable answers, zero TTLs, SERVFAIL when `servfail_ttl` is 0, names outside
    /// the cache's zones or in a disabled zone, and entries larger than the byte budget.
    pub fn insert(&mut self, q: &Query<'_>, stored: StoredAnswer, now: Instant) {
        let pool = match stored.class() {
            AnswerClass::Success if !self.disabled(&self.disable_success, q.qname) => SUCCESS,
            AnswerClass::Denial if !self.disabled(&self.disable_denial, q.qname) => DENIAL,
            AnswerClass::ServFail if !self.servfail_ttl.is_zero() => DENIAL,
            _ => return,
        };
        let in_zones = self.zones.is_empty() || self.zones.iter().any(|z| in_zone(q.qname, z));
        let bytes = size_of::<Entry>() + q.qname.len() + stored.heap_bytes();
        if stored.ttl_secs() == 0
            || !in_zones
            || bytes > self.bytes_max
            || self.pools[pool].capacity == 0
        {
            return;
        }
        let key = Key::of(q);
        let hash = key.hash(&self.hasher);
        if let Some(old) = self.find(&key, hash) {
            self.remove(old);
        }
        while self.pools[pool].len >= self.pools[pool].capacity && self.evict(pool, now) {}
        while self.bytes + bytes > self.bytes_max && self.evict(self.fattest_pool(), now) {}
        let entry = Entry {
            name: q.qname.to_ascii_lowercase().into_boxed_slice(),
            qtype: q.qtype,
            qclass: q.qclass,
            bits: key.bits(),
            hash,
            answer: stored,
            inserted: now,
            referenced: false,
            bytes,
        };
        let id = self.place(pool, entry);
        let pools = &self.pools;
        let rehash = |id: &SlotId| {
            let e = pools
                .get(id.pool())
                .and_then(|p| p.slots.get(id.slot()))
                .and_then(Option::as_ref);
            e.map_or(0, |e| e.hash)
        };
        self.index.insert_unique(hash, id, rehash);
    }

    fn disabled(&self, zones: &[Vec<u8>], name: &[u8]) -> bool {
        zones.iter().any(|z| in_zone(name, z))
    }

    fn fattest_pool(&self) -> usize {
        if self.pools[SUCCESS].bytes >= self.pools[DENIAL].bytes {
            SUCCESS
        } else {
            DENIAL
        }
    }

    fn place(&mut self, pool: usize, entry: Entry) -> SlotId {
        self.bytes += entry.bytes;
        let p = &mut self.pools[pool];
        p.bytes += entry.bytes;
        p.len += 1;
        let slot = match p.free.pop() {
            Some(slot) => slot,
            None => {
                p.slots.push(None);
                p.slots.len() - 1
            }
        };
        p.slots[slot] = Some(entry);
        SlotId::new(pool, slot)
    }

    fn remove(&mut self, id: SlotId) {
        let Some(entry) = self.pools[id.pool()]
            .slots
            .get_mut(id.slot())
            .and_then(Option::take)
        else {
            return;
        };
        if let Ok(found) = self.index.find_entry(entry.hash, |&other| other == id) {
            found.remove();
        }
        let p = &mut self.pools[id.pool()];
        p.free.push(id.slot());
        p.len -= 1;
        p.bytes -= entry.bytes;
        self.bytes -= entry.bytes;
    }

    /// CLOCK: advance the hand, clearing reference bits, and evict the first entry
    /// that is unreferenced or expired. Returns false if the pool is empty.
    fn evict(&mut self, pool: usize, now: Instant) -> bool {
        let n = self.pools[pool].slots.len();
        if self.pools[pool].len == 0 || n == 0 {
            return false;
        }
        // Two turns suffice: the first clears every reference bit.
        for _ in 0..2 * n {
            let p = &mut self.pools[pool];
            let slot = p.hand % n;
            p.hand = (slot + 1) % n;
            let Some(e) = p.slots[slot].as_mut() else {
                continue;
            };
            if e.referenced && !e.expired(now) {
                e.referenced = false;
                continue;
            }
            self.remove(SlotId::new(pool, slot));
            return true;
        }
        false
    }

    /// Examines at most `budget` slots from where the last sweep stopped and removes
    /// dead entries (expired beyond the serve_stale window). Returns how many.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        let total = self.pools[SUCCESS].slots.len() + self.pools[DENIAL].slots.len();
        let mut removed = 0;
        for _ in 0..budget.min(total) {
            let at = self.sweep_at % total;
            self.sweep_at = (at + 1) % total;
            let success_slots = self.pools[SUCCESS].slots.len();
            let id = if at < success_slots {
                SlotId::new(SUCCESS, at)
            } else {
                SlotId::new(DENIAL, at - success_slots)
            };
            if self.entry(id).is_some_and(|e| e.dead(now, self.stale)) {
                self.remove(id);
                removed += 1;
            }
        }
        removed
    }
}
