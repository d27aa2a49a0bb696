//! Names in uncompressed wire form (length-prefixed labels ending with the root
//! label): ASCII case folding for cache keys, case-insensitive comparison, zone
//! membership. Label length octets are ≤ 63 and so never in 'A'..='Z'; folding the
//! whole byte string is therefore the same as folding each label.

use std::hash::Hasher;

use crate::compose::encode_name;
use crate::limits::NAME_BYTES_MAX;

/// Copies `name` lower-cased into `out` and returns the copy; `None` if it is longer
/// than a name can be.
pub fn lowercase_into<'o>(name: &[u8], out: &'o mut [u8; NAME_BYTES_MAX]) -> Option<&'o [u8]> {
    let dst = out.get_mut(..name.len())?;
    for (d, s) in dst.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(dst)
}

/// Feeds `name` lower-cased into `state` without allocating. Two names that are
/// equal ignoring ASCII case feed identical bytes.
pub fn hash_lowercase<H: Hasher>(name: &[u8], state: &mut H) {
    let mut chunk = [0u8; 64];
    for part in name.chunks(chunk.len()) {
        let dst = &mut chunk[..part.len()];
        for (d, s) in dst.iter_mut().zip(part) {
            *d = s.to_ascii_lowercase();
        }
        state.write(dst);
    }
    state.write_usize(name.len());
}

/// Whether two wire-form names are equal ignoring ASCII case.
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Turns a dotted zone ("cluster.local." or ".") into lower-cased wire form;
/// empty labels are skipped. `None` for a name that is not a valid DNS name.
pub fn zone_to_wire(zone: &str) -> Option<Vec<u8>> {
    let labels: Vec<&str> = zone.split('.').filter(|l| !l.is_empty()).collect();
    let mut out = Vec::with_capacity(zone.len() + 2);
    encode_name(&labels.join("."), &mut out).ok()?;
    out.make_ascii_lowercase();
    Some(out)
}

/// Whether `name` (wire form, any case) equals `zone` (lower-cased wire form) or is
/// below it. Suffixes are only tried at label boundaries.
pub fn in_zone(name: &[u8], zone: &[u8]) -> bool {
    let mut at = 0usize;
    loop {
        let Some(rest) = name.get(at..) else {
            return false;
        };
        if rest.len() == zone.len() {
            return rest.eq_ignore_ascii_case(zone);
        }
        if rest.len() < zone.len() {
            return false;
        }
        match rest.first() {
            Some(&len) if len > 0 => at += 1 + usize::from(len),
            _ => return false,
        }
    }
}

/// The presentation form of a wire name as CoreDNS's `state.Name()` gives it
/// (miekg/dns escaping): lower-cased, fully qualified, `\.` `\\` `\"` `\(` `\)`
/// `\;` `\@` `\$` and `\ ` for those bytes inside a label, `\DDD` (decimal) for
/// bytes outside printable ASCII. `None` when `name` is not a well-formed wire name.
pub fn to_presentation_lower(name: &[u8]) -> Option<String> {
    let mut text = String::with_capacity(name.len() + 1);
    let mut rest = name;
    loop {
        let (&len, tail) = rest.split_first()?;
        if len == 0 {
            break;
        }
        let label = tail.get(..usize::from(len)).filter(|_| len <= 63)?;
        for &b in label {
            let b = b.to_ascii_lowercase();
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' | b' ' => {
                    text.push('\\');
                    text.push(char::from(b));
                }
                0x21..=0x7e => text.push(char::from(b)),
                _ => {
                    text.push('\\');
                    text.push_str(&format!("{b:03}"));
                }
            }
        }
        text.push('.');
        rest = tail.get(label.len()..)?;
    }
    if text.is_empty() {
        text.push('.');
    }
    Some(text)
}

