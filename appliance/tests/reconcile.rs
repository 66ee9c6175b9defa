//! Reconcile against the real maps: it writes exactly the desired state, only what differs,
//! in an order that never leaves a dangling reference, keeps counters of unchanged and updated
//! endpoints, forgets what was learned about endpoints that moved or went away, refuses invalid
//! states without touching the maps, and converges from whatever the maps hold.
//! Needs root and BPF (CI runs it as root); fails loudly without them.

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use std::net::Ipv4Addr;

use aya::maps::{HashMap, Map, MapData};
use fixture::*;
use mizar::{
    dataplane::{
        Changes, DesiredState, EndpointEntry, EndpointKind, HostConfig, Ipv4Net, MacAddr,
        MemberRoles, NetworkEntry, ReconcileReport, Stage, VpcEntry, plan_reconcile, reconcile,
    },
    packet::Tunnel,
};
use mizar_ebpf::{abi, ip_be, maps as names};

const NET_B: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 1, 0), 24);
/// A host only state B knows.
const NEW_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 31);
const VNI_C: u32 = 300;

fn this_host(mtu: u16) -> HostConfig {
    HostConfig {
        ip: SELF,
        mac: SELF_MAC,
        underlay_mtu: mtu,
        underlay_ifindex: 1,
    }
}

fn remote(mac_last: u8, host: Ipv4Addr) -> EndpointEntry {
    EndpointEntry {
        mac: MacAddr([0x02, 0xec, 0, 0, 0, mac_last]),
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host,
        local_ifindex: None,
    }
}

fn local(mac_last: u8, ifindex: u32) -> EndpointEntry {
    EndpointEntry {
        mac: MacAddr([0x02, 0xec, 0, 0, 0, mac_last]),
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host: SELF,
        local_ifindex: Some(ifindex),
    }
}

fn network(this_host_bounces: bool, gateway: Ipv4Addr, bouncers: &[Ipv4Addr]) -> NetworkEntry {
    NetworkEntry {
        this_host_bounces,
        gateway,
        bouncers: bouncers.to_vec(),
    }
}

fn vpc(this_host_divides: bool, dividers: &[Ipv4Addr]) -> VpcEntry {
    VpcEntry {
        this_host_divides,
        dividers: dividers.to_vec(),
        members: usual_members(),
    }
}

/// State A: this host bounces 10.0.0.0/24 of VPC VNI (divided by DIVIDERS) and hosts LOCAL_EP;
/// REMOTE_EP lives on EP_HOST, SENDER_EP on PEER. VPC VNI_B (same CIDR) has a network bounced
/// by BOUNCERS[0] and an endpoint with REMOTE_EP's address on EP_HOST.
fn state_a() -> DesiredState {
    let mut s = DesiredState {
        host: Some(this_host(1500)),
        ..DesiredState::default()
    };
    for host in [PEER, EP_HOST].into_iter().chain(BOUNCERS).chain(DIVIDERS) {
        s.hosts.insert(host, host_mac(host));
    }
    s.vpcs.insert(VNI, vpc(false, &DIVIDERS));
    s.vpcs.insert(VNI_B, vpc(false, &DIVIDERS[1..]));
    s.networks
        .insert((VNI, NET), network(true, GATEWAY, &[SELF]));
    s.networks
        .insert((VNI_B, NET), network(false, GATEWAY, &BOUNCERS[..1]));
    s.endpoints
        .insert((VNI, LOCAL_EP), local(0x03, LOCAL_IFINDEX));
    s.endpoints.insert((VNI, REMOTE_EP), remote(0x04, EP_HOST));
    s.endpoints.insert((VNI, SENDER_EP), remote(0x02, PEER));
    s.endpoints
        .insert((VNI_B, REMOTE_EP), remote(0x44, EP_HOST));
    s
}

