//! End to end, in network namespaces: three hosts on a bridged underlay (A and B end hosts, C the
//! divider and bouncer), endpoints in their own namespaces behind veths, real ping and UDP
//! sockets between them, through the XDP programs only (the hosts have no Geneve device and no
//! routes into the VPC). The data plane's counters prove the path each packet took.
//!
//! ```text
//!              switch namespace: br0
//!        ┌───────────┼────────────┐
//!      ul0 hostA   ul0 hostB    ul0 hostC (divides VPCs 100 and 200, bounces their networks)
//!      │      │        │
//!  10.0.0.2 10.0.0.4  10.0.0.3 (VPC 100)
//!  (VPC 100)          10.0.0.3 (VPC 200: same address, another tenant)
//! ```
//!
//! The topology is a lab of the lab library (`mizar::lab`, as `mizar demo` builds them): the
//! switch-side underlay ports and the endpoints' interfaces run `mz_pass`, the endpoints send
//! with transmit checksum offload off.
//!
//! Needs root, BPF, iproute2 and ping; fails (never skips) without them. Every namespace, veth
//! and pin goes away when a test ends, passed or failed. To look at a live topology (bpftool,
//! tcpdump inside its namespaces), `MZ_E2E_PAUSE=<seconds>` holds it after setup.

mod common;

use mizar::dataplane::Ipv4Net;
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::mpsc,
    time::Duration,
};

use common::{
    TestInstance,
    netns::{NetNsExt, require_tools, unique_prefix},
};
use mizar::{
    dataplane::{
        AttachMode, Counter, Counters, EndpointEntry, EndpointKind, EndpointStats, HostConfig,
        MacAddr, MemberRoles, NetworkEntry, VpcEntry,
    },
    lab::{self as mzlab, NetNs, NsJoinHandle},
};
use mizar_ebpf::{COUNTER_INFO, abi};

const VPC: u32 = 100;
const OTHER_VPC: u32 = 200;
const VPCS: [u32; 2] = [VPC, OTHER_VPC];
const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
const NETWORK_LEN: u8 = 24;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The underlay lives only inside the test's namespaces.
const UNDERLAY: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 77, 0), 24);
const UNDERLAY_MTU: u16 = 1500;
/// Leaves room for the Geneve overhead within the underlay MTU.
const ENDPOINT_MTU: u16 = 1400;
const UDP_PORT: u16 = 9000;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

struct HostSpec {
    name: &'static str,
    ip: Ipv4Addr,
    mac: MacAddr,
}

const HOSTS: [HostSpec; 3] = [
    HostSpec {
        name: "hostA",
        ip: Ipv4Addr::new(192, 168, 77, 1),
        mac: MacAddr([0x02, 0xaa, 0, 0, 0, 1]),
    },
    HostSpec {
        name: "hostB",
        ip: Ipv4Addr::new(192, 168, 77, 2),
        mac: MacAddr([0x02, 0xaa, 0, 0, 0, 2]),
    },
    HostSpec {
        name: "hostC",
        ip: Ipv4Addr::new(192, 168, 77, 3),
        mac: MacAddr([0x02, 0xaa, 0, 0, 0, 3]),
    },
];

struct EndpointSpec {
    name: &'static str,
    vni: u32,
    ip: Ipv4Addr,
    host: usize,
}

/// Indices into `ENDPOINTS`.
const EP_A: usize = 0;
const EP_B: usize = 1;
const EP_A2: usize = 2;
const EP_OTHER_VPC: usize = 3;

const ENDPOINTS: [EndpointSpec; 4] = [
    EndpointSpec {
        name: "ep100a",
        vni: VPC,
        ip: Ipv4Addr::new(10, 0, 0, 2),
        host: A,
    },
    EndpointSpec {
        name: "ep100b",
        vni: VPC,
        ip: Ipv4Addr::new(10, 0, 0, 3),
        host: B,
    },
    EndpointSpec {
        name: "ep100a2",
        vni: VPC,
        ip: Ipv4Addr::new(10, 0, 0, 4),
        host: A,
    },
    // The same address as EP_B, in another VPC, on the same host.
    EndpointSpec {
        name: "ep200b",
        vni: OTHER_VPC,
        ip: Ipv4Addr::new(10, 0, 0, 3),
        host: B,
    },
];

