//! The `process_*` families of the Prometheus client's process collector, which
//! node-cache's registry carries: CPU time, memory, file descriptors, start time and
//! network bytes, read from `/proc/self` at each scrape (control plane only). A
//! file that cannot be read leaves its families out of that scrape rather than
//! reporting a made-up number.

use super::metrics::{self as m, Metrics};

/// Adds every `process_*` family `/proc` can give now.
pub fn collect(out: &mut Metrics) {
    let ticks = clock_ticks_per_second();
    if let Some(stat) = read("/proc/self/stat").as_deref().and_then(Stat::parse) {
        // A counter in seconds, fractional: carried as a float sample.
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        out.add(&m::PROCESS_CPU, &[], m::Value::Gauge(cpu));
        out.gauge(&m::PROCESS_VIRTUAL_MEMORY, &[], stat.vsize as f64);
        out.gauge(
            &m::PROCESS_RESIDENT_MEMORY,
            &[],
            stat.rss_pages as f64 * page_size(),
        );
        if let Some(boot) = read("/proc/stat").as_deref().and_then(boot_time) {
            let start = boot + stat.starttime as f64 / ticks;
            out.gauge(&m::PROCESS_START_TIME, &[], start);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is among those listed.
        let open = dir.count().saturating_sub(1);
        out.gauge(&m::PROCESS_OPEN_FDS, &[], open as f64);
    }
    if let Some(limits) = read("/proc/self/limits") {
        if let Some(max) = soft_limit(&limits, "Max open files") {
            out.gauge(&m::PROCESS_MAX_FDS, &[], max);
        }
        if let Some(max) = soft_limit(&limits, "Max address space") {
            out.gauge(&m::PROCESS_VIRTUAL_MEMORY_MAX, &[], max);
        }
    }
    if let Some((received, sent)) = read("/proc/self/net/netstat").as_deref().and_then(octets) {
        out.counter(&m::PROCESS_NETWORK_RECEIVE, &[], received);
        out.counter(&m::PROCESS_NETWORK_TRANSMIT, &[], sent);
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn clock_ticks_per_second() -> f64 {
    sysconf(libc::_SC_CLK_TCK, 100.0)
}

fn page_size() -> f64 {
    sysconf(libc::_SC_PAGESIZE, 4096.0)
}

/// A constant of the system, or `fallback` where it has none.
fn sysconf(name: libc::c_int, fallback: f64) -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let value = unsafe { libc::sysconf(name) };
    if value > 0 {
        value as f64
    } else {
        fallback
    }
}

/// The fields of `/proc/self/stat` the collector uses (proc(5) numbering).
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    /// Fields after the command name, which is in parentheses and may hold spaces
    /// and parentheses itself: the last ')' ends it.
    fn parse(text: &str) -> Option<Stat> {
        let rest = text.get(text.rfind(')')? + 1..)?;
        // Field 3 (state) is the first after the name.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
}

/// The soft limit of a `/proc/self/limits` row; "unlimited" is reported as the
/// client library does, the largest 64-bit value.
fn soft_limit(text: &str, row: &str) -> Option<f64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(row))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX as f64),
        soft => soft.parse::<u64>().ok().map(|v| v as f64),
    }
}

/// `InOctets` and `OutOctets` of the `IpExt` rows of `/proc/self/net/netstat`
/// (the network namespace's IP bytes), as the client library reads them.
fn octets(text: &str) -> Option<(u64, u64)> {
    let mut rows = text.lines().filter_map(|l| l.strip_prefix("IpExt:"));
    let (names, values) = (rows.next()?, rows.next()?);
    let pairs: Vec<(&str, &str)> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .collect();
    let get = |name: &str| {
        let (_, value) = pairs.iter().find(|(n, _)| *n == name)?;
        value.parse::<u64>().ok()
    };
    Some((get("InOctets")?, get("OutOctets")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_name_holding_parentheses() {
        let text = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 \
                    1234 567890 321 18446744073709551615";
        let stat = Stat::parse(text).expect("parses");
        assert_eq!(
            stat,
            Stat {
                utime: 250,
                stime: 50,
                starttime: 1234,
                vsize: 567890,
                rss_pages: 321
            }
        );
        assert_eq!(Stat::parse("42 (x) S 1"), None);
    }

    #[test]
    fn parses_limits_and_netstat() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n\
                      Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(
            soft_limit(limits, "Max address space"),
            Some(u64::MAX as f64)
        );
        let netstat = "TcpExt: SyncookiesSent\nTcpExt: 0\n\
                       IpExt: InNoRoutes InOctets OutOctets\nIpExt: 0 105 207\n";
        assert_eq!(octets(netstat), Some((105, 207)));
        assert_eq!(octets("IpExt: InOctets\n"), None);
    }

    #[test]
    fn collects_from_this_process() {
        let mut out = Metrics::default();
        collect(&mut out);
        let text = out.render();
        for family in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
    }
}
