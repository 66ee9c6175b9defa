//! The lab library (`mizar::lab`) in the kernel: a lab is built as its spec says (namespaces,
//! bridge, veths, addresses, MTUs, offload settings, `mz_pass` where frames are XDP_TX'ed or
//! redirected), carries traffic on its underlay, and leaves nothing behind: not when dropped,
//! not when a build fails half-way, and not when its guard was leaked, once `remove_by_prefix`
//! has run.
//!
//! Needs root, BPF, iproute2 and ethtool (to check the offload settings independently of the
//! ioctls that made them); fails (never skips) without them.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use common::netns::{require_tools, unique_prefix};
use mizar::lab::{
    BRIDGE, DEFAULT_PIN_ROOT, ENDPOINT_IFNAME, EndpointSpec, Feature, HostSpec, Ipv4Net, Lab,
    LabError, LabSpec, MacAddr, UNDERLAY_IFNAME, list_namespaces,
};

const H1_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
const E1_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 2]);
const E2_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 1, 2]);

/// Two hosts, an endpoint on each: the same address in two VPCs, one with a default route.
fn small_spec(prefix: &str) -> LabSpec {
    LabSpec::new(prefix, "192.168.99.0/24".parse().unwrap())
        .host(HostSpec::new("h1", Ipv4Addr::new(192, 168, 99, 1)).with_mac(H1_MAC))
        .host(HostSpec::new("h2", Ipv4Addr::new(192, 168, 99, 2)))
        .endpoint(
            EndpointSpec::new("e1", "h1", 100, "10.0.0.2/24".parse().unwrap(), E1_MAC)
                .with_gateway(Ipv4Addr::new(10, 0, 0, 1)),
        )
        .endpoint(EndpointSpec::new(
            "e2",
            "h2",
            200,
            "10.0.0.2/24".parse().unwrap(),
            E2_MAC,
        ))
}

fn setup() {
    common::require_root();
    require_tools(&[("ip", "iproute2"), ("ethtool", "ethtool")]);
}

/// What a lab consists of outside this process: its namespace names and its pin directory.
fn footprint(lab: &Lab) -> (Vec<String>, PathBuf) {
    let mut names: Vec<String> = lab.namespaces().into_iter().map(str::to_owned).collect();
    names.sort();
    (names, lab.pin_dir().to_owned())
}

fn assert_gone(names: &[String], pin_dir: &std::path::Path) {
    let left: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!pin_dir.exists(), "{} left behind", pin_dir.display());
}

