//! nf_tables over netlink (NETLINK_NETFILTER), through `neli`: its socket, its
//! netlink header and its attribute type (`Nlattr`, nested or not) carry the
//! nf_tables messages, whose header (`nfgenmsg`) and attribute numbers neli does
//! not know, so they are declared here from `linux/netfilter/nf_tables.h`.
//!
//! Two kinds of exchange: a batch (BATCH_BEGIN, messages, BATCH_END in one
//! datagram, which the kernel applies all or nothing) and a dump (GET with
//! NLM_F_DUMP, replies until NLMSG_DONE). Replies are framed with bounds-checked
//! reads before any of them is parsed: a short or lying length is an error, never a
//! panic; a dump stops at [`NFT_DUMP_MESSAGES_MAX`] messages; every receive waits at
//! most [`NFT_NETLINK_TIMEOUT_MILLIS`].

use std::io::Cursor;
use std::os::fd::AsRawFd;
use std::time::Duration;

use neli::consts::nl::NlmF;
use neli::consts::socket::{Msg, NlFamily};
use neli::err::DeError;
use neli::genl::{AttrTypeBuilder, Nlattr, NlattrBuilder};
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::socket::NlSocket;
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use neli::{FromBytesWithInput, Header, Size, ToBytes};

use crate::limits::{
    NFT_BATCH_BYTES_MAX, NFT_DUMP_MESSAGES_MAX, NFT_NETLINK_TIMEOUT_MILLIS, NFT_RECV_BYTES,
};

/// Kernel ABI numbers (`linux/netfilter/nfnetlink.h`, `nf_tables.h`) that `libc`
/// does not export.
pub mod abi {
    pub const NFT_MSG_NEWTABLE: u16 = 0;
    pub const NFT_MSG_GETTABLE: u16 = 1;
    pub const NFT_MSG_DELTABLE: u16 = 2;
    pub const NFT_MSG_NEWCHAIN: u16 = 3;
    pub const NFT_MSG_GETCHAIN: u16 = 4;
    pub const NFT_MSG_NEWRULE: u16 = 6;
    pub const NFT_MSG_GETRULE: u16 = 7;

    pub const NFTA_TABLE_NAME: u16 = 1;

    pub const NFTA_CHAIN_TABLE: u16 = 1;
    pub const NFTA_CHAIN_NAME: u16 = 3;
    pub const NFTA_CHAIN_HOOK: u16 = 4;
    pub const NFTA_CHAIN_POLICY: u16 = 5;
    pub const NFTA_CHAIN_TYPE: u16 = 7;
    pub const NFTA_HOOK_HOOKNUM: u16 = 1;
    pub const NFTA_HOOK_PRIORITY: u16 = 2;

    pub const NFTA_RULE_TABLE: u16 = 1;
    pub const NFTA_RULE_CHAIN: u16 = 2;
    pub const NFTA_RULE_HANDLE: u16 = 3;
    pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
    pub const NFTA_RULE_USERDATA: u16 = 7;
    pub const NFTA_LIST_ELEM: u16 = 1;
    pub const NFTA_EXPR_NAME: u16 = 1;
    pub const NFTA_EXPR_DATA: u16 = 2;

    pub const NFTA_META_DREG: u16 = 1;
    pub const NFTA_META_KEY: u16 = 2;
    pub const NFTA_PAYLOAD_DREG: u16 = 1;
    pub const NFTA_PAYLOAD_BASE: u16 = 2;
    pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
    pub const NFTA_PAYLOAD_LEN: u16 = 4;
    pub const NFTA_CMP_SREG: u16 = 1;
    pub const NFTA_CMP_OP: u16 = 2;
    pub const NFTA_CMP_DATA: u16 = 3;
    pub const NFTA_IMMEDIATE_DREG: u16 = 1;
    pub const NFTA_IMMEDIATE_DATA: u16 = 2;
    pub const NFTA_DATA_VALUE: u16 = 1;
    pub const NFTA_DATA_VERDICT: u16 = 2;
    pub const NFTA_VERDICT_CODE: u16 = 1;

    /// nftnl's user data in a rule: type 0 is the comment `nft` shows.
    pub const NFTNL_UDATA_RULE_COMMENT: u8 = 0;
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("nf_tables netlink socket: {what}: {source}")]
    Socket {
        what: &'static str,
        source: std::io::Error,
    },
    /// The kernel refused a message (the whole batch is then undone).
    #[error("nf_tables refused {what}: {}", std::io::Error::from_raw_os_error(*.errno))]
    Refused { what: String, errno: i32 },
    #[error("nf_tables netlink: {0}")]
    Malformed(String),
}

