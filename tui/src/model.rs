//! What the dashboard shows: owned samples taken by the sampler, and the rates and history the
//! model derives from consecutive samples. Nothing here touches a kernel or a terminal.

use std::{
    collections::{HashMap, VecDeque},
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use mizar_db::{EndpointKind, EndpointSpec, MacAddr, NetworkSpec, Topology, VpcSpec};

/// How many samples of history each counter keeps (two minutes at the default period).
pub const HISTORY_LEN: usize = 120;

/// Which program counts a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// The XDP verdict a reason ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Tx,
    Redirect,
    Drop,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Tx => "tx",
            Self::Redirect => "redirect",
            Self::Drop => "drop",
        }
    }
}

/// A counter of packets and bytes, as the data plane keeps them (totals since load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// One pipeline stage's entry counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSample {
    /// `ON_XDP_TX`, ...
    pub name: String,
    pub count: Count,
}

/// One verdict reason's counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonSample {
    pub name: String,
    pub description: String,
    pub program: Program,
    /// The stage the reason passes through (transit), or None (egress has no stages yet).
    pub stage: Option<String>,
    pub verdict: Verdict,
    pub count: Count,
}

/// An XDP program attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub role: String,
    pub interface: String,
    /// "native" or "generic".
    pub mode: String,
}

/// The data plane's part of a sample (present only while it is up).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataplaneSample {
    /// Shared between samples: it changes with the store or up/down, not every tick.
    pub attached: Arc<Vec<Attached>>,
    pub stages: Vec<StageSample>,
    /// Every reason, zero or not, so that history has no gaps.
    pub reasons: Vec<ReasonSample>,
    /// This host's functions in the stages' chains, in stage and chain order.
    pub functions: Vec<FunctionSample>,
}

/// A function in a stage's chain, with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSample {
    /// `ON_XDP_TX`, ...
    pub stage: String,
    /// Whose chain: "host" (this host's), "vpc:NAME" or "ep:VPC/NAME".
    pub scope: String,
    /// A disabled function keeps its place and counters; packets skip it.
    pub enabled: bool,
    /// 1-based, as `mizar chain show` prints it.
    pub position: usize,
    pub function: String,
    /// Its counters' identity: stable while it stays in the chain.
    pub instance: u16,
    /// Packets it took, of which it dropped `dropped`.
    pub packets: u64,
    pub dropped: u64,
    /// Packets timed, and their total time in the function.
    pub timed: u64,
    pub ns: u64,
    /// Packets it passed on with another decision than it received.
    pub changed: u64,
}

/// One endpoint row: what the store holds. Rows change only when the store does, so a sample
/// shares them with the previous one; counters come separately ([`EndpointCounters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub vpc: String,
    pub network: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub kind: EndpointKind,
    pub bypass_decap: bool,
    pub host: String,
    pub veth: Option<String>,
}

/// The counters of an endpoint hosted here (the others are counted on their own hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Index into the sample's endpoint rows.
    pub row: usize,
    /// Delivered to the endpoint.
    pub rx: Count,
    /// Sent by the endpoint.
    pub tx: Count,
}

impl EndpointRow {
    /// An endpoint of the store, without counters.
    pub fn from_store(vpc: &VpcSpec, network: &NetworkSpec, ep: &EndpointSpec) -> Self {
        Self {
            vpc: vpc.name.clone(),
            network: network.name.clone(),
            name: ep.name.clone(),
            ip: ep.ip,
            mac: ep.mac,
            kind: ep.kind,
            bypass_decap: ep.bypass_decap,
            host: ep.host.clone(),
            veth: ep.veth.clone(),
        }
    }

    pub fn kind_label(&self) -> String {
        let kind = self.kind.as_str();
        if self.bypass_decap {
            format!("{kind}+bypass")
        } else {
            kind.to_owned()
        }
    }
}

/// The endpoint rows of one store snapshot, with what filtering and sorting them needs: the text
/// a filter searches (lower-cased, fields apart) and the rows in VPC and name order, the order
/// ties keep. Made by the sampler once per store change (75 ms at 100,000 rows, which the UI
/// thread must not pay in a frame) and shared by every sample until the next change.
#[derive(Debug, Default)]
pub struct EndpointTable {
    rows: Vec<EndpointRow>,
    haystack: Vec<String>,
    by_name: Vec<usize>,
}

