//! What taps cost: transit's local-delivery path with no capture (the plain program), and under
//! a capture (the copy with the taps, as a capture attaches it) tapping transit's entry and
//! verdict with a filter that matches nothing, and copying every packet at both while a reader
//! drains the ring into pcapng; and how many records a second that reader (the capture's
//! exporter) writes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use aya::maps::{Array, MapData, RingBuf};
use mizar_captures::{CaptureWriter, Format};
use mizar_ebpf::{abi, maps as names};

use super::{BenchError, Harness, Path, Subject, median};
use crate::{
    capture::{CompiledFilter, Exporter, filter},
    dataplane::{Chains, DataplaneError, open_map},
};

/// A capture's state while the local-delivery path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapCase {
    /// No capture: what every packet pays when nobody captures.
    NoCapture,
    /// Transit's entry and verdict tapped, a filter no packet matches.
    MatchesNothing,
    /// Transit's entry and verdict tapped, every packet copied (twice), a reader draining.
    CopiesEverything,
}

pub const TAP_CASES: [TapCase; 3] = [
    TapCase::NoCapture,
    TapCase::MatchesNothing,
    TapCase::CopiesEverything,
];

impl TapCase {
    pub fn label(self) -> &'static str {
        match self {
            TapCase::NoCapture => "no capture",
            TapCase::MatchesNothing => "entry+verdict, filter matches nothing",
            TapCase::CopiesEverything => "entry+verdict, copies everything",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TapResult {
    pub case: TapCase,
    pub samples_ns: Vec<f64>,
    /// Records the taps wrote while this case was measured, and those lost (the ring full).
    pub records: u64,
    pub lost: u64,
}

impl TapResult {
    pub fn ns(&self) -> f64 {
        median(&self.samples_ns).unwrap_or(f64::NAN)
    }
}

/// The taps' section of a benchmark run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TapsReport {
    pub cases: Vec<TapResult>,
    /// Records a second the exporter writes as pcapng (to a sink), draining a full ring.
    pub exporter_samples: Vec<f64>,
}

impl TapsReport {
    pub fn exporter_records_per_s(&self) -> Option<f64> {
        median(&self.exporter_samples)
    }

    /// What a case adds to the path with no capture.
    pub fn added_ns(&self, case: &TapResult) -> Option<f64> {
        let base = self
            .cases
            .iter()
            .find(|c| c.case == TapCase::NoCapture)?
            .ns();
        Some(case.ns() - base)
    }
}

fn stats(harness: &Harness) -> Result<abi::mz_tap_stats, BenchError> {
    Ok(crate::capture::tap_stats(harness.dataplane.pins())?)
}

impl Harness {
    /// Sets the capture's flags and filter for `case`.
    fn set_capture(&mut self, case: TapCase) -> Result<(), BenchError> {
        let pins = self.dataplane.pins();
        let expression = match case {
            TapCase::MatchesNothing => "vni 16777215",
            _ => "",
        };
        let compiled = CompiledFilter::compile(&filter::parse(expression).expect("a filter"))
            .map_err(DataplaneError::Invalid)?;
        let mut tap: Array<MapData, abi::mz_tap_filter> = open_map(pins, names::TAP_FILTER)?;
        tap.set(0, compiled.to_raw(abi::MZ_TAP_SNAP_MAX, 1), 0)
            .map_err(|source| DataplaneError::Map {
                map: names::TAP_FILTER,
                source: Box::new(source),
            })?;
        let flags = match case {
            TapCase::NoCapture => 0,
            _ => {
                abi::MZ_HOST_TAPPING
                    | 1 << (1 + abi::MZ_TAP_TRANSIT_ENTRY)
                    | 1 << (1 + abi::MZ_TAP_TRANSIT_VERDICT)
            }
        };
        Chains::open(pins)?.set_tap_flags(flags)?;
        // A capture attaches the copies with the taps; with none, the plain programs run.
        self.tapped = case != TapCase::NoCapture;
        Ok(())
    }
}

/// A reader draining the ring into pcapng (to a sink) until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    exported: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Reader {
    fn start(harness: &Harness) -> Result<Self, BenchError> {
        let mut ring: RingBuf<MapData> = open_map(harness.dataplane.pins(), names::TAPS)?;
        let stop = Arc::new(AtomicBool::new(false));
        let exported = Arc::new(AtomicU64::new(0));
        let (stop2, exported2) = (stop.clone(), exported.clone());
        let thread = std::thread::spawn(move || {
            let writer =
                CaptureWriter::new(std::io::sink(), Format::PcapNg, &[], abi::MZ_TAP_SNAP_MAX)
                    .map_err(|e| e.to_string())?;
            let mut exporter = Exporter::bare(writer);
            while !stop2.load(Ordering::Relaxed) {
                match ring.next() {
                    Some(item) => {
                        if exporter.export(&item)? {
                            exported2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => std::thread::yield_now(),
                }
            }
            Ok(())
        });
        Ok(Self {
            stop,
            exported,
            thread: Some(thread),
        })
    }

    fn stop(mut self) -> Result<u64, BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| BenchError::Setup("the tap reader panicked".to_owned()))?
                .map_err(BenchError::Setup)?;
        }
        Ok(self.exported.load(Ordering::Relaxed))
    }
}

/// The records a second the exporter writes: the ring filled with no reader, then drained
/// into pcapng (to a sink) on this thread, timed.
fn exporter_rate(harness: &mut Harness, packet: &[u8]) -> Result<f64, BenchError> {
    harness.set_capture(TapCase::CopiesEverything)?;
    let mut ring: RingBuf<MapData> = open_map(harness.dataplane.pins(), names::TAPS)?;
    while ring.next().is_some() {}
    // 2 records a packet; the 8 MiB ring holds about 4,000 of 2 KiB.
    harness.run_checked(Subject::Path(Path::TransitLocal), packet, 2500)?;
    let writer = CaptureWriter::new(std::io::sink(), Format::PcapNg, &[], abi::MZ_TAP_SNAP_MAX)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut exporter = Exporter::bare(writer);
    let started = Instant::now();
    let mut exported = 0u64;
    while let Some(item) = ring.next() {
        if exporter.export(&item).map_err(BenchError::Setup)? {
            exported += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if exported == 0 {
        return Err(BenchError::Setup(
            "the taps wrote no record for the exporter to read".to_owned(),
        ));
    }
    Ok(exported as f64 / seconds)
}

/// One round of the taps' cases on the local-delivery path, appended to `report`.
pub(super) fn measure_round(
    harness: &mut Harness,
    packet: &[u8],
    repeat: u32,
    report: &mut TapsReport,
) -> Result<(), BenchError> {
    if report.cases.is_empty() {
        report.cases = TAP_CASES
            .iter()
            .map(|&case| TapResult {
                case,
                samples_ns: Vec::new(),
                records: 0,
                lost: 0,
            })
            .collect();
    }
    for result in &mut report.cases {
        harness.set_capture(result.case)?;
        let reader = match result.case {
            TapCase::CopiesEverything => Some(Reader::start(harness)?),
            _ => None,
        };
        let before = stats(harness)?;
        let run = harness.run_checked(Subject::Path(Path::TransitLocal), packet, repeat);
        let after = stats(harness)?;
        if let Some(reader) = reader {
            reader.stop()?;
        }
        result.samples_ns.push(run?.ns);
        result.records += after.records - before.records;
        result.lost += after.lost - before.lost;
    }
    report
        .exporter_samples
        .push(exporter_rate(harness, packet)?);
    harness.set_capture(TapCase::NoCapture)?;
    Ok(())
}
