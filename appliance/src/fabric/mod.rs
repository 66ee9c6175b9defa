//! The fabric on this host: what the store implies for the data plane, and bringing the kernel
//! to it. The store is the truth; `up` rebuilds everything from it, every change re-syncs.
//!
//! This is the one API every front end calls (the CLI, `apply`, the dashboard): the binary only
//! parses arguments and prints.
//!
//! - [`Instance::change`] is the one change path: it runs the store write in a transaction whose
//!   commit is guarded by the data plane. Inside the transaction, the configuration the write
//!   leaves is turned into the data-plane state it implies ([`desired_state`]) and planned
//!   against the pinned maps ([`crate::dataplane::plan_reconcile`]: capacities, the host-filter
//!   window, one veth per endpoint, ...); anything the kernel would refuse refuses the write,
//!   which changes nothing. Only then does the store commit and reconcile write the maps, so the
//!   store never runs ahead of the kernel. A dry run stops after the plan.
//! - A change costs what it changes. A write that changes only endpoints of one VPC (`ep add`,
//!   `ep del`) shows the guard just their neighbourhood ([`mizar_db::EndpointChange`]: the
//!   endpoints, their VPC, and one witness endpoint per fact their entries depend on), from
//!   which the entries of those endpoints, of their hosts' membership of the VPC and of their
//!   networks are derived and planned against those entries alone
//!   ([`crate::dataplane::prepare_scoped_reconcile`]). No step reads the whole store or the
//!   whole maps, so one `ep add` costs the same at 1,000 endpoints and at 100,000. Anything the
//!   neighbourhood cannot settle (bounds on what the maps can hold, an endpoint elsewhere whose
//!   veth has just appeared, maps that drifted around the change) falls back to the whole
//!   configuration; every other write uses the whole configuration. Drift outside a scoped
//!   change is left alone: `status` reports it and `up` repairs it.
//! - [`Instance::make`] runs a front end's [`mizar_db::Request`] (what the CLI parsed, what a
//!   dashboard form holds) through that path, with the message the CLI prints: both front ends
//!   change the fabric the same way.
//! - [`Instance::up`] is whole-state reconcile from the store: boot, and the repair path after a
//!   change was interrupted between the store's commit and the maps.
//! - [`Instance::status`] (module `status`) is the status model: attachments, counters, drift of
//!   the maps from the store, warnings.
//!
//! Every command holds the instance lock ([`Instance::lock`]) from its first read to its last
//! write, so the maps only change under the lock and a plan made inside the transaction is what
//! reconcile then does.

mod acl;
mod chains;
mod change;
mod desired;
mod functions;
mod status;
mod wiring;

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    path::PathBuf,
};

use mizar_db::{Store, StoreError, Topology};

pub use acl::{acl_inputs, check_acls, desired_acls};
pub use chains::{ChainLinkStatus, StageChain, known_functions};
pub use change::{ChangeOptions, Changed};
pub use desired::{
    Desired, Interfaces, NamedInterfaces, SystemInterfaces, WaitingEndpoint, desired_state,
};
use desired::{forget_contradicted, local_veths, underlay_interface};
pub use functions::function_slots;
pub use status::{
    AttachedStatus, Counts, Drift, EndpointWithCounters, FunctionStatus, Status, StatusCounter,
};
pub use wiring::{FALLBACK_ENDPOINT_MTU, Wired, Wiring, unwire};

use crate::dataplane::{
    AttachMode, Dataplane, DataplaneError, DataplaneMaps, PinLayout, PreparedReconcile,
    ReconcileReport, attach_egress, detach, reconcile, remove_all_pins,
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
        "interface {ifname} does not exist in this network namespace ({what}); create it first, or name another"
    )]
    NoSuchInterface { ifname: String, what: String },
    #[error(
        "endpoint {endpoint} of VPC {vpc} lives on this host but has no veth: give it one with --veth"
    )]
    NoVeth { vpc: String, endpoint: String },
    #[error(
        "this change removes this host ({host}) from the store while the data plane is up; run \
         `mizar down` first"
    )]
    RemovesThisHostWhileUp { host: String },
    #[error(
        "{what}; if that is meant, pass --allow-teardown (and run `mizar down` first if the data \
         plane is up)"
    )]
    Teardown { what: String },
    #[error(
        "no store at {}: run `mizar init` first (or point --state-dir / MIZAR_STATE_DIR at one)",
        path.display()
    )]
    NoStore { path: PathBuf },
    #[error(
        "the store changed, but the data plane could not follow: {0}; fix the cause and run \
         `mizar up`"
    )]
    Behind(Box<FabricError>),
    #[error("cannot plumb the endpoint into network namespace {netns:?}: {reason}")]
    Wiring { netns: String, reason: String },
    #[error(
        "cannot remove the veth pair {veth} made for the endpoint: {reason}; remove it with `ip \
         link del {veth}`"
    )]
    Unwire { veth: String, reason: String },
    #[error(
        "--netns plumbs endpoints of this host only, and endpoint {endpoint} of VPC {vpc} lives \
         on {host}: run the command there, or drop --netns"
    )]
    WiringElsewhere {
        vpc: String,
        endpoint: String,
        host: String,
    },
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
    /// Local endpoints left out until their veth exists.
    pub waiting: Vec<WaitingEndpoint>,
    /// Stages whose function chain was (re)published.
    pub chains_published: usize,
}

