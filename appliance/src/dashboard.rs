//! The dashboard's data source: this instance's store and pinned maps, read as the status model
//! reads them, and changes made through the library's one change path ([`Instance::make`]), so
//! the dashboard and the CLI see and make the same changes.
//!
//! Cost per sample: the counters (one per-CPU array read) and the counters of endpoints hosted
//! here; the store is read again only when another connection committed to it (SQLite's data
//! version), and the drift check of `status` runs on a store change and every
//! [`WARNINGS_EVERY`] otherwise.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use mizar_db::{Request, Store, Topology};
use mizar_tui::{
    CaptureRequest, DataSource, Sample,
    model::{
        Attached, CaptureSample, CapturedPacket, Count, DataplaneSample, EndpointCounters,
        EndpointRow, EndpointTable, FunctionSample, Program, ReasonSample, StageSample, Verdict,
    },
};

use crate::{
    capture::{CaptureOptions, Progress, TapPoint, compile_filter},
    dataplane::{STAGES, XDP_PASS, XDP_REDIRECT, XDP_TX, reason_outcome},
    fabric::{FabricError, Instance},
};

/// The last packets of a capture the dashboard lists.
pub const CAPTURE_LIST: usize = 200;

/// A capture the dashboard started: it runs on a thread of its own (the sampler keeps
/// sampling), sharing its progress through `state`.
struct RunningCapture {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<CaptureSample>>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningCapture {
    fn state(&self) -> CaptureSample {
        let mut s = self
            .state
            .lock()
            .expect("the capture thread never panics holding it")
            .clone();
        if s.running {
            s.elapsed = self.started.elapsed();
        }
        s
    }

    /// Stops it and waits for its end (the file whole); returns how it ended.
    fn stop(&mut self) -> Result<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| "the capture thread panicked".to_owned())?;
        }
        self.state()
            .ended
            .unwrap_or_else(|| Err("the capture ended without a summary".into()))
    }
}

impl Drop for RunningCapture {
    fn drop(&mut self) {
        // Quitting the dashboard ends its capture cleanly (taps removed, file whole).
        let _ = self.stop();
    }
}

/// How often warnings (and the maps-versus-store drift check behind them) are recomputed when
/// the store did not change.
pub const WARNINGS_EVERY: Duration = Duration::from_secs(10);

pub struct FabricSource {
    instance: Instance,
    store: Option<Store>,
    data_version: Option<i64>,
    topology: Arc<Topology>,
    /// The store's endpoints in topology order, without counters.
    endpoints: Arc<EndpointTable>,
    /// Indices into `endpoints` of those hosted here (the only ones with counters), with their VNI.
    local: Vec<(usize, u32)>,
    warnings: Vec<String>,
    warnings_at: Option<Instant>,
    /// What the kernel said is attached, refreshed with the warnings; None while down.
    attached: Option<Arc<Vec<Attached>>>,
    capture: Option<RunningCapture>,
}

impl FabricSource {
    pub fn new(instance: Instance) -> Self {
        Self {
            instance,
            store: None,
            data_version: None,
            topology: Arc::new(Topology::default()),
            endpoints: Arc::default(),
            local: Vec::new(),
            warnings: Vec::new(),
            warnings_at: None,
            attached: None,
            capture: None,
        }
    }

