//! Scalar values of the Corefile: Go-style durations, byte sizes, listen and upstream
//! addresses, domain names. Each parser returns the reason as a `String`; the caller
//! wraps it with file:line and the token.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::limits::{LABEL_BYTES_MAX, NAME_BYTES_MAX};

use super::types::Zone;

/// Longest duration accepted anywhere (Go's `time.Duration` tops out at ~292 years).
const DURATION_NANOS_MAX: u128 = i64::MAX as u128;

/// Go `time.ParseDuration` without negative values: `300ms`, `1.5h`, `1h30m`, `0`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit (use ns, us, ms, s, m or h, e.g. 5s)".into()),
            other => {
                return Err(format!(
                    "unknown unit \"{other}\" (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total = total
            .checked_add(scaled(num, unit_nanos)?)
            .filter(|t| *t <= DURATION_NANOS_MAX)
            .ok_or("duration too large")?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "duration too large")?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| "duration too large")?;
    Ok(Duration::new(secs, nanos))
}

/// `num` (digits with an optional fraction) times `unit` nanoseconds.
fn scaled(num: &str, unit: u128) -> Result<u128, String> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err("expected a number before the unit".into());
    }
    let mut value: u128 = 0;
    for d in int.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(d - b'0')))
            .filter(|v| *v <= DURATION_NANOS_MAX)
            .ok_or("duration too large")?;
    }
    value = value.checked_mul(unit).ok_or("duration too large")?;
    let mut scale = unit;
    for d in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        value = value
            .checked_add(u128::from(d - b'0') * scale)
            .ok_or("duration too large")?;
    }
    Ok(value)
}

/// Largest `max_bytes`: 1 TiB, far above any node, small enough for any arithmetic.
pub(crate) const SIZE_BYTES_MAX: u64 = 1 << 40;

/// A byte size: plain bytes or with a suffix. IEC suffixes (`Ki`, `KiB`, `Mi`, `MiB`,
/// `Gi`, `GiB`) are powers of 1024; SI ones (`k`, `K`, `KB`, `M`, `MB`, `G`, `GB`) powers
/// of 1000, as in Kubernetes quantities. `B` alone means bytes.
pub(crate) fn parse_size_bytes(s: &str) -> Result<usize, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits);
    if num.is_empty() {
        return Err("expected a number of bytes, e.g. 64MiB".into());
    }
    let multiplier: u64 = match suffix {
        "" | "B" => 1,
        "k" | "K" | "KB" | "kB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size suffix \"{other}\" (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let n: u64 = num.parse().map_err(|_| "number too large")?;
    let bytes = n
        .checked_mul(multiplier)
        .filter(|b| *b <= SIZE_BYTES_MAX)
        .ok_or_else(|| format!("larger than the maximum of {SIZE_BYTES_MAX} bytes"))?;
    if bytes == 0 {
        return Err("must be greater than zero".into());
    }
    usize::try_from(bytes).map_err(|_| "too large for this platform".into())
}

/// A whole number within `min..=max`.
pub(crate) fn parse_int<T>(s: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let digits = s.strip_prefix('-').unwrap_or(s);
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let parsed: Option<T> = s.parse().ok();
    let n = match parsed {
        Some(n) => n,
        // Digits that do not fit the type are a range error, not a syntax one.
        None if numeric => return Err(format!("out of range {min}..={max}")),
        None => return Err(format!("expected a whole number in {min}..={max}")),
    };
    if n < min || n > max {
        return Err(format!("out of range {min}..={max}"));
    }
    Ok(n)
}

/// A listen address: `:PORT` (all IPv4 addresses), `IP:PORT` or `[IPv6]:PORT`.
pub(crate) fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port = parse_port(port)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| "expected :PORT, IP:PORT or [IPv6]:PORT (host names are not resolved)".into())
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("invalid port \"{s}\" (0..=65535)"))
}

/// An upstream: `IP`, `IP:PORT`, `[IPv6]`, `[IPv6]:PORT`; the port defaults to 53.
/// `None` when it is not an address at all (the caller then tries it as a file).
pub(crate) fn parse_upstream_addr(s: &str) -> Option<SocketAddr> {
    parse_addr_with_port(s, 53)
}

/// As [`parse_upstream_addr`], with `port` when none is given (853 for `tls://`).
pub(crate) fn parse_addr_with_port(s: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| SocketAddr::new(IpAddr::V6(ip), port))
}

