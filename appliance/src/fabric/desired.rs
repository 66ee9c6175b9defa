//! What the store implies for this host's data plane: [`desired_state`] turns a configuration
//! into the map entries of this host (what its roles need, and no more).

use std::{collections::BTreeMap, fs, net::Ipv4Addr, path::Path};

use mizar_db::{EndpointKind, Topology};

use super::FabricError;
use crate::dataplane::{
    DataplaneMaps, DesiredState, EndpointEntry, HostConfig, MemberRoles, NetworkEntry, VpcEntry,
};

/// How interface names become what the data plane needs (the real system, or a test's).
pub trait Interfaces {
    fn ifindex(&self, ifname: &str) -> Option<u32>;
    fn mtu(&self, ifname: &str) -> Option<u16>;
}

// The store refuses what the data plane could not hold: its limits must be the ABI's.
const _: () = {
    assert!(mizar_db::MAX_BOUNCERS == mizar_ebpf::abi::MZ_MAX_BOUNCERS as usize);
    assert!(mizar_db::MAX_DIVIDERS == mizar_ebpf::abi::MZ_MAX_DIVIDERS as usize);
    assert!(mizar_db::MAX_ENDPOINTS == mizar_ebpf::abi::MZ_MAX_ENDPOINTS as usize);
};

/// Interfaces as they would be numbered if every name existed, each its own: what a change is
/// checked against while the data plane is down (the interfaces need not exist yet; `up` checks
/// them), so that everything else the data plane would refuse is refused already.
#[derive(Default)]
pub struct NamedInterfaces(std::cell::RefCell<BTreeMap<String, u32>>);

impl Interfaces for NamedInterfaces {
    fn ifindex(&self, ifname: &str) -> Option<u32> {
        let mut names = self.0.borrow_mut();
        let next = names.len() as u32 + 1;
        Some(*names.entry(ifname.to_owned()).or_insert(next))
    }

    fn mtu(&self, _: &str) -> Option<u16> {
        None
    }
}

/// Interfaces of the calling thread's network namespace.
pub struct SystemInterfaces;

impl Interfaces for SystemInterfaces {
    fn ifindex(&self, ifname: &str) -> Option<u32> {
        nix::net::if_::if_nametoindex(ifname).ok()
    }

    fn mtu(&self, ifname: &str) -> Option<u16> {
        // /sys/class/net follows the network namespace of whoever mounted /sys; `ip netns exec`
        // remounts it, and so does nothing else we run under.
        let path = Path::new("/sys/class/net").join(ifname).join("mtu");
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

pub(super) fn underlay_interface(topology: &Topology) -> Result<String, FabricError> {
    let me = topology.this_host().ok_or(FabricError::NoThisHost)?;
    me.interface
        .clone()
        .ok_or_else(|| FabricError::NoInterface {
            host: me.name.clone(),
        })
}

/// Veths of the endpoints hosted here.
pub(super) fn local_veths(topology: &Topology) -> Result<Vec<String>, FabricError> {
    let me = topology.this_host().ok_or(FabricError::NoThisHost)?;
    let mut veths = Vec::new();
    for (vpc, _, ep) in topology.endpoints() {
        if ep.host == me.name && ep.kind != EndpointKind::Scaled {
            let veth = ep.veth.clone().ok_or_else(|| FabricError::NoVeth {
                vpc: vpc.name.clone(),
                endpoint: ep.name.clone(),
            })?;
            veths.push(veth);
        }
    }
    Ok(veths)
}

/// Forgets what the data plane learned that `topology` contradicts: where endpoints it no
/// longer has lived, or where endpoints that live elsewhere now used to. Reconcile forgets that
/// for the endpoints in this host's maps; this host also learns about endpoints it does not hold
/// (it holds only what its roles need), and those are checked here.
pub(super) fn forget_contradicted(
    maps: &mut DataplaneMaps,
    topology: &Topology,
) -> Result<usize, FabricError> {
    let homes: BTreeMap<(u32, Ipv4Addr), Ipv4Addr> = topology
        .endpoints()
        .filter_map(|(vpc, _, ep)| Some(((vpc.vni, ep.ip), topology.host(&ep.host)?.ip)))
        .collect();
    Ok(maps.forget_learned(|vni, ip, host| homes.get(&(vni, ip)) != Some(&host))?)
}

/// The other hosts with a role in `vpc` (endpoints, bouncers; dividers are members by being
/// dividers): the only ones whose tunnel packets of the VPC this host accepts. Every host holds
/// them all: a divider receives from any endpoint's host, an endpoint's host from the bouncers.
fn vpc_members(
    topology: &Topology,
    vpc: &mizar_db::VpcSpec,
    me: &str,
) -> BTreeMap<Ipv4Addr, MemberRoles> {
    let mut members: BTreeMap<Ipv4Addr, MemberRoles> = BTreeMap::new();
    let mut add = |name: &str, roles: MemberRoles| {
        if name != me
            && let Some(host) = topology.host(name)
        {
            let entry = members.entry(host.ip).or_default();
            *entry = entry.union(roles);
        }
    };
    for net in &vpc.networks {
        for bouncer in &net.bouncers {
            add(bouncer, MemberRoles::BOUNCER);
        }
        for ep in &net.endpoints {
            add(&ep.host, MemberRoles::ENDPOINTS);
        }
    }
    members
}

/// A local endpoint left out of the maps because its veth does not exist (yet): at boot,
/// containers create their veths after `mizar up`. It gets its entries and its egress program
/// at the first change or `mizar up` that finds the veth.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaitingEndpoint {
    pub vpc: String,
    pub endpoint: String,
    pub veth: String,
}

impl std::fmt::Display for WaitingEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "endpoint {} of VPC {} waits for its veth {}, which does not exist in this network \
             namespace yet; it is attached at the first change or `mizar up` after the veth appears",
            self.endpoint, self.vpc, self.veth
        )
    }
}

