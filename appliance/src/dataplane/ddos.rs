//! The ddos function's maps: sources to drop (an LPM trie over VNI then source, VNI 0 for every
//! VPC) and per-source thresholds by VNI (0: the default). Written from the store, diffed
//! against what the maps hold, so a change writes only what differs.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{HashMap, LpmTrie, MapData, lpm_trie::Key};
use mizar_ebpf::{
    abi, ip_be, ip_from_be,
    maps::{DDOS_BLOCKS, DDOS_LIMITS, DDOS_SYN_LIMITS},
};

use super::{DataplaneError, Ipv4Net, PinLayout, maps::open};

/// The ddos configuration as the data plane holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DdosState {
    /// (VNI, source range); VNI 0: every VPC.
    pub blocks: BTreeSet<(u32, Ipv4Net)>,
    /// VNI (0: the default) → (packets, window in ns).
    pub limits: BTreeMap<u32, (u64, u64)>,
    /// The SYN-flood guard: VNI (0: the default) → (SYNs per destination, window in ns).
    pub syn_limits: BTreeMap<u32, (u64, u64)>,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

pub struct DdosMaps {
    blocks: LpmTrie<MapData, [u32; 2], u32>,
    limits: HashMap<MapData, u32, abi::mz_ddos_limit>,
    syn_limits: HashMap<MapData, u32, abi::mz_ddos_limit>,
}

/// The trie's key data after the prefix length: the VNI (network order) then the address.
fn key(vni: u32, net: Ipv4Net) -> Key<[u32; 2]> {
    Key::new(
        32 + u32::from(net.prefix_len()),
        [vni.to_be(), ip_be(net.network())],
    )
}

impl DdosMaps {
    pub fn open(pins: &PinLayout) -> Result<Self, DataplaneError> {
        Ok(Self {
            blocks: open(pins, DDOS_BLOCKS)?,
            limits: open(pins, DDOS_LIMITS)?,
            syn_limits: open(pins, DDOS_SYN_LIMITS)?,
        })
    }

    /// What the maps hold.
    pub fn read(&self) -> Result<DdosState, DataplaneError> {
        let mut state = DdosState::default();
        for k in self.blocks.keys() {
            let k = k.map_err(map_err(DDOS_BLOCKS))?;
            let [vni_be, addr] = k.data();
            let len = k.prefix_len().saturating_sub(32).min(32) as u8;
            let net = Ipv4Net::new(ip_from_be(addr), len)
                .map_err(|err| DataplaneError::Invalid(format!("a ddos block: {err}")))?;
            state.blocks.insert((u32::from_be(vni_be), net));
        }
        for entry in self.limits.iter() {
            let (vni, limit) = entry.map_err(map_err(DDOS_LIMITS))?;
            state.limits.insert(vni, (limit.packets, limit.window_ns));
        }
        for entry in self.syn_limits.iter() {
            let (vni, limit) = entry.map_err(map_err(DDOS_SYN_LIMITS))?;
            state
                .syn_limits
                .insert(vni, (limit.packets, limit.window_ns));
        }
        Ok(state)
    }

    /// Brings the maps to `wanted`, writing only what differs; returns how many entries changed.
    pub fn sync(&mut self, wanted: &DdosState) -> Result<usize, DataplaneError> {
        let current = self.read()?;
        let mut changed = 0;
        for (vni, net) in wanted.blocks.difference(&current.blocks) {
            self.blocks
                .insert(&key(*vni, *net), 1, 0)
                .map_err(map_err(DDOS_BLOCKS))?;
            changed += 1;
        }
        for (vni, net) in current.blocks.difference(&wanted.blocks) {
            self.blocks
                .remove(&key(*vni, *net))
                .map_err(map_err(DDOS_BLOCKS))?;
            changed += 1;
        }
        changed += sync_thresholds(
            &mut self.limits,
            DDOS_LIMITS,
            &current.limits,
            &wanted.limits,
        )?;
        changed += sync_thresholds(
            &mut self.syn_limits,
            DDOS_SYN_LIMITS,
            &current.syn_limits,
            &wanted.syn_limits,
        )?;
        Ok(changed)
    }
}

/// Brings a threshold map (VNI → count per window) from `current` to `wanted`.
fn sync_thresholds(
    map: &mut HashMap<MapData, u32, abi::mz_ddos_limit>,
    name: &'static str,
    current: &BTreeMap<u32, (u64, u64)>,
    wanted: &BTreeMap<u32, (u64, u64)>,
) -> Result<usize, DataplaneError> {
    let mut changed = 0;
    for (vni, (packets, window_ns)) in wanted {
        if current.get(vni) != Some(&(*packets, *window_ns)) {
            let value = abi::mz_ddos_limit {
                window_ns: *window_ns,
                packets: *packets,
            };
            map.insert(vni, value, 0).map_err(map_err(name))?;
            changed += 1;
        }
    }
    for vni in current.keys().filter(|v| !wanted.contains_key(v)) {
        map.remove(vni).map_err(map_err(name))?;
        changed += 1;
    }
    Ok(changed)
}

// The key layout above is the ABI's mz_ddos_block_key after its prefix length.
const _: () =
    assert!(size_of::<abi::mz_ddos_block_key>() == size_of::<u32>() + size_of::<[u32; 2]>());
