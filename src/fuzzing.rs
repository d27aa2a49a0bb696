//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` call these), kept in the
//! library so that `tests/fuzz_corpus.rs` replays the saved corpus through exactly the
//! code libFuzzer ran. Each takes arbitrary bytes, must never panic, and asserts the
//! properties that matter on the way:
//!
//! - [`wire_query`]: the client-query reader and the two messages derived from a query
//!   (error reply, upstream query) stay in their buffers and say what they should; the
//!   same bytes as an answer: `loadbalance`'s in-place shuffle keeps its length and
//!   its records, `hosts`' local answers and `dns64`'s checks stay in bounds.
//! - [`cache_answer`]: an upstream answer accepted by the cache yields, for every client
//!   size limit, a reply that parses, carries the client's ID and question, and fits.
//! - [`corefile`]: the Corefile lexer/parser/setup (with `__PILLAR__` rendering), the
//!   plugin directives included (`hosts` and its hosts(5) text, `dns64`, `timeouts`,
//!   `loadbalance`, `debug`, `pprof`, `trace`, `template`, `rewrite`); a Corefile
//!   that parses gives its start notices, and its `template` and `rewrite` links
//!   answer and restore a few queries ([`plugin_links`]): replies parse and carry the
//!   client's question; each `cache` line sizes a shard.
//! - [`configmap`]: the kube-dns ConfigMap parser; an accepted ConfigMap renders into a
//!   Corefile that parses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use crate::cache::{write_reply, StoredAnswer};
use crate::config::{self, CacheConfig, Config, KubeDnsConfig, PillarValues};
use crate::wire::{self, flags, Rejection, HEADER_BYTES};

/// Client query reader: any bytes.
pub fn wire_query(data: &[u8]) {
    let _ = wire::split_records(data);
    let _ = wire::question_bytes(data);
    let _ = wire::is_truncated(data);
    if let Some(id) = wire::message_id(data) {
        let _ = wire::answer_matches(data, data, id);
    }
    let mut out = [0u8; 4096];
    match wire::parse_query(data) {
        Ok(q) => {
            assert!(q.question_end <= data.len());
            assert_eq!(&data[HEADER_BYTES..q.question_end], q.question());
            let _ = wire::name_to_string(q.qname);
            for limit in [12, 512, 4096] {
                let n = wire::write_error_reply(data, wire::Rcode::ServFail, &mut out[..limit]);
                assert!(n <= limit);
            }
            let n = wire::write_upstream_query(
                &q,
                7,
                crate::limits::UPSTREAM_BUFSIZE_DEFAULT,
                &mut out,
            );
            assert!(n <= out.len());
            if n > 0 {
                // What we send upstream is itself a query we would accept, same question.
                let again = wire::parse_query(&out[..n]).expect("upstream query re-parses");
                assert_eq!(again.question(), q.question());
                assert_eq!(again.id, 7);
            }
        }
        Err(Rejection::Reply(rcode)) => {
            let n = wire::write_error_reply(data, rcode, &mut out);
            assert!(n <= out.len());
            if n >= HEADER_BYTES {
                assert_eq!(wire::message_id(&out[..n]), wire::message_id(data));
            }
        }
        Err(Rejection::Drop(_)) => {}
    }
    as_answer(data);
}

