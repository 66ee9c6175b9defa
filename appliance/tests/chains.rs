//! BPF_PROG_TEST_RUN tests of the function chains at the transit stages: with functions in a
//! stage's chain the packet meets them with the pipeline's decision, and the chain's exit
//! applies that decision exactly as an empty stage does; chains are published as whole
//! generations; counters per function and per stage. Needs root and BPF (CI runs it as root).

mod common;
#[path = "fixtures/transit.rs"]
mod fixture;

use fixture::*;
use mizar::{
    dataplane::{ChainLink, Chains, Stage},
    packet::parse_tunnel,
};
use mizar_ebpf::abi;

fn links(instances: &[u16]) -> Vec<ChainLink> {
    instances
        .iter()
        .map(|&instance| ChainLink {
            instance,
            function: "count".to_owned(),
        })
        .collect()
}

fn chains(world: &World) -> Chains {
    Chains::open(world.instance.dataplane.pins()).expect("open the chains' maps and programs")
}

#[test]
fn a_chain_sees_the_decision_and_the_exit_applies_it_as_an_empty_stage_would() {
    let plain = World::bouncer("chains-plain");
    let chained = World::bouncer("chains-chained");
    let mut c = chains(&chained);
    for stage in [
        Stage::OnXdpRedirect,
        Stage::OnXdpTx,
        Stage::OnXdpPass,
        Stage::OnXdpDrop,
    ] {
        assert!(c.publish(stage, &links(&[1, 2])).unwrap());
    }

    let frames = [
        (
            packet_to(VNI, LOCAL_EP),
            XDP_REDIRECT,
            abi::MZ_DELIVER_LOCAL,
            Stage::OnXdpRedirect,
        ),
        (
            packet_to(VNI, REMOTE_EP),
            XDP_TX,
            abi::MZ_BOUNCER_FORWARD,
            Stage::OnXdpTx,
        ),
        (
            packet_to(VNI_B, LOCAL_EP),
            XDP_DROP,
            abi::MZ_DROP_UNKNOWN_VPC,
            Stage::OnXdpDrop,
        ),
    ];
    for (i, (frame, verdict, reason, stage)) in frames.iter().enumerate() {
        let expected = plain.run(frame);
        expected.expect(*verdict, *reason, *stage);
        let got = chained.run(frame);
        got.expect(*verdict, *reason, *stage);
        assert_eq!(got.output, expected.output, "frame {i}: the same bytes out");
        for instance in [1, 2] {
            let stats = c.function_stats(instance).unwrap();
            assert_eq!(
                (stats.passed, stats.drops()),
                (i as u64 + 1, 0),
                "function {instance} handed on every packet so far"
            );
        }
    }
    // A passed packet reaches the stack unchanged through its chain too.
    chained
        .run(&inner_udp(SENDER_EP, LOCAL_EP))
        .expect_pass(abi::MZ_PASS_NOT_FOR_THIS_HOST);

    let runs: u64 = [
        Stage::OnXdpRedirect,
        Stage::OnXdpTx,
        Stage::OnXdpDrop,
        Stage::OnXdpPass,
    ]
    .iter()
    .map(|s| c.chain_stats(*s).unwrap().runs)
    .sum();
    assert_eq!(runs, 4, "every packet ran its stage's chain once");
    let failed: u64 = [
        Stage::OnXdpRedirect,
        Stage::OnXdpTx,
        Stage::OnXdpDrop,
        Stage::OnXdpPass,
    ]
    .iter()
    .map(|s| c.chain_stats(*s).unwrap().failed)
    .sum();
    assert_eq!(failed, 0);
    // The local endpoint's counters move once per delivery, chain or not.
    let stats = chained
        .instance
        .dataplane
        .maps()
        .endpoint_stats(VNI, LOCAL_EP)
        .unwrap()
        .unwrap();
    assert_eq!(stats.rx_packets, 1);
}

#[test]
fn forwarding_through_a_chain_rewrites_the_outer_headers_once() {
    let world = World::bouncer("chains-forward");
    let mut c = chains(&world);
    c.publish(Stage::OnXdpTx, &links(&[7])).unwrap();
    let frame = packet_to(VNI, REMOTE_EP);
    let run = world.run(&frame);
    run.expect(XDP_TX, abi::MZ_BOUNCER_FORWARD, Stage::OnXdpTx);
    let out = parse_tunnel(&run.output).unwrap();
    assert_eq!(out.ip.destination, EP_HOST.octets());
    assert_eq!(out.ip.source, SELF.octets());
    assert_eq!(out.ip.time_to_live, 63, "TTL decremented once");
    assert!(out.ipv4_checksum_ok);
    assert_eq!(&run.output[..6], &host_mac(EP_HOST).0);
}

