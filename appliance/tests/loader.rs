//! The loader's map API against the real kernel: entries appear and disappear exactly, and
//! pinned state outlives the process that wrote it. The single-object changes are a layer over
//! reconcile, so they refuse what reconcile refuses (an endpoint of a VPC the maps do not have).

mod common;

use std::net::Ipv4Addr;

use mizar::dataplane::{
    Dataplane, EndpointEntry, EndpointKind, HostConfig, Ipv4Net, MacAddr, NetworkEntry, VpcEntry,
};

const VNI: u32 = 100;

fn this_host() -> HostConfig {
    HostConfig {
        ip: Ipv4Addr::new(192, 0, 2, 1),
        mac: MacAddr([0x02, 0, 0, 0, 1, 1]),
        underlay_mtu: 1500,
        underlay_ifindex: 3,
    }
}

fn local_endpoint(ifindex: u32) -> EndpointEntry {
    EndpointEntry {
        mac: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host: Ipv4Addr::new(192, 0, 2, 1),
        local_ifindex: Some(ifindex),
    }
}

#[test]
fn endpoint_entries_come_and_go_with_their_counters() {
    let mut instance = common::TestInstance::new("loader-ep");
    let maps = instance.dataplane.maps_mut();
    let ip = Ipv4Addr::new(10, 0, 0, 2);
    let err = maps
        .set_endpoint(VNI, ip, &local_endpoint(7))
        .unwrap_err()
        .to_string();
    assert!(err.contains("VPC 100 is not in the desired state"), "{err}");
    assert_eq!(maps.endpoint(VNI, ip).unwrap(), None, "nothing written");

    maps.set_host_config(&this_host()).unwrap();
    maps.set_vpc(VNI, &VpcEntry::default()).unwrap();
    maps.set_endpoint(VNI, ip, &local_endpoint(7)).unwrap();
    let raw = maps.endpoint(VNI, ip).unwrap().expect("endpoint written");
    assert_eq!(raw.ifindex, 7);
    assert_eq!(
        raw.flags & mizar_ebpf::abi::MZ_EP_LOCAL as u8,
        mizar_ebpf::abi::MZ_EP_LOCAL as u8
    );
    assert_eq!(
        maps.endpoint_stats(VNI, ip).unwrap(),
        Some(Default::default())
    );
    // The same address in another VPC is another endpoint.
    assert_eq!(maps.endpoint(VNI + 1, ip).unwrap(), None);

    maps.remove_endpoint(VNI, ip).unwrap();
    assert_eq!(maps.endpoint(VNI, ip).unwrap(), None);
    assert_eq!(maps.endpoint_stats(VNI, ip).unwrap(), None);
    // Removing what is not there is not an error: reconcile may repeat itself.
    maps.remove_endpoint(VNI, ip).unwrap();
    maps.remove_network(VNI, Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 24))
        .unwrap();
    maps.remove_vpc(VNI).unwrap();
    maps.remove_host(Ipv4Addr::new(192, 0, 2, 9)).unwrap();
}

#[test]
fn invalid_configuration_is_refused_before_the_kernel() {
    let mut instance = common::TestInstance::new("loader-bad");
    let maps = instance.dataplane.maps_mut();
    let err = maps
        .set_vpc(1 << 24, &VpcEntry::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("VNI 16777216 is out of range"), "{err}");
    let net = NetworkEntry {
        this_host_bounces: false,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        bouncers: vec![],
    };
    maps.set_vpc(VNI, &VpcEntry::default()).unwrap();
    let host_bits = Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 7), 24);
    let err = maps
        .set_network(VNI, host_bits, &net)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("host bits set: write it as 10.0.0.0/24"),
        "{err}"
    );
    let many = VpcEntry {
        this_host_divides: false,
        dividers: vec![Ipv4Addr::new(192, 0, 2, 1); 17],
        ..VpcEntry::default()
    };
    let err = maps.set_vpc(VNI, &many).unwrap_err().to_string();
    assert!(
        err.contains("17 dividers of VPC 100 exceed what the data plane holds (16)"),
        "{err}"
    );
    assert!(
        maps.host_config().unwrap().is_none(),
        "nothing was configured"
    );
}

#[test]
fn pinned_maps_keep_their_contents_across_loads() {
    let mut instance = common::TestInstance::new("loader-reload");
    let host = this_host();
    let maps = instance.dataplane.maps_mut();
    maps.set_host_config(&host).unwrap();
    maps.set_vpc(VNI, &VpcEntry::default()).unwrap();
    instance
        .dataplane
        .maps_mut()
        .set_endpoint(VNI, Ipv4Addr::new(10, 0, 0, 2), &local_endpoint(9))
        .unwrap();

    // A second load (a restarted `mizar`) finds the same maps through their pins.
    let reloaded = Dataplane::load(&instance.dir).expect("reload from pins");
    assert_eq!(reloaded.maps().host_config().unwrap(), Some(host));
    assert!(
        reloaded
            .maps()
            .endpoint(VNI, Ipv4Addr::new(10, 0, 0, 2))
            .unwrap()
            .is_some()
    );
}

