//! The data plane: loads the XDP programs, attaches them, pins maps and links under a
//! per-instance bpffs directory (so forwarding goes on after the process exits and several
//! instances coexist), and writes the configuration into the maps.

mod acl;
mod bpffs;
mod chains;
mod counters;
mod ddos;
mod external;
mod link;
mod maps;
mod netlink;
mod ratelimit;
mod rcu;
mod reconcile;

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use aya_obj::programs::XdpAttachType;
use mizar_ebpf::{
    BUILTIN_FUNCTIONS, CHAIN_ENTRY_PROGRAMS, CHAIN_EXIT_EGRESS_PROGRAM, CHAIN_EXIT_PROGRAM,
    EGRESS_OBJECT, EGRESS_PROGRAM, FUNCTIONS_OBJECT, TRANSIT_OBJECT, TRANSIT_PROGRAM, abi,
};

pub use acl::{
    AclAddrs, AclDecision, AclDirection, AclHits, AclMaps, AclRule, AclVpc, CompiledAcl,
    compile as compile_acl, judge_in_order as acl_judge_in_order,
};
pub use bpffs::{PinLayout, ensure_bpffs};
pub use chains::{ChainLink, ChainStats, Chains, FunctionStats, LiveChain, ScopeKey, function_pin};
pub use counters::{
    CHAIN_POINTS, Counter, CounterValue, Counters, STAGES, Stage, XDP_ABORTED, XDP_DROP, XDP_PASS,
    XDP_REDIRECT, XDP_TX, reason_outcome, verdict_name, verdict_named,
};
pub use ddos::{DdosMaps, DdosState};
pub use external::{ExternalFunction, unpin_function};
pub(crate) use maps::open as open_map;
pub use maps::{
    DataplaneMaps, EndpointEntry, EndpointKey, EndpointKind, EndpointStats, HostConfig, Ipv4Net,
    MacAddr, MemberKey, MemberRoles, NetworkEntry, NetworkKey, VpcEntry,
};
pub use netlink::{XdpLink, xdp_attachment, xdp_attachments};
pub use ratelimit::{RateDirection, RateKey, RateLimitMaps, RateRule};
pub use reconcile::{
    Changes, DesiredState, PreparedReconcile, ReconcileReport, Scope, plan_reconcile,
    prepare_reconcile, prepare_scoped_reconcile, reconcile,
};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "cannot create the pin directory {path}: {source}; choose a --pin-dir (MIZAR_PIN_DIR) \
         on a bpffs, or where one can be mounted (under `ip netns exec`, /sys is the \
         namespace's own and /sys/fs/bpf no bpffs: mount one from the root namespace, e.g. \
         `mount -t bpf bpf /run/mizar-bpf`, and pin under it)"
    )]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot mount bpffs on {path}: {source} (mizar must run as root, or with CAP_SYS_ADMIN and CAP_BPF)"
    )]
    MountBpffs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not on a bpffs, and this command runs in a private mount namespace (ip netns exec?), \
         where a bpffs it mounted would vanish with its pins when it exits: mount one from the root \
         namespace first (mount -t bpf bpf {path}), or pin under one that is"
    )]
    PrivateMountNamespace { path: PathBuf },
    #[error(
        "cannot load the {object} XDP object: {source} (the kernel needs BPF and BTF support; run as root)"
    )]
    Load {
        object: &'static str,
        source: Box<aya::EbpfError>,
    },
    #[error("the {object} object has no program {program}")]
    MissingProgram {
        object: &'static str,
        program: &'static str,
    },
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        source: Box<ProgramError>,
    },
    #[error("interface {ifname} does not exist in this network namespace")]
    UnknownInterface { ifname: String },
    #[error(
        "cannot attach {program} to {ifname}: native mode failed ({native}); generic mode failed too ({generic})"
    )]
    Attach {
        program: &'static str,
        ifname: String,
        native: Box<ProgramError>,
        generic: Box<ProgramError>,
    },
    #[error("cannot pin the {what} at {path}: {reason}")]
    Pin {
        what: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "map {map} is not pinned at {path}: {source} (run `mizar up` or load the data plane first)"
    )]
    OpenMap {
        map: &'static str,
        path: PathBuf,
        source: Box<aya::maps::MapError>,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// How an XDP program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver: the fast path.
    Native,
    /// In the generic (skb) hook, because the driver refused native mode.
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// The loaded data plane of one instance.
pub struct Dataplane {
    pins: PinLayout,
    transit: Ebpf,
    egress: Ebpf,
    /// The built-in functions, pinned for the chains (`programs/fn-NAME`).
    _functions: Ebpf,
    /// Transit and egress with the taps (a capture attaches them for its time).
    tapped: [Ebpf; 2],
    maps: DataplaneMaps,
}

impl Dataplane {
    /// Loads transit and egress, reusing maps already pinned under `pin_dir` (their contents
    /// survive) and pinning the ones that are not. Mounts bpffs on `pin_dir` if needed.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let pins = PinLayout::new(pin_dir);
        ensure_bpffs(pin_dir)?;
        fs::create_dir_all(pins.maps()).map_err(|source| DataplaneError::PinDir {
            path: pins.maps(),
            source,
        })?;

        let mut transit = load_object(
            "transit",
            TRANSIT_OBJECT,
            &[
                TRANSIT_PROGRAM,
                CHAIN_ENTRY_PROGRAMS[0],
                CHAIN_ENTRY_PROGRAMS[1],
                CHAIN_EXIT_PROGRAM,
            ],
            &pins,
        )?;
        let mut egress = load_object(
            "egress",
            EGRESS_OBJECT,
            &[EGRESS_PROGRAM, CHAIN_EXIT_EGRESS_PROGRAM],
            &pins,
        )?;
        pin_program(program_mut(&mut egress, EGRESS_PROGRAM), "egress", &pins)?;
        // The chains' entries and exit: a chain change (another process) puts them in place.
        for name in [
            CHAIN_ENTRY_PROGRAMS[0],
            CHAIN_ENTRY_PROGRAMS[1],
            CHAIN_EXIT_PROGRAM,
        ] {
            pin_program(program_mut(&mut transit, name), name, &pins)?;
        }
        let mut programs: Vec<&'static str> = BUILTIN_FUNCTIONS.iter().map(|f| f.program).collect();
        programs.push(mizar_ebpf::TAP_PROGRAM);
        let mut functions = load_object("functions", FUNCTIONS_OBJECT, &programs, &pins)?;
        for f in BUILTIN_FUNCTIONS {
            pin_program(
                program_mut(&mut functions, f.program),
                &function_pin(f.name),
                &pins,
            )?;
        }
        pin_program(
            program_mut(&mut functions, mizar_ebpf::TAP_PROGRAM),
            &function_pin(mizar_ebpf::TAP_FUNCTION),
            &pins,
        )?;
        let exits = mizar_ebpf::maps::STAGE_EXIT;
        set_slot(
            &transit,
            CHAIN_EXIT_PROGRAM,
            exits,
            abi::MZ_EXIT_TRANSIT,
            &pins,
        )?;
        set_slot(
            &egress,
            CHAIN_EXIT_EGRESS_PROGRAM,
            exits,
            abi::MZ_EXIT_EGRESS,
            &pins,
        )?;
        // The copies with the taps, objects of their own (see MZ_TAPPED in transit.c), pinned
        // beside the plain programs: a capture swaps one for the other on the links.
        let mut transit_tapped = load_object(
            "transit_tapped",
            mizar_ebpf::TRANSIT_TAPPED_OBJECT,
            &[mizar_ebpf::TRANSIT_TAPPED_PROGRAM],
            &pins,
        )?;
        let mut egress_tapped = load_object(
            "egress_tapped",
            mizar_ebpf::EGRESS_TAPPED_OBJECT,
            &[mizar_ebpf::EGRESS_TAPPED_PROGRAM],
            &pins,
        )?;
        pin_program(program_mut(&mut transit, TRANSIT_PROGRAM), "transit", &pins)?;
        pin_program(
            program_mut(&mut transit_tapped, mizar_ebpf::TRANSIT_TAPPED_PROGRAM),
            &tapped_role("transit"),
            &pins,
        )?;
        pin_program(
            program_mut(&mut egress_tapped, mizar_ebpf::EGRESS_TAPPED_PROGRAM),
            &tapped_role("egress"),
            &pins,
        )?;
        let maps = DataplaneMaps::open(&pins)?;
        Ok(Self {
            pins,
            transit,
            egress,
            _functions: functions,
            tapped: [transit_tapped, egress_tapped],
            maps,
        })
    }

    pub fn pins(&self) -> &PinLayout {
        &self.pins
    }

    pub fn maps(&self) -> &DataplaneMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut DataplaneMaps {
        &mut self.maps
    }

    /// The loaded transit program (for attaching, or running it with BPF_PROG_TEST_RUN).
    pub fn transit(&self) -> &Xdp {
        program(&self.transit, TRANSIT_PROGRAM)
    }

    /// The loaded endpoint-egress program.
    pub fn egress(&self) -> &Xdp {
        program(&self.egress, EGRESS_PROGRAM)
    }

    /// Transit with the taps (what a capture attaches in its place).
    pub fn transit_tapped(&self) -> &Xdp {
        program(&self.tapped[0], mizar_ebpf::TRANSIT_TAPPED_PROGRAM)
    }

    /// Egress with the taps.
    pub fn egress_tapped(&self) -> &Xdp {
        program(&self.tapped[1], mizar_ebpf::EGRESS_TAPPED_PROGRAM)
    }

    /// Attaches transit to the host's underlay interface and pins the link.
    pub fn attach_transit(&mut self, ifname: &str) -> Result<AttachMode, DataplaneError> {
        attach(
            &mut self.transit,
            TRANSIT_PROGRAM,
            "transit",
            ifname,
            &self.pins,
        )
    }

    /// Attaches endpoint egress to an endpoint's host-side veth and pins the link.
    pub fn attach_egress(&mut self, ifname: &str) -> Result<AttachMode, DataplaneError> {
        attach(
            &mut self.egress,
            EGRESS_PROGRAM,
            "egress",
            ifname,
            &self.pins,
        )
    }
}

