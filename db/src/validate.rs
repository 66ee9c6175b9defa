//! Validation rules. Each rule is a function over the objects it needs, so that the typed API
//! (one object, its neighbours looked up in SQLite) and `apply` (a whole document, walked in
//! memory) enforce the same rules with the same messages.
//!
//! Decisions:
//! - A CIDR with host bits set (`10.0.0.1/24`) is refused, with the network address as the fix:
//!   it is a common typo, and storing it either as written or silently truncated would hide
//!   what the writer meant.
//! - Networks and VPCs need a prefix of /30 or shorter: a /31 or /32 has no room for a gateway
//!   and an endpoint.
//! - An endpoint may not take its network's own address, broadcast address or gateway.
//! - MACs must be unicast and not all zeros. Host MACs need not be unique: hosts behind one
//!   router are all reached through that router's MAC.
//! - Only function endpoints may bypass decapsulation, only scaled endpoints have backends, and
//!   a backend is a non-scaled endpoint of the same VPC.

use std::net::Ipv4Addr;

use rustc_hash::FxHashMap as HashMap;

use ipnet::Ipv4Net;

use crate::{
    error::{Kind, Names, StoreError, endpoint_subject, network_subject},
    model::{Endpoint, EndpointKind, Host, MacAddr, Network, Vpc, default_gateway},
    state::State,
};

/// Most bouncers per network: `MZ_MAX_BOUNCERS` in ebpf/include/mizar_abi.h.
pub const MAX_BOUNCERS: usize = 16;
/// Most dividers per VPC: `MZ_MAX_DIVIDERS` in ebpf/include/mizar_abi.h.
pub const MAX_DIVIDERS: usize = 16;
/// Most endpoints one host's data plane holds: `MZ_MAX_ENDPOINTS` in ebpf/include/mizar_abi.h.
pub const MAX_ENDPOINTS: usize = 262_144;
/// Largest VNI: 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Longest prefix of a VPC or network.
pub const MAX_PREFIX: u8 = 30;

type Check = Result<(), StoreError>;

/// A label's syntax: `key=value`; Err holds the reason.
pub(crate) fn check_label(label: &str) -> Result<(), &'static str> {
    let Some((key, value)) = label.split_once('=') else {
        return Err("no '='");
    };
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !part(key) {
        return Err("bad key");
    }
    if !part(value) {
        return Err("bad value");
    }
    Ok(())
}

pub(crate) fn check_name(kind: Kind, name: &str) -> Check {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 63 {
        "it is longer than 63 characters"
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        "it must start with a letter or digit"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        "it has characters other than letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName {
        kind,
        name: name.to_owned(),
        reason,
    })
}

/// A Linux interface name: what `ip link` accepts (IFNAMSIZ is 16 with the NUL).
pub(crate) fn check_interface(subject: impl FnOnce() -> String, name: &str) -> Check {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 15 {
        "it is longer than 15 characters"
    } else if name == "." || name == ".." {
        "it is a path component"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        "it contains '/', ':', white space or a control character"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidInterface {
        subject: subject(),
        name: name.to_owned(),
        reason,
    })
}

pub(crate) fn check_mac(subject: impl FnOnce() -> String, mac: MacAddr) -> Check {
    match mac.not_unicast_reason() {
        None => Ok(()),
        Some(reason) => Err(StoreError::MacNotUnicast {
            subject: subject(),
            mac,
            reason,
        }),
    }
}

