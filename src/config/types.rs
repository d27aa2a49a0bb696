//! The typed, validated configuration every other layer reads. Nothing downstream
//! of `config/` sees Corefile text: the parser turns it into these values once.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::wire;

/// A whole Corefile: the server blocks in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub servers: Vec<ServerBlock>,
}

/// Where a value came from, so errors and logs can name file:line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

/// One zone a server block answers for: a lower-cased FQDN ("." or "cluster.local.").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Lower-cased, always ending with '.'; the root is ".".
    pub name: String,
}

/// One `ZONE[:PORT]... { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerBlock {
    /// Zones of the block key, e.g. `cluster.local:53 in-addr.arpa:53`.
    pub zones: Vec<Zone>,
    /// The port of the block key (all keys of one block share it; default 53).
    pub port: u16,
    /// `bind ADDR...`; empty means the wildcard addresses (0.0.0.0 and ::).
    pub bind: Vec<IpAddr>,
    pub cache: Option<CacheConfig>,
    pub forward: Option<ForwardConfig>,
    /// `acl`: which clients may query the block (None = everyone).
    pub acl: Option<AclConfig>,
    /// `errors`: log failed answers.
    pub errors: bool,
    /// `errors { consolidate ... }`: repeated errors summarised per period.
    pub errors_consolidate: Vec<Consolidate>,
    /// `log`: one line per query.
    pub log: bool,
    /// `log [NAMES...] [FORMAT] { class ... }`, every `log` line in order: the first
    /// rule whose name matches the query's decides.
    pub log_rules: Vec<LogRule>,
    pub health: Option<HealthConfig>,
    /// `ready [ADDR]`, default 0.0.0.0:8181 when the directive is present.
    pub ready: Option<SocketAddr>,
    /// `prometheus [ADDR]`, default 0.0.0.0:9253 when the directive is present.
    pub prometheus: Option<SocketAddr>,
    pub reload: Option<ReloadConfig>,
    /// `loop`: detect forwarding loops at start.
    pub loop_detect: bool,
    /// `bufsize SIZE` (512..=4096): the EDNS UDP size advertised upstream.
    pub bufsize: Option<u16>,
    /// `whoami`: answer with the client's address instead of forwarding.
    pub whoami: bool,
    /// `template` directives, in file order (the first that matches answers).
    pub templates: Vec<super::TemplateConfig>,
    /// `rewrite` rules, in file order.
    pub rewrites: Vec<super::RewriteRule>,
    /// `hosts`: names answered from a hosts file and inline entries.
    pub hosts: Option<HostsConfig>,
    /// `loadbalance [round_robin]`: shuffle A, AAAA and MX records in answers.
    pub loadbalance: bool,
    /// `dns64`: AAAA synthesised from A records.
    pub dns64: Option<Dns64Config>,
    /// `timeouts`: TCP client timeouts of this block's listeners.
    pub timeouts: Option<TimeoutsConfig>,
    /// `debug`: accepted, changes nothing (logged once at start).
    pub debug: bool,
    /// `pprof [ADDRESS]`: accepted, serves nothing (logged once at start).
    pub pprof: Option<String>,
    /// `trace`: accepted, traces nothing (logged once at start).
    pub trace: bool,
    /// Where the block starts.
    pub location: Location,
}

/// `hosts [FILE [ZONES...]] { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// The hosts file (default /etc/hosts; relative to the Corefile's directory).
    pub path: PathBuf,
    /// Zones the plugin answers for (default: the block's); PTR questions are
    /// answered whatever their zone.
    pub zones: Vec<Zone>,
    /// Entries written in the Corefile, after the file's.
    pub inline: Vec<HostsEntry>,
    /// TTL of the answers (1..=65535, default 3600).
    pub ttl: u32,
    /// `no_reverse`: no PTR answers from the entries.
    pub no_reverse: bool,
    /// How often the file is checked for changes (default 5 s; 0 = never).
    pub reload: Duration,
    /// `fallthrough [ZONES]`: names not found go on down the chain (empty = all zones).
    pub fallthrough: Option<Vec<Zone>>,
}

/// One hosts(5) line: an address and its names (lower-case, fully qualified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    pub addr: IpAddr,
    pub names: Vec<String>,
}

/// `dns64 [PREFIX] { ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dns64Config {
    /// The translation prefix (host bits cleared), default 64:ff9b::/96.
    pub prefix: std::net::Ipv6Addr,
    /// 32, 40, 48, 56, 64 or 96.
    pub prefix_len: u8,
    /// Translate even when the AAAA answer has AAAA records.
    pub translate_all: bool,
    /// Translate for clients that asked over IPv4 too.
    pub allow_ipv4: bool,
}

