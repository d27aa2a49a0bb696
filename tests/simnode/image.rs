//! The real image (`make image`, `ci/image.sh`) on the simulated node: podman joins
//! the node's network namespace as a DaemonSet pod with `hostNetwork: true` does, with
//! the manifest's capabilities, `/run/xtables.lock` mounted and the node's files
//! mounted at the same paths. The image is built once per test run (a lock serialises
//! the tests; a rebuild with nothing changed only checks the label).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{wait_until, Netns};
use crate::node::{
    can_run, manifest, replace_file, Node, PodLoad, CACHE_POD_IP, KUBE_DNS, KUBE_DNS_UPSTREAM,
    LOCAL_DNS, OUR_RULES, STUB_DNS,
};

/// The tag the tests build and run: `$NODELOCALDNS_TEST_IMAGE`, else the one `make
/// image` gives by default (a second checkout on the same host names its own, so
/// the two never run each other's binary).
pub fn image() -> String {
    std::env::var("NODELOCALDNS_TEST_IMAGE").unwrap_or_else(|_| "nodelocaldns:dev".into())
}

/// Options every container of these tests needs on this kind of host: runc (crun
/// refuses hybrid cgroup hierarchies) and rlimits within the host's hard limits
/// (podman's defaults exceed them, and runc then refuses to start the container).
const RUN_OPTS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=16384:16384",
    "--ulimit",
    "nproc=4096:4096",
];

/// True when podman and runc are here (ci/deps.sh installs them); otherwise the test
/// fails with the reason.
pub fn require_podman() {
    for tool in ["podman", "runc", "debootstrap"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is missing: run ci/deps.sh (apt-get install podman runc debootstrap)"
        );
    }
}

/// Builds the image (once per run: `ci/image.sh` skips the build when the binary,
/// the Dockerfile and the entrypoint are those of the image already there).
pub fn build_image() {
    require_podman();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("target/image")).unwrap();
    let out = Command::new("flock")
        .arg(root.join("target/image/.lock"))
        .arg(root.join("ci/image.sh"))
        .env("IMAGE", image())
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("flock ci/image.sh");
    assert!(
        out.status.success(),
        "make image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a test runs a container beyond the DaemonSet's args.
#[derive(Default)]
pub struct Run<'a> {
    /// podman options (mounts, limits).
    pub podman: &'a [&'a str],
    /// Name suffix, for a second container beside the first.
    pub suffix: &'a str,
    /// Cache args after the test's own (a repeated flag takes its last value).
    pub cache_args: &'a [&'a str],
    /// Leave the shard count to the cache (cores and cgroup quota) instead of the
    /// test's `--shards 2`.
    pub default_shards: bool,
    /// The network namespace to join (a pod's own); default: the node's (hostNetwork).
    pub netns: Option<&'a Netns>,
    /// Run under podman's default seccomp profile (io_uring blocked, as with
    /// kubelet's `RuntimeDefault`) instead of the shipped Localhost profile.
    pub default_seccomp: bool,
    /// The seccomp profile (podman `--security-opt seccomp=`); default: the shipped
    /// Localhost profile, `deploy/seccomp/nodelocaldns.json`.
    pub seccomp: Option<&'a Path>,
}

/// [`Node::test_args`], without `--shards N` when the cache is to choose.
fn test_args(node: &Node, default_shards: bool) -> Vec<String> {
    let mut args = node.test_args();
    if default_shards {
        if let Some(at) = args.iter().position(|a| a == "--shards") {
            args.drain(at..at + 2);
        }
    }
    args
}

/// A container of the image, removed on drop (also when the test fails).
pub struct Container {
    pub name: String,
    /// `strace -f -c` attached to the container's processes while measuring the
    /// syscalls for the seccomp profile ([`STRACE_DIR_VAR`]).
    strace: Option<std::process::Child>,
}

impl Container {
    /// Runs the image in the node's namespace with the DaemonSet's args of `mode`,
    /// the test's paths and pace ([`Node::test_args`]) and `extra` podman options.
    pub fn start(node: &Node, mode: &str, extra: &[&str]) -> Container {
        Container::start_with(
            node,
            mode,
            Run {
                podman: extra,
                ..Run::default()
            },
        )
    }

