//! DNS over TCP's framing (RFC 1035 4.2.2): every message is preceded by its length
//! as two bytes, big-endian. Writing the prefix, finding whole frames in a buffer,
//! and one blocking exchange for the probes and tools.

use std::io::{self, Read, Write};

use crate::cursor::WireError;
use crate::limits::TCP_LENGTH_BYTES;

/// Appends `msg` with its length prefix to `out`; `NoSpace` (and nothing appended)
/// when it is longer than a prefix can say.
pub fn frame_into(msg: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    let len = u16::try_from(msg.len()).map_err(|_| WireError::NoSpace)?;
    out.reserve(TCP_LENGTH_BYTES + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(())
}

/// `msg` with its length prefix, in a new buffer.
pub fn frame(msg: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    frame_into(msg, &mut out)?;
    Ok(out)
}

/// The message length a prefix announces.
pub fn frame_len(prefix: [u8; TCP_LENGTH_BYTES]) -> usize {
    usize::from(u16::from_be_bytes(prefix))
}

/// The first whole frame at the start of `buf`: its message and the bytes it takes
/// with the prefix. `None` while the frame is incomplete.
pub fn split_frame(buf: &[u8]) -> Option<(&[u8], usize)> {
    let prefix = buf.get(..TCP_LENGTH_BYTES)?;
    let end = TCP_LENGTH_BYTES + frame_len([prefix[0], prefix[1]]);
    Some((buf.get(TCP_LENGTH_BYTES..end)?, end))
}

/// Writes `msg` framed, in one write.
pub fn write_frame(stream: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    let framed = frame(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&framed)
}

/// Reads one framed message (its prefix, then exactly that many bytes).
pub fn read_frame(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; TCP_LENGTH_BYTES];
    stream.read_exact(&mut prefix)?;
    let mut msg = vec![0u8; frame_len(prefix)];
    stream.read_exact(&mut msg)?;
    Ok(msg)
}

/// Sends `query` and reads the next message: a blocking exchange for probes, the
/// doctor and tests (the stream's timeouts bound it).
pub fn exchange(stream: &mut (impl Read + Write), query: &[u8]) -> io::Result<Vec<u8>> {
    write_frame(stream, query)?;
    read_frame(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        frame_into(b"abc", &mut buf).unwrap();
        frame_into(b"", &mut buf).unwrap();
        assert_eq!(buf, b"\0\x03abc\0\0");
        assert_eq!(split_frame(&buf), Some((&b"abc"[..], 5)));
        assert_eq!(split_frame(&buf[5..]), Some((&b""[..], 2)));
        assert_eq!(split_frame(&buf[..4]), None);
        assert_eq!(split_frame(&buf[..1]), None);
        assert_eq!(read_frame(&mut &buf[..]).unwrap(), b"abc");
        assert!(read_frame(&mut &buf[..4]).is_err());
    }

    #[test]
    fn too_long_is_refused() {
        let mut buf = vec![9];
        let big = vec![0u8; usize::from(u16::MAX) + 1];
        assert_eq!(frame_into(&big, &mut buf), Err(WireError::NoSpace));
        assert_eq!(buf, [9]);
        assert!(frame_into(&big[1..], &mut buf).is_ok());
    }
}