/// `timeouts { ... }`: TCP client timeouts (each 1s..=24h; None = the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeoutsConfig {
    /// Time for the first query of a connection, and for the rest of a query once
    /// its length is read (default 3 s).
    pub read: Option<Duration>,
    /// Time to write an answer (default 5 s).
    pub write: Option<Duration>,
    /// Time between queries before the connection is closed (default 10 s).
    pub idle: Option<Duration>,
    /// Queries per connection before it is closed (0 or None = unlimited).
    pub max_queries: Option<usize>,
}

/// `cache` directive.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Zones the cache applies to (default: the block's zones).
    pub zones: Vec<Zone>,
    pub success: CacheClass,
    pub denial: CacheClass,
    pub prefetch: Option<Prefetch>,
    pub serve_stale: Option<ServeStale>,
    /// `servfail DURATION`: how long SERVFAIL/NOTIMP answers are cached (default 5 s; 0 = off; max 5 m).
    pub servfail_ttl: Duration,
    /// `disable success [ZONES]`: zones for which success answers are not cached (empty = none).
    pub disable_success: Vec<Zone>,
    /// `disable denial [ZONES]`.
    pub disable_denial: Vec<Zone>,
    /// `keepttl`: answer with the original TTL.
    pub keepttl: bool,
    /// Our own `max_bytes SIZE` option: byte budget of the whole cache (None = sized from capacity).
    pub max_bytes: Option<usize>,
}

/// Capacity and TTL bounds of one class (success or denial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheClass {
    /// Entries (default 9984).
    pub capacity: usize,
    /// TTL cap (default 3600 s success, 1800 s denial; `cache TTL` sets both).
    pub ttl_max: Duration,
    /// MINTTL (default 5 s).
    pub ttl_min: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    pub amount: u32,
    /// default 1 m
    pub duration: Duration,
    /// 10..=90, default 10
    pub percentage: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleMode {
    /// Answer stale at once, then refresh in the background.
    Immediate,
    /// Ask upstream first; answer stale only if that fails, or once `timeout` has
    /// passed (`VERIFY_TIMEOUT`; None, from `0` or nothing: wait for the upstream's own
    /// deadline) while the refresh goes on in the background.
    Verify { timeout: Option<Duration> },
}

/// `serve_stale DURATION [immediate [RESPONSE_TTL [FAILURE_RECHECK]] | verify
/// [VERIFY_TIMEOUT [RESPONSE_TTL [FAILURE_RECHECK]]]]` and `serve_stale_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeStale {
    /// default 1 h
    pub duration: Duration,
    pub mode: StaleMode,
    /// `RESPONSE_TTL`: the TTL of every record of a stale answer, whole seconds
    /// (default 0; RFC 8767 recommends 30).
    pub response_ttl_secs: u32,
    /// `FAILURE_RECHECK`: after a failed refresh of a stale entry, the next starts no
    /// sooner than this, and stale answers go out meanwhile without asking upstream
    /// (default None: our 1 s floor, `CACHE_REFRESH_RETRY_MILLIS`; at most 5 m).
    pub failure_recheck: Option<Duration>,
    /// `serve_stale_policy prefer_positive`: a positive answer still servable (fresh
    /// or within `duration`) is kept over a new NXDOMAIN, NODATA, SERVFAIL or other
    /// non-answer.
    pub prefer_positive: bool,
}

