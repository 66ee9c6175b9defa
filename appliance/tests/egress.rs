//! The endpoint-egress program in the real kernel (BPF_PROG_TEST_RUN): proxy ARP, same-host
//! delivery, encapsulation towards the right host, and every drop with its reason. The endpoint's
//! veth is played by the loopback interface (ifindex 1), which every namespace has.

mod common;

use mizar::dataplane::Ipv4Net;
use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use mizar::{
    dataplane::{
        Counters, DataplaneMaps, EndpointEntry, EndpointKind, HostConfig, MacAddr, MemberRoles,
        NetworkEntry, VpcEntry,
    },
    packet::{self, InnerFrame, parse_inner, parse_tunnel},
};
use mizar_ebpf::{abi, flow_hash, ip_be};

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

const VNI: u32 = 100;
const LOOPBACK: u32 = 1;
const UNDERLAY_IFINDEX: u32 = 42;
const PEER_IFINDEX: u32 = 77;

const HOST_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const BOUNCER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const DIVIDER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
const HOST_A_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
const HOST_B_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 2]);
const BOUNCER_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 3]);
const DIVIDER_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 4]);

const EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const EP_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 2]);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const PEER_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 5]);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const REMOTE_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 9]);
const UNKNOWN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 77);
const OTHER_NET: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);

fn endpoint(mac: MacAddr, host: Ipv4Addr, local_ifindex: Option<u32>) -> EndpointEntry {
    EndpointEntry {
        mac,
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host,
        local_ifindex,
    }
}

/// Host A: endpoint EP on "loopback", PEER on another local veth, REMOTE on host B; the network
/// 10.0.0.0/24 is bounced by BOUNCER, the VPC divided by DIVIDER.
fn host_a(maps: &mut DataplaneMaps) {
    underlay(maps, (HOST_A, HOST_A_MAC), (HOST_B, HOST_B_MAC));
    let net = NetworkEntry {
        this_host_bounces: false,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        bouncers: vec![BOUNCER],
    };
    maps.set_network(
        VNI,
        Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24),
        &net,
    )
    .unwrap();
    maps.set_endpoint(VNI, EP, &endpoint(EP_MAC, HOST_A, Some(LOOPBACK)))
        .unwrap();
    maps.set_endpoint(VNI, PEER, &endpoint(PEER_MAC, HOST_A, Some(PEER_IFINDEX)))
        .unwrap();
    maps.set_endpoint(VNI, REMOTE, &endpoint(REMOTE_MAC, HOST_B, None))
        .unwrap();
}

/// This host, the other end host, the bouncer and the divider on the underlay; VPC VNI divided
/// by DIVIDER.
fn underlay(maps: &mut DataplaneMaps, this: (Ipv4Addr, MacAddr), other: (Ipv4Addr, MacAddr)) {
    maps.set_host_config(&HostConfig {
        ip: this.0,
        mac: this.1,
        underlay_mtu: 1500,
        underlay_ifindex: UNDERLAY_IFINDEX,
    })
    .unwrap();
    for (ip, mac) in [other, (BOUNCER, BOUNCER_MAC), (DIVIDER, DIVIDER_MAC)] {
        maps.set_host(ip, mac).unwrap();
    }
    let vpc = VpcEntry {
        this_host_divides: false,
        dividers: vec![DIVIDER],
        // The other host sends for its endpoints; the bouncer forwards.
        members: [
            (other.0, MemberRoles::ENDPOINTS),
            (BOUNCER, MemberRoles::BOUNCER),
        ]
        .into(),
    };
    maps.set_vpc(VNI, &vpc).unwrap();
}

struct Run {
    verdict: u32,
    out: Vec<u8>,
    delta: Counters,
}

/// Runs the egress program once on `frame` as if the endpoint on `ifindex` had sent it.
fn run_egress(program: &Xdp, maps: &DataplaneMaps, frame: &[u8], ifindex: u32) -> Run {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    let mut out = vec![0u8; frame.len() + 256];
    let before = maps.counters().unwrap();
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN of mz_egress");
    out.truncate(result.data_size_out as usize);
    Run {
        verdict: result.return_value,
        out,
        delta: maps.counters().unwrap().since(&before),
    }
}