/// Attaches the egress program the data plane runs (pinned by the last load) to an endpoint's
/// veth and pins the link: what a change that adds a local endpoint does, without loading and
/// verifying the programs again (about 250 ms). Loads them when nothing is pinned (a data
/// plane brought up by an older build).
pub fn attach_egress(pins: &PinLayout, ifname: &str) -> Result<AttachMode, DataplaneError> {
    let path = pins.program("egress");
    if !path.exists() {
        return Dataplane::load(&pins.root)?.attach_egress(ifname);
    }
    let mut prog = Xdp::from_pin(&path, XdpAttachType::Interface).map_err(|source| {
        DataplaneError::Program {
            program: EGRESS_PROGRAM,
            source: Box::new(source),
        }
    })?;
    attach_program(&mut prog, EGRESS_PROGRAM, "egress", ifname, pins)
}

/// The pin name of a role's copy with the taps (`transit-tapped`, `egress-tapped`).
fn tapped_role(role: &str) -> String {
    format!("{role}-tapped")
}

/// Puts on every link this instance pinned its role's program with the taps (`tapped`) or the
/// plain one: one atomic link update each (the interface never goes without a program, and a
/// packet runs one or the other). Returns how many links were updated. A capture attaches the
/// copies with the taps for its time; the plain programs hold no tap code at all.
pub fn use_tapped_programs(pins: &PinLayout, tapped: bool) -> Result<usize, DataplaneError> {
    let mut programs: std::collections::BTreeMap<String, Xdp> = Default::default();
    let mut updated = 0;
    let Ok(entries) = fs::read_dir(pins.links()) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((role, ifname)) = name.split_once('@') else {
            continue;
        };
        if role != "transit" && role != "egress" {
            continue;
        }
        let wanted = if tapped {
            tapped_role(role)
        } else {
            role.to_owned()
        };
        if !programs.contains_key(&wanted) {
            let path = pins.program(&wanted);
            let prog = Xdp::from_pin(&path, XdpAttachType::Interface).map_err(|source| {
                DataplaneError::Pin {
                    what: format!("{wanted} program"),
                    path: path.clone(),
                    reason: format!("{source} (run `mizar up` to load this build's programs)"),
                }
            })?;
            programs.insert(wanted.clone(), prog);
        }
        let prog = &programs[&wanted];
        let fd = prog.fd().map_err(|source| DataplaneError::Program {
            program: "tapped",
            source: Box::new(source),
        })?;
        link::replace_program(&entry.path(), fd).map_err(|err| DataplaneError::Pin {
            what: format!("{role} link on {ifname}"),
            path: entry.path(),
            reason: format!("cannot put the {wanted} program on it: {err}"),
        })?;
        updated += 1;
    }
    Ok(updated)
}

