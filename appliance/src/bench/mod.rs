//! `mizar bench`: nanoseconds per packet of every pipeline path, measured with
//! BPF_PROG_TEST_RUN beside a floor program (`mz_floor`: swap MACs, XDP_TX) in the same run.
//!
//! A repeated test run does not restore the packet between repetitions, so a path that rewrites
//! the packet would measure its own output from the second repetition on (a bouncer would count
//! its TTL down and end up measuring "TTL expired"). Such paths run through `mz_bench_wrap`,
//! which restores the original bytes and tail-calls the program under test; the wrapper's own
//! cost (wrapper tail-calling the floor, minus the floor, with the same packet) is measured in
//! the same round and reported, and subtracted for the "net" figures.
//!
//! Nothing is trusted blindly: before timing, every path runs once and must give its verdict and
//! count exactly its reason (a wrapped path must also produce the same bytes as the program run
//! directly), and after every timed run the reason counter must have grown by exactly the
//! number of repetitions, so a misconfigured benchmark cannot silently measure a drop path.

use std::{
    fmt::{self, Write as _},
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use mizar_ebpf::{
    BENCH_OBJECT, BENCH_RESIZE_PROGRAM, BENCH_SINK_PROGRAM, BENCH_WRAPPER_PROGRAM, COUNTER_INFO,
    FLOOR_PROGRAM, abi, maps as map_names,
};

use crate::dataplane::{
    AclAddrs, AclMaps, AclRule, AclVpc, ChainLink, Chains, Counter, Counters, Dataplane,
    DataplaneError, DdosMaps, DdosState, DesiredState, EndpointEntry, EndpointKind, HostConfig,
    Ipv4Net, MacAddr, MemberRoles, NetworkEntry, PinLayout, RateLimitMaps, RateRule, Stage,
    VpcEntry, ensure_bpffs, reconcile, remove_all_pins,
};

pub mod live;
pub mod taps;
use crate::packet::{InnerFrame, Tunnel, arp_request};

/// The repeat count below which a run is only a smoke test (`--quick`).
pub const MIN_REPEAT: u32 = 1_000_000;
/// Where benchmark instances pin: a bpffs under /run, one directory per run, removed afterwards.
pub const BENCH_BPFFS: &str = "/run/mizar-bench";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "--repeat {repeat} is below {MIN_REPEAT}: figures that short are noise; use --quick for a smoke run"
    )]
    RepeatTooLow { repeat: u32 },
    #[error("--repeat and --runs must be at least 1")]
    Zero,
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("cannot load the benchmark object: {0} (the kernel needs BPF support; run as root)")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("benchmark program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("benchmark map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("BPF_PROG_TEST_RUN of {subject}: {source}")]
    TestRun {
        subject: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "{subject}: expected {expected}, the program returned {got}: the benchmark is misconfigured"
    )]
    WrongVerdict {
        subject: String,
        expected: Verdict,
        got: String,
    },
    #[error(
        "{subject}: expected {expected} packets counted as {reason} and nothing else, counted: {counted}"
    )]
    WrongCounters {
        subject: String,
        reason: &'static str,
        expected: u64,
        counted: String,
    },
    #[error(
        "{subject}: through the wrapper the program produced other bytes than when run directly"
    )]
    WrapperChangedOutput { subject: String },
    #[error(
        "{subject}: a second repetition produced other bytes than the first: the path rewrites the packet and must run through the wrapper"
    )]
    NotRepeatable { subject: String },
    #[error("{0}")]
    Setup(String),
}

/// How much and how often to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchOptions {
    /// BPF_PROG_TEST_RUN repetitions per measurement (the kernel reports their average).
    pub repeat: u32,
    /// Measurements per path; the median is reported.
    pub runs: u32,
    /// A smoke run: any repeat count is accepted.
    pub quick: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            repeat: MIN_REPEAT,
            runs: 5,
            quick: false,
        }
    }
}

impl BenchOptions {
    /// A smoke run: checks every path, times it briefly. Figures are not worth recording.
    pub fn quick() -> Self {
        Self {
            repeat: 10_000,
            runs: 3,
            quick: true,
        }
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        if self.repeat == 0 || self.runs == 0 {
            return Err(BenchError::Zero);
        }
        if !self.quick && self.repeat < MIN_REPEAT {
            return Err(BenchError::RepeatTooLow {
                repeat: self.repeat,
            });
        }
        Ok(())
    }
}

/// An XDP verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
}

impl Verdict {
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Aborted => "XDP_ABORTED",
            Self::Drop => "XDP_DROP",
            Self::Pass => "XDP_PASS",
            Self::Tx => "XDP_TX",
            Self::Redirect => "XDP_REDIRECT",
        }
    }

    fn describe_raw(raw: u32) -> String {
        Self::from_raw(raw).map_or_else(|| format!("verdict {raw}"), |v| v.name().to_owned())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The program a path runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Transit,
    Egress,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Self::Transit => "transit",
            Self::Egress => "egress",
        }
    }
}

/// A pipeline path the benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    TransitPass,
    TransitLocal,
    TransitBypass,
    TransitBouncer,
    TransitDivider,
    TransitToDivider,
    TransitUnknownVpc,
    EgressToBouncer,
    EgressLocal,
    EgressArp,
}

/// Every path, in the order of the table.
pub const PATHS: [Path; 10] = [
    Path::TransitPass,
    Path::TransitLocal,
    Path::TransitBypass,
    Path::TransitBouncer,
    Path::TransitDivider,
    Path::TransitToDivider,
    Path::TransitUnknownVpc,
    Path::EgressToBouncer,
    Path::EgressLocal,
    Path::EgressArp,
];

impl Path {
    pub fn program(self) -> Program {
        match self {
            Self::EgressToBouncer | Self::EgressLocal | Self::EgressArp => Program::Egress,
            _ => Program::Transit,
        }
    }

    /// What the table calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::TransitPass => "pass (not Geneve)",
            Self::TransitLocal => "local delivery (decap + redirect)",
            Self::TransitBypass => "bypass-decap delivery",
            Self::TransitBouncer => "bouncer forward",
            Self::TransitDivider => "divider forward",
            Self::TransitToDivider => "to divider",
            Self::TransitUnknownVpc => "drop unknown VPC",
            Self::EgressToBouncer => "encapsulate to bouncer",
            Self::EgressLocal => "local delivery",
            Self::EgressArp => "proxy ARP reply",
        }
    }

    /// A stable identifier (JSON output).
    pub fn id(self) -> &'static str {
        match self {
            Self::TransitPass => "transit.pass",
            Self::TransitLocal => "transit.local",
            Self::TransitBypass => "transit.bypass_decap",
            Self::TransitBouncer => "transit.bouncer",
            Self::TransitDivider => "transit.divider",
            Self::TransitToDivider => "transit.to_divider",
            Self::TransitUnknownVpc => "transit.drop_unknown_vpc",
            Self::EgressToBouncer => "egress.to_bouncer",
            Self::EgressLocal => "egress.local",
            Self::EgressArp => "egress.arp_reply",
        }
    }

    /// The verdict every repetition must return.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::TransitPass => Verdict::Pass,
            Self::TransitUnknownVpc => Verdict::Drop,
            Self::TransitBouncer | Self::TransitDivider | Self::TransitToDivider => Verdict::Tx,
            Self::TransitLocal
            | Self::TransitBypass
            | Self::EgressToBouncer
            | Self::EgressLocal
            | Self::EgressArp => Verdict::Redirect,
        }
    }

    /// The reason counter every repetition must count.
    pub fn reason(self) -> Counter {
        match self {
            Self::TransitPass => abi::MZ_PASS_NOT_GENEVE_PORT,
            Self::TransitLocal => abi::MZ_DELIVER_LOCAL,
            Self::TransitBypass => abi::MZ_DELIVER_LOCAL_BYPASS,
            Self::TransitBouncer => abi::MZ_BOUNCER_FORWARD,
            Self::TransitDivider => abi::MZ_DIVIDER_FORWARD,
            Self::TransitToDivider => abi::MZ_TO_DIVIDER,
            Self::TransitUnknownVpc => abi::MZ_DROP_UNKNOWN_VPC,
            Self::EgressToBouncer => abi::MZ_EGRESS_TO_BOUNCER,
            Self::EgressLocal => abi::MZ_EGRESS_LOCAL,
            Self::EgressArp => abi::MZ_EGRESS_ARP_REPLY,
        }
    }

    pub fn reason_name(self) -> &'static str {
        counter_name(self.reason())
    }

    /// Paths that rewrite the packet run through the restoring wrapper.
    pub fn wrapped(self) -> bool {
        matches!(
            self,
            Self::TransitLocal
                | Self::TransitBouncer
                | Self::TransitDivider
                | Self::TransitToDivider
                | Self::EgressToBouncer
                | Self::EgressArp
        )
    }

    /// The agreed target, as a multiple of the floor (net of the wrapper for wrapped paths).
    pub fn target(self) -> Option<f64> {
        match self {
            Self::TransitLocal | Self::TransitBouncer => Some(3.0),
            Self::TransitDivider => Some(4.0),
            _ => None,
        }
    }
}

