//! `mizar bench --live`: packets per second through the data plane attached to an interface,
//! beside the floor program attached to the same interface, with XDP live-frame mode
//! (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) as the generator.
//!
//! In a network namespace of its own (removed however the run ends), one veth pair:
//!
//! ```text
//!   generator: live test run on gen0 ──XDP_TX──▶ gen0 ═══ veth ═══ ul0: program under test
//!   gen0: mz_bench_sink (count, drop) ◀──────────────────────────── XDP_TX
//! ```
//!
//! The generator (mz_bench_wrap restoring the frame, then mz_bench_resize: XDP_TX) transmits
//! each frame out of gen0; veth hands it to ul0, whose XDP program (mz_transit attached as `up`
//! attaches it, or mz_floor) runs in veth's NAPI poll and sends it back; the sink on gen0
//! counts it. The thread is pinned to one CPU and veth runs the receiving NAPI on the CPU that
//! transmitted, so a figure is what one core forwards, veth's own cost included (the same for
//! every subject: the ratio to the floor is the comparable figure, diluted by that shared cost
//! where the non-live `mizar bench` ratio is not).
//!
//! Where the kernel refuses live-frame mode (EPERM, seen on some kernels even as root), the
//! generator is an `AF_PACKET` socket on gen0 instead ([`crate::lab::FrameInjector`]): the
//! same path through veth and the program under test, with the socket's own cost in every
//! subject's figure (the report says which generator ran).
//!
//! Nothing is trusted blindly: the sink must count every frame sent (veth drops what it cannot
//! queue, which would make a rate meaningless), and the transit paths must count their reason
//! once per frame.

use std::{
    fmt,
    time::{Duration, Instant},
};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use mizar_ebpf::{BENCH_SINK_PROGRAM, BENCH_WRAPPER_PROGRAM, FLOOR_PROGRAM, maps as map_names};

use super::{BenchError, Harness, Path, Subject, cpu_model, kernel_release, median, packet, xdp};
use crate::{
    dataplane::{AttachMode, detach},
    lab::{FrameInjector, NetNs, NetNsGuard, veth_pair},
};

/// The generator's veth and the one the program under test is attached to.
const GENERATOR_IFNAME: &str = "gen0";
const UNDERLAY_IFNAME: &str = "ul0";
/// Frames the kernel builds and sends per batch (its default).
const BATCH: u32 = 64;
/// The sink has counted everything once its count stays put this long.
const SETTLED: Duration = Duration::from_millis(20);

/// What the live benchmark forwards: paths that send the frame back out of the interface it
/// came in on, as the floor does.
pub const LIVE_PATHS: [Path; 2] = [Path::TransitBouncer, Path::TransitDivider];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOptions {
    /// Frames the generator sends per measurement.
    pub frames: u32,
    /// Measurements per subject; the median is reported.
    pub runs: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            frames: 2_000_000,
            runs: 5,
        }
    }
}

impl LiveOptions {
    pub fn quick() -> Self {
        Self {
            frames: 20_000,
            runs: 1,
        }
    }
}

/// One subject's measurements.
#[derive(Debug, Clone)]
pub struct LiveResult {
    /// None: the floor.
    pub path: Option<Path>,
    /// Frames per second the sink counted back, per run.
    pub pps_samples: Vec<f64>,
    pub attach_mode: AttachMode,
}

impl LiveResult {
    pub fn pps(&self) -> Option<f64> {
        median(&self.pps_samples)
    }

    /// Nanoseconds of one core per frame, veth included.
    pub fn ns(&self) -> Option<f64> {
        self.pps().map(|pps| 1e9 / pps)
    }

    pub fn name(&self) -> &'static str {
        self.path.map_or("floor", Path::id)
    }
}

#[derive(Debug, Clone)]
pub struct LiveReport {
    /// "XDP live frames", or "AF_PACKET" where the kernel refused live-frame mode.
    pub generator: &'static str,
    pub frames: u32,
    pub runs: u32,
    pub kernel: String,
    pub cpu: String,
    pub floor: LiveResult,
    pub paths: Vec<LiveResult>,
}

