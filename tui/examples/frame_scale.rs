//! Frame build time and memory of the dashboard with a large fabric, fed with synthetic samples
//! (no kernel, no store): what BENCHMARKS.md records.
//!
//!     cargo run --release -p mizar-tui --example frame_scale [-- ENDPOINTS [SAMPLES]]
//!
//! ENDPOINTS (default 100,000) rows, of which up to 4,096 (the data plane's limit of endpoints
//! hosted on one host) carry counters. A frame is `App::draw` into ratatui's TestBackend plus
//! the backend's diff, at 80x24 and 160x48, for every view, then for the Endpoints view sorted
//! by rx rate (re-sorted at every sample) and filtered. Memory is the process's resident set
//! (VmRSS) before the rows exist, after the first frames, and after SAMPLES (default 3,600: an
//! hour at the default period) more samples, each drawn.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use mizar_tui::{
    App, Sample, Theme,
    fixture::sample,
    model::{Count, EndpointCounters, EndpointRow, EndpointTable},
};
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

/// Most endpoints one host can serve (MZ_MAX_LOCAL_IFACES).
const MAX_LOCAL: usize = 4096;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rows(n: usize, template: &EndpointRow) -> Arc<EndpointTable> {
    Arc::new(
        (0..n)
            .map(|i| EndpointRow {
                name: format!("ep{i:06}"),
                ip: Ipv4Addr::from(0x0a00_0000 + i as u32),
                host: if i < MAX_LOCAL { "h1" } else { "h2" }.into(),
                veth: (i < MAX_LOCAL).then(|| format!("v{i}")),
                ..template.clone()
            })
            .collect::<Vec<_>>()
            .into(),
    )
}

/// Sample `k` of a steady fabric: the rows shared, the local endpoints' counters moved.
fn tick(t0: Instant, k: u64, rows: &Arc<EndpointTable>) -> Sample {
    let mut s = sample(t0, k);
    s.endpoints = rows.clone();
    s.counters = (0..rows.len().min(MAX_LOCAL))
        .map(|row| {
            let per_second = (row as u64 % 97) * 10;
            EndpointCounters {
                row,
                rx: Count {
                    packets: per_second * k,
                    bytes: per_second * k * 600,
                },
                tx: Count {
                    packets: per_second * k / 2,
                    bytes: per_second * k * 300,
                },
            }
        })
        .collect();
    s
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
}

/// Median and worst of `n` frames, in ms.
fn frames(
    app: &mut App,
    terminal: &mut Terminal<TestBackend>,
    now: Instant,
    n: usize,
) -> (f64, f64) {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            terminal.draw(|f| app.draw(f, now)).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[n / 2], times[n - 1])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("ENDPOINTS"));
    let samples: u64 = args.next().map_or(3_600, |a| a.parse().expect("SAMPLES"));
    let t0 = Instant::now();
    let rss_start = rss_kib();
    let template = sample(t0, 1).endpoints[0].clone();
    let built = Instant::now();
    let big = rows(n, &template);
    let build_ms = built.elapsed().as_secs_f64() * 1e3;
    let mut app = App::new(Theme { color: true }, Duration::from_secs(1));
    let ingest = |app: &mut App, k: u64| {
        let s = tick(t0, k, &big);
        let t = Instant::now();
        app.on_sample(s);
        t.elapsed().as_secs_f64() * 1e3
    };
    ingest(&mut app, 1);
    let ingest_ms = ingest(&mut app, 2);
    let now = t0 + Duration::from_secs(2);
    println!(
        "{n} endpoints ({} with counters); rows and their filter index built (by the sampler) in {build_ms:.1} ms, a sample ingested (rates) in {ingest_ms:.2} ms",
        n.min(MAX_LOCAL)
    );
    println!(
        "{:<34} {:>16} {:>16}",
        "frame (median / worst of 50)", "80x24", "160x48"
    );
    let mut small = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut large = Terminal::new(TestBackend::new(160, 48)).unwrap();
    let mut line = |app: &mut App, what: &str| {
        let (s_med, s_max) = frames(app, &mut small, now, 50);
        let (l_med, l_max) = frames(app, &mut large, now, 50);
        println!("{what:<34} {s_med:>7.2} / {s_max:>5.2} {l_med:>7.2} / {l_max:>5.2} ms");
    };
    for (key, view) in [
        ("1", "Pipeline"),
        ("2", "Endpoints"),
        ("3", "Topology"),
        ("4", "Manage"),
    ] {
        press(&mut app, key);
        line(&mut app, view);
    }
    press(&mut app, "2<<<<");
    line(&mut app, "Endpoints sorted by RX/s");
    press(&mut app, "/ep09");
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    line(&mut app, "Endpoints filtered (ep09)");
    app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));

    // A new sample re-sorts by rate: the first frame after it pays for that.
    let mut after_sample: Vec<f64> = (3..23)
        .map(|k| {
            ingest(&mut app, k);
            let t = Instant::now();
            large.draw(|f| app.draw(f, now)).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    after_sample.sort_by(f64::total_cmp);
    println!(
        "first frame after a sample, sorted by RX/s (160x48): median {:.2} ms, worst {:.2} ms",
        after_sample[10], after_sample[19]
    );
    let rss_first = rss_kib();

    // An hour of sampling: every sample ingested and drawn.
    let started = Instant::now();
    let mut rss_marks = Vec::new();
    for k in 0..samples {
        ingest(&mut app, 23 + k);
        large.draw(|f| app.draw(f, now)).unwrap();
        if (k + 1) % (samples / 4).max(1) == 0 {
            rss_marks.push(rss_kib());
        }
    }
    println!(
        "{samples} more samples, each ingested and drawn, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "resident memory: {rss_start} KiB at start, {rss_first} KiB after the first frames, {} KiB after the samples (at each quarter: {:?})",
        rss_kib(),
        rss_marks
    );
}
