//! An upstream answer normalised for copying: validated once, classified like
//! CoreDNS `response.Typify`, stripped of its OPT, and kept as the bytes after the
//! question plus the offsets of every TTL, so that a hit is a copy and a few patches.
//! A plain answer (its records of well-known types, its OPT last) is walked in place
//! ([`walk_answer`]); any other is decoded and re-encoded with hickory-proto, and
//! both paths decide class and TTL from the same [`Summary`].
//!
//! A cache entry keeps its question name and its answer in one allocation (see
//! [`pack`]); [`write_reply`] and the cache's hits both write from an [`AnswerRef`].

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::ProtoError;

use crate::config::CacheConfig;
use crate::limits::{
    ANSWER_TTL_SECS_DEFAULT, ANSWER_TTL_SECS_MAX, EDNS_UDP_PAYLOAD_BYTES_OURS, NAME_BYTES_MAX,
};
use crate::wire::{
    answers_question, fitting_records, flags, split_records, walk_answer, write_opt, AnswerWalk,
    Header, Query, Reader, Split, WireError, Writer, HEADER_BYTES, OPT_BYTES,
};

/// How an answer is cached (CoreDNS `response.Type` folded into cache decisions,
/// with RFC 2308 §5: a denial without SOA is not cached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerClass {
    /// NOERROR whose answer section answers the question, NOERROR empty without SOA,
    /// delegation.
    Success,
    /// NXDOMAIN with SOA (a CNAME chain in the answer section or not); NODATA:
    /// NOERROR with SOA in authority and no answer to the question (an empty answer
    /// section, or a CNAME chain that does not reach the type asked).
    Denial,
    /// SERVFAIL, NOTIMP: cached for `servfail_ttl`.
    ServFail,
    /// NXDOMAIN without SOA, NOERROR with records that do not answer the question and
    /// no SOA, REFUSED, FORMERR, other rcodes, TC=1, transfers, non-QUERY opcodes:
    /// passed through, never cached.
    Uncacheable,
}

/// Why an upstream answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("upstream answer does not parse: {0}")]
    Parse(#[source] ProtoError),
    #[error("upstream message is not a response")]
    NotResponse,
    #[error("upstream answer's question does not match the query")]
    QuestionMismatch,
    #[error("re-encoding the upstream answer failed: {0}")]
    Encode(#[source] ProtoError),
    #[error("re-encoded upstream answer unreadable: {0}")]
    Wire(#[from] WireError),
}

/// CoreDNS `response.Type`, the finer classification behind [`AnswerClass`] and the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NoError,
    Delegation,
    NoData,
    NameError,
    /// NXDOMAIN without SOA (CoreDNS 1.14: a `NameError` its cache refuses).
    NameErrorNoSoa,
    /// NOERROR with records that do not answer the question, no SOA (CoreDNS 1.14:
    /// a `NoError` its cache refuses, an SOA-less NODATA).
    Unanswered,
    ServerError,
    Other,
}

/// An upstream answer ready to be written to any client that asked the same question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// Answer, authority and additional records (no OPT), compressed against a
    /// message whose question is `question_len` bytes at offset 12.
    records: Box<[u8]>,
    /// Offsets of each record's TTL within `records`, patched on every reply, as
    /// little-endian u16 pairs (the form a packed cache entry keeps them in).
    ttl_offsets: Box<[u8]>,
    meta: Meta,
    /// A NOERROR or NXDOMAIN answer to a QUERY, cacheable or not: what may replace a
    /// stale entry under `serve_stale` (RFC 8767 §4, CoreDNS's verify writer).
    refreshes: bool,
    /// A copy of another core's expired entry ([`StoredAnswer::into_stale`]).
    stale: bool,
    /// Taken from a cache, not from an upstream ([`StoredAnswer::into_cached`]).
    cached: bool,
}

