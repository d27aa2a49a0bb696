//! Running the matrix: the upstream (knotd), one server per profile × setting,
//! and for each load a warm-up and a measured `dnsload` run, with the server's CPU
//! time read from /proc around it. Errors of a cell are recorded in its run, so the
//! campaign goes on with the next cell.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::experiment::{Cell, Experiment, LoadShape, ServerSetting, Upstream};
use super::process::{self, Proc, WaitError};
use super::report::Run;

/// How long the server or knotd may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack past a run's duration before it is killed (dnsload waits for late answers
/// up to its `-t`, 5 s by default).
const RUN_SLACK: Duration = Duration::from_secs(20);

/// What a cell needs to run: the experiment, where to run, where to write.
pub struct Bench<'a> {
    pub experiment: &'a Experiment,
    pub netns: Option<String>,
    pub work: PathBuf,
    pub raw: PathBuf,
    pub dnsload: PathBuf,
    pub server_bin: PathBuf,
    pub interrupt: &'a AtomicBool,
}

/// A cell failed or was interrupted.
#[derive(Debug)]
pub enum CellError {
    Failed(String),
    Interrupted,
}

impl From<WaitError> for CellError {
    fn from(err: WaitError) -> Self {
        match err {
            WaitError::Interrupted => CellError::Interrupted,
            WaitError::TimedOut => CellError::Failed("timed out".into()),
        }
    }
}

