//! Kernel settings: sysctl.d profiles, reading and writing /proc/sys on the host or
//! inside a network namespace, and [`Restore`], which puts every changed value back
//! when dropped (end of a cell, an error, Ctrl-C, a panic).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use thiserror::Error;

/// One `key = value` line of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Dotted name (`net.core.rmem_max`).
    pub key: String,
    /// Value as written; white space runs are written as one space (udp_mem).
    pub value: String,
    /// sysctl.d's leading `-`: a failure to apply is reported, not fatal.
    pub ignore_failure: bool,
}

/// Where a sysctl lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The host's (initial network namespace's) value: needs `--apply`.
    Host,
    /// A per-network-namespace value inside this namespace.
    Netns(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Host => write!(f, "host"),
            Target::Netns(name) => write!(f, "netns {name}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum SysctlError {
    #[error("{key} ({target}): {source}")]
    Io {
        key: String,
        target: Target,
        source: std::io::Error,
    },
    #[error("{key}: writing it inside netns {netns} changed the host value; restored")]
    NotPerNetns { key: String, netns: String },
    #[error("{key}: not a sysctl name")]
    BadKey { key: String },
}

/// Parses a sysctl.d file: `key = value` lines, `#`/`;` comments, a leading `-`
/// for settings whose failure is ignored. Errors are (line, reason).
pub fn parse_sysctl_d(text: &str) -> Result<Vec<Setting>, (usize, String)> {
    let mut settings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or((index + 1, format!("{line:?} is not `key = value`")))?;
        let key = key.trim();
        let (key, ignore_failure) = match key.strip_prefix('-') {
            Some(rest) => (rest.trim(), true),
            None => (key, false),
        };
        let key = key.replace('/', ".");
        if !valid_key(&key) {
            return Err((index + 1, format!("{key:?} is not a sysctl name")));
        }
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        if value.is_empty() {
            return Err((index + 1, format!("{key}: empty value")));
        }
        settings.push(Setting {
            key,
            value,
            ignore_failure,
        });
    }
    Ok(settings)
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// /proc/sys path of a dotted key.
pub fn path_of(key: &str) -> Result<PathBuf, SysctlError> {
    if !valid_key(key) {
        return Err(SysctlError::BadKey { key: key.into() });
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

/// The sysctls this kernel keeps per network namespace among those the README
/// documents (probed on Linux 6.18: writable inside a new namespace, host value
/// unchanged). Used for the dry run's plan; `--apply` probes the namespace itself.
pub const KNOWN_PER_NETNS: [&str; 7] = [
    "net.core.optmem_max",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.netfilter.nf_conntrack_udp_timeout_stream",
    "net.ipv4.udp_rmem_min",
    "net.ipv4.udp_wmem_min",
    "net.ipv4.udp_early_demux",
];

/// The target of `key` when an experiment runs in `netns`, as the dry run assumes.
pub fn assumed_target(key: &str, netns: Option<&str>) -> Target {
    match netns {
        Some(ns) if KNOWN_PER_NETNS.contains(&key) => Target::Netns(ns.into()),
        _ => Target::Host,
    }
}

/// The target of `key` in `netns`, probed: per-namespace when the file exists inside
/// the namespace and is writable there (the kernel shows host-only net sysctls
/// read-only or not at all in a child namespace).
pub fn probe_target(key: &str, netns: Option<&str>) -> Result<Target, SysctlError> {
    let Some(ns) = netns else {
        return Ok(Target::Host);
    };
    let path = path_of(key)?;
    let writable = in_netns(ns, move || {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    })
    .map_err(|source| SysctlError::Io {
        key: key.into(),
        target: Target::Netns(ns.into()),
        source,
    })?;
    Ok(if writable && key.starts_with("net.") {
        Target::Netns(ns.into())
    } else {
        Target::Host
    })
}

/// Reads `key` at `target` (white space runs as one space).
pub fn read(key: &str, target: &Target) -> Result<String, SysctlError> {
    let path = path_of(key)?;
    let io = |source| SysctlError::Io {
        key: key.into(),
        target: target.clone(),
        source,
    };
    let text = match target {
        Target::Host => fs::read_to_string(&path).map_err(io)?,
        Target::Netns(ns) => in_netns(ns, move || fs::read_to_string(path))
            .and_then(|r| r)
            .map_err(io)?,
    };
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Writes `value` to `key` at `target`.
pub fn write(key: &str, target: &Target, value: &str) -> Result<(), SysctlError> {
    let path = path_of(key)?;
    let io = |source| SysctlError::Io {
        key: key.into(),
        target: target.clone(),
        source,
    };
    let value = value.to_string();
    match target {
        Target::Host => fs::write(&path, value).map_err(io),
        Target::Netns(ns) => in_netns(ns, move || fs::write(path, value))
            .and_then(|r| r)
            .map_err(io),
    }
}

/// Runs `f` on a thread that joined network namespace `ns` (/run/netns/NAME):
/// /proc/sys/net resolves against the opener's namespace, and sockets made there
/// belong to it. The calling thread stays where it is.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let handle = fs::File::open(PathBuf::from("/run/netns").join(ns))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: a valid namespace fd; affects only this thread.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
    })
}

/// One value to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub key: String,
    pub target: Target,
    pub value: String,
}

