//! Reconcile: brings the pinned maps to exactly the configuration a [`DesiredState`] describes
//! (the store's view, converted by the caller), writing only what differs.
//!
//! One pass reads the maps back, computes a plan against the desired state (pure, before any
//! write), then applies it in an order that keeps every map entry valid on its own:
//!
//! 1. this host's configuration, the host filter and the hosts (new MACs included), so every
//!    next hop written later resolves;
//! 2. releases: endpoints that go away or whose veth changes, veth registrations that go away
//!    or change hands, and VPC members that go away. Nothing in the maps refers to an endpoint,
//!    so this is safe first, and it frees the veths, counter slots and capacity that new
//!    endpoints may take;
//! 3. when a veth was released: an RCU grace period (see below);
//! 4. grants: VPCs, then networks, VPC members, then endpoints (with their veth registrations
//!    and fresh counter slots) that are new or differ;
//! 5. networks, then VPCs that go away (first, instead, for a kind whose map could not hold the
//!    old and the new entries together);
//! 6. what the data plane learned about endpoints that went away or moved to another host, or
//!    about VPCs and hosts that went away;
//! 7. hosts that go away: nothing forwards to them any more.
//!
//! # No veth serves two endpoints, not even for a packet
//!
//! A packet being forwarded may still hold the endpoint entry it looked up (its veth) after
//! reconcile removed it. So a veth is never granted to another endpoint, nor registered for
//! another endpoint's traffic, in the same step that takes it away: the release is written, then
//! reconcile waits for an RCU grace period (every XDP program run that began before it has
//! ended: [`super::rcu::synchronize`]), then the grant. Entries the kernel reuses for another
//! key under a running program are caught by the programs themselves (the key copy in each
//! value, checked after copying it: see "Reused entries" in `mizar_abi.h`).
//!
//! An entry whose value already matches is not rewritten: counters, counter slots and learned
//! locations of unchanged endpoints are untouched. "Matches" compares the whole map value,
//! derived fields included (the next hops' MACs, resolved from the desired hosts), so a host's
//! new MAC reaches every entry that forwards to it, and drift in the maps is repaired.
//!
//! # Failure
//!
//! A desired state that cannot be written (see [`DesiredState::validate`], plus the host filter
//! and map capacities) is refused before any write: the maps are left exactly as they were.
//! Reconcile is not transactional across maps, though: if the kernel refuses a write midway
//! (memory, a map removed underneath), the error is returned at once and the maps hold a mix of
//! old and new entries, each of them whole and every next hop resolvable, because of the order
//! above. Running reconcile again, with the same or any other valid state, converges: it diffs
//! against what the maps hold then, whatever that is.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
};

use mizar_ebpf::{abi, ip_be, ip_from_be};

use super::{
    DataplaneError,
    maps::{
        DataplaneMaps, EndpointEntry, EndpointKey, HostConfig, Ipv4Net, MacAddr, MemberKey,
        NetworkEntry, NetworkKey, VpcEntry, check_vni, decode_endpoint, decode_members,
        decode_network, decode_vpc, encode_endpoint, encode_members, encode_network, encode_vpc,
        endpoint_key, host_filter_window, local_iface,
    },
    rcu,
};

/// The data-plane configuration of one host, as plain values: what reconcile writes and what
/// [`DataplaneMaps::read_state`] reads back. Ordered maps, so two states compare (and print)
/// deterministically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// This host; None leaves the data plane unconfigured (transit passes everything).
    pub host: Option<HostConfig>,
    /// Underlay hosts: tunnel packets are accepted from them and forwarded to them.
    pub hosts: BTreeMap<Ipv4Addr, MacAddr>,
    /// VPCs by VNI.
    pub vpcs: BTreeMap<u32, VpcEntry>,
    /// Networks by (VNI, prefix, prefix length); the prefix has no host bits.
    pub networks: BTreeMap<NetworkKey, NetworkEntry>,
    /// Endpoints by (VNI, address).
    pub endpoints: BTreeMap<EndpointKey, EndpointEntry>,
}

fn invalid<T>(message: String) -> Result<T, DataplaneError> {
    Err(DataplaneError::Invalid(message))
}

fn check_limit(count: usize, max: u32, what: &str) -> Result<(), DataplaneError> {
    if count > max as usize {
        return invalid(format!(
            "{count} {what} exceed what the data plane holds ({max})"
        ));
    }
    Ok(())
}

/// An object of the desired state, as error messages name it (formatted only when one is).
enum Object {
    Vpc(u32),
    Network(u32, Ipv4Net),
    Endpoint(u32, Ipv4Addr),
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vpc(vni) => write!(f, "VPC {vni}"),
            Self::Network(vni, prefix) => write!(f, "network {prefix} of VNI {vni}"),
            Self::Endpoint(vni, ip) => write!(f, "endpoint {ip} of VNI {vni}"),
        }
    }
}

impl DesiredState {
    /// Whether this host can forward to `ip`: a known host, or this host itself.
    fn knows_host(&self, ip: Ipv4Addr) -> bool {
        self.hosts.contains_key(&ip) || self.host.is_some_and(|me| me.ip == ip)
    }

    /// The underlay MAC to forward to `ip` with (mz_hosts first, as the data plane resolves).
    fn next_hop_mac(&self, ip: Ipv4Addr) -> Result<MacAddr, DataplaneError> {
        self.hosts
            .get(&ip)
            .copied()
            .or_else(|| self.host.filter(|me| me.ip == ip).map(|me| me.mac))
            .ok_or_else(|| DataplaneError::Invalid(format!("host {ip} is not known")))
    }

