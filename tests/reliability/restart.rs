//! Zero-loss restart and reload (issue item 4): `dnsload` at 20k QPS while the server
//! is reloaded twice and replaced three times by a new process started beside the old
//! one (SO_REUSEPORT hand-over: the old one takes its UDP sockets out of the group,
//! drains them and exits). No query may be lost or answered SERVFAIL.
//!
//! Beside the cached names, a second load asks only never-seen names (misses, most
//! routed to the shard that owns the key): so every stop has misses in flight,
//! some waiting on another shard, which the drain must finish before closing.

use std::fs;
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{counter, dnsload, free_port, query, tcp_exchange, Cache, Knot};

fn corefile(knot: &Knot, ttl: u32) -> String {
    format!(
        ".:$PORT {{\n bind 127.0.0.1\n errors\n cache {ttl}\n forward . {}\n}}\n",
        knot.addr
    )
}

/// 20k QPS as the issue asks; an unoptimised (debug) server on this 2-core machine
/// cannot take that while the load generator and a restart share the cores, so the
/// debug suite runs at 5k (the release figure is in the report of this change).
fn rate() -> u64 {
    std::env::var("RELIAB_RESTART_QPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            5_000
        } else {
            20_000
        })
}

/// For a failure message: the seconds of the load with losses or a p99 over 500 ms,
/// and each process's warnings and errors (the `errors` directive logs SERVFAILs).
fn diagnose<'a>(
    reports: &[(&str, serde_json::Value, u64)],
    processes: impl Iterator<Item = &'a Cache>,
    upstream_port: u16,
) -> String {
    let mut text =
        String::from("slow or lossy seconds (load, second, sent, answered, lost, p99 ms):\n");
    for (what, report, _) in reports {
        for s in report["series"].as_array().into_iter().flatten() {
            let p99_ms = s["p99_us"].as_f64().unwrap_or(0.0) / 1000.0;
            if s["lost"].as_u64().unwrap_or(0) > 0 || p99_ms > 500.0 {
                text += &format!(
                    "  {what} {} {} {} {} {p99_ms:.0}\n",
                    s["second"], s["sent"], s["answered"], s["lost"]
                );
            }
        }
    }
    let table = fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let hex = format!(":{upstream_port:04X}");
    let upstream_drops: u64 = table
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&hex))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    text += &format!("upstream (knotd) UDP socket drops: {upstream_drops}\n");
    for (index, process) in processes.enumerate() {
        let log = process.log();
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["WARN", "ERROR", "SERVFAIL", "reuseport group"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        text += &format!("process {index}: {} notable log lines\n", notable.len());
        for line in notable.iter().take(8) {
            text += &format!("  {line}\n");
        }
    }
    text
}

/// DNS over TCP during the restarts: one query per new connection, sequentially, for
/// `secs`. A connection reset while the old process closes its listener would be
/// retried once on a new connection (as RFC 7766 clients do), but the hand-over
/// resets none (queued connections migrate, accepted ones are served: the test
/// asserts no query needed the retry); every query must be answered NOERROR.
/// Returns the queries and how many needed the second connection.
fn tcp_clients(server: SocketAddr, secs: u64) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let (mut queries, mut retried) = (0u64, 0u64);
        while started.elapsed() < Duration::from_secs(secs) {
            let q = query(
                &format!("w{}.example.test.", queries % 1000),
                RecordType::A,
                false,
            );
            let wait = Duration::from_secs(3);
            let reply = tcp_exchange(server, &q, wait).or_else(|| {
                retried += 1;
                tcp_exchange(server, &q, wait)
            });
            let reply = reply.unwrap_or_else(|| panic!("TCP query {queries} unanswered twice"));
            assert_eq!(
                reply.response_code(),
                ResponseCode::NoError,
                "TCP query {queries}"
            );
            queries += 1;
            sleep(Duration::from_millis(5));
        }
        (queries, retried)
    })
}