/// `data` as an answer on its way back: the shuffle of `loadbalance` moves records,
/// never bytes in or out, and what decoded before decodes after to the same records.
fn as_answer(data: &[u8]) {
    let mut shuffled = data.to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rng = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    wire::shuffle_answer(&mut shuffled, &mut rng);
    assert_eq!(shuffled.len(), data.len());
    if let Ok(before) = hickory_proto::op::Message::from_vec(data) {
        let after = hickory_proto::op::Message::from_vec(&shuffled)
            .expect("a shuffled answer still decodes");
        let sorted = |m: &hickory_proto::op::Message| {
            let mut all: Vec<String> = m.all_sections().map(|r| r.to_string()).collect();
            all.sort();
            all
        };
        assert_eq!(
            sorted(&before),
            sorted(&after),
            "shuffle changed the records"
        );
    }
    let dns64 = config::Dns64Config {
        prefix: std::net::Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        prefix_len: 96,
        translate_all: false,
        allow_ipv4: true,
    };
    let _ = crate::plugin::dns64::wants_synthesis(&dns64, data);
    if let Ok(q) = wire::parse_query(data) {
        let addrs: [&[u8]; 2] = [&[192, 0, 2, 1], &[0; 16]];
        let mut out = [0u8; 512];
        for limit in [0, 12, 40, 512] {
            let records = addrs.iter().map(|a| (1u16, *a));
            let n = wire::write_local_answer(&q, 60, records, &mut out[..limit]);
            assert!(n <= limit);
        }
        if let Some(synth) = crate::plugin::dns64::synthesize(&dns64, &q, data, data, 512) {
            assert!(synth.len() <= 512);
        }
    }
}

fn cache_config() -> &'static CacheConfig {
    static CFG: OnceLock<CacheConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let config = config::parse_corefile(". {\n cache 30\n}\n", Path::new("fuzz"))
            .expect("the fuzz Corefile parses");
        config.servers[0].cache.clone().expect("a cache block")
    })
}

/// Cache answer parser and reply patcher. `data[0]` picks the client's side (EDNS, DO,
/// case of the question, hit, TTL, size limit); the rest is the upstream answer. The
/// client's question is the answer's own (when it has one), so most inputs get past
/// the question check and exercise the parser, the classifier and the patcher.
pub fn cache_answer(data: &[u8]) {
    let Some((&control, answer)) = data.split_first() else {
        return;
    };
    let question =
        wire::question_bytes(answer).unwrap_or(b"\x07example\x03com\x00\x00\x01\x00\x01");
    let mut query = Vec::with_capacity(HEADER_BYTES + question.len() + 11);
    let edns = control & 1 != 0;
    query.extend_from_slice(&[0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    let start = query.len();
    query.extend_from_slice(question);
    if control & 2 != 0 {
        // 0x20 mixed case: the reply must carry the client's spelling.
        for byte in &mut query[start..] {
            if byte.is_ascii_lowercase() {
                *byte = byte.to_ascii_uppercase();
            }
        }
    }
    if edns {
        let do_bit = if control & 4 != 0 { 0x80 } else { 0 };
        query.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, do_bit, 0, 0, 0]);
    }
    let Ok(q) = wire::parse_query(&query) else {
        return;
    };
    let Ok(stored) = StoredAnswer::from_upstream(answer, &q, cache_config()) else {
        return;
    };
    let hit = control & 8 != 0;
    let ttl = u32::from(control >> 4) * 97;
    let mut out = vec![0u8; crate::limits::MESSAGE_BYTES_MAX];
    for max_len in [12, 100, 512, 1232, 4096, crate::limits::MESSAGE_BYTES_MAX] {
        let n = write_reply(&stored, &q, ttl, hit, &mut out, max_len);
        assert!(n <= max_len, "reply of {n} bytes over the limit {max_len}");
        if n == 0 {
            continue;
        }
        check_reply(&q, &out[..n], ttl);
    }
}

/// What a client must be able to rely on in any reply we serve from the cache.
fn check_reply(q: &wire::Query<'_>, reply: &[u8], ttl: u32) {
    use hickory_proto::op::{Message, MessageType};
    assert_eq!(wire::message_id(reply), Some(q.id));
    assert_eq!(wire::question_bytes(reply), Some(q.question()));
    let header_flags = u16::from_be_bytes([reply[2], reply[3]]);
    assert!(header_flags & flags::QR != 0);
    let msg = Message::from_vec(reply).expect("a reply served from cache parses");
    assert_eq!(msg.message_type(), MessageType::Response);
    assert_eq!(msg.queries().len(), 1);
    assert_eq!(u16::from(msg.queries()[0].query_type()), q.qtype);
    assert_eq!(msg.extensions().is_some(), q.edns.is_some());
    assert!(msg.all_sections().all(|r| r.ttl() == ttl));
}