    /// [`Container::start`] with the options of `run`.
    pub fn start_with(node: &Node, mode: &str, run_opts: Run) -> Container {
        let Run {
            podman: extra,
            suffix,
            cache_args,
            default_shards,
            netns,
            default_seccomp,
            seccomp,
        } = run_opts;
        let netns = netns.unwrap_or(&node.node);
        build_image();
        let (args, template) = manifest(mode);
        // As kubelet updates a mounted ConfigMap: atomically and only on a change, so
        // a container already running (the old one of a rolling update) never reads a
        // truncated stubDomains and drops the stub domain's block for a poll.
        replace_file(&node.node.path("Corefile.base"), &template);
        let cm = node.node.path("kube-dns");
        std::fs::create_dir_all(&cm).unwrap();
        replace_file(
            &cm.join("stubDomains"),
            &format!("{{\"acme.local\": [\"{}\"]}}", STUB_DNS),
        );
        let name = format!("{}{suffix}", node.node.name);
        let caps = capability_opts(mode);
        let strace_dir = std::env::var_os(STRACE_DIR_VAR);
        let seccomp: Vec<String> = match (&strace_dir, default_seccomp, seccomp) {
            // podman's own default profile (io_uring denied, as RuntimeDefault); when
            // measuring too, so the epoll engine's syscalls are seen.
            (_, true, _) => Vec::new(),
            // Measuring: nothing denied, so every syscall made is seen.
            (Some(_), false, _) => vec!["--security-opt".into(), "seccomp=unconfined".into()],
            (None, false, Some(path)) => {
                vec![
                    "--security-opt".into(),
                    format!("seccomp={}", path.display()),
                ]
            }
            (None, false, None) => vec![
                "--security-opt".into(),
                format!("seccomp={}", shipped_seccomp_profile().display()),
            ],
        };
        let dir = node.node.dir.path().display().to_string();
        let mut command = Command::new("podman");
        // Measuring: created, then started with strace attached (`start_traced`).
        let verb: &[&str] = if strace_dir.is_some() {
            &["create"]
        } else {
            &["run", "-d"]
        };
        command
            .args(verb)
            .args(["--name", &name])
            .args(RUN_OPTS)
            .arg("--network")
            .arg(format!("ns:/run/netns/{}", netns.name))
            // The namespace's resolv.conf, never the host's: the `.` block forwards to it.
            .args([
                "-v",
                &format!("/etc/netns/{}/resolv.conf:/etc/resolv.conf:ro", netns.name),
            ])
            .args(["-v", &format!("{dir}:{dir}")])
            .args([
                "-e",
                &format!("KUBE_DNS_UPSTREAM_SERVICE_HOST={KUBE_DNS_UPSTREAM}"),
            ])
            .args(["-e", "RUST_LOG=info"])
            .args(&caps)
            .args(&seccomp)
            .args(extra)
            .arg(image())
            .args(&args)
            .args(test_args(node, default_shards))
            .args(cache_args);
        let out = run(&mut command);
        assert!(
            out.status.success(),
            "podman {}: {}",
            verb[0],
            String::from_utf8_lossy(&out.stderr)
        );
        let strace = strace_dir.map(|dir| Container::start_traced(&name, Path::new(&dir)));
        Container { name, strace }
    }