impl NetlinkError {
    /// The kernel's errno, for a refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn malformed(what: impl std::fmt::Display) -> NetlinkError {
    NetlinkError::Malformed(what.to_string())
}

/// An nf_tables attribute (`neli`'s generic attribute with a raw u16 type).
pub type Attr = Nlattr<u16, Buffer>;

/// `struct nfgenmsg` and the attributes after it.
#[derive(Debug, Clone, PartialEq, Eq, Size, ToBytes, Header)]
pub struct NfGenMsg {
    /// NFPROTO_* (inet, ipv4, ipv6, or unspec for every family in a dump).
    pub family: u8,
    pub version: u8,
    /// Big-endian on the wire: the subsystem for batch delimiters, else 0.
    pub res_id: u16,
    pub attrs: GenlBuffer<u16, Buffer>,
}

/// An attribute with a raw payload.
pub fn attr(kind: u16, payload: &[u8]) -> Result<Attr, NetlinkError> {
    NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(kind)
                .build()
                .map_err(malformed)?,
        )
        .nla_payload(Buffer::from(payload))
        .build()
        .map_err(malformed)
}

/// A NUL-terminated string attribute.
pub fn attr_str(kind: u16, text: &str) -> Result<Attr, NetlinkError> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    attr(kind, &bytes)
}

/// A big-endian u32 attribute (nf_tables' integers are in network order).
pub fn attr_be32(kind: u16, value: u32) -> Result<Attr, NetlinkError> {
    attr(kind, &value.to_be_bytes())
}

/// An attribute holding `children`.
pub fn nest(kind: u16, children: &[Attr]) -> Result<Attr, NetlinkError> {
    let mut parent = NlattrBuilder::default()
        .nla_type(
            AttrTypeBuilder::default()
                .nla_type(kind)
                .nla_nested(true)
                .build()
                .map_err(malformed)?,
        )
        .nla_payload(Buffer::new())
        .build()
        .map_err(malformed)?;
    for child in children {
        parent = parent.nest(child).map_err(malformed)?;
    }
    Ok(parent)
}

/// The attributes nested in `attr`.
pub fn nested(attr: &Attr) -> Result<Vec<Attr>, NetlinkError> {
    let handle = attr.get_attr_handle::<u16>().map_err(malformed)?;
    Ok(handle.get_attrs().to_vec())
}

/// The payload of the first attribute of type `kind`.
pub fn find(attrs: &[Attr], kind: u16) -> Option<&[u8]> {
    attrs
        .iter()
        .find(|a| *a.nla_type().nla_type() == kind)
        .map(|a| a.nla_payload().as_ref())
}

/// A string attribute, without its NUL.
pub fn find_str(attrs: &[Attr], kind: u16) -> Option<String> {
    let bytes = find(attrs, kind)?;
    let text = bytes.split(|b| *b == 0).next().unwrap_or_default();
    Some(String::from_utf8_lossy(text).into_owned())
}

