//! `mizar fuzz`: a property fuzzer of the data plane. Random and mutated packets (every byte of
//! a valid packet of every pipeline path changed, every length cut, random changes, random
//! bytes) go through the real programs with BPF_PROG_TEST_RUN, against a populated
//! configuration of two VPCs that use the same addresses, and every result is checked:
//!
//! - the verdict is one the program means (never XDP_ABORTED);
//! - exactly one reason counter and one stage counter counted the packet, and they agree with
//!   the verdict (a drop reason with XDP_DROP, a forwarding reason with XDP_TX, ...);
//! - a packet handed to the stack is unchanged;
//! - a forwarded packet goes to a host of the topology, with its MAC, from this host, with its
//!   VNI and everything after the outer UDP header unchanged;
//! - a delivered packet reaches an endpoint of the packet's own VNI: the endpoint whose MAC the
//!   program wrote and whose counters it credited is the one at the inner destination in that
//!   VNI, and no other endpoint's counters moved (the program takes the veth from the same
//!   entry);
//! - egress (from an endpoint of VPC A) never sends into another VNI, nor delivers to an
//!   endpoint of another VPC.
//!
//! The configuration is written the way production writes it: a [`DesiredState`] through
//! [`reconcile`].

use std::{
    collections::BTreeMap,
    fmt,
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Instant,
};

use aya::programs::{TestRun, TestRunOptions, Xdp};

use crate::{
    dataplane::{
        Counters, Dataplane, DataplaneError, DesiredState, EndpointEntry, EndpointKind,
        EndpointStats, HostConfig, Ipv4Net, MacAddr, MemberRoles, NetworkEntry, PinLayout, STAGES,
        Stage, VpcEntry, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, ensure_bpffs, reason_outcome,
        reconcile, remove_all_pins, verdict_name,
    },
    packet::{GeneveOption, InnerFrame, Tunnel, arp_request, truncate_consistently},
};

/// Where the fuzzer's private instance pins (a bpffs it mounts when missing).
pub const FUZZ_BPFFS: &str = "/run/mizar-fuzz";

const SELF: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const SELF_MAC: MacAddr = MacAddr([0x02, 0x5e, 0, 0, 0, 1]);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const EP_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);
const BOUNCER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);
const DIVIDERS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 0, 21),
    Ipv4Addr::new(192, 168, 0, 22),
];
/// A host of the fabric with endpoints in VPC B only.
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 50);
/// An underlay address nobody knows.
const STRANGER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 99);

const VNI_A: u32 = 100;
const VNI_B: u32 = 200;
const NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24);
/// Both VPCs have an endpoint here, on this host, behind different veths.
const TWIN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
const BYPASS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const OTHER_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 6);
const SCALED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 80);
/// VPC A's endpoint whose veth the egress runs are made on: loopback, which every network
/// namespace has (a test run needs the ingress interface to exist).
const EGRESS_EP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
const EGRESS_IFINDEX: u32 = 1;
/// This host's underlay interface: any ifindex no endpoint uses (nothing is sent for real).
const UNDERLAY_IFINDEX: u32 = 2;

fn host_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x48, o[0], o[1], o[2], o[3]])
}

/// Endpoint MACs name their VPC, so a frame handed to the wrong VPC's endpoint shows.
fn endpoint_mac(vni: u32, ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, (vni >> 8) as u8, vni as u8, o[1], o[2], o[3]])
}

#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("BPF_PROG_TEST_RUN of {program}: {source}")]
    TestRun {
        program: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
}

/// What a fuzz run found.
#[derive(Debug, Default)]
pub struct FuzzReport {
    pub packets: u64,
    pub seed: u64,
    pub seconds: f64,
    /// Packets per verdict, per program.
    pub transit_verdicts: BTreeMap<&'static str, u64>,
    pub egress_verdicts: BTreeMap<&'static str, u64>,
    /// Packets per reason counter.
    pub reasons: BTreeMap<&'static str, u64>,
    /// Every property violated (the first ones, with the packet in hex).
    pub violations: Vec<String>,
    pub violation_count: u64,
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} packets (seed {:#x}) in {:.1} s, {:.0} packets/s; {} violations",
            self.packets,
            self.seed,
            self.seconds,
            self.packets as f64 / self.seconds.max(1e-9),
            self.violation_count
        )?;
        for (program, verdicts) in [
            ("transit", &self.transit_verdicts),
            ("egress", &self.egress_verdicts),
        ] {
            let list: Vec<String> = verdicts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            writeln!(f, "  {program}: {}", list.join(", "))?;
        }
        writeln!(f, "  reasons:")?;
        for (reason, n) in &self.reasons {
            writeln!(f, "    {reason:<32} {n}")?;
        }
        for v in &self.violations {
            writeln!(f, "  VIOLATION: {v}")?;
        }
        Ok(())
    }
}