    /// Checks what the data plane needs of a state, without a kernel: ranges, limits, and that
    /// everything referred to is in the state (next hops are known hosts, networks and
    /// endpoints belong to a VPC, a local endpoint lives on this host and has a veth of its
    /// own). The first problem found is returned, naming the object and the fix.
    pub fn validate(&self) -> Result<(), DataplaneError> {
        if let Some(me) = &self.host
            && me.ip.is_unspecified()
        {
            return invalid("this host's underlay address cannot be 0.0.0.0".to_owned());
        }
        check_limit(self.hosts.len(), abi::MZ_MAX_HOSTS, "hosts")?;
        check_limit(self.vpcs.len(), abi::MZ_MAX_VPCS, "VPCs")?;
        check_limit(self.networks.len(), abi::MZ_MAX_NETWORKS, "networks")?;
        check_limit(self.endpoints.len(), abi::MZ_MAX_ENDPOINTS, "endpoints")?;
        if self.hosts.contains_key(&Ipv4Addr::UNSPECIFIED) {
            return invalid("0.0.0.0 is not a host address".to_owned());
        }

        let next_hops = |what: &Object, role: &str, hops: &[Ipv4Addr], max: u32| {
            check_limit(hops.len(), max, &format!("{role}s of {what}"))?;
            match hops.iter().find(|ip| !self.knows_host(**ip)) {
                Some(ip) => invalid(format!(
                    "{what}: {role} {ip} is not a known host; add the host (with its underlay \
                     MAC) or take it out of the {role}s"
                )),
                None => Ok(()),
            }
        };
        let in_vpc = |what: &Object, vni: u32| {
            check_vni(vni).map_err(|err| DataplaneError::Invalid(format!("{what}: {err}")))?;
            if !self.vpcs.contains_key(&vni) {
                return invalid(format!(
                    "{what}: VPC {vni} is not in the desired state; add the VPC too"
                ));
            }
            Ok(())
        };

        let mut members = 0;
        for (vni, vpc) in &self.vpcs {
            check_vni(*vni).map_err(|err| DataplaneError::Invalid(format!("VPC {vni}: {err}")))?;
            next_hops(
                &Object::Vpc(*vni),
                "divider",
                &vpc.dividers,
                abi::MZ_MAX_DIVIDERS,
            )?;
            if let Some(ip) = vpc.members.keys().find(|ip| !self.knows_host(**ip)) {
                return invalid(format!(
                    "VPC {vni}: member {ip} is not a known host; add the host (with its \
                     underlay MAC) or take it out of the members"
                ));
            }
            members += encode_members(*vni, vpc).len();
        }
        check_limit(
            members,
            abi::MZ_MAX_VPC_MEMBERS,
            "VPC members (VPC, host pairs)",
        )?;

        for ((vni, prefix), net) in &self.networks {
            let what = Object::Network(*vni, *prefix);
            in_vpc(&what, *vni)?;
            if prefix.trunc() != *prefix {
                return invalid(format!(
                    "{what} has host bits set: write it as {}",
                    prefix.trunc()
                ));
            }
            next_hops(&what, "bouncer", &net.bouncers, abi::MZ_MAX_BOUNCERS)?;
        }

        let mut veths: BTreeMap<u32, EndpointKey> = BTreeMap::new();
        for ((vni, ip), ep) in &self.endpoints {
            let what = Object::Endpoint(*vni, *ip);
            in_vpc(&what, *vni)?;
            match ep.local_ifindex {
                Some(0) => return invalid(format!("{what}: ifindex 0 is no interface")),
                Some(ifindex) => {
                    match &self.host {
                        None => {
                            return invalid(format!(
                                "{what} is hosted here (veth ifindex {ifindex}) but this host \
                                 is not configured; configure it first"
                            ));
                        }
                        Some(me) if me.ip != ep.host => {
                            return invalid(format!(
                                "{what} has a veth here (ifindex {ifindex}) but lives on host {}, \
                                 not on this host ({}); drop the veth or make this host its host",
                                ep.host, me.ip
                            ));
                        }
                        Some(me) if me.underlay_ifindex == ifindex => {
                            return invalid(format!(
                                "{what}: its veth (ifindex {ifindex}) is this host's underlay \
                                 interface; give the endpoint a veth of its own"
                            ));
                        }
                        Some(_) => {}
                    }
                    if let Some((other_vni, other_ip)) = veths.insert(ifindex, (*vni, *ip)) {
                        return invalid(format!(
                            "{what} and endpoint {other_ip} of VNI {other_vni} both use veth \
                             ifindex {ifindex}; give each endpoint its own veth"
                        ));
                    }
                }
                None if !self.knows_host(ep.host) => {
                    return invalid(format!(
                        "{what} lives on host {}, which is not a known host; add the host (with \
                         its underlay MAC) first",
                        ep.host
                    ));
                }
                None => {}
            }
        }
        check_limit(
            veths.len(),
            abi::MZ_MAX_LOCAL_IFACES,
            "endpoints hosted here",
        )
    }
}

/// Added, changed and removed entries of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    /// Entries rewritten, including those whose value changed only because a next hop's MAC
    /// did.
    pub changed: usize,
    pub removed: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a reconcile did (or, from [`plan_reconcile`], would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// This host's configuration (at most one of the three).
    pub host_config: Changes,
    pub hosts: Changes,
    pub vpcs: Changes,
    /// (VPC, host) pairs of mz_vpc_members: who may send into which VPC.
    pub members: Changes,
    pub networks: Changes,
    pub endpoints: Changes,
    /// Derived entries put right though their object did not change: host filter slots and
    /// veth registrations that had drifted from the hosts and endpoints.
    pub repaired: usize,
    /// Learned locations forgotten, of endpoints that went away or moved, or of VPCs and hosts
    /// that went away. (Counted when applied; a plan does not know them yet.)
    pub learned_forgotten: usize,
}

impl ReconcileReport {
    /// Nothing was written.
    pub fn is_noop(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_noop() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        let c = self.host_config;
        if !c.is_empty() {
            parts.push(
                if c.added > 0 {
                    "host config set"
                } else if c.removed > 0 {
                    "host config cleared"
                } else {
                    "host config changed"
                }
                .to_owned(),
            );
        }
        for (name, c) in [
            ("hosts", self.hosts),
            ("VPCs", self.vpcs),
            ("VPC members", self.members),
            ("networks", self.networks),
            ("endpoints", self.endpoints),
        ] {
            let counts: Vec<String> = [
                (c.added, "added"),
                (c.changed, "changed"),
                (c.removed, "removed"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            if !counts.is_empty() {
                parts.push(format!("{name}: {}", counts.join(", ")));
            }
        }
        if self.repaired > 0 {
            parts.push(format!("{} derived entries repaired", self.repaired));
        }
        if self.learned_forgotten > 0 {
            parts.push(format!(
                "{} learned locations forgotten",
                self.learned_forgotten
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// What the maps hold, as reconcile compares it: raw values, derived fields included.
#[derive(Debug, Clone, Default)]
struct Current {
    config: Option<HostConfig>,
    hosts: BTreeMap<Ipv4Addr, MacAddr>,
    host_filter: Vec<u32>,
    vpcs: BTreeMap<u32, abi::mz_vpc>,
    members: BTreeMap<MemberKey, abi::mz_member>,
    networks: BTreeMap<NetworkKey, abi::mz_network>,
    endpoints: BTreeMap<EndpointKey, abi::mz_endpoint>,
    local_ifaces: BTreeMap<u32, abi::mz_local_iface>,
    /// Counter slots held by local endpoints outside a scoped plan's scope (none otherwise).
    reserved_slots: Vec<u16>,
}

/// The entries a scoped reconcile looks at ([`prepare_scoped_reconcile`]): those of some
/// endpoints, of some hosts' membership of their VPC, and of some networks. Everything outside
/// it is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub endpoints: BTreeSet<EndpointKey>,
    pub members: BTreeSet<MemberKey>,
    pub networks: BTreeSet<NetworkKey>,
}

/// Changes to one object of the configuration, for the kernel tests, the benchmark and tools that
/// set a data plane up by hand. Each reads the configuration back from the maps, changes that
/// object and reconciles to the result: the same validation, write order and RCU waits as `up`,
/// and no second way of writing the maps. What reconcile would refuse is refused, and changes
/// nothing.
impl DataplaneMaps {
    /// Reconciles to what the maps hold with `change` made to it.
    pub fn edit(
        &mut self,
        change: impl FnOnce(&mut DesiredState),
    ) -> Result<ReconcileReport, DataplaneError> {
        let mut state = self.read_state()?;
        change(&mut state);
        reconcile(self, &state)
    }

    /// This host's configuration (its underlay address, MAC, MTU and interface).
    pub fn set_host_config(&mut self, host: &HostConfig) -> Result<(), DataplaneError> {
        self.edit(|s| s.host = Some(*host)).map(drop)
    }

    /// Marks this host unconfigured: transit hands every packet to the stack, egress drops.
    pub fn clear_host_config(&mut self) -> Result<(), DataplaneError> {
        self.edit(|s| s.host = None).map(drop)
    }

    /// A host on the underlay: tunnel packets are accepted from it and sent to it at `mac`
    /// (every entry that forwards to it follows a new MAC).
    pub fn set_host(&mut self, ip: Ipv4Addr, mac: MacAddr) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.hosts.insert(ip, mac);
        })
        .map(drop)
    }

    /// Forgets a host, and what was learned about it. Refused while anything forwards to it.
    pub fn remove_host(&mut self, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.hosts.remove(&ip);
        })
        .map(drop)
    }

    /// Adds or replaces a VPC and its members.
    pub fn set_vpc(&mut self, vni: u32, vpc: &VpcEntry) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.vpcs.insert(vni, vpc.clone());
        })
        .map(drop)
    }

    /// Removes a VPC and its members. Refused while it has networks or endpoints.
    pub fn remove_vpc(&mut self, vni: u32) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.vpcs.remove(&vni);
        })
        .map(drop)
    }

    pub fn set_network(
        &mut self,
        vni: u32,
        prefix: Ipv4Net,
        net: &NetworkEntry,
    ) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.networks.insert((vni, prefix), net.clone());
        })
        .map(drop)
    }

    pub fn remove_network(&mut self, vni: u32, prefix: Ipv4Net) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.networks.remove(&(vni, prefix));
        })
        .map(drop)
    }

    /// Adds or replaces an endpoint. A local one (with `local_ifindex`) is registered for the
    /// egress program on its veth and keeps its counter slot (a new one starts at zero); a
    /// remote one needs its host known.
    pub fn set_endpoint(
        &mut self,
        vni: u32,
        ip: Ipv4Addr,
        ep: &EndpointEntry,
    ) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.endpoints.insert((vni, ip), ep.clone());
        })
        .map(drop)
    }

    /// Removes an endpoint, its veth registration and what was learned about it.
    pub fn remove_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.edit(|s| {
            s.endpoints.remove(&(vni, ip));
        })
        .map(drop)
    }
}