impl EndpointSpec {
    /// The MAC inside the endpoint namespace.
    fn mac(&self) -> MacAddr {
        MacAddr([0x02, 0xee, 0, self.vni as u8, 0, self.ip.octets()[3]])
    }
}

struct Host {
    spec: &'static HostSpec,
    instance: TestInstance,
}

/// The whole topology; dropping it removes every pin and deletes every namespace (and so every
/// veth and the bridge), whether the test passed or not.
struct Lab {
    hosts: Vec<Host>,
    /// Indexed like `HOSTS` and `ENDPOINTS`.
    net: mzlab::Lab,
}

impl Lab {
    fn build() -> Self {
        common::require_root();
        require_tools(&[("ip", "iproute2"), ("ping", "iputils-ping")]);

        let spec = mzlab::LabSpec {
            underlay_mtu: UNDERLAY_MTU,
            endpoint_mtu: ENDPOINT_MTU,
            hosts: HOSTS
                .iter()
                .map(|h| mzlab::HostSpec::new(h.name, h.ip).with_mac(h.mac))
                .collect(),
            endpoints: ENDPOINTS
                .iter()
                .map(|ep| {
                    mzlab::EndpointSpec::new(
                        ep.name,
                        HOSTS[ep.host].name,
                        ep.vni,
                        Ipv4Net::new_assert(ep.ip, NETWORK_LEN),
                        ep.mac(),
                    )
                })
                .collect(),
            ..mzlab::LabSpec::new(unique_prefix(), UNDERLAY)
        };
        let net = mzlab::Lab::build(&spec).unwrap_or_else(|err| panic!("build the lab: {err}"));
        let hosts = HOSTS
            .iter()
            .map(|spec| Host {
                spec,
                instance: TestInstance::new(&format!("e2e-{}", spec.name)),
            })
            .collect();

        let mut lab = Self { hosts, net };
        lab.attach();
        lab.configure();
        if let Ok(secs) = std::env::var("MZ_E2E_PAUSE") {
            eprintln!("pausing {secs}s");
            std::thread::sleep(Duration::from_secs(secs.parse().unwrap()));
        }
        lab
    }

    fn ep_ns(&self, ep: usize) -> &NetNs {
        &self.net.endpoints()[ep].ns
    }

    fn attach(&mut self) {
        for (host, net) in self.hosts.iter_mut().zip(self.net.hosts()) {
            let _in_host = net.ns.enter().unwrap_or_else(|err| panic!("{err}"));
            let ifname = &net.underlay_ifname;
            let mode = host
                .instance
                .dataplane
                .attach_transit(ifname)
                .unwrap_or_else(|err| panic!("attach transit on {}: {err}", host.spec.name));
            report_mode("transit", host.spec.name, ifname, mode);
        }
        for ep in self.net.endpoints() {
            let host = &mut self.hosts[ep.host];
            let ifname = &ep.host_ifname;
            let _in_host = self.net.hosts()[ep.host]
                .ns
                .enter()
                .unwrap_or_else(|err| panic!("{err}"));
            let mode = host
                .instance
                .dataplane
                .attach_egress(ifname)
                .unwrap_or_else(|err| panic!("attach egress on {ifname}: {err}"));
            report_mode("egress", host.spec.name, ifname, mode);
        }
    }