/// What an answer carries besides its record bytes, owned or borrowed alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// ANCOUNT, NSCOUNT, ARCOUNT of the records.
    counts: [u16; 3],
    /// Upstream header flags we pass on: AA, TC, RA, AD.
    flags: u16,
    /// Full rcode, extended bits included (they travel in our OPT).
    rcode: u16,
    /// Length of the question the records were encoded behind; a reply to a question
    /// of another length would break the compression pointers.
    question_len: usize,
    class: AnswerClass,
    /// A NOERROR whose answer section answers the question (the CNAME chain reaches
    /// the type asked): a positive answer `serve_stale_policy prefer_positive` keeps.
    answering: bool,
    /// TTL of the entry and of every record in a reply (CoreDNS rewrites all TTLs to it).
    ttl_secs: u32,
}

impl StoredAnswer {
    /// Parses `answer` (ID already matched by the caller), checks it answers `q`,
    /// classifies it, computes its TTL and keeps it without OPT. A plain answer (see
    /// [`walk_answer`]) is taken as it is; any other is decoded and re-encoded.
    pub fn from_upstream(
        answer: &[u8],
        q: &Query<'_>,
        cfg: &CacheConfig,
    ) -> Result<StoredAnswer, AnswerError> {
        check_question(answer, q)?;
        match StoredAnswer::from_wire(answer, q, cfg) {
            Some(stored) => Ok(stored),
            None => StoredAnswer::from_decoded(answer, q, cfg),
        }
    }

    /// The fast path: `answer` (question already checked) walked in place, its
    /// records kept as they are. None if it is not plain.
    pub(super) fn from_wire(
        answer: &[u8],
        q: &Query<'_>,
        cfg: &CacheConfig,
    ) -> Option<StoredAnswer> {
        let walk = walk_answer(answer).filter(|w| w.split.question_len == q.question().len())?;
        let summary = Summary::of_walk(&walk, answer);
        Some(StoredAnswer::new(&walk.split, &summary, q.qtype, cfg))
    }

    /// The full path: `answer` (question already checked) decoded with hickory-proto
    /// and re-encoded without its OPT.
    pub(super) fn from_decoded(
        answer: &[u8],
        q: &Query<'_>,
        cfg: &CacheConfig,
    ) -> Result<StoredAnswer, AnswerError> {
        let mut msg = Message::from_vec(answer).map_err(AnswerError::Parse)?;
        if msg.message_type() != MessageType::Response {
            return Err(AnswerError::NotResponse);
        }
        let summary = Summary::of_message(&msg, answer);
        // The high rcode bits live in the OPT we drop; keep the header to the low bits.
        msg.set_response_code(ResponseCode::from_low(msg.response_code().low()));
        *msg.extensions_mut() = None;
        let bytes = msg.to_vec().map_err(AnswerError::Encode)?;
        let split = split_records(&bytes)?;
        if split.question_len != q.question().len() {
            return Err(AnswerError::QuestionMismatch);
        }
        Ok(StoredAnswer::new(&split, &summary, q.qtype, cfg))
    }

    /// Assembles an answer from a message without its OPT (header, records and their
    /// TTL offsets) and the summary of the message it came from.
    fn new(split: &Split<'_>, summary: &Summary, qtype: u16, cfg: &CacheConfig) -> StoredAnswer {
        let kind = typify(summary, qtype);
        let h = split.header;
        StoredAnswer {
            refreshes: !matches!(kind, Kind::ServerError | Kind::Other),
            stale: false,
            cached: false,
            records: split.records.into(),
            ttl_offsets: split
                .ttl_offsets
                .iter()
                .flat_map(|o| o.to_le_bytes())
                .collect(),
            meta: Meta {
                counts: [h.ancount, h.nscount, h.arcount],
                flags: h.flags & (flags::AA | flags::TC | flags::RA | flags::AD),
                rcode: summary.rcode,
                question_len: split.question_len,
                class: class_of_kind(kind),
                answering: kind == Kind::NoError && summary.answers_question,
                ttl_secs: entry_ttl(summary, kind, cfg),
            },
        }
    }

    pub fn class(&self) -> AnswerClass {
        self.meta.class
    }

    /// This answer as the copy of an expired cache entry that another core answers
    /// with under serve_stale: every record of a reply carries `ttl_secs` (its
    /// RESPONSE_TTL), and no cache keeps it (it would be fresh there).
    pub fn into_stale(mut self, ttl_secs: u32) -> StoredAnswer {
        self.meta.ttl_secs = ttl_secs;
        self.stale = true;
        self.cached = true;
        self
    }

