//! End-to-end tests of the `dnsload` binary: against a real knotd on loopback and
//! against an in-process UDP server whose delay, stall, drops and wrong IDs are
//! known, so the measured numbers can be checked against the truth.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{dnsload, read_json, Behaviour, Knot, TestServer};

/// Upper bound on any single dnsload run in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn ms(v: &Value) -> f64 {
    v.as_f64().expect("number") / 1000.0
}

fn count(json: &Value, field: &str) -> u64 {
    json["counters"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("counters.{field} missing"))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "dnsload failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Runs dnsload with `args` and `--json`, asserts it succeeded, returns its report.
fn report(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut args = args.to_vec();
    args.extend(["--json", json.to_str().unwrap()]);
    assert_ok(&dnsload(&args, RUN_LIMIT));
    read_json(&json)
}

#[test]
fn knot_udp_closed_loop_answers_everything_with_the_right_rcodes() {
    let knot = Knot::start();
    let dir = tempfile::tempdir().unwrap();
    let qfile = dir.path().join("queries.txt");
    std::fs::write(&qfile, "; comment\n\nwww.example. A\nwww.example. AAAA\n# another\nnope.example. A\nsvc7.example A\n").unwrap();
    let json = dir.path().join("out.json");
    let port = knot.port.to_string();
    let out = dnsload(
        &[
            "-s",
            "127.0.0.1",
            "-p",
            &port,
            "-d",
            qfile.to_str().unwrap(),
            "-n",
            "200",
            "-q",
            "20",
            "-T",
            "1",
            "--no-pin",
            "--json",
            json.to_str().unwrap(),
        ],
        RUN_LIMIT,
    );
    assert_ok(&out);
    let j = read_json(&json);
    assert_eq!(count(&j, "sent"), 800);
    assert_eq!(count(&j, "answered"), 800);
    assert_eq!(count(&j, "lost"), 0);
    assert_eq!(count(&j, "mismatched"), 0);
    assert_eq!(j["rcodes"]["NOERROR"], 600);
    assert_eq!(j["rcodes"]["NXDOMAIN"], 200);
    assert!(
        stdout(&out).contains("NXDOMAIN"),
        "summary shows the rcode table"
    );
}

#[test]
fn knot_tcp_pipelined_and_ipv6() {
    let knot = Knot::start();
    let dir = tempfile::tempdir().unwrap();
    let port = knot.port.to_string();
    for (server, mode) in [("127.0.0.1", "tcp"), ("::1", "udp"), ("::1", "tcp")] {
        let json = dir.path().join(format!("{mode}-{}.json", server.len()));
        let out = dnsload(
            &[
                "-s",
                server,
                "-p",
                &port,
                "-m",
                mode,
                "--names",
                "svc{0..99}.example",
                "-n",
                "5",
                "-c",
                "2",
                "-q",
                "50",
                "--no-pin",
                "--json",
                json.to_str().unwrap(),
            ],
            RUN_LIMIT,
        );
        assert_ok(&out);
        let j = read_json(&json);
        assert_eq!(count(&j, "answered"), 500, "{server} {mode}");
        assert_eq!(count(&j, "lost"), 0, "{server} {mode}");
        assert_eq!(j["rcodes"]["NOERROR"], 500, "{server} {mode}");
    }
}

#[test]
fn knot_ramp_reports_steps_and_a_knee() {
    let knot = Knot::start();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ramp.json");
    let port = knot.port.to_string();
    let out = dnsload(
        &[
            "-p",
            &port,
            "--names",
            "svc{0..99}.example",
            "--ramp",
            "--ramp-start",
            "500",
            "--ramp-step",
            "500",
            "--ramp-step-secs",
            "1",
            "--ramp-max",
            "1500",
            "--ramp-max-p99",
            "50",
            "-t",
            "1",
            "--no-pin",
            "--json",
            json.to_str().unwrap(),
        ],
        RUN_LIMIT,
    );
    assert_ok(&out);
    let j = read_json(&json);
    let steps = j["ramp"]["steps"].as_array().expect("ramp steps");
    assert_eq!(steps.len(), 3, "{}", stdout(&out));
    assert_eq!(j["ramp"]["knee_qps"], 1500.0);
    assert!(stdout(&out).contains("knee: 1500 qps"));
}

#[test]
fn measured_latency_matches_injected_delay() {
    // Tolerance: every answer is held 20 ms, so nothing may be faster. What the
    // machine adds on top (scheduling of the test server thread and of dnsload on a
    // shared 2-core box running other tests in parallel) is allowed up to +20 ms at
    // p50 and +100 ms at p99; a generator that measured from the wrong moment or lost
    // the delay would be off by far more (or below 20 ms).
    let server = TestServer::start(Behaviour {
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let j = report(&[
        "-p",
        &server.port(),
        "--names",
        "d{0..999}.test",
        "-l",
        "2",
        "-q",
        "10",
        "--no-pin",
    ]);
    let lat = &j["latency"];
    assert!(ms(&lat["min_us"]) >= 20.0, "min {}", lat["min_us"]);
    assert!(
        (20.0..40.0).contains(&ms(&lat["p50_us"])),
        "p50 {}",
        lat["p50_us"]
    );
    assert!(
        (20.0..120.0).contains(&ms(&lat["p99_us"])),
        "p99 {}",
        lat["p99_us"]
    );
    // Closed loop with 10 outstanding and 20 ms each: about 500 answers per second.
    let qps = j["qps"].as_f64().unwrap();
    assert!((150.0..520.0).contains(&qps), "qps {qps}");
}

#[test]
fn open_loop_shows_a_stall_in_the_tail() {
    // The server stops answering once for 200 ms. In open loop the schedule keeps
    // going, so the ~200 queries meant to leave during the stall all wait and the
    // tail (p99.9, max) shows it; the send rate does not drop.
    let server = TestServer::start(Behaviour {
        stall: Some((Duration::from_millis(500), Duration::from_millis(200))),
        ..Default::default()
    });
    let j = report(&[
        "-p",
        &server.port(),
        "--names",
        "s{0..999}.test",
        "--rate",
        "1000",
        "-l",
        "2",
        "--no-pin",
    ]);
    let lat = &j["latency"];
    assert!(ms(&lat["max_us"]) >= 180.0, "max {}", lat["max_us"]);
    assert!(ms(&lat["p99_9_us"]) >= 150.0, "p99.9 {}", lat["p99_9_us"]);
    assert!(
        ms(&lat["p99_us"]) >= 100.0,
        "p99 {} (10% of queries hit the stall)",
        lat["p99_us"]
    );
    assert!(ms(&lat["p50_us"]) < 20.0, "p50 {}", lat["p50_us"]);
    let sent = count(&j, "sent");
    assert!(
        (1900..=2100).contains(&sent),
        "sent {sent}: the rate must not drop during the stall"
    );
    assert_eq!(count(&j, "lost"), 0);
}

#[test]
fn dropped_answers_are_counted_as_lost() {
    let server = TestServer::start(Behaviour {
        drop_every: Some(10),
        ..Default::default()
    });
    let j = report(&[
        "-p",
        &server.port(),
        "--names",
        "x{0..999}.test",
        "-n",
        "1",
        "-q",
        "20",
        "-t",
        "0.5",
        "--no-pin",
    ]);
    let dropped = server
        .counts
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 100);
    assert_eq!(count(&j, "sent"), 1000);
    assert_eq!(count(&j, "lost"), dropped);
    assert_eq!(count(&j, "answered"), 1000 - dropped);
}

#[test]
fn wrong_id_answers_are_mismatches() {
    let server = TestServer::start(Behaviour {
        wrong_id_every: Some(7),
        ..Default::default()
    });
    let j = report(&[
        "-p",
        &server.port(),
        "--names",
        "w{0..699}.test",
        "-n",
        "1",
        "-q",
        "10",
        "-t",
        "0.5",
        "--no-pin",
    ]);
    let wrong = server
        .counts
        .wrong_ids
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(wrong, 100);
    assert_eq!(count(&j, "mismatched"), wrong);
    assert_eq!(count(&j, "lost"), wrong, "the right answer never came");
    assert_eq!(count(&j, "answered"), 700 - wrong);
}

#[test]
fn json_csv_and_plot_carry_everything() {
    let server = TestServer::start(Behaviour::default());
    let dir = tempfile::tempdir().unwrap();
    let (json, csv, svg) = (
        dir.path().join("r.json"),
        dir.path().join("r.csv"),
        dir.path().join("r.svg"),
    );
    let out = dnsload(
        &[
            "-p",
            &server.port(),
            "--names",
            "j{0..99}.test",
            "--qtype",
            "A=1,AAAA=1",
            "--rate",
            "300",
            "--spacing",
            "poisson",
            "-l",
            "2",
            "--no-pin",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        RUN_LIMIT,
    );
    assert_ok(&out);
    let j = read_json(&json);
    for key in [
        "tool",
        "version",
        "config",
        "query_count",
        "started_unix_secs",
        "duration_secs",
        "interrupted",
        "latency_origin",
        "counters",
        "qps",
        "loss_pct",
        "rcodes",
        "latency",
        "histogram",
        "series",
        "ramp",
    ] {
        assert!(j.get(key).is_some(), "JSON lacks {key}");
    }
    for key in [
        "sent",
        "answered",
        "lost",
        "mismatched",
        "truncated",
        "send_errors",
        "rcodes",
    ] {
        assert!(j["counters"].get(key).is_some(), "JSON counters lack {key}");
    }
    for key in [
        "min_us",
        "mean_us",
        "p50_us",
        "p90_us",
        "p99_us",
        "p99_9_us",
        "p99_99_us",
        "max_us",
    ] {
        assert!(j["latency"][key].is_number(), "JSON latency lacks {key}");
    }
    assert_eq!(j["latency_origin"], "intended send time");
    assert_eq!(j["config"]["load"]["kind"], "open");
    let hist = j["histogram"].as_array().unwrap();
    assert!(!hist.is_empty() && hist[0]["value_us"].is_number() && hist[0]["count"].is_u64());
    let total: u64 = hist.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(total, count(&j, "answered"));
    let series = j["series"].as_array().unwrap();
    assert!(series.len() >= 2);
    for key in [
        "second",
        "sent",
        "answered",
        "lost",
        "mismatched",
        "truncated",
        "qps",
        "p50_us",
        "p90_us",
        "p99_us",
        "p99_9_us",
        "max_us",
    ] {
        assert!(series[0].get(key).is_some(), "JSON series lacks {key}");
    }
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.starts_with("second,sent,answered,lost"));
    assert_eq!(csv_text.lines().count(), series.len() + 1);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("queries per second"));
    assert!(stderr(&out).contains("qps"), "progress lines on stderr");
}

#[test]
fn ctrl_c_prints_what_it_has() {
    let server = TestServer::start(Behaviour::default());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dnsload"))
        .args([
            "-p",
            &server.port(),
            "--names",
            "c{0..99}.test",
            "-l",
            "60",
            "-Q",
            "500",
            "--no-pin",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = support::wait_bounded(child, Duration::from_secs(5));
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("Interrupted:          yes"), "{text}");
    assert!(text.contains("Queries answered:"), "{text}");
}

/// Runs dnsload with `args` and asserts it refused them as bad input: exit code 2,
/// `message` on stderr, no panic.
fn assert_bad_input(args: &[&str], message: &str) {
    let out = dnsload(args, Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{args:?}");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_type = dir.path().join("bad.txt");
    std::fs::write(&bad_type, "ok.example A\nbad.example BOGUS\n").unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["-d", "/nonexistent/queries.txt"],
            "/nonexistent/queries.txt",
        ),
        (
            &["-d", bad_type.to_str().unwrap()],
            "bad.txt:2: unknown query type \"BOGUS\"",
        ),
        (&["--names", "svc{9..1}.test"], "--names"),
        (&["--names", "a.test", "--qtype", "NOPE"], "unknown type"),
        (
            &["-s", "not-an-address", "--names", "a.test"],
            "not an IP address",
        ),
        (
            &["--names", "a.test", "--fail-if", "p99>2parsecs"],
            "threshold \"2parsecs\" is not a number with unit us, ms or s",
        ),
        (
            &["--names", "a.test", "--fail-if", "p98>2ms"],
            "unknown figure \"p98\"",
        ),
    ];
    for (args, message) in cases {
        assert_bad_input(args, message);
    }
    let out = dnsload(&["--bogus-flag"], Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn closed_port_ends_with_every_query_accounted_for() {
    // Nothing listens there: the kernel answers with ICMP port unreachable, which
    // shows up as refused sends. The run must still end by itself at -n.
    let port = support::free_port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("closed.json");
    let out = dnsload(
        &[
            "-p",
            &port,
            "--names",
            "z{0..99}.test",
            "-n",
            "1",
            "-t",
            "0.3",
            "--no-pin",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    assert_ok(&out);
    let j = read_json(&json);
    assert_eq!(count(&j, "answered"), 0);
    assert_eq!(count(&j, "lost") + count(&j, "send_errors"), 100);
    assert_eq!(count(&j, "sent"), count(&j, "lost"));
}

#[test]
fn fail_if_exits_3_with_the_conditions_that_held() {
    // Against knotd every query is answered: loss>0% cannot hold, answered<1 cannot
    // hold, and p99>0us and qps<1e9 must (any answer takes some time).
    let knot = Knot::start();
    let port = knot.port.to_string();
    let base = [
        "-p",
        &port,
        "--names",
        "svc{0..9}.example",
        "-n",
        "20",
        "--no-pin",
    ];
    let mut args = base.to_vec();
    args.extend(["--fail-if", "loss>0%,answered<1"]);
    let out = dnsload(&args, RUN_LIMIT);
    assert_ok(&out);
    let mut args = base.to_vec();
    args.extend(["--fail-if", "p99>0us, loss>0%, qps<1000000000"]);
    let out = dnsload(&args, RUN_LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--fail-if: p99>0.000ms (it was "), "{err}");
    assert!(
        err.contains("--fail-if: qps<1000000000.0 (it was "),
        "{err}"
    );
    assert!(!err.contains("loss>"), "{err}");
    assert!(
        stdout(&out).contains("Queries answered:     200"),
        "{}",
        stdout(&out)
    );
}

/// The latency histogram a report carries, decoded here with the hdrhistogram
/// crate itself (not dnsload's code), so the merge is checked independently.
fn histogram_of(report: &Value) -> hdrhistogram::Histogram<u64> {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    let text = report["histograms"]["latency_ns_v2_base64"]
        .as_str()
        .expect("histograms.latency_ns_v2_base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("HdrHistogram V2")
}

/// A `--start-at` value one second ahead (Unix seconds, ms precision).
fn a_second_from_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    format!("{:.3}", now + 1.0)
}

#[test]
fn runs_in_parallel_merge_exactly() {
    // Three dnsload processes with one shared --start-at load knotd at the same time
    // (different rates, so their latency shapes differ); `dnsload merge` must give
    // the percentiles of all their samples together: the same as adding their full
    // histograms here and reading the percentiles off the sum.
    let knot = Knot::start();
    let dir = tempfile::tempdir().unwrap();
    let port = knot.port.to_string();
    let start = a_second_from_now();
    let children: Vec<(std::path::PathBuf, support::KillOnDrop)> = ["300", "600", "900"]
        .iter()
        .enumerate()
        .map(|(i, rate)| {
            let json = dir.path().join(format!("run{i}.json"));
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_dnsload"))
                .args(["-p", &port, "--names", "svc{0..99}.example", "--rate", rate])
                .args([
                    "-l",
                    "2",
                    "-c",
                    "8",
                    "--no-pin",
                    "--quiet",
                    "--start-at",
                    &start,
                ])
                .arg("--json")
                .arg(&json)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn dnsload");
            (json, support::KillOnDrop(Some(child)))
        })
        .collect();
    let mut runs = Vec::new();
    for (json, mut guard) in children {
        let child = guard.0.take().expect("child");
        assert_ok(&support::wait_bounded(child, RUN_LIMIT));
        runs.push((json.clone(), read_json(&json)));
    }
    for (_, r) in &runs {
        let started = r["started_unix_secs"].as_f64().unwrap();
        let wanted: f64 = start.parse().unwrap();
        assert!(
            (wanted..wanted + 0.5).contains(&started),
            "started at {started}, --start-at {wanted}"
        );
    }
    let merged_path = dir.path().join("merged.json");
    let mut args = vec!["merge".to_string()];
    args.extend(runs.iter().map(|(p, _)| p.to_str().unwrap().to_string()));
    args.extend(["--json".into(), merged_path.to_str().unwrap().into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dnsload(&args, RUN_LIMIT);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("Statistics (merged)"),
        "{}",
        stdout(&out)
    );
    let merged = read_json(&merged_path);

    let mut all = histogram_of(&runs[0].1);
    for (_, r) in &runs[1..] {
        all.add(histogram_of(r)).unwrap();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    for (field, q) in [
        ("p50_us", 0.5),
        ("p90_us", 0.9),
        ("p99_us", 0.99),
        ("p99_9_us", 0.999),
    ] {
        assert_eq!(
            merged["latency"][field].as_f64().unwrap(),
            us(all.value_at_quantile(q)),
            "{field}"
        );
    }
    assert_eq!(merged["latency"]["max_us"].as_f64().unwrap(), us(all.max()));
    let sum = |f: &str| runs.iter().map(|(_, r)| count(r, f)).sum::<u64>();
    assert_eq!(count(&merged, "answered"), sum("answered"));
    assert_eq!(count(&merged, "sent"), sum("sent"));
    assert_eq!(count(&merged, "answered"), all.len());
    // 300 + 600 + 900 QPS for 2 s: about 3600 queries in all.
    assert!((3000..=3700).contains(&sum("sent")), "sent {}", sum("sent"));
    let qps = merged["qps"].as_f64().unwrap();
    let qps_sum: f64 = runs.iter().map(|(_, r)| r["qps"].as_f64().unwrap()).sum();
    assert!((qps - qps_sum).abs() < 1e-6, "{qps} vs {qps_sum}");

    // A file that is not a report is bad input, named in the message.
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, "[1, 2]").unwrap();
    let out = dnsload(&["merge", bogus.to_str().unwrap()], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bogus.json: not a dnsload JSON report"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn job_manifest_runs_its_pod_command() {
    // deploy/loadtest/dnsload-job.yaml: an Indexed Job whose pods share --start-at
    // and print their JSON report. Its pod command is run here as the pod would run
    // it (sh -c, the manifest's env with the target moved to a loopback knotd, a
    // short run), and what it prints must be a report `dnsload merge` reads.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/loadtest/dnsload-job.yaml"
    );
    let job: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], job["spec"]["parallelism"]);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][1], "-c");
    let script = container["args"][0].as_str().unwrap();
    assert!(script.contains("--start-at \"$START_AT\""), "{script}");
    let knot = Knot::start();
    let port = knot.port.to_string();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_dnsload"))
        .parent()
        .unwrap();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    for env in container["env"].as_sequence().unwrap() {
        cmd.env(
            env["name"].as_str().unwrap(),
            env["value"].as_str().unwrap(),
        );
    }
    let path_env = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    cmd.env("PATH", path_env)
        .env("TARGET", "127.0.0.1")
        .env("PORT", &port)
        .env("RATE", "300")
        .env("SECONDS", "1")
        .env("START_AT", "0")
        .env("JOB_COMPLETION_INDEX", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = support::wait_bounded(cmd.spawn().unwrap(), RUN_LIMIT);
    assert_ok(&out);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pod-2.json");
    std::fs::write(&log, &out.stdout).unwrap();
    let report = read_json(&log);
    assert!(
        (250..=350).contains(&count(&report, "answered")),
        "{report}"
    );
    let merged = dnsload(&["merge", log.to_str().unwrap()], RUN_LIMIT);
    assert_ok(&merged);
}

#[test]
fn tcp_churn_opens_a_connection_every_n_queries() {
    // 2 connections, a new one after every 5 queries, 400 queries against knotd:
    // every query answered (a retired connection is read until its last answer),
    // and 400 / 5 = 80 connections in all, 78 of them after the first two.
    let knot = Knot::start();
    let port = knot.port.to_string();
    let base = ["-p", &port, "-m", "tcp", "--names", "svc{0..99}.example"];
    let mut args = base.to_vec();
    args.extend([
        "-n",
        "4",
        "-c",
        "2",
        "-q",
        "10",
        "--tcp-churn",
        "5",
        "--no-pin",
    ]);
    let j = report(&args);
    assert_eq!(count(&j, "sent"), 400);
    assert_eq!(count(&j, "answered"), 400);
    assert_eq!(count(&j, "lost"), 0);
    assert_eq!(count(&j, "connections"), 78);
    // One connection per query, in open loop.
    let mut args = base.to_vec();
    args.extend(["-n", "1", "--rate", "500", "--tcp-churn", "1", "--no-pin"]);
    let j = report(&args);
    assert_eq!(count(&j, "answered"), 100);
    assert!(count(&j, "connections") >= 99, "{}", j["counters"]);
    // Churn is a TCP mode.
    let out = dnsload(&["--names", "a.test", "--tcp-churn", "3"], RUN_LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--tcp-churn 3: needs -m tcp"),
        "{}",
        stderr(&out)
    );
}

/// Writes the pod model's zones for `profile_args` into `dir` and starts knotd on them.
fn knot_for_pods(dir: &std::path::Path, profile_args: &[&str]) -> Knot {
    let zones = dir.join("zones");
    let mut args = profile_args.to_vec();
    args.extend(["--write-zones", zones.to_str().unwrap()]);
    let out = dnsload(&args, RUN_LIMIT);
    assert_ok(&out);
    Knot::start_zones(&stdout(&out))
}

/// Runs the pod model (`profile`, `pods` pods, `rate` lookups/s for `secs`)
/// against knotd serving its zones, captures the traffic, and returns the report
/// and what the capture shows (checked against the ndots:5 rules).
fn pods_captured(
    profile: &str,
    pods: &str,
    rate: &str,
    secs: &str,
) -> (Value, support::expansion::Expansion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods.toml");
    std::fs::write(&path, profile).unwrap();
    let model = ["--pods", pods, "--pod-profile", path.to_str().unwrap()];
    let knot = knot_for_pods(dir.path(), &model);
    let capture = support::Capture::start(knot.port, &dir.path().join("pods.pcap"));
    let port = knot.port.to_string();
    let mut args = model.to_vec();
    // A timeout shorter than the run: timeouts of finished lookups must not
    // touch the lookups that reuse their slots. 1.5 s: a busy shared machine
    // (the whole suite on 2 cores) holds knotd or dnsload off for up to ~0.5 s.
    args.extend([
        "-p", &port, "--rate", rate, "-l", secs, "-t", "1.5", "--no-pin",
    ]);
    let j = report(&args);
    let pcap = capture.finish();
    let e = support::expansion::check(&support::expansion::packets(&pcap, knot.port));
    (j, e)
}

#[test]
fn pods_expand_through_the_search_list_as_glibc_does() {
    // 4 pods in 2 namespaces, 150 lookups/s for 3 s against knotd serving the
    // model's cluster.local and example.com zones, captured on loopback. The
    // capture, decoded by tshark, is checked against the ndots:5 rules on its own
    // (support/expansion.rs), then against dnsload's report.
    let (j, e) = pods_captured("namespaces = 2\nfqdn_share = 0.2\n", "4", "150", "3");
    // Every query and answer is in the capture, and the capture's lookups are
    // dnsload's lookups.
    assert_eq!(e.queries as u64, count(&j, "sent"));
    assert_eq!(e.answers as u64, count(&j, "answered"));
    assert_eq!(count(&j, "lost"), 0);
    let l = &j["lookups"];
    assert_eq!(e.lookups as u64, l["lookups"].as_u64().unwrap(), "{l}");
    assert_eq!(e.resolved as u64, l["resolved"].as_u64().unwrap(), "{l}");
    // Every name of the model resolves against its zones.
    assert_eq!(e.resolved, e.lookups, "{:?}", e.steps_histogram);
    // One socket per pod, each searching one namespace, both namespaces used.
    assert_eq!(e.namespaces.len(), 4, "{:?}", e.namespaces);
    let spread: std::collections::BTreeSet<_> = e.namespaces.values().collect();
    assert_eq!(spread.len(), 2, "{:?}", e.namespaces);
    // A and AAAA of a step leave in one sendmmsg. On loopback the kernel hands
    // the A to knotd inside that call, so knotd often answers it before the AAAA
    // is on the wire; but asked in sequence (single-request) the AAAA never
    // precedes the A's answer, so steps where it does prove the pair is parallel.
    assert!(e.parallel_steps > 0, "{e:?}");
    // Short names resolve at the first step, svc.ns at the second, FQDNs without
    // the dot and outside names at the fourth (after three NXDOMAIN pairs).
    let steps: Vec<usize> = e.steps_histogram.keys().copied().collect();
    assert_eq!(steps, [1, 2, 4], "{:?}", e.steps_histogram);
    // Lookups/s, queries per lookup and the lookup latency agree with the counts.
    let lookups = l["lookups"].as_f64().unwrap();
    let sending = j["sending_secs"].as_f64().unwrap();
    assert!((l["lookups_per_sec"].as_f64().unwrap() - lookups / sending).abs() < 1e-6);
    let qpl = l["queries_per_lookup"].as_f64().unwrap();
    assert!(
        (qpl - count(&j, "sent") as f64 / lookups).abs() < 1e-9,
        "{l}"
    );
    let pairs: usize = e.steps_histogram.iter().map(|(s, n)| s * n).sum();
    assert_eq!(2 * pairs as u64, count(&j, "sent"));
    // At 150/s for 3 s: 450 lookups, Poisson, so within +-25 %.
    assert!((337.0..563.0).contains(&lookups), "{lookups}");
    // A lookup waits at least for its last query, so its latency is never below
    // the fastest query's, and on average at least a query's.
    assert!(l["latency"]["min_us"].as_f64() >= j["latency"]["min_us"].as_f64());
    assert!(l["latency"]["mean_us"].as_f64() >= j["latency"]["mean_us"].as_f64());
    let series = j["series"].as_array().unwrap();
    let per_second: u64 = series.iter().map(|s| s["lookups"].as_u64().unwrap()).sum();
    assert_eq!(per_second as f64, lookups);
}

#[test]
fn pods_single_request_asks_aaaa_after_the_a_answer() {
    // glibc's `options single-request`: same expansion, but each step's AAAA
    // leaves only once its A is answered.
    let (j, e) = pods_captured("namespaces = 1\nsingle_request = true\n", "2", "100", "1");
    assert_eq!(e.queries as u64, count(&j, "sent"));
    assert!(e.lookups > 0);
    assert_eq!(e.parallel_steps, 0, "{e:?}");
    assert_eq!(e.resolved, e.lookups);
}

#[test]
fn pods_churn_asks_new_names_that_still_resolve() {
    // Every outside lookup a new name: answered by the outside zone's wildcard.
    // 200 lookups/s (about 950 queries/s) for 2 s: knotd has one UDP worker and the
    // default receive buffer, which a burst at twice the rate overflowed when the
    // suite starved knotd of CPU for a moment (lost answers, not wrong ones).
    let dir = tempfile::tempdir().unwrap();
    let model = ["--pods", "8", "--pods-churn"];
    let knot = knot_for_pods(dir.path(), &model);
    let port = knot.port.to_string();
    let mut args = model.to_vec();
    args.extend(["-p", &port, "--rate", "200", "-l", "2", "--no-pin"]);
    let j = report(&args);
    let l = &j["lookups"];
    assert!(l["lookups"].as_u64().unwrap() > 200, "{l}");
    assert_eq!(l["resolved"], l["lookups"], "{l}");
    assert_eq!(count(&j, "lost"), 0);
}

#[test]
fn pods_bad_input_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "podz = 3\n").unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "pods = [\n").unwrap();
    let share = dir.path().join("share.toml");
    std::fs::write(&share, "outside_share = 2.0\n").unwrap();
    let typed = dir.path().join("typed.toml");
    std::fs::write(&typed, "pods = \"many\"\n").unwrap();
    let cases: [(&[&str], &str); 11] = [
        (&["--pods", "0", "-l", "1"], "pods = 0: must be at least 1"),
        (
            &["--pods", "4", "--rate", "0.5", "-l", "1"],
            "--rate 0.5: less than one lookup in the whole run",
        ),
        (
            &["--pods", "4", "--rate", "0", "-l", "1"],
            "--rate 0: must be a positive number",
        ),
        (&["--pods", "4"], "--pods needs -l SECS"),
        (
            &["--pods", "4", "-m", "tcp", "-l", "1"],
            "--pods models UDP",
        ),
        (
            &["--pods", "5000", "-l", "1"],
            "--pods 5000: at most 4096 pods per thread",
        ),
        (
            &["--pod-profile", "/nonexistent/p.toml", "-l", "1"],
            "/nonexistent/p.toml",
        ),
        (
            &["--pod-profile", unknown.to_str().unwrap(), "-l", "1"],
            "unknown field `podz`",
        ),
        (
            &["--pod-profile", broken.to_str().unwrap(), "-l", "1"],
            "broken.toml: not a pod profile",
        ),
        (
            &["--pod-profile", share.to_str().unwrap(), "-l", "1"],
            "outside_share = 2: must be a share",
        ),
        (
            &["--pod-profile", typed.to_str().unwrap(), "-l", "1"],
            "typed.toml: not a pod profile",
        ),
    ];
    for (args, message) in cases {
        assert_bad_input(args, message);
    }
}

/// The queries (not answers) of a capture of traffic to `port`, in capture order.
fn captured_queries(pcap: &std::path::Path, port: u16) -> Vec<support::expansion::Packet> {
    support::expansion::packets(pcap, port)
        .into_iter()
        .filter(|p| !p.response)
        .collect()
}

/// Checks that `replayed` asks what `original` asked, in the same order, each
/// original client on a socket of its own, at the original relative times divided
/// by `speed`; returns (median, max) timing error in ms. The error is measured
/// after removing the median offset between the two (the replay's start: its
/// first send may be late by the worker's start-up, as in the original run).
fn assert_replayed(
    original: &[support::expansion::Packet],
    replayed: &[support::expansion::Packet],
    speed: f64,
) -> (f64, f64) {
    assert_eq!(original.len(), replayed.len());
    let mut ports = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for (a, b) in original.iter().zip(replayed) {
        assert_eq!((&a.name, a.qtype), (&b.name, b.qtype), "order kept");
        let mapped = *ports.entry(a.client_port).or_insert(b.client_port);
        assert_eq!(mapped, b.client_port, "one socket per original client");
        let want = (a.time - original[0].time) / speed;
        let got = b.time - replayed[0].time;
        errors.push((got - want) * 1000.0);
    }
    let mut sorted = errors.clone();
    sorted.sort_by(f64::total_cmp);
    let offset = sorted[sorted.len() / 2];
    let mut errors: Vec<f64> = errors.iter().map(|e| (e - offset).abs()).collect();
    let distinct: std::collections::HashSet<_> = ports.values().collect();
    assert_eq!(
        distinct.len(),
        ports.len(),
        "distinct clients, distinct sockets"
    );
    errors.sort_by(f64::total_cmp);
    (errors[errors.len() / 2], errors[errors.len() - 1])
}

/// Tolerance of a replay's timing (its error against the original's relative
/// times, as captured): a query may be off only as far as the replayer said it
/// was late. A send is late by the worker's wake-up and the machine's scheduling
/// (a shared, busy 2-core box may hold it off for tens of ms), which the report's
/// send lag shows; a wrong schedule (scale, time unit, order) would be off with
/// no lag to show for it. Errors are measured against the median offset, so a
/// query's error is its lag less the median lag: at most the largest lag plus
/// the median one, and at the median up to twice the median lag. Margins: 10 ms
/// (worst) and 3 ms (median) between the clock read and the capture's stamp, which
/// a loaded machine stretches (3.1 ms seen beside real-time benchmarks); a wrong
/// schedule is off by hundreds of ms over this one-second replay.
fn assert_timing(report: &Value, (median, max): (f64, f64)) {
    let lag = &report["send_lag"];
    let (lag_p50, lag_max) = (ms(&lag["p50_us"]), ms(&lag["max_us"]));
    assert!(
        median <= 2.0 * lag_p50 + 3.0,
        "timing error median {median} ms, send lag p50 {lag_p50} ms"
    );
    assert!(
        max <= lag_max + lag_p50 + 10.0,
        "timing error max {max} ms, send lag max {lag_max} ms, p50 {lag_p50} ms"
    );
}

#[test]
fn replay_keeps_order_timing_and_clients() {
    // Real traffic to replay: the pod model (4 pods, so 4 client ports) against
    // knotd for 1 s, captured with tcpdump. Replayed from the pcap, from a pcapng
    // made of it by tshark (at twice the speed), and from a text log, each against
    // the same knotd and captured again.
    let dir = tempfile::tempdir().unwrap();
    let knot = knot_for_pods(dir.path(), &["--pods", "4"]);
    let port = knot.port.to_string();
    let original = dir.path().join("original.pcap");
    let capture = support::Capture::start(knot.port, &original);
    report(&[
        "--pods", "4", "-p", &port, "--rate", "80", "-l", "1", "--no-pin",
    ]);
    let a = captured_queries(&capture.finish(), knot.port);
    assert!(a.len() > 100, "{}", a.len());
    let replay = |file: &std::path::Path, speed: &str, out: &str| {
        let capture = support::Capture::start(knot.port, &dir.path().join(out));
        let args = [
            "-p",
            &port,
            "--replay",
            file.to_str().unwrap(),
            "--replay-port",
            &port,
            "--replay-speed",
            speed,
            "--no-pin",
        ];
        let j = report(&args);
        (j, captured_queries(&capture.finish(), knot.port))
    };
    let (j, b) = replay(&original, "1", "replay.pcap");
    assert_eq!(count(&j, "sent"), a.len() as u64);
    assert_eq!(count(&j, "answered"), a.len() as u64);
    assert_eq!(j["config"]["clients"], 4);
    assert_timing(&j, assert_replayed(&a, &b, 1.0));
    // pcapng, twice as fast.
    let pcapng = dir.path().join("original.pcapng");
    let conv = std::process::Command::new("tshark")
        .args(["-r", original.to_str().unwrap(), "-F", "pcapng", "-w"])
        .arg(&pcapng)
        .output()
        .expect("tshark");
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let (j, c) = replay(&pcapng, "2", "replay2.pcap");
    assert_eq!(count(&j, "answered"), a.len() as u64);
    assert_timing(&j, assert_replayed(&a, &c, 2.0));
    // A text query log of the same queries.
    let log = dir.path().join("queries.log");
    let text: String = a
        .iter()
        .map(|p| {
            format!(
                "{:.6} client{} {} TYPE{}\n",
                p.time, p.client_port, p.name, p.qtype
            )
        })
        .collect();
    std::fs::write(&log, text).unwrap();
    let (j, d) = replay(&log, "1", "replay3.pcap");
    assert_eq!(count(&j, "answered"), a.len() as u64);
    assert_timing(&j, assert_replayed(&a, &d, 1.0));
}

#[test]
fn replay_bad_input_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // A real capture to cut short: 20 queries from dnsload itself.
    let knot = Knot::start();
    let port = knot.port.to_string();
    let pcap = dir.path().join("q.pcap");
    let capture = support::Capture::start(knot.port, &pcap);
    // Without GSO: a capture on loopback would hold a batch as one frame.
    report(&[
        "-p",
        &port,
        "--names",
        "svc{0..19}.example",
        "-n",
        "1",
        "--no-gso",
        "--no-pin",
    ]);
    capture.finish();
    let bytes = std::fs::read(&pcap).unwrap();
    let truncated = dir.path().join("truncated.pcap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let header_only = dir.path().join("header.pcap");
    std::fs::write(&header_only, &bytes[..10]).unwrap();
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let binary = dir.path().join("binary.bin");
    std::fs::write(&binary, [0x00, 0xff, 0xfe, 0x80, 0x81, 0x82]).unwrap();
    let p = |path: &std::path::PathBuf| path.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![p(&truncated), port.clone()],
            "truncated.pcap: not a readable pcap capture after".into(),
        ),
        (
            vec![p(&header_only), port.clone()],
            "header.pcap: not a readable pcap capture after 0 packets".into(),
        ),
        (
            vec![p(&pcap), "1".into()],
            "q.pcap: no DNS queries to UDP port 1".into(),
        ),
        (
            vec![p(&empty), port.clone()],
            "empty.log: no DNS queries".into(),
        ),
        (
            vec![p(&binary), port.clone()],
            "binary.bin:1: not a text query log".into(),
        ),
        (
            vec!["/nonexistent/x.pcap".into(), port.clone()],
            "/nonexistent/x.pcap: No such file".into(),
        ),
    ];
    for (args, message) in &cases {
        let run = [
            "-p",
            &port,
            "--replay",
            &args[0],
            "--replay-port",
            &args[1],
            "-t",
            "0.5",
        ];
        assert_bad_input(&run, message);
    }
    for (args, message) in [
        (
            ["--replay", &p(&pcap), "--replay-speed", "0"],
            "--replay-speed 0: must be a positive number",
        ),
        (
            ["--replay", &p(&pcap), "-m", "tcp"],
            "--replay sends over UDP",
        ),
    ] {
        assert_bad_input(&args, message);
    }
    // The whole capture replays.
    let j = report(&[
        "-p",
        &port,
        "--replay",
        &p(&pcap),
        "--replay-port",
        &port,
        "--no-pin",
    ]);
    assert_eq!(count(&j, "answered"), 20);
}