impl EndpointTable {
    pub fn new(rows: Vec<EndpointRow>) -> Self {
        let haystack = rows
            .iter()
            .map(|e| {
                format!(
                    "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
                    e.vpc,
                    e.network,
                    e.name,
                    e.ip,
                    e.mac,
                    e.host,
                    e.veth.as_deref().unwrap_or(""),
                    e.kind_label()
                )
                .to_lowercase()
            })
            .collect();
        let mut by_name: Vec<usize> = (0..rows.len()).collect();
        by_name.sort_by(|a, b| {
            let (ea, eb) = (&rows[*a], &rows[*b]);
            (&ea.vpc, &ea.name).cmp(&(&eb.vpc, &eb.name))
        });
        Self {
            rows,
            haystack,
            by_name,
        }
    }

    /// Row indices in VPC and name order whose text contains `needle` (already lower-cased;
    /// empty: every row).
    pub fn matching<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.by_name
            .iter()
            .copied()
            .filter(move |i| needle.is_empty() || self.haystack[*i].contains(needle))
    }
}

impl From<Vec<EndpointRow>> for EndpointTable {
    fn from(rows: Vec<EndpointRow>) -> Self {
        Self::new(rows)
    }
}

impl std::ops::Deref for EndpointTable {
    type Target = [EndpointRow];
    fn deref(&self) -> &[EndpointRow] {
        &self.rows
    }
}

/// Everything the sampler read at one instant: owned, so the UI never shares a lock with it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub taken: Instant,
    pub host: Option<String>,
    pub store: String,
    /// Whether the dashboard runs as root (without it, the maps cannot be read).
    pub root: bool,
    /// None: the data plane is down (or could not be read: see `error`).
    pub dataplane: Option<DataplaneSample>,
    /// What `mizar status` warns about, each with its fix.
    pub warnings: Vec<String>,
    /// Why (part of) the sample could not be read.
    pub error: Option<String>,
    pub topology: Arc<Topology>,
    pub endpoints: Arc<EndpointTable>,
    /// Counters of the endpoints hosted here, by row, in row order.
    pub counters: Vec<EndpointCounters>,
    /// How long taking this sample took.
    pub cost: Duration,
    /// The capture the dashboard started, if it did (running or ended).
    pub capture: Option<CaptureSample>,
}

/// A capture started from the dashboard: what it taps, how far it got, its last packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureSample {
    pub running: bool,
    pub points: String,
    pub filter: String,
    /// Where the file goes.
    pub file: String,
    pub captured: u64,
    pub elapsed: Duration,
    /// How it ended (None while it runs): the summary, or why it failed.
    pub ended: Option<Result<String, String>>,
    /// The last packets captured, oldest first.
    pub last: Vec<CapturedPacket>,
}

/// One captured packet, decoded for a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Since the capture began.
    pub at: Duration,
    pub id: u64,
    /// The file's interface: `ul0:transit:entry`, ...
    pub point: String,
    /// `drop`, `redirect`, ... (None at an entry).
    pub verdict: Option<String>,
    /// One line, tcpdump-like: outer and inner addresses, protocol, ports.
    pub summary: String,
    /// Stage, reason, VNI, VPC; the function that dropped it.
    pub comment: String,
}

impl Sample {
    /// A sample with nothing in it, as of `taken`.
    pub fn empty(taken: Instant) -> Self {
        Self {
            taken,
            host: None,
            store: String::new(),
            root: true,
            dataplane: None,
            warnings: Vec::new(),
            error: None,
            topology: Arc::new(Topology::default()),
            endpoints: Arc::default(),
            counters: Vec::new(),
            cost: Duration::ZERO,
            capture: None,
        }
    }
}

/// Packets and bits per second over one sample interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    pub packets: f64,
    pub bits: f64,
}

impl Rate {
    /// The rate between two totals `elapsed` apart. A counter that went backwards (the data
    /// plane was reloaded and its counters restarted) gives 0, not a huge wrapped figure.
    pub fn between(earlier: Count, later: Count, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Self::default();
        }
        Self {
            packets: later.packets.saturating_sub(earlier.packets) as f64 / secs,
            bits: later.bytes.saturating_sub(earlier.bytes) as f64 * 8.0 / secs,
        }
    }

    fn add(self, other: Rate) -> Rate {
        Rate {
            packets: self.packets + other.packets,
            bits: self.bits + other.bits,
        }
    }
}

/// What a row of the pipeline shows: a stage, the entry of a program, or one reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Series {
    /// Everything a program saw (the sum of its reasons).
    Entry(Program),
    /// What entered a transit stage.
    Stage(String),
    /// The drops of a stage (ON_XDP_DROP and the drops of ON_XDP_SCALED_EP).
    StageDrops(String),
    /// The drops of a program.
    ProgramDrops(Program),
    Reason(String),
    /// A function of a chain, by stage and instance.
    Function(String, u16),
    /// Its drops.
    FunctionDrops(String, u16),
}

