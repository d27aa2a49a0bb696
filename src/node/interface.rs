//! The interface that holds the local IPs, through rtnetlink (`neli`): created with
//! the configured kind (`dummy` as node-cache; another kind where the kernel lacks the
//! dummy driver), brought up, each local IP added as /32 or /128. IPv6 addresses are
//! added with IFA_F_NODAD: duplicate address detection would keep them tentative (not
//! bindable) for a while, and the address is ours by definition. Every step is
//! idempotent: an existing interface is reused, a present address is left alone.

use std::net::IpAddr;

use neli::{
    consts::{
        nl::NlmF,
        rtnl::{Ifa, IfaF, Iff, Ifla, IflaInfo, RtAddrFamily, RtScope, Rtm},
        socket::NlFamily,
    },
    err::RouterError,
    nl::{NlPayload, Nlmsghdr},
    router::synchronous::NlRouter,
    rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, RtattrBuilder},
    types::{Buffer, RtBuffer},
    utils::Groups,
};

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// Reading the link or its addresses failed (`interface_check`).
    #[error("cannot check interface {name}: {reason}")]
    Check { name: String, reason: String },
    /// Creating the link, bringing it up or adding an address failed (`interface_add`).
    #[error("cannot set up interface {name}: {reason}")]
    Add { name: String, reason: String },
}

/// What [`Interface::ensure`] had to change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ensured {
    pub created: bool,
    pub brought_up: bool,
    pub added: Vec<IpAddr>,
}

/// The desired interface.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    /// rtnetlink link kind (`dummy`, `bridge`, ...).
    pub kind: String,
    /// Addresses it must hold (unspecified ones are never added).
    pub addrs: Vec<IpAddr>,
}

struct Link {
    index: i32,
    up: bool,
}

impl Interface {
    /// Creates the link if missing, brings it up, adds missing addresses.
    pub fn ensure(&self) -> Result<Ensured, InterfaceError> {
        let rtnl = self.connect()?;
        let mut ensured = Ensured::default();
        let link = match self.link(&rtnl)? {
            Some(link) => link,
            None => {
                self.create(&rtnl)?;
                ensured.created = true;
                self.link(&rtnl)?
                    .ok_or_else(|| self.add_err("created, then not found"))?
            }
        };
        if !link.up {
            self.set_up(&rtnl, link.index)?;
            ensured.brought_up = true;
        }
        let present = self.addresses(&rtnl, link.index)?;
        for &ip in self.addrs.iter().filter(|ip| !ip.is_unspecified()) {
            if !present.contains(&ip) {
                self.add_address(&rtnl, link.index, ip)?;
                ensured.added.push(ip);
            }
        }
        Ok(ensured)
    }

    /// Deletes the link (and so its addresses); Ok(false) when it did not exist.
    pub fn remove(&self) -> Result<bool, InterfaceError> {
        let rtnl = self.connect()?;
        let Some(link) = self.link(&rtnl)? else {
            return Ok(false);
        };
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(link.index)
            .build()
            .map_err(|e| self.add_err(e))?;
        let recv = rtnl
            .send::<_, _, Rtm, Ifinfomsg>(Rtm::Dellink, NlmF::ACK, NlPayload::Payload(msg))
            .map_err(|e| self.add_err(e))?;
        for reply in recv {
            reply.map_err(|e| self.add_err(format!("delete: {e}")))?;
        }
        Ok(true)
    }

