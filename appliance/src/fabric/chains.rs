//! Function chains through the one change path: the store holds each stage's chain, the data
//! plane publishes it as a whole generation (`dataplane::chains`). A change is checked against
//! what the data plane can run before the store commits it.

use mizar_db::{ChainEdit, ChainLinkRow, ScopedChainLinkRow, Store};
use mizar_ebpf::BUILTIN_FUNCTIONS;

use super::{FabricError, Instance};
use crate::dataplane::{
    CHAIN_POINTS, ChainLink, Chains, DataplaneError, DdosMaps, DdosState, FunctionStats, LiveChain,
    RateKey, RateLimitMaps, RateRule, ScopeKey, Stage, function_pin,
};

// The store refuses what the data plane could not hold: its limits must be the ABI's, and the
// functions it accepts the ones this binary embeds.
const _: () = {
    assert!(mizar_db::MAX_CHAIN == mizar_ebpf::abi::MZ_MAX_CHAIN as usize);
    assert!(mizar_db::MAX_FN_INSTANCES == mizar_ebpf::abi::MZ_CAPTURE_INSTANCE_BASE as usize - 1);
    assert!(mizar_db::CHAIN_STAGES.len() == CHAIN_POINTS.len());
    assert!(mizar_db::BUILTIN_FUNCTIONS.len() == BUILTIN_FUNCTIONS.len());
    assert!(mizar_db::MAX_DDOS_BLOCKS == mizar_ebpf::abi::MZ_MAX_DDOS_BLOCKS as usize);
    assert!(mizar_db::MAX_RATE_LIMITS == mizar_ebpf::abi::MZ_MAX_RATE_LIMITS as usize);
    assert!(mizar_db::MAX_ACL_RULES == mizar_ebpf::abi::MZ_MAX_ACL_RULES as usize);
    let mut i = 0;
    while i < BUILTIN_FUNCTIONS.len() {
        assert!(same(
            mizar_db::BUILTIN_FUNCTIONS[i],
            BUILTIN_FUNCTIONS[i].name
        ));
        i += 1;
    }
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The names of the functions chains can hold.
pub fn known_functions() -> Vec<&'static str> {
    BUILTIN_FUNCTIONS.iter().map(|f| f.name).collect()
}

/// What runs: the enabled functions, in order.
fn links(rows: &[ChainLinkRow]) -> Vec<ChainLink> {
    rows.iter()
        .filter(|r| r.enabled)
        .map(|r| ChainLink {
            instance: r.instance,
            function: r.function.clone(),
        })
        .collect()
}

/// The ddos function's configuration as the data plane keys it (VNI 0: every VPC).
pub fn desired_ddos(store: &Store) -> Result<DdosState, FabricError> {
    let config = store.ddos()?;
    let vnis: std::collections::BTreeMap<String, u32> =
        store.vpcs()?.into_iter().map(|v| (v.name, v.vni)).collect();
    // VNI 0 means every VPC: only a rule without a VPC may get it, never one whose VPC is
    // missing (the store's keys forbid that; a rule is left out rather than widened).
    let vni = |vpc: &Option<String>| match vpc {
        None => Some(0),
        Some(v) => vnis.get(v).copied(),
    };
    Ok(DdosState {
        blocks: config
            .blocks
            .iter()
            .filter_map(|b| Some((vni(&b.vpc)?, b.cidr)))
            .collect(),
        limits: config
            .limits
            .iter()
            .filter_map(|l| Some((vni(&l.vpc)?, (l.packets, l.window_ms * 1_000_000))))
            .collect(),
        syn_limits: config
            .syn_limits
            .iter()
            .filter_map(|l| Some((vni(&l.vpc)?, (l.syns, l.window_ms * 1_000_000))))
            .collect(),
    })
}

/// The ratelimit function's rules as the data plane keys them. A burst left out is one
/// second's worth.
pub fn desired_rate_limits(
    store: &Store,
) -> Result<std::collections::BTreeMap<RateKey, RateRule>, FabricError> {
    let vnis: std::collections::BTreeMap<String, u32> =
        store.vpcs()?.into_iter().map(|v| (v.name, v.vni)).collect();
    let mut out = std::collections::BTreeMap::new();
    for rule in store.rate_limits()? {
        let Some(&vni) = vnis.get(&rule.vpc) else {
            continue;
        };
        let ep = match &rule.endpoint {
            Some(name) => Some(store.endpoint(&rule.vpc, name)?.ip),
            None => None,
        };
        let direction = match rule.direction {
            mizar_db::Direction::Ingress => mizar_ebpf::abi::MZ_RL_INGRESS,
            mizar_db::Direction::Egress => mizar_ebpf::abi::MZ_RL_EGRESS,
        };
        let packets = rule.packets.unwrap_or(0);
        let bytes = rule.bytes.unwrap_or(0);
        out.insert(
            (vni, ep, direction),
            RateRule {
                packets,
                burst_packets: rule.burst_packets.unwrap_or(packets),
                bytes,
                burst_bytes: rule.burst_bytes.unwrap_or(bytes),
            },
        );
    }
    Ok(out)
}

