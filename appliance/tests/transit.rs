//! BPF_PROG_TEST_RUN tests of the Transit XDP program (`mz_transit`), one or more per branch of
//! the decision procedure: crafted packets in, verdict, output bytes and counters checked.
//! Needs root and BPF (CI runs it as root); fails loudly without them.

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use mizar::dataplane::Ipv4Net;
use std::{collections::HashSet, net::Ipv4Addr};

use fixture::*;
use mizar::{
    dataplane::{EndpointEntry, EndpointKind, MacAddr, MemberRoles, Stage},
    packet::{
        GeneveOption, InnerFrame, OPT_CLASS_MIZAR, ParsedTunnel, Tunnel, arp_request, parse_tunnel,
    },
};
use mizar_ebpf::{abi, flow_hash, ip_be};

// ---------------------------------------------------------------------------------------------
// Step 1: not Geneve → the Linux stack.

#[test]
fn arp_is_passed_to_the_stack() {
    let world = World::bouncer("transit-arp");
    world
        .run(&arp_request(host_mac(PEER), PEER, SELF))
        .expect_pass(abi::MZ_PASS_NOT_IPV4);
}

#[test]
fn non_udp_is_passed_to_the_stack() {
    let world = World::bouncer("transit-non-udp");
    for protocol in [1u8 /* ICMP */, 6 /* TCP */, 47 /* GRE */] {
        let mut tunnel = from_peer(VNI);
        tunnel.ip_protocol = protocol;
        world
            .run(&tunnel.build(&inner_udp(SENDER_EP, LOCAL_EP)))
            .expect_pass(abi::MZ_PASS_NOT_UDP);
    }
}

#[test]
fn other_udp_ports_are_passed_to_the_stack() {
    let world = World::bouncer("transit-port");
    for port in [4789u16 /* VXLAN */, 6080, 6082, 53] {
        let mut tunnel = from_peer(VNI);
        tunnel.dst_port = port;
        world
            .run(&tunnel.build(&inner_udp(SENDER_EP, LOCAL_EP)))
            .expect_pass(abi::MZ_PASS_NOT_GENEVE_PORT);
    }
}

#[test]
fn geneve_not_addressed_to_this_host_is_passed() {
    let world = World::bouncer("transit-not-ours");
    let mut tunnel = from_peer(VNI);
    tunnel.dst_ip = Ipv4Addr::new(192, 168, 0, 77);
    world
        .run(&tunnel.build(&inner_udp(SENDER_EP, LOCAL_EP)))
        .expect_pass(abi::MZ_PASS_NOT_FOR_THIS_HOST);
}

#[test]
fn unconfigured_host_passes_even_geneve() {
    let world = World::unconfigured("transit-unconfigured");
    world
        .run(&packet_to(VNI, LOCAL_EP))
        .expect_pass(abi::MZ_PASS_NOT_CONFIGURED);
}

// ---------------------------------------------------------------------------------------------
// Step 2: local delivery.

