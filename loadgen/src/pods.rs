//! The Kubernetes pod traffic model (`--pods N`, `--pod-profile FILE`): what the
//! pods of one node ask, and how their stub resolvers turn one lookup into queries.
//!
//! A pod in namespace `NS` has the search list `NS.svc.DOMAIN svc.DOMAIN DOMAIN`
//! (plus the node's own search domains) and `ndots:5`. An application's lookup of
//! `NAME` is expanded through that list ([`candidates`]); each candidate is asked as
//! an A and an AAAA query in parallel on the pod's one socket, and the next
//! candidate is tried until a step ends the lookup ([`Resolver::step`]). The names
//! looked up form a Zipf working set of in-cluster services (short, `svc.ns` and
//! FQDN forms) and outside names ([`PodModel::pick`]). The knobs and the public
//! numbers behind their defaults are in the loadgen README.
//!
//! This module is pure: the load loop that sends the queries is [`crate::lookups`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{
    NAMESPACES_MAX, NDOTS_MAX, OUTSIDE_NAMES_MAX, PROFILE_BYTES_MAX, SEARCH_DOMAINS_MAX,
    SERVICES_MAX,
};
use crate::wire;

/// A query type the model asks: A first, then AAAA (glibc's order).
pub const QTYPES: [u16; 2] = [1, 28];

/// Why a pod profile cannot be used. Every variant names the file or knob.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than any sensible profile.
    #[error("{path}: larger than {PROFILE_BYTES_MAX} bytes, not a pod profile")]
    TooLarge { path: PathBuf },
    /// The file is not TOML, or has unknown or mistyped knobs.
    #[error("{path}: not a pod profile: {message}")]
    Parse { path: PathBuf, message: String },
    /// A knob is out of its range.
    #[error("pod profile: {knob} = {value}: {reason}")]
    Knob {
        knob: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A domain is not a valid DNS name.
    #[error("pod profile: {knob}: {source}")]
    Name {
        knob: &'static str,
        source: wire::NameError,
    },
}

/// Which stub resolver the pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Resolver {
    /// glibc: names with `ndots` or more dots are tried as they are first, then
    /// through the search list; a step with an address ends the lookup; NXDOMAIN,
    /// NODATA and SERVFAIL move on to the next candidate.
    Glibc,
    /// musl: names with `ndots` or more dots are tried only as they are; only
    /// NXDOMAIN moves on; NODATA and SERVFAIL end the lookup.
    Musl,
}

/// The knobs, as written in a profile file (TOML); every one has a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Pods on the node, each with its own socket.
    pub pods: usize,
    /// Namespaces the pods are spread over (pod `i` is in namespace `i % n`).
    pub namespaces: usize,
    /// Lookups per second per pod (the total rate is this times `pods` unless
    /// `--rate` gives it).
    pub lookups_per_pod_per_sec: f64,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The resolver's `ndots`.
    pub ndots: usize,
    /// The node's own search domains, appended after the cluster's three.
    pub node_search: Vec<String>,
    /// glibc or musl.
    pub resolver: Resolver,
    /// glibc's `options single-request`: AAAA only after the A answer.
    pub single_request: bool,
    /// Services per namespace (`svc0`, `svc1`, ... in every namespace).
    pub services_per_namespace: usize,
    /// Distinct outside names (`host0.ZONE`, ...).
    pub outside_names: usize,
    /// Zone of the outside names.
    pub outside_zone: String,
    /// Share of lookups for outside names.
    pub outside_share: f64,
    /// Share of in-cluster lookups written as a full name without the trailing dot
    /// (`svc.ns.svc.cluster.local`).
    pub fqdn_share: f64,
    /// Share of the other in-cluster lookups for a service in the pod's own
    /// namespace (short name `svc`); the rest are written `svc.ns`.
    pub same_namespace_share: f64,
    /// Zipf exponent of name popularity.
    pub zipf: f64,
    /// Every outside lookup is a new name (`hostN-cW-K.ZONE`, answered by the
    /// zone's wildcard): the all-miss load of unique names.
    pub churn: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            pods: 110,
            namespaces: 10,
            lookups_per_pod_per_sec: 5.0,
            cluster_domain: "cluster.local".into(),
            ndots: 5,
            node_search: Vec::new(),
            resolver: Resolver::Glibc,
            single_request: false,
            services_per_namespace: 20,
            outside_names: 1000,
            outside_zone: "example.com".into(),
            outside_share: 0.3,
            fqdn_share: 0.1,
            same_namespace_share: 0.6,
            zipf: 1.0,
            churn: false,
        }
    }
}