    /// A and B know their own endpoints and send everything else to C, which divides both VPCs,
    /// bounces both networks and knows every endpoint.
    fn configure(&mut self) {
        let c_ip = HOSTS[C].ip;
        for h in 0..self.hosts.len() {
            let underlay_ifindex = self.net.hosts()[h].underlay_ifindex;
            let locals: Vec<(&EndpointSpec, u32)> = ENDPOINTS
                .iter()
                .zip(self.net.endpoints())
                .filter(|(spec, _)| spec.host == h)
                .map(|(spec, ep)| (spec, ep.host_ifindex))
                .collect();
            let host = &mut self.hosts[h];
            let spec = host.spec;
            let maps = host.instance.dataplane.maps_mut();
            maps.set_host_config(&HostConfig {
                ip: spec.ip,
                mac: spec.mac,
                underlay_mtu: UNDERLAY_MTU,
                underlay_ifindex,
            })
            .unwrap();
            for other in HOSTS.iter().filter(|o| o.ip != spec.ip) {
                maps.set_host(other.ip, other.mac).unwrap();
            }
            let is_c = h == C;
            for vni in VPCS {
                maps.set_vpc(
                    vni,
                    &VpcEntry {
                        this_host_divides: is_c,
                        dividers: vec![c_ip],
                        // C bounces; the hosts of the VPC's endpoints send for them.
                        members: ENDPOINTS
                            .iter()
                            .filter(|ep| ep.vni == vni)
                            .map(|ep| (HOSTS[ep.host].ip, MemberRoles::ENDPOINTS))
                            .chain([(c_ip, MemberRoles::BOUNCER)])
                            .filter(|(ip, _)| *ip != spec.ip)
                            .fold(BTreeMap::new(), |mut m, (ip, roles)| {
                                let e: &mut MemberRoles = m.entry(ip).or_default();
                                *e = e.union(roles);
                                m
                            }),
                    },
                )
                .unwrap();
                maps.set_network(
                    vni,
                    Ipv4Net::new_assert(NETWORK, NETWORK_LEN),
                    &NetworkEntry {
                        this_host_bounces: is_c,
                        gateway: GATEWAY,
                        bouncers: vec![c_ip],
                    },
                )
                .unwrap();
            }
            for (ep, ifindex) in &locals {
                maps.set_endpoint(ep.vni, ep.ip, &endpoint_entry(ep, Some(*ifindex)))
                    .unwrap();
            }
            if is_c {
                for ep in &ENDPOINTS {
                    maps.set_endpoint(ep.vni, ep.ip, &endpoint_entry(ep, None))
                        .unwrap();
                }
            }
        }
    }

    fn counters(&self) -> Vec<Counters> {
        self.hosts
            .iter()
            .map(|h| h.instance.dataplane.maps().counters().unwrap())
            .collect()
    }

    fn endpoint_stats(&self, ep: usize) -> EndpointStats {
        let spec = &ENDPOINTS[ep];
        self.hosts[spec.host]
            .instance
            .dataplane
            .maps()
            .endpoint_stats(spec.vni, spec.ip)
            .unwrap()
            .unwrap_or_else(|| panic!("no stats for endpoint {}", spec.name))
    }

    fn learned_host(&self, host: usize, vni: u32, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.hosts[host]
            .instance
            .dataplane
            .maps()
            .learned_host(vni, ip)
            .unwrap()
    }

    /// What every host counted since `before`, and the endpoints' own counters: attached to
    /// every failure, so a broken path shows where packets went.
    fn report(&self, before: &[Counters]) -> String {
        let mut out = String::new();
        for (host, (now, then)) in self.hosts.iter().zip(self.counters().iter().zip(before)) {
            out += &format!("  {} counted:", host.spec.name);
            let delta = now.since(then);
            let mut any = false;
            for (info, value) in delta.nonzero_reasons() {
                out += &format!(" {}={}", info.name, value.packets);
                any = true;
            }
            if !any {
                out += " nothing";
            }
            out += "\n";
        }
        for (i, spec) in ENDPOINTS.iter().enumerate() {
            let s = self.endpoint_stats(i);
            let ns = self.ep_ns(i);
            out += &format!(
                "  {} (VPC {}, {}): data-plane rx {} tx {}; eth0 rx {} tx {} rx_dropped {}; \
                 UDP checksum errors {}\n",
                spec.name,
                spec.vni,
                spec.ip,
                s.rx_packets,
                s.tx_packets,
                ns.link_stat("eth0", "rx_packets"),
                ns.link_stat("eth0", "tx_packets"),
                ns.link_stat("eth0", "rx_dropped"),
                ns.udp_checksum_errors(),
            );
        }
        out
    }

    /// Asserts exact counter deltas since `before`, as (host, counter, packets).
    fn expect_counts(&self, what: &str, before: &[Counters], expected: &[(usize, Counter, u64)]) {
        let now = self.counters();
        let mismatches: Vec<String> = expected
            .iter()
            .filter_map(|&(host, counter, want)| {
                let got = now[host].since(&before[host]).packets(counter);
                (got != want).then(|| {
                    format!(
                        "  {}: {} = {got}, expected {want}",
                        HOSTS[host].name,
                        counter_name(counter)
                    )
                })
            })
            .collect();
        assert!(
            mismatches.is_empty(),
            "{what}: the counters show another path:\n{}\nall of it:\n{}",
            mismatches.join("\n"),
            self.report(before)
        );
    }

