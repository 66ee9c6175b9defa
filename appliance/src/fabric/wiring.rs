//! Endpoint plumbing mizar makes itself (`ep add --netns`): a veth pair whose inner end is moved
//! into the endpoint's network namespace and set up as the data plane needs it, as Mizar's CNI
//! did for pods. Without it the user must make each of these settings by hand, and a forgotten
//! one fails silently (DESIGN.md, pitfalls):
//!
//! - transmit checksum offload off inside: the egress program forwards frames as the stack left
//!   them, and a receiver drops an unfinished L4 checksum;
//! - GRO on inside: a veth drops frames redirected into it unless its peer runs XDP or GRO;
//! - an MTU that leaves room for the Geneve encapsulation on the underlay (58 bytes), or bulk
//!   traffic is dropped by egress as too big;
//! - the address with the network's prefix, the endpoint's MAC (the store's, which peers learn),
//!   and a default route via the network's gateway (which proxy ARP answers).
//!
//! The pair is made before the store changes (the data plane attaches egress to the host end as
//! the change commits) and removed again if the change is refused: [`Wired`] undoes it unless
//! kept.

use std::net::Ipv4Addr;

use mizar_db::{ApplyReport, Endpoint, StoreError, Topology};

use super::{ChangeOptions, Changed, FabricError, Instance, Interfaces as _, SystemInterfaces};
use crate::lab::{ENDPOINT_IFNAME, IFNAME_MAX, LabError, NetNs, run};

/// The MTU an endpoint gets when the underlay's cannot be read (its interface is missing while
/// the data plane is down): what a 1500-byte underlay leaves.
pub const FALLBACK_ENDPOINT_MTU: u32 = 1500 - mizar_ebpf::abi::MZ_ENCAP_OVERHEAD;

/// How one endpoint is plumbed into its namespace.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// The host end, which the store names as the endpoint's veth.
    pub veth: String,
    pub netns: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

impl Wiring {
    /// The plumbing of `ep` (which names its veth) in network `cidr`/`gateway`, with an MTU the
    /// underlay interface `underlay` leaves room for.
    pub fn for_endpoint(
        ep: &Endpoint,
        netns: &str,
        prefix_len: u8,
        gateway: Ipv4Addr,
        underlay: Option<&str>,
    ) -> Result<Self, FabricError> {
        let veth = ep.veth.clone().ok_or_else(|| FabricError::Wiring {
            netns: netns.to_owned(),
            reason: format!(
                "endpoint {} of VPC {} names no veth: give the host end's name with --veth",
                ep.name, ep.vpc
            ),
        })?;
        let mtu = underlay
            .and_then(|ifname| SystemInterfaces.mtu(ifname))
            .map_or(FALLBACK_ENDPOINT_MTU, |mtu| {
                u32::from(mtu).saturating_sub(mizar_ebpf::abi::MZ_ENCAP_OVERHEAD)
            });
        Ok(Self {
            veth,
            netns: netns.to_owned(),
            mac: ep.mac.to_string(),
            ip: ep.ip,
            prefix_len,
            gateway,
            mtu,
        })
    }

