//! The owner mesh: every cache key has an owner shard (a fixed hash of the key), and
//! a shard that misses on a key it does not own asks the owner over the engine's
//! channel mesh (`engine::mesh`) instead of the upstream (as glommio's
//! `examples/sharding.rs`). This module is the transport only: requests, responses,
//! tickets and wake-ups; what an owner does with a request is the [`Handler`] it
//! joins with (`miss.rs`). Cache hits never cross cores: only misses use the mesh.
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
use futures_lite::future::BoxedLocal;

use super::wake::{self, Wake};
use crate::cache::StoredAnswer;
use crate::engine::{self, Engine, MeshBuilder, Senders};
use crate::limits;
use crate::upstream::{with_deadline, Transport};
use crate::wire::Rcode;

/// A miss handed to its owner.
pub struct Request {
    /// Configuration generation of the requester: a block index only means the same
    /// block when both shards run the same configuration.
    pub generation: u64,
    pub block: usize,
    /// The client's query (any ID, the client's case).
    pub packet: Vec<u8>,
    pub transport: Transport,
    /// A refresh (prefetch, stale) of the requester's entry, not a client's miss.
    pub refresh: bool,
}

/// What an owner does with a request (called on the owner's thread).
pub type Handler = Rc<dyn Fn(Request) -> BoxedLocal<Outcome>>;

/// What crosses cores: a miss handed to its owner, or the owner's answer.
enum Message {
    Request {
        /// Requester's ticket, echoed in the response.
        ticket: u64,
        from: usize,
        request: Request,
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
    /// The owner had only an expired answer and serve_stale answers with it: a reply
    /// to the request, which the requester passes on but does not cache.
    Stale(Vec<u8>),
    Resolved(Result<StoredAnswer, Rcode>),
    /// The owner runs another configuration (a reload is under way): resolve locally.
    Mismatch,
}

/// The channels between every pair of shards, and each shard's [`Wake`].
#[derive(Clone)]
pub struct Mesh {
    channels: MeshBuilder<Message>,
    wakes: Arc<[Wake]>,
}

/// A mesh for `shards` shards (None for one shard: nothing to route).
pub fn mesh(engine: Engine, shards: usize) -> Option<Mesh> {
    (shards > 1).then(|| Mesh {
        channels: engine::mesh(engine, shards, limits::OWNER_CHANNEL_MAX),
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
        self.senders.send_to(to, message).await?;
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
            request: Request {
                generation,
                block,
                packet: packet.to_vec(),
                transport,
                refresh,
            },
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

/// Joins the mesh and serves requests from the other shards with `handler` until
/// cancelled.
pub async fn join(mesh: Mesh, handler: Handler) -> Option<Rc<Peers>> {
    let (senders, receivers) = mesh.channels.join().await?;
    let peers = Rc::new(Peers {
        senders,
        wakes: mesh.wakes,
        waiting: RefCell::new(HashMap::new()),
        next_ticket: Cell::new(0),
    });
    for mut stream in receivers {
        let (peers, handler) = (peers.clone(), handler.clone());
        engine::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                dispatch(&peers, &handler, message);
            }
        })
        .detach();
    }
    Some(peers)
}

fn dispatch(peers: &Rc<Peers>, handler: &Handler, message: Message) {
    match message {
        Message::Response { ticket, outcome } => {
            if let Some(waiter) = peers.waiting.borrow_mut().remove(&ticket) {
                let _ = waiter.send(outcome);
            }
        }
        Message::Request {
            ticket,
            from,
            request,
        } => {
            let (peers, answer) = (peers.clone(), handler(request));
            engine::spawn_local(async move {
                let outcome = answer.await;
                let _ = peers
                    .send(from, Message::Response { ticket, outcome })
                    .await;
            })
            .detach();
        }
    }
}
