//! `dnsload campaign`: the dry run's plan, apply/restore round trips inside a
//! network namespace (after failing cells and after Ctrl-C), and a small real
//! campaign whose CSV, JSON, Markdown and SVG agree. Every test runs in its own
//! namespace with per-namespace sysctls only and checks the host values afterwards.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::wait_bounded;

/// Host sysctls a campaign could touch: documented knobs and the per-netns ones.
const WATCHED: [&str; 14] = [
    "net.core.rmem_max",
    "net.core.rmem_default",
    "net.core.wmem_max",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.busy_read",
    "net.core.busy_poll",
    "net.core.optmem_max",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.ipv4.udp_mem",
    "net.ipv4.udp_rmem_min",
    "net.ipv4.udp_wmem_min",
];

/// The netns-udp profile's keys and values.
const NETNS_UDP: [(&str, &str); 4] = [
    ("net.core.somaxconn", "8192"),
    ("net.core.optmem_max", "262144"),
    ("net.ipv4.udp_rmem_min", "16384"),
    ("net.ipv4.udp_wmem_min", "16384"),
];

fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn host_values() -> BTreeMap<String, String> {
    WATCHED
        .iter()
        .map(|k| {
            (
                k.to_string(),
                fs::read_to_string(proc_path(k)).unwrap_or_default(),
            )
        })
        .collect()
}

/// Values of the netns-udp keys as seen inside `ns`.
fn netns_values(ns: &str) -> Vec<String> {
    let paths: Vec<String> = NETNS_UDP.iter().map(|(k, _)| proc_path(k)).collect();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .args(&paths)
        .output()
        .expect("ip netns exec cat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn netns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// A namespace the test owns; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new(prefix: &str) -> TestNetns {
        let name = format!("{prefix}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        TestNetns(name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/profiles")
}

/// Writes `experiment.toml` (profiles from tuning/profiles) into a temp dir.
fn experiment(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("experiment.toml");
    let text = format!(
        "profiles_dir = {:?}\n{body}",
        profiles_dir().display().to_string()
    );
    fs::write(&path, text).unwrap();
    path
}

fn campaign(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_dnsload"))
        .arg("campaign")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dnsload campaign");
    wait_bounded(child, limit)
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A stand-in server: records what it sees of the netns-udp keys, then fails.
fn recording_server(dir: &Path, seen: &Path, then: &str) -> PathBuf {
    let script = dir.join("server.sh");
    let cats: Vec<String> = NETNS_UDP.iter().map(|(k, _)| proc_path(k)).collect();
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\ncat {} >> {}\n{then}\n",
            cats.join(" "),
            seen.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    script
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("dlc-dry-{}", std::process::id());
    let path = experiment(
        dir.path(),
        &format!(
            r#"name = "dry"
netns = "{ns}"
repeats = 2
duration_secs = 3
profiles = ["default", "netns-udp", "buffers"]
server_bin = "/bin/true"
[[server]]
name = "one"
shards = 1
udp_batch = 8
[[server]]
name = "steered"
shards = 2
reuseport_cpu = true
busy_poll_usecs = 50
sndbuf_bytes = 1048576
[[load]]
name = "closed"
args = ["--names", "svc{{0..9}}.example", "-q", "10"]
"#
        ),
    );
    let before = host_values();
    let out = campaign(&[path.to_str().unwrap()], Duration::from_secs(20));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("dry run: nothing was changed"), "{all}");
    assert!(all.contains("6 cells × 2 repeats × 3 s"), "{all}");
    for cell in [
        "default / one / closed  (baseline)",
        "netns-udp / one / closed",
        "buffers / steered / closed",
    ] {
        assert!(all.contains(cell), "missing {cell}: {all}");
    }
    let somaxconn = format!(
        "net.core.somaxconn = 8192  [netns {ns}]  current: {}",
        before["net.core.somaxconn"].trim()
    );
    assert!(all.contains(&somaxconn), "{all}");
    let rmem = format!(
        "net.core.rmem_max = 16777216  [host]  current: {}",
        before["net.core.rmem_max"].trim()
    );
    assert!(all.contains(&rmem), "{all}");
    assert!(
        all.contains("host settings changed by this plan: 4"),
        "{all}"
    );
    assert!(
        all.contains("--shards=2 --sndbuf-bytes=1048576 --busy-poll-usecs=50 --reuseport-cpu"),
        "{all}"
    );
    assert!(all.contains("--udp-batch=8"), "{all}");
    assert!(
        all.contains(&format!("ip netns exec {ns} taskset -c 1 ")),
        "{all}"
    );
    assert!(
        !netns_exists(&ns),
        "a dry run must not create the namespace"
    );
    assert_eq!(host_values(), before);
}

#[test]
fn netns_only_refuses_host_settings_before_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("dlc-refuse-{}", std::process::id());
    let path = experiment(
        dir.path(),
        &format!(
            r#"name = "refuse"
netns = "{ns}"
profiles = ["netns-udp", "buffers"]
server_bin = "/bin/false"
[upstream]
address = "127.0.0.1:9"
[[server]]
name = "one"
[[load]]
name = "closed"
args = ["-q", "10"]
"#
        ),
    );
    let before = host_values();
    let out = campaign(
        &[path.to_str().unwrap(), "--apply", "--netns-only"],
        Duration::from_secs(30),
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("--netns-only: net.core.rmem_max (profile buffers) is a host setting"),
        "{all}"
    );
    assert!(!netns_exists(&ns), "the namespace it created is deleted");
    assert_eq!(host_values(), before);
}

