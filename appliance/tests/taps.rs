//! Taps in the real kernel (BPF_PROG_TEST_RUN): the filter a capture compiles runs in the
//! kernel before anything is copied and decides as the expression does; transit's entry, a
//! stage's chain and transit's verdict tap one packet under one id; under a flood that fills the
//! ring a tap loses records, counted, never packets. Needs root and BPF (CI runs it as root).

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use std::net::Ipv4Addr;

use aya::maps::{Array, MapData, RingBuf};
use fixture::*;
use mizar::{
    capture::{
        CompiledFilter,
        filter::{Field, Fields, parse},
    },
    dataplane::{ChainLink, Chains, Stage},
    packet::{InnerFrame, TcpFlags, Tunnel},
};
use mizar_ebpf::{TAP_FUNCTION, abi, maps};

fn open<T>(world: &World, name: &str, wrap: fn(MapData) -> aya::maps::Map) -> T
where
    T: TryFrom<aya::maps::Map>,
    T::Error: std::fmt::Debug,
{
    T::try_from(wrap(
        MapData::from_pin(world.instance.dataplane.pins().map(name)).unwrap(),
    ))
    .unwrap()
}

fn set_filter(world: &World, expression: &str, sample_every: u32) {
    let compiled = CompiledFilter::compile(&parse(expression).unwrap()).unwrap();
    let mut array: Array<MapData, abi::mz_tap_filter> =
        open(world, maps::TAP_FILTER, aya::maps::Map::Array);
    array
        .set(0, compiled.to_raw(abi::MZ_TAP_SNAP_MAX, sample_every), 0)
        .unwrap();
}

fn tap_stats(world: &World) -> abi::mz_tap_stats {
    mizar::capture::tap_stats(world.instance.dataplane.pins()).unwrap()
}

struct Record {
    header: abi::mz_tap_header,
    data: Vec<u8>,
}

fn drain(ring: &mut RingBuf<MapData>) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        let size = std::mem::size_of::<abi::mz_tap_header>();
        // SAFETY: the kernel wrote a struct mz_tap_header at the record's start.
        let header: abi::mz_tap_header = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        out.push(Record {
            header,
            data: item[size..size + header.cap_len as usize].to_vec(),
        });
    }
    out
}

/// The usual bouncer with a tap alone in the chain at ON_XDP_REDIRECT, as a capture places it,
/// and the capture's flags: `points` outside the chains tapped (by transit with the taps, which
/// the tests run as a capture attaches it).
fn tapped(name: &str, points: &[u32]) -> World {
    let world = World::bouncer(name);
    let mut chains = Chains::open(world.instance.dataplane.pins()).unwrap();
    chains
        .publish(
            Stage::OnXdpRedirect,
            &[ChainLink {
                instance: abi::MZ_CAPTURE_INSTANCE_BASE as u16,
                function: TAP_FUNCTION.to_owned(),
            }],
        )
        .unwrap();
    let flags = points
        .iter()
        .fold(abi::MZ_HOST_TAPPING, |f, p| f | (1 << (1 + p)));
    chains.set_tap_flags(flags).unwrap();
    world
}

#[test]
fn a_flood_through_a_tap_loses_records_counted_and_never_a_packet() {
    let world = tapped("taps-flood", &[]);
    let frame = packet_to(VNI, LOCAL_EP);

    // A filter on another VPC: every packet seen, none copied.
    set_filter(&world, &format!("vni {}", VNI + 1), 1);
    for _ in 0..100 {
        assert_eq!(world.run_tapped(&frame).verdict, XDP_REDIRECT);
    }
    let s = tap_stats(&world);
    assert_eq!((s.records, s.filtered, s.lost), (0, 100, 0));

    // Everything, and nobody reading: the 8 MiB ring holds about 4,000 records of 2 KiB.
    set_filter(&world, "", 1);
    const FLOOD: u64 = 6000;
    for _ in 0..FLOOD {
        assert_eq!(
            world.run_tapped(&frame).verdict,
            XDP_REDIRECT,
            "a full ring never holds a packet up"
        );
    }
    let s = tap_stats(&world);
    println!("{FLOOD} packets: {} records, {} lost", s.records, s.lost);
    assert_eq!(
        s.records + s.lost,
        FLOOD,
        "every matching packet is a record or counted lost"
    );
    assert!(
        s.lost > 0 && s.records > 0,
        "{} records, {} lost",
        s.records,
        s.lost
    );
}

