//! The one change path: a store write whose commit the data plane guards, then reconcile.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    rc::Rc,
};

use mizar_db::{
    Endpoint, EndpointChange, EndpointKind, Proposal, Request, Store, StoreError, Topology,
};

use super::{
    Desired, FabricError, Instance, Interfaces as _, NamedInterfaces, SyncReport, SystemInterfaces,
    desired_state,
};
use crate::dataplane::{
    DataplaneMaps, EndpointKey, PreparedReconcile, Scope, detach, prepare_reconcile,
    prepare_scoped_reconcile,
};

/// How a change is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeOptions {
    /// Create the store when it is missing (a topology document may start one from nothing).
    pub create_store: bool,
    /// Check everything, plan the data plane's part, and change nothing.
    pub dry_run: bool,
    /// The change may remove this host, or empty the store: refused otherwise (a topology
    /// document that forgot this host would unconfigure the node). Explicit commands (`host del`
    /// of this host) set it; a data plane that is up refuses it anyway.
    pub allow_teardown: bool,
}

/// What a change did (or, in a dry run, would do).
#[derive(Debug)]
pub struct Changed<T> {
    /// What the store write returned (its report of objects added, changed, removed).
    pub outcome: T,
    /// The data plane's part, when it is up: what reconcile did, or in a dry run would do
    /// (then only `maps` is filled).
    pub dataplane: Option<SyncReport>,
    /// When the data plane's part was planned for a change to a few endpoints: the entries it
    /// looked at (and nothing else). None: planned from the whole configuration, or down.
    pub scope: Option<Scope>,
    pub dry_run: bool,
}

/// What the guard found inside the transaction: the configuration, what it implies, the plan.
enum Approved {
    /// Planned from the whole configuration.
    Whole {
        topology: Topology,
        desired: Desired,
        plan: PreparedReconcile,
    },
    /// Planned for the entries of a few endpoints (see [`Instance::check_endpoint_change`]).
    Endpoints {
        change: Box<EndpointChange>,
        desired: Desired,
        plan: PreparedReconcile,
        scope: Scope,
    },
}

impl Approved {
    fn dry_run_report(self) -> SyncReport {
        let (plan, desired) = match self {
            Approved::Whole { plan, desired, .. } | Approved::Endpoints { plan, desired, .. } => {
                (plan, desired)
            }
        };
        SyncReport {
            maps: plan.report(),
            waiting: desired.waiting,
            ..SyncReport::default()
        }
    }
}

/// What the endpoint-change check decided.
enum Scoped {
    /// The change cannot be judged from its neighbourhood alone: check the whole configuration.
    Declined,
    /// The data plane is down, and the change is fine for it.
    Down,
    Planned(Box<Approved>),
}

impl Instance {
    /// Makes one change: `write` runs against the store in one transaction; before it commits,
    /// the configuration it leaves is turned into this host's data-plane state and planned
    /// against the pinned maps (when up) or checked on its own (when down), and anything the
    /// kernel would refuse (map capacity, the host-filter window, a veth that is the underlay
    /// interface, removing this host while up, ...) refuses the change: nothing is written
    /// anywhere. Then reconcile brings the maps to the committed configuration.
    ///
    /// Holds the instance lock throughout, so the plan is what reconcile does.
    pub fn change<T>(
        &self,
        options: ChangeOptions,
        write: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<Changed<T>, FabricError> {
        let _lock = self.lock()?;
        let mut store = if options.create_store {
            self.open_store()?
        } else {
            self.existing_store()?
        };
        let before = GuardContext {
            this_host: store.this_host()?.map(|h| h.name),
            store_was_empty: store.hosts()?.is_empty() && store.vpcs()?.is_empty(),
        };
        let approved: Rc<RefCell<Option<Approved>>> = Rc::default();
        let instance = self.clone();
        let out = Rc::clone(&approved);
        store.set_commit_guard(Box::new(move |proposal: &Proposal<'_>| {
            let found = instance.check_proposal(&before, options, proposal)?;
            *out.borrow_mut() = found;
            Ok(())
        }));
        store.set_dry_run(options.dry_run);
        let outcome = write(&mut store)?;
        let approved = approved.borrow_mut().take();
        let behind = |err| FabricError::Behind(Box::new(err));
        let scope = match &approved {
            Some(Approved::Endpoints { scope, .. }) => Some(scope.clone()),
            _ => None,
        };
        let mut dataplane = match approved {
            None => None,
            Some(approved) if options.dry_run => Some(approved.dry_run_report()),
            Some(Approved::Whole {
                topology,
                desired,
                plan,
            }) => Some(self.sync_to(&topology, desired, plan).map_err(behind)?),
            Some(Approved::Endpoints {
                change,
                desired,
                plan,
                scope,
            }) => Some(
                self.sync_endpoints(&change, desired, plan, &scope)
                    .map_err(behind)?,
            ),
        };
        // A VPC's new VNI or an endpoint's new address moves the function rules keyed by them.
        if dataplane.is_some() && !options.dry_run {
            self.sync_function_maps(&store).map_err(behind)?;
            // ... and the chains of VPCs and endpoints keyed by them.
            let published = self.publish_chains(&store).map_err(behind)?;
            if let Some(report) = dataplane.as_mut() {
                report.chains_published += published;
            }
        }
        Ok(Changed {
            outcome,
            dataplane,
            scope,
            dry_run: options.dry_run,
        })
    }

