//! `mizar metrics`: the dashboard's samples served as Prometheus metrics.
//!
//! The same sampler as `mizar tui` ([`FabricSource`] on a thread of its own, at a fixed period)
//! hands owned samples to the HTTP server; a scrape encodes the latest sample, once per sample
//! and format (a flood of scrapes costs one encoding per period, not one per request).
//! prometheus-client writes both formats: OpenMetrics for a scraper that asks for it (Prometheus
//! does), the classic text format (0.0.4) otherwise.
//!
//! Counters are the data plane's totals since it was loaded (Prometheus derives the rates and
//! handles the reset of a reload). Names follow the ecosystem's conventions: `mizar_` prefix,
//! `_total` on counters, units in the name (`_bytes_total`, `_seconds`), `_info` for metadata.

use std::{
    borrow::Cow,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use mizar_tui::{DataSource, Sample, model::EndpointCounters};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, info::Info},
    registry::{Registry, Unit},
};
use tokio::sync::watch;

use crate::{dashboard::FabricSource, fabric::Instance};

/// Where `mizar metrics` listens unless told: loopback, because the metrics name tenants and
/// their addresses.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9830";

/// The exposition formats a scrape can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// What the scraper's Accept header asks for: OpenMetrics when it names it, else text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// A sample as the exporter keeps it: with the wall-clock time it was taken.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub sample: Arc<Sample>,
    pub taken_at: SystemTime,
    /// Counts the samples, so that an encoding can be reused until the next one.
    pub seq: u64,
}

/// Encodes one sample in `format`.
pub fn encode(sampled: &Sampled, format: Format) -> String {
    let mut registry = Registry::with_prefix("mizar");
    registry.register_collector(Box::new(SampleCollector(sampled.clone())));
    let mut out = String::new();
    let written = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
    };
    // Writing into a String cannot fail; an encoder error would be a bug in a metric's shape.
    written.expect("metrics encode into a String");
    out
}

#[derive(Debug)]
struct SampleCollector(Sampled);

type Labels = Vec<(&'static str, Cow<'static, str>)>;

fn owned(value: &str) -> Cow<'static, str> {
    Cow::Owned(value.to_owned())
}

