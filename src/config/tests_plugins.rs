//! Table-driven tests of the `hosts`, `loadbalance`, `dns64`, `timeouts`, `debug`,
//! `pprof` and `trace` directives, after CoreDNS's `setup_test.go`: each case is a
//! Corefile and the change it makes to the defaults, or, in the "fails" table, the
//! line and a fragment of the error (which names file:line and the token).

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::tests::{assert_fails, default_block, one_block};
use super::*;

const HOSTS: &str = "10.0.0.1 a.example\n";

/// A directory with a hosts file `hosts` and an unreadable entry `dir` (a directory).
fn hosts_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts"), HOSTS).expect("write hosts");
    std::fs::create_dir(dir.path().join("dir")).expect("mkdir");
    dir
}

fn zone(name: &str) -> Zone {
    Zone { name: name.into() }
}

fn hosts_default(path: PathBuf) -> HostsConfig {
    HostsConfig {
        path,
        zones: vec![zone(".")],
        inline: Vec::new(),
        ttl: 3600,
        no_reverse: false,
        reload: Duration::from_secs(5),
        fallthrough: None,
    }
}

fn entry(addr: &str, names: &[&str]) -> HostsEntry {
    HostsEntry {
        addr: addr.parse().expect("address"),
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

type Edit = fn(&mut ServerBlock, PathBuf);

#[test]
fn directives() {
    let dir = hosts_dir();
    let file = dir.path().join("hosts");
    let cases: &[(&str, Edit)] = &[
        (". {\n hosts HOSTS\n}", |b, f| b.hosts = Some(hosts_default(f))),
        (
            "example. {\n hosts HOSTS {\n  10.0.0.2 B.example\n  fd00::1%eth0 b.example c.example.\n  ttl 60\n  no_reverse\n  reload 0\n  fallthrough\n }\n}",
            |b, f| {
                b.zones = vec![zone("example.")];
                b.hosts = Some(HostsConfig {
                    zones: vec![zone("example.")],
                    inline: vec![
                        entry("10.0.0.2", &["b.example."]),
                        entry("fd00::1", &["b.example.", "c.example."]),
                    ],
                    ttl: 60,
                    no_reverse: true,
                    reload: Duration::ZERO,
                    fallthrough: Some(vec![]),
                    ..hosts_default(f)
                });
            },
        ),
        (". {\n hosts HOSTS example. 10.in-addr.arpa {\n  fallthrough example.\n }\n}", |b, f| {
            b.hosts = Some(HostsConfig {
                zones: vec![zone("example."), zone("10.in-addr.arpa.")],
                fallthrough: Some(vec![zone("example.")]),
                ..hosts_default(f)
            })
        }),
        (". {\n loadbalance\n}", |b, _| b.loadbalance = true),
        (". {\n loadbalance round_robin\n}", |b, _| b.loadbalance = true),
        (". {\n dns64\n}", |b, _| {
            b.dns64 = Some(Dns64Config {
                prefix: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
                prefix_len: 96,
                translate_all: false,
                allow_ipv4: false,
            })
        }),
        (". {\n dns64 2001:db8:ffff::1/48\n}", |b, _| {
            b.dns64 = Some(Dns64Config {
                prefix: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0),
                prefix_len: 48,
                translate_all: false,
                allow_ipv4: false,
            })
        }),
        (". {\n dns64 {\n  prefix 2001:db8::/32\n  translate_all\n  allow_ipv4\n }\n}", |b, _| {
            b.dns64 = Some(Dns64Config {
                prefix: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
                prefix_len: 32,
                translate_all: true,
                allow_ipv4: true,
            })
        }),
        (". {\n timeouts {\n  read 30s\n  write 20s\n  idle 1m\n  max_queries 100\n }\n}", |b, _| {
            b.timeouts = Some(TimeoutsConfig {
                read: Some(Duration::from_secs(30)),
                write: Some(Duration::from_secs(20)),
                idle: Some(Duration::from_secs(60)),
                max_queries: Some(100),
            })
        }),
        (". {\n timeouts {\n  idle 24h\n }\n}", |b, _| {
            b.timeouts = Some(TimeoutsConfig {
                idle: Some(Duration::from_secs(86_400)),
                ..TimeoutsConfig::default()
            })
        }),
        (". {\n debug\n trace\n pprof\n}", |b, _| {
            b.debug = true;
            b.trace = true;
            b.pprof = Some("localhost:6053".into());
        }),
        (". {\n pprof 127.0.0.1:6060 {\n  block 100\n }\n}", |b, _| b.pprof = Some("127.0.0.1:6060".into())),
        (". {\n trace zipkin localhost:9411 {\n  every 100\n  service dns\n  client_server\n }\n}", |b, _| b.trace = true),
    ];
    for (input, edit) in cases {
        let text = input.replace("HOSTS", &file.display().to_string());
        let mut want = default_block();
        edit(&mut want, file.clone());
        match one_block(&text) {
            Ok(got) => assert_eq!(got, want, "input {text:?}"),
            Err(e) => panic!("input {text:?}: {e}"),
        }
    }
}

#[test]
fn fails() {
    let dir = hosts_dir();
    let file = dir.path().join("hosts").display().to_string();
    let folder = dir.path().join("dir").display().to_string();
    let missing = dir.path().join("missing").display().to_string();
    let cases: &[(String, usize, &str)] = &[
        // hosts
        (
            format!(". {{\n hosts {missing}\n}}"),
            2,
            "cannot read the hosts file",
        ),
        (format!(". {{\n\n hosts {folder}\n}}"), 3, "is a directory"),
        (
            format!(". {{\n hosts {file} {{\n  ttl\n }}\n}}"),
            3,
            "hosts ttl: wrong number of arguments (0)",
        ),
        (
            format!(". {{\n hosts {file} {{\n  ttl 0\n }}\n}}"),
            3,
            "hosts ttl: invalid \"0\": out of range 1..=65535",
        ),
        (
            format!(". {{\n hosts {file} {{\n  ttl 65536\n }}\n}}"),
            3,
            "invalid \"65536\"",
        ),
        (
            format!(". {{\n hosts {file} {{\n  ttl 1m\n }}\n}}"),
            3,
            "invalid \"1m\"",
        ),
        (
            format!(". {{\n hosts {file} {{\n  reload\n }}\n}}"),
            3,
            "hosts reload: wrong number",
        ),
        (
            format!(". {{\n hosts {file} {{\n  reload -5s\n }}\n}}"),
            3,
            "invalid \"-5s\"",
        ),
        (
            format!(". {{\n hosts {file} {{\n  reload 5\n }}\n}}"),
            3,
            "invalid \"5\": missing unit",
        ),
        (
            format!(". {{\n hosts {file} {{\n  no_reverse x\n }}\n}}"),
            3,
            "hosts no_reverse: wrong number",
        ),
        (
            format!(". {{\n hosts {file} {{\n  ttl 5\n  ttl 6\n }}\n}}"),
            4,
            "duplicate \"ttl\"",
        ),
        (
            format!(". {{\n hosts {file} {{\n  md5\n }}\n}}"),
            3,
            "hosts: unknown option \"md5\"",
        ),
        (
            format!(". {{\n hosts {file} {{\n  10.0.0.1\n }}\n}}"),
            3,
            "hosts inline entry: wrong number of arguments (0)",
        ),
        (
            format!(". {{\n hosts {file} {{\n  10.0.0.1 a..b\n }}\n}}"),
            3,
            "invalid \"a..b\": empty label",
        ),
        (
            format!("example. {{\n hosts {file} {{\n  10.0.0.1 a.other\n }}\n}}"),
            3,
            "invalid \"a.other\": name is outside",
        ),
        (
            format!(". {{\n hosts {file} a..b\n}}"),
            2,
            "hosts: invalid \"a..b\"",
        ),
        (
            format!(". {{\n hosts {file} {{\n  fallthrough a..b\n }}\n}}"),
            3,
            "hosts fallthrough: invalid \"a..b\"",
        ),
        (
            format!(". {{\n hosts {file}\n hosts {file}\n}}"),
            3,
            "duplicate \"hosts\"",
        ),
        // loadbalance
        (
            ". {\n loadbalance weighted /etc/weights\n}".into(),
            2,
            "\"weighted\" is not supported: weighted round robin",
        ),
        (
            ". {\n loadbalance random\n}".into(),
            2,
            "loadbalance: invalid \"random\": unknown policy",
        ),
        (
            ". {\n loadbalance round_robin x\n}".into(),
            2,
            "loadbalance: wrong number of arguments (2)",
        ),
        (
            ". {\n loadbalance {\n  prefer 10.0.0.0/8\n }\n}".into(),
            3,
            "\"prefer\" is not supported",
        ),
        (
            ". {\n loadbalance {\n  shuffle\n }\n}".into(),
            3,
            "loadbalance: unknown option \"shuffle\"",
        ),
        // dns64
        (
            ". {\n dns64 64:ff9b::/95\n}".into(),
            2,
            "dns64 prefix: invalid \"64:ff9b::/95\": prefix length",
        ),
        (". {\n dns64 64:ff9b::/104\n}".into(), 2, "prefix length"),
        (". {\n dns64 10.0.0.0/8\n}".into(), 2, "not an IPv6 address"),
        (
            ". {\n dns64 64:ff9b::\n}".into(),
            2,
            "expected an IPv6 prefix",
        ),
        (
            ". {\n dns64 a b\n}".into(),
            2,
            "dns64: wrong number of arguments (2)",
        ),
        (
            ". {\n dns64 {\n  prefix\n }\n}".into(),
            3,
            "dns64 prefix: wrong number",
        ),
        (
            ". {\n dns64 {\n  translate_all yes\n }\n}".into(),
            3,
            "dns64: wrong number",
        ),
        (
            ". {\n dns64 {\n  upstream 1.1.1.1\n }\n}".into(),
            3,
            "dns64: unknown option \"upstream\"",
        ),
        // timeouts
        (". {\n timeouts\n}".into(), 2, "a block with no timeouts"),
        (
            ". {\n timeouts 5s\n}".into(),
            2,
            "timeouts: wrong number of arguments (1)",
        ),
        (
            ". {\n timeouts {\n  read 500ms\n }\n}".into(),
            3,
            "timeouts: invalid \"500ms\": must be between 1s and 24h",
        ),
        (
            ". {\n timeouts {\n  idle 25h\n }\n}".into(),
            3,
            "invalid \"25h\"",
        ),
        (
            ". {\n timeouts {\n  write\n }\n}".into(),
            3,
            "timeouts: wrong number",
        ),
        (
            ". {\n timeouts {\n  read 5\n }\n}".into(),
            3,
            "invalid \"5\"",
        ),
        (
            ". {\n timeouts {\n  read 5s\n  read 6s\n }\n}".into(),
            4,
            "duplicate \"read\"",
        ),
        (
            ". {\n timeouts {\n  max_queries -1\n }\n}".into(),
            3,
            "invalid \"-1\"",
        ),
        (
            ". {\n timeouts {\n  linger 5s\n }\n}".into(),
            3,
            "timeouts: unknown option \"linger\"",
        ),
        // debug, pprof, trace
        (". {\n debug on\n}".into(), 2, "debug: wrong number"),
        (
            ". {\n pprof localhost\n}".into(),
            2,
            "pprof: invalid \"localhost\"",
        ),
        (". {\n pprof a b\n}".into(), 2, "pprof: wrong number"),
        (
            ". {\n pprof {\n  block x\n }\n}".into(),
            3,
            "pprof block: invalid \"x\"",
        ),
        (
            ". {\n pprof {\n  mutex\n }\n}".into(),
            3,
            "pprof: unknown option \"mutex\"",
        ),
        (
            ". {\n trace jaeger localhost:1\n}".into(),
            2,
            "trace: invalid \"jaeger\"",
        ),
        (". {\n trace a b c\n}".into(), 2, "trace: wrong number"),
        (
            ". {\n trace {\n  every x\n }\n}".into(),
            3,
            "trace: invalid \"x\"",
        ),
        (
            ". {\n trace {\n  datadog_analytics_rate 2\n }\n}".into(),
            3,
            "rate must be",
        ),
        (
            ". {\n trace {\n  sampler x\n }\n}".into(),
            3,
            "trace: unknown option \"sampler\"",
        ),
        // A directive node-cache does not know stays an error.
        (
            ". {\n hosts\n kubernetes cluster.local\n}".into(),
            3,
            "unknown directive \"kubernetes\"",
        ),
    ];
    for (input, line, fragment) in cases {
        assert_fails(input, *line, fragment);
    }
}