    /// Refuses, inside an `ep add`, an endpoint of this host whose veth does not exist while the
    /// data plane is up: typed now, it is most likely a typo. (A topology document is not
    /// refused for that: its endpoints wait for their veths, see [`super::WaitingEndpoint`].)
    pub fn check_new_endpoint(&self, store: &Store, ep: &Endpoint) -> Result<(), StoreError> {
        let Some(veth) = ep.veth.as_deref() else {
            return Ok(());
        };
        if !self.is_up() || ep.kind == EndpointKind::Scaled {
            return Ok(());
        }
        if store.this_host()?.is_some_and(|me| me.name == ep.host)
            && SystemInterfaces.ifindex(veth).is_none()
        {
            return Err(StoreError::Refused(Box::new(
                FabricError::NoSuchInterface {
                    ifname: veth.to_owned(),
                    what: format!("the veth of endpoint {} in VPC {}", ep.name, ep.vpc),
                },
            )));
        }
        Ok(())
    }

    /// The store, which must exist.
    pub fn existing_store(&self) -> Result<Store, FabricError> {
        let path = self.store_path();
        if !path.exists() {
            return Err(FabricError::NoStore { path });
        }
        self.open_store()
    }

    /// The commit guard: checks what a change would leave. Some(approval) when the data plane
    /// is up and must follow. A change to a few endpoints is judged from its neighbourhood
    /// when that is enough, from the whole configuration otherwise.
    fn check_proposal(
        &self,
        before: &GuardContext,
        options: ChangeOptions,
        proposal: &Proposal<'_>,
    ) -> Result<Option<Approved>, FabricError> {
        if let Some(change) = proposal.endpoint_change() {
            match self.check_endpoint_change(change)? {
                Scoped::Declined => {}
                Scoped::Down => return Ok(None),
                Scoped::Planned(approved) => return Ok(Some(*approved)),
            }
        }
        self.check_change(before, options, proposal.topology()?)
    }

