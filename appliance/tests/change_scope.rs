//! A change to a few endpoints is planned from its neighbourhood (the entries it touches), not
//! from the whole configuration, and leaves the maps exactly as a whole reconcile would: after
//! every one of hundreds of random `ep add` / `ep del` (local endpoints on veths, remote ones,
//! two VPCs at the same addresses, hosts joining and leaving VPCs, networks this host needs
//! only for its own endpoints), the whole-state plan finds nothing to write and egress is
//! attached to exactly the veths of the endpoints hosted here. Needs root and BPF.

mod common;

use std::{collections::BTreeSet, net::Ipv4Addr, path::PathBuf};

use common::netns::NetNs;
use mizar::{
    dataplane::{DataplaneMaps, plan_reconcile},
    fabric::{ChangeOptions, Instance, SystemInterfaces, desired_state},
};
use mizar_db::{Endpoint, MacAddr, Topology};

const VETHS: usize = 4;

const DOC: &str = r#"
this-host: gw1
hosts:
  - { name: gw1, ip: 192.168.60.1, mac: "02:00:c0:a8:3c:01", interface: ul0 }
  - { name: h2, ip: 192.168.60.2, mac: "02:00:c0:a8:3c:02" }
  - { name: h3, ip: 192.168.60.3, mac: "02:00:c0:a8:3c:03" }
vpcs:
  - name: blue
    vni: 100
    cidr: 10.0.0.0/16
    dividers: [h2]
    networks:
      - { name: a, cidr: 10.0.1.0/24, bouncers: [gw1] }
      - { name: b, cidr: 10.0.2.0/24, bouncers: [h3] }
  - name: red
    vni: 200
    cidr: 10.0.0.0/16
    dividers: [h3]
    networks:
      - { name: a, cidr: 10.0.1.0/24, bouncers: [h2] }
      - { name: b, cidr: 10.0.2.0/24, bouncers: [gw1, h3] }
"#;

/// xorshift64*: a fixed sequence, so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Takes the instance down (links and pins) however the test ends.
struct Down(Instance);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = self.0.down();
        let _ = std::fs::remove_dir_all(&self.0.pin_dir);
    }
}

/// The maps hold exactly what the whole configuration implies, and egress runs on exactly the
/// veths of the endpoints hosted here.
fn assert_as_up_would_leave(instance: &Instance, step: &str) {
    let topology = instance.existing_store().unwrap().snapshot().unwrap();
    let desired = desired_state(&topology, &SystemInterfaces).unwrap();
    let maps = DataplaneMaps::open(&instance.pins()).unwrap();
    let repair = plan_reconcile(&maps, &desired.state).unwrap();
    assert!(
        repair.is_noop(),
        "after {step}: a whole reconcile would still write: {repair}"
    );
    let local: BTreeSet<String> = topology
        .endpoints()
        .filter(|(_, _, ep)| ep.host == "gw1")
        .filter_map(|(_, _, ep)| ep.veth.clone())
        .collect();
    assert_eq!(instance.attached("egress"), local, "after {step}: egress");
}

