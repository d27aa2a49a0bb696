//! Table-driven tests of the whole Corefile → Config path, after CoreDNS's
//! `setup_test.go`: each case is a Corefile and either the change it makes to the
//! defaults or, in the "fails" tables, the line and a fragment of the error.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use StaleMode::{Immediate, Verify};

fn env(name: &str) -> Option<String> {
    match name {
        "LOCAL_IP" => Some("169.254.20.10".into()),
        "DOMAIN" => Some("cluster.local".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_corefile_with_env(text, Path::new("Corefile"), &env)
}

fn zone(name: &str) -> Zone {
    Zone { name: name.into() }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `input` fails to parse, at `line`, with an error containing `fragment`.
pub(super) fn assert_fails(input: &str, line: usize, fragment: &str) {
    let err = match parse(input) {
        Ok(config) => panic!("input {input:?} parsed: {config:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("Corefile:{line}: ")),
        "input {input:?}: line of {text}, want {line}"
    );
    assert!(
        text.contains(fragment),
        "input {input:?}: {text}\nwant fragment: {fragment}"
    );
    assert_eq!(
        err.location().map(|l| l.line),
        Some(line),
        "input {input:?}"
    );
}

/// `serve_stale` lasting `secs` in `mode`, every other setting the default.
fn stale(secs: u64, mode: StaleMode) -> ServeStale {
    ServeStale {
        duration: Duration::from_secs(secs),
        mode,
        response_ttl_secs: 0,
        failure_recheck: None,
        prefer_positive: false,
    }
}

/// The one block of `text`, or the error text.
pub(super) fn one_block(text: &str) -> Result<ServerBlock, String> {
    let config = parse(text).map_err(|e| e.to_string())?;
    match <[ServerBlock; 1]>::try_from(config.servers) {
        Ok([block]) => Ok(block),
        Err(servers) => Err(format!("{} blocks", servers.len())),
    }
}

/// What `. { }` parses to.
pub(super) fn default_block() -> ServerBlock {
    ServerBlock {
        zones: vec![zone(".")],
        port: 53,
        bind: vec![],
        cache: None,
        forward: None,
        acl: None,
        errors: false,
        errors_consolidate: Vec::new(),
        log: false,
        log_rules: Vec::new(),
        health: None,
        ready: None,
        prometheus: None,
        reload: None,
        loop_detect: false,
        bufsize: None,
        whoami: false,
        templates: Vec::new(),
        rewrites: Vec::new(),
        hosts: None,
        loadbalance: false,
        dns64: None,
        timeouts: None,
        debug: false,
        pprof: None,
        trace: false,
        location: Location {
            file: PathBuf::from("Corefile"),
            line: 1,
        },
    }
}

fn default_cache() -> CacheConfig {
    CacheConfig {
        zones: vec![zone(".")],
        success: CacheClass {
            capacity: 9984,
            ttl_max: secs(3600),
            ttl_min: secs(5),
        },
        denial: CacheClass {
            capacity: 9984,
            ttl_max: secs(1800),
            ttl_min: secs(5),
        },
        prefetch: None,
        serve_stale: None,
        servfail_ttl: secs(5),
        disable_success: vec![],
        disable_denial: vec![],
        keepttl: false,
        max_bytes: None,
    }
}

fn default_forward() -> ForwardConfig {
    ForwardConfig::new(zone("."), vec![addr("10.0.0.10:53")])
}

type Edit<T> = fn(&mut T);

#[test]
fn server_blocks() {
    let cases: &[(&str, Edit<ServerBlock>)] = &[
        (". {\n}", |_| {}),
        (".:53 {\n}", |_| {}),
        ("dns://.:53 {\n}", |_| {}),
        ("dns://. {\n}", |_| {}),
        ("Cluster.Local:1053 {\n}", |b| {
            b.zones = vec![zone("cluster.local.")];
            b.port = 1053;
        }),
        ("a.org b.org. {\n}", |b| {
            b.zones = vec![zone("a.org."), zone("b.org.")]
        }),
        ("a.org,b.org:53 {\n}", |b| {
            b.zones = vec![zone("a.org."), zone("b.org.")]
        }),
        ("a.org:5353,\n b.org:5353\n{\n}", |b| {
            b.zones = vec![zone("a.org."), zone("b.org.")];
            b.port = 5353;
        }),
        ("{$DOMAIN}:53 {\n}", |b| {
            b.zones = vec![zone("cluster.local.")]
        }),
        ("\n\n# comment\n. { # trailing\n}", |b| b.location.line = 4),
        (". {\n errors\n log\n loop\n whoami\n}", |b| {
            b.errors = true;
            b.log = true;
            b.log_rules = vec![LogRule::common()];
            b.loop_detect = true;
            b.whoami = true;
        }),
        (". {\n log . {combined}\n}", |b| {
            b.log = true;
            let mut rule = LogRule::common();
            rule.format.push(LogPart::Text(" \"".into()));
            rule.format.push(LogPart::Field(LogField::Opcode));
            rule.format.push(LogPart::Text("\"".into()));
            // The common format ends in a field: the text after it stays one piece.
            b.log_rules = vec![rule];
        }),
        (". {\n log {\n  class denial error\n }\n}", |b| {
            b.log = true;
            let classes = ResponseClasses { success: false, denial: true, error: true };
            b.log_rules = vec![LogRule { classes, ..LogRule::common() }];
        }),
        (". {\n log Example.ORG a.net \"{name} {rcode}\"\n log b.net\n}", |b| {
            b.log = true;
            let format = vec![
                LogPart::Field(LogField::Name),
                LogPart::Text(" ".into()),
                LogPart::Field(LogField::Rcode),
            ];
            let rule = |scope: &str| LogRule { scope: scope.into(), format: format.clone(), ..LogRule::common() };
            b.log_rules = vec![
                rule("example.org."),
                rule("a.net."),
                LogRule { scope: "b.net.".into(), ..LogRule::common() },
            ];
        }),
        (". {\n errors stdout {\n  stacktrace\n  consolidate 1m \"^read udp\" info show_first\n }\n}", |b| {
            b.errors = true;
            b.errors_consolidate = vec![Consolidate {
                period: Duration::from_secs(60),
                pattern: "^read udp".into(),
                level: LogLevel::Info,
                show_first: true,
            }];
        }),
        (". {\n errors {\n  consolidate 5m \".* i/o timeout$\" warning\n  consolidate 30s ^x\n }\n}", |b| {
            b.errors = true;
            b.errors_consolidate = vec![
                Consolidate { period: Duration::from_secs(300), pattern: ".* i/o timeout$".into(), level: LogLevel::Warning, show_first: false },
                Consolidate { period: Duration::from_secs(30), pattern: "^x".into(), level: LogLevel::Error, show_first: false },
            ];
        }),
        (". {\n bind 169.254.20.10 ::1\n}", |b| {
            b.bind = vec![IpAddr::from([169, 254, 20, 10]), "::1".parse().expect("v6")]
        }),
        (". {\n bind 10.0.0.1\n bind 10.0.0.2\n}", |b| {
            b.bind = vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])]
        }),
        (". {\n bind {$LOCAL_IP} {$UNSET}\n}", |b| {
            b.bind = vec![IpAddr::from([169, 254, 20, 10])]
        }),
        (". {\n health\n}", |b| {
            b.health = Some(HealthConfig {
                addr: addr("0.0.0.0:8080"),
                lameduck: Duration::ZERO,
            })
        }),
        (
            ". {\n health 169.254.20.10:8080 {\n  lameduck 5s\n }\n}",
            |b| {
                b.health = Some(HealthConfig {
                    addr: addr("169.254.20.10:8080"),
                    lameduck: secs(5),
                })
            },
        ),
        (". {\n health :8081 {\n }\n}", |b| {
            b.health = Some(HealthConfig {
                addr: addr("0.0.0.0:8081"),
                lameduck: Duration::ZERO,
            })
        }),
        (". {\n ready\n prometheus\n}", |b| {
            b.ready = Some(addr("0.0.0.0:8181"));
            b.prometheus = Some(addr("0.0.0.0:9253"));
        }),
        (
            ". {\n ready 127.0.0.1:8182\n prometheus [::]:9153\n}",
            |b| {
                b.ready = Some(addr("127.0.0.1:8182"));
                b.prometheus = Some(addr("[::]:9153"));
            },
        ),
        (". {\n reload\n}", |b| {
            b.reload = Some(ReloadConfig {
                interval: secs(30),
                jitter: secs(15),
            })
        }),
        (". {\n reload 10s\n}", |b| {
            b.reload = Some(ReloadConfig {
                interval: secs(10),
                jitter: secs(5),
            })
        }),
        (". {\n reload 1m 2s\n}", |b| {
            b.reload = Some(ReloadConfig {
                interval: secs(60),
                jitter: secs(2),
            })
        }),
        (". {\n bufsize\n}", |b| b.bufsize = Some(1232)),
        (". {\n bufsize 512\n}", |b| b.bufsize = Some(512)),
        (". {\n bufsize 4096\n}", |b| b.bufsize = Some(4096)),
        (". {\n cache\n}", |b| b.cache = Some(default_cache())),
        (". {\n forward . 10.0.0.10\n}", |b| {
            b.forward = Some(default_forward())
        }),
    ];
    for (input, edit) in cases {
        let mut want = default_block();
        edit(&mut want);
        assert_eq!(one_block(input), Ok(want), "input {input:?}");
    }
}

#[test]
fn several_blocks() {
    let text = "a.org {\n}\nb.org:1053 {\n}\n.:53 {\n bind 10.0.0.1\n}\n.:53 {\n bind 10.0.0.2\n}";
    let config = parse(text).expect("parses");
    let summary: Vec<(String, u16, usize)> = config
        .servers
        .iter()
        .map(|s| (s.zones[0].name.clone(), s.port, s.location.line))
        .collect();
    assert_eq!(
        summary,
        [
            ("a.org.".to_string(), 53, 1),
            ("b.org.".to_string(), 1053, 3),
            (".".to_string(), 53, 5),
            (".".to_string(), 53, 8)
        ]
    );
}

#[test]
fn cache() {
    let cases: &[(&str, Edit<CacheConfig>)] = &[
        ("cache", |_| {}),
        ("cache {\n}", |_| {}),
        ("cache 30", |c| {
            c.success.ttl_max = secs(30);
            c.denial.ttl_max = secs(30);
        }),
        ("cache 2", |c| {
            // The default MINTTL gives way to a smaller TTL.
            c.success.ttl_max = secs(2);
            c.denial.ttl_max = secs(2);
            c.success.ttl_min = secs(2);
            c.denial.ttl_min = secs(2);
        }),
        ("cache 30 Example.org b.org.", |c| {
            c.success.ttl_max = secs(30);
            c.denial.ttl_max = secs(30);
            c.zones = vec![zone("example.org."), zone("b.org.")];
        }),
        ("cache example.org", |c| {
            c.zones = vec![zone("example.org.")]
        }),
        ("cache {\n success 9984 30\n denial 9984 5\n}", |c| {
            c.success.ttl_max = secs(30);
            c.denial.ttl_max = secs(5);
        }),
        ("cache 100 {\n success 10\n}", |c| {
            c.success.capacity = 10;
            c.success.ttl_max = secs(100);
            c.denial.ttl_max = secs(100);
        }),
        ("cache {\n success 5000 600 0\n denial 1000 60 30\n}", |c| {
            c.success = CacheClass {
                capacity: 5000,
                ttl_max: secs(600),
                ttl_min: secs(0),
            };
            c.denial = CacheClass {
                capacity: 1000,
                ttl_max: secs(60),
                ttl_min: secs(30),
            };
        }),
        ("cache {\n prefetch 2\n}", |c| {
            c.prefetch = Some(Prefetch {
                amount: 2,
                duration: secs(60),
                percentage: 10,
            })
        }),
        ("cache {\n prefetch 5 2m 90%\n}", |c| {
            c.prefetch = Some(Prefetch {
                amount: 5,
                duration: secs(120),
                percentage: 90,
            })
        }),
        ("cache {\n serve_stale\n}", |c| {
            c.serve_stale = Some(stale(3600, Immediate))
        }),
        ("cache {\n serve_stale 30m VERIFY\n}", |c| {
            c.serve_stale = Some(stale(1800, Verify { timeout: None }))
        }),
        ("cache {\n serve_stale 0 immediate\n}", |c| {
            c.serve_stale = Some(stale(0, Immediate))
        }),
        ("cache {\n serve_stale 1h immediate 30s\n}", |c| {
            c.serve_stale = Some(ServeStale {
                response_ttl_secs: 30,
                ..stale(3600, Immediate)
            })
        }),
        ("cache {\n serve_stale 1h immediate 30s 1m\n}", |c| {
            c.serve_stale = Some(ServeStale {
                response_ttl_secs: 30,
                failure_recheck: Some(secs(60)),
                ..stale(3600, Immediate)
            })
        }),
        ("cache {\n serve_stale 1h verify 100ms\n}", |c| {
            let timeout = Some(Duration::from_millis(100));
            c.serve_stale = Some(stale(3600, Verify { timeout }))
        }),
        ("cache {\n serve_stale 1h verify 0 30s 0s\n}", |c| {
            c.serve_stale = Some(ServeStale {
                response_ttl_secs: 30,
                ..stale(3600, Verify { timeout: None })
            })
        }),
        ("cache {\n serve_stale 2h verify 1s 0 5m\n}", |c| {
            c.serve_stale = Some(ServeStale {
                failure_recheck: Some(secs(300)),
                ..stale(
                    7200,
                    Verify {
                        timeout: Some(secs(1)),
                    },
                )
            })
        }),
        (
            "cache {\n serve_stale_policy PREFER_POSITIVE\n serve_stale 10m\n}",
            |c| {
                c.serve_stale = Some(ServeStale {
                    prefer_positive: true,
                    ..stale(600, Immediate)
                })
            },
        ),
        ("cache {\n servfail 0\n}", |c| {
            c.servfail_ttl = Duration::ZERO
        }),
        ("cache {\n servfail 5m\n}", |c| c.servfail_ttl = secs(300)),
        ("cache {\n disable success\n}", |c| {
            c.disable_success = vec![zone(".")]
        }),
        (
            "cache {\n disable denial a.org B.org\n disable success\n}",
            |c| {
                c.disable_denial = vec![zone("a.org."), zone("b.org.")];
                c.disable_success = vec![zone(".")];
            },
        ),
        ("cache {\n keepttl\n}", |c| c.keepttl = true),
        ("cache {\n max_bytes 64MiB\n}", |c| {
            c.max_bytes = Some(64 << 20)
        }),
        ("cache {\n max_bytes 64M\n}", |c| {
            c.max_bytes = Some(64_000_000)
        }),
        ("cache {\n max_bytes 1048576\n}", |c| {
            c.max_bytes = Some(1 << 20)
        }),
    ];
    for (input, edit) in cases {
        let mut want = default_cache();
        edit(&mut want);
        let got = one_block(&format!(". {{\n {input}\n}}")).map(|b| b.cache);
        assert_eq!(got, Ok(Some(want)), "input {input:?}");
    }
}

#[test]
fn cache_zones_default_to_the_block() {
    let block = one_block("a.org b.org {\n cache\n}").expect("parses");
    let zones = block.cache.map(|c| c.zones);
    assert_eq!(zones, Some(vec![zone("a.org."), zone("b.org.")]));
}

#[test]
fn forward() {
    let cases: &[(&str, Edit<ForwardConfig>)] = &[
        ("forward . 10.0.0.10", |_| {}),
        ("forward . 10.0.0.10 {\n}", |_| {}),
        ("forward . dns://10.0.0.10", |_| {}),
        ("forward Example.ORG 10.0.0.10", |f| f.from = zone("example.org.")),
        ("forward . 10.0.0.10:5353 [2001:db8::1]:54 2001:db8::2 dns://1.1.1.1:53", |f| {
            f.to = vec![
                addr("10.0.0.10:5353"),
                addr("[2001:db8::1]:54"),
                addr("[2001:db8::2]:53"),
                addr("1.1.1.1:53"),
            ]
        }),
        (
            "forward . 10.0.0.10 {\n except a.org B.org\n except c.org\n force_tcp\n expire 30s\n max_fails 0\n policy sequential\n}",
            |f| {
                f.except = vec![zone("a.org."), zone("b.org."), zone("c.org.")];
                f.force_tcp = true;
                f.expire = secs(30);
                f.max_fails = 0;
                f.policy = Policy::Sequential;
            },
        ),
        ("forward . 10.0.0.10 {\n prefer_udp\n policy round_robin\n}", |f| {
            f.prefer_udp = true;
            f.policy = Policy::RoundRobin;
        }),
        ("forward . 10.0.0.10 {\n policy random\n}", |_| {}),
        ("forward . 10.0.0.10 {\n health_check 1s\n}", |f| f.health_check = secs(1)),
        ("forward . 10.0.0.10 {\n health_check 0\n}", |f| f.health_check = Duration::ZERO),
        ("forward . 10.0.0.10 {\n health_check 250ms no_rec domain Example.org\n}", |f| {
            f.health_check = Duration::from_millis(250);
            f.health_check_no_rec = true;
            f.health_check_domain = zone("example.org.");
        }),
        ("forward . 10.0.0.10 {\n health_check 1s domain a.org no_rec\n}", |f| {
            f.health_check = secs(1);
            f.health_check_no_rec = true;
            f.health_check_domain = zone("a.org.");
        }),
        ("forward . 10.0.0.10 {\n max_concurrent 1000\n}", |f| f.max_concurrent = Some(1000)),
        ("forward . 10.0.0.10 {\n max_concurrent 0\n}", |f| f.max_concurrent = None),
        ("forward . 10.0.0.10 {\n failfast_all_unhealthy_upstreams\n}", |f| {
            f.failfast_all_unhealthy = true
        }),
    ];
    for (input, edit) in cases {
        let mut want = default_forward();
        edit(&mut want);
        let got = one_block(&format!(". {{\n {input}\n}}")).map(|b| b.forward);
        assert_eq!(got, Ok(Some(want)), "input {input:?}");
    }
}

#[test]
fn forward_fifteen_upstreams() {
    let to: Vec<String> = (1..=15).map(|i| format!("10.0.0.{i}")).collect();
    let block = one_block(&format!(". {{\n forward . {}\n}}", to.join(" "))).expect("parses");
    assert_eq!(block.forward.map(|f| f.to.len()), Some(15));
}

/// A directory holding a Corefile next to a resolv.conf.
fn dir_with_resolv_conf(resolv_conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("resolv.conf"), resolv_conf).expect("write resolv.conf");
    dir
}