/// splitmix64: small, seedable, good enough to pick mutations; a run is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The fabric as this host sees it: VPC A (not divided here) and VPC B (divided here) share
/// 10.0.0.0/24, which this host bounces in both; each has an endpoint at TWIN on this host.
fn desired() -> DesiredState {
    let mut state = DesiredState {
        host: Some(HostConfig {
            ip: SELF,
            mac: SELF_MAC,
            underlay_mtu: 1500,
            underlay_ifindex: UNDERLAY_IFINDEX,
        }),
        ..DesiredState::default()
    };
    for host in [PEER, EP_HOST, BOUNCER, OUTSIDER]
        .into_iter()
        .chain(DIVIDERS)
    {
        state.hosts.insert(host, host_mac(host));
    }
    let members = |hosts: &[Ipv4Addr]| -> BTreeMap<Ipv4Addr, MemberRoles> {
        hosts
            .iter()
            .map(|h| (*h, MemberRoles::ENDPOINTS))
            .chain([(BOUNCER, MemberRoles::BOUNCER)])
            .collect()
    };
    state.vpcs.insert(
        VNI_A,
        VpcEntry {
            this_host_divides: false,
            dividers: DIVIDERS.to_vec(),
            members: members(&[PEER, EP_HOST]),
        },
    );
    state.vpcs.insert(
        VNI_B,
        VpcEntry {
            this_host_divides: true,
            dividers: vec![SELF],
            members: members(&[PEER, EP_HOST, OUTSIDER]),
        },
    );
    for vni in [VNI_A, VNI_B] {
        state.networks.insert(
            (vni, NET),
            NetworkEntry {
                this_host_bounces: true,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                bouncers: vec![SELF],
            },
        );
        state.networks.insert(
            (vni, Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 1, 0), 24)),
            NetworkEntry {
                this_host_bounces: false,
                gateway: Ipv4Addr::new(10, 0, 1, 1),
                bouncers: vec![BOUNCER],
            },
        );
    }
    let local = |vni, ip, ifindex, kind: EndpointKind| EndpointEntry {
        mac: endpoint_mac(vni, ip),
        kind,
        bypass_decap: kind == EndpointKind::Function,
        host: SELF,
        local_ifindex: (kind != EndpointKind::Scaled).then_some(ifindex),
    };
    let remote = |vni, ip, host| EndpointEntry {
        mac: endpoint_mac(vni, ip),
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host,
        local_ifindex: None,
    };
    let eps = &mut state.endpoints;
    eps.insert((VNI_A, TWIN), local(VNI_A, TWIN, 7, EndpointKind::Simple));
    eps.insert((VNI_B, TWIN), local(VNI_B, TWIN, 8, EndpointKind::Simple));
    eps.insert(
        (VNI_A, BYPASS),
        local(VNI_A, BYPASS, 9, EndpointKind::Function),
    );
    eps.insert(
        (VNI_B, OTHER_LOCAL),
        local(VNI_B, OTHER_LOCAL, 10, EndpointKind::Simple),
    );
    eps.insert(
        (VNI_A, EGRESS_EP),
        local(VNI_A, EGRESS_EP, EGRESS_IFINDEX, EndpointKind::Simple),
    );
    eps.insert(
        (VNI_A, SCALED),
        local(VNI_A, SCALED, 0, EndpointKind::Scaled),
    );
    eps.insert((VNI_A, REMOTE), remote(VNI_A, REMOTE, EP_HOST));
    eps.insert((VNI_B, REMOTE), remote(VNI_B, REMOTE, PEER));
    eps.insert((VNI_A, SENDER), remote(VNI_A, SENDER, PEER));
    state
}

fn tunnel(from: Ipv4Addr, vni: u32) -> Tunnel {
    Tunnel::new(from, SELF, vni).macs(host_mac(from), SELF_MAC)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    InnerFrame::udp(src, dst, 40000, 7777, b"mizar fuzz").build()
}