/// One metric family: its descriptor, then one series per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric_type: MetricType,
    series: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, metric_type)?;
    for (labels, value) in series {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for SampleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Sampled {
            sample, taken_at, ..
        } = &self.0;
        let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        info.encode(encoder.encode_descriptor(
            "build",
            "The mizar that serves these metrics",
            None,
            info.metric_type(),
        )?)?;
        let host = Info::new(vec![
            ("host", owned(sample.host.as_deref().unwrap_or(""))),
            ("store", owned(&sample.store)),
        ]);
        host.encode(encoder.encode_descriptor(
            "host",
            "This host's name in the store (empty before mizar init) and the store's path",
            None,
            host.metric_type(),
        )?)?;
        let unix = taken_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        gauge(
            &mut encoder,
            "sample_timestamp",
            "When the sample served was taken (Unix time)",
            Some(&Unit::Seconds),
            unix.as_secs_f64(),
        )?;
        gauge(
            &mut encoder,
            "sample_duration",
            "How long taking the sample served took",
            Some(&Unit::Seconds),
            sample.cost.as_secs_f64(),
        )?;
        gauge(
            &mut encoder,
            "sample_error",
            "1 when (part of) the sample could not be read (mizar status says why), else 0",
            None,
            i64::from(sample.error.is_some()),
        )?;
        gauge(
            &mut encoder,
            "status_warnings",
            "How many warnings mizar status gives (each names its fix)",
            None,
            sample.warnings.len() as i64,
        )?;
        self.encode_store(&mut encoder)?;
        gauge(
            &mut encoder,
            "dataplane_up",
            "1 when the data plane is up and its maps were read, else 0",
            None,
            i64::from(sample.dataplane.is_some()),
        )?;
        if let Some(dp) = &sample.dataplane {
            let attachment = Info::new(Vec::<(&str, &str)>::new());
            let mut m = encoder.encode_descriptor(
                "xdp_attachment",
                "An XDP program attached here: its role, interface and mode (native or generic)",
                None,
                attachment.metric_type(),
            )?;
            for a in dp.attached.iter() {
                let labels: Labels = vec![
                    ("role", owned(&a.role)),
                    ("interface", owned(&a.interface)),
                    ("mode", owned(&a.mode)),
                ];
                Info::new(labels).encode(m.encode_family(&Vec::<(&str, &str)>::new())?)?;
            }
            let stage_labels = |name: &str| -> Labels { vec![("stage", owned(name))] };
            family(
                &mut encoder,
                "stage_packets",
                "Packets the transit program passed through a pipeline stage",
                None,
                MetricType::Counter,
                dp.stages
                    .iter()
                    .map(|s| (stage_labels(&s.name), ConstCounter::new(s.count.packets))),
            )?;
            family(
                &mut encoder,
                "stage",
                "Bytes the transit program passed through a pipeline stage",
                Some(&Unit::Bytes),
                MetricType::Counter,
                dp.stages
                    .iter()
                    .map(|s| (stage_labels(&s.name), ConstCounter::new(s.count.bytes))),
            )?;
            let reason_labels = |r: &mizar_tui::model::ReasonSample| -> Labels {
                let mut labels = vec![
                    ("program", Cow::Borrowed(r.program.name())),
                    ("reason", owned(&r.name)),
                    ("verdict", Cow::Borrowed(r.verdict.name())),
                ];
                if let Some(stage) = &r.stage {
                    labels.push(("stage", owned(stage)));
                }
                labels
            };
            family(
                &mut encoder,
                "reason_packets",
                "Packets by the reason of their verdict (mizar_reason_info describes each)",
                None,
                MetricType::Counter,
                dp.reasons
                    .iter()
                    .map(|r| (reason_labels(r), ConstCounter::new(r.count.packets))),
            )?;
            family(
                &mut encoder,
                "reason",
                "Bytes by the reason of their verdict",
                Some(&Unit::Bytes),
                MetricType::Counter,
                dp.reasons
                    .iter()
                    .map(|r| (reason_labels(r), ConstCounter::new(r.count.bytes))),
            )?;
            let mut m = encoder.encode_descriptor(
                "reason",
                "What each verdict reason means",
                None,
                MetricType::Info,
            )?;
            for r in &dp.reasons {
                let mut labels = reason_labels(r);
                labels.push(("description", owned(&r.description)));
                Info::new(labels).encode(m.encode_family(&Vec::<(&str, &str)>::new())?)?;
            }
            // Functions are labelled by their instance, stable while they stay in the chain
            // (their position is not: a reorder would start new series).
            let function_labels = |f: &mizar_tui::model::FunctionSample| -> Labels {
                vec![
                    ("stage", owned(&f.stage)),
                    ("scope", owned(&f.scope)),
                    ("function", owned(&f.function)),
                    ("instance", Cow::Owned(f.instance.to_string())),
                ]
            };
            family(
                &mut encoder,
                "function_packets",
                "Packets a function of a stage's chain took",
                None,
                MetricType::Counter,
                dp.functions
                    .iter()
                    .map(|f| (function_labels(f), ConstCounter::new(f.packets))),
            )?;
            family(
                &mut encoder,
                "function_dropped_packets",
                "Packets a function of a stage's chain dropped",
                None,
                MetricType::Counter,
                dp.functions
                    .iter()
                    .map(|f| (function_labels(f), ConstCounter::new(f.dropped))),
            )?;
            family(
                &mut encoder,
                "function_changed_decisions",
                "Packets a function of a stage's chain passed on with another decision than it \
                 received (verdict, action, target)",
                None,
                MetricType::Counter,
                dp.functions
                    .iter()
                    .map(|f| (function_labels(f), ConstCounter::new(f.changed))),
            )?;
            family(
                &mut encoder,
                "function_timed_packets",
                "Packets whose time in a function was measured (one in 64 per CPU)",
                None,
                MetricType::Counter,
                dp.functions
                    .iter()
                    .map(|f| (function_labels(f), ConstCounter::new(f.timed))),
            )?;
            family(
                &mut encoder,
                "function_time",
                "Total time the timed packets spent in a function (divide by \
                 mizar_function_timed_packets_total for the mean)",
                Some(&Unit::Seconds),
                MetricType::Counter,
                dp.functions
                    .iter()
                    .map(|f| (function_labels(f), ConstCounter::new(f.ns as f64 / 1e9))),
            )?;
        }
        self.encode_endpoints(&mut encoder)
    }
}

