//! The processes of a campaign and the namespace they run in: every child is
//! stopped and reaped when its guard drops, a namespace the campaign created is
//! deleted when its guard drops, and every wait is bounded and gives up on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a stopped child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Poll period of bounded waits.
const POLL: Duration = Duration::from_millis(20);

/// Why a wait ended early.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitError {
    Interrupted,
    TimedOut,
}

/// `program args…`, inside `netns` (`ip netns exec`) and pinned to `cpus`
/// (`taskset -c`); both exec, so the child's pid is the program's.
pub fn command(
    netns: Option<&str>,
    cpus: Option<&str>,
    program: &Path,
    args: &[String],
) -> Command {
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip".into(), "netns".into(), "exec".into(), ns.into()]);
    }
    if let Some(cpus) = cpus {
        argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    argv.push(program.display().to_string());
    argv.extend(args.iter().cloned());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    cmd
}

/// The command line of `cmd`, for plans and reports.
pub fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '{', '}', '*']) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A child that is stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> std::io::Result<Proc> {
        let file = std::fs::File::create(log)?;
        cmd.stdout(file.try_clone()?).stderr(file);
        Ok(Proc {
            name: name.into(),
            child: Some(cmd.spawn()?),
            log: Some(log.to_path_buf()),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The exit status if the child has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until the child ends, at most `limit`, giving up when `interrupt` is set.
    pub fn wait(
        &mut self,
        limit: Duration,
        interrupt: &AtomicBool,
    ) -> Result<ExitStatus, WaitError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if interrupt.load(Ordering::Relaxed) {
                return Err(WaitError::Interrupted);
            }
            if Instant::now() > deadline {
                return Err(WaitError::TimedOut);
            }
            std::thread::sleep(POLL);
        }
    }

    /// The last `lines` lines of the log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; reaps the child.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// User and system CPU time of `pid` so far (/proc/PID/stat utime + stime).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// A network namespace with loopback up; deleted on drop when this guard made it.
pub struct Netns {
    pub name: String,
    pub created: bool,
}

impl Netns {
    /// Uses namespace `name`, creating it (and bringing `lo` up) when missing.
    pub fn ensure(name: &str) -> std::io::Result<Netns> {
        let exists = Path::new("/run/netns").join(name).exists();
        if !exists {
            run_ip(&["netns", "add", name])?;
        }
        let netns = Netns {
            name: name.into(),
            created: !exists,
        };
        run_ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.created {
            if let Err(err) = run_ip(&["netns", "del", &self.name]) {
                eprintln!("campaign: could not delete netns {}: {err}", self.name);
            }
        }
    }
}

fn run_ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `name` in PATH or the sbin directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A scratch directory removed on drop.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new() -> std::io::Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("dnsload-campaign-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