/// A big-endian u32 attribute.
pub fn find_be32(attrs: &[Attr], kind: u16) -> Option<u32> {
    let bytes: [u8; 4] = find(attrs, kind)?.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// One request: an nf_tables message and what it does, for error messages.
#[derive(Debug)]
pub struct Request {
    pub msg: u16,
    pub family: u8,
    /// NLM_F_CREATE, NLM_F_APPEND... (REQUEST and ACK are added).
    pub flags: NlmF,
    pub attrs: Vec<Attr>,
    pub what: String,
}

/// One nf_tables message of a dump.
#[derive(Debug)]
pub struct Reply {
    pub family: u8,
    pub attrs: Vec<Attr>,
}

/// A NETLINK_NETFILTER socket with a receive timeout.
pub struct Conn {
    socket: NlSocket,
    seq: u32,
    buf: Vec<u8>,
}

const NLMSG_HDR_BYTES: usize = 16;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;

fn nft_type(msg: u16) -> u16 {
    ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | msg
}

impl Conn {
    pub fn open() -> Result<Conn, NetlinkError> {
        let socket =
            NlSocket::connect(NlFamily::Netfilter, None, Groups::empty()).map_err(|source| {
                NetlinkError::Socket {
                    what: "connect",
                    source,
                }
            })?;
        set_recv_timeout(&socket, Duration::from_millis(NFT_NETLINK_TIMEOUT_MILLIS))?;
        Ok(Conn {
            socket,
            seq: rand::random::<u32>() >> 1,
            buf: vec![0; NFT_RECV_BYTES],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Applies `requests` in one transaction: all of them, or none when the kernel
    /// refuses one (its error names that one).
    pub fn batch(&mut self, requests: &[Request]) -> Result<(), NetlinkError> {
        let first = self.seq.wrapping_add(1);
        let out = self.encode_batch(requests)?;
        if out.len() > NFT_BATCH_BYTES_MAX {
            return Err(malformed(format!(
                "a batch of {} bytes, more than {NFT_BATCH_BYTES_MAX}",
                out.len()
            )));
        }
        self.send(&out)?;
        self.wait_acks(first, requests)
    }

    /// BATCH_BEGIN, the requests (each asking for an ACK), BATCH_END: one datagram.
    pub fn encode_batch(&mut self, requests: &[Request]) -> Result<Vec<u8>, NetlinkError> {
        let mut out = Cursor::new(Vec::new());
        let subsys = libc::NFNL_SUBSYS_NFTABLES as u16;
        self.write(
            &mut out,
            libc::NFNL_MSG_BATCH_BEGIN as u16,
            0,
            subsys,
            NlmF::REQUEST,
            Vec::new(),
        )?;
        for request in requests {
            let kind = nft_type(request.msg);
            let flags = NlmF::REQUEST | NlmF::ACK | request.flags;
            self.write(
                &mut out,
                kind,
                request.family,
                0,
                flags,
                request.attrs.clone(),
            )?;
        }
        self.write(
            &mut out,
            libc::NFNL_MSG_BATCH_END as u16,
            0,
            subsys,
            NlmF::REQUEST,
            Vec::new(),
        )?;
        Ok(out.into_inner())
    }

    /// One ACK or error per request, matched by sequence number (`first` is the
    /// BATCH_BEGIN's).
    fn wait_acks(&mut self, first: u32, requests: &[Request]) -> Result<(), NetlinkError> {
        let mut acked = 0;
        while acked < requests.len() {
            for message in self.receive()? {
                let Some(index) = message.seq.checked_sub(first.wrapping_add(1)) else {
                    continue;
                };
                let Some(request) = requests.get(index as usize) else {
                    continue;
                };
                match message.body {
                    Body::Error(0) => acked += 1,
                    Body::Error(errno) => {
                        return Err(NetlinkError::Refused {
                            what: request.what.clone(),
                            errno,
                        })
                    }
                    Body::Done | Body::Data(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Every object a GET `msg` dump returns for `family` (NFPROTO_UNSPEC: all),
    /// filtered by `attrs` where the kernel supports it.
    pub fn dump(
        &mut self,
        msg: u16,
        family: u8,
        attrs: Vec<Attr>,
    ) -> Result<Vec<Reply>, NetlinkError> {
        let mut out = Cursor::new(Vec::new());
        let seq = self.write(
            &mut out,
            nft_type(msg),
            family,
            0,
            NlmF::REQUEST | NlmF::DUMP,
            attrs,
        )?;
        self.send(out.get_ref())?;
        let mut replies = Vec::new();
        loop {
            for message in self.receive()? {
                if message.seq != seq {
                    continue;
                }
                match message.body {
                    Body::Done => return Ok(replies),
                    Body::Error(0) => {}
                    Body::Error(errno) => {
                        return Err(NetlinkError::Refused {
                            what: format!("dump {msg}"),
                            errno,
                        })
                    }
                    Body::Data(reply) => replies.push(reply),
                }
                if replies.len() > NFT_DUMP_MESSAGES_MAX {
                    return Err(malformed(format!(
                        "dump {msg}: more than {NFT_DUMP_MESSAGES_MAX} objects"
                    )));
                }
            }
        }
    }

    /// Serialises one message; returns its sequence number.
    fn write(
        &mut self,
        out: &mut Cursor<Vec<u8>>,
        kind: u16,
        family: u8,
        res_id: u16,
        flags: NlmF,
        attrs: Vec<Attr>,
    ) -> Result<u32, NetlinkError> {
        let seq = self.next_seq();
        let mut buffer = GenlBuffer::new();
        for a in attrs {
            buffer.push(a);
        }
        let payload = NfGenMsg {
            family,
            version: 0,
            res_id: res_id.to_be(),
            attrs: buffer,
        };
        let message = NlmsghdrBuilder::default()
            .nl_type(kind)
            .nl_flags(flags)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(malformed)?;
        message.to_bytes(out).map_err(malformed)?;
        Ok(seq)
    }

    fn send(&self, bytes: &[u8]) -> Result<(), NetlinkError> {
        self.socket
            .send(bytes, Msg::empty())
            .map_err(|source| NetlinkError::Socket {
                what: "send",
                source,
            })?;
        Ok(())
    }

    /// One datagram from the kernel, framed into messages.
    fn receive(&mut self) -> Result<Vec<Message>, NetlinkError> {
        let (len, _) = self
            .socket
            .recv(&mut self.buf[..], Msg::TRUNC)
            .map_err(|source| NetlinkError::Socket {
                what: "receive",
                source,
            })?;
        if len > self.buf.len() {
            return Err(malformed(format!(
                "a reply of {len} bytes, more than {NFT_RECV_BYTES}"
            )));
        }
        frame(self.buf.get(..len).unwrap_or_default())
    }
}

/// A framed reply.
#[derive(Debug)]
struct Message {
    seq: u32,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// NLMSG_ERROR: 0 is an ACK, else a negated errno made positive.
    Error(i32),
    Done,
    Data(Reply),
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a datagram into netlink messages, checking every length first.
fn frame(datagram: &[u8]) -> Result<Vec<Message>, NetlinkError> {
    let mut messages = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDR_BYTES <= datagram.len() {
        let bad = || malformed(format!("bad message header at byte {at}"));
        let len = read_u32(datagram, at).ok_or_else(bad)? as usize;
        if len < NLMSG_HDR_BYTES || at + len > datagram.len() {
            return Err(bad());
        }
        let kind = read_u16(datagram, at + 4).ok_or_else(bad)?;
        let seq = read_u32(datagram, at + 8).ok_or_else(bad)?;
        let body = datagram
            .get(at + NLMSG_HDR_BYTES..at + len)
            .ok_or_else(bad)?;
        let body = match kind {
            NLMSG_ERROR => {
                let code = read_u32(body, 0).ok_or_else(bad)? as i32;
                Body::Error(code.saturating_abs())
            }
            NLMSG_DONE => Body::Done,
            _ => Body::Data(parse_reply(body)?),
        };
        messages.push(Message { seq, body });
        // Messages are 4-byte aligned.
        at += (len + 3) & !3;
    }
    Ok(messages)
}

fn parse_reply(body: &[u8]) -> Result<Reply, NetlinkError> {
    let family = *body.first().ok_or_else(|| malformed("short nfgenmsg"))?;
    let attrs = body.get(4..).ok_or_else(|| malformed("short nfgenmsg"))?;
    let parsed =
        GenlBuffer::<u16, Buffer>::from_bytes_with_input(&mut Cursor::new(attrs), attrs.len())
            .map_err(|e: DeError| malformed(format!("attributes: {e}")))?;
    Ok(Reply {
        family,
        attrs: parsed.iter().cloned().collect(),
    })
}

fn set_recv_timeout(socket: &NlSocket, timeout: Duration) -> Result<(), NetlinkError> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket fd and a timeval that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NetlinkError::Socket {
            what: "SO_RCVTIMEO",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_rejects_lying_lengths_without_panicking() {
        // Length larger than the datagram.
        let mut bytes = vec![0u8; 20];
        bytes[..4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(frame(&bytes).is_err());
        // Length below the header.
        bytes[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(frame(&bytes).is_err());
        // An error message too short for its code.
        let mut err = vec![0u8; 16];
        err[..4].copy_from_slice(&16u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(frame(&err).is_err());
        // Attributes with a lying length.
        let mut data = vec![0u8; 24];
        data[..4].copy_from_slice(&24u32.to_ne_bytes());
        data[4..6].copy_from_slice(&nft_type(abi::NFT_MSG_NEWTABLE).to_ne_bytes());
        data[20..22].copy_from_slice(&300u16.to_ne_bytes());
        assert!(frame(&data).is_err());
        // Arbitrary bytes never panic.
        for seed in 0..2000u32 {
            let junk: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8)
                .collect();
            let _ = frame(&junk);
        }
    }

    #[test]
    fn attributes_round_trip() {
        let inner = [
            attr_be32(2, 7).unwrap(),
            attr_str(1, "nodelocaldns").unwrap(),
        ];
        let outer = nest(4, &inner).unwrap();
        let children = nested(&outer).unwrap();
        assert_eq!(find_be32(&children, 2), Some(7));
        assert_eq!(find_str(&children, 1).as_deref(), Some("nodelocaldns"));
        assert_eq!(find(&children, 9), None);
    }
}