/// `ethtool -k` in the namespace: the value of `feature` on `ifname`.
fn ethtool_feature(ns: &mizar::lab::NetNs, ifname: &str, feature: &str) -> String {
    let features = ns.exec("ethtool", &["-k", ifname]).unwrap();
    let line = features
        .lines()
        .find(|l| l.starts_with(&format!("{feature}:")))
        .unwrap_or_else(|| panic!("ethtool -k {ifname} shows no {feature}:\n{features}"));
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn a_lab_is_built_as_specified_and_gone_when_dropped() {
    setup();
    let prefix = unique_prefix();
    let spec = small_spec(&prefix);
    let lab = Lab::build(&spec).unwrap_or_else(|err| panic!("build the lab: {err}"));
    let (names, pin_dir) = footprint(&lab);

    let expected: Vec<String> = ["e1", "e2", "h1", "h2", "switch"]
        .iter()
        .map(|n| format!("{prefix}-{n}"))
        .collect();
    assert_eq!(names, expected);
    let existing = list_namespaces().unwrap();
    for name in &names {
        assert!(existing.contains(name), "{name} missing: {existing:?}");
    }

    let switch = lab.switch();
    assert_eq!(switch.name(), spec.switch_namespace());
    let bridge = switch.ip(&["-d", "link", "show", BRIDGE]).unwrap();
    assert!(
        bridge.contains("bridge") && bridge.contains("UP"),
        "{bridge}"
    );

    for (host, host_spec) in lab.hosts().iter().zip(&spec.hosts) {
        assert_eq!(host.name, host_spec.name);
        assert_eq!(host.ns.name(), spec.namespace(&host.name));
        // The switch side: a port of the bridge, running mz_pass natively.
        let port = switch
            .ip(&["-d", "link", "show", &host.switch_port])
            .unwrap();
        assert!(port.contains(&format!("master {BRIDGE}")), "{port}");
        assert!(
            port.contains("xdp") && !port.contains("xdpgeneric"),
            "{port}"
        );
        assert!(port.contains("mtu 1500"), "{port}");
        // The host side: address, MAC, MTU; nothing attached (the data plane's transit goes
        // there).
        let ul = host
            .ns
            .ip(&["-d", "addr", "show", UNDERLAY_IFNAME])
            .unwrap();
        assert!(
            ul.contains(&format!("inet {}/24", host_spec.ip)),
            "{}: {ul}",
            host.name
        );
        assert!(ul.contains("mtu 1500") && !ul.contains("xdp"), "{ul}");
        assert_eq!(host.underlay_mac, host_spec.underlay_mac());
        assert!(ul.contains(&host.underlay_mac.to_string()), "{ul}");
        assert_eq!(
            host.underlay_ifindex,
            host.ns.ifindex(UNDERLAY_IFNAME).unwrap()
        );
        assert_eq!(host.underlay_ip, Ipv4Net::new_assert(host_spec.ip, 24));
    }
    assert_eq!(lab.hosts()[0].underlay_mac, H1_MAC);
    assert_eq!(
        lab.hosts()[1].underlay_mac,
        MacAddr([0x02, 0x4d, 192, 168, 99, 2]),
        "derived from the address"
    );

    for (ep, ep_spec) in lab.endpoints().iter().zip(&spec.endpoints) {
        let host = &lab.hosts()[ep.host];
        assert_eq!(host.name, ep_spec.host);
        assert_eq!(
            (ep.vni, ep.ip, ep.mac),
            (ep_spec.vni, ep_spec.ip, ep_spec.mac)
        );
        assert_eq!(ep.ifname, ENDPOINT_IFNAME);
        let eth = ep.ns.ip(&["-d", "addr", "show", ENDPOINT_IFNAME]).unwrap();
        assert!(eth.contains(&format!("inet {}", ep_spec.ip)), "{eth}");
        assert!(eth.contains(&ep_spec.mac.to_string()), "{eth}");
        assert!(eth.contains("mtu 1400"), "{eth}");
        assert!(eth.contains("xdp") && !eth.contains("xdpgeneric"), "{eth}");
        assert_eq!(ep.ifindex, ep.ns.ifindex(ENDPOINT_IFNAME).unwrap());
        // Offloads, as ethtool sees them and as the library reads them back.
        assert_eq!(
            ethtool_feature(&ep.ns, ENDPOINT_IFNAME, "tx-checksumming"),
            "off"
        );
        assert_eq!(
            ethtool_feature(&ep.ns, ENDPOINT_IFNAME, "generic-receive-offload"),
            "on"
        );
        assert!(!ep.ns.feature(ENDPOINT_IFNAME, Feature::TxChecksum).unwrap());
        assert!(ep.ns.feature(ENDPOINT_IFNAME, Feature::Gro).unwrap());
        // The host side of the endpoint's veth, where egress will be attached.
        let host_side = host
            .ns
            .ip(&["-d", "link", "show", &ep.host_ifname])
            .unwrap();
        assert!(
            host_side.contains("mtu 1400") && !host_side.contains("xdp"),
            "{host_side}"
        );
        assert!(host_side.contains(&ep.host_mac.to_string()), "{host_side}");
        assert_eq!(ep.host_ifindex, host.ns.ifindex(&ep.host_ifname).unwrap());
        assert_eq!(ep.host_ifname, format!("v-{}", ep.name));
    }
    let route = lab.endpoints()[0]
        .ns
        .ip(&["route", "show", "default"])
        .unwrap();
    assert!(route.contains("via 10.0.0.1"), "{route}");
    let no_route = lab.endpoints()[1]
        .ns
        .ip(&["route", "show", "default"])
        .unwrap();
    assert!(no_route.trim().is_empty(), "{no_route}");

    // One pin per mz_pass: two bridge ports, two endpoints.
    assert_eq!(pin_dir, PathBuf::from(DEFAULT_PIN_ROOT).join(&prefix));
    let pins = std::fs::read_dir(&pin_dir).unwrap().count();
    assert_eq!(pins, 4, "pins under {}", pin_dir.display());

    // The underlay carries traffic between hosts, through the bridge and mz_pass on its ports.
    // A socket stays in the namespace it was made in: bind each inside its host, then talk.
    let h2 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 99, 2), 7000);
    let bind_in = |host: usize, addr: SocketAddrV4| {
        let _inside = lab.hosts()[host].ns.enter().unwrap();
        let socket = UdpSocket::bind(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket
    };
    let server = bind_in(1, h2);
    let client = bind_in(0, SocketAddrV4::new(Ipv4Addr::new(192, 168, 99, 1), 0));
    client.send_to(b"over the underlay", h2).unwrap();
    let mut buf = [0u8; 64];
    let (len, peer) = server
        .recv_from(&mut buf)
        .expect("h2 receives from h1 through the bridge");
    assert_eq!(&buf[..len], b"over the underlay");
    server.send_to(b"and back", peer).unwrap();
    let (len, _) = client.recv_from(&mut buf).expect("h1 receives the answer");
    assert_eq!(&buf[..len], b"and back");

    drop(lab);
    assert_gone(&names, &pin_dir);
}