/// Pins `prog` as `role`'s program, in place of the one pinned before.
fn pin_program(prog: &mut Xdp, role: &str, pins: &PinLayout) -> Result<(), DataplaneError> {
    let path = pins.program(role);
    let pin_error = |reason: String| DataplaneError::Pin {
        what: format!("{role} program"),
        path: path.clone(),
        reason,
    };
    fs::create_dir_all(pins.programs()).map_err(|e| pin_error(e.to_string()))?;
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(pin_error(err.to_string())),
    }
    prog.pin(&path).map_err(|e| pin_error(e.to_string()))
}

/// Detaches the program pinned for `role` on `ifname`, if any. Returns whether one was.
pub fn detach(pins: &PinLayout, role: &str, ifname: &str) -> Result<bool, DataplaneError> {
    let path = pins.link(role, ifname);
    if !path.exists() {
        return Ok(false);
    }
    let link = PinnedLink::from_pin(&path).map_err(|err| DataplaneError::Pin {
        what: format!("{role} link on {ifname}"),
        path: path.clone(),
        reason: err.to_string(),
    })?;
    // Removing the pin drops the last reference: the kernel detaches the program.
    link.unpin().map_err(|err| DataplaneError::Pin {
        what: format!("{role} link on {ifname}"),
        path,
        reason: err.to_string(),
    })?;
    Ok(true)
}

