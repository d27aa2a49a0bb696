//! Network namespaces that play the node, knotd upstreams inside them, the
//! nodelocaldns process, and the clients. Everything is removed on drop, also when a
//! test fails: processes (by pid), the namespace, /etc/netns/<name>/.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nodelocaldns");
pub const TEMPLATE: &str = include_str!("../fixtures/node/Corefile.base");

/// True when this machine can run the namespace tests (root, ip, iptables, knotd).
pub fn can_run() -> bool {
    require(&[
        "ip",
        "iptables",
        "ip6tables",
        "iptables-save",
        "knotd",
        "kdig",
    ])
}

/// Asserts root and every tool on PATH. These tests are the only proof of the node
/// behaviour: a machine that cannot run them fails them, it never skips them.
pub fn require(tools: &[&str]) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    assert!(root, "the namespace tests need root");
    assert!(
        missing.is_empty(),
        "missing {missing:?} (ci/deps.sh installs them)"
    );
    true
}

pub use testkit::process::wait_until;

/// A network namespace with `lo` up and its own resolv.conf pointing at 127.0.0.1.
pub struct Netns {
    pub name: String,
    /// Working files: zones, knot configs, the Corefile, the ConfigMap.
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Netns {
    pub fn new(test: &str) -> Netns {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let name = format!("nld-{short}-{}-{seq}", std::process::id());
        let ns = Netns {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
            children: Vec::new(),
        };
        run_ok(Command::new("ip").args(["netns", "add", &ns.name]));
        std::fs::create_dir_all(ns.etc_dir()).expect("/etc/netns/<name>");
        std::fs::write(ns.etc_dir().join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("resolv.conf");
        ns.run_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a process inside the namespace, killed on drop.
    pub fn spawn(&mut self, mut command: Command) -> u32 {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn in namespace");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Waits for the child `pid` to exit; its status, or None after `limit`.
    pub fn wait_exit(&mut self, pid: u32, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.children.iter_mut().find(|c| c.id() == pid)?;
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// A knotd on `addr` (e.g. "127.0.0.1@53") serving `zones` (origin, records).
    pub fn knotd(&mut self, tag: &str, listen: &str, zones: &[(&str, &str)]) {
        let rundir = self.path(&format!("knot-{tag}"));
        std::fs::create_dir_all(&rundir).unwrap();
        let mut conf = testkit::knot::Conf::new(&rundir, &[listen.to_string()]).default_workers();
        for (origin, records) in zones {
            let file = rundir.join(format!("{origin}zone"));
            let text = testkit::knot::zone(Some(origin), 60, [60; 4], "127.0.0.1", records);
            std::fs::write(&file, text).unwrap();
            conf = conf.zone(origin, file);
        }
        let conf_path = conf.write();
        let command = self.command(&["knotd", "-c", conf_path.to_str().unwrap()]);
        self.spawn(command);
        let port = listen.rsplit('@').next().unwrap().to_string();
        let ip = listen.split('@').next().unwrap().to_string();
        let origin = zones[0].0.to_string();
        assert!(
            wait_until(Duration::from_secs(5), || {
                self.kdig(&["-p", &port, &format!("@{ip}"), &origin, "SOA"])
                    .contains("hostmaster")
            }),
            "knotd {tag} did not start"
        );
    }

    /// kdig's `+short` answer (empty on failure).
    pub fn kdig(&self, args: &[&str]) -> String {
        let mut all = vec!["kdig", "+short", "+timeout=1", "+retry=1"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.run(&all).stdout).into_owned()
    }

    /// Runs `f` on a thread that has entered this namespace (setns affects only the
    /// calling thread), so the test can be a fast client inside the node.
    pub fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace")
    }

    /// GET /metrics on `addr` inside the namespace.
    pub fn scrape(&self, addr: &str) -> String {
        let addr: SocketAddr = addr.parse().unwrap();
        self.in_ns(move || {
            let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                return String::new();
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    }

    pub fn iptables_save(&self, ipv6: bool) -> String {
        self.run_ok(&[if ipv6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        }])
    }

    /// `ip -j addr show dev NAME` as (family, local, prefixlen); empty if no such link.
    pub fn addresses(&self, dev: &str) -> Vec<(String, String, u64)> {
        let out = self.run(&["ip", "-j", "addr", "show", "dev", dev]);
        if !out.status.success() {
            return Vec::new();
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut addrs = Vec::new();
        for link in json.as_array().into_iter().flatten() {
            for info in link["addr_info"].as_array().into_iter().flatten() {
                addrs.push((
                    info["family"].as_str().unwrap_or("").to_string(),
                    info["local"].as_str().unwrap_or("").to_string(),
                    info["prefixlen"].as_u64().unwrap_or(0),
                ));
            }
        }
        addrs
    }

    pub fn link_exists(&self, dev: &str) -> bool {
        self.run(&["ip", "link", "show", "dev", dev])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else still in the namespace was started by this test through it.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

fn run_ok(command: &mut Command) {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One UDP query for `name` A to `server`; Some(rcode) or None on timeout.
pub fn udp_query(socket: &UdpSocket, server: SocketAddr, name: &str) -> Option<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let id: u16 = rand::random();
    let mut query = Message::new();
    query
        .set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    socket.send_to(&query.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let (len, _) = socket.recv_from(&mut buf).ok()?;
        let reply = Message::from_vec(&buf[..len]).ok()?;
        if reply.id() == id {
            return Some(reply.response_code().low());
        }
    }
    None
}