/// A valid packet of every transit path (and of the refusals that come first).
fn transit_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for vni in [VNI_A, VNI_B] {
        seeds.push(tunnel(PEER, vni).build(&udp(SENDER, TWIN))); // local delivery
        seeds.push(tunnel(PEER, vni).build(&udp(SENDER, REMOTE))); // bouncer
        seeds.push(tunnel(PEER, vni).build(&udp(SENDER, Ipv4Addr::new(10, 0, 1, 9)))); // divider
        seeds.push(tunnel(PEER, vni).build(&udp(SENDER, Ipv4Addr::new(10, 7, 0, 1)))); // to divider / unknown network
        seeds.push(tunnel(PEER, vni).build(&udp(SENDER, Ipv4Addr::new(10, 0, 0, 200)))); // unknown endpoint
        seeds.push(tunnel(OUTSIDER, vni).build(&udp(SENDER, TWIN))); // member of B only
    }
    seeds.push(tunnel(PEER, VNI_A).build(&udp(SENDER, BYPASS)));
    seeds.push(tunnel(PEER, VNI_A).build(&udp(SENDER, SCALED)));
    seeds.push(tunnel(STRANGER, VNI_A).build(&udp(SENDER, TWIN)));
    seeds.push(
        tunnel(PEER, VNI_A).build(&InnerFrame::icmp_echo(SENDER, TWIN, 7, 1, &[0xab; 32]).build()),
    );
    // Bounced: the option names another host; a foreign option and ours.
    let mut bounced = tunnel(BOUNCER, VNI_B);
    bounced.options = vec![
        GeneveOption::new(0x0102, 0x01, &[1, 2, 3, 4, 5, 6, 7, 8]),
        GeneveOption::source_host(EP_HOST),
    ];
    seeds.push(bounced.build(&udp(REMOTE, TWIN)));
    // Not tunnels: the host's own traffic.
    let mut plain = tunnel(PEER, VNI_A);
    plain.dst_port = 53;
    seeds.push(plain.build(&udp(SENDER, TWIN)));
    seeds.push(arp_request(host_mac(PEER), PEER, SELF));
    seeds
}

/// What VPC A's endpoint on the egress veth sends: to every kind of destination.
fn egress_seeds() -> Vec<Vec<u8>> {
    let from = |dst| {
        InnerFrame::udp(EGRESS_EP, dst, 40000, 7777, b"mizar fuzz egress")
            .macs(
                endpoint_mac(VNI_A, EGRESS_EP),
                MacAddr([0x02, 0, 10, 0, 0, 1]),
            )
            .build()
    };
    vec![
        from(TWIN),                       // same host
        from(BYPASS),                     // same host, bypass-decap
        from(REMOTE),                     // known host
        from(Ipv4Addr::new(10, 0, 1, 9)), // bouncer
        from(Ipv4Addr::new(10, 7, 0, 1)), // divider
        from(OTHER_LOCAL),                // VPC B's address: not in A
        arp_request(endpoint_mac(VNI_A, EGRESS_EP), EGRESS_EP, TWIN),
    ]
}

/// The mutations of one seed: every byte changed (to five values), every length cut (raw and
/// with consistent headers).
fn systematic(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..seed.len() {
        let b = seed[i];
        for v in [0x00, 0xff, b ^ 0x01, b ^ 0x80, b.wrapping_add(1)] {
            if v != b {
                let mut m = seed.to_vec();
                m[i] = v;
                out.push(m);
            }
        }
    }
    for len in 0..seed.len() {
        out.push(seed[..len].to_vec());
        out.push(truncate_consistently(seed, len));
    }
    out
}

/// A random mutation of a random seed: a few bytes set or bit-flipped, sometimes cut or
/// extended; now and then bytes no seed looks like.
fn random(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(50) == 0 {
        let len = rng.below(200);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut m = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            break;
        }
        let i = rng.below(m.len());
        if rng.below(2) == 0 {
            m[i] ^= 1 << rng.below(8);
        } else {
            m[i] = rng.next() as u8;
        }
    }
    match rng.below(10) {
        0 => m.truncate(rng.below(m.len() + 1)),
        1 => m.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
        _ => {}
    }
    m
}

/// The offsets the transit program parsed, read again from a packet it accepted.
struct Parsed {
    geneve: usize,
    vni: u32,
    inner: usize,
}

fn parse_accepted(frame: &[u8]) -> Option<Parsed> {
    let ihl = usize::from(*frame.get(14)? & 0x0f) * 4;
    let geneve = 14 + ihl + 8;
    let g = frame.get(geneve..geneve + 8)?;
    let vni = u32::from_be_bytes([0, g[4], g[5], g[6]]);
    let inner = geneve + 8 + usize::from(g[0] & 0x3f) * 4;
    (frame.len() >= inner + 34).then_some(Parsed { geneve, vni, inner })
}