impl DataplaneMaps {
    /// Reads every configuration map back: the inverse of what reconcile writes, so that after
    /// `reconcile(maps, &state)`, `read_state() == state`.
    pub fn read_state(&self) -> Result<DesiredState, DataplaneError> {
        let endpoints = self
            .read_endpoints()?
            .into_iter()
            .map(|((vni, ip), raw)| {
                let entry = decode_endpoint(&raw).ok_or_else(|| {
                    DataplaneError::Invalid(format!(
                        "endpoint {ip} of VNI {vni} has type {} in mz_endpoints, which this \
                         build does not know",
                        raw.type_
                    ))
                })?;
                Ok(((vni, ip), entry))
            })
            .collect::<Result<_, DataplaneError>>()?;
        let members = self.read_members()?;
        Ok(DesiredState {
            host: self.host_config()?,
            hosts: self.read_hosts()?,
            vpcs: self
                .read_vpcs()?
                .iter()
                .map(|(vni, raw)| {
                    let of_vpc =
                        members.range((*vni, Ipv4Addr::UNSPECIFIED)..=(*vni, Ipv4Addr::BROADCAST));
                    (
                        *vni,
                        decode_vpc(raw, decode_members(of_vpc.map(|(_, m)| m))),
                    )
                })
                .collect(),
            networks: self
                .read_networks()?
                .iter()
                .map(|(key, raw)| (*key, decode_network(raw)))
                .collect(),
            endpoints,
        })
    }

    fn current(&self) -> Result<Current, DataplaneError> {
        Ok(Current {
            config: self.host_config()?,
            hosts: self.read_hosts()?,
            host_filter: self.read_host_filter()?,
            vpcs: self.read_vpcs()?,
            members: self.read_members()?,
            networks: self.read_networks()?,
            endpoints: self.read_endpoints()?,
            local_ifaces: self.read_local_ifaces()?,
            reserved_slots: Vec::new(),
        })
    }

    /// What the maps hold for the keys of `scope`, one lookup per key (the networks and veth
    /// registrations, bounded by what one host serves, are read whole). None when the veth of
    /// an endpoint in `desired` is registered to an endpoint outside the scope: the maps have
    /// drifted from what the store allows, and only a whole reconcile can tell what is right.
    fn current_in(
        &self,
        scope: &Scope,
        desired: &DesiredState,
    ) -> Result<Option<(Current, usize)>, DataplaneError> {
        let mut endpoints = BTreeMap::new();
        for (vni, ip) in &scope.endpoints {
            if let Some(raw) = self.endpoint(*vni, *ip)? {
                endpoints.insert((*vni, *ip), raw);
            }
        }
        let mut members = BTreeMap::new();
        for key in &scope.members {
            if let Some(raw) = self.member(*key)? {
                members.insert(*key, raw);
            }
        }
        let all_networks = self.read_networks()?;
        let network_count = all_networks.len();
        let networks = all_networks
            .into_iter()
            .filter(|(key, _)| scope.networks.contains(key))
            .collect();
        let in_scope = |iface: &abi::mz_local_iface| {
            scope
                .endpoints
                .contains(&(iface.endpoint.vni, ip_from_be(iface.endpoint.ip_be)))
        };
        let mut local_ifaces = BTreeMap::new();
        let mut reserved_slots = Vec::new();
        let mut held_outside = BTreeSet::new();
        for (ifindex, iface) in self.read_local_ifaces()? {
            if in_scope(&iface) {
                local_ifaces.insert(ifindex, iface);
            } else {
                reserved_slots.push(iface.stats_slot);
                held_outside.insert(ifindex);
            }
        }
        let wanted_here = desired
            .endpoints
            .iter()
            .filter(|(key, _)| scope.endpoints.contains(key))
            .filter_map(|(_, ep)| ep.local_ifindex);
        if wanted_here
            .into_iter()
            .any(|ifindex| held_outside.contains(&ifindex))
        {
            return Ok(None);
        }
        Ok(Some((
            Current {
                config: self.host_config()?,
                members,
                networks,
                endpoints,
                local_ifaces,
                reserved_slots,
                ..Current::default()
            },
            network_count,
        )))
    }
}

/// The writes that take the maps from `Current` to the desired state, in the order applied.
#[derive(Debug, Default)]
struct Plan {
    /// Some(new) when this host's configuration changes (Some(None): cleared).
    config: Option<Option<HostConfig>>,
    /// (slot, address) writes to mz_host_filter, emptied slots first.
    filter: Vec<(u32, u32)>,
    hosts: Vec<(Ipv4Addr, MacAddr)>,
    /// Veth registrations that go away or change hands, removed before anything is granted.
    iface_removals: Vec<u32>,
    /// Endpoints that go away, or whose veth changes (removed first, written again later).
    endpoint_removals: Vec<EndpointKey>,
    /// Whether a release took a veth from an endpoint: grants wait for an RCU grace period.
    releases_veth: bool,
    member_removals: Vec<MemberKey>,
    members: Vec<(MemberKey, abi::mz_member)>,
    vpcs_removed_first: bool,
    networks_removed_first: bool,
    vpcs: Vec<(u32, abi::mz_vpc)>,
    networks: Vec<(NetworkKey, abi::mz_network)>,
    zeroed_slots: Vec<u16>,
    ifaces: Vec<(u32, abi::mz_local_iface)>,
    endpoints: Vec<(EndpointKey, abi::mz_endpoint)>,
    network_removals: Vec<NetworkKey>,
    vpc_removals: Vec<u32>,
    host_removals: Vec<Ipv4Addr>,
    /// Learned locations to forget: of these endpoints, VNIs and hosts.
    forget_endpoints: BTreeSet<EndpointKey>,
    forget_vnis: BTreeSet<u32>,
    forget_hosts: BTreeSet<Ipv4Addr>,
    /// Planned for a scope: learned locations are forgotten by key, not by a walk of the map.
    scoped: bool,
    report: ReconcileReport,
}

