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
fn tls_upstreams() {
    let tls = |addr: &str, name: Option<&str>| TlsUpstream {
        addr: addr.parse().expect("address"),
        server_name: name.map(str::to_string),
    };
    // TO, the addresses, the tls:// entries, tls_servername.
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<TlsUpstream>, Option<&'a str>);
    let cases: &[Case] = &[
        (
            "tls://10.0.0.10",
            vec!["10.0.0.10:853"],
            vec![tls("10.0.0.10:853", None)],
            None,
        ),
        (
            "tls://10.0.0.10:10853 10.0.0.11",
            vec!["10.0.0.10:10853", "10.0.0.11:53"],
            vec![tls("10.0.0.10:10853", None)],
            None,
        ),
        (
            "tls://9.9.9.9%dns.quad9.net tls://[2001:db8::1]%dns.example:10853",
            vec!["9.9.9.9:853", "[2001:db8::1]:10853"],
            vec![
                tls("9.9.9.9:853", Some("dns.quad9.net")),
                tls("[2001:db8::1]:10853", Some("dns.example")),
            ],
            None,
        ),
        (
            "tls://10.0.0.10 {\n tls_servername dns.example\n }",
            vec!["10.0.0.10:853"],
            vec![tls("10.0.0.10:853", None)],
            Some("dns.example"),
        ),
    ];
    for (to, addrs, upstreams, name) in cases {
        let block = one_block(&format!(". {{\n forward . {to}\n}}")).expect(to);
        let forward = block.forward.expect("forward");
        let want: Vec<std::net::SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(forward.to, want, "{to}");
        assert_eq!(&forward.tls_upstreams, upstreams, "{to}");
        assert_eq!(forward.tls.server_name.as_deref(), *name, "{to}");
    }
}

/// A directory with a CA certificate, a client certificate and its key (PEM), and a
/// file that holds neither.
fn pem_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["client.example".into()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write");
    std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("empty.pem"), "not PEM\n").expect("write");
    dir
}

#[test]
fn tls_files() {
    let dir = pem_dir();
    let path = |file: &str| dir.path().join(file).display().to_string();
    let read = |file: &str| std::fs::read(dir.path().join(file)).expect("read");
    let tls_of = |args: String| {
        let input = format!(". {{\n forward . tls://10.0.0.10 {{\n tls {args}\n }}\n}}");
        one_block(&input)
            .expect(&input)
            .forward
            .expect("forward")
            .tls
    };
    assert_eq!(tls_of(String::new()), TlsClient::default());
    let ca_only = tls_of(path("ca.pem"));
    assert_eq!((ca_only.identity, ca_only.ca), (None, Some(read("ca.pem"))));
    let identity = tls_of(format!("{} {}", path("cert.pem"), path("key.pem")));
    assert_eq!(identity.identity, Some((read("cert.pem"), read("key.pem"))));
    assert_eq!(identity.ca, None);
    let all = tls_of(format!(
        "{} {} {}",
        path("cert.pem"),
        path("key.pem"),
        path("ca.pem")
    ));
    assert_eq!(all.identity, Some((read("cert.pem"), read("key.pem"))));
    assert_eq!(all.ca, Some(read("ca.pem")));

    let fails = [
        (
            format!("tls {0} {0} {0} {0}", path("ca.pem")),
            "forward tls: wrong number of arguments (4)",
        ),
        (format!("tls {}", path("missing.pem")), "cannot read"),
        (
            format!("tls {}", path("empty.pem")),
            "no PEM certificate in the file",
        ),
        (
            format!("tls {} {}", path("cert.pem"), path("ca.pem")),
            "no PEM private key in the file",
        ),
        (
            format!("tls {} {}", path("empty.pem"), path("key.pem")),
            "no PEM certificate",
        ),
    ];
    for (option, fragment) in &fails {
        let input = format!(". {{\n forward . tls://10.0.0.10 {{\n {option}\n }}\n}}");
        assert_fails(&input, 3, fragment);
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
        (
            "tls_servername",
            3,
            "forward tls_servername: wrong number of arguments (0)",
        ),
        (
            "tls_servername a..b",
            3,
            "forward tls_servername: invalid \"a..b\"",
        ),
    ];
    for (options, line, fragment) in cases {
        let input = format!(". {{\n forward . 10.0.0.10 {{\n {options}\n }}\n}}");
        assert_fails(&input, *line, fragment);
    }
    let to_fails: &[(&str, &str)] = &[
        (
            "tls://dns.example",
            "invalid \"tls://dns.example\": expected tls://IP[%NAME][:PORT]",
        ),
        ("tls://10.0.0.1%:853", "expected tls://IP[%NAME][:PORT]"),
        ("tls://10.0.0.1%a..b", "expected tls://IP[%NAME][:PORT]"),
        ("tls://10.0.0.1:99999", "expected tls://IP[%NAME][:PORT]"),
        ("https://10.0.0.1", "\"https://10.0.0.1\" is not supported"),
        (
            "tls://10.0.0.1%dns.example {\n tls_servername dns.example\n }",
            "tls_servername and a tls://ADDR%NAME server name cannot both be set",
        ),
    ];
    for (to, fragment) in to_fails {
        assert_fails(&format!(". {{\n forward . {to}\n}}"), 2, fragment);
    }
}