    /// Makes the pair and sets both ends up; on any failure removes what it made. Refuses when
    /// the namespace is missing, or when the host end or the inner `eth0` exists already (mizar
    /// removes on `ep del` only what it made).
    pub fn wire(&self) -> Result<Wired, FabricError> {
        let error = |reason: String| FabricError::Wiring {
            netns: self.netns.clone(),
            reason,
        };
        if self.veth.len() > IFNAME_MAX {
            return Err(error(format!(
                "the veth name {:?} is longer than Linux takes ({IFNAME_MAX} characters): choose a \
                 shorter one",
                self.veth
            )));
        }
        if self.mtu < 68 {
            return Err(error(format!(
                "the underlay leaves an endpoint MTU of {} bytes, below IPv4's 68: raise the \
                 underlay interface's MTU",
                self.mtu
            )));
        }
        let ns = NetNs::existing(&self.netns).map_err(|err| error(err.to_string()))?;
        if SystemInterfaces.ifindex(&self.veth).is_some() {
            return Err(error(format!(
                "interface {} already exists: mizar makes the pair itself (--netns, or netns in \
                 a document); name a new veth, or leave the namespace out to use the existing one",
                self.veth
            )));
        }
        if ns.ip(&["link", "show", "dev", ENDPOINT_IFNAME]).is_ok() {
            return Err(error(format!(
                "the namespace already has an interface {ENDPOINT_IFNAME}: give the endpoint a \
                 namespace of its own, or leave the namespace out and plumb it by hand"
            )));
        }
        let mtu = self.mtu.to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                &self.veth,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                ENDPOINT_IFNAME,
                "mtu",
                &mtu,
                "address",
                &self.mac,
                "netns",
                &self.netns,
            ],
        )
        .map_err(|err| error(err.to_string()))?;
        let wired = Wired {
            veth: Some(self.veth.clone()),
        };
        self.configure(&ns).map_err(|err| error(err.to_string()))?;
        Ok(wired)
    }

    fn configure(&self, ns: &NetNs) -> Result<(), LabError> {
        let address = format!("{}/{}", self.ip, self.prefix_len);
        ns.ip(&["addr", "add", &address, "dev", ENDPOINT_IFNAME])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "set", ENDPOINT_IFNAME, "up"])?;
        ns.ip(&[
            "route",
            "replace",
            "default",
            "via",
            &self.gateway.to_string(),
            "dev",
            ENDPOINT_IFNAME,
        ])?;
        ns.disable_tx_checksum(ENDPOINT_IFNAME)?;
        ns.enable_gro(ENDPOINT_IFNAME)?;
        run("ip", &["link", "set", &self.veth, "up"])?;
        Ok(())
    }
}

/// A veth pair just made: removed when this drops, unless kept.
#[derive(Debug)]
#[must_use = "the pair is removed when this drops"]
pub struct Wired {
    veth: Option<String>,
}

impl Wired {
    /// Leaves the pair in place (the endpoint it was made for is in the store).
    pub fn keep(mut self) {
        self.veth = None;
    }
}

impl Drop for Wired {
    fn drop(&mut self) {
        if let Some(veth) = self.veth.take()
            && let Err(err) = unwire(&veth)
        {
            tracing::warn!(%veth, %err, "cannot remove the veth pair made for a refused endpoint");
        }
    }
}