    /// Runs ping from an endpoint; returns its output.
    fn run_ping(&self, from: usize, to: Ipv4Addr, count: u32, wait_s: u32) -> std::process::Output {
        let (count, wait, to) = (count.to_string(), wait_s.to_string(), to.to_string());
        self.ep_ns(from)
            .try_exec("ping", &["-n", "-c", &count, "-i", "0.2", "-W", &wait, &to])
    }

    /// Pings from an endpoint; panics with the ping output and the counters if any reply is lost.
    fn ping(&self, from: usize, to: Ipv4Addr, count: u32, before: &[Counters]) {
        let output = self.run_ping(from, to, count, 2);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains(&format!("{count} received")),
            "ping from {} to {to} failed:\n{text}{}\n{}",
            ENDPOINTS[from].name,
            String::from_utf8_lossy(&output.stderr),
            self.report(before)
        );
    }

    /// Pings that must all go unanswered.
    fn ping_unanswered(&self, from: usize, to: Ipv4Addr, count: u32, before: &[Counters]) {
        let output = self.run_ping(from, to, count, 1);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(" 0 received"),
            "{} reached {to}, which does not exist in its VPC:\n{text}\n{}",
            ENDPOINTS[from].name,
            self.report(before)
        );
    }

    /// Starts a UDP echo server on an endpoint (`expect` datagrams, then it stops) and returns
    /// once it listens. The thread yields how many datagrams it echoed.
    fn udp_echo_server(&self, ep: usize, expect: usize) -> NsJoinHandle<usize> {
        let addr = SocketAddrV4::new(ENDPOINTS[ep].ip, UDP_PORT);
        let (ready, listening) = mpsc::channel();
        let server = self.ep_ns(ep).spawn(move || {
            let socket = UdpSocket::bind(addr).unwrap_or_else(|err| panic!("bind {addr}: {err}"));
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            ready.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let mut echoed = 0;
            while echoed < expect {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    break; // timed out: the client has given up or nothing was meant to come
                };
                socket.send_to(&buf[..len], peer).unwrap();
                echoed += 1;
            }
            echoed
        });
        let server = server.unwrap_or_else(|err| panic!("{err}"));
        listening
            .recv_timeout(Duration::from_secs(5))
            .expect("UDP server did not start");
        server
    }

    /// Sends datagrams of `sizes` bytes from one endpoint's socket to a UDP echo server and
    /// checks each echo, byte for byte.
    fn udp_exchange(&self, from: usize, to: Ipv4Addr, sizes: &[usize], before: &[Counters]) {
        let spec = &ENDPOINTS[from];
        let _in_endpoint = self
            .ep_ns(from)
            .enter()
            .unwrap_or_else(|err| panic!("{err}"));
        let socket = UdpSocket::bind(SocketAddrV4::new(spec.ip, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let server = SocketAddrV4::new(to, UDP_PORT);
        let mut buf = [0u8; 2048];
        for (i, &size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
            socket.send_to(&payload, server).unwrap();
            match socket.recv_from(&mut buf) {
                Ok((len, peer)) => {
                    assert_eq!(peer, server.into(), "echo from the wrong address");
                    assert!(
                        buf[..len] == payload[..],
                        "datagram {i} ({size} bytes) came back altered"
                    );
                }
                Err(err) => panic!(
                    "no UDP echo from {to} for datagram {i} ({size} bytes) sent by {}: {err}\n{}",
                    spec.name,
                    self.report(before)
                ),
            }
        }
    }
}

fn endpoint_entry(ep: &EndpointSpec, local_ifindex: Option<u32>) -> EndpointEntry {
    EndpointEntry {
        mac: ep.mac(),
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host: HOSTS[ep.host].ip,
        local_ifindex,
    }
}

fn report_mode(program: &str, host: &str, ifname: &str, mode: AttachMode) {
    // veths take native XDP; generic would still forward, but say so in the test output.
    if mode != AttachMode::Native {
        eprintln!("note: {program} attached to {ifname} on {host} in {mode} mode");
    }
}

fn counter_name(counter: Counter) -> &'static str {
    COUNTER_INFO
        .iter()
        .find(|info| info.slot == counter)
        .map_or("?", |info| info.name)
}

