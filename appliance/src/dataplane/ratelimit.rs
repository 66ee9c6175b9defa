//! The ratelimit function's maps: rules by (VNI, endpoint address or 0 for the VPC, direction),
//! each with a state slot of its own in an array. A rule keeps its slot (and its bucket) while
//! it stays; a new rule takes a free slot, zeroed before the rule points at it, so no bucket is
//! ever shared between two rules.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use aya::maps::{Array, HashMap, MapData};
use mizar_ebpf::{
    abi, ip_be, ip_from_be,
    maps::{RL_RULES, RL_STATE},
};

use super::{DataplaneError, PinLayout, maps::open};

/// Which way, seen from the endpoint (MZ_RL_INGRESS or MZ_RL_EGRESS).
pub type RateDirection = u32;

/// A rule's key: VNI, endpoint (None: the VPC), direction.
pub type RateKey = (u32, Option<Ipv4Addr>, RateDirection);

/// What a rule allows: packets and bytes per second (0: no limit on that), with bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateRule {
    pub packets: u64,
    pub burst_packets: u64,
    pub bytes: u64,
    pub burst_bytes: u64,
}

impl RateRule {
    /// The kernel's form: GCRA costs and tolerances.
    fn encode(&self, key: &RateKey, slot: u32) -> abi::mz_rl_rule {
        let ns_per_packet = 1_000_000_000u64
            .checked_div(self.packets)
            .unwrap_or(0)
            .max(u64::from(self.packets > 0));
        let ps_per_byte = 1_000_000_000_000u64
            .checked_div(self.bytes)
            .unwrap_or(0)
            .max(u64::from(self.bytes > 0));
        abi::mz_rl_rule {
            key: raw_key(key),
            slot,
            ns_per_packet,
            packet_tolerance_ns: ns_per_packet
                .saturating_mul(self.burst_packets.max(1).saturating_sub(1)),
            ps_per_byte,
            // A burst of B bytes: B bytes may arrive at once (in ns of the byte rate).
            byte_tolerance_ns: ps_per_byte.saturating_mul(self.burst_bytes) / 1000,
        }
    }
}

fn raw_key((vni, ep, direction): &RateKey) -> abi::mz_rl_key {
    abi::mz_rl_key {
        vni: *vni,
        ip_be: ep.map_or(0, ip_be),
        direction: *direction,
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

pub struct RateLimitMaps {
    rules: HashMap<MapData, abi::mz_rl_key, abi::mz_rl_rule>,
    state: Array<MapData, abi::mz_rl_state>,
}

impl RateLimitMaps {
    pub fn open(pins: &PinLayout) -> Result<Self, DataplaneError> {
        Ok(Self {
            rules: open(pins, RL_RULES)?,
            state: open(pins, RL_STATE)?,
        })
    }

    /// The rules the map holds, with their slots.
    fn read(&self) -> Result<BTreeMap<RateKey, abi::mz_rl_rule>, DataplaneError> {
        let mut out = BTreeMap::new();
        for entry in self.rules.iter() {
            let (k, v) = entry.map_err(map_err(RL_RULES))?;
            let ep = (k.ip_be != 0).then(|| ip_from_be(k.ip_be));
            out.insert((k.vni, ep, k.direction), v);
        }
        Ok(out)
    }

    /// Brings the maps to `wanted`; returns how many rules changed.
    pub fn sync(&mut self, wanted: &BTreeMap<RateKey, RateRule>) -> Result<usize, DataplaneError> {
        if wanted.len() > abi::MZ_MAX_RATE_LIMITS as usize {
            return Err(DataplaneError::Invalid(format!(
                "{} rate limits exceed the {} the data plane holds",
                wanted.len(),
                abi::MZ_MAX_RATE_LIMITS
            )));
        }
        let current = self.read()?;
        let mut changed = 0;
        for key in current.keys().filter(|k| !wanted.contains_key(k)) {
            self.rules
                .remove(&raw_key(key))
                .map_err(map_err(RL_RULES))?;
            changed += 1;
        }
        let mut used: BTreeSet<u32> = current
            .iter()
            .filter(|(k, _)| wanted.contains_key(k))
            .map(|(_, v)| v.slot)
            .collect();
        for (key, rule) in wanted {
            let slot = match current.get(key) {
                Some(v) => v.slot,
                None => {
                    let slot = (0..abi::MZ_MAX_RATE_LIMITS)
                        .find(|s| !used.contains(s))
                        .expect("fewer rules than slots");
                    used.insert(slot);
                    // A fresh bucket: full (its arrival times in the past).
                    self.state
                        .set(slot, abi::mz_rl_state::default(), 0)
                        .map_err(map_err(RL_STATE))?;
                    slot
                }
            };
            let value = rule.encode(key, slot);
            if current.get(key) != Some(&value) {
                self.rules
                    .insert(raw_key(key), value, 0)
                    .map_err(map_err(RL_RULES))?;
                changed += 1;
            }
        }
        Ok(changed)
    }
}
