//! Isolation under churn, end to end through the real `mizar` binary: while tunnel traffic of
//! both VPCs flows into host h2 of the demo fabric (and an endpoint of h2 sends through egress),
//! h2's configuration is changed over a thousand times with `mizar apply --prune`: endpoints of
//! blue and red at the same addresses move between h2's veths, between the VPCs on one veth,
//! swap veths in one change, move to another host and back, and go away. Every endpoint's
//! interface is sniffed; every frame carries, in its payload, the VNI and address it was sent to
//! and when. A frame is delivered rightly only to an endpoint that was that VNI's endpoint at
//! that address at some moment between its sending and a short delay after (the time the frame
//! takes to reach h2's data plane): an assignment counts from the start of the command that made
//! it to the end of the command that undid it. Anything else is a delivery into the wrong VPC.
//!
//! Needs root, BPF and iproute2; fails (never skips) without them. Everything goes away with
//! the demo fabric, passed or failed.

mod common;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::netns::unique_prefix;
use mizar::{
    demo::{Capture, Demo, DemoSpec},
    lab::{EndpointSpec as LabEndpoint, Ipv4Net, host_ifname},
    packet::{InnerFrame, Tunnel},
};
use mizar_db::{EndpointKind, EndpointSpec, MacAddr};

const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
/// Applies of a changed configuration to h2 (each moves two to four endpoints).
const STEPS: usize = 600;
/// Longest a frame may take from its sending to h2's data plane.
const IN_FLIGHT: Duration = Duration::from_millis(25);
const TAG: &[u8; 8] = b"MZCHURN1";
const PORT: u16 = 9999;
const VPCS: [(&str, u32); 2] = [("blue", 100), ("red", 200)];
/// The veths of h2 that the churn hands around.
const SLOTS: [&str; 4] = ["c0", "c1", "c2", "c3"];
/// Addresses that both VPCs use for the churned endpoints (in their web networks).
const ADDRESSES: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 0, 1, 50),
    Ipv4Addr::new(10, 0, 1, 51),
    Ipv4Addr::new(10, 0, 1, 52),
    Ipv4Addr::new(10, 0, 1, 53),
];

/// Where a churned endpoint (VNI, address) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Veth(usize),
    /// On host h3, so h2 holds it as remote.
    Elsewhere,
}

/// splitmix64, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn mac(vni: u32, ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0xcc, (vni >> 8) as u8, vni as u8, o[2], o[3]])
}

/// One configuration of the churned endpoints: (VNI, address) → place.
type Config = BTreeMap<(u32, Ipv4Addr), Place>;

/// The next configuration: one random move.
fn step(rng: &mut Rng, config: &Config) -> Config {
    let mut next = config.clone();
    let vni = VPCS[rng.below(2)].1;
    let ip = ADDRESSES[rng.below(ADDRESSES.len())];
    let free: Vec<usize> = (0..SLOTS.len())
        .filter(|s| !config.values().any(|p| *p == Place::Veth(*s)))
        .collect();
    match rng.below(6) {
        // To a free veth (from another, from elsewhere, or new).
        0 | 1 if !free.is_empty() => {
            next.insert((vni, ip), Place::Veth(free[rng.below(free.len())]));
        }
        // The other VPC's endpoint at the same address takes this one's veth, in one change.
        2 => {
            let other = if vni == 100 { 200 } else { 100 };
            if let Some(Place::Veth(s)) = config.get(&(vni, ip)) {
                next.remove(&(vni, ip));
                next.insert((other, ip), Place::Veth(*s));
            }
        }
        // Two endpoints swap veths, in one change.
        3 => {
            let placed: Vec<((u32, Ipv4Addr), usize)> = config
                .iter()
                .filter_map(|(k, p)| match p {
                    Place::Veth(s) => Some((*k, *s)),
                    Place::Elsewhere => None,
                })
                .collect();
            if placed.len() >= 2 {
                let a = rng.below(placed.len());
                let b = (a + 1 + rng.below(placed.len() - 1)) % placed.len();
                next.insert(placed[a].0, Place::Veth(placed[b].1));
                next.insert(placed[b].0, Place::Veth(placed[a].1));
            }
        }
        4 => {
            next.insert((vni, ip), Place::Elsewhere);
        }
        _ => {
            next.remove(&(vni, ip));
        }
    }
    next
}

/// The demo's document with the churned endpoints placed as `config` says.
fn document(spec: &DemoSpec, config: &Config) -> String {
    let mut topology = spec.topology.clone();
    for vpc in &mut topology.vpcs {
        let web = vpc
            .networks
            .iter_mut()
            .find(|n| n.name == "web")
            .expect("the demo has web networks");
        for ((vni, ip), place) in config {
            if *vni != vpc.vni {
                continue;
            }
            let (host, veth) = match place {
                Place::Veth(s) => ("h2", Some(host_ifname(SLOTS[*s]))),
                Place::Elsewhere => ("h3", None),
            };
            web.endpoints.push(EndpointSpec {
                labels: Vec::new(),
                name: format!("{}-{}", vpc.name, ip.octets()[3]),
                ip: *ip,
                mac: mac(*vni, *ip),
                kind: EndpointKind::Simple,
                bypass_decap: false,
                host: host.to_owned(),
                veth,
                backends: Vec::new(),
                netns: None,
            });
        }
    }
    topology.to_yaml().expect("a document")
}

