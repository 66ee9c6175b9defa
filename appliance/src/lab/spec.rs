//! What a lab is made of, and the names everything in it gets (derived, so a later command can
//! find a lab it did not build, and `--down` can remove it by its prefix).

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

pub use mizar_db::Ipv4Net;

use super::{LabError, MacAddr, netns::validate_name};

/// Where labs pin by default: a bpffs under /run (outside /sys, so `ip netns exec` sees it too;
/// DESIGN.md, pitfalls), one directory per lab prefix.
pub const DEFAULT_PIN_ROOT: &str = "/run/mizar-lab";
/// The bridge in the switch namespace that every host's underlay veth is a port of.
pub const BRIDGE: &str = "br0";
/// A host's underlay interface, in its namespace.
pub const UNDERLAY_IFNAME: &str = "ul0";
/// An endpoint's interface, in its namespace.
pub const ENDPOINT_IFNAME: &str = "eth0";
/// Host and endpoint names become interface names with a two-character prefix (`p-<host>` on
/// the switch, `v-<endpoint>` on the host), and Linux takes 15.
pub const NAME_MAX: usize = 13;
/// Default MTUs: the endpoints' leaves room for the Geneve encapsulation (at least 50 bytes) on
/// the underlay's.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;
pub const DEFAULT_ENDPOINT_MTU: u16 = 1400;

/// A simulated host: a namespace with an underlay veth into the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    /// Its underlay address, inside the lab's underlay subnet.
    pub ip: Ipv4Addr,
    /// The underlay interface's MAC; by default `02:4d:<ip>`.
    pub mac: Option<MacAddr>,
}

impl HostSpec {
    pub fn new(name: impl Into<String>, ip: Ipv4Addr) -> Self {
        Self {
            name: name.into(),
            ip,
            mac: None,
        }
    }

    pub fn with_mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// The underlay MAC the host gets.
    pub fn underlay_mac(&self) -> MacAddr {
        self.mac.unwrap_or_else(|| {
            let [a, b, c, d] = self.ip.octets();
            MacAddr([0x02, 0x4d, a, b, c, d])
        })
    }
}

/// An endpoint: a namespace with a veth into its host, addressed in a VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub name: String,
    /// The name of the host it lives on.
    pub host: String,
    /// Its VPC's VNI (the lab only records it; the data plane's configuration uses it).
    pub vni: u32,
    /// Its address and its network's prefix length.
    pub ip: Ipv4Net,
    /// The MAC of its interface.
    pub mac: MacAddr,
    /// A default route through this address, if given.
    pub gateway: Option<Ipv4Addr>,
}

impl EndpointSpec {
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        vni: u32,
        ip: Ipv4Net,
        mac: MacAddr,
    ) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            vni,
            ip,
            mac,
            gateway: None,
        }
    }

    pub fn with_gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }
}

/// A lab: hosts on a bridged underlay, endpoints behind veths into their hosts. Every namespace
/// is named `<prefix>-<name>` (the switch's `<prefix>-switch`), and pins go under
/// `<pin_root>/<prefix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    pub prefix: String,
    pub underlay: Ipv4Net,
    pub underlay_mtu: u16,
    pub endpoint_mtu: u16,
    pub pin_root: PathBuf,
    pub hosts: Vec<HostSpec>,
    pub endpoints: Vec<EndpointSpec>,
}

