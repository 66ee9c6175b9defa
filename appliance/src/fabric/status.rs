//! The status model: what `mizar status`, `mizar ep list` and the dashboard show, computed once
//! here so every front end shows the same thing.

use std::collections::BTreeMap;

use mizar_db::{Endpoint, Store};
use serde::Serialize;

use super::{FabricError, Instance, StageChain, SystemInterfaces, WaitingEndpoint, desired_state};
use crate::dataplane::{Chains, EndpointStats, STAGES, plan_reconcile};
use mizar_ebpf::abi;

/// This instance as a whole.
#[derive(Debug, Serialize)]
pub struct Status {
    pub this_host: Option<String>,
    pub up: bool,
    pub pin_dir: String,
    pub store: String,
    pub attached: Vec<AttachedStatus>,
    pub counts: Counts,
    /// Reasons with a non-zero count.
    pub counters: Vec<StatusCounter>,
    /// What entered each pipeline stage.
    pub stages: Vec<StatusCounter>,
    /// Whether the maps hold exactly what the store implies (None while down). A change
    /// interrupted between the store's commit and the maps leaves them behind: `up` repairs.
    pub drift: Option<Drift>,
    /// Local endpoints waiting for their veth.
    pub waiting: Vec<WaitingEndpoint>,
    /// The functions in the stages' chains, in stage and chain order, with their counters
    /// while the data plane is up.
    pub functions: Vec<FunctionStatus>,
    /// What the operator should act on, each with its fix.
    pub warnings: Vec<String>,
}

/// A function placed in a chain, as every front end shows it (status, `chain show`, `fn show`,
/// the functions' own `show`).
#[derive(Debug, Clone, Serialize)]
pub struct FunctionStatus {
    pub stage: String,
    /// "host", "vpc:NAME" or "ep:VPC/NAME": whose chain it is in.
    pub scope: String,
    /// A disabled function keeps its place and counters; packets skip it.
    pub enabled: bool,
    pub position: usize,
    pub function: String,
    pub instance: u16,
    /// Packets the function took (None while the data plane is down).
    pub packets: Option<u64>,
    pub dropped: Option<u64>,
    /// Packets it passed on with another decision than it received (None while down).
    pub changed: Option<u64>,
    /// Drops by the function's reason names (those it counted); None while down.
    pub drops: Option<BTreeMap<String, u64>>,
    /// Mean time in the function over the packets sampled for timing.
    pub ns_per_packet: Option<f64>,
}

impl FunctionStatus {
    /// Every function of `chains`, in stage and chain order.
    pub fn of(chains: &[StageChain]) -> Vec<Self> {
        chains
            .iter()
            .flat_map(|chain| {
                let stage = chain.stage.name();
                let host = chain.links.iter().map(move |l| {
                    Self::new(
                        stage,
                        "host".to_owned(),
                        (
                            l.link.position,
                            &l.link.function,
                            l.link.instance,
                            l.link.enabled,
                        ),
                        l.stats,
                        &l.drop_reasons,
                    )
                });
                let scoped = chain.scoped.iter().map(move |l| {
                    let scope = l.link.scope();
                    Self::new(
                        stage,
                        scope,
                        (
                            l.link.position,
                            &l.link.function,
                            l.link.instance,
                            l.link.enabled,
                        ),
                        l.stats,
                        &l.drop_reasons,
                    )
                });
                host.chain(scoped)
            })
            .collect()
    }