#[test]
fn local_delivery_decapsulates_exactly() {
    let world = World::bouncer("transit-local");
    let inner = inner_udp(SENDER_EP, LOCAL_EP);
    let frame = from_peer(VNI).build(&inner);
    let run = world.run(&frame);
    run.expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);

    // The inner frame, byte for byte, with the endpoint's MAC as destination.
    let mut expected = inner.clone();
    expected[..6].copy_from_slice(&LOCAL_MAC.0);
    assert_eq!(run.output, expected, "decapsulated frame");
    assert_ne!(inner[..6], LOCAL_MAC.0, "the test must see the rewrite");

    let stats = world
        .instance
        .dataplane
        .maps()
        .endpoint_stats(VNI, LOCAL_EP)
        .unwrap()
        .unwrap();
    assert_eq!(stats.rx_packets, 1);
    assert_eq!(stats.rx_bytes, inner.len() as u64);
    assert_eq!((stats.tx_packets, stats.tx_bytes), (0, 0));

    // Direct path: the sender's host was learned from the source-host option.
    let maps = world.instance.dataplane.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), Some(PEER));
    assert_eq!(maps.learned_host(VNI, LOCAL_EP).unwrap(), None);
    assert_eq!(maps.learned_host(VNI_B, SENDER_EP).unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// A host speaks only for itself, and only in the VPCs it has a role in.

#[test]
fn a_known_host_with_no_role_in_a_vpc_cannot_inject_into_it() {
    let mut world = World::bouncer("transit-not-member");
    // OUTSIDER is a host of the fabric (admitted by the host filter) with endpoints in VPC B
    // only; VPC B has a local endpoint at LOCAL_EP's address too.
    const OUTSIDER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 50);
    world.maps().set_host(OUTSIDER, host_mac(OUTSIDER)).unwrap();
    world.vpc_with_members(
        VNI_B,
        false,
        &DIVIDERS,
        [(OUTSIDER, MemberRoles::ENDPOINTS)].into(),
    );
    world.local_endpoint(VNI_B, LOCAL_EP, MacAddr([0x02, 0xb0, 0, 0, 0, 3]), 8, false);
    let from_outsider = |vni| {
        Tunnel::new(OUTSIDER, SELF, vni)
            .macs(host_mac(OUTSIDER), SELF_MAC)
            .build(&inner_udp(SENDER_EP, LOCAL_EP))
    };
    world
        .run(&from_outsider(VNI))
        .expect_drop(abi::MZ_DROP_NOT_VPC_MEMBER);
    world.run(&from_outsider(VNI_B)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    // Every path of VPC A is closed to it, not only local delivery.
    for dst in [
        REMOTE_EP,
        Ipv4Addr::new(10, 0, 0, 200),
        Ipv4Addr::new(10, 9, 0, 1),
    ] {
        let frame = Tunnel::new(OUTSIDER, SELF, VNI)
            .macs(host_mac(OUTSIDER), SELF_MAC)
            .build(&inner_udp(SENDER_EP, dst));
        world.run(&frame).expect_drop(abi::MZ_DROP_NOT_VPC_MEMBER);
    }
    // A VNI nobody configured is still told apart.
    world
        .run(&from_outsider(4242))
        .expect_drop(abi::MZ_DROP_UNKNOWN_VPC);
    assert_eq!(
        world
            .instance
            .dataplane
            .maps()
            .learned_host(VNI, SENDER_EP)
            .unwrap(),
        None,
        "nothing learned from a refused packet"
    );
}

#[test]
fn a_source_host_option_is_believed_only_from_that_host_or_a_bouncer_or_divider() {
    let world = World::bouncer("transit-claims");
    let learned = |ip| {
        world
            .instance
            .dataplane
            .maps()
            .learned_host(VNI, ip)
            .unwrap()
    };
    let deliver = |from: Ipv4Addr, claim: Ipv4Addr, src: Ipv4Addr| {
        let mut tunnel = Tunnel::new(from, SELF, VNI).macs(host_mac(from), SELF_MAC);
        tunnel.options = vec![GeneveOption::source_host(claim)];
        world.run(&tunnel.build(&inner_udp(src, LOCAL_EP))).expect(
            XDP_REDIRECT,
            abi::MZ_DELIVER_LOCAL,
            Stage::OnXdpRedirect,
        );
    };
    // An endpoint host naming another host: delivered, not believed (it would attract the
    // sender's traffic to EP_HOST, or, naming itself for a victim, to itself).
    let a = Ipv4Addr::new(10, 0, 0, 21);
    deliver(PEER, EP_HOST, a);
    assert_eq!(learned(a), None, "PEER cannot speak for EP_HOST");
    // Naming itself: believed.
    deliver(PEER, PEER, a);
    assert_eq!(learned(a), Some(PEER));
    // A bouncer forwarding for an endpoint host: believed.
    let b = Ipv4Addr::new(10, 0, 0, 22);
    deliver(BOUNCERS[1], EP_HOST, b);
    assert_eq!(learned(b), Some(EP_HOST));
    // A divider likewise.
    let c = Ipv4Addr::new(10, 0, 0, 23);
    deliver(DIVIDERS[0], PEER, c);
    assert_eq!(learned(c), Some(PEER));
    // A bouncer cannot make a host with no endpoint in the VPC (itself, another bouncer, a
    // divider) an endpoint's home.
    let d = Ipv4Addr::new(10, 0, 0, 24);
    for claim in [BOUNCERS[1], BOUNCERS[2], DIVIDERS[1]] {
        deliver(BOUNCERS[1], claim, d);
        assert_eq!(learned(d), None, "{claim} hosts no endpoint of the VPC");
    }
}

#[test]
fn an_entry_holding_another_keys_value_is_never_used() {
    // What a reader sees when the kernel reuses a preallocated element for another key under
    // it: the value of another VPC's endpoint. Forged here by writing, under VPC A's key, the
    // value of VPC B's endpoint at the same address (its veth is another tenant's).
    let mut world = World::bouncer("transit-reused");
    world.vpc(VNI_B, false, &DIVIDERS);
    world.local_endpoint(VNI_B, LOCAL_EP, MacAddr([0x02, 0xb0, 0, 0, 0, 3]), 8, false);
    let pins = world.instance.dataplane.pins().clone();
    let data = aya::maps::MapData::from_pin(pins.map(mizar_ebpf::maps::ENDPOINTS)).unwrap();
    let mut endpoints: aya::maps::HashMap<_, abi::mz_endpoint_key, abi::mz_endpoint> =
        aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(data).unwrap()).unwrap();
    let key_a = abi::mz_endpoint_key {
        vni: VNI,
        ip_be: ip_be(LOCAL_EP),
    };
    let key_b = abi::mz_endpoint_key {
        vni: VNI_B,
        ..key_a
    };
    let b_value = endpoints.get(&key_b, 0).unwrap();
    assert_eq!(b_value.key, key_b, "each value carries its own key");
    endpoints.insert(key_a, b_value, 0).unwrap();
    world
        .run(&packet_to(VNI, LOCAL_EP))
        .expect_drop(abi::MZ_DROP_ENTRY_CHANGED);
    // VPC B's own traffic is untouched.
    world.run(&packet_to(VNI_B, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
}

#[test]
fn local_delivery_of_an_icmp_echo() {
    let world = World::bouncer("transit-local-icmp");
    let inner = InnerFrame::icmp_echo(SENDER_EP, LOCAL_EP, 0x1234, 9, &[0xab; 56]).build();
    let run = world.run(&from_peer(VNI).build(&inner));
    run.expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(run.output[..6], LOCAL_MAC.0);
    assert_eq!(run.output[6..], inner[6..]);
}

#[test]
fn source_host_is_learned_from_the_option_not_the_outer_source() {
    // Bounced traffic: the outer source is a bouncer, the option names the sender's host.
    let world = World::bouncer("transit-learn-bounced");
    let mut tunnel = Tunnel::new(BOUNCERS[2], SELF, VNI).macs(host_mac(BOUNCERS[2]), SELF_MAC);
    tunnel.options = vec![GeneveOption::source_host(PEER)];
    world
        .run(&tunnel.build(&inner_udp(SENDER_EP, LOCAL_EP)))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    let maps = world.instance.dataplane.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), Some(PEER));

    // The sender moved to another host, which now sends for it: the learned entry follows.
    let mut tunnel = Tunnel::new(EP_HOST, SELF, VNI).macs(host_mac(EP_HOST), SELF_MAC);
    tunnel.options = vec![GeneveOption::source_host(EP_HOST)];
    world
        .run(&tunnel.build(&inner_udp(SENDER_EP, LOCAL_EP)))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    let maps = world.instance.dataplane.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), Some(EP_HOST));
}

