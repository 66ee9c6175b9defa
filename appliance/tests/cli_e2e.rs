//! End to end through the real `mizar` binary: the demo's fabric (`mizar::demo`: four hosts on a
//! bridged underlay, each running its own `mizar` instance in its namespace, configured with
//! `mizar init`, `mizar apply -f` of one shared topology document and `mizar up`), with real
//! sockets between the endpoints' namespaces.
//!
//! ```text
//!   edge: divides blue and red, bounces their web networks; b-web3 r-db1
//!   h1:   bounces the db networks;                          b-web2
//!   h2:                                                     b-web1 b-web4 r-web2
//!   h3:                                                     b-db1  r-web1
//!   rogue: an underlay address no host of the fabric knows (tests only)
//! ```
//!
//! blue (VNI 100) and red (VNI 200) both use 10.0.0.0/16: 10.0.1.10, 10.0.1.11 and 10.0.2.10
//! exist in both, on different hosts. The counters of `mizar status --json` prove the path each
//! packet took; the pinned maps are read back with `DataplaneMaps::read_state`.
//!
//! Needs root, BPF and iproute2; fails (never skips) without them. Every namespace, link, pin
//! and store goes away when a test ends, passed or failed (the demo's drop), and what a killed
//! test process left is removed by the next run.

mod common;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use common::netns::unique_prefix;
use mizar::{
    dataplane::{DataplaneMaps, DesiredState, EndpointStats, PinLayout},
    demo::{
        self, Capture, Demo, DemoEndpoint, DemoSpec, TCP_PORT, UDP_PORT, ping, tcp_echo_server,
        tcp_exchange, udp_echo_server, udp_exchange,
    },
    lab::{HostSpec, list_namespaces},
    packet::{InnerFrame, Tunnel},
};
use mizar_db::{EndpointSpec, Topology, VpcSpec};

const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
const WAIT: Duration = Duration::from_secs(2);
const UDP_SIZES: [usize; 3] = [64, 700, 1300];
/// Enough TCP to fill windows and cross many segments (the endpoints' MTU is 1400).
const TCP_BYTES: usize = 256 * 1024;
const ROGUE: &str = "rogue";
const ROGUE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 99);
const GENEVE_PORT: u16 = 6081;

/// The demo's fabric under a prefix of this test process, plus the rogue underlay host.
fn fabric() -> Demo {
    common::require_root();
    remove_stale_stores();
    let mut spec = DemoSpec::new(&unique_prefix());
    spec.lab.hosts.push(HostSpec::new(ROGUE, ROGUE_IP));
    Demo::build(spec, Path::new(MIZAR)).unwrap_or_else(|err| panic!("build the fabric: {err}"))
}

