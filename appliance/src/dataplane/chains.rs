//! Function chains at the stages: publishing a stage's chain as a whole generation, reading
//! back what runs, and the functions' counters.
//!
//! # Every packet runs one whole generation
//!
//! Each stage has two plans (`mz_chains[stage * 2 + g]`), two groups of program slots
//! (`mz_functions`), and two entry programs (`mz_chain_gen0`, `_1`), each of which reads only
//! its own generation's plan. The generation that runs is the entry program in `mz_stages[stage]`,
//! as the kernel holds it: [`publish`] asks the kernel which one that is, writes the other
//! generation's slots and plan (no packet reads them), then puts the other entry program in
//! `mz_stages[stage]`, one atomic exchange. A packet copies its plan into `mz_meta` when it
//! enters, so it runs the old chain or the new one, never a mix. The old generation's slots are
//! cleared only after an RCU grace period ([`super::rcu::synchronize`]): every packet that began
//! with them has ended by then. A program-array slot cannot be the inner map of a map-of-maps,
//! which is why the swap is made with programs rather than with maps.
//!
//! Transit hands a stage's packets to its chain only while the stage's bit is set in
//! `mz_config` (`MZ_HOST_STAGE_ARMED`): an empty stage costs one test of a loaded word. The bit
//! is set after the first plan is live and cleared before the last is removed; in between, an
//! armed stage with an empty plan goes straight to the exit, which applies the decision.
//!
//! # Chains of VPCs and endpoints
//!
//! Their plans live in `mz_scoped_chains` by (stage, VNI, endpoint address or 0) and name
//! program slots of `mz_fn_programs`, one per built-in function, shared by all of them: the
//! entry program appends the packet's VPC plan and endpoint plan to the host's. A scoped plan
//! is replaced by one map update (the map is not preallocated: the old value is freed after a
//! grace period) and copied by the packet on entry, so it too runs one version. A stage with
//! scoped plans is armed even when its host chain is empty.

use std::{
    collections::BTreeMap,
    io,
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray},
    programs::Xdp,
};
use aya_obj::programs::XdpAttachType;
use mizar_ebpf::{
    CHAIN_ENTRY_PROGRAMS, FN_PROG_SLOTS, abi, ip_be,
    maps::{
        CHAIN_STATS, CHAINS, CONFIG, EGRESS_STAGE, FN_PROGRAMS, FN_STATS, FUNCTIONS, SCOPED_CHAINS,
        STAGES,
    },
};

/// A scoped chain's place: its stage, its VPC's VNI, and its endpoint (None: the VPC's own).
pub type ScopeKey = (Stage, u32, Option<Ipv4Addr>);

fn raw_scope((stage, vni, ep): &ScopeKey) -> abi::mz_scope_key {
    abi::mz_scope_key {
        point: stage.slot(),
        vni: *vni,
        ip_be: ep.map_or(0, ip_be),
    }
}

use super::{DataplaneError, PinLayout, Stage, maps::open, rcu};

/// A function placed in a chain: its instance number (its counters' slot, stable while it
/// stays in the chain, whatever its position) and the built-in or loaded program it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub instance: u16,
    pub function: String,
}

/// The pin name of a function's program (`programs/fn-NAME`).
pub fn function_pin(function: &str) -> String {
    format!("fn-{function}")
}

/// A function's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionStats {
    pub passed: u64,
    pub dropped: [u64; abi::MZ_FN_DROP_REASONS as usize],
    /// Packets whose time in the function was measured, and that time in total.
    pub timed: u64,
    pub ns: u64,
    /// Packets it passed on with another decision than it received (its drops aside).
    pub changed: u64,
}

impl FunctionStats {
    /// Packets the function took.
    pub fn packets(&self) -> u64 {
        self.passed + self.dropped.iter().sum::<u64>()
    }

