//! `mizar` with the data plane up follows a change of this host's underlay interface.

mod common;

use common::netns::{NetNs, NetNsExt as _};

#[test]
fn transit_follows_a_new_underlay_interface() {
    common::require_root();
    common::ensure_test_bpffs();
    let state = tempfile::tempdir().unwrap();
    let pins = format!("{}/underlay-{}", common::TEST_BPFFS, std::process::id());
    let host = NetNs::new("underlay");
    host.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"]);
    host.ip(&["link", "add", "ul2", "type", "veth", "peer", "name", "ul3"]);
    let mizar = |args: &[&str]| {
        let mut all = vec![
            "--state-dir",
            state.path().to_str().unwrap(),
            "--pin-dir",
            &pins,
        ];
        all.extend_from_slice(args);
        host.exec(env!("CARGO_BIN_EXE_mizar"), &all)
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
    let run = |args: &[&str]| {
        let mut all = vec![
            "--state-dir",
            state.path().to_str().unwrap(),
            "--pin-dir",
            pins.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        host.try_exec(env!("CARGO_BIN_EXE_mizar"), &all)
    };
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
}
