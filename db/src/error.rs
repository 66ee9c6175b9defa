//! The one error type of the store. Every variant carries the names and values involved, and
//! its message says what is wrong and how to fix it, in the words of the `mizar` CLI.

use std::{fmt, net::Ipv4Addr, path::PathBuf, time::Duration};

use ipnet::Ipv4Net;

use crate::model::MacAddr;

/// The kinds of object the store holds, as they are named in messages and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Host,
    /// Which host is the machine the store belongs to.
    ThisHost,
    Vpc,
    Network,
    Endpoint,
    Bouncer,
    Divider,
    Backend,
    Chain,
    DdosLimit,
    RateLimit,
    Acl,
    Function,
}

impl Kind {
    /// The noun of the `mizar` subcommand that manages this kind.
    pub fn cli_noun(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::ThisHost => "init",
            Kind::Vpc => "vpc",
            Kind::Network => "net",
            Kind::Endpoint | Kind::Backend => "ep",
            Kind::Bouncer => "bouncer",
            Kind::Divider => "divider",
            Kind::Chain => "chain",
            Kind::DdosLimit => "ddos",
            Kind::RateLimit => "ratelimit",
            Kind::Acl => "acl",
            Kind::Function => "fn",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Host => "host",
            Kind::ThisHost => "this host",
            Kind::Vpc => "VPC",
            Kind::Network => "network",
            Kind::Endpoint => "endpoint",
            Kind::Bouncer => "bouncer",
            Kind::Divider => "divider",
            Kind::Backend => "backend",
            Kind::Chain => "chain",
            Kind::DdosLimit => "ddos limit",
            Kind::RateLimit => "rate limit",
            Kind::Acl => "ACL",
            Kind::Function => "function",
        })
    }
}

/// A list of names for a message: "a, b, c", at most ten of them, or "none yet". Only the
/// names shown are kept (a VPC may have 100,000 endpoints), with the count of the others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    /// A boxed slice rather than a Vec: it keeps [`StoreError`] under 128 bytes.
    pub shown: Box<[String]>,
    pub total: usize,
}

impl Names {
    const SHOWN: usize = 10;
}

impl<S: Into<String>> FromIterator<S> for Names {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut shown = Vec::new();
        let mut total = 0;
        for name in iter {
            if shown.len() < Self::SHOWN {
                shown.push(name.into());
            }
            total += 1;
        }
        Names {
            shown: shown.into(),
            total,
        }
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total == 0 {
            return f.write_str("none yet");
        }
        f.write_str(&self.shown.join(", "))?;
        if self.total > self.shown.len() {
            write!(f, " and {} more", self.total - self.shown.len())?;
        }
        Ok(())
    }
}

