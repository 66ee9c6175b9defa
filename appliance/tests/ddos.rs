//! The ddos function in the real kernel (BPF_PROG_TEST_RUN): placed in the chain at
//! ON_XDP_REDIRECT, it drops blocked sources and sources over their VPC's threshold, each under
//! its own reason, and keeps tenants apart (a VPC's rule never touches another VPC's packets with
//! the same addresses). Needs root and BPF (CI runs it as root).

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use std::net::Ipv4Addr;

use fixture::*;
use mizar::dataplane::{DdosMaps, DdosState, Ipv4Net, Stage};
use mizar_ebpf::abi;

fn world(name: &str) -> World {
    World::two_vpcs_with_function(name, "ddos")
}

fn configure(world: &World, state: &DdosState) {
    DdosMaps::open(world.instance.dataplane.pins())
        .unwrap()
        .sync(state)
        .unwrap();
}

fn dropped(world: &World) -> [u64; 2] {
    let d = world.function_drops();
    [
        d[abi::MZ_DDOS_DROP_BLOCKED as usize],
        d[abi::MZ_DDOS_DROP_RATE as usize],
    ]
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn a_vpcs_block_drops_its_sources_and_never_another_vpcs() {
    let world = world("ddos-block");
    let to_a = packet_to(VNI, LOCAL_EP);
    let to_b = packet_to(VNI_B, LOCAL_EP);
    // Nothing configured: both delivered.
    world
        .run(&to_a)
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);

    configure(
        &world,
        &DdosState {
            blocks: [(VNI, net("10.0.0.0/30"))].into(),
            ..DdosState::default()
        },
    );
    // The pipeline decided to deliver (its reason counts that); the function dropped it.
    let run = world.run(&to_a);
    run.expect(XDP_DROP, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(dropped(&world), [1, 0]);
    // The same source address in VPC B is another tenant's: delivered.
    world
        .run(&to_b)
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(dropped(&world), [1, 0]);

    // A block for every VPC (VNI 0) drops both; removing it restores both.
    let every = DdosState {
        blocks: [(0, net("10.0.0.2/32"))].into(),
        ..DdosState::default()
    };
    configure(&world, &every);
    assert_eq!(world.run(&to_a).verdict, XDP_DROP);
    assert_eq!(world.run(&to_b).verdict, XDP_DROP);
    assert_eq!(dropped(&world), [3, 0]);
    assert_eq!(
        DdosMaps::open(world.instance.dataplane.pins())
            .unwrap()
            .read()
            .unwrap(),
        every,
        "the maps hold exactly what was written"
    );
    configure(&world, &DdosState::default());
    assert_eq!(world.run(&to_a).verdict, XDP_REDIRECT);
    assert_eq!(world.run(&to_b).verdict, XDP_REDIRECT);
}

#[test]
fn a_source_over_its_threshold_is_dropped_for_the_window_and_others_are_not() {
    let world = world("ddos-rate");
    configure(
        &world,
        &DdosState {
            // Three packets per hour from one source of VPC A; VPC B has no threshold.
            limits: [(VNI, (3, 3_600_000_000_000))].into(),
            ..DdosState::default()
        },
    );
    let from = |src: Ipv4Addr, vni| from_peer(vni).build(&inner_udp(src, LOCAL_EP));
    let flood = from(SENDER_EP, VNI);
    let verdicts: Vec<u32> = (0..5).map(|_| world.run(&flood).verdict).collect();
    assert_eq!(
        verdicts,
        [XDP_REDIRECT, XDP_REDIRECT, XDP_REDIRECT, XDP_DROP, XDP_DROP]
    );
    assert_eq!(dropped(&world), [0, 2]);
    // Another source of the same VPC, and the same source in another VPC, are not limited.
    let other = Ipv4Addr::new(10, 0, 0, 9);
    assert_eq!(world.run(&from(other, VNI)).verdict, XDP_REDIRECT);
    for _ in 0..5 {
        assert_eq!(world.run(&from(SENDER_EP, VNI_B)).verdict, XDP_REDIRECT);
    }
    // A default threshold (VNI 0) applies to a VPC without its own.
    configure(
        &world,
        &DdosState {
            limits: [(VNI, (3, 3_600_000_000_000)), (0, (1, 3_600_000_000_000))].into(),
            ..DdosState::default()
        },
    );
    let b_other = from(Ipv4Addr::new(10, 0, 0, 7), VNI_B);
    assert_eq!(world.run(&b_other).verdict, XDP_REDIRECT);
    assert_eq!(world.run(&b_other).verdict, XDP_DROP);
}

#[test]
fn a_short_window_lets_a_source_back() {
    let world = world("ddos-window");
    configure(
        &world,
        &DdosState {
            limits: [(VNI, (1, 20_000_000))].into(),
            ..DdosState::default()
        },
    );
    let flood = packet_to(VNI, LOCAL_EP);
    assert_eq!(world.run(&flood).verdict, XDP_REDIRECT);
    assert_eq!(world.run(&flood).verdict, XDP_DROP);
    // The coarse clock ticks every few ms: well past the 20 ms window.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        world.run(&flood).verdict,
        XDP_REDIRECT,
        "back after the window"
    );
}

