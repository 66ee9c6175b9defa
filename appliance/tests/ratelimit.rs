//! The ratelimit function in the real kernel (BPF_PROG_TEST_RUN): placed in the chain at
//! ON_XDP_REDIRECT (ingress), its GCRA buckets let a burst through, drop the excess under the
//! reason of the measure it broke, refill with time, and keep endpoints and VPCs apart.
//! Needs root and BPF (CI runs it as root).

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use std::{collections::BTreeMap, time::Duration};

use fixture::*;
use mizar::dataplane::{RateKey, RateLimitMaps, RateRule};
use mizar_ebpf::abi;

fn world(name: &str) -> World {
    World::two_vpcs_with_function(name, "ratelimit")
}

fn configure(world: &World, rules: &[(RateKey, RateRule)]) {
    RateLimitMaps::open(world.instance.dataplane.pins())
        .unwrap()
        .sync(&rules.iter().copied().collect::<BTreeMap<_, _>>())
        .unwrap();
}

fn dropped(world: &World) -> [u64; 4] {
    let d = world.function_drops();
    [d[0], d[1], d[2], d[3]]
}

fn packets(per_second: u64, burst: u64) -> RateRule {
    RateRule {
        packets: per_second,
        burst_packets: burst,
        ..RateRule::default()
    }
}

#[test]
fn a_burst_passes_the_excess_is_dropped_and_time_refills_the_bucket() {
    let world = world("rl-burst");
    configure(
        &world,
        &[((VNI, Some(LOCAL_EP), abi::MZ_RL_INGRESS), packets(3, 3))],
    );
    let to_a = packet_to(VNI, LOCAL_EP);
    let verdicts: Vec<u32> = (0..5).map(|_| world.run(&to_a).verdict).collect();
    assert_eq!(
        verdicts,
        [XDP_REDIRECT, XDP_REDIRECT, XDP_REDIRECT, XDP_DROP, XDP_DROP]
    );
    assert_eq!(dropped(&world), [2, 0, 0, 0], "endpoint packets");
    // The same address in VPC B is another endpoint: no rule.
    for _ in 0..5 {
        assert_eq!(world.run(&packet_to(VNI_B, LOCAL_EP)).verdict, XDP_REDIRECT);
    }
    // 3 per second: after 400 ms one more conforms, and the next does not.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(world.run(&to_a).verdict, XDP_REDIRECT);
    assert_eq!(world.run(&to_a).verdict, XDP_DROP);
}

#[test]
fn bytes_and_the_whole_vpc_are_limited_under_their_own_reasons() {
    let world = world("rl-bytes");
    let frame = packet_to(VNI, LOCAL_EP);
    let len = frame.len() as u64;
    // Bytes: room for exactly 4 frames at once, per hour; then the VPC as a whole.
    configure(
        &world,
        &[(
            (VNI, Some(LOCAL_EP), abi::MZ_RL_INGRESS),
            RateRule {
                bytes: 1,
                burst_bytes: 4 * len,
                ..RateRule::default()
            },
        )],
    );
    // GCRA with a tolerance of 4 frames' worth lets 4 + 1 through.
    let passed = (0..8)
        .filter(|_| world.run(&frame).verdict == XDP_REDIRECT)
        .count();
    assert_eq!(
        passed, 5,
        "a burst of 4 frames' bytes, plus the one that opens it"
    );
    assert_eq!(dropped(&world), [0, 3, 0, 0], "endpoint bytes");

    configure(
        &world,
        &[((VNI_B, None, abi::MZ_RL_INGRESS), packets(1, 1))],
    );
    let to_b = packet_to(VNI_B, LOCAL_EP);
    assert_eq!(world.run(&to_b).verdict, XDP_REDIRECT);
    assert_eq!(world.run(&to_b).verdict, XDP_DROP);
    assert_eq!(dropped(&world), [0, 3, 1, 0], "VPC packets");
    // The endpoint rule of VPC A is gone with the reconfiguration: A passes again.
    assert_eq!(world.run(&frame).verdict, XDP_REDIRECT);
    // An egress rule does not act at ingress.
    configure(
        &world,
        &[((VNI, Some(LOCAL_EP), abi::MZ_RL_EGRESS), packets(1, 1))],
    );
    for _ in 0..3 {
        assert_eq!(world.run(&frame).verdict, XDP_REDIRECT);
    }
}
