//! `rewrite`: changes the question on the way down and the answer on the way back,
//! as CoreDNS's rewrite plugin does. The rules run in file order against the
//! lower-cased query name (each sees the previous one's result); a rule that applies
//! and says `stop` (the default) ends the list. What the rules change in the question
//! (name, type, class) goes into a new query packet that the rest of the chain, the
//! cache and the upstreams see ([`Flow::Rewritten`]); what they change in the answer
//! (names mapped back, TTLs, rcode) is kept in the [`Trail`] as [`AnswerAction`]s.
//! On the way back the answer gets the client's question again and the actions are
//! undone last first on every record.
//!
//! Only queries a rule applies to pay: building the new packet and re-encoding the
//! answer allocate (the answer is decoded and encoded with hickory-proto, which
//! follows compression pointers that a changed question would otherwise break).

use hickory_proto::op::{Message, Query as Question};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};

use super::flow::{AnswerAction, Flow, Origin, Request, RewriteSlot, Rewritten, Trail};
use crate::config::{NameMatch, RewriteAction, RewriteRule, ServerBlock};
use crate::wire::{self, flags, Header, Rcode, Writer, HEADER_BYTES};

pub struct Rewrite {
    rules: Box<[RewriteRule]>,
}

/// The question as the rules see and change it.
struct State {
    /// Lower-cased presentation form, fully qualified.
    name: String,
    qtype: u16,
    qclass: u16,
}

impl Rewrite {
    pub fn new(block: &ServerBlock) -> Option<Rewrite> {
        if block.rewrites.is_empty() {
            return None;
        }
        Some(Rewrite {
            rules: block.rewrites.clone().into(),
        })
    }

    // Out of line, as the way back: the hit path's dispatch stays small.
    #[inline(never)]
    pub fn serve(&self, req: &Request<'_>, trail: &mut Trail, out: &mut [u8]) -> Flow {
        let query = req.query;
        let Some(name) = wire::name::to_presentation_lower(query.qname) else {
            return Flow::Next;
        };
        let original = State {
            name,
            qtype: query.qtype,
            qclass: query.qclass,
        };
        let mut state = State {
            name: original.name.clone(),
            ..original
        };
        let mut actions = Vec::new();
        let mut applied = false;
        for (index, rule) in self.rules.iter().enumerate() {
            if apply(index, rule, &mut state, &mut actions) {
                applied = true;
                if rule.stop {
                    break;
                }
            }
        }
        if !applied {
            return Flow::Next;
        }
        let changed = state.name != original.name
            || state.qtype != original.qtype
            || state.qclass != original.qclass;
        let packet = if changed {
            let Some(packet) = rewritten_packet(query, &state) else {
                // CoreDNS: "invalid name after rewrite", SERVFAIL to the client.
                let len = wire::write_error_reply(query.packet, Rcode::ServFail, out);
                return Flow::Answer(len, Origin::Server);
            };
            Some(packet)
        } else {
            None
        };
        trail.rewrite = RewriteSlot::new(Rewritten {
            packet,
            question: query.question().to_vec(),
            actions,
            max_len: out.len(),
        });
        if changed {
            Flow::Rewritten
        } else {
            Flow::Next
        }
    }

    /// The answer to the rewritten query, made an answer to the client's.
    #[inline(never)]
    pub fn back(&self, trail: &Trail, room: &mut [u8], len: usize) -> usize {
        let Some(rewritten) = trail.rewrite.get() else {
            return len;
        };
        let Some(answer) = room.get(..len).filter(|a| !a.is_empty()) else {
            return len;
        };
        let decoded = Message::from_vec(answer).ok();
        let decodable = decoded.is_some();
        let restored = decoded.and_then(|msg| self.restore(msg, rewritten));
        match restored.filter(|bytes| bytes.len() <= room.len()) {
            Some(bytes) => {
                room[..bytes.len()].copy_from_slice(&bytes);
                bytes.len()
            }
            // Too large after the names changed, or not decodable: the client's
            // question with TC (retry over TCP), or SERVFAIL.
            None => {
                let Some(header) = Header::parse(answer) else {
                    return 0;
                };
                bare_reply(header, &rewritten.question, decodable, room)
            }
        }
    }

    /// Applies the answer actions, last first, and the client's question.
    fn restore(&self, mut msg: Message, rewritten: &Rewritten) -> Option<Vec<u8>> {
        let question = Question::read(&mut BinDecoder::new(&rewritten.question)).ok()?;
        *msg.queries_mut() = vec![question];
        for action in rewritten.actions.iter().rev() {
            if let AnswerAction::Rcode { from, to } = action {
                if u16::from(msg.response_code()) == *from {
                    msg.set_response_code((*to).into());
                }
            }
        }
        for section in [0, 1, 2] {
            let records = match section {
                0 => msg.answers_mut(),
                1 => msg.name_servers_mut(),
                _ => msg.additionals_mut(),
            };
            for record in records.iter_mut() {
                for action in rewritten.actions.iter().rev() {
                    self.undo(action, record);
                }
            }
        }
        msg.to_vec().ok()
    }