impl SampleCollector {
    fn encode_store(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let t = &self.0.sample.topology;
        let networks = t.networks().count();
        let endpoints = t.endpoints().count();
        let bouncers: usize = t.networks().map(|(_, n)| n.bouncers.len()).sum();
        let dividers: usize = t.vpcs.iter().map(|v| v.dividers.len()).sum();
        let counts = [
            ("host", t.hosts.len()),
            ("vpc", t.vpcs.len()),
            ("network", networks),
            ("endpoint", endpoints),
            ("bouncer", bouncers),
            ("divider", dividers),
        ];
        family(
            encoder,
            "store_objects",
            "Objects in the store by kind (bouncer and divider: host assignments)",
            None,
            MetricType::Gauge,
            counts.map(|(kind, n)| {
                let labels: Labels = vec![("kind", Cow::Borrowed(kind))];
                (labels, ConstGauge::new(n as i64))
            }),
        )
    }

    /// Per-endpoint counters exist for the endpoints hosted here only (the others are counted
    /// on their own hosts).
    fn encode_endpoints(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let sample = &self.0.sample;
        let labels = |c: &EndpointCounters| -> Labels {
            let r = &sample.endpoints[c.row];
            vec![
                ("vpc", owned(&r.vpc)),
                ("network", owned(&r.network)),
                ("endpoint", owned(&r.name)),
                ("ip", Cow::Owned(r.ip.to_string())),
            ]
        };
        type Pick = fn(&EndpointCounters) -> u64;
        let families: [(&str, &str, Option<Unit>, Pick); 4] = [
            (
                "endpoint_rx_packets",
                "Packets delivered to an endpoint hosted here",
                None,
                |c| c.rx.packets,
            ),
            (
                "endpoint_rx",
                "Bytes delivered to an endpoint hosted here",
                Some(Unit::Bytes),
                |c| c.rx.bytes,
            ),
            (
                "endpoint_tx_packets",
                "Packets an endpoint hosted here sent",
                None,
                |c| c.tx.packets,
            ),
            (
                "endpoint_tx",
                "Bytes an endpoint hosted here sent",
                Some(Unit::Bytes),
                |c| c.tx.bytes,
            ),
        ];
        for (name, help, unit, pick) in families {
            family(
                encoder,
                name,
                help,
                unit.as_ref(),
                MetricType::Counter,
                sample
                    .counters
                    .iter()
                    .map(|c| (labels(c), ConstCounter::new(pick(c)))),
            )?;
        }
        Ok(())
    }
}

/// The latest sample and the encodings made of it.
struct Shared {
    latest: watch::Receiver<Option<Sampled>>,
    encoded: Mutex<Vec<(u64, Format, Arc<String>)>>,
    /// A sample older than this is served with a 503: the sampler is stuck.
    stale_after: Duration,
}