/// The ddos function's blocklist: EP (what it sends is dropped where ddos sits at ON_EGRESS).
fn block_ep(pins: &mizar::dataplane::PinLayout) {
    use mizar::dataplane::{DdosMaps, DdosState};
    DdosMaps::open(pins)
        .unwrap()
        .sync(&DdosState {
            blocks: [(VNI, Ipv4Net::new(EP, 32).unwrap())].into(),
            ..DdosState::default()
        })
        .unwrap();
}

/// Asserts that exactly one reason counter moved, by one packet: `reason`.
fn assert_only_reason(delta: &Counters, reason: abi::mz_counter) {
    let moved: Vec<_> = delta
        .nonzero_reasons()
        .map(|(info, v)| (info.name, v.packets))
        .collect();
    let expected = mizar_ebpf::COUNTER_INFO[reason as usize].name;
    assert_eq!(
        moved,
        [(expected, 1)],
        "expected only {expected} to count one packet"
    );
}

fn udp_from_ep(dst: Ipv4Addr, dst_mac: MacAddr) -> Vec<u8> {
    InnerFrame::udp(EP, dst, 40000, 7000, b"egress test payload")
        .macs(EP_MAC, dst_mac)
        .build()
}

#[test]
fn proxy_arp_answers_within_the_network_only() {
    let mut instance = common::TestInstance::new("egress-arp");
    host_a(instance.dataplane.maps_mut());
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());

    // A known endpoint is answered with its own MAC.
    let run = run_egress(
        prog,
        maps,
        &packet::arp_request(EP_MAC, EP, REMOTE),
        LOOPBACK,
    );
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_ARP_REPLY);
    assert_eq!(&run.out[0..6], &EP_MAC.0, "reply goes back to the asker");
    assert_eq!(&run.out[6..12], &REMOTE_MAC.0);
    assert_eq!(&run.out[20..22], &[0, 2], "ARP reply opcode");
    assert_eq!(&run.out[22..28], &REMOTE_MAC.0, "sender hardware address");
    assert_eq!(
        &run.out[28..32],
        &REMOTE.octets(),
        "sender protocol address"
    );
    assert_eq!(&run.out[32..38], &EP_MAC.0, "target hardware address");
    assert_eq!(&run.out[38..42], &EP.octets(), "target protocol address");

    // The gateway and addresses nobody here knows get the derived, locally administered MAC.
    for target in [Ipv4Addr::new(10, 0, 0, 1), UNKNOWN] {
        let run = run_egress(
            prog,
            maps,
            &packet::arp_request(EP_MAC, EP, target),
            LOOPBACK,
        );
        assert_eq!(run.verdict, XDP_REDIRECT);
        let o = target.octets();
        assert_eq!(&run.out[22..28], &[0x02, 0x00, o[0], o[1], o[2], o[3]]);
    }

    // Outside the asker's network: not answered, counted.
    let run = run_egress(
        prog,
        maps,
        &packet::arp_request(EP_MAC, EP, OTHER_NET),
        LOOPBACK,
    );
    assert_eq!(run.verdict, XDP_DROP);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_DROP_ARP_NOT_IN_NETWORK);

    // Gratuitous ARP (sender == target): nothing to answer.
    let run = run_egress(prog, maps, &packet::arp_request(EP_MAC, EP, EP), LOOPBACK);
    assert_eq!(run.verdict, XDP_DROP);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_DROP_ARP_NOT_REQUEST);
}

