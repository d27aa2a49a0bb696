//! Cross-core miss routing: every cache key has an owner shard (a fixed hash of the
//! key), and a shard that misses on a key it does not own asks the owner over a
//! glommio channel mesh instead of the upstream. The owner coalesces the requests of
//! every shard with its own misses, so N clients on N cores asking the same cold name
//! cause one upstream query; the answer travels back and fills the cache of each
//! shard that asked. Cache hits never cross cores: only misses use the mesh.
//!
//! Every message also pokes the receiver's [`Wake`], which interrupts its UDP loop
//! when that blocks in a hot wait, so the message is read at once (`wake.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};

use super::shard::Shard;
use super::wake::{self, Wake};
use super::Current;
use crate::cache::StoredAnswer;
use crate::limits;
use crate::upstream::{with_deadline, Transport};
use crate::wire::{self, Rcode};

/// What crosses cores: a miss handed to its owner, or the owner's answer.
pub enum Message {
    Request {
        /// Requester's ticket, echoed in the response.
        ticket: u64,
        from: usize,
        /// Configuration generation of the requester: a block index only means the
        /// same block when both shards run the same configuration.
        generation: u64,
        block: usize,
        /// The client's query (any ID, the client's case).
        packet: Vec<u8>,
        transport: Transport,
        /// A refresh (prefetch, stale) of the requester's entry, not a client's miss.
        refresh: bool,
    },
    Response {
        ticket: u64,
        outcome: Outcome,
    },
}

/// The owner's answer to a request.
pub enum Outcome {
    /// The owner had the answer cached: a reply to the request (remaining TTLs),
    /// which the requester parses and caches like an upstream answer.
    Cached(Vec<u8>),
    Resolved(Result<StoredAnswer, Rcode>),
    /// The owner runs another configuration (a reload is under way): resolve locally.
    Mismatch,
}

/// The channels between every pair of shards, and each shard's [`Wake`].
#[derive(Clone)]
pub struct Mesh {
    channels: MeshBuilder<Message, Full>,
    wakes: Arc<[Wake]>,
}

/// A mesh for `shards` shards (None for one shard: nothing to route).
pub fn mesh(shards: usize) -> Option<Mesh> {
    (shards > 1).then(|| Mesh {
        channels: MeshBuilder::full(shards, limits::OWNER_CHANNEL_MAX),
        wakes: wake::wakes(shards),
    })
}

/// A shard's end of the mesh.
pub struct Peers {
    senders: Senders<Message>,
    /// Every shard's wake, by peer id.
    wakes: Arc<[Wake]>,
    /// Requests sent and not yet answered, by ticket.
    waiting: RefCell<HashMap<u64, oneshot::Sender<Outcome>>>,
    next_ticket: Cell<u64>,
}

impl Peers {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.senders.peer_id()
    }

    /// This shard's wake: its UDP loop's hot waits publish themselves there.
    pub fn wake(&self) -> Option<&Wake> {
        self.wakes.get(self.me())
    }

    /// Queues `message` for shard `to` and interrupts its hot wait; None when the
    /// mesh is closed.
    async fn send(&self, to: usize, message: Message) -> Option<()> {
        self.senders.send_to(to, message).await.ok()?;
        if let Some(wake) = self.wakes.get(to) {
            wake.poke();
        }
        Some(())
    }

    /// The owner of a cache key (same answer on every shard).
    pub fn owner(&self, key: &[u8]) -> usize {
        let mut hasher =
            foldhash::fast::FixedState::with_seed(limits::OWNER_HASH_SEED).build_hasher();
        hasher.write(key);
        (hasher.finish() % self.senders.nr_consumers().max(1) as u64) as usize
    }

    /// Asks `owner` to resolve (`refresh`: to refresh the caller's entry); None when
    /// the owner cannot (other configuration, mesh closed, no answer within the query
    /// deadline): the caller resolves itself.
    pub async fn ask(
        &self,
        owner: usize,
        generation: u64,
        block: usize,
        packet: &[u8],
        transport: Transport,
        refresh: bool,
    ) -> Option<Outcome> {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(ticket, tx);
        let _forget = Forget {
            peers: self,
            ticket,
        };
        let request = Message::Request {
            ticket,
            from: self.me(),
            generation,
            block,
            packet: packet.to_vec(),
            transport,
            refresh,
        };
        self.send(owner, request).await?;
        let budget = Duration::from_millis(limits::UPSTREAM_QUERY_MILLIS + 500);
        match with_deadline(budget, rx).await {
            Some(Ok(Outcome::Mismatch)) | Some(Err(_)) | None => None,
            Some(Ok(outcome)) => Some(outcome),
        }
    }
}