/// The rates of the last interval and a bounded history of each series.
#[derive(Debug, Default)]
pub struct Model {
    latest: Option<Arc<Sample>>,
    previous: Option<Arc<Sample>>,
    rates: HashMap<Series, Rate>,
    history: HashMap<Series, VecDeque<f64>>,
    /// (rx, tx) by row of the latest sample, for the endpoints hosted here.
    endpoint_rates: HashMap<usize, (Rate, Rate)>,
    /// (rx, tx) totals by row of the latest sample.
    endpoint_counts: HashMap<usize, (Count, Count)>,
    samples: u64,
}

impl Model {
    /// Takes a new sample: derives the rates since the previous one and extends the history.
    pub fn ingest(&mut self, sample: Sample) {
        let sample = Arc::new(sample);
        self.samples += 1;
        self.rates.clear();
        self.endpoint_rates.clear();
        if let Some(prev) = self.latest.take() {
            let elapsed = sample.taken.saturating_duration_since(prev.taken);
            if let (Some(now), Some(then)) = (&sample.dataplane, &prev.dataplane) {
                self.derive_dataplane_rates(now, then, elapsed);
            }
            self.derive_endpoint_rates(&sample, &prev, elapsed);
            self.previous = Some(prev);
        }
        self.endpoint_counts = sample
            .counters
            .iter()
            .map(|c| (c.row, (c.rx, c.tx)))
            .collect();
        let series: Vec<Series> = self.rates.keys().cloned().collect();
        for s in series {
            let rate = self.rates[&s].packets;
            let h = self.history.entry(s).or_default();
            if h.len() == HISTORY_LEN {
                h.pop_front();
            }
            h.push_back(rate);
        }
        self.latest = Some(sample);
    }

    fn derive_dataplane_rates(
        &mut self,
        now: &DataplaneSample,
        then: &DataplaneSample,
        elapsed: Duration,
    ) {
        for stage in &now.stages {
            let before = then
                .stages
                .iter()
                .find(|s| s.name == stage.name)
                .map(|s| s.count)
                .unwrap_or_default();
            self.rates.insert(
                Series::Stage(stage.name.clone()),
                Rate::between(before, stage.count, elapsed),
            );
        }
        for program in [Program::Transit, Program::Egress] {
            self.rates.insert(Series::Entry(program), Rate::default());
            self.rates
                .insert(Series::ProgramDrops(program), Rate::default());
        }
        for stage in &now.stages {
            self.rates
                .insert(Series::StageDrops(stage.name.clone()), Rate::default());
        }
        for f in &now.functions {
            let before = then
                .functions
                .iter()
                .find(|b| b.stage == f.stage && b.instance == f.instance);
            let count = |packets| Count { packets, bytes: 0 };
            let (packets0, dropped0) = before.map_or((0, 0), |b| (b.packets, b.dropped));
            self.rates.insert(
                Series::Function(f.stage.clone(), f.instance),
                Rate::between(count(packets0), count(f.packets), elapsed),
            );
            self.rates.insert(
                Series::FunctionDrops(f.stage.clone(), f.instance),
                Rate::between(count(dropped0), count(f.dropped), elapsed),
            );
        }
        for reason in &now.reasons {
            let before = then
                .reasons
                .iter()
                .find(|r| r.name == reason.name)
                .map(|r| r.count)
                .unwrap_or_default();
            let rate = Rate::between(before, reason.count, elapsed);
            self.rates.insert(Series::Reason(reason.name.clone()), rate);
            let mut add = |series: Series| {
                let sum = self.rates.entry(series).or_default();
                *sum = sum.add(rate);
            };
            add(Series::Entry(reason.program));
            if reason.verdict == Verdict::Drop {
                add(Series::ProgramDrops(reason.program));
                if let Some(stage) = &reason.stage {
                    add(Series::StageDrops(stage.clone()));
                }
            }
        }
    }

    /// Only endpoints hosted here have counters, so this costs what they number, not what the
    /// store holds. Rows are matched by identity, since they come and go between samples.
    fn derive_endpoint_rates(&mut self, now: &Sample, then: &Sample, elapsed: Duration) {
        let identity = |rows: &[EndpointRow], row: usize| {
            rows.get(row).map(|e| (e.vpc.clone(), e.name.clone()))
        };
        let same_rows = Arc::ptr_eq(&now.endpoints, &then.endpoints);
        let before: HashMap<_, (Count, Count)> = if same_rows {
            HashMap::new()
        } else {
            then.counters
                .iter()
                .filter_map(|c| Some((identity(&then.endpoints, c.row)?, (c.rx, c.tx))))
                .collect()
        };
        let by_row: HashMap<usize, (Count, Count)> = if same_rows {
            then.counters
                .iter()
                .map(|c| (c.row, (c.rx, c.tx)))
                .collect()
        } else {
            HashMap::new()
        };
        self.endpoint_rates = now
            .counters
            .iter()
            .filter_map(|c| {
                let (rx0, tx0) = if same_rows {
                    *by_row.get(&c.row)?
                } else {
                    *before.get(&identity(&now.endpoints, c.row)?)?
                };
                Some((
                    c.row,
                    (
                        Rate::between(rx0, c.rx, elapsed),
                        Rate::between(tx0, c.tx, elapsed),
                    ),
                ))
            })
            .collect();
    }