#[test]
fn same_host_endpoints_talk_without_a_tunnel() {
    let mut instance = common::TestInstance::new("egress-local");
    host_a(instance.dataplane.maps_mut());
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());
    let frame = udp_from_ep(PEER, MacAddr([0x02, 0x00, 10, 0, 0, 5]));

    let run = run_egress(prog, maps, &frame, LOOPBACK);
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_LOCAL);
    assert_eq!(
        &run.out[0..6],
        &PEER_MAC.0,
        "destination MAC set to the peer's own"
    );
    assert_eq!(&run.out[6..], &frame[6..], "nothing else changes");
    let peer = maps.endpoint_stats(VNI, PEER).unwrap().unwrap();
    let sender = maps.endpoint_stats(VNI, EP).unwrap().unwrap();
    assert_eq!((peer.rx_packets, peer.rx_bytes), (1, frame.len() as u64));
    assert_eq!(
        (sender.tx_packets, sender.tx_bytes),
        (1, frame.len() as u64)
    );
}

/// Checks an encapsulated frame: outer headers addressed from host A to `next_host`, the
/// source-host option, and the endpoint's frame carried unchanged.
fn assert_encapsulated(out: &[u8], frame: &[u8], next_host: Ipv4Addr, next_mac: MacAddr) {
    let tunnel = parse_tunnel(out).expect("a Geneve frame");
    assert_eq!(tunnel.eth.source, HOST_A_MAC.0);
    assert_eq!(tunnel.eth.destination, next_mac.0);
    assert_eq!(tunnel.src_ip(), HOST_A);
    assert_eq!(tunnel.dst_ip(), next_host);
    assert!(tunnel.ipv4_checksum_ok, "outer IPv4 checksum");
    // DF: a tunnel packet fragmented on the path would be lost; an atomic datagram's ID 0 is
    // valid (RFC 6864).
    assert!(tunnel.ip.dont_fragment, "outer DF");
    assert!(!tunnel.ip.more_fragments && tunnel.ip.fragment_offset.value() == 0);
    assert_eq!(tunnel.ip.time_to_live, 64);
    assert_eq!(usize::from(tunnel.ip.total_len), out.len() - 14);
    assert_eq!(tunnel.udp.destination_port, 6081);
    assert!(
        tunnel.udp.source_port >= 49152,
        "source port {} in the dynamic range",
        tunnel.udp.source_port
    );
    assert_eq!(usize::from(tunnel.udp.length), out.len() - 14 - 20);
    assert_eq!(tunnel.udp.checksum, 0);
    assert_eq!(
        (tunnel.geneve_version, tunnel.protocol, tunnel.vni),
        (0, 0x6558, VNI)
    );
    assert_eq!(tunnel.source_host(), Some(HOST_A));
    assert_eq!(tunnel.inner, frame, "the endpoint's frame rides unchanged");
    assert_eq!(out.len(), frame.len() + abi::MZ_ENCAP_OVERHEAD as usize);
}

#[test]
fn encapsulates_to_the_known_host_else_a_bouncer_else_a_divider() {
    let mut instance = common::TestInstance::new("egress-encap");
    host_a(instance.dataplane.maps_mut());
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());

    let frame = udp_from_ep(REMOTE, REMOTE_MAC);
    let run = run_egress(prog, maps, &frame, LOOPBACK);
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_TO_HOST);
    assert_encapsulated(&run.out, &frame, HOST_B, HOST_B_MAC);

    let frame = udp_from_ep(UNKNOWN, REMOTE_MAC);
    let run = run_egress(prog, maps, &frame, LOOPBACK);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_TO_BOUNCER);
    assert_encapsulated(&run.out, &frame, BOUNCER, BOUNCER_MAC);

    let frame = udp_from_ep(OTHER_NET, REMOTE_MAC);
    let run = run_egress(prog, maps, &frame, LOOPBACK);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_TO_DIVIDER);
    assert_encapsulated(&run.out, &frame, DIVIDER, DIVIDER_MAC);

    let sender = maps.endpoint_stats(VNI, EP).unwrap().unwrap();
    assert_eq!(sender.tx_packets, 3);
}

