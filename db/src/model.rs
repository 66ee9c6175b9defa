//! Domain types: the rows the typed API takes and returns, and the declarative [`Topology`]
//! document (YAML or JSON) that `apply` and `export` speak.
//!
//! The data plane is IPv4 only, so is the model.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::StoreError;

/// An Ethernet address, written `02:00:00:00:00:01` (`-` also accepted as separator).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// The group bit: multicast, broadcast included.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_broadcast(self) -> bool {
        self.0 == [0xff; 6]
    }

    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }

    /// Why this MAC cannot name one host or endpoint, if it cannot.
    pub(crate) fn not_unicast_reason(self) -> Option<&'static str> {
        if self.is_broadcast() {
            Some("the broadcast address")
        } else if self.is_multicast() {
            Some("a multicast address")
        } else if self.is_zero() {
            Some("all zeros")
        } else {
            None
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = StoreError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| StoreError::InvalidMac {
            input: input.to_owned(),
            reason,
        };
        let separator = if input.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = input.split(separator);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| invalid("it needs six octets"))?;
            if part.len() != 2 {
                return Err(invalid("each octet is two hex digits"));
            }
            *octet = u8::from_str_radix(part, 16)
                .map_err(|_| invalid("octets are hex digits 0-9, a-f"))?;
        }
        if parts.next().is_some() {
            return Err(invalid("it has more than six octets"));
        }
        Ok(MacAddr(octets))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What an endpoint is (the data plane's `MZ_EP_*` types).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A veth into a namespace or container.
    #[default]
    Simple,
    /// A virtual IP served by several backends.
    Scaled,
    /// The host's own stack.
    Host,
    /// A network function; with bypass-decap it receives the tunnel packet as is.
    Function,
}

impl EndpointKind {
    pub const ALL: [EndpointKind; 4] = [
        EndpointKind::Simple,
        EndpointKind::Scaled,
        EndpointKind::Host,
        EndpointKind::Function,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Simple => "simple",
            EndpointKind::Scaled => "scaled",
            EndpointKind::Host => "host",
            EndpointKind::Function => "function",
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndpointKind {
    type Err = StoreError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        EndpointKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(input))
            .ok_or_else(|| StoreError::InvalidEndpointKind {
                input: input.to_owned(),
            })
    }
}

/// A machine running mizar, reached over the underlay. One host of the store is this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Host {
    pub name: String,
    /// Underlay address: Geneve (UDP 6081) goes to and comes from it.
    pub ip: Ipv4Addr,
    /// The MAC frames to this host are sent to (its own, or the underlay next hop's).
    pub mac: MacAddr,
    /// Underlay interface, on that host. Required for this host; kept for the others so that
    /// one document can be applied on every host of a fabric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// A tenant network with its own 24-bit VNI; address spaces of VPCs may overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Vpc {
    pub name: String,
    pub vni: u32,
    #[serde(deserialize_with = "cidr::deserialize")]
    pub cidr: Ipv4Net,
}

/// A subnet of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    pub vpc: String,
    pub name: String,
    #[serde(deserialize_with = "cidr::deserialize")]
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
}

impl Network {
    /// A network whose gateway is its first host address (the usual choice).
    pub fn new(vpc: impl Into<String>, name: impl Into<String>, cidr: Ipv4Net) -> Self {
        Network {
            vpc: vpc.into(),
            name: name.into(),
            cidr,
            gateway: default_gateway(cidr),
        }
    }
}

/// The first host address of a network: x.x.x.1 of a /24.
pub fn default_gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).saturating_add(1))
}

/// An address inside a network of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoint {
    pub vpc: String,
    pub network: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(rename = "type", default)]
    pub kind: EndpointKind,
    #[serde(default)]
    pub bypass_decap: bool,
    /// The host the endpoint lives on.
    pub host: String,
    /// Host-side veth on its host; required when that host is this host (except for scaled
    /// endpoints, which have none).
    #[serde(default)]
    pub veth: Option<String>,
    /// Endpoint names of the same VPC serving a scaled endpoint; sorted.
    #[serde(default)]
    pub backends: Vec<String>,
    /// `key=value` labels, sorted: the groups ACL rules name (`label:key=value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl Endpoint {
    /// Endpoint `spec` of a document, in network `network` of VPC `vpc`.
    pub fn from_spec(vpc: &str, network: &str, spec: &EndpointSpec) -> Self {
        Self {
            vpc: vpc.to_owned(),
            network: network.to_owned(),
            name: spec.name.clone(),
            ip: spec.ip,
            mac: spec.mac,
            kind: spec.kind,
            bypass_decap: spec.bypass_decap,
            host: spec.host.clone(),
            veth: spec.veth.clone(),
            backends: spec.backends.clone(),
            labels: sorted_labels(&spec.labels),
        }
    }

    /// A simple endpoint, no veth, no backends: set the other fields as needed.
    pub fn simple(
        vpc: impl Into<String>,
        network: impl Into<String>,
        name: impl Into<String>,
        ip: Ipv4Addr,
        mac: MacAddr,
        host: impl Into<String>,
    ) -> Self {
        Endpoint {
            vpc: vpc.into(),
            network: network.into(),
            name: name.into(),
            ip,
            mac,
            kind: EndpointKind::Simple,
            bypass_decap: false,
            host: host.into(),
            veth: None,
            backends: Vec::new(),
            labels: Vec::new(),
        }
    }
}