#[test]
fn attached_programs_outlive_the_process_that_loaded_them_until_detached() {
    use common::netns::{NetNs, NetNsExt, veth_pair};
    use mizar::dataplane::{AttachMode, PinLayout, detach};

    let instance = common::TestInstance::new("loader-persist");
    let host = NetNs::new("persist-host");
    let peer = NetNs::new("persist-peer");
    veth_pair(&host, "underlay0", None, &peer, "wire0", None);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", "underlay0"]);
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "wire0"]);

    // Attach from a data plane that is then dropped, as when `mizar up` exits.
    {
        let mut dataplane = Dataplane::load(&instance.dir).unwrap();
        let _inside = host.enter();
        assert_eq!(
            dataplane.attach_transit("underlay0").unwrap(),
            AttachMode::Native,
            "veth supports native XDP"
        );
        let err = dataplane
            .attach_transit("no-such-if")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-if does not exist"), "{err}");
    }
    let link = host.ip(&["-d", "link", "show", "underlay0"]);
    assert!(link.contains("xdp"), "the program stays attached:\n{link}");

    // It still runs: what the peer sends (ARP, ICMP) reaches the stack through it and is counted.
    let maps = instance.dataplane.maps();
    let before = maps.counters().unwrap();
    peer.try_exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "192.0.2.1"]);
    let seen = maps.counters().unwrap().since(&before);
    assert!(
        seen.packets(mizar_ebpf::abi::MZ_PASS_NOT_CONFIGURED) >= 2,
        "the detached-from-its-loader program saw the traffic: {:?}",
        seen.nonzero_reasons()
            .map(|(i, v)| (i.name, v.packets))
            .collect::<Vec<_>>()
    );

    let pins = PinLayout::new(&instance.dir);
    assert!(detach(&pins, "transit", "underlay0").unwrap());
    let link = host.ip(&["-d", "link", "show", "underlay0"]);
    assert!(!link.contains("xdp"), "detached:\n{link}");
    assert!(
        !detach(&pins, "transit", "underlay0").unwrap(),
        "nothing left to detach"
    );
}

#[test]
fn a_device_without_native_xdp_gets_generic_mode_and_says_so() {
    use common::netns::NetNs;
    use mizar::dataplane::{AttachMode, PinLayout, detach};

    let mut instance = common::TestInstance::new("loader-generic");
    let host = NetNs::new("generic-host");
    // A bridge has no driver XDP hook: native attachment fails, generic must take over.
    host.ip(&["link", "add", "underlay0", "type", "bridge"]);
    host.ip(&["link", "set", "underlay0", "up"]);
    let mode = {
        let _inside = host.enter();
        instance.dataplane.attach_transit("underlay0").unwrap()
    };
    assert_eq!(mode, AttachMode::Generic);
    assert_eq!(mode.to_string(), "generic");
    let link = host.ip(&["-d", "link", "show", "underlay0"]);
    assert!(
        link.contains("xdpgeneric"),
        "attached in generic mode:\n{link}"
    );
    assert!(detach(&PinLayout::new(&instance.dir), "transit", "underlay0").unwrap());
}

#[test]
fn one_link_dump_reports_every_attachment_as_the_per_interface_query_does() {
    use common::netns::NetNs;
    use mizar::dataplane::{AttachMode, xdp_attachment, xdp_attachments};

    let mut instance = common::TestInstance::new("loader-dump");
    let host = NetNs::new("dump-host");
    // Enough links that the dump spans many datagrams; every third gets egress.
    let batch: String = (0..300)
        .map(|i| format!("link add d{i} type veth peer name p{i}\nlink set d{i} up\n"))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), batch).unwrap();
    host.ip(&["-batch", file.path().to_str().unwrap()]);
    host.ip(&["link", "add", "br0", "type", "bridge"]);
    host.ip(&["link", "set", "br0", "up"]);
    let _inside = host.enter();
    for i in (0..300).step_by(3) {
        let mode = instance.dataplane.attach_egress(&format!("d{i}")).unwrap();
        assert_eq!(mode, AttachMode::Native);
    }
    assert_eq!(
        instance.dataplane.attach_transit("br0").unwrap(),
        AttachMode::Generic
    );

    let dumped = xdp_attachments().unwrap();
    let mut names: Vec<&str> = dumped.iter().map(|l| l.ifname.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<String> = (0..300).step_by(3).map(|i| format!("d{i}")).collect();
    expected.push("br0".into());
    expected.sort_unstable();
    assert_eq!(names, expected);
    for link in &dumped {
        assert_eq!(
            xdp_attachment(link.ifindex).unwrap(),
            Some((link.mode, link.prog_id)),
            "{link:?}"
        );
        assert_ne!(link.prog_id, 0, "{link:?}");
    }
}