#[test]
fn outer_source_port_follows_the_flow() {
    let mut instance = common::TestInstance::new("egress-sport");
    host_a(instance.dataplane.maps_mut());
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());
    let port_of = |src_port: u16| {
        let frame = InnerFrame::udp(EP, REMOTE, src_port, 7000, b"x")
            .macs(EP_MAC, REMOTE_MAC)
            .build();
        parse_tunnel(&run_egress(prog, maps, &frame, LOOPBACK).out)
            .unwrap()
            .udp
            .source_port
    };
    assert_eq!(port_of(1000), port_of(1000), "one flow, one outer port");
    let ports: std::collections::HashSet<u16> = (0..32).map(|i| port_of(2000 + i)).collect();
    assert!(
        ports.len() > 16,
        "flows spread over outer ports: {} distinct of 32",
        ports.len()
    );
}

#[test]
fn a_receiving_transit_delivers_what_egress_sent_and_learns_the_sender() {
    // Host A's egress encapsulates; host B's transit must accept it, deliver it decapsulated and
    // learn that EP lives on host A, so that B's replies go straight back (direct path).
    let mut a = common::TestInstance::new("egress-rt-a");
    host_a(a.dataplane.maps_mut());
    let mut b = common::TestInstance::new("egress-rt-b");
    {
        let maps = b.dataplane.maps_mut();
        underlay(maps, (HOST_B, HOST_B_MAC), (HOST_A, HOST_A_MAC));
        maps.set_endpoint(VNI, REMOTE, &endpoint(REMOTE_MAC, HOST_B, Some(LOOPBACK)))
            .unwrap();
    }
    let frame = udp_from_ep(REMOTE, MacAddr([0x02, 0x00, 10, 0, 0, 9]));
    let sent = run_egress(a.dataplane.egress(), a.dataplane.maps(), &frame, LOOPBACK);
    assert_eq!(sent.verdict, XDP_REDIRECT);

    let mut out = vec![0u8; sent.out.len()];
    let result = b
        .dataplane
        .transit()
        .test_run(TestRunOptions {
            data_in: Some(&sent.out),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(result.return_value, XDP_REDIRECT);
    out.truncate(result.data_size_out as usize);
    let delivered = parse_inner(&out).expect("an inner frame");
    assert_eq!(delivered.eth.destination, REMOTE_MAC.0);
    assert_eq!(&out[6..], &frame[6..]);
    assert_eq!(
        b.dataplane.maps().learned_host(VNI, EP).unwrap(),
        Some(HOST_A)
    );

    // B's reply to EP now goes to host A directly, not through a bouncer.
    let reply = InnerFrame::udp(REMOTE, EP, 7000, 40000, b"reply")
        .macs(REMOTE_MAC, EP_MAC)
        .build();
    let run = run_egress(b.dataplane.egress(), b.dataplane.maps(), &reply, LOOPBACK);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_TO_LEARNED_HOST);
    assert_eq!(parse_tunnel(&run.out).unwrap().dst_ip(), HOST_A);

    // Forgetting host A forgets what was learned about it: replies take the VPC's divider again.
    // (As `host del` does: the host goes, and with it its membership of the VPC.)
    b.dataplane
        .maps_mut()
        .edit(|s| {
            s.hosts.remove(&HOST_A);
            for vpc in s.vpcs.values_mut() {
                vpc.members.remove(&HOST_A);
            }
        })
        .unwrap();
    assert_eq!(b.dataplane.maps().learned_host(VNI, EP).unwrap(), None);
    let run = run_egress(b.dataplane.egress(), b.dataplane.maps(), &reply, LOOPBACK);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_TO_DIVIDER);
    assert_eq!(parse_tunnel(&run.out).unwrap().dst_ip(), DIVIDER);
}