/// Diffs one kind of keyed entries: the desired values (already encoded) that are new or
/// differ, and the keys that go away.
fn diff<K: Ord + Copy, V: PartialEq + Copy>(
    current: &BTreeMap<K, V>,
    desired: impl IntoIterator<Item = (K, V)>,
    changes: &mut Changes,
) -> (Vec<(K, V)>, Vec<K>) {
    let mut writes = Vec::new();
    let mut wanted = BTreeSet::new();
    for (key, value) in desired {
        wanted.insert(key);
        match current.get(&key) {
            None => changes.added += 1,
            Some(old) if *old != value => changes.changed += 1,
            Some(_) => continue,
        }
        writes.push((key, value));
    }
    let removals: Vec<K> = current
        .keys()
        .filter(|key| !wanted.contains(*key))
        .copied()
        .collect();
    changes.removed = removals.len();
    (writes, removals)
}

/// The host filter the desired hosts need: hosts already in their window stay in their slot,
/// anything else is emptied, new hosts take the first free slot of their window.
fn plan_host_filter(
    current: &[u32],
    hosts: &BTreeMap<Ipv4Addr, MacAddr>,
) -> Result<Vec<(u32, u32)>, DataplaneError> {
    let wanted: BTreeSet<u32> = hosts.keys().map(|ip| ip_be(*ip)).collect();
    let mut target = current.to_vec();
    let mut placed = BTreeSet::new();
    for (slot, value) in target.iter_mut().enumerate() {
        if *value == 0 {
            continue;
        }
        let in_window = host_filter_window(ip_from_be(*value)).any(|s| s as usize == slot);
        if !(wanted.contains(value) && in_window && placed.insert(*value)) {
            *value = 0;
        }
    }
    for ip in hosts.keys() {
        if placed.contains(&ip_be(*ip)) {
            continue;
        }
        let Some(slot) = host_filter_window(*ip).find(|s| target[*s as usize] == 0) else {
            let neighbours: Vec<String> = host_filter_window(*ip)
                .map(|s| ip_from_be(target[s as usize]).to_string())
                .collect();
            return invalid(format!(
                "no room for host {ip} in the underlay host filter: the {} slots it can take \
                 hold hosts {}; the data plane cannot admit all these hosts together",
                abi::MZ_HOST_FILTER_WINDOW,
                neighbours.join(", ")
            ));
        };
        target[slot as usize] = ip_be(*ip);
    }
    let mut writes: Vec<(u32, u32)> = target
        .iter()
        .zip(current)
        .enumerate()
        .filter(|(_, (new, old))| new != old)
        .map(|(slot, (new, _))| (slot as u32, *new))
        .collect();
    // Empty slots first: a host moved within its window never takes a slot still in use.
    writes.sort_by_key(|(slot, value)| (*value != 0, *slot));
    Ok(writes)
}

/// Counter slots of the desired local endpoints: each keeps the slot it has (its counters go
/// on), new ones get the lowest free slots, which are returned to be zeroed.
fn plan_stats_slots(
    current: &Current,
    desired: &BTreeMap<EndpointKey, EndpointEntry>,
) -> Result<(BTreeMap<EndpointKey, u16>, Vec<u16>), DataplaneError> {
    let mut used = vec![false; abi::MZ_MAX_LOCAL_IFACES as usize];
    for slot in &current.reserved_slots {
        if let Some(u) = used.get_mut(usize::from(*slot)) {
            *u = true;
        }
    }
    let mut slots = BTreeMap::new();
    let local = desired.iter().filter(|(_, ep)| ep.local_ifindex.is_some());
    for (key, _) in local.clone() {
        if let Some(old) = current.endpoints.get(key)
            && old.flags & abi::MZ_EP_LOCAL as u8 != 0
            && let Some(u) = used.get_mut(usize::from(old.stats_slot))
            && !*u
        {
            *u = true;
            slots.insert(*key, old.stats_slot);
        }
    }
    let mut fresh = Vec::new();
    let mut free = used
        .iter()
        .enumerate()
        .filter(|(_, u)| !**u)
        .map(|(s, _)| s as u16);
    for (key, _) in local {
        if slots.contains_key(key) {
            continue;
        }
        let slot = free.next().ok_or_else(|| {
            DataplaneError::Invalid(format!(
                "this host already has {} endpoints, the most it can serve",
                abi::MZ_MAX_LOCAL_IFACES
            ))
        })?;
        slots.insert(*key, slot);
        fresh.push(slot);
    }
    Ok((slots, fresh))
}

/// Plans the writes from `current` to `desired`. With a scope, only the scope's members,
/// networks and endpoints (and their veth registrations) are planned: `current` holds only
/// those, and this host's configuration, the hosts and the VPC entries are taken as they are.
fn plan(
    current: &Current,
    desired: &DesiredState,
    scope: Option<&Scope>,
) -> Result<Plan, DataplaneError> {
    desired.validate()?;
    let mut plan = Plan {
        scoped: scope.is_some(),
        ..Plan::default()
    };
    if scope.is_none() {
        plan_hosts_and_vpcs(current, desired, &mut plan)?;
    }
    plan_members_networks_endpoints(current, desired, scope, &mut plan)?;
    Ok(plan)
}

/// This host's configuration, the host filter, the hosts and the VPC entries.
fn plan_hosts_and_vpcs(
    current: &Current,
    desired: &DesiredState,
    plan: &mut Plan,
) -> Result<(), DataplaneError> {
    let report = &mut plan.report;
    if current.config != desired.host {
        plan.config = Some(desired.host);
        match (current.config, desired.host) {
            (None, _) => report.host_config.added = 1,
            (_, None) => report.host_config.removed = 1,
            _ => report.host_config.changed = 1,
        }
    }

    let (hosts, host_removals) = diff(
        &current.hosts,
        desired.hosts.iter().map(|(ip, mac)| (*ip, *mac)),
        &mut report.hosts,
    );
    if current.hosts.len() + report.hosts.added > abi::MZ_MAX_HOSTS as usize {
        return invalid(format!(
            "mz_hosts cannot hold the {} current and {} new hosts together ({} at most); \
             reconcile in two steps, removing hosts first",
            current.hosts.len(),
            report.hosts.added,
            abi::MZ_MAX_HOSTS
        ));
    }
    plan.filter = plan_host_filter(&current.host_filter, &desired.hosts)?;
    let added_or_removed: BTreeSet<u32> = hosts
        .iter()
        .filter(|(ip, _)| !current.hosts.contains_key(ip))
        .map(|(ip, _)| *ip)
        .chain(host_removals.iter().copied())
        .map(ip_be)
        .collect();
    report.repaired += plan
        .filter
        .iter()
        .filter(|(slot, new)| {
            let host = if *new != 0 {
                *new
            } else {
                current.host_filter[*slot as usize]
            };
            !added_or_removed.contains(&host)
        })
        .count();
    plan.hosts = hosts;
    plan.forget_hosts = host_removals.iter().copied().collect();
    plan.host_removals = host_removals;

    let resolve = |ip| desired.next_hop_mac(ip);
    let vpcs = desired
        .vpcs
        .iter()
        .map(|(vni, vpc)| Ok((*vni, encode_vpc(*vni, vpc, resolve)?)))
        .collect::<Result<Vec<_>, DataplaneError>>()?;
    let (vpcs, vpc_removals) = diff(&current.vpcs, vpcs, &mut report.vpcs);
    plan.vpcs_removed_first = current.vpcs.len() + report.vpcs.added > abi::MZ_MAX_VPCS as usize;
    plan.forget_vnis = vpc_removals.iter().copied().collect();
    plan.vpcs = vpcs;
    plan.vpc_removals = vpc_removals;
    Ok(())
}