/// State B: A with additions, changes and removals of every kind.
fn state_b() -> DesiredState {
    let mut s = state_a();
    // This host: a larger underlay MTU.
    s.host = Some(this_host(9000));
    // Hosts: one new, PEER with a new MAC, DIVIDERS[1] gone (only VNI_B used it).
    s.hosts.insert(NEW_HOST, host_mac(NEW_HOST));
    s.hosts.insert(PEER, MacAddr([0x02, 0xbb, 0, 0, 0, 2]));
    s.hosts.remove(&DIVIDERS[1]);
    // VPCs: VNI_C new, VNI divided here now (by DIVIDERS[0] and this host), VNI_B gone.
    s.vpcs.insert(VNI_C, vpc(false, &[NEW_HOST]));
    s.vpcs.insert(VNI, vpc(true, &[DIVIDERS[0], SELF]));
    s.vpcs.remove(&VNI_B);
    // Networks: 10.0.1.0/24 new, 10.0.0.0/24 bounced by a bouncer too, VNI_B's gone.
    s.networks.insert(
        (VNI, NET_B),
        network(false, Ipv4Addr::new(10, 0, 1, 1), &BOUNCERS[2..]),
    );
    s.networks
        .insert((VNI, NET), network(true, GATEWAY, &[SELF, BOUNCERS[1]]));
    s.networks.remove(&(VNI_B, NET));
    // Endpoints: one new (on the new host), REMOTE_EP with a new MAC, SENDER_EP and VNI_B's gone.
    s.endpoints
        .insert((VNI, Ipv4Addr::new(10, 0, 1, 5)), remote(0x05, NEW_HOST));
    s.endpoints.insert((VNI, REMOTE_EP), remote(0x40, EP_HOST));
    s.endpoints.remove(&(VNI, SENDER_EP));
    s.endpoints.remove(&(VNI_B, REMOTE_EP));
    s
}

fn changes(added: usize, changed: usize, removed: usize) -> Changes {
    Changes {
        added,
        changed,
        removed,
    }
}

/// Reconciles to `desired` and checks that the maps read back as exactly `desired` and that
/// a second pass has nothing to do.
fn reconcile_exactly(world: &mut World, desired: &DesiredState) -> ReconcileReport {
    let report = reconcile(world.maps(), desired).expect("reconcile");
    assert_eq!(
        &world.maps().read_state().unwrap(),
        desired,
        "after {report}"
    );
    let again = reconcile(world.maps(), desired).expect("second reconcile");
    assert!(
        again.is_noop(),
        "a second pass must change nothing: {again}"
    );
    report
}

#[test]
fn empty_to_a_to_a_to_b_writes_exactly_the_difference() {
    let mut world = World::unconfigured("rec-ab");
    assert_eq!(world.maps().read_state().unwrap(), DesiredState::default());
    assert!(
        reconcile(world.maps(), &DesiredState::default())
            .unwrap()
            .is_noop()
    );

    let a = state_a();
    assert_eq!(
        plan_reconcile(world.maps(), &a).unwrap().endpoints,
        changes(4, 0, 0),
        "a dry run says what would change"
    );
    assert_eq!(
        world.maps().read_state().unwrap(),
        DesiredState::default(),
        "and writes nothing"
    );
    let report = reconcile_exactly(&mut world, &a);
    assert_eq!(
        report,
        ReconcileReport {
            host_config: changes(1, 0, 0),
            hosts: changes(8, 0, 0),
            vpcs: changes(2, 0, 0),
            // The usual six members and the dividers: two of VNI, one of VNI_B.
            members: changes(15, 0, 0),
            networks: changes(2, 0, 0),
            endpoints: changes(4, 0, 0),
            repaired: 0,
            learned_forgotten: 0,
        }
    );
    assert_eq!(
        report.to_string(),
        "host config set; hosts: 8 added; VPCs: 2 added; VPC members: 15 added; networks: 2 added; \
         endpoints: 4 added"
    );

    let noop = reconcile(world.maps(), &a).unwrap();
    assert!(noop.is_noop());
    assert_eq!(noop.to_string(), "no change");

    let b = state_b();
    let report = reconcile_exactly(&mut world, &b);
    assert_eq!(
        report,
        ReconcileReport {
            host_config: changes(0, 1, 0),
            hosts: changes(1, 1, 1),
            vpcs: changes(1, 1, 1),
            // VNI: this host divides instead of DIVIDERS[1]; VNI_C's six and its divider in,
            // VNI_B's six and its divider gone.
            members: changes(8, 0, 8),
            networks: changes(1, 1, 1),
            // SENDER_EP, the only entry that forwards to PEER, goes away with it: PEER's new
            // MAC rewrites nothing else.
            endpoints: changes(1, 1, 2),
            repaired: 0,
            learned_forgotten: 0,
        },
        "{report}"
    );
    assert_eq!(
        report.to_string(),
        "host config changed; hosts: 1 added, 1 changed, 1 removed; VPCs: 1 added, 1 changed, \
         1 removed; VPC members: 8 added, 8 removed; networks: 1 added, 1 changed, 1 removed; endpoints: 1 added, 1 changed, \
         2 removed"
    );

    // The data plane follows: VNI_B is gone, VNI is divided here, the new network forwards.
    world
        .run(&packet_to(VNI_B, REMOTE_EP))
        .expect_drop(abi::MZ_DROP_UNKNOWN_VPC);
    world
        .run(&packet_to(VNI, Ipv4Addr::new(10, 0, 9, 9)))
        .expect_drop(abi::MZ_DROP_UNKNOWN_NETWORK);
    let run = world.run(&packet_to(VNI, Ipv4Addr::new(10, 0, 1, 5)));
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    assert_eq!(run.output[..6], host_mac(NEW_HOST).0);

    // And back: B → A restores A exactly.
    reconcile_exactly(&mut world, &a);
}