    pub fn latest(&self) -> Option<&Arc<Sample>> {
        self.latest.as_ref()
    }

    /// A function's mean time per packet: over the last interval when it timed packets in it,
    /// else over its life (None: never timed).
    pub fn function_ns(&self, f: &FunctionSample) -> Option<f64> {
        let before = self
            .previous
            .as_ref()
            .and_then(|p| p.dataplane.as_ref())
            .and_then(|d| {
                d.functions
                    .iter()
                    .find(|b| b.stage == f.stage && b.instance == f.instance)
            });
        match before {
            Some(b) if f.timed > b.timed => {
                Some(f.ns.saturating_sub(b.ns) as f64 / (f.timed - b.timed) as f64)
            }
            _ => (f.timed > 0).then(|| f.ns as f64 / f.timed as f64),
        }
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The rate of a series over the last interval (None before two samples).
    pub fn rate(&self, series: &Series) -> Option<Rate> {
        self.rates.get(series).copied()
    }

    /// Packets per second of a series, oldest first.
    pub fn history(&self, series: &Series) -> Vec<f64> {
        self.history
            .get(series)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// (rx, tx) rates of the endpoint at `row` of the latest sample, when it is hosted here.
    pub fn endpoint_rate(&self, row: usize) -> Option<(Rate, Rate)> {
        self.endpoint_rates.get(&row).copied()
    }

    /// (rx, tx) totals of the endpoint at `row` of the latest sample, when it is hosted here.
    pub fn endpoint_counts(&self, row: usize) -> Option<(Count, Count)> {
        self.endpoint_counts.get(&row).copied()
    }
}

/// 1234567 → "1.23M"; what a rate column shows.
pub fn si(value: f64) -> String {
    let v = value.abs();
    let (scaled, unit) = if v >= 1e9 {
        (value / 1e9, "G")
    } else if v >= 1e6 {
        (value / 1e6, "M")
    } else if v >= 1e3 {
        (value / 1e3, "k")
    } else {
        return format!("{value:.0}");
    };
    if scaled.abs() >= 100.0 {
        format!("{scaled:.0}{unit}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}{unit}")
    } else {
        format!("{scaled:.2}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str, stage: &str, verdict: Verdict, packets: u64) -> ReasonSample {
        ReasonSample {
            name: name.into(),
            description: String::new(),
            program: Program::Transit,
            stage: Some(stage.into()),
            verdict,
            count: Count {
                packets,
                bytes: packets * 100,
            },
        }
    }

    fn sample(at: Instant, delivered: u64, dropped: u64) -> Sample {
        let mut s = Sample::empty(at);
        s.dataplane = Some(DataplaneSample {
            attached: Arc::default(),
            stages: vec![StageSample {
                name: "ON_XDP_REDIRECT".into(),
                count: Count {
                    packets: delivered,
                    bytes: delivered * 100,
                },
            }],
            reasons: vec![
                reason(
                    "deliver_local",
                    "ON_XDP_REDIRECT",
                    Verdict::Redirect,
                    delivered,
                ),
                reason("drop_unknown_vpc", "ON_XDP_DROP", Verdict::Drop, dropped),
            ],
            functions: vec![FunctionSample {
                scope: "host".into(),
                enabled: true,
                stage: "ON_XDP_REDIRECT".into(),
                position: 1,
                function: "count".into(),
                instance: 4,
                packets: delivered,
                dropped,
                timed: delivered / 64,
                ns: delivered / 64 * 20,
                changed: 0,
            }],
        });
        s
    }

    #[test]
    fn function_rates_and_cost_follow_their_instance() {
        let t0 = Instant::now();
        let mut model = Model::default();
        model.ingest(sample(t0, 6_400, 0));
        let f = |m: &Model| m.latest().unwrap().dataplane.as_ref().unwrap().functions[0].clone();
        assert_eq!(
            model.function_ns(&f(&model)),
            Some(20.0),
            "over its life at first"
        );
        model.ingest(sample(t0 + Duration::from_millis(500), 12_800, 5));
        let rate = model
            .rate(&Series::Function("ON_XDP_REDIRECT".into(), 4))
            .unwrap();
        assert_eq!(rate.packets, 12_800.0);
        let drops = model
            .rate(&Series::FunctionDrops("ON_XDP_REDIRECT".into(), 4))
            .unwrap();
        assert_eq!(drops.packets, 10.0);
        assert_eq!(model.function_ns(&f(&model)), Some(20.0));
    }

    #[test]
    fn rates_are_differences_over_elapsed_time() {
        let t0 = Instant::now();
        let mut model = Model::default();
        model.ingest(sample(t0, 1_000, 10));
        assert_eq!(model.rate(&Series::Entry(Program::Transit)), None);
        model.ingest(sample(t0 + Duration::from_millis(500), 2_000, 60));
        let entry = model.rate(&Series::Entry(Program::Transit)).unwrap();
        assert_eq!(entry.packets, (1_000.0 + 50.0) / 0.5);
        assert_eq!(entry.bits, 1_050.0 * 100.0 * 8.0 / 0.5);
        let drops = model.rate(&Series::ProgramDrops(Program::Transit)).unwrap();
        assert_eq!(drops.packets, 100.0);
        let stage_drops = model
            .rate(&Series::StageDrops("ON_XDP_DROP".into()))
            .unwrap_or_default();
        assert_eq!(stage_drops.packets, 100.0);
        let stage = model
            .rate(&Series::Stage("ON_XDP_REDIRECT".into()))
            .unwrap();
        assert_eq!(stage.packets, 2_000.0);
        assert_eq!(
            model.history(&Series::Reason("deliver_local".into())),
            [2_000.0]
        );
    }

    #[test]
    fn a_counter_that_restarts_gives_zero_not_a_wrapped_rate() {
        let t0 = Instant::now();
        let mut model = Model::default();
        model.ingest(sample(t0, 5_000, 0));
        model.ingest(sample(t0 + Duration::from_secs(1), 10, 0));
        let rate = model.rate(&Series::Reason("deliver_local".into())).unwrap();
        assert_eq!(rate.packets, 0.0);
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let mut model = Model::default();
        for i in 0..(HISTORY_LEN as u64 + 30) {
            model.ingest(sample(t0 + Duration::from_secs(i), i * 10, 0));
        }
        let h = model.history(&Series::Reason("deliver_local".into()));
        assert_eq!(h.len(), HISTORY_LEN);
        assert!(h.iter().all(|r| *r == 10.0));
    }

    #[test]
    fn endpoint_rates_follow_identity_not_position() {
        let t0 = Instant::now();
        let row = |name: &str| EndpointRow {
            vpc: "blue".into(),
            network: "web".into(),
            name: name.into(),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            kind: EndpointKind::Simple,
            bypass_decap: false,
            host: "h1".into(),
            veth: None,
        };
        let counted = |row: usize, rx: u64| EndpointCounters {
            row,
            rx: Count {
                packets: rx,
                bytes: rx * 10,
            },
            tx: Count::default(),
        };
        let mut model = Model::default();
        let mut a = Sample::empty(t0);
        a.endpoints = Arc::new(vec![row("a"), row("b")].into());
        a.counters = vec![counted(0, 100), counted(1, 1_000)];
        let rows = a.endpoints.clone();
        model.ingest(a);
        // The store did not change: the rows are shared, the counters moved.
        let mut b = Sample::empty(t0 + Duration::from_secs(1));
        b.endpoints = rows;
        b.counters = vec![counted(0, 150), counted(1, 1_200)];
        model.ingest(b);
        assert_eq!(model.endpoint_rate(0).unwrap().0.packets, 50.0);
        assert_eq!(model.endpoint_counts(1).unwrap().0.packets, 1_200);
        let mut c = Sample::empty(t0 + Duration::from_secs(3));
        // "a" is gone, a new "c" came first: "b" keeps its own history.
        c.endpoints = Arc::new(vec![row("c"), row("b")].into());
        c.counters = vec![counted(0, 7), counted(1, 1_600)];
        model.ingest(c);
        assert_eq!(model.endpoint_rate(1).unwrap().0.packets, 200.0);
        assert_eq!(model.endpoint_rate(0), None);
        assert_eq!(model.endpoint_counts(0).unwrap().0.packets, 7);
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1_234.0), "1.23k");
        assert_eq!(si(56_789.0), "56.8k");
        assert_eq!(si(123_456_789.0), "123M");
        assert_eq!(si(2.5e9), "2.50G");
    }
}