fn counter_name(counter: Counter) -> &'static str {
    COUNTER_INFO
        .get(counter as usize)
        .map_or("(unknown counter)", |info| info.name)
}

// ---------------------------------------------------------------------------------------------
// The arithmetic: pure, unit-tested.

/// The median of `samples` (the mean of the middle two for an even count); None when empty.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// How many floors a figure costs. None when the floor is not a positive figure.
pub fn ratio(ns: f64, floor_ns: f64) -> Option<f64> {
    (floor_ns > 0.0).then(|| ns / floor_ns)
}

/// The wrapper's own cost: the wrapper tail-calling the floor, minus the floor.
pub fn wrapper_cost(wrapper_floor_ns: f64, floor_ns: f64) -> f64 {
    wrapper_floor_ns - floor_ns
}

/// A wrapped path's figure without the wrapper's own cost.
pub fn net_of_wrapper(raw_ns: f64, wrapper_cost_ns: f64) -> f64 {
    raw_ns - wrapper_cost_ns
}

/// Whether a ratio meets a target ("within N x the floor").
pub fn meets(ratio: f64, target: f64) -> bool {
    ratio <= target
}

/// The measurements of one path: ns/packet of each run (the kernel's per-repetition average).
#[derive(Debug, Clone, PartialEq)]
pub struct PathResult {
    pub path: Path,
    /// The verdict the timed runs returned (a run with any other one is an error); None before
    /// the first run.
    pub verdict: Option<Verdict>,
    /// Packets counted under the path's reason during the timed runs: `runs * repeat`.
    pub counted: u64,
    pub samples_ns: Vec<f64>,
    /// The kernel's own figure for the same runs (whole nanoseconds), to check `samples_ns`.
    pub kernel_samples_ns: Vec<f64>,
    /// For wrapped paths: the wrapper tail-calling the floor with this path's packet.
    pub wrapper_samples_ns: Option<Vec<f64>>,
    /// For wrapped paths that change the packet's length: the wrapper tail-calling
    /// mz_bench_resize, which changes it the same way. The wrapper's fix-up of the length is
    /// then in the figure, and so is one more adjust_head (the path's own, which is no part of
    /// the wrapper): the wrapper's cost is taken as the mean of the two calibrations.
    pub wrapper_resize_samples_ns: Option<Vec<f64>>,
}

/// Chains measured: this many `count` functions at ON_XDP_REDIRECT, on the local-delivery path.
pub const CHAIN_LENGTHS: [usize; 5] = [0, 1, 2, 4, 8];
/// The target: each no-op function in a chain adds at most one floor's worth of time.
pub const CHAIN_FUNCTION_TARGET: f64 = 1.0;

/// The local-delivery path with a chain of `functions` no-op (`count`) functions at its stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainResult {
    /// The function the chain repeats.
    pub function: &'static str,
    pub functions: usize,
    /// For the acl function: the case measured (see [`ACL_CASES`]).
    pub acl: Option<AclCase>,
    pub samples_ns: Vec<f64>,
}

/// The acl function measured alone in the chain: with this many rules (default deny; the
/// packet allowed by the last rule), its flow tracked (a hit: the rules are not read) or not
/// (an ICMP error, judged by the rules every time: the cost a new flow pays for its lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclCase {
    pub rules: usize,
    pub flow_hit: bool,
}

pub const ACL_CASES: [AclCase; 4] = [
    AclCase {
        rules: 1,
        flow_hit: true,
    },
    AclCase {
        rules: 1,
        flow_hit: false,
    },
    AclCase {
        rules: 100,
        flow_hit: false,
    },
    AclCase {
        rules: 10_000,
        flow_hit: false,
    },
];

/// The target: the acl function with 10,000 rules costs at most this many times its cost with 1.
pub const ACL_SCALE_TARGET: f64 = 2.0;

impl AclCase {
    pub fn label(&self) -> String {
        format!(
            "{} rule{}, {}",
            self.rules,
            if self.rules == 1 { "" } else { "s" },
            if self.flow_hit { "flow hit" } else { "judged" }
        )
    }
}

/// The built-in functions measured alone in the chain, configured so that every packet goes on
/// (ddos: a block that does not match, no threshold; ratelimit: a rule on the packet's endpoint
/// it always conforms to; tap: a capture filter that matches nothing): the cost of their
/// lookups and, for ratelimit, its bucket update.
pub const CHAIN_FUNCTIONS: [&str; 3] = ["ddos", "ratelimit", mizar_ebpf::TAP_FUNCTION];

impl ChainResult {
    pub fn ns(&self) -> f64 {
        median(&self.samples_ns).unwrap_or(f64::NAN)
    }
}

/// A whole benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub repeat: u32,
    pub runs: u32,
    pub quick: bool,
    pub kernel: String,
    pub cpu: String,
    pub floor_samples_ns: Vec<f64>,
    pub floor_kernel_samples_ns: Vec<f64>,
    pub paths: Vec<PathResult>,
    /// The local-delivery path with chains of [`CHAIN_LENGTHS`] functions.
    pub chains: Vec<ChainResult>,
    /// The local-delivery path under a capture (see [`taps`]).
    pub taps: taps::TapsReport,
}

/// One line of the table, derived from a [`PathResult`] and the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub path: Path,
    pub ns: f64,
    /// The kernel's figure (median), whole nanoseconds.
    pub kernel_ns: f64,
    /// Wrapped paths: the wrapper's own cost measured with this path's packet.
    pub wrapper_cost_ns: Option<f64>,
    pub net_ns: Option<f64>,
    pub floor_ns: f64,
    pub ratio: Option<f64>,
    pub net_ratio: Option<f64>,
    pub target: Option<f64>,
    /// Whether the target is met, judged on the net ratio for wrapped paths.
    pub met: Option<bool>,
}

impl PathResult {
    pub fn ns(&self) -> f64 {
        median(&self.samples_ns).unwrap_or(f64::NAN)
    }

    pub fn row(&self, floor_ns: f64) -> Row {
        let ns = self.ns();
        let wrapped_floor = self.wrapper_samples_ns.as_deref().and_then(median);
        let wrapped_resize = self.wrapper_resize_samples_ns.as_deref().and_then(median);
        let wrapper_cost_ns = wrapped_floor.map(|wrapped_floor| match wrapped_resize {
            Some(wrapped_resize) => wrapper_cost((wrapped_floor + wrapped_resize) / 2.0, floor_ns),
            None => wrapper_cost(wrapped_floor, floor_ns),
        });
        let net_ns = wrapper_cost_ns.map(|cost| net_of_wrapper(ns, cost));
        let ratio = ratio(ns, floor_ns);
        let net_ratio = net_ns.and_then(|net| self::ratio(net, floor_ns));
        let target = self.path.target();
        let met = target.and_then(|t| net_ratio.or(ratio).map(|r| meets(r, t)));
        Row {
            path: self.path,
            ns,
            kernel_ns: median(&self.kernel_samples_ns).unwrap_or(f64::NAN),
            wrapper_cost_ns,
            net_ns,
            floor_ns,
            ratio,
            net_ratio,
            target,
            met,
        }
    }
}

impl BenchReport {
    pub fn floor_ns(&self) -> f64 {
        median(&self.floor_samples_ns).unwrap_or(f64::NAN)
    }

    pub fn rows(&self) -> Vec<Row> {
        let floor = self.floor_ns();
        self.paths.iter().map(|p| p.row(floor)).collect()
    }

    /// The kernel's figure for the floor (median).
    pub fn floor_kernel_ns(&self) -> f64 {
        median(&self.floor_kernel_samples_ns).unwrap_or(f64::NAN)
    }

