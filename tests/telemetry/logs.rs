//! Log parity with CoreDNS: `errors` lines and `consolidate` summaries in CoreDNS's
//! words, and `log` rules' names, classes and formats, read from the real binary's
//! stderr.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;

/// The message part of the lines of `target` (what follows "TARGET: ").
fn messages(server: &Server, target: &str) -> Vec<String> {
    let marker = format!(" {target}: ");
    server
        .log()
        .lines()
        .filter_map(|l| l.split_once(marker.as_str()).map(|(_, m)| m.to_string()))
        .collect()
}

/// A pattern written for CoreDNS (anchored on the error's text) consolidates our
/// timeouts: no whole line, one summary in CoreDNS's words at the rule's level.
#[test]
fn consolidate_patterns_written_for_coredns_match() {
    let errors = "errors {\n        consolidate 1s \"^read udp .*: i/o timeout$\" warning\n    }";
    let Silent {
        _hole,
        ports,
        server,
        ..
    } = Silent::with_errors(errors);
    let answer = udp_exchange(
        ports.dns(),
        &query(7, "timeout.example.", RecordType::A, false),
    );
    assert_eq!(
        answer.map(|a| a.response_code()),
        Some(ResponseCode::ServFail)
    );
    let summary =
        "[WARNING] plugin/errors: 1 errors like '^read udp .*: i/o timeout$' occurred in last 1s";
    let found = testkit::process::wait_until(Duration::from_secs(5), || {
        messages(&server, "errors").iter().any(|m| m == summary)
    });
    assert!(found, "no summary {summary:?} in\n{}", server.log());
    let log = server.log();
    let summary_line = log.lines().find(|l| l.ends_with(summary)).expect("summary");
    assert!(summary_line.contains(" WARN errors: "), "{summary_line}");
    assert!(!log.contains("plugin/errors: 2 timeout.example."), "{log}");
}

/// `log` rules: the first rule naming the query decides, its classes filter, its
/// format's placeholders are CoreDNS's; names no rule holds get no line.
#[test]
fn log_rules_filter_names_and_classes_and_format_lines() {
    let knot = Knot::start();
    let ports = Ports::new();
    let corefile = format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    \
         log www.example. \"{{remote}} {{type}} {{name}} {{class}} {{proto}} {{rcode}} {{>rflags}} {{>id}} {{>do}} {{>bufsize}} {{local}} {{/meta}} {{nope}}\" {{\n        class success\n    }}\n    \
         log nx1.example. nx2.example. {{\n        class denial\n    }}\n    \
         log nx3.example. {{combined}} {{\n        class success\n    }}\n    \
         forward . 127.0.0.1:{knot}\n}}\n",
        dns = ports.dns,
        knot = knot.port,
    );
    let server = Server::start(&corefile);
    let dns = ports.dns();
    wait_until("DNS listener", Duration::from_secs(10), || {
        TcpStream::connect(dns).is_ok()
    });
    let ask = |id, name: &str, dnssec_ok| {
        let answer = udp_exchange(dns, &query(id, name, RecordType::A, dnssec_ok));
        answer.map(|a| a.response_code())
    };
    assert_eq!(ask(11, "www.example.", true), Some(ResponseCode::NoError));
    assert_eq!(ask(12, "nx1.example.", false), Some(ResponseCode::NXDomain));
    assert_eq!(ask(13, "nx2.example.", false), Some(ResponseCode::NXDomain));
    // A rule names it, but its class (success) is not the answer's (denial).
    assert_eq!(ask(14, "nx3.example.", false), Some(ResponseCode::NXDomain));
    // No rule names it.
    assert_eq!(ask(15, "ns.example.", false), Some(ResponseCode::NoError));
    let mut tcp = TcpStream::connect(dns).expect("tcp");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let answer = tcp_on(&mut tcp, &query(16, "www.example.", RecordType::A, false));
    assert_eq!(answer.response_code(), ResponseCode::NoError);

    wait_until("four lines", Duration::from_secs(5), || {
        messages(&server, "log").len() >= 4
    });
    std::thread::sleep(Duration::from_millis(200));
    let lines = messages(&server, "log");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let www_udp = &lines[0];
    assert!(
        www_udp.starts_with("[INFO] 127.0.0.1 A www.example. IN udp NOERROR qr,"),
        "{www_udp}"
    );
    assert!(
        www_udp.ends_with(" 11 true 1232 127.0.0.1 - {nope}"),
        "{www_udp}"
    );
    for (line, name, id) in [(&lines[1], "nx1", 12), (&lines[2], "nx2", 13)] {
        let common = format!(" - {id} \"A IN {name}.example. udp ");
        assert!(line.starts_with("[INFO] 127.0.0.1:"), "{line}");
        assert!(line.contains(&common), "{line}");
        assert!(line.contains(" false 512\" NXDOMAIN qr,"), "{line}");
        assert!(line.ends_with('s'), "{line}");
    }
    let www_tcp = &lines[3];
    assert!(
        www_tcp.starts_with("[INFO] 127.0.0.1 A www.example. IN tcp NOERROR qr,"),
        "{www_tcp}"
    );
    assert!(
        www_tcp.ends_with(" 16 false 65535 127.0.0.1 - {nope}"),
        "{www_tcp}"
    );
}