#[test]
fn endpoint_changes_are_planned_from_their_neighbourhood_and_leave_what_up_would() {
    common::require_root();
    common::ensure_test_bpffs();
    let state = tempfile::tempdir().unwrap();
    let instance = Instance {
        state_dir: state.path().to_owned(),
        pin_dir: PathBuf::from(format!(
            "{}/scope-{}",
            common::TEST_BPFFS,
            std::process::id()
        )),
    };
    let host = NetNs::new("scope");
    host.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    host.ip(&["link", "set", "ul0", "up"]);
    for i in 0..VETHS {
        let (veth, peer) = (format!("ve{i}"), format!("ve{i}-p"));
        host.ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
    }
    let guard = Down(instance.clone());
    let worker = host.spawn(move || {
        let instance = &guard.0;
        let doc = Topology::from_yaml(DOC).unwrap();
        let create = ChangeOptions {
            create_store: true,
            ..ChangeOptions::default()
        };
        instance.change(create, |s| s.apply(&doc, false)).unwrap();
        instance.up(&instance.existing_store().unwrap()).unwrap();

        let mut rng = Rng(0x6d69_7a61_7221);
        let mut live: Vec<Endpoint> = Vec::new();
        let (mut adds, mut dels, mut scoped) = (0, 0, 0);
        for step in 0..400 {
            let remove = !live.is_empty() && (live.len() >= 12 || rng.below(3) == 0);
            let changed = if remove {
                let ep = live.swap_remove(rng.below(live.len()));
                let what = format!("step {step}: ep del {}/{}", ep.vpc, ep.name);
                let changed = instance
                    .change(ChangeOptions::default(), |s| {
                        s.delete_endpoint(&ep.vpc, &ep.name, false).map(|_| ())
                    })
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                dels += 1;
                (changed, what)
            } else {
                let vpc = ["blue", "red"][rng.below(2)];
                let network = ["a", "b"][rng.below(2)];
                let third = if network == "a" { 1 } else { 2 };
                // Few addresses and both VPCs: the same address comes back in either VPC,
                // on another host or veth.
                let last = 10 + rng.below(6) as u8;
                let ip = Ipv4Addr::new(10, 0, third, last);
                if live.iter().any(|e| e.vpc == vpc && e.ip == ip) {
                    continue;
                }
                let name = format!("e{step}");
                let mac = MacAddr([0x02, 0xee, 0, third, last, step as u8]);
                let host_name = ["gw1", "h2", "h3"][rng.below(3)];
                let mut ep = Endpoint::simple(vpc, network, &name, ip, mac, host_name);
                if host_name == "gw1" {
                    let used: BTreeSet<&str> =
                        live.iter().filter_map(|e| e.veth.as_deref()).collect();
                    let free: Vec<String> = (0..VETHS)
                        .map(|i| format!("ve{i}"))
                        .filter(|v| !used.contains(v.as_str()))
                        .collect();
                    if free.is_empty() {
                        continue;
                    }
                    ep.veth = Some(free[rng.below(free.len())].clone());
                }
                let what = format!(
                    "step {step}: ep add {vpc}/{name} {ip} on {host_name} {:?}",
                    ep.veth
                );
                let changed = instance
                    .change(ChangeOptions::default(), |s| s.add_endpoint(&ep))
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                live.push(ep);
                adds += 1;
                (changed, what)
            };
            let (changed, what) = changed;
            assert!(changed.scope.is_some(), "{what}: planned from the whole");
            scoped += 1;
            assert_as_up_would_leave(instance, &what);
        }
        println!("{adds} adds and {dels} deletes, {scoped} planned from their neighbourhood");
        assert!(adds > 100 && dels > 100, "{adds} adds, {dels} deletes");

        // An endpoint whose veth did not exist waits; once it exists, the next change, whatever
        // it is about, is planned from the whole and attaches it.
        let late = Topology::from_yaml(
            "vpcs:\n- name: blue\n  vni: 100\n  cidr: 10.0.0.0/16\n  networks:\n  - name: a\n    \
             cidr: 10.0.1.0/24\n    endpoints:\n    - {name: late, ip: 10.0.1.200, mac: \
             '02:00:00:00:01:c8', host: gw1, veth: ve-late}\n",
        )
        .unwrap();
        let changed = instance
            .change(ChangeOptions::default(), |s| s.apply(&late, false))
            .unwrap();
        let waiting = changed.dataplane.unwrap().waiting;
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        // This thread is inside the namespace, and so is what it starts.
        let created = std::process::Command::new("ip")
            .args([
                "link",
                "add",
                "ve-late",
                "type",
                "veth",
                "peer",
                "name",
                "ve-late-p",
            ])
            .status()
            .unwrap();
        assert!(created.success());
        let ep = Endpoint::simple(
            "red",
            "b",
            "after-late",
            Ipv4Addr::new(10, 0, 2, 99),
            MacAddr([0x02, 0xee, 0, 2, 99, 0]),
            "h2",
        );
        let changed = instance
            .change(ChangeOptions::default(), |s| s.add_endpoint(&ep))
            .unwrap();
        assert!(
            changed.scope.is_none(),
            "a veth appeared: planned from the whole"
        );
        assert!(instance.attached("egress").contains("ve-late"));
        assert_as_up_would_leave(instance, "the late veth");
    });
    worker.join().unwrap();
}
