//! `mizar capture`: taps at points of this host's pipeline for the time of a capture, their
//! records read from the kernel's ring buffer and written as pcapng (one interface per tap
//! point and interface) or pcap.
//!
//! Tap points: the entry and the verdict of transit (`transit:entry`, `transit:verdict`) and
//! of egress (`egress:entry`, `egress:verdict`), flags the tapped programs test; a stage's
//! decision after its functions (`redirect`); around one of its functions
//! (`redirect:2:before`, `redirect:2:after`). For its time a capture attaches the copies of transit and egress built
//! with the taps in place of the plain ones (which hold no tap code), and publishes each tapped
//! stage's chain with its taps as a whole new generation, outside the store; when it ends it puts
//! the plain programs and the store's chains back. A capture that dies leaves its taps until the
//! next capture or `mizar up` removes them (`mizar status` names them meanwhile), and its filter
//! copies nothing after it.

pub mod filter;

use std::{
    collections::BTreeMap,
    io::Write,
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use mizar_captures::{CaptureWriter, Format, TapRecord};
use mizar_db::Store;
use mizar_ebpf::{
    COUNTER_INFO, TAP_FUNCTION, abi,
    maps::{TAP_FILTER, TAP_STATS, TAPS},
};

pub use filter::{CompiledFilter, Expr, FilterError, NameResolver};

use crate::{
    dataplane::{
        CHAIN_POINTS, ChainLink, Chains, DataplaneError, Stage, open_map, use_tapped_programs,
        verdict_name,
    },
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

/// A place a capture taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TapPoint {
    /// Frames as they reach transit, before any decision.
    TransitEntry,
    /// Frames as transit lets them go (decapsulated, re-addressed) or drops them.
    TransitVerdict,
    /// Frames as an endpoint sent them.
    EgressEntry,
    /// Frames as egress lets them go (encapsulated) or drops them.
    EgressVerdict,
    /// A place in a stage's chain.
    Chain { stage: Stage, at: TapAt },
}

const POINT_USAGE: &str = "a tap point is transit:entry, transit:verdict, egress:entry, \
                           egress:verdict, STAGE (its decision), STAGE:N:before or STAGE:N:after \
                           (around its N-th function), e.g. redirect or redirect:1:after";

impl TapPoint {
    /// The kernel's point (enum mz_tap_point) for points outside the chains.
    fn kernel_point(self) -> Option<u32> {
        match self {
            TapPoint::TransitEntry => Some(abi::MZ_TAP_TRANSIT_ENTRY),
            TapPoint::TransitVerdict => Some(abi::MZ_TAP_TRANSIT_VERDICT),
            TapPoint::EgressEntry => Some(abi::MZ_TAP_EGRESS_ENTRY),
            TapPoint::EgressVerdict => Some(abi::MZ_TAP_EGRESS_VERDICT),
            TapPoint::Chain { .. } => None,
        }
    }

    fn label_of(point: u32) -> &'static str {
        match point {
            abi::MZ_TAP_TRANSIT_ENTRY => "transit:entry",
            abi::MZ_TAP_TRANSIT_VERDICT => "transit:verdict",
            abi::MZ_TAP_EGRESS_ENTRY => "egress:entry",
            abi::MZ_TAP_EGRESS_VERDICT => "egress:verdict",
            _ => "?",
        }
    }
}