/// Datagram sizes: tiny, ordinary, and the largest that fits the endpoint MTU (so the
/// encapsulated frame is full size on the underlay).
const UDP_SIZES: [usize; 4] = [1, 100, 1000, ENDPOINT_MTU as usize - 20 - 8];

#[test]
fn ping_and_udp_cross_hosts_through_the_bouncer_then_directly() {
    let lab = Lab::build();
    let a_ip = HOSTS[A].ip;
    let b_ip = HOSTS[B].ip;
    let to = ENDPOINTS[EP_B].ip;

    let before = lab.counters();
    lab.ping(EP_A, to, 3, &before);
    // The first request knows no better than the network's bouncer: A → C → B. B learns from
    // the source-host option where 10.0.0.2 lives and answers directly; A learns from that
    // answer, and the later requests go directly too.
    lab.expect_counts(
        "ping 10.0.0.2 → 10.0.0.3 (3 requests)",
        &before,
        &[
            (A, abi::MZ_EGRESS_TO_BOUNCER, 1),
            (C, abi::MZ_BOUNCER_FORWARD, 1),
            (B, abi::MZ_DELIVER_LOCAL, 3),
            (B, abi::MZ_EGRESS_TO_LEARNED_HOST, 3),
            (B, abi::MZ_EGRESS_TO_BOUNCER, 0),
            (A, abi::MZ_DELIVER_LOCAL, 3),
            (A, abi::MZ_EGRESS_TO_LEARNED_HOST, 2),
            (C, abi::MZ_DIVIDER_FORWARD, 0),
            (C, abi::MZ_TO_DIVIDER, 0),
        ],
    );
    assert_eq!(lab.learned_host(B, VPC, ENDPOINTS[EP_A].ip), Some(a_ip));
    assert_eq!(lab.learned_host(A, VPC, to), Some(b_ip));
    assert_eq!(
        lab.learned_host(C, VPC, to),
        None,
        "C bounces, it learns nothing"
    );
    let (a, b) = (lab.endpoint_stats(EP_A), lab.endpoint_stats(EP_B));
    assert_eq!((a.tx_packets, a.rx_packets), (3, 3), "{a:?}");
    assert_eq!((b.tx_packets, b.rx_packets), (3, 3), "{b:?}");

    // Real sockets, both ways, with the sender's UDP checksum checked by the receiving stack.
    let before = lab.counters();
    let server = lab.udp_echo_server(EP_B, UDP_SIZES.len());
    lab.udp_exchange(EP_A, to, &UDP_SIZES, &before);
    assert_eq!(server.join().unwrap(), UDP_SIZES.len());
    let n = UDP_SIZES.len() as u64;
    lab.expect_counts(
        "UDP 10.0.0.2 ⇄ 10.0.0.3 after learning",
        &before,
        &[
            (A, abi::MZ_EGRESS_TO_LEARNED_HOST, n),
            (A, abi::MZ_EGRESS_TO_BOUNCER, 0),
            (C, abi::MZ_BOUNCER_FORWARD, 0),
            (B, abi::MZ_DELIVER_LOCAL, n),
            (B, abi::MZ_EGRESS_TO_LEARNED_HOST, n),
            (A, abi::MZ_DELIVER_LOCAL, n),
            (A, abi::MZ_EGRESS_DROP_MTU, 0),
            (B, abi::MZ_EGRESS_DROP_MTU, 0),
        ],
    );
}

#[test]
fn udp_first_packet_goes_through_the_bouncer() {
    // Same path as the ping, but the very first packet is a socket's datagram: its checksum is
    // the stack's, not ping's, and it must survive encapsulation, bouncing and decapsulation.
    let lab = Lab::build();
    let to = ENDPOINTS[EP_B].ip;
    let before = lab.counters();
    let server = lab.udp_echo_server(EP_B, UDP_SIZES.len());
    lab.udp_exchange(EP_A, to, &UDP_SIZES, &before);
    assert_eq!(server.join().unwrap(), UDP_SIZES.len());
    let n = UDP_SIZES.len() as u64;
    lab.expect_counts(
        "UDP 10.0.0.2 ⇄ 10.0.0.3 from cold",
        &before,
        &[
            (A, abi::MZ_EGRESS_TO_BOUNCER, 1),
            (C, abi::MZ_BOUNCER_FORWARD, 1),
            (A, abi::MZ_EGRESS_TO_LEARNED_HOST, n - 1),
            (B, abi::MZ_DELIVER_LOCAL, n),
            (B, abi::MZ_EGRESS_TO_LEARNED_HOST, n),
            (A, abi::MZ_DELIVER_LOCAL, n),
        ],
    );
}

