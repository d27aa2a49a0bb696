//! One core's cache: a hash index over two CLOCK pools (success; denial and
//! SERVFAIL, as CoreDNS's pcache / ncache), bounded by entries per class and by bytes.
//! Owned by one thread: no locks, no atomics.
//!
//! Each pool also keeps its entries in expiry order, one bucket per second, so that
//! eviction takes an expired entry before any fresh one (CLOCK only chooses among
//! fresh entries), and the sweep removes dead entries from the front without looking
//! at live ones.
//!
//! # Memory
//!
//! An entry is 48 bytes in its pool's slot array (times are 48-bit milliseconds since
//! the shard's epoch, see `clock`) plus one heap allocation holding its name, records
//! and TTL offsets (`answer::pack`), 4 bytes in an expiry bucket and ~5–11 in the hash
//! table, which keeps slot ids only (hashes are recomputed from the name when the
//! table grows or an entry leaves). The byte budget counts this footprint.
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
//! forwards as for any miss and, if the upstream gives no usable answer (an error, an
//! answer that does not [`refresh`](StoredAnswer::refreshes), or with
//! `prefer_positive` one that is not a positive answer), calls
//! [`Shard::lookup_stale`] and sends the stale answer if there is one; with a
//! VERIFY_TIMEOUT ([`Shard::stale_entry`]) it does so once the timeout passes, and
//! lets the upstream query finish in the background. With a FAILURE_RECHECK the
//! expired entry's miss also claims its refresh mark: while that refresh is in flight
//! or within the recheck after it failed, the entry is answered stale at once
//! ([`Lookup::Stale`]) instead.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::answer::{
    pack, packed_key, packed_len, packed_ttl_secs, write_answer, AnswerClass, Packed, StoredAnswer,
};
use super::clock::{millis, Clock, Millis, Stamp};
use super::refresh::{prefetch_due, Freq, RefreshMark};
use super::stats::CacheStats;
use crate::config::{CacheConfig, Prefetch, StaleMode, Zone};
use crate::limits::{
    CACHE_COPY_SHARE_DIVISOR, CACHE_ENTRIES_MAX, CACHE_ENTRY_BYTES_BUDGET, NAME_BYTES_MAX,
};
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
    /// `serve_stale`: expired answer written with every TTL `RESPONSE_TTL` (0 by
    /// default); its refresh is already in flight, or failed within the recheck delay.
    /// Nothing else to do.
    Stale(usize),
    /// `serve_stale immediate`: expired answer written with every TTL `RESPONSE_TTL`,
    /// and the caller must start one refresh (module docs).
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

/// An expired entry serve_stale can still answer with ([`Shard::stale_entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleEntry {
    /// How long the miss path waits for the upstream before answering stale (None:
    /// until the upstream query ends).
    pub verify_timeout: Option<Duration>,
}

/// One cached answer: 48 bytes in its pool's slot array, plus exactly one heap
/// allocation holding its name and answer.
struct Entry {
    /// Header, lower-cased query name, records and TTL offsets ([`pack`]); the type,
    /// class and TTL are read from its header.
    data: Box<[u8]>,
    /// Popularity for prefetch; carried over when a refresh replaces the entry.
    freq: Freq,
    /// Where this entry's slot is in its expiry bucket, so removal is O(1).
    bucket_pos: u32,
    refresh: RefreshMark,
    /// When the answer was cached; with the TTL, when it expires.
    inserted: Stamp,
    /// CLOCK reference bit: set on a hit, cleared when the hand passes.
    referenced: bool,
    /// DO | CD << 1.
    bits: u8,
}

impl Entry {
    fn packed(&self) -> Option<Packed<'_>> {
        Packed::read(&self.data)
    }

    fn matches(&self, key: &Key<'_>) -> bool {
        self.bits == key.bits()
            && packed_key(&self.data).is_some_and(|(qtype, qclass, name)| {
                qtype == key.qtype && qclass == key.qclass && eq_lowercased(name, key.name)
            })
    }

    fn class(&self) -> AnswerClass {
        self.packed()
            .map_or(AnswerClass::Uncacheable, |p| p.answer.class())
    }

    /// A positive answer to its question (what `prefer_positive` keeps).
    fn answering(&self) -> bool {
        self.packed().is_some_and(|p| p.answer.answering())
    }

    fn expires(&self) -> Millis {
        expiry(self.inserted, packed_ttl_secs(&self.data))
    }

    fn expired(&self, now: Millis) -> bool {
        now >= self.expires()
    }

    /// Past expiry and past the serve_stale window: nothing can use it any more.
    fn dead(&self, now: Millis, window: Millis) -> bool {
        now.checked_sub(self.expires())
            .is_some_and(|late| late >= window)
    }

    /// Answerable now, fresh or stale. A SERVFAIL is never answered stale.
    fn servable(&self, now: Millis, window: Millis) -> bool {
        !self.expired(now) || (self.class() != AnswerClass::ServFail && !self.dead(now, window))
    }

    /// What this entry counts against the byte budget.
    fn bytes(&self) -> usize {
        footprint(self.data.len())
    }
}

