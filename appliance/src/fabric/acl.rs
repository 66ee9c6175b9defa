//! The acl function through the one change path: the store's rules, with label groups and
//! endpoint names resolved to addresses, become the data plane's input (`dataplane::acl`
//! compiles and publishes them). A change whose ACL would not compile is refused before the
//! store commits it.

use std::collections::BTreeMap;

use mizar_db::{AclAction, AclAddr, AclState, Direction, Ipv4Net, Store, Topology};

use super::{FabricError, Instance};
use crate::dataplane::{AclAddrs, AclHits, AclMaps, AclRule, AclVpc, compile_acl};

/// The data plane's input: VNI → (VPC name, its ACL), addresses resolved in `topology`.
pub fn acl_inputs(acls: &[AclState], topology: &Topology) -> BTreeMap<u32, (String, AclVpc)> {
    let mut out = BTreeMap::new();
    for acl in acls {
        let Some(vpc) = topology.vpcs.iter().find(|v| v.name == acl.vpc) else {
            continue;
        };
        let endpoints = || vpc.networks.iter().flat_map(|n| n.endpoints.iter());
        let resolve = |addr: &AclAddr| match addr {
            AclAddr::Any => AclAddrs::Any,
            AclAddr::Cidr(net) => AclAddrs::Prefixes(vec![*net]),
            AclAddr::Label(label) => {
                let mut nets: Vec<Ipv4Net> = endpoints()
                    .filter(|e| e.labels.contains(label))
                    .map(|e| Ipv4Net::from(e.ip))
                    .collect();
                nets.sort();
                AclAddrs::Prefixes(nets)
            }
            AclAddr::Endpoint(name) => AclAddrs::Prefixes(
                endpoints()
                    .filter(|e| e.name == *name)
                    .map(|e| Ipv4Net::from(e.ip))
                    .collect(),
            ),
        };
        let direction = |d: Direction| match d {
            Direction::Ingress => mizar_ebpf::abi::MZ_ACL_INGRESS,
            Direction::Egress => mizar_ebpf::abi::MZ_ACL_EGRESS,
        };
        let rules = acl
            .rules
            .iter()
            .map(|r| AclRule {
                id: r.id,
                direction: direction(r.rule.direction),
                allow: r.rule.action == AclAction::Allow,
                src: resolve(&r.rule.src),
                dst: resolve(&r.rule.dst),
                proto: r.rule.proto.0,
                ports: r.rule.ports.map(|p| (p.first, p.last)),
            })
            .collect();
        out.insert(
            vpc.vni,
            (
                acl.vpc.clone(),
                AclVpc {
                    default_allow: [
                        acl.ingress_default == AclAction::Allow,
                        acl.egress_default == AclAction::Allow,
                    ],
                    epoch: acl.epoch,
                    rules,
                },
            ),
        );
    }
    out
}

/// The store's ACLs as the data plane takes them.
pub fn desired_acls(store: &Store) -> Result<BTreeMap<u32, (String, AclVpc)>, FabricError> {
    Ok(acl_inputs(&store.acls()?, &store.snapshot()?))
}

/// Refuses ACLs the data plane could not hold (compiled too large), naming the VPC and the fix.
pub fn check_acls(
    acls: &[AclState],
    topology: &Topology,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for (name, vpc) in acl_inputs(acls, topology).values() {
        compile_acl(name, vpc)?;
    }
    Ok(())
}

/// Hits per rule id, and flows tracked per VNI.
pub type AclCounters = (AclHits, BTreeMap<u32, u64>);

impl Instance {
    /// Writes the acl function's maps from the store (only VPCs whose ACL changed).
    pub(super) fn sync_acls(&self, store: &Store) -> Result<usize, FabricError> {
        Ok(AclMaps::open(&self.pins())?.sync(&desired_acls(store)?)?)
    }

    /// Hits per rule id and flows per VNI, while the data plane is up.
    pub fn acl_counters(&self) -> Result<Option<AclCounters>, FabricError> {
        if !self.is_up() {
            return Ok(None);
        }
        let maps = AclMaps::open(&self.pins())?;
        Ok(Some((maps.hits()?, maps.flows_per_vni()?)))
    }
}