/// `forward FROM TO... { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    /// FROM zone.
    pub from: Zone,
    /// Upstreams (1..=15), port default 53. A resolv.conf path expands to its nameservers.
    pub to: Vec<SocketAddr>,
    /// `except NAMES...`: sub-zones not forwarded.
    pub except: Vec<Zone>,
    pub force_tcp: bool,
    pub prefer_udp: bool,
    /// `expire`, default 10 s.
    pub expire: Duration,
    /// `max_fails`, default 2; 0 = never mark down.
    pub max_fails: u32,
    pub policy: Policy,
    /// `health_check DURATION`, default 0.5 s.
    pub health_check: Duration,
    /// `health_check ... no_rec`: probe with RD=0.
    pub health_check_no_rec: bool,
    /// `health_check ... domain FQDN`, default ".".
    pub health_check_domain: Zone,
    /// `max_concurrent N`; None = unlimited.
    pub max_concurrent: Option<usize>,
    pub failfast_all_unhealthy: bool,
    /// `read_timeout`: how long one attempt waits for its answer, default 2 s.
    pub read_timeout: Duration,
    /// `max_age`: a TCP connection older than this is retired (drained, then
    /// closed) and replaced; None (`0`, the default) = no age limit.
    pub max_age: Option<Duration>,
    /// `max_idle_conns`: idle TCP connections kept per upstream and shard; None (`0`,
    /// the default) = as many as the pool holds.
    pub max_idle_conns: Option<usize>,
    /// `max_connect_attempts`: failed attempts of one query before SERVFAIL.
    pub max_connect_attempts: ConnectAttempts,
    /// `failover RCODE...`: answers with these rcodes make the query try the next
    /// upstream (never NOERROR).
    pub failover: Vec<u16>,
    /// `next RCODE...`: CoreDNS hands such answers to the next plugin when it is
    /// another `forward`; a block holds one `forward` here, so this never applies.
    pub next: Vec<u16>,
    /// `next_on_nodata`: as `next`, for NOERROR without answers; never applies here.
    pub next_on_nodata: bool,
    /// `source_address IP`: the address upstream sockets are bound to.
    pub source_address: Option<IpAddr>,
    /// `tls` and `tls_servername`: how the `tls://` upstreams are reached.
    pub tls: TlsClient,
    /// The upstreams of `to` given as `tls://` (DNS over TLS, RFC 7858).
    pub tls_upstreams: Vec<TlsUpstream>,
}

/// `tls [CERT KEY] [CA]` and `tls_servername NAME`, checked when the Corefile is read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsClient {
    /// PEM of the client certificate chain and its key (`tls CERT KEY ...`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// PEM of the CAs the upstreams' certificates must chain to (`tls ... CA`);
    /// None: the system's CAs.
    pub ca: Option<Vec<u8>>,
    /// `tls_servername`: the name every upstream's certificate must carry.
    pub server_name: Option<String>,
}

/// A `tls://ADDR[%NAME]` upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsUpstream {
    pub addr: SocketAddr,
    /// `%NAME`: the name its certificate must carry (else `tls_servername`, else
    /// its IP address).
    pub server_name: Option<String>,
}

/// `max_connect_attempts N`: the cap on failed attempts of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectAttempts {
    /// Not set: twice the number of upstreams (CoreDNS's default).
    PerUpstream,
    /// `0`: no cap but the query's deadline.
    Unbounded,
    /// `N`.
    Max(u32),
}

impl ForwardConfig {
    /// FROM and TO with every option at CoreDNS's default.
    pub fn new(from: Zone, to: Vec<SocketAddr>) -> ForwardConfig {
        ForwardConfig {
            from,
            to,
            except: Vec::new(),
            force_tcp: false,
            prefer_udp: false,
            expire: Duration::from_secs(10),
            max_fails: 2,
            policy: Policy::Random,
            health_check: Duration::from_millis(500),
            health_check_no_rec: false,
            health_check_domain: Zone { name: ".".into() },
            max_concurrent: None,
            failfast_all_unhealthy: false,
            read_timeout: Duration::from_millis(crate::limits::UPSTREAM_ATTEMPT_MILLIS),
            max_age: None,
            max_idle_conns: None,
            max_connect_attempts: ConnectAttempts::PerUpstream,
            failover: Vec::new(),
            next: Vec::new(),
            next_on_nodata: false,
            source_address: None,
            tls: TlsClient::default(),
            tls_upstreams: Vec::new(),
        }
    }

    /// The `tls://` entry of upstream `addr`, when it is one.
    pub fn tls_upstream(&self, addr: SocketAddr) -> Option<&TlsUpstream> {
        self.tls_upstreams.iter().find(|u| u.addr == addr)
    }

    /// Failed attempts one query may make before SERVFAIL, within the hard bound.
    pub fn attempts_max(&self) -> usize {
        let wanted = match self.max_connect_attempts {
            ConnectAttempts::PerUpstream => 2 * self.to.len(),
            ConnectAttempts::Unbounded => usize::MAX,
            ConnectAttempts::Max(n) => n as usize,
        };
        wanted.clamp(1, crate::limits::UPSTREAM_ATTEMPTS_MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

/// `health [ADDR] { lameduck DURATION }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// default 0.0.0.0:8080
    pub addr: SocketAddr,
    pub lameduck: Duration,
}

/// `reload [INTERVAL [JITTER]]`, defaults 30 s and 15 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadConfig {
    pub interval: Duration,
    pub jitter: Duration,
}

/// `errors { consolidate DURATION REGEXP [LEVEL] [show_first] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consolidate {
    pub period: Duration,
    /// A regular expression (validated when parsed) matched against the error's
    /// text, as CoreDNS does (not the whole line).
    pub pattern: String,
    pub level: LogLevel,
    /// `show_first`: the first error of a period is written whole, at `level`.
    pub show_first: bool,
}

