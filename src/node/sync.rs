//! The node's periodic sync and its teardown.
//!
//! The sync thread first waits until the server answers a real DNS query on the local
//! IP (a broken server must not capture the node's DNS), then installs the rules, and
//! every `-syncinterval` re-adds any missing address or rule ("Added back ...").
//! In the nftables mode a pass reads our table back and reapplies it whole, in one
//! batch, when anything differs. Errors are counted by type and retried at the next
//! pass, never fatal. The first pass also removes what the other mode left (a stale
//! table, or stale iptables rules), which would outlive our teardown; later passes of
//! the nftables mode look for our rules in iptables-nft's raw tables again.
//!
//! Teardown (unless `-skipteardown`) stops the loop, deletes every copy of every
//! rule (or the table), then the interface, on a helper thread the caller waits for
//! at most a deadline: a hung `iptables` (xtables lock held forever) cannot keep the
//! process from exiting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::detect;
use super::interface::{Interface, InterfaceError};
use super::metrics::{SetupError, SetupErrors};
use super::nftables::{self, NftError, Problem, Ruleset};
use super::rules::{Iptables, Rule, RuleError};

/// What both node-cache rule comments start with.
const OUR_RULES_MARK: &str = "NodeLocal DNS Cache";

/// Wait between readiness probes until the server first answers.
const PROBE_RETRY: Duration = Duration::from_millis(250);
/// Time one readiness probe waits for its answer (a miss may go upstream).
const PROBE_TIMEOUT: Duration = Duration::from_millis(crate::limits::PROBE_MILLIS);

/// The rules and the tool that installs them.
pub enum Rules {
    /// `-setupiptables=false`.
    None,
    /// node-cache's rules through the iptables binaries.
    Iptables(Vec<Rule>),
    /// Our nftables table; `stale` are the same rules as iptables rules, removed at
    /// the first pass if an iptables binary is there (an earlier iptables-mode run).
    Nftables { table: Ruleset, stale: Vec<Rule> },
}

impl Rules {
    fn is_empty(&self) -> bool {
        match self {
            Rules::None => true,
            Rules::Iptables(rules) => rules.is_empty(),
            Rules::Nftables { table, .. } => table.rules().is_empty(),
        }
    }
}

/// What the node needs, shared by the sync thread and the teardown.
pub struct NodeSetup {
    /// None with `-setupinterface=false`.
    pub interface: Option<Interface>,
    pub rules: Rules,
    /// Where the readiness probe asks.
    pub probe: SocketAddr,
    pub interval: Duration,
    pub errors: Arc<SetupErrors>,
    /// Held for a whole sync pass and by the teardown, so a pass never re-adds what
    /// the teardown just removed.
    pass: Mutex<()>,
    stop: AtomicBool,
    /// A stale iptables cleanup is running (at most one; a hung one stays alone).
    cleaning: Arc<AtomicBool>,
}