impl Bench<'_> {
    fn ns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn upstream_port(&self) -> u16 {
        self.experiment.port + 1
    }

    /// The `forward` target of the Corefile.
    pub fn upstream_address(&self) -> String {
        match &self.experiment.upstream {
            Upstream::Address(address) => address.clone(),
            Upstream::Knotd { .. } => format!("127.0.0.1:{}", self.upstream_port()),
        }
    }

    /// knotd serving `example.` on port + 1, pinned to the load CPUs; None when the
    /// experiment names its own upstream.
    pub fn start_upstream(&self) -> Result<Option<Proc>, CellError> {
        let Upstream::Knotd { records } = self.experiment.upstream else {
            return Ok(None);
        };
        let knotd = process::find_program("knotd")
            .ok_or_else(|| CellError::Failed("knotd not found: apt-get install knot".into()))?;
        let dir = self.work.join("knot");
        fs::create_dir_all(&dir)
            .map_err(|e| CellError::Failed(format!("{}: {e}", dir.display())))?;
        let write = |name: &str, text: String| {
            fs::write(dir.join(name), text).map_err(|e| CellError::Failed(format!("{name}: {e}")))
        };
        write("example.zone", zone_text(records))?;
        write("knot.conf", knot_conf(&dir, self.upstream_port()))?;
        let args = vec![
            "-c".to_string(),
            dir.join("knot.conf").display().to_string(),
        ];
        let cmd = process::command(self.ns(), Some(&self.experiment.load_cpus), &knotd, &args);
        let mut knot = Proc::spawn("knotd", cmd, &self.work.join("knotd.log"))
            .map_err(|e| CellError::Failed(format!("knotd: {e}")))?;
        self.wait_answering(self.upstream_port(), "svc0.example", &mut knot)?;
        Ok(Some(knot))
    }

    /// The server command of `setting` (for the plan and for running).
    pub fn server_command(&self, setting: &ServerSetting) -> Command {
        let corefile = self.work.join("Corefile");
        let mut args = vec!["-conf".to_string(), corefile.display().to_string()];
        args.extend(setting.args());
        let cpus = self.experiment.server_cpus_of(setting);
        process::command(self.ns(), Some(&cpus), &self.server_bin, &args)
    }

    /// Writes the Corefile, starts the server and waits until it answers.
    pub fn start_server(&self, setting: &ServerSetting) -> Result<Proc, CellError> {
        let corefile = format!(
            ".:{} {{\n    bind 127.0.0.1\n    cache 300\n    forward . {}\n}}\n",
            self.experiment.port,
            self.upstream_address()
        );
        fs::write(self.work.join("Corefile"), corefile)
            .map_err(|e| CellError::Failed(format!("Corefile: {e}")))?;
        let cmd = self.server_command(setting);
        let mut server = Proc::spawn("nodelocaldns", cmd, &self.work.join("server.log"))
            .map_err(|e| CellError::Failed(format!("{}: {e}", self.server_bin.display())))?;
        self.wait_answering(self.experiment.port, "ready.example", &mut server)?;
        Ok(server)
    }

    /// Probes `port` with one query until it is answered, `proc` exits, or
    /// [`START_TIMEOUT`] passes.
    fn wait_answering(&self, port: u16, name: &str, proc: &mut Proc) -> Result<(), CellError> {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let json = self.work.join("probe.json");
        loop {
            if let Some(status) = proc.exited() {
                return Err(CellError::Failed(format!(
                    "{} exited ({status}) before answering: {}",
                    proc.name,
                    proc.log_tail(5)
                )));
            }
            if self.interrupt.load(Ordering::Relaxed) {
                return Err(CellError::Interrupted);
            }
            if std::time::Instant::now() > deadline {
                return Err(CellError::Failed(format!(
                    "{} did not answer within {START_TIMEOUT:?}: {}",
                    proc.name,
                    proc.log_tail(5)
                )));
            }
            let args = vec![
                "--names".into(),
                name.into(),
                "-n".into(),
                "1".into(),
                "-t".into(),
                "1".into(),
            ];
            let _ = fs::remove_file(&json);
            if let Ok(doc) = self.dnsload(&args, port, None, &json, Duration::from_secs(5)) {
                if answered(&doc) > 0 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The dnsload command of a run of `secs` (None: the args bound it).
    pub fn load_command(
        &self,
        args: &[String],
        port: u16,
        secs: Option<u64>,
        json: &Path,
    ) -> Command {
        let mut all = args.to_vec();
        all.extend([
            "-s".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]);
        if let Some(secs) = secs {
            all.extend(["-l".into(), secs.to_string()]);
        }
        all.extend([
            "--quiet".into(),
            "--json".into(),
            json.display().to_string(),
        ]);
        process::command(
            self.ns(),
            Some(&self.experiment.load_cpus),
            &self.dnsload,
            &all,
        )
    }

    /// Runs dnsload and returns its JSON report.
    fn dnsload(
        &self,
        args: &[String],
        port: u16,
        secs: Option<u64>,
        json: &Path,
        limit: Duration,
    ) -> Result<serde_json::Value, CellError> {
        let cmd = self.load_command(args, port, secs, json);
        let mut run = Proc::spawn("dnsload", cmd, &self.work.join("dnsload.log"))
            .map_err(|e| CellError::Failed(format!("dnsload: {e}")))?;
        let status = run.wait(limit, self.interrupt)?;
        let text = fs::read_to_string(json).map_err(|e| {
            CellError::Failed(format!(
                "dnsload ({status}) wrote no report: {e}: {}",
                run.log_tail(3)
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| CellError::Failed(format!("dnsload report: {e}")))
    }

    /// Warms the cache with `load`, then measures one run of it.
    pub fn measure(&self, cell: Cell, repeat: u32, server: &Proc) -> Result<Run, CellError> {
        let exp = self.experiment;
        let load: &LoadShape = &exp.loads[cell.load];
        let limit = Duration::from_secs(exp.duration_secs) + RUN_SLACK;
        if exp.warmup_secs > 0 {
            let json = self.work.join("warmup.json");
            self.dnsload(&load.args, exp.port, Some(exp.warmup_secs), &json, limit)?;
        }
        let json = self
            .raw
            .join(format!("{}-r{repeat}.json", slug(&exp.label(cell))));
        let before = process::cpu_secs(server.pid());
        let doc = self.dnsload(&load.args, exp.port, Some(exp.duration_secs), &json, limit)?;
        let after = process::cpu_secs(server.pid());
        let cpu = match (before, after) {
            (Some(b), Some(a)) => a - b,
            _ => return Err(CellError::Failed("server CPU time unreadable".into())),
        };
        Ok(Run::from_report(exp, cell, repeat, &doc, cpu))
    }
}

fn answered(doc: &serde_json::Value) -> u64 {
    doc["counters"]["answered"].as_u64().unwrap_or(0)
}

/// A file-name form of a cell label.
pub fn slug(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

fn zone_text(records: u32) -> String {
    let mut text = String::from(
        "$ORIGIN example.\n$TTL 3600\n@ SOA ns.example. admin.example. 1 3600 600 86400 300\n@ NS ns.example.\nns A 127.0.0.1\n",
    );
    for i in 0..records {
        let _ = writeln!(text, "svc{i} A 192.0.2.{}", i % 250 + 1);
    }
    text
}

fn knot_conf(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "server:\n  listen: 127.0.0.1@{port}\n  rundir: {dir}\n  udp-workers: 1\n  tcp-workers: 1\n\
         database:\n  storage: {dir}\nzone:\n  - domain: example.\n    file: {dir}/example.zone\n\
         log:\n  - target: stderr\n    any: error\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            slug("default / 2 shards, 8 MiB / closed q200"),
            "default_2_shards_8_mib_closed_q200"
        );
    }

    #[test]
    fn zone_has_the_names() {
        let zone = zone_text(3);
        assert!(zone.contains("svc2 A 192.0.2.3") && !zone.contains("svc3 "));
    }
}