/// The SYN-flood guard: above a destination's new-connection threshold, SYNs from sources
/// without an established connection are dropped; a source that completed a handshake keeps
/// connecting; another VPC with the same addresses is not guarded.
#[test]
fn syns_over_a_destinations_threshold_are_dropped_unless_the_source_is_established() {
    use mizar::packet::{InnerFrame, TcpFlags};
    let world = world("ddos-syn");
    configure(
        &world,
        &DdosState {
            syn_limits: [(VNI, (2, 60_000_000_000))].into(),
            ..DdosState::default()
        },
    );
    let segment = |vni: u32, src: Ipv4Addr, sport: u16, flags: TcpFlags| {
        from_peer(vni).build(&InnerFrame::tcp(src, LOCAL_EP, sport, 80, flags).build())
    };
    let known = Ipv4Addr::new(10, 0, 0, 50);
    // A client that finishes its handshake: its ACK marks it established with LOCAL_EP.
    assert_eq!(
        world.run(&segment(VNI, known, 1000, TcpFlags::SYN)).verdict,
        XDP_REDIRECT
    );
    assert_eq!(
        world.run(&segment(VNI, known, 1000, TcpFlags::ACK)).verdict,
        XDP_REDIRECT
    );
    // A flood from SENDER_EP: one more SYN fits the threshold of 2, the rest are dropped.
    let verdicts: Vec<u32> = (0..5)
        .map(|i| {
            world
                .run(&segment(VNI, SENDER_EP, 2000 + i, TcpFlags::SYN))
                .verdict
        })
        .collect();
    assert_eq!(
        verdicts,
        [XDP_REDIRECT, XDP_DROP, XDP_DROP, XDP_DROP, XDP_DROP]
    );
    assert_eq!(
        world.function_drops()[abi::MZ_DDOS_DROP_SYN_FLOOD as usize],
        4
    );
    // The established client still connects; its other segments were never limited.
    assert_eq!(
        world.run(&segment(VNI, known, 1001, TcpFlags::SYN)).verdict,
        XDP_REDIRECT
    );
    // A SYN-ACK (the answer of a client's own connection) is not a new connection.
    assert_eq!(
        world
            .run(&segment(VNI, SENDER_EP, 3000, TcpFlags::SYN_ACK))
            .verdict,
        XDP_REDIRECT
    );
    // VPC B has no guard: the same source floods freely there.
    for i in 0..5 {
        assert_eq!(
            world
                .run(&segment(VNI_B, SENDER_EP, 4000 + i, TcpFlags::SYN))
                .verdict,
            XDP_REDIRECT
        );
    }
    assert_eq!(
        world.function_drops()[abi::MZ_DDOS_DROP_SYN_FLOOD as usize],
        4
    );
}