    pub fn drops(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Mean time per packet over the sampled packets.
    pub fn ns_per_packet(&self) -> Option<f64> {
        (self.timed > 0).then(|| self.ns as f64 / self.timed as f64)
    }
}

/// A stage's chain counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainStats {
    pub runs: u64,
    pub applied: u64,
    pub failed: u64,
}

/// What runs at one stage, as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveChain {
    /// The generation in `mz_stages` (None: no entry program there yet).
    pub generation: Option<u32>,
    /// Publication number of the live plan.
    pub seq: u32,
    /// (instance, program id) in order.
    pub links: Vec<(u16, u32)>,
    /// Whether transit hands the stage's packets to the chain.
    pub armed: bool,
}

fn syscall_error(what: &str, err: io::Error) -> DataplaneError {
    DataplaneError::Invalid(format!("{what}: {err}"))
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

/// The id of the program in slot `index` of a program array (None: empty). aya 0.14 can set and
/// clear program-array slots but not read them; the kernel answers a lookup with the id.
fn program_in_slot(array: &MapData, index: u32) -> Result<Option<u32>, DataplaneError> {
    let fd = array.fd().as_fd().as_raw_fd();
    let mut id = 0u32;
    // The key and value point at live u32s, the sizes of a program array's key and
    // (user-visible) value.
    let mut attr = rcu::ElemAttr {
        map_fd: fd as u32,
        key: &raw const index as u64,
        value: &raw mut id as u64,
        ..rcu::ElemAttr::default()
    };
    if let Err(err) = rcu::bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        return match err.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(syscall_error("reading a program-array slot", err)),
        };
    }
    Ok(Some(id))
}

fn pinned_program(pins: &PinLayout, role: &str) -> Result<Xdp, DataplaneError> {
    let path = pins.program(role);
    Xdp::from_pin(&path, XdpAttachType::Interface).map_err(|err| {
        DataplaneError::Invalid(format!(
            "the {role} program is not pinned at {} ({err}); run `mizar up`",
            path.display()
        ))
    })
}