/// A domain name as a zone: lower-cased, made fully qualified, labels checked.
/// `""` and `"."` are the root.
pub(crate) fn parse_zone_name(s: &str) -> Result<Zone, String> {
    let lower = s.to_ascii_lowercase();
    let trimmed = lower.strip_suffix('.').unwrap_or(&lower);
    if trimmed.is_empty() {
        return Ok(Zone { name: ".".into() });
    }
    if trimmed.contains('/') {
        return Err(
            "CIDR notation is not supported; write the reverse zone, e.g. 10.in-addr.arpa".into(),
        );
    }
    // Wire length: one length octet per label plus the root octet.
    let mut wire_len = 1usize;
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > LABEL_BYTES_MAX {
            return Err(format!("label longer than {LABEL_BYTES_MAX} bytes"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
        {
            return Err(format!("invalid character {bad:?} in name"));
        }
        wire_len += label.len() + 1;
    }
    if wire_len > NAME_BYTES_MAX {
        return Err(format!("name longer than {NAME_BYTES_MAX} bytes"));
    }
    Ok(Zone {
        name: format!("{trimmed}."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("5s", ms(5_000)),
            ("+5s", ms(5_000)),
            ("500ms", ms(500)),
            ("1m", ms(60_000)),
            ("1h30m", ms(5_400_000)),
            ("1.5h", ms(5_400_000)),
            (".5s", ms(500)),
            ("1.s", ms(1_000)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input), Ok(*want), "{input}");
        }
        let bad = [
            "",
            "5",
            "-1s",
            "s",
            "5x",
            "1..5s",
            ".s",
            "1h 2m",
            "2562048h",
            "99999999999999999999999999999999999999999s",
        ];
        for input in bad {
            assert!(parse_duration(input).is_err(), "{input} parsed");
        }
    }

    #[test]
    fn sizes() {
        let ok: &[(&str, usize)] = &[
            ("1", 1),
            ("100B", 100),
            ("64MiB", 64 << 20),
            ("64Mi", 64 << 20),
            ("64M", 64_000_000),
            ("64MB", 64_000_000),
            ("2KiB", 2048),
            ("2k", 2000),
            ("1GiB", 1 << 30),
            ("1024GiB", 1 << 40),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size_bytes(input), Ok(*want), "{input}");
        }
        for input in [
            "",
            "0",
            "MiB",
            "-1",
            "1.5MiB",
            "1TiB",
            "1025GiB",
            "99999999999999999999999",
            "5 MiB",
            "5mib",
        ] {
            assert!(parse_size_bytes(input).is_err(), "{input} parsed");
        }
    }

    #[test]
    fn addresses() {
        let listen: &[(&str, &str)] = &[
            (":8080", "0.0.0.0:8080"),
            ("169.254.20.10:8080", "169.254.20.10:8080"),
            ("[::1]:9253", "[::1]:9253"),
        ];
        for (input, want) in listen {
            assert_eq!(
                parse_listen_addr(input).map(|a| a.to_string()).as_deref(),
                Ok(*want)
            );
        }
        for input in ["8080", "localhost:8080", ":", ":99999", "1.2.3.4", "::1"] {
            assert!(parse_listen_addr(input).is_err(), "{input} parsed");
        }
        let upstream: &[(&str, &str)] = &[
            ("10.0.0.10", "10.0.0.10:53"),
            ("10.0.0.10:5353", "10.0.0.10:5353"),
            ("::1", "[::1]:53"),
            ("[::1]", "[::1]:53"),
            ("[2001:db8::1]:5353", "[2001:db8::1]:5353"),
        ];
        for (input, want) in upstream {
            assert_eq!(
                parse_upstream_addr(input).map(|a| a.to_string()).as_deref(),
                Some(*want)
            );
        }
        for input in [
            "",
            "dns.google",
            "1.2.3.4:",
            "1.2.3.4:x",
            "/etc/resolv.conf",
            "[::1",
        ] {
            assert_eq!(parse_upstream_addr(input), None, "{input}");
        }
    }

    #[test]
    fn zone_names() {
        let ok: &[(&str, &str)] = &[
            (".", "."),
            ("", "."),
            ("Cluster.Local", "cluster.local."),
            ("cluster.local.", "cluster.local."),
            ("in-addr.arpa", "in-addr.arpa."),
            ("_tcp.example.org", "_tcp.example.org."),
        ];
        for (input, want) in ok {
            assert_eq!(parse_zone_name(input).map(|z| z.name).as_deref(), Ok(*want));
        }
        let long_label = "a".repeat(64);
        let long_name = vec!["a".repeat(63); 4].join(".");
        let max_name = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "a".repeat(61));
        assert!(parse_zone_name(&max_name).is_ok(), "253 characters fit");
        for input in [
            "a..b",
            ".a",
            "..",
            "a b",
            "10.0.0.0/8",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(parse_zone_name(input).is_err(), "{input} parsed");
        }
    }
}