    /// This answer as one read from a cache entry (another core's, or this core's
    /// filled since the miss) rather than from an upstream: the query it answers is
    /// a cache hit, as CoreDNS counts one.
    pub fn into_cached(mut self) -> StoredAnswer {
        self.cached = true;
        self
    }

    /// Read from a cache entry ([`StoredAnswer::into_cached`], stale copies too).
    pub fn from_cache(&self) -> bool {
        self.cached
    }

    /// A copy of an expired entry ([`StoredAnswer::into_stale`]).
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Answers the question positively (see [`Meta`]'s `answering`).
    pub fn answering(&self) -> bool {
        self.meta.answering
    }

    /// May replace a stale entry: a NOERROR or NXDOMAIN answer to a QUERY, cached or
    /// not (RFC 8767 §4); SERVFAIL, REFUSED, TC=1 and the like may not.
    pub fn refreshes(&self) -> bool {
        self.refreshes
    }

    pub fn ttl_secs(&self) -> u32 {
        self.meta.ttl_secs
    }

    /// The full response code.
    pub fn rcode(&self) -> u16 {
        self.meta.rcode
    }

    /// Heap bytes this answer holds.
    pub fn heap_bytes(&self) -> usize {
        self.records.len() + self.ttl_offsets.len()
    }

    fn as_ref(&self) -> AnswerRef<'_> {
        AnswerRef {
            records: &self.records,
            ttl_offsets: &self.ttl_offsets,
            meta: self.meta,
        }
    }
}

#[cfg(test)]
impl StoredAnswer {
    /// Everything but the record bytes (class, TTL, rcode, counts, flags, question
    /// length), which two ways of storing the same answer must agree on.
    pub(super) fn meta(&self) -> Meta {
        self.meta
    }
}

/// What a reply is written from: a [`StoredAnswer`], or the answer part of a packed
/// cache entry, borrowed.
#[derive(Debug, Clone, Copy)]
pub(super) struct AnswerRef<'a> {
    records: &'a [u8],
    /// Little-endian u16 offsets of the TTLs within `records`.
    ttl_offsets: &'a [u8],
    meta: Meta,
}

impl AnswerRef<'_> {
    pub(super) fn class(&self) -> AnswerClass {
        self.meta.class
    }

    pub(super) fn ttl_secs(&self) -> u32 {
        self.meta.ttl_secs
    }

    pub(super) fn answering(&self) -> bool {
        self.meta.answering
    }
}

/// Bytes of a packed entry before its name: qtype, qclass, TTL (u32), the three
/// counts, flags, rcode (u16 each), class (with [`ANSWERING`]), name length (u8
/// each), TTL offsets (u16); all little-endian.
const PACKED_HEADER_BYTES: usize = 22;

/// Length of [`pack`]'s output for a name of `name_len` bytes.
pub(super) fn packed_len(name_len: usize, stored: &StoredAnswer) -> usize {
    PACKED_HEADER_BYTES + name_len + stored.records.len() + stored.ttl_offsets.len()
}

/// A cache entry's one allocation: a small header, `name` lower-cased, the records,
/// the TTL offsets. None if it cannot be packed (a name longer than 255 bytes, more
/// than 65,535 TTLs, or an answer built behind a question of another length).
pub(super) fn pack(
    name: &[u8],
    qtype: u16,
    qclass: u16,
    stored: &StoredAnswer,
) -> Option<Box<[u8]>> {
    let name_len = u8::try_from(name.len()).ok()?;
    let offsets = u16::try_from(stored.ttl_offsets.len() / 2).ok()?;
    let m = stored.meta;
    if m.question_len != name.len().checked_add(4)? {
        return None;
    }
    let mut v = Vec::with_capacity(packed_len(name.len(), stored));
    for x in [qtype, qclass] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&m.ttl_secs.to_le_bytes());
    for x in m.counts.into_iter().chain([m.flags, m.rcode]) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    let answering = if m.answering { ANSWERING } else { 0 };
    v.extend_from_slice(&[class_code(m.class) | answering, name_len]);
    v.extend_from_slice(&offsets.to_le_bytes());
    v.extend(name.iter().map(u8::to_ascii_lowercase));
    v.extend_from_slice(&stored.records);
    v.extend_from_slice(&stored.ttl_offsets);
    Some(v.into_boxed_slice())
}

