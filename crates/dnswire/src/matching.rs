//! Matching an answer to the query we sent: same ID and the same question (name
//! compared without regard to ASCII case, type and class equal), and the ID and TC
//! bits read without parsing the rest.

use crate::header::HEADER_BYTES;
use crate::limits::{LABEL_BYTES_MAX, NAME_BYTES_MAX, NAME_LABELS_MAX};

/// The message ID, or None when the packet is shorter than two bytes.
pub fn message_id(packet: &[u8]) -> Option<u16> {
    let bytes = packet.get(0..2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Overwrites the message ID; false when the packet has no room for one.
pub fn set_message_id(packet: &mut [u8], id: u16) -> bool {
    match packet.get_mut(0..2) {
        Some(bytes) => {
            bytes.copy_from_slice(&id.to_be_bytes());
            true
        }
        None => false,
    }
}

/// True when the TC (truncated) bit is set.
pub fn is_truncated(packet: &[u8]) -> bool {
    packet.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

/// The question bytes (name + type + class) of a message with QDCOUNT 1 whose
/// question name is uncompressed, as every query we send upstream is.
pub fn question_bytes(packet: &[u8]) -> Option<&[u8]> {
    let mut at = HEADER_BYTES;
    let mut hops = 0;
    loop {
        let len = usize::from(*packet.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > LABEL_BYTES_MAX {
            return None;
        }
        at += 1 + len;
        hops += 1;
        if at - HEADER_BYTES > NAME_BYTES_MAX || hops > NAME_LABELS_MAX {
            return None;
        }
    }
    packet.get(HEADER_BYTES..at + 4)
}

/// True when `answer` carries exactly the question of `query`, whose question
/// section is `question_len` bytes (names compared ASCII case-insensitively, since
/// servers may echo 0x20-mixed case). The caller knows `question_len` from encoding
/// the query, so no name is walked.
pub fn question_matches(answer: &[u8], query: &[u8], question_len: usize) -> bool {
    let end = HEADER_BYTES + question_len;
    match (answer.get(HEADER_BYTES..end), query.get(HEADER_BYTES..end)) {
        (Some(a), Some(q)) => a.eq_ignore_ascii_case(q),
        _ => false,
    }
}

/// True when `answer` is a response (QR=1) with `id`, QDCOUNT 1 and the question of
/// `query` (names equal without regard to ASCII case).
pub fn answer_matches(query: &[u8], answer: &[u8], id: u16) -> bool {
    let Some(flags) = answer.get(2) else {
        return false;
    };
    let qdcount = answer.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if message_id(answer) != Some(id) || flags & 0x80 == 0 || qdcount != Some(1) {
        return false;
    }
    match (question_bytes(query), question_bytes(answer)) {
        (Some(asked), Some(got)) => asked.eq_ignore_ascii_case(got),
        _ => false,
    }
}

/// The presentation form of an uncompressed wire name ("www.example.com."), for logs.
pub fn name_to_string(name: &[u8]) -> String {
    let mut text = String::new();
    let mut rest = name;
    while let Some((&len, tail)) = rest.split_first() {
        let Some(label) = tail.get(..usize::from(len)).filter(|_| len > 0) else {
            break;
        };
        text.extend(label.iter().map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        }));
        text.push('.');
        rest = &tail[label.len()..];
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u16, qr: bool, name: &[u8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[if qr { 0x81 } else { 0x01 }, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    #[test]
    fn matches_same_question_any_case() {
        let q = message(7, false, b"\x03foo\x03com\x00");
        let a = message(7, true, b"\x03FoO\x03com\x00");
        assert!(answer_matches(&q, &a, 7));
        assert!(!answer_matches(&q, &a, 8));
        assert!(!answer_matches(
            &q,
            &message(7, false, b"\x03foo\x03com\x00"),
            7
        ));
        assert!(!answer_matches(
            &q,
            &message(7, true, b"\x03bar\x03com\x00"),
            7
        ));
    }

    #[test]
    fn short_or_garbage_never_matches() {
        let q = message(7, false, b"\x03foo\x03com\x00");
        for len in 0..q.len() {
            assert!(!answer_matches(&q, &q[..len], 7));
        }
        assert!(!answer_matches(&q, &[0xff; 40], 0xffff));
        assert!(question_bytes(&[0u8; 12]).is_none());
    }

    #[test]
    fn presentation() {
        assert_eq!(name_to_string(b"\x03www\x07Example\x00"), "www.Example.");
        assert_eq!(name_to_string(b"\x00"), ".");
        assert_eq!(name_to_string(b"\x05ab"), ".");
    }

    #[test]
    fn id_patch() {
        let mut q = message(7, false, b"\x00");
        assert!(set_message_id(&mut q, 0xbeef));
        assert_eq!(message_id(&q), Some(0xbeef));
        assert!(!set_message_id(&mut [0u8; 1], 1));
    }
}
