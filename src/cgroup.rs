//! The limits the container runtime set on this process: the CPU quota and the memory
//! limit of its cgroup, v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`,
//! `memory.limit_in_bytes`) or v2 (`cpu.max`, `memory.max`). The effective limit is the
//! tightest along the path from the process's cgroup up to the root, as the kernel
//! applies it. Inside a container with its own cgroup namespace `/proc/self/cgroup`
//! says `/` and the container's cgroup is mounted at the controller's root, which the
//! same walk reads.
//!
//! Nothing here fails: an unreadable or malformed file is "no limit", and what was
//! found is logged by the caller with the plan made from it (`memory_plan`).

use std::path::{Path, PathBuf};

/// What the cgroup allows this process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// CPU quota in cores (quota / period), when one is set.
    pub cpu_cores: Option<f64>,
    /// Memory limit in bytes, when one is set.
    pub memory_bytes: Option<u64>,
}

impl Limits {
    /// The limits of this process, read under `/sys/fs/cgroup`.
    pub fn of_self() -> Limits {
        let table = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Limits::read(Path::new("/sys/fs/cgroup"), &table)
    }

    /// The limits for the `/proc/self/cgroup` text `table`, files under `root`.
    pub fn read(root: &Path, table: &str) -> Limits {
        let mut limits = Limits::default();
        for line in table.lines() {
            // hierarchy-id:controllers:path
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                // v2: the unified hierarchy, at the root or under `unified/` (hybrid).
                for base in [root.to_path_buf(), root.join("unified")] {
                    let memory = tightest(&base, path, v2_memory);
                    let cpu = tightest_f64(&base, path, v2_cpu);
                    limits.memory_bytes = min_some(limits.memory_bytes, memory);
                    limits.cpu_cores = min_some_f64(limits.cpu_cores, cpu);
                }
                continue;
            }
            for controller in controllers.split(',') {
                let base = root.join(controller);
                match controller {
                    "memory" => {
                        let memory = tightest(&base, path, v1_memory);
                        limits.memory_bytes = min_some(limits.memory_bytes, memory);
                    }
                    "cpu" => {
                        let cpu = tightest_f64(&base, path, v1_cpu);
                        limits.cpu_cores = min_some_f64(limits.cpu_cores, cpu);
                    }
                    _ => {}
                }
            }
        }
        limits
    }

    /// Shards for `cores` usable cores under this quota: one per whole or partial
    /// core of quota, never more than the cores, at least one.
    pub fn shards(&self, cores: usize) -> usize {
        let cores = cores.max(1);
        match self.cpu_cores {
            Some(quota) if quota.is_finite() && quota > 0.0 => {
                (quota.ceil() as usize).clamp(1, cores)
            }
            _ => cores,
        }
    }
}

/// The directories from `base` + `path` up to `base` (the nearest first); when the
/// process's own directory is missing (a cgroup namespace), `base` alone.
fn ancestors(base: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if path.split('/').any(|part| part == "..") {
        return dirs;
    }
    let mut dir = base.join(path.trim_start_matches('/'));
    while dir.starts_with(base) {
        if dir.is_dir() {
            dirs.push(dir.clone());
        }
        if !dir.pop() {
            break;
        }
    }
    dirs
}

fn tightest(base: &Path, path: &str, read: impl Fn(&Path) -> Option<u64>) -> Option<u64> {
    ancestors(base, path)
        .iter()
        .filter_map(|d| read(d.as_path()))
        .min()
}

fn tightest_f64(base: &Path, path: &str, read: impl Fn(&Path) -> Option<f64>) -> Option<f64> {
    ancestors(base, path)
        .iter()
        .filter_map(|d| read(d.as_path()))
        .min_by(|a, b| a.total_cmp(b))
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn min_some_f64(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    // These files hold one short line; a larger one is not a cgroup file (read at
    // most one byte past the bound to tell).
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(65)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() <= 64).then(|| text.trim().to_string())
}

/// v1 `memory.limit_in_bytes`: "no limit" is a huge number (page-rounded i64 max).
fn v1_memory(dir: &Path) -> Option<u64> {
    let bytes: u64 = read_trimmed(&dir.join("memory.limit_in_bytes"))?
        .parse()
        .ok()?;
    (bytes < 1 << 62).then_some(bytes)
}

/// v2 `memory.max`: bytes, or `max`.
fn v2_memory(dir: &Path) -> Option<u64> {
    read_trimmed(&dir.join("memory.max"))?.parse().ok()
}

/// v1: `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
fn v1_cpu(dir: &Path) -> Option<f64> {
    let quota: i64 = read_trimmed(&dir.join("cpu.cfs_quota_us"))?.parse().ok()?;
    let period: i64 = read_trimmed(&dir.join("cpu.cfs_period_us"))?.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// v2 `cpu.max`: "QUOTA PERIOD" or "max PERIOD".
fn v2_cpu(dir: &Path) -> Option<f64> {
    let text = read_trimmed(&dir.join("cpu.max"))?;
    let mut parts = text.split_whitespace();
    let quota: i64 = parts.next()?.parse().ok()?;
    let period: i64 = parts.next()?.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v1_reads_the_tightest_along_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(root, "memory/pod/memory.limit_in_bytes", "268435456\n");
        write(
            root,
            "memory/pod/c1/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(root, "cpu/pod/c1/cpu.cfs_quota_us", "50000\n");
        write(root, "cpu/pod/c1/cpu.cfs_period_us", "100000\n");
        let table = "4:memory:/pod/c1\n2:cpu,cpuacct:/pod/c1\n0::/\n";
        let limits = Limits::read(root, table);
        assert_eq!(limits.memory_bytes, Some(256 << 20));
        assert_eq!(limits.cpu_cores, Some(0.5));
        assert_eq!(limits.shards(2), 1);
    }

    #[test]
    fn v1_in_a_cgroup_namespace_reads_the_controller_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "memory/memory.limit_in_bytes", "67108864\n");
        write(root, "cpu/cpu.cfs_quota_us", "150000\n");
        write(root, "cpu/cpu.cfs_period_us", "100000\n");
        let limits = Limits::read(root, "4:memory:/\n1:cpu:/\n");
        assert_eq!(limits.memory_bytes, Some(64 << 20));
        assert_eq!(limits.shards(8), 2);
        assert_eq!(limits.shards(1), 1);
    }

    #[test]
    fn v2_reads_memory_max_and_cpu_max() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "kubepods/memory.max", "max\n");
        write(root, "kubepods/cpu.max", "max 100000\n");
        write(root, "kubepods/pod/memory.max", "134217728\n");
        write(root, "kubepods/pod/cpu.max", "250000 100000\n");
        let limits = Limits::read(root, "0::/kubepods/pod\n");
        assert_eq!(limits.memory_bytes, Some(128 << 20));
        assert_eq!(limits.cpu_cores, Some(2.5));
        assert_eq!(limits.shards(2), 2);
        assert_eq!(limits.shards(4), 3);
    }

    #[test]
    fn nothing_readable_is_no_limit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "memory/memory.limit_in_bytes", "garbage\n");
        write(root, "cpu/cpu.cfs_quota_us", "-1\n");
        write(root, "cpu/cpu.cfs_period_us", "100000\n");
        for table in ["", "nonsense", "4:memory:/../../etc\n1:cpu:/\n", "0::/x\n"] {
            let limits = Limits::read(root, table);
            assert_eq!(limits, Limits::default(), "{table:?}");
            assert_eq!(limits.shards(3), 3);
        }
    }
}
