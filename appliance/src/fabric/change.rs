//! The one change path: a store write whose commit the data plane guards, then reconcile.

use std::{cell::RefCell, rc::Rc};

use mizar_db::{Endpoint, EndpointKind, Store, StoreError, Topology};

use super::{
    Desired, FabricError, Instance, Interfaces as _, NamedInterfaces, SyncReport, SystemInterfaces,
    desired_state,
};
use crate::dataplane::{DataplaneMaps, PreparedReconcile, prepare_reconcile};

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
    pub dry_run: bool,
}

/// What the guard found inside the transaction: the configuration, what it implies, the plan.
struct Approved {
    topology: Topology,
    desired: Desired,
    plan: PreparedReconcile,
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
        store.set_commit_guard(Box::new(move |topology| {
            let found = instance.check_change(&before, options, topology)?;
            *out.borrow_mut() = found;
            Ok(())
        }));
        store.set_dry_run(options.dry_run);
        let outcome = write(&mut store)?;
        let approved = approved.borrow_mut().take();
        let dataplane = match approved {
            None => None,
            Some(approved) if options.dry_run => Some(SyncReport {
                maps: approved.plan.report(),
                waiting: approved.desired.waiting,
                ..SyncReport::default()
            }),
            Some(approved) => Some(
                self.sync_to(&approved.topology, approved.desired, approved.plan)
                    .map_err(|err| FabricError::Behind(Box::new(err)))?,
            ),
        };
        Ok(Changed {
            outcome,
            dataplane,
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
        Ok(Some(Approved {
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