    /// Starts a capture on a thread of its own; refuses bad points and filters at once.
    fn start(&mut self, request: &CaptureRequest) -> Result<String, String> {
        if self.capture.as_ref().is_some_and(|c| c.state().running) {
            return Err("a capture is running: stop it first".into());
        }
        if !self.instance.is_up() {
            return Err("the data plane is down: nothing to capture; run `mizar up` first".into());
        }
        let points = request
            .points
            .split(',')
            .map(|p| p.trim().parse::<TapPoint>())
            .collect::<Result<Vec<_>, _>>()?;
        let store = self
            .instance
            .existing_store()
            .map_err(|e| crate::describe_error(&e))?;
        compile_filter(&store, &request.filter)?;
        let format = mizar_captures::Format::PcapNg;
        let (file, path) = self
            .instance
            .capture_file(request.file.as_deref().map(std::path::Path::new), format)?;
        let options = CaptureOptions {
            points,
            filter: request.filter.clone(),
            snaplen: mizar_ebpf::abi::MZ_TAP_SNAP_MAX,
            sample_every: 1,
            count: request.count,
            duration: None,
            format,
            describe: true,
        };
        let state = Arc::new(Mutex::new(CaptureSample {
            running: true,
            points: request.points.clone(),
            filter: request.filter.clone(),
            file: path.display().to_string(),
            ..CaptureSample::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (instance, shared, stopping) = (self.instance.clone(), state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("mizar-capture".into())
            .spawn(move || {
                let mut first_ns = None;
                let result =
                    instance.capture(&options, std::io::BufWriter::new(file), &stopping, |p| {
                        let mut s = shared.lock().expect("never poisoned");
                        match p {
                            Progress::Count(n) => s.captured = n,
                            Progress::Packet(seen) => {
                                let first = *first_ns.get_or_insert(seen.monotonic_ns);
                                s.captured += 1;
                                if s.last.len() == CAPTURE_LIST {
                                    s.last.remove(0);
                                }
                                s.last.push(CapturedPacket {
                                    at: Duration::from_nanos(
                                        seen.monotonic_ns.saturating_sub(first),
                                    ),
                                    id: seen.packet_id,
                                    point: seen.point.clone(),
                                    verdict: seen.verdict.map(str::to_owned),
                                    summary: seen.summary.clone(),
                                    comment: seen.comment.clone(),
                                });
                            }
                        }
                    });
                let mut s = shared.lock().expect("never poisoned");
                s.running = false;
                s.elapsed = started.elapsed();
                s.ended = Some(match result {
                    Ok(summary) => {
                        s.captured = summary.captured;
                        Ok(format!("{summary}; written to {}", s.file))
                    }
                    Err(e) => {
                        // Nothing captured: no file left behind.
                        let _ = std::fs::remove_file(&s.file);
                        Err(crate::describe_error(&e))
                    }
                });
            })
            .map_err(|e| format!("cannot start the capture's thread: {e}"))?;
        self.capture = Some(RunningCapture {
            stop,
            state,
            started,
            thread: Some(thread),
        });
        Ok(format!(
            "capturing at {} into {}",
            request.points,
            path.display()
        ))
    }

    fn read(&mut self, sample: &mut Sample) -> Result<(), FabricError> {
        if self.store.is_none() {
            self.store = Some(self.instance.existing_store()?);
        }
        let store = self.store.as_ref().expect("just opened");
        let version = store.data_version()?;
        let store_changed = self.data_version != Some(version);
        if store_changed {
            let topology = store.snapshot()?;
            self.reload(&topology);
            self.data_version = Some(version);
        }
        let store = self.store.as_ref().expect("just opened");
        sample.host = self.topology.this_host.clone();
        sample.topology = self.topology.clone();
        sample.endpoints = self.endpoints.clone();
        if !sample.root || !self.instance.is_up() {
            self.warnings.clear();
            self.attached = None;
            return Ok(());
        }
        let Some(maps) = self.instance.maps()? else {
            return Ok(());
        };
        let counters = maps.counters()?;
        let reasons = mizar_ebpf::COUNTER_INFO
            .iter()
            .map(|info| {
                let (verdict, stage) = reason_outcome(info.name);
                let egress = info.name.starts_with("egress_");
                let v = counters.get(info.slot);
                ReasonSample {
                    name: info.name.to_owned(),
                    description: info.description.to_owned(),
                    program: if egress {
                        Program::Egress
                    } else {
                        Program::Transit
                    },
                    stage: (!egress).then(|| stage.name().to_owned()),
                    verdict: match verdict {
                        XDP_PASS => Verdict::Pass,
                        XDP_TX => Verdict::Tx,
                        XDP_REDIRECT => Verdict::Redirect,
                        // XDP_DROP; no reason ends in XDP_ABORTED.
                        _ => Verdict::Drop,
                    },
                    count: Count {
                        packets: v.packets,
                        bytes: v.bytes,
                    },
                }
            })
            .collect();
        let stages = STAGES
            .iter()
            .map(|stage| {
                let v = counters.stage(*stage);
                StageSample {
                    name: stage.name().to_owned(),
                    count: Count {
                        packets: v.packets,
                        bytes: v.bytes,
                    },
                }
            })
            .collect();
        let due = self
            .warnings_at
            .is_none_or(|at| at.elapsed() >= WARNINGS_EVERY);
        // What is attached changes with the store or with up/down; asking the kernel costs a
        // dump of every link (about 10 ms with 2,000 veths), so it is asked on the warnings'
        // cadence, and at once after either.
        if store_changed || due || self.attached.is_none() {
            self.attached = Some(Arc::new(
                self.instance
                    .attachments()
                    .into_iter()
                    .map(|a| Attached {
                        role: a.role.to_owned(),
                        interface: a.ifname,
                        mode: a.mode.to_string(),
                    })
                    .collect(),
            ));
        }
        let functions = self
            .instance
            .chain_status(store)?
            .into_iter()
            .flat_map(|chain| {
                let stage = chain.stage.name();
                let host = chain.links.into_iter().map(|l| {
                    let place = ("host".to_owned(), l.link.position, l.link.enabled);
                    (place, l.link.function, l.link.instance, l.stats)
                });
                let scoped = chain.scoped.into_iter().map(|l| {
                    let place = (l.link.scope(), l.link.position, l.link.enabled);
                    (place, l.link.function, l.link.instance, l.stats)
                });
                host.chain(scoped)
                    .filter_map(
                        move |((scope, position, enabled), function, instance, stats)| {
                            let s = stats?;
                            Some(FunctionSample {
                                stage: stage.to_owned(),
                                scope,
                                enabled,
                                position,
                                function,
                                instance,
                                packets: s.packets(),
                                dropped: s.drops(),
                                timed: s.timed,
                                ns: s.ns,
                                changed: s.changed,
                            })
                        },
                    )
                    .collect::<Vec<_>>()
            })
            .collect();
        sample.dataplane = Some(DataplaneSample {
            attached: self.attached.clone().unwrap_or_default(),
            stages,
            reasons,
            functions,
        });
        // Only endpoints hosted here have counters; the rows stay shared.
        for &(row, vni) in &self.local {
            if let Some(stats) = maps.endpoint_stats(vni, self.endpoints[row].ip)? {
                sample.counters.push(EndpointCounters {
                    row,
                    rx: Count {
                        packets: stats.rx_packets,
                        bytes: stats.rx_bytes,
                    },
                    tx: Count {
                        packets: stats.tx_packets,
                        bytes: stats.tx_bytes,
                    },
                });
            }
        }
        if store_changed || due {
            self.warnings = self.instance.status(store)?.warnings;
            self.warnings_at = Some(Instant::now());
            // The drift check plans the whole configuration: at 100,000 endpoints a transient
            // of some 65 MB that glibc would otherwise keep mapped between checks.
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only returns free heap pages to the kernel.
            unsafe {
                libc::malloc_trim(0);
            }
        }
        sample.warnings = self.warnings.clone();
        Ok(())
    }

    fn reload(&mut self, topology: &Topology) {
        let this_host = topology.this_host.as_deref();
        let mut rows = Vec::new();
        let mut local = Vec::new();
        for (vpc, net, ep) in topology.endpoints() {
            if Some(ep.host.as_str()) == this_host {
                local.push((rows.len(), vpc.vni));
            }
            rows.push(EndpointRow::from_store(vpc, net, ep));
        }
        self.topology = Arc::new(topology.clone());
        self.endpoints = Arc::new(EndpointTable::new(rows));
        self.local = local;
    }
}

impl DataSource for FabricSource {
    fn sample(&mut self) -> Sample {
        let started = Instant::now();
        let mut sample = Sample::empty(started);
        sample.store = self.instance.store_path().display().to_string();
        sample.root = nix::unistd::geteuid().is_root();
        if let Err(err) = self.read(&mut sample) {
            // The store may have been replaced or removed: open it again next time.
            self.store = None;
            self.data_version = None;
            sample.error = Some(crate::describe_error(&err));
        }
        sample.capture = self.capture.as_ref().map(RunningCapture::state);
        sample.cost = started.elapsed();
        sample
    }

    fn start_capture(&mut self, request: &CaptureRequest) -> Result<String, String> {
        self.start(request)
    }

    fn stop_capture(&mut self) -> Result<String, String> {
        match &mut self.capture {
            Some(c) if c.state().running => c.stop(),
            _ => Err("no capture is running".into()),
        }
    }

    fn change(&mut self, request: &Request) -> Result<String, String> {
        let changed = self
            .instance
            .make(request)
            .map_err(|e| crate::describe_error(&e))?;
        Ok(match &changed.dataplane {
            Some(report) => format!("{}; data plane: {}", changed.outcome, report.maps),
            None => changed.outcome,
        })
    }
}