struct Forget<'a> {
    peers: &'a Peers,
    ticket: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.peers.waiting.borrow_mut().remove(&self.ticket);
    }
}

/// Joins the mesh and serves requests from the other shards until cancelled.
pub async fn join(mesh: Mesh, current: Current) -> Option<Rc<Peers>> {
    let (senders, mut receivers) = mesh.channels.join().await.ok()?;
    let peers = Rc::new(Peers {
        senders,
        wakes: mesh.wakes,
        waiting: RefCell::new(HashMap::new()),
        next_ticket: Cell::new(0),
    });
    for (_, stream) in receivers.streams() {
        let (peers, current) = (peers.clone(), current.clone());
        glommio::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                dispatch(&peers, &current, message);
            }
        })
        .detach();
    }
    Some(peers)
}

fn dispatch(peers: &Rc<Peers>, current: &Current, message: Message) {
    match message {
        Message::Response { ticket, outcome } => {
            if let Some(waiter) = peers.waiting.borrow_mut().remove(&ticket) {
                let _ = waiter.send(outcome);
            }
        }
        Message::Request {
            ticket,
            from,
            generation,
            block,
            packet,
            transport,
            refresh,
        } => {
            let (peers, shard) = (peers.clone(), current.borrow().clone());
            glommio::spawn_local(async move {
                let outcome = if shard.generation != generation || block >= shard.blocks.len() {
                    Outcome::Mismatch
                } else {
                    match wire::parse_query(&packet) {
                        Ok(query) => {
                            answer_request(&shard, block, &query, transport, refresh).await
                        }
                        Err(_) => Outcome::Resolved(Err(Rcode::FormErr)),
                    }
                };
                let _ = peers
                    .send(from, Message::Response { ticket, outcome })
                    .await;
            })
            .detach();
        }
    }
}

/// The owner's side of a request: its cache first (the reply travels as bytes), else
/// a resolution shared with every other miss of the key on this shard.
///
/// A `refresh` request for an entry the owner is refreshing itself (both copies
/// became due together) joins that refresh (no extra upstream query) and gets the new
/// answer, or the failure, instead of the copy about to be replaced, which the
/// requester would cache again and soon refresh again. A client's miss takes the
/// cached copy at once.
async fn answer_request(
    shard: &Rc<Shard>,
    block: usize,
    query: &wire::Query<'_>,
    transport: Transport,
    refresh: bool,
) -> Outcome {
    let mut reply = vec![0u8; limits::MESSAGE_BYTES_MAX];
    let now = std::time::Instant::now();
    if let Some(len) = super::query::cached_reply(shard, block, query, transport, now, &mut reply) {
        let refreshing = refresh
            && shard
                .blocks
                .get(block)
                .and_then(|b| b.cache.as_ref())
                .is_some_and(|c| c.borrow().refreshing(query, now));
        if !refreshing {
            reply.truncate(len);
            return Outcome::Cached(reply);
        }
    }
    let resolution = super::query::resolve_owned(shard, block, query, transport).await;
    Outcome::Resolved((*resolution).clone())
}