    /// One action on one record.
    fn undo(&self, action: &AnswerAction, record: &mut Record) {
        match action {
            AnswerAction::Ttl { min, max } => {
                let ttl = record.ttl();
                record.set_ttl(ttl.clamp(*min, *max));
            }
            AnswerAction::Rcode { .. } => {}
            AnswerAction::Remap { from, to, value } => {
                let map = |name: &str| remap(name, from, to);
                map_record(record, *value, map);
            }
            AnswerAction::Suffix { from, to, value } => {
                let map = |name: &str| {
                    name.strip_suffix(from.as_str())
                        .map(|rest| format!("{rest}{to}"))
                };
                map_record(record, *value, map);
            }
            AnswerAction::Pattern { rule, answer } => {
                let Some(RewriteAction::Name { answers, .. }) =
                    self.rules.get(*rule).map(|r| &r.action)
                else {
                    return;
                };
                let Some(answer) = answers.get(*answer) else {
                    return;
                };
                let map = |name: &str| replace_captures(&answer.pattern.0, &answer.to, name);
                if answer.value {
                    map_value(record, map);
                } else {
                    map_owner(record, map);
                }
            }
        }
    }
}

/// Rule `index` on the question; whether it applied.
fn apply(
    index: usize,
    rule: &RewriteRule,
    state: &mut State,
    actions: &mut Vec<AnswerAction>,
) -> bool {
    match &rule.action {
        RewriteAction::Name {
            matcher,
            to,
            auto,
            answers,
        } => {
            let Some(new) = rewrite_name(matcher, to, &state.name) else {
                return false;
            };
            let old = std::mem::replace(&mut state.name, new);
            if *auto {
                match matcher {
                    // The reverse suffix rule, for every name that ends in it.
                    NameMatch::Suffix(from) => {
                        for value in [false, true] {
                            actions.push(AnswerAction::Suffix {
                                from: to.clone(),
                                to: from.clone(),
                                value,
                            });
                        }
                    }
                    _ => {
                        for value in [false, true] {
                            actions.push(AnswerAction::Remap {
                                from: state.name.clone(),
                                to: old.clone(),
                                value,
                            });
                        }
                    }
                }
            }
            actions.extend((0..answers.len()).map(|answer| AnswerAction::Pattern {
                rule: index,
                answer,
            }));
            true
        }
        RewriteAction::Type { from, to } => {
            let applies = state.qtype == *from;
            if applies {
                state.qtype = *to;
            }
            applies
        }
        RewriteAction::Class { from, to } => {
            let applies = state.qclass == *from;
            if applies {
                state.qclass = *to;
            }
            applies
        }
        RewriteAction::Ttl { matcher, min, max } => {
            let applies = matches(matcher, &state.name);
            if applies {
                actions.push(AnswerAction::Ttl {
                    min: *min,
                    max: *max,
                });
            }
            applies
        }
        RewriteAction::Rcode { matcher, from, to } => {
            let applies = matches(matcher, &state.name);
            if applies {
                actions.push(AnswerAction::Rcode {
                    from: *from,
                    to: *to,
                });
            }
            applies
        }
    }
}

fn matches(matcher: &NameMatch, name: &str) -> bool {
    match matcher {
        NameMatch::Exact(from) => name == from,
        NameMatch::Prefix(from) => name.starts_with(from.as_str()),
        NameMatch::Suffix(from) => name.ends_with(from.as_str()),
        NameMatch::Substring(from) => name.contains(from.as_str()),
        NameMatch::Regex(pattern) => pattern.0.is_match(name),
    }
}

/// The new name if `matcher` applies to `name`.
fn rewrite_name(matcher: &NameMatch, to: &str, name: &str) -> Option<String> {
    match matcher {
        NameMatch::Exact(from) => (name == from).then(|| to.to_string()),
        NameMatch::Prefix(from) => name
            .strip_prefix(from.as_str())
            .map(|rest| format!("{to}{rest}")),
        NameMatch::Suffix(from) => name
            .strip_suffix(from.as_str())
            .map(|rest| format!("{rest}{to}")),
        NameMatch::Substring(from) => name
            .contains(from.as_str())
            .then(|| name.replace(from.as_str(), to)),
        NameMatch::Regex(pattern) => replace_captures(&pattern.0, to, name),
    }
}

/// `to` with `{N}` replaced by the captures of `pattern` in `name`; None without a
/// match (CoreDNS's regex string rewriter: the whole name becomes `to`).
fn replace_captures(pattern: &regex::Regex, to: &str, name: &str) -> Option<String> {
    let captures = pattern.captures(name)?;
    let mut out = to.to_string();
    for (index, group) in captures.iter().enumerate() {
        out = out.replace(&format!("{{{index}}}"), group.map_or("", |m| m.as_str()));
    }
    Some(out)
}

