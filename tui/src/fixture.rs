//! A fixed fabric with steady traffic, as a data source would sample it: what the dashboard's
//! render tests and the metrics' encoding tests are fed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mizar_db::Topology;

use crate::{
    Sample,
    model::{
        Attached, CaptureSample, CapturedPacket, Count, DataplaneSample, EndpointCounters,
        EndpointRow, FunctionSample, Program, ReasonSample, StageSample, Verdict,
    },
};

pub const TOPOLOGY: &str = r#"
this-host: h1
hosts:
  - { name: h1, ip: 192.168.50.1, mac: "02:00:00:00:00:01", interface: ul0 }
  - { name: h2, ip: 192.168.50.2, mac: "02:00:00:00:00:02" }
  - { name: h3, ip: 192.168.50.3, mac: "02:00:00:00:00:03" }
vpcs:
  - name: blue
    vni: 100
    cidr: 10.0.0.0/16
    dividers: [h2]
    networks:
      - name: web
        cidr: 10.0.1.0/24
        bouncers: [h1]
        endpoints:
          - { name: web1, ip: 10.0.1.10, mac: "02:00:0a:00:01:0a", host: h1, veth: vb1 }
          - { name: web2, ip: 10.0.1.11, mac: "02:00:0a:00:01:0b", host: h3 }
  - name: red
    vni: 200
    cidr: 10.0.0.0/16
    dividers: [h3]
    networks:
      - name: web
        cidr: 10.0.1.0/24
        bouncers: [h2]
        endpoints:
          - { name: web1, ip: 10.0.1.10, mac: "02:00:0b:00:01:0a", host: h1, veth: vr1 }
"#;

fn reason(
    name: &str,
    program: Program,
    stage: Option<&str>,
    verdict: Verdict,
    packets: u64,
) -> ReasonSample {
    ReasonSample {
        name: name.into(),
        description: format!("what {name} means"),
        program,
        stage: stage.map(Into::into),
        verdict,
        count: Count {
            packets,
            bytes: packets * 600,
        },
    }
}