impl std::str::FromStr for TapPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "transit:entry" => return Ok(TapPoint::TransitEntry),
            "transit:verdict" => return Ok(TapPoint::TransitVerdict),
            "egress:entry" => return Ok(TapPoint::EgressEntry),
            "egress:verdict" => return Ok(TapPoint::EgressVerdict),
            _ => {}
        }
        let mut parts = s.split(':');
        let stage_name = parts.next().unwrap_or_default();
        let canonical = mizar_db::parse_stage(stage_name)
            .map_err(|e| format!("{s:?}: {e}; or {POINT_USAGE}"))?;
        let stage = CHAIN_POINTS
            .iter()
            .copied()
            .find(|p| p.name() == canonical)
            .ok_or_else(|| format!("{s:?}: {POINT_USAGE}"))?;
        let at = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => TapAt::Decision,
            (Some(n), Some(side), None) => {
                let n: usize = n.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!("{s:?}: {n:?} is not a position from 1; {POINT_USAGE}")
                })?;
                match side {
                    "before" => TapAt::Before(n),
                    "after" => TapAt::After(n),
                    _ => {
                        return Err(format!(
                            "{s:?}: {side:?} is neither before nor after; {POINT_USAGE}"
                        ));
                    }
                }
            }
            _ => return Err(format!("{s:?}: {POINT_USAGE}")),
        };
        Ok(TapPoint::Chain { stage, at })
    }
}

#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub points: Vec<TapPoint>,
    /// A filter expression (see [`filter`]); empty: every packet.
    pub filter: String,
    pub snaplen: u32,
    /// Record one matching packet in N (per CPU); 0 and 1: every one.
    pub sample_every: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub format: Format,
    /// Hand each packet, decoded, to the progress callback (the dashboard's list).
    pub describe: bool,
}

/// A captured packet, decoded for a list (the dashboard's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// CLOCK_MONOTONIC, as the kernel stamped it.
    pub monotonic_ns: u64,
    pub packet_id: u64,
    /// The file's interface: `ul0:transit:entry`, ...
    pub point: String,
    pub verdict: Option<&'static str>,
    /// One line, tcpdump-like.
    pub summary: String,
    pub comment: String,
}

/// How a capture goes, as it goes.
pub enum Progress<'a> {
    /// Packets captured so far (every 200 ms, and at the end).
    Count(u64),
    /// One more packet (with [`CaptureOptions::describe`]).
    Packet(&'a Seen),
}

/// How a capture went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    pub captured: u64,
    /// Seen by a tap, not matching the filter.
    pub filtered: u64,
    /// Matching, but lost because the reader fell behind (packets are never held up).
    pub lost: u64,
    /// Matching, skipped by the sampling rate.
    pub sampled_out: u64,
}

impl std::fmt::Display for CaptureSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} packets captured; {} seen but filtered out; {} lost (the reader fell behind; \
             packets are never held up)",
            self.captured, self.filtered, self.lost
        )?;
        if self.sampled_out > 0 {
            write!(f, "; {} left out by sampling", self.sampled_out)?;
        }
        Ok(())
    }
}

/// A frame in one line, tcpdump-like: `192.168.0.2 > 192.168.0.1 geneve vni 100: 10.0.0.2.40000
/// > 10.0.0.3.7777 udp`, `10.0.0.2 > 10.0.0.3 icmp type 8`, `ethertype 0x0806`.
pub fn describe_frame(frame: &[u8]) -> String {
    use filter::{Field, Fields};
    let mut f = Fields::default();
    f.read_frame(frame, 0);
    if frame.len() < 14 {
        return format!("{} bytes, shorter than an Ethernet header", frame.len());
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype != 0x0800 || f.get(Field::OuterSrc) == 0 && f.get(Field::OuterProto) == 0 {
        return format!("ethertype 0x{ethertype:04x}, {} bytes", frame.len());
    }
    let ip = |v: u32| Ipv4Addr::from(v).to_string();
    // The innermost packet: a Geneve frame's inner one, else the frame's own.
    let inner = || {
        let (s, d, p) = (
            f.get(Field::InnerSrc),
            f.get(Field::InnerDst),
            f.get(Field::InnerProto),
        );
        let name = match p {
            1 => "icmp".to_owned(),
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            132 => "sctp".to_owned(),
            n => format!("proto {n}"),
        };
        match p {
            6 | 17 => format!(
                "{}.{} > {}.{} {name}",
                ip(s),
                f.get(Field::InnerSport),
                ip(d),
                f.get(Field::InnerDport)
            ),
            _ => format!("{} > {} {name}", ip(s), ip(d)),
        }
    };
    let mut text = if f.get(Field::Geneve) == 1 {
        format!(
            "{} > {} geneve vni {}: {}",
            ip(f.get(Field::OuterSrc)),
            ip(f.get(Field::OuterDst)),
            f.get(Field::Vni),
            if f.get(Field::InnerSrc) == 0 && f.get(Field::InnerProto) == 0 {
                "not IPv4".to_owned()
            } else {
                inner()
            }
        )
    } else {
        inner()
    };
    if f.get(Field::IcmpType) > 0 {
        text.push_str(&match f.get(Field::IcmpType) - 1 {
            0 => " echo reply".to_owned(),
            8 => " echo request".to_owned(),
            3 => " unreachable".to_owned(),
            11 => " time exceeded".to_owned(),
            t => format!(" type {t}"),
        });
    }
    let flags = f.get(Field::TcpFlags);
    if f.get(Field::InnerProto) == 6 && flags != 0 {
        let names: Vec<&str> = [
            (0x02, "S"),
            (0x10, "."),
            (0x01, "F"),
            (0x04, "R"),
            (0x08, "P"),
        ]
        .into_iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| n)
        .collect();
        text.push_str(&format!(" [{}]", names.concat()));
    }
    text
}