    /// A change to a few endpoints, judged and planned from its neighbourhood
    /// ([`EndpointChange`]): the entries of the changed endpoints, of their hosts' membership
    /// of the VPC and of their networks are derived from it, planned against those entries of
    /// the maps alone ([`prepare_scoped_reconcile`]), and checked against bounds on what the
    /// whole store holds. Its cost does not grow with the store. It cannot remove this host or
    /// empty the store, so the teardown rules do not apply.
    ///
    /// Declined (the whole configuration is checked instead) when something outside the
    /// neighbourhood needs the whole: an endpoint elsewhere on this host waiting for a veth that
    /// now exists (it is attached at the next change), bounds too loose to prove the maps can
    /// hold the result, or maps that have drifted around the change.
    fn check_endpoint_change(&self, change: &EndpointChange) -> Result<Scoped, FabricError> {
        let context = &change.context;
        let (Some(me), Some(vpc)) = (context.this_host(), context.vpcs.first()) else {
            return Ok(Scoped::Declined);
        };
        if change.endpoints_at_most > mizar_ebpf::abi::MZ_MAX_ENDPOINTS as usize {
            return Ok(Scoped::Declined);
        }
        if !self.is_up() {
            let desired = desired_state(context, &NamedInterfaces::default())?;
            desired.state.validate()?;
            return Ok(Scoped::Down);
        }
        let changed: BTreeSet<(&str, &str)> = change
            .before
            .iter()
            .chain(&change.after)
            .map(|ep| (ep.vpc.as_str(), ep.name.as_str()))
            .collect();
        let attached = self.attached("egress");
        let veth_appeared = change.local_veths.iter().any(|(vpc, ep, veth)| {
            !changed.contains(&(vpc.as_str(), ep.as_str()))
                && !attached.contains(veth)
                && SystemInterfaces.ifindex(veth).is_some()
        });
        if veth_appeared {
            return Ok(Scoped::Declined);
        }

        let mut desired = desired_state(context, &SystemInterfaces)?;
        desired
            .waiting
            .retain(|w| changed.contains(&(w.vpc.as_str(), w.endpoint.as_str())));
        let host_ip = |name: &str| context.host(name).map(|h| h.ip);
        let mut scope = Scope::default();
        for ep in change.before.iter().chain(&change.after) {
            scope.endpoints.insert((vpc.vni, ep.ip));
            if ep.host != me.name
                && let Some(ip) = host_ip(&ep.host)
            {
                scope.members.insert((vpc.vni, ip));
            }
            if let Some(net) = vpc.networks.iter().find(|n| n.name == ep.network) {
                scope.networks.insert((vpc.vni, net.cidr.trunc()));
            }
        }
        let maps = DataplaneMaps::open(&self.pins())?;
        let Some(plan) = prepare_scoped_reconcile(&maps, &desired.state, &scope)? else {
            return Ok(Scoped::Declined);
        };
        Ok(Scoped::Planned(Box::new(Approved::Endpoints {
            change: Box::new(change.clone()),
            desired,
            plan,
            scope,
        })))
    }

    /// After a change to a few endpoints: writes their entries and attaches or detaches egress
    /// on the veths that came or went with them.
    fn sync_endpoints(
        &self,
        change: &EndpointChange,
        desired: Desired,
        plan: PreparedReconcile,
        scope: &Scope,
    ) -> Result<SyncReport, FabricError> {
        let mut maps = DataplaneMaps::open(&self.pins())?;
        let mut report = SyncReport {
            maps: plan.apply(&mut maps)?,
            ..SyncReport::default()
        };
        // Where this host learned the changed endpoints live, if that is no longer their home
        // (reconcile forgets it for the endpoints this host holds; this also covers the rest).
        let context = &change.context;
        let vni = context.vpcs.first().map_or(0, |v| v.vni);
        let homes: BTreeMap<EndpointKey, Ipv4Addr> = change
            .after
            .iter()
            .filter_map(|ep| Some(((vni, ep.ip), context.host(&ep.host)?.ip)))
            .collect();
        report.maps.learned_forgotten += maps
            .forget_learned_of(&scope.endpoints, |vni, ip, host| {
                homes.get(&(vni, ip)) != Some(&host)
            })?;

        let me = context.this_host().map(|h| h.name.as_str());
        let waiting: BTreeSet<&str> = desired.waiting.iter().map(|w| w.veth.as_str()).collect();
        let local_veth = |ep: &Endpoint| {
            ep.veth
                .clone()
                .filter(|_| Some(ep.host.as_str()) == me && ep.kind != EndpointKind::Scaled)
        };
        let wanted: BTreeSet<String> = change
            .after
            .iter()
            .filter_map(local_veth)
            .filter(|veth| !waiting.contains(veth.as_str()))
            .collect();
        let attached = self.attached("egress");
        let missing: Vec<&String> = wanted.difference(&attached).collect();
        report.attach_egress(&self.pins(), missing)?;
        // A veth released by the change (the store gives each veth of a host to one endpoint).
        for veth in change.before.iter().filter_map(local_veth) {
            if !wanted.contains(&veth) && attached.contains(&veth) {
                detach(&self.pins(), "egress", &veth)?;
                report.detached.push(("egress", veth));
            }
        }
        report.waiting = desired.waiting;
        Ok(report)
    }