/// Corefile text (UTF-8 only), rendered through the `__PILLAR__` template first when
/// it uses placeholders, then parsed.
pub fn corefile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "IP" => Some("10.0.0.10".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    if let Some(config) = parse_safely(text, &env) {
        let _ = config.notices();
        plugin_links(&config, data);
        // Every accepted `cache` line (serve_stale's durations and TTLs included)
        // sizes a shard without overflowing.
        for cache in config.servers.iter().filter_map(|s| s.cache.as_ref()) {
            let shard = crate::cache::Shard::with_share(cache, 2);
            assert!(shard.is_empty() && shard.bytes_max() > 0);
        }
    }
    // The same text as a hosts(5) file: every entry has names, each fully qualified.
    let root = [config::Zone { name: ".".into() }];
    let (entries, _) = config::parse_hosts_text(text, &root);
    assert!(entries
        .iter()
        .all(|e| !e.names.is_empty() && e.names.iter().all(|n| n.ends_with('.'))));
    if text.contains("__PILLAR__") {
        if let Ok(rendered) =
            config::render_corefile(text, &pillar_values(&KubeDnsConfig::default()))
        {
            let _ = parse_safely(&rendered, &env);
        }
    }
}

/// The `template` and `rewrite` links of each block of `config`, alone, on queries
/// for a few names (one made of the input's bytes) and types: a template's answer,
/// and a rewritten query's answer (a CNAME to the rewritten name) once restored, must
/// parse, fit, and carry the client's ID and question.
pub fn plugin_links(config: &Config, data: &[u8]) {
    use crate::plugin::{Flow, Request, Rewrite, Template, Trail};
    let stats = crate::telemetry::ShardStats::default();
    let label: Vec<u8> = data.iter().copied().filter(|b| *b != 0).take(63).collect();
    let mut names: Vec<Vec<u8>> = vec![b"\x03www\x07example\x03org\x00".to_vec(), b"\x00".to_vec()];
    if !label.is_empty() {
        let mut name = vec![label.len() as u8];
        name.extend(&label);
        name.extend(b"\x07example\x03org\x00");
        names.push(name);
    }
    for block in &config.servers {
        let (template, rewrite) = (Template::new(block), Rewrite::new(block));
        if template.is_none() && rewrite.is_none() {
            continue;
        }
        names.extend(
            block
                .zones
                .iter()
                .filter_map(|z| wire::name::zone_to_wire(&z.name)),
        );
        for name in &names {
            for qtype in [1u16, 16, 28, 255] {
                let packet = wire::simple_query(0x4242, name, qtype, true);
                let Ok(query) = wire::parse_query(&packet) else {
                    continue;
                };
                let req = Request {
                    query: &query,
                    client: ([10, 0, 0, 1], 5353).into(),
                    transport: crate::upstream::Transport::Udp,
                    endpoint: 0,
                    block: 0,
                    zone: 0,
                    max_len: 512,
                    now: std::time::Instant::now(),
                    stats: &stats,
                };
                let mut out = [0u8; 512];
                if let Some(template) = &template {
                    if let Flow::Answer(len, _) = template.serve(&req, &mut out) {
                        check_plugin_reply(&query, out.get(..len).unwrap_or_default());
                    }
                }
                let mut trail = Trail::default();
                if let Some(rewrite) = &rewrite {
                    rewrite_round_trip(rewrite, &req, &mut trail, &mut out);
                }
            }
        }
    }
}

