//! `mizar` with the data plane up follows a change of this host's underlay interface.

mod common;

use std::{path::Path, process::Output};

use common::netns::NetNs;

/// Runs the real `mizar` inside `ns`, with an instance's state and pin directories.
fn mizar_in(ns: &mizar::lab::NetNs, state: &Path, pins: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "--state-dir",
        state.to_str().unwrap(),
        "--pin-dir",
        pins.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    ns.output(env!("CARGO_BIN_EXE_mizar"), &all)
        .unwrap_or_else(|err| panic!("{err}"))
}

/// [`mizar_in`], which must succeed; its standard output.
fn mizar_ok(ns: &mizar::lab::NetNs, state: &Path, pins: &Path, args: &[&str]) -> String {
    let out = mizar_in(ns, state, pins, args);
    assert!(
        out.status.success(),
        "mizar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn transit_follows_a_new_underlay_interface() {
    common::require_root();
    common::ensure_test_bpffs();
    let state = tempfile::tempdir().unwrap();
    let pins = format!("{}/underlay-{}", common::TEST_BPFFS, std::process::id());
    let host = NetNs::new("underlay");
    host.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    host.ip(&["link", "add", "ul2", "type", "veth", "peer", "name", "ul3"]);
    let mizar = |args: &[&str]| mizar_ok(&host, state.path(), Path::new(&pins), args);
    let xdp_on = |ifname: &str| {
        host.ip(&["-d", "link", "show", ifname])
            .contains("prog/xdp")
    };

    mizar(&[
        "init",
        "--name",
        "gw1",
        "--ip",
        "192.168.50.1",
        "--mac",
        "02:00:c0:a8:32:01",
        "--interface",
        "ul0",
    ]);
    mizar(&["up"]);
    assert!(xdp_on("ul0") && !xdp_on("ul2"));

    let moved = mizar(&["export"]).replace("interface: ul0", "interface: ul2");
    let doc = state.path().join("moved.yaml");
    std::fs::write(&doc, moved).unwrap();
    let out = mizar(&["apply", "-f", doc.to_str().unwrap()]);
    assert!(
        out.contains("transit attached to ul2") && out.contains("transit detached from ul0"),
        "{out}"
    );
    assert!(
        xdp_on("ul2") && !xdp_on("ul0"),
        "transit moved with the store"
    );
    assert!(mizar(&["status"]).contains("transit on ul2"));
    mizar(&["down"]);
    assert!(!xdp_on("ul2"));
    let _ = std::fs::remove_dir_all(&pins);
}

#[test]
fn pins_that_would_vanish_with_ip_netns_exec_are_refused() {
    common::require_root();
    let state = tempfile::tempdir().unwrap();
    let host = NetNs::new("private-mnt");
    host.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    // Not on any bpffs: `mizar` would have to mount one inside `ip netns exec`'s namespace.
    let pins = state.path().join("pins");
    let run = |args: &[&str]| mizar_in(&host, state.path(), &pins, args);
    let init = run(&[
        "init",
        "--name",
        "gw1",
        "--ip",
        "192.168.50.1",
        "--mac",
        "02:00:c0:a8:32:01",
        "--interface",
        "ul0",
    ]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let up = run(&["up"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(!up.status.success());
    assert!(
        stderr.contains("private mount namespace") && stderr.contains("mount -t bpf bpf"),
        "{stderr}"
    );
    assert!(
        !host.ip(&["-d", "link", "show", "ul0"]).contains("prog/xdp"),
        "nothing attached"
    );
    assert!(
        !pins.exists(),
        "the refused pin directory is not left behind"
    );

    // The default place, under `ip netns exec`: /sys is the namespace's, with no bpffs in it.
    let sys_pins = Path::new("/sys/fs/bpf/mizar-test-absent/x");
    let up = mizar_in(&host, state.path(), sys_pins, &["up"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(!up.status.success());
    assert!(
        stderr.contains("cannot create the pin directory") && stderr.contains("mount -t bpf bpf"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("(os error").count(),
        1,
        "the cause once: {stderr}"
    );
}

#[test]
fn ep_list_shows_the_counters_of_the_endpoints_hosted_here() {
    use std::{net::Ipv4Addr, time::Duration};

    use mizar::lab::{EndpointSpec, HostSpec, Lab, LabSpec};

    common::require_root();
    let prefix = common::netns::unique_prefix();
    let spec = LabSpec::new(&prefix, "192.168.98.0/24".parse().unwrap())
        .host(HostSpec::new("h1", Ipv4Addr::new(192, 168, 98, 1)))
        .endpoint(EndpointSpec::new(
            "e1",
            "h1",
            100,
            "10.0.0.2/24".parse().unwrap(),
            mizar_db::MacAddr([0x02, 0xee, 0, 0, 0, 2]),
        ))
        .endpoint(EndpointSpec::new(
            "e2",
            "h1",
            100,
            "10.0.0.3/24".parse().unwrap(),
            mizar_db::MacAddr([0x02, 0xee, 0, 0, 0, 3]),
        ));
    let lab = Lab::build(&spec).expect("build the lab");
    let state = tempfile::tempdir().unwrap();
    let pins = spec.instance_pin_dir("h1");
    let host = &lab.hosts()[0];
    let mizar = |args: &[&str]| mizar_ok(&host.ns, state.path(), &pins, args);
    let mac = host.underlay_mac.to_string();
    mizar(&[
        "init",
        "--name",
        "h1",
        "--ip",
        "192.168.98.1",
        "--mac",
        &mac,
        "--interface",
        &host.underlay_ifname,
    ]);
    mizar(&[
        "vpc",
        "add",
        "blue",
        "--vni",
        "100",
        "--cidr",
        "10.0.0.0/16",
    ]);
    mizar(&["net", "add", "blue", "web", "--cidr", "10.0.0.0/24"]);
    mizar(&["bouncer", "add", "blue", "web", "h1"]);
    for ep in lab.endpoints() {
        let (ip, mac) = (ep.ip.addr().to_string(), ep.mac.to_string());
        mizar(&[
            "ep",
            "add",
            "blue",
            &ep.name,
            "--ip",
            &ip,
            "--mac",
            &mac,
            "--host",
            "h1",
            "--veth",
            &ep.host_ifname,
        ]);
    }
    let counters = || -> Vec<(String, Option<u64>, Option<u64>)> {
        let list: serde_json::Value =
            serde_json::from_str(&mizar(&["ep", "list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let c = &e["counters"];
                (
                    e["name"].as_str().unwrap().to_owned(),
                    c["rx_packets"].as_u64(),
                    c["tx_packets"].as_u64(),
                )
            })
            .collect()
    };
    assert!(
        counters()
            .iter()
            .all(|(_, rx, tx)| rx.is_none() && tx.is_none()),
        "down: no counters"
    );

    mizar(&["up"]);
    assert_eq!(
        counters(),
        [
            ("e1".to_owned(), Some(0), Some(0)),
            ("e2".to_owned(), Some(0), Some(0))
        ]
    );
    let exchange = mizar::demo::ping(
        &lab.endpoints()[0].ns,
        Ipv4Addr::new(10, 0, 0, 3),
        3,
        Duration::from_secs(2),
    )
    .expect("ping e1 -> e2");
    assert_eq!(exchange.answered, 3, "{exchange:?}");
    // Three requests from e1 to e2, three replies back; same host, so straight veth to veth.
    assert_eq!(
        counters(),
        [
            ("e1".to_owned(), Some(3), Some(3)),
            ("e2".to_owned(), Some(3), Some(3))
        ]
    );
    let table = mizar(&["ep", "list"]);
    assert!(table.lines().next().unwrap().contains("RX PKTS"), "{table}");
    mizar(&["down"]);
}

/// The one change path with the data plane up: what the kernel could not follow is refused
/// before the store changes; `status` tells when the maps are behind the store and `up`
/// repairs; `up` attaches what exists and the rest follows when its veth appears.
#[test]
fn the_store_never_runs_ahead_of_the_kernel() {
    common::require_root();
    common::ensure_test_bpffs();
    let state = tempfile::tempdir().unwrap();
    let pins = std::path::PathBuf::from(format!(
        "{}/change-{}",
        common::TEST_BPFFS,
        std::process::id()
    ));
    let _cleanup = RemoveOnDrop(pins.clone());
    let host = NetNs::new("change");
    host.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    host.ip(&[
        "link", "add", "ve-a", "type", "veth", "peer", "name", "ve-a-p",
    ]);
    let run = |args: &[&str]| mizar_in(&host, state.path(), &pins, args);
    let mizar = |args: &[&str]| mizar_ok(&host, state.path(), &pins, args);
    let refused = |args: &[&str], message: &str| {
        let before = mizar(&["export"]);
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mizar {args:?} should fail");
        assert!(stderr.contains(message), "mizar {args:?}: {stderr}");
        assert_eq!(
            mizar(&["export"]),
            before,
            "mizar {args:?} changed the store"
        );
    };
    let xdp_on = |ifname: &str| {
        host.ip(&["-d", "link", "show", ifname])
            .contains("prog/xdp")
    };

    mizar(&[
        "init",
        "--name",
        "gw1",
        "--ip",
        "192.168.50.1",
        "--mac",
        "02:00:c0:a8:32:01",
        "--interface",
        "ul0",
    ]);
    mizar(&[
        "host",
        "add",
        "h2",
        "--ip",
        "192.168.50.2",
        "--mac",
        "02:00:c0:a8:32:02",
    ]);
    mizar(&[
        "vpc",
        "add",
        "blue",
        "--vni",
        "100",
        "--cidr",
        "10.0.0.0/16",
    ]);
    mizar(&["net", "add", "blue", "web", "--cidr", "10.0.1.0/24"]);
    mizar(&["bouncer", "add", "blue", "web", "gw1"]);
    let ep = |name: &str, ip: &str, mac: &str, veth: &str| {
        vec![
            "ep".to_owned(),
            "add".into(),
            "blue".into(),
            name.into(),
            "--ip".into(),
            ip.into(),
            "--mac".into(),
            mac.into(),
            "--host".into(),
            "gw1".into(),
            "--veth".into(),
            veth.into(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    mizar(&args(&ep("a", "10.0.1.10", "02:00:0a:00:01:0a", "ve-a")));
    mizar(&["up"]);
    assert!(xdp_on("ul0") && xdp_on("ve-a"));
    assert!(mizar(&["status"]).contains("maps match the store"));

    // What the kernel could not follow is refused, and the store stays as it was.
    refused(
        &["host", "del", "gw1", "--cascade"],
        "removes this host (gw1) from the store while the data plane is up",
    );
    refused(
        &args(&ep("b", "10.0.1.11", "02:00:0a:00:01:0b", "ve-typo")),
        "interface ve-typo does not exist",
    );
    refused(
        &args(&ep("b", "10.0.1.11", "02:00:0a:00:01:0b", "ul0")),
        "is this host's underlay interface",
    );
    // A dry run plans the maps' part too.
    let doc = state.path().join("more.yaml");
    let mut more = mizar_db::Topology::from_yaml(&mizar(&["export"])).unwrap();
    let remote = mizar_db::EndpointSpec {
        name: "remote".into(),
        ip: "10.0.1.20".parse().unwrap(),
        mac: "02:00:0a:00:01:14".parse().unwrap(),
        host: "h2".into(),
        veth: None,
        ..more.vpcs[0].networks[0].endpoints[0].clone()
    };
    more.vpcs[0].networks[0].endpoints.push(remote);
    let more = more.to_yaml().unwrap();
    std::fs::write(&doc, &more).unwrap();
    let dry = mizar(&["apply", "--dry-run", "-f", doc.to_str().unwrap()]);
    assert!(dry.contains("+ endpoint blue/remote"), "{dry}");
    assert!(
        dry.contains("the data plane would change: VPC members: 1 added; endpoints: 1 added"),
        "{dry}"
    );
    assert!(
        !mizar(&["export"]).contains("remote"),
        "a dry run changes nothing"
    );

    // A change interrupted after the store's commit (here: an entry removed behind mizar's
    // back) leaves the maps behind the store: status says so, up repairs.
    let mut maps =
        mizar::dataplane::DataplaneMaps::open(&mizar::dataplane::PinLayout::new(&pins)).unwrap();
    maps.remove_endpoint(100, "10.0.1.10".parse().unwrap())
        .unwrap();
    let status = mizar(&["status"]);
    assert!(status.contains("maps BEHIND the store"), "{status}");
    assert!(status.contains("endpoints: 1 added"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&mizar(&["status", "--json"])).unwrap();
    assert_eq!(json["drift"]["in_sync"], false, "{json}");
    mizar(&["up"]);
    assert!(mizar(&["status"]).contains("maps match the store"));

    // `up` with a veth that does not exist yet: the rest is attached, the endpoint waits,
    // and the first change after its veth appears attaches it.
    mizar(&["down"]);
    mizar(&args(&ep(
        "late",
        "10.0.1.12",
        "02:00:0a:00:01:0c",
        "ve-late",
    )));
    let up = run(&["up"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{stderr}");
    assert!(
        stderr.contains("endpoint late of VPC blue waits for its veth ve-late"),
        "{stderr}"
    );
    assert!(xdp_on("ul0") && xdp_on("ve-a"), "what exists is attached");
    let status = mizar(&["status"]);
    assert!(status.contains("waits for its veth ve-late"), "{status}");
    assert!(status.contains("maps match the store"), "{status}");
    host.ip(&[
        "link",
        "add",
        "ve-late",
        "type",
        "veth",
        "peer",
        "name",
        "ve-late-p",
    ]);
    let out = mizar(&["divider", "add", "blue", "gw1"]);
    assert!(out.contains("egress attached to ve-late"), "{out}");
    assert!(xdp_on("ve-late"));
    assert!(!mizar(&["status"]).contains("waits for its veth"));
    mizar(&["down"]);
}

/// Removes a pin directory when the test ends, passed or failed.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mizar up` on a running data plane loads the programs anew (as an upgraded binary does) and
/// swaps them into the pinned links in place (BPF_LINK_UPDATE): a steady exchange between two
/// endpoints through egress on both veths loses nothing while `up` runs again and again.
#[test]
fn up_replaces_the_programs_without_losing_a_packet() {
    use std::{net::Ipv4Addr, time::Duration};

    use mizar::lab::{EndpointSpec, HostSpec, Lab, LabSpec};

    common::require_root();
    let prefix = common::netns::unique_prefix();
    let spec = LabSpec::new(&prefix, "192.168.97.0/24".parse().unwrap())
        .host(HostSpec::new("h1", Ipv4Addr::new(192, 168, 97, 1)))
        .endpoint(EndpointSpec::new(
            "e1",
            "h1",
            100,
            "10.0.0.2/24".parse().unwrap(),
            mizar_db::MacAddr([0x02, 0xee, 0, 0, 0, 2]),
        ))
        .endpoint(EndpointSpec::new(
            "e2",
            "h1",
            100,
            "10.0.0.3/24".parse().unwrap(),
            mizar_db::MacAddr([0x02, 0xee, 0, 0, 0, 3]),
        ));
    let lab = Lab::build(&spec).expect("build the lab");
    let state = tempfile::tempdir().unwrap();
    let pins = spec.instance_pin_dir("h1");
    let host = &lab.hosts()[0];
    let mizar = |args: &[&str]| mizar_ok(&host.ns, state.path(), &pins, args);
    let mac = host.underlay_mac.to_string();
    mizar(&[
        "init",
        "--name",
        "h1",
        "--ip",
        "192.168.97.1",
        "--mac",
        &mac,
        "--interface",
        &host.underlay_ifname,
    ]);
    mizar(&[
        "vpc",
        "add",
        "blue",
        "--vni",
        "100",
        "--cidr",
        "10.0.0.0/16",
    ]);
    mizar(&["net", "add", "blue", "web", "--cidr", "10.0.0.0/24"]);
    mizar(&["bouncer", "add", "blue", "web", "h1"]);
    for ep in lab.endpoints() {
        let (ip, mac) = (ep.ip.addr().to_string(), ep.mac.to_string());
        mizar(&[
            "ep",
            "add",
            "blue",
            &ep.name,
            "--ip",
            &ip,
            "--mac",
            &mac,
            "--host",
            "h1",
            "--veth",
            &ep.host_ifname,
        ]);
    }
    mizar(&["up"]);
    // The id of the XDP program the kernel runs on an interface of the host.
    let prog_id = |ifname: &str| -> String {
        let link = host.ns.ip(&["-d", "link", "show", "dev", ifname]).unwrap();
        let mut words = link.split_whitespace().skip_while(|w| *w != "prog/xdp");
        assert_eq!(
            words.nth(1),
            Some("id"),
            "no XDP program on {ifname}: {link}"
        );
        words.next().unwrap().to_owned()
    };
    let veths: Vec<&str> = lab
        .endpoints()
        .iter()
        .map(|e| e.host_ifname.as_str())
        .collect();
    let before: Vec<String> = veths.iter().map(|v| prog_id(v)).collect();
    let e1 = &lab.endpoints()[0];
    let e2_ip = Ipv4Addr::new(10, 0, 0, 3);
    // Warm up (neighbour entries), then measure.
    let warm = mizar::demo::ping(&e1.ns, e2_ip, 3, Duration::from_secs(1)).unwrap();
    assert_eq!(warm.answered, 3, "{warm:?}");

    // Batches of echo requests (each waits up to a second for its reply) until `up` has run
    // five times.
    const UPS: usize = 5;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent, answered) = std::thread::scope(|scope| {
        let pinger = scope.spawn(|| {
            let (mut sent, mut answered) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = mizar::demo::ping(&e1.ns, e2_ip, 500, Duration::from_secs(1)).unwrap();
                sent += batch.sent;
                answered += batch.answered;
            }
            (sent, answered)
        });
        {
            // Stops the pinger however this block ends (a failed `up` panics).
            let _stop = StopOnDrop(&stop);
            for _ in 0..UPS {
                let out = mizar(&["up"]);
                assert!(out.contains("egress attached to"), "{out}");
            }
        }
        pinger.join().unwrap()
    });
    println!("{sent} echo requests while `mizar up` ran {UPS} times: {answered} answered");
    assert!(sent >= 1000, "the exchange was too short to tell: {sent}");
    assert_eq!(
        answered, sent,
        "packets lost while the programs were replaced"
    );
    // Counted at the other end too: e2 received every request (and the warm-up).
    let list: serde_json::Value = serde_json::from_str(&mizar(&["ep", "list", "--json"])).unwrap();
    let e2 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "e2")
        .unwrap();
    assert_eq!(e2["counters"]["rx_packets"], u64::from(sent) + 3, "{e2}");
    let after: Vec<String> = veths.iter().map(|v| prog_id(v)).collect();
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old, new, "the program was replaced by the one `up` loaded");
    }
    let status = mizar(&["status"]);
    assert!(
        status.contains("egress on ") && status.contains("transit on "),
        "{status}"
    );
    mizar(&["down"]);
}

struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A lab of one host, h1 at 192.168.`subnet`.1, its instance's state and pins, and workload
/// namespaces for the endpoints it plumbs.
struct OneHost {
    prefix: String,
    lab: mizar::lab::Lab,
    state: tempfile::TempDir,
    pins: std::path::PathBuf,
}

impl OneHost {
    fn new(subnet: u8) -> Self {
        use mizar::lab::{HostSpec, Lab, LabSpec};

        common::require_root();
        let prefix = common::netns::unique_prefix();
        let underlay = format!("192.168.{subnet}.0/24").parse().unwrap();
        let spec = LabSpec::new(&prefix, underlay).host(HostSpec::new(
            "h1",
            std::net::Ipv4Addr::new(192, 168, subnet, 1),
        ));
        Self {
            lab: Lab::build(&spec).expect("build the lab"),
            state: tempfile::tempdir().unwrap(),
            pins: spec.instance_pin_dir("h1"),
            prefix,
        }
    }

    fn host(&self) -> &mizar::lab::LabHost {
        &self.lab.hosts()[0]
    }

    /// A namespace for an endpoint, removed with the test.
    fn workload(&self, role: &str) -> mizar::lab::NetNs {
        mizar::lab::NetNs::create(&format!("{}-{role}", self.prefix)).unwrap()
    }
}

/// `ep add --netns` makes and plumbs the endpoint's veth pair (address, MAC, route, MTU,
/// offloads) so that it talks at once, before and after `up`; `ep del` removes the pair; what
/// it cannot do is refused with nothing left behind.
#[test]
fn ep_add_netns_plumbs_the_endpoint_and_ep_del_removes_it() {
    use std::{net::Ipv4Addr, time::Duration};

    use mizar::lab::{DEFAULT_UNDERLAY_MTU, Feature};

    let one = OneHost::new(97);
    let (host, pins, state) = (one.host(), &one.pins, &one.state);
    let run = |args: &[&str]| mizar_in(&host.ns, state.path(), pins, args);
    let mizar = |args: &[&str]| mizar_ok(&host.ns, state.path(), pins, args);
    let host_links = || host.ns.ip(&["-o", "link", "show"]).unwrap();
    let (w1, w2, w3) = (one.workload("w1"), one.workload("w2"), one.workload("w3"));

    mizar(&[
        "init",
        "--name",
        "h1",
        "--ip",
        "192.168.97.1",
        "--mac",
        &host.underlay_mac.to_string(),
        "--interface",
        &host.underlay_ifname,
    ]);
    mizar(&[
        "host",
        "add",
        "h2",
        "--ip",
        "192.168.97.2",
        "--mac",
        "02:aa:00:00:00:02",
    ]);
    mizar(&[
        "vpc",
        "add",
        "blue",
        "--vni",
        "100",
        "--cidr",
        "10.0.0.0/16",
    ]);
    mizar(&["net", "add", "blue", "web", "--cidr", "10.0.0.0/24"]);
    mizar(&["bouncer", "add", "blue", "web", "h1"]);
    let add = |name: &str, ip: &str, mac: &str, host: &str, veth: &str, netns: &str| {
        run(&[
            "ep", "add", "blue", name, "--ip", ip, "--mac", mac, "--host", host, "--veth", veth,
            "--netns", netns,
        ])
    };
    let succeeded = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Down: plumbed now, attached by `up`.
    let said = succeeded(add(
        "w1",
        "10.0.0.2",
        "02:ee:00:00:00:02",
        "h1",
        "vw1",
        w1.name(),
    ));
    assert!(said.contains("plumbed into network namespace"), "{said}");
    mizar(&["up"]);
    // `up` pins the egress program it verified: a change attaches that one to a new veth
    // without loading the programs again.
    assert!(pins.join("programs/egress").exists());
    // Up: egress attaches to the new pair as the change commits.
    let said = succeeded(add(
        "w2",
        "10.0.0.3",
        "02:ee:00:00:00:03",
        "h1",
        "vw2",
        w2.name(),
    ));
    assert!(said.contains("attached to vw2"), "{said}");

    let endpoint_mtu = (u32::from(DEFAULT_UNDERLAY_MTU) - 58).to_string();
    for (ns, ip, mac) in [
        (&w1, "10.0.0.2/24", "02:ee:00:00:00:02"),
        (&w2, "10.0.0.3/24", "02:ee:00:00:00:03"),
    ] {
        let link = ns.ip(&["-o", "link", "show", "eth0"]).unwrap();
        assert!(link.contains(&format!("mtu {endpoint_mtu} ")), "{link}");
        assert!(link.contains(mac) && link.contains("UP"), "{link}");
        let addr = ns.ip(&["-o", "-4", "addr", "show", "eth0"]).unwrap();
        assert!(addr.contains(ip), "{addr}");
        let route = ns.ip(&["route", "show", "default"]).unwrap();
        assert!(route.contains("via 10.0.0.1 dev eth0"), "{route}");
        assert!(!ns.feature("eth0", Feature::TxChecksum).unwrap());
        assert!(ns.feature("eth0", Feature::Gro).unwrap());
    }
    for (from, to) in [
        (&w1, Ipv4Addr::new(10, 0, 0, 3)),
        (&w2, Ipv4Addr::new(10, 0, 0, 2)),
    ] {
        let exchange =
            mizar::demo::ping(from, to, 3, Duration::from_secs(2)).expect("ping between the two");
        assert_eq!(
            exchange.answered,
            3,
            "{} -> {to}: {exchange:?}",
            from.name()
        );
    }

    // Refused, and nothing is left: no endpoint, no interface on either side.
    let endpoints_before = mizar(&["ep", "list", "--json"]);
    let links_before = host_links();
    let refusals: [(&[&str], &str); 6] = [
        (
            &[
                "w3",
                "10.0.0.4",
                "02:ee:00:00:00:04",
                "h1",
                "vw3",
                "no-such-ns",
            ],
            "ip netns add no-such-ns",
        ),
        (
            &[
                "w3",
                "10.0.0.4",
                "02:ee:00:00:00:04",
                "h1",
                "vw1",
                w3.name(),
            ],
            "already exists",
        ),
        (
            &[
                "w3",
                "10.0.0.4",
                "02:ee:00:00:00:04",
                "h2",
                "vw3",
                w3.name(),
            ],
            "run the command there",
        ),
        (
            &[
                "w3",
                "10.0.0.4",
                "02:ee:00:00:00:04",
                "h1",
                "vw3",
                w1.name(),
            ],
            "already has an interface eth0",
        ),
        // Plumbed, then refused by the store (the address is w1's): the pair is removed.
        (
            &[
                "w3",
                "10.0.0.2",
                "02:ee:00:00:00:04",
                "h1",
                "vw3",
                w3.name(),
            ],
            "10.0.0.2",
        ),
        (
            &[
                "w3",
                "10.0.0.4",
                "02:ee:00:00:00:04",
                "h1",
                "a-veth-name-too-long",
                w3.name(),
            ],
            "longer than Linux takes",
        ),
    ];
    for (args, hint) in refusals {
        let out = add(args[0], args[1], args[2], args[3], args[4], args[5]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
        assert_eq!(
            mizar(&["ep", "list", "--json"]),
            endpoints_before,
            "{args:?}"
        );
        assert_eq!(host_links(), links_before, "{args:?}");
        let inside = w3.ip(&["-o", "link", "show"]).unwrap();
        assert!(!inside.contains("eth0"), "{args:?}: {inside}");
    }
    let out = run(&[
        "ep",
        "add",
        "blue",
        "w3",
        "--ip",
        "10.0.0.4",
        "--mac",
        "02:ee:00:00:00:04",
        "--host",
        "h1",
        "--netns",
        w3.name(),
    ]);
    assert!(!out.status.success(), "--netns without --veth was accepted");

    // `ep del` lets go of the pair, then removes it; an endpoint plumbed by hand keeps its veth.
    let said = mizar(&["ep", "del", "blue", "w2"]);
    assert!(said.contains("egress detached from vw2"), "{said}");
    assert!(!host_links().contains("vw2"), "{}", host_links());
    assert!(!w2.ip(&["-o", "link", "show"]).unwrap().contains("eth0"));
    mizar(&["ep", "del", "blue", "w1"]);
    assert!(!host_links().contains("vw1"), "{}", host_links());
    mizar(&["down"]);
    assert!(
        !pins.join("programs").exists(),
        "down leaves the program pin"
    );
}

/// A topology document plumbs the endpoints of this host it gives a namespace (`netns`), as
/// `ep add --netns` does: `apply` makes the pairs before the store changes, exports them back,
/// re-applies without touching them, refuses what it cannot plumb with nothing left behind, and
/// removes a pair with its endpoint.
#[test]
fn apply_plumbs_the_namespaces_a_document_names_and_removes_them_with_their_endpoints() {
    use std::{net::Ipv4Addr, time::Duration};

    let one = OneHost::new(96);
    let (host, pins, state) = (one.host(), &one.pins, &one.state);
    let run = |args: &[&str]| mizar_in(&host.ns, state.path(), pins, args);
    let mizar = |args: &[&str]| mizar_ok(&host.ns, state.path(), pins, args);
    let host_links = || host.ns.ip(&["-o", "link", "show"]).unwrap();
    let (w1, w2) = (one.workload("w1"), one.workload("w2"));
    let document = |extra: &str, with_w2: bool| {
        let w2_line = if with_w2 {
            format!(
                "      - {{ name: w2, ip: 10.0.0.3, mac: '02:ee:00:00:00:03', host: h1, veth: vw2, netns: {} }}\n",
                w2.name()
            )
        } else {
            String::new()
        };
        format!(
            "this-host: h1\nhosts:\n  - {{ name: h1, ip: 192.168.96.1, mac: '{}', interface: {} }}\n\
             vpcs:\n  - name: blue\n    vni: 100\n    cidr: 10.0.0.0/16\n    networks:\n\
             \x20     - name: web\n        cidr: 10.0.0.0/24\n        bouncers: [h1]\n        endpoints:\n\
             \x20     - {{ name: w1, ip: 10.0.0.2, mac: '02:ee:00:00:00:02', host: h1, veth: vw1, netns: {} }}\n\
             {w2_line}{extra}",
            host.underlay_mac,
            host.underlay_ifname,
            w1.name()
        )
        .replace("\n      - { name: w", "\n          - { name: w")
    };
    let apply = |text: &str| {
        let path = state.path().join("fabric.yaml");
        std::fs::write(&path, text).unwrap();
        run(&["apply", "--prune", "-f", path.to_str().unwrap()])
    };
    let succeeded = |out: Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };

    succeeded(apply(&document("", true)));
    for (ns, ip) in [(&w1, "10.0.0.2/24"), (&w2, "10.0.0.3/24")] {
        let addr = ns.ip(&["-o", "-4", "addr", "show", "eth0"]).unwrap();
        assert!(addr.contains(ip), "{addr}");
    }
    let exported = mizar(&["export"]);
    assert!(
        exported.contains(&format!("netns: {}", w1.name())),
        "{exported}"
    );
    mizar(&["up"]);
    let exchange = mizar::demo::ping(&w1, Ipv4Addr::new(10, 0, 0, 3), 3, Duration::from_secs(2))
        .expect("ping w1 -> w2");
    assert_eq!(exchange.answered, 3, "{exchange:?}");
    // The same document again: nothing to plumb, nothing to change.
    succeeded(apply(&document("", true)));
    assert!(host_links().contains("vw1") && host_links().contains("vw2"));

    // What cannot be plumbed is refused, and nothing is left behind.
    let (endpoints_before, links_before) = (mizar(&["ep", "list", "--json"]), host_links());
    let w3 = "          - { name: w3, ip: 10.0.0.4, mac: '02:ee:00:00:00:04', host: h1, veth: vw3, netns: no-such-ns }\n";
    let out = apply(&document(w3, true));
    assert!(!out.status.success(), "a missing namespace was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("endpoint w3 of VPC blue") && stderr.contains("ip netns add no-such-ns"),
        "{stderr}"
    );
    assert_eq!(mizar(&["ep", "list", "--json"]), endpoints_before);
    assert_eq!(host_links(), links_before);

    // Without w2, its pair goes after the data plane lets go of it; w1's stays.
    let said = succeeded(apply(&document("", false)));
    assert!(
        said.contains("1 removed") && said.contains("egress detached from vw2"),
        "{said}"
    );
    assert!(!host_links().contains("vw2"), "{}", host_links());
    assert!(!w2.ip(&["-o", "link", "show"]).unwrap().contains("eth0"));
    assert!(host_links().contains("vw1"), "{}", host_links());
    mizar(&["down"]);
}