impl Profile {
    /// Reads a profile file (TOML).
    pub fn read(path: &Path) -> Result<Self, ProfileError> {
        let read_err = |source| ProfileError::Read {
            path: path.into(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > PROFILE_BYTES_MAX {
            return Err(ProfileError::TooLarge { path: path.into() });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        toml::from_str(&text).map_err(|e| ProfileError::Parse {
            path: path.into(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }
}

/// How a lookup's name is written, which decides how far the expansion goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `svc`: a service of the pod's own namespace.
    Short,
    /// `svc.ns`: a service of any namespace.
    Namespaced,
    /// `svc.ns.svc.DOMAIN` without the trailing dot.
    Fqdn,
    /// `hostN.ZONE`.
    Outside,
}

/// A validated profile with its working set and search lists.
#[derive(Debug, Clone, Serialize)]
pub struct PodModel {
    /// The knobs as given.
    pub profile: Profile,
    /// Search list per namespace.
    #[serde(skip)]
    search: Vec<Vec<String>>,
    /// Expected queries per lookup if every in-cluster name resolves at its first
    /// possible candidate and every outside name as it is.
    pub expected_queries_per_lookup: f64,
}

fn knob(knob: &'static str, value: impl ToString, reason: &'static str) -> ProfileError {
    ProfileError::Knob {
        knob,
        value: value.to_string(),
        reason,
    }
}

fn share(name: &'static str, v: f64) -> Result<(), ProfileError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(knob(name, v, "must be a share between 0 and 1"))
    }
}

fn check_domain(name: &'static str, domain: &str) -> Result<String, ProfileError> {
    let trimmed = domain.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(knob(name, "\"\"", "must be a domain name"));
    }
    wire::encode_name(trimmed, &mut Vec::new())
        .map_err(|source| ProfileError::Name { knob: name, source })?;
    Ok(trimmed.to_ascii_lowercase())
}

impl PodModel {
    /// Checks every knob.
    pub fn new(mut profile: Profile) -> Result<Self, ProfileError> {
        let p = &mut profile;
        if p.pods == 0 {
            return Err(knob("pods", 0, "must be at least 1"));
        }
        if p.namespaces == 0 || p.namespaces > NAMESPACES_MAX {
            return Err(knob(
                "namespaces",
                p.namespaces,
                "must be between 1 and 10000",
            ));
        }
        if p.namespaces > p.pods {
            return Err(knob(
                "namespaces",
                p.namespaces,
                "more namespaces than pods: some would be empty",
            ));
        }
        if !(p.lookups_per_pod_per_sec.is_finite() && p.lookups_per_pod_per_sec > 0.0) {
            return Err(knob(
                "lookups_per_pod_per_sec",
                p.lookups_per_pod_per_sec,
                "must be a positive number",
            ));
        }
        if p.ndots == 0 || p.ndots > NDOTS_MAX {
            return Err(knob(
                "ndots",
                p.ndots,
                "must be between 1 and 15 (resolv.conf caps it at 15)",
            ));
        }
        if p.node_search.len() > SEARCH_DOMAINS_MAX - 3 {
            return Err(knob(
                "node_search",
                p.node_search.len(),
                "at most 3 domains (the resolver reads 6, the cluster uses 3)",
            ));
        }
        if p.services_per_namespace == 0
            || p.services_per_namespace.saturating_mul(p.namespaces) > SERVICES_MAX
        {
            return Err(knob(
                "services_per_namespace",
                p.services_per_namespace,
                "must be at least 1, and at most 1000000 services in all",
            ));
        }
        if p.outside_names == 0 || p.outside_names > OUTSIDE_NAMES_MAX {
            return Err(knob(
                "outside_names",
                p.outside_names,
                "must be between 1 and 1000000",
            ));
        }
        share("outside_share", p.outside_share)?;
        share("fqdn_share", p.fqdn_share)?;
        share("same_namespace_share", p.same_namespace_share)?;
        if !(p.zipf.is_finite() && p.zipf > 0.0) {
            return Err(knob("zipf", p.zipf, "must be a positive number"));
        }
        p.cluster_domain = check_domain("cluster_domain", &p.cluster_domain)?;
        p.outside_zone = check_domain("outside_zone", &p.outside_zone)?;
        for d in &mut p.node_search {
            *d = check_domain("node_search", d)?;
        }
        let search = (0..p.namespaces)
            .map(|ns| search_list(&profile, ns))
            .collect();
        let expected = expected_queries(&profile);
        Ok(Self {
            profile,
            search,
            expected_queries_per_lookup: expected,
        })
    }

    /// Namespace of pod `pod`.
    pub fn namespace_of(&self, pod: usize) -> usize {
        pod % self.profile.namespaces
    }

    /// The search list of pod `pod`.
    pub fn search_of(&self, pod: usize) -> &[String] {
        self.search
            .get(self.namespace_of(pod))
            .map_or(&[], Vec::as_slice)
    }

    /// Size of the working set (services in all namespaces plus outside names).
    pub fn working_set(&self) -> usize {
        self.profile.services_per_namespace * self.profile.namespaces + self.profile.outside_names
    }

    /// The first candidates of the lookup of `name` by pod `pod`, in order.
    pub fn candidates_for(&self, pod: usize, name: &str) -> Vec<String> {
        candidates(
            name,
            self.search_of(pod),
            self.profile.ndots,
            self.profile.resolver,
        )
    }

    /// The zone files under which every name of the working set resolves:
    /// `DOMAIN.zone` (every service of every namespace, A only, as on a
    /// single-stack cluster) and `ZONE.zone` (the outside names with A and AAAA and a
    /// wildcard for `churn`), as (origin, file name, text).
    pub fn zone_files(&self) -> Vec<(String, String, String)> {
        let p = &self.profile;
        let mut cluster = zone_head(&p.cluster_domain);
        for ns in 0..p.namespaces {
            for svc in 0..p.services_per_namespace {
                let _ = writeln!(
                    cluster,
                    "svc{svc}.ns{ns}.svc A 10.{}.{}.{}",
                    (ns >> 8) & 0xff,
                    ns & 0xff,
                    svc % 250 + 1
                );
            }
        }
        let mut outside = zone_head(&p.outside_zone);
        for i in 0..p.outside_names {
            let _ = writeln!(
                outside,
                "host{i} A 192.0.2.{}\nhost{i} AAAA 2001:db8::{:x}",
                i % 250 + 1,
                i + 1
            );
        }
        outside.push_str("* A 192.0.2.254\n* AAAA 2001:db8::fe\n");
        vec![
            (
                p.cluster_domain.clone(),
                format!("{}.zone", p.cluster_domain),
                cluster,
            ),
            (
                p.outside_zone.clone(),
                format!("{}.zone", p.outside_zone),
                outside,
            ),
        ]
    }
}

fn zone_head(origin: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 30\n@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 30\n\
         @ NS ns.{origin}.\nns A 127.0.0.1\n"
    )
}

/// `NS.svc.DOMAIN svc.DOMAIN DOMAIN` and the node's domains, as kubelet writes them.
fn search_list(p: &Profile, ns: usize) -> Vec<String> {
    let d = &p.cluster_domain;
    let mut list = vec![format!("ns{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
    list.extend(p.node_search.iter().cloned());
    list
}

/// Steps (A+AAAA pairs) a name with `dots` dots takes when it resolves only at
/// search entry `hit` (`None`: only as it is), under glibc or musl.
fn steps_to(dots: usize, ndots: usize, search_len: usize, hit: Option<usize>, r: Resolver) -> f64 {
    let as_is_first = dots >= ndots;
    let steps = match (hit, as_is_first, r) {
        (None, true, _) => 1,
        (None, false, _) => search_len + 1,
        (Some(_), true, Resolver::Musl) => 1, // never searched: fails after one step
        (Some(i), true, Resolver::Glibc) => i + 2,
        (Some(i), false, _) => i + 1,
    };
    steps as f64
}

fn expected_queries(p: &Profile) -> f64 {
    let search_len = 3 + p.node_search.len();
    let domain_dots = p.cluster_domain.matches('.').count();
    let zone_dots = p.outside_zone.matches('.').count();
    let s = |dots, hit| steps_to(dots, p.ndots, search_len, hit, p.resolver);
    let fqdn = s(3 + domain_dots, None);
    let short = s(0, Some(0));
    let namespaced = s(1, Some(1));
    let outside = s(1 + zone_dots, None);
    let cluster = p.fqdn_share * fqdn
        + (1.0 - p.fqdn_share)
            * (p.same_namespace_share * short + (1.0 - p.same_namespace_share) * namespaced);
    let pairs = (1.0 - p.outside_share) * cluster + p.outside_share * outside;
    pairs * QTYPES.len() as f64
}

/// The names a stub resolver asks for `name`, in order: with fewer than `ndots`
/// dots, through the search list and then as it is; with `ndots` or more, as it is
/// first (glibc then searches; musl does not); with a trailing dot, only as it is.
pub fn candidates(name: &str, search: &[String], ndots: usize, resolver: Resolver) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_owned()];
    }
    let searched = search.iter().map(|d| format!("{name}.{d}"));
    if name.matches('.').count() >= ndots {
        let mut out = vec![name.to_owned()];
        if resolver == Resolver::Glibc {
            out.extend(searched);
        }
        return out;
    }
    let mut out: Vec<String> = searched.collect();
    out.push(name.to_owned());
    out
}

/// What one answer said: its rcode and whether it carried records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerSummary {
    /// Header rcode.
    pub rcode: u8,
    /// Answer section count.
    pub answers: u16,
}