/// Problems of a whole document, one per line.
#[derive(Debug)]
pub struct Problems(pub Vec<StoreError>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // --- The database file ---
    #[error(
        "cannot create the state directory {}: {source}; create it by hand or choose another \
         state directory",
        path.display()
    )]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot open the database {}: {source}; check that it is a mizar database and that it \
         is readable and writable",
        path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "the database {} has schema version {found}, newer than this mizar knows (version \
         {known}); it was left untouched: use the mizar release that wrote it, or a newer one",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error(
        "the database stayed locked by another mizar command for {:.0?} while {action}; nothing \
         was changed: retry when that command has finished",
        waited
    )]
    Busy {
        action: &'static str,
        waited: Duration,
    },

    #[error("database error while {action}: {source}")]
    Sqlite {
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "the database holds {what} {value:?}, which mizar cannot read; it was changed outside \
         mizar: fix or delete that row with sqlite3, or rebuild the store from an export"
    )]
    Corrupt { what: &'static str, value: String },

    // --- Reading a document ---
    #[error("the topology is not valid YAML for mizar: {0}; see mizar export for the format")]
    Yaml(#[from] serde_norway::Error),

    #[error(
        "the topology is not valid JSON for mizar: {0}; see mizar export --json for the format"
    )]
    Json(#[from] serde_json::Error),

    #[error("the topology has {} problems; nothing was changed:{}", .0.0.len(), .0)]
    Problems(Problems),

    // --- Values ---
    #[error(
        "{kind} name {name:?} is not valid: {reason}; use 1 to 63 letters, digits, '.', '_' or \
         '-', starting with a letter or digit"
    )]
    InvalidName {
        kind: Kind,
        name: String,
        reason: &'static str,
    },

    #[error(
        "interface name {name:?} of {subject} is not valid: {reason}; Linux interface names have \
         1 to 15 characters and no '/', ':' or white space"
    )]
    InvalidInterface {
        subject: String,
        name: String,
        reason: &'static str,
    },

    #[error(
        "{input:?} is not a MAC address: {reason}; write six hex octets such as 02:00:00:00:00:01"
    )]
    InvalidMac { input: String, reason: &'static str },

    #[error("{input:?} is not an endpoint type; use simple, scaled, host or function")]
    InvalidEndpointKind { input: String },

    #[error(
        "MAC {mac} of {subject} is {reason}; hosts and endpoints need a unicast MAC (lowest bit \
         of the first octet clear, not all zeros) such as 02:00:00:00:00:01"
    )]
    MacNotUnicast {
        subject: String,
        mac: MacAddr,
        reason: &'static str,
    },

    #[error(
        "underlay IP {ip} of host {host:?} is {reason}; give the address the host's underlay \
         interface carries"
    )]
    HostIpInvalid {
        host: String,
        ip: Ipv4Addr,
        reason: &'static str,
    },

    #[error(
        "underlay IP {ip} of host {host:?} already belongs to host {other:?}; each host needs \
         its own underlay address"
    )]
    HostIpTaken {
        host: String,
        ip: Ipv4Addr,
        other: String,
    },

    #[error(
        "host {host:?} is this host but has no underlay interface; name it, e.g. with mizar init \
         --interface eth0, or interface: in the document's host entry"
    )]
    NoUnderlayInterface { host: String },

    #[error(
        "VNI {vni} of VPC {vpc:?} is out of range; a VNI has 24 bits: pick one from 1 to 16777215"
    )]
    VniOutOfRange { vpc: String, vni: u32 },

    #[error("VNI {vni} of VPC {vpc:?} is already used by VPC {other:?}; give each VPC its own VNI")]
    VniTaken {
        vpc: String,
        vni: u32,
        other: String,
    },

    #[error("CIDR {given} of {subject} has host bits set; write the network address: {suggested}")]
    HostBitsSet {
        subject: String,
        given: Ipv4Net,
        suggested: Ipv4Net,
    },

    #[error(
        "CIDR {cidr} of {subject} leaves no room for a gateway and endpoints; use a prefix of /30 \
         or shorter"
    )]
    PrefixTooLong { subject: String, cidr: Ipv4Net },

    #[error(
        "network {network:?} ({cidr}) is outside its VPC {vpc:?} ({vpc_cidr}); choose a CIDR \
         inside {vpc_cidr}, or widen the VPC"
    )]
    NetworkOutsideVpc {
        vpc: String,
        vpc_cidr: Ipv4Net,
        network: String,
        cidr: Ipv4Net,
    },

    #[error(
        "network {network:?} ({cidr}) overlaps network {other:?} ({other_cidr}) in VPC {vpc:?}; \
         networks of one VPC must not overlap: choose a free CIDR"
    )]
    NetworkOverlap {
        vpc: String,
        network: String,
        cidr: Ipv4Net,
        other: String,
        other_cidr: Ipv4Net,
    },

    #[error(
        "gateway {gateway} of network {network:?} ({cidr}) in VPC {vpc:?} is {reason}; use a \
         host address of the network, such as {suggested}"
    )]
    BadGateway {
        vpc: String,
        network: String,
        cidr: Ipv4Net,
        gateway: Ipv4Addr,
        reason: &'static str,
        suggested: Ipv4Addr,
    },

    #[error("VPC {vpc:?} has no network containing {ip}; add one with mizar net add")]
    NoNetworkFor { vpc: String, ip: Ipv4Addr },

    #[error(
        "IP {ip} of endpoint {endpoint:?} is outside its network {network:?} ({cidr}) in VPC \
         {vpc:?}; {hint}"
    )]
    EndpointOutsideNetwork {
        vpc: String,
        network: String,
        cidr: Ipv4Net,
        endpoint: String,
        ip: Ipv4Addr,
        hint: String,
    },

    #[error(
        "IP {ip} of endpoint {endpoint:?} is {reason} of network {network:?} ({cidr}) in VPC \
         {vpc:?}; pick another address of the network"
    )]
    EndpointIpReserved {
        vpc: String,
        network: String,
        cidr: Ipv4Net,
        endpoint: String,
        ip: Ipv4Addr,
        reason: &'static str,
    },

    #[error(
        "MAC {mac} of endpoint {endpoint:?} is already used by endpoint {other:?} in VPC {vpc:?}; \
         give each endpoint of a VPC its own MAC (frames to it are told apart by it)"
    )]
    EndpointMacTaken {
        vpc: String,
        mac: MacAddr,
        endpoint: String,
        other: String,
    },

    #[error(
        "IP {ip} of endpoint {endpoint:?} is already used by endpoint {other:?} in VPC {vpc:?}; \
         pick a free address (the same IP in another VPC is fine)"
    )]
    EndpointIpTaken {
        vpc: String,
        ip: Ipv4Addr,
        endpoint: String,
        other: String,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?} is of type {kind}, but only function endpoints can \
         bypass decapsulation; drop bypass-decap or make it a function endpoint"
    )]
    BypassDecapNotAllowed {
        vpc: String,
        endpoint: String,
        kind: crate::model::EndpointKind,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?} is of type {kind}, but only scaled endpoints have \
         backends; drop the backends or make it a scaled endpoint"
    )]
    BackendsNotAllowed {
        vpc: String,
        endpoint: String,
        kind: crate::model::EndpointKind,
    },

    #[error(
        "backend {backend:?} of scaled endpoint {endpoint:?} in VPC {vpc:?} {reason}; list \
         simple, host or function endpoints of the same VPC"
    )]
    BadBackend {
        vpc: String,
        endpoint: String,
        backend: String,
        reason: &'static str,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?} is hosted on this host ({host:?}) but names no \
         veth; give its host-side veth, e.g. with mizar ep add --veth"
    )]
    VethMissing {
        vpc: String,
        endpoint: String,
        host: String,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?} has the veth pair mizar made into namespace \
         {netns:?}, which stays on its host and veth; to move it, delete it (mizar ep del) and \
         add it again where it should be"
    )]
    NetnsPlumbed {
        vpc: String,
        endpoint: String,
        netns: String,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?}: network namespace {netns:?} {reason}; name it \
         as `ip netns` does (e.g. pod-web1)"
    )]
    NetnsInvalid {
        vpc: String,
        endpoint: String,
        netns: String,
        reason: &'static str,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?} has a network namespace ({netns:?}) but no veth: \
         name the host end of the pair mizar makes (veth)"
    )]
    NetnsWithoutVeth {
        vpc: String,
        endpoint: String,
        netns: String,
    },

    #[error(
        "endpoints {endpoint} and {other} of host {host:?} are both plumbed into network \
         namespace {netns:?}, where each would be eth0; give each its own namespace"
    )]
    NetnsShared {
        host: String,
        netns: String,
        endpoint: String,
        other: String,
    },

    #[error(
        "endpoint {endpoint:?} in VPC {vpc:?} is scaled (a virtual IP served by its backends) \
         and has no veth of its own; drop the veth"
    )]
    VethNotAllowed { vpc: String, endpoint: String },

    #[error(
        "veth {veth:?} on host {host:?} already carries endpoint {other}; each endpoint needs a \
         veth of its own"
    )]
    VethTaken {
        host: String,
        veth: String,
        endpoint: String,
        other: String,
    },

    #[error(
        "{owner} would have {count} {what}, but the data plane supports at most {max}; remove \
         some"
    )]
    TooMany {
        owner: String,
        what: &'static str,
        count: usize,
        max: usize,
    },

    // --- Function chains ---
    #[error(
        "no host of the store is this host yet: run `mizar init` first, or name the host with --host"
    )]
    NoThisHost,

    #[error("unknown stage {input:?}; stages: {}", crate::chains::CHAIN_STAGES.join(", "))]
    UnknownStage { input: String },

    #[error("unknown function {name:?}; functions: {known} (see `mizar fn list`)")]
    UnknownFunction { name: String, known: String },

    #[error(
        "{count} functions at {stage} exceed the {max} a chain holds (the kernel allows 33 tail \
         calls per packet); remove some first"
    )]
    ChainTooLong {
        stage: String,
        count: usize,
        max: usize,
    },

    #[error(
        "position {position} is not in the chain at {stage}, which holds {len} function(s); \
         positions run from 1 (see `mizar chain show --stage {stage}`)"
    )]
    ChainPosition {
        stage: String,
        position: usize,
        len: usize,
    },

    #[error(
        "{count} functions placed in chains exceed the {max} the data plane counts; remove some \
         first"
    )]
    TooManyFunctionInstances { count: usize, max: usize },

    #[error(
        "a VPC's or an endpoint's chain cannot sit at {stage}: a packet's VPC is not known there \
         yet; use ON_XDP_TX, ON_XDP_REDIRECT, ON_XDP_SCALED_EP or ON_EGRESS (or a host chain)"
    )]
    StageNotScoped { stage: String },

    #[error("{name:?} is a built-in function; load yours under another name")]
    FunctionBuiltIn { name: String },

    #[error(
        "a function {name:?} is loaded already; unload it first (mizar fn unload {name}) or \
         give --replace"
    )]
    FunctionAlreadyLoaded { name: String },

    #[error("no function {name:?} is loaded; loaded: {known} (see mizar fn list)")]
    FunctionNotLoaded { name: String, known: String },

    #[error(
        "function {name:?} is placed in chains ({places}); take it out with mizar chain del first"
    )]
    FunctionPlaced { name: String, places: String },

    #[error(
        "a packet at {stage} could meet {counts}: more than the {max} a packet's chain holds \
         (the kernel allows 33 tail calls); shorten one of them"
    )]
    ChainBudget {
        stage: String,
        /// "N functions of host H's chain, N of VPC V's and N of endpoint E's".
        counts: String,
        max: usize,
    },

    // --- The ddos function ---
    #[error(
        "the {what} of {subject} must allow at least 1 {unit} per window of 10 ms to 1 hour \
         (got {packets} per {window_ms} ms)"
    )]
    DdosLimitRange {
        subject: String,
        what: &'static str,
        unit: &'static str,
        packets: u64,
        window_ms: u64,
    },

    #[error("{subject} already blocks {cidr}")]
    DdosBlockExists { subject: String, cidr: Ipv4Net },

    #[error("{subject} does not block {cidr}; see `mizar ddos show`")]
    DdosBlockUnknown { subject: String, cidr: Ipv4Net },

    #[error("{subject} has no {what}; see `mizar ddos show`")]
    DdosLimitUnknown { subject: String, what: &'static str },

    // --- The ratelimit function ---
    #[error(
        "the rate limit of {subject} needs --packets or --bytes (per second), and bursts of at \
         least 1"
    )]
    RateLimitEmpty { subject: String },

    #[error("{subject} has no {direction} rate limit; see `mizar ratelimit show`")]
    RateLimitUnknown { subject: String, direction: String },

    #[error(
        "{input:?} is not a direction; use ingress (what an endpoint receives) or egress (what it sends)"
    )]
    InvalidDirection { input: String },

    // --- The acl function ---
    #[error("{input:?} is not an ACL action; use allow or deny")]
    AclBadAction { input: String },

    #[error(
        "{input:?} is not an ACL address ({reason}); use any, a CIDR such as 10.0.1.0/24, an \
         address, label:key=value (the VPC's endpoints with that label) or ep:NAME"
    )]
    AclBadAddress { input: String, reason: String },

    #[error("{input:?} is not a protocol; use any, tcp, udp, icmp, sctp or a number 0-255")]
    AclBadProto { input: String },

    #[error("{input:?} is not a port range ({reason}); use a port (80) or a range (8000-8100)")]
    AclBadPorts { input: String, reason: String },

    #[error("ports need a protocol with ports; {proto} has none: give --proto tcp, udp or sctp")]
    AclPortsWithoutProto { proto: String },

    #[error(
        "no endpoint of VPC {vpc:?} has the label {label:?}; labels in use: {}; label an \
         endpoint first (mizar ep set NAME --vpc {vpc} --label {label})",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )]
    AclUnknownLabel {
        vpc: String,
        label: String,
        known: Vec<String>,
    },

    #[error(
        "the {direction} rules of VPC {vpc:?} have no position {position} (they are {count}); \
         see mizar acl show --vpc {vpc}"
    )]
    AclBadPosition {
        vpc: String,
        direction: String,
        position: u32,
        count: u32,
    },

    #[error("VPC {vpc:?} has no ACL; see mizar acl show")]
    AclNone { vpc: String },

    #[error(
        "label {label:?} of {subject} is not key=value ({reason}); keys and values are letters, \
         digits, '.', '_' and '-', at most 63 characters each, one value per key"
    )]
    BadLabel {
        subject: String,
        label: String,
        reason: &'static str,
    },

    // --- References and existence ---
    #[error("unknown {kind} {name:?}{scope}{used_by}; known: {known}; {fix}")]
    Unknown {
        kind: Kind,
        name: String,
        /// Where it was looked for, e.g. ` in VPC "blue"`, or empty.
        scope: String,
        /// What refers to it, e.g. ` (bouncer of network "web")`, or empty.
        used_by: String,
        known: Names,
        fix: &'static str,
    },

    #[error("{kind} {name:?}{scope} already exists; {fix}")]
    AlreadyExists {
        kind: Kind,
        name: String,
        scope: String,
        fix: &'static str,
    },

    #[error("the document lists {kind} {name:?}{scope} more than once; merge the entries into one")]
    Duplicate {
        kind: Kind,
        name: String,
        scope: String,
    },

    #[error(
        "{kind} {name:?}{scope} is still used by {users}; delete those first, or delete with \
         --cascade to remove them too"
    )]
    InUse {
        kind: Kind,
        name: String,
        scope: String,
        users: String,
    },

    /// The commit guard (the data plane) could not take the configuration; nothing changed.
    #[error("{0}; nothing was changed")]
    Refused(crate::store::Refusal),
}