#[test]
fn a_state_written_through_set_functions_reads_back_and_needs_no_rewrite() {
    // The two writers agree on every encoding: what set_* wrote, reconcile finds matching.
    let mut world = World::bouncer("rec-set");
    let state = world.maps().read_state().unwrap();
    assert_eq!(state.host, Some(this_host(1500)));
    assert_eq!(state.vpcs[&VNI], vpc(false, &DIVIDERS));
    assert_eq!(state.networks[&(VNI, NET)], network(true, GATEWAY, &[SELF]));
    assert_eq!(
        state.endpoints[&(VNI, LOCAL_EP)].local_ifindex,
        Some(LOCAL_IFINDEX)
    );
    assert_eq!(state.endpoints[&(VNI, REMOTE_EP)].host, EP_HOST);
    let report = reconcile(world.maps(), &state).unwrap();
    assert!(report.is_noop(), "{report}");
}

#[test]
fn an_updated_local_endpoint_keeps_its_counter_slot_and_counters() {
    let mut world = World::unconfigured("rec-slot");
    let mut a = state_a();
    let other = Ipv4Addr::new(10, 0, 0, 7);
    a.endpoints.insert((VNI, other), local(0x07, 12));
    reconcile_exactly(&mut world, &a);
    let slot = |world: &mut World, ip| world.maps().endpoint(VNI, ip).unwrap().unwrap().stats_slot;
    let before = (slot(&mut world, LOCAL_EP), slot(&mut world, other));
    assert_ne!(before.0, before.1);

    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    let stats = |world: &mut World, ip| world.maps().endpoint_stats(VNI, ip).unwrap().unwrap();
    let counted = stats(&mut world, LOCAL_EP);
    assert_eq!(counted.rx_packets, 1);

    // New MAC, new veth, bypass-decap: the same endpoint, so the same slot and counters.
    let mut b = a.clone();
    let ep = b.endpoints.get_mut(&(VNI, LOCAL_EP)).unwrap();
    ep.mac = MacAddr([0x02, 0xec, 0, 0, 0, 0x33]);
    ep.local_ifindex = Some(LOCAL_IFINDEX + 100);
    ep.kind = EndpointKind::Function;
    ep.bypass_decap = true;
    let report = reconcile_exactly(&mut world, &b);
    assert_eq!(report.endpoints, changes(0, 1, 0), "{report}");
    assert_eq!(
        (slot(&mut world, LOCAL_EP), slot(&mut world, other)),
        before
    );
    assert_eq!(stats(&mut world, LOCAL_EP), counted, "counters kept");
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL_BYPASS,
        Stage::OnXdpRedirect,
    );
    assert_eq!(
        stats(&mut world, LOCAL_EP).rx_packets,
        2,
        "counting goes on in the same slot"
    );

    // Removed, and a newcomer takes the freed slot: it starts from zero.
    let mut c = b.clone();
    c.endpoints.remove(&(VNI, LOCAL_EP));
    let newcomer = Ipv4Addr::new(10, 0, 0, 8);
    c.endpoints
        .insert((VNI, newcomer), local(0x08, LOCAL_IFINDEX + 100));
    let report = reconcile_exactly(&mut world, &c);
    assert_eq!(report.endpoints, changes(1, 0, 1), "{report}");
    assert_eq!(slot(&mut world, newcomer), before.0, "the lowest free slot");
    assert_eq!(stats(&mut world, newcomer), Default::default());
    assert_eq!(world.maps().endpoint_stats(VNI, LOCAL_EP).unwrap(), None);
}