#[test]
fn forward_resolv_conf() {
    let dir = dir_with_resolv_conf(
        "search svc.cluster.local\nnameserver 10.0.0.2\nnameserver 2001:db8::53\noptions ndots:5\n",
    );
    let corefile = dir.path().join("Corefile");
    let absolute = dir.path().join("resolv.conf");
    let cases = [
        format!(". {{\n forward . {}\n}}", absolute.display()),
        ". {\n forward . resolv.conf\n}".to_string(),
        ". {\n forward . ./resolv.conf\n}".to_string(),
    ];
    for text in cases {
        let config = parse_corefile_with_env(&text, &corefile, &env).expect("parses");
        let to = config
            .servers
            .first()
            .and_then(|s| s.forward.as_ref())
            .map(|f| f.to.clone());
        assert_eq!(
            to,
            Some(vec![addr("10.0.0.2:53"), addr("[2001:db8::53]:53")]),
            "{text}"
        );
    }
    // Files and addresses mix; the expansion counts against the limit of 15.
    let config = parse_corefile_with_env(". {\n forward . 1.1.1.1 resolv.conf\n}", &corefile, &env)
        .expect("parses");
    let count = config
        .servers
        .first()
        .and_then(|s| s.forward.as_ref())
        .map(|f| f.to.len());
    assert_eq!(count, Some(3));
    let many: Vec<String> = (1..=14).map(|i| format!("10.0.0.{i}")).collect();
    let err = parse_corefile_with_env(
        &format!(". {{\n forward . {} resolv.conf\n}}", many.join(" ")),
        &corefile,
        &env,
    )
    .expect_err("16 upstreams");
    assert!(
        err.to_string().contains("16 upstreams, at most 15"),
        "{err}"
    );
    let empty = dir_with_resolv_conf("# no nameserver\n");
    let err = parse_corefile_with_env(
        ". {\n forward . resolv.conf\n}",
        &empty.path().join("Corefile"),
        &env,
    )
    .expect_err("no nameserver");
    assert!(err.to_string().contains("no usable nameserver"), "{err}");
}