/// When an answer cached at `inserted` with `ttl_secs` expires.
fn expiry(inserted: Stamp, ttl_secs: u32) -> Millis {
    inserted
        .millis()
        .saturating_add(u64::from(ttl_secs).saturating_mul(1000))
}

/// Whole seconds of TTL left at `now` (0 once expired): CoreDNS's
/// `origTTL − int(now − stored).Seconds()`.
fn remaining_secs(inserted: Stamp, ttl_secs: u32, now: Millis) -> u32 {
    let age_secs = now.saturating_sub(inserted.millis()) / 1000;
    let left = u64::from(ttl_secs).saturating_sub(age_secs);
    u32::try_from(left).unwrap_or(0)
}

/// Index into a pool: pool number in the top two bits, slot in the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotId(u32);

impl SlotId {
    fn new(pool: usize, slot: usize) -> SlotId {
        SlotId((pool as u32) << 30 | slot as u32)
    }
    fn pool(self) -> usize {
        (self.0 >> 30) as usize
    }
    fn slot(self) -> usize {
        (self.0 & !(3 << 30)) as usize
    }
}

/// The pools: the entries this shard owns, by class, then its copies of entries
/// other shards own ([`Shard::insert_copy`]), by class. A pool's class is `pool & 1`.
const SUCCESS: usize = 0;
const DENIAL: usize = 1;
const COPY: usize = 2;
const POOLS: usize = 4;

/// Bytes an entry costs beyond its slot and its allocation: its hash-table slot (4 B
/// id + 1 control byte, at a load between 7/16 and 7/8: 6–12 B), its place in an
/// expiry bucket (4 B, up to 8 B with a bucket's spare capacity) and, once removed, a
/// free-list slot (4 B). An estimate, kept on the high side.
const INDEX_BYTES_PER_ENTRY: usize = 24;

/// What glibc's malloc takes for `n` bytes: `n` + 8 rounded up to 16, at least 32.
fn malloc_chunk(n: usize) -> usize {
    (n.saturating_add(8 + 15) / 16 * 16).max(32)
}

/// What an entry whose allocation is `data_len` bytes counts against the budget.
fn footprint(data_len: usize) -> usize {
    size_of::<Option<Entry>>() + malloc_chunk(data_len) + INDEX_BYTES_PER_ENTRY
}

/// The expiry bucket of an entry expiring at `expires`: its second since the epoch.
fn bucket_of(expires: Millis) -> u32 {
    u32::try_from(expires / 1000).unwrap_or(u32::MAX)
}

/// Past this, every entry of bucket `b` has expired.
fn bucket_end(b: u32) -> Millis {
    (u64::from(b) + 1) * 1000
}

/// The entries of one class, walked by a CLOCK hand for eviction.
#[derive(Default)]
struct Pool {
    slots: Vec<Option<Entry>>,
    /// Empty slots below `slots.len()`.
    free: Vec<u32>,
    /// The slots of the entries expiring in each second since the epoch, the next to
    /// expire first: 4 bytes per entry (a B-tree of `(Instant, usize)` took ~40), and
    /// a bucket holds one second's worth, so the first is always the next to expire
    /// to within a second.
    expiry: BTreeMap<u32, Vec<u32>>,
    hand: usize,
    len: usize,
    capacity: usize,
    bytes: usize,
    /// Entries of this pool evicted to make room.
    evictions: u64,
}

impl Pool {
    fn entry(&self, slot: usize) -> Option<&Entry> {
        self.slots.get(slot)?.as_ref()
    }

    /// An entry that has expired by `now`, if the first bucket has wholly expired
    /// (an entry that expired less than a second ago may be missed).
    fn first_expired(&self, now: Millis) -> Option<usize> {
        let (&b, slots) = self.expiry.first_key_value()?;
        let slot = slots.last().filter(|_| bucket_end(b) <= now)?;
        Some(*slot as usize)
    }