fn program_id(prog: &Xdp, role: &str) -> Result<u32, DataplaneError> {
    prog.info()
        .map(|info| info.id())
        .map_err(|err| DataplaneError::Invalid(format!("the {role} program: {err}")))
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

fn plan_index(stage: Stage, generation: u32) -> u32 {
    stage.slot() * abi::MZ_CHAIN_GENERATIONS + generation
}

fn slot_of(plan: u32, position: u32) -> u32 {
    plan * abi::MZ_MAX_CHAIN + position
}

/// The chains' kernel objects of one instance, opened from their pins.
pub struct Chains {
    pins: PinLayout,
    stages: ProgramArray<MapData>,
    functions: ProgramArray<MapData>,
    /// ON_EGRESS's entry slot (transit's stages have theirs in `stages`).
    egress_stage: ProgramArray<MapData>,
    /// The same maps, to read slots with (aya's ProgramArray cannot).
    stages_raw: MapData,
    egress_stage_raw: MapData,
    functions_raw: MapData,
    plans: Array<MapData, abi::mz_chain>,
    config: Array<MapData, abi::mz_host_config>,
    fn_stats: PerCpuArray<MapData, abi::mz_fn_stats>,
    chain_stats: PerCpuArray<MapData, abi::mz_chain_stats>,
    fn_programs: ProgramArray<MapData>,
    scoped: HashMap<MapData, abi::mz_scope_key, abi::mz_chain>,
    entry_ids: [u32; 2],
}

impl Chains {
    pub fn open(pins: &PinLayout) -> Result<Self, DataplaneError> {
        let entry_ids = [
            program_id(
                &pinned_program(pins, CHAIN_ENTRY_PROGRAMS[0])?,
                "chain entry",
            )?,
            program_id(
                &pinned_program(pins, CHAIN_ENTRY_PROGRAMS[1])?,
                "chain entry",
            )?,
        ];
        Ok(Self {
            pins: pins.clone(),
            stages: open(pins, STAGES)?,
            functions: open(pins, FUNCTIONS)?,
            egress_stage: open(pins, EGRESS_STAGE)?,
            stages_raw: open_raw(pins, STAGES)?,
            egress_stage_raw: open_raw(pins, EGRESS_STAGE)?,
            functions_raw: open_raw(pins, FUNCTIONS)?,
            plans: open(pins, CHAINS)?,
            config: open(pins, CONFIG)?,
            fn_stats: open(pins, FN_STATS)?,
            chain_stats: open(pins, CHAIN_STATS)?,
            fn_programs: open(pins, FN_PROGRAMS)?,
            scoped: open(pins, SCOPED_CHAINS)?,
            entry_ids,
        })
    }

    /// What runs at `stage`.
    pub fn live(&self, stage: Stage) -> Result<LiveChain, DataplaneError> {
        let entry = match stage {
            Stage::OnEgress => program_in_slot(&self.egress_stage_raw, 0)?,
            _ => program_in_slot(&self.stages_raw, stage.slot())?,
        };
        let generation = match entry {
            None => None,
            Some(id) => match self.entry_ids.iter().position(|e| *e == id) {
                Some(g) => Some(g),
                // An entry program of an earlier load (`up` again, an upgrade): known by name.
                None => generation_by_name(id)?,
            },
        };
        let armed = self
            .config
            .get(&0, 0)
            .map(|c| c.flags & armed_bit(stage) != 0)
            .map_err(map_err(CONFIG))?;
        let Some(generation) = generation.map(|g| g as u32) else {
            return Ok(LiveChain {
                armed,
                ..LiveChain::default()
            });
        };
        let index = plan_index(stage, generation);
        let plan = self.plans.get(&index, 0).map_err(map_err(CHAINS))?;
        let mut links = Vec::new();
        for position in 0..plan.len.min(abi::MZ_MAX_CHAIN) {
            let slot = slot_of(index, position);
            let id = program_in_slot(&self.functions_raw, slot)?.unwrap_or(0);
            links.push((plan.instance[position as usize], id));
        }
        Ok(LiveChain {
            generation: Some(generation),
            seq: plan.seq,
            links,
            armed,
        })
    }

    /// The program ids `links` would run with the programs pinned now.
    fn wanted_ids(&self, links: &[ChainLink]) -> Result<Vec<(u16, u32)>, DataplaneError> {
        links
            .iter()
            .map(|l| {
                let role = function_pin(&l.function);
                Ok((
                    l.instance,
                    program_id(&pinned_program(&self.pins, &role)?, &role)?,
                ))
            })
            .collect()
    }

    /// Whether `stage` runs exactly `links` with the programs pinned now.
    pub fn is_live(&self, stage: Stage, links: &[ChainLink]) -> Result<bool, DataplaneError> {
        let armed = !links.is_empty() || self.scoped_at(stage)?;
        self.runs(&self.live(stage)?, links, armed)
    }

    /// Whether what runs (`live`) is `links` with the programs pinned now, armed or not.
    fn runs(
        &self,
        live: &LiveChain,
        links: &[ChainLink],
        armed: bool,
    ) -> Result<bool, DataplaneError> {
        let entry_current = live.generation.is_some() || !armed;
        Ok(entry_current && live.armed == armed && live.links == self.wanted_ids(links)?)
    }

    /// The scoped plans the kernel holds.
    pub fn scoped_live(&self) -> Result<BTreeMap<ScopeKey, abi::mz_chain>, DataplaneError> {
        let mut out = BTreeMap::new();
        for entry in self.scoped.iter() {
            let (k, plan) = entry.map_err(map_err(SCOPED_CHAINS))?;
            let Some(stage) = super::CHAIN_POINTS.iter().find(|s| s.slot() == k.point) else {
                continue;
            };
            let ep = (k.ip_be != 0).then(|| mizar_ebpf::ip_from_be(k.ip_be));
            out.insert((*stage, k.vni, ep), plan);
        }
        Ok(out)
    }

    /// Whether a VPC or an endpoint has a chain at `stage`.
    fn scoped_at(&self, stage: Stage) -> Result<bool, DataplaneError> {
        Ok(self.scoped_live()?.keys().any(|(s, _, _)| *s == stage))
    }

    /// Puts function `name`'s pinned program in shared slot `index` (None: empties it).
    pub fn set_shared_program(
        &mut self,
        index: u32,
        name: Option<&str>,
    ) -> Result<(), DataplaneError> {
        match name {
            Some(name) => {
                let role = function_pin(name);
                let prog = pinned_program(&self.pins, &role)?;
                let fd = prog
                    .fd()
                    .map_err(|err| DataplaneError::Invalid(format!("the {role} program: {err}")))?;
                self.fn_programs
                    .set(index, fd, 0)
                    .map_err(map_err(FN_PROGRAMS))
            }
            None => clear_slot(&mut self.fn_programs, index),
        }
    }

    /// Makes the chains of VPCs and endpoints `wanted` (each replaced as a whole), their
    /// functions in the shared slots `slots` gives (name → slot); returns how many changed.
    /// Stages are armed or disarmed by [`Self::publish`], which runs after.
    pub fn publish_scoped(
        &mut self,
        wanted: &BTreeMap<ScopeKey, Vec<ChainLink>>,
        slots: &BTreeMap<String, u32>,
    ) -> Result<usize, DataplaneError> {
        // The programs first: written before any plan names their slots.
        for (name, index) in slots {
            self.set_shared_program(*index, Some(name))?;
        }
        let current = self.scoped_live()?;
        let mut changed = 0;
        for (key, links) in wanted {
            let mut plan = abi::mz_chain {
                len: links.len().min(abi::MZ_MAX_CHAIN as usize) as u32,
                seq: current.get(key).map_or(1, |p| p.seq.wrapping_add(1)),
                ..abi::mz_chain::default()
            };
            for (position, link) in links.iter().take(abi::MZ_MAX_CHAIN as usize).enumerate() {
                let index = slots.get(&link.function).ok_or_else(|| {
                    DataplaneError::Invalid(format!("unknown function {:?}", link.function))
                })?;
                plan.slots[position] = *index as u16 | abi::MZ_FN_SHARED_SLOT as u16;
                plan.instance[position] = link.instance;
            }
            if let Some(old) = current.get(key) {
                let same =
                    old.len == plan.len && old.slots == plan.slots && old.instance == plan.instance;
                if same {
                    continue;
                }
            }
            let before: Vec<u16> = current
                .get(key)
                .map(|p| p.instance[..p.len.min(abi::MZ_MAX_CHAIN) as usize].to_vec())
                .unwrap_or_default();
            for link in links {
                if !before.contains(&link.instance) {
                    self.reset_stats(link.instance)?;
                }
            }
            self.scoped
                .insert(raw_scope(key), plan, 0)
                .map_err(map_err(SCOPED_CHAINS))?;
            changed += 1;
        }
        for key in current.keys().filter(|k| !wanted.contains_key(k)) {
            self.scoped
                .remove(&raw_scope(key))
                .map_err(map_err(SCOPED_CHAINS))?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Makes `stage` run `links`, as a whole new generation (see the module documentation).
    /// Returns whether anything changed.
    pub fn publish(&mut self, stage: Stage, links: &[ChainLink]) -> Result<bool, DataplaneError> {
        if links.len() > abi::MZ_MAX_CHAIN as usize {
            return Err(DataplaneError::Invalid(format!(
                "{} functions at {} exceed the {} a chain holds",
                links.len(),
                stage.name(),
                abi::MZ_MAX_CHAIN
            )));
        }
        if let Some(l) = links
            .iter()
            .find(|l| l.instance == 0 || u32::from(l.instance) >= abi::MZ_MAX_FN_INSTANCES)
        {
            return Err(DataplaneError::Invalid(format!(
                "function instance {} is outside 1..{}",
                l.instance,
                abi::MZ_MAX_FN_INSTANCES
            )));
        }
        let live = self.live(stage)?;
        let scoped = self.scoped_at(stage)?;
        let armed = !links.is_empty() || scoped;
        // The entry looks up scoped plans only where there are some (publish_scoped ran first:
        // a new plan is there before the bit, a removed one gone before it is cleared).
        self.set_flag(scoped_bit(stage), scoped)?;
        if self.runs(&live, links, armed)? {
            return Ok(false);
        }
        let next = match live.generation {
            Some(0) => 1,
            _ => 0,
        };
        let index = plan_index(stage, next);

        // Counters start from zero for an instance that is new to the stage.
        for link in links {
            if !live.links.iter().any(|(i, _)| *i == link.instance) {
                self.reset_stats(link.instance)?;
            }
        }

        let mut plan = abi::mz_chain {
            len: links.len() as u32,
            seq: live.seq.wrapping_add(1),
            ..abi::mz_chain::default()
        };
        for (position, link) in links.iter().enumerate() {
            let role = function_pin(&link.function);
            let prog = pinned_program(&self.pins, &role)?;
            let fd = prog
                .fd()
                .map_err(|err| DataplaneError::Invalid(format!("the {role} program: {err}")))?;
            self.functions
                .set(slot_of(index, position as u32), fd, 0)
                .map_err(map_err(FUNCTIONS))?;
            plan.slots[position] = slot_of(index, position as u32) as u16;
            plan.instance[position] = link.instance;
        }
        for position in links.len() as u32..abi::MZ_MAX_CHAIN {
            clear_slot(&mut self.functions, slot_of(index, position))?;
        }
        self.plans.set(index, plan, 0).map_err(map_err(CHAINS))?;

        let entry = pinned_program(&self.pins, CHAIN_ENTRY_PROGRAMS[next as usize])?;
        let fd = entry
            .fd()
            .map_err(|err| DataplaneError::Invalid(format!("the chain entry program: {err}")))?;
        match stage {
            Stage::OnEgress => self
                .egress_stage
                .set(0, fd, 0)
                .map_err(map_err(EGRESS_STAGE))?,
            _ => self
                .stages
                .set(stage.slot(), fd, 0)
                .map_err(map_err(STAGES))?,
        }
        self.set_flag(armed_bit(stage), armed)?;

        // No packet runs the old generation once a grace period has passed.
        rcu::synchronize()?;
        if let Some(old) = live.generation {
            let old_index = plan_index(stage, old);
            for position in 0..abi::MZ_MAX_CHAIN {
                clear_slot(&mut self.functions, slot_of(old_index, position))?;
            }
        }
        Ok(true)
    }

    /// The capture flags of this host's configuration (MZ_HOST_TAP_FLAGS): a capture runs,
    /// and which points outside the chains it taps.
    pub fn tap_flags(&self) -> Result<u32, DataplaneError> {
        let config = self.config.get(&0, 0).map_err(map_err(CONFIG))?;
        Ok(config.flags & abi::MZ_HOST_TAP_FLAGS)
    }

    /// Sets the capture flags to `flags` (within MZ_HOST_TAP_FLAGS), the others as they are.
    pub fn set_tap_flags(&mut self, flags: u32) -> Result<(), DataplaneError> {
        let mut config = self.config.get(&0, 0).map_err(map_err(CONFIG))?;
        let wanted = (config.flags & !abi::MZ_HOST_TAP_FLAGS) | (flags & abi::MZ_HOST_TAP_FLAGS);
        if wanted != config.flags {
            config.flags = wanted;
            self.config.set(0, config, 0).map_err(map_err(CONFIG))?;
        }
        Ok(())
    }

    /// Sets or clears one bit of this host's configuration flags.
    fn set_flag(&mut self, bit: u32, on: bool) -> Result<(), DataplaneError> {
        let mut config = self.config.get(&0, 0).map_err(map_err(CONFIG))?;
        let flags = if on {
            config.flags | bit
        } else {
            config.flags & !bit
        };
        if flags != config.flags {
            config.flags = flags;
            self.config.set(0, config, 0).map_err(map_err(CONFIG))?;
        }
        Ok(())
    }

    fn reset_stats(&mut self, instance: u16) -> Result<(), DataplaneError> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, err)| syscall_error("counting the possible CPUs", err))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![abi::mz_fn_stats::default(); cpus])
            .map_err(|err| syscall_error("zeroing a function's counters", err))?;
        self.fn_stats
            .set(u32::from(instance), zeros, 0)
            .map_err(map_err(FN_STATS))
    }

    /// A function instance's counters, summed over CPUs.
    pub fn function_stats(&self, instance: u16) -> Result<FunctionStats, DataplaneError> {
        let values = self
            .fn_stats
            .get(&u32::from(instance), 0)
            .map_err(map_err(FN_STATS))?;
        let mut sum = FunctionStats::default();
        for v in values.iter() {
            sum.passed += v.passed;
            for (total, d) in sum.dropped.iter_mut().zip(v.dropped) {
                *total += d;
            }
            sum.timed += v.timed;
            sum.ns += v.ns;
            sum.changed += v.changed;
        }
        Ok(sum)
    }

    /// A stage's chain counters, summed over CPUs.
    pub fn chain_stats(&self, stage: Stage) -> Result<ChainStats, DataplaneError> {
        let values = self
            .chain_stats
            .get(&stage.slot(), 0)
            .map_err(map_err(CHAIN_STATS))?;
        Ok(values
            .iter()
            .fold(ChainStats::default(), |s, v| ChainStats {
                runs: s.runs + v.runs,
                applied: s.applied + v.applied,
                failed: s.failed + v.failed,
            }))
    }

    /// Every stage's chain, as the kernel runs it.
    pub fn all_live(&self) -> Result<BTreeMap<&'static str, LiveChain>, DataplaneError> {
        super::CHAIN_POINTS
            .iter()
            .map(|s| Ok((s.name(), self.live(*s)?)))
            .collect()
    }
}