    fn connect(&self) -> Result<NlRouter, InterfaceError> {
        let (rtnl, _) = NlRouter::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| self.check_err(format!("rtnetlink: {e}")))?;
        Ok(rtnl)
    }

    fn check_err(&self, reason: impl ToString) -> InterfaceError {
        InterfaceError::Check {
            name: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn add_err(&self, reason: impl ToString) -> InterfaceError {
        InterfaceError::Add {
            name: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// RTM_GETLINK by name: None on ENODEV.
    fn link(&self, rtnl: &NlRouter) -> Result<Option<Link>, InterfaceError> {
        let mut attrs = RtBuffer::<Ifla, Buffer>::new();
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Ifla::Ifname)
                .rta_payload(format!("{}\0", self.name))
                .build()
                .map_err(|e| self.check_err(e))?,
        );
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(|e| self.check_err(e))?;
        let recv = rtnl
            .send::<_, _, Rtm, Ifinfomsg>(Rtm::Getlink, NlmF::empty(), NlPayload::Payload(msg))
            .map_err(|e| self.check_err(e))?;
        for reply in recv {
            let reply: Nlmsghdr<Rtm, Ifinfomsg> = match reply {
                Ok(reply) => reply,
                Err(RouterError::Nlmsgerr(e)) if e.error().abs() == libc::ENODEV => {
                    return Ok(None)
                }
                Err(e) => return Err(self.check_err(e)),
            };
            if let NlPayload::Payload(info) = reply.nl_payload() {
                return Ok(Some(Link {
                    index: *info.ifi_index(),
                    up: info.ifi_flags().contains(Iff::UP),
                }));
            }
        }
        Ok(None)
    }

    fn create(&self, rtnl: &NlRouter) -> Result<(), InterfaceError> {
        let mut info = RtBuffer::<IflaInfo, Buffer>::new();
        info.push(
            RtattrBuilder::default()
                .rta_type(IflaInfo::Kind)
                .rta_payload(format!("{}\0", self.kind))
                .build()
                .map_err(|e| self.add_err(e))?,
        );
        let mut attrs = RtBuffer::<Ifla, Buffer>::new();
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Ifla::Ifname)
                .rta_payload(format!("{}\0", self.name))
                .build()
                .map_err(|e| self.add_err(e))?,
        );
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Ifla::Linkinfo)
                .rta_payload(info)
                .build()
                .map_err(|e| self.add_err(e))?,
        );
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_flags(Iff::UP)
            .ifi_change(Iff::UP)
            .rtattrs(attrs)
            .build()
            .map_err(|e| self.add_err(e))?;
        let recv = rtnl
            .send::<_, _, Rtm, Ifinfomsg>(
                Rtm::Newlink,
                NlmF::CREATE | NlmF::EXCL | NlmF::ACK,
                NlPayload::Payload(msg),
            )
            .map_err(|e| self.add_err(e))?;
        for reply in recv {
            match reply {
                Ok(_) => {}
                // Created meanwhile by someone else: reuse it.
                Err(RouterError::Nlmsgerr(e)) if e.error().abs() == libc::EEXIST => {}
                Err(e) => {
                    return Err(self.add_err(format!("create (kind {}): {e}", self.kind)));
                }
            }
        }
        Ok(())
    }

    fn set_up(&self, rtnl: &NlRouter, index: i32) -> Result<(), InterfaceError> {
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(index)
            .ifi_flags(Iff::UP)
            .ifi_change(Iff::UP)
            .build()
            .map_err(|e| self.add_err(e))?;
        let recv = rtnl
            .send::<_, _, Rtm, Ifinfomsg>(Rtm::Newlink, NlmF::ACK, NlPayload::Payload(msg))
            .map_err(|e| self.add_err(e))?;
        for reply in recv {
            reply.map_err(|e| self.add_err(format!("set up: {e}")))?;
        }
        Ok(())
    }

    /// The addresses on link `index` (both families).
    fn addresses(&self, rtnl: &NlRouter, index: i32) -> Result<Vec<IpAddr>, InterfaceError> {
        let msg = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Unspecified)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(0)
            .build()
            .map_err(|e| self.check_err(e))?;
        let recv = rtnl
            .send::<_, _, Rtm, Ifaddrmsg>(Rtm::Getaddr, NlmF::DUMP, NlPayload::Payload(msg))
            .map_err(|e| self.check_err(e))?;
        let mut addrs = Vec::new();
        for reply in recv {
            let reply: Nlmsghdr<Rtm, Ifaddrmsg> = reply.map_err(|e| self.check_err(e))?;
            let NlPayload::Payload(addr) = reply.nl_payload() else {
                continue;
            };
            if *addr.ifa_index() as i32 != index {
                continue;
            }
            // IFA_LOCAL is the address for IPv4; IPv6 only has IFA_ADDRESS.
            let wanted = match addr.ifa_family() {
                RtAddrFamily::Inet => Ifa::Local,
                _ => Ifa::Address,
            };
            for attr in addr.rtattrs().iter() {
                if *attr.rta_type() == wanted {
                    if let Some(ip) = ip_from_bytes(attr.rta_payload().as_ref()) {
                        addrs.push(ip);
                    }
                }
            }
        }
        Ok(addrs)
    }

    fn add_address(&self, rtnl: &NlRouter, index: i32, ip: IpAddr) -> Result<(), InterfaceError> {
        let (family, prefix, flags, octets) = match ip {
            IpAddr::V4(v4) => (RtAddrFamily::Inet, 32, IfaF::empty(), v4.octets().to_vec()),
            IpAddr::V6(v6) => (RtAddrFamily::Inet6, 128, IfaF::NODAD, v6.octets().to_vec()),
        };
        let mut attrs = RtBuffer::<Ifa, Buffer>::new();
        for kind in [Ifa::Local, Ifa::Address] {
            attrs.push(
                RtattrBuilder::default()
                    .rta_type(kind)
                    .rta_payload(Buffer::from(octets.clone()))
                    .build()
                    .map_err(|e| self.add_err(e))?,
            );
        }
        let msg = IfaddrmsgBuilder::default()
            .ifa_family(family)
            .ifa_prefixlen(prefix)
            .ifa_flags(flags)
            .ifa_scope(RtScope::Universe)
            .ifa_index(index as u32)
            .rtattrs(attrs)
            .build()
            .map_err(|e| self.add_err(e))?;
        let recv = rtnl
            .send::<_, _, Rtm, Ifaddrmsg>(
                Rtm::Newaddr,
                NlmF::CREATE | NlmF::EXCL | NlmF::ACK,
                NlPayload::Payload(msg),
            )
            .map_err(|e| self.add_err(e))?;
        for reply in recv {
            match reply {
                Ok(_) => {}
                Err(RouterError::Nlmsgerr(e)) if e.error().abs() == libc::EEXIST => {}
                Err(e) => return Err(self.add_err(format!("add {ip}: {e}"))),
            }
        }
        Ok(())
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
