//! The nftables rules mode: node-cache's captures (`rules::captures`, the same 12
//! per local IP as the iptables mode) as one table, `table inet nodelocaldns`,
//! written over netlink (`nfnetlink`), no `nft` or `iptables` binary involved and
//! no xtables lock:
//!
//! ```text
//! table inet nodelocaldns {
//!   chain raw-prerouting { type filter hook prerouting priority raw; policy accept;
//!     ip daddr 169.254.20.10 tcp dport 53 notrack ... }
//!   chain raw-output     { type filter hook output priority raw; ... notrack }
//!   chain filter-input   { type filter hook input priority filter; ... accept }
//!   chain filter-output  { type filter hook output priority filter; ... accept }
//! }
//! ```
//!
//! One `inet` table holds IPv4 and IPv6. Installing it and repairing it are the same
//! batch, applied atomically: add the table, delete it (with whatever a predecessor,
//! an operator or another version left in it), add it again with its chains and rules.
//! So the table is complete or absent, never half-written, and a SIGKILLed
//! predecessor's table is replaced, not doubled. A sync pass reads the table back
//! (`inspect`) and reapplies it only when something differs.
//!
//! An `accept` in our filter chains ends only our chain: unlike iptables, where
//! node-cache's ACCEPT sits in the same chain as the node's policy, nftables runs
//! every table's base chains and a drop anywhere is final. A node firewall with a
//! drop policy must accept the DNS to the local IPs itself (e.g. `ct state untracked
//! accept`, which matches exactly what our raw chains NOTRACK).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use neli::consts::nl::NlmF;

use super::nfnetlink::{
    abi::*, attr, attr_be32, attr_str, find, find_be32, find_str, nest, nested, Attr, Conn,
    NetlinkError, Reply, Request,
};
use super::rules::{Capture, Target, Way};
use crate::limits::NFT_LOCAL_IPS_MAX;

/// Our table's family and name.
pub const TABLE: &str = "nodelocaldns";
pub const TABLE_FAMILY: &str = "inet";

const NFPROTO_INET: u8 = libc::NFPROTO_INET as u8;
const NFPROTO_UNSPEC: u8 = libc::NFPROTO_UNSPEC as u8;
const NFPROTO_IPV4: u8 = libc::NFPROTO_IPV4 as u8;
const NFPROTO_IPV6: u8 = libc::NFPROTO_IPV6 as u8;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("table {TABLE_FAMILY} {TABLE}: {what}: {source}")]
    Netlink {
        what: &'static str,
        source: NetlinkError,
    },
    #[error("{count} local IPs: the nftables table holds at most {NFT_LOCAL_IPS_MAX}")]
    TooManyIps { count: usize },
}

fn context(what: &'static str) -> impl FnOnce(NetlinkError) -> NftError {
    move |source| NftError::Netlink { what, source }
}

/// A base chain of our table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: String,
    /// NF_INET_* hook number.
    pub hook: u32,
    pub priority: i32,
}

impl ChainSpec {
    /// The chain of an iptables (table, chain) pair: `raw-prerouting`, ...
    fn of(capture: &Capture) -> ChainSpec {
        let hook = match capture.chain {
            "PREROUTING" => libc::NF_INET_PRE_ROUTING,
            "INPUT" => libc::NF_INET_LOCAL_IN,
            _ => libc::NF_INET_LOCAL_OUT,
        };
        let priority = match capture.table {
            "raw" => libc::NF_IP_PRI_RAW,
            _ => libc::NF_IP_PRI_FILTER,
        };
        ChainSpec {
            name: format!("{}-{}", capture.table, capture.chain.to_lowercase()),
            hook: hook as u32,
            priority,
        }
    }
}