#[test]
fn publishing_swaps_whole_generations_and_an_empty_chain_disarms_the_stage() {
    let world = World::bouncer("chains-swap");
    let mut c = chains(&world);
    let stage = Stage::OnXdpRedirect;
    let before = c.live(stage).unwrap();
    assert_eq!(before.generation, None, "no chain published yet");
    assert!(!before.armed);

    assert!(c.publish(stage, &links(&[1, 2])).unwrap());
    let first = c.live(stage).unwrap();
    assert!(first.armed);
    assert_eq!(first.links.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2]);
    assert!(
        !c.publish(stage, &links(&[1, 2])).unwrap(),
        "the same chain again changes nothing"
    );

    assert!(c.publish(stage, &links(&[2, 1])).unwrap());
    let second = c.live(stage).unwrap();
    assert_ne!(second.generation, first.generation, "the other generation");
    assert_eq!(second.seq, first.seq + 1);
    assert_eq!(second.links.iter().map(|l| l.0).collect::<Vec<_>>(), [2, 1]);

    world.run(&packet_to(VNI, LOCAL_EP));
    assert_eq!(c.function_stats(1).unwrap().passed, 1);
    assert_eq!(c.function_stats(2).unwrap().passed, 1);

    // An instance new to the stage starts from zero; one that stays keeps its count.
    c.publish(stage, &links(&[1, 3])).unwrap();
    assert_eq!(c.function_stats(1).unwrap().passed, 1);
    world.run(&packet_to(VNI, LOCAL_EP));
    assert_eq!(c.function_stats(3).unwrap().passed, 1);
    assert_eq!(c.function_stats(2).unwrap().passed, 1, "2 left the chain");

    assert!(c.publish(stage, &[]).unwrap());
    let empty = c.live(stage).unwrap();
    assert!(
        !empty.armed,
        "an empty chain costs nothing: the stage is disarmed"
    );
    assert!(empty.links.is_empty());
    let runs = c.chain_stats(stage).unwrap().runs;
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    assert_eq!(c.chain_stats(stage).unwrap().runs, runs, "no chain ran");
}

#[test]
fn a_chain_holds_sixteen_functions_within_the_tail_call_budget() {
    let world = World::bouncer("chains-long");
    let mut c = chains(&world);
    let all: Vec<u16> = (1..=abi::MZ_MAX_CHAIN as u16).collect();
    c.publish(Stage::OnXdpRedirect, &links(&all)).unwrap();
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    for instance in all {
        assert_eq!(
            c.function_stats(instance).unwrap().passed,
            1,
            "function {instance}"
        );
    }
    assert_eq!(c.chain_stats(Stage::OnXdpRedirect).unwrap().failed, 0);

    let too_many: Vec<u16> = (1..=abi::MZ_MAX_CHAIN as u16 + 1).collect();
    let err = c
        .publish(Stage::OnXdpRedirect, &links(&too_many))
        .unwrap_err();
    assert!(err.to_string().contains("exceed"), "{err}");
}

#[test]
fn a_reload_of_the_programs_is_republished_to_the_new_ones() {
    let mut world = World::bouncer("chains-reload");
    let mut c = chains(&world);
    c.publish(Stage::OnXdpRedirect, &links(&[1])).unwrap();
    // `up` again: new programs are loaded and pinned in place of the running ones.
    let pins = world.instance.dataplane.pins().clone();
    world.instance.dataplane = mizar::dataplane::Dataplane::load(&pins.root).unwrap();
    let mut c = chains(&world);
    assert!(
        !c.is_live(Stage::OnXdpRedirect, &links(&[1])).unwrap(),
        "the chain still runs the previous load's programs"
    );
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    assert!(c.publish(Stage::OnXdpRedirect, &links(&[1])).unwrap());
    assert!(c.is_live(Stage::OnXdpRedirect, &links(&[1])).unwrap());
    world.run(&packet_to(VNI, LOCAL_EP)).expect(
        XDP_REDIRECT,
        abi::MZ_DELIVER_LOCAL,
        Stage::OnXdpRedirect,
    );
    assert_eq!(
        c.function_stats(1).unwrap().passed,
        2,
        "kept across the reload"
    );
}

