//! The data-plane property fuzzer (`mizar fuzz`) in CI's size: a few hundred thousand packets
//! through the real programs, every result checked. `mizar fuzz` runs the full 10,000,000
//! (README, reliability).

use std::process::Command;

use mizar::fuzz;
use mizar_ebpf::abi;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads XDP programs into the kernel: run it as root (CI does)"
    );
}

#[test]
fn fuzzed_packets_never_break_a_property() {
    require_root();
    let out = Command::new(env!("CARGO_BIN_EXE_mizar"))
        .args(["fuzz", "--packets", "150000", "--seed", "7"])
        .output()
        .expect("run mizar fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "mizar fuzz found violations or failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("150000 packets"), "{stdout}");
    assert!(stdout.contains("0 violations"), "{stdout}");
    // Every path was reached, so every check ran.
    for reason in [
        "deliver_local ",
        "deliver_local_bypass",
        "bouncer_forward",
        "divider_forward",
        "to_divider",
        "drop_not_vpc_member",
        "drop_unknown_source_host",
        "drop_no_scaled_function",
        "pass_not_geneve_port",
        "egress_local ",
        "egress_local_bypass",
        "egress_to_host",
        "egress_to_bouncer",
        "egress_to_divider",
        "egress_arp_reply",
    ] {
        assert!(stdout.contains(reason), "no packet took {reason}: {stdout}");
    }
}

#[test]
fn the_checker_catches_a_delivery_into_the_wrong_vpc() {
    // Corrupt the maps as an undetectable reuse would: VPC A's endpoint at 10.0.0.3 holds VPC
    // B's endpoint's value, key copy forged to A's. The data plane then delivers VPC A's
    // packets to VPC B's veth, and the fuzzer must say so.
    require_root();
    let report = fuzz::run_with(3000, 1, |pins| {
        let data = aya::maps::MapData::from_pin(pins.map(mizar_ebpf::maps::ENDPOINTS)).unwrap();
        let mut endpoints: aya::maps::HashMap<_, abi::mz_endpoint_key, abi::mz_endpoint> =
            aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
        let key_a = abi::mz_endpoint_key {
            vni: 100,
            ip_be: mizar_ebpf::ip_be("10.0.0.3".parse().unwrap()),
        };
        let key_b = abi::mz_endpoint_key { vni: 200, ..key_a };
        let mut forged = endpoints.get(&key_b, 0).unwrap();
        forged.key = key_a;
        endpoints.insert(key_a, forged, 0).unwrap();
        Ok(())
    })
    .expect("fuzz run");
    assert!(report.violation_count > 0, "{report}");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("not the inner frame addressed to 10.0.0.3 of VNI 100")),
        "{report}"
    );
}
