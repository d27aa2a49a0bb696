//! Test harness: run the real `dnsload` binary with a time bound, a real `knotd`
//! on loopback, and a small in-process UDP server with injected behaviour (delay,
//! one stall, dropped answers, wrong IDs). Every process and thread is stopped on
//! drop, so a failing test leaves nothing behind.

#![allow(dead_code, unused_imports)]

pub mod expansion;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `dnsload` with `args`; kills it and fails the test if it runs past `limit`.
pub fn dnsload(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_dnsload"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dnsload");
    wait_bounded(child, limit)
}

/// Waits for `child` at most `limit`, then kills it and panics.
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    let mut guard = KillOnDrop(Some(child));
    let start = Instant::now();
    loop {
        let done = guard
            .0
            .as_mut()
            .map(|c| c.try_wait().expect("try_wait").is_some());
        if done == Some(true) {
            let child = guard.0.take().expect("child present");
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > limit {
            panic!("dnsload ran longer than {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child process when dropped.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses the JSON report at `path`.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("JSON report written");
    serde_json::from_str(&text).expect("JSON report parses")
}

pub use testkit::process::free_port;

/// A free port below the ephemeral range (32768 and up), so a client's port is
/// always the higher one: tshark decodes a datagram by its lower port first, and
/// a client port that happens to be registered to another protocol would
/// otherwise hide DNS messages from it.
pub fn free_low_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// True when `server` answers a query within `wait` (any rcode).
pub fn probe(server: SocketAddr, wait: Duration) -> bool {
    testkit::process::answers(server, wait)
}

/// A `knotd` serving `example.` from a temp dir, on a free loopback port.
pub struct Knot {
    /// The daemon; killed on drop.
    _child: KillOnDrop,
    /// Holds the zone, config and run files.
    _dir: tempfile::TempDir,
    /// Port it listens on (127.0.0.1 and ::1, UDP and TCP).
    pub port: u16,
}

/// The test zone: a few fixed names plus `svc0`..`svc99` A records.
fn zone() -> String {
    let mut z = String::from(
        "$ORIGIN example.\n$TTL 300\n@ SOA ns.example. admin.example. 1 3600 600 86400 300\n\
         @ NS ns.example.\nns A 127.0.0.1\nwww A 192.0.2.1\nwww AAAA 2001:db8::1\n",
    );
    for i in 0..100 {
        z.push_str(&format!("svc{i} A 192.0.2.{i}\n"));
    }
    z
}

impl Knot {
    /// Starts knotd serving `example.` and waits until it answers. Fails the test
    /// (never skips) when knotd is not installed.
    pub fn start() -> Knot {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("example.zone");
        std::fs::write(&path, zone()).expect("write zone");
        Knot::serve(dir, &[("example".into(), path)])
    }

    /// Starts knotd serving the zone files written by `dnsload --write-zones DIR`
    /// (`ORIGIN PATH` per line of `listing`).
    pub fn start_zones(listing: &str) -> Knot {
        let zones: Vec<(String, PathBuf)> = listing
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(o, p)| (o.to_owned(), PathBuf::from(p)))
            .collect();
        assert!(!zones.is_empty(), "no zones listed: {listing:?}");
        Knot::serve(tempfile::tempdir().expect("temp dir"), &zones)
    }

    fn serve(dir: tempfile::TempDir, zones: &[(String, PathBuf)]) -> Knot {
        let port = free_low_port();
        let listen = [format!("127.0.0.1@{port}"), format!("::1@{port}")];
        let mut conf = testkit::knot::Conf::new(dir.path(), &listen).log("error");
        for (origin, file) in zones {
            conf = conf.zone(&format!("{}.", origin.trim_end_matches('.')), file);
        }
        let conf_path = conf.write();
        let child = testkit::knot::spawn(&conf_path, Stdio::null(), Stdio::null());
        let knot = Knot {
            _child: KillOnDrop(Some(child)),
            _dir: dir,
            port,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !probe(addr, Duration::from_millis(100)) {
            assert!(
                Instant::now() < deadline,
                "knotd did not answer on {addr} within 10 s"
            );
        }
        knot
    }
}

/// A tcpdump capture of loopback UDP traffic to or from one port, into a pcap
/// file; stopped (SIGINT, so the file is complete) by [`Capture::finish`] or on drop.
pub struct Capture {
    /// tcpdump.
    child: KillOnDrop,
    /// The rest of tcpdump's stderr (its drop count), read by a thread.
    stderr: Option<JoinHandle<String>>,
    /// The pcap file.
    pub path: PathBuf,
}

impl Capture {
    /// Starts capturing `udp port PORT` on `lo` into `path` and waits until
    /// tcpdump listens. Fails the test when tcpdump is missing or may not capture.
    pub fn start(port: u16, path: &Path) -> Capture {
        use std::io::{BufRead, Read};
        // Immediate mode and a 32 MiB buffer: nothing waits in a half-full block
        // when the capture stops, and a busy machine does not make it drop.
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-B",
                "32768",
                "--immediate-mode",
                "-U",
                "-n",
                // In immediate mode the kernel ring holds frames of the snap
                // length: with the default (256 KiB) 32 MiB is 128 packets, which a
                // capture starved of CPU for a moment overflows. 1,600 bytes holds
                // any loopback DNS datagram these tests send and ~20,000 frames.
                "-s",
                "1600",
                "-w",
            ])
            .arg(path)
            .args(["udp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("tcpdump: {e} (apt-get install tcpdump; needs CAP_NET_RAW)")
            });
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("tcpdump stderr"));
        let mut line = String::new();
        let _ = stderr.read_line(&mut line);
        assert!(
            line.contains("listening on"),
            "tcpdump did not start capturing: {line:?}"
        );
        let rest = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Capture {
            child: KillOnDrop(Some(child)),
            stderr: Some(rest),
            path: path.to_owned(),
        }
    }

    /// Stops the capture, waits until the file is complete, and fails the test if
    /// the kernel dropped packets (the capture would not be the whole traffic).
    pub fn finish(mut self) -> PathBuf {
        if let Some(mut child) = self.child.0.take() {
            // Packets already on the wire reach tcpdump's buffer first.
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: kill only sends a signal to the child we started.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = child.wait();
        }
        let report = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        assert!(
            report
                .lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "the capture is incomplete: {report}"
        );
        self.path.clone()
    }
}