/// Labels in the order the store keeps them (sorted, without repeats).
pub fn sorted_labels(labels: &[String]) -> Vec<String> {
    let mut out = labels.to_vec();
    out.sort();
    out.dedup();
    out
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The whole configuration as a document: hosts, and VPCs with their networks and endpoints
/// nested inside, the way one would write it by hand.
///
/// ```yaml
/// this-host: gw1
/// hosts:
///   - { name: gw1, ip: 192.168.50.1, mac: "02:00:c0:a8:32:01", interface: eth0 }
///   - { name: h2,  ip: 192.168.50.2, mac: "02:00:c0:a8:32:02" }
/// vpcs:
///   - name: blue
///     vni: 100
///     cidr: 10.0.0.0/16
///     dividers: [gw1]
///     networks:
///       - name: web
///         cidr: 10.0.1.0/24          # gateway: defaults to 10.0.1.1
///         bouncers: [gw1, h2]
///         endpoints:
///           - { name: web1, ip: 10.0.1.10, mac: "02:00:0a:00:01:0a", host: h2, veth: veth-web1 }
/// ```
///
/// Applying it describes each object fully (an omitted field takes its default); without
/// pruning it only adds and changes, with pruning whatever the document does not list goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Topology {
    /// Which of the hosts is the machine the store belongs to. Omitted: left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub this_host: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<VpcSpec>,
    /// Function chains at the stages of each host's pipeline. A document that lists none
    /// leaves the chains as they are (unless pruning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<crate::chains::ChainSpec>,
    /// Function chains of VPCs and endpoints (after the host's at a stage). A document that
    /// lists none leaves them as they are (unless pruning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scoped_chains: Vec<crate::chains::ScopedChainSpec>,
    /// The ddos function's blocks and thresholds. Omitted: left as they are (unless pruning);
    /// given: replaced by what it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddos: Option<crate::ddos::DdosConfig>,
    /// The ratelimit function's rules. Omitted: left as they are (unless pruning); given:
    /// replaced by what it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Vec<crate::ratelimit::RateLimit>>,
    /// The acl function's rules, per VPC. Omitted: left as they are (unless pruning); given:
    /// replaced by what it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<Vec<crate::acl::Acl>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VpcSpec {
    pub name: String,
    pub vni: u32,
    #[serde(deserialize_with = "cidr::deserialize")]
    pub cidr: Ipv4Net,
    /// Hosts that divide this VPC's traffic over the bouncers of its networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dividers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkSpec {
    pub name: String,
    #[serde(deserialize_with = "cidr::deserialize")]
    pub cidr: Ipv4Net,
    /// Omitted: the network's first host address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Hosts that know where every endpoint of this network lives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bouncers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSpec>,
}

impl NetworkSpec {
    /// The gateway in force: the one given, or the default.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway.unwrap_or_else(|| default_gateway(self.cidr))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EndpointSpec {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(rename = "type", default)]
    pub kind: EndpointKind,
    #[serde(default, skip_serializing_if = "is_false")]
    pub bypass_decap: bool,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veth: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    /// The network namespace (of `ip netns`) mizar plumbs the endpoint's veth pair into, as
    /// `ep add --netns` does: the host end named by `veth`, the other end moved in as eth0 and
    /// configured. Only the endpoint's own host makes the pair; left out, a pair mizar made
    /// stays as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// `key=value` labels: the groups ACL rules name (`label:key=value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What a host does in the fabric, derived from the assignments rather than stored beside
/// them, so that it can never disagree with them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HostRoles {
    /// VPCs it divides.
    pub divider_of: Vec<String>,
    /// (VPC, network) pairs it bounces for.
    pub bouncer_of: Vec<(String, String)>,
    /// (VPC, endpoint) pairs it hosts.
    pub endpoints: Vec<(String, String)>,
}

