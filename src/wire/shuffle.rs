//! `loadbalance round_robin` on the wire: the records of an answer reordered in
//! place, the message's length unchanged, so the plugin can do it on the answer's
//! way back into the buffer that goes out (never the cache's stored copy).
//!
//! - A and AAAA: within each run of consecutive records of one type and one owner
//!   (an RRset), the addresses are permuted. Only the 4 or 16 address bytes move,
//!   so no compression pointer can be disturbed (nothing points into an address).
//! - MX: within each run of consecutive MX records of one owner, the whole records
//!   are permuted, and every compression pointer of the message that pointed into a
//!   moved record is moved with it. If a pointer would then point forward (which
//!   strict decoders refuse), the run is left as it was.
//!
//! Like CoreDNS's, only NOERROR answers are shuffled. A message this walker cannot
//! follow (an unknown label type, a name running past its record) is left alone.

use super::cursor::Reader;
use super::header::{flags, Header, HEADER_BYTES};
use crate::limits::NAME_BYTES_MAX;

const TYPE_A: u16 = 1;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;
/// Labels one name may have in place before its end or pointer.
const LABELS_MAX: usize = NAME_BYTES_MAX / 2;

/// One record's place in the message.
#[derive(Clone, Copy)]
struct Rec {
    start: usize,
    section: u8,
    rtype: u16,
    rdata_at: usize,
    end: usize,
}

/// Shuffles the A, AAAA and MX records of `msg` in place, drawing from `rng`.
pub fn shuffle_answer(msg: &mut [u8], rng: &mut impl FnMut() -> u64) {
    let Some(header) = Header::parse(msg) else {
        return;
    };
    if header.flags & flags::RCODE_MASK != 0 || !header.is_response() {
        return;
    }
    if !has_run(msg, &header) {
        return;
    }
    let Some((records, pointers)) = walk(msg, &header) else {
        return;
    };
    let mut i = 0;
    while i < records.len() {
        let run = run_len(msg, &records[i..]);
        let slice = &records[i..i + run];
        if run > 1 {
            match slice[0].rtype {
                TYPE_A | TYPE_AAAA => permute_rdata(msg, slice, rng),
                TYPE_MX => permute_records(msg, slice, &records, &pointers, rng),
                _ => {}
            }
        }
        i += run;
    }
}

/// Whether two consecutive records of one section are both A, AAAA or MX of one
/// type: a walk without allocation, so a one-address answer costs little.
fn has_run(msg: &[u8], header: &Header) -> bool {
    let mut r = Reader::at(msg, HEADER_BYTES);
    for _ in 0..header.qdcount {
        if r.skip_name().and_then(|()| r.skip(4)).is_err() {
            return false;
        }
    }
    for count in [header.ancount, header.nscount, header.arcount] {
        let mut previous = 0u16;
        for _ in 0..count {
            let Ok(rec) = super::header::skip_record(&mut r) else {
                return false;
            };
            if rec.rtype == previous && matches!(rec.rtype, TYPE_A | TYPE_AAAA | TYPE_MX) {
                return true;
            }
            previous = rec.rtype;
        }
    }
    false
}

/// Every record, and the position of every compression pointer in the message.
/// Record types whose data holds no compressible name, or whose names
/// [`rdata_pointers`] finds: with only these in a message, every pointer is known.
/// (A, NS, MD, MF, CNAME, SOA, MB, MG, MR, NULL, WKS, PTR, HINFO, MINFO, MX, TXT, RP,
/// AFSDB, RT, AAAA, SRV, KX, OPT, DS, SSHFP, DNSKEY, TLSA, CAA.)
const KNOWN_TYPES: [u16; 28] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 28, 33, 36, 41, 43, 44, 48,
    52, 257,
];

fn walk(msg: &[u8], header: &Header) -> Option<(Vec<Rec>, Vec<usize>)> {
    let mut pointers = Vec::new();
    let mut pos = HEADER_BYTES;
    for _ in 0..header.qdcount {
        pos = name_pointers(msg, pos, msg.len(), &mut pointers)? + 4;
    }
    let counts = [header.ancount, header.nscount, header.arcount];
    let total: usize = counts.iter().map(|c| usize::from(*c)).sum();
    let mut records = Vec::with_capacity(total.min(msg.len() / 11));
    for (section, count) in counts.iter().enumerate() {
        for _ in 0..*count {
            let start = pos;
            pos = name_pointers(msg, pos, msg.len(), &mut pointers)?;
            let mut r = Reader::at(msg, pos);
            let rtype = r.u16().ok()?;
            r.skip(6).ok()?;
            let rdlen = usize::from(r.u16().ok()?);
            let rdata_at = r.pos();
            r.skip(rdlen).ok()?;
            let end = r.pos();
            rdata_pointers(msg, rtype, rdata_at, end, &mut pointers)?;
            records.push(Rec {
                start,
                section: section as u8,
                rtype,
                rdata_at,
                end,
            });
            pos = end;
        }
    }
    Some((records, pointers))
}