    /// Figures where the CPU-time measurement and the kernel's disagree by more than the
    /// kernel's rounding and some noise allow: (what, CPU-time ns, kernel ns).
    pub fn disagreements(&self) -> Vec<(String, f64, f64)> {
        let off = |ns: f64, kernel: f64| (ns - kernel).abs() > AGREEMENT_NS.max(AGREEMENT * kernel);
        let mut found = Vec::new();
        if off(self.floor_ns(), self.floor_kernel_ns()) {
            found.push(("floor".to_owned(), self.floor_ns(), self.floor_kernel_ns()));
        }
        for row in self.rows() {
            if off(row.ns, row.kernel_ns) {
                found.push((row.path.id().to_owned(), row.ns, row.kernel_ns));
            }
        }
        found
    }

    /// What a chain adds to the same path with no chain (None for the empty chain).
    pub fn chain_added_ns(&self, chain: &ChainResult) -> Option<f64> {
        let empty = self.chains.iter().find(|c| c.functions == 0)?;
        (chain.functions > 0).then(|| chain.ns() - empty.ns())
    }

    /// What each function of a chain adds, in floors.
    pub fn chain_per_function_floors(&self, chain: &ChainResult) -> Option<f64> {
        Some(self.chain_added_ns(chain)? / chain.functions as f64 / self.floor_ns())
    }

    /// Whether each no-op function adds at most [`CHAIN_FUNCTION_TARGET`] floors.
    pub fn chain_target_met(&self) -> Option<bool> {
        let judged: Vec<f64> = self
            .chains
            .iter()
            .filter(|c| c.function == "count")
            .filter_map(|c| self.chain_per_function_floors(c))
            .collect();
        (!judged.is_empty()).then(|| judged.iter().all(|r| meets(*r, CHAIN_FUNCTION_TARGET)))
    }

    /// What the acl function adds with 10,000 rules over what it adds with 1 (both judged), and
    /// whether that is within [`ACL_SCALE_TARGET`].
    pub fn acl_scale(&self) -> Option<(f64, bool)> {
        let added = |rules: usize| {
            let c = self
                .chains
                .iter()
                .find(|c| c.acl.is_some_and(|a| a.rules == rules && !a.flow_hit))?;
            self.chain_added_ns(c)
        };
        let ratio = added(10_000)? / added(1)?;
        Some((ratio, meets(ratio, ACL_SCALE_TARGET)))
    }

    /// Whether every path with a target meets it.
    pub fn targets_met(&self) -> bool {
        self.rows().iter().all(|r| r.met != Some(false))
    }

    /// The report as one JSON object (`mizar bench --json`); figures to 0.001 ns, null where
    /// there is none.
    pub fn to_json(&self) -> String {
        let num = |n: Option<f64>| {
            n.filter(|n| n.is_finite())
                .map(|n| (n * 1000.0).round() / 1000.0)
        };
        let nums = |ns: &[f64]| ns.iter().map(|n| num(Some(*n))).collect::<Vec<_>>();
        let paths: Vec<serde_json::Value> = self
            .rows()
            .iter()
            .zip(&self.paths)
            .map(|(row, result)| {
                serde_json::json!({
                    "id": row.path.id(),
                    "program": row.path.program().name(),
                    "path": row.path.label(),
                    "verdict": row.path.verdict().name(),
                    "reason": row.path.reason_name(),
                    "wrapped": row.path.wrapped(),
                    "ns": num(Some(row.ns)),
                    "samples_ns": nums(&result.samples_ns),
                    "kernel_ns": num(Some(row.kernel_ns)),
                    "kernel_samples_ns": nums(&result.kernel_samples_ns),
                    "wrapper_cost_ns": num(row.wrapper_cost_ns),
                    "wrapper_samples_ns": result.wrapper_samples_ns.as_deref().map(nums),
                    "wrapper_resize_samples_ns": result.wrapper_resize_samples_ns.as_deref().map(nums),
                    "net_ns": num(row.net_ns),
                    "ratio": num(row.ratio),
                    "net_ratio": num(row.net_ratio),
                    "target": num(row.target),
                    "met": row.met,
                })
            })
            .collect();
        serde_json::json!({
            "repeat": self.repeat,
            "runs": self.runs,
            "quick": self.quick,
            "kernel": self.kernel,
            "cpu": self.cpu,
            "floor_ns": num(Some(self.floor_ns())),
            "floor_samples_ns": nums(&self.floor_samples_ns),
            "floor_kernel_ns": num(Some(self.floor_kernel_ns())),
            "floor_kernel_samples_ns": nums(&self.floor_kernel_samples_ns),
            "disagreements": self.disagreements().iter().map(|(what, ns, kernel)| {
                serde_json::json!({"what": what, "ns": num(Some(*ns)), "kernel_ns": num(Some(*kernel))})
            }).collect::<Vec<_>>(),
            "paths": paths,
            "chains": self.chains.iter().map(|c| serde_json::json!({
                "stage": "ON_XDP_REDIRECT",
                "path": Path::TransitLocal.id(),
                "function": c.function,
                "functions": c.functions,
                "case": c.acl.map(|a| a.label()),
                "ns": num(Some(c.ns())),
                "samples_ns": nums(&c.samples_ns),
                "added_ns": num(self.chain_added_ns(c)),
                "per_function_floors": num(self.chain_per_function_floors(c)),
            })).collect::<Vec<_>>(),
            "chain_target_met": self.chain_target_met(),
            "taps": self.taps.cases.iter().map(|c| serde_json::json!({
                "path": Path::TransitLocal.id(),
                "case": c.case.label(),
                "ns": num(Some(c.ns())),
                "samples_ns": nums(&c.samples_ns),
                "added_ns": num(self.taps.added_ns(c)),
                "records": c.records,
                "lost": c.lost,
            })).collect::<Vec<_>>(),
            "exporter_records_per_s": num(self.taps.exporter_records_per_s()),
            "acl_scale": self.acl_scale().map(|(ratio, met)| serde_json::json!({
                "ratio": num(Some(ratio)),
                "target": ACL_SCALE_TARGET,
                "met": met,
            })),
        })
        .to_string()
    }
}

