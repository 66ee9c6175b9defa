//! `mizar capture`: taps placed in this host's chains for the time of a capture, their records
//! read from the kernel's ring buffer and written as pcapng (one interface per tap point) or
//! pcap.
//!
//! A tap point is a stage's decision (`redirect`: after the stage's functions, with the
//! decision they leave) or a place around one of its functions (`redirect:2:before`,
//! `redirect:2:after`). The capture publishes each tapped stage's chain with its taps as a
//! whole new generation, outside the store, and publishes the store's chains again when it
//! ends; a capture that dies leaves its taps running until the next capture, `mizar up` or any
//! chain change publishes the store's chains (`mizar status` names them meanwhile).

use std::{
    collections::BTreeMap,
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use mizar_captures::{CaptureWriter, Format, TapRecord};
use mizar_ebpf::{
    COUNTER_INFO, TAP_FUNCTION, abi, ip_be,
    maps::{TAP_CONFIG, TAP_STATS, TAPS},
};

use crate::{
    dataplane::{CHAIN_POINTS, ChainLink, Chains, DataplaneError, Ipv4Net, Stage, open_map},
    fabric::{FabricError, Instance},
};

/// Where a tap sits in a stage's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TapAt {
    /// Before the function at this position (from 1).
    Before(usize),
    /// After it.
    After(usize),
    /// After the whole chain: the decision as the stage's exit applies it.
    Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TapPoint {
    pub stage: Stage,
    pub at: TapAt,
}

impl std::str::FromStr for TapPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "a tap point is STAGE (its decision), STAGE:N:before or STAGE:N:after \
                     (around its N-th function), e.g. redirect or redirect:1:after";
        let mut parts = s.split(':');
        let stage_name = parts.next().unwrap_or_default();
        let canonical = mizar_db::parse_stage(stage_name).map_err(|e| format!("{s:?}: {e}"))?;
        let stage = CHAIN_POINTS
            .iter()
            .copied()
            .find(|p| p.name() == canonical)
            .ok_or_else(|| format!("{s:?}: {usage}"))?;
        let at = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => TapAt::Decision,
            (Some(n), Some(side), None) => {
                let n: usize = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("{s:?}: {n:?} is not a position from 1; {usage}"))?;
                match side {
                    "before" => TapAt::Before(n),
                    "after" => TapAt::After(n),
                    _ => {
                        return Err(format!(
                            "{s:?}: {side:?} is neither before nor after; {usage}"
                        ));
                    }
                }
            }
            _ => return Err(format!("{s:?}: {usage}")),
        };
        Ok(Self { stage, at })
    }
}

/// What a capture keeps: evaluated in the kernel before anything is copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    /// The packet's VNI (None: any).
    pub vni: Option<u32>,
    pub src: Option<Ipv4Net>,
    pub dst: Option<Ipv4Net>,
    /// Inner IPv4 protocol.
    pub proto: Option<u8>,
    /// Inner TCP or UDP port, source or destination.
    pub port: Option<u16>,
    /// The decision's reason (a counter's slot).
    pub reason: Option<u32>,
    /// Only packets whose decision at the tap is to drop them.
    pub drops_only: bool,
}

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub points: Vec<TapPoint>,
    pub filter: CaptureFilter,
    pub snaplen: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub format: Format,
}

/// How a capture went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    pub captured: u64,
    /// Seen by a tap, not matching the filter.
    pub filtered: u64,
    /// Matching, but lost because the reader fell behind (packets are never held up).
    pub lost: u64,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

fn now_monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "aborted",
        1 => "drop",
        2 => "pass",
        3 => "tx",
        4 => "redirect",
        _ => "?",
    }
}

/// One tap placed: its instance, the point, and its name in the file.
struct Placed {
    instance: u16,
    name: String,
}

