//! Table-driven tests of the CoreDNS 1.14 `forward` options (`read_timeout`,
//! `max_age`, `max_idle_conns`, `max_connect_attempts`, `next`, `next_on_nodata`,
//! `failover`, `source_address`), after CoreDNS's `setup_test.go`: each case is a
//! `forward` line and the change it makes to the defaults, or, in the "fails" table,
//! the line and a fragment of the error (which names file:line and the token).

use std::time::Duration;

use super::tests::{assert_fails, one_block};
use super::*;

fn default_forward() -> ForwardConfig {
    let to = vec!["10.0.0.10:53".parse().expect("address")];
    ForwardConfig::new(Zone { name: ".".into() }, to)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Edit = fn(&mut ForwardConfig);

#[test]
fn options() {
    let cases: &[(&str, Edit)] = &[
        ("read_timeout 500ms", |f| f.read_timeout = ms(500)),
        ("read_timeout 30s", |f| f.read_timeout = ms(30_000)),
        ("max_age 10s", |f| f.max_age = Some(ms(10_000))),
        ("max_age 1h", |f| f.max_age = Some(ms(3_600_000))),
        ("max_age 0", |_| {}),
        ("max_idle_conns 5", |f| f.max_idle_conns = Some(5)),
        ("max_idle_conns 0", |_| {}),
        ("max_connect_attempts 3", |f| {
            f.max_connect_attempts = ConnectAttempts::Max(3)
        }),
        ("max_connect_attempts 0", |f| {
            f.max_connect_attempts = ConnectAttempts::Unbounded
        }),
        ("next NXDOMAIN", |f| f.next = vec![3]),
        ("next nxdomain SERVFAIL\n next REFUSED", |f| {
            f.next = vec![3, 2, 5]
        }),
        ("next_on_nodata", |f| f.next_on_nodata = true),
        ("failover SERVFAIL REFUSED", |f| f.failover = vec![2, 5]),
        ("failover ServFail\n failover 4", |f| {
            f.failover = vec![2, 4]
        }),
        ("source_address 127.0.0.2", |f| {
            f.source_address = Some([127, 0, 0, 2].into())
        }),
        ("source_address ::1", |f| {
            f.source_address = Some(std::net::Ipv6Addr::LOCALHOST.into())
        }),
        ("expire 5s\n max_age 5s", |f| {
            f.expire = ms(5_000);
            f.max_age = Some(ms(5_000));
        }),
    ];
    for (options, edit) in cases {
        let mut want = default_forward();
        edit(&mut want);
        let input = format!(". {{\n forward . 10.0.0.10 {{\n {options}\n }}\n}}");
        let got = one_block(&input).map(|b| b.forward);
        assert_eq!(got, Ok(Some(want)), "input {input:?}");
    }
}

#[test]
fn connect_attempts_default_to_two_per_upstream() {
    let block = one_block(". {\n forward . 10.0.0.1 10.0.0.2 10.0.0.3\n}").expect("parses");
    let forward = block.forward.expect("forward");
    assert_eq!(forward.attempts_max(), 6);
    let block =
        one_block(". {\n forward . 10.0.0.1 {\n max_connect_attempts 0\n }\n}").expect("parses");
    let forward = block.forward.expect("forward");
    assert_eq!(forward.attempts_max(), crate::limits::UPSTREAM_ATTEMPTS_MAX);
}

#[test]
fn fails() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "read_timeout",
            3,
            "forward read_timeout: wrong number of arguments (0)",
        ),
        (
            "read_timeout 1s 2s",
            3,
            "forward read_timeout: wrong number of arguments (2)",
        ),
        (
            "read_timeout soon",
            3,
            "forward read_timeout: invalid \"soon\"",
        ),
        (
            "read_timeout 0s",
            3,
            "forward read_timeout: invalid \"0s\": must be positive",
        ),
        ("read_timeout -1s", 3, "negative"),
        (
            "max_age",
            3,
            "forward max_age: wrong number of arguments (0)",
        ),
        ("max_age 1x", 3, "forward max_age: invalid \"1x\""),
        ("max_age -5s", 3, "negative"),
        (
            "max_age 5s",
            2,
            "max_age (5s) must not be less than expire (10s)",
        ),
        (
            "max_idle_conns",
            3,
            "forward max_idle_conns: wrong number of arguments (0)",
        ),
        (
            "max_idle_conns -1",
            3,
            "forward max_idle_conns: invalid \"-1\"",
        ),
        (
            "max_idle_conns many",
            3,
            "forward max_idle_conns: invalid \"many\"",
        ),
        (
            "max_connect_attempts",
            3,
            "forward max_connect_attempts: wrong number",
        ),
        (
            "max_connect_attempts 1 2",
            3,
            "forward max_connect_attempts: wrong number",
        ),
        (
            "max_connect_attempts -2",
            3,
            "forward max_connect_attempts: invalid \"-2\"",
        ),
        (
            "max_connect_attempts\n max_connect_attempts 2",
            3,
            "wrong number",
        ),
        (
            "max_connect_attempts 2\n max_connect_attempts 2",
            4,
            "duplicate \"max_connect_attempts\"",
        ),
        ("next", 3, "forward next: wrong number of arguments (0)"),
        (
            "next NXDOMAINS",
            3,
            "forward next: invalid \"NXDOMAINS\": unknown rcode",
        ),
        (
            "next_on_nodata yes",
            3,
            "forward next_on_nodata: wrong number of arguments (1)",
        ),
        (
            "failover",
            3,
            "forward failover: wrong number of arguments (0)",
        ),
        (
            "failover NOERROR",
            3,
            "forward failover: invalid \"NOERROR\": NOERROR cannot be used",
        ),
        (
            "failover SERVFAIL 0",
            3,
            "forward failover: invalid \"0\": NOERROR cannot be used",
        ),
        (
            "failover BOGUS",
            3,
            "forward failover: invalid \"BOGUS\": unknown rcode",
        ),
        (
            "source_address",
            3,
            "forward source_address: wrong number of arguments (0)",
        ),
        (
            "source_address 10.0.0.1 10.0.0.2",
            3,
            "forward source_address: wrong number",
        ),
        (
            "source_address localhost",
            3,
            "forward source_address: invalid \"localhost\"",
        ),
        ("max_ages 5s", 3, "forward: unknown option \"max_ages\""),
    ];
    for (options, line, fragment) in cases {
        let input = format!(". {{\n forward . 10.0.0.10 {{\n {options}\n }}\n}}");
        assert_fails(&input, *line, fragment);
    }
}