/// Steps over the name at `pos` (which must end before `limit`), noting where its
/// pointer is, if it has one; the position after it.
fn name_pointers(msg: &[u8], mut pos: usize, limit: usize, out: &mut Vec<usize>) -> Option<usize> {
    for _ in 0..LABELS_MAX {
        let len = *msg.get(pos).filter(|_| pos < limit)?;
        match len & 0xC0 {
            0xC0 => {
                out.push(pos);
                return (pos + 2 <= limit).then_some(pos + 2);
            }
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            _ => return None,
        }
    }
    None
}

/// The names inside the data of the record types that may be compressed (RFC 3597
/// §4, and the few later types decoders also decompress).
fn rdata_pointers(
    msg: &[u8],
    rtype: u16,
    at: usize,
    end: usize,
    out: &mut Vec<usize>,
) -> Option<()> {
    let names: &[usize] = match rtype {
        // NS, MD, MF, CNAME, MB, MG, MR, PTR: one name.
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 => &[0],
        // SOA, MINFO, RP: two names.
        6 | 14 | 17 => &[0, 0],
        // MX, AFSDB, RT, KX: a 16-bit value, then a name.
        15 | 18 | 21 | 36 => &[2],
        // SRV: three 16-bit values, then a name.
        33 => &[6],
        _ => return Some(()),
    };
    let mut pos = at;
    for skip in names {
        pos = name_pointers(msg, pos + skip, end, out)?;
    }
    Some(())
}

/// How many records from the first form one RRset run: same section, same type,
/// same owner, consecutive.
fn run_len(msg: &[u8], records: &[Rec]) -> usize {
    let Some(first) = records.first() else {
        return 0;
    };
    let mut owner = [0u8; NAME_BYTES_MAX];
    let Some(owner_len) = expand(msg, first.start, &mut owner) else {
        return 1;
    };
    let mut other = [0u8; NAME_BYTES_MAX];
    1 + records[1..]
        .iter()
        .take_while(|r| {
            r.section == first.section
                && r.rtype == first.rtype
                && expand(msg, r.start, &mut other)
                    .is_some_and(|len| other[..len].eq_ignore_ascii_case(&owner[..owner_len]))
        })
        .count()
}

fn expand(msg: &[u8], at: usize, out: &mut [u8; NAME_BYTES_MAX]) -> Option<usize> {
    Reader::at(msg, at).name_expanded(out).ok()
}