#[test]
fn load_from_disk() {
    let dir = dir_with_resolv_conf("nameserver 10.0.0.2\n");
    let path = dir.path().join("Corefile");
    std::fs::write(&path, ". {\n forward . resolv.conf\n cache 30\n}\n").expect("write");
    let config = load_corefile(&path).expect("loads");
    assert_eq!(config.servers.len(), 1);
    let missing = dir.path().join("missing");
    let err = load_corefile(&missing).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn node_cache_sample() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corefiles/node-cache.Corefile"
    );
    let text = std::fs::read_to_string(fixture).expect("fixture");
    let dir = dir_with_resolv_conf("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    let resolv_conf = dir.path().join("resolv.conf");
    let text = text.replace("/etc/resolv.conf", &resolv_conf.display().to_string());
    let corefile = dir.path().join("Corefile");
    std::fs::write(&corefile, &text).expect("write");
    let config = load_corefile(&corefile).expect("the upstream sample parses");

    let bind = vec![
        IpAddr::from([169, 254, 20, 10]),
        IpAddr::from([10, 0, 0, 10]),
    ];
    let reload = Some(ReloadConfig {
        interval: secs(30),
        jitter: secs(15),
    });
    let cluster_dns = ForwardConfig {
        force_tcp: true,
        ..default_forward()
    };
    let cache_30 = |zones: &str| CacheConfig {
        zones: vec![zone(zones)],
        success: CacheClass {
            ttl_max: secs(30),
            ..default_cache().success
        },
        denial: CacheClass {
            ttl_max: secs(30),
            ..default_cache().denial
        },
        ..default_cache()
    };
    let block = |zones: &str, line: usize| ServerBlock {
        zones: vec![zone(zones)],
        bind: bind.clone(),
        cache: Some(cache_30(zones)),
        forward: Some(cluster_dns.clone()),
        errors: true,
        prometheus: Some(addr("0.0.0.0:9253")),
        reload,
        loop_detect: true,
        location: Location {
            file: corefile.clone(),
            line,
        },
        ..default_block()
    };
    let mut cluster = block("cluster.local.", 5);
    cluster.cache = Some(CacheConfig {
        success: CacheClass {
            ttl_max: secs(30),
            ..default_cache().success
        },
        denial: CacheClass {
            ttl_max: secs(5),
            ..default_cache().denial
        },
        ..cache_30("cluster.local.")
    });
    cluster.health = Some(HealthConfig {
        addr: addr("169.254.20.10:8080"),
        lameduck: Duration::ZERO,
    });
    let mut root = block(".", 42);
    root.forward = Some(ForwardConfig {
        to: vec![addr("8.8.8.8:53"), addr("8.8.4.4:53")],
        ..default_forward()
    });
    let want = vec![
        cluster,
        block("in-addr.arpa.", 20),
        block("ip6.arpa.", 31),
        root,
    ];
    assert_eq!(config.servers, want);
}