impl fmt::Display for ChainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hook = match self.hook as i32 {
            libc::NF_INET_PRE_ROUTING => "prerouting",
            libc::NF_INET_LOCAL_IN => "input",
            libc::NF_INET_FORWARD => "forward",
            libc::NF_INET_LOCAL_OUT => "output",
            libc::NF_INET_POST_ROUTING => "postrouting",
            _ => "?",
        };
        write!(f, "hook {hook} priority {}", self.priority)
    }
}

/// A rule of our table as `nft` writes it, e.g. `ip daddr 169.254.20.10 udp dport
/// 53 notrack`: what is expected and what was read back compare as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleText {
    pub chain: String,
    pub text: String,
}

impl fmt::Display for RuleText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.chain, self.text)
    }
}

/// What differs between the table on the node and ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    TableMissing,
    ChainMissing(String),
    /// (chain, found, expected).
    ChainWrong(String, String, String),
    ChainExtra(String),
    RuleMissing(RuleText),
    /// A rule that is not ours or a second copy of one.
    RuleExtra(RuleText),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TableMissing => write!(f, "table {TABLE_FAMILY} {TABLE} is missing"),
            Problem::ChainMissing(chain) => write!(f, "chain {chain} is missing"),
            Problem::ChainWrong(chain, found, want) => {
                write!(f, "chain {chain} has {found}, expected {want}")
            }
            Problem::ChainExtra(chain) => write!(f, "chain {chain} is not ours"),
            Problem::RuleMissing(rule) => write!(f, "rule missing in {rule}"),
            Problem::RuleExtra(rule) => write!(f, "unexpected rule in {rule}"),
        }
    }
}

/// Our table: its chains and rules, drawn from node-cache's captures.
#[derive(Debug, Clone)]
pub struct Ruleset {
    captures: Vec<Capture>,
    chains: Vec<ChainSpec>,
}

impl Ruleset {
    pub fn new(captures: Vec<Capture>) -> Ruleset {
        let mut chains: Vec<ChainSpec> = Vec::new();
        for capture in &captures {
            let chain = ChainSpec::of(capture);
            if !chains.contains(&chain) {
                chains.push(chain);
            }
        }
        Ruleset { captures, chains }
    }

    pub fn chains(&self) -> &[ChainSpec] {
        &self.chains
    }

    /// Every rule, as `nft` would print it, in installation order.
    pub fn rules(&self) -> Vec<RuleText> {
        self.captures.iter().map(rule_text).collect()
    }

    /// The rules that skip conntrack, by local IP.
    pub fn notrack_rules(&self) -> Vec<(IpAddr, RuleText)> {
        self.captures
            .iter()
            .filter(|c| c.target == Target::Notrack)
            .map(|c| (c.ip, rule_text(c)))
            .collect()
    }

    /// Installs the table, replacing whatever table of that name is there, in one
    /// atomic batch.
    pub fn apply(&self) -> Result<(), NftError> {
        let local_ips = self
            .captures
            .iter()
            .map(|c| c.ip)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if local_ips > NFT_LOCAL_IPS_MAX {
            return Err(NftError::TooManyIps { count: local_ips });
        }
        let requests = self.batch().map_err(context("building the batch"))?;
        let mut conn = Conn::open().map_err(context("apply"))?;
        conn.batch(&requests).map_err(context("apply"))
    }

    fn batch(&self) -> Result<Vec<Request>, NetlinkError> {
        let table = || attr_str(NFTA_TABLE_NAME, TABLE);
        let request = |msg, flags, attrs, what: String| Request {
            msg,
            family: NFPROTO_INET,
            flags,
            attrs,
            what,
        };
        let mut requests = vec![
            request(
                NFT_MSG_NEWTABLE,
                NlmF::CREATE,
                vec![table()?],
                "add table".into(),
            ),
            request(
                NFT_MSG_DELTABLE,
                NlmF::empty(),
                vec![table()?],
                "flush (delete) table".into(),
            ),
            request(
                NFT_MSG_NEWTABLE,
                NlmF::CREATE,
                vec![table()?],
                "add table".into(),
            ),
        ];
        for chain in &self.chains {
            requests.push(request(
                NFT_MSG_NEWCHAIN,
                NlmF::CREATE,
                chain_attrs(chain)?,
                format!("add chain {}", chain.name),
            ));
        }
        for capture in &self.captures {
            let text = rule_text(capture);
            requests.push(request(
                NFT_MSG_NEWRULE,
                NlmF::CREATE | NlmF::APPEND,
                rule_attrs(capture)?,
                format!("add rule {text}"),
            ));
        }
        Ok(requests)
    }