pub(crate) fn check_host(host: &Host) -> Check {
    check_name(Kind::Host, &host.name)?;
    let ip = host.ip;
    let reason = if ip.is_unspecified() {
        Some("unspecified (0.0.0.0)")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_loopback() {
        Some("a loopback address, which never leaves the machine")
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(StoreError::HostIpInvalid {
            host: host.name.clone(),
            ip,
            reason,
        });
    }
    let subject = || format!("host {:?}", host.name);
    check_mac(subject, host.mac)?;
    if let Some(interface) = &host.interface {
        check_interface(subject, interface)?;
    }
    Ok(())
}

pub(crate) fn check_cidr(subject: impl FnOnce() -> String, cidr: Ipv4Net) -> Check {
    if cidr.trunc() != cidr {
        return Err(StoreError::HostBitsSet {
            subject: subject(),
            given: cidr,
            suggested: cidr.trunc(),
        });
    }
    if cidr.prefix_len() > MAX_PREFIX {
        return Err(StoreError::PrefixTooLong {
            subject: subject(),
            cidr,
        });
    }
    Ok(())
}

pub(crate) fn check_vpc(vpc: &Vpc) -> Check {
    check_name(Kind::Vpc, &vpc.name)?;
    if !(1..=MAX_VNI).contains(&vpc.vni) {
        return Err(StoreError::VniOutOfRange {
            vpc: vpc.name.clone(),
            vni: vpc.vni,
        });
    }
    check_cidr(|| format!("VPC {:?}", vpc.name), vpc.cidr)
}

/// A network on its own and against its VPC (not against its siblings).
pub(crate) fn check_network(vpc: &Vpc, net: &Network) -> Check {
    check_name(Kind::Network, &net.name)?;
    check_cidr(|| network_subject(&net.vpc, &net.name), net.cidr)?;
    if !vpc.cidr.contains(&net.cidr) {
        return Err(StoreError::NetworkOutsideVpc {
            vpc: vpc.name.clone(),
            vpc_cidr: vpc.cidr,
            network: net.name.clone(),
            cidr: net.cidr,
        });
    }
    let reason = if !net.cidr.contains(&net.gateway) {
        "outside the network"
    } else if net.gateway == net.cidr.network() {
        "the network's own address"
    } else if net.gateway == net.cidr.broadcast() {
        "the network's broadcast address"
    } else {
        return Ok(());
    };
    Err(StoreError::BadGateway {
        vpc: net.vpc.clone(),
        network: net.name.clone(),
        cidr: net.cidr,
        gateway: net.gateway,
        reason,
        suggested: default_gateway(net.cidr),
    })
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A network against its siblings in the VPC (any of them with its own name is skipped).
pub(crate) fn check_no_overlap<'a>(
    net: &Network,
    siblings: impl IntoIterator<Item = &'a Network>,
) -> Check {
    for other in siblings {
        if other.name != net.name && overlaps(net.cidr, other.cidr) {
            return Err(overlap_error(net, other));
        }
    }
    Ok(())
}

fn overlap_error(net: &Network, other: &Network) -> StoreError {
    StoreError::NetworkOverlap {
        vpc: net.vpc.clone(),
        network: net.name.clone(),
        cidr: net.cidr,
        other: other.name.clone(),
        other_cidr: other.cidr,
    }
}

/// The rules an endpoint satisfies on its own.
pub(crate) fn check_endpoint(ep: &Endpoint) -> Check {
    check_name(Kind::Endpoint, &ep.name)?;
    let subject = || endpoint_subject(&ep.vpc, &ep.name);
    check_mac(subject, ep.mac)?;
    let mut keys = std::collections::BTreeSet::new();
    for label in &ep.labels {
        let bad = |reason| StoreError::BadLabel {
            subject: endpoint_subject(&ep.vpc, &ep.name),
            label: label.clone(),
            reason,
        };
        check_label(label).map_err(bad)?;
        if !keys.insert(label.split('=').next()) {
            return Err(bad("its key has a value already"));
        }
    }
    if ep.bypass_decap && ep.kind != EndpointKind::Function {
        return Err(StoreError::BypassDecapNotAllowed {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            kind: ep.kind,
        });
    }
    if !ep.backends.is_empty() && ep.kind != EndpointKind::Scaled {
        return Err(StoreError::BackendsNotAllowed {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            kind: ep.kind,
        });
    }
    if ep.backends.contains(&ep.name) {
        return Err(StoreError::BadBackend {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            backend: ep.name.clone(),
            reason: "is the endpoint itself",
        });
    }
    match (&ep.veth, ep.kind) {
        (Some(_), EndpointKind::Scaled) => Err(StoreError::VethNotAllowed {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
        }),
        (Some(veth), _) => check_interface(subject, veth),
        (None, _) => Ok(()),
    }
}

/// The endpoint's IP against its network; `siblings` (the VPC's networks) only serve the hint.
pub(crate) fn check_endpoint_ip<'a>(
    ep: &Endpoint,
    net: &Network,
    siblings: impl IntoIterator<Item = &'a Network>,
) -> Check {
    if !net.cidr.contains(&ep.ip) {
        let hint = match siblings.into_iter().find(|n| n.cidr.contains(&ep.ip)) {
            Some(home) => format!(
                "it belongs in network {:?} ({}): put it there, or pick an address in {}",
                home.name, home.cidr, net.cidr
            ),
            None => format!(
                "no network of VPC {:?} contains it: pick an address in {}, or add a network \
                 with mizar net add",
                ep.vpc, net.cidr
            ),
        };
        return Err(StoreError::EndpointOutsideNetwork {
            vpc: ep.vpc.clone(),
            network: net.name.clone(),
            cidr: net.cidr,
            endpoint: ep.name.clone(),
            ip: ep.ip,
            hint,
        });
    }
    let reason = if ep.ip == net.cidr.network() {
        "the network address"
    } else if ep.ip == net.cidr.broadcast() {
        "the broadcast address"
    } else if ep.ip == net.gateway {
        "the gateway"
    } else {
        return Ok(());
    };
    Err(StoreError::EndpointIpReserved {
        vpc: ep.vpc.clone(),
        network: net.name.clone(),
        cidr: net.cidr,
        endpoint: ep.name.clone(),
        ip: ep.ip,
        reason,
    })
}