impl LiveReport {
    /// A path's cost per frame as a multiple of the floor's.
    pub fn ratio(&self, result: &LiveResult) -> Option<f64> {
        Some(result.ns()? / self.floor.ns()?)
    }

    pub fn to_json(&self) -> String {
        let result = |r: &LiveResult| {
            serde_json::json!({
                "id": r.name(),
                "pps": r.pps(),
                "ns": r.ns(),
                "ratio": self.ratio(r),
                "pps_samples": r.pps_samples,
                "attach_mode": r.attach_mode.to_string(),
            })
        };
        serde_json::json!({
            "generator": self.generator,
            "frames": self.frames,
            "runs": self.runs,
            "kernel": self.kernel,
            "cpu": self.cpu,
            "floor": result(&self.floor),
            "paths": self.paths.iter().map(result).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

impl fmt::Display for LiveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mizar bench --live: {} through a veth pair, {} frames per run, median of {} runs, one CPU",
            self.generator, self.frames, self.runs
        )?;
        writeln!(f, "kernel {}, CPU {}", self.kernel, self.cpu)?;
        writeln!(
            f,
            "ns: one core's time per frame (generator, veth and sink included); ratio: to the floor in the same topology"
        )?;
        writeln!(
            f,
            "{:<18} {:<8} {:>12} {:>9} {:>7}",
            "subject", "attach", "frames/s", "ns/frame", "ratio"
        )?;
        for r in std::iter::once(&self.floor).chain(&self.paths) {
            writeln!(
                f,
                "{:<18} {:<8} {:>12} {:>9} {:>7}",
                r.name(),
                r.attach_mode.to_string(),
                r.pps().map_or("-".into(), |p| format!("{p:.0}")),
                r.ns().map_or("-".into(), |n| format!("{n:.1}")),
                self.ratio(r).map_or("-".into(), |x| format!("{x:.2}x")),
            )?;
        }
        Ok(())
    }
}

/// The namespace, its veths and the programs on them; gone when this drops.
struct Topology {
    // Field order is drop order: the thread leaves the namespace before it is deleted.
    _inside: NetNsGuard,
    _ns: NetNs,
    generator_ifindex: u32,
    underlay_ifindex: u32,
}

fn setup<E: fmt::Display>(what: &str) -> impl Fn(E) -> BenchError + '_ {
    move |err| BenchError::Setup(format!("{what}: {err}"))
}

impl Topology {
    fn new() -> Result<Self, BenchError> {
        let ns = NetNs::create(&format!("mzbench-live-{}", std::process::id()))
            .map_err(setup("creating the benchmark's network namespace"))?;
        veth_pair(&ns, GENERATOR_IFNAME, None, &ns, UNDERLAY_IFNAME, None)
            .map_err(setup("creating its veth pair"))?;
        let ifindex = |name| ns.ifindex(name).map_err(setup("reading an ifindex"));
        let (generator_ifindex, underlay_ifindex) =
            (ifindex(GENERATOR_IFNAME)?, ifindex(UNDERLAY_IFNAME)?);
        let inside = ns.enter().map_err(setup("entering the namespace"))?;
        Ok(Self {
            _inside: inside,
            _ns: ns,
            generator_ifindex,
            underlay_ifindex,
        })
    }
}

/// Keeps the calling thread on one CPU (the one it runs on) until this drops.
struct Pinned(libc::cpu_set_t);

impl Pinned {
    fn here() -> Result<Self, BenchError> {
        // SAFETY: plain libc calls on a zeroed cpu_set_t owned here.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut previous) != 0 {
                return Err(BenchError::Setup(format!(
                    "reading the CPU affinity: {}",
                    std::io::Error::last_os_error()
                )));
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(libc::sched_getcpu().max(0) as usize, &mut one);
            if libc::sched_setaffinity(0, size, &one) != 0 {
                return Err(BenchError::Setup(format!(
                    "pinning the thread to a CPU: {}",
                    std::io::Error::last_os_error()
                )));
            }
            Ok(Self(previous))
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: restores the affinity read in `here`.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0);
        }
    }
}

