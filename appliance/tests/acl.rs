//! The acl function in the real kernel (BPF_PROG_TEST_RUN), placed at ON_XDP_REDIRECT
//! (ingress): rules allow and deny, the default decides the rest, replies of an allowed flow
//! pass on its tracked state, a "cut" change judges open flows again, two VPCs with the same
//! addresses keep their own rules and flows, and the compiled lookups decide as reading the
//! rules in order does. Needs root and BPF (CI runs it as root).

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use std::{collections::BTreeMap, net::Ipv4Addr};

use fixture::*;
use mizar::{
    dataplane::{AclAddrs, AclMaps, AclRule, AclVpc, Ipv4Net, acl_judge_in_order},
    packet::{InnerFrame, TcpFlags, truncate_consistently},
};
use mizar_ebpf::abi;

const INGRESS: u32 = abi::MZ_ACL_INGRESS;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// SENDER_EP is a local endpoint too (ifindex 9, both VPCs), so packets both ways between it
/// and LOCAL_EP reach ON_XDP_REDIRECT here.
fn world(name: &str) -> World {
    let mut world = World::two_vpcs_with_function(name, "acl");
    world.local_endpoint(VNI, SENDER_EP, MacAddr([2, 0xaa, 0, 0, 0, 2]), 9, false);
    world.local_endpoint(VNI_B, SENDER_EP, MacAddr([2, 0xbb, 0, 0, 0, 2]), 10, false);
    world
}

use mizar::packet::MacAddr;

fn configure(world: &World, acls: &[(u32, AclVpc)]) {
    let wanted: BTreeMap<u32, (String, AclVpc)> = acls
        .iter()
        .map(|(vni, acl)| (*vni, (format!("vpc{vni}"), acl.clone())))
        .collect();
    AclMaps::open(world.instance.dataplane.pins())
        .unwrap()
        .sync(&wanted)
        .unwrap();
}

fn host(ip: Ipv4Addr) -> AclAddrs {
    AclAddrs::Prefixes(vec![Ipv4Net::from(ip)])
}

fn rule(id: u32, allow: bool, src: AclAddrs, dst: AclAddrs, proto: u8, port: u16) -> AclRule {
    AclRule {
        id,
        direction: INGRESS,
        allow,
        src,
        dst,
        proto: Some(proto),
        ports: Some((port, port)),
    }
}

fn deny_by_default(rules: Vec<AclRule>) -> AclVpc {
    AclVpc {
        default_allow: [false, true],
        epoch: 0,
        rules,
    }
}

fn tcp(vni: u32, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: TcpFlags) -> Vec<u8> {
    from_peer(vni).build(&InnerFrame::tcp(src, dst, sport, dport, flags).build())
}

fn udp(vni: u32, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    from_peer(vni).build(&InnerFrame::udp(src, dst, sport, dport, b"acl").build())
}

fn drops(world: &World) -> [u64; 4] {
    let d = world.function_drops();
    [d[0], d[1], d[2], d[3]]
}