#[test]
fn bypass_decap_endpoint_on_this_host_gets_the_tunnel_packet() {
    let mut instance = common::TestInstance::new("egress-bypass");
    host_a(instance.dataplane.maps_mut());
    let function = EndpointEntry {
        bypass_decap: true,
        kind: EndpointKind::Function,
        ..endpoint(PEER_MAC, HOST_A, Some(PEER_IFINDEX))
    };
    instance
        .dataplane
        .maps_mut()
        .set_endpoint(VNI, PEER, &function)
        .unwrap();
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());

    let frame = udp_from_ep(PEER, PEER_MAC);
    let run = run_egress(prog, maps, &frame, LOOPBACK);
    assert_eq!(run.verdict, XDP_REDIRECT);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_LOCAL_BYPASS);
    let tunnel = parse_tunnel(&run.out).unwrap();
    assert_eq!(
        (tunnel.src_ip(), tunnel.dst_ip(), tunnel.vni),
        (HOST_A, HOST_A, VNI)
    );
    assert_eq!(tunnel.eth.destination, PEER_MAC.0);
    assert_eq!(tunnel.inner, frame);
}

#[test]
fn divider_choice_matches_the_flow_hash() {
    let mut instance = common::TestInstance::new("egress-hash");
    host_a(instance.dataplane.maps_mut());
    let bouncers: Vec<Ipv4Addr> = (10..14).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    {
        let maps = instance.dataplane.maps_mut();
        for (i, b) in bouncers.iter().enumerate() {
            maps.set_host(*b, MacAddr([0x02, 0xbb, 0, 0, 0, i as u8]))
                .unwrap();
        }
        let net = NetworkEntry {
            this_host_bounces: false,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            bouncers: bouncers.clone(),
        };
        maps.set_network(
            VNI,
            Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24),
            &net,
        )
        .unwrap();
    }
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());
    let mut used = std::collections::HashSet::new();
    for i in 20..60u8 {
        let dst = Ipv4Addr::new(10, 0, 0, i);
        let run = run_egress(prog, maps, &udp_from_ep(dst, REMOTE_MAC), LOOPBACK);
        let expected =
            bouncers[(flow_hash(ip_be(EP), ip_be(dst)) % bouncers.len() as u32) as usize];
        assert_eq!(
            parse_tunnel(&run.out).unwrap().dst_ip(),
            expected,
            "flow {EP} -> {dst}"
        );
        used.insert(expected);
    }
    assert_eq!(used.len(), bouncers.len(), "40 flows use every bouncer");
}