/// Detaches every pinned link and removes every pinned map of the instance.
pub fn remove_all_pins(pins: &PinLayout) -> Result<(), DataplaneError> {
    for dir in [pins.links(), pins.maps(), pins.programs()] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // A link unpinned through a descriptor held meanwhile is freed, and its program
            // detached, when that descriptor closes, before this returns. Removing the pin alone
            // leaves the release to a kernel work queue: the program would go on forwarding for
            // a moment after `mizar down` said it had stopped.
            if let Ok(link) = PinnedLink::from_pin(entry.path())
                && link.unpin().is_ok()
            {
                continue;
            }
            fs::remove_file(entry.path()).map_err(|source| DataplaneError::PinDir {
                path: entry.path(),
                source,
            })?;
        }
        let _ = fs::remove_dir(&dir);
    }
    Ok(())
}

/// Puts this load's program `name` in slot `slot` of the program array `map` (one atomic slot
/// exchange: packets running the previous load's program finish with it).
fn set_slot(
    object: &Ebpf,
    name: &'static str,
    map: &'static str,
    slot: u32,
    pins: &PinLayout,
) -> Result<(), DataplaneError> {
    let mut array: aya::maps::ProgramArray<aya::maps::MapData> = maps::open(pins, map)?;
    let fd = program(object, name)
        .fd()
        .map_err(|source| DataplaneError::Program {
            program: name,
            source: Box::new(source),
        })?;
    array
        .set(slot, fd, 0)
        .map_err(|source| DataplaneError::Map {
            map,
            source: Box::new(source),
        })
}

