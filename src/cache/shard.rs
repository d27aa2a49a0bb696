//! One core's cache: a hash index over two CLOCK pools (success; denial and
//! SERVFAIL, as CoreDNS's pcache / ncache), bounded by entries per class and by bytes.
//! Owned by one thread: no locks, no atomics.
//!
//! Each pool also keeps its entries in expiry order, so that eviction takes an expired
//! entry before any fresh one (CLOCK only chooses among fresh entries), and the sweep
//! removes dead entries from the front without looking at live ones.
//!
//! # Refresh protocol (prefetch, `serve_stale`)
//!
//! [`Shard::lookup`] returns [`Lookup::HitPrefetch`] or [`Lookup::StaleRefresh`] at
//! most once per entry until the refresh ends: the caller then sends one upstream
//! query for the same question (same DO and CD) and reports the outcome with
//! [`Shard::insert`] (an answer, whatever its class) or [`Shard::refresh_failed`]
//! (no answer). Either ends the refresh. A refresh never reported ends by itself after
//! [`CACHE_REFRESH_MILLIS_MAX`](crate::limits::CACHE_REFRESH_MILLIS_MAX).
//!
//! With `serve_stale verify` an expired entry is a [`Lookup::Miss`]; the caller
//! forwards as for any miss and, if the upstream gives no usable answer (an error, or
//! an answer whose [`AnswerClass`] is `ServFail` or `Uncacheable`), calls
//! [`Shard::lookup_stale`] and sends the stale answer if there is one.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::answer::{write_reply, AnswerClass, StoredAnswer};
use super::refresh::{prefetch_due, Freq, RefreshMark};
use super::stats::CacheStats;
use crate::config::{CacheConfig, Prefetch, StaleMode, Zone};
use crate::limits::{CACHE_ENTRIES_MAX, CACHE_ENTRY_BYTES_BUDGET, NAME_BYTES_MAX};
use crate::wire::name::{in_zone, zone_to_wire};
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
        hash_name_lowercase(self.name, &mut h);
        let rest = u64::from(self.qtype) << 24 | u64::from(self.qclass) << 8;
        h.write_u64(rest | u64::from(self.bits()));
        h.finish()
    }
}

/// Hashes `name` lower-cased. Names are nearly always asked in lower case, so a
/// SWAR scan (eight bytes per step) finds that out and the name is hashed in place;
/// only a name with an upper-case letter is copied and lower-cased first. Equal
/// ignoring ASCII case ⇒ equal hashes.
fn hash_name_lowercase(name: &[u8], h: &mut impl Hasher) {
    if !has_ascii_uppercase(name) {
        h.write(name);
        return;
    }
    let mut lower = [0u8; NAME_BYTES_MAX];
    match lower.get_mut(..name.len()) {
        Some(dst) => {
            dst.copy_from_slice(name);
            dst.make_ascii_lowercase();
            h.write(dst);
        }
        // Longer than any name the parser accepts: nothing can match it anyway.
        None => h.write(name),
    }
}

fn has_ascii_uppercase(name: &[u8]) -> bool {
    let mut words = name.chunks_exact(8);
    let mut upper = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or_default());
        upper |= ascii_uppercase_bits(word);
    }
    upper != 0 || words.remainder().iter().any(u8::is_ascii_uppercase)
}

/// Whether `query` lower-cased equals `stored` (already lower-case), eight bytes
/// per step.
fn eq_lowercased(stored: &[u8], query: &[u8]) -> bool {
    if stored.len() != query.len() {
        return false;
    }
    let (mut s, mut q) = (stored.chunks_exact(8), query.chunks_exact(8));
    for (a, b) in (&mut s).zip(&mut q) {
        let a = u64::from_le_bytes(<[u8; 8]>::try_from(a).unwrap_or_default());
        let b = u64::from_le_bytes(<[u8; 8]>::try_from(b).unwrap_or_default());
        if a != ascii_lowercase_word(b) {
            return false;
        }
    }
    s.remainder()
        .iter()
        .zip(q.remainder())
        .all(|(a, b)| *a == b.to_ascii_lowercase())
}

/// `to_ascii_lowercase` of the eight bytes of `w` at once (SWAR): a byte gets 0x20
/// added iff it is in b'A'..=b'Z'; bytes ≥ 0x80 are left alone.
fn ascii_lowercase_word(w: u64) -> u64 {
    w | (ascii_uppercase_bits(w) >> 2)
}