/// The generation of the entry program with id `id`, from its name (`mz_chain_gen0`, `_1`).
fn generation_by_name(id: u32) -> Result<Option<usize>, DataplaneError> {
    for info in aya::programs::loaded_programs() {
        let info = info.map_err(|err| {
            DataplaneError::Invalid(format!("listing the loaded programs: {err}"))
        })?;
        if info.id() == id {
            return Ok(info
                .name_as_str()
                .and_then(|name| CHAIN_ENTRY_PROGRAMS.iter().position(|p| *p == name)));
        }
    }
    Ok(None)
}

fn open_raw(pins: &PinLayout, name: &'static str) -> Result<MapData, DataplaneError> {
    let path = pins.map(name);
    MapData::from_pin(&path).map_err(|source| DataplaneError::OpenMap {
        map: name,
        path,
        source: Box::new(source),
    })
}

fn scoped_bit(stage: Stage) -> u32 {
    1 << (16 + stage.slot())
}

fn armed_bit(stage: Stage) -> u32 {
    1 << (8 + stage.slot())
}

fn clear_slot(array: &mut ProgramArray<MapData>, index: u32) -> Result<(), DataplaneError> {
    match array.clear_index(&index) {
        Ok(()) => Ok(()),
        // Already empty.
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(err) => Err(map_err(FUNCTIONS)(err)),
    }
}

// The slots of every plan fit in mz_functions and in a u16.
const _: () = assert!(FN_PROG_SLOTS <= u16::MAX as u32);