/// `name` is `from` or below it: `from` replaced by `to` (ASCII case ignored).
fn remap(name: &str, from: &str, to: &str) -> Option<String> {
    if name.eq_ignore_ascii_case(from) {
        return Some(to.to_string());
    }
    let cut = name.len().checked_sub(from.len())?;
    let (head, tail) = (name.get(..cut)?, name.get(cut..)?);
    (head.ends_with('.') && tail.eq_ignore_ascii_case(from)).then(|| format!("{head}{to}"))
}

/// The query with the question the rules left; None if the name is not valid.
fn rewritten_packet(query: &wire::Query<'_>, state: &State) -> Option<Vec<u8>> {
    let name = wire::name::from_presentation(&state.name)?;
    let header = query.packet.get(..HEADER_BYTES)?;
    let rest = query.packet.get(query.question_end..)?;
    let mut packet = Vec::with_capacity(header.len() + name.len() + 4 + rest.len());
    packet.extend_from_slice(header);
    packet.extend_from_slice(&name);
    packet.extend_from_slice(&state.qtype.to_be_bytes());
    packet.extend_from_slice(&state.qclass.to_be_bytes());
    packet.extend_from_slice(rest);
    Some(packet)
}

/// Applies `map` to the owner and, with `value`, to the names in the data.
fn map_record(record: &mut Record, value: bool, map: impl Fn(&str) -> Option<String>) {
    if value {
        map_value(record, &map);
    } else {
        map_owner(record, &map);
    }
}

fn map_owner(record: &mut Record, map: impl Fn(&str) -> Option<String>) {
    if let Some(name) = mapped(record.name(), map) {
        record.set_name(name);
    }
}

/// The names CoreDNS rewrites in record data: CNAME, NS, PTR targets, MX
/// exchange, SRV target, NAPTR replacement, SOA primary server.
fn map_value(record: &mut Record, map: impl Fn(&str) -> Option<String>) {
    let target: Option<&mut Name> = match record.data_mut() {
        RData::CNAME(c) => Some(&mut c.0),
        RData::NS(n) => Some(&mut n.0),
        RData::PTR(p) => Some(&mut p.0),
        RData::MX(mx) => {
            let new = mapped(mx.exchange(), &map);
            if let Some(new) = new {
                *mx = hickory_proto::rr::rdata::MX::new(mx.preference(), new);
            }
            None
        }
        RData::SRV(srv) => {
            if let Some(new) = mapped(srv.target(), &map) {
                *srv = hickory_proto::rr::rdata::SRV::new(
                    srv.priority(),
                    srv.weight(),
                    srv.port(),
                    new,
                );
            }
            None
        }
        RData::SOA(soa) => {
            if let Some(new) = mapped(soa.mname(), &map) {
                *soa = hickory_proto::rr::rdata::SOA::new(
                    new,
                    soa.rname().clone(),
                    soa.serial(),
                    soa.refresh(),
                    soa.retry(),
                    soa.expire(),
                    soa.minimum(),
                );
            }
            None
        }
        RData::NAPTR(naptr) => {
            if let Some(new) = mapped(naptr.replacement(), &map) {
                *naptr = hickory_proto::rr::rdata::NAPTR::new(
                    naptr.order(),
                    naptr.preference(),
                    naptr.flags().into(),
                    naptr.services().into(),
                    naptr.regexp().into(),
                    new,
                );
            }
            None
        }
        _ => None,
    };
    if let Some(target) = target {
        if let Some(new) = mapped(target, &map) {
            *target = new;
        }
    }
}

/// `map` of a name's presentation form, as a name again.
fn mapped(name: &Name, map: impl Fn(&str) -> Option<String>) -> Option<Name> {
    let wire_name = name.to_bytes().ok()?;
    let text = wire::name::to_presentation_lower(&wire_name)?;
    let new = map(&text).filter(|n| *n != text)?;
    Name::from_bytes(&wire::name::from_presentation(&new)?).ok()
}

/// `header` (of the answer) with `question` and no records: TC set when `truncated`,
/// else SERVFAIL.
fn bare_reply(header: Header, question: &[u8], truncated: bool, room: &mut [u8]) -> usize {
    let mut flags_word = header.flags;
    if truncated {
        flags_word |= flags::TC;
    } else {
        flags_word = (flags_word & !flags::RCODE_MASK) | Rcode::ServFail.code();
    }
    let reply = Header {
        id: header.id,
        flags: flags_word,
        qdcount: 1,
        ancount: 0,
        nscount: 0,
        arcount: 0,
    };
    let mut w = Writer::new(room);
    match reply.write(&mut w).and_then(|()| w.bytes(question)) {
        Ok(()) => w.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests;