    /// One function: where it is (`placed`: position, name, instance, enabled), its counters
    /// and the names of its drop reasons.
    fn new(
        stage: &str,
        scope: String,
        placed: (usize, &str, u16, bool),
        stats: Option<crate::dataplane::FunctionStats>,
        names: &[String],
    ) -> Self {
        let (position, function, instance, enabled) = placed;
        let drops = stats.map(|s| {
            s.dropped
                .iter()
                .enumerate()
                .filter(|(i, n)| **n > 0 || *i < names.len())
                .map(|(i, n)| {
                    let name = names
                        .get(i)
                        .map_or_else(|| format!("reason_{i}"), Clone::clone);
                    (name, *n)
                })
                .collect()
        });
        Self {
            stage: stage.to_owned(),
            scope,
            position,
            function: function.to_owned(),
            instance,
            enabled,
            packets: stats.map(|s| s.packets()),
            dropped: stats.map(|s| s.drops()),
            changed: stats.map(|s| s.changed),
            drops,
            ns_per_packet: stats.and_then(|s| s.ns_per_packet()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AttachedStatus {
    pub role: String,
    pub interface: String,
    pub mode: String,
}

#[derive(Debug, Serialize)]
pub struct Counts {
    pub hosts: usize,
    pub vpcs: usize,
    pub networks: usize,
    pub endpoints: usize,
}

#[derive(Debug, Serialize)]
pub struct StatusCounter {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    pub description: String,
}

/// How far the maps are from the store.
#[derive(Debug, Serialize)]
pub struct Drift {
    pub in_sync: bool,
    /// What `mizar up` would write, as reconcile reports it ("no change" when in sync), or why
    /// the store's state could not be computed.
    pub repair: String,
}

/// An endpoint as `ep list` shows it: what the store holds, and its data-plane counters when
/// it is hosted here and the data plane is up.
#[derive(Debug, Serialize)]
pub struct EndpointWithCounters {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub counters: Option<EndpointStats>,
}

impl Instance {
    /// The status of this instance: the store's counts, and with the data plane up, what is
    /// attached, the counters, whether the maps match the store, and warnings.
    pub fn status(&self, store: &Store) -> Result<Status, FabricError> {
        let topology = store.snapshot()?;
        let mut status = Status {
            this_host: topology.this_host.clone(),
            up: self.is_up(),
            pin_dir: self.pin_dir.display().to_string(),
            store: self.store_path().display().to_string(),
            attached: Vec::new(),
            counts: Counts {
                hosts: topology.hosts.len(),
                vpcs: topology.vpcs.len(),
                networks: topology.networks().count(),
                endpoints: topology.endpoints().count(),
            },
            counters: Vec::new(),
            stages: Vec::new(),
            drift: None,
            waiting: Vec::new(),
            functions: Vec::new(),
            warnings: Vec::new(),
        };
        let chains = self.chain_status(store)?;
        status.functions = FunctionStatus::of(&chains);
        let Some(maps) = self.maps()? else {
            return Ok(status);
        };
        let tap_flags = Chains::open(&self.pins())?.tap_flags()?;
        if tap_flags != 0 {
            status.warnings.push(format!(
                "a capture taps {}: a capture is running, or one ended without clearing its \
                 taps; the next `mizar capture` or `mizar up` clears them",
                tap_points_named(tap_flags)
            ));
        }
        for chain in &chains {
            let wanted: Vec<u16> = chain
                .links
                .iter()
                .filter(|l| l.link.enabled)
                .map(|l| l.link.instance)
                .collect();
            let running: Vec<u16> = chain
                .live
                .as_ref()
                .map(|live| live.links.iter().map(|(i, _)| *i).collect())
                .unwrap_or_default();
            // A capture's taps: its own instances, above any the store gives.
            let is_tap = |i: &u16| u32::from(*i) >= mizar_ebpf::abi::MZ_CAPTURE_INSTANCE_BASE;
            let taps: Vec<u16> = running.iter().copied().filter(is_tap).collect();
            let running: Vec<u16> = running.into_iter().filter(|i| !is_tap(i)).collect();
            if !taps.is_empty() {
                status.warnings.push(format!(
                    "{} tap(s) of a capture run at {} (instances {taps:?}): a capture is running, \
                     or one ended without removing them; the next `mizar capture` or `mizar up` \
                     removes them",
                    taps.len(),
                    chain.stage.name()
                ));
            }
            if wanted != running {
                status.warnings.push(format!(
                    "the chain at {} does not run what the store holds (functions {wanted:?}, \
                     running {running:?}); `mizar up` republishes it",
                    chain.stage.name()
                ));
            }
            if chain.failed > 0 {
                status.warnings.push(format!(
                    "{} packets at {} could not run their whole chain (a failed tail call); \
                     the decision was applied without the rest: run `mizar up`",
                    chain.failed,
                    chain.stage.name()
                ));
            }
        }
        status.attached = self
            .attachments()
            .into_iter()
            .map(|a| AttachedStatus {
                role: a.role.to_owned(),
                interface: a.ifname,
                mode: a.mode.to_string(),
            })
            .collect();
        let counters = maps.counters()?;
        status.counters = counters
            .nonzero_reasons()
            .map(|(info, v)| StatusCounter {
                name: info.name.to_owned(),
                packets: v.packets,
                bytes: v.bytes,
                description: info.description.to_owned(),
            })
            .collect();
        status.stages = STAGES
            .iter()
            .map(|stage| {
                let v = counters.stage(*stage);
                StatusCounter {
                    name: stage.name().to_owned(),
                    packets: v.packets,
                    bytes: v.bytes,
                    description: String::new(),
                }
            })
            .collect();

        let repair = desired_state(&topology, &SystemInterfaces).and_then(|desired| {
            let plan = plan_reconcile(&maps, &desired.state)?;
            Ok((plan, desired.waiting))
        });
        status.drift = Some(match repair {
            Ok((plan, waiting)) => {
                status.waiting = waiting;
                Drift {
                    in_sync: plan.is_noop(),
                    repair: plan.to_string(),
                }
            }
            Err(err) => Drift {
                in_sync: false,
                repair: err.to_string(),
            },
        });
        if let Some(drift) = status.drift.as_ref().filter(|d| !d.in_sync) {
            status.warnings.push(format!(
                "the maps do not hold what the store implies (a change was interrupted, or \
                 something else wrote them); `mizar up` repairs: {}",
                drift.repair
            ));
        }
        for waiting in &status.waiting {
            status.warnings.push(waiting.to_string());
        }
        for a in status.attached.iter().filter(|a| a.mode == "generic") {
            status.warnings.push(format!(
                "{} on {} runs in generic XDP (the driver refused native mode): slower",
                a.role, a.interface
            ));
        }
        if status.counters.iter().any(|c| c.name == "egress_drop_mtu") {
            status.warnings.push(format!(
                "frames too big for the underlay once encapsulated were dropped \
                 (egress_drop_mtu): an endpoint's MTU must be at most the underlay MTU minus {} \
                 (the outer headers and the endpoint's own Ethernet header): raise the underlay \
                 MTU or lower the endpoints'",
                mizar_ebpf::abi::MZ_ENCAP_OVERHEAD
            ));
        }
        Ok(status)
    }

    /// The endpoints of the store (of one VPC, or all), each with its counters when it is
    /// hosted here and the data plane is up.
    pub fn endpoints_with_counters(
        &self,
        store: &Store,
        vpc: Option<&str>,
    ) -> Result<Vec<EndpointWithCounters>, FabricError> {
        let vnis: std::collections::BTreeMap<String, u32> =
            store.vpcs()?.into_iter().map(|v| (v.name, v.vni)).collect();
        let maps = self.maps()?;
        let mut endpoints = Vec::new();
        for endpoint in store.endpoints(vpc)? {
            let counters = match (&maps, vnis.get(&endpoint.vpc)) {
                (Some(maps), Some(vni)) => maps.endpoint_stats(*vni, endpoint.ip)?,
                _ => None,
            };
            endpoints.push(EndpointWithCounters { endpoint, counters });
        }
        Ok(endpoints)
    }
}

/// The points outside the chains that capture flags tap, by name.
fn tap_points_named(flags: u32) -> String {
    let names: Vec<&str> = [
        (abi::MZ_TAP_TRANSIT_ENTRY, "transit:entry"),
        (abi::MZ_TAP_TRANSIT_VERDICT, "transit:verdict"),
        (abi::MZ_TAP_EGRESS_ENTRY, "egress:entry"),
        (abi::MZ_TAP_EGRESS_VERDICT, "egress:verdict"),
    ]
    .into_iter()
    .filter(|(p, _)| flags & (1 << (1 + p)) != 0)
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() {
        "no point outside the chains (it numbers packets)".to_owned()
    } else {
        names.join(", ")
    }
}
