//! How long reconcile takes as the number of endpoints grows: from empty to N remote endpoints,
//! a no-op pass at N, one endpoint added at N (what a single `mizar ep add` costs the maps),
//! reading the state back, and N back to empty; and, for comparison, what loading the data plane
//! and opening its maps cost. A measurement, not a test.
//!
//! Run as root (it loads the data plane under its own bpffs directory and removes it after):
//!
//! ```sh
//! cargo run --release -p mizar --example reconcile_scale [-- 1000 10000 100000]
//! ```

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mizar::dataplane::{
    Dataplane, DataplaneMaps, DesiredState, EndpointEntry, EndpointKind, HostConfig, NetworkEntry,
    PinLayout, VpcEntry, ensure_bpffs, reconcile, remove_all_pins,
};

const VPCS: u32 = 4;
const HOSTS: u32 = 64;

fn host(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 1, 0)) + 10 + i)
}

fn mac(i: u32) -> mizar::dataplane::MacAddr {
    let b = i.to_be_bytes();
    mizar::dataplane::MacAddr([0x02, 0x4d, b[0], b[1], b[2], b[3]])
}

/// This host, 64 remote hosts, 4 VPCs (each a 10.0.0.0/8 network with two bouncers) and
/// `endpoints` remote endpoints spread over the VPCs and hosts.
fn state(endpoints: u32) -> DesiredState {
    let me = Ipv4Addr::new(192, 168, 1, 1);
    let mut s = DesiredState {
        host: Some(HostConfig {
            ip: me,
            mac: mac(1),
            underlay_mtu: 9000,
            underlay_ifindex: 1,
        }),
        ..DesiredState::default()
    };
    for i in 0..HOSTS {
        s.hosts.insert(host(i), mac(100 + i));
    }
    for vni in 1..=VPCS {
        s.vpcs.insert(
            vni,
            VpcEntry {
                this_host_divides: true,
                dividers: vec![me],
                ..VpcEntry::default()
            },
        );
        s.networks.insert(
            (
                vni,
                mizar::dataplane::Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
            ),
            NetworkEntry {
                this_host_bounces: false,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                bouncers: vec![host(0), host(1)],
            },
        );
    }
    for i in 0..endpoints {
        s.endpoints.insert(
            (1 + i % VPCS, Ipv4Addr::from(0x0a00_0100 + i / VPCS)),
            EndpointEntry {
                mac: mac(0x0100_0000 + i),
                kind: EndpointKind::Simple,
                bypass_decap: false,
                host: host(i % HOSTS),
                local_ifindex: None,
            },
        );
    }
    s
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn main() -> Result<()> {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("sizes are endpoint counts"))
        .collect::<Result<_>>()?;
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };

    let root = PathBuf::from("/run/mizar-examples");
    ensure_bpffs(&root).context("mount bpffs (run as root)")?;
    let dir = root.join(format!("reconcile-scale-{}", std::process::id()));
    let pins = PinLayout::new(&dir);
    let result = run(&dir, &sizes);
    remove_all_pins(&pins)?;
    let _ = std::fs::remove_dir(&dir);
    result
}

fn run(dir: &std::path::Path, sizes: &[u32]) -> Result<()> {
    let (dataplane, first_load) = timed(|| Dataplane::load(dir));
    drop(dataplane.context("load the data plane (run as root)")?);
    // What a command that only reconciles needs (the maps), against a full load from pins
    // (programs loaded and verified again).
    let (dataplane, reload) = timed(|| Dataplane::load(dir));
    let mut dataplane = dataplane?;
    let (opened, open) = timed(|| DataplaneMaps::open(&PinLayout::new(dir)));
    opened?;
    println!(
        "Dataplane::load: {} (first), {} (from pins); DataplaneMaps::open: {:.0} µs",
        ms(first_load),
        ms(reload),
        open.as_secs_f64() * 1e6
    );
    let maps = dataplane.maps_mut();
    println!(
        "{:>9} | {:>12} | {:>10} | {:>13} | {:>10} | {:>12}",
        "endpoints", "empty → N", "no-op at N", "+1 endpoint", "read_state", "N → empty"
    );
    for &n in sizes {
        let desired = state(n);
        let (report, fill) = timed(|| reconcile(maps, &desired));
        let report = report?;
        assert_eq!(report.endpoints.added, n as usize, "{report}");

        let (report, noop) = timed(|| reconcile(maps, &desired));
        assert!(report?.is_noop());

        let mut one_more = desired.clone();
        one_more.endpoints.insert(
            (1, Ipv4Addr::new(10, 255, 0, 1)),
            EndpointEntry {
                mac: mac(7),
                kind: EndpointKind::Simple,
                bypass_decap: false,
                host: host(3),
                local_ifindex: None,
            },
        );
        let (report, add_one) = timed(|| reconcile(maps, &one_more));
        assert_eq!(report?.endpoints.added, 1);

        let (read, read_time) = timed(|| maps.read_state());
        assert_eq!(read?, one_more);

        let (report, empty) = timed(|| reconcile(maps, &DesiredState::default()));
        assert_eq!(report?.endpoints.removed, n as usize + 1);
        println!(
            "{n:>9} | {:>12} | {:>10} | {:>13} | {:>10} | {:>12}",
            ms(fill),
            ms(noop),
            ms(add_one),
            ms(read_time),
            ms(empty)
        );
    }
    Ok(())
}