fn fmt_ns(n: Option<f64>) -> String {
    match n {
        Some(n) if n.is_finite() => format!("{n:.2}"),
        _ => "-".to_owned(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{r:.2}x"),
        _ => "-".to_owned(),
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let floor = self.floor_ns();
        writeln!(
            f,
            "mizar bench: BPF_PROG_TEST_RUN, repeat {} per run, median of {} run{}{}\n\
             ns: the thread's CPU time around each run minus that of a 2-repetition run, per \
             repetition; kernel: the kernel's own figure (whole ns), as a check",
            self.repeat,
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            if self.quick {
                " (quick: smoke run, figures not worth recording)"
            } else {
                ""
            }
        )?;
        writeln!(f, "kernel {}, CPU {}", self.kernel, self.cpu)?;
        writeln!(
            f,
            "floor (mz_floor: swap MACs, XDP_TX): {} ns/packet (kernel: {})",
            fmt_ns(Some(floor)),
            fmt_ns(Some(self.floor_kernel_ns()))
        )?;
        writeln!(
            f,
            "wrapped paths (w) run through mz_bench_wrap; wrapper = (mz_bench_wrap -> mz_floor) - floor, with the same packet\n\
             (for paths that change the length: the mean of that and mz_bench_wrap -> mz_bench_resize, minus the floor); net = ns - wrapper"
        )?;
        writeln!(f)?;

        let header = [
            "program",
            "path",
            "verdict",
            "reason",
            "ns/pkt",
            "kernel",
            "wrapper",
            "net",
            "floor",
            "ratio",
            "net ratio",
            "target",
        ];
        let rows: Vec<[String; 12]> = self
            .rows()
            .iter()
            .map(|r| {
                [
                    r.path.program().name().to_owned(),
                    format!(
                        "{}{}",
                        r.path.label(),
                        if r.path.wrapped() { " (w)" } else { "" }
                    ),
                    r.path.verdict().name().to_owned(),
                    r.path.reason_name().to_owned(),
                    fmt_ns(Some(r.ns)),
                    fmt_ns(Some(r.kernel_ns)),
                    fmt_ns(r.wrapper_cost_ns),
                    fmt_ns(r.net_ns),
                    fmt_ns(Some(r.floor_ns)),
                    fmt_ratio(r.ratio),
                    fmt_ratio(r.net_ratio),
                    match (r.target, r.met) {
                        (Some(t), Some(true)) => format!("<= {t:.0}x met"),
                        (Some(t), _) => format!("<= {t:.0}x MISSED"),
                        (None, _) => "-".to_owned(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        // Text columns left-aligned, figures right-aligned.
        let numeric = |i: usize| (4..10).contains(&i);
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                if numeric(i) {
                    let _ = write!(text, "{cell:>w$}");
                } else {
                    let _ = write!(text, "{cell:<w$}");
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, &header)?;
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            line(f, &cells)?;
        }
        writeln!(f)?;
        for r in self.rows().iter().filter(|r| r.target.is_some()) {
            let judged = r.net_ratio.or(r.ratio);
            writeln!(
                f,
                "target: {} {} within {:.0}x the floor: {} ({}{})",
                r.path.program().name(),
                r.path.label(),
                r.target.unwrap_or_default(),
                if r.met == Some(true) { "met" } else { "MISSED" },
                fmt_ratio(judged),
                if r.net_ratio.is_some() {
                    " net of the wrapper"
                } else {
                    ""
                },
            )?;
        }
        if !self.chains.is_empty() {
            writeln!(
                f,
                "\nchains: transit local delivery with N functions at ON_XDP_REDIRECT (transit -> \
                 entry -> N functions -> exit); count is a no-op, ddos and ratelimit let every \
                 packet through, tap's filter matches nothing, acl allows it by its last rule"
            )?;
            writeln!(
                f,
                "{:>9}  {:>25}  {:>3}  {:>8}  {:>8}  {:>17}",
                "function", "case", "N", "ns/pkt", "added", "per function"
            )?;
            for c in &self.chains {
                let per = self.chain_per_function_floors(c);
                writeln!(
                    f,
                    "{:>9}  {:>25}  {:>3}  {:>8}  {:>8}  {:>17}",
                    c.function,
                    c.acl.map(|a| a.label()).unwrap_or_default(),
                    c.functions,
                    fmt_ns(Some(c.ns())),
                    fmt_ns(self.chain_added_ns(c)),
                    per.map_or("-".to_owned(), |p| format!(
                        "{} ({:.2} floors)",
                        fmt_ns(Some(p * self.floor_ns())),
                        p
                    )),
                )?;
            }
            if let Some(met) = self.chain_target_met() {
                writeln!(
                    f,
                    "target: each no-op function adds at most {CHAIN_FUNCTION_TARGET:.0} floor: {}",
                    if met { "met" } else { "MISSED" }
                )?;
            }
            if let Some((ratio, met)) = self.acl_scale() {
                writeln!(
                    f,
                    "target: acl with 10,000 rules adds at most {ACL_SCALE_TARGET:.0}x what it adds \
                     with 1 (judged): {ratio:.2}x, {}",
                    if met { "met" } else { "MISSED" }
                )?;
            }
        }
        if !self.taps.cases.is_empty() {
            writeln!(
                f,
                "\ntaps: transit local delivery under a capture (mizar capture --at \
                 transit:entry,transit:verdict); records and lost over the whole case"
            )?;
            writeln!(
                f,
                "{:>38}  {:>8}  {:>8}  {:>9}  {:>9}",
                "case", "ns/pkt", "added", "records", "lost"
            )?;
            for c in &self.taps.cases {
                writeln!(
                    f,
                    "{:>38}  {:>8}  {:>8}  {:>9}  {:>9}",
                    c.case.label(),
                    fmt_ns(Some(c.ns())),
                    fmt_ns(self.taps.added_ns(c)),
                    c.records,
                    c.lost
                )?;
            }
            if let Some(rate) = self.taps.exporter_records_per_s() {
                writeln!(
                    f,
                    "exporter: {:.0} records/s written as pcapng (a full ring drained, median)",
                    rate
                )?;
            }
        }
        for (what, ns, kernel) in self.disagreements() {
            writeln!(
                f,
                "check: {what}: {} ns from CPU time, {} ns by the kernel; they should agree \
                 (a busy machine? run again)",
                fmt_ns(Some(ns)),
                fmt_ns(Some(kernel))
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark topology: this host, the hosts around it, two VPCs, and endpoints that send each
// path's packet down its path.

const THIS_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const THIS_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]);
/// A remote host that sends tunnel traffic here; the transit packets' inner source lives there.
const SENDER_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Where the remote endpoint lives (the bouncer path forwards there).
const ENDPOINT_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
/// The bouncer of network A (the divider and egress-to-bouncer paths forward there).
const BOUNCER_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
/// The divider of VPC B (the to-divider path forwards there).
const DIVIDER_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);

fn host_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0xaa, o[0], o[1], o[2], o[3]])
}

fn endpoint_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0xee, o[0], o[1], o[2], o[3]])
}

/// VPC A: network 10.1.0.0/16, bounced by BOUNCER_HOST; this host divides it.
const VNI_A: u32 = 100;
const NET_A: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 1, 0, 0), 16);
const GATEWAY_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// VPC B: no network known here, divided by DIVIDER_HOST.
const VNI_B: u32 = 200;
/// Not configured anywhere.
const VNI_UNKNOWN: u32 = 300;

/// Hosted here, behind ifindex 1: the egress sender, and the transit local-delivery target.
const LOCAL_EP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// Hosted here, bypass-decap (a function endpoint).
const BYPASS_EP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
/// Hosted here: the egress local-delivery target.
const LOCAL_PEER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 12);
/// Lives on ENDPOINT_HOST: the bouncer path's destination.
const REMOTE_EP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 20);
/// In network A, but no endpoint known here: the divider path's destination.
const UNKNOWN_EP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 30);
/// Lives on SENDER_HOST: the inner source of the transit packets.
const REMOTE_SENDER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 40);
/// Addresses in VPC B.
const VPC_B_SENDER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 40);
const VPC_B_DEST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 5);

/// The endpoint veth the egress paths run on: loopback, which every network namespace has.
const EGRESS_IFINDEX: u32 = 1;

/// UDP payload of the inner frames: 64-byte inner frames (Ethernet without FCS).
const PAYLOAD_LEN: usize = 22;

/// This host's underlay interface, as the maps know it, for the test runs that send nothing
/// (the live benchmark gives its veth's).
const UNDERLAY_IFINDEX: u32 = 2;

/// The benchmark's configuration, written by reconcile as `up` writes the store's.
fn configure(dataplane: &mut Dataplane, underlay_ifindex: u32) -> Result<(), BenchError> {
    let mut state = DesiredState {
        host: Some(HostConfig {
            ip: THIS_HOST,
            mac: THIS_MAC,
            underlay_mtu: 1500,
            underlay_ifindex,
        }),
        ..DesiredState::default()
    };
    for host in [SENDER_HOST, ENDPOINT_HOST, BOUNCER_HOST, DIVIDER_HOST] {
        state.hosts.insert(host, host_mac(host));
    }
    state.vpcs.insert(
        VNI_A,
        VpcEntry {
            this_host_divides: true,
            dividers: vec![THIS_HOST],
            members: [SENDER_HOST, ENDPOINT_HOST]
                .map(|h| (h, MemberRoles::ENDPOINTS))
                .into_iter()
                .chain([(BOUNCER_HOST, MemberRoles::BOUNCER)])
                .collect(),
        },
    );
    state.networks.insert(
        (VNI_A, NET_A),
        NetworkEntry {
            this_host_bounces: false,
            gateway: GATEWAY_A,
            bouncers: vec![BOUNCER_HOST],
        },
    );
    state.vpcs.insert(
        VNI_B,
        VpcEntry {
            this_host_divides: false,
            dividers: vec![DIVIDER_HOST],
            members: [(SENDER_HOST, MemberRoles::ENDPOINTS)].into(),
        },
    );
    // The egress paths run on LOCAL_EP's veth, loopback; the other local endpoints have veths
    // of their own that a non-live test run never resolves.
    for (ip, ifindex, kind, bypass_decap) in [
        (BYPASS_EP, 1001, EndpointKind::Function, true),
        (LOCAL_PEER, 1002, EndpointKind::Simple, false),
        (LOCAL_EP, EGRESS_IFINDEX, EndpointKind::Simple, false),
    ] {
        state.endpoints.insert(
            (VNI_A, ip),
            EndpointEntry {
                mac: endpoint_mac(ip),
                kind,
                bypass_decap,
                host: THIS_HOST,
                local_ifindex: Some(ifindex),
            },
        );
    }
    for (ip, host) in [(REMOTE_EP, ENDPOINT_HOST), (REMOTE_SENDER, SENDER_HOST)] {
        state.endpoints.insert(
            (VNI_A, ip),
            EndpointEntry {
                mac: endpoint_mac(ip),
                kind: EndpointKind::Simple,
                bypass_decap: false,
                host,
                local_ifindex: None,
            },
        );
    }
    reconcile(dataplane.maps_mut(), &state)?;
    Ok(())
}