    /// Puts `entry` in a free slot and in its expiry bucket; returns the slot.
    fn put(&mut self, mut entry: Entry) -> usize {
        let bytes = entry.bytes();
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let bucket = self.expiry.entry(bucket_of(entry.expires())).or_default();
        entry.bucket_pos = bucket.len() as u32;
        bucket.push(slot as u32);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(entry);
        }
        self.len += 1;
        self.bytes += bytes;
        slot
    }

    /// Takes the entry out of `slot` and out of its expiry bucket.
    fn take(&mut self, slot: usize) -> Option<Entry> {
        let entry = self.slots.get_mut(slot)?.take()?;
        let b = bucket_of(entry.expires());
        if let Some(bucket) = self.expiry.get_mut(&b) {
            let pos = entry.bucket_pos as usize;
            if bucket.get(pos) == Some(&(slot as u32)) {
                bucket.swap_remove(pos);
                let moved = bucket.get(pos).copied();
                let moved = moved.and_then(|m| self.slots.get_mut(m as usize)?.as_mut());
                if let Some(e) = moved {
                    e.bucket_pos = pos as u32;
                }
            }
            if bucket.is_empty() {
                self.expiry.remove(&b);
            } else if bucket.len() * 4 <= bucket.capacity() {
                // Mostly evicted: give the spare capacity back.
                bucket.shrink_to(bucket.len() * 2);
            }
        }
        self.free.push(slot as u32);
        self.len = self.len.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(entry.bytes());
        Some(entry)
    }
}

/// Counters not kept per pool or per listening address.
#[derive(Default)]
struct Counters {
    prefetches: u64,
    refresh_failures: u64,
    served_stale: u64,
    expired: u64,
    drops: u64,
}

/// One core's cache.
pub struct Shard {
    index: HashTable<SlotId>,
    pools: [Pool; POOLS],
    hasher: foldhash::fast::RandomState,
    /// Turns the callers' `Instant`s into the milliseconds entries keep.
    clock: Clock,
    bytes: usize,
    bytes_max: usize,
    keepttl: bool,
    prefetch: Option<Prefetch>,
    /// `serve_stale` mode; None when off.
    stale_mode: Option<StaleMode>,
    /// Entries stay this long after expiry (serve_stale), then are dead.
    stale: Millis,
    /// TTL of every record of a stale answer (`RESPONSE_TTL`).
    stale_ttl: u32,
    /// `FAILURE_RECHECK`: after a failed refresh of an expired entry, the next waits
    /// this long (else the default retry delay); given, a `verify` miss claims the
    /// refresh mark.
    failure_recheck: Option<Millis>,
    /// `serve_stale_policy prefer_positive`.
    prefer_positive: bool,
    servfail_ttl: Duration,
    /// Lower-cased wire-form zones: `zones` the cache applies to, and the disabled ones.
    zones: Vec<Vec<u8>>,
    disable_success: Vec<Vec<u8>>,
    disable_denial: Vec<Vec<u8>>,
    counters: Counters,
    /// Hits and misses by the listening address the lookups came through (the
    /// `server` label of the metrics): the only place a lookup is counted.
    tallies: Vec<Tally>,
}

/// The lookups of one cache shard that came through one listening address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Answered from a success entry (fresh, or stale with `immediate`).
    pub hits_success: u64,
    /// Answered from a denial or SERVFAIL entry.
    pub hits_denial: u64,
    /// Found nothing to answer with.
    pub misses: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.hits_success += other.hits_success;
        self.hits_denial += other.hits_denial;
        self.misses += other.misses;
    }
}

fn wire_zones(zones: &[Zone]) -> Vec<Vec<u8>> {
    zones.iter().filter_map(|z| zone_to_wire(&z.name)).collect()
}

fn entry_mut(pools: &mut [Pool; POOLS], id: SlotId) -> Option<&mut Entry> {
    pools.get_mut(id.pool())?.slots.get_mut(id.slot())?.as_mut()
}

/// The hash an entry is indexed under, from its packed key (the table does not keep
/// hashes: growing it and removing an entry hash the name again).
fn entry_hash(hasher: &foldhash::fast::RandomState, e: &Entry) -> u64 {
    let Some(p) = e.packed() else {
        return 0;
    };
    let key = Key {
        name: p.name,
        qtype: p.qtype,
        qclass: p.qclass,
        dnssec_ok: e.bits & 1 != 0,
        cd: e.bits & 2 != 0,
    };
    key.hash(hasher)
}