    /// Deletes the table; Ok(false) when it was not there.
    pub fn remove() -> Result<bool, NftError> {
        let mut conn = Conn::open().map_err(context("delete"))?;
        let requests = [Request {
            msg: NFT_MSG_DELTABLE,
            family: NFPROTO_INET,
            flags: NlmF::empty(),
            attrs: vec![attr_str(NFTA_TABLE_NAME, TABLE).map_err(context("delete"))?],
            what: "delete table".into(),
        }];
        match conn.batch(&requests) {
            Ok(()) => Ok(true),
            Err(err) if err.errno() == Some(libc::ENOENT) => Ok(false),
            Err(err) => Err(context("delete")(err)),
        }
    }

    /// What differs between the node's table and ours (empty: identical).
    pub fn problems(&self) -> Result<Vec<Problem>, NftError> {
        let found = inspect().map_err(context("reading it back"))?;
        Ok(self.compare(found.as_ref()))
    }

    /// Reapplies the table when it differs from ours; returns what differed.
    pub fn ensure(&self) -> Result<Vec<Problem>, NftError> {
        let problems = self.problems()?;
        if !problems.is_empty() {
            self.apply()?;
        }
        Ok(problems)
    }

    fn compare(&self, found: Option<&Found>) -> Vec<Problem> {
        let Some(found) = found else {
            return vec![Problem::TableMissing];
        };
        let mut problems = Vec::new();
        for chain in &self.chains {
            match found.chains.iter().find(|c| c.name == chain.name) {
                None => problems.push(Problem::ChainMissing(chain.name.clone())),
                Some(c) if c != chain => problems.push(Problem::ChainWrong(
                    chain.name.clone(),
                    c.to_string(),
                    chain.to_string(),
                )),
                Some(_) => {}
            }
        }
        for chain in &found.chains {
            if !self.chains.iter().any(|c| c.name == chain.name) {
                problems.push(Problem::ChainExtra(chain.name.clone()));
            }
        }
        let mut counts: BTreeMap<&RuleText, i64> = BTreeMap::new();
        let expected = self.rules();
        for rule in &expected {
            *counts.entry(rule).or_default() += 1;
        }
        for rule in &found.rules {
            *counts.entry(rule).or_default() -= 1;
        }
        for (rule, count) in counts {
            let problem = if count > 0 {
                Problem::RuleMissing(rule.clone())
            } else {
                Problem::RuleExtra(rule.clone())
            };
            for _ in 0..count.unsigned_abs() {
                problems.push(problem.clone());
            }
        }
        problems
    }
}

/// The table as read from the kernel.
#[derive(Debug, Default)]
pub struct Found {
    pub chains: Vec<ChainSpec>,
    pub rules: Vec<RuleText>,
}

/// Reads our table back; None when it does not exist.
pub fn inspect() -> Result<Option<Found>, NetlinkError> {
    let mut conn = Conn::open()?;
    let present = tables_with(&mut conn)?
        .iter()
        .any(|(family, name)| family == TABLE_FAMILY && name == TABLE);
    if !present {
        return Ok(None);
    }
    let mut found = Found::default();
    for reply in conn.dump(NFT_MSG_GETCHAIN, NFPROTO_INET, Vec::new())? {
        if find_str(&reply.attrs, NFTA_CHAIN_TABLE).as_deref() == Some(TABLE) {
            found.chains.push(chain_from(&reply)?);
        }
    }
    let filter = vec![attr_str(NFTA_RULE_TABLE, TABLE)?];
    for reply in conn.dump(NFT_MSG_GETRULE, NFPROTO_INET, filter)? {
        found.rules.push(RuleText {
            chain: find_str(&reply.attrs, NFTA_RULE_CHAIN).unwrap_or_default(),
            text: decode_rule(&reply.attrs)?,
        });
    }
    Ok(Some(found))
}