/// What a finished step (the answers to one candidate's queries) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An address came back: the lookup is done.
    Resolved,
    /// Try the next candidate (or, after the last, the lookup fails).
    Next,
    /// The lookup ends without an address.
    Unresolved,
}

const NOERROR: u8 = 0;
const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;

impl Resolver {
    /// The outcome of a step from its answers, in query order (A, then AAAA).
    pub fn step(self, answers: &[AnswerSummary]) -> Step {
        match self {
            Resolver::Glibc => {
                if answers.iter().any(|a| a.rcode == NOERROR && a.answers > 0) {
                    Step::Resolved
                } else if answers
                    .iter()
                    .all(|a| matches!(a.rcode, NOERROR | SERVFAIL | NXDOMAIN))
                {
                    Step::Next
                } else {
                    Step::Unresolved
                }
            }
            Resolver::Musl => {
                for a in answers {
                    match a.rcode {
                        NXDOMAIN => return Step::Next,
                        NOERROR => {}
                        _ => return Step::Unresolved,
                    }
                }
                if answers.iter().any(|a| a.answers > 0) {
                    Step::Resolved
                } else {
                    Step::Unresolved
                }
            }
        }
    }
}

/// Samplers of the working set for one worker.
pub struct Picker {
    /// Service popularity within a namespace.
    services: Zipf<f64>,
    /// Outside name popularity.
    outside: Zipf<f64>,
    /// Counter for `churn` names.
    churned: u64,
    /// Worker index, in `churn` names.
    worker: usize,
}

