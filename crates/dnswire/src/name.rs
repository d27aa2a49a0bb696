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
}