#[test]
fn bad_frames_are_dropped_with_their_reason() {
    let mut instance = common::TestInstance::new("egress-bad");
    host_a(instance.dataplane.maps_mut());
    // The network's only bouncer is this host, which does not know UNKNOWN: nowhere to send it.
    let net = NetworkEntry {
        this_host_bounces: true,
        gateway: Ipv4Addr::new(10, 2, 0, 1),
        bouncers: vec![HOST_A],
    };
    instance
        .dataplane
        .maps_mut()
        .set_network(
            VNI,
            Ipv4Net::new_assert(Ipv4Addr::new(10, 2, 0, 0), 24),
            &net,
        )
        .unwrap();
    let (prog, maps) = (instance.dataplane.egress(), instance.dataplane.maps());

    let spoofed = InnerFrame::udp(Ipv4Addr::new(10, 0, 0, 66), REMOTE, 1, 2, b"x")
        .macs(EP_MAC, REMOTE_MAC)
        .build();
    let mut ipv6 = udp_from_ep(REMOTE, REMOTE_MAC);
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut bad_ihl = udp_from_ep(REMOTE, REMOTE_MAC);
    bad_ihl[14] = 0x44;
    let mut too_long = udp_from_ep(REMOTE, REMOTE_MAC);
    too_long[16..18].copy_from_slice(&2000u16.to_be_bytes());
    // 1500-byte underlay: 42 bytes of inner headers + payload + 44 of outer IPv4/UDP/Geneve/option.
    let jumbo = InnerFrame::udp(EP, REMOTE, 1, 2, &[0u8; 1415])
        .macs(EP_MAC, REMOTE_MAC)
        .build();
    let fits = InnerFrame::udp(EP, REMOTE, 1, 2, &[0u8; 1414])
        .macs(EP_MAC, REMOTE_MAC)
        .build();

    let cases: &[(&str, Vec<u8>, u32, abi::mz_counter, u32)] = &[
        (
            "source address not the endpoint's",
            spoofed,
            LOOPBACK,
            abi::MZ_EGRESS_DROP_SPOOFED_SOURCE,
            XDP_DROP,
        ),
        (
            "IPv6",
            ipv6,
            LOOPBACK,
            abi::MZ_EGRESS_DROP_NOT_IPV4,
            XDP_DROP,
        ),
        (
            "IHL 4",
            bad_ihl,
            LOOPBACK,
            abi::MZ_EGRESS_DROP_MALFORMED,
            XDP_DROP,
        ),
        (
            "total length past the frame",
            too_long,
            LOOPBACK,
            abi::MZ_EGRESS_DROP_MALFORMED,
            XDP_DROP,
        ),
        (
            "too big once encapsulated",
            jumbo,
            LOOPBACK,
            abi::MZ_EGRESS_DROP_MTU,
            XDP_DROP,
        ),
        (
            "just fits once encapsulated",
            fits,
            LOOPBACK,
            abi::MZ_EGRESS_TO_HOST,
            XDP_REDIRECT,
        ),
        (
            "no route",
            udp_from_ep(Ipv4Addr::new(10, 2, 0, 9), REMOTE_MAC),
            LOOPBACK,
            abi::MZ_EGRESS_DROP_NO_ROUTE,
            XDP_DROP,
        ),
    ];
    for (what, frame, ifindex, reason, verdict) in cases {
        let run = run_egress(prog, maps, frame, *ifindex);
        assert_eq!(run.verdict, *verdict, "{what}: verdict");
        let moved: Vec<_> = run
            .delta
            .nonzero_reasons()
            .map(|(info, v)| (info.slot, v.packets))
            .collect();
        assert_eq!(
            moved,
            [(*reason, 1)],
            "{what}: exactly one reason counted ({:?})",
            mizar_ebpf::COUNTER_INFO[*reason as usize].name
        );
    }
}

#[test]
fn a_removed_endpoint_can_no_longer_send() {
    let mut instance = common::TestInstance::new("egress-removed");
    host_a(instance.dataplane.maps_mut());
    instance
        .dataplane
        .maps_mut()
        .remove_endpoint(VNI, EP)
        .unwrap();
    let run = run_egress(
        instance.dataplane.egress(),
        instance.dataplane.maps(),
        &udp_from_ep(REMOTE, REMOTE_MAC),
        LOOPBACK,
    );
    assert_eq!(run.verdict, XDP_DROP);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_DROP_UNKNOWN_IFACE);
}

#[test]
fn unconfigured_host_drops_endpoint_traffic() {
    let instance = common::TestInstance::new("egress-unconfigured");
    let run = run_egress(
        instance.dataplane.egress(),
        instance.dataplane.maps(),
        &udp_from_ep(REMOTE, REMOTE_MAC),
        LOOPBACK,
    );
    assert_eq!(run.verdict, XDP_DROP);
    assert_only_reason(&run.delta, abi::MZ_EGRESS_DROP_NOT_CONFIGURED);
}