/// Frames down every path of the bouncer: delivered, bounced on, dropped, passed to the host.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let tcp = InnerFrame::tcp(SENDER_EP, LOCAL_EP, 40001, 443, TcpFlags::SYN).build();
    let icmp = InnerFrame::icmp_echo(SENDER_EP, LOCAL_EP, 7, 1, b"ping").build();
    let stranger = Tunnel::new(STRANGER, SELF, VNI)
        .macs(host_mac(STRANGER), SELF_MAC)
        .build(&inner_udp(SENDER_EP, LOCAL_EP));
    vec![
        ("udp to the local endpoint", packet_to(VNI, LOCAL_EP)),
        ("udp to the remote endpoint", packet_to(VNI, REMOTE_EP)),
        ("tcp syn to the local endpoint", from_peer(VNI).build(&tcp)),
        (
            "icmp echo to the local endpoint",
            from_peer(VNI).build(&icmp),
        ),
        ("another VPC", packet_to(VNI_B, LOCAL_EP)),
        (
            "an unknown endpoint",
            packet_to(VNI, Ipv4Addr::new(10, 0, 0, 99)),
        ),
        ("a stranger host", stranger),
        (
            "host traffic (not a tunnel)",
            InnerFrame::udp(PEER, SELF, 5353, 53, b"host").build(),
        ),
    ]
}

const EXPRESSIONS: &[&str] = &[
    "",
    "vni 100",
    "vni 200 or not geneve",
    "host 10.0.0.3",
    "src host 10.0.0.2 and dst host 10.0.0.4",
    "net 10.0.0.0/30",
    "dst net 10.0.0.0/24 and not udp",
    "tcp and dst port 443",
    "tcp-flags syn",
    "icmp",
    "icmp-type 8",
    "port 7777 or port 53",
    "portrange 40000-40001",
    "outer host 192.168.0.99",
    "outer udp and outer dst port 6081 and outer src host 192.168.0.2",
    "udp and not geneve",
    "drop",
    "verdict redirect",
    "tx or pass",
    "reason deliver_local",
    "reason drop_unknown_source_host or reason drop_unknown_vpc",
    "stage ON_XDP_TX",
    "len > 100 and len <= 120",
    "greater 90",
    "(drop or pass) and not outer net 192.168.0.0/24",
    "fn-drop",
];

