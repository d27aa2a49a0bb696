//! DNS over TCP from clients: an accept loop per listener, and per connection a
//! reader that takes length-prefixed queries (many per connection, answered as they
//! complete, possibly out of order) and a writer task that sends the answers.
//! Idle connections close after the CoreDNS timeouts (`--tcp-idle-timeout`); a shard
//! bounds its clients (`--tcp-clients-max`).

use std::cell::Cell;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};

use super::query::{self, Handled};
use crate::limits;
use crate::upstream::{with_deadline, Transport};

/// Accepts clients until the task is cancelled.
pub async fn serve(
    current: super::Current,
    addr: std::net::SocketAddr,
    socket: socket2::Socket,
    bounds: super::TcpLimits,
) {
    // SAFETY: the fd comes from a socket we own and give up here.
    let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
    let clients = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(%err, "TCP accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shard = current.borrow().clone();
        if clients.get() >= bounds.clients_per_shard_max {
            shard
                .counters
                .tcp_refused
                .set(shard.counters.tcp_refused.get() + 1);
            continue;
        }
        clients.set(clients.get() + 1);
        let (current, clients) = (current.clone(), clients.clone());
        glommio::spawn_local(async move {
            serve_client(&current, addr, stream, bounds.idle).await;
            clients.set(clients.get() - 1);
        })
        .detach();
    }
}

/// Reads queries until the client closes, sends garbage framing, or idles out.
async fn serve_client(
    current: &super::Current,
    addr: std::net::SocketAddr,
    stream: TcpStream,
    idle: Duration,
) {
    let client = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut reader, writer) = futures_lite::io::split(stream);
    // Unbounded so an answer finishing later is never dropped for want of room; the
    // reader bounds it instead: it stops reading while too many answers wait.
    let (frames, queue) = local_channel::new_unbounded();
    let frames = Rc::new(frames);
    let writing = glommio::spawn_local(write_answers(writer, queue));
    let inflight = Rc::new(Cell::new(0usize));
    let mut packet = vec![0u8; limits::MESSAGE_BYTES_MAX];
    let mut out = vec![0u8; limits::MESSAGE_BYTES_MAX];
    // The first query may take CoreDNS's 3 s, unless the idle limit is shorter.
    let mut wait = Duration::from_millis(limits::TCP_CLIENT_FIRST_READ_MILLIS).min(idle);
    loop {
        let mut len = [0u8; 2];
        match with_deadline(wait, reader.read_exact(&mut len)).await {
            Some(Ok(())) => {}
            _ => break,
        }
        let len = usize::from(u16::from_be_bytes(len));
        // A frame shorter than a header can never be a query: close.
        if len < 12 {
            break;
        }
        let body = &mut packet[..len];
        match with_deadline(
            Duration::from_millis(limits::TCP_CLIENT_FIRST_READ_MILLIS),
            reader.read_exact(body),
        )
        .await
        {
            Some(Ok(())) => {}
            _ => break,
        }
        wait = idle;
        // Backpressure: wait while too many queries are in flight or answers are
        // unsent; a client that stops reading its answers is dropped after `idle`.
        let stalled_since = Instant::now();
        while inflight.get() >= limits::TCP_CLIENT_INFLIGHT_MAX
            || frames.len() >= limits::TCP_CLIENT_INFLIGHT_MAX
        {
            if stalled_since.elapsed() > idle {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        if stalled_since.elapsed() > idle {
            break;
        }
        let reply = || {
            let (later_frames, later_inflight) = (frames.clone(), inflight.clone());
            move |answer: &[u8]| {
                if !answer.is_empty() {
                    let _ = later_frames.try_send(frame(answer));
                }
                later_inflight.set(later_inflight.get() - 1);
            }
        };
        inflight.set(inflight.get() + 1);
        let shard = current.borrow().clone();
        let Some(endpoint) = shard.endpoint_index(addr) else {
            break;
        };
        match query::handle(
            &shard,
            endpoint,
            client,
            &packet[..len],
            Transport::Tcp,
            Instant::now(),
            &mut out,
            reply,
        ) {
            Handled::Reply(n) => {
                inflight.set(inflight.get() - 1);
                if frames.try_send(frame(&out[..n])).is_err() {
                    break;
                }
            }
            Handled::Later => {}
            Handled::Drop => {
                inflight.set(inflight.get() - 1);
                break;
            }
        }
    }
    // Let answers still being resolved go out before closing (bounded by the
    // upstream deadline).
    let deadline = Instant::now() + Duration::from_millis(limits::UPSTREAM_QUERY_MILLIS + 100);
    while inflight.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    drop(frames);
    writing.await;
}

fn frame(answer: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(answer.len() + 2);
    framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
    framed.extend_from_slice(answer);
    framed
}

async fn write_answers<W: futures_lite::AsyncWrite + Unpin>(
    mut writer: W,
    queue: local_channel::LocalReceiver<Vec<u8>>,
) {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while let Some(Some(more)) = futures_lite::future::poll_once(queue.recv()).await {
            batch.extend_from_slice(&more);
        }
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.close().await;
}