impl SyncReport {
    /// Attaches the data plane's egress program to each of `veths`, recording each.
    fn attach_egress<'a>(
        &mut self,
        pins: &PinLayout,
        veths: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), DataplaneError> {
        for veth in veths {
            let mode = attach_egress(pins, veth)?;
            self.attached.push(Attachment {
                role: "egress",
                ifname: veth.clone(),
                mode,
            });
        }
        Ok(())
    }
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

    /// What is attached and in which mode, as the kernel says: for every pinned link, the XDP
    /// program the kernel runs on its interface (links whose interface went away are left out).
    pub fn attachments(&self) -> Vec<Attachment> {
        // One dump of every link, not a request per interface: a host may have thousands.
        let Ok(links) = crate::dataplane::xdp_attachments() else {
            return Vec::new();
        };
        let modes: HashMap<&str, AttachMode> =
            links.iter().map(|l| (l.ifname.as_str(), l.mode)).collect();
        let mut found = Vec::new();
        for role in ["transit", "egress"] {
            for ifname in self.attached(role) {
                if let Some(&mode) = modes.get(ifname.as_str()) {
                    found.push(Attachment { role, ifname, mode });
                }
            }
        }
        found
    }

    /// Whether the data plane of this instance is up (its maps are pinned).
    pub fn is_up(&self) -> bool {
        self.pins().map(mizar_ebpf::maps::CONFIG).exists()
    }

    /// Loads the data plane (reusing pinned maps), attaches transit to this host's underlay
    /// interface and egress to every local endpoint's veth that exists, and writes what the
    /// store implies (the whole state: this is also the repair path). Endpoints whose veth does
    /// not exist yet are reported in [`SyncReport::waiting`], not refused: the host keeps
    /// bouncing and dividing for others meanwhile.
    pub fn up(&self, store: &Store) -> Result<SyncReport, FabricError> {
        let topology = store.snapshot()?;
        let desired = desired_state(&topology, &SystemInterfaces)?;
        let mut dataplane = Dataplane::load(&self.pin_dir)?;
        let mut report = SyncReport {
            maps: reconcile(dataplane.maps_mut(), &desired.state)?,
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
        for veth in attachable_veths(&topology, &desired)? {
            let mode = dataplane.attach_egress(&veth)?;
            report.attached.push(Attachment {
                role: "egress",
                ifname: veth,
                mode,
            });
        }
        for veth in self.attached("egress") {
            if !report.attached.iter().any(|a| a.ifname == veth) {
                detach(&self.pins(), "egress", &veth)?;
                report.detached.push(("egress", veth));
            }
        }
        // The chains run this load's programs from now on (a whole new generation each).
        self.load_stored_functions(store)?;
        // A capture that died leaves nothing running after `up`.
        self.stop_taps()?;
        report.chains_published = self.publish_chains(store)?;
        self.sync_function_maps(store)?;
        report.waiting = desired.waiting;
        Ok(report)
    }

    /// After a change to the store, with the data plane up: writes what changed into the maps
    /// and attaches or detaches egress on endpoint veths that came or went. `desired` is what
    /// `topology` implies, computed and planned (`plan`) before the change committed.
    fn sync_to(
        &self,
        topology: &Topology,
        desired: Desired,
        plan: PreparedReconcile,
    ) -> Result<SyncReport, FabricError> {
        // The pinned maps are enough to write the change; loading (and verifying) the programs
        // again costs a quarter of a second, so that happens only when a veth needs egress.
        let mut maps = DataplaneMaps::open(&self.pins())?;
        let mut report = SyncReport {
            maps: plan.apply(&mut maps)?,
            ..SyncReport::default()
        };
        report.maps.learned_forgotten += forget_contradicted(&mut maps, topology)?;
        let wanted: BTreeSet<String> = attachable_veths(topology, &desired)?.into_iter().collect();
        let attached = self.attached("egress");
        let missing: Vec<&String> = wanted.difference(&attached).collect();
        // This host's underlay interface may have changed: transit follows it.
        let underlay = underlay_interface(topology)?;
        let transit = self.attached("transit");
        let move_transit = !transit.contains(&underlay);
        if move_transit {
            let mode = Dataplane::load(&self.pin_dir)?.attach_transit(&underlay)?;
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
        report.attach_egress(&self.pins(), missing)?;
        for veth in attached.difference(&wanted) {
            detach(&self.pins(), "egress", veth)?;
            report.detached.push(("egress", veth.clone()));
        }
        report.waiting = desired.waiting;
        Ok(report)
    }

    /// Detaches everything and removes every pin: forwarding stops. The store is untouched,
    /// so `up` rebuilds the same state.
    pub fn down(&self) -> Result<(), FabricError> {
        remove_all_pins(&self.pins())?;
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

/// Veths of the endpoints hosted here that exist: those egress is attached to.
fn attachable_veths(topology: &Topology, desired: &Desired) -> Result<Vec<String>, FabricError> {
    let waiting: BTreeSet<&str> = desired.waiting.iter().map(|w| w.veth.as_str()).collect();
    let mut veths = local_veths(topology)?;
    veths.retain(|veth| !waiting.contains(veth.as_str()));
    Ok(veths)
}