#[test]
fn apply_restore_round_trip_in_netns_also_after_failing_cells() {
    let dir = tempfile::tempdir().unwrap();
    let ns = TestNetns::new("dlc-rt");
    let seen = dir.path().join("seen.txt");
    let server = recording_server(dir.path(), &seen, "exit 3");
    let path = experiment(
        dir.path(),
        &format!(
            r#"name = "round-trip"
netns = "{}"
repeats = 2
duration_secs = 1
profiles = ["netns-udp"]
server_bin = "{}"
[upstream]
address = "127.0.0.1:9"
[[server]]
name = "a"
[[server]]
name = "b"
[[load]]
name = "closed"
args = ["-q", "10"]
"#,
            ns.0,
            server.display()
        ),
    );
    let host_before = host_values();
    let ns_before = netns_values(&ns.0);
    let applied: Vec<&str> = NETNS_UDP.iter().map(|(_, v)| *v).collect();
    assert_ne!(ns_before, applied, "the profile must change something");
    let out_dir = dir.path().join("report");
    let out = campaign(
        &[
            path.to_str().unwrap(),
            "--apply",
            "--netns-only",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "failed runs → exit 1: {all}");
    // The server saw the profile's values inside the namespace, once per start.
    let seen_text = fs::read_to_string(&seen).unwrap();
    let seen_lines: Vec<&str> = seen_text.lines().collect();
    assert_eq!(seen_lines.len(), 4 * NETNS_UDP.len(), "{seen_text}");
    for start in seen_lines.chunks(NETNS_UDP.len()) {
        assert_eq!(start, &applied[..]);
    }
    // Every value is back, inside and outside.
    assert_eq!(netns_values(&ns.0), ns_before, "{all}");
    assert_eq!(host_values(), host_before);
    assert!(
        netns_exists(&ns.0),
        "a namespace the campaign did not create is kept"
    );
    let csv = fs::read_to_string(out_dir.join("runs.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows.iter()
            .all(|r| r.contains(",false,") && r.contains("exited")),
        "{csv}"
    );
    let report = fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        report.contains("## Failed runs") && report.contains("restored net.core.somaxconn"),
        "{report}"
    );
}

#[test]
fn ctrl_c_restores_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let ns = TestNetns::new("dlc-int");
    let seen = dir.path().join("seen.txt");
    let server = recording_server(dir.path(), &seen, "exec sleep 30");
    let path = experiment(
        dir.path(),
        &format!(
            r#"name = "interrupted"
netns = "{}"
profiles = ["netns-udp"]
server_bin = "{}"
[upstream]
address = "127.0.0.1:9"
[[server]]
name = "a"
[[load]]
name = "closed"
args = ["-q", "10"]
"#,
            ns.0,
            server.display()
        ),
    );
    let host_before = host_values();
    let ns_before = netns_values(&ns.0);
    let out_dir = dir.path().join("report");
    let child = Command::new(env!("CARGO_BIN_EXE_dnsload"))
        .args([
            "campaign",
            path.to_str().unwrap(),
            "--apply",
            "--netns-only",
            "--out",
        ])
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the stand-in server runs (the profile is applied), then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.exists(), "the server never started");
    assert_eq!(
        netns_values(&ns.0),
        NETNS_UDP
            .iter()
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let started = Instant::now();
    let out = wait_bounded(child, Duration::from_secs(15));
    let all = text(&out);
    assert!(started.elapsed() < Duration::from_secs(10), "{all}");
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("interrupted"), "{all}");
    assert_eq!(netns_values(&ns.0), ns_before, "{all}");
    assert_eq!(host_values(), host_before);
    assert!(
        out_dir.join("report.md").exists(),
        "the partial report is written"
    );
}

