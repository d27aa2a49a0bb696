//! `acl`: which clients may query the block, by network, name and type. A refused
//! query is answered REFUSED (NOERROR for `filter`), a dropped one not at all;
//! both are counted here.

use std::cell::Cell;

use super::flow::{Flow, Origin, Request};
use crate::config::{AclAction, AclConfig, ServerBlock};
use crate::wire::{self, Rcode};

pub struct Acl {
    rules: AclConfig,
    refused: Cell<u64>,
    dropped: Cell<u64>,
}

impl Acl {
    pub fn new(block: &ServerBlock) -> Option<Acl> {
        Some(Acl {
            rules: block.acl.clone()?,
            refused: Cell::new(0),
            dropped: Cell::new(0),
        })
    }

    pub fn serve(&self, req: &Request<'_>, out: &mut [u8]) -> Flow {
        let q = req.query;
        let rcode = match self.rules.decide(req.client.ip(), q.qname, q.qtype) {
            AclAction::Allow => return Flow::Next,
            AclAction::Drop => {
                self.dropped.set(self.dropped.get() + 1);
                return Flow::Drop;
            }
            AclAction::Block => Rcode::Refused,
            AclAction::Filter => Rcode::NoError,
        };
        self.refused.set(self.refused.get() + 1);
        Flow::Answer(wire::write_error_reply(q.packet, rcode, out), Origin::Acl)
    }

    /// Queries refused and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.refused.get(), self.dropped.get())
    }
}
