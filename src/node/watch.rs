//! Config sync: the Corefile template, the kube-dns ConfigMap directory and the
//! Corefile itself, polled by content hash. A change of the template or the ConfigMap
//! regenerates the Corefile (node-cache's `__PILLAR__` rules, see
//! `config::pillar`); a change of the Corefile yields a new validated [`Config`] for
//! the server. Anything invalid is logged, counted as a `configmap` setup error and
//! leaves the running configuration alone.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{
    self, parse_kube_dns, read_configmap_dir, render_corefile, Config, ConfigError, KubeDnsConfig,
    PillarError, PillarValues, COREFILE_BYTES_MAX,
};

use super::metrics::{SetupError, SetupErrors};

/// Where the Corefile comes from and what fills the template.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The generated (or operator-provided) Corefile the server runs (`-conf`).
    pub corefile: PathBuf,
    /// `-basecorefile`; None when the Corefile is not generated.
    pub template: Option<PathBuf>,
    /// `-kubednscm`; None when there is no ConfigMap.
    pub configmap_dir: Option<PathBuf>,
    pub local_ips: Vec<IpAddr>,
    /// Value of `cluster_dns_var`, read once at start.
    pub cluster_dns: Option<String>,
    pub cluster_dns_var: String,
    pub dns_port: u16,
    /// `-prometheus-listen-address`, for `__PROMETHEUS__ENDPOINT__`.
    pub prometheus_endpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the Corefile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pillar(#[from] PillarError),
    #[error("the Corefile generated from {template} is invalid: {source}")]
    Generated {
        template: PathBuf,
        source: Box<ConfigError>,
    },
    #[error(transparent)]
    Corefile(Box<ConfigError>),
}

/// The state of the poll: what was last seen, so only changes cost work.
pub struct Watcher {
    sources: Sources,
    errors: Arc<SetupErrors>,
    /// Hash of the template and ConfigMap files last processed (valid or not).
    inputs_seen: Option<u64>,
    /// Hash of the Corefile last processed (valid or not).
    corefile_seen: Option<u64>,
    /// The last valid ConfigMap, used when the current one is invalid at start.
    kube_dns: KubeDnsConfig,
}

impl Watcher {
    pub fn new(sources: Sources, errors: Arc<SetupErrors>) -> Watcher {
        Watcher {
            sources,
            errors,
            inputs_seen: None,
            corefile_seen: None,
            kube_dns: KubeDnsConfig::default(),
        }
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Start-up: generate the Corefile (an invalid ConfigMap is counted and ignored;
    /// a missing template leaves the existing Corefile), then load it. Errors here
    /// are fatal: there is no running configuration to keep.
    pub fn initial(&mut self) -> Result<Config, WatchError> {
        if let Some(template) = self.sources.template.clone() {
            match read_text(&template) {
                Ok(text) => self.generate_initial(&template, &text)?,
                Err(err) => tracing::warn!(
                    %err,
                    corefile = %self.sources.corefile.display(),
                    "cannot read the Corefile template; serving the existing Corefile"
                ),
            }
        }
        let text = read_text(&self.sources.corefile)?;
        self.corefile_seen = Some(hash_of(&text));
        config::parse_corefile(&text, &self.sources.corefile)
            .map_err(|e| WatchError::Corefile(Box::new(e)))
    }

    fn generate_initial(&mut self, template: &Path, text: &str) -> Result<(), WatchError> {
        let files = self.configmap_files();
        self.inputs_seen = Some(hash_of(&(text, files_key(&files))));
        match files.map(|files| parse_kube_dns(&files)) {
            Ok(Ok(kube_dns)) => self.kube_dns = kube_dns,
            Ok(Err(err)) => _ = self.configmap_error(&err),
            Err(err) => _ = self.configmap_error(&err),
        }
        let generated = match self.render(template, text, &self.kube_dns) {
            Err(WatchError::Generated { source, .. }) if self.kube_dns != Default::default() => {
                // The ConfigMap's stub domains clash with the template: without them.
                self.configmap_error(&source);
                self.kube_dns = KubeDnsConfig::default();
                self.render(template, text, &self.kube_dns)?
            }
            other => other?,
        };
        self.write_corefile(&generated)
    }

    /// One poll: regenerate on a template or ConfigMap change, then return the new
    /// Corefile's configuration if it changed (or always when `force`, for SIGUSR1).
    /// Returns whether a Corefile was written, and the configuration to apply.
    pub fn poll(&mut self, force: bool) -> (bool, Option<Config>) {
        let written = match self.sources.template.clone() {
            Some(template) => self.regenerate(&template),
            None => false,
        };
        (written, self.corefile_change(force))
    }

    fn regenerate(&mut self, template: &Path) -> bool {
        let text = match read_text(template) {
            Ok(text) => text,
            Err(err) => {
                // Mounted ConfigMaps flip symlinks: a missing file is usually transient.
                tracing::warn!(%err, "cannot read the Corefile template");
                return false;
            }
        };
        let files = self.configmap_files();
        let hash = hash_of(&(&text, files_key(&files)));
        if self.inputs_seen == Some(hash) {
            return false;
        }
        self.inputs_seen = Some(hash);
        let kube_dns = match files.map(|files| parse_kube_dns(&files)) {
            Ok(Ok(kube_dns)) => kube_dns,
            Ok(Err(err)) => return self.configmap_error(&err),
            Err(err) => return self.configmap_error(&err),
        };
        let generated = match self.render(template, &text, &kube_dns) {
            Ok(generated) => generated,
            Err(err) => return self.configmap_error(&err),
        };
        self.kube_dns = kube_dns;
        match self.write_corefile(&generated) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(%err, "cannot update the Corefile");
                false
            }
        }
    }