impl Picker {
    /// Samplers for `model`.
    pub fn new(model: &PodModel, worker: usize) -> Self {
        let p = &model.profile;
        // Both sizes are at least 1 and the exponent positive (checked by PodModel::new).
        let zipf = |n: usize| Zipf::new(n as u64, p.zipf).expect("validated Zipf parameters");
        Self {
            services: zipf(p.services_per_namespace),
            outside: zipf(p.outside_names),
            churned: 0,
            worker,
        }
    }

    /// The name a pod looks up next, and how it is written (a short name means a
    /// service of the asking pod's own namespace).
    pub fn pick(&mut self, model: &PodModel, rng: &mut SmallRng) -> (String, Form) {
        let p = &model.profile;
        if rng.gen_bool(p.outside_share) {
            let i = self.outside.sample(rng) as u64 - 1;
            let zone = &p.outside_zone;
            if p.churn {
                self.churned += 1;
                let name = format!("host{i}-c{}-{}.{zone}", self.worker, self.churned);
                return (name, Form::Outside);
            }
            return (format!("host{i}.{zone}"), Form::Outside);
        }
        let svc = self.services.sample(rng) as u64 - 1;
        if rng.gen_bool(p.fqdn_share) {
            let ns = rng.gen_range(0..p.namespaces);
            let name = format!("svc{svc}.ns{ns}.svc.{}", p.cluster_domain);
            return (name, Form::Fqdn);
        }
        if rng.gen_bool(p.same_namespace_share) {
            return (format!("svc{svc}"), Form::Short);
        }
        let ns = rng.gen_range(0..p.namespaces);
        (format!("svc{svc}.ns{ns}"), Form::Namespaced)
    }
}