/// The fabric after `seconds` of steady traffic: 1,000 deliveries, 200 forwards, 5 drops a
/// second, and web1 of blue receiving 1,000 packets a second.
pub fn sample(t0: Instant, seconds: u64) -> Sample {
    let topology: Topology = Topology::from_yaml(TOPOLOGY).unwrap();
    let mut endpoints = Vec::new();
    let mut counters = Vec::new();
    for (vpc, net, ep) in topology.endpoints() {
        if ep.host == "h1" {
            let rx = if vpc.name == "blue" { 1_000 } else { 10 };
            counters.push(EndpointCounters {
                row: endpoints.len(),
                rx: Count {
                    packets: rx * seconds,
                    bytes: rx * seconds * 600,
                },
                tx: Count {
                    packets: 20 * seconds,
                    bytes: 20 * seconds * 600,
                },
            });
        }
        endpoints.push(EndpointRow::from_store(vpc, net, ep));
    }
    let s = seconds;
    let dataplane = DataplaneSample {
        attached: Arc::new(vec![
            Attached {
                role: "transit".into(),
                interface: "ul0".into(),
                mode: "native".into(),
            },
            Attached {
                role: "egress".into(),
                interface: "vb1".into(),
                mode: "native".into(),
            },
            Attached {
                role: "egress".into(),
                interface: "vr1".into(),
                mode: "native".into(),
            },
        ]),
        stages: vec![
            StageSample {
                name: "ON_XDP_REDIRECT".into(),
                count: Count {
                    packets: 1_000 * s,
                    bytes: 600_000 * s,
                },
            },
            StageSample {
                name: "ON_XDP_TX".into(),
                count: Count {
                    packets: 200 * s,
                    bytes: 120_000 * s,
                },
            },
            StageSample {
                name: "ON_XDP_DROP".into(),
                count: Count {
                    packets: 5 * s,
                    bytes: 3_000 * s,
                },
            },
            StageSample {
                name: "ON_XDP_PASS".into(),
                count: Count::default(),
            },
            StageSample {
                name: "ON_XDP_SCALED_EP".into(),
                count: Count::default(),
            },
        ],
        reasons: vec![
            reason(
                "deliver_local",
                Program::Transit,
                Some("ON_XDP_REDIRECT"),
                Verdict::Redirect,
                1_000 * s,
            ),
            reason(
                "bouncer_forward",
                Program::Transit,
                Some("ON_XDP_TX"),
                Verdict::Tx,
                200 * s,
            ),
            reason(
                "drop_unknown_source_host",
                Program::Transit,
                Some("ON_XDP_DROP"),
                Verdict::Drop,
                5 * s,
            ),
            reason(
                "pass_not_udp",
                Program::Transit,
                Some("ON_XDP_PASS"),
                Verdict::Pass,
                0,
            ),
            reason(
                "egress_to_host",
                Program::Egress,
                None,
                Verdict::Redirect,
                40 * s,
            ),
        ],
        functions: vec![
            function("ON_XDP_REDIRECT", 1, "count", 1, 1_000 * s, 0),
            function("ON_XDP_REDIRECT", 2, "count", 3, 1_000 * s, 0),
            function("ON_XDP_TX", 1, "count", 2, 200 * s, 0),
            FunctionSample {
                scope: "ep:blue/web1".into(),
                ..function("ON_XDP_TX", 1, "acl", 9, 100 * s, 10 * s)
            },
        ],
    };
    Sample {
        taken: t0 + Duration::from_secs(seconds),
        host: Some("h1".into()),
        store: "/var/lib/mizar/mizar.db".into(),
        root: true,
        dataplane: Some(dataplane),
        warnings: Vec::new(),
        error: None,
        topology: Arc::new(topology),
        endpoints: Arc::new(endpoints.into()),
        counters,
        cost: Duration::from_millis(3),
        capture: None,
    }
}

/// A capture running for `seconds`, with one ping an ACL drops seen at three points.
pub fn capture(seconds: u64) -> CaptureSample {
    let packet = |at_us: u64, point: &str, verdict: Option<&str>, comment: &str| CapturedPacket {
        at: Duration::from_micros(at_us),
        id: 0x1_0000_0000_002a,
        point: point.into(),
        verdict: verdict.map(str::to_owned),
        summary: "192.168.50.2 > 192.168.50.1 geneve vni 100: 10.0.1.11 > 10.0.2.10 icmp echo \
                  request"
            .into(),
        comment: comment.into(),
    };
    CaptureSample {
        running: true,
        points: "transit:entry,redirect:1:before,transit:verdict".into(),
        filter: "vpc blue and icmp".into(),
        file: "/var/lib/mizar/captures/capture-1765152000-000.pcapng".into(),
        captured: 3,
        elapsed: Duration::from_secs(seconds),
        ended: None,
        last: vec![
            packet(0, "ul0:transit:entry", None, "entry vni 100 vpc blue"),
            packet(
                4,
                "ul0:ON_XDP_REDIRECT:acl:before",
                Some("redirect"),
                "stage ON_XDP_REDIRECT verdict redirect reason deliver_local vni 100 vpc blue",
            ),
            packet(
                9,
                "ul0:transit:verdict",
                Some("drop"),
                "stage ON_XDP_REDIRECT verdict drop reason deliver_local vni 100 vpc blue \
                 dropped by acl: denied_by_rule",
            ),
        ],
    }
}

fn function(
    stage: &str,
    position: usize,
    name: &str,
    instance: u16,
    packets: u64,
    dropped: u64,
) -> FunctionSample {
    FunctionSample {
        scope: "host".into(),
        enabled: true,
        stage: stage.into(),
        position,
        function: name.into(),
        instance,
        packets,
        dropped,
        // One packet in 64 timed, at 20 ns each.
        timed: packets / 64,
        ns: packets / 64 * 20,
        changed: 0,
    }
}
