//! The resolvers real pods run, driven inside the pod namespace against the cache:
//! glibc (`clients/probe.c` built with the system compiler; resolv.conf options
//! through `RES_OPTIONS`), musl (the same source, `musl-gcc -static`), Go's pure
//! resolver (`clients/probe.go`, `GODEBUG=netdns=go`), c-ares through Node
//! (`clients/probe.js`) and dnspython (`clients/probe.py`). Each takes lookups as
//! `KIND:NAME` arguments and prints one line per record (or `NONE`, `NXDOMAIN`,
//! `NODATA`, `ERR …`); every answer is compared with what the authoritative knotd
//! says when asked directly.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::harness::Netns;

/// The probes' sources, compiled or run by [`Probes::build`].
const PROBE_C: &str = include_str!("clients/probe.c");
const PROBE_GO: &str = include_str!("clients/probe.go");
const PROBE_JS: &str = include_str!("clients/probe.js");
const PROBE_PY: &str = include_str!("clients/probe.py");
const LOAD_C: &str = include_str!("clients/load.c");

/// Longest a probe process may take for its lookups (each lookup a few ms warm; a
/// resolver's own timeout is 5 s, so one lost answer still fits).
const PROBE_SECS_MAX: u64 = 40;

/// One resolver a pod may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// glibc with these resolv.conf options (`RES_OPTIONS`), e.g. `use-vc`.
    Glibc(&'static str),
    /// musl 1.2.3 (Debian's musl-tools): no TCP, no EDNS.
    Musl,
    /// Go's pure resolver.
    Go,
    /// c-ares through Node's `dns.Resolver`.
    CAres,
    DnsPython,
}

impl Client {
    /// Every client the suite runs, glibc with each option it checks.
    pub const ALL: [Client; 9] = [
        Client::Glibc(""),
        Client::Glibc("single-request"),
        Client::Glibc("single-request-reopen"),
        Client::Glibc("use-vc"),
        Client::Glibc("edns0"),
        Client::Musl,
        Client::Go,
        Client::CAres,
        Client::DnsPython,
    ];

    /// Walks resolv.conf's search list for names with fewer dots than `ndots`.
    /// (Node's `dns.Resolver` sends names as given: c-ares `ares_query`.)
    pub fn searches(self) -> bool {
        self != Client::CAres
    }

    /// Retries a truncated UDP answer over TCP. musl before 1.2.4 does not: it uses
    /// the records the truncated answer holds, so a record larger than 512 bytes
    /// cannot reach it from any server.
    pub fn retries_over_tcp(self) -> bool {
        self != Client::Musl
    }
}

/// The built probes, in a directory of the test's.
pub struct Probes {
    dir: PathBuf,
}