/// Every nftables table on the node as (family, name): `ip kube-proxy`, ...
pub fn tables() -> Result<Vec<(String, String)>, NetlinkError> {
    tables_with(&mut Conn::open()?)
}

fn tables_with(conn: &mut Conn) -> Result<Vec<(String, String)>, NetlinkError> {
    Ok(conn
        .dump(NFT_MSG_GETTABLE, NFPROTO_UNSPEC, Vec::new())?
        .iter()
        .map(|r| {
            let name = find_str(&r.attrs, NFTA_TABLE_NAME).unwrap_or_default();
            (family_name(r.family).to_string(), name)
        })
        .collect())
}

/// The chain names of table `family name` (e.g. to find `KUBE-IPTABLES-HINT` in the
/// `ip mangle` table iptables-nft writes).
pub fn chains_of(family: &str, table: &str) -> Result<Vec<String>, NetlinkError> {
    let number = match family {
        "ip" => NFPROTO_IPV4,
        "ip6" => NFPROTO_IPV6,
        "inet" => NFPROTO_INET,
        _ => NFPROTO_UNSPEC,
    };
    let mut conn = Conn::open()?;
    Ok(conn
        .dump(NFT_MSG_GETCHAIN, number, Vec::new())?
        .iter()
        .filter(|r| find_str(&r.attrs, NFTA_CHAIN_TABLE).as_deref() == Some(table))
        .filter_map(|r| find_str(&r.attrs, NFTA_CHAIN_NAME))
        .collect())
}