#[test]
fn rules_allow_and_deny_and_replies_pass_on_the_flow() {
    let world = world("acl-rules");
    configure(
        &world,
        &[
            (
                VNI,
                deny_by_default(vec![
                    rule(1, true, host(SENDER_EP), host(LOCAL_EP), TCP, 80),
                    rule(2, false, AclAddrs::Any, AclAddrs::Any, TCP, 22),
                ]),
            ),
            // VPC B: the same addresses, nothing allowed.
            (VNI_B, deny_by_default(vec![])),
        ],
    );
    let syn = tcp(VNI, SENDER_EP, LOCAL_EP, 40000, 80, TcpFlags::SYN);
    assert_eq!(world.run(&syn).verdict, XDP_REDIRECT, "allowed by rule 1");
    assert_eq!(
        world
            .run(&tcp(VNI, SENDER_EP, LOCAL_EP, 40000, 22, TcpFlags::SYN))
            .verdict,
        XDP_DROP,
        "denied by rule 2"
    );
    assert_eq!(
        world
            .run(&tcp(VNI, SENDER_EP, LOCAL_EP, 40000, 443, TcpFlags::SYN))
            .verdict,
        XDP_DROP,
        "denied by the default"
    );
    assert_eq!(drops(&world), [1, 1, 0, 0]);

    // The reply matches no rule, but belongs to the allowed flow.
    let reply = tcp(VNI, LOCAL_EP, SENDER_EP, 80, 40000, TcpFlags::SYN_ACK);
    assert_eq!(
        world.run(&reply).verdict,
        XDP_REDIRECT,
        "reply of an allowed flow"
    );
    assert_eq!(world.run(&syn).verdict, XDP_REDIRECT, "the flow goes on");
    // Another port back is another flow: denied.
    let stray = tcp(VNI, LOCAL_EP, SENDER_EP, 80, 40001, TcpFlags::ACK);
    assert_eq!(world.run(&stray).verdict, XDP_DROP);
    // The same reply in VPC B is not VPC A's flow.
    let reply_b = tcp(VNI_B, LOCAL_EP, SENDER_EP, 80, 40000, TcpFlags::SYN_ACK);
    assert_eq!(world.run(&reply_b).verdict, XDP_DROP, "flows are per VPC");
    assert_eq!(
        world
            .run(&tcp(VNI_B, SENDER_EP, LOCAL_EP, 40000, 80, TcpFlags::SYN))
            .verdict,
        XDP_DROP,
        "VPC B's rules, not A's"
    );

    // Rule 1 decided one new flow; rule 2 denied one packet.
    let hits = AclMaps::open(world.instance.dataplane.pins())
        .unwrap()
        .hits()
        .unwrap();
    assert_eq!((hits.get(&1), hits.get(&2)), (Some(&1), Some(&1)));

    // A VPC without an ACL is not filtered; removing A's ACL lets everything through.
    configure(&world, &[]);
    assert_eq!(
        world
            .run(&tcp(VNI, SENDER_EP, LOCAL_EP, 40000, 22, TcpFlags::SYN))
            .verdict,
        XDP_REDIRECT
    );
}

#[test]
fn a_cut_change_judges_open_flows_again_and_a_plain_one_does_not() {
    let world = world("acl-cut");
    let allow_80 = || rule(1, true, AclAddrs::Any, AclAddrs::Any, UDP, 80);
    configure(&world, &[(VNI, deny_by_default(vec![allow_80()]))]);
    let open = udp(VNI, SENDER_EP, LOCAL_EP, 5000, 80);
    assert_eq!(world.run(&open).verdict, XDP_REDIRECT);

    // Port 80 now denied, without a cut: the open flow goes on, a new one is denied.
    let denied = deny_by_default(vec![
        rule(3, false, AclAddrs::Any, AclAddrs::Any, UDP, 80),
        allow_80(),
    ]);
    configure(&world, &[(VNI, denied.clone())]);
    assert_eq!(
        world.run(&open).verdict,
        XDP_REDIRECT,
        "open flows keep going"
    );
    assert_eq!(
        world.run(&udp(VNI, SENDER_EP, LOCAL_EP, 5001, 80)).verdict,
        XDP_DROP
    );
    // With a cut (a new epoch) the open flow is judged again, both ways.
    configure(&world, &[(VNI, AclVpc { epoch: 1, ..denied })]);
    assert_eq!(
        world.run(&udp(VNI, LOCAL_EP, SENDER_EP, 80, 5000)).verdict,
        XDP_DROP
    );
    assert_eq!(drops(&world), [1, 0, 1, 0], "one by rule 3, one cut");
    assert_eq!(world.run(&open).verdict, XDP_DROP, "the flow is gone");
}

