//! The tap function in the real kernel (BPF_PROG_TEST_RUN): a tap filters in the kernel before
//! copying, and under a flood that fills its ring it loses records, counted, never packets.
//! Needs root and BPF (CI runs it as root).

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use aya::maps::{Array, MapData, PerCpuArray};
use fixture::*;
use mizar::dataplane::{ChainLink, Chains, Stage};
use mizar_ebpf::{TAP_FUNCTION, abi, maps};

fn tap_config(world: &World, config: abi::mz_tap_config) {
    let mut array: Array<MapData, abi::mz_tap_config> = Array::try_from(aya::maps::Map::Array(
        MapData::from_pin(world.instance.dataplane.pins().map(maps::TAP_CONFIG)).unwrap(),
    ))
    .unwrap();
    array.set(0, config, 0).unwrap();
}

fn tap_stats(world: &World) -> abi::mz_tap_stats {
    let stats: PerCpuArray<MapData, abi::mz_tap_stats> =
        PerCpuArray::try_from(aya::maps::Map::PerCpuArray(
            MapData::from_pin(world.instance.dataplane.pins().map(maps::TAP_STATS)).unwrap(),
        ))
        .unwrap();
    stats
        .get(&0, 0)
        .unwrap()
        .iter()
        .fold(abi::mz_tap_stats::default(), |s, v| abi::mz_tap_stats {
            records: s.records + v.records,
            filtered: s.filtered + v.filtered,
            lost: s.lost + v.lost,
        })
}

/// The usual bouncer with a tap alone in the chain at ON_XDP_REDIRECT, as a capture places it.
fn tapped(name: &str) -> World {
    let world = World::bouncer(name);
    Chains::open(world.instance.dataplane.pins())
        .unwrap()
        .publish(
            Stage::OnXdpRedirect,
            &[ChainLink {
                instance: abi::MZ_CAPTURE_INSTANCE_BASE as u16,
                function: TAP_FUNCTION.to_owned(),
            }],
        )
        .unwrap();
    world
}

#[test]
fn a_flood_through_a_tap_loses_records_counted_and_never_a_packet() {
    let world = tapped("taps-flood");
    let frame = packet_to(VNI, LOCAL_EP);

    // A filter on another VPC: every packet seen, none copied.
    tap_config(
        &world,
        abi::mz_tap_config {
            vni: VNI + 1,
            snaplen: 2048,
            ..abi::mz_tap_config::default()
        },
    );
    for _ in 0..100 {
        assert_eq!(world.run(&frame).verdict, XDP_REDIRECT);
    }
    let s = tap_stats(&world);
    assert_eq!((s.records, s.filtered, s.lost), (0, 100, 0));

    // Everything, and nobody reading: the 8 MiB ring holds about 4,000 records of 2 KiB.
    tap_config(
        &world,
        abi::mz_tap_config {
            snaplen: 2048,
            ..abi::mz_tap_config::default()
        },
    );
    const FLOOD: u64 = 6000;
    for _ in 0..FLOOD {
        assert_eq!(
            world.run(&frame).verdict,
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

#[test]
fn the_filter_picks_by_port_protocol_and_reason_before_copying() {
    let world = tapped("taps-filter");
    // The usual packet: inner UDP 40000 -> 7777, delivered locally (deliver_local).
    let frame = packet_to(VNI, LOCAL_EP);
    let cases = [
        (17, 7777, abi::MZ_DELIVER_LOCAL + 1, true),
        (17, 40000, 0, true),
        (0, 9, 0, false),
        (6, 0, 0, false),
        (0, 0, abi::MZ_DROP_UNKNOWN_ENDPOINT + 1, false),
    ];
    for (proto, port, reason_plus_one, copied) in cases {
        tap_config(
            &world,
            abi::mz_tap_config {
                snaplen: 2048,
                proto,
                port_be: u16::to_be(port),
                reason_plus_one,
                ..abi::mz_tap_config::default()
            },
        );
        let before = tap_stats(&world);
        assert_eq!(world.run(&frame).verdict, XDP_REDIRECT);
        let after = tap_stats(&world);
        assert_eq!(
            (
                after.records - before.records,
                after.filtered - before.filtered
            ),
            if copied { (1, 0) } else { (0, 1) },
            "proto {proto} port {port} reason+1 {reason_plus_one}"
        );
    }
}