/// The bit of a packed entry's class byte that says it answers its question.
const ANSWERING: u8 = 0x80;

fn class_code(class: AnswerClass) -> u8 {
    match class {
        AnswerClass::Success => 0,
        AnswerClass::Denial => 1,
        AnswerClass::ServFail => 2,
        AnswerClass::Uncacheable => 3,
    }
}

fn class_of(code: u8) -> AnswerClass {
    match code & !ANSWERING {
        0 => AnswerClass::Success,
        1 => AnswerClass::Denial,
        2 => AnswerClass::ServFail,
        _ => AnswerClass::Uncacheable,
    }
}

/// A packed entry read back: its key (the name lower-cased) and its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packed<'a> {
    pub(super) qtype: u16,
    pub(super) qclass: u16,
    pub(super) name: &'a [u8],
    pub(super) answer: AnswerRef<'a>,
}

impl<'a> Packed<'a> {
    /// Reads what [`pack`] wrote; None if `data` is not that (never, for its output).
    #[inline]
    pub(super) fn read(data: &'a [u8]) -> Option<Packed<'a>> {
        let (head, rest) = data.split_first_chunk::<PACKED_HEADER_BYTES>()?;
        let [t0, t1, c0, c1, l0, l1, l2, l3, a0, a1, n0, n1, r0, r1, f0, f1, k0, k1, class, name_len, o0, o1] =
            *head;
        let name_len = usize::from(name_len);
        let offsets_len = usize::from(u16::from_le_bytes([o0, o1])) * 2;
        let (name, rest) = rest.split_at_checked(name_len)?;
        let (records, ttl_offsets) = rest.split_at_checked(rest.len().checked_sub(offsets_len)?)?;
        Some(Packed {
            qtype: u16::from_le_bytes([t0, t1]),
            qclass: u16::from_le_bytes([c0, c1]),
            name,
            answer: AnswerRef {
                records,
                ttl_offsets,
                meta: Meta {
                    counts: [
                        u16::from_le_bytes([a0, a1]),
                        u16::from_le_bytes([n0, n1]),
                        u16::from_le_bytes([r0, r1]),
                    ],
                    flags: u16::from_le_bytes([f0, f1]),
                    rcode: u16::from_le_bytes([k0, k1]),
                    question_len: name_len + 4,
                    class: class_of(class),
                    answering: class & ANSWERING != 0,
                    ttl_secs: u32::from_le_bytes([l0, l1, l2, l3]),
                },
            },
        })
    }
}

/// The key of a packed entry (qtype, qclass, lower-cased name), without reading the
/// rest: what a lookup compares before it knows the entry is the one.
#[inline]
pub(super) fn packed_key(data: &[u8]) -> Option<(u16, u16, &[u8])> {
    let (head, rest) = data.split_first_chunk::<PACKED_HEADER_BYTES>()?;
    let &[t0, t1, c0, c1, .., name_len, _, _] = head;
    let name = rest.get(..usize::from(name_len))?;
    Some((
        u16::from_le_bytes([t0, t1]),
        u16::from_le_bytes([c0, c1]),
        name,
    ))
}

/// The TTL of a packed entry, without reading the rest.
pub(super) fn packed_ttl_secs(data: &[u8]) -> u32 {
    match data.first_chunk::<8>() {
        Some(&[_, _, _, _, l0, l1, l2, l3]) => u32::from_le_bytes([l0, l1, l2, l3]),
        None => 0,
    }
}

/// Same question, compared on the raw bytes: name ignoring case, type, class.
fn check_question(answer: &[u8], q: &Query<'_>) -> Result<(), AnswerError> {
    let mut r = Reader::new(answer);
    let h = Header::read(&mut r)?;
    if h.flags & flags::QR == 0 {
        return Err(AnswerError::NotResponse);
    }
    let mut name = [0u8; NAME_BYTES_MAX];
    let len = r.name_expanded(&mut name)?;
    let same_name = name
        .get(..len)
        .is_some_and(|n| n.eq_ignore_ascii_case(q.qname));
    if h.qdcount != 1 || !same_name || r.u16()? != q.qtype || r.u16()? != q.qclass {
        return Err(AnswerError::QuestionMismatch);
    }
    Ok(())
}

/// What classification and the TTL are decided on, taken from either a decoded
/// message or a walk over the wire bytes, so that both paths decide alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Summary {
    /// The opcode is QUERY.
    query: bool,
    truncated: bool,
    /// Full response code, extended bits included.
    rcode: u16,
    answers: usize,
    authorities: usize,
    soa_in_authority: bool,
    ns_in_authority: bool,
    /// A NOERROR's answer section answers the question ([`answers_question`]);
    /// false for other rcodes and empty answer sections.
    answers_question: bool,
    /// Smallest TTL of the records of all sections, OPT excluded; `u32::MAX` if none.
    min_ttl: u32,
}

