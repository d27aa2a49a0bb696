//! The epoll engine: per shard thread, a tokio current-thread runtime (its driver is
//! one epoll instance, its timer wheel, and an eventfd other threads write to wake
//! it) running a `LocalSet`, so tasks stay on their shard as on glommio. The owner
//! mesh is a bounded tokio channel per ordered pair of shards: a send from another
//! shard wakes the receiving runtime through that eventfd.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::ShardSpec;

/// A TCP stream with the `futures-io` traits.
pub type Stream = Compat<tokio::net::TcpStream>;

pub fn stream(stream: tokio::net::TcpStream) -> Stream {
    stream.compat()
}

/// Starts the shard's thread: pinned to `spec.core` if set, then its runtime (built
/// here first, so a failure is the caller's error, not a thread that never starts).
pub fn spawn_shard<F, Fut>(
    spec: &ShardSpec,
    body: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let core = spec.core;
    std::thread::Builder::new()
        .name(format!("shard-{}", spec.index))
        .spawn(move || {
            if let Some(id) = core {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    tracing::warn!(core = id, "cannot pin the shard's thread");
                }
            }
            tokio::task::LocalSet::new().block_on(&runtime, body());
        })
}

/// One peer's ends: its senders by peer (None for itself), its receivers.
type Ends<T> = (Vec<Option<mpsc::Sender<T>>>, Vec<mpsc::Receiver<T>>);

/// The channels of a mesh before the shards join: `ends[peer]` is taken by the
/// peer-th shard to join.
pub struct Mesh<T> {
    joined: AtomicUsize,
    ends: Mutex<Vec<Option<Ends<T>>>>,
}

impl<T> Mesh<T> {
    pub fn new(peers: usize, capacity: usize) -> Mesh<T> {
        let mut senders: Vec<Vec<Option<mpsc::Sender<T>>>> = (0..peers)
            .map(|_| (0..peers).map(|_| None).collect())
            .collect();
        let mut receivers: Vec<Vec<mpsc::Receiver<T>>> = (0..peers).map(|_| Vec::new()).collect();
        for (from, row) in senders.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate().filter(|(to, _)| *to != from) {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                *slot = Some(tx);
                receivers[to].push(rx);
            }
        }
        let ends = senders.into_iter().zip(receivers).map(Some).collect();
        Mesh {
            joined: AtomicUsize::new(0),
            ends: Mutex::new(ends),
        }
    }

    /// The next peer's ends; None once every peer joined.
    pub fn join(&self) -> Option<(Senders<T>, Vec<mpsc::Receiver<T>>)> {
        let me = self.joined.fetch_add(1, Ordering::SeqCst);
        let (to, receivers) = self.ends.lock().ok()?.get_mut(me)?.take()?;
        Some((Senders { me, to }, receivers))
    }
}

/// One shard's senders, by peer (None for itself).
pub struct Senders<T> {
    pub me: usize,
    pub to: Vec<Option<mpsc::Sender<T>>>,
}

impl<T> Senders<T> {
    pub async fn send_to(&self, to: usize, message: T) -> Result<(), T> {
        match self.to.get(to) {
            Some(Some(sender)) => sender.send(message).await.map_err(|e| e.0),
            _ => Err(message),
        }
    }
}