impl Instance {
    /// Runs a capture until `options` says it is done or `stop` is set, writing to `out`;
    /// `progress` is told the count as it grows. Refuses bad points before anything is placed.
    pub fn capture(
        &self,
        options: &CaptureOptions,
        out: impl Write,
        stop: &AtomicBool,
        mut progress: impl FnMut(u64),
    ) -> Result<CaptureSummary, FabricError> {
        if !self.is_up() {
            return Err(FabricError::Dataplane(DataplaneError::Invalid(
                "the data plane is down: nothing to capture; run `mizar up` first".to_owned(),
            )));
        }
        let store = self.existing_store()?;
        let underlay = store
            .this_host()?
            .and_then(|h| h.interface)
            .unwrap_or_else(|| "underlay".to_owned());
        let chains = store.chains(None)?;
        // Each tapped stage's chain with its taps, and the taps' names.
        let mut placed: Vec<Placed> = Vec::new();
        let mut plans: BTreeMap<Stage, Vec<ChainLink>> = BTreeMap::new();
        let mut points = options.points.clone();
        points.sort();
        points.dedup();
        for stage in CHAIN_POINTS {
            let at: Vec<TapAt> = points
                .iter()
                .filter(|p| p.stage == stage)
                .map(|p| p.at)
                .collect();
            if at.is_empty() {
                continue;
            }
            let rows: Vec<_> = chains
                .get(stage.name())
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|r| r.enabled)
                .collect();
            let mut links = Vec::new();
            let mut tap = |label: String, links: &mut Vec<ChainLink>| {
                let instance = abi::MZ_CAPTURE_INSTANCE_BASE as u16 + placed.len() as u16;
                placed.push(Placed {
                    instance,
                    name: format!("{underlay}:{}:{label}", stage.name()),
                });
                links.push(ChainLink {
                    instance,
                    function: TAP_FUNCTION.to_owned(),
                });
            };
            for a in &at {
                if let TapAt::Before(n) | TapAt::After(n) = a
                    && *n > rows.len()
                {
                    return Err(FabricError::Dataplane(DataplaneError::Invalid(format!(
                        "{} has {} function(s) running: there is no function {n} to tap \
                         around (see mizar chain show --stage {})",
                        stage.name(),
                        rows.len(),
                        stage.name()
                    ))));
                }
            }
            for (i, row) in rows.iter().enumerate() {
                if at.contains(&TapAt::Before(i + 1)) {
                    tap(format!("{}:before", row.function), &mut links);
                }
                links.push(ChainLink {
                    instance: row.instance,
                    function: row.function.clone(),
                });
                if at.contains(&TapAt::After(i + 1)) {
                    tap(format!("{}:after", row.function), &mut links);
                }
            }
            if at.contains(&TapAt::Decision) {
                tap("decision".to_owned(), &mut links);
            }
            if links.len() > abi::MZ_MAX_CHAIN as usize {
                return Err(FabricError::Dataplane(DataplaneError::Invalid(format!(
                    "{} runs {} functions: {} taps more exceed the {} a chain holds; tap fewer \
                     points there",
                    stage.name(),
                    rows.len(),
                    links.len() - rows.len(),
                    abi::MZ_MAX_CHAIN
                ))));
            }
            plans.insert(stage, links);
        }
        if placed.len() > (abi::MZ_MAX_FN_INSTANCES - abi::MZ_CAPTURE_INSTANCE_BASE) as usize {
            return Err(FabricError::Dataplane(DataplaneError::Invalid(format!(
                "{} tap points are more than a capture places",
                placed.len()
            ))));
        }

        let pins = self.pins();
        let mut ring: RingBuf<MapData> = open_map(&pins, TAPS)?;
        let mut config: Array<MapData, abi::mz_tap_config> = open_map(&pins, TAP_CONFIG)?;
        let stats: PerCpuArray<MapData, abi::mz_tap_stats> = open_map(&pins, TAP_STATS)?;
        let names: Vec<String> = placed.iter().map(|p| p.name.clone()).collect();
        let mut writer = CaptureWriter::new(out, options.format, &names, options.snaplen)
            .map_err(|e| DataplaneError::Invalid(format!("the capture file: {e}")))?;

        // The filter first, then the taps; stale records of an earlier capture are skipped.
        let prefix = |net: Option<Ipv4Net>| match net {
            Some(n) => (ip_be(n.network()), ip_be(n.netmask())),
            None => (0, 0),
        };
        let (src_be, src_mask_be) = prefix(options.filter.src);
        let (dst_be, dst_mask_be) = prefix(options.filter.dst);
        config
            .set(
                0,
                abi::mz_tap_config {
                    vni: options.filter.vni.unwrap_or(0),
                    snaplen: options.snaplen.min(abi::MZ_TAP_SNAP_MAX),
                    src_be,
                    src_mask_be,
                    dst_be,
                    dst_mask_be,
                    proto: options.filter.proto.map_or(0, u32::from),
                    flags: if options.filter.drops_only {
                        abi::MZ_TAP_DROPS_ONLY
                    } else {
                        0
                    },
                    reason_plus_one: options.filter.reason.map_or(0, |r| r + 1),
                    port_be: options.filter.port.map_or(0, u16::to_be),
                    pad: 0,
                },
                0,
            )
            .map_err(map_err(TAP_CONFIG))?;
        let before = sum_stats(&stats)?;
        while ring.next().is_some() {}
        let point_of: BTreeMap<u16, u32> = placed
            .iter()
            .enumerate()
            .map(|(i, p)| (p.instance, i as u32))
            .collect();
        let vpc_names: BTreeMap<u32, String> =
            store.vpcs()?.into_iter().map(|v| (v.vni, v.name)).collect();
        // Monotonic to wall clock, once.
        let wall_offset = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            - now_monotonic_ns();