fn ip_at(frame: &[u8], offset: usize) -> Option<Ipv4Addr> {
    let b = frame.get(offset..offset + 4)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

struct Fuzzer {
    dataplane: Dataplane,
    desired: DesiredState,
    local: Vec<(u32, Ipv4Addr)>,
    /// The counters after the last run (nothing else writes them: the next run's "before").
    counters: Counters,
    /// The local endpoints' counters when last read.
    stats: Vec<EndpointStats>,
    report: FuzzReport,
    _pins: PinGuard,
}

/// Removes the instance's pins however the run ends.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = remove_all_pins(&PinLayout::new(&self.0));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The reasons that deliver to a local endpoint (and credit its counters).
const DELIVERIES: [&str; 4] = [
    "deliver_local",
    "deliver_local_bypass",
    "egress_local",
    "egress_local_bypass",
];

/// The first violations are kept whole; the rest only counted.
const KEPT_VIOLATIONS: usize = 20;

impl Fuzzer {
    fn new(seed: u64) -> Result<Self, FuzzError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = PathBuf::from(FUZZ_BPFFS);
        ensure_bpffs(&root)?;
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = remove_all_pins(&PinLayout::new(&dir));
        let pins = PinGuard(dir.clone());
        let mut dataplane = Dataplane::load(&dir)?;
        let desired = desired();
        reconcile(dataplane.maps_mut(), &desired)?;
        let local = desired
            .endpoints
            .iter()
            .filter(|(_, ep)| ep.local_ifindex.is_some())
            .map(|(key, _)| *key)
            .collect();
        let counters = dataplane.maps().counters()?;
        let mut fuzzer = Self {
            dataplane,
            desired,
            local,
            counters,
            stats: Vec::new(),
            report: FuzzReport {
                seed,
                ..FuzzReport::default()
            },
            _pins: pins,
        };
        fuzzer.stats = fuzzer.local_stats()?;
        Ok(fuzzer)
    }

    fn local_stats(&self) -> Result<Vec<EndpointStats>, FuzzError> {
        let maps = self.dataplane.maps();
        self.local
            .iter()
            .map(|(vni, ip)| Ok(maps.endpoint_stats(*vni, *ip)?.unwrap_or_default()))
            .collect()
    }

    fn violation(&mut self, what: String, frame: &[u8]) {
        self.report.violation_count += 1;
        if self.report.violations.len() < KEPT_VIOLATIONS {
            let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
            self.report.violations.push(format!("{what}; packet {hex}"));
        }
    }

    fn run(&mut self, egress: bool, frame: &[u8]) -> Result<(), FuzzError> {
        let program: &Xdp = if egress {
            self.dataplane.egress()
        } else {
            self.dataplane.transit()
        };
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let ctx: Vec<u8> = [0, frame.len() as u32, 0, EGRESS_IFINDEX, 0, 0]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        let mut out = vec![0u8; frame.len() + 256];
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: egress.then_some(&ctx[..]),
            ..Default::default()
        });
        let result = match result {
            Ok(r) => r,
            // The kernel refuses frames shorter than an Ethernet header before the program
            // runs: nothing to check.
            Err(_) if frame.len() < 14 => return Ok(()),
            Err(source) => {
                return Err(FuzzError::TestRun {
                    program: if egress { "mz_egress" } else { "mz_transit" },
                    source: Box::new(source),
                });
            }
        };
        self.report.packets += 1;
        out.truncate(result.data_size_out as usize);
        let verdict = result.return_value;
        let verdicts = if egress {
            &mut self.report.egress_verdicts
        } else {
            &mut self.report.transit_verdicts
        };
        *verdicts.entry(verdict_name(verdict)).or_default() += 1;
        let counters = self.dataplane.maps().counters()?;
        let delta = counters.since(&self.counters);
        self.counters = counters;
        // Endpoint counters (two syscalls an endpoint) are read after every delivery, and
        // after every 1024th packet to catch a credit without one.
        let delivers = delta
            .nonzero_reasons()
            .any(|(info, _)| DELIVERIES.contains(&info.name));
        let credited: Vec<(u32, Ipv4Addr)> = if delivers || self.report.packets.is_multiple_of(1024)
        {
            let stats = self.local_stats()?;
            let credited = self
                .local
                .iter()
                .zip(self.stats.iter().zip(&stats))
                .filter(|(_, (b, a))| a.rx_packets != b.rx_packets)
                .map(|(key, _)| *key)
                .collect();
            self.stats = stats;
            credited
        } else {
            Vec::new()
        };
        let problems = self.check(egress, frame, &out, verdict, &delta, &credited);
        for p in problems {
            self.violation(
                format!(
                    "{}: {p} (verdict {})",
                    if egress { "egress" } else { "transit" },
                    verdict_name(verdict)
                ),
                frame,
            );
        }
        Ok(())
    }

    /// Every property of one result; what is wrong, if anything.
    fn check(
        &mut self,
        egress: bool,
        input: &[u8],
        output: &[u8],
        verdict: u32,
        delta: &Counters,
        credited: &[(u32, Ipv4Addr)],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let moved: Vec<_> = delta.nonzero_reasons().collect();
        let [(info, value)] = moved[..] else {
            let names: Vec<_> = moved
                .iter()
                .map(|(i, v)| format!("{} x{}", i.name, v.packets))
                .collect();
            problems.push(format!(
                "{} reasons counted: [{}]",
                moved.len(),
                names.join(", ")
            ));
            return problems;
        };
        *self.report.reasons.entry(info.name).or_default() += 1;
        if value.packets != 1 {
            problems.push(format!("{} counted {} packets", info.name, value.packets));
        }
        let (expected_verdict, expected_stage) = reason_outcome(info.name);
        if verdict != expected_verdict {
            problems.push(format!(
                "reason {} with verdict {}",
                info.name,
                verdict_name(verdict)
            ));
        }
        if !egress {
            let stages: Vec<Stage> = STAGES
                .iter()
                .copied()
                .filter(|s| delta.stage(*s).packets != 0)
                .collect();
            if stages != [expected_stage] {
                problems.push(format!("reason {} counted in stages {stages:?}", info.name));
            }
        }
        if !matches!(verdict, XDP_DROP | XDP_PASS | XDP_TX | XDP_REDIRECT) {
            problems.push("a verdict the programs never mean".to_owned());
        }
        match (egress, info.name) {
            (false, name) if name.starts_with("pass_") && output != input => {
                problems.push("a packet passed to the stack was changed".to_owned())
            }
            (false, "bouncer_forward" | "divider_forward" | "to_divider") => {
                self.check_forwarded(input, output, &mut problems)
            }
            (false, "deliver_local") => {
                self.check_delivered(input, output, false, credited, &mut problems)
            }
            (false, "deliver_local_bypass") => {
                self.check_delivered(input, output, true, credited, &mut problems)
            }
            (true, name) => self.check_egress(name, input, output, credited, &mut problems),
            _ => {
                if !credited.is_empty() {
                    problems.push(format!(
                        "endpoints {credited:?} credited without a delivery"
                    ));
                }
            }
        }
        problems
    }

    fn known_host(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.desired.hosts.get(&ip).copied()
    }

    fn check_forwarded(&self, input: &[u8], output: &[u8], problems: &mut Vec<String>) {
        let Some(parsed) = parse_accepted(input) else {
            problems.push("forwarded a packet that does not parse".to_owned());
            return;
        };
        let (Some(src), Some(dst)) = (ip_at(output, 26), ip_at(output, 30)) else {
            problems.push("forwarded output too short".to_owned());
            return;
        };
        match self.known_host(dst) {
            None => problems.push(format!("forwarded to {dst}, no host of the topology")),
            Some(mac) if output[..6] != mac.0 => {
                problems.push(format!("forwarded to {dst} with another MAC"))
            }
            Some(_) => {}
        }
        if src != SELF {
            problems.push(format!("forwarded with outer source {src}"));
        }
        if output.get(parsed.geneve..) != input.get(parsed.geneve..) {
            problems.push("forwarding changed the Geneve header or what it carries".to_owned());
        }
    }

    fn check_delivered(
        &self,
        input: &[u8],
        output: &[u8],
        bypass: bool,
        credited: &[(u32, Ipv4Addr)],
        problems: &mut Vec<String>,
    ) {
        let Some(parsed) = parse_accepted(input) else {
            problems.push("delivered a packet that does not parse".to_owned());
            return;
        };
        let Some(dst) = ip_at(input, parsed.inner + 30) else {
            problems.push("delivered a packet with no inner destination".to_owned());
            return;
        };
        let key = (parsed.vni, dst);
        match self.desired.endpoints.get(&key) {
            Some(ep) if ep.local_ifindex.is_some() && ep.bypass_decap == bypass => {
                if bypass {
                    if output != input {
                        problems.push("a bypass-decap delivery changed the packet".to_owned());
                    }
                } else if output.get(..6) != Some(&ep.mac.0[..])
                    || output.get(6..) != input.get(parsed.inner + 6..)
                {
                    problems.push(format!(
                        "delivered frame is not the inner frame addressed to {dst} of VNI {}",
                        parsed.vni
                    ));
                }
            }
            _ => problems.push(format!(
                "delivered for {dst} of VNI {}, no such endpoint here",
                parsed.vni
            )),
        }
        if credited != [key] {
            problems.push(format!(
                "delivery for {dst} of VNI {} credited {credited:?}",
                parsed.vni
            ));
        }
    }

    fn check_egress(
        &self,
        reason: &str,
        input: &[u8],
        output: &[u8],
        credited: &[(u32, Ipv4Addr)],
        problems: &mut Vec<String>,
    ) {
        let dst = ip_at(input, 30);
        match reason {
            "egress_local" => {
                let key = dst.map(|d| (VNI_A, d));
                match key.and_then(|k| self.desired.endpoints.get(&k)) {
                    Some(ep) if output.get(..6) == Some(&ep.mac.0[..]) => {}
                    _ => problems.push(format!("local delivery for {dst:?} outside VPC A")),
                }
                if key.is_none_or(|k| credited != [k]) {
                    problems.push(format!("local delivery credited {credited:?}"));
                }
            }
            "egress_local_bypass"
            | "egress_to_host"
            | "egress_to_learned_host"
            | "egress_to_bouncer"
            | "egress_to_divider" => {
                let Some(parsed) = parse_accepted(output) else {
                    problems.push("encapsulated output does not parse".to_owned());
                    return;
                };
                if parsed.vni != VNI_A {
                    problems.push(format!("sent into VNI {} for VPC A's endpoint", parsed.vni));
                }
                let outer_dst = ip_at(output, 30);
                let to_self = reason == "egress_local_bypass";
                match outer_dst {
                    Some(d) if to_self && d == SELF => {}
                    Some(d) if !to_self && self.known_host(d).is_some() => {}
                    other => problems.push(format!("encapsulated to {other:?}")),
                }
                if output.get(parsed.inner..) != Some(input) {
                    problems.push("encapsulation changed the frame it carries".to_owned());
                }
                if output.get(20) != Some(&0x40) {
                    problems.push("outer header without DF".to_owned());
                }
                let expected: Vec<(u32, Ipv4Addr)> = match (to_self, dst) {
                    (true, Some(d)) => vec![(VNI_A, d)],
                    _ => Vec::new(),
                };
                if credited != expected {
                    problems.push(format!("encapsulation credited {credited:?}"));
                }
            }
            _ => {
                if !credited.is_empty() {
                    problems.push(format!("endpoints {credited:?} credited by {reason}"));
                }
            }
        }
    }
}