#[test]
fn nothing_learned_without_an_option_or_from_an_unknown_host() {
    let world = World::bouncer("transit-learn-none");
    // No option at all: delivered, nothing learned.
    let tunnel = from_peer(VNI).options(vec![]);
    world
        .run(&tunnel.build(&inner_udp(SENDER_EP, LOCAL_EP)))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    // An option naming a host nobody knows cannot point traffic anywhere.
    let tunnel = from_peer(VNI).options(vec![GeneveOption::source_host(STRANGER)]);
    world
        .run(&tunnel.build(&inner_udp(Ipv4Addr::new(10, 0, 0, 9), LOCAL_EP)))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    // An option naming this host itself is not learned either.
    let tunnel = from_peer(VNI).options(vec![GeneveOption::source_host(SELF)]);
    world
        .run(&tunnel.build(&inner_udp(Ipv4Addr::new(10, 0, 0, 10), LOCAL_EP)))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    let maps = world.instance.dataplane.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), None);
    assert_eq!(
        maps.learned_host(VNI, Ipv4Addr::new(10, 0, 0, 9)).unwrap(),
        None
    );
    assert_eq!(
        maps.learned_host(VNI, Ipv4Addr::new(10, 0, 0, 10)).unwrap(),
        None
    );
}

#[test]
fn bypass_decap_endpoint_gets_the_tunnel_packet_unchanged() {
    let mut world = World::bouncer("transit-bypass");
    let function_ep = Ipv4Addr::new(10, 0, 0, 50);
    world.local_endpoint(
        VNI,
        function_ep,
        MacAddr([0x02, 0xfe, 0, 0, 0, 0x50]),
        9,
        true,
    );
    let frame = packet_to(VNI, function_ep);
    let run = world.run(&frame);
    run.expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL_BYPASS,
        Stage::OnXdpRedirect,
    );
    assert_eq!(
        run.output, frame,
        "bypass-decap: byte for byte the tunnel packet"
    );
    let maps = world.instance.dataplane.maps();
    let stats = maps.endpoint_stats(VNI, function_ep).unwrap().unwrap();
    assert_eq!((stats.rx_packets, stats.rx_bytes), (1, frame.len() as u64));
    // The source host is learned on this path too.
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), Some(PEER));
}