/// Bit 7 of each byte of `w` that is in b'A'..=b'Z', the other bits clear.
fn ascii_uppercase_bits(w: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = w & !HIGH;
    // Per byte, bit 7 of `low7 + k` is set iff the byte ≥ 0x80 − k; no byte carries.
    let at_least_a = low7 + 0x3f3f_3f3f_3f3f_3f3f;
    let above_z = low7 + 0x2525_2525_2525_2525;
    at_least_a & !above_z & !w & HIGH
}

/// Result of [`Shard::lookup`]. Every variant but `Miss` carries the length of the
/// reply written into `out`, to be sent as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Fresh answer written. Nothing else to do.
    Hit(usize),
    /// Fresh answer written, and the entry is due for prefetch (`prefetch AMOUNT
    /// DURATION PERCENTAGE%`): the caller must start one refresh (module docs).
    HitPrefetch(usize),
    /// `serve_stale immediate`: expired answer written with every TTL 0; its refresh is
    /// already in flight. Nothing else to do.
    Stale(usize),
    /// `serve_stale immediate`: expired answer written with every TTL 0, and the caller
    /// must start one refresh (module docs).
    StaleRefresh(usize),
    /// Nothing written: forward the query, then `insert` the answer.
    Miss,
}

impl Lookup {
    /// Length of the reply written, if any.
    pub fn reply_len(self) -> Option<usize> {
        match self {
            Lookup::Hit(n)
            | Lookup::HitPrefetch(n)
            | Lookup::Stale(n)
            | Lookup::StaleRefresh(n) => Some(n),
            Lookup::Miss => None,
        }
    }

    /// Whether the caller must start a refresh of this question.
    pub fn must_refresh(self) -> bool {
        matches!(self, Lookup::HitPrefetch(_) | Lookup::StaleRefresh(_))
    }
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
    /// `inserted` + TTL: the key of the pool's expiry order.
    expires: Instant,
    /// CLOCK reference bit: set on a hit, cleared when the hand passes.
    referenced: bool,
    /// What this entry counts against the byte budget.
    bytes: usize,
    /// Popularity for prefetch; carried over when a refresh replaces the entry.
    freq: Freq,
    refresh: RefreshMark,
}

impl Entry {
    fn matches(&self, key: &Key<'_>) -> bool {
        self.qtype == key.qtype
            && self.qclass == key.qclass
            && self.bits == key.bits()
            && eq_lowercased(&self.name, key.name)
    }

    fn expired(&self, now: Instant) -> bool {
        now >= self.expires
    }

    /// Whole seconds of TTL left (0 once expired).
    fn remaining_secs(&self, now: Instant) -> u32 {
        let age = now.saturating_duration_since(self.inserted).as_secs();
        let left = u64::from(self.answer.ttl_secs()).saturating_sub(age);
        u32::try_from(left).unwrap_or(0)
    }

    /// Past expiry and past the serve_stale window: nothing can use it any more.
    fn dead(&self, now: Instant, window: Duration) -> bool {
        self.expired(now) && now.saturating_duration_since(self.expires) >= window
    }