#[test]
fn a_new_host_mac_reaches_endpoints_networks_and_vpcs_that_forward_to_it() {
    let mut world = World::unconfigured("rec-mac");
    let mut a = state_a();
    // VNI: divided here, 10.0.0.0/24 bounced by BOUNCERS[0] alone; VNI_B: not divided here,
    // without networks, so its traffic goes to DIVIDERS[1].
    a.vpcs.insert(VNI, vpc(true, &[SELF]));
    a.networks
        .insert((VNI, NET), network(false, GATEWAY, &BOUNCERS[..1]));
    a.networks.remove(&(VNI_B, NET));
    a.endpoints.remove(&(VNI, LOCAL_EP));
    reconcile_exactly(&mut world, &a);

    let new_mac = |host: Ipv4Addr| {
        let mut mac = host_mac(host);
        mac.0[1] = 0xaa;
        mac
    };
    let mut b = a.clone();
    for host in [EP_HOST, BOUNCERS[0], DIVIDERS[1]] {
        b.hosts.insert(host, new_mac(host));
    }
    let report = reconcile_exactly(&mut world, &b);
    assert_eq!(report.hosts, changes(0, 3, 0), "{report}");
    // VNI_B (its divider), VNI's network (its bouncer), and the two endpoints on EP_HOST.
    assert_eq!(report.vpcs, changes(0, 1, 0), "{report}");
    assert_eq!(report.networks, changes(0, 1, 0), "{report}");
    assert_eq!(report.endpoints, changes(0, 2, 0), "{report}");

    let run = world.run(&packet_to(VNI, REMOTE_EP));
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    assert_eq!(run.output[..6], new_mac(EP_HOST).0, "endpoint's host");
    let run = world.run(&packet_to(VNI, Ipv4Addr::new(10, 0, 0, 99)));
    run.expect(XDP_TX, abi::MZ_DIVIDER_FORWARD, Stage::OnXdpTx);
    assert_eq!(run.output[..6], new_mac(BOUNCERS[0]).0, "network's bouncer");
    let run = world.run(&packet_to(VNI_B, Ipv4Addr::new(10, 0, 0, 99)));
    run.expect(XDP_TX, abi::MZ_TO_DIVIDER, Stage::OnXdpTx);
    assert_eq!(run.output[..6], new_mac(DIVIDERS[1]).0, "VPC's divider");
}

#[test]
fn a_vpc_goes_away_with_its_networks_endpoints_and_hosts_in_one_pass() {
    let mut world = World::unconfigured("rec-vpc");
    let mut a = state_a();
    // VNI_B has a host of its own: removing it is refused while anything forwards to it, so
    // this needs the endpoints, networks and VPC gone first.
    let own_host = Ipv4Addr::new(192, 168, 0, 40);
    a.hosts.insert(own_host, host_mac(own_host));
    a.vpcs.insert(VNI_B, vpc(false, &[own_host]));
    a.networks.insert(
        (VNI_B, NET_B),
        network(false, Ipv4Addr::new(10, 0, 1, 1), &[own_host]),
    );
    for i in 10..20 {
        a.endpoints
            .insert((VNI_B, Ipv4Addr::new(10, 0, 1, i)), remote(i, own_host));
    }
    reconcile_exactly(&mut world, &a);
    assert!(
        world.maps().remove_host(own_host).is_err(),
        "the host is in use while VNI_B exists"
    );

    let mut b = a.clone();
    b.vpcs.remove(&VNI_B);
    b.networks.retain(|(vni, _), _| *vni != VNI_B);
    b.endpoints.retain(|(vni, _), _| *vni != VNI_B);
    b.hosts.remove(&own_host);
    let report = reconcile_exactly(&mut world, &b);
    assert_eq!(report.vpcs, changes(0, 0, 1));
    assert_eq!(report.networks, changes(0, 0, 2));
    assert_eq!(report.endpoints, changes(0, 0, 11));
    assert_eq!(report.hosts, changes(0, 0, 1));
    // Nothing dangles: what the maps hold is a valid state on its own.
    world.maps().read_state().unwrap().validate().unwrap();
    // The removed host is no longer admitted.
    let from_gone = Tunnel::new(own_host, SELF, VNI).build(&inner_udp(SENDER_EP, REMOTE_EP));
    world
        .run(&from_gone)
        .expect_drop(abi::MZ_DROP_UNKNOWN_SOURCE_HOST);

    // Everything goes: the maps end up empty and this host unconfigured.
    let report = reconcile_exactly(&mut world, &DesiredState::default());
    assert_eq!(report.host_config, changes(0, 0, 1));
    world
        .run(&packet_to(VNI, REMOTE_EP))
        .expect_pass(abi::MZ_PASS_NOT_CONFIGURED);
}

