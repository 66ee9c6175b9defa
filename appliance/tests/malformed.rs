//! A table of malformed (and unusual but valid) packets for the Transit XDP program, run with
//! BPF_PROG_TEST_RUN: each has a defined verdict and a counted reason. For every row the reason
//! counter moves by exactly one packet, the verdict's stage by one, and no other counter moves;
//! a packet handed to the stack is unchanged, a delivered one is decapsulated exactly.
//! Needs root and BPF (CI runs it as root); fails loudly without them.

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use mizar::dataplane::Ipv4Net;
use std::{
    net::Ipv4Addr,
    panic::{AssertUnwindSafe, catch_unwind},
};

use fixture::*;
use mizar::{
    dataplane::{Counter, Stage},
    packet::{
        ETH_P_IPV6, GeneveOption, InnerFrame, Tunnel, arp_request, ipv4_checksum_ok, parse_tunnel,
        set_ipv4_checksum, truncate_consistently,
    },
};
use mizar_ebpf::abi;

/// One row: a frame and what the transit program must do with it.
struct Case {
    name: String,
    frame: Vec<u8>,
    verdict: u32,
    reason: Counter,
    /// For delivered rows: the exact frame the endpoint must receive.
    delivered: Option<Vec<u8>>,
}

fn stage_of(verdict: u32) -> Stage {
    match verdict {
        XDP_PASS => Stage::OnXdpPass,
        XDP_DROP => Stage::OnXdpDrop,
        XDP_TX => Stage::OnXdpTx,
        XDP_REDIRECT => Stage::OnXdpRedirect,
        other => panic!("no stage for verdict {other}"),
    }
}

fn case(name: impl Into<String>, frame: Vec<u8>, verdict: u32, reason: Counter) -> Case {
    Case {
        name: name.into(),
        frame,
        verdict,
        reason,
        delivered: None,
    }
}

fn pass(name: impl Into<String>, frame: Vec<u8>, reason: Counter) -> Case {
    case(name, frame, XDP_PASS, reason)
}

fn drop(name: impl Into<String>, frame: Vec<u8>, reason: Counter) -> Case {
    case(name, frame, XDP_DROP, reason)
}

/// A row delivered to LOCAL_EP: the output must be `inner` with LOCAL_MAC as destination.
fn delivered(name: impl Into<String>, frame: Vec<u8>, inner: &[u8]) -> Case {
    let mut expected = inner.to_vec();
    expected[..6].copy_from_slice(&LOCAL_MAC.0);
    Case {
        delivered: Some(expected),
        ..case(name, frame, XDP_REDIRECT, abi::MZ_DELIVER_LOCAL)
    }
}