#[test]
fn same_inner_address_in_two_vpcs_reaches_two_endpoints() {
    let mut world = World::bouncer("transit-two-vpcs");
    let mac_b = MacAddr([0x02, 0xbb, 0, 0, 0, 0x03]);
    world.vpc(VNI_B, false, &DIVIDERS);
    world.network(VNI_B, true, &[SELF]);
    world.local_endpoint(VNI_B, LOCAL_EP, mac_b, LOCAL_IFINDEX + 1, false);

    let inner = inner_udp(SENDER_EP, LOCAL_EP);
    let a = world.run(&from_peer(VNI).build(&inner));
    a.expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(a.output[..6], LOCAL_MAC.0);
    let b = world.run(&from_peer(VNI_B).build(&inner));
    b.expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(b.output[..6], mac_b.0);
    assert_eq!(a.output[6..], b.output[6..]);

    let maps = world.instance.dataplane.maps();
    let stats_a = maps.endpoint_stats(VNI, LOCAL_EP).unwrap().unwrap();
    let stats_b = maps.endpoint_stats(VNI_B, LOCAL_EP).unwrap().unwrap();
    assert_eq!(stats_a.rx_packets, 1);
    assert_eq!(stats_b.rx_packets, 1);

    // And where VPC B's 10.0.0.3 lives elsewhere, the same address is bounced, not delivered.
    let mut world = World::bouncer("transit-two-vpcs-remote");
    world.vpc(VNI_B, false, &DIVIDERS);
    world.network(VNI_B, true, &[SELF]);
    world.remote_endpoint(VNI_B, LOCAL_EP, mac_b, EP_HOST);
    world.run(&from_peer(VNI).build(&inner)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    let run = world.run(&from_peer(VNI_B).build(&inner));
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    assert_eq!(parse_tunnel(&run.output).unwrap().dst_ip(), EP_HOST);
    assert_eq!(parse_tunnel(&run.output).unwrap().vni, VNI_B);
}

#[test]
fn options_of_other_classes_and_zero_length_options_are_skipped() {
    let world = World::bouncer("transit-options");
    let options = vec![
        GeneveOption::new(0x0104, 0x01, &[1, 2, 3, 4, 5, 6, 7, 8]), // someone else's
        GeneveOption::new(0xffff, 0x10, &[]),                       // zero length
        GeneveOption::new(OPT_CLASS_MIZAR, 0x01, &[]),              // ours, unknown, not critical
        GeneveOption::source_host(PEER),
        // Another class using our type number, naming another known host: not ours.
        GeneveOption::new(0x0222, 0x48, &EP_HOST.octets()),
        GeneveOption::new(0x0104, 0x7f, &[0; 124]), // the longest option there is
    ];
    let inner = inner_udp(SENDER_EP, LOCAL_EP);
    let run = world.run(&from_peer(VNI).options(options).build(&inner));
    run.expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(
        run.output[6..],
        inner[6..],
        "decapsulated past every option"
    );
    assert_eq!(
        world
            .instance
            .dataplane
            .maps()
            .learned_host(VNI, SENDER_EP)
            .unwrap(),
        Some(PEER)
    );
}

#[test]
fn unknown_critical_option_is_dropped() {
    let world = World::bouncer("transit-critical");
    for kind in [0x80u8, 0xc8, 0xff] {
        let options = vec![
            GeneveOption::source_host(PEER),
            GeneveOption::new(0x0104, kind, &[0; 4]),
        ];
        world
            .run(
                &from_peer(VNI)
                    .options(options)
                    .build(&inner_udp(SENDER_EP, LOCAL_EP)),
            )
            .expect_drop(abi::MZ_DROP_CRITICAL_OPTION);
    }
}

// ---------------------------------------------------------------------------------------------
// Step 3: bouncer.

/// Checks a forwarded packet: outer re-addressed from this host to `next`, TTL one less, valid
/// IPv4 checksum, UDP checksum zero, everything else as it came in.
fn check_forwarded(input: &[u8], output: &[u8], next: Ipv4Addr) -> ParsedTunnel {
    let before = parse_tunnel(input).unwrap();
    let after = parse_tunnel(output).unwrap();
    assert_eq!(output.len(), input.len(), "forwarding keeps the length");
    assert_eq!(
        after.eth.source, SELF_MAC.0,
        "outer source MAC is this host's"
    );
    assert_eq!(
        after.eth.destination,
        host_mac(next).0,
        "outer destination MAC"
    );
    assert_eq!(after.eth.ether_type, before.eth.ether_type);
    assert_eq!(after.src_ip(), SELF, "outer source IP is this host");
    assert_eq!(
        after.dst_ip(),
        next,
        "outer destination IP is the next host"
    );
    assert_eq!(after.ip.time_to_live, before.ip.time_to_live - 1, "TTL");
    assert!(
        after.ipv4_checksum_ok,
        "outer IPv4 checksum must be valid: {:02x?}",
        after.ip_header
    );
    assert_eq!(after.udp.checksum, 0, "outer UDP checksum zeroed");
    // Every other header byte as it was: IPv4 (but TTL, checksum, addresses), UDP ports and
    // length, and everything from Geneve on.
    let ihl = before.ip_header.len();
    let mut masked_in = before.ip_header.clone();
    let mut masked_out = after.ip_header.clone();
    for h in [&mut masked_in, &mut masked_out] {
        h[8] = 0;
        h[10..20].fill(0);
    }
    assert_eq!(masked_out, masked_in, "other IPv4 header fields");
    let udp = 14 + ihl;
    assert_eq!(
        output[udp..udp + 6],
        input[udp..udp + 6],
        "UDP ports, length"
    );
    assert_eq!(
        output[udp + 8..],
        input[udp + 8..],
        "Geneve, options, inner"
    );
    after
}

#[test]
fn bouncer_forwards_to_the_endpoints_host() {
    let world = World::bouncer("transit-bouncer");
    let mut tunnel = from_peer(VNI);
    tunnel.udp_checksum = true;
    let frame = tunnel.build(&inner_udp(SENDER_EP, REMOTE_EP));
    assert_ne!(parse_tunnel(&frame).unwrap().udp.checksum, 0);
    let run = world.run(&frame);
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    let out = check_forwarded(&frame, &run.output, EP_HOST);
    assert_eq!(out.ip.time_to_live, 63);
    assert_eq!(
        out.source_host(),
        Some(PEER),
        "the option still names the sender"
    );
    // A bouncer forwards; it does not learn (only endpoints hosted here have counters).
    let maps = world.instance.dataplane.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), None);
    assert_eq!(maps.endpoint_stats(VNI, REMOTE_EP).unwrap(), None);
}

#[test]
fn bouncer_checksum_is_right_for_many_headers() {
    // The incremental checksum update against a full recomputation, over TTLs, identifications
    // and addresses that exercise the carries.
    let mut world = World::bouncer("transit-checksum");
    let senders = [
        Ipv4Addr::new(192, 168, 0, 2),
        Ipv4Addr::new(255, 255, 255, 254),
        Ipv4Addr::new(1, 0, 0, 1),
        Ipv4Addr::new(172, 31, 255, 255),
    ];
    let next_hosts = [
        Ipv4Addr::new(192, 168, 0, 3),
        Ipv4Addr::new(0, 0, 0, 1),
        Ipv4Addr::new(255, 255, 0, 0),
    ];
    for host in senders.iter().chain(&next_hosts) {
        world.maps().set_host(*host, host_mac(*host)).unwrap();
    }
    let mut members = usual_members();
    members.extend(senders.map(|s| (s, MemberRoles::ENDPOINTS)));
    world.vpc_with_members(VNI, false, &DIVIDERS, members);
    for (i, next) in next_hosts.iter().enumerate() {
        let ep = Ipv4Addr::new(10, 0, 0, 100 + i as u8);
        world.remote_endpoint(VNI, ep, REMOTE_MAC, *next);
        for sender in senders {
            for ttl in [2u8, 3, 64, 128, 255] {
                for identification in [0u16, 1, 0x7fff, 0xffff] {
                    let mut tunnel = Tunnel::new(sender, SELF, VNI);
                    tunnel.ttl = ttl;
                    tunnel.identification = identification;
                    let frame = tunnel.build(&inner_udp(SENDER_EP, ep));
                    let run = world.run(&frame);
                    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
                    check_forwarded(&frame, &run.output, *next);
                }
            }
        }
    }
}