/// An endpoint served from this host needs the veth it is reached through.
pub(crate) fn check_veth_present(ep: &Endpoint, this_host: Option<&str>) -> Check {
    if ep.kind != EndpointKind::Scaled && ep.veth.is_none() && this_host == Some(ep.host.as_str()) {
        return Err(StoreError::VethMissing {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            host: ep.host.clone(),
        });
    }
    Ok(())
}

/// A backend, once looked up in the endpoint's VPC.
pub(crate) fn check_backend(
    ep: &Endpoint,
    backend: &str,
    found: Option<EndpointKind>,
    known: impl FnOnce() -> Names,
) -> Check {
    match found {
        None => Err(StoreError::Unknown {
            kind: Kind::Endpoint,
            name: backend.to_owned(),
            scope: format!(" in VPC {:?}", ep.vpc),
            used_by: format!(" (backend of scaled endpoint {:?})", ep.name),
            known: known(),
            fix: "add it with mizar ep add",
        }),
        Some(EndpointKind::Scaled) => Err(StoreError::BadBackend {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            backend: backend.to_owned(),
            reason: "is itself scaled",
        }),
        Some(_) => Ok(()),
    }
}

pub(crate) fn unknown_host(name: &str, used_by: String, known: Names) -> StoreError {
    StoreError::Unknown {
        kind: Kind::Host,
        name: name.to_owned(),
        scope: String::new(),
        used_by,
        known,
        fix: "add it with mizar host add",
    }
}

pub(crate) fn unknown_vpc(name: &str, used_by: String, known: Names) -> StoreError {
    StoreError::Unknown {
        kind: Kind::Vpc,
        name: name.to_owned(),
        scope: String::new(),
        used_by,
        known,
        fix: "add it with mizar vpc add",
    }
}

pub(crate) fn unknown_network(vpc: &str, name: &str, used_by: String, known: Names) -> StoreError {
    StoreError::Unknown {
        kind: Kind::Network,
        name: name.to_owned(),
        scope: format!(" in VPC {vpc:?}"),
        used_by,
        known,
        fix: "add it with mizar net add",
    }
}

pub(crate) fn unknown_endpoint(vpc: &str, name: &str, known: Names) -> StoreError {
    StoreError::Unknown {
        kind: Kind::Endpoint,
        name: name.to_owned(),
        scope: format!(" in VPC {vpc:?}"),
        used_by: String::new(),
        known,
        fix: "see mizar ep list",
    }
}

pub(crate) fn too_many(owner: String, what: &'static str, count: usize, max: usize) -> Check {
    if count > max {
        return Err(StoreError::TooMany {
            owner,
            what,
            count,
            max,
        });
    }
    Ok(())
}

