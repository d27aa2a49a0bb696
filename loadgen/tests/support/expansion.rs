//! Rebuilds the lookups of a pod-model run from a packet capture (decoded by
//! tshark) and checks them against the ndots:5 search rules, independently of
//! dnsload's own accounting: each client port is one pod in one namespace; a
//! lookup starts with `NAME.NS.svc.cluster.local`, moves to the next candidate only
//! after both answers of a step came back without an address, and stops at the
//! first step with one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::tshark_fields;

/// One DNS packet.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Capture time, seconds.
    pub time: f64,
    /// The client's port (source of a query, destination of an answer).
    pub client_port: u16,
    /// Message ID.
    pub id: u16,
    /// QR bit.
    pub response: bool,
    /// Question name.
    pub name: String,
    /// Question type.
    pub qtype: u16,
    /// Answer rcode (0 for queries).
    pub rcode: u8,
    /// Answer records.
    pub answers: u16,
}

/// The DNS packets to and from `server_port` in `pcap`, in capture order.
pub fn packets(pcap: &Path, server_port: u16) -> Vec<Packet> {
    let rows = tshark_fields(
        pcap,
        server_port,
        &[
            "frame.time_epoch",
            "udp.srcport",
            "udp.dstport",
            "dns.id",
            "dns.flags.response",
            "dns.qry.name",
            "dns.qry.type",
            "dns.flags.rcode",
            "dns.count.answers",
        ],
    );
    rows.into_iter()
        .map(|r| {
            let f = |i: usize| r.get(i).map(String::as_str).unwrap_or("");
            let (src, dst): (u16, u16) = (f(1).parse().unwrap(), f(2).parse().unwrap());
            let response = matches!(f(4), "1" | "True" | "true");
            Packet {
                time: f(0).parse().unwrap(),
                client_port: if dst == server_port { src } else { dst },
                id: u16::from_str_radix(f(3).trim_start_matches("0x"), 16).unwrap(),
                response,
                name: f(5).to_ascii_lowercase(),
                qtype: f(6).parse().unwrap(),
                rcode: f(7).parse().unwrap_or(0),
                answers: f(8).parse().unwrap_or(0),
            }
        })
        .collect()
}

/// One lookup as rebuilt from the capture.
#[derive(Debug, Default)]
struct Lookup {
    candidates: Vec<String>,
    step: usize,
    asked: Vec<(u16, f64)>,
    answered: HashMap<u16, (u8, u16, f64)>,
    resolved: bool,
    done: bool,
}

impl Lookup {
    fn step_complete(&self) -> bool {
        self.asked.len() == 2 && self.answered.len() == 2
    }
}

/// What the capture shows.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Queries seen.
    pub queries: usize,
    /// Answers seen.
    pub answers: usize,
    /// Lookups rebuilt, and how many of them ended with an address.
    pub lookups: usize,
    pub resolved: usize,
    /// Steps whose AAAA left before the A's answer came (sent in parallel), and
    /// steps whose AAAA left only after it (single-request).
    pub parallel_steps: usize,
    pub sequential_steps: usize,
    /// Client port → namespace it searches.
    pub namespaces: BTreeMap<u16, String>,
    /// Steps (candidates asked) per lookup → lookups.
    pub steps_histogram: BTreeMap<usize, usize>,
}

/// glibc's candidates for `base` from namespace `ns`, ndots:5.
fn candidates(base: &str, ns: &str) -> Vec<String> {
    let search = [
        format!("{ns}.svc.cluster.local"),
        "svc.cluster.local".into(),
        "cluster.local".into(),
    ];
    let mut out: Vec<String> = search.iter().map(|d| format!("{base}.{d}")).collect();
    if base.matches('.').count() >= 5 {
        out.insert(0, base.into());
        out.pop();
    }
    out.push(base.into());
    out
}

/// Checks every packet against the rules; panics with the offending packet.
pub fn check(packets: &[Packet]) -> Expansion {
    let mut e = Expansion::default();
    let mut open: HashMap<u16, Vec<Lookup>> = HashMap::new();
    for (i, p) in packets.iter().enumerate() {
        let lookups = open.entry(p.client_port).or_default();
        let history = || {
            let port: Vec<_> = packets[..i]
                .iter()
                .filter(|q| q.client_port == p.client_port)
                .collect();
            format!("{:#?}", &port[port.len().saturating_sub(12)..])
        };
        if p.response {
            e.answers += 1;
            let l = lookups
                .iter_mut()
                .find(|l| {
                    !l.done
                        && l.candidates[l.step] == p.name
                        && l.asked.iter().any(|(t, _)| *t == p.qtype)
                        && !l.answered.contains_key(&p.qtype)
                })
                .unwrap_or_else(|| panic!("answer to no asked query: {p:?} after {}", history()));
            l.answered.insert(p.qtype, (p.rcode, p.answers, p.time));
            if l.step_complete() {
                let a_answer = l.answered[&1].2;
                let aaaa_asked = l.asked.iter().find(|(t, _)| *t == 28).unwrap().1;
                if aaaa_asked <= a_answer {
                    e.parallel_steps += 1;
                } else {
                    e.sequential_steps += 1;
                }
                let resolved = l.answered.values().any(|(rc, n, _)| *rc == 0 && *n > 0);
                if resolved || l.step + 1 == l.candidates.len() {
                    l.done = true;
                    l.resolved = resolved;
                    e.resolved += usize::from(resolved);
                    *e.steps_histogram.entry(l.step + 1).or_default() += 1;
                }
            }
            continue;
        }
        e.queries += 1;
        assert!(
            p.qtype == 1 || p.qtype == 28,
            "only A and AAAA are asked: {p:?}"
        );
        // The other query of the current step.
        if let Some(l) = lookups.iter_mut().find(|l| {
            !l.done && l.candidates[l.step] == p.name && !l.asked.iter().any(|(t, _)| *t == p.qtype)
        }) {
            l.asked.push((p.qtype, p.time));
            continue;
        }
        // The next step of a lookup whose step came back without an address.
        if let Some(l) = lookups
            .iter_mut()
            .find(|l| !l.done && l.step_complete() && l.candidates.get(l.step + 1) == Some(&p.name))
        {
            l.step += 1;
            l.asked = vec![(p.qtype, p.time)];
            l.answered.clear();
            continue;
        }
        // Else a new lookup: its first candidate is in the pod's own namespace.
        let rest = p
            .name
            .strip_suffix(".svc.cluster.local")
            .unwrap_or_else(|| {
                panic!(
                    "a lookup must start in the pod's namespace: {p:?} after {}",
                    history()
                )
            });
        let (base, ns) = rest
            .rsplit_once('.')
            .unwrap_or_else(|| panic!("a lookup must start with NAME.NS.svc.cluster.local: {p:?}"));
        let known = e
            .namespaces
            .entry(p.client_port)
            .or_insert_with(|| ns.to_owned());
        assert_eq!(known, ns, "one pod (port) searches one namespace: {p:?}");
        let candidates = candidates(base, ns);
        assert_eq!(candidates[0], p.name);
        e.lookups += 1;
        lookups.push(Lookup {
            candidates,
            asked: vec![(p.qtype, p.time)],
            ..Default::default()
        });
    }
    for (port, lookups) in &open {
        for l in lookups {
            assert!(l.done, "port {port}: lookup left unfinished: {l:?}");
        }
    }
    e
}