#[test]
fn down_reports_and_removes_everything() {
    setup();
    let lab = Lab::build(&small_spec(&unique_prefix())).unwrap();
    let (names, pin_dir) = footprint(&lab);
    lab.down().expect("take the lab down");
    assert_gone(&names, &pin_dir);
}

#[test]
fn a_leaked_lab_is_refused_as_a_base_and_removed_by_its_prefix() {
    setup();
    let prefix = unique_prefix();
    let lab = Lab::build(&small_spec(&prefix)).unwrap();
    let (names, pin_dir) = footprint(&lab);
    // As when the process that built it crashed.
    std::mem::forget(lab);
    let existing = list_namespaces().unwrap();
    assert!(names.iter().all(|n| existing.contains(n)), "{existing:?}");
    assert!(pin_dir.exists());

    let err = Lab::build(&small_spec(&prefix)).unwrap_err();
    assert!(matches!(err, LabError::Exists { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{prefix}-switch")) && message.contains("--down"),
        "{message}"
    );

    let removed = Lab::remove_by_prefix(&prefix).unwrap();
    assert_eq!(removed.namespaces, names);
    assert_eq!(removed.pin_dirs, vec![pin_dir.clone()]);
    assert_gone(&names, &pin_dir);
    assert!(
        Lab::remove_by_prefix(&prefix).unwrap().is_empty(),
        "nothing left the second time"
    );
}

#[test]
fn a_kept_lab_stays_until_removed_by_its_prefix() {
    setup();
    let prefix = unique_prefix();
    let lab = Lab::build(&small_spec(&prefix)).unwrap();
    let (names, pin_dir) = footprint(&lab);
    let port = lab.hosts()[0].switch_port.clone();
    lab.keep();
    let existing = list_namespaces().unwrap();
    assert!(names.iter().all(|n| existing.contains(n)), "{existing:?}");
    // mz_pass stays attached: its link is pinned.
    let link = mizar::lab::run(
        "ip",
        &[
            "-n",
            &format!("{prefix}-switch"),
            "-d",
            "link",
            "show",
            &port,
        ],
    )
    .unwrap();
    assert!(link.contains("xdp"), "{link}");

    let removed = Lab::remove_by_prefix(&prefix).unwrap();
    assert_eq!(removed.namespaces, names);
    assert_gone(&names, &pin_dir);
}

#[test]
fn a_build_that_fails_half_way_leaves_nothing() {
    setup();
    let prefix = unique_prefix();
    // Too large an MTU for native XDP on a veth: the hosts come up, mz_pass on the first
    // endpoint's interface is refused.
    let spec = LabSpec {
        endpoint_mtu: 9000,
        ..small_spec(&prefix)
    };
    let err = Lab::build(&spec).unwrap_err();
    assert!(
        matches!(err, LabError::AttachPass { ref ifname, .. } if ifname == ENDPOINT_IFNAME),
        "{err}"
    );
    assert!(err.to_string().contains("MTU"), "{err}");
    let left = Lab::find(&prefix, std::path::Path::new(DEFAULT_PIN_ROOT)).unwrap();
    assert!(left.is_empty(), "left behind: {}", left.describe());
}

#[test]
fn bad_specs_are_refused_before_anything_is_made() {
    setup();
    let prefix = unique_prefix();
    let mut spec = small_spec(&prefix);
    spec.endpoints[1].host = "h3".into();
    let err = Lab::build(&spec).unwrap_err();
    assert!(err.to_string().contains("no host \"h3\""), "{err}");
    let left = Lab::find(&prefix, std::path::Path::new(DEFAULT_PIN_ROOT)).unwrap();
    assert!(left.is_empty(), "left behind: {}", left.describe());
}