/// VPC members, networks, endpoints and their veth registrations (of the scope, if any).
fn plan_members_networks_endpoints(
    current: &Current,
    desired: &DesiredState,
    scope: Option<&Scope>,
    plan: &mut Plan,
) -> Result<(), DataplaneError> {
    let report = &mut plan.report;
    let resolve = |ip| desired.next_hop_mac(ip);
    let members = desired
        .vpcs
        .iter()
        .flat_map(|(vni, vpc)| encode_members(*vni, vpc))
        .filter(|(key, _)| scope.is_none_or(|s| s.members.contains(key)));
    let (members, member_removals) = diff(&current.members, members, &mut report.members);
    plan.members = members;
    plan.member_removals = member_removals;

    let networks = desired
        .networks
        .iter()
        .filter(|(key, _)| scope.is_none_or(|s| s.networks.contains(key)))
        .map(|(key, net)| Ok((*key, encode_network(net, resolve)?)))
        .collect::<Result<Vec<_>, DataplaneError>>()?;
    let (networks, network_removals) = diff(&current.networks, networks, &mut report.networks);
    plan.networks_removed_first =
        current.networks.len() + report.networks.added > abi::MZ_MAX_NETWORKS as usize;
    plan.networks = networks;
    plan.network_removals = network_removals;

    let desired_endpoints: BTreeMap<EndpointKey, EndpointEntry> = match scope {
        None => desired.endpoints.clone(),
        Some(scope) => desired
            .endpoints
            .iter()
            .filter(|(key, _)| scope.endpoints.contains(key))
            .map(|(key, ep)| (*key, ep.clone()))
            .collect(),
    };
    let (slots, fresh) = plan_stats_slots(current, &desired_endpoints)?;
    plan.zeroed_slots = fresh;
    let mut ifaces = BTreeMap::new();
    let endpoints = desired_endpoints
        .iter()
        .map(|((vni, ip), ep)| {
            let key = (*vni, *ip);
            let raw = match ep.local_ifindex {
                Some(ifindex) => {
                    let slot = slots[&key];
                    ifaces.insert(
                        ifindex,
                        local_iface(ifindex, endpoint_key(*vni, *ip), ep.mac, slot),
                    );
                    encode_endpoint(key, ep, MacAddr([0; 6]), slot)
                }
                None => encode_endpoint(key, ep, resolve(ep.host)?, 0),
            };
            Ok((key, raw))
        })
        .collect::<Result<Vec<_>, DataplaneError>>()?;
    let (endpoints, endpoint_removals) = diff(&current.endpoints, endpoints, &mut report.endpoints);
    // Learned locations of endpoints that went away or moved would point traffic at the wrong
    // host (where the endpoint is no longer known).
    plan.forget_endpoints = endpoint_removals
        .iter()
        .copied()
        .chain(
            endpoints
                .iter()
                .filter(|(key, new)| {
                    current
                        .endpoints
                        .get(key)
                        .is_some_and(|old| old.host_ip_be != new.host_ip_be)
                })
                .map(|(key, _)| *key),
        )
        .collect();

    // Veth registrations written or removed along with their endpoint are not repairs.
    let touched: BTreeSet<(u32, u32)> = endpoints
        .iter()
        .map(|(key, _)| *key)
        .chain(endpoint_removals.iter().copied())
        .map(|(vni, ip)| (vni, ip_be(ip)))
        .collect();
    let touches =
        |iface: &abi::mz_local_iface| touched.contains(&(iface.endpoint.vni, iface.endpoint.ip_be));
    let mut unchanged_ifaces = Changes::default();
    let (iface_writes, iface_removals) = diff(&current.local_ifaces, ifaces, &mut unchanged_ifaces);
    report.repaired += iface_writes
        .iter()
        .filter(|(_, iface)| !touches(iface))
        .count();
    report.repaired += iface_removals
        .iter()
        .filter(|ifindex| !touches(&current.local_ifaces[ifindex]))
        .count();
    // Releases first: a registration that changes hands is removed, then written again after
    // the grace period; likewise an endpoint that leaves its veth, or whose veth changes.
    let mut iface_removals = iface_removals;
    iface_removals.extend(
        iface_writes
            .iter()
            .filter(|(ifindex, _)| current.local_ifaces.contains_key(ifindex))
            .map(|(ifindex, _)| *ifindex),
    );
    let mut endpoint_removals = endpoint_removals;
    let mut releases_veth = endpoint_removals.iter().any(|key| {
        current
            .endpoints
            .get(key)
            .is_some_and(|old| old.flags & abi::MZ_EP_LOCAL as u8 != 0)
    });
    for (key, new) in &endpoints {
        if let Some(old) = current.endpoints.get(key)
            && old.flags & abi::MZ_EP_LOCAL as u8 != 0
            && (new.flags & abi::MZ_EP_LOCAL as u8 == 0 || new.ifindex != old.ifindex)
        {
            endpoint_removals.push(*key);
            releases_veth = true;
        }
    }
    plan.releases_veth = releases_veth || !iface_removals.is_empty();
    plan.ifaces = iface_writes;
    plan.iface_removals = iface_removals;
    plan.endpoints = endpoints;
    plan.endpoint_removals = endpoint_removals;
    Ok(())
}

/// What [`reconcile`] would do to reach `desired`, without writing anything (its
/// `learned_forgotten` stays 0). Refuses what reconcile refuses.
pub fn plan_reconcile(
    maps: &DataplaneMaps,
    desired: &DesiredState,
) -> Result<ReconcileReport, DataplaneError> {
    Ok(plan(&maps.current()?, desired, None)?.report)
}

/// Brings the maps to exactly `desired`: writes what is new or differs, removes every entry
/// `desired` does not have. See the module documentation for the order and for what a failure
/// leaves behind.
pub fn reconcile(
    maps: &mut DataplaneMaps,
    desired: &DesiredState,
) -> Result<ReconcileReport, DataplaneError> {
    prepare_reconcile(maps, desired)?.apply(maps)
}

/// A reconcile planned against what the maps held when it was made: [`PreparedReconcile::apply`]
/// writes it without reading the maps again. The change path plans inside the store's
/// transaction (refusing there what reconcile would refuse) and applies after the commit;
/// between the two only the instance lock's holder writes the configuration maps.
pub struct PreparedReconcile(Plan);