#[test]
fn forwarding_to_a_host_without_its_mac_cannot_be_configured() {
    // Next hops carry their host's MAC, resolved when the entry is written: an endpoint on an
    // unknown host is refused, and a host cannot be forgotten while something forwards to it.
    let mut world = World::bouncer("transit-no-mac");
    let unknown_host = Ipv4Addr::new(192, 168, 0, 200);
    let ep = Ipv4Addr::new(10, 0, 0, 60);
    let entry = EndpointEntry {
        mac: REMOTE_MAC,
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host: unknown_host,
        local_ifindex: None,
    };
    let err = world
        .maps()
        .set_endpoint(VNI, ep, &entry)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lives on host 192.168.0.200, which is not a known host"),
        "{err}"
    );
    assert_eq!(
        world.maps().endpoint(VNI, ep).unwrap(),
        None,
        "nothing written"
    );

    // Nor can a host something forwards to be forgotten.
    let err = world.maps().remove_host(EP_HOST).unwrap_err().to_string();
    assert!(
        err.contains("VPC 100: member 192.168.0.3 is not a known host"),
        "{err}"
    );
    world
        .run(&packet_to(VNI, REMOTE_EP))
        .expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
}

#[test]
fn a_new_mac_for_a_host_reaches_every_entry_that_forwards_to_it() {
    let mut world = World::bouncer("transit-new-mac");
    let new_mac = MacAddr([0x02, 0xab, 0xcd, 0, 0, 1]);
    world.maps().set_host(EP_HOST, new_mac).unwrap();
    let run = world.run(&packet_to(VNI, REMOTE_EP));
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    assert_eq!(&run.output[0..6], &new_mac.0);
}

#[test]
fn endpoint_of_this_host_that_is_not_attached_is_dropped() {
    let mut world = World::bouncer("transit-not-attached");
    let ep = Ipv4Addr::new(10, 0, 0, 61);
    world.remote_endpoint(VNI, ep, REMOTE_MAC, SELF);
    world
        .run(&packet_to(VNI, ep))
        .expect_drop(abi::MZ_DROP_UNKNOWN_ENDPOINT);
}

#[test]
fn unknown_endpoint_of_a_network_this_host_bounces_is_dropped() {
    let world = World::bouncer("transit-unknown-ep");
    world
        .run(&packet_to(VNI, Ipv4Addr::new(10, 0, 0, 200)))
        .expect_drop(abi::MZ_DROP_UNKNOWN_ENDPOINT);
}

// ---------------------------------------------------------------------------------------------
// Step 4: divider.

/// A divider of VPC VNI: it knows the network and its bouncers, not the endpoints.
fn divider(name: &str) -> World {
    let mut world = World::new(name);
    world.vpc(VNI, true, &[SELF]);
    world.network(VNI, false, &BOUNCERS);
    world
}

fn expected_bouncer(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Addr {
    BOUNCERS[flow_hash(ip_be(src), ip_be(dst)) as usize % BOUNCERS.len()]
}

#[test]
fn divider_spreads_flows_over_the_networks_bouncers() {
    let world = divider("transit-divider");
    let mut chosen = HashSet::new();
    for i in 2..66u8 {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, i), Ipv4Addr::new(10, 0, 0, 200 - i));
        let expected = expected_bouncer(src, dst);
        let frame = from_peer(VNI).build(&inner_udp(src, dst));
        let run = world.run(&frame);
        run.expect(XDP_TX, abi::MZ_DIVIDER_FORWARD, Stage::OnXdpTx);
        check_forwarded(&frame, &run.output, expected);
        chosen.insert(expected);

        // The same flow again: the same bouncer.
        let again = world.run(&frame);
        assert_eq!(again.output, run.output, "same flow, same bouncer");

        // The reverse direction: the same bouncer too.
        let reverse = from_peer(VNI).build(&inner_udp(dst, src));
        let run = world.run(&reverse);
        run.expect(XDP_TX, abi::MZ_DIVIDER_FORWARD, Stage::OnXdpTx);
        check_forwarded(&reverse, &run.output, expected);
    }
    assert_eq!(chosen.len(), BOUNCERS.len(), "64 flows use every bouncer");
}

#[test]
fn divider_uses_the_longest_matching_network() {
    let mut world = divider("transit-divider-lpm");
    // 10.0.0.128/25 has its own bouncer; the /24 keeps the others.
    world
        .maps()
        .set_network(
            VNI,
            Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 128), 25),
            &mizar::dataplane::NetworkEntry {
                this_host_bounces: false,
                gateway: GATEWAY,
                bouncers: vec![EP_HOST],
            },
        )
        .unwrap();
    let frame = from_peer(VNI).build(&inner_udp(SENDER_EP, Ipv4Addr::new(10, 0, 0, 130)));
    let run = world.run(&frame);
    run.expect(XDP_TX, abi::MZ_DIVIDER_FORWARD, Stage::OnXdpTx);
    check_forwarded(&frame, &run.output, EP_HOST);
    let dst = Ipv4Addr::new(10, 0, 0, 30);
    let frame = from_peer(VNI).build(&inner_udp(SENDER_EP, dst));
    let run = world.run(&frame);
    run.expect(XDP_TX, abi::MZ_DIVIDER_FORWARD, Stage::OnXdpTx);
    check_forwarded(&frame, &run.output, expected_bouncer(SENDER_EP, dst));
}

#[test]
fn known_endpoint_wins_over_the_network_on_a_divider() {
    // A divider that also knows the endpoint's host sends straight there (bouncer path).
    let mut world = divider("transit-divider-ep");
    world.remote_endpoint(VNI, REMOTE_EP, REMOTE_MAC, EP_HOST);
    let frame = packet_to(VNI, REMOTE_EP);
    let run = world.run(&frame);
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    check_forwarded(&frame, &run.output, EP_HOST);
}

#[test]
fn unknown_network_on_a_divider_is_dropped() {
    let world = divider("transit-unknown-net");
    world
        .run(&packet_to(VNI, Ipv4Addr::new(10, 9, 0, 4)))
        .expect_drop(abi::MZ_DROP_UNKNOWN_NETWORK);
}