/// The chains of VPCs and endpoints as the data plane keys them (a VPC or endpoint that is
/// gone is left out).
pub fn desired_scoped_chains(
    store: &Store,
) -> Result<std::collections::BTreeMap<ScopeKey, Vec<ChainLink>>, FabricError> {
    let vnis: std::collections::BTreeMap<String, u32> =
        store.vpcs()?.into_iter().map(|v| (v.name, v.vni)).collect();
    let mut out: std::collections::BTreeMap<ScopeKey, Vec<ChainLink>> = Default::default();
    for row in store.scoped_chains()?.into_iter().filter(|r| r.enabled) {
        let Some(&vni) = vnis.get(&row.vpc) else {
            continue;
        };
        let Some(stage) = CHAIN_POINTS.iter().copied().find(|s| s.name() == row.stage) else {
            continue;
        };
        let ep = match &row.endpoint {
            Some(name) => Some(store.endpoint(&row.vpc, name)?.ip),
            None => None,
        };
        out.entry((stage, vni, ep)).or_default().push(ChainLink {
            instance: row.instance,
            function: row.function,
        });
    }
    Ok(out)
}

/// One stage: its functions from the store with their counters, and what the kernel runs there
/// (None while the data plane is down).
#[derive(Debug, Clone)]
pub struct StageChain {
    pub stage: Stage,
    pub links: Vec<ChainLinkStatus>,
    /// The chains of VPCs and endpoints at this stage, run after the host's.
    pub scoped: Vec<ScopedLinkStatus>,
    pub live: Option<LiveChain>,
    /// Packets whose chain could not run to its end (a failed tail call).
    pub failed: u64,
}

/// One function of a VPC's or an endpoint's chain, with its counters when the data plane is up.
#[derive(Debug, Clone)]
pub struct ScopedLinkStatus {
    pub link: ScopedChainLinkRow,
    pub stats: Option<FunctionStats>,
    /// The names of the function's drop reasons.
    pub drop_reasons: Vec<String>,
}

/// One function of a chain as it runs: the store's row, and its counters when the data plane
/// is up.
#[derive(Debug, Clone)]
pub struct ChainLinkStatus {
    pub link: ChainLinkRow,
    pub stats: Option<FunctionStats>,
    /// The names of the function's drop reasons.
    pub drop_reasons: Vec<String>,
}

impl Instance {
    /// Changes one host's chain at one stage (None: this host's; see [`ChainEdit`]) and, with
    /// the data plane up, publishes this host's chains.
    pub fn edit_chain(
        &self,
        host: Option<&str>,
        stage: &str,
        edit: &ChainEdit,
    ) -> Result<Vec<ChainLinkRow>, FabricError> {
        let _lock = self.lock()?;
        let mut store = self.existing_store()?;
        if self.is_up() {
            // Programs an older build's `up` did not pin cannot be published: say so first.
            for f in known_functions() {
                let pin = self.pins().program(&function_pin(f));
                if !pin.exists() {
                    return Err(FabricError::Dataplane(DataplaneError::Invalid(format!(
                        "the data plane was brought up without the function programs ({} is \
                         missing); run `mizar up` first",
                        pin.display()
                    ))));
                }
            }
        }
        let chain = store.edit_chain(host, stage, edit)?;
        if self.is_up() {
            self.publish_chains(&store)
                .map_err(|err| FabricError::Behind(Box::new(err)))?;
        }
        Ok(chain)
    }

    /// Changes a VPC's or an endpoint's chain at one stage and, with the data plane up,
    /// publishes the chains.
    pub fn edit_scoped_chain(
        &self,
        vpc: &str,
        endpoint: Option<&str>,
        stage: &str,
        edit: &ChainEdit,
    ) -> Result<Vec<ScopedChainLinkRow>, FabricError> {
        let _lock = self.lock()?;
        let mut store = self.existing_store()?;
        let chain = store.edit_scoped_chain(vpc, endpoint, stage, edit)?;
        if self.is_up() {
            self.publish_chains(&store)
                .map_err(|err| FabricError::Behind(Box::new(err)))?;
        }
        Ok(chain)
    }