#[test]
fn the_same_address_in_another_vpc_receives_nothing() {
    let lab = Lab::build();
    let shared_ip = ENDPOINTS[EP_B].ip;
    assert_eq!(shared_ip, ENDPOINTS[EP_OTHER_VPC].ip);

    // A socket on 10.0.0.3 in VPC 200 listens on the port VPC 100's traffic goes to.
    let before = lab.counters();
    let intruded = lab.udp_echo_server(EP_OTHER_VPC, 1);
    let server = lab.udp_echo_server(EP_B, UDP_SIZES.len());
    lab.ping(EP_A, shared_ip, 3, &before);
    lab.udp_exchange(EP_A, shared_ip, &UDP_SIZES, &before);
    assert_eq!(server.join().unwrap(), UDP_SIZES.len());
    assert_eq!(
        intruded.join().unwrap(),
        0,
        "VPC 200's 10.0.0.3 received VPC 100's datagrams"
    );
    let other = lab.endpoint_stats(EP_OTHER_VPC);
    assert_eq!(
        other.rx_packets,
        0,
        "VPC 200's 10.0.0.3 was delivered packets sent in VPC 100:\n{}",
        lab.report(&before)
    );
    let b = lab.endpoint_stats(EP_B);
    let n = 3 + UDP_SIZES.len() as u64;
    assert_eq!(b.rx_packets, n, "{}", lab.report(&before));

    // And the other way: from VPC 200, 10.0.0.2 does not exist (C bounces VPC 200's network and
    // knows no such endpoint there), though it does in VPC 100 on host A.
    let before = lab.counters();
    let a_rx = lab.endpoint_stats(EP_A).rx_packets;
    lab.ping_unanswered(EP_OTHER_VPC, ENDPOINTS[EP_A].ip, 2, &before);
    lab.expect_counts(
        "ping from VPC 200 to an address that exists only in VPC 100",
        &before,
        &[
            (B, abi::MZ_EGRESS_TO_BOUNCER, 2),
            (C, abi::MZ_DROP_UNKNOWN_ENDPOINT, 2),
            (C, abi::MZ_BOUNCER_FORWARD, 0),
            (A, abi::MZ_DELIVER_LOCAL, 0),
        ],
    );
    assert_eq!(lab.endpoint_stats(EP_A).rx_packets, a_rx);
    assert_eq!(lab.endpoint_stats(EP_OTHER_VPC).rx_packets, 0);
}

#[test]
fn endpoints_on_one_host_talk_without_the_underlay() {
    let lab = Lab::build();
    let to = ENDPOINTS[EP_A2].ip;
    let before = lab.counters();
    lab.ping(EP_A, to, 3, &before);
    let server = lab.udp_echo_server(EP_A2, UDP_SIZES.len());
    lab.udp_exchange(EP_A, to, &UDP_SIZES, &before);
    assert_eq!(server.join().unwrap(), UDP_SIZES.len());
    let n = 3 + UDP_SIZES.len() as u64;
    lab.expect_counts(
        "ping and UDP 10.0.0.2 ⇄ 10.0.0.4, both on host A",
        &before,
        &[
            (A, abi::MZ_EGRESS_LOCAL, 2 * n),
            (A, abi::MZ_EGRESS_TO_BOUNCER, 0),
            (A, abi::MZ_EGRESS_TO_LEARNED_HOST, 0),
            (A, abi::MZ_EGRESS_TO_HOST, 0),
            (A, abi::MZ_DELIVER_LOCAL, 0),
            (C, abi::MZ_BOUNCER_FORWARD, 0),
            (B, abi::MZ_DELIVER_LOCAL, 0),
        ],
    );
    let (a, a2) = (lab.endpoint_stats(EP_A), lab.endpoint_stats(EP_A2));
    assert_eq!((a.tx_packets, a.rx_packets), (n, n), "{a:?}");
    assert_eq!((a2.tx_packets, a2.rx_packets), (n, n), "{a2:?}");
}
