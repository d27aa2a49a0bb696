//! The I/O engine choice (`--io-engine`) where io_uring is blocked, as a container
//! runtime's default seccomp profile blocks it: the server runs under a real
//! seccomp filter that refuses the io_uring system calls (`testkit::seccomp`).
//! `auto` falls back to epoll, says so once, labels `nodelocaldns_engine_info`, and serves
//! UDP and TCP, hits and misses across two shards; an explicit `io_uring` fails
//! with an error that names seccomp, and never panics. The same for an
//! RLIMIT_MEMLOCK below glommio's minimum.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::Cache;
use crate::zones;

fn corefile(knot: &crate::harness::Knot) -> String {
    format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    cache 30\n    forward . {}\n    prometheus 127.0.0.1:$FREEPORT1\n}}\n",
        knot.addr()
    )
}

#[test]
fn auto_falls_back_to_epoll_where_seccomp_blocks_io_uring_and_serves() {
    let knot = zones::knot();
    let mut cache = Cache::launch_with(&corefile(&knot), 2, None, true);
    cache
        .wait_ready()
        .unwrap_or_else(|why| panic!("did not start on the fallback: {why}\n{}", cache.log()));
    let addr = cache.addr();
    // Misses then hits, over UDP and TCP; names spread over both shards' keys.
    for round in 0..2 {
        for i in 0..8 {
            let name = format!("host{i}.many.test.");
            let query = client::query(&name, RecordType::A);
            let udp = client::udp(addr, &query);
            assert_eq!(
                udp.response_code(),
                ResponseCode::NoError,
                "round {round} {name}: {}",
                client::describe(&udp)
            );
            let tcp = client::tcp(addr, &client::query("www.test.", RecordType::A));
            assert_eq!(
                tcp.response_code(),
                ResponseCode::NoError,
                "TCP: {}",
                client::describe(&tcp)
            );
        }
    }
    let metrics = cache.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nodelocaldns_engine_info{") && l.contains("engine=\"epoll\"")),
        "nodelocaldns_engine_info names the engine:\n{metrics}"
    );
    assert!(
        cache.metric_sum("coredns_cache_hits_total") >= 8.0,
        "{metrics}"
    );
    let log = cache.log();
    let fallbacks = log
        .matches("io_uring unavailable: using the epoll engine")
        .count();
    assert_eq!(fallbacks, 1, "one line says why:\n{log}");
    assert!(log.contains("seccomp"), "the line names seccomp:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn explicit_io_uring_where_seccomp_blocks_it_fails_naming_the_cause() {
    let knot = zones::knot();
    let mut cache = Cache::launch_with(&corefile(&knot), 2, Some("io_uring"), true);
    let status = cache
        .wait_exit(Duration::from_secs(10))
        .expect("exits instead of running without io_uring");
    let log = cache.log();
    assert!(
        !status.success(),
        "a failure exit status: {status:?}\n{log}"
    );
    assert!(
        log.contains("--io-engine=io_uring cannot run here") && log.contains("seccomp"),
        "the error names the cause:\n{log}"
    );
    assert!(!log.contains("panicked"), "never a panic:\n{log}");
}

/// The server on `shards` shards with `--io-engine=epoll`, ready.
fn started_on_epoll(knot: &crate::harness::Knot, shards: usize) -> Cache {
    let mut cache = Cache::launch_with(&corefile(knot), shards, Some("epoll"), false);
    cache
        .wait_ready()
        .unwrap_or_else(|why| panic!("{why}\n{}", cache.log()));
    cache
}

#[test]
fn explicit_epoll_runs_without_probing_io_uring() {
    let knot = zones::knot();
    let cache = started_on_epoll(&knot, 1);
    let answer = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert!(
        !cache.log().contains("io_uring unavailable"),
        "{}",
        cache.log()
    );
    assert!(cache.metrics().contains("engine=\"epoll\""));
}