/// The workspace's nodelocaldns next to dnsload, built when missing.
fn server_binary() -> PathBuf {
    let dnsload = PathBuf::from(env!("CARGO_BIN_EXE_dnsload"));
    let path = dnsload.parent().unwrap().join("nodelocaldns");
    if !path.is_file() {
        let target = dnsload.parent().unwrap().parent().unwrap();
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nodelocaldns", "--bin", "nodelocaldns"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build -p nodelocaldns");
        assert!(status.success());
    }
    path
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[test]
fn small_real_campaign_writes_consistent_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let ns = format!("dlc-real-{}", std::process::id());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load_cpus = if cpus > 1 { "1" } else { "0" };
    let path = experiment(
        dir.path(),
        &format!(
            r#"name = "small"
netns = "{ns}"
repeats = 2
duration_secs = 3
warmup_secs = 1
server_cpus = "0"
load_cpus = "{load_cpus}"
profiles = ["netns-udp"]
server_bin = "{}"
[upstream]
records = 100
[[server]]
name = "batch 32"
shards = 1
[[server]]
name = "batch 4"
shards = 1
udp_batch = 4
[[load]]
name = "closed q50"
args = ["--names", "svc{{0..99}}.example", "-q", "50", "-c", "2"]
"#,
            server_binary().display()
        ),
    );
    let host_before = host_values();
    let out_dir = dir.path().join("report");
    let out = campaign(
        &[
            path.to_str().unwrap(),
            "--apply",
            "--netns-only",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(!netns_exists(&ns), "the namespace it created is deleted");
    assert_eq!(host_values(), host_before);

    // CSV: 2 cells × 2 repeats, all measured.
    let csv = fs::read_to_string(out_dir.join("runs.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{csv}");
    let mut qps_by_cell: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in &rows {
        assert_eq!(row[col("ok")], "true", "{csv}");
        let qps: f64 = row[col("qps")].parse().unwrap();
        let answered: f64 = row[col("answered")].parse().unwrap();
        let cpu_secs: f64 = row[col("server_cpu_secs")].parse().unwrap();
        let per_query: f64 = row[col("cpu_us_per_query")].parse().unwrap();
        assert!(qps > 100.0 && answered > 300.0, "{csv}");
        assert!(cpu_secs > 0.0, "{csv}");
        assert!(
            (per_query - cpu_secs * 1e6 / answered).abs() <= 0.01 * per_query + 0.002,
            "{csv}"
        );
        qps_by_cell
            .entry(row[col("cell")].clone())
            .or_default()
            .push(qps);
    }
    assert_eq!(qps_by_cell.len(), 2);
    assert!(qps_by_cell.values().all(|v| v.len() == 2));

    // JSON: the same runs and numbers.
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("runs.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for (run, row) in runs.iter().zip(&rows) {
        assert_eq!(run["cell"].as_str().unwrap(), row[col("cell")]);
        assert_eq!(
            run["answered"].as_u64().unwrap().to_string(),
            row[col("answered")]
        );
        let qps: f64 = row[col("qps")].parse().unwrap();
        assert!((run["qps"].as_f64().unwrap() - qps).abs() < 0.1);
    }
    assert_eq!(json["baseline"], "netns-udp / batch 32 / closed q50");

    // Markdown: the QPS table's medians are those of the CSV.
    let report = fs::read_to_string(out_dir.join("report.md")).unwrap();
    // The CSV rounds each run's QPS; the report's median is of the unrounded
    // values, so the two may round apart by one at a .5 boundary.
    for (cell, qps) in &mut qps_by_cell {
        let prefix = format!("| {cell} | 2 | ");
        let shown: f64 = report
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split('|').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no QPS row for {cell}:\n{report}"));
        let expected = median(qps);
        assert!(
            (shown - expected).abs() <= 1.0,
            "{cell}: report {shown}, CSV median {expected}:\n{report}"
        );
    }
    for title in [
        "QPS",
        "p50 latency",
        "p99 latency",
        "p99.9 latency",
        "loss (%)",
        "server CPU per query",
    ] {
        assert!(report.contains(&format!("## {title}")), "{report}");
    }
    assert!(report.contains("| baseline |"), "{report}");

    // SVG: one per metric, a dot per run.
    for metric in [
        "qps",
        "p50_us",
        "p99_us",
        "p99_9_us",
        "loss_pct",
        "cpu_us_per_query",
    ] {
        let svg = fs::read_to_string(out_dir.join(format!("{metric}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 4, "{metric}");
        assert!(report.contains(&format!("({metric}.svg)")));
    }
    assert_eq!(fs::read_dir(out_dir.join("raw")).unwrap().count(), 4);
}
