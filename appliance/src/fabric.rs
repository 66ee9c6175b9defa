//! The fabric on this host: what the store implies for the data plane, and bringing the kernel
//! to it. The store is the truth; `up` rebuilds everything from it, every change re-syncs.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use mizar_db::{Endpoint, EndpointKind as StoreEndpointKind, Store, StoreError, Topology};

use crate::dataplane::{
    AttachMode, Dataplane, DataplaneError, DataplaneMaps, DesiredState, EndpointEntry,
    EndpointKind, HostConfig, MemberRoles, NetworkEntry, PinLayout, ReconcileReport, VpcEntry,
    detach, reconcile, remove_all_pins,
};

#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(
        "this host is not set: run `mizar init --name NAME --ip IP --mac MAC --interface IF` first"
    )]
    NoThisHost,
    #[error(
        "this host ({host}) has no underlay interface: set one with `mizar host add {host} ... --interface IF`"
    )]
    NoInterface { host: String },
    #[error(
        "interface {ifname} does not exist in this network namespace ({what}); create it or correct the store"
    )]
    NoSuchInterface { ifname: String, what: String },
    #[error(
        "endpoint {endpoint} of VPC {vpc} lives on this host but has no veth: give it one with --veth"
    )]
    NoVeth { vpc: String, endpoint: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One instance of the appliance: where its store and its pins live.
#[derive(Debug, Clone)]
pub struct Instance {
    pub state_dir: PathBuf,
    pub pin_dir: PathBuf,
}

/// What `mizar up` attached, interface by interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub role: &'static str,
    pub ifname: String,
    pub mode: AttachMode,
}

/// The result of bringing the kernel to the store.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub attached: Vec<Attachment>,
    /// (role, interface) of what was detached.
    pub detached: Vec<(&'static str, String)>,
    pub maps: ReconcileReport,
}