impl Summary {
    /// The summary of `m`, decoded from `wire`.
    pub(super) fn of_message(m: &Message, wire: &[u8]) -> Summary {
        let in_authority = |t: RecordType| m.name_servers().iter().any(|r| r.record_type() == t);
        let rcode = u16::from(m.response_code());
        Summary {
            query: m.op_code() == OpCode::Query,
            truncated: m.truncated(),
            rcode,
            answers: m.answers().len(),
            answers_question: chain_answers(rcode, m.answers().len(), wire),
            authorities: m.name_servers().len(),
            soa_in_authority: in_authority(RecordType::SOA),
            ns_in_authority: in_authority(RecordType::NS),
            min_ttl: m
                .all_sections()
                .filter(|r| r.record_type() != RecordType::OPT)
                .map(Record::ttl)
                .fold(u32::MAX, u32::min),
        }
    }

    /// The summary of `w`, walked over `wire`.
    pub(super) fn of_walk(w: &AnswerWalk<'_>, wire: &[u8]) -> Summary {
        let answers = usize::from(w.split.header.ancount);
        Summary {
            query: w.split.header.opcode() == 0,
            truncated: w.split.header.flags & flags::TC != 0,
            rcode: w.rcode,
            answers,
            answers_question: chain_answers(w.rcode, answers, wire),
            authorities: usize::from(w.split.header.nscount),
            soa_in_authority: w.soa_in_authority,
            ns_in_authority: w.ns_in_authority,
            min_ttl: w.min_ttl,
        }
    }
}

/// Whether a NOERROR answer's records answer its question; walked only when there
/// are records to walk.
fn chain_answers(rcode: u16, answers: usize, wire: &[u8]) -> bool {
    rcode == RCODE_NOERROR && answers > 0 && answers_question(wire)
}

fn class_of_kind(kind: Kind) -> AnswerClass {
    match kind {
        Kind::NoError | Kind::Delegation => AnswerClass::Success,
        Kind::NoData | Kind::NameError => AnswerClass::Denial,
        Kind::ServerError => AnswerClass::ServFail,
        Kind::NameErrorNoSoa | Kind::Unanswered | Kind::Other => AnswerClass::Uncacheable,
    }
}

/// Response codes `typify` tells apart.
const RCODE_NOERROR: u16 = 0;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;

/// CoreDNS 1.14 `response.Typify` and `cacheResponseType` with RFC 2308 §5 as its
/// cache applies it: a NOERROR whose records do not answer the question is NODATA
/// with an SOA and uncacheable without; an NXDOMAIN is a denial with an SOA and
/// uncacheable without. Unlike CoreDNS 1.14, an NXDOMAIN with a CNAME chain and an
/// SOA is a denial (RFC 2308 §2.1, and CoreDNS up to 1.12, which node-cache 1.26
/// runs), not an error answered from upstream every time.
fn typify(s: &Summary, qtype: u16) -> Kind {
    let transfer = matches!(RecordType::from(qtype), RecordType::AXFR | RecordType::IXFR);
    if !s.query || transfer || s.truncated {
        return Kind::Other;
    }
    let answers = s.answers > 0;
    match s.rcode {
        RCODE_NOERROR if answers && s.answers_question => Kind::NoError,
        RCODE_NOERROR if s.soa_in_authority => Kind::NoData,
        RCODE_NOERROR if answers => Kind::Unanswered,
        RCODE_NOERROR if s.ns_in_authority => Kind::Delegation,
        RCODE_NOERROR => Kind::NoError,
        RCODE_NXDOMAIN if s.soa_in_authority => Kind::NameError,
        RCODE_NXDOMAIN => Kind::NameErrorNoSoa,
        RCODE_SERVFAIL | RCODE_NOTIMP => Kind::ServerError,
        _ => Kind::Other,
    }
}