impl PreparedReconcile {
    /// What applying it will do (its `learned_forgotten` is counted when applied).
    pub fn report(&self) -> ReconcileReport {
        self.0.report
    }

    /// Writes the plan; see [`reconcile`] for the order and for what a failure leaves.
    pub fn apply(self, maps: &mut DataplaneMaps) -> Result<ReconcileReport, DataplaneError> {
        apply_plan(maps, self.0)
    }
}

/// Plans a reconcile of `maps` to `desired`; refuses what reconcile refuses.
pub fn prepare_reconcile(
    maps: &DataplaneMaps,
    desired: &DesiredState,
) -> Result<PreparedReconcile, DataplaneError> {
    Ok(PreparedReconcile(plan(&maps.current()?, desired, None)?))
}

/// Plans a reconcile of only the entries in `scope` (see [`Scope`]) to what `desired` says of
/// them, reading and writing those entries alone: the cost of a change to a few endpoints,
/// whatever else the maps hold. `desired` must be what the whole configuration implies for
/// every entry in the scope (entries outside it are ignored), and the maps outside the scope
/// are taken to be right. Refuses what reconcile refuses for those entries, and what the maps
/// could not hold along with everything else they hold.
///
/// None when the maps around the scope are not what `desired` expects (this host's
/// configuration differs, or a veth of the scope is registered to an endpoint outside it):
/// then only a whole reconcile can put them right.
pub fn prepare_scoped_reconcile(
    maps: &DataplaneMaps,
    desired: &DesiredState,
    scope: &Scope,
) -> Result<Option<PreparedReconcile>, DataplaneError> {
    let Some((current, network_count)) = maps.current_in(scope, desired)? else {
        return Ok(None);
    };
    if current.config != desired.host {
        return Ok(None);
    }
    let mut plan = plan(&current, desired, Some(scope))?;
    let networks = plan.report.networks;
    if network_count + networks.added > abi::MZ_MAX_NETWORKS as usize + networks.removed {
        return invalid(format!(
            "mz_networks cannot hold {} more networks: it holds {network_count} of {}",
            networks.added,
            abi::MZ_MAX_NETWORKS
        ));
    }
    plan.networks_removed_first = network_count + networks.added > abi::MZ_MAX_NETWORKS as usize;
    let members = plan.report.members;
    if members.added > members.removed {
        let held = maps.read_members()?.len();
        if held + members.added - members.removed > abi::MZ_MAX_VPC_MEMBERS as usize {
            return invalid(format!(
                "mz_vpc_members cannot hold {} more (VPC, host) pairs: it holds {held} of {}",
                members.added - members.removed,
                abi::MZ_MAX_VPC_MEMBERS
            ));
        }
    }
    Ok(Some(PreparedReconcile(plan)))
}