/// Wire form of a presentation name ("a.example.org." or relative "a.example.org",
/// taken from the root; `\X` and `\DDD` escapes as in zone files). `None` for an
/// empty label, a label over 63 bytes, a name over 255 bytes or a bad escape.
pub fn from_presentation(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 2);
    if text == "." {
        out.push(0);
        return Some(out);
    }
    let bytes = text.as_bytes();
    let mut label: Vec<u8> = Vec::with_capacity(63);
    let mut i = 0usize;
    let mut ended = false;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'.' => {
                push_label(&mut out, &label)?;
                label.clear();
                ended = true;
                continue;
            }
            b'\\' => {
                let next = *bytes.get(i)?;
                if next.is_ascii_digit() {
                    let digits = bytes.get(i..i + 3)?;
                    let value = std::str::from_utf8(digits).ok()?.parse::<u16>().ok()?;
                    label.push(u8::try_from(value).ok()?);
                    i += 3;
                } else {
                    label.push(next);
                    i += 1;
                }
            }
            _ => label.push(b),
        }
        ended = false;
    }
    if !ended {
        push_label(&mut out, &label)?;
    }
    out.push(0);
    (out.len() <= NAME_BYTES_MAX).then_some(out)
}

fn push_label(out: &mut Vec<u8>, label: &[u8]) -> Option<()> {
    if label.is_empty() || label.len() > crate::limits::LABEL_BYTES_MAX {
        return None;
    }
    out.push(u8::try_from(label.len()).ok()?);
    out.extend_from_slice(label);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    const WWW: &[u8] = b"\x03WwW\x07ExAmple\x03com\x00";

    #[test]
    fn hash_ignores_case() {
        let s = foldhash::fast::FixedState::default();
        let h = |n: &[u8]| {
            let mut st = s.build_hasher();
            hash_lowercase(n, &mut st);
            st.finish()
        };
        assert_eq!(h(WWW), h(b"\x03www\x07example\x03com\x00"));
        assert_ne!(h(WWW), h(b"\x03www\x07example\x03org\x00"));
        let long = [b'A'; 200];
        let mut lower = [b'a'; 200];
        assert_eq!(h(&long), h(&lower));
        lower[199] = b'b';
        assert_ne!(h(&long), h(&lower));
    }

    #[test]
    fn lowercase_and_compare() {
        let mut buf = [0u8; NAME_BYTES_MAX];
        let low = lowercase_into(WWW, &mut buf).unwrap();
        assert_eq!(low, b"\x03www\x07example\x03com\x00");
        assert!(eq_ignore_case(WWW, low));
        assert!(!eq_ignore_case(WWW, b"\x03www\x00"));
    }

    #[test]
    fn zones() {
        let root = zone_to_wire(".").unwrap();
        assert_eq!(root, [0]);
        let com = zone_to_wire("Example.COM.").unwrap();
        assert_eq!(com, b"\x07example\x03com\x00");
        assert!(in_zone(WWW, &root));
        assert!(in_zone(WWW, &com));
        assert!(in_zone(b"\x07example\x03com\x00", &com));
        assert!(!in_zone(b"\x08xexample\x03com\x00", &com));
        assert!(!in_zone(b"\x03com\x00", &com));
        // The zone's bytes appear inside a label, not at a label boundary.
        assert!(!in_zone(b"\x05x\x03com\x00", &zone_to_wire("com").unwrap()));
        assert_eq!(zone_to_wire(&"a".repeat(64)), None);
    }

    #[test]
    fn presentation_round_trips() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x00", "."),
            (WWW, "www.example.com."),
            (b"\x03a.b\x03c d\x00", "a\\.b.c\\ d."),
            (b"\x02\x01\xff\x00", "\\001\\255."),
        ];
        for (wire, text) in cases {
            assert_eq!(to_presentation_lower(wire).as_deref(), Some(*text));
            let back = from_presentation(text).expect("parses");
            assert!(eq_ignore_case(&back, wire), "{text}");
        }
        assert_eq!(
            from_presentation("a.b").as_deref(),
            Some(&b"\x01a\x01b\x00"[..])
        );
        for bad in ["a..b", "..", "a\\", "a\\25", "a\\256"] {
            assert_eq!(from_presentation(bad), None, "{bad}");
        }
        assert_eq!(from_presentation(&"a".repeat(64)), None);
        assert_eq!(to_presentation_lower(b"\x05ab"), None);
    }
}