impl LabSpec {
    /// An empty lab with the default MTUs and pin root.
    pub fn new(prefix: impl Into<String>, underlay: Ipv4Net) -> Self {
        Self {
            prefix: prefix.into(),
            underlay,
            underlay_mtu: DEFAULT_UNDERLAY_MTU,
            endpoint_mtu: DEFAULT_ENDPOINT_MTU,
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
            hosts: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    pub fn host(mut self, host: HostSpec) -> Self {
        self.hosts.push(host);
        self
    }

    pub fn endpoint(mut self, endpoint: EndpointSpec) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// The namespace of the host or endpoint `name`.
    pub fn namespace(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    pub fn switch_namespace(&self) -> String {
        self.namespace("switch")
    }

    /// The lab's pin directory.
    pub fn pin_dir(&self) -> PathBuf {
        self.pin_root.join(&self.prefix)
    }

    /// A pin directory for the data-plane instance of host `name`, inside the lab's: pinning
    /// there makes the lab's removal (and [`super::Lab::remove_by_prefix`]) take the instance's
    /// maps and links along.
    pub fn instance_pin_dir(&self, host: &str) -> PathBuf {
        self.pin_dir().join(format!("instance-{host}"))
    }

    /// Checks everything [`super::Lab::build`] relies on, with an error naming what is wrong.
    pub fn validate(&self) -> Result<(), LabError> {
        let spec_error = |msg: String| Err(LabError::Spec(msg));
        validate_prefix(&self.prefix)?;
        if !(1..=30).contains(&self.underlay.prefix_len()) {
            return spec_error(format!(
                "the underlay {} has no room for hosts: use a prefix length of 1 to 30",
                self.underlay
            ));
        }
        for (what, mtu) in [
            ("underlay", self.underlay_mtu),
            ("endpoint", self.endpoint_mtu),
        ] {
            if mtu < 576 {
                return spec_error(format!("the {what} MTU {mtu} is below 576"));
            }
        }
        if self.hosts.is_empty() {
            return spec_error("a lab needs at least one host".to_owned());
        }

        let mut names = HashSet::from(["switch"]);
        let mut ips = HashSet::new();
        let mut macs = HashSet::new();
        for host in &self.hosts {
            validate_name("host", &host.name, NAME_MAX)?;
            if !names.insert(host.name.as_str()) {
                return spec_error(format!(
                    "the name {:?} is used twice (or is \"switch\")",
                    host.name
                ));
            }
            let ip = host.ip;
            if !self.underlay.contains(&ip)
                || ip == self.underlay.network()
                || ip == self.underlay.broadcast()
            {
                return spec_error(format!(
                    "host {}: {ip} is not a host address of the underlay {}",
                    host.name, self.underlay
                ));
            }
            if !ips.insert(ip) {
                return spec_error(format!("host {}: {ip} belongs to another host", host.name));
            }
            let mac = host.underlay_mac();
            validate_mac(&format!("host {}", host.name), mac)?;
            if !macs.insert(mac) {
                return spec_error(format!(
                    "host {}: its underlay MAC belongs to another host",
                    host.name
                ));
            }
        }

        let mut addresses = HashSet::new();
        for ep in &self.endpoints {
            validate_name("endpoint", &ep.name, NAME_MAX)?;
            if !names.insert(ep.name.as_str()) {
                return spec_error(format!(
                    "the name {:?} is used twice (or is \"switch\")",
                    ep.name
                ));
            }
            if !self.hosts.iter().any(|h| h.name == ep.host) {
                return spec_error(format!(
                    "endpoint {}: there is no host {:?}",
                    ep.name, ep.host
                ));
            }
            if !(1..=0x00ff_ffff).contains(&ep.vni) {
                return spec_error(format!(
                    "endpoint {}: VNI {} is outside 1..=16777215",
                    ep.name, ep.vni
                ));
            }
            if !(1..=32).contains(&ep.ip.prefix_len()) {
                return spec_error(format!(
                    "endpoint {}: {} needs a prefix length of 1 to 32",
                    ep.name, ep.ip
                ));
            }
            if !addresses.insert((ep.vni, ep.ip.addr())) {
                return spec_error(format!(
                    "endpoint {}: {} is taken in VPC {} (the same address in another VPC is fine)",
                    ep.name,
                    ep.ip.addr(),
                    ep.vni
                ));
            }
            validate_mac(&format!("endpoint {}", ep.name), ep.mac)?;
            if let Some(gateway) = ep.gateway
                && (!ep.ip.contains(&gateway) || gateway == ep.ip.addr())
            {
                return spec_error(format!(
                    "endpoint {}: the gateway {gateway} is not another address of {}",
                    ep.name, ep.ip
                ));
            }
        }
        Ok(())
    }
}

/// A lab prefix: a name (see [`validate_name`]) that begins every namespace of the lab.
pub(super) fn validate_prefix(prefix: &str) -> Result<(), LabError> {
    validate_name("lab prefix", prefix, 64)
}

fn validate_mac(what: &str, mac: MacAddr) -> Result<(), LabError> {
    if mac.is_multicast() || mac.is_zero() {
        return Err(LabError::Spec(format!(
            "{what}: {} is not a unicast MAC",
            mac
        )));
    }
    Ok(())
}

/// The host-side veth of the endpoint `name`.
pub fn host_ifname(endpoint: &str) -> String {
    format!("v-{endpoint}")
}

/// The switch-side veth (bridge port) of the host `name`.
pub fn switch_port(host: &str) -> String {
    format!("p-{host}")
}

/// The pin of `mz_pass` on `ifname` in the namespace of `owner` (a host, an endpoint or
/// "switch").
pub(super) fn pass_pin(pin_dir: &Path, owner: &str, ifname: &str) -> PathBuf {
    pin_dir.join(format!("pass@{owner}@{ifname}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LabSpec {
        LabSpec::new("mzx", "192.168.7.0/24".parse().unwrap())
            .host(HostSpec::new("a", Ipv4Addr::new(192, 168, 7, 1)))
            .host(HostSpec::new("b", Ipv4Addr::new(192, 168, 7, 2)))
            .endpoint(EndpointSpec::new(
                "ep1",
                "a",
                100,
                "10.0.0.2/24".parse().unwrap(),
                MacAddr([2, 0xee, 0, 0, 0, 2]),
            ))
            .endpoint(EndpointSpec::new(
                "ep2",
                "b",
                200,
                "10.0.0.2/24".parse().unwrap(),
                MacAddr([2, 0xee, 0, 0, 0, 3]),
            ))
    }

    fn error(spec: &LabSpec) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_good_spec_validates_and_names_follow_the_prefix() {
        let spec = spec();
        spec.validate().unwrap();
        assert_eq!(spec.namespace("a"), "mzx-a");
        assert_eq!(spec.switch_namespace(), "mzx-switch");
        assert_eq!(spec.pin_dir(), Path::new("/run/mizar-lab/mzx"));
        assert_eq!(
            spec.hosts[0].underlay_mac(),
            MacAddr([2, 0x4d, 192, 168, 7, 1])
        );
        assert_eq!(host_ifname("ep1"), "v-ep1");
        assert_eq!(switch_port("a"), "p-a");
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        type Change = Box<dyn Fn(&mut LabSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            ("lab prefix", Box::new(|s| s.prefix = "a/b".into())),
            ("lab prefix", Box::new(|s| s.prefix = String::new())),
            (
                "no room",
                Box::new(|s| s.underlay = Ipv4Net::new_assert(s.underlay.addr(), 31)),
            ),
            ("below 576", Box::new(|s| s.endpoint_mtu = 100)),
            ("at least one host", Box::new(|s| s.hosts.clear())),
            ("used twice", Box::new(|s| s.hosts[1].name = "a".into())),
            ("used twice", Box::new(|s| s.endpoints[0].name = "b".into())),
            (
                "used twice",
                Box::new(|s| s.hosts[0].name = "switch".into()),
            ),
            (
                "longer than 13",
                Box::new(|s| s.endpoints[0].name = "an-endpoint-name".into()),
            ),
            (
                "not a host address",
                Box::new(|s| s.hosts[0].ip = Ipv4Addr::new(192, 168, 8, 1)),
            ),
            (
                "not a host address",
                Box::new(|s| s.hosts[0].ip = Ipv4Addr::new(192, 168, 7, 255)),
            ),
            (
                "belongs to another host",
                Box::new(|s| s.hosts[1].ip = s.hosts[0].ip),
            ),
            (
                "not a unicast MAC",
                Box::new(|s| s.hosts[0].mac = Some(MacAddr([1, 0, 0, 0, 0, 1]))),
            ),
            (
                "no host \"c\"",
                Box::new(|s| s.endpoints[0].host = "c".into()),
            ),
            ("VNI 0", Box::new(|s| s.endpoints[0].vni = 0)),
            ("taken in VPC 100", Box::new(|s| s.endpoints[1].vni = 100)),
            (
                "not a unicast MAC",
                Box::new(|s| s.endpoints[0].mac = MacAddr([0xff; 6])),
            ),
            (
                "gateway 10.0.1.1",
                Box::new(|s| s.endpoints[0].gateway = Some(Ipv4Addr::new(10, 0, 1, 1))),
            ),
        ];
        for (expected, change) in cases {
            let mut spec = spec();
            change(&mut spec);
            let err = error(&spec);
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }
}