/// Runs `packets` packets (at least one pass of the systematic mutations of every seed, which
/// comes first), from `seed`.
pub fn run(packets: u64, seed: u64) -> Result<FuzzReport, FuzzError> {
    run_with(packets, seed, |_| Ok(()))
}

/// [`run`], after `prepare` had the configured instance's pins (a test uses it to corrupt the
/// maps behind the checker's back, and sees the checker catch it).
pub fn run_with(
    packets: u64,
    seed: u64,
    prepare: impl FnOnce(&PinLayout) -> Result<(), FuzzError>,
) -> Result<FuzzReport, FuzzError> {
    let mut fuzzer = Fuzzer::new(seed)?;
    prepare(fuzzer.dataplane.pins())?;
    let mut rng = Rng(seed);
    let start = Instant::now();
    let transit = transit_seeds();
    let egress = egress_seeds();
    // Frames shorter than an Ethernet header never reach a program (the kernel refuses them):
    // only the packets that ran count.
    'systematic: for (is_egress, seeds) in [(false, &transit), (true, &egress)] {
        for s in seeds.iter() {
            for frame in std::iter::once(s.clone()).chain(systematic(s)) {
                if fuzzer.report.packets >= packets {
                    break 'systematic;
                }
                fuzzer.run(is_egress, &frame)?;
            }
        }
    }
    while fuzzer.report.packets < packets {
        // Transit carries most of the logic: three packets in four.
        let is_egress = rng.below(4) == 0;
        let frame = random(&mut rng, if is_egress { &egress } else { &transit });
        fuzzer.run(is_egress, &frame)?;
    }
    let mut report = fuzzer.report;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