/// Removes the pair whose host end is `veth` (both ends go together); nothing to do when it is
/// gone already (its namespace was deleted, which takes the pair with it).
pub fn unwire(veth: &str) -> Result<(), FabricError> {
    if SystemInterfaces.ifindex(veth).is_none() {
        return Ok(());
    }
    run("ip", &["link", "del", "dev", veth]).map_err(|err| FabricError::Unwire {
        veth: veth.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(())
}

impl Instance {
    /// `ep add`: adds `ep` (its network found from its address when `ep.network` is empty)
    /// through the one change path. With `netns`, first makes its veth pair into that namespace
    /// ([`Wiring`]), removed again if the change is refused; the store records the namespace so
    /// that [`Instance::delete_endpoint`] removes the pair.
    pub fn add_endpoint(
        &self,
        mut ep: Endpoint,
        netns: Option<&str>,
    ) -> Result<Changed<Endpoint>, FabricError> {
        let refused = |err: FabricError| StoreError::Refused(Box::new(err));
        self.change(ChangeOptions::default(), |store| {
            if ep.network.is_empty() {
                ep.network = store.network_for(&ep.vpc, ep.ip)?.name;
            }
            let wired = match netns {
                None => None,
                Some(netns) => {
                    let me = store
                        .this_host()?
                        .ok_or_else(|| refused(FabricError::NoThisHost))?;
                    if me.name != ep.host {
                        return Err(refused(FabricError::WiringElsewhere {
                            vpc: ep.vpc.clone(),
                            endpoint: ep.name.clone(),
                            host: ep.host.clone(),
                        }));
                    }
                    let network = store.network(&ep.vpc, &ep.network)?;
                    let wiring = Wiring::for_endpoint(
                        &ep,
                        netns,
                        network.cidr.prefix_len(),
                        network.gateway,
                        me.interface.as_deref(),
                    )
                    .map_err(refused)?;
                    Some(wiring.wire().map_err(refused)?)
                }
            };
            // After the wiring: with --netns, the veth it checks for is the one just made.
            self.check_new_endpoint(store, &ep)?;
            match netns {
                Some(netns) => store.add_endpoint_in_netns(&ep, netns)?,
                None => store.add_endpoint(&ep)?,
            }
            if let Some(wired) = wired {
                wired.keep();
            }
            Ok(ep)
        })
    }

    /// `apply`: makes the store what `doc` says through the one change path (see
    /// [`mizar_db::Store::apply`]), plumbing the endpoints of this host the document gives a
    /// namespace (`netns`) that mizar has not plumbed yet. When there is any, the document is
    /// checked first (a plan, which writes nothing), so that an invalid one touches no
    /// interface; the pairs are then made before the store changes and removed again if the
    /// change is refused. The pairs of endpoints the apply removes go after it, once the data
    /// plane has let go of them. A dry run plumbs nothing.
    pub fn apply(
        &self,
        doc: &Topology,
        prune: bool,
        options: ChangeOptions,
    ) -> Result<Changed<ApplyReport>, FabricError> {
        let refused = |err: FabricError| StoreError::Refused(Box::new(err));
        let mut unplumb = Vec::new();
        let mut changed = self.change(options, |store| {
            let this_host = match &doc.this_host {
                Some(name) => Some(name.clone()),
                None => store.this_host()?.map(|h| h.name),
            };
            let underlay = doc
                .hosts
                .iter()
                .find(|h| Some(&h.name) == this_host.as_ref())
                .and_then(|h| h.interface.as_deref());
            let plumbed = store.plumbed()?;
            let mut wirings = Vec::new();
            for (vpc, net, spec) in doc.endpoints() {
                let Some(netns) = spec.netns.as_deref() else {
                    continue;
                };
                let key = (vpc.name.clone(), spec.name.clone());
                if options.dry_run
                    || this_host.as_deref() != Some(spec.host.as_str())
                    || plumbed.get(&key).map(String::as_str) == Some(netns)
                {
                    continue;
                }
                let ep = Endpoint::from_spec(&vpc.name, &net.name, spec);
                let wiring = Wiring::for_endpoint(
                    &ep,
                    netns,
                    net.cidr.prefix_len(),
                    net.gateway(),
                    underlay,
                );
                wirings.push((ep, wiring));
            }
            if !wirings.is_empty() {
                store.plan(doc, prune)?;
            }
            let mut made = Vec::new();
            for (ep, wiring) in wirings {
                // A document plumbs many: say which one could not be.
                let naming = |err: FabricError| match err {
                    FabricError::Wiring { netns, reason } => FabricError::Wiring {
                        netns,
                        reason: format!("endpoint {} of VPC {}: {reason}", ep.name, ep.vpc),
                    },
                    other => other,
                };
                made.push(
                    wiring
                        .and_then(|wiring| wiring.wire())
                        .map_err(|err| refused(naming(err)))?,
                );
            }
            // What this host plumbed, to remove what the apply takes away.
            let mut ours = Vec::new();
            for key @ (vpc, name) in plumbed.keys() {
                let ep = store.endpoint(vpc, name)?;
                if this_host.as_deref() == Some(ep.host.as_str())
                    && let Some(veth) = ep.veth
                {
                    ours.push((key.clone(), veth));
                }
            }
            let report = store.apply(doc, prune)?;
            for wired in made {
                wired.keep();
            }
            let still = store.plumbed()?;
            unplumb.extend(
                ours.into_iter()
                    .filter(|(key, _)| !still.contains_key(key))
                    .map(|(_, veth)| veth),
            );
            Ok(report)
        })?;
        if !changed.dry_run {
            for veth in unplumb {
                unwire(&veth)?;
            }
            // The document may have changed this host's chains: they run as it now says.
            if self.is_up() {
                let _lock = self.lock()?;
                let store = self.existing_store()?;
                let published = self
                    .publish_chains(&store)
                    .and_then(|published| self.sync_function_maps(&store).map(|_| published))
                    .map_err(|err| FabricError::Behind(Box::new(err)))?;
                if let Some(sync) = changed.dataplane.as_mut() {
                    sync.chains_published += published;
                }
            }
        }
        Ok(changed)
    }

    /// `ep del`: deletes an endpoint through the one change path, then removes the veth pair
    /// `ep add --netns` made for it (after the data plane has let go of it).
    pub fn delete_endpoint(
        &self,
        vpc: &str,
        name: &str,
    ) -> Result<Changed<ApplyReport>, FabricError> {
        let mut made = None;
        let changed = self.change(ChangeOptions::default(), |store| {
            if store.endpoint_netns(vpc, name)?.is_some() {
                made = store.endpoint(vpc, name)?.veth;
            }
            store.delete_endpoint(vpc, name, false)
        })?;
        if let Some(veth) = made.filter(|_| !changed.dry_run) {
            unwire(&veth)?;
        }
        Ok(changed)
    }
}