#[test]
fn what_was_learned_about_moved_and_removed_endpoints_is_forgotten() {
    let mut world = World::unconfigured("rec-learned");
    let mut a = state_a();
    let gone = Ipv4Addr::new(10, 0, 0, 20);
    let unlisted = Ipv4Addr::new(10, 0, 0, 21);
    a.endpoints.insert((VNI, gone), remote(0x20, PEER));
    reconcile_exactly(&mut world, &a);

    // Traffic from PEER teaches this host where SENDER_EP, `gone` and `unlisted` (an endpoint
    // the state does not list) live.
    let from = |src: Ipv4Addr| from_peer(VNI).build(&inner_udp(src, LOCAL_EP));
    for src in [SENDER_EP, gone, unlisted] {
        world
            .run(&from(src))
            .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
        assert_eq!(world.maps().learned_host(VNI, src).unwrap(), Some(PEER));
    }

    // SENDER_EP moves to EP_HOST, `gone` goes away.
    let mut b = a.clone();
    b.endpoints.insert((VNI, SENDER_EP), remote(0x02, EP_HOST));
    b.endpoints.remove(&(VNI, gone));
    let report = reconcile_exactly(&mut world, &b);
    assert_eq!(report.learned_forgotten, 2, "{report}");
    assert!(
        report
            .to_string()
            .ends_with("2 learned locations forgotten"),
        "{report}"
    );
    let maps = world.maps();
    assert_eq!(maps.learned_host(VNI, SENDER_EP).unwrap(), None);
    assert_eq!(maps.learned_host(VNI, gone).unwrap(), None);
    assert_eq!(
        maps.learned_host(VNI, unlisted).unwrap(),
        Some(PEER),
        "not ours to forget"
    );

    // Forgotten in the per-CPU cache too: the same flow is learned again at once.
    world
        .run(&from(gone))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, Stage::OnXdpRedirect);
    assert_eq!(world.maps().learned_host(VNI, gone).unwrap(), Some(PEER));
}

#[test]
fn an_invalid_state_is_refused_before_any_write_and_a_valid_one_then_converges() {
    let mut world = World::unconfigured("rec-invalid");
    let a = state_a();
    reconcile_exactly(&mut world, &a);
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    let stats = world.maps().endpoint_stats(VNI, LOCAL_EP).unwrap();
    let raw_before = world.maps().endpoint(VNI, REMOTE_EP).unwrap();

    // B's valid changes plus one invalid entry each time. Reconcile validates the whole state
    // and plans every write before the first one, so a refused state leaves the maps exactly
    // as they were: A, with its counters.
    let unknown = Ipv4Addr::new(192, 168, 0, 250);
    let mut on_unknown_host = state_b();
    on_unknown_host
        .endpoints
        .insert((VNI, Ipv4Addr::new(10, 0, 0, 66)), remote(0x66, unknown));
    let mut vni_zero = state_b();
    vni_zero.vpcs.insert(0, VpcEntry::default());
    let mut two_on_one_veth = state_b();
    two_on_one_veth.endpoints.insert(
        (VNI, Ipv4Addr::new(10, 0, 0, 67)),
        local(0x67, LOCAL_IFINDEX),
    );
    for (bad, expected) in [
        (
            &on_unknown_host,
            "endpoint 10.0.0.66 of VNI 100 lives on host 192.168.0.250, which is not a known host",
        ),
        (&vni_zero, "VPC 0: VNI 0 is out of range: use 1 to 16777215"),
        (&two_on_one_veth, "both use veth ifindex 7"),
    ] {
        let err = reconcile(world.maps(), bad).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert_eq!(world.maps().read_state().unwrap(), a, "after: {err}");
        assert_eq!(world.maps().endpoint(VNI, REMOTE_EP).unwrap(), raw_before);
        assert_eq!(world.maps().endpoint_stats(VNI, LOCAL_EP).unwrap(), stats);
    }

    // The valid state converges from there.
    let report = reconcile_exactly(&mut world, &state_b());
    assert!(!report.is_noop());
    assert_eq!(world.maps().endpoint_stats(VNI, LOCAL_EP).unwrap(), stats);
}

