//! `whoami`: answers with the client's address and port (A or AAAA, and SRV for
//! the port), as CoreDNS's whoami does; the last link of the chain.

use super::flow::{Flow, Origin, Request};
use crate::config::ServerBlock;
use crate::upstream::Transport;
use crate::wire;

pub struct Whoami;

impl Whoami {
    pub fn new(block: &ServerBlock) -> Option<Whoami> {
        block.whoami.then_some(Whoami)
    }

    pub fn serve(&self, req: &Request<'_>, out: &mut [u8]) -> Flow {
        let tcp = req.transport == Transport::Tcp;
        let len = wire::write_whoami(req.query, req.client, tcp, out);
        Flow::Answer(len, Origin::Whoami)
    }
}