fn apply_plan(maps: &mut DataplaneMaps, plan: Plan) -> Result<ReconcileReport, DataplaneError> {
    let mut report = plan.report;

    if let Some(config) = plan.config {
        maps.write_config(config.as_ref())?;
    }
    for (slot, value) in &plan.filter {
        maps.write_host_filter_slot(*slot, *value)?;
    }
    for (ip, mac) in &plan.hosts {
        maps.write_host(*ip, *mac)?;
    }

    for ifindex in &plan.iface_removals {
        maps.remove_local_iface(*ifindex)?;
    }
    maps.remove_endpoint_entries(&plan.endpoint_removals)?;
    maps.remove_members(&plan.member_removals)?;
    if plan.releases_veth {
        rcu::synchronize()?;
    }
    if plan.networks_removed_first {
        for key in &plan.network_removals {
            maps.remove_network_entry(*key)?;
        }
    }
    if plan.vpcs_removed_first {
        for vni in &plan.vpc_removals {
            maps.remove_vpc_entry(*vni)?;
        }
    }

    for (vni, vpc) in &plan.vpcs {
        maps.write_vpc(*vni, vpc)?;
    }
    for (key, net) in &plan.networks {
        maps.write_network(*key, net)?;
    }
    for (key, member) in &plan.members {
        maps.write_member(*key, member)?;
    }
    for slot in &plan.zeroed_slots {
        maps.zero_endpoint_stats(*slot)?;
    }
    for (ifindex, iface) in &plan.ifaces {
        maps.write_local_iface(*ifindex, iface)?;
    }
    maps.write_endpoints(&plan.endpoints)?;

    if !plan.networks_removed_first {
        for key in &plan.network_removals {
            maps.remove_network_entry(*key)?;
        }
    }
    if !plan.vpcs_removed_first {
        for vni in &plan.vpc_removals {
            maps.remove_vpc_entry(*vni)?;
        }
    }

    if plan.scoped {
        report.learned_forgotten =
            maps.forget_learned_of(&plan.forget_endpoints, |_, _, _| true)?;
    } else if !(plan.forget_endpoints.is_empty()
        && plan.forget_vnis.is_empty()
        && plan.forget_hosts.is_empty())
    {
        report.learned_forgotten = maps.forget_learned(|vni, ip, host| {
            plan.forget_endpoints.contains(&(vni, ip))
                || plan.forget_vnis.contains(&vni)
                || plan.forget_hosts.contains(&host)
        })?;
    }

    for ip in &plan.host_removals {
        maps.remove_host_entry(*ip)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{EndpointKind, MemberRoles};

    const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, last])
    }

    fn empty() -> Current {
        Current {
            host_filter: vec![0; abi::MZ_HOST_FILTER_SLOTS as usize],
            ..Current::default()
        }
    }

    fn endpoint(host: Ipv4Addr, local_ifindex: Option<u32>) -> EndpointEntry {
        EndpointEntry {
            mac: mac(0x10),
            kind: EndpointKind::Simple,
            bypass_decap: false,
            host,
            local_ifindex,
        }
    }

    /// A host, one VPC divided by PEER, one network bounced by this host, a local and a
    /// remote endpoint.
    fn state() -> DesiredState {
        let mut s = DesiredState {
            host: Some(HostConfig {
                ip: ME,
                mac: mac(1),
                underlay_mtu: 1500,
                underlay_ifindex: 2,
            }),
            ..DesiredState::default()
        };
        s.hosts.insert(PEER, mac(2));
        s.vpcs.insert(
            100,
            VpcEntry {
                this_host_divides: false,
                dividers: vec![PEER],
                members: BTreeMap::new(),
            },
        );
        s.networks.insert(
            (100, Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24)),
            NetworkEntry {
                this_host_bounces: true,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                bouncers: vec![ME],
            },
        );
        s.endpoints
            .insert((100, Ipv4Addr::new(10, 0, 0, 2)), endpoint(ME, Some(7)));
        s.endpoints
            .insert((100, Ipv4Addr::new(10, 0, 0, 3)), endpoint(PEER, None));
        s
    }

    /// What the maps hold after `plan` is applied to `current` (the writes of `reconcile`,
    /// in memory).
    fn applied(current: &Current, plan: &Plan) -> Current {
        let mut next = current.clone();
        if let Some(config) = plan.config {
            next.config = config;
        }
        for (slot, value) in &plan.filter {
            next.host_filter[*slot as usize] = *value;
        }
        next.hosts.extend(plan.hosts.iter().copied());
        // Releases, then grants, as reconcile writes them.
        for ifindex in &plan.iface_removals {
            next.local_ifaces.remove(ifindex);
        }
        for key in &plan.endpoint_removals {
            next.endpoints.remove(key);
        }
        for key in &plan.member_removals {
            next.members.remove(key);
        }
        next.vpcs.extend(plan.vpcs.iter().copied());
        next.members.extend(plan.members.iter().copied());
        next.networks.extend(plan.networks.iter().copied());
        next.endpoints.extend(plan.endpoints.iter().copied());
        next.local_ifaces.extend(plan.ifaces.iter().copied());
        for key in &plan.network_removals {
            next.networks.remove(key);
        }
        for vni in &plan.vpc_removals {
            next.vpcs.remove(vni);
        }
        for ip in &plan.host_removals {
            next.hosts.remove(ip);
        }
        next
    }

    fn error(desired: &DesiredState) -> String {
        plan(&empty(), desired, None).unwrap_err().to_string()
    }

    #[test]
    fn from_empty_everything_is_added_and_a_second_pass_changes_nothing() {
        let desired = state();
        let first = plan(&empty(), &desired, None).unwrap();
        let r = first.report;
        assert_eq!(r.host_config.added, 1);
        assert_eq!((r.hosts.added, r.vpcs.added, r.networks.added), (1, 1, 1));
        assert_eq!(r.endpoints.added, 2);
        assert_eq!(r.repaired, 0, "new entries are not repairs");
        assert_eq!(
            first.zeroed_slots,
            vec![0],
            "the local endpoint gets slot 0"
        );
        assert_eq!(first.ifaces.len(), 1);
        assert_eq!(
            r.to_string(),
            "host config set; hosts: 1 added; VPCs: 1 added; VPC members: 1 added; networks: 1 \
             added; endpoints: 2 added"
        );

        let after = applied(&empty(), &first);
        let second = plan(&after, &desired, None).unwrap();
        assert!(second.report.is_noop(), "{}", second.report);
        assert_eq!(second.report.to_string(), "no change");
        assert!(second.filter.is_empty() && second.zeroed_slots.is_empty());
    }

    /// `current` restricted to a scope, as [`DataplaneMaps::current_in`] reads it.
    fn restricted(current: &Current, scope: &Scope) -> Current {
        let in_scope = |iface: &abi::mz_local_iface| {
            scope
                .endpoints
                .contains(&(iface.endpoint.vni, ip_from_be(iface.endpoint.ip_be)))
        };
        Current {
            config: current.config,
            members: current
                .members
                .iter()
                .filter(|(k, _)| scope.members.contains(k))
                .map(|(k, v)| (*k, *v))
                .collect(),
            networks: current
                .networks
                .iter()
                .filter(|(k, _)| scope.networks.contains(k))
                .map(|(k, v)| (*k, *v))
                .collect(),
            endpoints: current
                .endpoints
                .iter()
                .filter(|(k, _)| scope.endpoints.contains(k))
                .map(|(k, v)| (*k, *v))
                .collect(),
            local_ifaces: current
                .local_ifaces
                .iter()
                .filter(|(_, v)| in_scope(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
            reserved_slots: current
                .local_ifaces
                .values()
                .filter(|v| !in_scope(v))
                .map(|v| v.stats_slot)
                .collect(),
            ..Current::default()
        }
    }

    #[test]
    fn a_scoped_plan_writes_only_its_scope_and_leaves_the_rest_as_it_is() {
        let before = state();
        let maps = applied(&empty(), &plan(&empty(), &before, None).unwrap());
        // A second local endpoint and a host that joins the VPC, planned for their entries
        // alone; the desired state also holds entries outside the scope, which differ from the
        // maps (the remote endpoint's MAC): they are not touched.
        let new_local = (100, Ipv4Addr::new(10, 0, 0, 4));
        let mut after = before.clone();
        after.endpoints.insert(new_local, endpoint(ME, Some(8)));
        after
            .vpcs
            .get_mut(&100)
            .unwrap()
            .members
            .insert(PEER, MemberRoles::ENDPOINTS);
        after
            .endpoints
            .get_mut(&(100, Ipv4Addr::new(10, 0, 0, 3)))
            .unwrap()
            .mac = mac(0x77);
        let scope = Scope {
            endpoints: [new_local].into(),
            members: [(100, PEER)].into(),
            networks: [(100, Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24))].into(),
        };
        let scoped = plan(&restricted(&maps, &scope), &after, Some(&scope)).unwrap();
        let r = scoped.report;
        assert_eq!(
            r.to_string(),
            "VPC members: 1 changed; endpoints: 1 added",
            "PEER was a member as the divider; now it hosts endpoints too"
        );
        assert!(scoped.config.is_none() && scoped.filter.is_empty() && scoped.hosts.is_empty());
        assert!(scoped.vpcs.is_empty() && scoped.network_removals.is_empty());
        assert!(scoped.endpoint_removals.is_empty() && scoped.iface_removals.is_empty());
        assert_eq!(
            scoped.zeroed_slots,
            vec![1],
            "slot 0 is held by the local endpoint outside the scope"
        );
        assert_eq!(scoped.ifaces.len(), 1);
        assert_eq!(scoped.ifaces[0].0, 8);

        // Removing it again: its veth is released, and nothing else is.
        let next = applied(&maps, &scoped);
        let removed = plan(&restricted(&next, &scope), &before, Some(&scope)).unwrap();
        assert_eq!(
            removed.report.to_string(),
            "VPC members: 1 changed; endpoints: 1 removed"
        );
        assert_eq!(removed.iface_removals, vec![8]);
        assert!(removed.releases_veth);
        assert_eq!(removed.forget_endpoints, [new_local].into());
    }

    #[test]
    fn a_new_host_mac_rewrites_what_forwards_to_it() {
        let desired = state();
        let before = applied(&empty(), &plan(&empty(), &desired, None).unwrap());
        let mut moved = desired.clone();
        moved.hosts.insert(PEER, mac(0x22));
        let p = plan(&before, &moved, None).unwrap();
        assert_eq!(p.report.hosts.changed, 1);
        assert_eq!(p.report.vpcs.changed, 1, "the divider's MAC");
        assert_eq!(p.report.networks.changed, 0, "bounced by this host only");
        assert_eq!(
            p.report.endpoints.changed, 1,
            "the remote endpoint's host MAC"
        );
        assert!(p.forget_endpoints.is_empty(), "no endpoint moved");
        assert_eq!(p.endpoints[0].1.host_mac, mac(0x22).0);

        // This host's own MAC reaches the network it bounces.
        let mut me = desired.clone();
        me.host.as_mut().unwrap().mac = mac(0x11);
        let p = plan(&before, &me, None).unwrap();
        assert_eq!(p.report.host_config.changed, 1);
        assert_eq!(p.report.networks.changed, 1);
        assert_eq!(p.networks[0].1.bouncers[0].mac, mac(0x11).0);
    }

    #[test]
    fn local_endpoints_keep_their_slot_and_new_ones_take_free_slots() {
        let mut desired = state();
        let before = applied(&empty(), &plan(&empty(), &desired, None).unwrap());
        // The local endpoint moves to another veth, a second one arrives.
        desired
            .endpoints
            .get_mut(&(100, Ipv4Addr::new(10, 0, 0, 2)))
            .unwrap()
            .local_ifindex = Some(8);
        desired
            .endpoints
            .insert((100, Ipv4Addr::new(10, 0, 0, 4)), endpoint(ME, Some(7)));
        let p = plan(&before, &desired, None).unwrap();
        assert_eq!(
            p.zeroed_slots,
            vec![1],
            "only the newcomer's slot is zeroed"
        );
        assert_eq!(p.report.endpoints.changed, 1);
        assert_eq!(p.report.endpoints.added, 1);
        let ifaces: BTreeMap<u32, u16> = p.ifaces.iter().map(|(i, v)| (*i, v.stats_slot)).collect();
        assert_eq!(ifaces, BTreeMap::from([(7, 1), (8, 0)]));
        // Veth 7 changes hands: released first, granted after a grace period; the endpoint
        // that leaves it is removed first too, and written again with veth 8.
        assert_eq!(
            p.iface_removals,
            vec![7],
            "veth 7 is released before it is granted"
        );
        assert_eq!(p.endpoint_removals, vec![(100, Ipv4Addr::new(10, 0, 0, 2))]);
        assert!(p.releases_veth, "grants wait for running programs");
        assert_eq!(
            p.report.endpoints.removed, 0,
            "a move is a change, not a removal"
        );
        assert_eq!(p.report.repaired, 0);
        let after = applied(&before, &p);
        assert!(plan(&after, &desired, None).unwrap().report.is_noop());
    }

    #[test]
    fn removed_and_moved_endpoints_lose_what_was_learned_about_them() {
        let desired = state();
        let before = applied(&empty(), &plan(&empty(), &desired, None).unwrap());
        let mut next = desired.clone();
        next.hosts.insert(Ipv4Addr::new(192, 0, 2, 3), mac(3));
        next.endpoints
            .get_mut(&(100, Ipv4Addr::new(10, 0, 0, 3)))
            .unwrap()
            .host = Ipv4Addr::new(192, 0, 2, 3);
        next.endpoints.remove(&(100, Ipv4Addr::new(10, 0, 0, 2)));
        let p = plan(&before, &next, None).unwrap();
        assert_eq!(
            p.forget_endpoints,
            BTreeSet::from([
                (100, Ipv4Addr::new(10, 0, 0, 2)),
                (100, Ipv4Addr::new(10, 0, 0, 3))
            ])
        );
        assert_eq!(p.iface_removals, vec![7]);
        assert_eq!(p.report.repaired, 0, "the veth went with its endpoint");
    }

    #[test]
    fn drift_in_derived_entries_is_repaired() {
        let desired = state();
        let mut drifted = applied(&empty(), &plan(&empty(), &desired, None).unwrap());
        // A stray address admitted by the filter, a veth registration nobody owns.
        drifted.host_filter[5] = ip_be(Ipv4Addr::new(203, 0, 113, 9));
        drifted.local_ifaces.insert(
            99,
            local_iface(
                99,
                endpoint_key(100, Ipv4Addr::new(10, 0, 0, 99)),
                mac(9),
                3,
            ),
        );
        let p = plan(&drifted, &desired, None).unwrap();
        assert_eq!(p.report.repaired, 2);
        assert_eq!(p.filter, vec![(5, 0)]);
        assert_eq!(p.iface_removals, vec![99]);
        assert_eq!(p.report.to_string(), "2 derived entries repaired");
    }

    #[test]
    fn the_host_filter_keeps_placed_hosts_and_refuses_a_full_window() {
        let mut hosts = BTreeMap::new();
        hosts.insert(PEER, mac(2));
        let writes = plan_host_filter(&empty().host_filter, &hosts).unwrap();
        assert_eq!(writes.len(), 1);
        let (slot, value) = writes[0];
        assert_eq!(value, ip_be(PEER));
        let mut filter = empty().host_filter;
        filter[slot as usize] = value;
        assert!(plan_host_filter(&filter, &hosts).unwrap().is_empty());

        // Nine hosts whose windows start at the same slot cannot all be admitted.
        let base = |ip: Ipv4Addr| host_filter_window(ip).next().unwrap();
        let target = base(PEER);
        let crowd: BTreeMap<Ipv4Addr, MacAddr> = (0u32..)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .filter(|ip| base(*ip) == target)
            .take(abi::MZ_HOST_FILTER_WINDOW as usize + 1)
            .map(|ip| (ip, mac(1)))
            .collect();
        let err = plan_host_filter(&empty().host_filter, &crowd)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no room for host"), "{err}");
    }

    #[test]
    fn invalid_states_are_refused_with_the_object_and_the_fix() {
        let mut s = state();
        s.endpoints.insert(
            (100, Ipv4Addr::new(10, 0, 0, 9)),
            endpoint(Ipv4Addr::new(192, 0, 2, 77), None),
        );
        let err = error(&s);
        assert!(
            err.contains(
                "endpoint 10.0.0.9 of VNI 100 lives on host 192.0.2.77, which is not a known host"
            ),
            "{err}"
        );

        let mut s = state();
        s.vpcs.insert(0, VpcEntry::default());
        assert!(
            error(&s).contains("VPC 0: VNI 0 is out of range"),
            "{}",
            error(&s)
        );

        let mut s = state();
        s.endpoints
            .insert((300, Ipv4Addr::new(10, 0, 0, 9)), endpoint(PEER, None));
        assert!(
            error(&s).contains("VPC 300 is not in the desired state"),
            "{}",
            error(&s)
        );

        let mut s = state();
        s.networks.insert(
            (100, Ipv4Net::new_assert(Ipv4Addr::new(10, 1, 3, 77), 16)),
            NetworkEntry {
                this_host_bounces: false,
                gateway: Ipv4Addr::new(10, 1, 0, 1),
                bouncers: vec![],
            },
        );
        assert!(
            error(&s).contains("write it as 10.1.0.0/16"),
            "{}",
            error(&s)
        );

        let mut s = state();
        s.vpcs
            .get_mut(&100)
            .unwrap()
            .dividers
            .push(Ipv4Addr::new(192, 0, 2, 50));
        assert!(
            error(&s).contains("divider 192.0.2.50 is not a known host"),
            "{}",
            error(&s)
        );

        let mut s = state();
        s.endpoints
            .insert((100, Ipv4Addr::new(10, 0, 0, 9)), endpoint(ME, Some(7)));
        assert!(
            error(&s).contains("both use veth ifindex 7"),
            "{}",
            error(&s)
        );

        let mut s = state();
        s.endpoints
            .insert((100, Ipv4Addr::new(10, 0, 0, 9)), endpoint(PEER, Some(9)));
        assert!(error(&s).contains("not on this host"), "{}", error(&s));

        // The underlay is ifindex 2 in state().
        let mut s = state();
        s.endpoints
            .insert((100, Ipv4Addr::new(10, 0, 0, 9)), endpoint(ME, Some(2)));
        assert!(
            error(&s).contains("is this host's underlay interface"),
            "{}",
            error(&s)
        );

        let mut s = state();
        s.host = None;
        s.networks.clear(); // bounced by this host, which is now unknown
        assert!(
            error(&s).contains("this host is not configured"),
            "{}",
            error(&s)
        );
    }
}