/// Runs every row; reports every failing row, not only the first.
fn run_table(world: &World, cases: Vec<Case>) {
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let run = world.run(&case.frame);
            run.expect(case.verdict, case.reason, stage_of(case.verdict));
            if case.verdict == XDP_PASS {
                assert_eq!(run.output, run.input, "a passed packet must be unchanged");
            }
            if let Some(expected) = &case.delivered {
                assert_eq!(&run.output, expected, "decapsulated frame");
            }
            if case.verdict == XDP_TX {
                let out = parse_tunnel(&run.output).expect("a forwarded tunnel packet");
                assert!(out.ipv4_checksum_ok, "outer IPv4 checksum after forwarding");
                assert_eq!(
                    out.ip.time_to_live,
                    parse_tunnel(&run.input).unwrap().ip.time_to_live - 1
                );
            }
        }));
        if let Err(panic) = result {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn inner() -> Vec<u8> {
    inner_udp(SENDER_EP, LOCAL_EP)
}

/// The valid packet every row bends: PEER → LOCAL_EP, delivered here.
fn base() -> Tunnel {
    from_peer(VNI)
}

fn with(f: impl FnOnce(&mut Tunnel)) -> Vec<u8> {
    let mut t = base();
    f(&mut t);
    t.build(&inner())
}

// Header offsets of the base packet (IHL 5, one 8-byte option).
const IP: usize = 14;
const UDP: usize = IP + 20;
const GENEVE: usize = UDP + 8;
const OPTIONS: usize = GENEVE + 8;
const INNER: usize = OPTIONS + 8;
const INNER_IP: usize = INNER + 14;
const INNER_L4: usize = INNER_IP + 20;

/// The reason a packet cut (consistently) to `len` bytes is dropped for.
fn truncation_reason(len: usize) -> Counter {
    match len {
        _ if len < UDP => abi::MZ_DROP_MALFORMED_IPV4,
        _ if len < GENEVE => abi::MZ_DROP_MALFORMED_UDP,
        _ if len < OPTIONS => abi::MZ_DROP_MALFORMED_GENEVE,
        _ if len < INNER => abi::MZ_DROP_MALFORMED_OPTION,
        _ => abi::MZ_DROP_MALFORMED_INNER,
    }
}

#[test]
fn truncated_at_every_length() {
    // Every cut from the shortest frame PROG_TEST_RUN takes (14 bytes) to one byte short, with the
    // IPv4 total length and UDP length following the cut wherever those headers are whole: each
    // layer in turn finds its header (or the inner packet) missing. Both on the local delivery
    // and on the bouncer path.
    let world = World::bouncer("malformed-truncated");
    let mut cases = Vec::new();
    for (path, dst) in [("local", LOCAL_EP), ("bouncer", REMOTE_EP)] {
        let inner = inner_udp(SENDER_EP, dst);
        let full = base().build(&inner);
        assert_eq!(full.len(), INNER + inner.len());
        for len in 14..full.len() {
            cases.push(drop(
                format!("{path}: cut to {len} of {} bytes", full.len()),
                truncate_consistently(&full, len),
                truncation_reason(len),
            ));
        }
    }
    run_table(&world, cases);
}

#[test]
fn shorter_than_the_ipv4_total_length() {
    // Cut without fixing the lengths: the IPv4 header claims bytes the frame does not have.
    let world = World::bouncer("malformed-short");
    let full = base().build(&inner());
    let cases = (UDP..full.len())
        .map(|len| {
            drop(
                format!("cut to {len} bytes, total length unchanged"),
                full[..len].to_vec(),
                abi::MZ_DROP_MALFORMED_IPV4,
            )
        })
        .collect();
    run_table(&world, cases);
}

#[test]
fn malformed_table() {
    let mut world = World::bouncer("malformed-table");
    // A VPC this host divides, for the divider forwarding rows.
    world.vpc(VNI_B, true, &[SELF]);
    world
        .maps()
        .set_network(
            VNI_B,
            Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24),
            &mizar::dataplane::NetworkEntry {
                this_host_bounces: false,
                gateway: GATEWAY,
                bouncers: BOUNCERS.to_vec(),
            },
        )
        .unwrap();
    let inner = inner();
    let full = base().build(&inner);
    let mut cases = vec![delivered("the valid base packet", full.clone(), &inner)];

    // --- outer Ethernet
    let mut vlan = full[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    vlan.extend_from_slice(&full[12..]);
    cases.push(pass("VLAN-tagged (802.1Q)", vlan, abi::MZ_PASS_NOT_IPV4));
    let mut qinq = full[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x01, 0x81, 0x00, 0x00, 0x64]);
    qinq.extend_from_slice(&full[12..]);
    cases.push(pass("double-tagged (802.1ad)", qinq, abi::MZ_PASS_NOT_IPV4));
    let ipv6 = etherparse::PacketBuilder::ethernet2(host_mac(PEER).0, SELF_MAC.0)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(50000, 6081);
    let mut ipv6_frame = Vec::new();
    ipv6.write(&mut ipv6_frame, &full[GENEVE..]).unwrap();
    assert_eq!(ipv6_frame[12..14], ETH_P_IPV6.to_be_bytes());
    cases.push(pass(
        "IPv6 outer, Geneve inside",
        ipv6_frame,
        abi::MZ_PASS_NOT_IPV4,
    ));
    cases.push(pass(
        "ARP",
        arp_request(host_mac(PEER), PEER, SELF),
        abi::MZ_PASS_NOT_IPV4,
    ));
    cases.push(pass(
        "Ethernet header only, not IPv4",
        with(|t| t.ether_type = 0x88cc)[..14].to_vec(),
        abi::MZ_PASS_NOT_IPV4,
    ));

    // --- outer IPv4 header
    for ihl in 0..5 {
        cases.push(drop(
            format!("IHL {ihl}"),
            with(|t| t.ihl_override = Some(ihl)),
            abi::MZ_DROP_MALFORMED_IPV4,
        ));
    }
    for words in [1usize, 4, 10] {
        // NOPs then End of Options: IHL 6, 9 and 15 (the largest there is).
        let mut options = vec![0x01; words * 4 - 1];
        options.push(0x00);
        let frame = with(|t| t.ip_options = options.clone());
        assert_eq!(frame[IP] & 0x0f, 5 + words as u8);
        cases.push(delivered(
            format!("IHL {} with IPv4 options: delivered", 5 + words),
            frame,
            &inner,
        ));
        let mut t = base();
        t.ip_options = options;
        cases.push(case(
            format!("IHL {} with IPv4 options: bounced", 5 + words),
            t.build(&inner_udp(SENDER_EP, REMOTE_EP)),
            XDP_TX,
            abi::MZ_BOUNCER_FORWARD,
        ));
    }
    let mut version6 = full.clone();
    version6[IP] = 0x65;
    set_ipv4_checksum(&mut version6[IP..UDP]);
    cases.push(drop(
        "IP version 6 in an IPv4 EtherType",
        version6,
        abi::MZ_DROP_MALFORMED_IPV4,
    ));
    cases.push(drop(
        "total length one past the frame",
        with(|t| t.total_len_override = Some((full.len() - IP + 1) as u16)),
        abi::MZ_DROP_MALFORMED_IPV4,
    ));
    cases.push(drop(
        "total length shorter than the header",
        with(|t| t.total_len_override = Some(19)),
        abi::MZ_DROP_MALFORMED_IPV4,
    ));
    cases.push(drop(
        "total length shorter than the 60-byte header IHL 15 claims",
        with(|t| {
            t.ihl_override = Some(15);
            t.total_len_override = Some(40);
        }),
        abi::MZ_DROP_MALFORMED_IPV4,
    ));

    // --- fragments: a first fragment shows it is Geneve, and nothing reassembles tunnels (we
    // send them with DF), so it is dropped and counted; later fragments carry no UDP header to
    // tell, and go to the stack (it has no Geneve device, so nothing leaks)
    cases.push(drop(
        "first fragment (MF)",
        with(|t| {
            t.dont_fragment = false;
            t.more_fragments = true;
        }),
        abi::MZ_DROP_OUTER_FRAGMENT,
    ));
    cases.push(drop(
        "first fragment (MF) from an unknown host: the source is checked first",
        with(|t| {
            t.src_ip = STRANGER;
            t.dont_fragment = false;
            t.more_fragments = true;
        }),
        abi::MZ_DROP_UNKNOWN_SOURCE_HOST,
    ));
    for offset in [1u16, 185, 0x1fff] {
        cases.push(pass(
            format!("last fragment (offset {offset})"),
            with(|t| {
                t.dont_fragment = false;
                t.fragment_offset = offset;
            }),
            abi::MZ_PASS_IP_FRAGMENT,
        ));
    }
    cases.push(pass(
        "middle fragment (MF and offset)",
        with(|t| {
            t.dont_fragment = false;
            t.more_fragments = true;
            t.fragment_offset = 185;
        }),
        abi::MZ_PASS_IP_FRAGMENT,
    ));
    cases.push(delivered(
        "DF without MF or offset: not a fragment",
        with(|t| t.dont_fragment = true),
        &inner,
    ));
    cases.push(delivered(
        "neither DF nor MF: not a fragment",
        with(|t| t.dont_fragment = false),
        &inner,
    ));

    // --- outer TTL: only forwarding decrements it
    for ttl in [0u8, 1] {
        let mut t = base();
        t.ttl = ttl;
        cases.push(drop(
            format!("TTL {ttl} on the bouncer path"),
            t.build(&inner_udp(SENDER_EP, REMOTE_EP)),
            abi::MZ_DROP_TTL_EXPIRED,
        ));
        cases.push(drop(
            format!("TTL {ttl} on the path to a divider"),
            t.build(&inner_udp(SENDER_EP, Ipv4Addr::new(10, 5, 0, 1))),
            abi::MZ_DROP_TTL_EXPIRED,
        ));
        let mut t = from_peer(VNI_B);
        t.ttl = ttl;
        cases.push(drop(
            format!("TTL {ttl} on the divider path"),
            t.build(&inner_udp(SENDER_EP, REMOTE_EP)),
            abi::MZ_DROP_TTL_EXPIRED,
        ));
        cases.push(delivered(
            format!("TTL {ttl} on local delivery: the outer header is stripped, not routed"),
            with(|t| t.ttl = ttl),
            &inner,
        ));
    }
    let mut t = base();
    t.ttl = 2;
    cases.push(case(
        "TTL 2 on the bouncer path: forwarded with TTL 1",
        t.build(&inner_udp(SENDER_EP, REMOTE_EP)),
        XDP_TX,
        abi::MZ_BOUNCER_FORWARD,
    ));
    let mut t = from_peer(VNI_B);
    t.ttl = 2;
    cases.push(case(
        "TTL 2 on the divider path: forwarded with TTL 1",
        t.build(&inner_udp(SENDER_EP, REMOTE_EP)),
        XDP_TX,
        abi::MZ_DIVIDER_FORWARD,
    ));

    // --- UDP
    let udp_len = (full.len() - UDP) as u16;
    for (what, len) in [
        ("one more than the datagram", udp_len + 1),
        ("one less than the datagram", udp_len - 1),
        ("far past the packet", 0xffff),
        ("header only", 8),
        ("zero", 0),
    ] {
        cases.push(drop(
            format!("UDP length {len} ({what})"),
            with(|t| t.udp_len_override = Some(len)),
            abi::MZ_DROP_MALFORMED_UDP,
        ));
    }
    cases.push(delivered(
        "outer UDP checksum set: accepted",
        with(|t| t.udp_checksum = true),
        &inner,
    ));

    // --- lengths: the Geneve packet is the UDP datagram, not whatever follows it in the frame
    let mut padded = full.clone();
    padded.extend_from_slice(&[0; 6]);
    let mut padded_inner = inner.clone();
    padded_inner.extend_from_slice(&[0; 6]);
    cases.push(delivered(
        "bytes after the IP packet (Ethernet padding): delivered as they are",
        padded,
        &padded_inner,
    ));
    for (what, end, reason) in [
        (
            "the Geneve header",
            GENEVE + 4,
            abi::MZ_DROP_MALFORMED_GENEVE,
        ),
        (
            "the Geneve header (datagram empty)",
            GENEVE,
            abi::MZ_DROP_MALFORMED_GENEVE,
        ),
        ("the options", OPTIONS + 4, abi::MZ_DROP_MALFORMED_OPTION),
        (
            "the inner Ethernet header",
            INNER + 6,
            abi::MZ_DROP_MALFORMED_INNER,
        ),
        (
            "the inner IPv4 header",
            INNER_IP + 10,
            abi::MZ_DROP_MALFORMED_INNER,
        ),
        (
            "the inner IPv4 payload",
            INNER_L4 + 4,
            abi::MZ_DROP_MALFORMED_INNER,
        ),
    ] {
        // IPv4 and UDP lengths end the datagram at `end`; the rest of the packet follows anyway.
        let mut frame = truncate_consistently(&full, end);
        frame.extend_from_slice(&full[end..]);
        cases.push(drop(
            format!("UDP datagram ends inside {what}, the bytes follow it"),
            frame,
            reason,
        ));
    }
    let mut short_udp = truncate_consistently(&full, UDP + 4);
    short_udp.extend_from_slice(&full[UDP + 4..]);
    short_udp[UDP + 4..UDP + 6].copy_from_slice(&4u16.to_be_bytes());
    cases.push(drop(
        "IPv4 payload and UDP length 4: shorter than a UDP header",
        short_udp,
        abi::MZ_DROP_MALFORMED_UDP,
    ));

    // --- Geneve header
    // RFC 8926 3.4: a packet of an unknown version must be dropped.
    for version in 1..4 {
        cases.push(drop(
            format!("Geneve version {version}"),
            with(|t| t.geneve_version = version),
            abi::MZ_DROP_GENEVE_VERSION,
        ));
        cases.push(drop(
            format!("Geneve version {version} from an unknown host"),
            with(|t| {
                t.src_ip = STRANGER;
                t.geneve_version = version;
            }),
            abi::MZ_DROP_UNKNOWN_SOURCE_HOST,
        ));
    }
    for protocol in [0x0800u16, 0x86dd, 0x0000, 0x6559] {
        cases.push(pass(
            format!("Geneve protocol type {protocol:#06x}"),
            with(|t| t.protocol = protocol),
            abi::MZ_PASS_NOT_ETHERNET,
        ));
    }
    // A control packet is for the tunnel endpoint, never data for an endpoint.
    cases.push(drop(
        "Geneve O flag (control packet) to a local endpoint",
        with(|t| t.oam = true),
        abi::MZ_DROP_GENEVE_CONTROL,
    ));
    cases.push(drop(
        "Geneve O and C flags set",
        with(|t| {
            t.oam = true;
            t.critical = true;
        }),
        abi::MZ_DROP_GENEVE_CONTROL,
    ));
    cases.push(drop(
        "Geneve O flag from an unknown host",
        with(|t| {
            t.src_ip = STRANGER;
            t.oam = true;
        }),
        abi::MZ_DROP_UNKNOWN_SOURCE_HOST,
    ));
    cases.push(delivered(
        "Geneve C flag alone: still data to deliver",
        with(|t| t.critical = true),
        &inner,
    ));

    // --- Geneve options
    let mut long = GeneveOption::source_host(PEER);
    long.length_override = Some(2);
    cases.push(drop(
        "option length past the option area",
        with(|t| t.options = vec![long.clone()]),
        abi::MZ_DROP_MALFORMED_OPTION,
    ));
    let mut longest = GeneveOption::new(0x0104, 0x01, &[]);
    longest.length_override = Some(31);
    cases.push(drop(
        "option length past the option area and the packet",
        with(|t| {
            t.options = vec![GeneveOption::source_host(PEER), longest.clone()];
        }),
        abi::MZ_DROP_MALFORMED_OPTION,
    ));
    cases.push(drop(
        "option area (63 words) past the packet",
        with(|t| t.opt_len_override = Some(63)),
        abi::MZ_DROP_MALFORMED_OPTION,
    ));
    cases.push(drop(
        "option area cuts an option's data",
        with(|t| {
            t.options = vec![
                GeneveOption::new(0x0104, 0x01, &[0; 8]),
                GeneveOption::source_host(PEER),
            ];
            t.opt_len_override = Some(2);
        }),
        abi::MZ_DROP_MALFORMED_OPTION,
    ));
    let zero = |class: u16| GeneveOption::new(class, 0x01, &[]);
    cases.push(delivered(
        "zero-length options around ours",
        with(|t| {
            t.options = vec![
                zero(0x0104),
                zero(0xffff),
                GeneveOption::source_host(PEER),
                zero(0x0001),
            ]
        }),
        &inner,
    ));
    cases.push(delivered(
        "63 zero-length options: the whole option area",
        with(|t| t.options = vec![zero(0x0104); 63]),
        &inner,
    ));
    cases.push(delivered(
        "61 zero-length options, then ours: the last word of the area",
        with(|t| {
            t.options = vec![zero(0x0104); 61];
            t.options.push(GeneveOption::source_host(PEER));
        }),
        &inner,
    ));
    cases.push(delivered(
        "no options at all",
        with(|t| t.options = vec![]),
        &inner,
    ));
    for kind in [0x80u8, 0x81, 0xc8, 0xff] {
        cases.push(drop(
            format!("unknown critical option (type {kind:#04x})"),
            with(|t| {
                t.options = vec![
                    GeneveOption::source_host(PEER),
                    GeneveOption::new(0x0104, kind, &[1, 2, 3, 4]),
                ]
            }),
            abi::MZ_DROP_CRITICAL_OPTION,
        ));
    }
    cases.push(drop(
        "our class, unknown critical type",
        with(|t| t.options = vec![GeneveOption::new(0x0111, 0x80 | 0x48, &[192, 168, 0, 2])]),
        abi::MZ_DROP_CRITICAL_OPTION,
    ));
    cases.push(delivered(
        "source-host option with the wrong length: skipped as an unknown option",
        with(|t| {
            t.options = vec![GeneveOption::new(
                0x0111,
                0x48,
                &[192, 168, 0, 2, 0, 0, 0, 0],
            )]
        }),
        &inner,
    ));

    // --- inner frame
    let arp_inner = arp_request(REMOTE_MAC, SENDER_EP, LOCAL_EP);
    cases.push(drop(
        "inner ARP",
        base().build(&arp_inner),
        abi::MZ_DROP_INNER_NOT_IPV4,
    ));
    let mut inner_v6 = inner.clone();
    inner_v6[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    cases.push(drop(
        "inner IPv6 EtherType",
        base().build(&inner_v6),
        abi::MZ_DROP_INNER_NOT_IPV4,
    ));
    for ihl in [0u8, 4] {
        let mut bad = inner.clone();
        bad[14] = 0x40 | ihl;
        set_ipv4_checksum(&mut bad[14..34]);
        cases.push(drop(
            format!("inner IHL {ihl}"),
            base().build(&bad),
            abi::MZ_DROP_MALFORMED_INNER,
        ));
    }
    let mut bad = inner.clone();
    bad[14] = 0x65;
    cases.push(drop(
        "inner IP version 6 in an IPv4 EtherType",
        base().build(&bad),
        abi::MZ_DROP_MALFORMED_INNER,
    ));
    let icmp = InnerFrame::icmp_echo(SENDER_EP, LOCAL_EP, 1, 1, &[0x55; 1000]).build();
    cases.push(delivered(
        "large inner ICMP echo",
        base().build(&icmp),
        &icmp,
    ));

    run_table(&world, cases);
}

#[test]
fn table_rows_are_distinguishable() {
    // The table checks would be empty if the crafted rows were not what they claim: spot-check
    // a few of the knobs on the bytes.
    let f = with(|t| t.ihl_override = Some(4));
    assert_eq!(f[IP], 0x44);
    assert!(ipv4_checksum_ok(&f[IP..UDP]));
    let f = with(|t| t.geneve_version = 3);
    assert_eq!(f[GENEVE] >> 6, 3);
    let f = with(|t| t.udp_len_override = Some(9));
    assert_eq!(f[UDP + 4..UDP + 6], [0, 9]);
    let f = base().build(&inner());
    assert_eq!(f[INNER_IP] >> 4, 4);
    assert_eq!(f.len(), INNER_L4 + 8 + b"mizar transit test payload".len());
}
