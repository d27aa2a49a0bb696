//! The processes a test drives: a real authoritative `knotd` as the upstream, and the
//! `nodelocaldns` binary under test in front of it. Both live in a temporary directory,
//! listen on 127.0.0.1 on free ports, and are killed and reaped when dropped.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::rr::{DNSClass, RecordType};
use tempfile::TempDir;

use crate::client;

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM'd server may take to exit before it is SIGKILL'd.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

pub use testkit::process::free_port;

/// The I/O engine (`--io-engine`) of every server this test starts: set by the
/// per-engine tests of [`on_each_engine!`]; unset, the server picks (`auto`).
static ENGINE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Runs `test` with every server it starts on `engine` (`io_uring` or `epoll`).
/// nextest runs each test in a process of its own, so this holds for the test alone.
pub fn on_engine(engine: &'static str, test: fn()) {
    assert_eq!(
        *ENGINE.get_or_init(|| engine),
        engine,
        "one engine per test process"
    );
    test();
}

/// Turns a test body `fn name()` into two tests, `name::io_uring` and `name::epoll`,
/// each starting its servers with that `--io-engine`: the suite covers both engines
/// wherever this is used, with no skipping by environment.
#[macro_export]
macro_rules! on_each_engine {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn io_uring() {
                $crate::harness::on_engine("io_uring", super::$name)
            }
            #[test]
            fn epoll() {
                $crate::harness::on_engine("epoll", super::$name)
            }
        }
    )+};
}

use testkit::process::find_program;

pub fn kdig_path() -> PathBuf {
    find_program("kdig", "knot-dnsutils")
}

/// A zone served by [`Knot`]: origin (with the trailing dot) and zone-file text.
pub struct Zone {
    pub origin: String,
    pub text: String,
}

impl Zone {
    pub fn new(origin: &str, text: &str) -> Zone {
        Zone {
            origin: origin.to_string(),
            text: text.to_string(),
        }
    }
}

/// A running `knotd` serving the given zones with `mod-stats` on and a control socket.
pub struct Knot {
    child: Child,
    dir: TempDir,
    conf: PathBuf,
    pub port: u16,
    /// The first zone's origin, whose SOA is the readiness probe.
    origin: String,
}

/// Spawns knotd on `conf`, its output in `dir`/knotd.log (a previous log is kept as
/// knotd.log.old).
fn spawn_knotd(dir: &Path, conf: &Path) -> Child {
    let path = dir.join("knotd.log");
    let _ = fs::rename(&path, dir.join("knotd.log.old"));
    let log = fs::File::create(path).expect("knotd.log");
    testkit::knot::spawn(conf, log.try_clone().expect("dup log").into(), log.into())
}

impl Knot {
    /// Starts knotd and waits until it answers the SOA of the first zone over UDP;
    /// retries on a fresh port if a parallel test took the first one meanwhile.
    pub fn start(zones: &[Zone]) -> Knot {
        let mut last = String::new();
        for _ in 0..3 {
            match Knot::try_start(zones) {
                Ok(knot) => return knot,
                Err(why) => last = why,
            }
        }
        panic!("knotd did not start (3 tries); last: {last}");
    }

    fn try_start(zones: &[Zone]) -> Result<Knot, String> {
        let dir = tempfile::Builder::new()
            .prefix("itk")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let conf = knot_conf(dir.path(), port, zones).write();
        for zone in zones {
            fs::write(dir.path().join(zone_file_name(&zone.origin)), &zone.text)
                .expect("writing zone file");
        }
        let child = spawn_knotd(dir.path(), &conf);
        let mut knot = Knot {
            child,
            dir,
            conf,
            port,
            origin: zones[0].origin.clone(),
        };
        knot.wait_ready().map(|()| knot)
    }