/// Every rule over a whole configuration; every problem found, in name order.
/// Checks a whole configuration. `before` is the store's current one: when two endpoints clash,
/// the one that is already there is named as the holder and the other as the newcomer.
/// A namespace mizar plumbs an endpoint into: a name `ip netns` takes (a file of /run/netns),
/// and a veth to name the pair's host end.
fn check_netns(ep: &Endpoint, netns: &str) -> Check {
    let reason = if netns.is_empty() {
        Some("is empty")
    } else if netns == "." || netns == ".." || netns.contains(['/', '\0']) {
        Some("is not a file name")
    } else if netns.len() > 255 {
        Some("is longer than 255 bytes")
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(StoreError::NetnsInvalid {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            netns: netns.to_owned(),
            reason,
        });
    }
    if ep.veth.is_none() {
        return Err(StoreError::NetnsWithoutVeth {
            vpc: ep.vpc.clone(),
            endpoint: ep.name.clone(),
            netns: netns.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn validate_state(s: &State, before: &State) -> Vec<StoreError> {
    let mut problems = Vec::new();
    let mut push = |check: Check| {
        if let Err(err) = check {
            problems.push(err);
        }
    };
    let host_names = || s.hosts.keys().cloned().collect::<Names>();

    let mut by_ip: HashMap<Ipv4Addr, &str> = HashMap::default();
    for host in s.hosts.values() {
        push(check_host(host));
        if let Some(other) = by_ip.insert(host.ip, &host.name) {
            push(Err(StoreError::HostIpTaken {
                host: host.name.clone(),
                ip: host.ip,
                other: other.to_owned(),
            }));
        }
    }
    if let Some(name) = &s.this_host {
        match s.hosts.get(name) {
            None => push(Err(unknown_host(name, " (this-host)".into(), host_names()))),
            Some(host) if host.interface.is_none() => {
                push(Err(StoreError::NoUnderlayInterface { host: name.clone() }))
            }
            Some(_) => {}
        }
    }

    let mut by_vni: HashMap<u32, &str> = HashMap::default();
    for vpc in s.vpcs.values() {
        push(check_vpc(vpc));
        if let Some(other) = by_vni.insert(vpc.vni, &vpc.name) {
            push(Err(StoreError::VniTaken {
                vpc: vpc.name.clone(),
                vni: vpc.vni,
                other: other.to_owned(),
            }));
        }
    }

    let mut dividers: HashMap<&str, usize> = HashMap::default();
    for (vpc, host) in &s.dividers {
        *dividers.entry(vpc).or_default() += 1;
        if !s.hosts.contains_key(host) {
            let used_by = format!(" (divider of VPC {vpc:?})");
            push(Err(unknown_host(host, used_by, host_names())));
        }
    }
    for (vpc, count) in dividers {
        push(too_many(
            format!("VPC {vpc:?}"),
            "dividers",
            count,
            MAX_DIVIDERS,
        ));
    }

    for net in s.networks.values() {
        match s.vpcs.get(&net.vpc) {
            None => push(Err(unknown_vpc(
                &net.vpc,
                format!(" (VPC of network {:?})", net.name),
                s.vpcs.keys().cloned().collect(),
            ))),
            Some(vpc) => push(check_network(vpc, net)),
        }
    }
    for vpc in s.vpcs.keys() {
        check_overlaps(s.networks_of(vpc), &mut push);
    }

    let mut bouncers: HashMap<(&str, &str), usize> = HashMap::default();
    for (vpc, net, host) in &s.bouncers {
        *bouncers.entry((vpc, net)).or_default() += 1;
        if !s.hosts.contains_key(host) {
            let used_by = format!(" (bouncer of {})", network_subject(vpc, net));
            push(Err(unknown_host(host, used_by, host_names())));
        }
    }
    for ((vpc, net), count) in bouncers {
        push(too_many(
            network_subject(vpc, net),
            "bouncers",
            count,
            MAX_BOUNCERS,
        ));
    }

    let mut by_vpc_ip: HashMap<(&str, Ipv4Addr), &str> = HashMap::default();
    let mut by_vpc_mac: HashMap<(&str, MacAddr), &str> = HashMap::default();
    let mut by_veth: HashMap<(&str, &str), &Endpoint> = HashMap::default();
    let mut by_netns: HashMap<(&str, &String), &Endpoint> = HashMap::default();
    for ep in s.endpoints.values() {
        push(check_endpoint(ep));
        match s.networks.get(&(ep.vpc.clone(), ep.network.clone())) {
            None => push(Err(unknown_network(
                &ep.vpc,
                &ep.network,
                format!(" (network of endpoint {:?})", ep.name),
                s.networks_of(&ep.vpc).map(|n| n.name.clone()).collect(),
            ))),
            Some(net) => push(check_endpoint_ip(ep, net, s.networks_of(&ep.vpc))),
        }
        // Who was there first: an endpoint of `before` that had this field's value.
        let had = |name: &str, same: &dyn Fn(&Endpoint) -> bool| {
            before
                .endpoints
                .get(&(ep.vpc.clone(), name.to_owned()))
                .is_some_and(same)
        };
        if let Some(other) = by_vpc_ip.insert((&ep.vpc, ep.ip), &ep.name) {
            let same_ip = |e: &Endpoint| e.ip == ep.ip;
            let (newcomer, holder) = if had(&ep.name, &same_ip) && !had(other, &same_ip) {
                (other, ep.name.as_str())
            } else {
                (ep.name.as_str(), other)
            };
            push(Err(StoreError::EndpointIpTaken {
                vpc: ep.vpc.clone(),
                ip: ep.ip,
                endpoint: newcomer.to_owned(),
                other: holder.to_owned(),
            }));
        }
        if let Some(other) = by_vpc_mac.insert((&ep.vpc, ep.mac), &ep.name) {
            let same_mac = |e: &Endpoint| e.mac == ep.mac;
            let (newcomer, holder) = if had(&ep.name, &same_mac) && !had(other, &same_mac) {
                (other, ep.name.as_str())
            } else {
                (ep.name.as_str(), other)
            };
            push(Err(StoreError::EndpointMacTaken {
                vpc: ep.vpc.clone(),
                mac: ep.mac,
                endpoint: newcomer.to_owned(),
                other: holder.to_owned(),
            }));
        }
        if !s.hosts.contains_key(&ep.host) {
            let used_by = format!(" (host of {})", endpoint_subject(&ep.vpc, &ep.name));
            push(Err(unknown_host(&ep.host, used_by, host_names())));
        }
        push(check_veth_present(ep, s.this_host.as_deref()));
        if let Some(veth) = &ep.veth
            && let Some(other) = by_veth.insert((&ep.host, veth), ep)
        {
            push(Err(StoreError::VethTaken {
                host: ep.host.clone(),
                veth: veth.clone(),
                endpoint: ep.name.clone(),
                other: format!("{:?} of VPC {:?}", other.name, other.vpc),
            }));
        }
        if let Some(netns) = s.netns.get(&(ep.vpc.clone(), ep.name.clone())) {
            push(check_netns(ep, netns));
            if let Some(other) = by_netns.insert((&ep.host, netns), ep) {
                push(Err(StoreError::NetnsShared {
                    host: ep.host.clone(),
                    netns: netns.clone(),
                    endpoint: format!("{:?} of VPC {:?}", ep.name, ep.vpc),
                    other: format!("{:?} of VPC {:?}", other.name, other.vpc),
                }));
            }
        }
        for backend in &ep.backends {
            if backend == &ep.name {
                continue; // reported by check_endpoint
            }
            let found = s
                .endpoints
                .get(&(ep.vpc.clone(), backend.clone()))
                .map(|b| b.kind);
            push(check_backend(ep, backend, found, || {
                s.endpoints_of(&ep.vpc).map(|e| e.name.clone()).collect()
            }));
        }
    }
    problems
}

/// Overlaps among one VPC's networks in O(n log n): sorted by first address, a network
/// overlaps an earlier one exactly when it starts before the furthest end seen so far.
fn check_overlaps<'a>(networks: impl Iterator<Item = &'a Network>, push: &mut impl FnMut(Check)) {
    let mut sorted: Vec<&Network> = networks.collect();
    sorted.sort_by_key(|n| (n.cidr.network(), n.cidr.prefix_len()));
    let mut widest: Option<&Network> = None;
    for net in sorted {
        match widest {
            Some(prev) if prev.cidr.contains(&net.cidr.network()) => {
                push(Err(overlap_error(net, prev)));
            }
            _ => widest = Some(net),
        }
    }
}