impl Shared {
    fn scrape(&self, format: Format) -> Result<Arc<String>, &'static str> {
        let Some(sampled) = self.latest.borrow().clone() else {
            return Err("no sample taken yet: try again in a moment");
        };
        let age = sampled
            .sample
            .taken
            .elapsed()
            .saturating_sub(sampled.sample.cost);
        if age > self.stale_after {
            return Err(
                "the sampler has not produced a sample for too long (slow disk or kernel?)",
            );
        }
        let mut encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        encoded.retain(|(seq, _, _)| *seq == sampled.seq);
        if let Some((_, _, text)) = encoded.iter().find(|(_, f, _)| *f == format) {
            return Ok(text.clone());
        }
        let text = Arc::new(encode(&sampled, format));
        encoded.push((sampled.seq, format, text.clone()));
        Ok(text)
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let format = Format::negotiate(accept.as_deref());
    let scraped = tokio::task::spawn_blocking(move || shared.scrape(format)).await;
    match scraped {
        Ok(Ok(text)) => (
            [(header::CONTENT_TYPE, format.content_type())],
            String::clone(&text),
        )
            .into_response(),
        Ok(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn index() -> &'static str {
    "mizar metrics: the Prometheus metrics are at /metrics\n"
}

/// Runs the sampler on its own thread: a sample every `period`, sent to the server.
fn spawn_sampler(
    make_source: impl FnOnce() -> FabricSource + Send + 'static,
    period: Duration,
    tx: watch::Sender<Option<Sampled>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mizar-sampler".into())
        .spawn(move || {
            let mut source = make_source();
            let mut seq = 0;
            let mut next = Instant::now();
            loop {
                let sample = source.sample();
                let taken_at = SystemTime::now() - sample.taken.elapsed();
                seq += 1;
                let sampled = Sampled {
                    sample: Arc::new(sample),
                    taken_at,
                    seq,
                };
                if tx.send(Some(sampled)).is_err() {
                    return; // the server has gone
                }
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now; // a slow sample: do not try to catch up
                }
            }
        })
        .map(drop)
}

/// Serves the metrics on `listen` until SIGINT or SIGTERM. `on_listening` gets the bound
/// address (`listen` may have port 0).
pub fn serve(
    instance: Instance,
    listen: SocketAddr,
    period: Duration,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the metrics server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            let fix = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "something else listens there: stop it or pick another --listen"
                }
                std::io::ErrorKind::AddrNotAvailable => {
                    "no interface of this host has that address: pick one it has (ip -br addr)"
                }
                std::io::ErrorKind::PermissionDenied => "ports below 1024 need root",
                _ => "pick another --listen",
            };
            anyhow::anyhow!("cannot listen on {listen}: {e}; {fix}")
        })?;
        let bound = listener.local_addr()?;
        let (tx, rx) = watch::channel(None);
        spawn_sampler(move || FabricSource::new(instance), period, tx)
            .context("cannot start the sampler thread")?;
        let shared = Arc::new(Shared {
            latest: rx,
            encoded: Mutex::new(Vec::new()),
            stale_after: (period * 3).max(Duration::from_secs(30)),
        });
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/", get(index))
            .with_state(shared);
        on_listening(bound);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("the metrics server failed")
    })
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default dispositions still end the process.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(seconds: u64) -> Sampled {
        Sampled {
            sample: Arc::new(mizar_tui::fixture::sample(Instant::now(), seconds)),
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            seq: 1,
        }
    }

    fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn the_scraper_gets_openmetrics_when_it_asks_for_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
    }

    #[test]
    fn every_family_is_there_with_its_labels_and_values() {
        let text = encode(&sampled(10), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            series(&text, "mizar_stage_packets_total"),
            [
                r#"mizar_stage_packets_total{stage="ON_XDP_REDIRECT"} 10000"#,
                r#"mizar_stage_packets_total{stage="ON_XDP_TX"} 2000"#,
                r#"mizar_stage_packets_total{stage="ON_XDP_DROP"} 50"#,
                r#"mizar_stage_packets_total{stage="ON_XDP_PASS"} 0"#,
                r#"mizar_stage_packets_total{stage="ON_XDP_SCALED_EP"} 0"#,
            ]
        );
        assert!(text.contains(r#"mizar_stage_bytes_total{stage="ON_XDP_REDIRECT"} 6000000"#));
        assert!(text.contains(
            r#"mizar_reason_packets_total{program="transit",reason="drop_unknown_source_host",verdict="drop",stage="ON_XDP_DROP"} 50"#
        ));
        // Egress has no stages: no stage label.
        assert!(text.contains(
            r#"mizar_reason_packets_total{program="egress",reason="egress_to_host",verdict="redirect"} 400"#
        ));
        assert!(text.contains(r#"description="what deliver_local means"} 1"#));
        assert!(text.contains(
            r#"mizar_xdp_attachment_info{role="transit",interface="ul0",mode="native"} 1"#
        ));
        // Only endpoints hosted here (h1) have counters; blue and red reuse one address.
        assert_eq!(
            series(&text, "mizar_endpoint_rx_packets_total"),
            [
                r#"mizar_endpoint_rx_packets_total{vpc="blue",network="web",endpoint="web1",ip="10.0.1.10"} 10000"#,
                r#"mizar_endpoint_rx_packets_total{vpc="red",network="web",endpoint="web1",ip="10.0.1.10"} 100"#,
            ]
        );
        assert_eq!(
            series(&text, "mizar_function_packets_total"),
            [
                r#"mizar_function_packets_total{stage="ON_XDP_REDIRECT",scope="host",function="count",instance="1"} 10000"#,
                r#"mizar_function_packets_total{stage="ON_XDP_REDIRECT",scope="host",function="count",instance="3"} 10000"#,
                r#"mizar_function_packets_total{stage="ON_XDP_TX",scope="host",function="count",instance="2"} 2000"#,
                r#"mizar_function_packets_total{stage="ON_XDP_TX",scope="ep:blue/web1",function="acl",instance="9"} 1000"#,
            ]
        );
        assert!(text.contains(
            r#"mizar_function_time_seconds_total{stage="ON_XDP_REDIRECT",scope="host",function="count",instance="1"} 0.00000312"#
        ), "{text}");
        assert!(text.contains(r#"mizar_store_objects{kind="endpoint"} 3"#));
        assert!(text.contains(r#"mizar_store_objects{kind="bouncer"} 2"#));
        assert!(text.contains("mizar_dataplane_up 1\n"));
        assert!(text.contains("mizar_sample_timestamp_seconds 1800000000"));
        assert!(text.contains(r#"mizar_host_info{host="h1",store="/var/lib/mizar/mizar.db"} 1"#));
    }

    #[test]
    fn with_the_data_plane_down_the_store_is_still_described() {
        let mut sample = mizar_tui::fixture::sample(Instant::now(), 1);
        sample.dataplane = None;
        sample.warnings = vec!["the data plane is down: run mizar up".into()];
        let text = encode(
            &Sampled {
                sample: Arc::new(sample),
                taken_at: SystemTime::now(),
                seq: 1,
            },
            Format::Text,
        );
        assert!(text.contains("mizar_dataplane_up 0\n"), "{text}");
        assert!(text.contains("mizar_status_warnings 1\n"));
        assert!(text.contains(r#"mizar_store_objects{kind="vpc"} 2"#));
        assert!(series(&text, "mizar_stage_packets_total").is_empty());
        assert!(!text.contains("# EOF"));
    }

    /// Both formats through the Prometheus project's own Python client parsers (Debian's
    /// python3-prometheus-client, installed by scripts/setup-debian.sh): the OpenMetrics parser
    /// is strict (types, suffixes, units, `# EOF`), so a malformed exposition fails here.
    #[test]
    fn both_formats_parse_with_the_official_parsers() {
        let open_metrics = encode(&sampled(10), Format::OpenMetrics);
        let text = encode(&sampled(10), Format::Text);
        let parsed = crate::metrics::testing::parse(&open_metrics, Format::OpenMetrics);
        assert_eq!(
            parsed["mizar_stage_packets"]["type"], "counter",
            "{parsed:#}"
        );
        assert_eq!(parsed["mizar_stage_bytes"]["unit"], "bytes");
        assert_eq!(parsed["mizar_xdp_attachment"]["type"], "info");
        let total: f64 = parsed["mizar_endpoint_rx_packets"]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .sum();
        assert_eq!(total, 10_100.0);
        let parsed = crate::metrics::testing::parse(&text, Format::Text);
        assert_eq!(parsed["mizar_reason_packets"]["type"], "counter");
        assert_eq!(
            parsed["mizar_reason_packets"]["samples"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }
}

/// The exposition read back by the Prometheus project's Python client (its OpenMetrics parser
/// and its text-format parser), as JSON: `{family: {type, unit, samples: [{name, labels,
/// value}]}}`. Used by the tests of the encoding and of `mizar metrics` through the binary.
#[doc(hidden)]
pub mod testing {
    use super::Format;
    use std::{io::Write as _, process::Stdio};

    const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
from prometheus_client.parser import text_string_to_metric_families as text
parse = om if sys.argv[1] == "openmetrics" else text
out = {}
for f in parse(sys.stdin.read()):
    out[f.name] = {"type": f.type, "unit": f.unit, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
print(json.dumps(out))
"#;

    /// Panics with the parser's message when the exposition does not parse.
    pub fn parse(exposition: &str, format: Format) -> serde_json::Value {
        let format = match format {
            Format::OpenMetrics => "openmetrics",
            Format::Text => "text",
        };
        // Debian's interpreter, which has python3-prometheus-client (another python3 on PATH,
        // e.g. pyenv's, would not).
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", PARSER, format])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 runs (scripts/setup-debian.sh installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the {format} parser refused the exposition: {}\n{exposition}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the parser prints JSON")
    }
}