    /// Kills knotd and reaps it: the upstream stops answering (its port is closed).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts knotd again on the same port with the same zones (after [`Knot::stop`]);
    /// its counters start from 0. Panics if it does not answer within the start timeout.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..3 {
            self.child = spawn_knotd(self.dir.path(), &self.conf);
            match self.wait_ready() {
                Ok(()) => return,
                Err(why) => last = why,
            }
            self.stop();
            sleep(Duration::from_millis(200));
        }
        panic!(
            "knotd did not restart on port {} (3 tries); last: {last}",
            self.port
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = client::query(&self.origin, RecordType::SOA);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "knotd exited ({status}) before answering:\n{}",
                    self.log()
                ));
            }
            if self.log().contains("cannot bind") {
                return Err(format!(
                    "knotd could not bind 127.0.0.1@{}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if client::udp_try(self.addr(), &probe, Duration::from_millis(200)).is_some() {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        Err(format!(
            "knotd did not answer within {START_TIMEOUT:?}:\n{}",
            self.log()
        ))
    }

    /// Every counter `knotc stats` prints, e.g. `mod-stats.request-protocol[tcp4]`.
    pub fn stats(&self) -> HashMap<String, u64> {
        let out = Command::new(find_program("knotc", "knot"))
            .arg("-c")
            .arg(&self.conf)
            .args(["-t", "3", "stats"])
            .output()
            .expect("running knotc stats");
        assert!(
            out.status.success(),
            "knotc stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(" = ")?;
                Some((key.trim().to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter; a counter knot does not print is 0.
    pub fn stat(&self, key: &str) -> u64 {
        self.stats().get(key).copied().unwrap_or(0)
    }

    /// How many queries of `qtype` knot has answered.
    pub fn queries_of_type(&self, qtype: &str) -> u64 {
        self.stat(&format!("mod-stats.query-type[{qtype}]"))
    }

    /// Replaces the zone `origin` by `text` and has knot load it (`knotc -b
    /// zone-reload`): the upstream's data changes while it keeps running.
    pub fn change_zone(&self, origin: &str, text: &str) {
        fs::write(self.dir.path().join(zone_file_name(origin)), text).expect("writing zone file");
        let out = Command::new(find_program("knotc", "knot"))
            .arg("-c")
            .arg(&self.conf)
            .args(["-t", "5", "-b", "zone-reload", origin])
            .output()
            .expect("running knotc zone-reload");
        assert!(
            out.status.success(),
            "knotc zone-reload failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops knotd with SIGSTOP: its port stays open but nothing answers (a silent
    /// upstream) until [`Knot::resume`]. Returns once every thread of it is stopped
    /// (a loaded machine may take a while to deliver the signal).
    pub fn pause(&self) {
        let pid = self.child.id();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        let stopped = || {
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            tasks.flatten().all(|task| {
                let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                // The state follows the command's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        };
        assert!(
            testkit::process::wait_until(Duration::from_secs(5), stopped),
            "knotd (pid {pid}) did not stop"
        );
    }

    /// Lets a [`Knot::pause`]d knotd run again; it answers what queued meanwhile.
    pub fn resume(&self) {
        // SAFETY: as in `pause`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zone_file_name(origin: &str) -> String {
    format!("{}.zone", origin.trim_end_matches('.').replace('.', "_"))
}

/// The upstream's config: knotd's full statistics (tests compare what reached it),
/// a control socket for `knotc stats`, 4096-byte UDP answers, idle TCP kept a minute.
fn knot_conf(dir: &Path, port: u16, zones: &[Zone]) -> testkit::knot::Conf {
    let mut conf = testkit::knot::Conf::new(dir, &[format!("127.0.0.1@{port}")])
        .server("udp-max-payload", 4096)
        .server("tcp-idle-timeout", 60)
        .control()
        .stats(testkit::knot::Stats::Full)
        .log("info");
    for zone in zones {
        conf = conf.zone(&zone.origin, zone_file_name(&zone.origin));
    }
    conf
}

/// A running `nodelocaldns` with its Corefile and log in a temporary directory.
pub struct Cache {
    child: Child,
    dir: TempDir,
    pub port: u16,
    /// The ports that replaced `$FREEPORT1` and `$FREEPORT2` in the Corefile.
    pub free_ports: [u16; 2],
}

impl Cache {
    /// Writes `corefile` with `$PORT` replaced by a free port (and `$FREEPORT1`,
    /// `$FREEPORT2` by other free ports), starts the server with `shards` shards, and
    /// waits until it answers over UDP. Retries on a fresh port if the first one was
    /// taken by a parallel test in the meantime.
    pub fn start(corefile: &str, shards: usize) -> Cache {
        let mut last_log = String::new();
        for _ in 0..3 {
            match Cache::try_start(corefile, shards) {
                Ok(cache) => return cache,
                Err(log) => last_log = log,
            }
        }
        panic!("nodelocaldns did not start (3 tries); last log:\n{last_log}");
    }

    fn try_start(corefile: &str, shards: usize) -> Result<Cache, String> {
        let mut cache = Cache::launch(corefile, shards);
        match cache.wait_ready() {
            Ok(()) => Ok(cache),
            Err(why) => Err(format!("{why}\n{}", cache.log())),
        }
    }

    /// Writes the Corefile and spawns the server without waiting for it: for tests of
    /// a server that is expected to refuse to run.
    pub fn launch(corefile: &str, shards: usize) -> Cache {
        Cache::launch_with(corefile, shards, None, false)
    }

    /// [`Cache::launch`] with `--io-engine=engine` (else the test's, see
    /// [`on_engine`]), and under a seccomp filter that refuses io_uring when
    /// `confined`, as a container runtime's default profile does.
    pub fn launch_with(
        corefile: &str,
        shards: usize,
        engine: Option<&str>,
        confined: bool,
    ) -> Cache {
        Cache::launch_command(corefile, shards, engine, |command| {
            if confined {
                testkit::seccomp::deny_io_uring(command);
            }
        })
    }

    /// [`Cache::launch_with`] with RLIMIT_MEMLOCK set to `bytes` in the server.
    pub fn launch_memlocked(
        corefile: &str,
        shards: usize,
        engine: Option<&str>,
        bytes: u64,
    ) -> Cache {
        Cache::launch_command(corefile, shards, engine, |command| {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            // SAFETY: runs in the forked child before exec and only calls setrlimit
            // (async-signal-safe) with a value copied in.
            unsafe {
                command.pre_exec(
                    move || match libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    },
                );
            }
        })
    }

    /// Writes the Corefile and spawns the server, `setup` adjusting its command.
    fn launch_command(
        corefile: &str,
        shards: usize,
        engine: Option<&str>,
        setup: impl FnOnce(&mut Command),
    ) -> Cache {
        let dir = tempfile::Builder::new()
            .prefix("itc")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let free_ports = [free_port(), free_port()];
        let text = corefile
            .replace("$FREEPORT1", &free_ports[0].to_string())
            .replace("$FREEPORT2", &free_ports[1].to_string())
            .replace("$PORT", &port.to_string());
        let conf = dir.path().join("Corefile");
        fs::write(&conf, text).expect("writing Corefile");
        let log = fs::File::create(dir.path().join("nodelocaldns.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_nodelocaldns"));
        setup(&mut command);
        let child = command
            .arg("-conf")
            .arg(&conf)
            .args(["--shards", &shards.to_string()])
            .args(
                engine
                    .or(ENGINE.get().copied())
                    .map(|e| format!("--io-engine={e}")),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawning nodelocaldns");
        Cache {
            child,
            dir,
            port,
            free_ports,
        }
    }

    /// Replaces the Corefile with `corefile`, its placeholders filled with this
    /// server's ports (for `reload`). Written to a temporary file and renamed, so the
    /// server never reads half a file.
    pub fn rewrite_corefile(&self, corefile: &str) {
        let text = corefile
            .replace("$FREEPORT1", &self.free_ports[0].to_string())
            .replace("$FREEPORT2", &self.free_ports[1].to_string())
            .replace("$PORT", &self.port.to_string());
        let tmp = self.dir.path().join("Corefile.new");
        fs::write(&tmp, text).expect("writing the new Corefile");
        fs::rename(&tmp, self.dir.path().join("Corefile")).expect("replacing the Corefile");
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(50));
        }
        None
    }

    /// Ready = logged `listening (udp+tcp)` and answered a UDP query. The probe is a
    /// CH-class query, which the server answers itself, so upstream counters stay clean.
    /// Waits until the server answers (a `CH` probe), at most `START_TIMEOUT`.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = client::query_class("ready.invalid.", RecordType::NULL, DNSClass::CH);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nodelocaldns exited ({status}) before answering"));
            }
            if self.log().contains("listening (udp+tcp)")
                && client::udp_try(self.addr(), &probe, Duration::from_millis(200)).is_some()
            {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        Err(format!(
            "nodelocaldns did not answer a UDP query within {START_TIMEOUT:?}"
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nodelocaldns.log")).unwrap_or_default()
    }

    /// The body of `GET /metrics` from `prometheus 127.0.0.1:$FREEPORT1`.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let addr = SocketAddr::from(([127, 0, 0, 1], self.free_ports[0]));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("/metrics on {addr} not listening: {e}\n{}", self.log()));
        // Generous: the suite runs on two busy cores; this is not a timing check.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).expect("write");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "GET /metrics: {response:.300}"
        );
        response
    }

    /// The sum of every sample of `metric` (any labels) in `/metrics`.
    pub fn metric_sum(&self, metric: &str) -> f64 {
        metric_sum(&self.metrics(), metric)
    }

    /// Resident set size of the server process, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("reading /proc/PID/fd")
            .count()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; the exit status and whether SIGTERM sufficed.
    pub fn stop(&mut self) -> (ExitStatus, bool) {
        if let Ok(Some(status)) = self.child.try_wait() {
            return (status, true);
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, true);
            }
            sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        (self.child.wait().expect("waiting for nodelocaldns"), false)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sum of every sample of `metric` (exact name, any labels) in a Prometheus text
/// exposition.
pub fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Corefile most tests run: one `.` block forwarding to `knot` with `forward_opts`
/// (one option per line) and `block_extra` directives.
pub fn corefile(knot: &Knot, cache: &str, forward_opts: &[&str], block_extra: &[&str]) -> String {
    let mut text = String::from(".:$PORT {\n    bind 127.0.0.1\n    errors\n");
    for line in block_extra {
        text.push_str(&format!("    {line}\n"));
    }
    text.push_str(&format!(
        "    {cache}\n    forward . 127.0.0.1:{}",
        knot.port
    ));
    if forward_opts.is_empty() {
        text.push('\n');
    } else {
        text.push_str(" {\n");
        for opt in forward_opts {
            text.push_str(&format!("        {opt}\n"));
        }
        text.push_str("    }\n");
    }
    text.push_str("}\n");
    text
}

/// The `cache` directive most tests use.
pub const CACHE_30: &str = "cache 30 {\n        success 9984 30\n        denial 9984 5\n    }";
