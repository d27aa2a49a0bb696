//! The HTTP endpoints, one tiny_http listener (and thread) per distinct address
//! across the server blocks: `/metrics` where a `prometheus` directive points,
//! `/health` for `health`, `/ready` for `ready`. The directives are per block but
//! process-wide in effect, as in CoreDNS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tiny_http::{Header, Response, Server};

use super::Shared;
use crate::config::Config;

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
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds every address `config` names and starts serving.
pub fn start(config: &Config, shared: &Arc<Shared>) -> std::io::Result<Vec<Listener>> {
    let mut addrs: Vec<(SocketAddr, Routes)> = Vec::new();
    let mut route =
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
            route(addr, |r| r.metrics = true);
        }
        if let Some(health) = block.health {
            route(health.addr, |r| r.health = true);
        }
        if let Some(addr) = block.ready {
            route(addr, |r| r.ready = true);
        }
    }
    let mut listeners = Vec::with_capacity(addrs.len());
    for (addr, routes) in addrs {
        let (server, bound) = listen(addr)?;
        let paths: Vec<&str> = [
            (routes.metrics, "/metrics"),
            (routes.health, "/health"),
            (routes.ready, "/ready"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, p)| *p)
        .collect();
        tracing::info!(addr = %bound, paths = %paths.join(" "), "listening (http)");
        let (thread_server, shared) = (server.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("http-{}", bound.port()))
            .spawn(move || serve(&thread_server, routes, &shared))?;
        listeners.push(Listener {
            addr: bound,
            server,
            thread: Some(thread),
        });
    }
    Ok(listeners)
}

fn serve(server: &Server, routes: Routes, shared: &Shared) {
    for request in server.incoming_requests() {
        let started = Instant::now();
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let response = match path.as_str() {
            "/metrics" if routes.metrics => exposition(shared.render()),
            "/health" if routes.health => match shared.health_failure() {
                None => text(200, "OK".into()),
                Some(stuck) => text(503, stuck),
            },
            "/ready" if routes.ready => match shared.ready() {
                true => text(200, "OK".into()),
                false => text(503, "not ready".into()),
            },
            _ => text(404, "404 page not found\n".into()),
        };
        let _ = request.respond(response);
        if path == "/health" && routes.health {
            shared.observe_health(started.elapsed());
        }
    }
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
        server,
        thread: Some(thread),
    })
}

/// A Prometheus text exposition response.
fn exposition(body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    let kind = "text/plain; version=0.0.4; charset=utf-8";
    text(200, body).with_header(content_type(kind))
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