    /// The commit guard's check of `topology`, what a change would leave. Some(approval) when
    /// the data plane is up and must follow.
    fn check_change(
        &self,
        before: &GuardContext,
        options: ChangeOptions,
        topology: Topology,
    ) -> Result<Option<Approved>, FabricError> {
        let up = self.is_up();
        if let Some(host) = &before.this_host
            && topology.this_host.as_deref() != Some(host.as_str())
        {
            if up {
                return Err(FabricError::RemovesThisHostWhileUp { host: host.clone() });
            }
            if !options.allow_teardown && topology.this_host.is_none() {
                return Err(FabricError::Teardown {
                    what: format!("this change removes this host ({host}) from the store"),
                });
            }
        }
        if !options.allow_teardown
            && !before.store_was_empty
            && topology.hosts.is_empty()
            && topology.vpcs.is_empty()
        {
            return Err(FabricError::Teardown {
                what: "this change empties the store".to_owned(),
            });
        }
        if topology.this_host().is_none() {
            // Nothing to configure yet (hosts added before `init`, say): the store checked it.
            return Ok(None);
        }
        if !up {
            // Interfaces need not exist yet (`up` checks them), but everything else the data
            // plane would refuse is refused now.
            let desired = desired_state(&topology, &NamedInterfaces::default())?;
            desired.state.validate()?;
            return Ok(None);
        }
        let desired = desired_state(&topology, &SystemInterfaces)?;
        let maps = DataplaneMaps::open(&self.pins())?;
        let plan = prepare_reconcile(&maps, &desired.state)?;
        Ok(Some(Approved::Whole {
            topology,
            desired,
            plan,
        }))
    }
}

/// What the guard compares the new configuration with.
struct GuardContext {
    this_host: Option<String>,
    store_was_empty: bool,
}

impl Instance {
    /// A front end's request (CLI or dashboard), through the one change path; the outcome is
    /// what the CLI prints first. Endpoints go through [`Instance::add_endpoint`] and
    /// [`Instance::delete_endpoint`] (scoped planning, namespace plumbing); naming a host to
    /// delete is explicit enough to remove this one (refused while the data plane is up).
    pub fn make(&self, request: &Request) -> Result<Changed<String>, FabricError> {
        match request {
            Request::AddEndpoint { endpoint, netns } => {
                let changed = self.add_endpoint(endpoint.clone(), netns.as_deref())?;
                let ep = &changed.outcome;
                let wired = match netns {
                    Some(netns) => format!(", plumbed into network namespace {netns} as eth0"),
                    None => String::new(),
                };
                let outcome = format!(
                    "endpoint {} ({}) added to network {} of VPC {}{wired}",
                    ep.name, ep.ip, ep.network, ep.vpc
                );
                Ok(changed.map(|_| outcome))
            }
            Request::DeleteEndpoint { vpc, name } => Ok(self
                .delete_endpoint(vpc, name)?
                .map(|report| report.summary())),
            request if request.is_function_config() => Ok(Changed {
                outcome: self.change_function_config(request)?,
                dataplane: None,
                scope: None,
                dry_run: false,
            }),
            Request::EditChain { host, stage, edit } => {
                let chain = self.edit_chain(host.as_deref(), stage, edit)?;
                Ok(Changed {
                    outcome: mizar_db::chain_outcome(stage, &chain),
                    dataplane: None,
                    scope: None,
                    dry_run: false,
                })
            }
            Request::EditScopedChain {
                vpc,
                endpoint,
                stage,
                edit,
            } => {
                let chain = self.edit_scoped_chain(vpc, endpoint.as_deref(), stage, edit)?;
                Ok(Changed {
                    outcome: mizar_db::scoped_chain_outcome(
                        vpc,
                        endpoint.as_deref(),
                        stage,
                        &chain,
                    ),
                    dataplane: None,
                    scope: None,
                    dry_run: false,
                })
            }
            Request::DeleteHost { .. } => {
                let options = ChangeOptions {
                    allow_teardown: true,
                    ..ChangeOptions::default()
                };
                self.change(options, |store| store.make(request))
            }
            _ => self.change(ChangeOptions::default(), |store| store.make(request)),
        }
    }
}

impl<T> Changed<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Changed<U> {
        Changed {
            outcome: f(self.outcome),
            dataplane: self.dataplane,
            scope: self.scope,
            dry_run: self.dry_run,
        }
    }
}