fn program_error(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> BenchError {
    move |source| BenchError::Program {
        program,
        source: Box::new(source),
    }
}

/// The bench object's program `name`, mutable (for attaching).
fn xdp_mut<'a>(harness: &'a mut Harness, name: &'static str) -> &'a mut Xdp {
    harness
        .bench
        .program_mut(name)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("loaded and checked in Harness::new")
}

/// `struct xdp_md` of a `len`-byte frame arriving on `ifindex`, queue 0.
fn live_ctx(ifindex: u32, len: usize) -> Vec<u8> {
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    [0u32, len as u32, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

struct Live {
    harness: Harness,
    topology: Topology,
    sunk: PerCpuArray<MapData, u64>,
    /// Set once the kernel refused live-frame mode.
    injector: Option<FrameInjector>,
}

impl Live {
    fn sunk(&self) -> Result<u64, BenchError> {
        let values = self.sunk.get(&0, 0).map_err(|source| BenchError::Map {
            map: map_names::BENCH_SUNK,
            source: Box::new(source),
        })?;
        Ok(values.iter().sum())
    }

    /// Attaches `path`'s program (the floor for None) to ul0; returns how to take it off.
    fn attach(
        &mut self,
        path: Option<Path>,
    ) -> Result<(AttachMode, Option<XdpLinkId>), BenchError> {
        match path {
            None => {
                let link = xdp_mut(&mut self.harness, FLOOR_PROGRAM)
                    .attach(UNDERLAY_IFNAME, XdpMode::Driver)
                    .map_err(program_error(FLOOR_PROGRAM))?;
                Ok((AttachMode::Native, Some(link)))
            }
            Some(_) => Ok((
                self.harness.dataplane.attach_transit(UNDERLAY_IFNAME)?,
                None,
            )),
        }
    }

    fn detach(&mut self, link: Option<XdpLinkId>) -> Result<(), BenchError> {
        match link {
            Some(link) => xdp_mut(&mut self.harness, FLOOR_PROGRAM)
                .detach(link)
                .map_err(program_error(FLOOR_PROGRAM)),
            None => {
                detach(self.harness.dataplane.pins(), "transit", UNDERLAY_IFNAME)?;
                Ok(())
            }
        }
    }

    /// Sends `frames` frames of `path`'s packet through whatever ul0 runs; returns frames per
    /// second counted back, after checking that every frame came back (and, for a transit
    /// path, was counted under its reason).
    fn measure(&mut self, path: Option<Path>, frames: u32) -> Result<f64, BenchError> {
        let path_or_floor = path.unwrap_or(Path::TransitBouncer);
        let frame = packet(path_or_floor);
        self.harness
            .arm_wrapper(Subject::WrappedResize(0), &frame)?;
        let subject = path.map_or("floor".to_owned(), |p| p.id().to_owned());
        let before = (self.sunk()?, self.harness.counters()?);
        let ctx = live_ctx(self.topology.generator_ifindex, frame.len());
        let mut started = Instant::now();
        if self.injector.is_none() {
            let generator = xdp(&self.harness.bench, BENCH_WRAPPER_PROGRAM);
            let sent = generator.test_run(TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat: frames,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..Default::default()
            });
            match sent {
                Ok(_) => {}
                Err(aya::programs::ProgramError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EPERM) =>
                {
                    tracing::warn!(
                        "the kernel refuses XDP live-frame mode; an AF_PACKET socket generates"
                    );
                    self.injector = Some(
                        FrameInjector::new(self.topology.generator_ifindex)
                            .map_err(setup("opening a packet socket on gen0"))?,
                    );
                }
                Err(source) => {
                    return Err(BenchError::TestRun {
                        subject: format!("live {subject}"),
                        source: Box::new(source),
                    });
                }
            }
        }
        if let Some(injector) = &self.injector {
            started = Instant::now();
            injector
                .send_repeated(&frame, u64::from(frames))
                .map_err(setup("sending through the packet socket"))?;
        }
        // veth may still be draining its queue: the run ends with the last frame counted.
        let (mut count, mut last_change) = (self.sunk()?, Instant::now());
        while last_change.elapsed() < SETTLED {
            std::thread::sleep(Duration::from_millis(1));
            let now = self.sunk()?;
            if now != count {
                (count, last_change) = (now, Instant::now());
            }
        }
        let received = count - before.0;
        if received != u64::from(frames) {
            return Err(BenchError::Setup(format!(
                "live {subject}: {frames} frames sent, {received} came back (veth dropped the \
                 rest); try fewer --frames"
            )));
        }
        if let Some(path) = path {
            let delta = self.harness.counters()?.since(&before.1);
            let counted = delta.packets(path.reason());
            if counted != u64::from(frames) {
                return Err(BenchError::WrongCounters {
                    subject: format!("live {subject}"),
                    reason: path.reason_name(),
                    expected: u64::from(frames),
                    counted: counted.to_string(),
                });
            }
        }
        Ok(received as f64 / (last_change - started).as_secs_f64())
    }
}

pub fn run(options: &LiveOptions) -> Result<LiveReport, BenchError> {
    if options.frames == 0 || options.runs == 0 {
        return Err(BenchError::Zero);
    }
    let topology = Topology::new()?;
    let mut harness = Harness::new(topology.underlay_ifindex)?;
    let sunk = PerCpuArray::try_from(harness.bench.take_map(map_names::BENCH_SUNK).ok_or_else(
        || {
            BenchError::Setup(format!(
                "the bench object has no map {}",
                map_names::BENCH_SUNK
            ))
        },
    )?)
    .map_err(|source| BenchError::Map {
        map: map_names::BENCH_SUNK,
        source: Box::new(source),
    })?;
    // veth takes XDP_TX frames only into a peer with an XDP program (or GRO): the sink.
    xdp_mut(&mut harness, BENCH_SINK_PROGRAM)
        .attach(GENERATOR_IFNAME, XdpMode::Driver)
        .map_err(program_error(BENCH_SINK_PROGRAM))?;
    let mut live = Live {
        harness,
        topology,
        sunk,
        injector: None,
    };
    let _pinned = Pinned::here()?;

    let subjects: Vec<Option<Path>> = std::iter::once(None).chain(LIVE_PATHS.map(Some)).collect();
    let mut results: Vec<LiveResult> = subjects
        .iter()
        .map(|path| LiveResult {
            path: *path,
            pps_samples: Vec::new(),
            attach_mode: AttachMode::Native,
        })
        .collect();
    // Rounds interleave the subjects, so a drift of the machine touches them all alike.
    for round in 0..options.runs {
        for result in &mut results {
            let (mode, link) = live.attach(result.path)?;
            result.attach_mode = mode;
            let measured = live.measure(result.path, options.frames);
            live.detach(link)?;
            result.pps_samples.push(measured?);
        }
        tracing::info!(round = round + 1, of = options.runs, "live round done");
    }
    let floor = results.remove(0);
    let generator = if live.injector.is_some() {
        "AF_PACKET"
    } else {
        "XDP live frames"
    };
    // The programs come off before the namespace goes.
    drop(live);
    Ok(LiveReport {
        generator,
        frames: options.frames,
        runs: options.runs,
        kernel: kernel_release(),
        cpu: cpu_model(),
        floor,
        paths: results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_ns_over_the_floor() {
        let result = |path, pps| LiveResult {
            path,
            pps_samples: vec![pps],
            attach_mode: AttachMode::Native,
        };
        let report = LiveReport {
            generator: "XDP live frames",
            frames: 1,
            runs: 1,
            kernel: String::new(),
            cpu: String::new(),
            floor: result(None, 4e6),
            paths: vec![result(Some(Path::TransitBouncer), 1e6)],
        };
        assert_eq!(report.floor.ns(), Some(250.0));
        assert_eq!(report.ratio(&report.paths[0]), Some(4.0));
        assert!(report.to_string().contains("transit.bouncer"));
    }

    #[test]
    fn the_live_paths_send_back_where_they_came_from() {
        for path in LIVE_PATHS {
            assert_eq!(path.verdict(), super::super::Verdict::Tx, "{path:?}");
        }
    }
}