/// On epoll, the listening UDP sockets are registered for readability alone: the
/// server sends its answers without waiting for room, and a registration for
/// writability would report every sent datagram's freed buffer as an event, so the
/// shard's next `epoll_wait` returned at once with nothing to do. Read from the
/// kernel: the epoll entries in `/proc/PID/fdinfo` of the listening sockets' fds,
/// found by their inodes in `/proc/net/udp`.
#[test]
fn epoll_waits_on_listening_udp_sockets_for_reading_only() {
    let knot = zones::knot();
    let cache = started_on_epoll(&knot, 2);
    // Answers sent first: a registration for writability would have fired by now.
    for i in 0..4 {
        let name = format!("host{i}.many.test.");
        let answer = client::udp(cache.addr(), &client::query(&name, RecordType::A));
        assert_eq!(answer.response_code(), ResponseCode::NoError);
    }
    let pid = cache.pid();
    let port = cache.addr().port();
    let inodes = udp_inodes_on_port(port);
    assert!(
        !inodes.is_empty(),
        "no UDP socket on port {port} in /proc/net/udp"
    );
    let fds = socket_fds(pid, &inodes);
    assert_eq!(fds.len(), 2, "one listening UDP socket per shard: {fds:?}");
    let entries = epoll_entries(pid);
    for fd in fds {
        // The runtime holds its epoll set through two fds (a clone of its registry),
        // so each entry is listed twice: one mask per socket is expected.
        let mut masks: Vec<u32> = entries
            .iter()
            .filter(|(t, _)| *t == fd)
            .map(|e| e.1)
            .collect();
        masks.sort_unstable();
        masks.dedup();
        assert_eq!(masks.len(), 1, "fd {fd}: one registration: {entries:?}");
        let mask = masks[0];
        assert!(
            mask & libc::EPOLLIN as u32 != 0,
            "fd {fd} waits for reading: {mask:#x}"
        );
        assert_eq!(
            mask & libc::EPOLLOUT as u32,
            0,
            "fd {fd} waits for writing too: {mask:#x}"
        );
    }
}

/// Inodes of the IPv4 UDP sockets bound to `port`.
fn udp_inodes_on_port(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            local.ends_with(&want).then(|| cols.get(9)?.parse().ok())?
        })
        .collect()
}

/// The fds of `pid` that are sockets with one of `inodes`.
fn socket_fds(pid: u32, inodes: &[u64]) -> Vec<u32> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<u32> = std::fs::read_dir(&dir)
        .expect("fd dir")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let inode: u64 = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            inodes
                .contains(&inode)
                .then(|| entry.file_name().to_str()?.parse().ok())?
        })
        .collect();
    fds.sort_unstable();
    fds
}

/// Every epoll entry of `pid`: (watched fd, event mask), from `tfd: N events: X`
/// lines of its epoll fds' fdinfo.
fn epoll_entries(pid: u32) -> Vec<(u32, u32)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fdinfo dir").flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines().filter(|l| l.starts_with("tfd:")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let tfd = words.get(1).and_then(|w| w.parse().ok());
            let events = words
                .iter()
                .position(|w| *w == "events:")
                .and_then(|i| words.get(i + 1))
                .and_then(|w| u32::from_str_radix(w, 16).ok());
            if let (Some(tfd), Some(events)) = (tfd, events) {
                entries.push((tfd, events));
            }
        }
    }
    entries
}

/// glommio refuses to start below 512 KiB of RLIMIT_MEMLOCK: an explicit io_uring
/// says so before any shard starts (no panic), and auto takes epoll and serves.
#[test]
fn a_memlock_limit_too_small_for_io_uring_is_named_or_falls_back() {
    let knot = zones::knot();
    let limited = |engine| Cache::launch_memlocked(&corefile(&knot), 1, engine, 65536);
    let mut explicit = limited(Some("io_uring"));
    let status = explicit
        .wait_exit(Duration::from_secs(10))
        .expect("exits instead of starting io_uring");
    let log = explicit.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("RLIMIT_MEMLOCK (65536 bytes)") && !log.contains("panicked"),
        "names the limit:\n{log}"
    );
    let mut auto = limited(None);
    auto.wait_ready()
        .unwrap_or_else(|why| panic!("auto did not start on epoll: {why}\n{}", auto.log()));
    let answer = client::udp(auto.addr(), &client::query("www.test.", RecordType::A));
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert!(auto
        .log()
        .contains("io_uring unavailable: using the epoll engine"));
}