fn load_object(
    object: &'static str,
    bytes: &[u8],
    program_names: &[&'static str],
    pins: &PinLayout,
) -> Result<Ebpf, DataplaneError> {
    let maps_dir = pins.maps();
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&maps_dir)
        .load(bytes)
        .map_err(|source| DataplaneError::Load {
            object,
            source: Box::new(source),
        })?;
    for &program_name in program_names {
        let prog: &mut Xdp = ebpf
            .program_mut(program_name)
            .ok_or(DataplaneError::MissingProgram {
                object,
                program: program_name,
            })?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                program: program_name,
                source: Box::new(source),
            })?;
        prog.load().map_err(|source| DataplaneError::Program {
            program: program_name,
            source: Box::new(source),
        })?;
    }
    Ok(ebpf)
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("checked when the object was loaded")
}

fn program<'a>(ebpf: &'a Ebpf, name: &'static str) -> &'a Xdp {
    ebpf.program(name)
        .and_then(|p| <&Xdp>::try_from(p).ok())
        .expect("checked when the object was loaded")
}

fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    role: &str,
    ifname: &str,
    pins: &PinLayout,
) -> Result<AttachMode, DataplaneError> {
    attach_program(program_mut(ebpf, name), name, role, ifname, pins)
}

fn attach_program(
    prog: &mut Xdp,
    name: &'static str,
    role: &str,
    ifname: &str,
    pins: &PinLayout,
) -> Result<AttachMode, DataplaneError> {
    // A program already pinned there is replaced in place: the interface never goes without
    // one. Failing that (the interface was recreated since, say), it is attached anew.
    let path = pins.link(role, ifname);
    if path.exists() {
        match replace_in_place(prog, &path, ifname) {
            Ok(Some(mode)) => return Ok(mode),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(%ifname, program = name, %err, "could not replace the program in place; attaching it anew");
            }
        }
        detach(pins, role, ifname)?;
    }

    let (link_id, mode) = match prog.attach(ifname, XdpMode::Driver) {
        Ok(id) => (id, AttachMode::Native),
        Err(ProgramError::UnknownInterface { .. }) => {
            return Err(DataplaneError::UnknownInterface {
                ifname: ifname.to_owned(),
            });
        }
        Err(native) => match prog.attach(ifname, XdpMode::Skb) {
            Ok(id) => {
                tracing::warn!(%ifname, program = name, reason = %native, "native XDP refused; attached in generic mode");
                (id, AttachMode::Generic)
            }
            Err(generic) => {
                return Err(DataplaneError::Attach {
                    program: name,
                    ifname: ifname.to_owned(),
                    native: Box::new(native),
                    generic: Box::new(generic),
                });
            }
        },
    };

    let link = prog
        .take_link(link_id)
        .map_err(|source| DataplaneError::Program {
            program: name,
            source: Box::new(source),
        })?;
    let path = pins.link(role, ifname);
    let pin_error = |reason: String| DataplaneError::Pin {
        what: format!("{role} link on {ifname}"),
        path: path.clone(),
        reason,
    };
    fs::create_dir_all(pins.links()).map_err(|e| pin_error(e.to_string()))?;
    let fd_link: FdLink = link
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| pin_error(e.to_string()))?;
    fd_link.pin(&path).map_err(|e| pin_error(e.to_string()))?;
    Ok(mode)
}

/// Makes the link pinned at `path` run `prog`, and checks with the kernel that `ifname` now
/// runs it: its mode, or None when the link no longer serves `ifname`.
fn replace_in_place(prog: &Xdp, path: &Path, ifname: &str) -> std::io::Result<Option<AttachMode>> {
    let fd = prog.fd().map_err(std::io::Error::other)?;
    link::replace_program(path, fd)?;
    let id = prog.info().map_err(std::io::Error::other)?.id();
    let Ok(ifindex) = nix::net::if_::if_nametoindex(ifname) else {
        return Ok(None);
    };
    Ok(xdp_attachment(ifindex)?
        .filter(|(_, prog_id)| *prog_id == id)
        .map(|(mode, _)| mode))
}