#[test]
fn unknown_network_on_one_of_several_dividers_is_dropped_not_passed_on() {
    // Every divider of a VPC knows all its networks: one that does not know the network must
    // not hand the packet to another divider, whichever the flow hash would pick.
    let mut world = World::new("transit-unknown-net-peers");
    world.vpc(VNI, true, &[DIVIDERS[0], SELF, DIVIDERS[1]]);
    world.network(VNI, false, &BOUNCERS);
    for i in 1..33u8 {
        world
            .run(&from_peer(VNI).build(&inner_udp(SENDER_EP, Ipv4Addr::new(10, 9, i, 4))))
            .expect_drop(abi::MZ_DROP_UNKNOWN_NETWORK);
    }
}

#[test]
fn network_without_bouncers_is_dropped() {
    let mut world = World::new("transit-no-bouncer");
    world.vpc(VNI, true, &[SELF]);
    world.network(VNI, false, &[]);
    world
        .run(&packet_to(VNI, REMOTE_EP))
        .expect_drop(abi::MZ_DROP_NO_BOUNCER);
}

// ---------------------------------------------------------------------------------------------
// Step 5: on to a divider.

#[test]
fn unknown_network_on_a_non_divider_goes_to_a_divider() {
    let mut world = World::new("transit-to-divider");
    world.vpc(VNI, false, &DIVIDERS);
    let mut chosen = HashSet::new();
    for i in 2..34u8 {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, i), Ipv4Addr::new(10, 7, 0, i));
        let expected = DIVIDERS[flow_hash(ip_be(src), ip_be(dst)) as usize % DIVIDERS.len()];
        chosen.insert(expected);
        let frame = from_peer(VNI).build(&inner_udp(src, dst));
        let run = world.run(&frame);
        run.expect(XDP_TX, abi::MZ_TO_DIVIDER, Stage::OnXdpTx);
        check_forwarded(&frame, &run.output, expected);
        let reverse = from_peer(VNI).build(&inner_udp(dst, src));
        let run = world.run(&reverse);
        run.expect(XDP_TX, abi::MZ_TO_DIVIDER, Stage::OnXdpTx);
        check_forwarded(&reverse, &run.output, expected);
    }
    assert_eq!(chosen.len(), DIVIDERS.len(), "flows use both dividers");
}

#[test]
fn vpc_without_dividers_is_dropped() {
    let mut world = World::new("transit-no-divider");
    world.vpc(VNI, false, &[]);
    world
        .run(&packet_to(VNI, REMOTE_EP))
        .expect_drop(abi::MZ_DROP_NO_DIVIDER);
}

#[test]
fn unknown_vpc_is_dropped() {
    let world = World::bouncer("transit-unknown-vpc");
    world
        .run(&packet_to(999, LOCAL_EP))
        .expect_drop(abi::MZ_DROP_UNKNOWN_VPC);
    // The endpoint exists in VPC VNI only: the same address in an unknown VNI goes nowhere.
    world
        .run(&packet_to(VNI + 1, LOCAL_EP))
        .expect_drop(abi::MZ_DROP_UNKNOWN_VPC);
}

// ---------------------------------------------------------------------------------------------
// Admission and scaled endpoints.

#[test]
fn tunnel_from_an_unknown_underlay_address_is_dropped_whatever_its_vni() {
    let world = World::bouncer("transit-stranger");
    for vni in [VNI, 999] {
        for option_host in [STRANGER, PEER] {
            // Even an option naming a known host does not let a stranger in.
            let tunnel = Tunnel::new(STRANGER, SELF, vni)
                .options(vec![GeneveOption::source_host(option_host)]);
            for dst in [LOCAL_EP, REMOTE_EP] {
                world
                    .run(&tunnel.build(&inner_udp(SENDER_EP, dst)))
                    .expect_drop(abi::MZ_DROP_UNKNOWN_SOURCE_HOST);
            }
        }
    }
    let maps = world.instance.dataplane.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), None);
    assert_eq!(
        maps.endpoint_stats(VNI, LOCAL_EP)
            .unwrap()
            .unwrap()
            .rx_packets,
        0
    );
}

#[test]
fn removed_host_is_no_longer_admitted() {
    let mut world = World::bouncer("transit-removed-host");
    let frame = packet_to(VNI, LOCAL_EP);
    world
        .run(&frame)
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    // As `host del` does: the host goes, and with it its membership of the VPC.
    world
        .maps()
        .edit(|s| {
            s.hosts.remove(&PEER);
            s.vpcs.get_mut(&VNI).unwrap().members.remove(&PEER);
        })
        .unwrap();
    world
        .run(&frame)
        .expect_drop(abi::MZ_DROP_UNKNOWN_SOURCE_HOST);
}

#[test]
fn scaled_endpoint_goes_to_its_stage_and_drops_when_it_is_empty() {
    let mut world = World::bouncer("transit-scaled");
    let vip = Ipv4Addr::new(10, 0, 0, 80);
    world.endpoint(
        VNI,
        vip,
        EndpointEntry {
            mac: MacAddr([0x02, 0x5c, 0, 0, 0, 0x80]),
            kind: EndpointKind::Scaled,
            bypass_decap: false,
            host: SELF,
            local_ifindex: None,
        },
    );
    world.run(&packet_to(VNI, vip)).expect(
        XDP_DROP,
        abi::MZ_DROP_NO_SCALED_FUNCTION,
        Stage::OnXdpScaledEp,
    );
    // Scaled on another host too: the stage decides, not the bouncer path.
    let remote_vip = Ipv4Addr::new(10, 0, 0, 81);
    world.endpoint(
        VNI,
        remote_vip,
        EndpointEntry {
            mac: MacAddr([0x02, 0x5c, 0, 0, 0, 0x81]),
            kind: EndpointKind::Scaled,
            bypass_decap: false,
            host: EP_HOST,
            local_ifindex: None,
        },
    );
    world.run(&packet_to(VNI, remote_vip)).expect(
        XDP_DROP,
        abi::MZ_DROP_NO_SCALED_FUNCTION,
        Stage::OnXdpScaledEp,
    );
}

