//! The HTTP endpoints, one listener (and thread) per distinct address across the
//! server blocks: `/metrics` where a `prometheus` directive points, `/health` for
//! `health`, `/ready` for `ready`. The directives are per block but process-wide in
//! effect, as in CoreDNS. Plain HTTP is tiny_http's; with `-tls-enabled` the
//! addresses that serve `/metrics` speak HTTPS instead (rustls, one connection at a
//! time, each bounded in time and size: [`serve_tls`]). Both answer through
//! [`route`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Response, Server};

use super::Shared;
use crate::config::Config;
use crate::limits::{HTTP_REQUEST_HEAD_BYTES_MAX, HTTP_TLS_IO_MILLIS};

/// What one address serves.
#[derive(Debug, Clone, Copy, Default)]
struct Routes {
    metrics: bool,
    health: bool,
    ready: bool,
}

/// A running listener; dropping it stops the thread.
pub struct Listener {
    pub addr: SocketAddr,
    stop: Stop,
    thread: Option<JoinHandle<()>>,
}

/// How a listener's thread is told to stop.
enum Stop {
    Http(Arc<Server>),
    /// Set, then the accept is woken by a connection of our own.
    Tls(Arc<AtomicBool>),
}

impl Drop for Listener {
    fn drop(&mut self) {
        match &self.stop {
            Stop::Http(server) => server.unblock(),
            Stop::Tls(stop) => {
                stop.store(true, Ordering::Relaxed);
                let mut wake = self.addr;
                if wake.ip().is_unspecified() {
                    wake.set_ip(match wake {
                        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds every address `config` names and starts serving; with `tls`, the
/// addresses that serve `/metrics` speak HTTPS.
pub fn start(
    config: &Config,
    shared: &Arc<Shared>,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> std::io::Result<Vec<Listener>> {
    let mut addrs: Vec<(SocketAddr, Routes)> = Vec::new();
    let mut add =
        |addr: SocketAddr, set: fn(&mut Routes)| match addrs.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, routes)) => set(routes),
            None => {
                let mut routes = Routes::default();
                set(&mut routes);
                addrs.push((addr, routes));
            }
        };
    for block in &config.servers {
        if let Some(addr) = block.prometheus {
            add(addr, |r| r.metrics = true);
        }
        if let Some(health) = block.health {
            add(health.addr, |r| r.health = true);
        }
        if let Some(addr) = block.ready {
            add(addr, |r| r.ready = true);
        }
    }
    let mut listeners = Vec::with_capacity(addrs.len());
    for (addr, routes) in addrs {
        let tls = tls.filter(|_| routes.metrics);
        let listener = match tls {
            Some(tls) => listen_tls(addr, routes, shared, tls.clone())?,
            None => listen_http(addr, routes, shared)?,
        };
        let paths: Vec<&str> = [
            (routes.metrics, "/metrics"),
            (routes.health, "/health"),
            (routes.ready, "/ready"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, p)| *p)
        .collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %listener.addr, paths = %paths.join(" "), "listening ({scheme})");
        listeners.push(listener);
    }
    Ok(listeners)
}

fn listen_http(
    addr: SocketAddr,
    routes: Routes,
    shared: &Arc<Shared>,
) -> std::io::Result<Listener> {
    let (server, bound) = listen(addr)?;
    let (thread_server, shared) = (server.clone(), shared.clone());
    let thread = std::thread::Builder::new()
        .name(format!("http-{}", bound.port()))
        .spawn(move || serve(&thread_server, routes, &shared))?;
    Ok(Listener {
        addr: bound,
        stop: Stop::Http(server),
        thread: Some(thread),
    })
}

fn listen_tls(
    addr: SocketAddr,
    routes: Routes,
    shared: &Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<Listener> {
    let listener = bind_reusable(addr).map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot listen on https {addr}: {err}"))
    })?;
    let bound = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (thread_stop, shared) = (stop.clone(), shared.clone());
    let thread = std::thread::Builder::new()
        .name(format!("https-{}", bound.port()))
        .spawn(move || serve_tls(&listener, &tls, routes, &shared, &thread_stop))?;
    Ok(Listener {
        addr: bound,
        stop: Stop::Tls(stop),
        thread: Some(thread),
    })
}

/// One answer: status, body, and whether it is a Prometheus exposition.
struct Reply {
    status: u16,
    body: String,
    exposition: bool,
}

/// The answer to a request for `path` on an address serving `routes`.
fn route(path: &str, routes: Routes, shared: &Shared) -> Reply {
    let text = |status, body: &str| Reply {
        status,
        body: body.to_string(),
        exposition: false,
    };
    match path {
        "/metrics" if routes.metrics => Reply {
            status: 200,
            body: shared.render(),
            exposition: true,
        },
        "/health" if routes.health => match shared.health_failure() {
            None => text(200, "OK"),
            Some(stuck) => text(503, &stuck),
        },
        "/ready" if routes.ready => match shared.ready() {
            true => text(200, "OK"),
            false => text(503, "not ready"),
        },
        _ => text(404, "404 page not found\n"),
    }
}

/// Pause after a failed accept on the HTTPS listener.
const ACCEPT_RETRY_MILLIS: u64 = 100;

const EXPOSITION_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn serve(server: &Server, routes: Routes, shared: &Shared) {
    for request in server.incoming_requests() {
        let started = Instant::now();
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let reply = route(&path, routes, shared);
        let mut response = text(reply.status, reply.body);
        if reply.exposition {
            response = response.with_header(content_type(EXPOSITION_TYPE));
        }
        let _ = request.respond(response);
        if path == "/health" && routes.health {
            shared.observe_health(started.elapsed());
        }
    }
}

/// HTTPS, one connection at a time: handshake, one request, one answer, close.
/// Each read and write is bounded by [`HTTP_TLS_IO_MILLIS`]; a failed handshake (no
/// client certificate where one is required, an unknown CA, an old version) drops
/// the connection and is logged at debug.
fn serve_tls(
    listener: &TcpListener,
    tls: &Arc<rustls::ServerConfig>,
    routes: Routes,
    shared: &Shared,
    stop: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                // Out of descriptors, say: wait a little rather than spin on accept.
                tracing::debug!(%err, "https: accept failed");
                std::thread::sleep(Duration::from_millis(ACCEPT_RETRY_MILLIS));
                continue;
            }
        };
        let started = Instant::now();
        let timeout = Some(Duration::from_millis(HTTP_TLS_IO_MILLIS));
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            continue;
        }
        let Ok(connection) = rustls::ServerConnection::new(tls.clone()) else {
            continue;
        };
        let mut tls_stream = rustls::StreamOwned::new(connection, stream);
        let path = match read_request_path(&mut tls_stream) {
            Ok(path) => path,
            Err(err) => {
                tracing::debug!(%err, "https: connection dropped");
                continue;
            }
        };
        let reply = route(&path, routes, shared);
        if let Err(err) = write_reply(&mut tls_stream, &reply) {
            tracing::debug!(%err, "https: answer not sent");
        }
        tls_stream.conn.send_close_notify();
        let _ = tls_stream.flush();
        if path == "/health" && routes.health {
            shared.observe_health(started.elapsed());
        }
    }
}