/// Writes, straight into the pinned maps, an endpoint `intruder` of `vni` (a copy of the one
/// hosted on veth `ifindex`) and hands it that veth's registration: what no reconcile writes.
fn take_veth_over(world: &World, vni: u32, intruder: Ipv4Addr, ifindex: u32) {
    let pins = world.instance.dataplane.pins();
    let open = |name: &str| Map::from_map_data(MapData::from_pin(pins.map(name)).unwrap()).unwrap();
    let mut endpoints: HashMap<MapData, abi::mz_endpoint_key, abi::mz_endpoint> =
        open(names::ENDPOINTS).try_into().unwrap();
    let mut ifaces: HashMap<MapData, u32, abi::mz_local_iface> =
        open(names::LOCAL_IFACES).try_into().unwrap();
    let mut iface = ifaces.get(&ifindex, 0).unwrap();
    let mut entry = endpoints.get(&iface.endpoint, 0).unwrap();
    let key = abi::mz_endpoint_key {
        vni,
        ip_be: ip_be(intruder),
    };
    entry.key = key;
    entry.mac = [0x02, 0xec, 0, 0, 0, 0x77];
    endpoints.insert(key, entry, 0).unwrap();
    iface.endpoint = key;
    ifaces.insert(ifindex, iface, 0).unwrap();
}

#[test]
fn maps_left_half_written_or_drifted_converge() {
    // A write the kernel refuses midway stops reconcile where it is (it is not transactional
    // across maps); so does a crash. Here the maps hold part of B, written through the
    // loader's functions in reconcile's order, plus what no reconcile to A or B wrote: a host
    // neither has admitted as a member, and an endpoint neither has that took LOCAL_EP's veth
    // registration over (written straight into the kernel's maps, as a buggy writer could).
    // Reconcile to B finishes the job and puts the registration back.
    let mut world = World::unconfigured("rec-converge");
    reconcile_exactly(&mut world, &state_a());
    let b = state_b();
    let maps = world.maps();
    maps.set_host_config(b.host.as_ref().unwrap()).unwrap();
    for (ip, mac) in &b.hosts {
        maps.set_host(*ip, *mac).unwrap();
    }
    maps.set_vpc(VNI_C, &b.vpcs[&VNI_C]).unwrap();
    maps.set_host(STRANGER, host_mac(STRANGER)).unwrap();
    let mut admitted = b.vpcs[&VNI].clone();
    admitted.members.insert(STRANGER, MemberRoles::ENDPOINTS);
    maps.set_vpc(VNI, &admitted).unwrap();
    take_veth_over(&world, VNI, Ipv4Addr::new(10, 0, 0, 77), LOCAL_IFINDEX);
    let filter_hit =
        world.run(&Tunnel::new(STRANGER, SELF, VNI).build(&inner_udp(SENDER_EP, REMOTE_EP)));
    filter_hit.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);

    let report = reconcile(world.maps(), &b).unwrap();
    assert_eq!(world.maps().read_state().unwrap(), b, "{report}");
    assert_eq!(
        report.hosts.removed, 2,
        "DIVIDERS[1] and STRANGER: {report}"
    );
    assert_eq!(
        report.endpoints.removed, 3,
        "SENDER_EP, VNI_B's, the intruder: {report}"
    );
    assert_eq!(report.vpcs.added, 0, "VNI_C was there already: {report}");
    assert_eq!(report.repaired, 1, "LOCAL_EP's veth registration: {report}");
    // The intruder's veth registration was LOCAL_EP's: rewritten back to LOCAL_EP, not lost.
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    assert!(reconcile(world.maps(), &b).unwrap().is_noop());
    world
        .run(&Tunnel::new(STRANGER, SELF, VNI).build(&inner_udp(SENDER_EP, REMOTE_EP)))
        .expect_drop(abi::MZ_DROP_UNKNOWN_SOURCE_HOST);
}