// ---------------------------------------------------------------------------------------------
// Counters over several packets.

#[test]
fn stage_and_reason_counters_add_up() {
    let mut world = World::bouncer("transit-stages");
    world.endpoint(
        VNI,
        Ipv4Addr::new(10, 0, 0, 80),
        EndpointEntry {
            mac: MacAddr([0x02, 0x5c, 0, 0, 0, 0x80]),
            kind: EndpointKind::Scaled,
            bypass_decap: false,
            host: SELF,
            local_ifindex: None,
        },
    );
    let packets: Vec<(Vec<u8>, Stage)> = vec![
        (packet_to(VNI, LOCAL_EP), Stage::OnXdpRedirect),
        (packet_to(VNI, LOCAL_EP), Stage::OnXdpRedirect),
        (packet_to(VNI, REMOTE_EP), Stage::OnXdpTx),
        (packet_to(VNI, Ipv4Addr::new(10, 5, 0, 1)), Stage::OnXdpTx), // to a divider
        (arp_request(host_mac(PEER), PEER, SELF), Stage::OnXdpPass),
        (packet_to(999, LOCAL_EP), Stage::OnXdpDrop),
        (
            packet_to(VNI, Ipv4Addr::new(10, 0, 0, 200)),
            Stage::OnXdpDrop,
        ),
        (
            packet_to(VNI, Ipv4Addr::new(10, 0, 0, 80)),
            Stage::OnXdpScaledEp,
        ),
    ];
    let before = world.counters();
    for (frame, _) in &packets {
        world.run(frame);
    }
    let delta = world.counters().since(&before);
    for stage in mizar::dataplane::STAGES {
        let (count, bytes) = packets
            .iter()
            .filter(|(_, s)| *s == stage)
            .fold((0, 0), |(n, b), (f, _)| (n + 1, b + f.len() as u64));
        assert_eq!(
            (delta.stage(stage).packets, delta.stage(stage).bytes),
            (count, bytes),
            "stage {}",
            stage.name()
        );
    }
    // One reason per packet, the empty scaled stage's drop included.
    let reasons: u64 = delta.nonzero_reasons().map(|(_, v)| v.packets).sum();
    assert_eq!(reasons, packets.len() as u64);
    assert_eq!(delta.packets(abi::MZ_DELIVER_LOCAL), 2);
    assert_eq!(delta.packets(abi::MZ_BOUNCER_FORWARD), 1);
    assert_eq!(delta.packets(abi::MZ_TO_DIVIDER), 1);
    assert_eq!(delta.packets(abi::MZ_PASS_NOT_IPV4), 1);
    assert_eq!(delta.packets(abi::MZ_DROP_UNKNOWN_VPC), 1);
    assert_eq!(delta.packets(abi::MZ_DROP_UNKNOWN_ENDPOINT), 1);
    assert_eq!(delta.packets(abi::MZ_SCALED_ENDPOINT), 0);
    assert_eq!(delta.packets(abi::MZ_DROP_NO_SCALED_FUNCTION), 1);
}