        let result = (|| -> Result<u64, FabricError> {
            {
                let _lock = self.lock()?;
                // Taps an earlier capture left (it died) go before this one places its own.
                self.publish_chains(&store)?;
                let mut chains = Chains::open(&pins)?;
                for (stage, links) in &plans {
                    chains.publish(*stage, links)?;
                }
            }
            let started = Instant::now();
            let mut captured = 0u64;
            let mut last_progress = Instant::now();
            loop {
                let done = stop.load(Ordering::Relaxed)
                    || options.count.is_some_and(|c| captured >= c)
                    || options.duration.is_some_and(|d| started.elapsed() >= d);
                if done {
                    break;
                }
                let Some(item) = ring.next() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let bytes: &[u8] = &item;
                let header_len = std::mem::size_of::<abi::mz_tap_header>();
                if bytes.len() < header_len {
                    continue;
                }
                // SAFETY: the kernel wrote a struct mz_tap_header at the record's start.
                let h: abi::mz_tap_header =
                    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                let Some(&point) = point_of.get(&(h.instance as u16)) else {
                    continue;
                };
                let data_end = (header_len + h.cap_len as usize).min(bytes.len());
                let reason = COUNTER_INFO.get(h.reason as usize).map_or("?", |c| c.name);
                let stage = CHAIN_POINTS
                    .iter()
                    .find(|s| s.slot() == h.stage)
                    .map_or("?", |s| s.name());
                let vpc = vpc_names.get(&h.vni).map_or("-", String::as_str);
                let record = TapRecord {
                    point,
                    timestamp_ns: h.timestamp_ns + wall_offset,
                    packet_id: h.packet_id,
                    verdict: Some(h.verdict),
                    comment: Some(format!(
                        "stage {stage} verdict {} reason {reason} vni {} vpc {vpc}",
                        verdict_name(h.verdict),
                        h.vni
                    )),
                    data: bytes[header_len..data_end].to_vec(),
                    original_len: h.len,
                };
                drop(item);
                writer
                    .write(&record)
                    .map_err(|e| DataplaneError::Invalid(format!("writing the capture: {e}")))?;
                captured += 1;
                if last_progress.elapsed() >= Duration::from_millis(200) {
                    progress(captured);
                    last_progress = Instant::now();
                }
            }
            progress(captured);
            Ok(captured)
        })();

        // Whatever happened: the store's chains run again, the filter matches nothing.
        let restore = {
            let _lock = self.lock()?;
            self.publish_chains(&store)
        };
        let _ = config.set(
            0,
            abi::mz_tap_config {
                vni: u32::MAX,
                ..abi::mz_tap_config::default()
            },
            0,
        );
        let captured = result?;
        restore?;
        let mut out = writer.into_inner();
        out.flush()
            .map_err(|e| DataplaneError::Invalid(format!("writing the capture: {e}")))?;
        let after = sum_stats(&stats)?;
        Ok(CaptureSummary {
            captured,
            filtered: after.filtered - before.filtered,
            lost: after.lost - before.lost,
        })
    }
}

fn sum_stats(
    stats: &PerCpuArray<MapData, abi::mz_tap_stats>,
) -> Result<abi::mz_tap_stats, DataplaneError> {
    let values = stats.get(&0, 0).map_err(map_err(TAP_STATS))?;
    Ok(values
        .iter()
        .fold(abi::mz_tap_stats::default(), |s, v| abi::mz_tap_stats {
            records: s.records + v.records,
            filtered: s.filtered + v.filtered,
            lost: s.lost + v.lost,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_points_parse_as_the_cli_writes_them_and_bad_ones_say_why() {
        let p: TapPoint = "redirect".parse().unwrap();
        assert_eq!((p.stage, p.at), (Stage::OnXdpRedirect, TapAt::Decision));
        let p: TapPoint = "ON_EGRESS:2:before".parse().unwrap();
        assert_eq!((p.stage, p.at), (Stage::OnEgress, TapAt::Before(2)));
        for (bad, wanted) in [
            ("nowhere", "ON_XDP_TX"),
            ("redirect:0:after", "not a position from 1"),
            ("redirect:1:around", "neither before nor after"),
            ("redirect:1", "a tap point is STAGE"),
        ] {
            let err = bad.parse::<TapPoint>().unwrap_err();
            assert!(err.contains(wanted), "{bad}: {err}");
        }
    }
}