/// Reads a request head (at most [`HTTP_REQUEST_HEAD_BYTES_MAX`]) and returns the
/// path of its request line, without the query string.
fn read_request_path(stream: &mut impl Read) -> std::io::Result<String> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= HTTP_REQUEST_HEAD_BYTES_MAX {
            return Err(invalid("request head too long"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("connection closed before the request"));
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (Some(_method), Some(target)) = (words.next(), words.next()) else {
        return Err(invalid("no request line"));
    };
    Ok(target.split('?').next().unwrap_or_default().to_string())
}

fn write_reply(stream: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "",
    };
    let kind = if reply.exposition {
        EXPOSITION_TYPE
    } else {
        "text/plain; charset=UTF-8"
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(reply.body.as_bytes())?;
    stream.flush()
}

/// Binds `addr` for HTTP: the server and the address it got.
fn listen(addr: SocketAddr) -> std::io::Result<(Arc<Server>, SocketAddr)> {
    let server = bind_reusable(addr)
        .map_err(|err| err.into())
        .and_then(|l| Server::from_listener(l, None))
        .map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("cannot listen on http {addr}: {err}"),
            )
        })?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    Ok((Arc::new(server), bound))
}

/// A listener of its own that serves only `/metrics`, the text `render` makes (the
/// node's setup metrics, `-metrics-listen-address`).
pub fn serve_metrics(
    addr: SocketAddr,
    render: Box<dyn Fn() -> String + Send>,
) -> std::io::Result<Listener> {
    let (server, bound) = listen(addr)?;
    let thread_server = server.clone();
    let thread = std::thread::Builder::new()
        .name(format!("http-{}", bound.port()))
        .spawn(move || {
            for request in thread_server.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("");
                let response = match path {
                    "/metrics" => exposition(render()),
                    _ => text(404, "404 page not found\n".into()),
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(Listener {
        addr: bound,
        stop: Stop::Http(server),
        thread: Some(thread),
    })
}

/// A Prometheus text exposition response.
fn exposition(body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    text(200, body).with_header(content_type(EXPOSITION_TYPE))
}

fn text(status: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body).with_status_code(status)
}

fn content_type(value: &str) -> Header {
    Header::from_bytes("Content-Type", value).unwrap_or_else(|_| {
        Header::from_bytes("Content-Type", "text/plain").expect("static header is valid")
    })
}

/// A TCP listener with SO_REUSEPORT, so a new process started beside this one (a
/// restart, a DaemonSet rolled with `maxSurge`) can bind the same health and metrics
/// ports while this one drains; both answer until this one exits.
pub fn bind_reusable(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}
