//! Rendering the manifests with `deploy/kubernetes/render.sh` and validating each
//! document: the Kubernetes kinds through their `k8s-openapi` types, the Cilium kinds
//! through [`super::cilium`]. serde ignores unknown fields, so validation re-serializes
//! the typed value and refuses any field of the document that did not survive: a typo
//! (`hostNetwrk`) fails instead of being dropped by the API server.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Iptables,
    Ipvs,
    CiliumLrp,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Iptables, Mode::Ipvs, Mode::CiliumLrp];

    /// The render.sh argument and the directory of the committed variant.
    pub fn dir(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Ipvs => "ipvs",
            Mode::CiliumLrp => "cilium-lrp",
        }
    }
}

/// One render: its YAML text and documents (as JSON values).
pub struct Rendered {
    pub mode: Mode,
    pub args: Vec<String>,
    pub text: String,
    pub docs: Vec<Value>,
}

impl Rendered {
    pub fn label(&self) -> String {
        format!("{} {}", self.mode.dir(), self.args.join(" "))
    }

    /// The first document of `kind`.
    pub fn doc(&self, kind: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("{}: no {kind}", self.label()))
    }

    /// The `kind` document named `name`, typed.
    pub fn find<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let doc = self
            .docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.label()));
        serde_json::from_value(doc.clone()).unwrap()
    }
}

pub fn kubernetes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// `render.sh MODE ARGS` (the kube-dns IP given, so kubectl is never asked).
pub fn render(mode: Mode, args: &[&str]) -> Rendered {
    let out = Command::new(kubernetes_dir().join("render.sh"))
        .arg(mode.dir())
        .args(["--kube-dns", "10.96.0.10"])
        .args(args)
        .output()
        .expect("run render.sh");
    assert!(
        out.status.success(),
        "render.sh {}: {}",
        mode.dir(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Rendered {
        mode,
        args: args.iter().map(|a| a.to_string()).collect(),
        docs: parse_docs(&text),
        text,
    }
}

pub fn read_committed(mode: Mode) -> Rendered {
    let path = kubernetes_dir().join(mode.dir()).join("nodelocaldns.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Rendered {
        mode,
        args: vec!["(committed)".into()],
        docs: parse_docs(&text),
        text,
    }
}

/// Every non-empty document of a multi-document YAML stream.
pub fn parse_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("YAML: {e}\n{text}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Validates one document against the schema of its kind.
pub fn validate(doc: &Value) -> Result<(), String> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    if doc["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        return Err("metadata.name missing".into());
    }
    match (api, kind) {
        ("v1", "ServiceAccount") => strict::<ServiceAccount>(doc),
        ("v1", "Service") => strict::<Service>(doc),
        ("v1", "ConfigMap") => strict::<ConfigMap>(doc),
        ("apps/v1", "DaemonSet") => strict::<DaemonSet>(doc),
        ("cilium.io/v2", "CiliumLocalRedirectPolicy") => {
            strict::<super::cilium::LocalRedirectPolicy>(doc)
        }
        ("cilium.io/v2", "CiliumNetworkPolicy") => strict::<super::cilium::NetworkPolicy>(doc),
        _ => Err(format!("no schema for {api} {kind}")),
    }
}

/// Deserializes `doc` into `T` and refuses any field or value lost on the way back.
fn strict<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    same(doc, &back, "")
}

fn same(doc: &Value, back: &Value, path: &str) -> Result<(), String> {
    match (doc, back) {
        (Value::Object(fields), Value::Object(kept)) => {
            for (name, value) in fields {
                let here = format!("{path}.{name}");
                let kept = kept
                    .get(name)
                    .ok_or_else(|| format!("unknown field {here}"))?;
                same(value, kept, &here)?;
            }
            Ok(())
        }
        (Value::Array(items), Value::Array(kept)) if items.len() == kept.len() => items
            .iter()
            .zip(kept)
            .enumerate()
            .try_for_each(|(i, (a, b))| same(a, b, &format!("{path}[{i}]"))),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a} does not validate (read back as {b})")),
    }
}