/// Decodes a base64 HdrHistogram (plain or deflated V2).
fn decode_hist(text: &Value) -> hdrhistogram::Histogram<u64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("histogram text"))
        .expect("base64");
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("HdrHistogram V2")
}

/// CSV rows as maps from column to text.
fn csv_rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn merge_writes_csv_and_svg_that_match_the_runs() {
    // Two pod-model runs started together against knotd, each with JSON and CSV.
    // Merging one alone must give its own CSV, byte for byte; merging both, every
    // second's counts are the sums and its percentiles those of the two seconds'
    // histograms added (decoded here from the reports); lookups add up the same way.
    let dir = tempfile::tempdir().unwrap();
    let knot = knot_for_pods(dir.path(), &["--pods", "8"]);
    let port = knot.port.to_string();
    let start = a_second_from_now();
    let children: Vec<_> = ["100", "250"]
        .iter()
        .enumerate()
        .map(|(i, rate)| {
            let (json, csv) = (
                dir.path().join(format!("run{i}.json")),
                dir.path().join(format!("run{i}.csv")),
            );
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_dnsload"))
                .args(["-p", &port, "--pods", "8", "--rate", rate, "-l", "2"])
                .args(["--no-pin", "--quiet", "--start-at", &start, "--seed", rate])
                .arg("--json")
                .arg(&json)
                .arg("--csv")
                .arg(&csv)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn dnsload");
            (json, csv, support::KillOnDrop(Some(child)))
        })
        .collect();
    let mut runs = Vec::new();
    for (json, csv, mut guard) in children {
        assert_ok(&support::wait_bounded(guard.0.take().unwrap(), RUN_LIMIT));
        runs.push((
            json.clone(),
            read_json(&json),
            std::fs::read_to_string(&csv).unwrap(),
        ));
    }
    let merge = |inputs: &[&std::path::Path], name: &str| {
        let (json, csv, svg) = (
            dir.path().join(format!("{name}.json")),
            dir.path().join(format!("{name}.csv")),
            dir.path().join(format!("{name}.svg")),
        );
        let mut args: Vec<String> = vec!["merge".into()];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap().to_string()));
        for (flag, path) in [("--json", &json), ("--csv", &csv), ("--plot", &svg)] {
            args.extend([flag.to_string(), path.to_str().unwrap().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_ok(&dnsload(&args, RUN_LIMIT));
        let svg = std::fs::read_to_string(&svg).unwrap();
        let report = read_json(&json);
        (json, report, std::fs::read_to_string(&csv).unwrap(), svg)
    };
    // One run merged alone: its own CSV.
    let (_, _, alone, _) = merge(&[&runs[0].0], "alone");
    assert_eq!(alone, runs[0].2);
    // Both runs.
    let (merged_path, merged, csv, svg) = merge(&[&runs[0].0, &runs[1].0], "both");
    assert!(
        svg.contains("<svg") && svg.contains("lookup p99"),
        "plot has the lookup lines"
    );
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    let rows = csv_rows(&csv);
    assert!(rows.len() >= 2, "{csv}");
    for row in &rows {
        let second: u64 = row["second"].parse().unwrap();
        let per_run: Vec<&Value> = runs
            .iter()
            .filter_map(|(_, j, _)| {
                j["series"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["second"] == second)
            })
            .collect();
        for field in ["sent", "answered", "lost", "lookups"] {
            let sum: u64 = per_run.iter().map(|s| s[field].as_u64().unwrap()).sum();
            assert_eq!(row[field], sum.to_string(), "second {second} {field}");
        }
        let mut latency = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut lookup = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for s in &per_run {
            latency
                .add(decode_hist(&s["histograms"]["latency_ns"]))
                .unwrap();
            if let Some(l) = s["histograms"].get("lookup_latency_ns") {
                lookup.add(decode_hist(l)).unwrap();
            }
        }
        if latency.is_empty() {
            continue;
        }
        assert_eq!(
            row["p50_us"],
            us(latency.value_at_quantile(0.5)),
            "second {second}"
        );
        assert_eq!(
            row["p99_us"],
            us(latency.value_at_quantile(0.99)),
            "second {second}"
        );
        assert_eq!(row["max_us"], us(latency.max()), "second {second}");
        if !lookup.is_empty() {
            let p99 = us(lookup.value_at_quantile(0.99));
            assert_eq!(row["lookup_p99_us"], p99, "second {second}");
        }
    }
    // Lookups over the whole run add up, and their latency is that of all lookups.
    let sum = |f: &str| -> u64 {
        runs.iter()
            .map(|(_, j, _)| j["lookups"][f].as_u64().unwrap())
            .sum()
    };
    assert_eq!(merged["lookups"]["lookups"].as_u64(), Some(sum("lookups")));
    let mut all = decode_hist(&runs[0].1["histograms"]["lookup_latency_ns_v2_base64"]);
    all.add(decode_hist(
        &runs[1].1["histograms"]["lookup_latency_ns_v2_base64"],
    ))
    .unwrap();
    let p99 = all.value_at_quantile(0.99) as f64 / 1000.0;
    assert_eq!(merged["lookups"]["latency"]["p99_us"].as_f64(), Some(p99));
    // The merged report merges again to the same CSV.
    let (_, _, again, _) = merge(&[&merged_path], "again");
    assert_eq!(again, csv);
}