/// A random order of `n` items (Fisher-Yates).
fn permutation(n: usize, rng: &mut impl FnMut() -> u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Permutes the (equal-length) data of A or AAAA records in place.
fn permute_rdata(msg: &mut [u8], run: &[Rec], rng: &mut impl FnMut() -> u64) {
    let width = if run[0].rtype == TYPE_A { 4 } else { 16 };
    if run.iter().any(|r| r.end - r.rdata_at != width) {
        return;
    }
    let data: Vec<[u8; 16]> = run
        .iter()
        .map(|r| {
            let mut d = [0u8; 16];
            d[..width].copy_from_slice(&msg[r.rdata_at..r.end]);
            d
        })
        .collect();
    for (rec, from) in run.iter().zip(permutation(run.len(), rng)) {
        msg[rec.rdata_at..rec.end].copy_from_slice(&data[from][..width]);
    }
}

/// Permutes whole records of a contiguous run, moving the pointers into them; only
/// when every pointer of the message is known (no record of another type).
fn permute_records(
    msg: &mut [u8],
    run: &[Rec],
    records: &[Rec],
    pointers: &[usize],
    rng: &mut impl FnMut() -> u64,
) {
    if records.iter().any(|r| !KNOWN_TYPES.contains(&r.rtype)) {
        return;
    }
    let (start, end) = (run[0].start, run[run.len() - 1].end);
    let order = permutation(run.len(), rng);
    // New start of each old record.
    let mut new_start = vec![0usize; run.len()];
    let mut at = start;
    for &old in &order {
        new_start[old] = at;
        at += run[old].end - run[old].start;
    }
    let moved = |offset: usize| -> usize {
        run.iter()
            .position(|r| (r.start..r.end).contains(&offset))
            .map_or(offset, |i| new_start[i] + (offset - run[i].start))
    };
    // Every pointer's new place and target; give up if one would point forward.
    let mut patches = Vec::with_capacity(pointers.len());
    for &p in pointers {
        let target = usize::from(u16::from_be_bytes([msg[p], msg[p + 1]]) & 0x3FFF);
        let (new_p, new_target) = (moved(p), moved(target));
        if new_target >= new_p {
            return;
        }
        if new_p != p || new_target != target {
            patches.push((new_p, new_target));
        }
    }
    let old = msg[start..end].to_vec();
    for &from in &order {
        let rec = run[from];
        let dst = new_start[from];
        msg[dst..dst + (rec.end - rec.start)]
            .copy_from_slice(&old[rec.start - start..rec.end - start]);
    }
    for (p, target) in patches {
        let word = 0xC000 | target as u16;
        msg[p..p + 2].copy_from_slice(&word.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::rdata::{A, MX};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    fn message(answers: Vec<Record>, additional: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7).set_message_type(MessageType::Response);
        m.add_query(Query::query(
            Name::from_ascii("test.").unwrap(),
            RecordType::MX,
        ));
        m.add_answers(answers);
        m.add_additionals(additional);
        m.to_vec().unwrap()
    }

    fn a(name: &str, last: u8) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            60,
            RData::A(A::new(192, 0, 2, last)),
        )
    }

    fn mx(pref: u16, host: &str) -> Record {
        Record::from_rdata(
            Name::from_ascii("test.").unwrap(),
            60,
            RData::MX(MX::new(pref, Name::from_ascii(host).unwrap())),
        )
    }

    fn rendered(msg: &[u8]) -> (Vec<String>, BTreeSet<String>, Vec<String>) {
        let m = Message::from_vec(msg).expect("still a valid message");
        let answers: Vec<String> = m.answers().iter().map(|r| r.to_string()).collect();
        let set = answers.iter().cloned().collect();
        let extra = m.additionals().iter().map(|r| r.to_string()).collect();
        (answers, set, extra)
    }

    #[test]
    fn addresses_and_mx_are_permuted_not_changed() {
        let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rng = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state
        };
        let cases = [
            message((1..=5).map(|i| a("www.test.", i)).collect(), vec![]),
            message(
                vec![
                    mx(10, "mx1.test."),
                    mx(20, "mx2.test."),
                    mx(30, "longer-mx3.test."),
                ],
                vec![
                    a("mx1.test.", 10),
                    a("mx2.test.", 11),
                    a("longer-mx3.test.", 12),
                ],
            ),
        ];
        for original in cases {
            let (first, set, extra) = rendered(&original);
            let mut orders = BTreeSet::new();
            for _ in 0..40 {
                let mut msg = original.clone();
                shuffle_answer(&mut msg, &mut rng);
                assert_eq!(msg.len(), original.len());
                let (answers, shuffled_set, shuffled_extra) = rendered(&msg);
                assert_eq!(shuffled_set, set, "same records");
                // Owners keep their own addresses in the additional section.
                let extra_set: BTreeSet<_> = shuffled_extra.iter().collect();
                assert_eq!(extra_set, extra.iter().collect());
                orders.insert(answers);
            }
            assert!(orders.len() > 1, "never reordered: {first:?}");
        }
    }

    #[test]
    fn errors_and_garbage_are_left_alone() {
        let mut msg = message((1..=3).map(|i| a("www.test.", i)).collect(), vec![]);
        msg[3] |= 3; // NXDOMAIN
        let before = msg.clone();
        shuffle_answer(&mut msg, &mut || 1);
        assert_eq!(msg, before);
        let whole = message(vec![mx(10, "mx1.test."), mx(20, "mx2.test.")], vec![]);
        for len in 0..whole.len() {
            let mut cut = whole[..len].to_vec();
            shuffle_answer(&mut cut, &mut || 3);
            assert_eq!(cut, whole[..len], "a cut message is left alone");
        }
    }
}