/// The MAC an egress proxy-ARP reply gives for an address with no endpoint here (what the
/// endpoints' frames to such addresses carry).
fn proxy_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x00, o[0], o[1], o[2], o[3]])
}

/// An endpoint's UDP frame (64 bytes on the wire, FCS aside).
fn inner_udp(src: Ipv4Addr, dst: Ipv4Addr, dst_mac: MacAddr) -> Vec<u8> {
    InnerFrame::udp(src, dst, 40000, 7000, &[0x5a; PAYLOAD_LEN])
        .macs(endpoint_mac(src), dst_mac)
        .build()
}

/// The local-delivery packet with its inner datagram turned into an ICMP port-unreachable
/// (type 3): delivered alike, but the acl function tracks no flow for it, so its rules judge
/// every repetition.
fn acl_untracked_packet() -> Vec<u8> {
    let mut inner = InnerFrame::icmp_echo(REMOTE_SENDER, LOCAL_EP, 1, 1, &[0; PAYLOAD_LEN])
        .macs(endpoint_mac(REMOTE_SENDER), proxy_mac(LOCAL_EP))
        .build();
    inner[14 + 20] = 3; // ICMP type: destination unreachable
    tunnel(VNI_A, &inner)
}

/// A tunnel packet from SENDER_HOST to this host around `inner`.
fn tunnel(vni: u32, inner: &[u8]) -> Vec<u8> {
    Tunnel::new(SENDER_HOST, THIS_HOST, vni)
        .macs(host_mac(SENDER_HOST), THIS_MAC)
        .build(inner)
}

/// The packet each path is measured with.
fn packet(path: Path) -> Vec<u8> {
    let from_remote = |dst: Ipv4Addr| inner_udp(REMOTE_SENDER, dst, proxy_mac(dst));
    match path {
        // A UDP datagram to this host that is not Geneve (port 53): the stack's.
        Path::TransitPass => InnerFrame::udp(SENDER_HOST, THIS_HOST, 40000, 53, &[0; PAYLOAD_LEN])
            .macs(host_mac(SENDER_HOST), THIS_MAC)
            .build(),
        Path::TransitLocal => tunnel(VNI_A, &from_remote(LOCAL_EP)),
        Path::TransitBypass => tunnel(VNI_A, &from_remote(BYPASS_EP)),
        Path::TransitBouncer => tunnel(VNI_A, &from_remote(REMOTE_EP)),
        Path::TransitDivider => tunnel(VNI_A, &from_remote(UNKNOWN_EP)),
        Path::TransitToDivider => tunnel(
            VNI_B,
            &inner_udp(VPC_B_SENDER, VPC_B_DEST, proxy_mac(VPC_B_DEST)),
        ),
        Path::TransitUnknownVpc => tunnel(VNI_UNKNOWN, &from_remote(LOCAL_EP)),
        Path::EgressToBouncer => inner_udp(LOCAL_EP, UNKNOWN_EP, proxy_mac(UNKNOWN_EP)),
        Path::EgressLocal => inner_udp(LOCAL_EP, LOCAL_PEER, endpoint_mac(LOCAL_PEER)),
        Path::EgressArp => arp_request(endpoint_mac(LOCAL_EP), LOCAL_EP, GATEWAY_A),
    }
}

/// The `struct xdp_md` handed to egress runs: the packet arrived on the endpoint's veth.
fn egress_ctx(packet_len: usize) -> Vec<u8> {
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    [0, packet_len as u32, 0, EGRESS_IFINDEX, 0, 0]
        .iter()
        .flat_map(|v: &u32| v.to_ne_bytes())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// What one BPF_PROG_TEST_RUN runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Floor,
    /// mz_bench_wrap tail-calling mz_floor.
    WrappedFloor,
    /// mz_bench_wrap tail-calling mz_bench_resize, which strips this many bytes from the head.
    WrappedResize(i32),
    /// A path, directly or (when it rewrites the packet) through the wrapper.
    Path(Path),
    /// A wrapped path's program run directly, once, to compare outputs.
    Direct(Path),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Floor => f.write_str("the floor (mz_floor)"),
            Self::WrappedFloor => f.write_str("the wrapper (mz_bench_wrap -> mz_floor)"),
            Self::WrappedResize(by) => write!(
                f,
                "the wrapper resizing by {by} bytes (mz_bench_wrap -> mz_bench_resize)"
            ),
            Self::Path(p) if p.wrapped() => write!(
                f,
                "{} {} (through mz_bench_wrap)",
                p.program().name(),
                p.label()
            ),
            Self::Path(p) | Self::Direct(p) => write!(f, "{} {}", p.program().name(), p.label()),
        }
    }
}

struct Run {
    verdict: u32,
    /// Per repetition, from the thread's CPU time (see [`Harness::run_checked`]).
    ns: f64,
    /// Per repetition, as the kernel measured it (whole ns).
    kernel_ns: f64,
    /// The thread's CPU time the whole run took (the syscall included).
    cpu_ns: f64,
    output: Vec<u8>,
    /// Packets counted under the path's reason (0 for the floor subjects).
    counted: u64,
}

/// Removes the instance's pins (and its directory) however the benchmark ends.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(err) = remove_all_pins(&PinLayout::new(&self.0)) {
            tracing::warn!(dir = %self.0.display(), %err, "cannot remove the benchmark's pins");
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

struct Harness {
    // Field order is drop order: programs and maps before the pins go.
    dataplane: Dataplane,
    bench: Ebpf,
    bench_packet: Array<MapData, abi::mz_bench_packet>,
    target: ProgramArray<MapData>,
    /// Run the copies with the taps (as a capture attaches them) instead of the plain programs.
    tapped: bool,
    _pins: PinGuard,
}