/// Removes the stores (`/run/mizar-demo/mzt-<pid>-…`) of test processes that were killed before
/// their demo was dropped (`unique_prefix` removes their namespaces and pins).
fn remove_stale_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for entry in std::fs::read_dir(demo::STATE_ROOT)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("mzt-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Test conveniences on the demo: `mizar` on a host, its status and maps, traffic that panics
/// with the counters when it goes wrong.
trait FabricExt {
    fn run(&self, host: &str, args: &[&str]) -> String;
    fn hosts(&self) -> Vec<String>;
    fn on_every_host(&self, args: &[&str]);
    fn status(&self, host: &str) -> serde_json::Value;
    fn counters(&self) -> Counters;
    fn maps(&self, host: &str) -> DataplaneMaps;
    fn state(&self, host: &str) -> DesiredState;
    fn states(&self) -> BTreeMap<String, DesiredState>;
    fn stats(&self, ep: &str) -> EndpointStats;
    fn ping_ok(&self, from: &str, to: &str, count: u32, before: &Counters);
    fn ping_lost(&self, from: &str, to: Ipv4Addr, count: u32, before: &Counters);
    fn udp_ok(&self, from: &str, to: &str, before: &Counters);
    fn tcp_ok(&self, from: &str, to: &str, before: &Counters);
    fn expect(&self, what: &str, before: &Counters, expected: &[(&str, &str, u64)]);
}

/// `mizar status --json` counters of every host: host → counter name → packets.
type Counters = BTreeMap<String, BTreeMap<String, u64>>;

fn delta(now: &Counters, before: &Counters, host: &str, counter: &str) -> u64 {
    let get = |c: &Counters| {
        c.get(host)
            .and_then(|m| m.get(counter))
            .copied()
            .unwrap_or(0)
    };
    get(now) - get(before)
}

/// Every counter that moved since `before`, host by host: attached to failures.
fn describe(now: &Counters, before: &Counters) -> String {
    let mut out = String::new();
    for (host, counters) in now {
        out += &format!("  {host}:");
        for name in counters.keys() {
            let d = delta(now, before, host, name);
            if d > 0 {
                out += &format!(" {name}+{d}");
            }
        }
        out += "\n";
    }
    out
}

impl FabricExt for Demo {
    fn run(&self, host: &str, args: &[&str]) -> String {
        self.mizar_ok(host, args)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn hosts(&self) -> Vec<String> {
        self.spec().hosts().map(|h| h.name.clone()).collect()
    }

    /// A change to the fabric: the same command on every host's instance.
    fn on_every_host(&self, args: &[&str]) {
        for host in self.hosts() {
            self.run(&host, args);
        }
    }

    fn status(&self, host: &str) -> serde_json::Value {
        let out = self.run(host, &["status", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("status --json: {err}: {out}"))
    }

    fn counters(&self) -> Counters {
        self.hosts()
            .into_iter()
            .map(|host| {
                let status = self.status(&host);
                let counters = status["counters"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no counters in {status}"))
                    .iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap().to_owned(),
                            c["packets"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                (host, counters)
            })
            .collect()
    }

    fn maps(&self, host: &str) -> DataplaneMaps {
        DataplaneMaps::open(&PinLayout::new(self.spec().pin_dir(host)))
            .unwrap_or_else(|err| panic!("the maps of {host}: {err}"))
    }

    fn state(&self, host: &str) -> DesiredState {
        self.maps(host)
            .read_state()
            .unwrap_or_else(|err| panic!("read the maps of {host}: {err}"))
    }

    fn states(&self) -> BTreeMap<String, DesiredState> {
        self.hosts()
            .into_iter()
            .map(|h| {
                let state = self.state(&h);
                (h, state)
            })
            .collect()
    }

    fn stats(&self, ep: &str) -> EndpointStats {
        let ep = self.endpoint(ep);
        self.maps(&ep.host)
            .endpoint_stats(ep.vni, ep.ip)
            .unwrap()
            .unwrap_or_else(|| panic!("no stats for {} on {}", ep.name, ep.host))
    }

    fn ping_ok(&self, from: &str, to: &str, count: u32, before: &Counters) {
        let to = self.endpoint(to);
        let result = ping(self.ns(from), to.ip, count, WAIT).unwrap();
        assert!(
            result.all_answered(),
            "ping {from} → {} ({}): {result} answered; the counters moved:\n{}",
            to.name,
            to.ip,
            describe(&self.counters(), before)
        );
    }

    fn ping_lost(&self, from: &str, to: Ipv4Addr, count: u32, before: &Counters) {
        let result = ping(self.ns(from), to, count, Duration::from_millis(700)).unwrap();
        assert!(
            result.none_answered(),
            "ping {from} → {to} must go unanswered: {result} answered; the counters moved:\n{}",
            describe(&self.counters(), before)
        );
    }

    fn udp_ok(&self, from: &str, to: &str, before: &Counters) {
        let to = self.endpoint(to);
        let addr = SocketAddrV4::new(to.ip, UDP_PORT);
        let server = udp_echo_server(self.ns(&to.name), addr, UDP_SIZES.len(), WAIT).unwrap();
        let result = udp_exchange(self.ns(from), addr, &UDP_SIZES, WAIT).unwrap();
        let echoed = server.join().unwrap();
        assert!(
            result.all_answered() && echoed == UDP_SIZES.len(),
            "UDP {from} → {}: {result} echoes came back, the server echoed {echoed}; the \
             counters moved:\n{}",
            to.name,
            describe(&self.counters(), before)
        );
    }

    fn tcp_ok(&self, from: &str, to: &str, before: &Counters) {
        let to = self.endpoint(to);
        let addr = SocketAddrV4::new(to.ip, TCP_PORT);
        let server = tcp_echo_server(self.ns(&to.name), addr, WAIT).unwrap();
        let intact = tcp_exchange(self.ns(from), addr, TCP_BYTES, Duration::from_secs(5)).unwrap();
        let echoed = server.join().unwrap();
        assert!(
            intact && echoed == TCP_BYTES,
            "TCP {from} → {}: echo intact {intact}, the server echoed {echoed} of {TCP_BYTES} \
             bytes; the counters moved:\n{}",
            to.name,
            describe(&self.counters(), before)
        );
    }

    /// Asserts exact counter deltas since `before`, as (host, counter, packets).
    fn expect(&self, what: &str, before: &Counters, expected: &[(&str, &str, u64)]) {
        let now = self.counters();
        let wrong: Vec<String> = expected
            .iter()
            .filter_map(|&(host, counter, want)| {
                let got = delta(&now, before, host, counter);
                (got != want).then(|| format!("  {host}: {counter} +{got}, expected +{want}"))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{what}: the counters show another path:\n{}\neverything that moved:\n{}",
            wrong.join("\n"),
            describe(&now, before)
        );
    }
}

#[test]
fn traffic_crosses_dividers_and_bouncers_and_never_another_vpc() {
    let fabric = fabric();
    // The endpoints of red that share blue's addresses capture all that arrives on their
    // interface while blue talks.
    let twins = ["r-web1", "r-web2", "r-db1"];
    let captures: Vec<Capture> = twins
        .iter()
        .map(|ep| Capture::start(fabric.ns(ep), "eth0").unwrap())
        .collect();

    // blue, h2 → h3: h2 knows no db network, so the first packet goes to the divider (edge),
    // which sends it to the network's bouncer (h1), which knows the endpoint's host. h3 learns
    // where the sender lives from the source-host option and answers directly; so does h2 from
    // the answer.
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-db1", 3, &before);
    fabric.expect(
        "ping b-web1 (h2) → b-db1 (h3)",
        &before,
        &[
            ("h2", "egress_to_divider", 1),
            ("edge", "divider_forward", 1),
            ("h1", "bouncer_forward", 1),
            ("h3", "deliver_local", 3),
            ("h3", "egress_to_learned_host", 3),
            ("h2", "deliver_local", 3),
            ("h2", "egress_to_learned_host", 2),
        ],
    );
    fabric.udp_ok("b-web1", "b-db1", &before);
    fabric.tcp_ok("b-web1", "b-db1", &before);

    // blue, h2 → h1, same network: through its bouncer (edge).
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 3, &before);
    fabric.expect(
        "ping b-web1 (h2) → b-web2 (h1)",
        &before,
        &[
            ("h2", "egress_to_bouncer", 1),
            ("edge", "bouncer_forward", 1),
            ("h1", "deliver_local", 3),
            ("h2", "deliver_local", 3),
            ("h2", "egress_to_learned_host", 2),
        ],
    );
    fabric.udp_ok("b-web2", "b-web1", &before);
    fabric.tcp_ok("b-web2", "b-web1", &before);

    // blue, to the edge gateway's own endpoint: its bouncer is its host.
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web3", 3, &before);
    fabric.expect(
        "ping b-web1 (h2) → b-web3 (edge)",
        &before,
        &[("h2", "egress_to_bouncer", 1), ("edge", "deliver_local", 3)],
    );
    fabric.udp_ok("b-web1", "b-web3", &before);
    fabric.tcp_ok("b-web3", "b-web1", &before);

    // blue, both on h2: from veth to veth, nothing on the underlay.
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web4", 3, &before);
    fabric.udp_ok("b-web4", "b-web1", &before);
    fabric.tcp_ok("b-web1", "b-web4", &before);
    let now = fabric.counters();
    assert!(
        delta(&now, &before, "h2", "egress_local") >= 6 + 6,
        "{}",
        describe(&now, &before)
    );
    for host in fabric.hosts() {
        for counter in ["deliver_local", "bouncer_forward", "divider_forward"] {
            assert_eq!(
                delta(&now, &before, &host, counter),
                0,
                "{host} saw traffic between two endpoints of h2:\n{}",
                describe(&now, &before)
            );
        }
    }

    // Red's twins of blue's addresses received nothing: not on their interface, not in the
    // data plane's counters.
    for (name, capture) in twins.iter().zip(captures) {
        let frames = capture.stop().unwrap();
        let seen: Vec<String> = frames.iter().map(|f| f.summary()).collect();
        assert!(
            seen.is_empty(),
            "{name} (red) captured frames while only blue talked to its address:\n{}",
            seen.join("\n")
        );
        let stats = fabric.stats(name);
        assert_eq!(
            (stats.rx_packets, stats.tx_packets),
            (0, 0),
            "{name}: {stats:?}"
        );
    }

    // Red works on the same addresses, on other hosts, and cannot reach blue's. (The capture
    // sees red's own pings arrive: it would have seen blue's.)
    let before = fabric.counters();
    let capture = Capture::start(fabric.ns("r-web2"), "eth0").unwrap();
    fabric.ping_ok("r-web1", "r-web2", 3, &before);
    let frames = capture.stop().unwrap();
    let requests = frames.iter().filter(|f| is_echo_request(f)).count();
    assert_eq!(requests, 3, "r-web2 captured {} frames", frames.len());
    fabric.udp_ok("r-web1", "r-web2", &before);
    fabric.ping_ok("r-web1", "r-db1", 2, &before);
    fabric.ping_lost("r-web1", fabric.endpoint("b-web4").ip, 2, &before);
    fabric.expect(
        "red pings 10.0.1.13, which only blue has",
        &before,
        &[("edge", "drop_unknown_endpoint", 2)],
    );
}

/// An ICMP echo request in IPv4 in Ethernet.
fn is_echo_request(frame: &mizar::demo::Frame) -> bool {
    let b = &frame.bytes;
    b.len() > 34
        && b[12..14] == [0x08, 0x00]
        && b[23] == 1
        && b[14 + usize::from(b[14] & 0xf) * 4] == 8
}

/// A Geneve packet carrying a well-formed frame for `to` (UDP to its echo port).
fn geneve_payload(
    from_underlay: Ipv4Addr,
    to_underlay: Ipv4Addr,
    vni: u32,
    to: &DemoEndpoint,
) -> Vec<u8> {
    let inner = InnerFrame::udp(
        Ipv4Addr::new(10, 0, 1, 99),
        to.ip,
        40000,
        UDP_PORT,
        b"intruder",
    )
    .macs(mizar_db::MacAddr([0x02, 0, 0, 0, 0, 0x99]), to.mac)
    .build();
    let mut payload = Tunnel::new(from_underlay, to_underlay, vni).geneve_bytes();
    payload.extend_from_slice(&inner);
    payload
}

#[test]
fn tunnel_packets_from_an_unknown_underlay_address_are_dropped_and_counted() {
    let fabric = fabric();
    let target = fabric.endpoint("b-web3");
    let edge_ip = fabric.spec().topology.host("edge").unwrap().ip;
    let capture = Capture::start(fabric.ns(&target.name), "eth0").unwrap();
    let server = udp_echo_server(
        fabric.ns(&target.name),
        SocketAddrV4::new(target.ip, UDP_PORT),
        1,
        Duration::from_secs(3),
    )
    .unwrap();
    let rx_before = fabric.stats(&target.name).rx_packets;
    let before = fabric.counters();

    // From the rogue host's namespace: its own underlay address, which no store knows; VNIs of
    // both VPCs, an unknown one and 0.
    let vnis = [100, 200, 4242, 0];
    let payloads: Vec<Vec<u8>> = vnis
        .iter()
        .map(|&vni| geneve_payload(ROGUE_IP, edge_ip, vni, &target))
        .collect();
    let sent = fabric
        .ns(ROGUE)
        .spawn(move || {
            let socket = UdpSocket::bind(SocketAddrV4::new(ROGUE_IP, 0)).unwrap();
            for payload in &payloads {
                socket
                    .send_to(payload, SocketAddrV4::new(edge_ip, GENEVE_PORT))
                    .unwrap();
            }
            payloads.len()
        })
        .unwrap()
        .join()
        .unwrap();
    // The drops are counted as the frames arrive; wait for the last.
    let deadline = Instant::now() + WAIT;
    while delta(
        &fabric.counters(),
        &before,
        "edge",
        "drop_unknown_source_host",
    ) < sent as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    fabric.expect(
        "Geneve from an unknown underlay address",
        &before,
        &[
            ("edge", "drop_unknown_source_host", vnis.len() as u64),
            ("edge", "deliver_local", 0),
        ],
    );
    let echoed = server.join().unwrap();
    let frames = capture.stop().unwrap();
    assert_eq!(echoed, 0, "the intruder's datagram reached b-web3's socket");
    assert!(
        frames.is_empty(),
        "b-web3 captured frames from the intruder: {:?}",
        frames.iter().map(|f| f.summary()).collect::<Vec<_>>()
    );
    assert_eq!(fabric.stats(&target.name).rx_packets, rx_before);

    // The same packet from a host the fabric knows (h3) is delivered: the packets were good,
    // their source was not. (And the capture sees it: it would have seen the others.)
    let h3_ip = fabric.spec().topology.host("h3").unwrap().ip;
    let capture = Capture::start(fabric.ns(&target.name), "eth0").unwrap();
    let server = udp_echo_server(
        fabric.ns(&target.name),
        SocketAddrV4::new(target.ip, UDP_PORT),
        1,
        Duration::from_secs(3),
    )
    .unwrap();
    let payload = geneve_payload(h3_ip, edge_ip, target.vni, &target);
    fabric
        .ns("h3")
        .spawn(move || {
            UdpSocket::bind(SocketAddrV4::new(h3_ip, 0))
                .unwrap()
                .send_to(&payload, SocketAddrV4::new(edge_ip, GENEVE_PORT))
                .unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        server.join().unwrap(),
        1,
        "the control packet from a known host was not delivered:\n{}",
        describe(&fabric.counters(), &before)
    );
    let frames = capture.stop().unwrap();
    assert!(
        frames.iter().any(|f| f.bytes.ends_with(b"intruder")),
        "the capture on b-web3 missed the delivered control packet: {:?}",
        frames.iter().map(|f| f.summary()).collect::<Vec<_>>()
    );
}

#[test]
fn a_deleted_endpoint_gets_no_traffic_and_its_entries_go_until_it_is_added_back() {
    let fabric = fabric();
    let gone = fabric.endpoint("b-web2");
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 2, &before);
    let states = fabric.states();
    // Where the endpoint is: its host (local) and the bouncer of its network.
    for host in ["h1", "edge"] {
        assert!(
            states[host].endpoints.contains_key(&(gone.vni, gone.ip)),
            "{host} does not hold b-web2: {:?}",
            states[host].endpoints
        );
    }
    // h2 learned where it lives from its answers.
    assert!(
        fabric
            .maps("h2")
            .learned_host(gone.vni, gone.ip)
            .unwrap()
            .is_some()
    );

    fabric.on_every_host(&["ep", "del", "blue", "b-web2"]);
    for host in fabric.hosts() {
        let maps = fabric.maps(&host);
        let state = maps.read_state().unwrap();
        assert!(
            !state.endpoints.contains_key(&(gone.vni, gone.ip)),
            "{host} still holds b-web2"
        );
        assert_eq!(
            maps.learned_host(gone.vni, gone.ip).unwrap(),
            None,
            "{host}"
        );
        // Nothing else changed, but for h1, which now hosts nothing in blue's web network and
        // so no longer needs it.
        let mut expected = states[&host].clone();
        expected.endpoints.remove(&(gone.vni, gone.ip));
        if host == "h1" {
            let web = (gone.vni, "10.0.1.0/24".parse().unwrap());
            assert!(expected.networks.remove(&web).is_some(), "{expected:?}");
        } else {
            // h1 hosts no endpoint of blue any more: it may no longer send for one.
            let h1 = states["h1"].host.unwrap().ip;
            let roles = expected
                .vpcs
                .get_mut(&gone.vni)
                .unwrap()
                .members
                .get_mut(&h1);
            let roles = roles.expect("h1 bounces in blue");
            assert!(roles.endpoints && roles.bouncer, "{roles:?}");
            roles.endpoints = false;
        }
        assert_eq!(state, expected, "{host}");
    }
    let attached = fabric.status("h1")["attached"].to_string();
    assert!(!attached.contains(&gone.veth), "{attached}");

    let before = fabric.counters();
    fabric.ping_lost("b-web1", gone.ip, 2, &before);
    fabric.expect(
        "ping to the deleted b-web2",
        &before,
        &[
            ("h2", "egress_to_bouncer", 2),
            ("edge", "drop_unknown_endpoint", 2),
            ("h1", "deliver_local", 0),
        ],
    );
    fabric.ping_lost("b-web2", fabric.endpoint("b-web1").ip, 1, &before);
    // Red's endpoint at the same address is untouched.
    fabric.ping_ok("r-web1", "r-web2", 2, &before);

    let mac = demo_mac(&gone);
    fabric.on_every_host(&[
        "ep",
        "add",
        "blue",
        "b-web2",
        "--ip",
        &gone.ip.to_string(),
        "--mac",
        &mac,
        "--host",
        &gone.host,
        "--veth",
        &gone.veth,
    ]);
    assert_eq!(fabric.states(), states, "the maps after adding b-web2 back");
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 3, &before);
    fabric.udp_ok("b-web2", "b-web1", &before);
    fabric.tcp_ok("b-web1", "b-web2", &before);
}

fn demo_mac(ep: &DemoEndpoint) -> String {
    ep.mac.to_string()
}

#[test]
fn down_then_up_restores_the_same_maps_and_forwarding() {
    let fabric = fabric();
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-db1", 2, &before);
    let states = fabric.states();
    let attached: BTreeMap<String, String> = fabric
        .hosts()
        .into_iter()
        .map(|h| {
            let a = fabric.status(&h)["attached"].to_string();
            (h, a)
        })
        .collect();

    fabric.on_every_host(&["down"]);
    for host in fabric.hosts() {
        let status = fabric.status(&host);
        assert_eq!(status["up"], false, "{host}: {status}");
        let maps = PinLayout::new(fabric.spec().pin_dir(&host)).maps();
        assert!(!maps.exists(), "{} left after down", maps.display());
    }
    let ping = ping(
        fabric.ns("b-web1"),
        fabric.endpoint("b-db1").ip,
        1,
        Duration::from_millis(700),
    )
    .unwrap();
    assert!(ping.none_answered(), "forwarding went on after down");

    fabric.on_every_host(&["up"]);
    assert_eq!(fabric.states(), states, "the maps after down and up");
    for (host, before) in &attached {
        assert_eq!(
            &fabric.status(host)["attached"].to_string(),
            before,
            "{host}"
        );
    }
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-db1", 3, &before);
    // Learning starts afresh: the first packet takes the divider and bouncer again.
    fabric.expect(
        "ping b-web1 → b-db1 after down and up",
        &before,
        &[
            ("h2", "egress_to_divider", 1),
            ("edge", "divider_forward", 1),
            ("h1", "bouncer_forward", 1),
        ],
    );
    fabric.udp_ok("b-web1", "b-db1", &before);
    fabric.tcp_ok("b-db1", "b-web1", &before);
}

/// A bad command or document: what is run and what its error must say.
enum Bad {
    Args(Vec<String>),
    Document(String),
}

fn args(line: &str) -> Bad {
    Bad::Args(line.split_whitespace().map(str::to_owned).collect())
}

/// The demo's document with a change: the rest stays valid, so a refusal is all or nothing.
fn document(change: impl FnOnce(&mut Topology)) -> Bad {
    let mut doc = DemoSpec::new("x").topology;
    // Something valid and new, which must not land either.
    doc.vpcs.push(VpcSpec {
        name: "green".into(),
        vni: 300,
        cidr: "10.9.0.0/16".parse().unwrap(),
        dividers: vec!["edge".into()],
        networks: Vec::new(),
    });
    change(&mut doc);
    Bad::Document(doc.to_yaml().unwrap())
}

fn web(doc: &mut Topology, vpc: usize) -> &mut Vec<EndpointSpec> {
    &mut doc.vpcs[vpc].networks[0].endpoints
}

#[test]
fn bad_input_is_refused_with_the_reason_and_changes_nothing() {
    let fabric = fabric();
    let host = "edge";
    let extra = |ip: &str| EndpointSpec {
        labels: Vec::new(),
        name: "extra".into(),
        ip: ip.parse().unwrap(),
        mac: "02:ee:00:64:01:63".parse().unwrap(),
        kind: Default::default(),
        bypass_decap: false,
        host: "h2".into(),
        veth: Some("v-extra".into()),
        backends: Vec::new(),
        netns: None,
    };
    let cases: Vec<(&str, Bad, &str)> = vec![
        (
            "CIDR with a /33",
            args("vpc add green --vni 300 --cidr 10.9.0.0/33"),
            "/33 is not an IPv4 prefix length: use 0 to 32",
        ),
        (
            "CIDR with host bits",
            args("vpc add green --vni 300 --cidr 10.9.1.2/16"),
            "has host bits set; write the network address: 10.9.0.0/16",
        ),
        (
            "VNI 0",
            args("vpc add green --vni 0 --cidr 10.9.0.0/16"),
            "VNI 0 of VPC \"green\" is out of range",
        ),
        (
            "VNI 2^24",
            args("vpc add green --vni 16777216 --cidr 10.9.0.0/16"),
            "VNI 16777216 of VPC \"green\" is out of range",
        ),
        (
            "a VNI taken",
            args("vpc add green --vni 200 --cidr 10.9.0.0/16"),
            "already used by VPC \"red\"",
        ),
        (
            "a VPC name taken",
            args("vpc add blue --vni 300 --cidr 10.9.0.0/16"),
            "VPC \"blue\" already exists",
        ),
        (
            "an endpoint name taken",
            args("ep add blue b-web1 --ip 10.0.1.99 --mac 02:ee:00:64:01:63 --host h2 --veth v-x"),
            "endpoint \"b-web1\" in VPC \"blue\" already exists",
        ),
        (
            "an unknown VPC",
            args("net add green app --cidr 10.0.3.0/24"),
            "unknown VPC \"green\"",
        ),
        (
            "an unknown host",
            args("ep add blue extra --ip 10.0.1.99 --mac 02:ee:00:64:01:63 --host h9"),
            "unknown host \"h9\"",
        ),
        (
            "an unknown bouncer host",
            args("bouncer add blue web h9"),
            "unknown host \"h9\"",
        ),
        (
            "an endpoint outside its network",
            args(
                "ep add blue extra --ip 10.0.2.99 --network web --mac 02:ee:00:64:01:63 --host h2",
            ),
            "IP 10.0.2.99 of endpoint \"extra\" is outside its network \"web\" (10.0.1.0/24)",
        ),
        (
            "the same IP twice in one VPC",
            args("ep add blue extra --ip 10.0.1.10 --mac 02:ee:00:64:01:63 --host h3 --veth v-x"),
            "IP 10.0.1.10 of endpoint \"extra\" is already used by endpoint \"b-web1\" in VPC \"blue\"",
        ),
        (
            "a multicast MAC",
            args("ep add blue extra --ip 10.0.1.99 --mac 01:00:5e:00:00:01 --host h2"),
            "is a multicast address",
        ),
        (
            "an overlapping network",
            args("net add blue web2 --cidr 10.0.1.128/25"),
            "overlaps network \"web\"",
        ),
        (
            "an endpoint of this host behind a veth that does not exist",
            args(
                "ep add blue extra --ip 10.0.1.99 --mac 02:ee:00:64:01:63 --host edge --veth v-nope",
            ),
            "v-nope",
        ),
        (
            "deleting an unknown endpoint",
            args("ep del blue nosuch"),
            "unknown endpoint \"nosuch\" in VPC \"blue\"",
        ),
        (
            "a file that is not there",
            args("apply -f /nonexistent/topology.yaml"),
            "cannot read /nonexistent/topology.yaml",
        ),
        (
            "malformed YAML",
            Bad::Document("vpcs:\n  - name: blue\n    vni: [100\n".into()),
            "is not a valid topology",
        ),
        (
            "a field mizar does not know",
            Bad::Document(
                "vpcs:\n  - {name: green, vni: 300, cidr: 10.9.0.0/16, colour: green}\n".into(),
            ),
            "unknown field `colour`",
        ),
        (
            "VNI 0 in a document",
            document(|doc| doc.vpcs[2].vni = 0),
            "VNI 0 of VPC \"green\" is out of range",
        ),
        (
            "VNI 2^24 in a document",
            document(|doc| doc.vpcs[2].vni = 1 << 24),
            "out of range",
        ),
        (
            "a bad CIDR in a document",
            Bad::Document("vpcs:\n  - {name: green, vni: 300, cidr: 10.9.0.0/40}\n".into()),
            "is not a valid topology",
        ),
        (
            "the same IP twice in one VPC of a document",
            document(|doc| web(doc, 0).push(extra("10.0.1.11"))),
            "IP 10.0.1.11 of endpoint \"extra\" is already used by endpoint \"b-web2\"",
        ),
        (
            "an endpoint outside its network in a document",
            document(|doc| web(doc, 0).push(extra("10.0.2.99"))),
            "is outside its network \"web\"",
        ),
        (
            "an unknown host in a document",
            document(|doc| doc.vpcs[1].dividers.push("h9".into())),
            "unknown host \"h9\"",
        ),
        (
            "an unknown VPC's endpoint host in a document",
            document(|doc| {
                let mut ep = extra("10.0.1.99");
                ep.host = "nowhere".into();
                web(doc, 1).push(ep);
            }),
            "unknown host \"nowhere\"",
        ),
        (
            "two VPCs with one VNI in a document",
            document(|doc| doc.vpcs[2].vni = 100),
            "VNI 100",
        ),
    ];

    let export = |fabric: &Demo| fabric.run(host, &["export"]);
    let store_before = export(&fabric);
    let maps_before = fabric.state(host);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (what, bad, message)) in cases.into_iter().enumerate() {
        let (out, shown) = match bad {
            Bad::Args(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                (
                    fabric.mizar(host, &args).unwrap(),
                    format!("mizar {}", args.join(" ")),
                )
            }
            Bad::Document(doc) => {
                let path: PathBuf = dir.path().join(format!("bad-{i}.yaml"));
                std::fs::write(&path, &doc).unwrap();
                let path = path.to_string_lossy().into_owned();
                (
                    fabric.mizar(host, &["apply", "-f", &path]).unwrap(),
                    format!("mizar apply -f <{doc}>"),
                )
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{what}: `{shown}` succeeded:\n{}", text(&out)));
        } else if !stderr.contains(message) {
            failures.push(format!(
                "{what}: `{shown}` did not say {message:?}:\n{}",
                text(&out)
            ));
        }
        if export(&fabric) != store_before {
            failures.push(format!("{what}: `{shown}` changed the store"));
            // Put it back, so that the next cases start from the same store.
            let path = dir.path().join("restore.yaml");
            std::fs::write(&path, &store_before).unwrap();
            fabric.run(host, &["apply", "--prune", "-f", &path.to_string_lossy()]);
        }
        if fabric.state(host) != maps_before {
            failures.push(format!("{what}: `{shown}` changed the maps"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Namespaces and directories of a demo prefix that exist.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut left: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n == prefix || n.starts_with(&format!("{prefix}-")))
        .collect();
    for dir in [
        Path::new(mizar::lab::DEFAULT_PIN_ROOT).join(prefix),
        Path::new(demo::STATE_ROOT).join(prefix),
    ] {
        if dir.exists() {
            left.push(dir.display().to_string());
        }
    }
    left
}

fn mizar_demo(args: &[&str]) -> Output {
    std::process::Command::new(MIZAR)
        .arg("demo")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn mizar_demo_runs_and_demo_down_leaves_nothing_even_after_a_crash() {
    common::require_root();
    let prefix = unique_prefix();
    let started = Instant::now();
    let out = mizar_demo(&["--prefix", &prefix]);
    let took = started.elapsed();
    let shown = text(&out);
    // Clean up before asserting anything, so a failure leaves nothing either.
    let present = leftovers(&prefix);
    let again = mizar_demo(&["--prefix", &prefix]);
    let down = mizar_demo(&["--down", "--prefix", &prefix]);
    let left = leftovers(&prefix);

    assert!(out.status.success(), "mizar demo failed:\n{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("ping 3/3  UDP 3/3").count(), 6, "{shown}");
    for expected in [
        "ping 0/1",
        "divider_forward",
        "bouncer_forward",
        "egress_local",
        "── mizar status on h3 ──",
        &format!("demo --down --prefix {prefix}"),
        &format!("ip netns exec {prefix}-edge"),
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{shown}");
    }
    assert!(present.len() > 10, "{present:?}");
    assert!(
        !again.status.success(),
        "a second demo over the first: {}",
        text(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&format!(
            "remove it first with `mizar demo --down --prefix {prefix}`"
        )),
        "{}",
        text(&again)
    );
    assert!(down.status.success(), "{}", text(&down));
    assert!(left.is_empty(), "left after demo --down: {left:?}");
    eprintln!("mizar demo took {took:?}");

    // A demo killed half-way: --down removes whatever it had made.
    let mut child = std::process::Command::new(MIZAR)
        .args(["demo", "--prefix", &prefix])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(took / 3);
    let _ = child.kill();
    let _ = child.wait();
    let made = leftovers(&prefix);
    let down = mizar_demo(&["--down", "--prefix", &prefix]);
    let left = leftovers(&prefix);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        left.is_empty(),
        "left after a killed demo and demo --down: {left:?}"
    );
    assert!(
        !made.is_empty(),
        "the killed demo had made nothing yet: a weak check"
    );
}

#[test]
fn changes_in_place_retag_a_vpc_and_readdress_an_endpoint_while_traffic_flows() {
    let fabric = fabric();
    let web2 = fabric.endpoint("b-web2");
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 2, &before);
    let states = fabric.states();

    // A new VNI for blue: every host retags its traffic, forgets what it learned under the old
    // one, and red (the same addresses) is untouched.
    fabric.on_every_host(&["vpc", "set", "blue", "--vni", "150"]);
    for host in fabric.hosts() {
        let maps = fabric.maps(&host);
        let state = maps.read_state().unwrap();
        assert!(!state.vpcs.contains_key(&100), "{host}: {:?}", state.vpcs);
        assert!(
            !state.endpoints.keys().any(|(vni, _)| *vni == 100),
            "{host} still holds VNI 100 endpoints"
        );
        let blue_before = states[&host].endpoints.keys().filter(|(v, _)| *v == 100);
        let blue_now = state.endpoints.keys().filter(|(v, _)| *v == 150);
        assert_eq!(blue_before.count(), blue_now.count(), "{host}");
        let red = |s: &DesiredState| {
            s.endpoints
                .iter()
                .filter(|((v, _), _)| *v == 200)
                .map(|(k, e)| (*k, e.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(red(&state), red(&states[&host]), "{host}: red changed");
        assert_eq!(maps.learned_host(100, web2.ip).unwrap(), None, "{host}");
    }
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 3, &before);
    fabric.tcp_ok("b-web1", "b-web2", &before);
    fabric.ping_ok("r-web1", "r-web2", 2, &before);
    let blue_web = fabric.maps("h2").read_state().unwrap();
    assert!(blue_web.vpcs.contains_key(&150), "{:?}", blue_web.vpcs);

    // A new MAC for b-web2 (its interface changes with it): frames to it carry the new one.
    let new_mac = "02:00:0a:00:01:b2";
    fabric.on_every_host(&["ep", "set", "blue", "b-web2", "--mac", new_mac]);
    fabric
        .ns("b-web2")
        .ip(&["link", "set", "eth0", "address", new_mac])
        .unwrap();
    fabric
        .ns("b-web1")
        .ip(&["neigh", "flush", "dev", "eth0"])
        .unwrap();
    for host in fabric.hosts() {
        let state = fabric.maps(&host).read_state().unwrap();
        if let Some(entry) = state.endpoints.get(&(150, web2.ip)) {
            assert_eq!(entry.mac.to_string(), new_mac, "{host}");
        }
    }
    let local = &fabric.maps(&web2.host).read_state().unwrap().endpoints[&(150, web2.ip)];
    assert!(
        local.local_ifindex.is_some(),
        "b-web2 kept its veth: {local:?}"
    );
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 3, &before);
    fabric.udp_ok("b-web2", "b-web1", &before);

    // Refused changes say why and leave every map as it was.
    let states = fabric.states();
    let refused: [(&[&str], &str); 5] = [
        (
            &["ep", "set", "blue", "b-web2", "--ip", "10.0.1.10"],
            "10.0.1.10",
        ),
        (
            &["vpc", "set", "blue", "--vni", "200"],
            "give each VPC its own VNI",
        ),
        (
            &["net", "set", "blue", "web", "--cidr", "10.0.9.0/24"],
            "10.0.9.0/24",
        ),
        (&["ep", "set", "blue", "nope", "--mac", new_mac], "nope"),
        (&["ep", "set", "blue", "b-web2"], "--ip"),
    ];
    for (args, says) in refused {
        let out = fabric.mizar(&web2.host, args).unwrap();
        let shown = text(&out);
        assert!(
            !out.status.success(),
            "mizar {args:?} was accepted:\n{shown}"
        );
        assert!(
            shown.contains(says),
            "mizar {args:?} does not say {says:?}:\n{shown}"
        );
    }
    assert_eq!(fabric.states(), states, "a refused change changed the maps");
    let before = fabric.counters();
    fabric.ping_ok("b-web1", "b-web2", 2, &before);
}