/// The payload of a probe: tag, VNI, address, nanoseconds since the start.
fn probe(vni: u32, ip: Ipv4Addr, sent: Duration) -> Vec<u8> {
    let mut p = TAG.to_vec();
    p.extend_from_slice(&vni.to_be_bytes());
    p.extend_from_slice(&ip.octets());
    p.extend_from_slice(&(sent.as_nanos() as u64).to_be_bytes());
    p
}

/// A probe in a received frame: (VNI, address, sent).
fn read_probe(frame: &[u8]) -> Option<(u32, Ipv4Addr, Duration)> {
    let ihl = usize::from(*frame.get(14)? & 0x0f) * 4;
    let udp = 14 + ihl;
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(23)? != 17 {
        return None;
    }
    if u16::from_be_bytes([*frame.get(udp + 2)?, *frame.get(udp + 3)?]) != PORT {
        return None;
    }
    let p = frame.get(udp + 8..udp + 8 + 24)?;
    if &p[..8] != TAG {
        return None;
    }
    let vni = u32::from_be_bytes(p[8..12].try_into().ok()?);
    let ip = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let sent = Duration::from_nanos(u64::from_be_bytes(p[16..24].try_into().ok()?));
    Some((vni, ip, sent))
}

#[test]
fn no_frame_reaches_another_vpc_while_the_configuration_churns() {
    common::require_root();
    let mut spec = DemoSpec::new(&unique_prefix());
    for (i, slot) in SLOTS.iter().enumerate() {
        // The namespaces behind h2's churned veths; their own address does not matter.
        let ip = Ipv4Addr::new(10, 0, 1, 60 + i as u8);
        spec.lab.endpoints.push(LabEndpoint::new(
            *slot,
            "h2",
            100, // recorded by the lab only: the churn decides
            Ipv4Net::new_assert(ip, 24),
            MacAddr([0x02, 0xcc, 0, 0, 0, i as u8]),
        ));
    }
    let demo = Demo::build(spec.clone(), Path::new(MIZAR)).expect("build the fabric");
    let doc_path = spec.state_root.join("churn.yaml");

    // Sniff every endpoint of the fabric.
    let fixed: Vec<_> = spec
        .topology
        .endpoints()
        .map(|(vpc, _, ep)| (ep.name.clone(), vpc.vni, ep.ip))
        .collect();
    let mut captures = Vec::new();
    for name in fixed.iter().map(|f| f.0.as_str()).chain(SLOTS) {
        captures.push((
            name.to_owned(),
            Capture::start(demo.ns(name), "eth0").expect("capture"),
        ));
    }

    // Traffic: tunnel packets from h3 (a member of both VPCs) to h2, for every churned address
    // in both VPCs and for h2's own endpoints; and blue's b-web1 (on h2) sending to the churned
    // addresses through egress.
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let h2 = spec
        .topology
        .hosts
        .iter()
        .find(|h| h.name == "h2")
        .unwrap()
        .ip;
    let h3 = spec
        .topology
        .hosts
        .iter()
        .find(|h| h.name == "h3")
        .unwrap()
        .ip;
    let mut targets: Vec<(u32, Ipv4Addr)> = VPCS
        .iter()
        .flat_map(|(_, vni)| ADDRESSES.map(|ip| (*vni, ip)))
        .collect();
    targets.extend(fixed.iter().map(|(_, vni, ip)| (*vni, *ip)));
    let injector = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        demo.ns("h3")
            .spawn(move || -> std::io::Result<()> {
                let socket = UdpSocket::bind(SocketAddrV4::new(h3, 0))?;
                let to = SocketAddrV4::new(h2, 6081);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..16 {
                        let (vni, ip) = targets[i % targets.len()];
                        i += 1;
                        let inner = InnerFrame::udp(
                            Ipv4Addr::new(10, 0, 2, 99),
                            ip,
                            40000,
                            PORT,
                            &probe(vni, ip, start.elapsed()),
                        )
                        .build();
                        let tunnel = Tunnel::new(h3, h2, vni);
                        let mut datagram = tunnel.geneve_bytes();
                        datagram.extend_from_slice(&inner);
                        socket.send_to(&datagram, to)?;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
            .expect("injector")
    };
    let b_web1 = demo.endpoint("b-web1");
    let egress_sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        demo.ns("b-web1")
            .spawn(move || -> std::io::Result<()> {
                let socket = UdpSocket::bind(SocketAddrV4::new(b_web1.ip, 0))?;
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..4 {
                        let ip = ADDRESSES[i % ADDRESSES.len()];
                        i += 1;
                        let payload = probe(b_web1.vni, ip, start.elapsed());
                        // Unreachable destinations answer with ICMP errors: not ours to mind.
                        let _ = socket.send_to(&payload, SocketAddrV4::new(ip, PORT));
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
            .expect("egress sender")
    };

    // Churn h2's configuration; record each assignment (VNI, address) → veth with the start of
    // the command that made it and the end of the one that undid it.
    type Assignment = ((u32, Ipv4Addr), usize, Duration, Option<Duration>);
    let mut assignments: Vec<Assignment> = Vec::new();
    let mut rng = Rng(0x5eed);
    let mut config = Config::new();
    let mut changes = 0usize;
    let mut applies = 0usize;
    for _ in 0..STEPS {
        // Two to four moves per change of the store.
        let mut next = config.clone();
        for _ in 0..2 + rng.below(3) {
            next = step(&mut rng, &next);
        }
        if next == config {
            continue;
        }
        changes += next
            .iter()
            .filter(|(k, p)| config.get(k) != Some(p))
            .count()
            + config.keys().filter(|k| !next.contains_key(k)).count();
        std::fs::write(&doc_path, document(&spec, &next)).unwrap();
        applies += 1;
        let began = start.elapsed();
        demo.mizar_ok(
            "h2",
            &["apply", "-f", doc_path.to_str().unwrap(), "--prune"],
        )
        .unwrap_or_else(|err| panic!("churn step: {err}"));
        let ended = start.elapsed();
        for a in assignments.iter_mut().filter(|a| a.3.is_none()) {
            if next.get(&a.0) != Some(&Place::Veth(a.1)) {
                a.3 = Some(ended);
            }
        }
        for (key, place) in &next {
            if let Place::Veth(s) = place
                && config.get(key) != Some(place)
            {
                assignments.push((*key, *s, began, None));
            }
        }
        config = next;
    }
    let churn_time = start.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    injector.join().unwrap().expect("injector");
    egress_sender.join().unwrap().expect("egress sender");
    std::thread::sleep(Duration::from_millis(200));

    // Every frame that arrived, judged.
    let mut delivered: BTreeMap<u32, u64> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut late = 0u64;
    for (name, capture) in captures {
        let frames = capture.stop().expect("capture");
        let slot = SLOTS.iter().position(|s| *s == name);
        for frame in frames {
            let Some((vni, ip, sent_at)) = read_probe(&frame.bytes) else {
                continue;
            };
            *delivered.entry(vni).or_default() += 1;
            let right = match slot {
                // A fixed endpoint: only its own VNI and address.
                None => fixed.iter().any(|f| f.0 == name && f.1 == vni && f.2 == ip),
                Some(s) => {
                    let window = sent_at..=sent_at + IN_FLIGHT;
                    let held = |a: &&Assignment| {
                        a.0 == (vni, ip)
                            && a.1 == s
                            && a.2 <= *window.end()
                            && a.3.is_none_or(|end| end >= *window.start())
                    };
                    let matched: Vec<_> = assignments.iter().filter(held).collect();
                    if matched.iter().all(|a| a.3.is_some_and(|end| end < sent_at)) {
                        late += !matched.is_empty() as u64;
                    }
                    !matched.is_empty()
                }
            };
            if !right {
                wrong.push(format!(
                    "{name} received a frame for {ip} of VNI {vni}, sent at {sent_at:?}"
                ));
            }
        }
    }
    let status = demo.mizar_ok("h2", &["status", "--json"]).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let counter = |name: &str| {
        status["counters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or(0)
    };
    println!(
        "churn: {changes} changes in {applies} applies ({} assignments of a veth) over {:.1} s; {} probes sent, delivered blue {} \
         red {} ({late} within {IN_FLIGHT:?} of a release); h2 deliver_local {}, \
         egress_local {}, drop_entry_changed {}, egress_drop_entry_changed {}; \
         frames delivered into the wrong VPC: {}",
        assignments.len(),
        churn_time.as_secs_f64(),
        sent.load(Ordering::Relaxed),
        delivered.get(&100).unwrap_or(&0),
        delivered.get(&200).unwrap_or(&0),
        counter("deliver_local"),
        counter("egress_local"),
        counter("drop_entry_changed"),
        counter("egress_drop_entry_changed"),
        wrong.len()
    );
    assert!(changes >= 1000, "only {changes} changes");
    assert!(
        delivered.values().all(|n| *n > 1000) && delivered.len() == 2,
        "too little traffic got through to judge: {delivered:?}"
    );
    assert!(
        wrong.is_empty(),
        "{} frames reached another VPC's endpoint, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}