/// Extra server flags from `RELIAB_RESTART_ARGS` (space separated), for experiments.
fn extra_args() -> Vec<String> {
    std::env::var("RELIAB_RESTART_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn zero_lost_queries_across_three_restarts_and_two_reloads() {
    restarts_and_reloads(&[]);
}

/// The same hand-overs with every process on the epoll engine (where io_uring is
/// blocked): SO_REUSEPORT hand-over, drain and TCP migration do not depend on it.
#[test]
fn zero_lost_queries_across_three_restarts_and_two_reloads_on_epoll() {
    restarts_and_reloads(&["--io-engine=epoll"]);
}

fn restarts_and_reloads(engine_args: &[&str]) {
    let extra = extra_args();
    let args: Vec<&str> = engine_args
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    let knot = Knot::start();
    let port = free_port();
    let mut current = Cache::start(&corefile(&knot, 30), port, &args);
    let load_secs = 16;
    let qps = rate();
    let load = |names: &[&str], qps: u64, clients: u32| {
        let mut args: Vec<String> = ["-s", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .chain(names)
            .map(|a| a.to_string())
            .collect();
        for (flag, value) in [
            ("--rate", qps.to_string()),
            ("-c", clients.to_string()),
            ("-l", load_secs.to_string()),
            ("-t", "3".into()),
        ] {
            args.extend([flag.to_string(), value]);
        }
        std::thread::spawn(move || dnsload(&args))
    };
    let hits = load(&["--names", "w{0..999}.example.test"], qps, 16);
    let miss_qps = (qps / 20).max(100);
    let misses = load(
        &[
            "--random-names",
            "200000",
            "--random-suffix",
            "f.test",
            "--seed",
            "7",
        ],
        miss_qps,
        4,
    );
    let tcp = tcp_clients(SocketAddr::from(([127, 0, 0, 1], port)), load_secs);
    let started = Instant::now();
    let at = |secs: f64| {
        let wait = Duration::from_secs_f64(secs).saturating_sub(started.elapsed());
        sleep(wait);
    };
    let mut stops = Vec::new();
    let mut olds = Vec::new();
    // reload, restart, restart, reload, restart
    for (step, when) in [(0, 2.0), (1, 4.5), (2, 7.5), (3, 10.0), (4, 12.5)] {
        at(when);
        if step == 0 || step == 3 {
            let text = corefile(&knot, 31 + step).replace("$PORT", &port.to_string());
            fs::write(current.dir.path().join("Corefile"), text).unwrap();
            current.signal(libc::SIGUSR1);
            continue;
        }
        let next = Cache::start(&corefile(&knot, 30), port, &args);
        let mut old = std::mem::replace(&mut current, next);
        stops.push(old.stop(Duration::from_secs(5)));
        let log = old.log();
        if step == 1 {
            assert!(log.contains("reloaded"), "first reload not applied: {log}");
        }
        olds.push(old);
    }
    let reports = [
        ("hits", hits.join().unwrap(), qps),
        ("misses", misses.join().unwrap(), miss_qps),
    ];
    let diagnosis = diagnose(&reports, olds.iter().chain([&current]), knot.addr.port());
    for (what, report, rate) in reports {
        let rcodes = &report["rcodes"];
        let (sent, answered, lost) = (
            counter(&report, "sent"),
            counter(&report, "answered"),
            counter(&report, "lost"),
        );
        eprintln!(
            "restart ({what}, {rate} QPS): sent {sent} answered {answered} lost {lost} rcodes {rcodes} p99 {} us, stops {stops:?}",
            report["latency"]["p99_us"]
        );
        assert!(
            sent >= rate * (load_secs - 1),
            "{what}: load too low: {sent}"
        );
        assert_eq!(lost, 0, "{what}: queries lost across restarts\n{diagnosis}");
        assert_eq!(counter(&report, "mismatched"), 0, "{what}");
        assert_eq!(
            rcodes["SERVFAIL"].as_u64().unwrap_or(0),
            0,
            "{what}: SERVFAIL: {rcodes}\n{diagnosis}"
        );
        assert_eq!(answered, sent, "{what}");
    }
    let (tcp_queries, tcp_retried) = tcp.join().unwrap();
    eprintln!("restart (tcp): {tcp_queries} queries, {tcp_retried} needed a second connection");
    assert!(tcp_queries > 100, "TCP client too slow: {tcp_queries}");
    assert_eq!(
        tcp_retried, 0,
        "TCP connections reset or left unanswered by a hand-over\n{diagnosis}"
    );
    assert!(current.log().contains("listening"));
    // After a flood of queries, with none arriving any more, SIGTERM still ends the
    // last process promptly (a shard parked in a blocking receive would hang here).
    let last = current.stop(Duration::from_secs(5));
    eprintln!("restart: the last process stopped in {last:?} after the load");
}