/// CoreDNS `dnsutil.MinimalTTL` then `computeTTL`: min over all records (OPT
/// excluded) starting from 1 h, 5 s when there is nothing to look at, clamped to the
/// class's [MINTTL, cap] (cap wins); SERVFAIL uses `servfail_ttl`.
fn entry_ttl(s: &Summary, kind: Kind, cfg: &CacheConfig) -> u32 {
    if kind == Kind::ServerError {
        return secs(cfg.servfail_ttl);
    }
    // The uncacheable NXDOMAIN and NOERROR still get their TTLs capped in the reply,
    // as CoreDNS's cache rewrites every answer it passes on.
    let examined = matches!(
        kind,
        Kind::NoError | Kind::NameError | Kind::NoData | Kind::NameErrorNoSoa | Kind::Unanswered
    );
    let msg_ttl = if !examined || s.answers + s.authorities == 0 {
        ANSWER_TTL_SECS_DEFAULT
    } else {
        s.min_ttl.min(ANSWER_TTL_SECS_MAX)
    };
    let bounds = match kind {
        Kind::NoData | Kind::NameError | Kind::NameErrorNoSoa => cfg.denial,
        _ => cfg.success,
    };
    msg_ttl.max(secs(bounds.ttl_min)).min(secs(bounds.ttl_max))
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Writes a reply to `q` from `stored` into `out` and returns its length (0 if not
/// even a truncated reply fits in `out`, or if `stored` was built for a question of
/// another length). Header: client's ID, opcode, RD, CD; QR; AA forced on for a cache
/// `hit`; RA, TC and rcode from upstream; AD kept only if the query had DO or AD. Then
/// the client's question verbatim, the records with every TTL set to `ttl_secs`, and
/// an OPT (our UDP size, client's DO) if the client sent one. A reply longer than
/// `max_len` keeps as many whole records as fit (answer, then authority, then
/// additional; [`fitting_records`]) and the OPT, with TC=1, as CoreDNS does: a
/// resolver that never retries over TCP (musl before 1.2.4) still gets addresses.
pub fn write_reply(
    stored: &StoredAnswer,
    q: &Query<'_>,
    ttl_secs: u32,
    hit: bool,
    out: &mut [u8],
    max_len: usize,
) -> usize {
    write_answer(stored.as_ref(), q, ttl_secs, hit, out, max_len)
}

/// [`write_reply`] from a borrowed answer (a packed cache entry's).
pub(super) fn write_answer(
    stored: AnswerRef<'_>,
    q: &Query<'_>,
    ttl_secs: u32,
    hit: bool,
    out: &mut [u8],
    max_len: usize,
) -> usize {
    let question = q.question();
    if question.len() != stored.meta.question_len {
        return 0;
    }
    let mut f =
        flags::QR | (q.flags & (flags::OPCODE_MASK | flags::RD | flags::CD)) | stored.meta.flags;
    f |= stored.meta.rcode & flags::RCODE_MASK;
    if hit {
        f |= flags::AA;
    }
    if !(q.dnssec_ok() || q.ad()) {
        f &= !flags::AD;
    }
    let opt = u16::from(q.edns.is_some());
    let [an, ns, ar] = stored.meta.counts;
    let mut header = Header {
        id: q.id,
        flags: f,
        qdcount: 1,
        ancount: an,
        nscount: ns,
        arcount: ar.saturating_add(opt),
    };
    if let Some(len) = write_whole(&header, question, &stored, ttl_secs, q, out, max_len) {
        return len;
    }
    let all = (
        usize::from(an) + usize::from(ns) + usize::from(ar),
        stored.records,
    );
    let mut w = Writer::with_limit(out, max_len);
    if write_records(&mut w, &header, question, &stored, all, ttl_secs, q).is_ok() {
        return w.len();
    }
    // Too long: the records that fit, TC=1.
    let fixed = HEADER_BYTES + question.len() + if opt == 1 { OPT_BYTES } else { 0 };
    let room = w.capacity().saturating_sub(fixed);
    let kept = fitting_records(stored.records, ttl_offsets(&stored), room);
    let in_answer = kept.0.min(usize::from(an));
    let in_authority = (kept.0 - in_answer).min(usize::from(ns));
    let in_additional = kept.0 - in_answer - in_authority;
    header.flags |= flags::TC;
    // Each count is at most the stored one, a u16.
    (header.ancount, header.nscount) = (in_answer as u16, in_authority as u16);
    header.arcount = (in_additional as u16).saturating_add(opt);
    w.truncate(0);
    match write_records(&mut w, &header, question, &stored, kept, ttl_secs, q) {
        Ok(()) => w.len(),
        Err(_) => 0,
    }
}

/// The common case of [`write_answer`]: the whole answer fits `max_len`, so it is
/// copied as one block (header, question, records, OPT) and its TTLs patched, with no
/// walk over the records. None when it does not fit (the caller truncates).
#[inline]
fn write_whole(
    header: &Header,
    question: &[u8],
    stored: &AnswerRef<'_>,
    ttl_secs: u32,
    q: &Query<'_>,
    out: &mut [u8],
    max_len: usize,
) -> Option<usize> {
    let opt = if q.edns.is_some() { OPT_BYTES } else { 0 };
    let records_at = HEADER_BYTES + question.len();
    let len = records_at + stored.records.len() + opt;
    if len > max_len {
        return None;
    }
    let (head, rest) = out.get_mut(..len)?.split_at_mut(records_at);
    let (fixed, asked) = head.split_at_mut(HEADER_BYTES);
    fixed.copy_from_slice(&header_bytes(header));
    asked.copy_from_slice(question);
    let (records, tail) = rest.split_at_mut(stored.records.len());
    records.copy_from_slice(stored.records);
    let ttl = ttl_secs.to_be_bytes();
    for off in ttl_offsets(stored) {
        records.get_mut(off..off + 4)?.copy_from_slice(&ttl);
    }
    write_client_opt(&mut Writer::new(tail), stored, q).ok()?;
    Some(len)
}

/// A header's 12 wire bytes.
#[inline]
fn header_bytes(h: &Header) -> [u8; HEADER_BYTES] {
    let fields = [h.id, h.flags, h.qdcount, h.ancount, h.nscount, h.arcount];
    let mut bytes = [0u8; HEADER_BYTES];
    for (pair, field) in bytes.chunks_exact_mut(2).zip(fields) {
        pair.copy_from_slice(&field.to_be_bytes());
    }
    bytes
}

/// The offsets of the TTLs within the records, in order.
fn ttl_offsets<'a>(stored: &AnswerRef<'a>) -> impl Iterator<Item = usize> + 'a {
    stored.ttl_offsets.chunks_exact(2).map(|o| {
        usize::from(u16::from_le_bytes(
            <[u8; 2]>::try_from(o).unwrap_or_default(),
        ))
    })
}

/// Header, question, the first `kept.0` records (their bytes `kept.1`) with every
/// TTL set to `ttl_secs`, and the client's OPT.
#[inline]
fn write_records(
    w: &mut Writer<'_>,
    header: &Header,
    question: &[u8],
    stored: &AnswerRef<'_>,
    kept: (usize, &[u8]),
    ttl_secs: u32,
    q: &Query<'_>,
) -> Result<(), WireError> {
    header.write(w)?;
    w.bytes(question)?;
    let base = w.len();
    w.bytes(kept.1)?;
    for off in ttl_offsets(stored).take(kept.0) {
        w.set_u32(base + off, ttl_secs)?;
    }
    write_client_opt(w, stored, q)
}
fn write_client_opt(
    w: &mut Writer<'_>,
    stored: &AnswerRef<'_>,
    q: &Query<'_>,
) -> Result<(), WireError> {
    match q.edns {
        Some(e) => write_opt(
            w,
            EDNS_UDP_PAYLOAD_BYTES_OURS,
            stored.meta.rcode,
            e.dnssec_ok,
        ),
        None => Ok(()),
    }
}
