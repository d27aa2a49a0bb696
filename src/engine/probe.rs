//! Whether io_uring can run here, asked once before glommio is touched: glommio
//! panics on a thread of its own when its ring cannot be set up ("Failed to register
//! a probe"), so the question is put to the kernel directly: `io_uring_setup` of a
//! small ring and `IORING_REGISTER_PROBE` on it, the two calls glommio starts with.
//! A refusal is explained from what the process can read: its seccomp mode
//! (`/proc/self/status`), `kernel.io_uring_disabled`, RLIMIT_MEMLOCK and the kernel
//! release.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::limits;

/// Why io_uring cannot run in this process, with what was read to tell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("blocked by a seccomp filter (Seccomp: 2 in /proc/self/status; container runtimes' default profiles block io_uring): {call} failed: {errno}")]
    Seccomp { call: &'static str, errno: String },
    #[error(
        "switched off by the kernel (kernel.io_uring_disabled = {setting}): {call} failed: {errno}"
    )]
    Disabled {
        setting: u32,
        call: &'static str,
        errno: String,
    },
    #[error("RLIMIT_MEMLOCK ({limit}) too small for a ring: {call} failed: {errno}")]
    Memlock {
        limit: String,
        call: &'static str,
        errno: String,
    },
    #[error("kernel {release} lacks what glommio needs (io_uring with probes, Linux 5.8 or later): {call} failed: {errno}")]
    Kernel {
        release: String,
        call: &'static str,
        errno: String,
    },
    #[error("{call} failed: {errno}")]
    Other { call: &'static str, errno: String },
}

/// `io_uring_register` opcode that fills a probe of the supported operations.
const IORING_REGISTER_PROBE: libc::c_uint = 8;

/// Sets up a ring and registers a probe on it, as glommio does first; Err explains a
/// refusal. On a thread of its own, which ends with the ring: the kernel ties a
/// ring's context to the thread that set it up, and a shard's io_uring waits were
/// seen to stall in a process whose other thread had held a ring.
pub fn io_uring() -> Result<(), Unavailable> {
    let probe = || {
        memlock_enough()?;
        let ring = setup().map_err(|err| explain("io_uring_setup", err))?;
        register_probe(&ring).map_err(|err| explain("io_uring_register(PROBE)", err))
    };
    std::thread::Builder::new()
        .name("io-uring-probe".into())
        .spawn(probe)
        .map_err(|err| Unavailable::Other {
            call: "spawning the probe thread",
            errno: err.to_string(),
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(Unavailable::Other {
                call: "the probe thread",
                errno: "it panicked".into(),
            })
        })
}

fn setup() -> std::io::Result<OwnedFd> {
    // struct io_uring_params: 120 bytes, zeroed = no flags; the kernel fills it.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, which is large enough for the
    // kernel's struct io_uring_params; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            limits::IO_URING_PROBE_ENTRIES,
            params.as_mut_ptr(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn register_probe(ring: &OwnedFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // struct io_uring_probe: a 16-byte head and 8 bytes per operation.
    let ops = limits::IO_URING_PROBE_OPS;
    let mut probe = vec![0u8; 16 + 8 * ops as usize];
    // SAFETY: the kernel writes at most `ops` entries after the head, which `probe`
    // holds; the ring fd is open for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            IORING_REGISTER_PROBE,
            probe.as_mut_ptr(),
            ops,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The cause of `err` from `call`, from the process's seccomp mode, the sysctl, the
/// memlock limit and the kernel release.
fn explain(call: &'static str, err: std::io::Error) -> Unavailable {
    let errno = err.to_string();
    let code = err.raw_os_error().unwrap_or(0);
    let disabled = read_trimmed("/proc/sys/kernel/io_uring_disabled")
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if matches!(code, libc::EPERM | libc::EACCES) && disabled > 0 {
        return Unavailable::Disabled {
            setting: disabled,
            call,
            errno,
        };
    }
    if seccomp_filtered(&status) && matches!(code, libc::EPERM | libc::EACCES | libc::ENOSYS) {
        return Unavailable::Seccomp { call, errno };
    }
    if code == libc::ENOMEM {
        return Unavailable::Memlock {
            limit: memlock(),
            call,
            errno,
        };
    }
    if matches!(code, libc::ENOSYS | libc::EINVAL) {
        let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".into());
        return Unavailable::Kernel {
            release,
            call,
            errno,
        };
    }
    Unavailable::Other { call, errno }
}

/// True when `status` (of /proc/self/status) says a seccomp filter is in force.
fn seccomp_filtered(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .is_some_and(|mode| mode.trim() == "2")
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// glommio refuses to start an executor below [`limits::IO_URING_MEMLOCK_BYTES_MIN`]
/// of RLIMIT_MEMLOCK (on a shard thread, where it would end the shard).
fn memlock_enough() -> Result<(), Unavailable> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(());
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < limits::IO_URING_MEMLOCK_BYTES_MIN
    {
        return Err(Unavailable::Memlock {
            limit: memlock(),
            call: "the executor's start",
            errno: format!(
                "glommio needs at least {} bytes",
                limits::IO_URING_MEMLOCK_BYTES_MIN
            ),
        });
    }
    Ok(())
}

/// RLIMIT_MEMLOCK of the process, for the message.
fn memlock() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return "unknown".into();
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} bytes", limit.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seccomp_mode() {
        assert!(seccomp_filtered(
            "Name:\tx\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        ));
        assert!(!seccomp_filtered("Seccomp:\t0\n"));
        assert!(!seccomp_filtered(""));
    }

    #[test]
    fn enomem_names_the_memlock_limit() {
        let err = explain(
            "io_uring_setup",
            std::io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert!(matches!(err, Unavailable::Memlock { .. }), "{err}");
        assert!(err.to_string().contains("RLIMIT_MEMLOCK"), "{err}");
    }
}