impl Shard {
    /// A shard with the whole configured capacity.
    pub fn new(cfg: &CacheConfig) -> Shard {
        Shard::with_share(cfg, 1)
    }

    /// A shard holding `1 / shards` of the configured capacity and byte budget
    /// (rounded up), for when the configured size is meant for the whole process:
    /// the share bounds the entries the shard owns, so the shards together hold the
    /// configured number of distinct entries. With several shards, copies of other
    /// shards' entries live in pools of their own, of at most a share /
    /// [`CACHE_COPY_SHARE_DIVISOR`] entries per class, within the same byte budget.
    pub fn with_share(cfg: &CacheConfig, shards: usize) -> Shard {
        let shards = shards.max(1);
        let share = |n: usize| n.div_ceil(shards).min(CACHE_ENTRIES_MAX);
        let success = share(cfg.success.capacity);
        let denial = share(cfg.denial.capacity);
        let copies = |n: usize| match shards {
            1 => 0,
            _ => n.div_ceil(CACHE_COPY_SHARE_DIVISOR),
        };
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
            pools: [
                pool(success),
                pool(denial),
                pool(copies(success)),
                pool(copies(denial)),
            ],
            hasher: foldhash::fast::RandomState::default(),
            clock: Clock::new(Instant::now()),
            bytes: 0,
            bytes_max,
            keepttl: cfg.keepttl,
            prefetch: cfg.prefetch,
            stale_mode: cfg.serve_stale.map(|s| s.mode),
            stale: cfg.serve_stale.map_or(0, |s| millis(s.duration)),
            stale_ttl: cfg.serve_stale.map_or(0, |s| s.response_ttl_secs),
            failure_recheck: cfg.serve_stale.and_then(|s| s.failure_recheck).map(millis),
            prefer_positive: cfg.serve_stale.is_some_and(|s| s.prefer_positive),
            servfail_ttl: cfg.servfail_ttl,
            zones: wire_zones(&cfg.zones),
            disable_success: wire_zones(&cfg.disable_success),
            disable_denial: wire_zones(&cfg.disable_denial),
            counters: Counters::default(),
            tallies: vec![Tally::default()],
        }
    }

    /// Entries per class, copies of other shards' entries included: (success,
    /// denial + SERVFAIL).
    pub fn len(&self) -> (usize, usize) {
        let len = |class: usize| self.pools[class].len + self.pools[COPY + class].len;
        (len(SUCCESS), len(DENIAL))
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
        let [success, denial, copy_success, copy_denial] = &self.pools;
        let mut all = Tally::default();
        for tally in &self.tallies {
            all.add(tally);
        }
        CacheStats {
            hits_success: all.hits_success,
            hits_denial: all.hits_denial,
            misses: all.misses,
            prefetches: c.prefetches,
            refresh_failures: c.refresh_failures,
            served_stale: c.served_stale,
            evictions_success: success.evictions,
            evictions_denial: denial.evictions,
            expired: c.expired,
            drops: c.drops,
            entries_success: success.len,
            entries_denial: denial.len,
            copies: copy_success.len + copy_denial.len,
            bytes: self.bytes,
        }
    }

    fn entry(&self, id: SlotId) -> Option<&Entry> {
        self.pools.get(id.pool())?.entry(id.slot())
    }

    fn find(&self, key: &Key<'_>, hash: u64) -> Option<SlotId> {
        let pools = &self.pools;
        let hit = |id: &SlotId| {
            let e = pools.get(id.pool()).and_then(|p| p.entry(id.slot()));
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
    /// - Expired entry within the `serve_stale` window, mode `immediate`: every TTL
    ///   `RESPONSE_TTL`, 0 by default (`keepttl` too: a stale answer must not be
    ///   cached downstream for its original TTL); [`Lookup::StaleRefresh`] if a
    ///   refresh may start, else [`Lookup::Stale`].
    /// - Expired entry, mode `verify`: `Miss` (see [`Shard::lookup_stale`]); with a
    ///   FAILURE_RECHECK, [`Lookup::Stale`] while its refresh is in flight or failed
    ///   within the recheck, else `Miss` with the refresh claimed.
    /// - Expired SERVFAIL: `Miss`.
    /// - Dead entry (past the window): removed, `Miss`.
    pub fn lookup(
        &mut self,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Lookup {
        self.lookup_via(Some(0), q, now, out, max_len)
    }

    /// [`Shard::lookup`], counted in the tally of listening address `via` (see
    /// [`Shard::tally_addresses`]); None counts nowhere (a lookup for another shard,
    /// whose own lookup was counted there).
    pub fn lookup_via(
        &mut self,
        via: Option<usize>,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
    ) -> Lookup {
        self.lookup_counted(via, q, now, out, max_len, true)
    }

    /// A lookup counted nowhere that answers only from a fresh entry: an expired one
    /// is a `Miss` and starts no refresh. For a copy of the answer another shard or
    /// task caches as its own (a stale one would be cached anew as fresh).
    pub fn lookup_fresh(&mut self, q: &Query<'_>, now: Instant, out: &mut [u8]) -> Lookup {
        let max_len = out.len();
        self.lookup_counted(None, q, now, out, max_len, false)
    }

    fn lookup_counted(
        &mut self,
        via: Option<usize>,
        q: &Query<'_>,
        now: Instant,
        out: &mut [u8],
        max_len: usize,
        stale_ok: bool,
    ) -> Lookup {
        let now = self.clock.millis(now);
        let (result, pool) = match self.find_query(q) {
            Some(id) => (self.serve(id, q, now, out, max_len, stale_ok), id.pool()),
            None => (Lookup::Miss, SUCCESS),
        };
        if let Some(tally) = via.and_then(|v| self.tallies.get_mut(v)) {
            match result {
                Lookup::Miss => tally.misses += 1,
                _ if pool & 1 == SUCCESS => tally.hits_success += 1,
                _ => tally.hits_denial += 1,
            }
        }
        result
    }

    /// Sizes the tallies for `addresses` listening addresses; `was(i)` is the index
    /// address `i` had before (a reload hands a cache to a state that numbers its
    /// addresses anew), None for a new one. Counts of addresses gone are dropped.
    pub fn tally_addresses(&mut self, addresses: usize, was: impl Fn(usize) -> Option<usize>) {
        let old = std::mem::take(&mut self.tallies);
        self.tallies = (0..addresses.max(1))
            .map(|i| was(i).and_then(|o| old.get(o)).copied().unwrap_or_default())
            .collect();
    }

    /// Recounts as a hit of `class` one lookup through address `via` that this shard
    /// counted as a miss but that was answered from a cache after all: another
    /// shard's (the key's owner, asked over the mesh) or this one's, filled while the
    /// miss waited. CoreDNS's hits are queries answered without an upstream query.
    pub fn hit_elsewhere(&mut self, via: usize, class: AnswerClass) {
        let Some(tally) = self.tallies.get_mut(via) else {
            return;
        };
        if tally.misses == 0 {
            return;
        }
        tally.misses -= 1;
        match class {
            AnswerClass::Success => tally.hits_success += 1,
            _ => tally.hits_denial += 1,
        }
    }

    /// The lookups counted through listening address `via`.
    pub fn tally(&self, via: usize) -> Tally {
        self.tallies.get(via).copied().unwrap_or_default()
    }

    /// [`Shard::lookup`] of the entry `id`, which answers `q`: reads the entry and its
    /// header once, then answers fresh, stale (if `stale_ok`), or not at all (a dead
    /// entry is removed).
    fn serve(
        &mut self,
        id: SlotId,
        q: &Query<'_>,
        now: Millis,
        out: &mut [u8],
        max_len: usize,
        stale_ok: bool,
    ) -> Lookup {
        let (keepttl, prefetch, stale) = (self.keepttl, self.prefetch, self.stale);
        let stale_ttl = self.stale_ttl;
        let recheck = self.failure_recheck.unwrap_or(RefreshMark::RETRY);
        let immediate = self.stale_mode == Some(StaleMode::Immediate);
        let verify_claims = self.failure_recheck.is_some() && !immediate;
        let Some(e) = entry_mut(&mut self.pools, id) else {
            return Lookup::Miss;
        };
        let Some(answer) = Packed::read(&e.data).map(|p| p.answer) else {
            return Lookup::Miss;
        };
        let ttl = answer.ttl_secs();
        let expires = expiry(e.inserted, ttl);
        let fresh = now < expires;
        if !fresh {
            // Not servable (past the window, or a SERVFAIL): nothing will use it.
            let dead = now - expires >= stale || answer.class() == AnswerClass::ServFail;
            if dead {
                self.remove(id);
                self.counters.expired += 1;
                return Lookup::Miss;
            }
            if !stale_ok {
                return Lookup::Miss;
            }
            // verify + FAILURE_RECHECK: the miss that claims the refresh verifies;
            // while it runs, or within the recheck after it failed, answer stale.
            if !immediate && (!verify_claims || e.refresh.claim(now, recheck)) {
                return Lookup::Miss;
            }
        }
        let remaining = remaining_secs(e.inserted, ttl, now);
        let shown = match (fresh, keepttl) {
            (false, _) => stale_ttl,
            (true, true) => ttl,
            (true, false) => remaining,
        };
        let n = write_answer(answer, q, shown, true, out, max_len);
        if n == 0 {
            return Lookup::Miss;
        }
        let refresh = if fresh {
            e.referenced = true;
            let due = prefetch.is_some_and(|p| prefetch_due(&mut e.freq, &p, ttl, remaining, now));
            due && e.refresh.claim(now, RefreshMark::RETRY)
        } else {
            immediate && e.refresh.claim(now, recheck)
        };
        if !fresh {
            self.counters.served_stale += 1;
        }
        self.counters.prefetches += u64::from(refresh);
        match (fresh, refresh) {
            (true, false) => Lookup::Hit(n),
            (true, true) => Lookup::HitPrefetch(n),
            (false, false) => Lookup::Stale(n),
            (false, true) => Lookup::StaleRefresh(n),
        }
    }

    /// The expired entry answering `q` that serve_stale can still answer with, if
    /// there is one: what the miss path of `q` falls back on, and how long it waits
    /// for the upstream first (`verify`'s VERIFY_TIMEOUT).
    pub fn stale_entry(&self, q: &Query<'_>, now: Instant) -> Option<StaleEntry> {
        let mode = self.stale_mode?;
        let now = self.clock.millis(now);
        let e = self.entry(self.find_query(q)?)?;
        let waiting = e.expired(now) && e.servable(now, self.stale);
        waiting.then_some(StaleEntry {
            verify_timeout: match mode {
                StaleMode::Verify { timeout } => timeout,
                StaleMode::Immediate => None,
            },
        })
    }

    /// `serve_stale_policy prefer_positive` is on: only a positive answer counts as
    /// a successful refresh.
    pub fn prefer_positive(&self) -> bool {
        self.prefer_positive
    }

    /// For `serve_stale` (either mode) when the upstream gave no usable answer: writes
    /// the answer to `q` if the entry is still servable and returns its length. An
    /// expired entry is written with every TTL `RESPONSE_TTL` (counted as served
    /// stale); a fresh one
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
        let now = self.clock.millis(now);
        let e = self.entry(self.find_query(q)?)?;
        if !e.servable(now, self.stale) {
            return None;
        }
        let answer = e.packed()?.answer;
        let expired = e.expired(now);
        let ttl = match (expired, self.keepttl) {
            (true, _) => self.stale_ttl,
            (false, true) => answer.ttl_secs(),
            (false, false) => remaining_secs(e.inserted, answer.ttl_secs(), now),
        };
        let n = write_answer(answer, q, ttl, true, out, max_len);
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
        let now = self.clock.millis(now);
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
        let now = self.clock.millis(now);
        self.find_query(q)
            .and_then(|id| self.entry(id))
            .is_some_and(|e| e.refresh.in_flight(now))
    }

    /// Caches `stored` as the answer to `q`, replacing any previous one and ending its
    /// refresh in flight (cached or not; not cached counts as a failed refresh, see
    /// [`Shard::refresh_failed`]). Returns whether it was cached.
    ///
    /// Not cached: uncacheable answers, another core's stale copies, zero TTLs, SERVFAIL when `servfail_ttl` is 0, a
    /// class `disable`d for the name's zone, names outside the cache's zones, and
    /// answers larger than the byte budget (counted in `drops`). A SERVFAIL never
    /// replaces an answer that is still servable (fresh or within the serve_stale
    /// window): a failed refresh keeps the good answer (CoreDNS overwrote it). With
    /// `serve_stale_policy prefer_positive`, nothing but another positive answer
    /// replaces a servable positive one (a new NXDOMAIN or NODATA is not cached).
    pub fn insert(&mut self, q: &Query<'_>, stored: StoredAnswer, now: Instant) -> bool {
        self.insert_as(q, stored, now, 0)
    }

    /// [`Shard::insert`] of a copy of an entry another shard owns (the answer came
    /// through it, or was asked of the upstream for it): kept in the copy pools, so
    /// that copies of hot names never take the room of entries this shard owns, and
    /// not counted as entries (the owner counts it).
    pub fn insert_copy(&mut self, q: &Query<'_>, stored: StoredAnswer, now: Instant) -> bool {
        self.insert_as(q, stored, now, COPY)
    }

    /// [`Shard::insert`] into the pools of `kind` (0: owned, or [`COPY`]).
    fn insert_as(
        &mut self,
        q: &Query<'_>,
        stored: StoredAnswer,
        now: Instant,
        kind: usize,
    ) -> bool {
        let now = self.clock.millis(now);
        let key = Key::of(q);
        let hash = key.hash(&self.hasher);
        let old = self.find(&key, hash);
        let old_servable = old
            .and_then(|id| self.entry(id))
            .filter(|e| e.servable(now, self.stale));
        let keep_positive = self.prefer_positive && !stored.answering();
        let keep_old = old_servable.is_some_and(|e| {
            stored.class() == AnswerClass::ServFail || (keep_positive && e.answering())
        });
        let bytes = footprint(packed_len(q.qname.len(), &stored));
        let pool = match self.admit(q.qname, &stored, kind) {
            Some(_) if keep_old => None,
            Some(_) if bytes > self.bytes_max => {
                self.counters.drops += 1;
                None
            }
            pool => pool,
        };
        // One allocation for the whole entry; `stored`'s own are freed on return.
        let packed = pool.and_then(|pool| Some((pool, pack(q.qname, q.qtype, q.qclass, &stored)?)));
        let Some((pool, data)) = packed else {
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
        let entry = Entry {
            data,
            freq: freq.unwrap_or_default(),
            bucket_pos: 0,
            refresh: RefreshMark::default(),
            inserted: Stamp::new(now),
            referenced: false,
            bits: key.bits(),
        };
        self.place(pool, entry, hash);
        true
    }

    /// The pool `stored` goes to, if the configuration lets it be cached for `name`
    /// (and it is not another core's stale copy).
    fn admit(&self, name: &[u8], stored: &StoredAnswer, kind: usize) -> Option<usize> {
        if stored.is_stale() {
            return None;
        }
        let pool = kind
            + match stored.class() {
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
    fn make_room(&mut self, pool: usize, bytes: usize, now: Millis) -> bool {
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

    /// Where to evict for bytes: a pool holding an expired entry, else the fattest
    /// copy pool (the owner still has the entry), else the fattest.
    fn victim_pool(&self, now: Millis) -> usize {
        let expired = (0..POOLS)
            .rev()
            .find(|&p| self.pools[p].first_expired(now).is_some());
        if let Some(pool) = expired {
            return pool;
        }
        let (copy_success, copy_denial) = (&self.pools[COPY + SUCCESS], &self.pools[COPY + DENIAL]);
        if copy_success.len + copy_denial.len > 0 {
            return match copy_success.bytes >= copy_denial.bytes {
                true => COPY + SUCCESS,
                false => COPY + DENIAL,
            };
        }
        if self.pools[SUCCESS].bytes >= self.pools[DENIAL].bytes {
            SUCCESS
        } else {
            DENIAL
        }
    }

    fn place(&mut self, pool: usize, entry: Entry, hash: u64) {
        self.bytes += entry.bytes();
        let slot = self.pools[pool].put(entry);
        let id = SlotId::new(pool, slot);
        let (pools, hasher) = (&self.pools, &self.hasher);
        let rehash = |id: &SlotId| {
            let e = pools.get(id.pool()).and_then(|p| p.entry(id.slot()));
            e.map_or(0, |e| entry_hash(hasher, e))
        };
        self.index.insert_unique(hash, id, rehash);
    }

    /// Removes the entry `id`; false if there is none.
    fn remove(&mut self, id: SlotId) -> bool {
        let Some(entry) = self
            .pools
            .get_mut(id.pool())
            .and_then(|p| p.take(id.slot()))
        else {
            return false;
        };
        let hash = entry_hash(&self.hasher, &entry);
        if let Ok(found) = self.index.find_entry(hash, |&other| other == id) {
            found.remove();
        }
        self.bytes = self.bytes.saturating_sub(entry.bytes());
        true
    }

    /// Evicts one entry of `pool`: an expired one if there is one (to within a
    /// second), else by CLOCK (advance the hand, clearing reference bits, take the
    /// first unreferenced entry). Returns false if the pool is empty.
    fn evict(&mut self, pool: usize, now: Millis) -> bool {
        let n = self.pools[pool].slots.len();
        if self.pools[pool].len == 0 || n == 0 {
            return false;
        }
        if let Some(slot) = self.pools[pool].first_expired(now) {
            if self.remove(SlotId::new(pool, slot)) {
                self.pools[pool].evictions += 1;
                return true;
            }
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
    /// earliest first; returns how many. Takes whole expiry buckets from the front
    /// while they are dead, then looks through the one bucket that is dying (one
    /// second of expiries), so the work is proportional to what it removes plus one
    /// bucket, whatever the size of the shard.
    pub fn sweep(&mut self, now: Instant, budget: usize) -> usize {
        let now = self.clock.millis(now);
        let mut removed = 0;
        for pool in 0..POOLS {
            while removed < budget {
                let Some((&b, slots)) = self.pools[pool].expiry.first_key_value() else {
                    break;
                };
                let dead_from = bucket_end(b).saturating_add(self.stale);
                if now >= dead_from {
                    let slot = slots.last().map(|&s| s as usize);
                    if slot.is_some_and(|slot| self.remove(SlotId::new(pool, slot))) {
                        removed += 1;
                        continue;
                    }
                    break;
                }
                if now.saturating_add(1000) >= dead_from {
                    // Dying: some of this second's entries are dead already.
                    let p = &self.pools[pool];
                    let dead: Vec<usize> = slots
                        .iter()
                        .map(|&s| s as usize)
                        .filter(|&s| p.entry(s).is_some_and(|e| e.dead(now, self.stale)))
                        .take(budget - removed)
                        .collect();
                    for slot in dead {
                        removed += usize::from(self.remove(SlotId::new(pool, slot)));
                    }
                }
                break;
            }
        }
        self.counters.expired += removed as u64;
        removed
    }
}

#[cfg(test)]
impl Shard {
    /// Panics if the index, pools, expiry buckets and byte counts disagree.
    pub(super) fn check_invariants(&self) {
        let mut total_bytes = 0;
        for (i, p) in self.pools.iter().enumerate() {
            let live: Vec<&Entry> = p.slots.iter().flatten().collect();
            assert_eq!(live.len(), p.len, "pool {i} len");
            assert_eq!(p.free.len() + p.len, p.slots.len(), "pool {i} free list");
            assert!(p.len <= p.capacity, "pool {i} over capacity");
            let bytes: usize = live.iter().map(|e| e.bytes()).sum();
            assert_eq!(bytes, p.bytes, "pool {i} bytes");
            total_bytes += bytes;
            let mut in_buckets = 0;
            for (&b, slots) in &p.expiry {
                assert!(!slots.is_empty(), "pool {i} empty bucket {b}");
                for (pos, &slot) in slots.iter().enumerate() {
                    let e = p.entry(slot as usize).expect("bucket names a live slot");
                    assert_eq!(bucket_of(e.expires()), b, "pool {i} slot {slot} bucket");
                    assert_eq!(e.bucket_pos as usize, pos, "pool {i} slot {slot} position");
                    let id = SlotId::new(i, slot as usize);
                    let hash = entry_hash(&self.hasher, e);
                    assert!(self.index.find(hash, |&x| x == id).is_some(), "indexed");
                }
                in_buckets += slots.len();
            }
            assert_eq!(in_buckets, p.len, "pool {i} expiry buckets");
        }
        let entries: usize = self.pools.iter().map(|p| p.len).sum();
        assert_eq!(self.index.len(), entries);
        assert_eq!(total_bytes, self.bytes);
        assert!(self.bytes <= self.bytes_max);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn entry_is_48_bytes_with_one_allocation() {
        // `data` is the only field that owns memory; the rest is inline.
        assert_eq!(size_of::<Option<Entry>>(), 48);
        assert_eq!(
            (
                malloc_chunk(0),
                malloc_chunk(24),
                malloc_chunk(25),
                malloc_chunk(56)
            ),
            (32, 32, 48, 64)
        );
        assert_eq!(malloc_chunk(usize::MAX), usize::MAX / 16 * 16);
        assert_eq!(bucket_of(u64::MAX), u32::MAX);
        assert_eq!(bucket_end(u32::MAX), (u64::from(u32::MAX) + 1) * 1000);
    }

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