/// What this host's data plane must hold, and the local endpoints it cannot hold yet.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub state: DesiredState,
    pub waiting: Vec<WaitingEndpoint>,
}

/// What the data plane of this host must hold for `topology`: every entry its roles need,
/// except local endpoints whose veth does not exist (listed in [`Desired::waiting`]).
pub fn desired_state(
    topology: &Topology,
    interfaces: &dyn Interfaces,
) -> Result<Desired, FabricError> {
    let me = topology.this_host().ok_or(FabricError::NoThisHost)?;
    let underlay = underlay_interface(topology)?;
    let missing = |ifname: &str, what: String| FabricError::NoSuchInterface {
        ifname: ifname.to_owned(),
        what,
    };
    let underlay_ifindex = interfaces
        .ifindex(&underlay)
        .ok_or_else(|| missing(&underlay, format!("the underlay interface of {}", me.name)))?;
    let mut waiting = Vec::new();
    let mut state = DesiredState {
        host: Some(HostConfig {
            ip: me.ip,
            mac: me.mac,
            underlay_mtu: interfaces.mtu(&underlay).unwrap_or(1500),
            underlay_ifindex,
        }),
        ..DesiredState::default()
    };
    for host in topology.hosts.iter().filter(|h| h.name != me.name) {
        state.hosts.insert(host.ip, host.mac);
    }
    let ip_of = |name: &str| topology.host(name).map(|h| h.ip);
    for vpc in &topology.vpcs {
        let divides = vpc.dividers.contains(&me.name);
        let dividers = vpc.dividers.iter().filter_map(|d| ip_of(d)).collect();
        state.vpcs.insert(
            vpc.vni,
            VpcEntry {
                this_host_divides: divides,
                dividers,
                members: vpc_members(topology, vpc, &me.name),
            },
        );
        for net in &vpc.networks {
            // Each host knows what its roles need (the seed design): a bouncer every endpoint of
            // its networks, a divider every network of its VPCs, and every host its own
            // endpoints and their networks. The rest it reaches through bouncers and dividers
            // (and learns on the way), as the data plane's routing expects: a host that knew
            // every endpoint would never use them.
            let bounces = net.bouncers.contains(&me.name);
            let hosts_one = net.endpoints.iter().any(|ep| ep.host == me.name);
            if !(divides || bounces || hosts_one) {
                continue;
            }
            let bouncers = net.bouncers.iter().filter_map(|b| ip_of(b)).collect();
            state.networks.insert(
                (vpc.vni, net.cidr.trunc()),
                NetworkEntry {
                    this_host_bounces: bounces,
                    gateway: net.gateway(),
                    bouncers,
                },
            );
            for ep in net
                .endpoints
                .iter()
                .filter(|ep| bounces || ep.host == me.name)
            {
                let host = ip_of(&ep.host).unwrap_or(me.ip);
                let local_ifindex = match (&ep.veth, ep.host == me.name) {
                    (Some(veth), true) if ep.kind != EndpointKind::Scaled => {
                        match interfaces.ifindex(veth) {
                            Some(ifindex) => Some(ifindex),
                            None => {
                                waiting.push(WaitingEndpoint {
                                    vpc: vpc.name.clone(),
                                    endpoint: ep.name.clone(),
                                    veth: veth.clone(),
                                });
                                continue;
                            }
                        }
                    }
                    _ => None,
                };
                state.endpoints.insert(
                    (vpc.vni, ep.ip),
                    EndpointEntry {
                        mac: ep.mac,
                        kind: ep.kind,
                        bypass_decap: ep.bypass_decap,
                        host,
                        local_ifindex,
                    },
                );
            }
        }
    }
    Ok(Desired { state, waiting })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every interface exists, numbered by name length (enough to tell veths apart here).
    struct FakeInterfaces;

    impl Interfaces for FakeInterfaces {
        fn ifindex(&self, ifname: &str) -> Option<u32> {
            (!ifname.starts_with("missing")).then_some(ifname.len() as u32)
        }

        fn mtu(&self, _: &str) -> Option<u16> {
            Some(9000)
        }
    }

    /// edge divides blue and bounces web; h1 bounces db; h2 hosts web1 and db1; h3 hosts db2.
    fn topology(this_host: &str) -> Topology {
        let mut doc = Topology::from_yaml(
            "hosts:
  - { name: edge, ip: 192.168.1.1, mac: '02:00:00:00:01:01', interface: ul0 }
  - { name: h1, ip: 192.168.1.2, mac: '02:00:00:00:01:02', interface: ul0 }
  - { name: h2, ip: 192.168.1.3, mac: '02:00:00:00:01:03', interface: ul0 }
  - { name: h3, ip: 192.168.1.4, mac: '02:00:00:00:01:04', interface: ul0 }
vpcs:
  - name: blue
    vni: 100
    cidr: 10.0.0.0/16
    dividers: [edge]
    networks:
      - name: web
        cidr: 10.0.1.0/24
        bouncers: [edge]
        endpoints:
          - { name: web1, ip: 10.0.1.10, mac: '02:00:0a:00:01:0a', host: h2, veth: v-web1 }
      - name: db
        cidr: 10.0.2.0/24
        bouncers: [h1]
        endpoints:
          - { name: db1, ip: 10.0.2.10, mac: '02:00:0a:00:02:0a', host: h2, veth: v-db1 }
          - { name: db2, ip: 10.0.2.11, mac: '02:00:0a:00:02:0b', host: h3, veth: v-db2 }
",
        )
        .unwrap();
        doc.this_host = Some(this_host.to_owned());
        doc
    }

    fn endpoints(state: &DesiredState) -> Vec<(Ipv4Addr, Option<u32>)> {
        state
            .endpoints
            .iter()
            .map(|((_, ip), ep)| (*ip, ep.local_ifindex))
            .collect()
    }

    fn networks(state: &DesiredState) -> Vec<String> {
        state
            .networks
            .keys()
            .map(|(_, prefix)| prefix.to_string())
            .collect()
    }

    use std::net::Ipv4Addr;

    #[test]
    fn each_host_holds_what_its_roles_need() {
        let ep = |s: &str| s.parse::<Ipv4Addr>().unwrap();

        // The divider and web bouncer: every network of its VPC, the endpoints of web only.
        let edge = desired_state(&topology("edge"), &FakeInterfaces)
            .unwrap()
            .state;
        assert_eq!(networks(&edge), ["10.0.1.0/24", "10.0.2.0/24"]);
        assert_eq!(endpoints(&edge), [(ep("10.0.1.10"), None)]);
        assert!(edge.vpcs[&100].this_host_divides);
        assert!(edge.networks.values().any(|n| n.this_host_bounces));

        // The db bouncer: db and its endpoints, wherever they live; not web.
        let h1 = desired_state(&topology("h1"), &FakeInterfaces)
            .unwrap()
            .state;
        assert_eq!(networks(&h1), ["10.0.2.0/24"]);
        assert_eq!(
            endpoints(&h1),
            [(ep("10.0.2.10"), None), (ep("10.0.2.11"), None)]
        );
        assert!(!h1.vpcs[&100].this_host_divides);

        // An end host: its own endpoints (with their veths) and their networks, nothing else.
        let h2 = desired_state(&topology("h2"), &FakeInterfaces)
            .unwrap()
            .state;
        assert_eq!(networks(&h2), ["10.0.1.0/24", "10.0.2.0/24"]);
        assert_eq!(
            endpoints(&h2),
            [
                (ep("10.0.1.10"), Some("v-web1".len() as u32)),
                (ep("10.0.2.10"), Some("v-db1".len() as u32))
            ]
        );
        assert_eq!(h2.host.unwrap().underlay_mtu, 9000);
        assert_eq!(h2.hosts.len(), 3, "every other host, to accept and reach");
        assert!(!h2.hosts.contains_key(&ep("192.168.1.3")), "not itself");
    }

    #[test]
    fn a_local_endpoint_without_its_veth_waits_and_a_missing_underlay_is_named() {
        let mut doc = topology("h3");
        doc.vpcs[0].networks[1].endpoints[1].veth = Some("missing0".to_owned());
        let desired = desired_state(&doc, &FakeInterfaces).unwrap();
        assert_eq!(
            desired.waiting,
            [WaitingEndpoint {
                vpc: "blue".into(),
                endpoint: "db2".into(),
                veth: "missing0".into()
            }]
        );
        assert!(endpoints(&desired.state).is_empty(), "db2 is left out");
        assert_eq!(
            networks(&desired.state),
            ["10.0.2.0/24"],
            "its network stays"
        );

        let mut doc = topology("h3");
        doc.hosts[3].interface = Some("missing-ul".to_owned());
        let err = desired_state(&doc, &FakeInterfaces)
            .unwrap_err()
            .to_string();
        assert!(err.contains("interface missing-ul does not exist"), "{err}");
        assert!(err.contains("underlay interface of h3"), "{err}");
    }
}
