//! Metrics over TLS (node-cache 1.26's `-tls-*` flags), scraped with a real client
//! (curl, OpenSSL) and certificates this test makes with rcgen: HTTPS only on the
//! metrics address, client certificates required and verified when asked, the
//! minimum version kept, and bad flags refused at start naming flag and file.

use std::path::Path;
use std::process::Output;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;

/// The PEM files of a CA, a server certificate for 127.0.0.1 and a client
/// certificate, all signed by the CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "nodelocaldns test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let leaf = |names: Vec<String>, usage, file: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = vec![usage];
            params.distinguished_name.push(DnType::CommonName, file);
            let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("sign");
            std::fs::write(dir.path().join(format!("{file}.pem")), cert.pem()).expect("write");
            std::fs::write(dir.path().join(format!("{file}.key")), key.serialize_pem())
                .expect("write");
        };
        let server_names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        leaf(server_names, ExtendedKeyUsagePurpose::ServerAuth, "server");
        leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "client");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write");
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The server's flags, with `extra` after them.
    fn flags(&self, extra: &[&str]) -> Vec<String> {
        let mut flags = vec![
            "-tls-enabled".to_string(),
            format!("-tls-cert-file={}", self.path("server.pem")),
            format!("-tls-private-key-file={}", self.path("server.key")),
        ];
        flags.extend(extra.iter().map(|f| f.to_string()));
        flags
    }
}

/// curl with the CA, bounded in time; `args` go before the URL.
fn curl(pki: &Pki, port: u16, args: &[&str]) -> Output {
    let url = format!("https://127.0.0.1:{port}/metrics");
    Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "5"])
        .args(["--cacert", &pki.path("ca.pem")])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs (install the curl package)")
}

fn with_client_cert(pki: &Pki) -> [String; 4] {
    [
        "--cert".to_string(),
        pki.path("client.pem"),
        "--key".to_string(),
        pki.path("client.key"),
    ]
}

fn corefile(ports: &Ports) -> String {
    format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    whoami\n    prometheus 127.0.0.1:{metrics}\n    \
         ready 127.0.0.1:{ready}\n}}\n",
        dns = ports.dns,
        metrics = ports.metrics,
        ready = ports.ready,
    )
}

fn start(ports: &Ports, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with_args(&corefile(ports), &flags);
    wait_ready(ports.ready);
    server
}

/// Without client authentication: the scrape is HTTPS (TLS 1.3 by default), and
/// parses; plain HTTP and TLS 1.2 get nothing; `/ready` stays plain HTTP.
#[test]
fn metrics_over_tls() {
    let pki = Pki::new();
    let ports = Ports::new();
    let server = start(&ports, &pki.flags(&[]));
    let answer = udp_exchange(ports.dns(), &query(5, "me.example.", RecordType::A, false));
    assert_eq!(
        answer.map(|a| a.response_code()),
        Some(ResponseCode::NoError)
    );
    let scrape = curl(&pki, ports.metrics, &[]);
    assert!(scrape.status.success(), "{scrape:?}\n{}", server.log());
    let body = String::from_utf8_lossy(&scrape.stdout).to_string();
    let parsed = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("exposition");
    assert!(parsed
        .samples
        .iter()
        .any(|s| s.metric == "coredns_build_info"));
    // The plugin that wrote the answer labels it, as in CoreDNS.
    let whoami = [("plugin", "whoami"), ("rcode", "NOERROR")];
    assert_eq!(value(&parsed, "coredns_dns_responses_total", &whoami), 1.0);
    assert!(http_get(ports.metrics, "/metrics").is_none_or(|(status, _)| status != 200));
    let old = curl(&pki, ports.metrics, &["--tls-max", "1.2"]);
    assert!(
        !old.status.success(),
        "TLS 1.2 accepted under the TLS13 minimum"
    );
    assert!(
        server.log().contains("listening (https)"),
        "{}",
        server.log()
    );
}

/// `RequireAndVerifyClientCert`: a scrape without a client certificate fails, one
/// with a certificate of the CA succeeds; `-tls-min-version=TLS12` lets TLS 1.2 in.
#[test]
fn client_certificates_required_and_verified() {
    let pki = Pki::new();
    let ports = Ports::new();
    let ca = format!("-tls-client-ca-file={}", pki.path("ca.pem"));
    let extra = [
        "-tls-client-auth-type=RequireAndVerifyClientCert",
        ca.as_str(),
        "-tls-min-version=TLS12",
    ];
    let server = start(&ports, &pki.flags(&extra));
    let anonymous = curl(&pki, ports.metrics, &[]);
    assert!(
        !anonymous.status.success(),
        "scraped without a client certificate"
    );
    let cert = with_client_cert(&pki);
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    let scrape = curl(&pki, ports.metrics, &cert);
    assert!(scrape.status.success(), "{scrape:?}\n{}", server.log());
    assert!(String::from_utf8_lossy(&scrape.stdout).contains("coredns_build_info"));
    let mut tls12 = cert.clone();
    tls12.extend(["--tls-max", "1.2"]);
    let old = curl(&pki, ports.metrics, &tls12);
    assert!(old.status.success(), "TLS 1.2 refused under TLS12: {old:?}");
}

/// A bad flag stops the start with an error naming the flag and the file.
#[test]
fn bad_tls_flags_are_named_at_start() {
    let pki = Pki::new();
    let ports = Ports::new();
    let missing = pki.path("missing.pem");
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![
                "-tls-enabled".into(),
                format!("-tls-cert-file={missing}"),
                format!("-tls-private-key-file={}", pki.path("server.key")),
            ],
            vec!["-tls-cert-file".into(), missing.clone()],
        ),
        (
            vec![
                "-tls-enabled".into(),
                format!("-tls-cert-file={}", pki.path("server.pem")),
                format!("-tls-private-key-file={}", pki.path("ca.pem")),
            ],
            vec!["-tls-private-key-file".into(), pki.path("ca.pem")],
        ),
        (
            pki.flags(&["-tls-client-auth-type=VerifyClientCertIfGiven"]),
            vec!["-tls-client-ca-file".into()],
        ),
        (
            pki.flags(&["-tls-client-auth-type=Sometimes"]),
            vec!["-tls-client-auth-type".into()],
        ),
    ];
    for (flags, named) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut server = Server::start_with_args(&corefile(&ports), &flags);
        let exited = server.wait_exit(Duration::from_secs(10));
        assert_eq!(exited, Some(false), "{flags:?} started: {}", server.log());
        let log = server.log();
        for word in &named {
            assert!(
                log.contains(word.as_str()),
                "{flags:?}: {word} not in\n{log}"
            );
        }
        let _ = Path::new(&missing);
    }
}