fn path_program(dataplane: &Dataplane, path: Path, tapped: bool) -> &Xdp {
    match (path.program(), tapped) {
        (Program::Transit, false) => dataplane.transit(),
        (Program::Egress, false) => dataplane.egress(),
        (Program::Transit, true) => dataplane.transit_tapped(),
        (Program::Egress, true) => dataplane.egress_tapped(),
    }
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &'static str) -> &'a Xdp {
    ebpf.program(name)
        .and_then(|p| <&Xdp>::try_from(p).ok())
        .expect("loaded and checked in Harness::new")
}

impl Harness {
    /// The data plane configured for the benchmark (this host's underlay interface:
    /// `underlay_ifindex`), and the bench object's programs.
    fn new(underlay_ifindex: u32) -> Result<Self, BenchError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = PathBuf::from(BENCH_BPFFS);
        ensure_bpffs(&root)?;
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = remove_all_pins(&PinLayout::new(&dir));
        let pins = PinGuard(dir.clone());
        let mut dataplane = Dataplane::load(&dir)?;
        configure(&mut dataplane, underlay_ifindex)?;

        let mut bench = Ebpf::load(BENCH_OBJECT).map_err(|e| BenchError::Load(Box::new(e)))?;
        for name in [
            FLOOR_PROGRAM,
            BENCH_WRAPPER_PROGRAM,
            BENCH_RESIZE_PROGRAM,
            BENCH_SINK_PROGRAM,
        ] {
            let program_error = |source| BenchError::Program {
                program: name,
                source: Box::new(source),
            };
            let prog: &mut Xdp = bench
                .program_mut(name)
                .ok_or_else(|| BenchError::Setup(format!("the bench object has no {name}")))?
                .try_into()
                .map_err(program_error)?;
            prog.load().map_err(program_error)?;
        }
        let map_error = |map: &'static str| {
            move |source| BenchError::Map {
                map,
                source: Box::new(source),
            }
        };
        let take = |bench: &mut Ebpf, map: &'static str| {
            bench
                .take_map(map)
                .ok_or_else(|| BenchError::Setup(format!("the bench object has no map {map}")))
        };
        let bench_packet = Array::try_from(take(&mut bench, map_names::BENCH_PACKET)?)
            .map_err(map_error(map_names::BENCH_PACKET))?;
        let target = ProgramArray::try_from(take(&mut bench, map_names::BENCH_TARGET)?)
            .map_err(map_error(map_names::BENCH_TARGET))?;
        Ok(Self {
            dataplane,
            bench,
            bench_packet,
            target,
            tapped: false,
            _pins: pins,
        })
    }

    /// Points the wrapper at `subject`'s program and stores the packet it restores.
    fn arm_wrapper(&mut self, subject: Subject, packet: &[u8]) -> Result<(), BenchError> {
        let resize = match subject {
            Subject::WrappedResize(by) => by,
            _ => 0,
        };
        let (program, name) = match subject {
            Subject::WrappedFloor => (xdp(&self.bench, FLOOR_PROGRAM), FLOOR_PROGRAM),
            Subject::WrappedResize(_) => {
                (xdp(&self.bench, BENCH_RESIZE_PROGRAM), BENCH_RESIZE_PROGRAM)
            }
            Subject::Path(path) => (
                path_program(&self.dataplane, path, self.tapped),
                match path.program() {
                    Program::Transit => mizar_ebpf::TRANSIT_PROGRAM,
                    Program::Egress => mizar_ebpf::EGRESS_PROGRAM,
                },
            ),
            Subject::Floor | Subject::Direct(_) => return Ok(()),
        };
        let fd = program.fd().map_err(|source| BenchError::Program {
            program: name,
            source: Box::new(source),
        })?;
        self.target
            .set(abi::MZ_BENCH_TARGET_SLOT, fd, 0)
            .map_err(|source| BenchError::Map {
                map: map_names::BENCH_TARGET,
                source: Box::new(source),
            })?;
        let len = packet.len();
        if len > abi::MZ_BENCH_MAX_PACKET as usize {
            return Err(BenchError::Setup(format!(
                "{subject}: a {len}-byte packet does not fit the wrapper's {} bytes",
                abi::MZ_BENCH_MAX_PACKET
            )));
        }
        let mut stored = abi::mz_bench_packet {
            len: len as u32,
            resize,
            data: [0; abi::MZ_BENCH_MAX_PACKET as usize],
        };
        stored.data[..len].copy_from_slice(packet);
        self.bench_packet
            .set(0, stored, 0)
            .map_err(|source| BenchError::Map {
                map: map_names::BENCH_PACKET,
                source: Box::new(source),
            })
    }

    fn test_run(&self, subject: Subject, packet: &[u8], repeat: u32) -> Result<Run, BenchError> {
        let (program, ctx) = match subject {
            Subject::Floor => (xdp(&self.bench, FLOOR_PROGRAM), None),
            Subject::WrappedFloor | Subject::WrappedResize(_) => {
                (xdp(&self.bench, BENCH_WRAPPER_PROGRAM), None)
            }
            Subject::Path(path) | Subject::Direct(path) => {
                let program = if path.wrapped() && matches!(subject, Subject::Path(_)) {
                    xdp(&self.bench, BENCH_WRAPPER_PROGRAM)
                } else {
                    path_program(&self.dataplane, path, self.tapped)
                };
                let ctx = (path.program() == Program::Egress).then(|| egress_ctx(packet.len()));
                (program, ctx)
            }
        };
        // Room for the largest rewrite (encapsulation) plus slack.
        let mut output = vec![0u8; packet.len() + 256];
        let started = thread_cpu_ns();
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut output),
                ctx_in: ctx.as_deref(),
                repeat,
                ..Default::default()
            })
            .map_err(|source| BenchError::TestRun {
                subject: subject.to_string(),
                source: Box::new(source),
            })?;
        let cpu_ns = thread_cpu_ns() - started;
        output.truncate(result.data_size_out as usize);
        Ok(Run {
            verdict: result.return_value,
            ns: cpu_ns / f64::from(repeat),
            kernel_ns: result.duration.as_nanos() as f64,
            cpu_ns,
            output,
            counted: 0,
        })
    }

    /// Puts `functions` copies of `function` in the chain at ON_XDP_REDIRECT (0: none).
    fn set_chain(&mut self, function: &str, functions: usize) -> Result<(), BenchError> {
        let links: Vec<ChainLink> = (1..=functions as u16)
            .map(|instance| ChainLink {
                instance,
                function: function.to_owned(),
            })
            .collect();
        Chains::open(self.dataplane.pins())?.publish(Stage::OnXdpRedirect, &links)?;
        Ok(())
    }

    /// ddos: a block that the benchmark's packets do not match; ratelimit: a rule on the
    /// local endpoint they always conform to (a billion packets a second).
    fn configure_functions(&mut self) -> Result<(), BenchError> {
        let pins = self.dataplane.pins();
        // A capture filter no packet matches (no VPC has this VNI).
        let nothing = crate::capture::CompiledFilter::compile(
            &crate::capture::filter::parse("vni 16777215").expect("a filter"),
        )
        .map_err(DataplaneError::Invalid)?;
        let mut tap: aya::maps::Array<MapData, abi::mz_tap_filter> =
            crate::dataplane::open_map(pins, mizar_ebpf::maps::TAP_FILTER)?;
        tap.set(0, nothing.to_raw(abi::MZ_TAP_SNAP_MAX, 1), 0)
            .map_err(|source| DataplaneError::Map {
                map: mizar_ebpf::maps::TAP_FILTER,
                source: Box::new(source),
            })?;
        DdosMaps::open(pins)?.sync(&DdosState {
            blocks: [(VNI_A, "192.0.2.0/24".parse().expect("a prefix"))].into(),
            ..DdosState::default()
        })?;
        RateLimitMaps::open(pins)?.sync(
            &[(
                (VNI_A, Some(LOCAL_EP), abi::MZ_RL_INGRESS),
                RateRule {
                    packets: 1_000_000_000,
                    burst_packets: 1_000_000_000,
                    ..RateRule::default()
                },
            )]
            .into(),
        )?;
        Ok(())
    }

    /// The acl function with `rules` rules in VNI_A: ingress default deny; rules 1..N-1 allow
    /// TCP 443 from their own /32 (the first from the packets' source, which gives it an
    /// address class); the last allows everything from anywhere.
    fn configure_acl(&mut self, rules: usize) -> Result<(), BenchError> {
        let mut list: Vec<AclRule> = (1..rules as u32)
            .map(|i| {
                let src = if i == 1 {
                    REMOTE_SENDER
                } else {
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i)
                };
                AclRule {
                    id: i,
                    direction: abi::MZ_ACL_INGRESS,
                    allow: true,
                    src: AclAddrs::Prefixes(vec![Ipv4Net::from(src)]),
                    dst: AclAddrs::Any,
                    proto: Some(6),
                    ports: Some((443, 443)),
                }
            })
            .collect();
        list.push(AclRule {
            id: rules as u32,
            direction: abi::MZ_ACL_INGRESS,
            allow: true,
            src: AclAddrs::Any,
            dst: AclAddrs::Any,
            proto: None,
            ports: None,
        });
        let vpc = AclVpc {
            default_allow: [false, true],
            epoch: 0,
            rules: list,
        };
        AclMaps::open(self.dataplane.pins())?.sync(&[(VNI_A, ("bench".to_owned(), vpc))].into())?;
        Ok(())
    }

    fn counters(&self) -> Result<Counters, BenchError> {
        Ok(self.dataplane.maps().counters()?)
    }

    /// Runs `subject` `repeat` times, and checks that every repetition took the expected path.
    fn run_checked(
        &mut self,
        subject: Subject,
        packet: &[u8],
        repeat: u32,
    ) -> Result<Run, BenchError> {
        self.arm_wrapper(subject, packet)?;
        let (expected, path) = match subject {
            Subject::Floor | Subject::WrappedFloor | Subject::WrappedResize(_) => {
                (Verdict::Tx, None)
            }
            Subject::Path(p) | Subject::Direct(p) => (p.verdict(), Some(p)),
        };
        // What a run costs besides its repetitions (the syscall, copying the packet in and out),
        // measured with 2 of them and taken off: the thread's CPU time then counts
        // repetitions only, to a fraction of a nanosecond (the kernel's figure is whole ns; the
        // wall clock would include waits for RCU grace periods).
        let fixed_ns = match repeat {
            3.. => Some(self.test_run(subject, packet, 2)?.cpu_ns),
            _ => None,
        };
        let before = match path {
            Some(_) => Some(self.counters()?),
            None => None,
        };
        let mut run = self.test_run(subject, packet, repeat)?;
        if let Some(fixed_ns) = fixed_ns {
            run.ns = (run.cpu_ns - fixed_ns).max(0.0) / f64::from(repeat - 2);
        }
        if run.verdict != expected as u32 {
            return Err(BenchError::WrongVerdict {
                subject: subject.to_string(),
                expected,
                got: Verdict::describe_raw(run.verdict),
            });
        }
        if let (Some(path), Some(before)) = (path, before) {
            let delta = self.counters()?.since(&before);
            let total: u64 = delta.nonzero_reasons().map(|(_, v)| v.packets).sum();
            if delta.packets(path.reason()) != u64::from(repeat) || total != u64::from(repeat) {
                let counted: Vec<String> = delta
                    .nonzero_reasons()
                    .map(|(info, v)| format!("{} {}", info.name, v.packets))
                    .collect();
                return Err(BenchError::WrongCounters {
                    subject: subject.to_string(),
                    reason: path.reason_name(),
                    expected: u64::from(repeat),
                    counted: if counted.is_empty() {
                        "nothing".to_owned()
                    } else {
                        counted.join(", ")
                    },
                });
            }
            run.counted = delta.packets(path.reason());
        }
        Ok(run)
    }

    /// One run of each subject before any timing: verdicts, counters, wrapper transparency.
    fn check(&mut self, floor_packet: &[u8], packets: &[Vec<u8>]) -> Result<(), BenchError> {
        let floor = self.run_checked(Subject::Floor, floor_packet, 1)?;
        let wrapped = self.run_checked(Subject::WrappedFloor, floor_packet, 1)?;
        if wrapped.output != floor.output {
            return Err(BenchError::WrapperChangedOutput {
                subject: Subject::WrappedFloor.to_string(),
            });
        }
        for (path, packet) in PATHS.iter().zip(packets) {
            let run = self.run_checked(Subject::Path(*path), packet, 1)?;
            if path.wrapped() {
                let direct = self.run_checked(Subject::Direct(*path), packet, 1)?;
                if direct.output != run.output {
                    return Err(BenchError::WrapperChangedOutput {
                        subject: Subject::Path(*path).to_string(),
                    });
                }
            }
            // Twice in a row, as a repeated run goes: the second repetition must see what the
            // first saw (the wrapper restored it, or the path does not rewrite the packet).
            let twice = self.run_checked(Subject::Path(*path), packet, 2)?;
            if twice.output != run.output {
                return Err(BenchError::NotRepeatable {
                    subject: Subject::Path(*path).to_string(),
                });
            }
        }
        Ok(())
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Loads a private instance of the data plane under [`BENCH_BPFFS`], configures the benchmark
/// topology, checks every path, then measures: each round times the floor, then every path
/// (and, for wrapped paths, the wrapper with the same packet), `options.runs` rounds in all.
/// How far the CPU-time figure may be from the kernel's: its rounding to whole ns, plus noise.
const AGREEMENT_NS: f64 = 2.0;
const AGREEMENT: f64 = 0.15;

/// CPU time this thread has used, in ns (system time included: a test run is a syscall).
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is always there on Linux");
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    options.validate()?;
    let mut harness = Harness::new(UNDERLAY_IFINDEX)?;
    let packets: Vec<Vec<u8>> = PATHS.iter().map(|p| packet(*p)).collect();
    let floor_packet = packet(Path::TransitBouncer);

    harness.check(&floor_packet, &packets)?;
    tracing::info!(
        repeat = options.repeat,
        runs = options.runs,
        "every path checked; measuring"
    );

    let mut floor = Vec::new();
    let mut floor_kernel = Vec::new();
    let mut paths: Vec<PathResult> = PATHS
        .iter()
        .map(|p| PathResult {
            path: *p,
            verdict: None,
            counted: 0,
            samples_ns: Vec::new(),
            kernel_samples_ns: Vec::new(),
            wrapper_samples_ns: p.wrapped().then(Vec::new),
            wrapper_resize_samples_ns: None,
        })
        .collect();
    let local = PATHS
        .iter()
        .position(|p| *p == Path::TransitLocal)
        .expect("the local-delivery path is measured");
    let mut chains: Vec<ChainResult> = CHAIN_LENGTHS
        .iter()
        .map(|&functions| ("count", functions))
        .chain(CHAIN_FUNCTIONS.iter().map(|&f| (f, 1)))
        .map(|(function, functions)| ChainResult {
            function,
            functions,
            acl: None,
            samples_ns: Vec::new(),
        })
        .chain(ACL_CASES.iter().map(|&case| ChainResult {
            function: "acl",
            functions: 1,
            acl: Some(case),
            samples_ns: Vec::new(),
        }))
        .collect();
    let untracked = acl_untracked_packet();
    let mut taps_report = taps::TapsReport::default();
    harness.configure_functions()?;
    // How much each wrapped path changes the packet's length, for the resize calibration.
    let mut resizes = Vec::with_capacity(PATHS.len());
    for (result, packet) in paths.iter_mut().zip(&packets) {
        let by = if result.path.wrapped() {
            let out = harness.run_checked(Subject::Direct(result.path), packet, 1)?;
            packet.len() as i32 - out.output.len() as i32
        } else {
            0
        };
        if by != 0 {
            result.wrapper_resize_samples_ns = Some(Vec::new());
        }
        resizes.push(by);
    }
    for round in 0..options.runs {
        let run = harness.run_checked(Subject::Floor, &floor_packet, options.repeat)?;
        floor.push(run.ns);
        floor_kernel.push(run.kernel_ns);
        for ((result, packet), by) in paths.iter_mut().zip(&packets).zip(&resizes) {
            let run = harness.run_checked(Subject::Path(result.path), packet, options.repeat)?;
            result.samples_ns.push(run.ns);
            result.kernel_samples_ns.push(run.kernel_ns);
            result.verdict = Verdict::from_raw(run.verdict);
            result.counted += run.counted;
            if let Some(wrapper) = result.wrapper_samples_ns.as_mut() {
                wrapper.push(
                    harness
                        .run_checked(Subject::WrappedFloor, packet, options.repeat)?
                        .ns,
                );
            }
            if let Some(resized) = result.wrapper_resize_samples_ns.as_mut() {
                resized.push(
                    harness
                        .run_checked(Subject::WrappedResize(*by), packet, options.repeat)?
                        .ns,
                );
            }
        }
        // The same local-delivery path with chains of no-op functions at its stage.
        for chain in &mut chains {
            harness.set_chain(chain.function, chain.functions)?;
            let packet = match chain.acl {
                Some(case) => {
                    harness.configure_acl(case.rules)?;
                    if case.flow_hit {
                        &packets[local]
                    } else {
                        &untracked
                    }
                }
                None => &packets[local],
            };
            let run =
                harness.run_checked(Subject::Path(Path::TransitLocal), packet, options.repeat)?;
            chain.samples_ns.push(run.ns);
        }
        harness.set_chain("count", 0)?;
        taps::measure_round(
            &mut harness,
            &packets[local],
            options.repeat,
            &mut taps_report,
        )?;
        tracing::info!(round = round + 1, of = options.runs, "round done");
    }

    Ok(BenchReport {
        repeat: options.repeat,
        runs: options.runs,
        quick: options.quick,
        kernel: kernel_release(),
        cpu: cpu_model(),
        floor_samples_ns: floor,
        floor_kernel_samples_ns: floor_kernel,
        paths,
        chains,
        taps: taps_report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        // One outlier (a preempted run) does not move it.
        assert_eq!(median(&[10.0, 11.0, 10.0, 400.0, 12.0]), Some(11.0));
    }

    #[test]
    fn ratio_net_and_targets() {
        assert_eq!(ratio(30.0, 10.0), Some(3.0));
        assert_eq!(ratio(30.0, 0.0), None);
        assert_eq!(wrapper_cost(25.0, 10.0), 15.0);
        assert_eq!(net_of_wrapper(40.0, 15.0), 25.0);
        assert!(meets(3.0, 3.0));
        assert!(!meets(3.01, 3.0));
    }

    fn report() -> BenchReport {
        BenchReport {
            repeat: MIN_REPEAT,
            runs: 3,
            quick: false,
            kernel: "6.1.0".to_owned(),
            cpu: "Test \"CPU\"".to_owned(),
            floor_samples_ns: vec![10.0, 12.0, 10.0],
            floor_kernel_samples_ns: vec![10.0, 11.0, 10.0],
            paths: vec![
                PathResult {
                    path: Path::TransitBouncer,
                    verdict: Some(Path::TransitBouncer.verdict()),
                    counted: 3 * u64::from(MIN_REPEAT),
                    samples_ns: vec![45.0, 44.0, 47.0],
                    kernel_samples_ns: vec![45.0, 44.0, 47.0],
                    // wrapper cost = 25 - 10 = 15, net = 45 - 15 = 30: exactly 3x.
                    wrapper_samples_ns: Some(vec![25.0, 25.0, 90.0]),
                    wrapper_resize_samples_ns: None,
                },
                PathResult {
                    path: Path::TransitDivider,
                    verdict: Some(Path::TransitDivider.verdict()),
                    counted: 3 * u64::from(MIN_REPEAT),
                    samples_ns: vec![60.0, 61.0, 59.0],
                    kernel_samples_ns: vec![60.0, 61.0, 59.0],
                    // net = 60 - 15 = 45: 4.5x, misses 4x.
                    wrapper_samples_ns: Some(vec![25.0, 24.0, 26.0]),
                    wrapper_resize_samples_ns: None,
                },
                PathResult {
                    path: Path::TransitPass,
                    verdict: Some(Path::TransitPass.verdict()),
                    counted: 3 * u64::from(MIN_REPEAT),
                    samples_ns: vec![15.0, 15.0, 16.0],
                    kernel_samples_ns: vec![15.0, 15.0, 16.0],
                    wrapper_samples_ns: None,
                    wrapper_resize_samples_ns: None,
                },
                PathResult {
                    path: Path::TransitLocal,
                    verdict: Some(Path::TransitLocal.verdict()),
                    counted: 3 * u64::from(MIN_REPEAT),
                    samples_ns: vec![50.0, 50.0, 50.0],
                    kernel_samples_ns: vec![50.0, 50.0, 50.0],
                    // The path shrinks the packet: wrapper cost = mean(25, 35) - 10 = 20,
                    // net = 50 - 20 = 30: exactly 3x.
                    wrapper_samples_ns: Some(vec![25.0, 25.0, 25.0]),
                    wrapper_resize_samples_ns: Some(vec![35.0, 34.0, 36.0]),
                },
            ],
            chains: vec![
                ChainResult {
                    function: "count",
                    functions: 0,
                    acl: None,
                    samples_ns: vec![50.0, 50.0, 50.0],
                },
                ChainResult {
                    function: "count",
                    functions: 2,
                    acl: None,
                    samples_ns: vec![70.0, 70.0, 71.0],
                },
                ChainResult {
                    function: "count",
                    functions: 4,
                    acl: None,
                    samples_ns: vec![100.0, 100.0, 100.0],
                },
                ChainResult {
                    function: "acl",
                    functions: 1,
                    acl: Some(ACL_CASES[1]),
                    samples_ns: vec![60.0, 60.0, 60.0],
                },
                ChainResult {
                    function: "acl",
                    functions: 1,
                    acl: Some(ACL_CASES[3]),
                    samples_ns: vec![75.0, 75.0, 75.0],
                },
            ],
            taps: taps::TapsReport::default(),
        }
    }

    #[test]
    fn chains_are_judged_per_function_against_the_floor() {
        let report = report();
        // floor 10 ns; 2 functions add 20 ns: 1 floor each (met); 4 add 50: 1.25 each (missed).
        assert_eq!(report.chain_added_ns(&report.chains[0]), None);
        assert_eq!(report.chain_added_ns(&report.chains[1]), Some(20.0));
        assert_eq!(
            report.chain_per_function_floors(&report.chains[1]),
            Some(1.0)
        );
        assert_eq!(
            report.chain_per_function_floors(&report.chains[2]),
            Some(1.25)
        );
        assert_eq!(report.chain_target_met(), Some(false));
        let text = report.to_string();
        assert!(
            text.contains("2.50 (0.25 floors)") || text.contains("(1.25 floors)"),
            "{text}"
        );
        assert!(text.contains("adds at most 1 floor: MISSED"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["chains"][1]["per_function_floors"], 1.0);
        assert_eq!(json["chain_target_met"], false);
        // acl: 1 rule adds 10 ns, 10,000 add 25: 2.5x, over the 2x target.
        assert_eq!(report.acl_scale(), Some((2.5, false)));
        assert!(
            text.contains(
                "10,000 rules adds at most 2x what it adds with 1 (judged): 2.50x, MISSED"
            ),
            "{text}"
        );
        assert!(text.contains("10000 rules, judged"), "{text}");
        assert_eq!(json["acl_scale"]["met"], false);
    }

    #[test]
    fn a_resizing_path_is_charged_the_wrappers_fix_up_of_the_length() {
        let local = report().rows()[3];
        assert_eq!(local.wrapper_cost_ns, Some(20.0));
        assert_eq!(local.net_ns, Some(30.0));
        assert_eq!(local.met, Some(true));
    }

    #[test]
    fn rows_derive_net_figures_and_judge_targets_net() {
        let report = report();
        assert_eq!(report.floor_ns(), 10.0);
        let rows = report.rows();
        let bouncer = rows[0];
        assert_eq!(bouncer.ns, 45.0);
        assert_eq!(bouncer.wrapper_cost_ns, Some(15.0));
        assert_eq!(bouncer.net_ns, Some(30.0));
        assert_eq!(bouncer.ratio, Some(4.5));
        assert_eq!(bouncer.net_ratio, Some(3.0));
        assert_eq!(bouncer.met, Some(true));
        let divider = rows[1];
        assert_eq!(divider.net_ratio, Some(4.5));
        assert_eq!(divider.met, Some(false));
        let pass = rows[2];
        assert_eq!(pass.net_ns, None);
        assert_eq!(pass.ratio, Some(1.5));
        assert_eq!(pass.met, None);
        assert!(!report.targets_met());
    }

    #[test]
    fn table_and_json_carry_the_figures() {
        let report = report();
        let table = report.to_string();
        assert!(
            table.contains("floor (mz_floor: swap MACs, XDP_TX): 10.00 ns/packet (kernel: 10.00)")
        );
        assert!(table.contains("bouncer forward (w)"));
        assert!(table.contains("<= 3x met"));
        assert!(table.contains("<= 4x MISSED"));
        assert!(table.contains("target: transit divider forward within 4x the floor: MISSED"));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["repeat"], 1_000_000);
        assert_eq!(json["cpu"], "Test \"CPU\"");
        let paths = json["paths"].as_array().unwrap();
        assert_eq!(paths[0]["id"], "transit.bouncer");
        assert_eq!(paths[0]["net_ns"], 30.0);
        assert_eq!(paths[0]["met"], true);
        assert_eq!(paths[1]["met"], false);
        assert!(paths[2]["wrapper_samples_ns"].is_null());
        assert_eq!(paths[0]["kernel_ns"], 45.0);
        assert_eq!(json["disagreements"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn a_figure_far_from_the_kernels_is_flagged() {
        let mut report = report();
        assert!(report.disagreements().is_empty());
        // 45 ns against the kernel's 60: off by more than 2 ns and 15%.
        report.paths[0].kernel_samples_ns = vec![60.0, 60.0, 60.0];
        // 16 against 15: within the kernel's rounding.
        report.paths[2].kernel_samples_ns = vec![16.0, 16.0, 16.0];
        let found = report.disagreements();
        assert_eq!(found, [("transit.bouncer".to_owned(), 45.0, 60.0)]);
    }

    #[test]
    fn options_refuse_short_runs_unless_quick() {
        assert!(BenchOptions::default().validate().is_ok());
        assert!(BenchOptions::quick().validate().is_ok());
        let short = BenchOptions {
            repeat: 1000,
            ..BenchOptions::default()
        };
        assert!(matches!(
            short.validate(),
            Err(BenchError::RepeatTooLow { repeat: 1000 })
        ));
        let zero = BenchOptions {
            runs: 0,
            ..BenchOptions::quick()
        };
        assert!(matches!(zero.validate(), Err(BenchError::Zero)));
    }

    #[test]
    fn every_path_has_its_own_reason() {
        let reasons: std::collections::HashSet<_> = PATHS.iter().map(|p| p.reason()).collect();
        assert_eq!(reasons.len(), PATHS.len());
        for path in PATHS {
            assert_ne!(path.reason_name(), "(unknown counter)");
        }
    }

    #[test]
    fn egress_ctx_is_an_xdp_md() {
        let ctx = egress_ctx(64);
        assert_eq!(ctx.len(), 24);
        assert_eq!(&ctx[4..8], &64u32.to_ne_bytes());
        assert_eq!(&ctx[12..16], &EGRESS_IFINDEX.to_ne_bytes());
    }
}