#[test]
fn flow_hash_in_rust_matches_the_kernel() {
    // Eight bouncers and many flows: a disagreement between mizar_ebpf::flow_hash and
    // mz_flow_hash shows as a packet sent to another bouncer than predicted.
    let mut world = World::new("transit-hash");
    let bouncers: Vec<Ipv4Addr> = (0..8).map(|i| Ipv4Addr::new(192, 168, 1, 10 + i)).collect();
    for b in &bouncers {
        world.maps().set_host(*b, host_mac(*b)).unwrap();
    }
    world.vpc(VNI, true, &[SELF]);
    world.network(VNI, false, &bouncers);
    for i in 0..200u32 {
        let src = Ipv4Addr::from(0x0a00_0000 | (i * 7919 % 254 + 1));
        let dst = Ipv4Addr::from(0x0a00_0000 | (i * 104_729 % 254 + 1));
        let frame = from_peer(VNI).build(&inner_udp(src, dst));
        let run = world.run(&frame);
        run.expect(XDP_TX, abi::MZ_DIVIDER_FORWARD, Stage::OnXdpTx);
        let expected = bouncers[flow_hash(ip_be(src), ip_be(dst)) as usize % bouncers.len()];
        assert_eq!(
            parse_tunnel(&run.output).unwrap().dst_ip(),
            expected,
            "flow {src} -> {dst}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Redirect targets, proven with transit attached: the decapsulated frame really arrives on the
// endpoint's interface (a tap device in a network namespace this test creates), not elsewhere.

mod live {
    use std::{
        fs::{File, OpenOptions},
        io::{ErrorKind, Read},
        os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    };

    use super::*;

    /// A tap device: what is sent (or XDP-redirected) to it is read from its file.
    pub struct Tap {
        file: File,
        pub name: String,
        pub ifindex: u32,
    }

    fn ifreq(name: &str) -> libc::ifreq {
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr
    }

    impl Tap {
        /// Creates the tap in the calling thread's network namespace and brings it up.
        pub fn new(name: &str) -> Self {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open("/dev/net/tun")
                .expect("open /dev/net/tun (the tun module must be available)");
            let mut ifr = ifreq(name);
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
            // SAFETY: TUNSETIFF reads and writes an ifreq, which outlives the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
            assert_eq!(
                rc,
                0,
                "TUNSETIFF {name}: {}",
                std::io::Error::last_os_error()
            );

            // SAFETY: plain socket(2); the descriptor is owned by the File below.
            let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            assert!(sock >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: sock is a fresh descriptor nobody else owns.
            let sock = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(sock) };
            let mut ifr = ifreq(name);
            // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq that outlives the calls.
            unsafe {
                assert_eq!(
                    libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr),
                    0,
                    "SIOCGIFFLAGS"
                );
                ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                assert_eq!(
                    libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr),
                    0,
                    "SIOCSIFFLAGS {name} up: {}",
                    std::io::Error::last_os_error()
                );
            }
            let cname = std::ffi::CString::new(name).unwrap();
            // SAFETY: a valid C string.
            let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
            assert_ne!(ifindex, 0, "ifindex of {name}");
            Self {
                file,
                name: name.to_owned(),
                ifindex,
            }
        }

        /// The IPv4 frames queued on the tap (the kernel's own IPv6 chatter is left out).
        pub fn ipv4_frames(&mut self) -> Vec<Vec<u8>> {
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match self.file.read(&mut buf) {
                    Ok(n) => {
                        if n >= 14 && buf[12..14] == [0x08, 0x00] {
                            frames.push(buf[..n].to_vec());
                        }
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => return frames,
                    Err(err) => panic!("read {}: {err}", self.name),
                }
            }
        }
    }

    /// Transit attached to one end of a veth pair in the calling thread's namespace, and a
    /// packet socket on the other end: a frame sent there arrives at transit as from the
    /// underlay, and its verdict is carried out. (XDP live-frame mode would do without the
    /// veth, but some kernels refuse it even to root.)
    fn underlay(world: &mut World) -> mizar::lab::FrameInjector {
        for args in [
            &[
                "link", "add", "mzt-ul0", "type", "veth", "peer", "name", "mzt-ul1",
            ][..],
            &["link", "set", "mzt-ul0", "up"],
            &["link", "set", "mzt-ul1", "up"],
        ] {
            let status = std::process::Command::new("ip").args(args).status();
            assert!(status.is_ok_and(|s| s.success()), "ip {args:?}");
        }
        world
            .instance
            .dataplane
            .attach_transit("mzt-ul0")
            .expect("attach transit to mzt-ul0");
        let cname = std::ffi::CString::new("mzt-ul1").unwrap();
        // SAFETY: a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        mizar::lab::FrameInjector::new(ifindex).expect("packet socket on mzt-ul1")
    }

    /// Sends `frame` to transit and gives the redirect a moment to land.
    fn run_live(injector: &mizar::lab::FrameInjector, frame: &[u8]) {
        injector
            .send(frame)
            .expect("send through the packet socket");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    /// Runs `f` on a thread of its own inside a fresh network namespace (gone when it ends).
    fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare(CLONE_NEWNET)");
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    #[test]
    fn redirects_reach_the_endpoints_interface_in_each_vpc() {
        let mut world = World::bouncer("transit-live");
        in_new_netns(|| {
            let mut tap_a = Tap::new("mzt-ep-a");
            let mut tap_b = Tap::new("mzt-ep-b");
            let mut tap_fn = Tap::new("mzt-fn");
            let mac_b = MacAddr([0x02, 0xbb, 0, 0, 0, 0x03]);
            let function_ep = Ipv4Addr::new(10, 0, 0, 50);
            // The same address in two VPCs, on two interfaces; and a bypass-decap function.
            world.local_endpoint(VNI, LOCAL_EP, LOCAL_MAC, tap_a.ifindex, false);
            world.vpc(VNI_B, false, &DIVIDERS);
            world.network(VNI_B, true, &[SELF]);
            world.local_endpoint(VNI_B, LOCAL_EP, mac_b, tap_b.ifindex, false);
            world.local_endpoint(
                VNI,
                function_ep,
                MacAddr([0x02, 0xfe, 0, 0, 0, 0x50]),
                tap_fn.ifindex,
                true,
            );
            let injector = underlay(&mut world);
            // Anything the kernel queued while the taps came up.
            for tap in [&mut tap_a, &mut tap_b, &mut tap_fn] {
                tap.ipv4_frames();
            }

            let inner = inner_udp(SENDER_EP, LOCAL_EP);
            run_live(&injector, &from_peer(VNI).build(&inner));
            let mut expected = inner.clone();
            expected[..6].copy_from_slice(&LOCAL_MAC.0);
            assert_eq!(
                tap_a.ipv4_frames(),
                vec![expected.clone()],
                "VPC A's endpoint"
            );
            assert!(
                tap_b.ipv4_frames().is_empty(),
                "nothing for VPC B's endpoint"
            );

            run_live(&injector, &from_peer(VNI_B).build(&inner));
            expected[..6].copy_from_slice(&mac_b.0);
            assert_eq!(tap_b.ipv4_frames(), vec![expected], "VPC B's endpoint");
            assert!(
                tap_a.ipv4_frames().is_empty(),
                "nothing more for VPC A's endpoint"
            );

            let tunnel = packet_to(VNI, function_ep);
            run_live(&injector, &tunnel);
            assert_eq!(
                tap_fn.ipv4_frames(),
                vec![tunnel],
                "bypass-decap: the tunnel packet"
            );
            assert!(tap_a.ipv4_frames().is_empty());
            assert!(tap_b.ipv4_frames().is_empty());
        });
        let counters = world.counters();
        assert_eq!(counters.packets(abi::MZ_DELIVER_LOCAL), 2);
        assert_eq!(counters.packets(abi::MZ_DELIVER_LOCAL_BYPASS), 1);
    }
}