    /// A change to a function's configuration (ddos, ratelimit); with the data plane up, the
    /// function's maps follow.
    pub fn change_function_config(
        &self,
        request: &mizar_db::Request,
    ) -> Result<String, FabricError> {
        let _lock = self.lock()?;
        let mut store = self.existing_store()?;
        if matches!(
            request,
            mizar_db::Request::AddAclRule { .. }
                | mizar_db::Request::DeleteAclRule { .. }
                | mizar_db::Request::SetAclDefault { .. }
        ) {
            store.set_commit_guard(Box::new(|proposal| {
                super::acl::check_acls(&proposal.acls()?, &proposal.topology()?)
            }));
        }
        let outcome = store.make(request)?;
        if self.is_up() {
            self.sync_function_maps(&store)
                .map_err(|err| FabricError::Behind(Box::new(err)))?;
        }
        Ok(outcome)
    }

    /// Writes the functions' maps (ddos, ratelimit, acl) from the store, what differs only.
    pub(super) fn sync_function_maps(&self, store: &Store) -> Result<usize, FabricError> {
        let ddos = DdosMaps::open(&self.pins())?.sync(&desired_ddos(store)?)?;
        let rates = RateLimitMaps::open(&self.pins())?.sync(&desired_rate_limits(store)?)?;
        let acls = self.sync_acls(store)?;
        Ok(ddos + rates + acls)
    }

    /// Publishes every stage's chain the store holds (only stages whose chain differs from what
    /// runs are touched).
    pub(crate) fn publish_chains(&self, store: &Store) -> Result<usize, FabricError> {
        let wanted = store.chains(None)?;
        let mut chains = Chains::open(&self.pins())?;
        // Scoped plans first: whether a stage is armed depends on them too.
        let mut changed = chains.publish_scoped(
            &desired_scoped_chains(store)?,
            &super::function_slots(store)?,
        )?;
        for stage in CHAIN_POINTS {
            let rows = wanted.get(stage.name()).map(Vec::as_slice).unwrap_or(&[]);
            if chains.publish(stage, &links(rows))? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Every stage's chain from the store, with each function's counters and what the kernel
    /// runs there (None while the data plane is down).
    pub fn chain_status(&self, store: &Store) -> Result<Vec<StageChain>, FabricError> {
        let wanted = store.chains(None)?;
        let scoped_rows = store.scoped_chains()?;
        let loaded: std::collections::BTreeMap<String, Vec<String>> = store
            .loaded_functions()?
            .into_iter()
            .map(|f| (f.name, f.drop_reasons))
            .collect();
        let reasons = |name: &str| -> Vec<String> {
            match mizar_ebpf::builtin_function(name) {
                Some(f) => f.drop_reasons.iter().map(|r| (*r).to_owned()).collect(),
                None => loaded.get(name).cloned().unwrap_or_default(),
            }
        };
        let chains = if self.is_up() {
            Some(Chains::open(&self.pins())?)
        } else {
            None
        };
        let mut out = Vec::new();
        for stage in CHAIN_POINTS {
            let rows = wanted.get(stage.name()).cloned().unwrap_or_default();
            let mut links = Vec::new();
            for link in rows {
                let stats = match &chains {
                    Some(c) => Some(c.function_stats(link.instance)?),
                    None => None,
                };
                let drop_reasons = reasons(&link.function);
                links.push(ChainLinkStatus {
                    link,
                    stats,
                    drop_reasons,
                });
            }
            let live = match &chains {
                Some(c) => Some(c.live(stage)?),
                None => None,
            };
            let failed = match &chains {
                Some(c) => c.chain_stats(stage)?.failed,
                None => 0,
            };
            let mut scoped = Vec::new();
            for link in scoped_rows.iter().filter(|r| r.stage == stage.name()) {
                let stats = match &chains {
                    Some(c) => Some(c.function_stats(link.instance)?),
                    None => None,
                };
                scoped.push(ScopedLinkStatus {
                    link: link.clone(),
                    stats,
                    drop_reasons: reasons(&link.function),
                });
            }
            out.push(StageChain {
                stage,
                links,
                scoped,
                live,
                failed,
            });
        }
        Ok(out)
    }
}