/// Rules of iptables-nft's `raw` tables (`ip raw`, `ip6 raw`, where node-cache's
/// NOTRACK rules go) whose expressions or user data hold `mark` (iptables-nft keeps
/// `-m comment` there). Read over netlink: no iptables binary, no xtables lock.
pub fn iptables_nft_rules_marked(mark: &str) -> Result<usize, NetlinkError> {
    let mut conn = Conn::open()?;
    let tables = tables_with(&mut conn)?;
    let mut count = 0;
    for (family, number) in [("ip", NFPROTO_IPV4), ("ip6", NFPROTO_IPV6)] {
        if !tables.iter().any(|(f, n)| f == family && n == "raw") {
            continue;
        }
        let filter = vec![attr_str(NFTA_RULE_TABLE, "raw")?];
        for reply in conn.dump(NFT_MSG_GETRULE, number, filter)? {
            let holds = |kind| {
                find(&reply.attrs, kind).is_some_and(|bytes| contains(bytes, mark.as_bytes()))
            };
            if holds(NFTA_RULE_EXPRESSIONS) || holds(NFTA_RULE_USERDATA) {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn family_name(family: u8) -> &'static str {
    match family {
        NFPROTO_INET => "inet",
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        f if f == libc::NFPROTO_ARP as u8 => "arp",
        f if f == libc::NFPROTO_BRIDGE as u8 => "bridge",
        f if f == libc::NFPROTO_NETDEV as u8 => "netdev",
        _ => "?",
    }
}

fn chain_from(reply: &Reply) -> Result<ChainSpec, NetlinkError> {
    let name = find_str(&reply.attrs, NFTA_CHAIN_NAME).unwrap_or_default();
    let (mut hook, mut priority) = (u32::MAX, 0);
    if let Some(hook_attr) = reply
        .attrs
        .iter()
        .find(|a| *a.nla_type().nla_type() == NFTA_CHAIN_HOOK)
    {
        let inner = nested(hook_attr)?;
        hook = find_be32(&inner, NFTA_HOOK_HOOKNUM).unwrap_or(u32::MAX);
        priority = find_be32(&inner, NFTA_HOOK_PRIORITY).unwrap_or(0) as i32;
    }
    // Our chains are `type filter`, `policy accept`; anything else shows as a
    // different hook text.
    let kind = find_str(&reply.attrs, NFTA_CHAIN_TYPE).unwrap_or_default();
    let policy = find_be32(&reply.attrs, NFTA_CHAIN_POLICY).unwrap_or(libc::NF_ACCEPT as u32);
    if kind != "filter" || policy != libc::NF_ACCEPT as u32 {
        hook = u32::MAX;
    }
    Ok(ChainSpec {
        name,
        hook,
        priority,
    })
}

fn chain_attrs(chain: &ChainSpec) -> Result<Vec<Attr>, NetlinkError> {
    Ok(vec![
        attr_str(NFTA_CHAIN_TABLE, TABLE)?,
        attr_str(NFTA_CHAIN_NAME, &chain.name)?,
        nest(
            NFTA_CHAIN_HOOK,
            &[
                attr_be32(NFTA_HOOK_HOOKNUM, chain.hook)?,
                attr_be32(NFTA_HOOK_PRIORITY, chain.priority as u32)?,
            ],
        )?,
        attr_be32(NFTA_CHAIN_POLICY, libc::NF_ACCEPT as u32)?,
        attr_str(NFTA_CHAIN_TYPE, "filter")?,
    ])
}

/// (family word, address offset in the network header, address length).
fn address_field(ip: IpAddr, way: Way) -> (&'static str, u32, u32) {
    match (ip, way) {
        (IpAddr::V4(_), Way::To) => ("ip daddr", 16, 4),
        (IpAddr::V4(_), Way::From) => ("ip saddr", 12, 4),
        (IpAddr::V6(_), Way::To) => ("ip6 daddr", 24, 16),
        (IpAddr::V6(_), Way::From) => ("ip6 saddr", 8, 16),
    }
}

fn rule_text(capture: &Capture) -> RuleText {
    let (address, _, _) = address_field(capture.ip, capture.way);
    let port = match capture.way {
        Way::To => "dport",
        Way::From => "sport",
    };
    let verdict = match capture.target {
        Target::Notrack => "notrack",
        Target::Accept => "accept",
    };
    RuleText {
        chain: ChainSpec::of(capture).name,
        text: format!(
            "{address} {} {} {port} {} {verdict}",
            capture.ip, capture.proto, capture.port
        ),
    }
}

fn rule_attrs(capture: &Capture) -> Result<Vec<Attr>, NetlinkError> {
    let (_, offset, len) = address_field(capture.ip, capture.way);
    let (nfproto, octets) = match capture.ip {
        IpAddr::V4(v4) => (NFPROTO_IPV4, v4.octets().to_vec()),
        IpAddr::V6(v6) => (NFPROTO_IPV6, v6.octets().to_vec()),
    };
    let l4proto = if capture.proto == "tcp" {
        libc::IPPROTO_TCP
    } else {
        libc::IPPROTO_UDP
    } as u8;
    let port_offset = match capture.way {
        Way::To => 2,
        Way::From => 0,
    };
    let verdict = match capture.target {
        Target::Notrack => expr("notrack", &[])?,
        Target::Accept => accept()?,
    };
    let exprs = [
        meta(libc::NFT_META_NFPROTO as u32)?,
        cmp_eq(&[nfproto])?,
        payload(libc::NFT_PAYLOAD_NETWORK_HEADER as u32, offset, len)?,
        cmp_eq(&octets)?,
        meta(libc::NFT_META_L4PROTO as u32)?,
        cmp_eq(&[l4proto])?,
        payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32, port_offset, 2)?,
        cmp_eq(&capture.port.to_be_bytes())?,
        verdict,
    ];
    Ok(vec![
        attr_str(NFTA_RULE_TABLE, TABLE)?,
        attr_str(NFTA_RULE_CHAIN, &ChainSpec::of(capture).name)?,
        nest(NFTA_RULE_EXPRESSIONS, &exprs)?,
        attr(NFTA_RULE_USERDATA, &comment_udata(capture.comment()))?,
    ])
}

/// nftnl's user data TLV holding the rule's comment (`nft` shows it), node-cache's
/// literal text.
fn comment_udata(comment: &str) -> Vec<u8> {
    let mut bytes = comment.as_bytes().to_vec();
    bytes.push(0);
    let mut out = vec![NFTNL_UDATA_RULE_COMMENT, bytes.len() as u8];
    out.extend_from_slice(&bytes);
    out
}

fn expr(name: &str, data: &[Attr]) -> Result<Attr, NetlinkError> {
    let mut parts = vec![attr_str(NFTA_EXPR_NAME, name)?];
    if !data.is_empty() {
        parts.push(nest(NFTA_EXPR_DATA, data)?);
    }
    nest(NFTA_LIST_ELEM, &parts)
}

const REG_1: u32 = libc::NFT_REG_1 as u32;

fn meta(key: u32) -> Result<Attr, NetlinkError> {
    expr(
        "meta",
        &[
            attr_be32(NFTA_META_KEY, key)?,
            attr_be32(NFTA_META_DREG, REG_1)?,
        ],
    )
}

fn payload(base: u32, offset: u32, len: u32) -> Result<Attr, NetlinkError> {
    expr(
        "payload",
        &[
            attr_be32(NFTA_PAYLOAD_DREG, REG_1)?,
            attr_be32(NFTA_PAYLOAD_BASE, base)?,
            attr_be32(NFTA_PAYLOAD_OFFSET, offset)?,
            attr_be32(NFTA_PAYLOAD_LEN, len)?,
        ],
    )
}

fn cmp_eq(value: &[u8]) -> Result<Attr, NetlinkError> {
    expr(
        "cmp",
        &[
            attr_be32(NFTA_CMP_SREG, REG_1)?,
            attr_be32(NFTA_CMP_OP, libc::NFT_CMP_EQ as u32)?,
            nest(NFTA_CMP_DATA, &[attr(NFTA_DATA_VALUE, value)?])?,
        ],
    )
}

fn accept() -> Result<Attr, NetlinkError> {
    let verdict = nest(
        NFTA_DATA_VERDICT,
        &[attr_be32(NFTA_VERDICT_CODE, libc::NF_ACCEPT as u32)?],
    )?;
    expr(
        "immediate",
        &[
            attr_be32(NFTA_IMMEDIATE_DREG, libc::NFT_REG_VERDICT as u32)?,
            nest(NFTA_IMMEDIATE_DATA, &[verdict])?,
        ],
    )
}

/// What the last load put in the register.
enum Loaded {
    Nothing,
    Meta(u32),
    Payload(u32, u32),
}

/// A rule read back, in `nft` words: the matches we write, then the verdict.
/// Expressions we never write show as `[name]`, so such a rule never equals ours.
fn decode_rule(attrs: &[Attr]) -> Result<String, NetlinkError> {
    let mut words: Vec<String> = Vec::new();
    let Some(list) = attrs
        .iter()
        .find(|a| *a.nla_type().nla_type() == NFTA_RULE_EXPRESSIONS)
    else {
        return Ok(String::new());
    };
    let (mut loaded, mut family, mut proto) = (Loaded::Nothing, "?", "?");
    for elem in nested(list)? {
        let parts = nested(&elem)?;
        let name = find_str(&parts, NFTA_EXPR_NAME).unwrap_or_default();
        let data = match parts
            .iter()
            .find(|a| *a.nla_type().nla_type() == NFTA_EXPR_DATA)
        {
            Some(data) => nested(data)?,
            None => Vec::new(),
        };
        match name.as_str() {
            "meta" => loaded = Loaded::Meta(find_be32(&data, NFTA_META_KEY).unwrap_or(u32::MAX)),
            "payload" => {
                let base = find_be32(&data, NFTA_PAYLOAD_BASE).unwrap_or(u32::MAX);
                let offset = find_be32(&data, NFTA_PAYLOAD_OFFSET).unwrap_or(u32::MAX);
                loaded = Loaded::Payload(base, offset);
            }
            "cmp" if find_be32(&data, NFTA_CMP_OP) == Some(libc::NFT_CMP_EQ as u32) => {
                let value = match data
                    .iter()
                    .find(|a| *a.nla_type().nla_type() == NFTA_CMP_DATA)
                {
                    Some(d) => find(&nested(d)?, NFTA_DATA_VALUE)
                        .unwrap_or_default()
                        .to_vec(),
                    None => Vec::new(),
                };
                let word = matched(&loaded, &value, &mut family, &mut proto);
                words.extend(word);
                loaded = Loaded::Nothing;
            }
            "notrack" => words.push("notrack".into()),
            "immediate" => words.push(verdict_word(&data)?),
            other => words.push(format!("[{other}]")),
        }
    }
    Ok(words.join(" "))
}

/// The words of one `cmp eq` after a load: the family and protocol loads only set
/// the context the address and port words need.
fn matched(loaded: &Loaded, value: &[u8], family: &mut &str, proto: &mut &str) -> Option<String> {
    let nfproto = libc::NFT_META_NFPROTO as u32;
    let l4proto = libc::NFT_META_L4PROTO as u32;
    let network = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    let transport = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
    match *loaded {
        Loaded::Meta(key) if key == nfproto => {
            *family = match value {
                [p] if *p == NFPROTO_IPV4 => "ip",
                [p] if *p == NFPROTO_IPV6 => "ip6",
                _ => "?",
            };
            None
        }
        Loaded::Meta(key) if key == l4proto => {
            *proto = match value {
                [p] if i32::from(*p) == libc::IPPROTO_TCP => "tcp",
                [p] if i32::from(*p) == libc::IPPROTO_UDP => "udp",
                _ => "?",
            };
            None
        }
        Loaded::Payload(base, offset) if base == network => {
            let ip = match value.len() {
                4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
                _ => None,
            };
            let field = match (*family, offset) {
                ("ip", 16) | ("ip6", 24) => "daddr",
                ("ip", 12) | ("ip6", 8) => "saddr",
                _ => "?addr",
            };
            Some(match ip {
                Some(ip) => format!("{family} {field} {ip}"),
                None => format!("{family} {field} ?"),
            })
        }
        Loaded::Payload(base, offset) if base == transport => {
            let field = match offset {
                2 => "dport",
                0 => "sport",
                _ => "?port",
            };
            let port = <[u8; 2]>::try_from(value).map(u16::from_be_bytes);
            Some(match port {
                Ok(port) => format!("{proto} {field} {port}"),
                Err(_) => format!("{proto} {field} ?"),
            })
        }
        _ => Some("[cmp]".into()),
    }
}

fn verdict_word(data: &[Attr]) -> Result<String, NetlinkError> {
    let Some(imm) = data
        .iter()
        .find(|a| *a.nla_type().nla_type() == NFTA_IMMEDIATE_DATA)
    else {
        return Ok("[immediate]".into());
    };
    let inner = nested(imm)?;
    let Some(verdict) = inner
        .iter()
        .find(|a| *a.nla_type().nla_type() == NFTA_DATA_VERDICT)
    else {
        return Ok("[immediate]".into());
    };
    let code = find_be32(&nested(verdict)?, NFTA_VERDICT_CODE).map(|c| c as i32);
    Ok(match code {
        Some(libc::NF_ACCEPT) => "accept".into(),
        Some(libc::NF_DROP) => "drop".into(),
        _ => "[verdict]".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::rules::captures;

    fn ruleset() -> Ruleset {
        let ips = [
            "169.254.20.10".parse().unwrap(),
            "fd00::10".parse().unwrap(),
        ];
        Ruleset::new(captures(&ips, 53, 8080))
    }

    #[test]
    fn four_chains_and_twelve_rules_per_ip() {
        let set = ruleset();
        let names: Vec<&str> = set.chains().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "raw-prerouting",
                "filter-input",
                "raw-output",
                "filter-output"
            ]
        );
        assert_eq!(set.chains()[0].priority, -300);
        assert_eq!(set.chains()[1].priority, 0);
        let rules = set.rules();
        assert_eq!(rules.len(), 24);
        assert_eq!(
            rules[0].to_string(),
            "raw-prerouting: ip daddr 169.254.20.10 tcp dport 53 notrack"
        );
        assert_eq!(
            rules[2].to_string(),
            "filter-input: ip daddr 169.254.20.10 tcp dport 53 accept"
        );
        assert_eq!(
            rules[11].to_string(),
            "raw-output: ip saddr 169.254.20.10 tcp sport 8080 notrack"
        );
        assert_eq!(
            rules[13].to_string(),
            "raw-prerouting: ip6 daddr fd00::10 udp dport 53 notrack"
        );
    }

    /// The attributes we send decode to the text we expect: what the sync pass
    /// compares against the kernel's dump.
    #[test]
    fn built_rules_decode_to_their_text() {
        let set = ruleset();
        for (capture, want) in set.captures.iter().zip(set.rules()) {
            let attrs = rule_attrs(capture).unwrap();
            assert_eq!(decode_rule(&attrs).unwrap(), want.text);
        }
    }

    /// The largest table we accept (NFT_LOCAL_IPS_MAX IPv6 addresses, 5-digit ports)
    /// fits in one batch.
    #[test]
    fn largest_batch_fits() {
        let ips: Vec<IpAddr> = (0..crate::limits::NFT_LOCAL_IPS_MAX)
            .map(|i| format!("fd00:1234:5678:9abc::{i:x}").parse().unwrap())
            .collect();
        let set = Ruleset::new(captures(&ips, 65_053, 65_080));
        let requests = set.batch().unwrap();
        assert_eq!(requests.len(), 3 + 4 + ips.len() * 12);
        let bytes = Conn::open().unwrap().encode_batch(&requests).unwrap();
        assert!(
            bytes.len() <= crate::limits::NFT_BATCH_BYTES_MAX,
            "{} bytes",
            bytes.len()
        );
        assert!(
            bytes.len() > crate::limits::NFT_BATCH_BYTES_MAX / 2,
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn compare_names_each_difference() {
        let set = ruleset();
        assert_eq!(set.compare(None), vec![Problem::TableMissing]);
        let mut found = Found {
            chains: set.chains().to_vec(),
            rules: set.rules(),
        };
        assert!(set.compare(Some(&found)).is_empty());
        let gone = found.rules.remove(1);
        found.rules.push(found.rules[0].clone());
        found.chains.remove(3);
        found.chains[0].priority = 0;
        let problems = set.compare(Some(&found));
        assert!(
            problems.contains(&Problem::RuleMissing(gone)),
            "{problems:?}"
        );
        assert!(problems.contains(&Problem::RuleExtra(set.rules()[0].clone())));
        assert!(problems.contains(&Problem::ChainMissing("filter-output".into())));
        assert!(problems
            .iter()
            .any(|p| p.to_string() == "chain raw-prerouting has hook prerouting priority 0, expected hook prerouting priority -300"));
    }
}