impl NodeSetup {
    pub fn new(
        interface: Option<Interface>,
        rules: Rules,
        probe: SocketAddr,
        interval: Duration,
        errors: Arc<SetupErrors>,
    ) -> Arc<NodeSetup> {
        Arc::new(NodeSetup {
            interface,
            rules,
            probe,
            interval,
            errors,
            pass: Mutex::new(()),
            stop: AtomicBool::new(false),
            cleaning: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Creates or repairs the interface; errors are logged and counted.
    pub fn ensure_interface(&self, first: bool) {
        let Some(interface) = &self.interface else {
            return;
        };
        match interface.ensure() {
            Ok(done) => {
                let again = if first { "" } else { " back" };
                if done.created {
                    tracing::info!(name = %interface.name, kind = %interface.kind, "added{again} interface");
                }
                for ip in done.added {
                    tracing::info!(name = %interface.name, %ip, "added{again} address");
                }
            }
            Err(err) => {
                tracing::error!(%err, "interface setup failed; retrying at the next sync");
                self.errors.count(match err {
                    InterfaceError::Check { .. } => SetupError::InterfaceCheck,
                    InterfaceError::Add { .. } => SetupError::InterfaceAdd,
                });
            }
        }
    }

    fn ensure_rules(&self, iptables: &mut Iptables, first: bool) {
        match &self.rules {
            Rules::None => {}
            Rules::Iptables(rules) => {
                if first {
                    self.remove_stale_table();
                }
                self.ensure_iptables(iptables, rules, first);
            }
            Rules::Nftables { table, stale } => {
                self.ensure_table(table, first);
                // At the first pass whatever the backend; later when iptables-nft's
                // raw tables show our rules again (a predecessor of the iptables mode
                // still running beside us during an upgrade re-adds them), read
                // over netlink, without the binary or its lock.
                let again =
                    || nftables::iptables_nft_rules_marked(OUR_RULES_MARK).is_ok_and(|n| n > 0);
                if (first || again()) && detect::on_path("iptables") {
                    self.spawn_stale_cleanup(stale.clone());
                }
            }
        }
    }

    fn ensure_iptables(&self, iptables: &mut Iptables, rules: &[Rule], first: bool) {
        for rule in rules {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            match iptables.ensure(rule) {
                Ok(true) if first => tracing::info!(%rule, "added nodelocaldns rule"),
                Ok(true) => tracing::info!(%rule, "Added back nodelocaldns rule"),
                Ok(false) => {}
                Err(err) => self.rule_error(&err),
            }
        }
    }

    fn ensure_table(&self, table: &Ruleset, first: bool) {
        let problems = match table.ensure() {
            Ok(problems) => problems,
            Err(err) => return self.table_error(&err),
        };
        let rules = table.rules().len();
        match problems.as_slice() {
            [] if first => tracing::info!(
                rules,
                "table inet nodelocaldns already in place (a predecessor's): kept"
            ),
            [] => {}
            [Problem::TableMissing] if first => {
                tracing::info!(rules, "added nodelocaldns table inet nodelocaldns")
            }
            _ => {
                let what: Vec<String> = problems.iter().take(4).map(ToString::to_string).collect();
                let verb = if first { "Replaced" } else { "Added back" };
                tracing::info!(
                    rules,
                    differences = problems.len(),
                    what = %what.join("; "),
                    "{verb} nodelocaldns rules: table inet nodelocaldns reapplied"
                );
            }
        }
    }

    /// In the nftables mode, removes the node-cache iptables rules an iptables-mode
    /// run left (they would outlive our teardown). On its own thread, holding no
    /// lock of ours: an `iptables` stuck on the xtables lock must not stop the sync
    /// loop or the teardown of a mode that needs no iptables. Failures are not this
    /// mode's errors: logged only.
    fn spawn_stale_cleanup(&self, rules: Vec<Rule>) {
        if self.cleaning.swap(true, Ordering::AcqRel) {
            return;
        }
        let cleaning = self.cleaning.clone();
        let spawned = std::thread::Builder::new()
            .name("stale-iptables".into())
            .spawn(move || {
                let mut iptables = Iptables::default();
                for rule in &rules {
                    match iptables.remove(rule) {
                        Ok(0) => {}
                        Ok(copies) => tracing::info!(%rule, copies, "removed a stale iptables rule of an iptables-mode run"),
                        Err(err) => {
                            tracing::debug!(%err, "cannot check for stale iptables rules");
                            break;
                        }
                    }
                }
                cleaning.store(false, Ordering::Release);
            });
        if let Err(err) = spawned {
            self.cleaning.store(false, Ordering::Release);
            tracing::debug!(%err, "cannot start the stale iptables cleanup");
        }
    }

    fn table_error(&self, err: &NftError) {
        tracing::error!(%err, "nftables failed; retrying at the next sync");
        self.errors.count(SetupError::Nftables);
    }

    /// An nftables table left by an earlier nftables-mode run would keep skipping
    /// conntrack after our teardown.
    fn remove_stale_table(&self) {
        match Ruleset::remove() {
            Ok(true) => {
                tracing::info!("removed the stale table inet nodelocaldns of an nftables-mode run")
            }
            Ok(false) => {}
            Err(err) => tracing::debug!(%err, "cannot check for a stale nftables table"),
        }
    }

    fn rule_error(&self, err: &RuleError) {
        tracing::error!(%err, "iptables failed; retrying at the next sync");
        self.errors.count(if err.is_lock() {
            SetupError::IptablesLock
        } else {
            SetupError::Iptables
        });
    }

    /// Starts the sync thread; `wake` ends its wait early (teardown sends on it).
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<Sender<()>> {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let setup = self.clone();
        std::thread::Builder::new()
            .name("node-sync".into())
            .spawn(move || setup.run(woken))?;
        Ok(wake)
    }

    fn run(&self, woken: Receiver<()>) {
        let mut iptables = Iptables::default();
        let mut answered = self.rules.is_empty();
        let mut rules_installed = false;
        let mut first_interface_pass = true;
        loop {
            {
                let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                // Start-up created the interface already: later passes repair it.
                if !first_interface_pass {
                    self.ensure_interface(false);
                }
                first_interface_pass = false;
                if !answered {
                    answered = probe(self.probe);
                    if answered {
                        tracing::info!(probe = %self.probe, "server answers; installing the rules");
                    }
                }
                if answered && !self.rules.is_empty() {
                    self.ensure_rules(&mut iptables, !rules_installed);
                    rules_installed = true;
                }
            }
            let wait = if answered { self.interval } else { PROBE_RETRY };
            if woken.recv_timeout(wait).is_ok() || self.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    /// Stops the sync loop, then removes every rule and the interface, waiting at
    /// most `deadline`. Returns false if the deadline passed first.
    pub fn teardown(self: &Arc<Self>, wake: Option<&Sender<()>>, deadline: Duration) -> bool {
        self.teardown_part(wake, deadline, Part::All)
    }

    /// Like [`NodeSetup::teardown`] for a part: the rules while the server still
    /// answers (queries fall back to the cluster DNS path, none meets a closed
    /// socket), then the interface once the server has stopped.
    pub fn teardown_part(
        self: &Arc<Self>,
        wake: Option<&Sender<()>>,
        deadline: Duration,
        part: Part,
    ) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(wake) = wake {
            let _ = wake.try_send(());
        }
        let (done, finished) = crossbeam_channel::bounded(1);
        let setup = self.clone();
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("node-teardown".into())
            .spawn(move || {
                if part != Part::Interface {
                    setup.remove_rules();
                }
                if part != Part::Rules {
                    setup.remove_interface();
                }
                let _ = done.send(());
            });
        if let Err(err) = spawned {
            tracing::error!(%err, "cannot start the teardown");
            return false;
        }
        match finished.recv_timeout(deadline) {
            Ok(()) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "teardown done"
                );
                true
            }
            Err(_) => {
                tracing::error!(?deadline, "teardown did not finish in time; exiting anyway");
                false
            }
        }
    }

    fn remove_rules(&self) {
        let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        match &self.rules {
            Rules::None => {}
            Rules::Iptables(rules) => self.remove_iptables(&mut Iptables::default(), rules),
            Rules::Nftables { .. } => match Ruleset::remove() {
                Ok(true) => tracing::info!("removed table inet nodelocaldns"),
                Ok(false) => {}
                Err(err) => self.table_error(&err),
            },
        }
    }

    /// Deletes every copy of `rules`.
    fn remove_iptables(&self, iptables: &mut Iptables, rules: &[Rule]) {
        for rule in rules {
            match iptables.remove(rule) {
                Ok(0) => {}
                Ok(copies) => tracing::debug!(%rule, copies, "removed rule"),
                Err(err) => self.rule_error(&err),
            }
        }
    }

    fn remove_interface(&self) {
        let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(interface) = &self.interface {
            match interface.remove() {
                Ok(true) => tracing::info!(name = %interface.name, "removed interface"),
                Ok(false) => {}
                Err(err) => tracing::error!(%err, "cannot remove the interface"),
            }
        }
    }
}

/// What a teardown removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Rules,
    Interface,
    All,
}

/// Where to ask: the first local IP on the DNS port (the loopback of its family for
/// a wildcard, Cilium LRP mode).
pub fn probe_target(local_ips: &[IpAddr], dns_port: u16) -> SocketAddr {
    let ip = match local_ips.first() {
        Some(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        Some(ip) => *ip,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, dns_port)
}

/// True when `target` answers `. IN NS` over UDP (our ID and question, any rcode).
pub fn probe(target: SocketAddr) -> bool {
    probe_within(target, PROBE_TIMEOUT)
}

/// [`probe`] waiting at most `timeout` for the answer.
pub fn probe_within(target: SocketAddr, timeout: Duration) -> bool {
    let id: u16 = rand::random();
    let bytes = crate::wire::root_ns_query(id);
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(socket) = UdpSocket::bind(bind) else {
        return false;
    };
    if socket.set_read_timeout(Some(timeout)).is_err() || socket.send_to(&bytes, target).is_err() {
        return false;
    }
    let mut buf = [0u8; crate::limits::UDP_PAYLOAD_BYTES_MAX];
    let started = Instant::now();
    while started.elapsed() < timeout {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) if from == target => {
                let reply = buf.get(..len).unwrap_or_default();
                if crate::wire::answer_matches(&bytes, reply, id) {
                    return true;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_targets() {
        assert_eq!(
            probe_target(&["169.254.20.10".parse().unwrap()], 53),
            "169.254.20.10:53".parse().unwrap()
        );
        assert_eq!(
            probe_target(&["0.0.0.0".parse().unwrap()], 53),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            probe_target(&["::".parse().unwrap()], 5353),
            "[::1]:5353".parse().unwrap()
        );
    }

    #[test]
    fn probe_fails_fast_without_a_server() {
        // A closed port on loopback: ICMP port unreachable ends the probe at once.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        drop(socket);
        let started = Instant::now();
        assert!(!probe(addr));
        assert!(started.elapsed() <= PROBE_TIMEOUT + Duration::from_millis(500));
    }

    #[test]
    fn teardown_is_bounded() {
        let setup = NodeSetup::new(
            None,
            Rules::None,
            "127.0.0.1:53".parse().unwrap(),
            Duration::from_secs(60),
            Arc::new(SetupErrors::default()),
        );
        // A sync pass that never ends holds the lock: the teardown still returns.
        let held = setup.clone();
        let (locked, is_locked) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _pass = held.pass.lock().unwrap();
            let _ = locked.send(());
            std::thread::sleep(Duration::from_secs(5));
        });
        is_locked.recv().unwrap();
        let started = Instant::now();
        assert!(!setup.teardown(None, Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