impl HostRoles {
    pub fn is_divider(&self) -> bool {
        !self.divider_of.is_empty()
    }

    pub fn is_bouncer(&self) -> bool {
        !self.bouncer_of.is_empty()
    }
}

impl Topology {
    pub fn from_yaml(text: &str) -> Result<Self, StoreError> {
        Ok(serde_norway::from_str(text)?)
    }

    pub fn to_yaml(&self) -> Result<String, StoreError> {
        Ok(serde_norway::to_string(self)?)
    }

    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn to_json(&self) -> Result<String, StoreError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.name == name)
    }

    pub fn this_host(&self) -> Option<&Host> {
        self.this_host.as_deref().and_then(|name| self.host(name))
    }

    pub fn vpc(&self, name: &str) -> Option<&VpcSpec> {
        self.vpcs.iter().find(|vpc| vpc.name == name)
    }

    /// Every network with its VPC, in document order.
    pub fn networks(&self) -> impl Iterator<Item = (&VpcSpec, &NetworkSpec)> {
        self.vpcs
            .iter()
            .flat_map(|vpc| vpc.networks.iter().map(move |net| (vpc, net)))
    }

    /// Every endpoint with its VPC and network, in document order.
    pub fn endpoints(&self) -> impl Iterator<Item = (&VpcSpec, &NetworkSpec, &EndpointSpec)> {
        self.networks()
            .flat_map(|(vpc, net)| net.endpoints.iter().map(move |ep| (vpc, net, ep)))
    }

    /// What `host` divides, bounces and hosts.
    pub fn roles(&self, host: &str) -> HostRoles {
        let mut roles = HostRoles::default();
        for vpc in &self.vpcs {
            if vpc.dividers.iter().any(|h| h == host) {
                roles.divider_of.push(vpc.name.clone());
            }
        }
        for (vpc, net) in self.networks() {
            if net.bouncers.iter().any(|h| h == host) {
                roles.bouncer_of.push((vpc.name.clone(), net.name.clone()));
            }
        }
        for (vpc, _, ep) in self.endpoints() {
            if ep.host == host {
                roles.endpoints.push((vpc.name.clone(), ep.name.clone()));
            }
        }
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let mac: MacAddr = "02:AB:cd:00:00:01".parse().unwrap();
        assert_eq!(mac.to_string(), "02:ab:cd:00:00:01");
        assert_eq!("02-ab-cd-00-00-01".parse::<MacAddr>().unwrap(), mac);
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(
                err.to_string().contains("is not a MAC address"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn mac_unicast() {
        let parse = |s: &str| s.parse::<MacAddr>().unwrap();
        assert_eq!(parse("02:00:00:00:00:01").not_unicast_reason(), None);
        assert_eq!(
            parse("ff:ff:ff:ff:ff:ff").not_unicast_reason(),
            Some("the broadcast address")
        );
        assert_eq!(
            parse("01:00:5e:00:00:01").not_unicast_reason(),
            Some("a multicast address")
        );
        assert_eq!(
            parse("00:00:00:00:00:00").not_unicast_reason(),
            Some("all zeros")
        );
    }

    #[test]
    fn endpoint_kind_text() {
        for kind in EndpointKind::ALL {
            assert_eq!(kind.as_str().parse::<EndpointKind>().unwrap(), kind);
        }
        assert!("Scaled".parse::<EndpointKind>().is_ok());
        assert!("router".parse::<EndpointKind>().is_err());
    }
}

/// Reads an IPv4 CIDR with a message that names what is wrong with it (ipnet only says
/// "invalid IP address syntax", for a /33 too): the CLI and topology documents both use it.
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    let (addr, len) = text.split_once('/').ok_or_else(|| {
        format!("{text} has no prefix length: write it as address/length, e.g. 10.0.0.0/16")
    })?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr} is not an IPv4 address (in {text})"))?;
    let len: u8 =
        len.parse().ok().filter(|len| *len <= 32).ok_or_else(|| {
            format!("/{len} is not an IPv4 prefix length: use 0 to 32 (in {text})")
        })?;
    Ipv4Net::new(addr, len).map_err(|err| err.to_string())
}

pub(crate) mod cidr {
    use ipnet::Ipv4Net;
    use serde::{Deserialize as _, Deserializer, de::Error as _};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_cidr(&text).map_err(D::Error::custom)
    }
}