/// Each expression, compiled and run by the kernel at transit's entry and verdict, copies
/// exactly the frames the expression matches in Rust, and both taps of one packet carry its
/// id: 8 paths x 26 expressions x 2 points.
#[test]
fn the_kernel_filter_decides_as_the_expression_does() {
    let world = tapped(
        "taps-expressions",
        &[abi::MZ_TAP_TRANSIT_ENTRY, abi::MZ_TAP_TRANSIT_VERDICT],
    );
    let mut ring: RingBuf<MapData> = open(&world, maps::TAPS, aya::maps::Map::RingBuf);
    let mut checked = 0;
    for expression in EXPRESSIONS {
        let expr = parse(expression).unwrap();
        set_filter(&world, expression, 1);
        for (what, frame) in frames() {
            drain(&mut ring);
            let run = world.run_tapped(&frame);
            let records = drain(&mut ring);
            let (reason, _) = run.delta.nonzero_reasons().next().expect("a reason");
            let stage = mizar::dataplane::reason_outcome(reason.name).1;

            let mut entry = Fields::default();
            entry.set(Field::Verdict, abi::MZ_TAP_NONE);
            entry.set(Field::Reason, abi::MZ_TAP_NONE);
            entry.set(Field::Stage, abi::MZ_TAP_NONE);
            entry.read_frame(&frame, 1);
            let mut verdict = Fields::default();
            verdict.set(Field::Verdict, run.verdict);
            verdict.set(Field::Reason, reason.slot);
            verdict.set(Field::Stage, stage.slot());
            if run.verdict == XDP_REDIRECT {
                // A decapsulated frame no longer says its VNI: the decision does.
                verdict.set(Field::Vni, VNI);
            }
            verdict.read_frame(&run.output, 1);
            // The chain's tap (ON_XDP_REDIRECT) sees delivered packets as they arrived.
            let delivered = run.verdict == XDP_REDIRECT;
            let mut chain = Fields::default();
            chain.set(Field::Verdict, XDP_REDIRECT);
            chain.set(Field::Reason, reason.slot);
            chain.set(Field::Stage, Stage::OnXdpRedirect.slot());
            chain.read_frame(&frame, 1);

            let wanted: Vec<(u32, bool)> = vec![
                (abi::MZ_TAP_TRANSIT_ENTRY, expr.matches(&entry)),
                (abi::MZ_TAP_CHAIN, delivered && expr.matches(&chain)),
                (abi::MZ_TAP_TRANSIT_VERDICT, expr.matches(&verdict)),
            ];
            for (point, copied) in &wanted {
                let got: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.header.point == *point)
                    .collect();
                assert_eq!(
                    got.len(),
                    usize::from(*copied),
                    "{expression:?} on {what} at point {point}: entry {entry:?}, verdict \
                     {verdict:?}"
                );
                checked += 1;
            }
            for r in &records {
                assert_eq!(r.header.packet_id, records[0].header.packet_id, "{what}");
                assert_eq!(r.header.len as usize, r.data.len(), "{what}: whole frames");
                match r.header.point {
                    abi::MZ_TAP_TRANSIT_ENTRY => {
                        assert_eq!(r.data, frame, "{what}: the entry sees the frame as sent");
                        assert_eq!(r.header.verdict, abi::MZ_TAP_NONE);
                    }
                    abi::MZ_TAP_TRANSIT_VERDICT => {
                        assert_eq!(r.data, run.output, "{what}: the verdict sees it as it goes");
                        assert_eq!(
                            (r.header.verdict, r.header.reason),
                            (run.verdict, reason.slot),
                            "{what}"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    println!(
        "{checked} (expression, path, point) decisions of the kernel filter match the expression"
    );
    // The numbering moves once per packet: two packets never share an id.
    drain(&mut ring);
    set_filter(&world, "", 1);
    world.run_tapped(&packet_to(VNI, LOCAL_EP));
    world.run_tapped(&packet_to(VNI, LOCAL_EP));
    let ids: Vec<u64> = drain(&mut ring)
        .iter()
        .map(|r| r.header.packet_id)
        .collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert!(ids[..3].iter().all(|i| *i == ids[0]) && ids[3..].iter().all(|i| *i == ids[3]));
    assert_ne!(ids[0], ids[3]);
}

#[test]
fn sampling_keeps_one_matching_packet_in_n_and_no_capture_copies_nothing() {
    // Sampling counts per CPU: the runs stay on one.
    // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
    let world = tapped("taps-sampling", &[abi::MZ_TAP_TRANSIT_ENTRY]);
    let mut ring: RingBuf<MapData> = open(&world, maps::TAPS, aya::maps::Map::RingBuf);
    set_filter(&world, "vni 100", 10);
    for _ in 0..100 {
        world.run_tapped(&packet_to(VNI, LOCAL_EP));
    }
    let s = tap_stats(&world);
    // Two taps (entry, and the chain's at ON_XDP_REDIRECT) see each packet.
    assert_eq!((s.records, s.sampled_out), (20, 180), "{s:?}");
    assert_eq!(drain(&mut ring).len(), 20);

    // The filter of no capture (as a dead capture's is cleared): taps copy nothing.
    let mut array: Array<MapData, abi::mz_tap_filter> =
        open(&world, maps::TAP_FILTER, aya::maps::Map::Array);
    array.set(0, abi::mz_tap_filter::default(), 0).unwrap();
    for _ in 0..10 {
        assert_eq!(
            world.run_tapped(&packet_to(VNI, LOCAL_EP)).verdict,
            XDP_REDIRECT
        );
    }
    assert!(drain(&mut ring).is_empty());
}

/// The plain transit, which runs when no capture does, holds no tap: with a capture's flags and
/// an everything filter it records nothing itself (only the chain's programs do: its tap and
/// its exit), and the copy with the taps records its entry and verdict and decides the same.
#[test]
fn the_plain_transit_taps_nothing_and_the_tapped_copy_decides_the_same() {
    let world = tapped(
        "taps-plain",
        &[abi::MZ_TAP_TRANSIT_ENTRY, abi::MZ_TAP_TRANSIT_VERDICT],
    );
    let mut ring: RingBuf<MapData> = open(&world, maps::TAPS, aya::maps::Map::RingBuf);
    set_filter(&world, "", 1);
    for (what, frame) in frames() {
        drain(&mut ring);
        let plain = world.run(&frame);
        let points: Vec<u32> = drain(&mut ring).iter().map(|r| r.header.point).collect();
        // Only the chain's programs tap (its tap, and its exit at the verdict): a packet that
        // meets no chain is not recorded at all.
        let chained = plain.verdict == XDP_REDIRECT;
        assert!(
            if chained {
                points == [abi::MZ_TAP_CHAIN, abi::MZ_TAP_TRANSIT_VERDICT]
            } else {
                points.is_empty()
            },
            "{what}: the plain transit tapped {points:?}"
        );
        let tapped = world.run_tapped(&frame);
        assert_eq!(
            (plain.verdict, &plain.output),
            (tapped.verdict, &tapped.output),
            "{what}: the same decision and bytes with the taps"
        );
        let points: Vec<u32> = drain(&mut ring).iter().map(|r| r.header.point).collect();
        assert!(
            points.contains(&abi::MZ_TAP_TRANSIT_ENTRY)
                && points.contains(&abi::MZ_TAP_TRANSIT_VERDICT),
            "{what}: {points:?}"
        );
    }
}