    /// Answerable now, fresh or stale. A SERVFAIL is never answered stale.
    fn servable(&self, now: Instant, window: Duration) -> bool {
        !self.expired(now)
            || (self.answer.class() != AnswerClass::ServFail && !self.dead(now, window))
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

/// Bytes an entry costs beyond `Entry`, its name and its answer: the hash table slot
/// (4 B id + control byte at ≤ 7/8 load), the expiry-order element (24 B plus its
/// share of a B-tree node) and the free-list slot. An estimate, kept on the high side.
const INDEX_BYTES_PER_ENTRY: usize = 64;

/// The entries of one class, walked by a CLOCK hand for eviction.
#[derive(Default)]
struct Pool {
    slots: Vec<Option<Entry>>,
    /// Empty slots below `slots.len()`.
    free: Vec<usize>,
    /// (expiry, slot) of every entry: the first is the next to expire.
    by_expiry: BTreeSet<(Instant, usize)>,
    hand: usize,
    len: usize,
    capacity: usize,
    bytes: usize,
    /// Entries of this pool evicted to make room.
    evictions: u64,
    /// Lookups answered from this pool.
    hits: u64,
}

impl Pool {
    /// The entry that expired first, if it has expired by `now`.
    fn first_expired(&self, now: Instant) -> Option<usize> {
        self.by_expiry
            .first()
            .filter(|&&(expires, _)| expires <= now)
            .map(|&(_, slot)| slot)
    }
}

/// Counters not kept per pool.
#[derive(Default)]
struct Counters {
    misses: u64,
    prefetches: u64,
    refresh_failures: u64,
    served_stale: u64,
    expired: u64,
    drops: u64,
}

/// One core's cache.
pub struct Shard {
    index: HashTable<SlotId>,
    pools: [Pool; 2],
    hasher: foldhash::fast::RandomState,
    bytes: usize,
    bytes_max: usize,
    keepttl: bool,
    prefetch: Option<Prefetch>,
    /// `serve_stale` mode; None when off.
    stale_mode: Option<StaleMode>,
    /// Entries stay this long after expiry (serve_stale), then are dead.
    stale: Duration,
    servfail_ttl: Duration,
    /// Lower-cased wire-form zones: `zones` the cache applies to, and the disabled ones.
    zones: Vec<Vec<u8>>,
    disable_success: Vec<Vec<u8>>,
    disable_denial: Vec<Vec<u8>>,
    counters: Counters,
}

fn wire_zones(zones: &[Zone]) -> Vec<Vec<u8>> {
    zones.iter().filter_map(|z| zone_to_wire(&z.name)).collect()
}

fn entry_mut(pools: &mut [Pool; 2], id: SlotId) -> Option<&mut Entry> {
    pools.get_mut(id.pool())?.slots.get_mut(id.slot())?.as_mut()
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
            keepttl: cfg.keepttl,
            prefetch: cfg.prefetch,
            stale_mode: cfg.serve_stale.map(|s| s.mode),
            stale: cfg.serve_stale.map_or(Duration::ZERO, |s| s.duration),
            servfail_ttl: cfg.servfail_ttl,
            zones: wire_zones(&cfg.zones),
            disable_success: wire_zones(&cfg.disable_success),
            disable_denial: wire_zones(&cfg.disable_denial),
            counters: Counters::default(),
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

    /// This shard's counters and gauges.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let [success, denial] = &self.pools;
        CacheStats {
            hits_success: success.hits,
            hits_denial: denial.hits,
            misses: c.misses,
            prefetches: c.prefetches,
            refresh_failures: c.refresh_failures,
            served_stale: c.served_stale,
            evictions_success: success.evictions,
            evictions_denial: denial.evictions,
            expired: c.expired,
            drops: c.drops,
            entries_success: success.len,
            entries_denial: denial.len,
            bytes: self.bytes,
        }
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

    fn find_query(&self, q: &Query<'_>) -> Option<SlotId> {
        let key = Key::of(q);
        self.find(&key, key.hash(&self.hasher))
    }

    /// Looks `q` up without allocating and, unless it returns [`Lookup::Miss`], writes
    /// the reply into `out` (at most `max_len` bytes, truncated with TC beyond).
    ///
    /// - Fresh entry: every TTL = entry TTL − whole seconds elapsed (the original with
    ///   `keepttl`); [`Lookup::HitPrefetch`] instead of [`Lookup::Hit`] when the entry
    ///   has just become due for prefetch and no refresh of it is in flight.
    /// - Expired entry within the `serve_stale` window, mode `immediate`: every TTL 0
    ///   (`keepttl` too: a stale answer must not be cached downstream);
    ///   [`Lookup::StaleRefresh`] if no refresh is in flight, else [`Lookup::Stale`].
    /// - Expired entry, mode `verify` or SERVFAIL: `Miss` (see [`Shard::lookup_stale`]).
    /// - Dead entry (past the window): removed, `Miss`.
    pub fn lookup(
        &mut self,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Lookup {
        let found = self.find_query(q);
        let result = match found.and_then(|id| self.entry(id).map(|e| (id, e))) {
            None => Lookup::Miss,
            Some((id, e)) if !e.expired(now) => self.serve_fresh(id, q, now, out, max_len),
            Some((id, e)) if !e.servable(now, self.stale) => {
                self.remove(id);
                self.counters.expired += 1;
                Lookup::Miss
            }
            Some((id, _)) if self.stale_mode == Some(StaleMode::Immediate) => {
                self.serve_stale(id, q, now, out, max_len)
            }
            Some(_) => Lookup::Miss,
        };
        if result == Lookup::Miss {
            self.counters.misses += 1;
        }
        result
    }

    fn serve_fresh(
        &mut self,
        id: SlotId,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Lookup {
        let (keepttl, prefetch) = (self.keepttl, self.prefetch);
        let Some(e) = entry_mut(&mut self.pools, id) else {
            return Lookup::Miss;
        };
        let (ttl, remaining) = (e.answer.ttl_secs(), e.remaining_secs(now));
        let shown = if keepttl { ttl } else { remaining };
        let n = write_reply(&e.answer, q, shown, true, out, max_len);
        if n == 0 {
            return Lookup::Miss;
        }
        e.referenced = true;
        let due = prefetch.is_some_and(|p| prefetch_due(&mut e.freq, &p, ttl, remaining, now));
        let refresh = due && e.refresh.claim(now);
        self.pools[id.pool()].hits += 1;
        if refresh {
            self.counters.prefetches += 1;
            Lookup::HitPrefetch(n)
        } else {
            Lookup::Hit(n)
        }
    }

    fn serve_stale(
        &mut self,
        id: SlotId,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Lookup {
        let Some(e) = entry_mut(&mut self.pools, id) else {
            return Lookup::Miss;
        };
        let n = write_reply(&e.answer, q, 0, true, out, max_len);
        if n == 0 {
            return Lookup::Miss;
        }
        let refresh = e.refresh.claim(now);
        self.pools[id.pool()].hits += 1;
        self.counters.served_stale += 1;
        if refresh {
            self.counters.prefetches += 1;
            Lookup::StaleRefresh(n)
        } else {
            Lookup::Stale(n)
        }
    }

    /// For `serve_stale` (either mode) when the upstream gave no usable answer: writes
    /// the answer to `q` if the entry is still servable and returns its length. An
    /// expired entry is written with every TTL 0 (counted as served stale); a fresh one
    /// (refreshed meanwhile) as by `lookup`. None when serve_stale is off, there is no
    /// entry, it is past the window or a SERVFAIL, or the reply does not fit `out`.
    /// Counts neither a hit nor a miss (the `lookup` before it did), and never asks
    /// for a refresh.
    pub fn lookup_stale(
        &mut self,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Option<usize> {
        self.stale_mode?;
        let e = self.entry(self.find_query(q)?)?;
        if !e.servable(now, self.stale) {
            return None;
        }
        let expired = e.expired(now);
        let ttl = match (expired, self.keepttl) {
            (true, _) => 0,
            (false, true) => e.answer.ttl_secs(),
            (false, false) => e.remaining_secs(now),
        };
        let n = write_reply(&e.answer, q, ttl, true, out, max_len);
        if n == 0 {
            return None;
        }
        if expired {
            self.counters.served_stale += 1;
        }
        Some(n)
    }

    /// Ends the refresh of `q` in flight after the upstream gave no answer, so that
    /// the next due hit may start another. No effect if there is none.
    /// The next refresh of that entry starts no sooner than
    /// [`CACHE_REFRESH_RETRY_MILLIS`](crate::limits::CACHE_REFRESH_RETRY_MILLIS) later.
    pub fn refresh_failed(&mut self, q: &Query<'_>) {
        self.refresh_failed_at(q, Instant::now());
    }

    /// [`Shard::refresh_failed`] at `now`.
    pub fn refresh_failed_at(&mut self, q: &Query<'_>, now: Instant) {
        let Some(id) = self.find_query(q) else {
            return;
        };
        if entry_mut(&mut self.pools, id).is_some_and(|e| e.refresh.fail(now)) {
            self.counters.refresh_failures += 1;
        }
    }

    /// Whether a refresh of the entry answering `q` is in flight at `now` (its answer
    /// is about to be replaced).
    pub fn refreshing(&self, q: &Query<'_>, now: Instant) -> bool {
        self.find_query(q)
            .and_then(|id| self.entry(id))
            .is_some_and(|e| e.refresh.in_flight(now))
    }

    /// Caches `stored` as the answer to `q`, replacing any previous one and ending its
    /// refresh in flight (cached or not; not cached counts as a failed refresh, see
    /// [`Shard::refresh_failed`]). Returns whether it was cached.
    ///
    /// Not cached: uncacheable answers, zero TTLs, SERVFAIL when `servfail_ttl` is 0, a
    /// class `disable`d for the name's zone, names outside the cache's zones, and
    /// answers larger than the byte budget (counted in `drops`). A SERVFAIL never
    /// replaces an answer that is still servable (fresh or within the serve_stale
    /// window): a failed refresh keeps the good answer (CoreDNS overwrote it).
    pub fn insert(&mut self, q: &Query<'_>, stored: StoredAnswer, now: Instant) -> bool {
        let key = Key::of(q);
        let hash = key.hash(&self.hasher);
        let old = self.find(&key, hash);
        let keep_old = stored.class() == AnswerClass::ServFail
            && old
                .and_then(|id| self.entry(id))
                .is_some_and(|e| e.servable(now, self.stale));
        let bytes =
            size_of::<Entry>() + INDEX_BYTES_PER_ENTRY + q.qname.len() + stored.heap_bytes();
        let pool = match self.admit(q.qname, &stored) {
            Some(_) if keep_old => None,
            Some(_) if bytes > self.bytes_max => {
                self.counters.drops += 1;
                None
            }
            pool => pool,
        };
        let Some(pool) = pool else {
            // The entry stays: its refresh, if any, failed.
            if let Some(e) = old.and_then(|id| entry_mut(&mut self.pools, id)) {
                if e.refresh.fail(now) {
                    self.counters.refresh_failures += 1;
                }
            }
            return false;
        };
        let freq = old.and_then(|id| self.entry(id)).map(|e| e.freq);
        if let Some(old) = old {
            self.remove(old);
        }
        if !self.make_room(pool, bytes, now) {
            self.counters.drops += 1;
            return false;
        }
        let expires = now
            .checked_add(Duration::from_secs(u64::from(stored.ttl_secs())))
            .unwrap_or(now);
        let entry = Entry {
            name: q.qname.to_ascii_lowercase().into_boxed_slice(),
            qtype: q.qtype,
            qclass: q.qclass,
            bits: key.bits(),
            hash,
            answer: stored,
            inserted: now,
            expires,
            referenced: false,
            bytes,
            freq: freq.unwrap_or_default(),
            refresh: RefreshMark::default(),
        };
        self.place(pool, entry);
        true
    }

    /// The pool `stored` goes to, if the configuration lets it be cached for `name`.
    fn admit(&self, name: &[u8], stored: &StoredAnswer) -> Option<usize> {
        let pool = match stored.class() {
            AnswerClass::Success if !self.disabled(&self.disable_success, name) => SUCCESS,
            AnswerClass::Denial if !self.disabled(&self.disable_denial, name) => DENIAL,
            AnswerClass::ServFail if !self.servfail_ttl.is_zero() => DENIAL,
            _ => return None,
        };
        let in_zones = self.zones.is_empty() || self.zones.iter().any(|z| in_zone(name, z));
        let cacheable = stored.ttl_secs() > 0 && in_zones && self.pools[pool].capacity > 0;
        cacheable.then_some(pool)
    }

    fn disabled(&self, zones: &[Vec<u8>], name: &[u8]) -> bool {
        zones.iter().any(|z| in_zone(name, z))
    }

    /// Evicts until `pool` has a free entry and `bytes` more fit the budget.
    fn make_room(&mut self, pool: usize, bytes: usize, now: Instant) -> bool {
        while self.pools[pool].len >= self.pools[pool].capacity {
            if !self.evict(pool, now) {
                return false;
            }
        }
        while self.bytes + bytes > self.bytes_max {
            if !self.evict(self.victim_pool(now), now) {
                return false;
            }
        }
        true
    }

    /// Where to evict for bytes: a pool holding an expired entry, else the fattest.
    fn victim_pool(&self, now: Instant) -> usize {
        if self.pools[DENIAL].first_expired(now).is_some() {
            return DENIAL;
        }
        if self.pools[SUCCESS].first_expired(now).is_some()
            || self.pools[SUCCESS].bytes >= self.pools[DENIAL].bytes
        {
            SUCCESS
        } else {
            DENIAL
        }
    }

    fn place(&mut self, pool: usize, entry: Entry) {
        let hash = entry.hash;
        let expires = entry.expires;
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
        p.by_expiry.insert((expires, slot));
        let id = SlotId::new(pool, slot);
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
        p.by_expiry.remove(&(entry.expires, id.slot()));
        p.free.push(id.slot());
        p.len -= 1;
        p.bytes -= entry.bytes;
        self.bytes -= entry.bytes;
    }

    /// Evicts one entry of `pool`: the first to have expired if any has, else by
    /// CLOCK (advance the hand, clearing reference bits, take the first unreferenced
    /// entry). Returns false if the pool is empty.
    fn evict(&mut self, pool: usize, now: Instant) -> bool {
        let n = self.pools[pool].slots.len();
        if self.pools[pool].len == 0 || n == 0 {
            return false;
        }
        if let Some(slot) = self.pools[pool].first_expired(now) {
            self.remove(SlotId::new(pool, slot));
            self.pools[pool].evictions += 1;
            return true;
        }
        // Two turns suffice: the first clears every reference bit.
        for _ in 0..2 * n {
            let p = &mut self.pools[pool];
            let slot = p.hand % n;
            p.hand = (slot + 1) % n;
            let Some(e) = p.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if e.referenced {
                e.referenced = false;
                continue;
            }
            self.remove(SlotId::new(pool, slot));
            self.pools[pool].evictions += 1;
            return true;
        }
        false
    }

    /// Removes at most `budget` dead entries (expired beyond the serve_stale window),
    /// earliest first; returns how many. Walks the expiry order from its front, so the
    /// work is proportional to what it removes, whatever the size of the shard.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        let mut removed = 0;
        for pool in [SUCCESS, DENIAL] {
            while removed < budget {
                let Some(&(expires, slot)) = self.pools[pool].by_expiry.first() else {
                    break;
                };
                if now < expires || now.saturating_duration_since(expires) < self.stale {
                    break;
                }
                self.remove(SlotId::new(pool, slot));
                removed += 1;
            }
        }
        self.counters.expired += removed as u64;
        removed
    }
}

#[cfg(test)]
impl Shard {
    /// Panics if the index, pools, expiry orders and byte counts disagree.
    pub(super) fn check_invariants(&self) {
        let mut total_bytes = 0;
        for (i, p) in self.pools.iter().enumerate() {
            let live: Vec<&Entry> = p.slots.iter().flatten().collect();
            assert_eq!(live.len(), p.len, "pool {i} len");
            assert_eq!(p.by_expiry.len(), p.len, "pool {i} expiry order");
            assert_eq!(p.free.len() + p.len, p.slots.len(), "pool {i} free list");
            assert!(p.len <= p.capacity, "pool {i} over capacity");
            let bytes: usize = live.iter().map(|e| e.bytes).sum();
            assert_eq!(bytes, p.bytes, "pool {i} bytes");
            total_bytes += bytes;
        }
        assert_eq!(self.index.len(), self.pools[0].len + self.pools[1].len);
        assert_eq!(total_bytes, self.bytes);
        assert!(self.bytes <= self.bytes_max);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn word_lowercase_matches_std_for_every_byte() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'A', b, b'z', 0xff, b, b'Z', b]);
            let want = u64::from_le_bytes(
                [b, b'A', b, b'z', 0xff, b, b'Z', b].map(|x| x.to_ascii_lowercase()),
            );
            assert_eq!(ascii_lowercase_word(w), want, "byte {b:#x}");
        }
    }

    #[test]
    fn hash_ignores_case_and_separates_lengths() {
        let state = foldhash::fast::RandomState::default();
        let hash = |name: &[u8]| {
            let mut h = state.build_hasher();
            hash_name_lowercase(name, &mut h);
            h.finish()
        };
        assert_eq!(
            hash(b"\x07Example\x03CoM\x00"),
            hash(b"\x07example\x03com\x00")
        );
        assert_ne!(hash(b"\x01a\x00"), hash(b"\x01a\x00\x00"));
        assert_ne!(hash(b"abcdefgh"), hash(b"abcdefgh\x00"));
        assert_eq!(hash(b"abcdefghijK"), hash(b"abcdefghijk"));
        assert_eq!(hash(b"abcdefgHijk"), hash(b"abcdefghijk"));
    }

    #[test]
    fn eq_lowercased_compares_every_byte() {
        let stored = b"\x0bservice-abc\x07default\x03svc\x00";
        assert!(eq_lowercased(
            stored,
            b"\x0bSERVICE-ABC\x07Default\x03svc\x00"
        ));
        for i in 0..stored.len() {
            let mut other = stored.to_vec();
            if let Some(b) = other.get_mut(i) {
                *b ^= 0x01;
            }
            assert!(!eq_lowercased(stored, &other), "byte {i}");
        }
        assert!(!eq_lowercased(stored, &stored[..stored.len() - 1]));
    }
}