#[test]
fn fails() {
    let long_label = format!("{}.org {{\n}}", "a".repeat(64));
    let long_name = format!("{}. {{\n}}", vec!["a".repeat(63); 4].join("."));
    let too_many: Vec<String> = (1..=16).map(|i| format!("10.0.0.{i}")).collect();
    let too_many = format!(". {{\n forward . {}\n}}", too_many.join(" "));
    let cases: &[(&str, usize, &str)] = &[
        // Structure.
        ("", 1, "no server block"),
        (". {\n errors\n", 1, "unbalanced braces"),
        (". {\n}\n}", 3, "unexpected \"}\""),
        (".:53\nerrors\n", 2, "expected \"{\""),
        (". {\n log \"unterminated\n}", 2, "unterminated quoted string"),
        // Keys.
        ("a.org:53 b.org:54 {\n}", 1, "\"b.org:54\" has port 54 but \"a.org:53\" has port 53"),
        ("a.org b.org:1053 {\n}", 1, "has port 1053"),
        ("a.org a.org. {\n}", 1, "zone a.org. given twice"),
        ("a..org {\n}", 1, "empty label"),
        (&long_label, 1, "label longer than 63"),
        (&long_name, 1, "name longer than 255"),
        ("\"a b.org\" {\n}", 1, "invalid character ' '"),
        ("10.0.0.0/8 {\n}", 1, "CIDR"),
        (".:x {\n}", 1, "invalid port \"x\""),
        (".:65536 {\n}", 1, "invalid port"),
        ("tls://.:853 {\n}", 1, "tls:// servers are not implemented"),
        ("foo://. {\n}", 1, "unknown scheme"),
        ("a.org {\n}\n\nA.org. {\n}", 4, "zone a.org. on port 53 is already served by the block at line 1"),
        (". {\n bind 10.0.0.1\n}\n. {\n}", 4, "already served"),
        (". {\n bind 10.0.0.1\n}\n. {\n bind 0.0.0.0\n}", 4, "already served"),
        // Directives.
        (". {\n errors\n\n\n\n\n etcd skydns.local\n}", 7, "unknown directive \"etcd\" (supported: bind, cache, errors, forward, health, log, loop, prometheus, ready, reload, bufsize, whoami, acl, rewrite, template, hosts"),
        (". {\n cache\n cache 30\n}", 3, "duplicate \"cache\" (already given at line 2)"),
        (". {\n forward . 1.1.1.1\n forward . 8.8.8.8\n}", 3, "duplicate \"forward\""),
        (". {\n errors\n errors\n}", 3, "duplicate \"errors\""),
        (". {\n errors stderr\n}", 2, "errors: invalid \"stderr\": the only log file is stdout"),
        (". {\n errors a b\n}", 2, "errors: wrong number of arguments (2)"),
        (". {\n errors {\n  consolidate 5m x show_first warning\n }\n}", 3, "one level, before show_first"),
        (". {\n errors {\n  consolidate 5m x info error\n }\n}", 3, "one level, before show_first"),
        (". {\n errors {\n  stacktrace now\n }\n}", 3, "errors stacktrace: wrong number of arguments (1)"),
        (". {\n log {\n  class\n }\n}", 3, "log class: wrong number of arguments (0)"),
        (". {\n errors {\n  consolidate 5m\n }\n}", 3, "errors consolidate: wrong number of arguments (1)"),
        (". {\n errors {\n  consolidate 5m \"(\"\n }\n}", 3, "errors consolidate: invalid \"(\""),
        (". {\n errors {\n  consolidate 5m x loud\n }\n}", 3, "level must be"),
        (". {\n errors {\n  squash 5m x\n }\n}", 3, "errors: unknown option \"squash\""),
        (". {\n log {\n  class everything\n }\n}", 3, "log class: invalid \"everything\""),
        (". {\n log {\n  format x\n }\n}", 3, "log: unknown option \"format\""),
        (". {\n loop x\n}", 2, "loop: wrong number"),
        (". {\n whoami x\n}", 2, "whoami: wrong number"),
        // bind
        (". {\n bind\n}", 2, "bind: wrong number of arguments (0)"),
        (". {\n bind eth0\n}", 2, "\"eth0\" is not supported: interface names"),
        (". {\n bind 10.0.0.300\n}", 2, "invalid \"10.0.0.300\": not an IP address"),
        (". {\n bind 10.0.0.1\n bind 10.0.0.1\n}", 3, "address given twice"),
        // health, ready, prometheus, reload, bufsize
        (". {\n health 8080\n}", 2, "health: invalid \"8080\""),
        (". {\n health localhost:8080\n}", 2, "host names are not resolved"),
        (". {\n health :8080 :8081\n}", 2, "health: wrong number"),
        (". {\n health {\n  lameduck\n }\n}", 3, "health lameduck: wrong number"),
        (". {\n health {\n  lameduck 5\n }\n}", 3, "missing unit"),
        (". {\n health {\n  lameduck 5s\n  lameduck 6s\n }\n}", 4, "duplicate \"lameduck\""),
        (". {\n health {\n  lame 5s\n }\n}", 3, "health: unknown option \"lame\" (supported: lameduck)"),
        (". {\n ready :x\n}", 2, "ready: invalid \":x\""),
        (". {\n prometheus 1.2.3.4\n}", 2, "prometheus: invalid \"1.2.3.4\""),
        (". {\n prometheus :9253 :9254\n}", 2, "prometheus: wrong number"),
        (". {\n reload 1s\n}", 2, "interval must be at least 2s"),
        (". {\n reload 30s 500ms\n}", 2, "jitter must be at least 1s"),
        (". {\n reload 30s 10s 1s\n}", 2, "reload: wrong number"),
        (". {\n reload 30\n}", 2, "reload: invalid \"30\""),
        (". {\n bufsize 511\n}", 2, "out of range 512..=4096"),
        (". {\n bufsize 4097\n}", 2, "out of range"),
        (". {\n bufsize big\n}", 2, "bufsize: invalid \"big\""),
        // cache
        (". {\n cache 0\n}", 2, "cache TTL: invalid \"0\""),
        (". {\n cache -1\n}", 2, "cache TTL: invalid \"-1\""),
        (". {\n cache 30s\n}", 2, "whole seconds"),
        (". {\n cache 99999999999999999999\n}", 2, "cache TTL: invalid \"99999999999999999999\": out of range"),
        (". {\n cache 2147483648\n}", 2, "out of range 1..=2147483647"),
        (". {\n cache 30 a..org\n}", 2, "empty label"),
        (". {\n cache {\n  success\n }\n}", 3, "cache success: wrong number of arguments (0)"),
        (". {\n cache {\n  success 1 2 3 4\n }\n}", 3, "cache success: wrong number of arguments (4)"),
        (". {\n cache {\n  success x\n }\n}", 3, "cache success CAPACITY: invalid \"x\""),
        (". {\n cache {\n  success 0\n }\n}", 3, "cache success CAPACITY: invalid \"0\""),
        (". {\n cache {\n  denial 10 0\n }\n}", 3, "cache denial TTL: invalid \"0\""),
        (". {\n cache {\n  denial 10 30 -1\n }\n}", 3, "cache denial MINTTL: invalid \"-1\""),
        (". {\n cache {\n  success 10 30 60\n }\n}", 2, "MINTTL 60s is above TTL 30s"),
        (". {\n cache {\n  success 10\n  success 20\n }\n}", 4, "duplicate \"success\""),
        (". {\n cache {\n  prefetch\n }\n}", 3, "cache prefetch: wrong number"),
        (". {\n cache {\n  prefetch 0\n }\n}", 3, "cache prefetch: invalid \"0\""),
        (". {\n cache {\n  prefetch 1 1m 10% x\n }\n}", 3, "cache prefetch: wrong number"),
        (". {\n cache {\n  prefetch 1 1x\n }\n}", 3, "unknown unit"),
        (". {\n cache {\n  prefetch 1 1m 10\n }\n}", 3, "must end with %"),
        (". {\n cache {\n  prefetch 1 1m 9%\n }\n}", 3, "percentage must be in 10%..=90%"),
        (". {\n cache {\n  prefetch 1 1m 91%\n }\n}", 3, "percentage must be in"),
        (". {\n cache {\n  serve_stale 1h sometimes\n }\n}", 3, "expected immediate or verify"),
        (". {\n cache {\n  serve_stale -1h\n }\n}", 3, "negative"),
        (". {\n cache {\n  serve_stale 1h verify x\n }\n}", 3, "cache serve_stale VERIFY_TIMEOUT: invalid \"x\""),
        (". {\n cache {\n  serve_stale 1h verify -1s\n }\n}", 3, "VERIFY_TIMEOUT: invalid \"-1s\""),
        (". {\n cache {\n  serve_stale 1h verify 1s 30s 30s x\n }\n}", 3, "cache serve_stale: wrong number of arguments (6)"),
        (". {\n cache {\n  serve_stale 1h immediate 30s 30s 1s\n }\n}", 3, "cache serve_stale: wrong number of arguments (5)"),
        (". {\n cache {\n  serve_stale 1h immediate 30\n }\n}", 3, "RESPONSE_TTL: invalid \"30\""),
        (". {\n cache {\n  serve_stale 1h immediate 1500ms\n }\n}", 3, "RESPONSE_TTL: invalid \"1500ms\": must be a whole number of seconds"),
        (". {\n cache {\n  serve_stale 1h immediate 1000000h\n }\n}", 3, "RESPONSE_TTL: invalid \"1000000h\": above the TTL range"),
        (". {\n cache {\n  serve_stale 1h verify 0 30s 6m\n }\n}", 3, "FAILURE_RECHECK: invalid \"6m\": must not exceed 5m"),
        (". {\n cache {\n  serve_stale 1h immediate 30s soon\n }\n}", 3, "FAILURE_RECHECK: invalid \"soon\""),
        (". {\n cache {\n  serve_stale_policy prefer_positive\n }\n}", 3, "serve_stale_policy requires serve_stale"),
        (". {\n cache {\n  serve_stale\n  serve_stale_policy prefer_negative\n }\n}", 4, "serve_stale_policy: invalid \"prefer_negative\": the only policy is prefer_positive"),
        (". {\n cache {\n  serve_stale\n  serve_stale_policy\n }\n}", 4, "serve_stale_policy: wrong number of arguments (0)"),
        (". {\n cache {\n  serve_stale\n  serve_stale_policy prefer_positive x\n }\n}", 4, "serve_stale_policy: wrong number of arguments (2)"),
        (". {\n cache {\n  serve_stale\n  serve_stale_policy prefer_positive\n  serve_stale_policy prefer_positive\n }\n}", 5, "duplicate \"serve_stale_policy\""),
        (". {\n cache {\n  servfail 6m\n }\n}", 3, "over 5m is not permitted"),
        (". {\n cache {\n  servfail\n }\n}", 3, "cache servfail: wrong number"),
        (". {\n cache {\n  disable\n }\n}", 3, "cache disable: wrong number"),
        (". {\n cache {\n  disable all\n }\n}", 3, "expected success or denial"),
        (". {\n cache {\n  disable success\n  disable success a.org\n }\n}", 4, "duplicate \"disable success\""),
        (". {\n cache {\n  keepttl 5\n }\n}", 3, "cache keepttl: wrong number"),
        (". {\n cache {\n  max_bytes 64XB\n }\n}", 3, "unknown size suffix"),
        (". {\n cache {\n  max_bytes 0\n }\n}", 3, "greater than zero"),
        (". {\n cache {\n  size 5\n }\n}", 3, "cache: unknown option \"size\" (supported: success, denial"),
        // forward
        (". {\n forward\n}", 2, "forward: wrong number of arguments (0)"),
        (". {\n forward .\n}", 2, "forward: wrong number of arguments (1)"),
        (". {\n forward a..b 1.1.1.1\n}", 2, "forward FROM: invalid \"a..b\""),
        (". {\n forward . quic://1.1.1.1\n}", 2, "\"quic://1.1.1.1\" is not supported"),
        (". {\n forward . ftp://1.1.1.1\n}", 2, "unknown scheme"),
        (". {\n forward . dns.google\n}", 2, "invalid \"dns.google\": not an IP address"),
        (". {\n forward . 1.1.1.1:99999\n}", 2, "invalid \"1.1.1.1:99999\""),
        (". {\n forward . /nonexistent/resolv.conf\n}", 2, "/nonexistent/resolv.conf"),
        (&too_many, 2, "16 upstreams, at most 15"),
        (". {\n forward . 1.1.1.1 {\n  force_tcp\n  prefer_udp\n }\n}", 4, "force_tcp and prefer_udp cannot be used together"),
        (". {\n forward . 1.1.1.1 {\n  force_tcp yes\n }\n}", 3, "forward force_tcp: wrong number"),
        (". {\n forward . 1.1.1.1 {\n  force_tcp\n  force_tcp\n }\n}", 4, "duplicate \"force_tcp\""),
        (". {\n forward . 1.1.1.1 {\n  except\n }\n}", 3, "forward except: wrong number"),
        (". {\n forward . 1.1.1.1 {\n  except a..b\n }\n}", 3, "forward except: invalid \"a..b\""),
        (". {\n forward . 1.1.1.1 {\n  expire\n }\n}", 3, "forward expire: wrong number"),
        (". {\n forward . 1.1.1.1 {\n  expire -1s\n }\n}", 3, "negative"),
        (". {\n forward . 1.1.1.1 {\n  max_fails -1\n }\n}", 3, "forward max_fails: invalid \"-1\""),
        (". {\n forward . 1.1.1.1 {\n  max_fails 4294967296\n }\n}", 3, "forward max_fails: invalid"),
        (". {\n forward . 1.1.1.1 {\n  policy fastest\n }\n}", 3, "expected random, round_robin or sequential"),
        (". {\n forward . 1.1.1.1 {\n  health_check\n }\n}", 3, "forward health_check: wrong number"),
        (". {\n forward . 1.1.1.1 {\n  health_check 1s rec\n }\n}", 3, "expected no_rec or domain"),
        (". {\n forward . 1.1.1.1 {\n  health_check 1s domain\n }\n}", 3, "domain needs a name"),
        (". {\n forward . 1.1.1.1 {\n  health_check 1s domain a..b\n }\n}", 3, "invalid \"a..b\""),
        (". {\n forward . 1.1.1.1 {\n  max_concurrent -5\n }\n}", 3, "forward max_concurrent: invalid \"-5\""),
        (". {\n forward . 1.1.1.1 {\n  failfast_all_unhealthy_upstreams 1\n }\n}", 3, "wrong number"),
        (". {\n forward . 1.1.1.1 {\n  prefer_tcp\n }\n}", 3, "forward: unknown option \"prefer_tcp\""),
    ];
    for (input, line, fragment) in cases {
        assert_fails(input, *line, fragment);
    }
}