/// One `log` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRule {
    /// The names it logs: lower-cased, fully qualified; "." is every name.
    pub scope: String,
    /// The line, CoreDNS placeholders resolved when parsed.
    pub format: Vec<LogPart>,
    pub classes: ResponseClasses,
}

/// A piece of a `log` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPart {
    Text(String),
    Field(LogField),
}

/// CoreDNS's replacer placeholders (`plugin/pkg/replacer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    /// `{type}`
    Type,
    /// `{name}`
    Name,
    /// `{class}`
    Class,
    /// `{proto}`
    Proto,
    /// `{size}`: the query's length.
    Size,
    /// `{remote}`: the client's IP (IPv6 in brackets).
    Remote,
    /// `{port}`: the client's port.
    Port,
    /// `{local}`: the address the query came in on.
    Local,
    /// `{>id}`
    Id,
    /// `{>opcode}`
    Opcode,
    /// `{>do}`
    Do,
    /// `{>bufsize}`: the client's buffer (EDNS size, 512 without; 65535 on TCP).
    Bufsize,
    /// `{rcode}`
    Rcode,
    /// `{rsize}`: the answer's length.
    Rsize,
    /// `{duration}`: seconds from receipt to answer, with an `s`.
    Duration,
    /// `{>rflags}`: the answer's header flags.
    Rflags,
    /// `{/NAME}`: metadata, which needs the `metadata` plugin node-cache lacks: `-`.
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
}

/// Response classes of the `log` directive's `class` option (CoreDNS
/// `response.Classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseClasses {
    /// NOERROR with records, or a referral (NS in the authority section).
    pub success: bool,
    /// NXDOMAIN or NOERROR without records, with an SOA in the authority section.
    pub denial: bool,
    /// Every other rcode.
    pub error: bool,
}

impl ResponseClasses {
    pub const ALL: ResponseClasses = ResponseClasses {
        success: true,
        denial: true,
        error: true,
    };
    pub const NONE: ResponseClasses = ResponseClasses {
        success: false,
        denial: false,
        error: false,
    };
}

impl Default for ResponseClasses {
    fn default() -> Self {
        ResponseClasses::ALL
    }
}

/// What happens to a query a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    Allow,
    /// Answer REFUSED.
    Block,
    /// Answer NOERROR, no records.
    Filter,
    /// No answer at all.
    Drop,
}

/// A network: the address with the bits past the prefix cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// The network of `ip` with a `prefix`-bit mask (host bits cleared).
    pub fn new(ip: IpAddr, prefix: u8) -> Self {
        let addr = match ip {
            IpAddr::V4(v4) => IpAddr::V4(mask32(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask128(u128::from(v6), prefix).into()),
        };
        IpNet { addr, prefix }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(bits: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask128(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

/// One `ACTION [type ...] [net ...]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    pub action: AclAction,
    /// Query types; empty = any.
    pub qtypes: Vec<u16>,
    /// Client networks; empty = any.
    pub nets: Vec<IpNet>,
}

impl AclRule {
    fn matches(&self, client: IpAddr, qtype: u16) -> bool {
        (self.qtypes.is_empty() || self.qtypes.contains(&qtype))
            && (self.nets.is_empty() || self.nets.iter().any(|n| n.contains(client)))
    }
}

/// A block's `acl` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    /// Zones the policy applies to.
    pub zones: Vec<Zone>,
    /// Wire forms of `zones`, for the per-query check.
    pub(super) zones_wire: Vec<Vec<u8>>,
    pub rules: Vec<AclRule>,
}

impl AclConfig {
    /// The action for a query of `qtype` for `qname` (wire form) from `client`.
    pub fn decide(&self, client: IpAddr, qname: &[u8], qtype: u16) -> AclAction {
        if !self
            .zones_wire
            .iter()
            .any(|z| wire::name::in_zone(qname, z))
        {
            return AclAction::Allow;
        }
        self.rules
            .iter()
            .find(|rule| rule.matches(client, qtype))
            .map_or(AclAction::Allow, |rule| rule.action)
    }
}

/// A regular expression compiled once when the Corefile is parsed, within
/// `limits::REGEX_*`. Two are equal when their patterns are.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}