#[test]
fn a_truncated_transport_header_is_dropped_as_malformed() {
    let world = world("acl-malformed");
    configure(&world, &[(VNI, deny_by_default(vec![]))]);
    let inner = InnerFrame::tcp(SENDER_EP, LOCAL_EP, 40000, 80, TcpFlags::SYN).build();
    // Cut inside the TCP header, the inner IPv4 length kept consistent (transit accepts it).
    let cut = from_peer(VNI).build(&truncate_consistently(&inner, inner.len() - 12));
    assert_eq!(world.run(&cut).verdict, XDP_DROP);
    assert_eq!(drops(&world), [0, 0, 0, 1]);
}

/// Rules over CIDRs, groups and port ranges: the kernel decides every probe as reading the
/// rules in order does (each probe a new flow: its own source port).
#[test]
fn the_kernel_decides_as_first_match_does() {
    let world = world("acl-agree");
    let net = |s: &str| AclAddrs::Prefixes(vec![s.parse().unwrap()]);
    let group = AclAddrs::Prefixes(vec![Ipv4Net::from(SENDER_EP), Ipv4Net::from(LOCAL_EP)]);
    let r = |id, allow, src, dst, proto: Option<u8>, ports| AclRule {
        id,
        direction: INGRESS,
        allow,
        src,
        dst,
        proto,
        ports,
    };
    let acl = AclVpc {
        default_allow: [true, true],
        epoch: 0,
        rules: vec![
            r(
                1,
                false,
                net("10.0.0.0/30"),
                AclAddrs::Any,
                Some(UDP),
                Some((1000, 1999)),
            ),
            r(
                2,
                true,
                group.clone(),
                net("10.0.0.3/32"),
                Some(UDP),
                Some((1500, 1600)),
            ),
            r(3, false, AclAddrs::Any, group, Some(TCP), None),
            r(
                4,
                true,
                net("10.0.0.2/32"),
                AclAddrs::Any,
                Some(TCP),
                Some((80, 80)),
            ),
            r(
                5,
                false,
                AclAddrs::Any,
                net("10.0.0.0/24"),
                Some(UDP),
                Some((2000, 2999)),
            ),
        ],
    };
    configure(&world, &[(VNI, acl.clone())]);
    let mut sport = 10_000;
    let mut checked = 0;
    for (src, dst) in [(SENDER_EP, LOCAL_EP), (LOCAL_EP, SENDER_EP)] {
        for proto in [TCP, UDP] {
            for port in [
                80, 999, 1000, 1499, 1500, 1600, 1601, 1999, 2000, 2999, 3000,
            ] {
                sport += 1;
                let frame = if proto == TCP {
                    tcp(VNI, src, dst, sport, port, TcpFlags::SYN)
                } else {
                    udp(VNI, src, dst, sport, port)
                };
                let want = acl_judge_in_order(&acl, INGRESS, src, dst, proto, port);
                let got = world.run(&frame).verdict;
                let wanted = if want.allow { XDP_REDIRECT } else { XDP_DROP };
                assert_eq!(
                    got, wanted,
                    "{src} -> {dst} proto {proto} port {port}: {want:?}"
                );
                checked += 1;
            }
        }
    }
    println!("{checked} probes decided as first match");
}

#[test]
fn ten_thousand_rules_load_and_decide() {
    let world = world("acl-big");
    let mut rules: Vec<AclRule> = (0..10_000u32)
        .map(|i| {
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i);
            rule(i + 1, true, host(src), AclAddrs::Any, TCP, 443)
        })
        .collect();
    rules.push(rule(
        10_001,
        true,
        host(SENDER_EP),
        host(LOCAL_EP),
        TCP,
        8443,
    ));
    configure(&world, &[(VNI, deny_by_default(rules))]);
    assert_eq!(
        world
            .run(&tcp(VNI, SENDER_EP, LOCAL_EP, 1, 8443, TcpFlags::SYN))
            .verdict,
        XDP_REDIRECT
    );
    assert_eq!(
        world
            .run(&tcp(VNI, SENDER_EP, LOCAL_EP, 2, 443, TcpFlags::SYN))
            .verdict,
        XDP_DROP
    );
}