/// The store's names, for filters.
struct StoreNames<'a>(&'a Store);

impl NameResolver for StoreNames<'_> {
    fn vpc(&self, name: &str) -> Result<u32, String> {
        self.0.vpc(name).map(|v| v.vni).map_err(|e| e.to_string())
    }

    fn endpoint(&self, name: &str) -> Result<(u32, Ipv4Addr), String> {
        let vni_of = |vpc: &str| self.vpc(vpc);
        if let Some((vpc, ep)) = name.split_once('/') {
            let ep = self.0.endpoint(vpc, ep).map_err(|e| e.to_string())?;
            return Ok((vni_of(vpc)?, ep.ip));
        }
        let found: Vec<_> = self
            .0
            .endpoints(None)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|e| e.name == name)
            .collect();
        match found.as_slice() {
            [ep] => Ok((vni_of(&ep.vpc)?, ep.ip)),
            [] => Err(format!(
                "no endpoint is named {name:?} (see mizar ep list; write VPC/NAME)"
            )),
            many => Err(format!(
                "endpoints named {name:?} are in VPCs {}: write VPC/NAME",
                many.iter()
                    .map(|e| e.vpc.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Parses a filter expression and resolves its names against the store: what a capture
/// would run, or why it cannot.
pub fn compile_filter(store: &Store, text: &str) -> Result<CompiledFilter, String> {
    let expr = filter::parse(text).map_err(|e| e.to_string())?;
    let expr = expr
        .resolve(&StoreNames(store))
        .map_err(|e| format!("the filter: {e}"))?;
    CompiledFilter::compile(&expr).map_err(|e| format!("the filter: {e}"))
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

fn now_monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// One tap placed in a chain: its instance, and its label in the file.
struct Placed {
    instance: u16,
    label: String,
}

/// An interface's name (the capture runs in the data plane's network namespace).
fn interface_name(ifindex: u32) -> String {
    nix::net::if_::if_indextoname(ifindex)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("if{ifindex}"))
}

/// The chain each tapped stage runs during a capture.
type TappedChains = BTreeMap<Stage, Vec<ChainLink>>;

/// The chains each tapped stage runs during the capture (the store's enabled functions with
/// the taps among them), and the taps placed.
fn plan_chain_taps(
    store: &Store,
    points: &[TapPoint],
) -> Result<(TappedChains, Vec<Placed>), FabricError> {
    let invalid = |m: String| FabricError::Dataplane(DataplaneError::Invalid(m));
    let chains = store.chains(None)?;
    let mut placed: Vec<Placed> = Vec::new();
    let mut plans = TappedChains::new();
    for stage in CHAIN_POINTS {
        let at: Vec<TapAt> = points
            .iter()
            .filter_map(|p| match p {
                TapPoint::Chain { stage: s, at } if *s == stage => Some(*at),
                _ => None,
            })
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
        for a in &at {
            if let TapAt::Before(n) | TapAt::After(n) = a
                && *n > rows.len()
            {
                return Err(invalid(format!(
                    "{} has {} function(s) running: there is no function {n} to tap around \
                     (see mizar chain show --stage {})",
                    stage.name(),
                    rows.len(),
                    stage.name()
                )));
            }
        }
        let mut links = Vec::new();
        let mut tap = |label: String, links: &mut Vec<ChainLink>| {
            let instance = abi::MZ_CAPTURE_INSTANCE_BASE as u16 + placed.len() as u16;
            placed.push(Placed {
                instance,
                label: format!("{}{label}", stage.name()),
            });
            links.push(ChainLink {
                instance,
                function: TAP_FUNCTION.to_owned(),
            });
        };
        for (i, row) in rows.iter().enumerate() {
            if at.contains(&TapAt::Before(i + 1)) {
                tap(format!(":{}:before", row.function), &mut links);
            }
            links.push(ChainLink {
                instance: row.instance,
                function: row.function.clone(),
            });
            if at.contains(&TapAt::After(i + 1)) {
                tap(format!(":{}:after", row.function), &mut links);
            }
        }
        if at.contains(&TapAt::Decision) {
            tap(String::new(), &mut links);
        }
        if links.len() > abi::MZ_MAX_CHAIN as usize {
            return Err(invalid(format!(
                "{} runs {} functions: {} taps more exceed the {} a chain holds; tap fewer \
                 points there",
                stage.name(),
                rows.len(),
                links.len() - rows.len(),
                abi::MZ_MAX_CHAIN
            )));
        }
        plans.insert(stage, links);
    }
    if placed.len() > (abi::MZ_MAX_FN_INSTANCES - abi::MZ_CAPTURE_INSTANCE_BASE) as usize {
        return Err(invalid(format!(
            "{} tap points are more than a capture places",
            placed.len()
        )));
    }
    Ok((plans, placed))
}

/// Turns tap records into the file's interfaces and comments.
struct Namer {
    /// Chain taps by instance: their labels.
    taps: BTreeMap<u16, String>,
    /// Functions by instance: name and drop reasons (for the drops they decide).
    functions: BTreeMap<u16, (String, Vec<String>)>,
    vpcs: BTreeMap<u32, String>,
    /// (ifindex, label) -> the file's interface.
    interfaces: BTreeMap<(u32, String), u32>,
    /// The file's interfaces' names, by index.
    names: Vec<String>,
}

impl Namer {
    fn label(&self, h: &abi::mz_tap_header) -> Option<String> {
        if h.point == abi::MZ_TAP_CHAIN {
            self.taps.get(&(h.instance as u16)).cloned()
        } else if h.point < abi::MZ_TAP_POINTS {
            Some(TapPoint::label_of(h.point).to_owned())
        } else {
            None
        }
    }

    fn comment(&self, h: &abi::mz_tap_header) -> String {
        let vpc = self.vpcs.get(&h.vni).map_or("-", String::as_str);
        if h.verdict == abi::MZ_TAP_NONE {
            return format!("entry vni {} vpc {vpc}", h.vni);
        }
        let reason = COUNTER_INFO.get(h.reason as usize).map_or("?", |c| c.name);
        let stage = CHAIN_POINTS
            .iter()
            .find(|s| s.slot() == h.stage)
            .map_or("-", |s| s.name());
        let mut comment = format!(
            "stage {stage} verdict {} reason {reason} vni {} vpc {vpc}",
            verdict_name(h.verdict),
            h.vni
        );
        if h.fn_drop > 0 {
            let (function, why) = match self.functions.get(&(h.instance as u16)) {
                Some((name, reasons)) => (
                    name.as_str(),
                    reasons
                        .get(h.fn_drop as usize - 1)
                        .cloned()
                        .unwrap_or_else(|| format!("reason {}", h.fn_drop - 1)),
                ),
                None => ("a function", format!("reason {}", h.fn_drop - 1)),
            };
            comment.push_str(&format!(" dropped by {function}: {why}"));
        }
        comment
    }
}

/// Turns the ring's records into the capture file: interfaces made as points and interfaces
/// first appear, timestamps to wall-clock time, comments.
pub struct Exporter<W: Write> {
    writer: CaptureWriter<W>,
    namer: Namer,
    /// CLOCK_MONOTONIC to the Unix epoch, in ns.
    wall_offset: u64,
    /// Decode each packet exported into `seen`.
    describe: bool,
    seen: Option<Seen>,
}

impl<W: Write> Exporter<W> {
    fn new(writer: CaptureWriter<W>, namer: Namer) -> Self {
        let wall_offset = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            - now_monotonic_ns();
        Self {
            writer,
            namer,
            wall_offset,
            describe: false,
            seen: None,
        }
    }

    /// The last packet exported, decoded (when the exporter describes packets).
    pub fn take_seen(&mut self) -> Option<Seen> {
        self.seen.take()
    }

    /// An exporter for taps outside the chains, with no names of functions or VPCs (the
    /// benchmark's).
    pub fn bare(writer: CaptureWriter<W>) -> Self {
        Self::new(
            writer,
            Namer {
                taps: BTreeMap::new(),
                functions: BTreeMap::new(),
                vpcs: BTreeMap::new(),
                interfaces: BTreeMap::new(),
                names: Vec::new(),
            },
        )
    }

    /// Writes one record of the ring; returns whether it was one of this capture's points.
    pub fn export(&mut self, bytes: &[u8]) -> Result<bool, String> {
        let header_len = std::mem::size_of::<abi::mz_tap_header>();
        if bytes.len() < header_len {
            return Ok(false);
        }
        // SAFETY: the kernel wrote a struct mz_tap_header at the record's start.
        let h: abi::mz_tap_header = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let Some(label) = self.namer.label(&h) else {
            return Ok(false);
        };
        let key = (h.ifindex, label);
        let point = match self.namer.interfaces.get(&key) {
            Some(p) => *p,
            None => {
                let name = format!("{}:{}", interface_name(h.ifindex), key.1);
                let p = self
                    .writer
                    .add_interface(&name)
                    .map_err(|e| format!("writing the capture: {e}"))?;
                self.namer.interfaces.insert(key, p);
                self.namer.names.push(name);
                p
            }
        };
        let data_end = (header_len + h.cap_len as usize).min(bytes.len());
        let record = TapRecord {
            point,
            timestamp_ns: h.timestamp_ns + self.wall_offset,
            packet_id: h.packet_id,
            verdict: (h.verdict != abi::MZ_TAP_NONE).then_some(h.verdict),
            comment: Some(self.namer.comment(&h)),
            data: bytes[header_len..data_end].to_vec(),
            original_len: h.len,
        };
        self.writer
            .write(&record)
            .map_err(|e| format!("writing the capture: {e}"))?;
        if self.describe {
            self.seen = Some(Seen {
                monotonic_ns: h.timestamp_ns,
                packet_id: h.packet_id,
                point: self.namer.names[point as usize].clone(),
                verdict: record.verdict.map(verdict_name),
                summary: describe_frame(&record.data),
                comment: record.comment.unwrap_or_default(),
            });
        }
        Ok(true)
    }

    /// The file's writer (flush it).
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}

impl Instance {
    /// Opens a capture's file: `path`, or a new one in the state directory's `captures/`;
    /// readable by its owner only.
    pub fn capture_file(
        &self,
        path: Option<&std::path::Path>,
        format: Format,
    ) -> Result<(std::fs::File, std::path::PathBuf), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = match path {
            Some(p) => p.to_owned(),
            None => {
                let dir = self.state_dir.join("captures");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let stamp = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                let ext = match format {
                    Format::Pcap => "pcap",
                    Format::PcapNg => "pcapng",
                };
                dir.join(format!(
                    "capture-{}-{:03}.{ext}",
                    stamp.as_secs(),
                    stamp.subsec_millis()
                ))
            }
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok((file, path))
    }

    /// Clears what a capture sets (its flags and filter) and publishes the store's chains
    /// (which removes its taps): a capture that died leaves nothing running after this.
    pub(crate) fn clear_capture(&self, store: &Store) -> Result<(), FabricError> {
        self.stop_taps()?;
        self.publish_chains(store)?;
        Ok(())
    }

    /// Clears a capture's flags (no tap outside the chains, no packet numbering) and its filter
    /// (taps left in the chains copy nothing).
    pub(crate) fn stop_taps(&self) -> Result<(), FabricError> {
        let pins = self.pins();
        use_tapped_programs(&pins, false)?;
        Chains::open(&pins)?.set_tap_flags(0)?;
        let mut filter: Array<MapData, abi::mz_tap_filter> = open_map(&pins, TAP_FILTER)?;
        filter
            .set(0, abi::mz_tap_filter::default(), 0)
            .map_err(map_err(TAP_FILTER))?;
        Ok(())
    }

    /// Runs a capture until `options` says it is done or `stop` is set, writing to `out`;
    /// `progress` is told the count as it grows. Refuses bad points and filters before
    /// anything is placed.
    pub fn capture(
        &self,
        options: &CaptureOptions,
        out: impl Write,
        stop: &AtomicBool,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<CaptureSummary, FabricError> {
        let invalid = |m: String| FabricError::Dataplane(DataplaneError::Invalid(m));
        if !self.is_up() {
            return Err(invalid(
                "the data plane is down: nothing to capture; run `mizar up` first".to_owned(),
            ));
        }
        let store = self.existing_store()?;
        let compiled = compile_filter(&store, &options.filter).map_err(invalid)?;
        let mut points = options.points.clone();
        points.sort();
        points.dedup();
        let (plans, placed) = plan_chain_taps(&store, &points)?;
        let flags = points
            .iter()
            .filter_map(|p| p.kernel_point())
            .fold(abi::MZ_HOST_TAPPING, |f, p| f | (1 << (1 + p)));

        let pins = self.pins();
        let mut ring: RingBuf<MapData> = open_map(&pins, TAPS)?;
        let mut filter: Array<MapData, abi::mz_tap_filter> = open_map(&pins, TAP_FILTER)?;
        let stats: PerCpuArray<MapData, abi::mz_tap_stats> = open_map(&pins, TAP_STATS)?;
        let snaplen = options.snaplen.min(abi::MZ_TAP_SNAP_MAX);
        let writer = CaptureWriter::new(out, options.format, &[], snaplen)
            .map_err(|e| invalid(format!("the capture file: {e}")))?;
        let namer = Namer {
            taps: placed
                .iter()
                .map(|p| (p.instance, p.label.clone()))
                .collect(),
            functions: self
                .chain_status(&store)?
                .into_iter()
                .flat_map(|c| {
                    let host = c
                        .links
                        .into_iter()
                        .map(|l| (l.link.instance, (l.link.function, l.drop_reasons)));
                    let scoped = c
                        .scoped
                        .into_iter()
                        .map(|l| (l.link.instance, (l.link.function, l.drop_reasons)));
                    host.chain(scoped).collect::<Vec<_>>()
                })
                .collect(),
            vpcs: store.vpcs()?.into_iter().map(|v| (v.vni, v.name)).collect(),
            interfaces: BTreeMap::new(),
            names: Vec::new(),
        };
        let mut exporter = Exporter::new(writer, namer);
        exporter.describe = options.describe;

        let before = sum_stats(&stats)?;
        let result = (|| -> Result<u64, FabricError> {
            {
                let _lock = self.lock()?;
                // What an earlier capture left (it died) goes before this one starts; then the
                // filter, the taps in the chains, and last the flags that start the numbering
                // and the taps outside the chains.
                self.clear_capture(&store)?;
                while ring.next().is_some() {}
                filter
                    .set(0, compiled.to_raw(snaplen, options.sample_every), 0)
                    .map_err(map_err(TAP_FILTER))?;
                let mut chains = Chains::open(&pins)?;
                for (stage, links) in &plans {
                    chains.publish(*stage, links)?;
                }
                chains.set_tap_flags(flags)?;
                // Last, the copies of transit and egress with the taps: they number the
                // packets (every point's records carry the ids) and tap the points flagged.
                use_tapped_programs(&pins, true)?;
            }
            let started = Instant::now();
            let mut captured = 0u64;
            let mut last_progress = Instant::now();
            // Once stopped (Ctrl-C, the duration), what the taps wrote before is still read,
            // up to a ring's worth, so that nothing caught goes missing from the file.
            let ring_records = abi::MZ_TAP_RING_BYTES as usize
                / (std::mem::size_of::<abi::mz_tap_header>() + abi::MZ_TAP_SNAP_MAX as usize);
            let mut draining: Option<usize> = None;
            loop {
                if options.count.is_some_and(|c| captured >= c) {
                    break;
                }
                if draining.is_none()
                    && (stop.load(Ordering::Relaxed)
                        || options.duration.is_some_and(|d| started.elapsed() >= d))
                {
                    draining = Some(ring_records);
                }
                if draining == Some(0) {
                    break;
                }
                let Some(item) = ring.next() else {
                    if draining.is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                if let Some(left) = draining.as_mut() {
                    *left -= 1;
                }
                let ours = exporter.export(&item).map_err(invalid)?;
                drop(item);
                if !ours {
                    continue;
                }
                if let Some(seen) = exporter.take_seen() {
                    progress(Progress::Packet(&seen));
                }
                captured += 1;
                if last_progress.elapsed() >= Duration::from_millis(200) {
                    progress(Progress::Count(captured));
                    last_progress = Instant::now();
                }
            }
            progress(Progress::Count(captured));
            Ok(captured)
        })();

        // Whatever happened: no tap runs, the store's chains run again.
        let restore = {
            let _lock = self.lock()?;
            self.clear_capture(&store)
        };
        let captured = result?;
        restore?;
        let mut out = exporter.into_inner();
        out.flush()
            .map_err(|e| invalid(format!("writing the capture: {e}")))?;
        let after = sum_stats(&stats)?;
        Ok(CaptureSummary {
            captured,
            filtered: after.filtered - before.filtered,
            lost: after.lost - before.lost,
            sampled_out: after.sampled_out - before.sampled_out,
        })
    }
}

/// The taps' counters, summed over CPUs (the sampling tick left out).
pub fn tap_stats(pins: &crate::dataplane::PinLayout) -> Result<abi::mz_tap_stats, DataplaneError> {
    sum_stats(&open_map(pins, TAP_STATS)?)
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
            sampled_out: s.sampled_out + v.sampled_out,
            sample_tick: 0,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_points_parse_as_the_cli_writes_them_and_bad_ones_say_why() {
        let p: TapPoint = "redirect".parse().unwrap();
        assert_eq!(
            p,
            TapPoint::Chain {
                stage: Stage::OnXdpRedirect,
                at: TapAt::Decision
            }
        );
        let p: TapPoint = "ON_EGRESS:2:before".parse().unwrap();
        assert_eq!(
            p,
            TapPoint::Chain {
                stage: Stage::OnEgress,
                at: TapAt::Before(2)
            }
        );
        assert_eq!("transit:entry".parse(), Ok(TapPoint::TransitEntry));
        assert_eq!("Egress:Verdict".parse(), Ok(TapPoint::EgressVerdict));
        for (bad, wanted) in [
            ("nowhere", "ON_XDP_TX"),
            ("redirect:0:after", "not a position from 1"),
            ("redirect:1:around", "neither before nor after"),
            ("redirect:1", "a tap point is transit:entry"),
            ("transit:middle", "a tap point is transit:entry"),
        ] {
            let err = bad.parse::<TapPoint>().unwrap_err();
            assert!(err.contains(wanted), "{bad}: {err}");
        }
    }
}