/// The values changed so far; dropping it writes them back, newest first.
#[derive(Debug, Default)]
pub struct Restore {
    changed: Vec<Previous>,
    /// Lines reported while restoring (also printed to stderr).
    pub log: Vec<String>,
}

impl Restore {
    /// Writes `value` to `key` at `target`, remembering the value it replaces. A
    /// per-namespace write is checked against the host value.
    pub fn apply(&mut self, key: &str, target: &Target, value: &str) -> Result<(), SysctlError> {
        let previous = read(key, target)?;
        let host_before = match target {
            Target::Netns(_) => Some(read(key, &Target::Host)?),
            Target::Host => None,
        };
        self.changed.push(Previous {
            key: key.into(),
            target: target.clone(),
            value: previous,
        });
        write(key, target, value)?;
        if let (Some(before), Target::Netns(ns)) = (host_before, target) {
            if read(key, &Target::Host)? != before {
                return Err(SysctlError::NotPerNetns {
                    key: key.into(),
                    netns: ns.clone(),
                });
            }
        }
        Ok(())
    }

    /// What would be put back, oldest first.
    pub fn pending(&self) -> &[Previous] {
        &self.changed
    }

    /// Writes every previous value back now; returns how many failed.
    pub fn restore(&mut self) -> usize {
        let mut failed = 0;
        while let Some(previous) = self.changed.pop() {
            let line = match write(&previous.key, &previous.target, &previous.value) {
                Ok(()) => format!(
                    "restored {} = {} ({})",
                    previous.key, previous.value, previous.target
                ),
                Err(err) => {
                    failed += 1;
                    format!("could not restore {}: {err}", previous.key)
                }
            };
            eprintln!("campaign: {line}");
            self.log.push(line);
        }
        failed
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        self.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_d_lines() {
        let text = "# c\n; c\nnet.core.rmem_max = 8388608\n-net.core.busy_read=50\nnet/ipv4/udp_mem = 1  2\t3\n";
        let s = parse_sysctl_d(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].key, "net.core.rmem_max");
        assert!(s[1].ignore_failure && !s[0].ignore_failure);
        assert_eq!(s[2].key, "net.ipv4.udp_mem");
        assert_eq!(s[2].value, "1 2 3");
        assert_eq!(parse_sysctl_d("a.b\n").unwrap_err().0, 1);
        assert_eq!(parse_sysctl_d("\nnet..x = 1\n").unwrap_err().0, 2);
        assert!(path_of("net/../x").is_err());
    }

    #[test]
    fn dry_run_targets() {
        assert_eq!(
            assumed_target("net.core.somaxconn", Some("n")),
            Target::Netns("n".into())
        );
        assert_eq!(assumed_target("net.core.rmem_max", Some("n")), Target::Host);
        assert_eq!(assumed_target("net.core.somaxconn", None), Target::Host);
    }
}