/// With functions at ON_EGRESS the frame meets them as the endpoint sent it, and the chain's
/// exit then encapsulates or delivers exactly as an empty stage does; a function's drop keeps
/// the frame from leaving (and from counting as sent).
#[test]
fn a_chain_at_on_egress_runs_before_encapsulation_and_the_exit_applies_the_decision() {
    use mizar::dataplane::{ChainLink, Chains, Stage};
    let mut plain = common::TestInstance::new("egress-chain-plain");
    let mut chained = common::TestInstance::new("egress-chain");
    host_a(plain.dataplane.maps_mut());
    host_a(chained.dataplane.maps_mut());
    let mut chains = Chains::open(chained.dataplane.pins()).unwrap();
    let link = |instance, function: &str| ChainLink {
        instance,
        function: function.into(),
    };
    chains
        .publish(Stage::OnEgress, &[link(1, "count"), link(2, "count")])
        .unwrap();

    let frames = [
        (udp_from_ep(REMOTE, REMOTE_MAC), abi::MZ_EGRESS_TO_HOST),
        (
            udp_from_ep(PEER, MacAddr([0x02, 0x00, 10, 0, 0, 5])),
            abi::MZ_EGRESS_LOCAL,
        ),
        (udp_from_ep(UNKNOWN, REMOTE_MAC), abi::MZ_EGRESS_TO_BOUNCER),
    ];
    for (i, (frame, reason)) in frames.iter().enumerate() {
        let expected = run_egress(
            plain.dataplane.egress(),
            plain.dataplane.maps(),
            frame,
            LOOPBACK,
        );
        let got = run_egress(
            chained.dataplane.egress(),
            chained.dataplane.maps(),
            frame,
            LOOPBACK,
        );
        assert_eq!(got.verdict, XDP_REDIRECT, "frame {i}");
        assert_only_reason(&got.delta, *reason);
        assert_eq!(got.out, expected.out, "frame {i}: the same bytes out");
        assert_eq!(
            chains.function_stats(2).unwrap().passed,
            i as u64 + 1,
            "both functions saw frame {i}"
        );
    }
    let maps = chained.dataplane.maps();
    assert_eq!(maps.endpoint_stats(VNI, EP).unwrap().unwrap().tx_packets, 3);
    assert_eq!(
        maps.endpoint_stats(VNI, PEER).unwrap().unwrap().rx_packets,
        1
    );
    assert_eq!(chains.chain_stats(Stage::OnEgress).unwrap().applied, 3);

    // The ddos function at ON_EGRESS: a blocked endpoint cannot send, and is not counted as
    // having sent.
    chains.publish(Stage::OnEgress, &[link(3, "ddos")]).unwrap();
    block_ep(chained.dataplane.pins());
    let run = run_egress(
        chained.dataplane.egress(),
        chained.dataplane.maps(),
        &frames[0].0,
        LOOPBACK,
    );
    assert_eq!(run.verdict, XDP_DROP);
    assert_eq!(chains.function_stats(3).unwrap().dropped[0], 1);
    assert_eq!(maps.endpoint_stats(VNI, EP).unwrap().unwrap().tx_packets, 3);
}