/// Chains of a VPC and of an endpoint run after the host's, in that order, for that VPC's (and
/// endpoint's) packets only; a stage with scoped chains alone is armed, and disarmed when they
/// go.
#[test]
fn vpc_and_endpoint_chains_run_after_the_hosts_for_their_packets_only() {
    use mizar::dataplane::{DdosMaps, DdosState};
    use std::collections::BTreeMap;

    let mut world = World::bouncer("chains-scoped");
    world.vpc(VNI_B, false, &DIVIDERS);
    world.network(VNI_B, true, &[SELF]);
    world.local_endpoint(
        VNI_B,
        LOCAL_EP,
        mizar::packet::MacAddr([2, 0xbb, 0, 0, 0, 3]),
        8,
        false,
    );
    let mut c = chains(&world);
    let stage = Stage::OnXdpRedirect;
    // Scoped chains only: VPC A's (count, instance 2), LOCAL_EP's of A (ddos, instance 3).
    let scoped: BTreeMap<_, _> = [
        ((stage, VNI, None), links(&[2])),
        (
            (stage, VNI, Some(LOCAL_EP)),
            vec![ChainLink {
                instance: 3,
                function: "ddos".into(),
            }],
        ),
    ]
    .into();
    let slots: BTreeMap<String, u32> = mizar_ebpf::BUILTIN_FUNCTIONS
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.to_owned(), i as u32))
        .collect();
    assert_eq!(c.publish_scoped(&scoped, &slots).unwrap(), 2);
    assert!(
        c.publish(stage, &[]).unwrap(),
        "armed for the scoped chains"
    );
    assert!(c.live(stage).unwrap().armed);
    let packets = |c: &Chains, i: u16| c.function_stats(i).unwrap().packets();

    // A's packet to LOCAL_EP meets both; B's, with the same addresses, neither.
    world
        .run(&packet_to(VNI, LOCAL_EP))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, stage);
    world
        .run(&packet_to(VNI_B, LOCAL_EP))
        .expect(XDP_REDIRECT, abi::MZ_DELIVER_LOCAL, stage);
    assert_eq!((packets(&c, 2), packets(&c, 3)), (1, 1));

    // With a host chain (instance 1) too, the order is host, VPC, endpoint: the endpoint's
    // ddos drops what the two before it counted.
    assert!(c.publish(stage, &links(&[1])).unwrap());
    DdosMaps::open(world.instance.dataplane.pins())
        .unwrap()
        .sync(&DdosState {
            blocks: [(VNI, format!("{SENDER_EP}/32").parse().unwrap())].into(),
            ..DdosState::default()
        })
        .unwrap();
    assert_eq!(world.run(&packet_to(VNI, LOCAL_EP)).verdict, XDP_DROP);
    assert_eq!((packets(&c, 1), packets(&c, 2), packets(&c, 3)), (1, 2, 2));
    assert_eq!(c.function_stats(3).unwrap().drops(), 1);
    assert_eq!(world.run(&packet_to(VNI_B, LOCAL_EP)).verdict, XDP_REDIRECT);
    assert_eq!(
        (packets(&c, 1), packets(&c, 2)),
        (2, 2),
        "B: the host's chain only"
    );

    // The scoped chains go; with the host's emptied too, the stage is disarmed.
    assert_eq!(c.publish_scoped(&BTreeMap::new(), &slots).unwrap(), 2);
    assert!(c.publish(stage, &[]).unwrap());
    assert!(!c.live(stage).unwrap().armed);
    assert_eq!(world.run(&packet_to(VNI, LOCAL_EP)).verdict, XDP_REDIRECT);
    assert_eq!(packets(&c, 2), 2);
}

/// A user's function that changes the decision (ebpf/examples/to_host.c: ports in its map go
/// to the host's stack): the exit applies its verdict, and its counters tell the packets it
/// changed from those it passed on as they came.
#[test]
fn a_function_that_changes_the_decision_is_applied_and_counted_as_changed() {
    let world = World::bouncer("chains-changed");
    let pins = world.instance.dataplane.pins();
    mizar::dataplane::ExternalFunction::load(
        pins,
        mizar_ebpf::EXAMPLE_DECIDING_FUNCTION_OBJECT,
        None,
    )
    .unwrap()
    .pin(pins, "to-host")
    .unwrap();
    let mut chains = chains(&world);
    chains
        .publish(
            Stage::OnXdpRedirect,
            &[
                ChainLink {
                    instance: 1,
                    function: "to-host".into(),
                },
                ChainLink {
                    instance: 2,
                    function: "count".into(),
                },
            ],
        )
        .unwrap();
    let mut ports: aya::maps::HashMap<_, u16, u8> = aya::maps::HashMap::try_from(
        aya::maps::Map::HashMap(aya::maps::MapData::from_pin(pins.map("to_host_ports")).unwrap()),
    )
    .unwrap();
    // The usual packet goes to UDP port 7777.
    let frame = packet_to(VNI, LOCAL_EP);
    let delivered = world.run(&frame);
    assert_eq!(delivered.verdict, XDP_REDIRECT);
    ports
        .insert(u16::from_ne_bytes(7777u16.to_be_bytes()), 1, 0)
        .unwrap();
    let to_host = world.run(&frame);
    assert_eq!(to_host.verdict, XDP_PASS, "the function's decision applied");
    assert_eq!(to_host.output, frame, "passed whole to the host's stack");
    let (changer, next) = (
        chains.function_stats(1).unwrap(),
        chains.function_stats(2).unwrap(),
    );
    assert_eq!(
        (changer.passed, changer.changed),
        (2, 1),
        "two packets passed on, one of them with a new decision"
    );
    assert_eq!(
        (next.passed, next.changed),
        (2, 0),
        "the next function received the new decision and kept it"
    );
}
