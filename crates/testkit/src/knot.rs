//! The `knotd` upstream of the tests: one configuration template, zone heads, and
//! starting the process. Harnesses differ only in what they ask of it (listen
//! addresses, statistics, a control socket, log level), never in how it is written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::process::find_program;

/// Which `mod-stats` counters knotd keeps (read back with `knotc stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stats {
    #[default]
    Off,
    /// Queries by transport.
    Protocol,
    /// Transport, query type, response code, NODATA, EDNS presence.
    Full,
}

/// A `knot.conf`: everything in `dir` (run directory, storage, control socket).
#[derive(Debug, Clone)]
pub struct Conf {
    dir: PathBuf,
    /// `listen` entries, e.g. `127.0.0.1@5300`.
    listen: Vec<String>,
    /// One UDP, TCP and background worker (small, quick to start).
    one_worker: bool,
    /// A control socket (`dir/knot.sock`) for `knotc`.
    control: bool,
    stats: Stats,
    /// Log level on stderr.
    log: &'static str,
    /// Further `server:` settings, e.g. (`udp-max-payload`, `4096`).
    server: Vec<(&'static str, String)>,
    /// Zone semantic checks (off lets a test serve a deliberately odd zone).
    semantic_checks: bool,
    /// (origin, zone file: absolute or relative to `dir`).
    zones: Vec<(String, PathBuf)>,
}

impl Conf {
    /// A config with its files in `dir`, listening on `listen` (`IP@PORT`), one
    /// worker of each kind, logging warnings.
    pub fn new(dir: &Path, listen: &[String]) -> Conf {
        Conf {
            dir: dir.to_path_buf(),
            listen: listen.to_vec(),
            one_worker: true,
            control: false,
            stats: Stats::Off,
            log: "warning",
            server: Vec::new(),
            semantic_checks: true,
            zones: Vec::new(),
        }
    }

    /// Knot's default worker counts instead of one each.
    pub fn default_workers(mut self) -> Conf {
        self.one_worker = false;
        self
    }

    pub fn control(mut self) -> Conf {
        self.control = true;
        self
    }

    pub fn stats(mut self, stats: Stats) -> Conf {
        self.stats = stats;
        self
    }

    pub fn log(mut self, level: &'static str) -> Conf {
        self.log = level;
        self
    }

    pub fn server(mut self, key: &'static str, value: impl ToString) -> Conf {
        self.server.push((key, value.to_string()));
        self
    }

    pub fn no_semantic_checks(mut self) -> Conf {
        self.semantic_checks = false;
        self
    }

    pub fn zone(mut self, origin: &str, file: impl Into<PathBuf>) -> Conf {
        self.zones.push((origin.to_string(), file.into()));
        self
    }

    /// The configuration text.
    pub fn render(&self) -> String {
        let d = self.dir.display();
        let mut c = format!(
            "server:\n    rundir: {d}\n    listen: [{}]\n",
            self.listen.join(", ")
        );
        if self.one_worker {
            c.push_str("    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n");
        }
        for (key, value) in &self.server {
            let _ = writeln!(c, "    {key}: {value}");
        }
        if self.control {
            let _ = write!(c, "control:\n    listen: {d}/knot.sock\n");
        }
        let _ = write!(c, "log:\n  - target: stderr\n    any: {}\n", self.log);
        let _ = write!(c, "database:\n    storage: {d}\n");
        let stats = match self.stats {
            Stats::Off => "",
            Stats::Protocol => "    request-protocol: on\n",
            Stats::Full => {
                "    request-protocol: on\n    query-type: on\n    response-code: on\n    \
                 reply-nodata: on\n    edns-presence: on\n"
            }
        };
        if !stats.is_empty() {
            let _ = write!(c, "mod-stats:\n  - id: all\n{stats}");
        }
        let _ = write!(c, "template:\n  - id: default\n    storage: {d}\n");
        if !self.semantic_checks {
            c.push_str("    semantic-checks: off\n");
        }
        if !stats.is_empty() {
            c.push_str("    global-module: mod-stats/all\n");
        }
        c.push_str("zone:\n");
        for (origin, file) in &self.zones {
            let _ = write!(c, "  - domain: {origin}\n    file: {}\n", file.display());
        }
        c
    }

    /// Writes the configuration to `dir/knot.conf` and returns its path.
    pub fn write(&self) -> PathBuf {
        let path = self.dir.join("knot.conf");
        std::fs::write(&path, self.render()).expect("writing knot.conf");
        path
    }
}

/// A zone file's text: `$ORIGIN` (when given), `$TTL`, the SOA (`ns hostmaster`,
/// serial 1, the given refresh/retry/expire/minimum), `@ NS ns`, `ns A ns_ip`, then
/// `records`.
pub fn zone(
    origin: Option<&str>,
    ttl: u32,
    soa_timers: [u32; 4],
    ns_ip: &str,
    records: &str,
) -> String {
    let mut text = String::new();
    if let Some(origin) = origin {
        let _ = writeln!(text, "$ORIGIN {origin}");
    }
    let [refresh, retry, expire, minimum] = soa_timers;
    let _ = write!(
        text,
        "$TTL {ttl}\n@ SOA ns hostmaster 1 {refresh} {retry} {expire} {minimum}\n@ NS ns\nns A {ns_ip}\n{records}"
    );
    if !records.is_empty() && !records.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `knotd -c conf` with stdin closed and its stdout and stderr as given.
pub fn spawn(conf: &Path, stdout: Stdio, stderr: Stdio) -> Child {
    knotd_command(conf)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawning knotd")
}

/// The command line that starts knotd on `conf` (for harnesses that wrap it, e.g.
/// in a network namespace).
pub fn knotd_command(conf: &Path) -> Command {
    let mut command = Command::new(find_program("knotd", "knot"));
    command.arg("-c").arg(conf);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_is_asked() {
        let conf = Conf::new(Path::new("/d"), &["127.0.0.1@53".into()])
            .control()
            .stats(Stats::Protocol)
            .no_semantic_checks()
            .server("udp-max-payload", 4096)
            .zone("example.", "example.zone")
            .render();
        for line in [
            "    listen: [127.0.0.1@53]",
            "    udp-workers: 1",
            "    udp-max-payload: 4096",
            "    listen: /d/knot.sock",
            "    request-protocol: on",
            "    semantic-checks: off",
            "    global-module: mod-stats/all",
            "  - domain: example.",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line:?} in\n{conf}");
        }
        let plain = Conf::new(Path::new("/d"), &[]).default_workers().render();
        assert!(
            !plain.contains("mod-stats")
                && !plain.contains("workers")
                && !plain.contains("control")
        );
    }

    #[test]
    fn zone_head() {
        let z = zone(Some("a."), 60, [1, 2, 3, 4], "127.0.0.1", "w A 10.0.0.1");
        assert_eq!(
            z,
            "$ORIGIN a.\n$TTL 60\n@ SOA ns hostmaster 1 1 2 3 4\n@ NS ns\nns A 127.0.0.1\nw A 10.0.0.1\n"
        );
    }
}
