//! Executor pool and placement, listeners, the per-core loops, shutdown.
//!
//! [`start`] opens every socket on the calling thread (so a bind error is reported
//! before anything runs and port 0 resolves once), then starts one glommio executor
//! per shard pinned to its core. Each shard owns its sockets, cache and upstream
//! connections; the only thing the shards share is the shutdown flag, read by a
//! timer, never per packet.

mod listen;
pub mod query;
pub mod shard;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::limits;
use crate::upstream::Transport;
use query::Handled;
use shard::Shard;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {proto} {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {reason}")]
    Executor { shard: usize, reason: String },
    #[error("the configuration has no server block to listen for")]
    NothingToServe,
}

/// Process-level settings that are not in the Corefile.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shards (threads); None = every usable core.
    pub shards: Option<usize>,
    pub rcvbuf_bytes: usize,
    /// io_uring memory per shard (counts against RLIMIT_MEMLOCK without CAP_IPC_LOCK).
    pub io_memory_bytes: usize,
    /// Pin shard k to the k-th usable core.
    pub pin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shards: None,
            rcvbuf_bytes: limits::UDP_RCVBUF_BYTES_DEFAULT,
            io_memory_bytes: 2 * 1024 * 1024,
            pin: true,
        }
    }
}

/// A running server: its listening addresses and the handle to stop it.
pub struct Running {
    pub endpoints: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks every shard to stop; they close their sockets within ~100 ms.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for every shard to finish.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Opens the listeners of `config` and starts the shards.
pub fn start(config: Config, options: &Options) -> Result<Running, ServerError> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let shards = options.shards.unwrap_or(cores.len()).max(1);
    let mut endpoints = listen::endpoints(&config);
    if endpoints.is_empty() {
        return Err(ServerError::NothingToServe);
    }
    let sockets = listen::open(&mut endpoints, shards, options.rcvbuf_bytes)?;
    let config = Arc::new(config);
    let endpoints = Arc::new(endpoints);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::with_capacity(shards);
    for (index, sockets) in sockets.into_iter().enumerate() {
        let placement = match cores.get(index % cores.len().max(1)) {
            Some(core) if options.pin => Placement::Fixed(core.id),
            _ => Placement::Unbound,
        };
        let (config, endpoints, stop) = (config.clone(), endpoints.clone(), stop.clone());
        let thread = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{index}"))
            .io_memory(options.io_memory_bytes)
            .spawn(move || async move {
                let shard = Shard::new(&config, &endpoints, shards);
                serve(shard, sockets, stop).await;
            })
            .map_err(|err| ServerError::Executor {
                shard: index,
                reason: err.to_string(),
            })?;
        threads.push(std::thread::spawn(move || {
            let _ = thread.join();
        }));
    }
    Ok(Running {
        endpoints: endpoints.iter().map(|e| e.addr).collect(),
        stop,
        threads,
    })
}

/// Runs one shard's listeners until the stop flag is set.
async fn serve(shard: Rc<Shard>, sockets: listen::ShardSockets, stop: Arc<AtomicBool>) {
    let mut tasks = Vec::new();
    for (endpoint, socket) in sockets.udp.into_iter().enumerate() {
        tasks.push(glommio::spawn_local(serve_udp(
            shard.clone(),
            endpoint,
            socket,
        )));
    }
    for (endpoint, socket) in sockets.tcp.into_iter().enumerate() {
        tasks.push(glommio::spawn_local(tcp::serve(
            shard.clone(),
            endpoint,
            socket,
        )));
    }
    let mut ticks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        ticks += 1;
        if ticks % 10 == 0 {
            shard.sweep(limits::CACHE_SWEEP_ENTRIES_PER_SECOND);
        }
    }
    for task in tasks {
        let _ = task.cancel().await;
    }
}

/// The UDP loop of one socket: drain a batch, answer hits in the same batch, hand
/// misses to tasks, send, and park on io_uring when the socket is empty.
async fn serve_udp(shard: Rc<Shard>, endpoint: usize, socket: socket2::Socket) {
    // SAFETY: the fd comes from a socket we own and give up here.
    let socket = Rc::new(unsafe { glommio::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) });
    let fd = socket.as_raw_fd();
    let mut batch = Box::<udp::Batch>::default();
    let mut probe = [0u8; 1];
    loop {
        let count = match batch.receive(fd) {
            Ok(0) => {
                // Park until a datagram is queued (io_uring recvmsg with MSG_PEEK).
                let _ = socket.peek_from(&mut probe).await;
                continue;
            }
            Ok(count) => count,
            Err(err) => {
                tracing::warn!(%err, "UDP receive failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let now = Instant::now();
        for i in 0..count {
            let peer = batch.peers[i];
            let len = batch.recv_lens[i].min(limits::UDP_PAYLOAD_BYTES_MAX);
            let reply_socket = socket.clone();
            let reply_shard = shard.clone();
            let reply = move |answer: &[u8]| {
                if !answer.is_empty()
                    && udp::send_one(reply_socket.as_raw_fd(), answer, peer).is_err()
                {
                    let failures = &reply_shard.counters.send_failures;
                    failures.set(failures.get() + 1);
                }
            };
            let slot = batch.send_count.min(limits::UDP_BATCH_MAX - 1);
            let packet = &batch.recv_bufs[i][..len];
            let out = &mut batch.send_bufs[slot];
            let handled = query::handle(&shard, endpoint, packet, Transport::Udp, now, out, reply);
            if let Handled::Reply(len) = handled {
                batch.push_send(len, peer);
            }
        }
        let unsent = batch.flush(fd);
        if unsent > 0 {
            shard
                .counters
                .send_failures
                .set(shard.counters.send_failures.get() + unsent as u64);
        }
        glommio::yield_if_needed().await;
    }
}
