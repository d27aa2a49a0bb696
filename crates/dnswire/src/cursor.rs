//! The reading and writing cursors: every packet byte access in the process goes
//! through these two types, which return [`WireError`] instead of panicking.

use crate::limits::{LABEL_BYTES_MAX, NAME_BYTES_MAX, NAME_POINTER_HOPS_MAX};

/// Why a message could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated at offset {0}")]
    Truncated(usize),
    #[error("label longer than 63 bytes at offset {0}")]
    LabelTooLong(usize),
    #[error("name longer than 255 bytes at offset {0}")]
    NameTooLong(usize),
    #[error("compression pointer in the question at offset {0}")]
    PointerInQuestion(usize),
    #[error("compression pointer at offset {0} does not point backwards or hops too often")]
    BadPointer(usize),
    #[error("reserved label type at offset {0}")]
    BadLabelType(usize),
    #[error("OPT record with a non-root owner or more than one OPT")]
    BadOpt,
    #[error("output buffer too small")]
    NoSpace,
}

/// A bounds-checked reader over one message. `pos` only ever moves forward within `buf`.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A reader starting at `pos` (which may be past the end: the first read then fails).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WireError::Truncated(self.pos))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Truncated(self.pos))?;
        self.pos = end;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        let b = self
            .buf
            .get(self.pos)
            .ok_or(WireError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(*b)
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads an uncompressed name (the question's) and returns it in wire form,
    /// terminating zero included. A compression pointer is an error.
    pub fn name_uncompressed(&mut self) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        loop {
            let at = self.pos;
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => return Err(WireError::PointerInQuestion(at)),
                _ => return Err(WireError::BadLabelType(at)),
            }
            let len = usize::from(len);
            if len > LABEL_BYTES_MAX {
                return Err(WireError::LabelTooLong(at));
            }
            self.skip(len)?;
            if self.pos - start > NAME_BYTES_MAX {
                return Err(WireError::NameTooLong(start));
            }
            if len == 0 {
                return Ok(&self.buf[start..self.pos]);
            }
        }
    }

    /// Steps over a possibly compressed name without following its pointer
    /// (the bytes in place end at the first pointer).
    pub fn skip_name(&mut self) -> Result<(), WireError> {
        let start = self.pos;
        loop {
            let at = self.pos;
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => return self.skip(1),
                _ => return Err(WireError::BadLabelType(at)),
            }
            self.skip(usize::from(len))?;
            if self.pos - start > NAME_BYTES_MAX {
                return Err(WireError::NameTooLong(start));
            }
            if len == 0 {
                return Ok(());
            }
        }
    }

    /// Reads a possibly compressed name, following pointers (each must point strictly
    /// before the label that holds it, at most `NAME_POINTER_HOPS_MAX` of them), into
    /// `out` in uncompressed wire form. Returns the name's length in `out`.
    pub fn name_expanded(&mut self, out: &mut [u8; NAME_BYTES_MAX]) -> Result<usize, WireError> {
        let mut len_out = 0usize;
        let mut hops = 0usize;
        // Where reading continues after the name: set at the first pointer.
        let mut resume: Option<usize> = None;
        loop {
            let at = self.pos;
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => {
                    let low = self.u8()?;
                    let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                    hops += 1;
                    if target >= at || hops > NAME_POINTER_HOPS_MAX {
                        return Err(WireError::BadPointer(at));
                    }
                    resume.get_or_insert(self.pos);
                    self.pos = target;
                    continue;
                }
                _ => return Err(WireError::BadLabelType(at)),
            }
            let label = self.bytes(usize::from(len))?;
            let end = len_out + 1 + label.len();
            let dst = out
                .get_mut(len_out..end)
                .ok_or(WireError::NameTooLong(at))?;
            dst[0] = len;
            dst[1..].copy_from_slice(label);
            len_out = end;
            if len == 0 {
                if let Some(p) = resume {
                    self.pos = p;
                }
                return Ok(len_out);
            }
        }
    }
}

/// A bounds-checked writer into a caller-owned buffer, limited to `limit` bytes.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    limit: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        let limit = buf.len();
        Writer { buf, len: 0, limit }
    }

    /// A writer that refuses to grow past `limit` bytes (or the buffer, if smaller).
    pub fn with_limit(buf: &'a mut [u8], limit: usize) -> Self {
        let limit = limit.min(buf.len());
        Writer { buf, len: 0, limit }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most bytes this writer takes: its limit or its buffer, the smaller.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Forgets everything written after `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        let end = self.len.checked_add(b.len()).ok_or(WireError::NoSpace)?;
        if end > self.limit {
            return Err(WireError::NoSpace);
        }
        let dst = self.buf.get_mut(self.len..end).ok_or(WireError::NoSpace)?;
        dst.copy_from_slice(b);
        self.len = end;
        Ok(())
    }

    pub fn u8(&mut self, v: u8) -> Result<(), WireError> {
        self.bytes(&[v])
    }

    pub fn u16(&mut self, v: u16) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u32(&mut self, v: u32) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Overwrites 2 already written bytes at `at`.
    pub fn set_u16(&mut self, at: usize, v: u16) -> Result<(), WireError> {
        self.set(at, &v.to_be_bytes())
    }

    /// Overwrites 4 already written bytes at `at`.
    pub fn set_u32(&mut self, at: usize, v: u32) -> Result<(), WireError> {
        self.set(at, &v.to_be_bytes())
    }

    fn set(&mut self, at: usize, b: &[u8]) -> Result<(), WireError> {
        let end = at.checked_add(b.len()).ok_or(WireError::NoSpace)?;
        if end > self.len {
            return Err(WireError::NoSpace);
        }
        let dst = self.buf.get_mut(at..end).ok_or(WireError::NoSpace)?;
        dst.copy_from_slice(b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_at_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(WireError::Truncated(2)));
        assert_eq!(r.u8(), Ok(3));
        assert_eq!(r.u8(), Err(WireError::Truncated(3)));
        assert_eq!(
            Reader::at(&[1], usize::MAX).bytes(2),
            Err(WireError::Truncated(usize::MAX))
        );
    }

    #[test]
    fn expanded_name_follows_backward_pointers_only() {
        // 0: "a" root, 3: pointer to 0 → "a."
        let msg = [1, b'a', 0, 0xC0, 0];
        let mut out = [0u8; NAME_BYTES_MAX];
        let mut r = Reader::at(&msg, 3);
        assert_eq!(r.name_expanded(&mut out), Ok(3));
        assert_eq!(&out[..3], &[1, b'a', 0]);
        assert_eq!(r.pos(), 5);
        // Self pointer: a loop.
        let looping = [0xC0, 0];
        assert!(matches!(
            Reader::new(&looping).name_expanded(&mut out),
            Err(WireError::BadPointer(0))
        ));
        // Forward pointer.
        let fwd = [0xC0, 2, 0];
        assert!(Reader::new(&fwd).name_expanded(&mut out).is_err());
    }

    #[test]
    fn writer_respects_limit() {
        let mut buf = [0u8; 8];
        let mut w = Writer::with_limit(&mut buf, 3);
        assert_eq!(w.u16(1), Ok(()));
        assert_eq!(w.u16(2), Err(WireError::NoSpace));
        assert_eq!(w.set_u16(0, 7), Ok(()));
        assert_eq!(w.set_u16(1, 7), Err(WireError::NoSpace));
        assert_eq!(w.len(), 2);
    }
}