/// A rewritten query answered with a CNAME to its own name, then restored.
fn rewrite_round_trip(
    rewrite: &crate::plugin::Rewrite,
    req: &crate::plugin::Request<'_>,
    trail: &mut crate::plugin::Trail,
    out: &mut [u8],
) {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::{rdata::CNAME, RData, Record};
    if let crate::plugin::Flow::Answer(len, _) = rewrite.serve(req, trail, out) {
        check_plugin_reply(req.query, out.get(..len).unwrap_or_default());
        return;
    }
    let Some(rewritten) = trail.rewrite.get() else {
        return;
    };
    let packet = rewritten.packet.as_deref().unwrap_or(req.query.packet);
    let Ok(asked) = Message::from_vec(packet) else {
        panic!("a rewritten query must parse");
    };
    let mut answer = asked.clone();
    answer.set_message_type(MessageType::Response);
    if let Some(q) = asked.queries().first() {
        let target = RData::CNAME(CNAME(q.name().clone()));
        answer.add_answer(Record::from_rdata(q.name().clone(), 30, target));
    }
    let Ok(bytes) = answer.to_vec() else {
        return;
    };
    let Some(room) = out.get_mut(..) else {
        return;
    };
    let Some(dst) = room.get_mut(..bytes.len()) else {
        return;
    };
    dst.copy_from_slice(&bytes);
    let len = rewrite.back(trail, room, bytes.len());
    check_plugin_reply(req.query, out.get(..len).unwrap_or_default());
}

/// A reply a plugin wrote for `q`: fits the client's 512 bytes, parses, the
/// client's ID and question bytes.
fn check_plugin_reply(q: &wire::Query<'_>, reply: &[u8]) {
    assert!(reply.len() <= 512);
    if reply.is_empty() {
        return;
    }
    assert_eq!(wire::message_id(reply), Some(q.id));
    assert_eq!(
        wire::question_bytes(reply),
        Some(q.question()),
        "the client's question"
    );
    assert!(
        hickory_proto::op::Message::from_vec(reply).is_ok(),
        "the reply parses"
    );
}

/// Parses Corefile text, refusing inputs that would read device files (a fuzzer
/// finds `forward . /dev/stdin` quickly, and reading it would block).
fn parse_safely(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<Config> {
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return None;
    }
    config::parse_corefile_with_env(text, Path::new("/nonexistent/fuzz/Corefile"), env).ok()
}

const LOCAL_IPS: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 20, 10)),
    IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 10)),
];

fn pillar_values(kube_dns: &KubeDnsConfig) -> PillarValues<'_> {
    PillarValues {
        local_ips: &LOCAL_IPS,
        cluster_dns: Some("10.96.0.10"),
        cluster_dns_var: "KUBE_DNS_UPSTREAM_SERVICE_HOST",
        dns_port: 53,
        kube_dns,
        prometheus_endpoint: ":9253",
    }
}

/// The template node-cache ships, cut to what the ConfigMap changes.
const TEMPLATE: &str = "cluster.local:53 {\n    errors\n    cache 30\n    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__\n    forward . __PILLAR__CLUSTER__DNS__ {\n        force_tcp\n    }\n}\n.:53 {\n    errors\n    cache 30\n    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__\n    forward . __PILLAR__UPSTREAM__SERVERS__ {\n        force_tcp\n    }\n}\n";

/// kube-dns ConfigMap: `data` split on NUL into the values of `stubDomains`,
/// `upstreamNameservers` and an unrelated key. An accepted ConfigMap must render into a
/// Corefile that parses: otherwise node-cache mode would accept a ConfigMap and then
/// fail to serve it.
pub fn configmap(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let mut files = BTreeMap::new();
    for key in ["stubDomains", "upstreamNameservers", "federations"] {
        if let Some(value) = parts.next() {
            files.insert(key.to_string(), value.to_string());
        }
    }
    let Ok(kube_dns) = config::parse_kube_dns(&files) else {
        return;
    };
    let rendered =
        config::render_corefile(TEMPLATE, &pillar_values(&kube_dns)).expect("the template renders");
    let env = |_: &str| None;
    if let Err(err) =
        config::parse_corefile_with_env(&rendered, Path::new("/nonexistent/fuzz/Corefile"), &env)
    {
        // The default upstream (/etc/resolv.conf) may be unreadable or empty here.
        let text = err.to_string();
        assert!(
            text.contains("resolv.conf"),
            "accepted ConfigMap renders a bad Corefile: {text}\n{rendered}"
        );
    }
}