/// Writes [`PodModel::zone_files`] into `dir`; returns the (origin, path) pairs.
pub fn write_zones(model: &PodModel, dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (origin, file, text) in model.zone_files() {
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        written.push((origin, path));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model() -> PodModel {
        PodModel::new(Profile::default()).unwrap()
    }

    #[test]
    fn ndots_5_expansion_follows_the_search_list() {
        let m = model();
        let pod = 13; // namespace 3
        assert_eq!(
            m.candidates_for(pod, "svc1"),
            [
                "svc1.ns3.svc.cluster.local",
                "svc1.svc.cluster.local",
                "svc1.cluster.local",
                "svc1"
            ]
        );
        // Four dots are fewer than five: still searched first.
        assert_eq!(
            m.candidates_for(pod, "svc1.ns2.svc.cluster.local")[0],
            "svc1.ns2.svc.cluster.local.ns3.svc.cluster.local"
        );
        assert_eq!(m.candidates_for(pod, "a.b.c.d.e.f").len(), 4);
        assert_eq!(m.candidates_for(pod, "a.b.c.d.e.f")[0], "a.b.c.d.e.f");
        assert_eq!(m.candidates_for(pod, "x.example.com."), ["x.example.com"]);
        let musl = candidates("a.b.c.d.e.f", m.search_of(0), 5, Resolver::Musl);
        assert_eq!(musl, ["a.b.c.d.e.f"]);
    }

    #[test]
    fn step_outcomes_follow_each_libc() {
        let ok = AnswerSummary {
            rcode: 0,
            answers: 1,
        };
        let nodata = AnswerSummary {
            rcode: 0,
            answers: 0,
        };
        let nx = AnswerSummary {
            rcode: 3,
            answers: 0,
        };
        let refused = AnswerSummary {
            rcode: 5,
            answers: 0,
        };
        assert_eq!(Resolver::Glibc.step(&[ok, nodata]), Step::Resolved);
        assert_eq!(Resolver::Glibc.step(&[nx, nx]), Step::Next);
        assert_eq!(Resolver::Glibc.step(&[nodata, nodata]), Step::Next);
        assert_eq!(Resolver::Glibc.step(&[refused, nx]), Step::Unresolved);
        assert_eq!(Resolver::Musl.step(&[ok, nodata]), Step::Resolved);
        assert_eq!(Resolver::Musl.step(&[nodata, nodata]), Step::Unresolved);
        assert_eq!(Resolver::Musl.step(&[nx, nx]), Step::Next);
    }

    #[test]
    fn expected_queries_of_the_defaults() {
        // 0.7 in-cluster x (0.1 x 4 + 0.9 x (0.6 x 1 + 0.4 x 2)) + 0.3 outside x 4
        // = 2.362 pairs = 4.724 queries.
        let e = model().expected_queries_per_lookup;
        assert!((e - 4.724).abs() < 1e-9, "{e}");
    }

    #[test]
    fn picks_cover_every_form_and_exist_in_the_zones() {
        let m = model();
        let mut picker = Picker::new(&m, 0);
        let mut rng = SmallRng::seed_from_u64(1);
        let zones: String = m.zone_files().into_iter().map(|(_, _, z)| z).collect();
        let mut forms = std::collections::HashSet::new();
        for _ in 0..2000 {
            let (name, form) = picker.pick(&m, &mut rng);
            forms.insert(format!("{form:?}"));
            let first = name.split('.').next().unwrap();
            assert!(zones.contains(&format!("\n{first}")), "{name}");
        }
        assert_eq!(forms.len(), 4);
    }

    #[test]
    fn bad_knobs_are_named() {
        let bad = |f: fn(&mut Profile)| {
            let mut p = Profile::default();
            f(&mut p);
            PodModel::new(p).unwrap_err().to_string()
        };
        assert!(bad(|p| p.pods = 0).contains("pods = 0"));
        assert!(bad(|p| p.namespaces = 200).contains("more namespaces than pods"));
        assert!(bad(|p| p.outside_share = 1.5).contains("outside_share"));
        assert!(bad(|p| p.cluster_domain = "a..b".into()).contains("cluster_domain"));
        assert!(bad(|p| p.ndots = 0).contains("ndots"));
    }
}
