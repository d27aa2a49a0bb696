//! `forward` to `tls://` upstreams (DNS over TLS, RFC 7858) against a real DoT
//! server: unbound (knotd 3.2 serves no TLS) with a certificate made here by rcgen,
//! serving the `test.` names itself. The certificate's name and CA are checked: a
//! wrong name or an unknown CA gives SERVFAIL, never an answer in clear text.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tempfile::TempDir;

use crate::client;
use crate::harness::{free_port, Cache};
use testkit::process::find_program;

/// The name in the server's certificate (with the IP address 127.0.0.1).
const SERVER_NAME: &str = "dns.test";

/// A CA, a server certificate it signed, and a client certificate, as PEM files.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let leaf = |names: Vec<String>, ip: bool| {
            let mut params = CertificateParams::new(names).expect("params");
            if ip {
                let ip = "127.0.0.1".parse().expect("ip");
                params.subject_alt_names.push(SanType::IpAddress(ip));
            }
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca, &ca_key).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(vec![SERVER_NAME.into()], true);
        let (client, client_key) = leaf(vec!["client.test".into()], false);
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
        ] {
            fs::write(dir.path().join(file), pem).expect("write PEM");
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// unbound answering `www.test.` itself, DNS over TLS on TCP (plain DNS on UDP,
/// which the tests use only to see it up); everything else refused, so it never
/// asks anyone.
struct Unbound {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Unbound {
    fn start(pki: &Pki) -> Unbound {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  tls-port: {port}\n  tls-service-pem: \"{pem}\"\n  \
             tls-service-key: \"{key}\"\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  \
             directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  \
             num-threads: 1\n  module-config: \"iterator\"\n  access-control: 127.0.0.0/8 allow\n  \
             local-zone: \".\" refuse\n  local-zone: \"test.\" static\n  \
             local-data: \"www.test. 300 IN A 192.0.2.1\"\n  local-data: \"www.test. 300 IN A 192.0.2.2\"\n",
            pem = pki.path("server.pem"),
            key = pki.path("server.key"),
            dir = dir.path().display(),
        );
        let conf_path = dir.path().join("unbound.conf");
        fs::write(&conf_path, conf).expect("write unbound.conf");
        let log = fs::File::create(dir.path().join("unbound.log")).expect("log");
        let child = Command::new(find_program("unbound", "unbound"))
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting unbound");
        let mut unbound = Unbound {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        unbound.wait_ready();
        unbound
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let query = client::query("www.test.", RecordType::A);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("unbound exited: {status}: {}", self.log());
            }
            if client::udp_try(self.addr, &query, Duration::from_millis(200)).is_some() {
                return;
            }
        }
        panic!("unbound did not answer within 10 s: {}", self.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(self._dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Corefile forwarding everything to `to` with `options`.
fn corefile(to: &str, options: &[String]) -> String {
    let mut text = format!(".:$PORT {{\n    bind 127.0.0.1\n    forward . {to} {{\n");
    for option in options {
        text.push_str(&format!("        {option}\n"));
    }
    text.push_str("    }\n}\n");
    text
}

fn ask(cache: &Cache) -> hickory_proto::op::Message {
    client::udp(cache.addr(), &client::query("www.test.", RecordType::A))
}

/// A UDP client's query goes to unbound over TLS: with the CA and the name given
/// by `tls_servername`, by `%NAME`, or taken from the IP address; with a client
/// certificate too.
fn forward_tls_upstream_answers() {
    let pki = Pki::new();
    let unbound = Unbound::start(&pki);
    let (port, ca) = (unbound.addr.port(), pki.path("ca.pem"));
    let cases = [
        (
            format!("tls://127.0.0.1:{port}"),
            vec![format!("tls {ca}"), format!("tls_servername {SERVER_NAME}")],
        ),
        (
            format!("tls://127.0.0.1%{SERVER_NAME}:{port}"),
            vec![format!("tls {ca}")],
        ),
        (format!("tls://127.0.0.1:{port}"), vec![format!("tls {ca}")]),
        (
            format!("tls://127.0.0.1:{port}"),
            vec![format!(
                "tls {} {} {ca}",
                pki.path("client.pem"),
                pki.path("client.key")
            )],
        ),
    ];
    for (to, options) in &cases {
        let cache = Cache::start(&corefile(to, options), 1);
        for round in 0..2 {
            let reply = ask(&cache);
            assert_eq!(
                reply.response_code(),
                ResponseCode::NoError,
                "{to} {options:?}"
            );
            assert_eq!(reply.answers().len(), 2, "{to} {options:?} #{round}");
        }
    }
    assert!(Path::new(&ca).exists());
}

/// A certificate for another name, or from a CA not trusted (the system's CAs do not
/// know ours): SERVFAIL, the query never sent in clear text.
fn forward_tls_refuses_an_unverified_upstream() {
    let pki = Pki::new();
    let unbound = Unbound::start(&pki);
    let to = format!("tls://127.0.0.1:{}", unbound.addr.port());
    let ca = pki.path("ca.pem");
    for options in [
        vec![format!("tls {ca}"), "tls_servername other.test".to_string()],
        vec!["tls".to_string(), format!("tls_servername {SERVER_NAME}")],
        vec![],
    ] {
        let text = corefile(&to, &[options.clone(), vec!["max_fails 0".into()]].concat());
        let cache = Cache::start(&text, 1);
        let reply = ask(&cache);
        assert_eq!(reply.response_code(), ResponseCode::ServFail, "{options:?}");
    }
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    forward_tls_upstream_answers,
    forward_tls_refuses_an_unverified_upstream,
);
