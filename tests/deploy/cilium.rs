//! A small hand-written schema of the Cilium CRD fields our manifests use (cilium.io/v2
//! `CiliumLocalRedirectPolicy` and `CiliumNetworkPolicy`), not the full CRDs: every
//! struct refuses unknown fields, so a misspelt or unsupported field fails. Field names
//! and shapes follow Cilium's API reference (pkg/k8s/apis/cilium.io/v2).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalRedirectPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: RedirectSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedirectSpec {
    pub redirect_frontend: Frontend,
    pub redirect_backend: Backend,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_redirect_from_backend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Frontend {
    pub service_matcher: ServiceMatcher,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMatcher {
    pub service_name: String,
    pub namespace: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    pub local_endpoint_selector: Selector,
    pub to_ports: Vec<BackendPort>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendPort {
    pub port: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Protocol {
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "ANY")]
    Any,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PolicySpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    pub endpoint_selector: Selector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_endpoints: Vec<Selector>,
    #[serde(default, rename = "toFQDNs", skip_serializing_if = "Vec::is_empty")]
    pub to_fqdns: Vec<FqdnSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_ports: Vec<PortRule>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FqdnSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_pattern: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortRule {
    pub ports: Vec<PortProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<L7Rules>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortProtocol {
    pub port: String,
    pub protocol: Protocol,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L7Rules {
    pub dns: Vec<FqdnSelector>,
}

/// The redirect takes the kube-dns Service to the node-local-dns pods, on ports the
/// container declares under those names.
pub fn check_redirect(doc: &Value, container: &Container, pod_labels: &Value) {
    let policy: LocalRedirectPolicy = serde_json::from_value(doc.clone()).unwrap();
    let spec = policy.spec;
    assert_eq!(
        spec.redirect_frontend.service_matcher.service_name,
        "kube-dns"
    );
    assert_eq!(
        spec.redirect_frontend.service_matcher.namespace,
        "kube-system"
    );
    assert_eq!(policy.metadata.namespace.as_deref(), Some("kube-system"));
    let labels = spec
        .redirect_backend
        .local_endpoint_selector
        .match_labels
        .unwrap();
    for (key, value) in &labels {
        assert_eq!(
            pod_labels[key],
            value.as_str(),
            "selector {key} matches the pods"
        );
    }
    let mut protocols = Vec::new();
    for port in &spec.redirect_backend.to_ports {
        let name = port.name.as_deref().expect("named port");
        let declared = container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the container declares no port {name}"));
        assert_eq!(port.port, declared.container_port.to_string());
        let protocol = match port.protocol {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
            Protocol::Any => "ANY",
        };
        assert_eq!(declared.protocol.as_deref(), Some(protocol), "{name}");
        protocols.push(port.protocol);
    }
    assert!(protocols.contains(&Protocol::Udp) && protocols.contains(&Protocol::Tcp));
}

/// The DNS egress rule (the one with L7 `dns` rules, which FQDN policies need) allows
/// both kube-dns and node-local-dns in kube-system, on port 53.
pub fn check_network_policy(doc: &Value) {
    let policy: NetworkPolicy = serde_json::from_value(doc.clone()).unwrap();
    let dns_rule = policy
        .spec
        .egress
        .iter()
        .find(|r| r.to_ports.iter().any(|p| p.rules.is_some()))
        .expect("an egress rule with DNS (L7) rules");
    let apps: Vec<String> = dns_rule
        .to_endpoints
        .iter()
        .filter_map(|s| s.match_labels.as_ref())
        .filter(|l| {
            l.get("k8s:io.kubernetes.pod.namespace").map(String::as_str) == Some("kube-system")
        })
        .filter_map(|l| l.get("k8s:k8s-app").cloned())
        .collect();
    assert!(apps.contains(&"kube-dns".to_string()), "{apps:?}");
    assert!(apps.contains(&"node-local-dns".to_string()), "{apps:?}");
    assert!(dns_rule
        .to_ports
        .iter()
        .flat_map(|p| &p.ports)
        .any(|p| p.port == "53"));
    assert!(
        policy.spec.egress.iter().any(|r| !r.to_fqdns.is_empty()),
        "an example toFQDNs rule"
    );
}