/// The DNS messages of a capture as tshark decodes them: one row per packet with
/// the fields asked for, tab-separated.
/// Traffic on `port` is decoded as DNS whatever the other port is.
pub fn tshark_fields(pcap: &Path, port: u16, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(pcap).args([
        "-d",
        &format!("udp.port=={port},dns"),
        "-Y",
        "dns",
        "-T",
        "fields",
        "-E",
        "occurrence=f",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e} (apt-get install tshark)"));
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// What the in-process test server does to queries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Every answer is held this long.
    pub delay: Duration,
    /// Once, this long after the first query, stop answering for the second
    /// duration; answers due in that window leave when it ends.
    pub stall: Option<(Duration, Duration)>,
    /// Drop the answer to every N-th query.
    pub drop_every: Option<u64>,
    /// Answer every N-th query with a wrong ID (and never with the right one).
    pub wrong_id_every: Option<u64>,
}

/// Counts of what the test server did.
#[derive(Debug, Default)]
pub struct ServerCounts {
    /// Queries received.
    pub received: AtomicU64,
    /// Answers dropped on purpose.
    pub dropped: AtomicU64,
    /// Answers sent with a wrong ID.
    pub wrong_ids: AtomicU64,
}

/// A UDP server thread on 127.0.0.1 with injected behaviour; stopped on drop.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it did.
    pub counts: Arc<ServerCounts>,
    /// Tells the thread to stop.
    stop: Arc<AtomicBool>,
    /// The thread.
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts the server.
    pub fn start(behaviour: Behaviour) -> TestServer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind test server");
        let addr = sock.local_addr().expect("addr");
        let counts = Arc::new(ServerCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&counts), Arc::clone(&stop));
        let thread = std::thread::spawn(move || serve(sock, behaviour, &c, &s));
        TestServer {
            addr,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// The port, as text for `-p`.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: UdpSocket, b: Behaviour, counts: &ServerCounts, stop: &AtomicBool) {
    let mut pending: std::collections::VecDeque<(Instant, Vec<u8>, SocketAddr)> =
        Default::default();
    let mut first: Option<Instant> = None;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while pending.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, msg, to) = pending.pop_front().expect("front exists");
            let _ = sock.send_to(&msg, to);
        }
        let wait = pending
            .front()
            .map_or(Duration::from_millis(5), |(t, _, _)| {
                t.saturating_duration_since(now)
            });
        let _ = sock.set_read_timeout(Some(
            wait.clamp(Duration::from_micros(100), Duration::from_millis(5)),
        ));
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n < 12 {
            continue;
        }
        let now = Instant::now();
        let start = *first.get_or_insert(now);
        let seq = counts.received.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reply = buf[..n].to_vec();
        reply[2] |= 0x80;
        if b.drop_every.is_some_and(|k| seq % k == 0) {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if b.wrong_id_every.is_some_and(|k| seq % k == 0) {
            reply[0] ^= 0x80;
            counts.wrong_ids.fetch_add(1, Ordering::Relaxed);
        }
        let mut release = now + b.delay;
        if let Some((after, len)) = b.stall {
            let (from_t, until) = (start + after, start + after + len);
            if now >= from_t && now < until {
                release = release.max(until);
            }
        }
        pending.push_back((release, reply, from));
    }
}