/// A capture at egress's entry and verdict (egress with the taps, as a capture attaches it): the
/// frame as the endpoint sent it and as it leaves (encapsulated), under one id, the bytes out
/// the same as the plain egress's; a frame a function drops at ON_EGRESS is seen at the verdict
/// as a drop, naming the function and its reason.
#[test]
fn egress_taps_see_the_frame_as_sent_and_as_encapsulated_and_a_function_drop() {
    use aya::maps::{Array, MapData, RingBuf};
    use mizar::{
        capture::{CompiledFilter, filter::parse},
        dataplane::{ChainLink, Chains, Stage},
    };
    use mizar_ebpf::maps as names;
    let mut plain = common::TestInstance::new("egress-taps-plain");
    let mut tapped = common::TestInstance::new("egress-taps");
    host_a(plain.dataplane.maps_mut());
    host_a(tapped.dataplane.maps_mut());
    let pins = tapped.dataplane.pins();
    let mut chains = Chains::open(pins).unwrap();
    chains
        .publish(
            Stage::OnEgress,
            &[ChainLink {
                instance: 3,
                function: "ddos".into(),
            }],
        )
        .unwrap();
    let mut filter: Array<MapData, abi::mz_tap_filter> = Array::try_from(aya::maps::Map::Array(
        MapData::from_pin(pins.map(names::TAP_FILTER)).unwrap(),
    ))
    .unwrap();
    let all = CompiledFilter::compile(&parse("vni 100").unwrap()).unwrap();
    filter.set(0, all.to_raw(2048, 1), 0).unwrap();
    chains
        .set_tap_flags(
            abi::MZ_HOST_TAPPING
                | 1 << (1 + abi::MZ_TAP_EGRESS_ENTRY)
                | 1 << (1 + abi::MZ_TAP_EGRESS_VERDICT),
        )
        .unwrap();
    let mut ring: RingBuf<MapData> = RingBuf::try_from(aya::maps::Map::RingBuf(
        MapData::from_pin(pins.map(names::TAPS)).unwrap(),
    ))
    .unwrap();
    let mut records = || {
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            let size = std::mem::size_of::<abi::mz_tap_header>();
            // SAFETY: the kernel wrote a struct mz_tap_header at the record's start.
            let h: abi::mz_tap_header = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            out.push((h, item[size..size + h.cap_len as usize].to_vec()));
        }
        out
    };

    let frame = udp_from_ep(REMOTE, REMOTE_MAC);
    let expected = run_egress(
        plain.dataplane.egress(),
        plain.dataplane.maps(),
        &frame,
        LOOPBACK,
    );
    let got = run_egress(
        tapped.dataplane.egress_tapped(),
        tapped.dataplane.maps(),
        &frame,
        LOOPBACK,
    );
    assert_eq!((got.verdict, &got.out), (expected.verdict, &expected.out));
    let seen = records();
    assert_eq!(seen.len(), 2, "entry and verdict");
    let (entry, verdict) = (&seen[0], &seen[1]);
    assert_eq!(entry.0.point, abi::MZ_TAP_EGRESS_ENTRY);
    assert_eq!((entry.0.verdict, &entry.1), (abi::MZ_TAP_NONE, &frame));
    assert_eq!(entry.0.ifindex, LOOPBACK);
    assert_eq!(verdict.0.point, abi::MZ_TAP_EGRESS_VERDICT);
    assert_eq!(
        (verdict.0.verdict, verdict.0.reason, verdict.0.vni),
        (XDP_REDIRECT, abi::MZ_EGRESS_TO_HOST, VNI)
    );
    assert_eq!(
        verdict.1, got.out,
        "the verdict sees the encapsulated frame"
    );
    assert_eq!(entry.0.packet_id, verdict.0.packet_id, "one packet, one id");
    // The plain egress holds no tap: with the capture's flags set it records no entry (the
    // chain's exit, a program of its own, still taps the verdict).
    run_egress(
        tapped.dataplane.egress(),
        tapped.dataplane.maps(),
        &frame,
        LOOPBACK,
    );
    let plain = records();
    assert!(
        plain
            .iter()
            .all(|(h, _)| h.point == abi::MZ_TAP_EGRESS_VERDICT),
        "the plain egress taps nothing itself: {:?}",
        plain.iter().map(|(h, _)| h.point).collect::<Vec<_>>()
    );

    // The ddos function drops what EP sends: seen at the entry and as a drop at the verdict.
    block_ep(pins);
    let run = run_egress(
        tapped.dataplane.egress_tapped(),
        tapped.dataplane.maps(),
        &frame,
        LOOPBACK,
    );
    assert_eq!(run.verdict, XDP_DROP);
    let seen = records();
    assert_eq!(seen.len(), 2, "entry and verdict");
    let dropped = &seen[1].0;
    assert_eq!(
        (
            dropped.point,
            dropped.verdict,
            dropped.instance,
            dropped.fn_drop
        ),
        (
            abi::MZ_TAP_EGRESS_VERDICT,
            XDP_DROP,
            3,
            abi::MZ_DDOS_DROP_BLOCKED + 1
        ),
        "the verdict names the function (instance 3) and its reason (blocked)"
    );
    assert_eq!(seen[1].1, frame, "dropped before encapsulation");
    assert_ne!(
        seen[0].0.packet_id, entry.0.packet_id,
        "a new packet, a new id"
    );
    assert_eq!(chains.function_stats(3).unwrap().dropped[0], 1);
}
