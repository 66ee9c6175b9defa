//! `mizar metrics` end to end: the real binary on a host of the demo's fabric with traffic
//! flowing, scraped with curl from inside that host's namespace, the expositions read back by
//! the Prometheus project's own parsers (OpenMetrics and text): every family is there, the
//! counters move between scrapes, per-endpoint series carry their VPC, bad input is refused
//! before anything listens, and SIGTERM ends it cleanly.
//!
//! Needs root, BPF, iproute2, ping, curl and python3-prometheus-client; fails (never skips)
//! without them.

mod common;

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use common::{
    demo::Traffic,
    netns::{require_tools, unique_prefix},
};
use mizar::{
    demo::{Demo, DemoSpec},
    metrics::{Format, testing::parse},
};
use serde_json::Value;

const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
const HOST: &str = "edge";
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";

fn fabric() -> Demo {
    common::require_root();
    require_tools(&[("ping", "iputils-ping"), ("curl", "curl")]);
    Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"))
}

/// `mizar metrics` in the host's namespace; killed when dropped.
struct Exporter {
    child: Child,
    url: String,
    ns: String,
}

impl Exporter {
    fn start(demo: &Demo, args: &[&str]) -> Self {
        let ns = demo.ns(HOST).name().to_owned();
        let mut child = demo
            .spec()
            .mizar_command(Path::new(MIZAR), HOST)
            .arg("metrics")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mizar metrics");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // "mizar metrics: serving http://127.0.0.1:PORT/metrics (...)"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self { child, url, ns }
    }

    /// (HTTP status, content type, body).
    fn get(&self, path: &str, accept: &str) -> (u16, String, String) {
        let url = self.url.replace("/metrics", path);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sS", "-H"])
            .arg(format!("Accept: {accept}"))
            .args(["-w", "\n%{http_code} %{content_type}", &url])
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, last) = text.rsplit_once('\n').unwrap();
        let (code, content_type) = last.split_once(' ').unwrap();
        (
            code.parse().unwrap(),
            content_type.to_owned(),
            body.to_owned(),
        )
    }

    /// A scrape that succeeded, parsed.
    fn scrape(&self, format: Format) -> Value {
        let accept = match format {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => "text/plain",
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, content_type, body) = self.get("/metrics", accept);
            if code == 200 {
                assert_eq!(content_type, format.content_type());
                return parse(&body, format);
            }
            // 503 until the first sample.
            assert_eq!(code, 503, "{body}");
            assert!(Instant::now() < deadline, "no sample after 20 s: {body}");
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn samples(parsed: &Value, family: &str) -> Vec<Value> {
    parsed[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family}"))
        .clone()
}

/// The value of the one sample of `family` whose labels include `labels`.
fn value(parsed: &Value, family: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<Value> = samples(parsed, family)
        .into_iter()
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .collect();
    assert_eq!(found.len(), 1, "{family} {labels:?}: {found:?}");
    found[0]["value"].as_f64().unwrap()
}

#[test]
fn metrics_of_a_live_host_parse_and_move() {
    let demo = fabric();
    // b-web3 lives on edge, b-db1 on h3: edge encapsulates the requests and delivers replies.
    let _traffic = Traffic::start(&demo, "b-web3", "b-db1");
    let exporter = Exporter::start(&demo, &["--listen", "127.0.0.1:0", "--period", "200ms"]);

    let first = exporter.scrape(Format::OpenMetrics);
    assert_eq!(value(&first, "mizar_dataplane_up", &[]), 1.0);
    assert_eq!(first["mizar_stage_packets"]["type"], "counter");
    assert_eq!(first["mizar_stage_bytes"]["unit"], "bytes");
    let transit = samples(&first, "mizar_xdp_attachment")
        .into_iter()
        .find(|s| s["labels"]["role"] == "transit")
        .expect("the transit attachment");
    assert_eq!(transit["labels"]["interface"], "ul0");
    assert!(
        ["native", "generic"].contains(&transit["labels"]["mode"].as_str().unwrap()),
        "{transit}"
    );
    assert_eq!(
        value(&first, "mizar_store_objects", &[("kind", "endpoint")]),
        8.0
    );
    assert_eq!(
        value(&first, "mizar_store_objects", &[("kind", "vpc")]),
        2.0
    );
    // Every reason of the data plane, described.
    let reasons = samples(&first, "mizar_reason_packets").len();
    assert_eq!(reasons, mizar_ebpf::COUNTER_INFO.len());
    assert_eq!(samples(&first, "mizar_reason").len(), reasons);

    // The counters move under traffic; per-endpoint series carry their VPC.
    let delivered = |p: &Value| value(p, "mizar_stage_packets", &[("stage", "ON_XDP_REDIRECT")]);
    let rx = |p: &Value| {
        value(
            p,
            "mizar_endpoint_rx_packets",
            &[("vpc", "blue"), ("endpoint", "b-web3")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let later = loop {
        sleep(Duration::from_millis(500));
        let later = exporter.scrape(Format::OpenMetrics);
        if delivered(&later) > delivered(&first) && rx(&later) > rx(&first) {
            break later;
        }
        assert!(Instant::now() < deadline, "the counters did not move");
    };
    println!(
        "ON_XDP_REDIRECT {} -> {}, b-web3 rx {} -> {}",
        delivered(&first),
        delivered(&later),
        rx(&first),
        rx(&later)
    );
    // r-db1 of red is hosted here too; b-db1 (on h3) has no series here.
    value(
        &later,
        "mizar_endpoint_tx_packets",
        &[("vpc", "red"), ("endpoint", "r-db1")],
    );
    assert!(
        samples(&later, "mizar_endpoint_rx_packets")
            .iter()
            .all(|s| s["labels"]["endpoint"] != "b-db1")
    );

    // The classic text format, for scrapers that do not ask for OpenMetrics.
    let text = exporter.scrape(Format::Text);
    assert_eq!(text["mizar_reason_packets"]["type"], "counter");
    assert!(delivered(&text) >= delivered(&later));

    let (code, _, _) = exporter.get("/nope", "*/*");
    assert_eq!(code, 404);
    let (code, _, body) = exporter.get("/", "*/*");
    assert_eq!(code, 200);
    assert!(body.contains("/metrics"), "{body}");

    // A second exporter on the same port is refused with the fix.
    let port = exporter
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let taken = demo
        .mizar(HOST, &["metrics", "--listen", &format!("127.0.0.1:{port}")])
        .unwrap();
    assert!(!taken.status.success());
    let err = String::from_utf8_lossy(&taken.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains("pick another --listen"),
        "{err}"
    );

    // SIGTERM ends it cleanly.
    let mut exporter = exporter;
    let pid = exporter.child.id().to_string();
    // `ip netns exec` execs mizar, so the child is mizar itself.
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = exporter.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_listen_and_period_are_refused_with_the_fix() {
    for (args, says) in [
        (
            &["metrics", "--listen", "localhost"][..],
            "is not an address and port",
        ),
        (
            &["metrics", "--listen", "127.0.0.1:99999"][..],
            "is not an address and port",
        ),
        (
            &["metrics", "--period", "1ms"][..],
            "between 50ms and 3600s",
        ),
    ] {
        let out = Command::new(MIZAR).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