impl StoreError {
    /// One problem as itself, several as a list.
    pub(crate) fn from_problems(mut problems: Vec<StoreError>) -> Option<StoreError> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(StoreError::Problems(Problems(problems))),
        }
    }

    /// The individual problems: those of a list, or this one.
    pub fn problems(&self) -> Vec<&StoreError> {
        match self {
            StoreError::Problems(list) => list.0.iter().collect(),
            other => vec![other],
        }
    }
}

/// Context for rusqlite errors: what the store was doing, and a clear word for "locked".
pub(crate) trait SqlContext<T> {
    fn ctx(self, action: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, action: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy {
                    action,
                    waited: crate::schema::BUSY_TIMEOUT,
                }
            }
            _ => StoreError::Sqlite { action, source },
        })
    }
}

/// `network "web" in VPC "blue"`: how messages name a network.
pub(crate) fn network_subject(vpc: &str, network: &str) -> String {
    format!("network {network:?} in VPC {vpc:?}")
}

/// `endpoint "web1" in VPC "blue"`.
pub(crate) fn endpoint_subject(vpc: &str, endpoint: &str) -> String {
    format!("endpoint {endpoint:?} in VPC {vpc:?}")
}

#[cfg(test)]
mod tests {
    /// Results carrying it are returned everywhere: keep it small enough to move cheaply
    /// (clippy's result_large_err draws the line at 128 bytes).
    #[test]
    fn names_keep_only_what_they_show() {
        let names: super::Names = (0..100_000).map(|i| format!("ep{i}")).collect();
        assert_eq!(names.shown.len(), 10);
        assert_eq!(
            names.to_string(),
            "ep0, ep1, ep2, ep3, ep4, ep5, ep6, ep7, ep8, ep9 and 99990 more"
        );
        assert_eq!(super::Names::default().to_string(), "none yet");
    }

    #[test]
    fn the_error_stays_small() {
        assert!(
            size_of::<super::StoreError>() <= 128,
            "{}",
            size_of::<super::StoreError>()
        );
    }
}
