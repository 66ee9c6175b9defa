//! The data plane's counters: one slot per verdict reason and per stage, summed over CPUs.

use mizar_ebpf::{COUNTER_INFO, CounterInfo, abi};

pub use mizar_ebpf::abi::mz_counter as Counter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

/// XDP verdicts (`enum xdp_action` of the kernel's UAPI).
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// A verdict's short name, as capture filters and reports write it (`drop`, `redirect`, ...).
pub fn verdict_name(verdict: u32) -> &'static str {
    match verdict {
        XDP_ABORTED => "aborted",
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        XDP_TX => "tx",
        XDP_REDIRECT => "redirect",
        _ => "unknown",
    }
}

/// The verdict a short name names (the inverse of [`verdict_name`]).
pub fn verdict_named(name: &str) -> Option<u32> {
    (XDP_ABORTED..=XDP_REDIRECT).find(|v| verdict_name(*v) == name)
}

/// A pipeline stage: a slot of the stage program array; and ON_EGRESS, the endpoint-egress
/// program's single chain point (no stage counter of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    OnXdpTx,
    OnXdpPass,
    OnXdpRedirect,
    OnXdpDrop,
    OnXdpScaledEp,
    OnEgress,
}

/// Transit's stages.
pub const STAGES: [Stage; 5] = [
    Stage::OnXdpTx,
    Stage::OnXdpPass,
    Stage::OnXdpRedirect,
    Stage::OnXdpDrop,
    Stage::OnXdpScaledEp,
];

/// Every point a function chain can sit at: transit's stages, then egress's.
pub const CHAIN_POINTS: [Stage; 6] = [
    Stage::OnXdpTx,
    Stage::OnXdpPass,
    Stage::OnXdpRedirect,
    Stage::OnXdpDrop,
    Stage::OnXdpScaledEp,
    Stage::OnEgress,
];

impl Stage {
    pub fn slot(self) -> u32 {
        match self {
            Self::OnXdpTx => abi::MZ_STAGE_ON_XDP_TX,
            Self::OnXdpPass => abi::MZ_STAGE_ON_XDP_PASS,
            Self::OnXdpRedirect => abi::MZ_STAGE_ON_XDP_REDIRECT,
            Self::OnXdpDrop => abi::MZ_STAGE_ON_XDP_DROP,
            Self::OnXdpScaledEp => abi::MZ_STAGE_ON_XDP_SCALED_EP,
            Self::OnEgress => abi::MZ_STAGE_COUNT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OnXdpTx => "ON_XDP_TX",
            Self::OnXdpPass => "ON_XDP_PASS",
            Self::OnXdpRedirect => "ON_XDP_REDIRECT",
            Self::OnXdpDrop => "ON_XDP_DROP",
            Self::OnXdpScaledEp => "ON_XDP_SCALED_EP",
            Self::OnEgress => "ON_EGRESS",
        }
    }
}

/// The XDP verdict a reason ends in and the stage it passes through (egress reasons, which
/// have no stages yet, name the stage of the same verdict).
pub fn reason_outcome(name: &str) -> (u32, Stage) {
    match name {
        "drop_no_scaled_function" => (XDP_DROP, Stage::OnXdpScaledEp),
        "deliver_local" | "deliver_local_bypass" => (XDP_REDIRECT, Stage::OnXdpRedirect),
        "bouncer_forward" | "divider_forward" | "to_divider" => (XDP_TX, Stage::OnXdpTx),
        n if n.starts_with("pass_") => (XDP_PASS, Stage::OnXdpPass),
        n if n.starts_with("egress_drop_") => (XDP_DROP, Stage::OnXdpDrop),
        n if n.starts_with("egress_") => (XDP_REDIRECT, Stage::OnXdpRedirect),
        _ => (XDP_DROP, Stage::OnXdpDrop),
    }
}

/// A snapshot of every counter slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    slots: Vec<CounterValue>,
}

impl Counters {
    pub(super) fn from_slots(slots: Vec<CounterValue>) -> Self {
        Self { slots }
    }

    /// One reason counter, e.g. `abi::MZ_DELIVER_LOCAL`.
    pub fn get(&self, counter: Counter) -> CounterValue {
        self.slots
            .get(counter as usize)
            .copied()
            .unwrap_or_default()
    }

    pub fn packets(&self, counter: Counter) -> u64 {
        self.get(counter).packets
    }

    /// What entered a stage of transit: the sum of the transit reasons that end there (each
    /// transit packet counts exactly one reason, and each reason belongs to one stage, so the
    /// program spends no second counter update per packet on the stage).
    pub fn stage(&self, stage: Stage) -> CounterValue {
        COUNTER_INFO
            .iter()
            .filter(|info| {
                !info.name.starts_with("egress_") && reason_outcome(info.name).1 == stage
            })
            .map(|info| self.get(info.slot))
            .fold(CounterValue::default(), |sum, v| CounterValue {
                packets: sum.packets + v.packets,
                bytes: sum.bytes + v.bytes,
            })
    }

    /// Reason counters that are not zero, with their names.
    pub fn nonzero_reasons(
        &self,
    ) -> impl Iterator<Item = (&'static CounterInfo, CounterValue)> + '_ {
        COUNTER_INFO
            .iter()
            .map(|info| (info, self.get(info.slot)))
            .filter(|(_, v)| v.packets != 0)
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let slots = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, now)| {
                let then = earlier.slots.get(i).copied().unwrap_or_default();
                CounterValue {
                    packets: now.packets.saturating_sub(then.packets),
                    bytes: now.bytes.saturating_sub(then.bytes),
                }
            })
            .collect();
        Counters { slots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_per_slot() {
        let mut before = vec![CounterValue::default(); abi::MZ_COUNTER_SLOTS as usize];
        let mut after = before.clone();
        before[abi::MZ_DELIVER_LOCAL as usize] = CounterValue {
            packets: 2,
            bytes: 200,
        };
        after[abi::MZ_DELIVER_LOCAL as usize] = CounterValue {
            packets: 5,
            bytes: 500,
        };
        let delta = Counters::from_slots(after).since(&Counters::from_slots(before));
        assert_eq!(
            delta.get(abi::MZ_DELIVER_LOCAL),
            CounterValue {
                packets: 3,
                bytes: 300
            }
        );
        let names: Vec<_> = delta.nonzero_reasons().map(|(info, _)| info.name).collect();
        assert_eq!(names, ["deliver_local"]);
    }
}