/// Arbitrary bytes never panic: they parse or give an error.
#[test]
fn never_panics() {
    let alphabet = proptest::sample::select(vec![
        ".",
        " ",
        "\n",
        "{",
        "}",
        "\"",
        "\\",
        "#",
        ":",
        ",",
        "cache",
        "forward",
        "success",
        "1",
        "-",
        "s",
        "%",
        "{$",
        "dns://",
        "[::1]",
        "10.0.0.1",
        "a",
        "health",
        "bufsize",
        "prefetch",
        "/",
        "max_age",
        "expire",
        "read_timeout",
        "failover",
        "next",
        "SERVFAIL",
        "0",
        "source_address",
        "max_connect_attempts",
        "serve_stale",
        "serve_stale_policy",
        "prefer_positive",
        "immediate",
        "verify",
        "30s",
        "100ms",
    ]);
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(alphabet, 0..60), |parts| {
            let _ = parse(&parts.concat());
            Ok(())
        })
        .expect("no panic");
    runner
        .run(&".*", |text: String| {
            let _ = parse(&text);
            Ok(())
        })
        .expect("no panic");
    // serve_stale's arguments in any order and number: an error or a cache whose
    // shard sizes itself.
    let argument = proptest::sample::select(vec![
        "0",
        "1",
        "30",
        "30s",
        "1.5s",
        "100ms",
        "5m",
        "6m",
        "1h",
        "-1s",
        "9999999999h",
        "2147483647s",
        "2147483648s",
        "immediate",
        "VERIFY",
        "verify",
        "x",
    ]);
    let policy = proptest::sample::select(vec!["", "prefer_positive", "prefer_negative"]);
    let lines = (proptest::collection::vec(argument, 0..7), policy);
    runner
        .run(&lines, |(args, policy)| {
            let mut text = format!(". {{\n cache {{\n  serve_stale {}\n", args.join(" "));
            if !policy.is_empty() {
                text.push_str(&format!("  serve_stale_policy {policy}\n"));
            }
            text.push_str(" }\n}\n");
            match parse(&text) {
                Ok(config) => {
                    let cache = config.servers[0].cache.as_ref().expect("a cache");
                    let shard = crate::cache::Shard::with_share(cache, 2);
                    assert!(shard.is_empty());
                }
                Err(e) => assert_eq!(e.location().map(|l| l.line).map(|l| l >= 3), Some(true)),
            }
            Ok(())
        })
        .expect("no panic");
}

/// Every `~~~ corefile` example of README.md parses (resolv.conf from a test file).
#[test]
fn readme_examples() {
    let readme = include_str!("README.md");
    let dir = dir_with_resolv_conf("nameserver 10.0.0.2\n");
    let resolv_conf = dir.path().join("resolv.conf").display().to_string();
    let corefile = dir.path().join("Corefile");
    let mut examples = 0;
    let mut rest = readme;
    while let Some(start) = rest.find("~~~ corefile\n") {
        let body = &rest[start + "~~~ corefile\n".len()..];
        let end = body.find("~~~").expect("example is closed");
        let text = body[..end].replace("/etc/resolv.conf", &resolv_conf);
        if let Err(e) = parse_corefile_with_env(&text, &corefile, &env) {
            panic!("README example fails: {e}\n{text}");
        }
        examples += 1;
        rest = &body[end..];
    }
    assert_eq!(examples, 4);
}