impl Instance {
    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("mizar.db")
    }

    pub fn pins(&self) -> PinLayout {
        PinLayout::new(&self.pin_dir)
    }

    /// Opens (creating when missing) the instance's store.
    pub fn open_store(&self) -> Result<Store, FabricError> {
        Ok(Store::open(self.store_path())?)
    }

    /// Held by every command that writes the store or the kernel, so that two `mizar` commands
    /// never interleave (each sync then writes what the store held after its own change).
    pub fn lock(&self) -> Result<nix::fcntl::Flock<fs::File>, FabricError> {
        let path = self.state_dir.join("lock");
        let io = |source| FabricError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&self.state_dir).map_err(io)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| io(std::io::Error::from(errno)))
    }

    fn modes_path(&self) -> PathBuf {
        self.state_dir.join("attached")
    }

    /// What is attached and in which mode, as recorded when it was attached (still pinned).
    pub fn attachments(&self) -> Vec<Attachment> {
        let recorded = fs::read_to_string(self.modes_path()).unwrap_or_default();
        recorded
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let role = match words.next()? {
                    "transit" => "transit",
                    "egress" => "egress",
                    _ => return None,
                };
                let ifname = words.next()?.to_owned();
                let mode = match words.next()? {
                    "native" => AttachMode::Native,
                    _ => AttachMode::Generic,
                };
                self.attached(role)
                    .contains(&ifname)
                    .then_some(Attachment { role, ifname, mode })
            })
            .collect()
    }

    fn record(&self, report: &SyncReport) -> Result<(), FabricError> {
        let mut all = self.attachments();
        all.retain(|a| {
            !report
                .attached
                .iter()
                .any(|n| n.role == a.role && n.ifname == a.ifname)
        });
        all.extend(report.attached.iter().cloned());
        let text: String = all
            .iter()
            .map(|a| format!("{} {} {}\n", a.role, a.ifname, a.mode))
            .collect();
        let path = self.modes_path();
        fs::write(&path, text).map_err(|source| FabricError::Io { path, source })
    }

    /// Whether the data plane of this instance is up (its maps are pinned).
    pub fn is_up(&self) -> bool {
        self.pins().map(mizar_ebpf::maps::CONFIG).exists()
    }

    /// Loads the data plane (reusing pinned maps), attaches transit to this host's underlay
    /// interface and egress to every local endpoint's veth, and writes what the store implies.
    pub fn up(&self, store: &Store) -> Result<SyncReport, FabricError> {
        let topology = store.snapshot()?;
        let desired = desired_state(&topology, &SystemInterfaces)?;
        let mut dataplane = Dataplane::load(&self.pin_dir)?;
        let mut report = SyncReport {
            maps: reconcile(dataplane.maps_mut(), &desired)?,
            ..SyncReport::default()
        };
        report.maps.learned_forgotten += forget_contradicted(dataplane.maps_mut(), &topology)?;
        let underlay = underlay_interface(&topology)?;
        let mode = dataplane.attach_transit(&underlay)?;
        report.attached.push(Attachment {
            role: "transit",
            ifname: underlay,
            mode,
        });
        for veth in local_veths(&topology)? {
            let mode = dataplane.attach_egress(&veth)?;
            report.attached.push(Attachment {
                role: "egress",
                ifname: veth,
                mode,
            });
        }
        self.record(&report)?;
        Ok(report)
    }

    /// After a change to the store: when the data plane is up, writes what changed into the
    /// maps and attaches or detaches egress on endpoint veths that came or went.
    pub fn sync(&self, store: &Store) -> Result<Option<SyncReport>, FabricError> {
        if !self.is_up() {
            return Ok(None);
        }
        let topology = store.snapshot()?;
        let desired = desired_state(&topology, &SystemInterfaces)?;
        // The pinned maps are enough to write the change; loading (and verifying) the programs
        // again costs a quarter of a second, so that happens only when a veth needs egress.
        let mut maps = DataplaneMaps::open(&self.pins())?;
        let mut report = SyncReport {
            maps: reconcile(&mut maps, &desired)?,
            ..SyncReport::default()
        };
        report.maps.learned_forgotten += forget_contradicted(&mut maps, &topology)?;
        let wanted: BTreeSet<String> = local_veths(&topology)?.into_iter().collect();
        let attached = self.attached("egress");
        let missing: Vec<&String> = wanted.difference(&attached).collect();
        // This host's underlay interface may have changed: transit follows it.
        let underlay = underlay_interface(&topology)?;
        let transit = self.attached("transit");
        let move_transit = !transit.contains(&underlay);
        if !missing.is_empty() || move_transit {
            let mut dataplane = Dataplane::load(&self.pin_dir)?;
            if move_transit {
                let mode = dataplane.attach_transit(&underlay)?;
                report.attached.push(Attachment {
                    role: "transit",
                    ifname: underlay.clone(),
                    mode,
                });
                for old in transit.iter().filter(|old| **old != underlay) {
                    detach(&self.pins(), "transit", old)?;
                    report.detached.push(("transit", old.clone()));
                }
            }
            for veth in missing {
                let mode = dataplane.attach_egress(veth)?;
                report.attached.push(Attachment {
                    role: "egress",
                    ifname: veth.clone(),
                    mode,
                });
            }
        }
        for veth in attached.difference(&wanted) {
            detach(&self.pins(), "egress", veth)?;
            report.detached.push(("egress", veth.clone()));
        }
        self.record(&report)?;
        Ok(Some(report))
    }

    /// Refuses, before the store is written, a change naming an interface of this host (its
    /// underlay, a local endpoint's veth) that does not exist here while the data plane is up:
    /// the kernel could not follow, and the store must not run ahead of it. `doc` holds what the
    /// change writes. With the data plane down anything goes (`up` checks).
    pub fn check_interfaces(&self, store: &Store, doc: &Topology) -> Result<(), FabricError> {
        if !self.is_up() {
            return Ok(());
        }
        let me = match &doc.this_host {
            Some(name) => name.clone(),
            None => match store.this_host()? {
                Some(host) => host.name,
                None => return Ok(()),
            },
        };
        let underlays = doc.hosts.iter().filter(|h| h.name == me);
        let underlays = underlays.filter_map(|h| {
            let what = format!("the underlay interface of {me}");
            h.interface.as_deref().map(|ifname| (ifname, what))
        });
        let veths = doc.endpoints().filter_map(|(vpc, _, ep)| {
            let local = ep.host == me && ep.kind != StoreEndpointKind::Scaled;
            let what = || format!("the veth of endpoint {} in VPC {}", ep.name, vpc.name);
            ep.veth
                .as_deref()
                .filter(|_| local)
                .map(|veth| (veth, what()))
        });
        for (ifname, what) in underlays.chain(veths) {
            require_interface(ifname, what)?;
        }
        Ok(())
    }

    /// [`Instance::check_interfaces`] for one endpoint about to be added.
    pub fn check_endpoint(&self, store: &Store, ep: &Endpoint) -> Result<(), FabricError> {
        let Some(veth) = ep.veth.as_deref() else {
            return Ok(());
        };
        if !self.is_up() || ep.kind == StoreEndpointKind::Scaled {
            return Ok(());
        }
        if store.this_host()?.is_some_and(|me| me.name == ep.host) {
            let what = format!("the veth of endpoint {} in VPC {}", ep.name, ep.vpc);
            require_interface(veth, what)?;
        }
        Ok(())
    }

    /// Detaches everything and removes every pin: forwarding stops. The store is untouched,
    /// so `up` rebuilds the same state.
    pub fn down(&self) -> Result<(), FabricError> {
        remove_all_pins(&self.pins())?;
        let _ = fs::remove_file(self.modes_path());
        Ok(())
    }

    /// Interfaces with a program of `role` pinned ("transit" or "egress").
    pub fn attached(&self, role: &str) -> BTreeSet<String> {
        let prefix = format!("{role}@");
        fs::read_dir(self.pins().links())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter_map(|name| name.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// The pinned maps, when up.
    pub fn maps(&self) -> Result<Option<DataplaneMaps>, FabricError> {
        if !self.is_up() {
            return Ok(None);
        }
        Ok(Some(DataplaneMaps::open(&self.pins())?))
    }
}

/// How interface names become what the data plane needs (the real system, or a test's).
pub trait Interfaces {
    fn ifindex(&self, ifname: &str) -> Option<u32>;
    fn mtu(&self, ifname: &str) -> Option<u16>;
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

fn underlay_interface(topology: &Topology) -> Result<String, FabricError> {
    let me = topology.this_host().ok_or(FabricError::NoThisHost)?;
    me.interface
        .clone()
        .ok_or_else(|| FabricError::NoInterface {
            host: me.name.clone(),
        })
}

/// Veths of the endpoints hosted here.
fn local_veths(topology: &Topology) -> Result<Vec<String>, FabricError> {
    let me = topology.this_host().ok_or(FabricError::NoThisHost)?;
    let mut veths = Vec::new();
    for (vpc, _, ep) in topology.endpoints() {
        if ep.host == me.name && ep.kind != StoreEndpointKind::Scaled {
            let veth = ep.veth.clone().ok_or_else(|| FabricError::NoVeth {
                vpc: vpc.name.clone(),
                endpoint: ep.name.clone(),
            })?;
            veths.push(veth);
        }
    }
    Ok(veths)
}

fn require_interface(ifname: &str, what: String) -> Result<(), FabricError> {
    match SystemInterfaces.ifindex(ifname) {
        Some(_) => Ok(()),
        None => Err(FabricError::NoSuchInterface {
            ifname: ifname.to_owned(),
            what,
        }),
    }
}

/// Forgets what the data plane learned that `topology` contradicts: where endpoints it no
/// longer has lived, or where endpoints that live elsewhere now used to. Reconcile forgets that
/// for the endpoints in this host's maps; this host also learns about endpoints it does not hold
/// (it holds only what its roles need), and those are checked here.
fn forget_contradicted(
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

/// What the data plane of this host must hold for `topology`.
pub fn desired_state(
    topology: &Topology,
    interfaces: &dyn Interfaces,
) -> Result<DesiredState, FabricError> {
    let me = topology.this_host().ok_or(FabricError::NoThisHost)?;
    let underlay = underlay_interface(topology)?;
    let missing = |ifname: &str, what: String| FabricError::NoSuchInterface {
        ifname: ifname.to_owned(),
        what,
    };
    let underlay_ifindex = interfaces
        .ifindex(&underlay)
        .ok_or_else(|| missing(&underlay, format!("the underlay interface of {}", me.name)))?;
    let mut state = DesiredState {
        host: Some(HostConfig {
            ip: me.ip,
            mac: me.mac.octets(),
            underlay_mtu: interfaces.mtu(&underlay).unwrap_or(1500),
            underlay_ifindex,
        }),
        ..DesiredState::default()
    };
    for host in topology.hosts.iter().filter(|h| h.name != me.name) {
        state.hosts.insert(host.ip, host.mac.octets());
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
                (vpc.vni, net.cidr.network(), net.cidr.prefix_len()),
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
                    (Some(veth), true) if ep.kind != StoreEndpointKind::Scaled => {
                        Some(interfaces.ifindex(veth).ok_or_else(|| {
                            missing(
                                veth,
                                format!("the veth of endpoint {} in VPC {}", ep.name, vpc.name),
                            )
                        })?)
                    }
                    _ => None,
                };
                state.endpoints.insert(
                    (vpc.vni, ep.ip),
                    EndpointEntry {
                        mac: ep.mac.octets(),
                        kind: match ep.kind {
                            StoreEndpointKind::Simple => EndpointKind::Simple,
                            StoreEndpointKind::Scaled => EndpointKind::Scaled,
                            StoreEndpointKind::Host => EndpointKind::Host,
                            StoreEndpointKind::Function => EndpointKind::Function,
                        },
                        bypass_decap: ep.bypass_decap,
                        host,
                        local_ifindex,
                    },
                );
            }
        }
    }
    Ok(state)
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
            .map(|(_, prefix, len)| format!("{prefix}/{len}"))
            .collect()
    }

    use std::net::Ipv4Addr;

    #[test]
    fn each_host_holds_what_its_roles_need() {
        let ep = |s: &str| s.parse::<Ipv4Addr>().unwrap();

        // The divider and web bouncer: every network of its VPC, the endpoints of web only.
        let edge = desired_state(&topology("edge"), &FakeInterfaces).unwrap();
        assert_eq!(networks(&edge), ["10.0.1.0/24", "10.0.2.0/24"]);
        assert_eq!(endpoints(&edge), [(ep("10.0.1.10"), None)]);
        assert!(edge.vpcs[&100].this_host_divides);
        assert!(edge.networks.values().any(|n| n.this_host_bounces));

        // The db bouncer: db and its endpoints, wherever they live; not web.
        let h1 = desired_state(&topology("h1"), &FakeInterfaces).unwrap();
        assert_eq!(networks(&h1), ["10.0.2.0/24"]);
        assert_eq!(
            endpoints(&h1),
            [(ep("10.0.2.10"), None), (ep("10.0.2.11"), None)]
        );
        assert!(!h1.vpcs[&100].this_host_divides);

        // An end host: its own endpoints (with their veths) and their networks, nothing else.
        let h2 = desired_state(&topology("h2"), &FakeInterfaces).unwrap();
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
    fn a_missing_interface_is_named() {
        let mut doc = topology("h3");
        doc.vpcs[0].networks[1].endpoints[1].veth = Some("missing0".to_owned());
        let err = desired_state(&doc, &FakeInterfaces)
            .unwrap_err()
            .to_string();
        assert!(err.contains("interface missing0 does not exist"), "{err}");
        assert!(err.contains("endpoint db2 in VPC blue"), "{err}");
    }
}