    /// Starts a created container with `strace -f -c` attached to its first process
    /// before it runs anything of the image (`podman init`: runc's init waits for the
    /// start), so the summary in `dir` holds every syscall the image's processes make.
    fn start_traced(name: &str, dir: &Path) -> std::process::Child {
        let out = run(Command::new("podman").args(["init", name]));
        assert!(
            out.status.success(),
            "podman init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = run(Command::new("podman").args(["inspect", "--format", "{{.State.Pid}}", name]));
        let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
        std::fs::create_dir_all(dir).unwrap();
        let summary = dir.join(format!("{name}-{pid}.txt"));
        let strace = Command::new("strace")
            .args(["-f", "-c", "-qq", "-o"])
            .arg(&summary)
            .args(["-p", &pid])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace (apt-get install strace)");
        std::thread::sleep(Duration::from_millis(500));
        let out = run(Command::new("podman").args(["start", name]));
        assert!(
            out.status.success(),
            "podman start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        strace
    }

    /// What the container printed (its stderr is the cache's log).
    pub fn log(&self) -> String {
        let out = run(Command::new("podman").args(["logs", &self.name]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// True while the container runs.
    pub fn running(&self) -> bool {
        let out = run(Command::new("podman").args([
            "inspect",
            "--format",
            "{{.State.Running}}",
            &self.name,
        ]));
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    }

    /// The container's main process as the host sees it.
    pub fn pid(&self) -> u32 {
        let out =
            run(Command::new("podman").args(["inspect", "--format", "{{.State.Pid}}", &self.name]));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid for {}", self.name))
    }

    /// True when the kernel's OOM killer ended the container.
    pub fn oom_killed(&self) -> bool {
        let out = run(Command::new("podman").args([
            "inspect",
            "--format",
            "{{.State.OOMKilled}}",
            &self.name,
        ]));
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    }

    /// `podman stop` (SIGTERM, then SIGKILL after `grace`); the exit code.
    pub fn stop(&self, grace: Duration) -> i64 {
        let secs = grace.as_secs().to_string();
        let out = run(Command::new("podman").args(["stop", "-t", &secs, &self.name]));
        assert!(
            out.status.success(),
            "podman stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(wait_until(Duration::from_secs(5), || !self.running()));
        let out = run(Command::new("podman").args([
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &self.name,
        ]));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-1)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // strace ends with the traced processes, writing its summary.
        if let Some(mut strace) = self.strace.take() {
            let _ = strace.wait();
        }
    }
}

/// Set to a directory, the image tests run their containers without seccomp and
/// with `strace -f -c` attached, one summary per container there
/// (`deploy/seccomp/measure.sh` turns them into the profile's allow-list).
pub const STRACE_DIR_VAR: &str = "NODELOCALDNS_TEST_STRACE_DIR";

/// The Localhost seccomp profile `deploy/` ships for the io_uring engine.
fn shipped_seccomp_profile() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/seccomp/nodelocaldns.json")
}

/// The DaemonSet's `securityContext.capabilities` of `mode`, as podman options.
fn capability_opts(mode: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(mode)
        .join("nodelocaldns.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut opts = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap();
        if doc["kind"] != "DaemonSet" {
            continue;
        }
        let caps =
            &doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"];
        for (key, flag) in [("drop", "--cap-drop"), ("add", "--cap-add")] {
            for cap in caps[key].as_array().into_iter().flatten() {
                opts.push(flag.to_string());
                opts.push(cap.as_str().unwrap().to_string());
            }
        }
    }
    assert!(!opts.is_empty(), "{mode}: the DaemonSet sets capabilities");
    opts
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// Longest wait for something the cache does within a second or two (the container
/// adds podman's start).
const SETTLE: Duration = Duration::from_secs(15);

/// The host's xtables lock, which the DaemonSet mounts (hostPath, FileOrCreate).
const XTABLES_LOCK: &str = "/run/xtables.lock";

fn xtables_lock_mount() -> [String; 2] {
    if !Path::new(XTABLES_LOCK).exists() {
        std::fs::File::create(XTABLES_LOCK).expect("create /run/xtables.lock");
    }
    ["-v".into(), format!("{XTABLES_LOCK}:{XTABLES_LOCK}")]
}

/// Our rules' lines in the node's `iptables-<backend>-save` (v4 and v6).
fn rules_in(node: &Node, backend: &str) -> usize {
    [
        format!("iptables-{backend}-save"),
        format!("ip6tables-{backend}-save"),
    ]
    .iter()
    .map(|save| {
        node.node
            .run_ok(&[save])
            .lines()
            .filter(|l| l.contains(OUR_RULES))
            .count()
    })
    .sum()
}

fn dnat_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('-'))
        .map(String::from)
        .collect()
}

#[test]
fn image_iptables_mode_resolves_and_stop_leaves_the_node_as_it_was() {
    if !can_run() {
        return;
    }
    let node = Node::build("img");
    let direct_udp = node.cluster.udp();
    let lock = xtables_lock_mount();
    let cache = Container::start(&node, "iptables", &[&lock[0], &lock[1]]);
    assert!(
        wait_until(SETTLE, || node.our_rules() == 24),
        "rules: {}\n{}",
        node.our_rules(),
        cache.log()
    );
    assert_eq!(
        node.resolve("kubernetes.default"),
        vec!["10.96.0.1"],
        "{}",
        cache.log()
    );
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    let after_first = node.cluster.total();
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    assert_eq!(
        node.cluster.total(),
        after_first,
        "repeated lookups are hits"
    );
    assert_eq!(
        node.cluster.udp(),
        direct_udp,
        "the cache forwards over TCP"
    );
    assert_eq!(node.resolve("www.acme.local"), vec!["192.0.2.53"]);
    assert_eq!(node.conntrack_dns(KUBE_DNS), 0, "NOTRACK for the pod's DNS");
    assert_eq!(node.conntrack_dns(LOCAL_DNS), 0);
    assert!(node
        .node
        .addresses("nodelocaldns")
        .iter()
        .any(|(_, ip, _)| ip == KUBE_DNS));

    // `podman stop`: SIGTERM to the entrypoint's exec'd cache, which tears down.
    assert_eq!(cache.stop(Duration::from_secs(15)), 0, "{}", cache.log());
    assert_eq!(node.our_rules(), 0, "{}", cache.log());
    assert!(!node.node.link_exists("nodelocaldns"));
    assert_eq!(
        dnat_lines(&node.node.run_ok(&["iptables-save", "-t", "nat"])),
        dnat_lines(&node.nat_before)
    );
    let udp = node.cluster.udp();
    assert_eq!(
        node.resolve("web.default.svc.cluster.local"),
        vec!["10.96.5.5"]
    );
    assert!(node.cluster.udp() > udp, "kube-proxy's DNAT path again");
}

#[test]
fn image_entrypoint_puts_rules_in_the_backend_the_node_uses() {
    if !can_run() {
        return;
    }
    for backend in ["nft", "legacy"] {
        let node = Node::build(&format!("be{backend}"));
        if backend == "legacy" {
            // kube-proxy on a legacy node: its DNAT in the legacy tables, none in nft.
            let nat = node.node.run_ok(&["iptables-nft-save", "-t", "nat"]);
            let file = node.node.path("nat.rules");
            std::fs::write(&file, &nat).unwrap();
            node.node.run_ok(&["iptables-nft", "-t", "nat", "-F"]);
            node.node.run_ok(&[
                "sh",
                "-c",
                &format!("iptables-legacy-restore < {}", file.display()),
            ]);
            node.node.run_ok(&["nft", "flush", "ruleset"]);
        }
        let other = if backend == "nft" { "legacy" } else { "nft" };
        let lock = xtables_lock_mount();
        let cache = Container::start(&node, "iptables", &[&lock[0], &lock[1]]);
        assert!(
            wait_until(SETTLE, || rules_in(&node, backend) == 24),
            "{backend}: {} rules\n{}",
            rules_in(&node, backend),
            cache.log()
        );
        assert_eq!(rules_in(&node, other), 0, "{backend} node: none in {other}");
        assert_eq!(
            node.resolve("kubernetes.default"),
            vec!["10.96.0.1"],
            "{backend}: {}",
            cache.log()
        );
        assert_eq!(node.conntrack_dns(KUBE_DNS), 0, "{backend}");
        assert_eq!(cache.stop(Duration::from_secs(15)), 0, "{}", cache.log());
        assert_eq!(rules_in(&node, backend), 0, "{backend}: torn down");
    }
}

#[test]
fn image_cilium_lrp_mode_runs_without_net_admin() {
    if !can_run() {
        return;
    }
    let node = Node::build("imglrp");
    // The cache on the pod network, the kube-dns IP redirected to its pod.
    let cache_pod = node.cache_pod("imglrp");
    node.redirect_kube_dns_to(CACHE_POD_IP);
    let nat = node.node.run_ok(&["iptables-save", "-t", "nat"]);
    let cache = Container::start_with(
        &node,
        "cilium-lrp",
        Run {
            netns: Some(&cache_pod),
            ..Run::default()
        },
    );
    assert!(
        wait_until(SETTLE, || node.resolve("kubernetes.default")
            == vec!["10.96.0.1"]),
        "{}",
        cache.log()
    );
    let total = node.cluster.total();
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    assert_eq!(node.cluster.total(), total, "a hit");
    // The `.` block forwards to the pod's resolv.conf (the node's stub server).
    assert_eq!(
        node.resolve("www.example"),
        vec!["192.0.2.1"],
        "{}",
        cache.log()
    );
    assert!(!node.node.link_exists("nodelocaldns"));
    assert_eq!(node.our_rules(), 0);
    assert_eq!(cache.stop(Duration::from_secs(15)), 0, "{}", cache.log());
    assert_eq!(
        dnat_lines(&node.node.run_ok(&["iptables-save", "-t", "nat"])),
        dnat_lines(&nat)
    );
}

/// The image under podman's default seccomp profile, no profile of ours: io_uring
/// is blocked as under kubelet's `RuntimeDefault`, and the cache starts on the epoll
/// engine, says why once, labels `nodelocaldns_engine_info`, and answers over UDP and TCP,
/// misses and hits.
#[test]
fn image_under_the_default_seccomp_profile_serves_on_epoll() {
    if !can_run() {
        return;
    }
    let node = Node::build("imgsecc");
    let lock = xtables_lock_mount();
    let cache = Container::start_with(
        &node,
        "iptables",
        Run {
            podman: &[&lock[0], &lock[1]],
            default_seccomp: true,
            ..Run::default()
        },
    );
    assert!(
        wait_until(SETTLE, || node.our_rules() == 24),
        "started where io_uring is blocked:\n{}",
        cache.log()
    );
    let log = cache.log();
    assert_eq!(
        log.matches("io_uring unavailable: using the epoll engine")
            .count(),
        1,
        "one line says why:\n{log}"
    );
    assert!(log.contains("seccomp"), "the cause is named:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    // UDP through the pod's resolver: a miss (the cluster DNS asked), then a hit.
    let total = node.cluster.total();
    assert_eq!(
        node.resolve("kubernetes.default"),
        vec!["10.96.0.1"],
        "{log}"
    );
    let after_miss = node.cluster.total();
    assert!(after_miss > total, "a miss reaches the cluster DNS");
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    assert_eq!(node.cluster.total(), after_miss, "a hit");
    // TCP from the pod to the kube-dns IP (the cache answers it): a miss, then a hit.
    let name = "web.default.svc.cluster.local";
    for round in ["miss", "hit"] {
        let tcp = node.pod.kdig(&["+tcp", &format!("@{KUBE_DNS}"), name, "A"]);
        assert_eq!(tcp.trim(), "10.96.5.5", "TCP {round}:\n{}", cache.log());
    }
    let metrics = node.node.in_ns(|| http_get("127.0.0.1:9253", "/metrics"));
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nodelocaldns_engine_info{") && l.contains("engine=\"epoll\"")),
        "nodelocaldns_engine_info names the engine:\n{metrics}"
    );
    assert_eq!(cache.stop(Duration::from_secs(15)), 0, "{}", cache.log());
}

/// The body of `GET path` from `addr` (HTTP/1.0, read to the end); empty on error.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

#[test]
fn image_rolling_update_beside_the_old_container_loses_no_query() {
    if !can_run() {
        return;
    }
    let node = Node::build("imgroll");
    let lock = xtables_lock_mount();
    let mounts = [lock[0].as_str(), lock[1].as_str()];
    let old = Container::start_with(
        &node,
        "iptables",
        Run {
            podman: &mounts,
            suffix: "a",
            ..Run::default()
        },
    );
    assert!(
        wait_until(SETTLE, || node.our_rules() == 24),
        "{}",
        old.log()
    );
    let names = [
        "kubernetes.default.svc.cluster.local A",
        "web.default.svc.cluster.local A",
        "www.acme.local A",
        "kubernetes.default.svc.cluster.local AAAA",
    ];
    for name in [
        "kubernetes.default",
        "web.default.svc.cluster.local",
        "www.acme.local",
    ] {
        assert!(!node.resolve(name).is_empty(), "{name}: {}", old.log());
    }
    let queries = node.pod.path("queries.txt");
    std::fs::write(&queries, names.join("\n") + "\n").unwrap();
    // 10k queries/s from 256 pod sockets to the kube-dns IP for 8 s, open loop.
    let queries = queries.display().to_string();
    let load = PodLoad::start(
        &node,
        "load",
        &[
            "--rate", "10000", "-c", "256", "-l", "8", "-t", "2", "-d", &queries,
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // maxSurge 1: the new pod starts beside the old one, with its own Corefile (each
    // container has its own file system), binding every listener the old one holds.
    let conf = node.node.path("Corefile.1").display().to_string();
    let new = Container::start_with(
        &node,
        "iptables",
        Run {
            podman: &mounts,
            suffix: "b",
            cache_args: &["-conf", &conf],
            ..Run::default()
        },
    );
    let listening = |log: &str| {
        [
            format!("listening (udp+tcp) addr={KUBE_DNS}:53"),
            format!("listening (udp+tcp) addr={LOCAL_DNS}:53"),
            format!("addr={LOCAL_DNS}:8080"),
            format!("addr={LOCAL_DNS}:8181"),
            "addr=0.0.0.0:9253".into(),
            "addr=0.0.0.0:9353".into(),
        ]
        .iter()
        .all(|needle| log.contains(needle.as_str()))
    };
    assert!(
        wait_until(SETTLE, || listening(&new.log())),
        "the new container binds every listener beside the old one:\n{}",
        new.log()
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(old.stop(Duration::from_secs(30)), 0, "{}", old.log());
    // Handed over, not torn down: the rules and the interface stay.
    assert_eq!(node.our_rules(), 24, "{}", old.log());
    assert!(node.node.link_exists("nodelocaldns"));
    let report = load.finish();
    let counters = &report["counters"];
    let sent = counters["sent"].as_u64().unwrap_or(0);
    assert!(sent >= 70_000, "the load ran: {counters}");
    assert_eq!(
        report["loss_pct"].as_f64(),
        Some(0.0),
        "no query lost across the update: {counters}\n{}\n{}",
        old.log(),
        new.log()
    );
    let rcodes = report["rcodes"].as_object().unwrap();
    assert!(rcodes.keys().all(|rcode| rcode == "NOERROR"), "{rcodes:?}");
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    assert_eq!(new.stop(Duration::from_secs(15)), 0, "{}", new.log());
    assert_eq!(node.our_rules(), 0, "the last one tears down");
}

#[test]
fn image_under_a_cpu_quota_and_memory_limit_survives_a_miss_storm() {
    if !can_run() {
        return;
    }
    let node = Node::build("imglim");
    node.redirect_kube_dns_to_node();
    // What operators set (kubernetes/dns issues quote 0.5 CPU and 64 MiB and less).
    let cache = Container::start_with(
        &node,
        "cilium-lrp",
        Run {
            podman: &["--cpus", "0.5", "--memory", "64m"],
            default_shards: true,
            ..Run::default()
        },
    );
    assert!(
        wait_until(SETTLE, || node.resolve("kubernetes.default")
            == vec!["10.96.0.1"]),
        "{}",
        cache.log()
    );
    let log = cache.log();
    let plan = log
        .lines()
        .find(|l| l.contains(" shards shards="))
        .unwrap_or_else(|| panic!("no shard plan logged:\n{log}"));
    assert!(plan.contains("shards=1 "), "{plan}");
    assert!(plan.contains("cpu_quota_cores=Some(0.5)"), "{plan}");
    assert!(plan.contains("memory_limit_bytes=Some(67108864)"), "{plan}");
    let memory = log
        .lines()
        .find(|l| l.contains(" memory plan "))
        .unwrap_or_else(|| panic!("no memory plan logged:\n{log}"));
    // The plan of `memory_plan` for 64 MiB and one shard (its unit tests' table).
    for budget in [
        "cache_bytes=Some(11304960)",
        "misses_pending_per_shard=920",
        "tcp_clients_per_shard=460",
        "io_memory_bytes=1048576",
        "rcvbuf_bytes=1048576",
    ] {
        assert!(memory.contains(budget), "{budget}: {memory}");
    }

    // A unique-name storm against a silent upstream (every query a miss that waits
    // for its timeout) at more than one shard on half a core can answer, for 10 s.
    // The container must not be OOM-killed, stay under its limit, and keep
    // answering the pod's hits.
    node.dns
        .run_ok(&["iptables", "-A", "INPUT", "-d", STUB_DNS, "-j", "DROP"]);
    let pid = cache.pid();
    let storm = PodLoad::start(
        &node,
        "storm",
        &[
            "--rate",
            "20000",
            "-c",
            "64",
            "--random-names",
            "1000000",
            "--random-suffix",
            "example",
            "--qtype",
            "A=50,TXT=50",
            "-l",
            "10",
            "-t",
            "1",
            "--no-pin",
        ],
    );
    let (mut peak_kib, mut hits, mut asked) = (0u64, 0u32, 0u32);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        peak_kib = peak_kib.max(rss_kib(pid));
        let answered = node.pod.in_ns(|| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            // A lost answer must not block the loop (udp_query waits on recv).
            socket
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let server = (KUBE_DNS.parse::<std::net::IpAddr>().unwrap(), 53).into();
            crate::harness::udp_query(&socket, server, "kubernetes.default.svc.cluster.local")
        });
        asked += 1;
        hits += u32::from(answered == Some(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    let report = storm.finish();
    assert!(
        cache.running(),
        "the cache died in the storm:\n{}",
        cache.log()
    );
    assert!(!cache.oom_killed());
    assert!(
        peak_kib < 64 * 1024,
        "RSS {peak_kib} KiB over the 64 MiB limit"
    );
    assert!(
        hits * 10 >= asked * 8,
        "hits answered during the storm: {hits} of {asked}"
    );
    node.dns
        .run_ok(&["iptables", "-D", "INPUT", "-d", STUB_DNS, "-j", "DROP"]);
    eprintln!(
        "storm: peak RSS {peak_kib} KiB, hits {hits}/{asked}, load {}, rcodes {}",
        report["counters"], report["rcodes"]
    );
    assert_eq!(node.resolve("kubernetes.default"), vec!["10.96.0.1"]);
    assert_eq!(cache.stop(Duration::from_secs(15)), 0, "{}", cache.log());
}

/// VmRSS of `pid` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The shipped profile's allow-list with every other syscall killing the process
/// (`SCMP_ACT_KILL_PROCESS` instead of the shipped EPERM), so a syscall the profile
/// lacks fails the test even where the cache would cope with the error.
fn strict_seccomp_profile(node: &Node) -> std::path::PathBuf {
    let text = std::fs::read_to_string(shipped_seccomp_profile()).unwrap();
    let mut profile: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        profile["defaultAction"], "SCMP_ACT_ERRNO",
        "the shipped default"
    );
    profile["defaultAction"] = "SCMP_ACT_KILL_PROCESS".into();
    if let Some(fields) = profile.as_object_mut() {
        fields.remove("defaultErrnoRet");
    }
    let path = node.node.path("seccomp-strict.json");
    std::fs::write(&path, profile.to_string()).unwrap();
    path
}

/// A field of `/proc/PID/status` ("Seccomp": 2 is a filter in force).
fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// io_uring instances `pid` holds open.
fn io_urings(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy() == "anon_inode:[io_uring]")
                .count()
        })
        .unwrap_or(0)
}

/// The status line of `GET path` on `addr` from inside `ns`.
fn http_status(ns: &Netns, addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    ns.in_ns(move || {
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(request.as_bytes());
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.lines().next().unwrap_or_default().to_string()
    })
}

/// What the image does on a node, under its seccomp filter, on `engine`'s rings or
/// not: UDP hits and misses, TCP from a client, metrics and health, a reload from
/// the kube-dns ConfigMap. Each step must work and the container keep running.
fn exercise(node: &Node, cache: &Container, engine: &str) {
    let pid = cache.pid();
    // (Measuring the syscalls runs without a filter, the workload all the same.)
    if std::env::var_os(STRACE_DIR_VAR).is_none() {
        assert_eq!(
            proc_status(pid, "Seccomp"),
            "2",
            "a seccomp filter is in force"
        );
    }
    let rings = io_urings(pid);
    match engine {
        "io_uring" => assert!(
            rings >= 2,
            "io_uring (two shards): {rings} rings\n{}",
            cache.log()
        ),
        _ => assert_eq!(rings, 0, "epoll: no ring\n{}", cache.log()),
    }
    assert_eq!(
        node.resolve("kubernetes.default"),
        vec!["10.96.0.1"],
        "{}",
        cache.log()
    );
    assert_eq!(node.resolve("www.acme.local"), vec!["192.0.2.53"]);
    assert_eq!(node.resolve("www.example"), vec!["192.0.2.1"]);
    let tcp = node.pod.kdig(&[
        &format!("@{KUBE_DNS}"),
        "+tcp",
        "web.default.svc.cluster.local",
    ]);
    assert_eq!(tcp.trim(), "10.96.5.5", "over TCP\n{}", cache.log());
    let metrics = node.node.scrape("127.0.0.1:9253");
    assert!(
        metrics.contains("coredns_dns_requests_total"),
        "metrics: {metrics}"
    );
    let health = http_status(&node.node, &format!("{LOCAL_DNS}:8080"), "/health");
    assert!(health.contains(" 200"), "health: {health:?}");
    // A reload: one more stub domain in the kube-dns ConfigMap.
    let reloaded = |log: &str| log.matches("configuration reloaded").count();
    let before = reloaded(&cache.log());
    replace_file(
        &node.node.path("kube-dns").join("stubDomains"),
        &format!("{{\"acme.local\": [\"{STUB_DNS}\"], \"example\": [\"{STUB_DNS}\"]}}"),
    );
    assert!(
        wait_until(SETTLE, || reloaded(&cache.log()) > before),
        "no reload\n{}",
        cache.log()
    );
    assert_eq!(node.resolve("www.example"), vec!["192.0.2.1"]);
    assert!(cache.running(), "{}", cache.log());
}

#[test]
fn image_under_the_shipped_seccomp_profile_serves_reloads_and_hands_over() {
    if !can_run() {
        return;
    }
    let node = Node::build("imgsec");
    let lock = xtables_lock_mount();
    let mounts = [lock[0].as_str(), lock[1].as_str()];
    let shipped = shipped_seccomp_profile();
    // The profile as shipped: entrypoint (iptables backend), rules, the workload.
    let old = Container::start_with(
        &node,
        "iptables",
        Run {
            podman: &mounts,
            suffix: "a",
            seccomp: Some(&shipped),
            ..Run::default()
        },
    );
    assert!(
        wait_until(SETTLE, || node.our_rules() == 24),
        "{}",
        old.log()
    );
    exercise(&node, &old, "io_uring");
    // Successors under the same list, killed by any other syscall: each starts beside
    // the one before, which hands over and exits without tearing down; the io_uring
    // engine, then the epoll engine (where io_uring is disabled on the node).
    let strict = strict_seccomp_profile(&node);
    let mut current = old;
    for (suffix, engine) in [("b", "io_uring"), ("c", "epoll")] {
        let conf = node
            .node
            .path(&format!("Corefile.{suffix}"))
            .display()
            .to_string();
        let engine_arg = format!("--io-engine={engine}");
        let next = Container::start_with(
            &node,
            "iptables",
            Run {
                podman: &mounts,
                suffix,
                cache_args: &["-conf", &conf, &engine_arg],
                seccomp: Some(&strict),
                ..Run::default()
            },
        );
        assert!(
            wait_until(SETTLE, || next
                .log()
                .contains(&format!("listening (udp+tcp) addr={LOCAL_DNS}:53"))),
            "{}",
            next.log()
        );
        assert_eq!(
            current.stop(Duration::from_secs(30)),
            0,
            "{}",
            current.log()
        );
        assert_eq!(node.our_rules(), 24, "handed over: {}", current.log());
        exercise(&node, &next, engine);
        current = next;
    }
    let new = current;
    // The last one stops under the strict filter and tears down.
    assert_eq!(new.stop(Duration::from_secs(15)), 0, "{}", new.log());
    assert!(!new.oom_killed());
    assert_eq!(node.our_rules(), 0, "{}", new.log());
    assert!(!node.node.link_exists("nodelocaldns"));
}