impl Probes {
    /// Writes the sources into `dir` and builds the C probe for glibc and musl and
    /// the Go probe. A missing compiler fails the test with what to install.
    pub fn build(dir: &Path) -> Probes {
        crate::harness::require(&["cc", "musl-gcc", "go", "node", "python3"]);
        std::fs::create_dir_all(dir).unwrap();
        for (file, text) in [
            ("probe.c", PROBE_C),
            ("probe.go", PROBE_GO),
            ("probe.js", PROBE_JS),
            ("probe.py", PROBE_PY),
            ("load.c", LOAD_C),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let c = dir.join("probe.c");
        compile(
            Command::new("cc")
                .arg("-O1")
                .arg("-o")
                .arg(dir.join("probe-glibc"))
                .arg(&c)
                .arg("-lresolv"),
            "cc (build-essential)",
        );
        compile(
            Command::new("cc")
                .args(["-O1", "-pthread", "-o"])
                .arg(dir.join("load-glibc"))
                .arg(dir.join("load.c")),
            "cc (build-essential)",
        );
        compile(
            Command::new("musl-gcc")
                .args(["-static", "-O1", "-o"])
                .arg(dir.join("probe-musl"))
                .arg(&c),
            "musl-gcc (musl-tools)",
        );
        // The Go build cache lives with the other test scratch, so that a second run
        // does not compile the net package again.
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build");
        compile(
            Command::new("go")
                .args(["build", "-o"])
                .arg(dir.join("probe-go"))
                .arg(dir.join("probe.go"))
                .current_dir(dir)
                .env("GO111MODULE", "off")
                .env("GOCACHE", &cache)
                .env("GOPATH", dir.join("gopath"))
                .env("GOFLAGS", "-buildvcs=false"),
            "go (golang-go)",
        );
        Probes {
            dir: dir.to_path_buf(),
        }
    }

    /// Starts the glibc load (`clients/load.c`) in `pod`: `threads` threads looking up
    /// `names` with resolv.conf `options` until `stop_file` exists; its output goes
    /// to `out`. Returns its pid (a child of `pod`, killed with it).
    pub fn start_load(
        &self,
        pod: &mut Netns,
        options: &str,
        threads: usize,
        names: &[&str],
        stop_file: &Path,
        out: &Path,
    ) -> u32 {
        let program = self.dir.join("load-glibc").display().to_string();
        let (stop, threads) = (stop_file.display().to_string(), threads.to_string());
        let mut args = vec!["env", "RES_OPTIONS"];
        let option = format!("RES_OPTIONS={options}");
        args[1] = &option;
        args.extend([program.as_str(), stop.as_str(), threads.as_str()]);
        args.extend(names);
        let mut command = pod.command(&args);
        command.stdout(std::fs::File::create(out).unwrap());
        pod.spawn(command)
    }

    /// Runs `client` in `pod` with `lookups` (`KIND:NAME`); its lines per lookup.
    pub fn run(&self, pod: &Netns, client: Client, lookups: &[String]) -> Vec<BTreeSet<String>> {
        let timeout = PROBE_SECS_MAX.to_string();
        let mut args: Vec<String> = vec!["timeout".into(), timeout, "env".into()];
        let program = |name: &str| self.dir.join(name).display().to_string();
        match client {
            Client::Glibc(options) => {
                args.push(format!("RES_OPTIONS={options}"));
                args.push(program("probe-glibc"));
            }
            Client::Musl => args.push(program("probe-musl")),
            Client::Go => {
                args.push("GODEBUG=netdns=go".into());
                args.push(program("probe-go"));
            }
            Client::CAres => args.extend(["node".into(), program("probe.js")]),
            Client::DnsPython => args.extend(["python3".into(), program("probe.py")]),
        }
        args.extend(lookups.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pod.run(&refs);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{client:?} exited with {}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut results = vec![BTreeSet::new(); lookups.len()];
        for line in stdout.lines() {
            let Some((index, text)) = line.split_once('\t') else {
                panic!("{client:?}: unexpected output {line:?}");
            };
            let slot = index.parse::<usize>().ok().and_then(|i| results.get_mut(i));
            let slot = slot.unwrap_or_else(|| panic!("{client:?}: bad index in {line:?}"));
            match text.strip_prefix("MSG ") {
                Some(hex) => slot.extend(decode_hex_answer(hex)),
                None => {
                    slot.insert(text.to_string());
                }
            }
        }
        results
    }
}

fn compile(command: &mut Command, tool: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed (ci/deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The answer records of a whole message (the C probe's `res_search` output), as
/// lines; a message without them is `NODATA`.
fn decode_hex_answer(hex: &str) -> Vec<String> {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let msg = Message::from_vec(&bytes).expect("res_search answer parses");
    let lines = record_lines(msg.answers());
    if lines.is_empty() {
        vec!["NODATA".into()]
    } else {
        lines
    }
}

/// Records as the probes print them: `A addr`, `AAAA addr`, `SRV prio weight port
/// target.` (lower case), `TXT strings-joined`; other types are left out.
fn record_lines(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(format!("A {a}")),
            RData::AAAA(a) => Some(format!("AAAA {a}")),
            RData::SRV(s) => Some(format!(
                "SRV {} {} {} {}",
                s.priority(),
                s.weight(),
                s.port(),
                s.target().to_ascii().to_lowercase()
            )),
            RData::TXT(t) => Some(format!(
                "TXT {}",
                t.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>()
            )),
            _ => None,
        })
        .collect()
}

/// What the authoritative server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    Records(BTreeSet<String>),
    NxDomain,
    NoData,
}

/// One lookup of the suite: what the client asks, and the name the authoritative
/// server is asked (the search list's expansion of a short name).
#[derive(Debug, Clone)]
pub struct Lookup {
    pub kind: &'static str,
    pub asked: &'static str,
    pub fqdn: &'static str,
    /// Where the authoritative server for `fqdn` listens.
    pub server: &'static str,
}

impl Lookup {
    pub fn short(&self) -> bool {
        !self.asked.ends_with('.')
    }

    pub fn arg(&self) -> String {
        format!("{}:{}", self.kind, self.asked)
    }

    fn rtype(&self) -> RecordType {
        match self.kind {
            "a" => RecordType::A,
            "aaaa" => RecordType::AAAA,
            "srv" => RecordType::SRV,
            "txt" => RecordType::TXT,
            other => panic!("lookup kind {other}"),
        }
    }

    /// Asks the authoritative knotd directly over TCP, from `dns` (its namespace).
    pub fn truth(&self, dns: &Netns) -> Truth {
        let server: SocketAddr = format!("{}:53", self.server).parse().unwrap();
        let (fqdn, rtype) = (self.fqdn.to_string(), self.rtype());
        dns.in_ns(move || {
            let mut q = Message::new();
            q.set_id(rand::random())
                .add_query(Query::query(Name::from_ascii(&fqdn).unwrap(), rtype));
            let reply = tcp_exchange(server, &q.to_vec().unwrap());
            let msg = Message::from_vec(&reply).unwrap();
            match msg.response_code() {
                ResponseCode::NXDomain => Truth::NxDomain,
                ResponseCode::NoError if msg.answers().is_empty() => Truth::NoData,
                ResponseCode::NoError => {
                    Truth::Records(record_lines(msg.answers()).into_iter().collect())
                }
                other => panic!("knotd answered {fqdn} {rtype} with {other}"),
            }
        })
    }
}

fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply).unwrap();
    reply
}

/// Whether `got` (a client's lines for one lookup) agrees with `truth`. A client
/// that cannot tell NXDOMAIN from NODATA says `NONE` for both. A truncated answer
/// (musl, which never retries over TCP) may hold fewer records than the name has:
/// then `partial` accepts any non-empty subset of at least `partial_min` records.
pub fn agrees(got: &BTreeSet<String>, truth: &Truth, partial_min: Option<usize>) -> bool {
    let one = |s: &str| got.len() == 1 && got.contains(s);
    match truth {
        Truth::NxDomain => one("NXDOMAIN") || one("NONE"),
        Truth::NoData => one("NODATA") || one("NONE"),
        Truth::Records(want) => match partial_min {
            Some(min) => got.len() >= min && got.is_subset(want),
            None => got == want,
        },
    }
}
