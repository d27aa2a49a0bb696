//! The default shard count on a real node: one per usable CPU (the affinity mask,
//! `taskset`), at most one per whole or partial CPU of the cgroup's CPU quota, and
//! logged with both. Run under a real CPU set and a real CFS quota, in a cgroup the
//! test creates (v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, or v2 `cpu.max`,
//! whichever the machine mounts) and removes on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::process::free_port;

use super::harness::{wait_until, BIN};

/// A cgroup with a CPU quota of `quota_us` per 100 ms period; removed on drop.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn with_quota(name: &str, quota_us: u64) -> Cgroup {
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let dir_name = format!("nodelocaldns-test-{name}-{}", std::process::id());
        let cgroup = if v1.join("cpu.cfs_quota_us").exists() {
            let cgroup = Cgroup {
                dir: v1.join(dir_name),
            };
            std::fs::create_dir(&cgroup.dir).expect("creating a v1 cpu cgroup (root?)");
            write(&cgroup.dir.join("cpu.cfs_period_us"), "100000");
            write(&cgroup.dir.join("cpu.cfs_quota_us"), &quota_us.to_string());
            cgroup
        } else {
            let controllers = std::fs::read_to_string(v2.join("cgroup.controllers"))
                .expect("neither cgroup v1 cpu nor cgroup v2 is mounted");
            assert!(
                controllers.contains("cpu"),
                "cgroup v2 without cpu: {controllers}"
            );
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            let cgroup = Cgroup {
                dir: v2.join(dir_name),
            };
            std::fs::create_dir(&cgroup.dir).expect("creating a v2 cgroup (root?)");
            write(&cgroup.dir.join("cpu.max"), &format!("{quota_us} 100000"));
            cgroup
        };
        cgroup
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The server was killed and reaped; its cgroup empties at once.
        wait_until(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.dir).is_ok()
        });
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Usable CPUs of this test process (its affinity mask, as `nproc` counts them).
fn cpus() -> usize {
    let out = Command::new("nproc").output().expect("nproc (coreutils)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("nproc output")
}

/// Kills and reaps the server on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server without `--shards` (in `cgroup`, under `taskset -c cpus`)
/// and returns its shard plan log line.
fn plan(cgroup: Option<&Cgroup>, cpu_list: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("Corefile");
    let corefile = format!(".:{} {{\n    bind 127.0.0.1\n    whoami\n}}\n", free_port());
    std::fs::write(&conf, corefile).expect("Corefile");
    let log = dir.path().join("stderr");
    // The shell joins the cgroup, then becomes the server (same pid).
    let join = cgroup.map_or(String::new(), |c| {
        format!("echo $$ > {}/cgroup.procs && ", c.dir.display())
    });
    let pin = cpu_list.map_or(String::new(), |list| format!("taskset -c {list} "));
    let script = format!("{join}exec {pin}{BIN} -conf {}", conf.display());
    let child = Command::new("sh")
        .args(["-c", &script])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("sh");
    let _server = Server(child);
    let line = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains(" shards shards="))
            .map(str::to_string)
    };
    let found = wait_until(Duration::from_secs(10), || line().is_some());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(found, "no shard plan logged:\n{text}");
    line().unwrap_or_default()
}

fn assert_plan(line: &str, shards: usize, cores: usize, quota: &str) {
    for part in [
        format!("shards={shards} "),
        format!("usable_cores={cores} "),
        format!("cpu_quota_cores={quota} "),
    ] {
        assert!(line.contains(&part), "{part}: {line}");
    }
}

#[test]
fn default_shards_follow_the_cpu_set_and_the_cgroup_quota() {
    if !super::harness::can_run() {
        return;
    }
    let n = cpus();
    assert!(
        n >= 2,
        "this test needs 2 CPUs to tell a limit from none, has {n}"
    );
    // No limit: one shard per CPU.
    assert_plan(&plan(None, None), n, n, "None");
    // A CPU set of one.
    assert_plan(&plan(None, Some("0")), 1, 1, "None");
    // Half a CPU of quota (what operators give node-cache): one shard.
    let half = Cgroup::with_quota("half", 50_000);
    assert_plan(&plan(Some(&half), None), 1, n, "Some(0.5)");
    // 1.5 CPUs: two shards (a partial CPU counts), under the CPU set's one: one.
    let one_and_half = Cgroup::with_quota("oneandhalf", 150_000);
    assert_plan(&plan(Some(&one_and_half), None), 2, n, "Some(1.5)");
    assert_plan(&plan(Some(&one_and_half), Some("0")), 1, 1, "Some(1.5)");
    // A quota above the CPUs: never more shards than CPUs.
    let ample = Cgroup::with_quota("ample", (n as u64 + 2) * 100_000);
    let quota = format!("Some({}.0)", n + 2);
    assert_plan(&plan(Some(&ample), None), n, n, &quota);
}