    fn corefile_change(&mut self, force: bool) -> Option<Config> {
        let path = &self.sources.corefile;
        let text = match read_text(path) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(%err, "cannot read the Corefile; keeping the running configuration");
                return None;
            }
        };
        let hash = hash_of(&text);
        if self.corefile_seen == Some(hash) && !force {
            return None;
        }
        self.corefile_seen = Some(hash);
        match config::parse_corefile(&text, path) {
            Ok(config) => Some(config),
            Err(err) => {
                self.configmap_error(&err);
                None
            }
        }
    }

    /// The template filled in, and checked by parsing it.
    fn render(
        &self,
        template: &Path,
        text: &str,
        kube_dns: &KubeDnsConfig,
    ) -> Result<String, WatchError> {
        let values = PillarValues {
            local_ips: &self.sources.local_ips,
            cluster_dns: self.sources.cluster_dns.as_deref(),
            cluster_dns_var: &self.sources.cluster_dns_var,
            dns_port: self.sources.dns_port,
            kube_dns,
            prometheus_endpoint: &self.sources.prometheus_endpoint,
        };
        let generated = render_corefile(text, &values)?;
        config::parse_corefile(&generated, &self.sources.corefile).map_err(|source| {
            WatchError::Generated {
                template: template.to_path_buf(),
                source: Box::new(source),
            }
        })?;
        Ok(generated)
    }

    fn configmap_files(&self) -> Result<BTreeMap<String, String>, config::ConfigMapError> {
        match &self.sources.configmap_dir {
            Some(dir) => read_configmap_dir(dir),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Logs and counts an invalid input; returns false (nothing written).
    fn configmap_error(&self, err: &dyn std::fmt::Display) -> bool {
        tracing::error!(%err, "invalid configuration; keeping the running one");
        self.errors.count(SetupError::ConfigMap);
        false
    }

    /// Replaces the Corefile atomically (write aside, rename) if its text differs.
    fn write_corefile(&self, text: &str) -> Result<(), WatchError> {
        let path = &self.sources.corefile;
        if read_text(path).is_ok_and(|current| current == text) {
            return Ok(());
        }
        let write_err = |source| WatchError::Write {
            path: path.clone(),
            source,
        };
        let mut aside = path.clone().into_os_string();
        aside.push(format!(".tmp-{}", std::process::id()));
        std::fs::write(&aside, text).map_err(write_err)?;
        std::fs::rename(&aside, path).map_err(|err| {
            let _ = std::fs::remove_file(&aside);
            write_err(err)
        })?;
        tracing::info!(path = %path.display(), "wrote the Corefile");
        Ok(())
    }
}

fn read_text(path: &Path) -> Result<String, WatchError> {
    crate::config::read_text_bounded(path, COREFILE_BYTES_MAX).map_err(|source| WatchError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The ConfigMap as hashed: its files, or the error reading them.
fn files_key(
    files: &Result<BTreeMap<String, String>, config::ConfigMapError>,
) -> Result<&BTreeMap<String, String>, String> {
    files.as_ref().map_err(|e| e.to_string())
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str =
        ".:1053 {\n    bind __PILLAR__LOCAL__DNS__\n    forward . __PILLAR__CLUSTER__DNS__\n}\n";

    fn watcher(dir: &Path) -> Watcher {
        std::fs::write(dir.join("Corefile.base"), TEMPLATE).unwrap();
        std::fs::create_dir(dir.join("cm")).unwrap();
        let sources = Sources {
            corefile: dir.join("Corefile"),
            template: Some(dir.join("Corefile.base")),
            configmap_dir: Some(dir.join("cm")),
            local_ips: vec!["127.0.0.1".parse().unwrap()],
            cluster_dns: Some("10.0.0.10".into()),
            cluster_dns_var: "KUBE_DNS_SERVICE_HOST".into(),
            dns_port: 1053,
            prometheus_endpoint: ":9253".into(),
        };
        Watcher::new(sources, Arc::new(SetupErrors::default()))
    }

    #[test]
    fn generates_then_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(dir.path());
        let config = w.initial().unwrap();
        assert_eq!(config.servers.len(), 1);
        assert_eq!(w.poll(false), (false, None));

        std::fs::write(
            dir.path().join("cm/stubDomains"),
            r#"{"acme.local": ["127.0.0.2:5300"]}"#,
        )
        .unwrap();
        let (written, config) = w.poll(false);
        assert!(written);
        assert_eq!(config.unwrap().servers.len(), 2);
        let text = std::fs::read_to_string(dir.path().join("Corefile")).unwrap();
        assert!(text.contains("acme.local:1053 {"), "{text}");

        // Invalid JSON: counted, nothing written, nothing to apply.
        std::fs::write(dir.path().join("cm/stubDomains"), "{oops").unwrap();
        assert_eq!(w.poll(false), (false, None));
        assert_eq!(w.errors.get(SetupError::ConfigMap), 1);
        assert_eq!(w.poll(false), (false, None));
        assert_eq!(
            w.errors.get(SetupError::ConfigMap),
            1,
            "counted once per change"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("Corefile")).unwrap(),
            text
        );

        // A template that does not parse once filled in: counted, kept.
        std::fs::write(
            dir.path().join("Corefile.base"),
            ".:1053 {\n    rewrite x\n}\n",
        )
        .unwrap();
        assert_eq!(w.poll(false), (false, None));
        assert_eq!(w.errors.get(SetupError::ConfigMap), 2);

        // SIGUSR1 forces a reload of an unchanged Corefile.
        assert!(w.poll(true).1.is_some());
    }

    #[test]
    fn invalid_configmap_at_start_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(dir.path());
        std::fs::write(
            dir.path().join("cm/upstreamNameservers"),
            "[\"ns.example\"]",
        )
        .unwrap();
        assert!(w.initial().is_ok());
        assert_eq!(w.errors.get(SetupError::ConfigMap), 1);
    }

    #[test]
    fn missing_cluster_dns_is_fatal_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = watcher(dir.path());
        w.sources.cluster_dns = None;
        let err = w.initial().unwrap_err().to_string();
        assert!(err.contains("KUBE_DNS_SERVICE_HOST"), "{err}");
    }
}
