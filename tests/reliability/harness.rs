//! Processes and clients for the reliability tests: a real `knotd` as the healthy
//! upstream, the `nodelocaldns` binary under test, and a small blocking DNS client.
//! Everything listens on 127.0.0.1 free ports and is killed when dropped. (The
//! approach of `tests/integration/harness.rs`, cut to what these tests need.)

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tempfile::TempDir;

pub use testkit::process::free_port;

/// `dnsload`, built by the workspace into the same target directory as our binary
/// (`CARGO_BIN_EXE_*` only names binaries of this package); built on demand.
pub fn dnsload_path() -> PathBuf {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_nodelocaldns"));
    let path = ours.with_file_name("dnsload");
    if !path.is_file() {
        let profile = ours
            .parent()
            .and_then(|p| p.file_name())
            .unwrap_or_default();
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "dnsload", "--bin", "dnsload"]);
        if profile == "release" {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building dnsload");
    }
    path
}

/// A `knotd` serving `example.test.` (names a..z, w0..w999, a big TXT) on a free port.
pub struct Knot {
    child: Child,
    _dir: TempDir,
    pub addr: SocketAddr,
}

impl Knot {
    pub fn start() -> Knot {
        let dir = tempfile::Builder::new().prefix("rlk").tempdir().unwrap();
        let port = free_port();
        let conf = testkit::knot::Conf::new(dir.path(), &[format!("127.0.0.1@{port}")])
            .control()
            .zone("example.test.", "z.zone")
            .zone("f.test.", "f.zone")
            .write();
        let soa = [3600, 600, 86400, 30];
        let names: String = (0..1000)
            .map(|i| format!("w{i} A 10.0.{}.{}\n", i / 256, i % 256))
            .collect();
        let zone = testkit::knot::zone(None, 300, soa, "127.0.0.1", &names);
        fs::write(dir.path().join("z.zone"), zone).unwrap();
        let f = testkit::knot::zone(None, 300, soa, "127.0.0.1", "* A 10.9.9.9\n");
        fs::write(dir.path().join("f.zone"), f).unwrap();
        let child = testkit::knot::spawn(&conf, Stdio::null(), Stdio::null());
        let knot = Knot {
            child,
            _dir: dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while exchange(
            knot.addr,
            "example.test.",
            RecordType::SOA,
            Duration::from_millis(200),
        )
        .is_none()
        {
            assert!(Instant::now() < deadline, "knotd did not start");
        }
        knot
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `nodelocaldns -conf Corefile ARGS`.
pub struct Cache {
    pub child: Child,
    pub dir: TempDir,
    pub port: u16,
}

impl Cache {
    /// Starts the binary on `corefile` (`$PORT` → `port`) and waits until it answers.
    pub fn start(corefile: &str, port: u16, args: &[&str]) -> Cache {
        let dir = tempfile::Builder::new().prefix("rlc").tempdir().unwrap();
        Cache::start_in(dir, corefile, port, args)
    }

    pub fn start_in(dir: TempDir, corefile: &str, port: u16, args: &[&str]) -> Cache {
        let conf = dir.path().join("Corefile");
        fs::write(&conf, corefile.replace("$PORT", &port.to_string())).unwrap();
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nodelocaldns"))
            .arg("-conf")
            .arg(&conf)
            .args(["--shards", "2", "--log-level", "info"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut cache = Cache { child, dir, port };
        cache.wait_ready();
        cache
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let log_path = self.dir.path().join("log");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nodelocaldns exited {status}: {}", self.log());
            }
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("listening") {
                return;
            }
            assert!(Instant::now() < deadline, "not ready: {text}");
            sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// SIGTERM and wait up to `within` for the exit; the time it took.
    pub fn stop(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        while started.elapsed() < within {
            if let Ok(Some(_)) = self.child.try_wait() {
                return started.elapsed();
            }
            sleep(Duration::from_millis(10));
        }
        panic!("did not exit within {within:?}: {}", self.log());
    }

    /// Open descriptors of the process.
    pub fn fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query message with a random ID (EDNS 1232 when `edns`).
pub fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new();
    m.set_id(rand::random())
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

/// One UDP exchange; None on timeout. Checks the ID.
pub fn exchange(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    wait: Duration,
) -> Option<Message> {
    exchange_message(server, &query(name, qtype, false), wait)
}

pub fn exchange_message(server: SocketAddr, q: &Message, wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 65535];
    let started = Instant::now();
    while started.elapsed() < wait {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            return None;
        };
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.id() == q.id() {
                return Some(m);
            }
        }
    }
    None
}

/// One exchange over a fresh TCP connection; None on timeout or close.
pub fn tcp_exchange(server: SocketAddr, q: &Message, wait: Duration) -> Option<Message> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&server, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    let bytes = q.to_vec().ok()?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).ok()?;
    Message::from_vec(&body).ok()
}

/// The IPv4 addresses of the A records of an answer.
pub fn a_records(m: &Message) -> Vec<[u8; 4]> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            hickory_proto::rr::RData::A(a) => Some(a.0.octets()),
            _ => None,
        })
        .collect()
}

/// Runs `dnsload ARGS --json FILE --quiet` and returns the report.
pub fn dnsload(args: &[String]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let out = Command::new(dnsload_path())
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dnsload {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap()
}

pub fn counter(report: &serde_json::Value, name: &str) -> u64 {
    report["counters"][name].as_u64().unwrap_or(0)
}
